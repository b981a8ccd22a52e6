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
//! lavapipe reads when the Vulkan instance is created, and plans the pinning of lavapipe's
//! workers. That pinning is the one host action a device takes itself: a lavapipe device that
//! opens calls [`pin_lavapipe_workers`], which reads `/proc/self/task` on Linux where `main`
//! planned it, and does nothing otherwise (a browser included).

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

/// The environment variable that turns off the pinning of lavapipe's workers where it is `0`
/// (then [`set_lavapipe_threads`] gives lavapipe twice the CPUs' threads, unpinned).
pub const PIN_ENV: &str = "SFUMATO_PIN_LAVAPIPE";

/// Set by [`set_lavapipe_threads`] where it gave lavapipe one thread a CPU to be pinned.
static PIN_PLANNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the last [`pin_lavapipe_workers`] did (`None`: not called yet in this process).
static LAST_PINNING: std::sync::Mutex<Option<Pinning>> = std::sync::Mutex::new(None);

/// What the last [`pin_lavapipe_workers`] in this process did: the last lavapipe device opened
/// (`WgpuDevice::new` calls it), `None` where none has.
pub fn last_lavapipe_pinning() -> Option<Pinning> {
    LAST_PINNING.lock().map_or(None, |p| p.clone())
}

/// Where the process has not set [`LAVAPIPE_THREADS_ENV`]: sets it for the CPUs the process may
/// use, and returns the count (`None` where it was set, where one CPU leaves llvmpipe's
/// default, or where there is no such environment: wasm32). On Linux with up to 32 CPUs,
/// unless [`PIN_ENV`] is `0`, that is one thread a CPU, each to be pinned to its own CPU by
/// [`pin_lavapipe_workers`] once a device is open; elsewhere [`lavapipe_threads_for`] the CPUs
/// (twice as many).
///
/// Why: llvmpipe defaults to one thread a CPU and splits a dispatch's workgroups into one equal
/// share a thread. Its queue thread wakes them and sleeps, and Linux often queues two of the
/// woken threads on one CPU: the first runs its share, then takes the other's before that thread
/// has run, and a model of short dispatches runs on one CPU. Pinned, each thread runs on its own
/// CPU; unpinned, twice the CPUs keeps the shares equal per CPU and leaves the balancer threads
/// to move. README, "Lavapipe's compute threads", has the measurements (EfficientNet-Lite0 alone
/// 8.9 img/s with 2 threads unpinned, 15.7 with 4, 16.3 with 2 pinned, on 2 CPUs).
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
        let pin = cfg!(target_os = "linux")
            && std::env::var(PIN_ENV).map_or(true, |v| v.trim() != "0")
            && std::path::Path::new("/proc/self/task").is_dir()
            && cpus <= LAVAPIPE_MAX_THREADS;
        let n = if pin {
            cpus
        } else {
            lavapipe_threads_for(cpus)
        };
        std::env::set_var(LAVAPIPE_THREADS_ENV, n.to_string());
        PIN_PLANNED.store(pin, std::sync::atomic::Ordering::Relaxed);
        Some(n)
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// Whether [`set_lavapipe_threads`] planned to pin lavapipe's workers (each device open pins
/// its pools: [`pin_lavapipe_workers`]).
pub fn pinning_planned() -> bool {
    PIN_PLANNED.load(std::sync::atomic::Ordering::Relaxed)
}

/// What [`pin_lavapipe_workers`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Not asked for: [`set_lavapipe_threads`] did not plan it (the thread count set by the
    /// user, [`PIN_ENV`] `0`, one CPU, not Linux, or a program that does not call it).
    NotPlanned,
    /// The workers of `pools` compute pools (one a lavapipe screen the process opened), worker
    /// i of each on CPU `cpus[i % cpus.len()]`.
    Pinned { pools: usize, cpus: Vec<usize> },
    /// Planned but not done, and why: lavapipe then runs one thread a CPU unpinned (short
    /// dispatches may run on one CPU; set `LP_NUM_THREADS` to twice the CPUs).
    Failed(String),
}

