//! Matmul tuning on the device. A run takes, per shape class, the forced variant, the winner
//! cached for this adapter, or the cost model's pick ([`MatmulVariant::candidates`]' first), and
//! never measures unless [`Tuning::Measure`] asks; [`WgpuDevice::tune`] measures a graph's
//! shape classes ahead of the runs that benefit (`sfumato tune`), the cost model's first few
//! candidates of each.

use crate::options::Tuning;
use crate::pipelines::{padded_params, Res};
use crate::WgpuDevice;
use serde::Serialize;
use sfumato_core::{compile, Error, Graph, Result};
use sfumato_shaders::{
    group_matmul_problem, Buf, Kernel, LowerOptions, MatmulProblem, MatmulVariant,
};
use std::collections::BTreeSet;
use wgpu::util::DeviceExt;

/// What tuning found for one matmul shape class of a graph.
#[derive(Clone, Debug, Serialize)]
pub struct TunedShape {
    /// The cache key: shape buckets and layout flags ([`MatmulProblem::shape_class`]).
    pub class: String,
    /// The problem measured (the first of its class in the graph): `M x N x K`, batches.
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batches: usize,
    /// Whether B is a constant the device can hold as a texture.
    pub b_texture: bool,
    /// The cost model's pick: what a run uses while nothing is cached.
    pub guess: String,
    /// Milliseconds per variant measured, in the cost model's order (empty: taken from the
    /// cache, nothing measured).
    pub times_ms: Vec<(String, f64)>,
    /// The variant later runs use.
    pub winner: String,
}

impl TunedShape {
    /// The guess's time over the winner's (1.0 where the guess won or nothing was measured).
    pub fn speedup(&self) -> f64 {
        let t = |name: &str| self.times_ms.iter().find(|(v, _)| v == name).map(|x| x.1);
        match (t(&self.guess), t(&self.winner)) {
            (Some(g), Some(w)) if w > 0.0 => g / w,
            _ => 1.0,
        }
    }
}

impl WgpuDevice {
    /// Force one matmul variant (`None`: autotune again) and forget this process's choices.
    pub(crate) fn forget_choices(&mut self, v: Option<MatmulVariant>) {
        self.opts.matmul = v;
        self.chosen.clear();
        self.untuned.clear();
    }

    /// The matmul variant this device uses for a problem: forced, chosen earlier in this
    /// process, cached, measured now ([`Tuning::Measure`] only) or the cost model's pick.
    pub fn matmul_variant(&mut self, p: &MatmulProblem) -> Result<MatmulVariant> {
        let fits = |v: &MatmulVariant| {
            sfumato_shaders::loops::fits(v.loop_trips(p, 0), self.target.loop_budget)
        };
        if let Some(v) = self.opts.matmul.filter(|v| v.supports(p) && fits(v)) {
            return Ok(v);
        }
        let cands = self.candidates(p)?;
        let class = p.shape_class();
        if let Some(&v) = self.chosen.get(&class).filter(|v| cands.contains(v)) {
            return Ok(v);
        }
        // Measuring needs a wait that blocks until the GPU is done; a browser has none, so there
        // a cached choice (measured elsewhere) or the cost model's pick is taken.
        let can_measure = cfg!(not(target_arch = "wasm32"));
        let cached = match self.opts.tuning {
            Tuning::Off => None,
            _ => self.cached_winner(&class, &cands),
        };
        let v = match (cached, self.opts.tuning) {
            _ if cands.len() == 1 => cands[0],
            (Some(v), _) => v,
            (None, Tuning::Measure { candidates }) if can_measure => {
                let n = candidates.clamp(1, cands.len());
                self.measure_and_cache(p, &cands, n, false)?.0
            }
            (None, Tuning::Off) => cands[0],
            (None, _) => {
                self.untuned.insert(class.clone());
                cands[0]
            }
        };
        self.chosen.insert(class, v);
        Ok(v)
    }

    /// The variants for `p` on this device, the cost model's order, or why there are none.
    fn candidates(&self, p: &MatmulProblem) -> Result<Vec<MatmulVariant>> {
        let cands = MatmulVariant::candidates(p, &self.target);
        if cands.is_empty() {
            return Err(Error::Device(
                sfumato_shaders::lower::no_matmul_variant(p, self.target.loop_budget).to_string(),
            ));
        }
        Ok(cands)
    }

