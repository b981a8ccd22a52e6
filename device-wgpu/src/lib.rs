//! sfumato-wgpu: the WebGPU device.
//!
//! [`WgpuDevice`] runs a whole [`Graph`] in one queue submission: it lowers every node to WGSL
//! kernels (sfumato-shaders), caches pipelines by their WGSL text, uploads constants once per
//! graph, takes intermediate buffers from a pool and gives each back after its last reader
//! (so peak memory follows the live set), dispatches, reads the outputs back and fills a
//! [`Profile`] from timestamp queries (wall clock per dispatch where the adapter has none).
//! Matmul kernels are chosen per adapter and shape class by measurement ([`autotune`]).
//!
//! Device limits: a tensor over `max_storage_buffer_binding_size` is refused with an error that
//! names the node, op and shapes; dispatches over 65,535 workgroups per dimension wrap into y.

pub mod adapter;
pub mod autotune;
mod convert;

pub use adapter::{cpu_model, list_adapters, AdapterSummary, NO_ADAPTER};
use sfumato_core::compile::{compile, CompileOptions, Compiled};
use sfumato_core::device::{check_inputs, OpTiming, Profile, RunOutput, TimingSource};
use sfumato_core::plan::Plan;
use sfumato_core::PassStats;
use sfumato_core::{Device, Error, Graph, Op, Result, TargetKind, TargetProfile, Tensor, ValueId};
use sfumato_shaders::explain::{GroupInfo, Totals};
use sfumato_shaders::{
    generate, group_matmul_problem, Buf, GroupKernels, Kernel, LowerOptions, Lowered,
    MatmulProblem, MatmulVariant,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wgpu::util::DeviceExt;

/// How to open the device. `Default` reads the environment: `SFUMATO_ADAPTER` (a substring of
/// the adapter name, backend or type), `SFUMATO_AUTOTUNE=0` (off), `SFUMATO_MATMUL=<variant>`.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    pub adapter: Option<String>,
    /// Measure matmul variants and cache the winner (else take the first candidate).
    pub autotune: bool,
    /// Force one matmul variant where it supports the layout.
    pub matmul: Option<MatmulVariant>,
    /// Where the autotune cache lives (`None`: kept in memory only).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Fuse ops into kernels and run the graph passes first (`SFUMATO_FUSION=0`: one kernel
    /// per op of the graph as given).
    pub fusion: bool,
    /// A loop budget kernels must stay under (`SFUMATO_LOOP_BUDGET=<n>`), on top of the
    /// adapter's ([`AdapterSummary::loop_budget`]): the smaller of the two holds. A small one
    /// exercises the splitting and refusals on small shapes.
    pub loop_budget: Option<u64>,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            adapter: std::env::var("SFUMATO_ADAPTER").ok(),
            autotune: std::env::var("SFUMATO_AUTOTUNE")
                .map(|v| v != "0")
                .unwrap_or(true),
            matmul: std::env::var("SFUMATO_MATMUL")
                .ok()
                .and_then(|v| MatmulVariant::from_name(&v)),
            cache_dir: autotune::default_cache_dir(),
            fusion: std::env::var("SFUMATO_FUSION")
                .map(|v| v != "0")
                .unwrap_or(true),
            loop_budget: std::env::var("SFUMATO_LOOP_BUDGET").ok().and_then(|v| {
                let b = v.parse().ok();
                if b.is_none() {
                    eprintln!("warning: SFUMATO_LOOP_BUDGET={v} is not a number; ignored");
                }
                b
            }),
        }
    }
}

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
}

/// A lowered group, ready to dispatch.
struct Step {
    /// Shared so a run can hold it while it borrows the device mutably, without copying kernels.
    kernels: Arc<GroupKernels>,
    nodes: Vec<String>,
    ops: Vec<String>,
}

/// What a device keeps per graph: the graph it runs (after the passes), the lowered plan and
/// the uploaded constants.
struct Prepared {
    fingerprint: (u64, usize, Vec<ValueId>),
    graph: Arc<Graph>,
    plan: Plan,
    passes: PassStats,
    steps: Vec<Step>,
    consts: HashMap<ValueId, Arc<wgpu::Buffer>>,
    /// Constants that kernels read as textures (`Buf::Texture`): views and their bytes.
    textures: HashMap<ValueId, wgpu::TextureView>,
    texture_bytes: u64,
}