impl std::fmt::Display for Pinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pinning::NotPlanned => write!(f, "not pinned"),
            Pinning::Pinned { pools, cpus } => write!(
                f,
                "pinned one a CPU (CPUs {cpus:?}; {pools} pool{})",
                if *pools == 1 { "" } else { "s" }
            ),
            Pinning::Failed(why) => write!(f, "NOT pinned: {why}"),
        }
    }
}

/// Where [`set_lavapipe_threads`] planned it: pins each of lavapipe's compute workers to a CPU
/// of its own (worker i of a pool to the process's allowed CPU i), in every pool the process
/// has (found by [`lavapipe_pools`] in `/proc/self/task`). Call it once a device is open (the
/// pools exist once the adapters are enumerated); pinning a pool again changes nothing. A
/// failure is returned, and logged, not raised: the device runs unpinned.
pub fn pin_lavapipe_workers() -> Pinning {
    #[cfg(target_os = "linux")]
    let out = if pinning_planned() {
        linux::pin(lavapipe_threads())
    } else {
        Pinning::NotPlanned
    };
    #[cfg(not(target_os = "linux"))]
    let out = Pinning::NotPlanned;
    if let Ok(mut last) = LAST_PINNING.lock() {
        *last = Some(out.clone());
    }
    if let Pinning::Failed(why) = &out {
        tracing::warn!(
            "lavapipe's compute threads could not be pinned ({why}); short dispatches may run on \
             one CPU: set {LAVAPIPE_THREADS_ENV} to twice the CPUs, or {PIN_ENV}=0"
        );
    }
    out
}

