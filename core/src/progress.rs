//! Progress of long work (building kernels, uploading weights, tuning, running a suite), told
//! to whoever shows it: the command draws bars, a library user may pass [`NoProgress`].

/// A receiver of progress: stages of counted steps.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A new stage of `total` steps (0 when the count is unknown), replacing any stage before.
    fn stage(&self, name: &str, total: u64);
    /// One step of the current stage is done; `detail` says which.
    fn step(&self, detail: &str);
    /// The current stage is over.
    fn done(&self);
    /// A line for the user (shown above any bar, not mixed into it).
    fn note(&self, line: &str);
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn step(&self, _detail: &str) {}
    fn done(&self) {}
    fn note(&self, _line: &str) {}
}
