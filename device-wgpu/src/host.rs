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

/// The environment variable Mesa's llvmpipe (lavapipe, the CPU adapter) reads, once, for the
/// count of threads that run a compute dispatch's workgroups.
pub const LAVAPIPE_THREADS_ENV: &str = "LP_NUM_THREADS";

/// Where the process has not set [`LAVAPIPE_THREADS_ENV`]: sets it to
/// [`lavapipe_threads_for`] the CPUs the process may use, and returns that count (`None` where
/// it was set, or there is no such environment: wasm32).
///
/// Why: llvmpipe defaults to one compute thread a CPU and splits a dispatch's workgroups
/// between them in equal shares. Its queue thread wakes them together and then sleeps, and
/// Linux's scheduler often queues both woken threads on the waker's CPU; a dispatch of a
/// millisecond or two ends before the load balancer moves one, so the two shares run one after
/// the other. On a 2-CPU Xeon, EfficientNet-Lite0 (75 dispatches of 0.1-4 ms) ran in 111-116 ms
/// of kernel time at 1 and at 2 threads (1.0-1.2 CPUs busy), 62-73 ms at 4; ResNet-50 (252 longer
/// dispatches) in 531-538 ms at 2 and 539-551 ms at 4, and 650-674 ms at 3 (unequal shares on 2
/// CPUs). Twice the CPUs keeps the shares equal per CPU and leaves the balancer a thread to move.
///
/// Call it first thing in `main`, before any other thread starts: setting the environment is
/// not safe while another thread may read it. Lavapipe reads the variable when the Vulkan
/// instance is created, so later calls change nothing for an open device.
pub fn set_lavapipe_threads() -> Option<usize> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if std::env::var_os(LAVAPIPE_THREADS_ENV).is_some() {
            return None;
        }
        let n = lavapipe_threads_for(host_cpus());
        std::env::set_var(LAVAPIPE_THREADS_ENV, n.to_string());
        Some(n)
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// The lavapipe compute threads [`set_lavapipe_threads`] sets on a host of `cpus` CPUs: twice
/// the CPUs, within llvmpipe's ceiling (`LP_MAX_THREADS`, 32 in Mesa 22).
pub fn lavapipe_threads_for(cpus: usize) -> usize {
    (2 * cpus.max(1)).min(32)
}

/// The compute threads lavapipe runs with in this process: [`LAVAPIPE_THREADS_ENV`] where set,
/// else its default (one a CPU).
pub fn lavapipe_threads() -> usize {
    lavapipe_threads_given(
        std::env::var(LAVAPIPE_THREADS_ENV).ok().as_deref(),
        host_cpus(),
    )
}

/// [`lavapipe_threads`] for a value of [`LAVAPIPE_THREADS_ENV`] (`None`: unset) on a host of
/// `cpus` CPUs. A value llvmpipe cannot read as a count leaves its default.
pub fn lavapipe_threads_given(value: Option<&str>, cpus: usize) -> usize {
    value
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(cpus.max(1))
}

/// The CPUs this process may use (1 where that cannot be known).
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lavapipe_gets_twice_the_cpus_within_its_ceiling() {
        assert_eq!(lavapipe_threads_for(2), 4);
        assert_eq!(lavapipe_threads_for(1), 2);
        assert_eq!(lavapipe_threads_for(0), 2);
        assert_eq!(lavapipe_threads_for(64), 32);
    }

    #[test]
    fn a_set_thread_count_is_read_as_lavapipe_reads_it() {
        assert_eq!(lavapipe_threads_given(None, 2), 2);
        assert_eq!(lavapipe_threads_given(Some("6"), 2), 6);
        assert_eq!(lavapipe_threads_given(Some(" 3 "), 2), 3);
        assert_eq!(lavapipe_threads_given(Some("many"), 8), 8);
    }
}