impl Prepared {
    /// Device memory this prepared graph holds: its constant buffers and textures.
    fn held_bytes(&self) -> u64 {
        self.consts.values().map(|b| b.size()).sum::<u64>() + self.texture_bytes
    }
}

/// The WebGPU device.
pub struct WgpuDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    adapter_key: String,
    /// What the compiler knows of this adapter: strengths, limits, quirks (the loop budget).
    target: TargetProfile,
    limits: wgpu::Limits,
    timestamps: bool,
    opts: DeviceOptions,
    pipelines: HashMap<String, Arc<wgpu::ComputePipeline>>,
    pool: Vec<(u64, Arc<wgpu::Buffer>)>,
    prepared: Vec<Prepared>,
    tune: autotune::TuneCache,
    /// Build matmul kernels without naga's runtime bounds checks (`SFUMATO_CHECKED_MATMUL=1` keeps them).
    trusted_matmul: bool,
    /// Matmul variant chosen per shape class in this process.
    chosen: HashMap<String, MatmulVariant>,
    /// Bytes of device buffers alive now and at most (tensors, pooled included).
    allocated: u64,
    high_water: u64,
}

const POOL_MAX: usize = 64;
const PREPARED_MAX: usize = 4;

/// Bytes a binding of a tensor of `bytes` takes: at least 16, a multiple of 16 (vec4 views).
fn binding_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

impl WgpuDevice {
    /// Open the preferred adapter (see [`DeviceOptions`]).
    pub fn new(opts: DeviceOptions) -> Result<Self> {
        let inst = adapter::instance();
        let adapter = adapter::choose(&inst, opts.adapter.as_deref()).map_err(Error::Device)?;
        let mut summary = AdapterSummary::of(&adapter);
        let info = adapter.get_info();
        // A budget asked for can only lower the adapter's: a larger one would let llvmpipe cut
        // loops short again.
        let target =
            adapter::target_profile(&info, &adapter.limits()).with_loop_budget(opts.loop_budget);
        summary.loop_budget = target.loop_budget;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sfumato"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Device(format!("could not open {}: {e}", info.name)))?;
        let mut adapter_key = format!(
            "{} | {:?} | {} | {}",
            info.name, info.backend, info.driver, info.driver_info
        );
        if target.kind == TargetKind::Cpu {
            adapter_key += &format!(" | cpu {}", cpu_model());
        }
        // A new set of variants invalidates the cached choices, and so does another budget.
        adapter_key += &format!(" | {} variants", MatmulVariant::all().len());
        if let Some(b) = target.loop_budget {
            adapter_key += &format!(" | loops {b}");
        }
        Ok(WgpuDevice {
            device,
            queue,
            summary,
            adapter_key,
            target,
            limits,
            timestamps,
            tune: autotune::TuneCache::load(opts.cache_dir.clone()),
            opts,
            pipelines: HashMap::new(),
            pool: Vec::new(),
            prepared: Vec::new(),
            chosen: HashMap::new(),
            allocated: 0,
            high_water: 0,
            trusted_matmul: std::env::var("SFUMATO_CHECKED_MATMUL").map_or(true, |v| v != "1"),
        })
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// What the compiler knows of this adapter (strengths, limits, quirks).
    pub fn target(&self) -> &TargetProfile {
        &self.target
    }

    /// Whether per-dispatch times come from GPU timestamps.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Turn fusion (and the graph passes) on or off.
    pub fn set_fusion(&mut self, on: bool) {
        self.opts.fusion = on;
        self.drop_prepared();
    }

    /// Forget prepared graphs, and the memory their constants held.
    fn drop_prepared(&mut self) {
        let held: u64 = self.prepared.iter().map(Prepared::held_bytes).sum();
        self.allocated = self.allocated.saturating_sub(held);
        self.prepared.clear();
    }

    /// Bytes of tensor buffers this device holds at most so far (pooled buffers included).
    pub fn memory_high_water(&self) -> u64 {
        self.high_water
    }

    /// Reset the memory high-water mark to what is allocated now.
    pub fn reset_memory_high_water(&mut self) {
        self.high_water = self.allocated;
    }

    /// Drop pooled buffers and prepared graphs (their constants), freeing their memory.
    pub fn trim(&mut self) {
        for (s, _) in self.pool.drain(..) {
            self.allocated -= s;
        }
        self.drop_prepared();
    }

    /// Force one matmul variant (where it supports the layout), or go back to autotuning.
    pub fn set_matmul_variant(&mut self, v: Option<MatmulVariant>) {
        self.opts.matmul = v;
        self.chosen.clear();
        self.drop_prepared();
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
        let v = if !self.opts.autotune || cands.len() == 1 {
            cands[0]
        } else if let Some(v) = self
            .tune
            .get(&self.adapter_key, &class)
            .filter(|v| cands.contains(v))
        {
            v
        } else {
            let v = self.measure_matmul(p, &cands)?;
            self.tune.put(&self.adapter_key, &class, v);
            v
        };
        self.chosen.insert(class, v);
        Ok(v)
    }

    /// Time each candidate on the problem's own sizes and return the fastest.
    fn measure_matmul(
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

    /// The plan this device runs for `graph`, summed up as `sfumato explain` shows it: the
    /// graph after the passes, its groups with the kernels this device lowers them to (its
    /// tuned matmul variants, its limits and strengths), and the totals. Its dispatch count is
    /// the count of a run's profile.
    pub fn explain(&mut self, graph: &Graph) -> Result<Explained> {
        let i = self.prepare(graph)?;
        let p = &self.prepared[i];
        let kernels: Vec<Arc<GroupKernels>> = p.steps.iter().map(|s| s.kernels.clone()).collect();
        let (groups, totals) = sfumato_shaders::explain::summarize(&p.graph, &p.plan, &kernels);
        Ok(Explained {
            graph: p.graph.clone(),
            plan: p.plan.clone(),
            passes: p.passes.clone(),
            groups,
            totals,
            kernels,
        })
    }

    /// What the shared compile pipeline is asked for: this device's fusion switch and target.
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            fuse: self.opts.fusion,
            target: self.target.clone(),
        }
    }

