//! How to open the device: plain values and the host's services ([`Clock`], [`TuneStore`]).
//! [`DeviceOptions::default`] reads nothing from the environment; a native program that wants
//! the `SFUMATO_*` variables asks [`DeviceOptions::from_env`] (the CLI and the tests do).

use crate::host::{default_clock, Clock, TuneStore};
use sfumato_core::{NoProgress, Optimization, Progress};
use sfumato_shaders::MatmulVariant;
use std::sync::Arc;

/// When the device measures matmul variants (a run never waits on tuning unless asked to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Never: every matmul runs the cost model's pick for the target
    /// ([`MatmulVariant::candidates`]'s first); the cache is not read.
    Off,
    /// The winner the cache holds for the shape class (measured earlier, by
    /// [`WgpuDevice::tune`](crate::WgpuDevice::tune) or `sfumato tune`), else the cost model's
    /// pick; nothing is measured, so a first run gives its answer without tuning. The default.
    Cached,
    /// As `Cached`, and a shape class the cache lacks is measured while the graph is prepared:
    /// the cost model's first `candidates` variants, the fastest cached.
    Measure { candidates: usize },
}

/// How many of the cost model's candidates tuning measures by default: on lavapipe the measured
/// best is among the model's first four on every zoo shape
/// (`shaders/tests/cost_model.rs`), and each candidate costs a pipeline build (1-7 s there).
pub const DEFAULT_TUNE_CANDIDATES: usize = 4;

