//! What the device needs from its host, handed in through [`DeviceOptions`](crate::DeviceOptions)
//! rather than taken from `std::time`, `std::fs` or the environment inside the device, so the
//! same device runs natively and in a browser (wasm32, where none of those exist).
//!
//! - [`Clock`]: monotonic nanoseconds, for wall times (adapters without timestamp queries, the
//!   autotuner, the run's wall time). Native: [`SystemClock`]; in a browser the page supplies
//!   one over `performance.now()`; [`NoClock`] reads 0 (wall times unknown).
//! - [`TuneStore`]: where the autotune cache's text is loaded from and saved to. Native:
//!   [`FileTuneStore`]; `None` keeps the cache in memory only.
//!
//! [`set_lavapipe_threads`] is for a program's `main`, not the device: it sets the environment
//! lavapipe reads when the Vulkan instance is created.

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

/// The environment variable Mesa's llvmpipe (lavapipe, the CPU adapter) reads, once, for its
/// thread count: the threads that run a compute dispatch's workgroups (and rasterize, where
/// llvmpipe also draws, as for the viewer's OpenGL window).
pub const LAVAPIPE_THREADS_ENV: &str = "LP_NUM_THREADS";

/// llvmpipe's ceiling on its thread count (`LP_MAX_THREADS` in Mesa 22): a larger value is
/// clamped to it.
pub const LAVAPIPE_MAX_THREADS: usize = 32;

/// Where the process has not set [`LAVAPIPE_THREADS_ENV`]: sets it to
/// [`lavapipe_threads_for`] the CPUs the process may use, and returns that count (`None` where
/// it was set, where one CPU leaves llvmpipe's default, or where there is no such environment:
/// wasm32).
///
/// Why: llvmpipe defaults to one thread a CPU and splits a dispatch's workgroups into one equal
/// share a thread. Its queue thread wakes them and sleeps, and Linux often queues two of the
/// woken threads on one CPU: the first runs its share, then takes the other's before that thread
/// has run, and a model of short dispatches runs on one CPU. Twice the CPUs keeps the shares
/// equal per CPU and leaves the balancer threads to move. README, "Lavapipe's compute threads",
/// has the measurements (EfficientNet-Lite0 alone 1.71x faster on 2 CPUs; the other zoo models
/// within 0.94-1.01x).
///
/// # Safety
///
/// Setting the environment is not safe while another thread may read or write it: call this
/// first thing in `main`, before any other thread starts. Lavapipe reads the variable when the
/// Vulkan instance is created, so a later call changes nothing for an open device.
pub unsafe fn set_lavapipe_threads() -> Option<usize> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if std::env::var_os(LAVAPIPE_THREADS_ENV).is_some() {
            return None;
        }
        let cpus = host_cpus();
        if cpus < 2 {
            return None;
        }
        let n = lavapipe_threads_for(cpus);
        std::env::set_var(LAVAPIPE_THREADS_ENV, n.to_string());
        Some(n)
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// The thread count [`set_lavapipe_threads`] sets on a host of `cpus` CPUs (2 or more): twice
/// the CPUs, within [`LAVAPIPE_MAX_THREADS`].
pub fn lavapipe_threads_for(cpus: usize) -> usize {
    (2 * cpus).min(LAVAPIPE_MAX_THREADS)
}

/// The threads lavapipe runs with in this process: [`LAVAPIPE_THREADS_ENV`] where set, else its
/// default.
pub fn lavapipe_threads() -> usize {
    lavapipe_threads_given(
        std::env::var(LAVAPIPE_THREADS_ENV).ok().as_deref(),
        host_cpus(),
    )
}

/// [`lavapipe_threads`] for a value of [`LAVAPIPE_THREADS_ENV`] (`None`: unset) on a host of
/// `cpus` CPUs, read as llvmpipe reads it (C's `strtoll` in base 0): after any blanks, a `0x`
/// prefix reads hexadecimal digits, a leading `0` octal ones, else decimal, as far as they go
/// (`"4x"` is 4; no digits leave the default), clamped to [`LAVAPIPE_MAX_THREADS`]. The default
/// is one a CPU, and none on one CPU (llvmpipe then runs a dispatch on its queue thread).
pub fn lavapipe_threads_given(value: Option<&str>, cpus: usize) -> usize {
    let default = if cpus > 1 { cpus } else { 0 };
    let set = value.and_then(|v| {
        let v = v.trim_start().trim_start_matches('+');
        let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None if v.starts_with('0') => (v, 8),
            None => (v, 10),
        };
        let n = digits.len() - digits.trim_start_matches(|c: char| c.is_digit(radix)).len();
        usize::from_str_radix(&digits[..n], radix).ok()
    });
    set.unwrap_or(default).min(LAVAPIPE_MAX_THREADS)
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
        assert_eq!(lavapipe_threads_for(3), 6);
        assert_eq!(lavapipe_threads_for(64), LAVAPIPE_MAX_THREADS);
    }

    #[test]
    fn a_set_thread_count_is_read_as_llvmpipe_reads_it() {
        assert_eq!(lavapipe_threads_given(None, 2), 2);
        assert_eq!(lavapipe_threads_given(None, 1), 0);
        assert_eq!(lavapipe_threads_given(Some("6"), 2), 6);
        assert_eq!(lavapipe_threads_given(Some(" 3 "), 2), 3);
        assert_eq!(lavapipe_threads_given(Some("4x"), 2), 4);
        assert_eq!(lavapipe_threads_given(Some("0x8"), 2), 8);
        assert_eq!(lavapipe_threads_given(Some("010"), 2), 8);
        assert_eq!(lavapipe_threads_given(Some("0"), 2), 0);
        assert_eq!(lavapipe_threads_given(Some("many"), 8), 8);
        assert_eq!(lavapipe_threads_given(Some("64"), 8), LAVAPIPE_MAX_THREADS);
    }
}
