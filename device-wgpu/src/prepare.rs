//! Preparing a graph for the device: the shared compile pipeline (passes, plan for this
//! device's target), each group lowered to WGSL with this device's choices (tuned matmul
//! variants), limits checked, constants uploaded once. `explain` sums up the same preparation.

use crate::{half, packed, WgpuDevice};
use sfumato_core::compile::{compile, CompileOptions, Compiled};
use sfumato_core::plan::Plan;
use sfumato_core::{Error, Graph, Op, PassStats, Result, ValueId};
use sfumato_shaders::explain::{GroupInfo, Totals};
use sfumato_shaders::{generate, group_matmul_problem, Buf, GroupKernels, LowerOptions, Lowered};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(crate) const PREPARED_MAX: usize = 4;

/// The plan a device runs for a graph ([`WgpuDevice::explain`]).
#[derive(Clone, Debug)]
pub struct Explained {
    /// The graph after the passes.
    pub graph: Arc<Graph>,
    pub plan: Plan,
    pub passes: PassStats,
    pub groups: Vec<GroupInfo>,
    pub totals: Totals,
    /// Group `i`'s kernels as this device runs them.
    pub kernels: Vec<Arc<GroupKernels>>,
    /// Which f16 values are stored as f16 (none without f16 storage).
    pub f16: half::HalfPlan,
    /// Constants stored as packed int8, and their bytes ([`packed`]: quantized weights read
    /// by the integer matmul, four to a word).
    pub packed_int8: (usize, u64),
}

impl Explained {
    /// Every kernel the plan dispatches, group by group.
    pub fn all_kernels(&self) -> impl Iterator<Item = &sfumato_shaders::Kernel> {
        self.kernels
            .iter()
            .filter_map(|gk| match &gk.lowered {
                Lowered::Kernels(ks) => Some(ks.iter()),
                _ => None,
            })
            .flatten()
    }

    /// One line on the packed int8 weights; `None` without any.
    pub fn packed_summary(&self) -> Option<String> {
        let (n, bytes) = self.packed_int8;
        (n > 0).then(|| {
            let size = if bytes >= 1 << 20 {
                format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
            } else {
                format!("{:.1} KiB", bytes as f64 / 1024.0)
            };
            format!(
                "int8 packing: {n} weights stored as packed int8 ({size}, a quarter of their i32 bytes)"
            )
        })
    }
}

impl Explained {
    /// The saved-run record of a run of this plan: the graph after the passes, each group with
    /// its WGSL and bytes, `profile` and the run's `outputs` (what `sfumato run --save-run`
    /// writes and the viewer opens).
    pub fn record(
        &self,
        model: &str,
        profile: sfumato_core::Profile,
        outputs: &[sfumato_core::Tensor],
    ) -> Result<sfumato_core::RunRecord> {
        let mut r =
            sfumato_core::RunRecord::new(model, &self.graph, Some(&self.plan), profile, outputs);
        sfumato_shaders::explain::fill_record(&mut r, &self.groups, &self.kernels)?;
        Ok(r)
    }
}

/// A lowered group, ready to dispatch.
pub(crate) struct Step {
    /// Shared so a run can hold it while it borrows the device mutably, without copying kernels.
    pub(crate) kernels: Arc<GroupKernels>,
    pub(crate) nodes: Vec<String>,
    pub(crate) ops: Vec<String>,
}

/// What a device keeps per graph: the graph it runs (after the passes), the lowered plan and
/// the uploaded constants.
pub(crate) struct Prepared {
    pub(crate) fingerprint: (u64, usize, Vec<ValueId>),
    pub(crate) graph: Arc<Graph>,
    pub(crate) plan: Plan,
    pub(crate) passes: PassStats,
    pub(crate) steps: Vec<Step>,
    /// Values stored as f16 (2 bytes an element; [`half::half_values`]).
    pub(crate) half: HashSet<ValueId>,
    /// Constants stored as packed int8 (1 byte an element; [`packed::pack_int8`]).
    pub(crate) packed: HashSet<ValueId>,
    pub(crate) half_plan: half::HalfPlan,
    pub(crate) consts: HashMap<ValueId, Arc<wgpu::Buffer>>,
    /// Constants that kernels read as textures (`Buf::Texture`): views and their bytes.
    pub(crate) textures: HashMap<ValueId, wgpu::TextureView>,
    /// The staging texture its kernels share (`Buf::Stage`, `Buf::StageLinear`), as large as
    /// the largest use.
    pub(crate) stage: Option<crate::memory::Stage>,
    /// The rgba16float stage of f16 tensors read through it (`Buf::StageLinear`).
    pub(crate) stage16: Option<crate::memory::Stage>,
    pub(crate) texture_bytes: u64,
    /// What preparing it took; reported by the first run's profile (then `None`).
    pub(crate) setup: Option<sfumato_core::Setup>,
}

