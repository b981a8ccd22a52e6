//! What the labs (`tex_lab`, `ubo_lab`, `matvec_lab`) share: the adapter with its own limits,
//! and the best wall time of a kernel over a few submissions.
#![allow(dead_code)]

use std::time::Instant;
use wgpu::util::DeviceExt;

pub struct Lab {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

/// A binding of a kernel being timed.
pub enum Bind<'a> {
    Buf(&'a wgpu::Buffer),
    Range(wgpu::BufferBinding<'a>),
    Tex(&'a wgpu::TextureView),
}

impl Lab {
    /// The default adapter, with every limit it has (uniform bindings of 64 KiB and more).
    pub fn open() -> Lab {
        let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = pollster::block_on(inst.request_adapter(&Default::default())).unwrap();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .unwrap();
        Lab {
            adapter,
            device,
            queue,
        }
    }

    /// A buffer holding `data`.
    pub fn buffer(&self, data: &[f32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage,
            })
    }

    /// A `k x n` weight as an rgba32float texture of `n / 4` texels a row, and its view.
    pub fn weight_texture(&self, w: &[f32], k: u32, n: u32) -> wgpu::TextureView {
        self.device
            .create_texture_with_data(
                &self.queue,
                &sfumato_wgpu::rgba32_texture("B", n / 4, k),
                Default::default(),
                bytemuck::cast_slice(w),
            )
            .create_view(&Default::default())
    }

    /// The best of `runs` wall times (seconds) of one dispatch of `src` over `binds` (bound in
    /// order from 0) in `groups` workgroups, each submitted alone and waited for.
    pub fn best_time(&self, src: &str, binds: &[Bind], groups: (u32, u32), runs: usize) -> f64 {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let entries: Vec<_> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match b {
                    Bind::Buf(b) => b.as_entire_binding(),
                    Bind::Range(r) => wgpu::BindingResource::Buffer(r.clone()),
                    Bind::Tex(v) => wgpu::BindingResource::TextureView(v),
                },
            })
            .collect();
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let mut enc = self.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&p);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            let t = Instant::now();
            self.queue.submit([enc.finish()]);
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    }
}