/// The compute pools of lavapipe's screens among a process's threads, `(thread id, name)` in
/// thread-id order, for pools of `n` threads. Mesa 22's llvmpipe starts a screen's `n`
/// rasterizer threads, which name themselves `llvmpipe-0` .. `llvmpipe-{n-1}`, then its compute
/// pool's `n` workers, which keep their creator's name. So a pool is the `n` threads after
/// `llvmpipe-{n-1}`, all of one name that is not llvmpipe's. An error where a screen's threads
/// are laid out otherwise (a thread not named yet, another Mesa) or where there are none.
pub fn lavapipe_pools(threads: &[(u32, String)], n: usize) -> Result<Vec<Vec<u32>>, String> {
    if n == 0 {
        return Err("lavapipe runs no compute threads".into());
    }
    let mut pools = Vec::new();
    for (i, _) in threads
        .iter()
        .enumerate()
        .filter(|(_, t)| t.1 == "llvmpipe-0")
    {
        let rast = threads.get(i..i + n).unwrap_or_default();
        let named = rast.len() == n
            && rast
                .iter()
                .enumerate()
                .all(|(j, t)| t.1 == format!("llvmpipe-{j}"));
        let workers = threads.get(i + n..i + 2 * n).unwrap_or_default();
        let name = workers.first().map(|t| t.1.as_str());
        if !named
            || workers.len() != n
            || workers.iter().any(|t| Some(t.1.as_str()) != name)
            || name.is_some_and(|m| m.starts_with("llvmpipe-"))
        {
            return Err(format!(
                "the threads after thread {} (llvmpipe-0) are not {n} rasterizer threads and {n} \
                 workers",
                threads[i].0
            ));
        }
        pools.push(workers.iter().map(|t| t.0).collect());
    }
    if pools.is_empty() {
        return Err(
            "no thread is named llvmpipe-0 (not lavapipe, or a Mesa that names its \
                    threads otherwise)"
                .into(),
        );
    }
    Ok(pools)
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{lavapipe_pools, Pinning};

    /// The process's threads, `(thread id, name)` in thread-id order.
    fn threads() -> Result<Vec<(u32, String)>, String> {
        let dir =
            std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // A thread that has exited since the listing is skipped.
            if let Ok(name) = std::fs::read_to_string(e.path().join("comm")) {
                out.push((tid, name.trim_end_matches('\n').to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The CPUs the process (its main thread) may run on.
    fn allowed_cpus() -> Result<Vec<usize>, String> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
        // its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let r = unsafe { libc::sched_getaffinity(libc::getpid(), size, &mut set) };
        if r != 0 {
            return Err(format!(
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect())
    }

    fn pin_thread(tid: u32, cpu: usize) -> Result<(), String> {
        // SAFETY: as in `allowed_cpus`; CPU_SET's index is below CPU_SETSIZE (an allowed CPU).
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        let r = unsafe {
            libc::sched_setaffinity(
                tid as libc::pid_t,
                std::mem::size_of::<libc::cpu_set_t>(),
                &set,
            )
        };
        if r != 0 {
            return Err(format!(
                "sched_setaffinity(thread {tid}, CPU {cpu}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub(super) fn pin(n: usize) -> Pinning {
        let cpus = match allowed_cpus() {
            Ok(c) if c.len() >= 2 => c,
            Ok(c) => return Pinning::Failed(format!("the process may use {} CPU", c.len())),
            Err(e) => return Pinning::Failed(e),
        };
        // A rasterizer thread names itself once it runs: look again a few times.
        let mut last = String::new();
        for _ in 0..20 {
            match threads().and_then(|t| lavapipe_pools(&t, n)) {
                Ok(pools) => {
                    for pool in &pools {
                        for (i, &tid) in pool.iter().enumerate() {
                            if let Err(e) = pin_thread(tid, cpus[i % cpus.len()]) {
                                return Pinning::Failed(e);
                            }
                        }
                    }
                    let used = n.min(cpus.len());
                    return Pinning::Pinned {
                        pools: pools.len(),
                        cpus: cpus[..used].to_vec(),
                    };
                }
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Pinning::Failed(last)
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

    fn listing(names: &[&str]) -> Vec<(u32, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (100 + i as u32, n.to_string()))
            .collect()
    }

    #[test]
    fn lavapipe_pools_follow_the_rasterizer_threads() {
        // A `sfumato bench zoo` process with LP_NUM_THREADS=4 (Mesa 22.3): two screens, each
        // with its rasterizer threads, its pool and its disk-cache thread.
        let mut names = vec!["sfumato"];
        for _ in 0..2 {
            names.extend(["llvmpipe-0", "llvmpipe-1", "llvmpipe-2", "llvmpipe-3"]);
            names.extend(["sfumato"; 4]);
            names.push("sfumato:disk$0");
        }
        names.push("tokio-runtime-w");
        let t = listing(&names);
        assert_eq!(
            lavapipe_pools(&t, 4).unwrap(),
            vec![vec![105, 106, 107, 108], vec![114, 115, 116, 117]]
        );
        // Another count than the process's finds no pool laid out so.
        assert!(lavapipe_pools(&t, 2).is_err());
        assert!(lavapipe_pools(&t, 0).is_err());
        // A rasterizer thread that has not named itself yet.
        let mut early = t.clone();
        early[3].1 = "sfumato".into();
        assert!(lavapipe_pools(&early, 4).is_err());
        // A pool still being started: fewer workers than threads.
        let short = listing(&["main", "llvmpipe-0", "llvmpipe-1", "main"]);
        assert!(lavapipe_pools(&short, 2).is_err());
        // Workers of different names are not one pool.
        let mixed = listing(&["main", "llvmpipe-0", "llvmpipe-1", "main", "other"]);
        assert!(lavapipe_pools(&mixed, 2).is_err());
        // No llvmpipe threads: another adapter.
        assert!(lavapipe_pools(&listing(&["main", "worker"]), 2).is_err());
        // A pool started from a named thread keeps that name.
        let served = listing(&["main", "llvmpipe-0", "llvmpipe-1", "engine", "engine"]);
        assert_eq!(lavapipe_pools(&served, 2).unwrap(), vec![vec![103, 104]]);
    }

    #[test]
    fn pinning_is_not_planned_unless_main_asked_for_it() {
        assert_eq!(pin_lavapipe_workers(), Pinning::NotPlanned);
        assert_eq!(Pinning::NotPlanned.to_string(), "not pinned");
        assert_eq!(
            Pinning::Pinned {
                pools: 2,
                cpus: vec![0, 1]
            }
            .to_string(),
            "pinned one a CPU (CPUs [0, 1]; 2 pools)"
        );
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