    /// Lowering options from the adapter's limits.
    fn lower_options(&self) -> LowerOptions {
        LowerOptions {
            matmul: None,
            target: self.target.clone(),
        }
    }

    /// A scratch texture of `width` x `height` texels, or an error where a side is over the
    /// adapter's limit (wgpu would panic).
    fn scratch_texture(&self, width: usize, height: usize) -> Result<wgpu::TextureView> {
        let side = self.limits.max_texture_dimension_2d as usize;
        if width > side || height > side {
            return Err(Error::Device(format!(
                "a {width} x {height} texture is over this adapter's {side} texels a side"
            )));
        }
        Ok(self
            .device
            .create_texture(&rgba32_texture(
                "sfumato scratch",
                width.max(1) as u32,
                height.max(1) as u32,
            ))
            .create_view(&Default::default()))
    }

    fn scratch(&self, bytes: u64) -> Arc<wgpu::Buffer> {
        Arc::new(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato scratch"),
            size: binding_size(bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        }))
    }

    /// Wall-clock seconds of one dispatch of `k` over `bufs` (submitted alone and waited for).
    fn time_kernel(&mut self, k: &Kernel, bufs: &[Res]) -> Result<f64> {
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
        let t = Instant::now();
        self.queue.submit([enc.finish()]);
        self.wait()?;
        Ok(t.elapsed().as_secs_f64())
    }

    fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))
    }

    fn pipeline(&mut self, name: &str, wgsl: &str) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.get(wgsl) {
            return Ok(p.clone());
        }
        sfumato_shaders::validate(name, wgsl).map_err(|e| Error::Device(e.to_string()))?;
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        };
        let started = std::time::Instant::now();
        let module = if self.trusted_matmul && name.starts_with("matmul_") {
            // SAFETY: every matmul template clamps each row and column it loads to the operand's
            // bounds and `prepare` checked every tensor against the binding limit, so naga's
            // per-access bounds checks (a clamp on every load of the inner loop) can go.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        };
        let p = Arc::new(
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }),
        );
        tracing::debug!(
            kernel = name,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "pipeline compiled"
        );
        self.pipelines.insert(wgsl.to_string(), p.clone());
        Ok(p)
    }

    /// A storage buffer of at least `bytes`, from the pool when one fits.
    fn acquire(&mut self, bytes: u64) -> Arc<wgpu::Buffer> {
        let need = binding_size(bytes);
        let best = self
            .pool
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s >= need && *s <= need.saturating_mul(2).max(need + 4096))
            .min_by_key(|(_, (s, _))| *s)
            .map(|(i, _)| i);
        if let Some(i) = best {
            return self.pool.swap_remove(i).1;
        }
        self.allocated += need;
        self.high_water = self.high_water.max(self.allocated);
        Arc::new(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato tensor"),
            size: need,
            // Uniform too: the `ubo` matmul binds row blocks of its A operand as uniforms.
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    fn release(&mut self, b: Arc<wgpu::Buffer>) {
        if Arc::strong_count(&b) == 1 {
            if self.pool.len() >= POOL_MAX {
                let (s, _) = self.pool.remove(0);
                self.allocated -= s;
            }
            self.pool.push((b.size(), b));
        }
    }

    /// Upload a constant f32 tensor as an rgba32float texture of its rows (the last dimension
    /// over 4 texels wide); returns the view and the bytes it holds.
    fn upload_texture(&mut self, t: &Tensor, what: &str) -> Result<(wgpu::TextureView, u64)> {
        let bytes = convert::to_device_bytes(t, what)?;
        let cols = t.shape().dims().last().copied().unwrap_or(1);
        let rows = t.shape().numel() / cols.max(1);
        let side = self.limits.max_texture_dimension_2d as usize;
        if !cols.is_multiple_of(4) || cols / 4 > side || rows > side || cols == 0 {
            return Err(Error::Device(format!(
                "constant '{what}' of shape {} does not fit a texture of at most {side} texels a side",
                t.shape()
            )));
        }
        let tex = self.device.create_texture_with_data(
            &self.queue,
            &rgba32_texture(what, (cols / 4) as u32, rows as u32),
            wgpu::util::TextureDataOrder::LayerMajor,
            &bytes,
        );
        let n = bytes.len() as u64;
        self.allocated += n;
        self.high_water = self.high_water.max(self.allocated);
        Ok((tex.create_view(&Default::default()), n))
    }

    fn upload(&mut self, t: &Tensor, what: &str) -> Result<Arc<wgpu::Buffer>> {
        let bytes = convert::to_device_bytes(t, what)?;
        let buf = self.acquire(bytes.len() as u64);
        if !bytes.is_empty() {
            self.queue.write_buffer(&buf, 0, &bytes);
        }
        Ok(buf)
    }

    /// Run the passes, plan the groups, lower each (choosing matmul variants), check limits,
    /// upload constants.
    fn prepare(&mut self, graph: &Graph) -> Result<usize> {
        let fp = graph.fingerprint();
        if let Some(i) = self.prepared.iter().position(|p| p.fingerprint == fp) {
            return Ok(i);
        }
        let Compiled {
            graph: g,
            plan: the_plan,
            passes,
        } = compile(graph, &self.compile_options())?;
        let max_bind = self.target.max_binding_bytes;
        let mut steps = Vec::with_capacity(the_plan.groups.len());
        let mut consts = HashMap::new();
        let mut const_nodes = Vec::new();
        for group in &the_plan.groups {
            let node = g.node(group.nodes[0]);
            let node_err = |msg: String| Error::Limit {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                inputs: g.describe_node_inputs(node),
                msg,
            };
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
            if let Some(p) = group_matmul_problem(&g, &the_plan, group) {
                opts.matmul = Some(self.matmul_variant(&p)?);
            }
            let gk = generate(&g, &the_plan, group, &opts).map_err(|e| match e {
                sfumato_shaders::Error::Limit(m) | sfumato_shaders::Error::LoopBudget(m) => {
                    node_err(m)
                }
                other => Error::Unsupported {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    inputs: g.describe_node_inputs(node),
                    msg: other.to_string(),
                },
            })?;
            if let (Lowered::Constant, Op::Constant(_)) = (&gk.lowered, &node.op) {
                const_nodes.push((node.outputs[0], node.id));
            }
            if let Lowered::Kernels(ks) = &gk.lowered {
                for k in ks {
                    self.pipeline(&k.name, &k.wgsl)?;
                }
            }
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
        // Constants: a texture for each that a kernel reads as one, a buffer for each read any
        // other way (a kernel binding, an alias, a graph output).
        let mut as_texture = Vec::new();
        let mut as_buffer: Vec<ValueId> = g.outputs().to_vec();
        for step in &steps {
            match &step.kernels.lowered {
                Lowered::Kernels(ks) => {
                    for b in ks.iter().flat_map(|k| &k.bindings) {
                        match *b {
                            Buf::Texture(i) => as_texture.push(step.kernels.inputs[i]),
                            Buf::In(i) | Buf::Uniform { input: i, .. } => {
                                as_buffer.push(step.kernels.inputs[i])
                            }
                            Buf::Out(_) => {}
                        }
                    }
                }
                _ => as_buffer.extend(&step.kernels.inputs),
            }
        }
        let mut textures = HashMap::new();
        let mut texture_bytes = 0;
        for &(v, node) in &const_nodes {
            let n = g.node(node);
            let Op::Constant(t) = &n.op else { continue };
            if as_texture.contains(&v) && !textures.contains_key(&v) {
                let (view, bytes) = self.upload_texture(t, &n.name)?;
                textures.insert(v, view);
                texture_bytes += bytes;
            }
            if as_buffer.contains(&v) || !as_texture.contains(&v) {
                let buf = self.upload(t, &n.name)?;
                consts.insert(v, buf);
            }
        }
        if self.prepared.len() >= PREPARED_MAX {
            let old = self.prepared.remove(0);
            self.allocated = self.allocated.saturating_sub(old.held_bytes());
        }
        self.prepared.push(Prepared {
            fingerprint: fp,
            graph: Arc::new(g),
            plan: the_plan,
            passes,
            steps,
            consts,
            textures,
            texture_bytes,
        });
        Ok(self.prepared.len() - 1)
    }
}

/// An rgba32float texture a kernel samples with `textureLoad`, `width` x `height` texels (the
/// layout of a constant weight read as a texture; the labs use it too).
pub fn rgba32_texture(label: &str, width: u32, height: u32) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    }
}

