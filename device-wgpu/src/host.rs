//! What the device needs from its host, handed in through [`DeviceOptions`](crate::DeviceOptions)
//! rather than taken from `std::time`, `std::fs` or the environment inside the device, so the
//! same device runs natively and in a browser (wasm32, where none of those exist).
//!
//! - [`Clock`]: monotonic nanoseconds, for wall times (adapters without timestamp queries, the
//!   autotuner, the run's wall time). Native: [`SystemClock`]; in a browser the page supplies
//!   one over `performance.now()`; [`NoClock`] reads 0 (wall times unknown).
//! - [`TuneStore`]: where the autotune cache's text is loaded from and saved to. Native:
//!   [`FileTuneStore`]; `None` keeps the cache in memory only.

use std::fmt::Debug;

/// A monotonic clock.
pub trait Clock: Send + Sync + Debug {
    /// Nanoseconds since some fixed origin.
    fn now_ns(&self) -> u64;
}

/// Storage for the autotune cache's JSON text.
pub trait TuneStore: Send + Sync + Debug {
    /// The stored text, if any (a missing or unreadable store is an empty cache).
    fn load(&self) -> Option<String>;
    /// Replace the stored text (errors are reported as warnings: losing the cache is harmless).
    fn save(&self, text: &str) -> Result<(), String>;
}

/// A clock that always reads 0: wall times are unknown (GPU timestamps still work).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn now_ns(&self) -> u64 {
        0
    }
}

/// The host's monotonic clock (`std::time::Instant`), native only.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// The autotune cache in a file (written atomically: a temporary file, then a rename), native
/// only.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug)]
pub struct FileTuneStore {
    pub path: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileTuneStore {
    /// `dir/autotune.json`.
    pub fn in_dir(dir: impl Into<std::path::PathBuf>) -> Self {
        FileTuneStore {
            path: dir.into().join("autotune.json"),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl TuneStore for FileTuneStore {
    fn load(&self) -> Option<String> {
        std::fs::read_to_string(&self.path).ok()
    }

    fn save(&self, text: &str) -> Result<(), String> {
        let write = || -> std::io::Result<()> {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = self.path.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(tmp, &self.path)
        };
        write().map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// The platform's default clock: [`SystemClock`] natively, [`NoClock`] on wasm32 (a page hands
/// in its own).
pub fn default_clock() -> std::sync::Arc<dyn Clock> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::sync::Arc::new(SystemClock::default())
    }
    #[cfg(target_arch = "wasm32")]
    {
        std::sync::Arc::new(NoClock)
    }
}

/// The host CPU's model name (lavapipe reports one adapter name on very different CPUs, so a
/// CPU adapter's autotune choices are keyed by it); the architecture where it cannot be read.
pub fn cpu_model() -> String {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(m) = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    }) {
        return m;
    }
    std::env::consts::ARCH.to_string()
}
