//! sfumato-wgpu: the WebGPU device.
//!
//! [`WgpuDevice`] runs a whole [`Graph`] in one queue submission. It asks the shared compile
//! pipeline (`sfumato_core::compile`) for the plan with its own [`TargetProfile`] (the adapter's
//! kind, limits and quirks: [`adapter::target_profile`]), lowers each group to WGSL kernels
//! (sfumato-shaders) with its tuned matmul variants, caches pipelines by their WGSL text,
//! uploads constants once per graph, takes intermediate buffers from a pool and gives each back
//! after its last reader (so peak memory follows the live set), dispatches, reads the outputs
//! back and fills a [`Profile`](sfumato_core::Profile) from timestamp queries (where the adapter
//! has none, the run is still one submission and the profile has its wall time only).
//!
//! The modules, one job each: [`adapter`] (discovery, choice, target profile, quirks as data),
//! [`host`] (the clock and the autotune store the host hands in), [`options`], `prepare`
//! (compile, lower, upload, `explain`), `tune` (matmul variant choice: cached, the cost model's, or
//! measured by [`WgpuDevice::tune`]) over [`autotune`] (its cache), `memory` (pool, uploads, high-water), `kept` (tensors kept between runs: a KV cache), `pipelines`, `run` (dispatch, readback,
//! profile).
//!
//! Builds for wasm32 (the browser's WebGPU): the device reads no environment variable, file or
//! `std::time` clock itself; those come in through [`DeviceOptions`] (the clock, the autotune
//! store, the host CPU's name, whether wgpu may read its own `WGPU_*` variables), which the
//! command fills with [`DeviceOptions::from_env`]. Open it with
//! [`WgpuDevice::new_async`] and run with [`WgpuDevice::run_async`] there; natively the
//! blocking [`WgpuDevice::new`] and [`Device::run`](sfumato_core::Device::run) wrap them.
//!
//! Device limits: a tensor over `max_storage_buffer_binding_size` is refused with an error that
//! names the node, op and shapes; dispatches over 65,535 workgroups per dimension wrap into y.

pub mod adapter;
pub mod autotune;
mod convert;
pub mod half;
pub mod host;
mod kept;
mod memory;
pub mod options;
mod packed;
mod pipelines;
mod prepare;
mod run;
mod tune;

#[cfg(not(target_arch = "wasm32"))]
pub use adapter::list_adapters;
pub use adapter::{AdapterSummary, NO_ADAPTER};
pub use half::HalfPlan;
pub use host::{
    cpu_model, last_lavapipe_pinning, lavapipe_pools, lavapipe_threads, pin_lavapipe_workers,
    pinning_planned, set_lavapipe_threads, Clock, NoClock, Pinning, TuneStore, PIN_ENV,
};
pub use host::{lavapipe_threads_for, LAVAPIPE_MAX_THREADS, LAVAPIPE_THREADS_ENV};
pub use memory::{copy_linear, rgba32_texture};
#[cfg(not(target_arch = "wasm32"))]
pub use options::{default_cache_dir, test_device};
pub use options::{DeviceOptions, Tuning, DEFAULT_TUNE_CANDIDATES};
pub use prepare::Explained;
use sfumato_core::{Error, Optimization, Result, TargetKind, TargetProfile};
use sfumato_shaders::MatmulVariant;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
pub use tune::TunedShape;

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
    /// f16 tensors are stored as f16 ([`DeviceOptions::half_storage`] and `shader-f16`).
    half_storage: bool,
    /// Quantized weights are packed four to a word ([`DeviceOptions::pack_int8`]).
    pack_int8: bool,
    /// WGSL's `packed_4x8_integer_dot_product`, whose `unpack4xI8` reads the integer matmul's
    /// packed operands (the integer conv's need only `extractBits`).
    unpack4x: bool,
    opts: DeviceOptions,
    pipelines: HashMap<String, Arc<wgpu::ComputePipeline>>,
    pool: Vec<(u64, Arc<wgpu::Buffer>)>,
    prepared: Vec<prepare::Prepared>,
    tune: autotune::TuneCache,
    /// Matmul variant chosen per shape class in this process.
    chosen: HashMap<String, MatmulVariant>,
    /// Shape classes run on the cost model's pick for want of a cached winner.
    untuned: BTreeSet<String>,
    /// Whether this device has measured kernels ([`Tuning::Measure`], [`WgpuDevice::tune`]):
    /// on lavapipe the timestamp queries of its later runs no longer bracket the dispatches
    /// (a 1024³ matmul "took" 0.6 ms), so its profiles give the whole run's wall time only.
    measured: bool,
    /// Bytes of device buffers alive now and at most (tensors, pooled included).
    allocated: u64,
    high_water: u64,
    /// Queue submissions made ([`WgpuDevice::submissions`]).
    submissions: u64,
    /// This device's id among the process's devices: a kept tensor names its device by it.
    id: u64,
    /// Bytes of kept tensors alive ([`WgpuDevice::kept_bytes`]).
    kept_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// What pinning lavapipe's workers did when the device opened.
    pinning: Pinning,
}