impl Prepared {
    /// Bytes value `v` of shape `numel` elements takes on the device.
    pub(crate) fn bytes_of(&self, v: ValueId) -> u64 {
        let elem = if self.packed.contains(&v) {
            1
        } else {
            half::elem_bytes(&self.half, v)
        };
        self.graph.shape(v).numel() as u64 * elem
    }

    /// Device memory this prepared graph holds: its constant buffers and textures.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.consts.values().map(|b| b.size()).sum::<u64>() + self.texture_bytes
    }
}

impl WgpuDevice {
    /// Forget prepared graphs, and the memory their constants held.
    pub(crate) fn drop_prepared(&mut self) {
        let held: u64 = self.prepared.iter().map(Prepared::held_bytes).sum();
        self.allocated = self.allocated.saturating_sub(held);
        self.prepared.clear();
    }

    /// The plan this device runs for `graph`, summed up as `sfumato explain` shows it: the
    /// graph after the passes, its groups with the kernels this device lowers them to (its
    /// tuned matmul variants, its limits and strengths), and the totals. Its dispatch count is
    /// the count of a run's profile.
    pub fn explain(&mut self, graph: &Graph) -> Result<Explained> {
        let i = self.prepare(graph)?;
        let p = &self.prepared[i];
        let kernels: Vec<Arc<GroupKernels>> = p.steps.iter().map(|s| s.kernels.clone()).collect();
        let (groups, totals) =
            sfumato_shaders::explain::summarize_with(&p.graph, &p.plan, &kernels, &|v| {
                p.bytes_of(v)
            });
        Ok(Explained {
            graph: p.graph.clone(),
            plan: p.plan.clone(),
            passes: p.passes.clone(),
            groups,
            totals,
            kernels,
            f16: p.half_plan.clone(),
            packed_int8: (
                p.packed.len(),
                p.packed.iter().map(|&v| p.bytes_of(v)).sum(),
            ),
        })
    }

