//! Matmul autotuning on the device: the variant for a problem is forced, cached (this process,
//! then the [`TuneCache`](crate::autotune::TuneCache)) or measured now on the problem's sizes.

use crate::pipelines::{padded_params, Res};
use crate::WgpuDevice;
use sfumato_core::{Error, Result};
use sfumato_shaders::{Buf, Kernel, LowerOptions, MatmulProblem, MatmulVariant};
use wgpu::util::DeviceExt;

impl WgpuDevice {
    /// Force one matmul variant (`None`: autotune again) and forget this process's choices.
    pub(crate) fn forget_choices(&mut self, v: Option<MatmulVariant>) {
        self.opts.matmul = v;
        self.chosen.clear();
    }

    /// The matmul variant this device uses for a problem (forced, cached or measured now).
    pub fn matmul_variant(&mut self, p: &MatmulProblem) -> Result<MatmulVariant> {
        let fits = |v: &MatmulVariant| {
            sfumato_shaders::loops::fits(v.loop_trips(p, 0), self.target.loop_budget)
        };
        if let Some(v) = self.opts.matmul.filter(|v| v.supports(p) && fits(v)) {
            return Ok(v);
        }
        let budget = self.target.loop_budget;
        let cands = MatmulVariant::candidates(p, &self.target);
        if cands.is_empty() {
            return Err(Error::Device(
                sfumato_shaders::lower::no_matmul_variant(p, budget).to_string(),
            ));
        }
        let class = p.shape_class();
        if let Some(&v) = self.chosen.get(&class).filter(|v| cands.contains(v)) {
            return Ok(v);
        }
        // Measuring needs a wait that blocks until the GPU is done; a browser has none, so there
        // the target's first candidate is taken (and a cached choice, measured elsewhere, used).
        let can_measure = cfg!(not(target_arch = "wasm32"));
        let v = if !self.opts.autotune || cands.len() == 1 {
            cands[0]
        } else if let Some(v) = self
            .tune
            .get(&self.adapter_key, &class)
            .filter(|v| cands.contains(v))
        {
            v
        } else if !can_measure {
            cands[0]
        } else {
            let v = self.measure_matmul(p, &cands)?;
            self.tune.put(&self.adapter_key, &class, v);
            v
        };
        self.chosen.insert(class, v);
        Ok(v)
    }

    /// Time each candidate on the problem's own sizes and return the fastest.
    pub(crate) fn measure_matmul(
        &mut self,
        p: &MatmulProblem,
        cands: &[MatmulVariant],
    ) -> Result<MatmulVariant> {
        let span = |sm: usize, sk: usize, rows: usize, cols: usize, which: usize| -> u64 {
            let last = p.offsets.iter().map(|o| o[which]).max().unwrap_or(0);
            (last + rows.saturating_sub(1) * sm + cols.saturating_sub(1) * sk + 1) as u64 * 4
        };
        let a = self.scratch(span(p.a_sm, p.a_sk, p.m, p.k, 0));
        let b = self.scratch(span(p.b_sk, p.b_sn, p.k, p.n, 1));
        let c = self.scratch((p.offsets.len() * p.m * p.n) as u64 * 4);
        let mut best: Option<(f64, MatmulVariant)> = None;
        for &v in cands {
            let opts = LowerOptions {
                matmul: Some(v),
                ..self.lower_options()
            };
            let kernels = matmul_kernel_for(p, &opts)?;
            let binds_texture = kernels
                .iter()
                .flat_map(|k| &k.bindings)
                .any(|b| matches!(b, Buf::Texture(_)));
            // (A variant reads B as a texture only where it fits one: `b_texture`.)
            let tex = if binds_texture {
                Some(self.scratch_texture(p.n / 4, p.k)?)
            } else {
                None
            };
            // Bindings A, B, bias (A's buffer stands in), out; the `ubo` variant's A blocks.
            let bufs: Vec<Vec<Res>> = kernels
                .iter()
                .map(|k| {
                    k.bindings
                        .iter()
                        .map(|bind| match *bind {
                            Buf::Texture(_) => match &tex {
                                Some(t) => Res::Tex(t.clone()),
                                None => Res::Buf(b.clone()),
                            },
                            Buf::In(1) => Res::Buf(b.clone()),
                            Buf::Out(_) => Res::Buf(c.clone()),
                            Buf::Uniform { offset, size, .. } => {
                                Res::Range(a.clone(), offset, size)
                            }
                            Buf::In(_) => Res::Buf(a.clone()),
                        })
                        .collect()
                })
                .collect();
            let mut times = Vec::new();
            for it in 0..4 {
                let mut t = 0.0;
                for (k, bufs) in kernels.iter().zip(&bufs) {
                    t += self.time_kernel(k, bufs)?;
                }
                // The first run compiles the pipeline (lavapipe compiles at the first
                // dispatch; a large block takes seconds): it is neither timed nor compared.
                if it == 0 {
                    continue;
                }
                times.push(t);
                // A candidate three times slower than the best so far is not worth more runs.
                if best.is_some_and(|(b, _)| t > 3.0 * b) {
                    break;
                }
            }
            let t = times.iter().cloned().fold(f64::INFINITY, f64::min);
            tracing::info!(
                "autotune {} {}: {:.3} ms",
                p.shape_class(),
                v.name(),
                t * 1e3
            );
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, v));
            }
        }
        Ok(best.map(|(_, v)| v).unwrap_or(cands[0]))
    }

    /// Wall-clock seconds of one dispatch of `k` over `bufs` (submitted alone and waited for).
    pub(crate) fn time_kernel(&mut self, k: &Kernel, bufs: &[Res]) -> Result<f64> {
        let pipeline = self.pipeline(&k.name, &k.wgsl)?;
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sfumato params"),
                contents: bytemuck::cast_slice(&padded_params(&k.params)),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let mut entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match b {
                    Res::Buf(b) => b.as_entire_binding(),
                    Res::Tex(t) => wgpu::BindingResource::TextureView(t),
                    Res::Range(b, offset, size) => {
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: b,
                            offset: *offset as u64,
                            size: wgpu::BufferSize::new(*size as u64),
                        })
                    }
                },
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: bufs.len() as u32,
            resource: params.as_entire_binding(),
        });
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(k.workgroups[0], k.workgroups[1], k.workgroups[2]);
        }
        let t = self.now_ns();
        self.submit_commands(enc.finish());
        self.wait()?;
        Ok(self.now_ns().saturating_sub(t) as f64 / 1e9)
    }
}

fn matmul_kernel_for(p: &MatmulProblem, opts: &LowerOptions) -> Result<Vec<Kernel>> {
    // Lower a synthetic Gemm-free MatMul through the public lowering by its problem.
    sfumato_shaders::lower::matmul_kernel(p, opts.matmul.unwrap_or(MatmulVariant::Rb4), opts)
        .map_err(|e| Error::Device(e.to_string()))
}