    /// The winner cached for this adapter and shape class, where it is still a candidate.
    fn cached_winner(&self, class: &str, cands: &[MatmulVariant]) -> Option<MatmulVariant> {
        self.tune
            .get(&self.adapter_key, class)
            .filter(|v| cands.contains(v))
    }

    /// Measure the first `n` of `cands` (the cost model's order) on `p`, cache the fastest for
    /// this adapter and say so where it beats the cost model's pick; the winner and every
    /// variant's seconds.
    fn measure_and_cache(
        &mut self,
        p: &MatmulProblem,
        cands: &[MatmulVariant],
        n: usize,
        steps: bool,
    ) -> Result<(MatmulVariant, Vec<(MatmulVariant, f64)>)> {
        let times = self.measure_matmul(p, &cands[..n], steps)?;
        let v = fastest(&times).unwrap_or(cands[0]);
        let class = p.shape_class();
        self.tune.put(&self.adapter_key, &class, v);
        if v != cands[0] {
            let t = |w: MatmulVariant| times.iter().find(|x| x.0 == w).map_or(0.0, |x| x.1);
            self.opts.progress.note(&format!(
                "cached a faster kernel for {}x{}x{} ({class}): {} is {:.2}x the cost model's {}",
                p.m,
                p.n,
                p.k,
                v.name(),
                t(cands[0]) / t(v).max(f64::MIN_POSITIVE),
                cands[0].name()
            ));
        }
        Ok((v, times))
    }

    /// Matmul shape classes run on the cost model's pick since the device opened, because no
    /// measured winner was cached for them (with [`Tuning::Cached`]).
    pub fn untuned_classes(&self) -> Vec<String> {
        self.untuned.iter().cloned().collect()
    }

    /// Measure the matmul shape classes of `graph` (as this device compiles it) and cache each
    /// winner for this adapter, so later runs (in any process sharing the cache) use it: per
    /// class the cost model's first `candidates` variants, or none where the cache already
    /// holds a winner (unless `force`). Reports each measurement to the device's progress.
    pub fn tune(
        &mut self,
        graph: &Graph,
        candidates: usize,
        force: bool,
    ) -> Result<Vec<TunedShape>> {
        let compiled = compile(graph, &self.compile_options())?;
        let (g, plan) = (&compiled.graph, &compiled.plan);
        let mut seen = BTreeSet::new();
        let mut todo = Vec::new();
        let lower = self.lower_options();
        for group in &plan.groups {
            if let Some(p) = group_matmul_problem(g, plan, group, &lower) {
                if seen.insert(p.shape_class()) {
                    let cands = self.candidates(&p)?;
                    todo.push((p, cands));
                }
            }
        }
        // How many candidates each class measures: none where one variant computes it, or the
        // cache holds a winner and `force` is off.
        let counts: Vec<usize> = todo
            .iter()
            .map(|(p, cands)| {
                let cached = self.cached_winner(&p.shape_class(), cands);
                if cands.len() == 1 || (!force && cached.is_some()) {
                    0
                } else {
                    candidates.clamp(1, cands.len())
                }
            })
            .collect();
        let total: usize = counts.iter().sum();
        let progress = self.opts.progress.clone();
        progress.stage("tuning matmul kernels", total as u64);
        let mut report = Vec::new();
        for ((p, cands), &n) in todo.iter().zip(&counts) {
            let class = p.shape_class();
            let mut shape = TunedShape {
                class: class.clone(),
                m: p.m,
                n: p.n,
                k: p.k,
                batches: p.offsets.len(),
                b_texture: p.b_texture(),
                guess: cands[0].name(),
                times_ms: Vec::new(),
                winner: cands[0].name(),
            };
            if n == 0 {
                if let Some(v) = self.cached_winner(&class, cands) {
                    shape.winner = v.name();
                }
                report.push(shape);
                continue;
            }
            let (v, times) = self.measure_and_cache(p, cands, n, true)?;
            shape.times_ms = times.iter().map(|(v, t)| (v.name(), t * 1e3)).collect();
            shape.winner = v.name();
            report.push(shape);
        }
        progress.done();
        // Later preparations choose again, from the cache.
        let forced = self.opts.matmul;
        self.forget_choices(forced);
        self.drop_prepared();
        Ok(report)
    }