    /// What the shared compile pipeline is asked for: this device's optimization (passes,
    /// fusion) and target.
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            optimization: self.opts.optimization,
            target: self.target.clone(),
        }
    }

    /// Lowering options from the adapter's limits.
    pub(crate) fn lower_options(&self) -> LowerOptions {
        LowerOptions {
            matmul: None,
            target: self.target.clone(),
        }
    }

    /// Run the passes, plan the groups, lower each (choosing matmul variants), check limits,
    /// upload constants.
    pub(crate) fn prepare(&mut self, graph: &Graph) -> Result<usize> {
        let fp = graph.fingerprint();
        if let Some(i) = self.prepared.iter().position(|p| p.fingerprint == fp) {
            return Ok(i);
        }
        let t_start = self.now_ns();
        let Compiled {
            graph: g,
            plan: the_plan,
            passes,
        } = compile(graph, &self.compile_options())?;
        let max_bind = self.target.max_binding_bytes;
        let progress = self.opts.progress.clone();
        progress.stage("building kernels", the_plan.groups.len() as u64);
        let mut steps = Vec::with_capacity(the_plan.groups.len());
        let mut lowered = Vec::with_capacity(the_plan.groups.len());
        let mut consts = HashMap::new();
        let mut const_nodes = Vec::new();
        // The pipelines to build (name, WGSL) and the node each is for, built together below.
        let mut to_build = Vec::new();
        let mut built_for = Vec::new();
        for group in &the_plan.groups {
            let node = g.node(group.nodes[0]);
            for &m in &group.nodes {
                let n = g.node(m);
                for (k, &v) in n.inputs.iter().chain(n.outputs.iter()).enumerate() {
                    let s = g.shape(v);
                    let bytes = s.checked_numel().map(|n| n as u64 * 4).unwrap_or(u64::MAX);
                    if bytes > max_bind {
                        return Err(Error::Limit {
                            node: n.name.clone(),
                            op: n.op.name().to_string(),
                            inputs: g.describe_node_inputs(n),
                            msg: format!(
                                "tensor {k} of shape {s} takes {bytes} bytes, over this adapter's max_storage_buffer_binding_size of {max_bind}"
                            ),
                        });
                    }
                }
            }
            let mut opts = self.lower_options();
            if let Some(p) = group_matmul_problem(&g, &the_plan, group, &opts) {
                opts.matmul = Some(self.matmul_variant(&p)?);
            }
            // Only an op or dtype the back end lacks is unsupported; a template error, invalid
            // WGSL or a group it cannot lower is an internal error (a bug, not a coverage gap).
            let gk = generate(&g, &the_plan, group, &opts).map_err(|e| e.for_node(&g, node))?;
            if let (Lowered::Constant, Op::Constant(_)) = (&gk.lowered, &node.op) {
                const_nodes.push((node.outputs[0], node.id));
            }
            progress.step(&node.name);
            lowered.push((node.id, gk));
        }
        // int8 weights packed four to a word: the integer matmuls and convs that read them
        // rewritten.
        let mut packed_bytes = if self.pack_int8 {
            packed::pack_int8(&g, &const_nodes, &mut lowered, self.unpack4x)?
        } else {
            HashMap::new()
        };
        let packed: HashSet<ValueId> = packed_bytes.keys().copied().collect();
        // f16 tensors stored as f16: the kernels that bind them rewritten to load and store f16.
        let mut half_plan = if self.half_storage {
            half::half_values(&g, &lowered)?
        } else {
            half::HalfPlan::default()
        };
        let half = half_plan.half.clone();
        // The rewrites made while deciding, used below (not kept with the plan).
        let rewritten = std::mem::take(&mut half_plan.rewritten);
        for (why, count, bytes) in &half_plan.kept {
            tracing::debug!(count, bytes, why, "f16 values kept in f32");
        }
        for (group, (node, gk)) in the_plan.groups.iter().zip(&mut lowered) {
            let (inputs, outputs) = (gk.inputs.clone(), gk.outputs.clone());
            // f16 arithmetic only where every float value of the group is f16 (a chain that
            // casts to f32 computes its f32 part in f32) and its ops round in f16 as the
            // reference rounds them.
            let half_compute = self.half_storage
                && self.opts.half_compute
                && half::half_arithmetic_fits(&g, &group.nodes);
            if let Lowered::Kernels(ks) = &mut gk.lowered {
                for k in ks {
                    let halves = half::half_bindings(k, &inputs, &outputs, &half);
                    let computed = if half_compute {
                        sfumato_shaders::half::compute_half(&k.name, &k.wgsl, &halves)
                            .map_err(|e| e.for_node(&g, g.node(*node)))?
                    } else {
                        None
                    };
                    if let Some(text) = computed {
                        // Shown in profiles: this kernel's arithmetic is f16.
                        k.wgsl = text;
                        k.name += "_f16";
                    } else if !halves.is_empty() {
                        let key = (std::mem::take(&mut k.wgsl), halves);
                        k.wgsl = match rewritten.get(&key) {
                            Some(text) => text.clone(),
                            None => sfumato_shaders::half::store_half(&k.name, &key.0, &key.1)
                                .map_err(|e| e.for_node(&g, g.node(*node)))?,
                        };
                    }
                    if !self.has_pipeline(&k.wgsl) {
                        to_build.push((k.name.clone(), k.wgsl.clone()));
                        built_for.push(*node);
                    }
                }
            }
        }
        for (group, (_, gk)) in the_plan.groups.iter().zip(lowered) {
            steps.push(Step {
                nodes: group
                    .nodes
                    .iter()
                    .map(|&m| g.node(m).name.clone())
                    .collect(),
                ops: group
                    .nodes
                    .iter()
                    .map(|&m| g.node(m).op.name().to_string())
                    .collect(),
                kernels: Arc::new(gk),
            });
        }
        self.build_pipelines(&to_build)
            .map_err(|(i, e)| e.for_node(&g, g.node(built_for[i])))?;
        // Constants: a texture for each that a kernel reads as one, a buffer for each read any
        // other way (a kernel binding, an alias, a graph output).
        let mut as_texture = Vec::new();
        let mut as_buffer: Vec<ValueId> = g.outputs().to_vec();
        let mut stage_dims: Option<[u32; 3]> = None;
        let mut stage16_dims: Option<[u32; 3]> = None;
        for step in &steps {
            match &step.kernels.lowered {
                Lowered::Kernels(ks) => {
                    for b in ks.iter().flat_map(|k| &k.bindings) {
                        match *b {
                            Buf::Texture(i) => as_texture.push(step.kernels.inputs[i]),
                            Buf::In(i) | Buf::Uniform { input: i, .. } => {
                                as_buffer.push(step.kernels.inputs[i])
                            }
                            Buf::Stage {
                                width,
                                height,
                                layers,
                                ..
                            } => {
                                let d = stage_dims.get_or_insert([0; 3]);
                                *d = [d[0].max(width), d[1].max(height), d[2].max(layers)];
                            }
                            Buf::StageLinear {
                                input,
                                texels,
                                layer,
                            } => {
                                let v = step.kernels.inputs[input];
                                as_buffer.push(v);
                                let d = if half.contains(&v) {
                                    stage16_dims.get_or_insert([0; 3])
                                } else {
                                    stage_dims.get_or_insert([0; 3])
                                };
                                *d = [
                                    d[0].max(sfumato_shaders::STAGE_LINEAR_WIDTH),
                                    d[1].max(sfumato_shaders::stage_linear_rows(texels)),
                                    d[2].max(layer + 1),
                                ];
                            }
                            Buf::Out(_) => {}
                        }
                    }
                }
                _ => as_buffer.extend(&step.kernels.inputs),
            }
        }
        let t_weights = self.now_ns();
        progress.stage("uploading weights", const_nodes.len() as u64);
        let mut textures = HashMap::new();
        let mut texture_bytes = 0;
        let mut weight_bytes = 0u64;
        for &(v, node) in &const_nodes {
            let n = g.node(node);
            progress.step(&n.name);
            let Op::Constant(t) = &n.op else { continue };
            if as_texture.contains(&v) && !textures.contains_key(&v) {
                let (view, bytes) = self.upload_texture(t, &n.name)?;
                textures.insert(v, view);
                texture_bytes += bytes;
                weight_bytes += bytes;
            }
            if packed.contains(&v) {
                if let Some(bytes) = packed_bytes.remove(&v) {
                    weight_bytes += bytes.len() as u64;
                    consts.insert(v, self.upload_bytes(bytes));
                }
            } else if as_buffer.contains(&v) || !as_texture.contains(&v) {
                let buf = self.upload(t, &n.name, half.contains(&v))?;
                weight_bytes += t.numel() as u64 * half::elem_bytes(&half, v);
                consts.insert(v, buf);
            }
        }
        progress.done();
        let t_end = self.now_ns();
        let mut stage_of = |dims: Option<[u32; 3]>, format| -> Result<_> {
            Ok(match dims {
                Some([w, h, l]) => {
                    let (stage, bytes) = self.stage_texture(w, h, l, format)?;
                    texture_bytes += bytes;
                    Some(stage)
                }
                None => None,
            })
        };
        let stage = stage_of(stage_dims, wgpu::TextureFormat::Rgba32Float)?;
        let stage16 = stage_of(stage16_dims, wgpu::TextureFormat::Rgba16Float)?;
        if self.prepared.len() >= self.opts.max_prepared.max(1) {
            let old = self.prepared.remove(0);
            self.allocated = self.allocated.saturating_sub(old.held_bytes());
        }
        self.prepared.push(Prepared {
            fingerprint: fp,
            graph: Arc::new(g),
            plan: the_plan,
            passes,
            steps,
            half,
            packed,
            half_plan,
            consts,
            textures,
            stage,
            stage16,
            texture_bytes,
            setup: Some(sfumato_core::Setup {
                kernels_ns: t_weights.saturating_sub(t_start),
                weights_ns: t_end.saturating_sub(t_weights),
                weight_bytes,
            }),
        });
        Ok(self.prepared.len() - 1)
    }
}