/// How to open the device.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// A substring of the adapter's name, backend or type to prefer (else a discrete GPU first,
    /// a CPU adapter last).
    pub adapter: Option<String>,
    /// When matmul variants are measured ([`Tuning`]; default: only cached winners are used).
    pub tuning: Tuning,
    /// Force one matmul variant where it supports the layout.
    pub matmul: Option<MatmulVariant>,
    /// Where the autotune cache is kept (`None`: in memory only).
    pub tune_store: Option<Arc<dyn TuneStore>>,
    /// How much of the compiler runs: the graph passes then fusion (the default), the passes
    /// alone (one kernel per op they leave), or neither (one kernel per op of the graph as
    /// given).
    pub optimization: Optimization,
    /// A loop budget kernels must stay under, on top of the adapter's
    /// ([`AdapterSummary::loop_budget`](crate::AdapterSummary)): the smaller of the two holds.
    /// A small one exercises the splitting and refusals on small shapes.
    pub loop_budget: Option<u64>,
    /// Keep naga's per-load bounds checks in matmul kernels (off by default: every matmul
    /// template clamps its own loads).
    pub checked_matmul: bool,
    /// Time each dispatch with the adapter's timestamp queries where it has them (the default).
    /// Off, the device acts as an adapter without them does: a run is still one submission,
    /// and its profile has no per-dispatch times, only the whole run's wall time
    /// ([`TimingSource::WholeRun`](sfumato_core::TimingSource::WholeRun)). The tests turn it off
    /// to reach that path on an adapter that has timestamps.
    pub timestamps: bool,
    /// The host's clock (wall times; the autotuner's measurements).
    pub clock: Arc<dyn Clock>,
    /// The host CPU's model, for a CPU adapter's autotune key (lavapipe reports one adapter name
    /// on CPUs whose best kernels differ); `from_env` reads it natively ([`crate::cpu_model`]).
    pub host_cpu: Option<String>,
    /// Let wgpu read its own `WGPU_*` environment variables (backends, debug flags).
    pub wgpu_env: bool,
    /// Where long work reports its steps: building kernels, uploading weights, tuning.
    pub progress: Arc<dyn Progress>,
    /// How many prepared graphs (compiled kernels, uploaded weights) the device keeps; the
    /// oldest is dropped for a new one past it. A server with several models, each at several
    /// batch sizes, keeps more.
    pub max_prepared: usize,
    /// Store f16 tensors as f16 (half the bytes) where the adapter has `shader-f16` (the
    /// default); off, or on an adapter without it, they live as f32 ([`sfumato_shaders::half`]).
    pub half_storage: bool,
    /// Run elementwise kernels whose every float tensor is stored as f16 in f16 arithmetic
    /// (the default; [`sfumato_shaders::half::compute_half`]); off, they compute in f32 on f16
    /// storage. Matmul, conv, reductions, softmax and layer norm accumulate in f32 either way.
    pub half_compute: bool,
    /// Store constant integer-matmul and integer-conv operands whose values fit in i8 packed,
    /// four to a word, read by `matmul_int_v4_i8` (where the adapter has `unpack4xI8`) and
    /// `conv2d_int_i8` (the default; [`sfumato_shaders::packed`]); off, they are i32 as every
    /// small integer.
    pub pack_int8: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            adapter: None,
            tuning: Tuning::Cached,
            matmul: None,
            tune_store: None,
            optimization: Optimization::PassesAndFusion,
            loop_budget: None,
            checked_matmul: false,
            timestamps: true,
            clock: default_clock(),
            host_cpu: None,
            wgpu_env: false,
            progress: Arc::new(NoProgress),
            max_prepared: crate::prepare::PREPARED_MAX,
            half_storage: true,
            half_compute: true,
            pack_int8: true,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl DeviceOptions {
    /// Options from the environment, as the `sfumato` command reads them:
    /// `SFUMATO_ADAPTER=<substring>`, `SFUMATO_AUTOTUNE=0` ([`Tuning::Off`]) or `1`
    /// ([`Tuning::Measure`] of `SFUMATO_TUNE_CANDIDATES`, default
    /// [`DEFAULT_TUNE_CANDIDATES`]; unset: [`Tuning::Cached`]), `SFUMATO_MATMUL=<variant>`,
    /// `SFUMATO_FUSION=0` (no passes, no fusion: [`Optimization::AsBuilt`]),
    /// `SFUMATO_LOOP_BUDGET=<n>`, `SFUMATO_CHECKED_MATMUL=1`, `SFUMATO_TIMESTAMPS=0` (no
    /// timestamp queries), `SFUMATO_F16_STORAGE=0` (f16 tensors as f32), and the autotune cache
    /// in [`default_cache_dir`].
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        DeviceOptions {
            adapter: var("SFUMATO_ADAPTER"),
            tuning: match var("SFUMATO_AUTOTUNE").as_deref() {
                Some("0") => Tuning::Off,
                Some("1") => Tuning::Measure {
                    candidates: var("SFUMATO_TUNE_CANDIDATES")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(DEFAULT_TUNE_CANDIDATES),
                },
                _ => Tuning::Cached,
            },
            matmul: var("SFUMATO_MATMUL").and_then(|v| MatmulVariant::from_name(&v)),
            tune_store: default_cache_dir()
                .map(|d| Arc::new(crate::host::FileTuneStore::in_dir(d)) as Arc<dyn TuneStore>),
            optimization: Optimization::fused(var("SFUMATO_FUSION").is_none_or(|v| v != "0")),
            loop_budget: var("SFUMATO_LOOP_BUDGET").and_then(|v| {
                let b = v.parse().ok();
                if b.is_none() {
                    eprintln!("warning: SFUMATO_LOOP_BUDGET={v} is not a number; ignored");
                }
                b
            }),
            checked_matmul: var("SFUMATO_CHECKED_MATMUL").is_some_and(|v| v == "1"),
            timestamps: var("SFUMATO_TIMESTAMPS").is_none_or(|v| v != "0"),
            clock: default_clock(),
            host_cpu: Some(crate::host::cpu_model()),
            wgpu_env: true,
            progress: Arc::new(NoProgress),
            max_prepared: crate::prepare::PREPARED_MAX,
            half_storage: var("SFUMATO_F16_STORAGE").is_none_or(|v| v != "0"),
            half_compute: var("SFUMATO_F16_COMPUTE").is_none_or(|v| v != "0"),
            pack_int8: var("SFUMATO_INT8_PACK").is_none_or(|v| v != "0"),
        }
    }
}

/// `$SFUMATO_CACHE_DIR`, else `$XDG_CACHE_HOME/sfumato`, else `$HOME/.cache/sfumato`.
#[cfg(not(target_arch = "wasm32"))]
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(d) = std::env::var_os("SFUMATO_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("sfumato"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sfumato"))
}

/// Open the default device for a test (the environment's adapter choice, the cost model's matmul
/// picks, no cache), or explain why not. With `SFUMATO_REQUIRE_GPU=1` a missing adapter is a failure;
/// without it the test skips loudly.
#[cfg(not(target_arch = "wasm32"))]
pub fn test_device() -> Option<crate::WgpuDevice> {
    let opts = DeviceOptions {
        tuning: Tuning::Off,
        tune_store: None,
        ..DeviceOptions::from_env()
    };
    match crate::WgpuDevice::new(opts) {
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
