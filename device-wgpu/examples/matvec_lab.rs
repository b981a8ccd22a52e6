//! Matrix-vector kernels on this adapter, GB/s of weights read (a decode step's load path):
//! `cargo run --release -p sfumato-wgpu --example matvec_lab -- K N`. Each kernel's result is
//! checked against the host's product (the uniform-block one re-reads 16 rows, so its error is
//! expected: it measures the load path only, from cache).
//!
//! On lavapipe (Zen 3, 2 cores, K = 1,024, N = 4,096): texels 5.0-6.3 GB/s; storage vec4 loads at
//! an address the same in every lane of a SIMD batch, each lane taking its column, 0.15 GB/s;
//! the same from a uniform block 2.1 GB/s (N = 1,024, cache-resident), against about 30 GB/s for
//! a STREAM copy on the same cores. The texel gather is this adapter's fastest per-lane load.
mod lab;
use lab::{Bind, Lab};

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (k, n) = (*a.first().unwrap_or(&1024), *a.get(1).unwrap_or(&4096));
    let lab = Lab::open();
    let (device, queue) = (&lab.device, &lab.queue);
    println!("{}", lab.adapter.get_info().name);
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 7 + 3) % 11) as f32 * 0.1 - 0.5)
        .collect();
    let x: Vec<f32> = (0..k).map(|i| ((i * 5) % 9) as f32 * 0.25 - 1.0).collect();
    let want: Vec<f32> = (0..n as usize)
        .map(|j| {
            (0..k as usize)
                .map(|kk| x[kk] * w[kk * n as usize + j])
                .sum()
        })
        .collect();
    let view = lab.weight_texture(&w, k, n);
    let wb = lab.buffer(&w, wgpu::BufferUsages::STORAGE);
    let ub = lab.buffer(&w, wgpu::BufferUsages::UNIFORM);
    let xb = lab.buffer(&x, wgpu::BufferUsages::STORAGE);
    let yb = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let rb = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let n4 = n / 4;
    let tex_src = format!(
        "@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var wt: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let c = gid.x * 4u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < {k}u; k++) {{
        let xv = vec4<f32>(x[k]);
        a0 = fma(xv, textureLoad(wt, vec2<u32>(c, k), 0), a0);
        a1 = fma(xv, textureLoad(wt, vec2<u32>(c + 1u, k), 0), a1);
        a2 = fma(xv, textureLoad(wt, vec2<u32>(c + 2u, k), 0), a2);
        a3 = fma(xv, textureLoad(wt, vec2<u32>(c + 3u, k), 0), a3);
    }}
    y[c] = a0; y[c + 1u] = a1; y[c + 2u] = a2; y[c + 3u] = a3;
}}"
    );
    // Lanes share the load address: each of 8 lanes owns one column of every 8-column chunk;
    // per k the workgroup loads C chunks (2 vec4 each) at an address the same for all lanes.
    let sel_src = |cw: u32| {
        let mut decl = String::new();
        let mut body = String::new();
        let mut st = String::new();
        for c in 0..cw {
            decl += &format!("    var a{c} = 0.0;\n");
            body += &format!(
                "        let p{c} = row + {o}u;\n        let v{c} = select(w[p{c}], w[p{c} + 1u], hi);\n        a{c} = fma(xk, dot(v{c}, oh), a{c});\n",
                o = c * 2
            );
            st += &format!("    y1[base + {c}u * 8u + lid.x] = a{c};\n");
        }
        format!(
            "@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y1: array<f32>;
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{
    let base = wg.x * {cols}u;
    let hi = lid.x >= 4u;
    let l4 = lid.x & 3u;
    let oh = vec4<f32>(vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(l4));
{decl}    for (var k = 0u; k < {k}u; k++) {{
        let xk = x[k];
        let row = k * {n4}u + base / 4u;
{body}    }}
{st}}}",
            cols = cw * 8
        )
    };
    let ubo_src = sel_src(8)
        .replace(
            "var<storage, read> w: array<vec4<f32>>;",
            "var<uniform> w: array<vec4<f32>, 4096>;",
        )
        .replace("let row = k * ", "let row = (k & 15u) * ");
    let variants: Vec<(String, String, bool, u32)> = vec![
        ("texture 16".into(), tex_src.clone(), true, n / 16 / 16),
        ("sel c4".into(), sel_src(4), false, n / 32),
        ("sel c8".into(), sel_src(8), false, n / 64),
        ("sel c16".into(), sel_src(16), false, n / 128),
        ("ubo c8 (16 rows)".into(), ubo_src, false, n / 64),
    ];
    for (name, src, tex_bind, wgs) in variants {
        let w = if tex_bind {
            Bind::Tex(&view)
        } else if name.starts_with("ubo") {
            Bind::Range(wgpu::BufferBinding {
                buffer: &ub,
                offset: 0,
                size: wgpu::BufferSize::new(65536),
            })
        } else {
            Bind::Buf(&wb)
        };
        let best = lab.best_time(&src, &[Bind::Buf(&xb), w, Bind::Buf(&yb)], (wgs, 1), 8);
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&yb, 0, &rb, 0, n as u64 * 4);
        queue.submit([enc.finish()]);
        rb.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let got: Vec<f32> =
            bytemuck::cast_slice(&rb.slice(..).get_mapped_range().unwrap()).to_vec();
        rb.unmap();
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{name:<12} {:8.3} ms {:6.2} GB/s  max err {err:.2e}",
            best * 1e3,
            (k * n) as f64 * 4.0 / best / 1e9
        );
    }
}