    /// Time each candidate on the problem's own sizes: seconds per variant, in order; each
    /// one a step of the progress's stage where `steps`.
    pub(crate) fn measure_matmul(
        &mut self,
        p: &MatmulProblem,
        cands: &[MatmulVariant],
        steps: bool,
    ) -> Result<Vec<(MatmulVariant, f64)>> {
        self.measured = true;
        let progress = self.opts.progress.clone();
        let span = |sm: usize, sk: usize, rows: usize, cols: usize, which: usize| -> u64 {
            let last = p.offsets.iter().map(|o| o[which]).max().unwrap_or(0);
            (last + rows.saturating_sub(1) * sm + cols.saturating_sub(1) * sk + 1) as u64 * 4
        };
        let a = self.scratch(span(p.a_sm, p.a_sk, p.m, p.k, 0));
        let b = self.scratch(span(p.b_sk, p.b_sn, p.k, p.n, 1));
        let c = self.scratch((p.offsets.len() * p.m * p.n) as u64 * 4);
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
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
            // A `ubo` variant copies a B that is not a constant texture to a staging texture
            // (`Buf::Stage`, `Buf::StageLinear`) on CPU adapters: one for this measurement, its
            // bytes not kept.
            let stage_dims = kernels
                .iter()
                .flat_map(|k| &k.bindings)
                .find_map(|b| match *b {
                    Buf::Stage {
                        width,
                        height,
                        layers,
                        ..
                    } => Some((width, height, layers)),
                    // (Its contents are not copied there: a timing reads whatever is there.)
                    Buf::StageLinear { texels, layer, .. } => Some((
                        sfumato_shaders::STAGE_LINEAR_WIDTH,
                        sfumato_shaders::stage_linear_rows(texels),
                        layer + 1,
                    )),
                    _ => None,
                });
            let stage = match stage_dims {
                Some((w, h, l)) => {
                    let (stage, bytes) =
                        self.stage_texture(w, h, l, wgpu::TextureFormat::Rgba32Float)?;
                    self.allocated = self.allocated.saturating_sub(bytes);
                    Some(stage.view)
                }
                None => None,
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
                            Buf::Stage { .. } | Buf::StageLinear { .. } => match &stage {
                                Some(t) => Res::Tex(t.clone()),
                                None => Res::Buf(b.clone()),
                            },
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
                if t > 3.0 * best {
                    break;
                }
            }
            let t = times.iter().cloned().fold(f64::INFINITY, f64::min);
            let line = format!(
                "{} ({}x{}x{}, {} batches) {}: {:.3} ms",
                p.shape_class(),
                p.m,
                p.n,
                p.k,
                p.offsets.len(),
                v.name(),
                t * 1e3
            );
            tracing::info!("autotune {line}");
            if steps {
                progress.step(&line);
            }
            best = best.min(t);
            out.push((v, t));
        }
        Ok(out)
    }

    /// Wall-clock seconds of one dispatch of `k` over `bufs` (submitted alone and waited for).
    pub(crate) fn time_kernel(&mut self, k: &Kernel, bufs: &[Res]) -> Result<f64> {
        let pipeline = self
            .pipeline(&k.name, &k.wgsl)
            .map_err(|e| Error::Device(e.to_string()))?;
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sfumato params"),
                contents: bytemuck::cast_slice(&padded_params(k)),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
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

/// The fastest of measured variants.
fn fastest(times: &[(MatmulVariant, f64)]) -> Option<MatmulVariant> {
    times
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(v, _)| v)
}

fn matmul_kernel_for(p: &MatmulProblem, opts: &LowerOptions) -> Result<Vec<Kernel>> {
    // Lower a synthetic Gemm-free MatMul through the public lowering by its problem.
    let mut ks =
        sfumato_shaders::lower::matmul_kernel(p, opts.matmul.unwrap_or(MatmulVariant::Rb4), opts)
            .map_err(|e| Error::Device(e.to_string()))?;
    // Params as a run binds them (a uniform buffer where they fit), so the times compare.
    for k in &mut ks {
        sfumato_shaders::uniform_params::apply_one(k);
    }
    Ok(ks)
}