/// A binding of a kernel being timed: a storage buffer or a texture.
enum Res {
    Buf(Arc<wgpu::Buffer>),
    Tex(wgpu::TextureView),
    /// A byte range of a buffer (offset, size).
    Range(Arc<wgpu::Buffer>, u32, u32),
}

/// Params padded to at least 4 words (a binding may not be empty).
fn padded_params(p: &[u32]) -> Vec<u32> {
    let mut v = p.to_vec();
    while v.len() < 4 {
        v.push(0);
    }
    v
}

fn matmul_kernel_for(p: &MatmulProblem, opts: &LowerOptions) -> Result<Vec<Kernel>> {
    // Lower a synthetic Gemm-free MatMul through the public lowering by its problem.
    sfumato_shaders::lower::matmul_kernel(p, opts.matmul.unwrap_or(MatmulVariant::Rb4), opts)
        .map_err(|e| Error::Device(e.to_string()))
}

/// One dispatch recorded for the profile.
struct Dispatch {
    nodes: Vec<String>,
    ops: Vec<String>,
    kernel: String,
    wall_ns: Option<(u64, u64)>,
}

impl Device for WgpuDevice {
    fn name(&self) -> String {
        format!(
            "{} ({}, {})",
            self.summary.name, self.summary.backend, self.summary.device_type
        )
    }

    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let t0 = Instant::now();
        check_inputs(graph, inputs)?;
        check_gather_indices(graph, inputs)?;
        let pi = self.prepare(graph)?;
        // The high-water of this run starts from what is held now (weights, pooled buffers).
        self.high_water = self.allocated;
        // The graph after the passes: same inputs and outputs, in order.
        let graph = Arc::clone(&self.prepared[pi].graph);
        let graph = &*graph;
        // Uses of each value by the steps (each step once) and by the graph's outputs.
        let mut uses = vec![0usize; graph.values().len()];
        for step in &self.prepared[pi].steps {
            let mut seen: Vec<ValueId> = Vec::new();
            for &i in &step.kernels.inputs {
                if !seen.contains(&i) {
                    seen.push(i);
                    uses[i.index()] += 1;
                }
            }
        }
        for &o in graph.outputs() {
            uses[o.index()] += 1;
        }
        let mut bufs: Vec<Option<Arc<wgpu::Buffer>>> = vec![None; graph.values().len()];
        for (v, b) in &self.prepared[pi].consts {
            bufs[v.index()] = Some(Arc::clone(b));
        }
        let textures = self.prepared[pi].textures.clone();
        for (&v, t) in graph.inputs().iter().zip(inputs) {
            bufs[v.index()] = Some(self.upload(t, &graph.value(v).name)?);
        }
        // All params in one buffer, each at an aligned offset.
        let align = self.limits.min_storage_buffer_offset_alignment.max(4) as usize / 4;
        let mut params: Vec<u32> = Vec::new();
        let mut offsets: Vec<Vec<usize>> = Vec::new();
        for step in &self.prepared[pi].steps {
            let mut o = Vec::new();
            if let Lowered::Kernels(ks) = &step.kernels.lowered {
                for k in ks {
                    o.push(params.len());
                    params.extend(padded_params(&k.params));
                    params.resize(params.len().div_ceil(align) * align, 0);
                }
            }
            offsets.push(o);
        }
        let params_buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sfumato params"),
                contents: bytemuck::cast_slice(&padded_params(&params)),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let n_dispatch: usize = self.prepared[pi]
            .steps
            .iter()
            .map(|s| match &s.kernels.lowered {
                Lowered::Kernels(ks) => ks
                    .iter()
                    .filter(|k| k.workgroups.iter().all(|&w| w > 0))
                    .count(),
                _ => 0,
            })
            .sum();
        let per_set = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
        let query_sets: Vec<wgpu::QuerySet> = if self.timestamps {
            (0..n_dispatch.div_ceil(per_set))
                .map(|i| {
                    let count = (n_dispatch - i * per_set).min(per_set) as u32 * 2;
                    self.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("sfumato timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut dispatches: Vec<Dispatch> = Vec::new();
        let steps_len = self.prepared[pi].steps.len();
        #[allow(clippy::needless_range_loop)]
        // steps are borrowed from self, which the loop mutates
        for si in 0..steps_len {
            let gk = Arc::clone(&self.prepared[pi].steps[si].kernels);
            match &gk.lowered {
                // Constants are bound before the first step (a fused group may read one whose
                // node comes later in the graph).
                Lowered::Constant => {}
                Lowered::Alias => {
                    bufs[gk.outputs[0].index()] = bufs[gk.inputs[0].index()].clone();
                }
                Lowered::Kernels(ks) => {
                    for (j, &o) in gk.outputs.iter().enumerate() {
                        let buf = match gk.inplace {
                            // Written over a value nothing reads after this kernel.
                            Some(v) if j == 0 => bufs[v.index()].take().ok_or_else(|| {
                                Error::Graph(format!("in-place value {} has no buffer", v.0))
                            })?,
                            _ => self.acquire(graph.shape(o).numel() as u64 * 4),
                        };
                        bufs[o.index()] = Some(buf);
                    }
                    for (ki, k) in ks.iter().enumerate() {
                        if k.workgroups.contains(&0) {
                            continue;
                        }
                        let pipeline = self.pipeline(&k.name, &k.wgsl)?;
                        let mut entries = Vec::with_capacity(k.bindings.len() + 1);
                        for (bi, b) in k.bindings.iter().enumerate() {
                            // A buffer binding: the value, and the byte range (whole when
                            // `None`).
                            let (v, range) = match *b {
                                Buf::Uniform {
                                    input,
                                    offset,
                                    size,
                                } => (gk.inputs[input], Some((offset as u64, size as u64))),
                                Buf::In(i) => (gk.inputs[i], None),
                                Buf::Out(i) => (gk.outputs[i], None),
                                Buf::Texture(i) => {
                                    let v = gk.inputs[i];
                                    let view = textures.get(&v).ok_or_else(|| {
                                        Error::Graph(format!("value {} has no texture", v.0))
                                    })?;
                                    entries.push(wgpu::BindGroupEntry {
                                        binding: bi as u32,
                                        resource: wgpu::BindingResource::TextureView(view),
                                    });
                                    continue;
                                }
                            };
                            let buf = bufs[v.index()].as_ref().ok_or_else(|| {
                                Error::Graph(format!("value {} has no buffer", v.0))
                            })?;
                            let (offset, size) = range.unwrap_or_else(|| {
                                let whole = graph.shape(v).numel() as u64 * 4;
                                (0, binding_size(whole).min(buf.size()))
                            });
                            entries.push(wgpu::BindGroupEntry {
                                binding: bi as u32,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: buf,
                                    offset,
                                    size: wgpu::BufferSize::new(size),
                                }),
                            });
                        }
                        let off = offsets[si][ki];
                        let plen = padded_params(&k.params).len();
                        entries.push(wgpu::BindGroupEntry {
                            binding: k.bindings.len() as u32,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &params_buf,
                                offset: off as u64 * 4,
                                size: wgpu::BufferSize::new(plen as u64 * 4),
                            }),
                        });
                        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: None,
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &entries,
                        });
                        let di = dispatches.len();
                        let tw = query_sets.get(di / per_set).map(|qs| {
                            wgpu::ComputePassTimestampWrites {
                                query_set: qs,
                                beginning_of_pass_write_index: Some(((di % per_set) * 2) as u32),
                                end_of_pass_write_index: Some(((di % per_set) * 2 + 1) as u32),
                            }
                        });
                        {
                            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: Some(&k.name),
                                timestamp_writes: tw,
                            });
                            pass.set_pipeline(&pipeline);
                            pass.set_bind_group(0, &bg, &[]);
                            pass.dispatch_workgroups(
                                k.workgroups[0],
                                k.workgroups[1],
                                k.workgroups[2],
                            );
                        }
                        let mut wall = None;
                        if !self.timestamps {
                            // No timestamp queries: time each dispatch on the host.
                            let start = t0.elapsed().as_nanos() as u64;
                            let done = std::mem::replace(
                                &mut enc,
                                self.device.create_command_encoder(&Default::default()),
                            );
                            self.queue.submit([done.finish()]);
                            self.wait()?;
                            wall = Some((start, t0.elapsed().as_nanos() as u64 - start));
                        }
                        let step = &self.prepared[pi].steps[si];
                        dispatches.push(Dispatch {
                            nodes: step.nodes.clone(),
                            ops: step.ops.clone(),
                            kernel: k.name.clone(),
                            wall_ns: wall,
                        });
                    }
                }
            }
            let mut seen: Vec<ValueId> = Vec::new();
            for &i in &gk.inputs {
                if seen.contains(&i) {
                    continue;
                }
                seen.push(i);
                uses[i.index()] -= 1;
                if uses[i.index()] == 0 {
                    if let Some(b) = bufs[i.index()].take() {
                        self.release(b);
                    }
                }
            }
        }
        // Read back outputs and timestamps.
        let mut staging = Vec::new();
        for &o in graph.outputs() {
            let bytes = graph.shape(o).numel() as u64 * 4;
            if bytes == 0 {
                staging.push(None);
                continue;
            }
            let src = bufs[o.index()]
                .as_ref()
                .ok_or_else(|| Error::Graph(format!("output {} has no buffer", o.0)))?;
            let dst = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(src, 0, &dst, 0, bytes);
            staging.push(Some(dst));
        }
        let mut ts_bufs = Vec::new();
        for qs in &query_sets {
            let count = qs_count(n_dispatch, per_set, ts_bufs.len());
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato timestamps"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato timestamps readback"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(qs, 0..count, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, count as u64 * 8);
            ts_bufs.push(read);
        }
        self.queue.submit([enc.finish()]);
        let status: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        for b in staging.iter().flatten().chain(ts_bufs.iter()) {
            let s = status.clone();
            b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                if let Err(e) = r {
                    s.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string());
                }
            });
        }
        self.wait()?;
        if let Some(e) = status.lock().unwrap_or_else(|p| p.into_inner()).first() {
            return Err(Error::Device(format!("reading results back: {e}")));
        }
        let mut outputs = Vec::with_capacity(staging.len());
        for (&o, st) in graph.outputs().iter().zip(&staging) {
            let t = match st {
                None => Tensor::zeros(graph.dtype(o), graph.shape(o).clone()),
                Some(b) => {
                    let view = b
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| Error::Device(format!("mapping: {e:?}")))?;
                    convert::from_device_bytes(graph.dtype(o), graph.shape(o), &view)?
                }
            };
            outputs.push(t);
        }
        let mut stamps: Vec<u64> = Vec::new();
        for b in &ts_bufs {
            let view = b
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("mapping: {e:?}")))?;
            stamps.extend(bytemuck::pod_collect_to_vec::<u8, u64>(&view));
        }
        let period = self.queue.get_timestamp_period() as f64;
        let first = stamps.first().copied().unwrap_or(0);
        let mut profile = Profile {
            device: self.name(),
            ..Default::default()
        };
        for (i, d) in dispatches.into_iter().enumerate() {
            let (start_ns, duration_ns, source) = match d.wall_ns {
                Some((s, dur)) => (s, dur, TimingSource::WallClock),
                None => {
                    let (a, b) = (
                        stamps.get(2 * i).copied().unwrap_or(0),
                        stamps.get(2 * i + 1).copied().unwrap_or(0),
                    );
                    (
                        (a.saturating_sub(first) as f64 * period) as u64,
                        (b.saturating_sub(a) as f64 * period) as u64,
                        TimingSource::GpuTimestamp,
                    )
                }
            };
            profile.entries.push(OpTiming {
                nodes: d.nodes,
                ops: d.ops,
                kernel: d.kernel,
                start_ns,
                duration_ns,
                source,
            });
        }
        // Give the outputs' and inputs' buffers back to the pool.
        for b in bufs.into_iter().flatten() {
            self.release(b);
        }
        profile.wall_ns = t0.elapsed().as_nanos() as u64;
        profile.memory_bytes = Some(self.high_water);
        Ok(RunOutput { outputs, profile })
    }
}

