//! Does a sampled texture read faster than a storage buffer on this adapter?
//! `cargo run --release -p sfumato-wgpu --example tex_lab -- K N`: a matrix-vector product over a
//! K x N weight, read from an rgba32float texture (N/4 texels wide) and from a storage buffer.
use std::time::Instant;
use wgpu::util::DeviceExt;

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (k, n) = (*a.first().unwrap_or(&768), *a.get(1).unwrap_or(&3072));
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(inst.request_adapter(&Default::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    println!("{}", adapter.get_info().name);
    let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let x: Vec<f32> = (0..k).map(|i| (i % 5) as f32).collect();
    let tex = device.create_texture_with_data(
        &queue,
        &sfumato_wgpu::rgba32_texture("B", n / 4, k),
        Default::default(),
        bytemuck::cast_slice(&w),
    );
    let mk = |data: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: data,
            usage,
        })
    };
    let wb = mk(bytemuck::cast_slice(&w), wgpu::BufferUsages::STORAGE);
    let xb = mk(bytemuck::cast_slice(&x), wgpu::BufferUsages::STORAGE);
    let yb = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let view = tex.create_view(&Default::default());
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
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let r1 = if tex_bind {
            wgpu::BindingResource::TextureView(&view)
        } else {
            wb.as_entire_binding()
        };
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: xb.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: r1,
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: yb.as_entire_binding(),
                },
            ],
        });
        let mut best = f64::INFINITY;
        for _ in 0..6 {
            let mut enc = device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&p);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(n / 512, 1, 1);
            }
            let t = Instant::now();
            queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<8} {:8.3} ms {:6.2} GB/s",
            best * 1e3,
            (k * n) as f64 * 4.0 / best / 1e9
        );
    }
}