impl WgpuDevice {
    /// Open the preferred adapter (see [`DeviceOptions`]), blocking until it is open.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: DeviceOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(opts))
    }

    /// Open the preferred adapter (see [`DeviceOptions`]); in a browser, await it.
    pub async fn new_async(opts: DeviceOptions) -> Result<Self> {
        let inst = adapter::instance(opts.wgpu_env);
        let adapter = adapter::choose(&inst, opts.adapter.as_deref())
            .await
            .map_err(Error::Device)?;
        let mut summary = AdapterSummary::of(&adapter);
        let info = adapter.get_info();
        // A budget asked for can only lower the adapter's: a larger one would let llvmpipe cut
        // loops short again.
        let target =
            adapter::target_profile(&info, &adapter.limits()).with_loop_budget(opts.loop_budget);
        summary.loop_budget = target.loop_budget;
        let timestamps =
            opts.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // A browser may lack the WGSL extension `unpack4xI8` is in: then matmul weights stay
        // i32.
        let pack_int8 = opts.pack_int8;
        let unpack4x = inst
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let half_storage =
            opts.half_storage && adapter.features().contains(wgpu::Features::SHADER_F16);
        if half_storage {
            features |= wgpu::Features::SHADER_F16;
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("sfumato"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("could not open {}: {e}", info.name)))?;
        // Lavapipe starts a compute pool for the adapters' listing and another for the device
        // (its own screen): pin once both exist.
        let pinning = if info.device_type == wgpu::DeviceType::Cpu && info.name.contains("llvmpipe")
        {
            host::pin_lavapipe_workers()
        } else {
            Pinning::NotPlanned
        };
        let mut adapter_key = format!(
            "{} | {:?} | {} | {}",
            info.name, info.backend, info.driver, info.driver_info
        );
        if target.kind == TargetKind::Cpu {
            let cpu = opts.host_cpu.as_deref().unwrap_or("unknown cpu");
            adapter_key += &format!(" | cpu {cpu}");
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
            half_storage,
            pack_int8,
            unpack4x,
            tune: autotune::TuneCache::load(opts.tune_store.clone()),
            opts,
            pipelines: HashMap::new(),
            pool: Vec::new(),
            prepared: Vec::new(),
            chosen: HashMap::new(),
            untuned: BTreeSet::new(),
            measured: false,
            allocated: 0,
            high_water: 0,
            submissions: 0,
            id: kept::next_id(),
            kept_bytes: Arc::default(),
            pinning,
        })
    }

    /// Whether lavapipe's compute threads were pinned one a CPU when this device opened
    /// ([`pin_lavapipe_workers`]).
    pub fn lavapipe_pinning(&self) -> &Pinning {
        &self.pinning
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// What the compiler knows of this adapter (strengths, limits, quirks).
    pub fn target(&self) -> &TargetProfile {
        &self.target
    }

    /// Whether per-dispatch times come from GPU timestamps (the adapter has timestamp queries
    /// and [`DeviceOptions::timestamps`] is on); without, a profile has the run's wall time only.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Whether f16 tensors are stored as f16 on this device (half the bytes; computed in f32):
    /// [`DeviceOptions::half_storage`] on an adapter with `shader-f16`.
    pub fn has_half_storage(&self) -> bool {
        self.half_storage
    }

    /// Queue submissions this device has made: one per run, one per autotune measurement.
    pub fn submissions(&self) -> u64 {
        self.submissions
    }

    /// Turn fusion and the graph passes on or off together (off: [`Optimization::AsBuilt`]).
    pub fn set_fusion(&mut self, on: bool) {
        self.set_optimization(Optimization::fused(on));
    }

    /// Choose how much of the compiler runs: passes and fusion, the passes alone, or neither.
    pub fn set_optimization(&mut self, o: Optimization) {
        self.opts.optimization = o;
        self.drop_prepared();
    }

    /// Force one matmul variant (where it supports the layout), or go back to autotuning.
    pub fn set_matmul_variant(&mut self, v: Option<MatmulVariant>) {
        self.forget_choices(v);
        self.drop_prepared();
    }

    /// Drop pooled buffers and prepared graphs (their constants), freeing their memory.
    pub fn trim(&mut self) {
        self.drain_pool();
        self.drop_prepared();
    }

    /// Nanoseconds on the host's clock ([`DeviceOptions::clock`]).
    fn now_ns(&self) -> u64 {
        self.opts.clock.now_ns()
    }
}
