//! The statistics extension (Triton's): per model and version, the counts and cumulative
//! durations of requests and executions, served at `GET /v2/models[/NAME[/versions/V]]/stats`
//! and by gRPC's `ModelStatistics`, in Triton's schema (`model_stats`, `inference_stats`,
//! `batch_stats`), so `tritonclient`'s `get_inference_statistics` and `perf_analyzer` read them.
//! The Prometheus metrics count the same events; these are the protocol's own view of them.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and a cumulative duration (Triton's `StatisticDuration`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub ns: u64,
}

impl Tally {
    fn add(&mut self, count: u64, d: Duration) {
        self.count = self.count.saturating_add(count);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.ns = self.ns.saturating_add(ns);
    }
}

/// Per request (Triton's `InferStatistics`): `success` and `fail` from arrival to answer,
/// `queue` from arrival to the start of its batch, and the batch's stacking
/// (`compute_input`), device run (`compute_infer`: upload, kernels, readback) and splitting
/// (`compute_output`), each counted once per request of the batch. Sfumato has no response
/// cache: `cache_hit` and `cache_miss` stay 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InferStats {
    pub success: Tally,
    pub fail: Tally,
    pub queue: Tally,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
    pub cache_hit: Tally,
    pub cache_miss: Tally,
}

/// Per batch size: the executions of batches of that many rows (Triton's
/// `InferBatchStatistics`, counted once per execution).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
}

/// One model version's statistics (Triton's `ModelStatistics`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelStats {
    pub name: String,
    pub version: String,
    /// When the last request was answered, in milliseconds since the Unix epoch (0: never).
    pub last_inference: u64,
    /// Inferences: the rows of every execution (padding not counted).
    pub inference_count: u64,
    /// Device executions (batches); with batching fewer than inferences.
    pub execution_count: u64,
    pub inference_stats: InferStats,
    pub batch_stats: Vec<BatchStats>,
}

/// How long each step of one execution took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Execution {
    pub rows: usize,
    pub requests: usize,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

#[derive(Default)]
struct Entry {
    last_inference: u64,
    inference_count: u64,
    execution_count: u64,
    infer: InferStats,
    batches: BTreeMap<u64, BatchStats>,
}

/// Every model version's statistics since the server started (a reload keeps counting).
#[derive(Default)]
pub struct Stats {
    models: Mutex<HashMap<(String, String), Entry>>,
}

impl Stats {
    fn with(&self, model: &str, version: &str, f: impl FnOnce(&mut Entry)) {
        let mut m = self.models.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry((model.to_string(), version.to_string()))
            .or_default());
    }

    /// A request answered after `took`.
    pub fn success(&self, model: &str, version: &str, took: Duration) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.with(model, version, |e| {
            e.infer.success.add(1, took);
            e.last_inference = now;
        });
    }

    /// A request that failed after `took`.
    pub fn fail(&self, model: &str, version: &str, took: Duration) {
        self.with(model, version, |e| e.infer.fail.add(1, took));
    }

    /// A request that waited `waited` in the queue before its batch started.
    pub fn queued(&self, model: &str, version: &str, waited: Duration) {
        self.with(model, version, |e| e.infer.queue.add(1, waited));
    }

    /// One execution: its rows are inferences (as Triton counts them: rows that ran), its
    /// steps count once per execution in its batch size's row, and once per request in the
    /// per-request figures.
    pub fn executed(&self, model: &str, version: &str, x: Execution) {
        let per_request =
            |d: Duration| d.saturating_mul(u32::try_from(x.requests).unwrap_or(u32::MAX));
        self.with(model, version, |e| {
            e.execution_count += 1;
            e.inference_count = e.inference_count.saturating_add(x.rows as u64);
            let r = x.requests as u64;
            e.infer.compute_input.add(r, per_request(x.input));
            e.infer.compute_infer.add(r, per_request(x.infer));
            e.infer.compute_output.add(r, per_request(x.output));
            let b = e
                .batches
                .entry(x.rows as u64)
                .or_insert_with(|| BatchStats {
                    batch_size: x.rows as u64,
                    ..BatchStats::default()
                });
            b.compute_input.add(1, x.input);
            b.compute_infer.add(1, x.infer);
            b.compute_output.add(1, x.output);
        });
    }

    /// The statistics of `name` at `version` (zeros where nothing ran yet).
    pub fn of(&self, name: &str, version: &str) -> ModelStats {
        let m = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = ModelStats {
            name: name.into(),
            version: version.into(),
            ..ModelStats::default()
        };
        if let Some(e) = m.get(&(name.to_string(), version.to_string())) {
            s.last_inference = e.last_inference;
            s.inference_count = e.inference_count;
            s.execution_count = e.execution_count;
            s.inference_stats = e.infer.clone();
            s.batch_stats = e.batches.values().cloned().collect();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_executions_add_up() {
        let s = Stats::default();
        let ms = Duration::from_millis;
        s.queued("m", "1", ms(2));
        s.queued("m", "1", ms(4));
        s.executed(
            "m",
            "1",
            Execution {
                rows: 3,
                requests: 2,
                input: ms(1),
                infer: ms(10),
                output: ms(1),
            },
        );
        s.success("m", "1", ms(15));
        s.success("m", "1", ms(16));
        s.fail("m", "1", ms(1));
        let m = s.of("m", "1");
        // The batch's 3 rows ran as one execution.
        assert_eq!((m.inference_count, m.execution_count), (3, 1));
        let i = &m.inference_stats;
        assert_eq!(
            i.success,
            Tally {
                count: 2,
                ns: 31_000_000
            }
        );
        assert_eq!(
            i.fail,
            Tally {
                count: 1,
                ns: 1_000_000
            }
        );
        assert_eq!(
            i.queue,
            Tally {
                count: 2,
                ns: 6_000_000
            }
        );
        // The batch's device time once per request, and once in its batch size's row.
        assert_eq!(
            i.compute_infer,
            Tally {
                count: 2,
                ns: 20_000_000
            }
        );
        assert_eq!(m.batch_stats.len(), 1);
        assert_eq!(m.batch_stats[0].batch_size, 3);
        assert_eq!(
            m.batch_stats[0].compute_infer,
            Tally {
                count: 1,
                ns: 10_000_000
            }
        );
        assert!(m.last_inference > 0);
        // Another version, or a model that never ran: zeros.
        assert_eq!(s.of("m", "2").inference_count, 0);
        assert_eq!(s.of("other", "1").inference_stats, InferStats::default());
    }
}