/// Gather and GatherElements indices that come straight from a run input or a constant are
/// range-checked on the host, so an out-of-range index is an error naming the node rather than
/// a 0 read on the GPU. (Indices computed on the device are not checked yet.)
fn check_gather_indices(graph: &Graph, inputs: &[Tensor]) -> Result<()> {
    for node in graph.nodes() {
        let (Op::Gather { axis } | Op::GatherElements { axis }) = node.op else {
            continue;
        };
        let idx = node.inputs[1];
        let values = if let Some(k) = graph.inputs().iter().position(|&v| v == idx) {
            inputs[k].to_i64_vec()
        } else if let Some(Op::Constant(t)) = graph.value(idx).producer.map(|p| &graph.node(p).op) {
            t.to_i64_vec()
        } else {
            continue;
        };
        let len = graph.shape(node.inputs[0]).dims()[axis] as i64;
        if let Some(bad) = values.iter().find(|&&i| i < -len || i >= len) {
            return Err(Error::Node {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                inputs: graph.describe_node_inputs(node),
                msg: format!("index {bad} is out of range for axis {axis} of size {len}"),
            });
        }
    }
    Ok(())
}

fn qs_count(n_dispatch: usize, per_set: usize, set: usize) -> u32 {
    ((n_dispatch - set * per_set).min(per_set) * 2) as u32
}

/// Open the default device, or explain why not. With `SFUMATO_REQUIRE_GPU=1` tests treat a
/// missing adapter as a failure; without it they skip loudly.
pub fn test_device() -> Option<WgpuDevice> {
    let opts = DeviceOptions {
        autotune: false,
        cache_dir: None,
        ..Default::default()
    };
    match WgpuDevice::new(opts) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("SFUMATO_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("SFUMATO_REQUIRE_GPU=1 but no GPU device: {e}");
            }
            eprintln!("\n!!! SKIPPING GPU TEST: {e}\n");
            None
        }
    }
}
