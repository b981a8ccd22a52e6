//! Does a sampled texture read faster than a storage buffer on this adapter?
//! `cargo run --release -p sfumato-wgpu --example tex_lab -- K N`: a matrix-vector product over a
//! K x N weight, read from an rgba32float texture (N/4 texels wide) and from a storage buffer.
mod lab;
use lab::{Bind, Lab};

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (k, n) = (*a.first().unwrap_or(&768), *a.get(1).unwrap_or(&3072));
    let lab = Lab::open();
    let device = &lab.device;
    println!("{}", lab.adapter.get_info().name);
    let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let x: Vec<f32> = (0..k).map(|i| (i % 5) as f32).collect();
    let view = lab.weight_texture(&w, k, n);
    let wb = lab.buffer(&w, wgpu::BufferUsages::STORAGE);
    let xb = lab.buffer(&x, wgpu::BufferUsages::STORAGE);
    let yb = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let tex_src = format!(
        "@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var wt: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let c = gid.x * 2u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var k = 0u; k < {k}u; k++) {{
        let xv = vec4<f32>(x[k]);
        a0 = fma(xv, textureLoad(wt, vec2<u32>(c, k), 0), a0);
        a1 = fma(xv, textureLoad(wt, vec2<u32>(c + 1u, k), 0), a1);
    }}
    y[c * 4u] = a0.x + a1.x;
}}"
    );
    let buf_src = format!(
        "@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let c = gid.x * 2u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var k = 0u; k < {k}u; k++) {{
        let xv = vec4<f32>(x[k]);
        a0 = fma(xv, w[k * {n4}u + c], a0);
        a1 = fma(xv, w[k * {n4}u + c + 1u], a1);
    }}
    y[c * 4u] = a0.x + a1.x;
}}",
        n4 = n / 4
    );
    for (name, src, tex_bind) in [("texture", &tex_src, true), ("buffer", &buf_src, false)] {
        let w = if tex_bind {
            Bind::Tex(&view)
        } else {
            Bind::Buf(&wb)
        };
        let best = lab.best_time(src, &[Bind::Buf(&xb), w, Bind::Buf(&yb)], (n / 512, 1), 6);
        println!(
            "{name:<8} {:8.3} ms {:6.2} GB/s",
            best * 1e3,
            (k * n) as f64 * 4.0 / best / 1e9
        );
    }
}
