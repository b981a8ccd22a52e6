//! The Device trait every backend implements, and the Profile every run returns.

use crate::kept::{Feed, Kept, WriteBack};
use crate::{Error, Graph, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Where a timing came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimingSource {
    /// GPU timestamp queries around the dispatch.
    GpuTimestamp,
    /// Host wall clock around the CPU reference's work.
    Cpu,
    /// A cycle model (simulated devices).
    Simulated,
    /// No time of its own: the run was one submission without timestamp queries (the adapter
    /// has none, they were turned off, or the device measured kernels earlier, after which
    /// lavapipe's stamps no longer bracket the dispatches), so the only figure is the whole run's host wall
    /// time, [`Profile::wall_ns`]. The entry's start and duration are 0; the table and the
    /// trace say so instead of showing them.
    WholeRun,
}

/// One timed unit of work: a kernel dispatch (or a CPU op) and the graph nodes it covers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpTiming {
    /// The node names this work computes (several once ops are fused).
    pub nodes: Vec<String>,
    /// The op names, parallel to `nodes`.
    pub ops: Vec<String>,
    /// The kernel's name (for the wgpu device, its template and variant).
    pub kernel: String,
    /// Start, relative to the start of the run, in nanoseconds.
    pub start_ns: u64,
    pub duration_ns: u64,
    pub source: TimingSource,
    /// A simulated device's cycles and cube use for this work (`None` elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<SimulatedOp>,
}

/// What a cycle model says of one op: its cycles at the chip's clock, the share of the cube's
/// peak its multiply-accumulates use over them, and the engine that bounds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulatedOp {
    pub cycles: u64,
    pub cube_utilization: f64,
    pub bound: String,
    /// The cube products' tilings (one for a matmul or conv, two for attention; none for
    /// vector work), for a schedule view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiles: Vec<TileSchedule>,
}

/// How a simulated cube product was tiled: the problem, the base block and how the blocks are
/// dealt over the cores (block `i` of the `m_blocks x n_blocks` grid, row-major, goes to core
/// `i % cores`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileSchedule {
    /// The schedule in words, as `sfumato tile` prints it.
    pub text: String,
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub base_m: u32,
    pub base_n: u32,
    pub base_k: u32,
    pub m_blocks: u64,
    pub n_blocks: u64,
    pub k_steps: u64,
    pub cores: u32,
}

/// What getting a graph ready took, on the run that prepared it (later runs of the same graph
/// on the same device report none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The passes, the plan, lowering and pipeline creation. (A driver that compiles a pipeline
    /// at its first dispatch, as lavapipe, compiles inside the run itself.)
    pub kernels_ns: u64,
    /// Uploading the constants (the weights), once per graph and device.
    pub weights_ns: u64,
    pub weight_bytes: u64,
}

/// Per-op timings of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    pub device: String,
    pub entries: Vec<OpTiming>,
    /// Host wall clock of the whole run (upload, dispatch, readback).
    pub wall_ns: u64,
    /// Most device memory the run held at once: weights, inputs, intermediates and pooled
    /// buffers (`None` where the device does not track it).
    pub memory_bytes: Option<u64>,
    /// The set-up this run did first (`None` where the graph was ready, or on a device that
    /// does not report it).
    pub setup: Option<Setup>,
}

impl Profile {
    /// Sum of the entries' durations (0 where they have none: [`TimingSource::WholeRun`]).
    pub fn kernel_ns(&self) -> u64 {
        self.entries.iter().map(|e| e.duration_ns).sum()
    }

    /// Where the entries' times came from (the first entry's source; a run has one).
    pub fn source(&self) -> Option<TimingSource> {
        self.entries.first().map(|e| e.source)
    }

    /// Whether the entries carry times of their own (false: only the run's wall time is known).
    pub fn per_entry_times(&self) -> bool {
        self.source().is_some_and(|s| s != TimingSource::WholeRun)
    }

    /// A text table: one row per entry, then totals, sorted by run order.
    pub fn table(&self) -> String {
        let total = self.kernel_ns().max(1) as f64;
        let timed = self.per_entry_times();
        let mut s = format!(
            "{:<28} {:<16} {:<22} {:>10} {:>7}\n",
            "node", "op", "kernel", "time", "share"
        );
        for e in &self.entries {
            let (time, share) = if timed {
                (
                    fmt_ns(e.duration_ns),
                    format!("{:.1}%", 100.0 * e.duration_ns as f64 / total),
                )
            } else {
                ("-".into(), "-".into())
            };
            s += &format!(
                "{:<28} {:<16} {:<22} {:>10} {:>7}",
                truncate(&e.nodes.join("+"), 28),
                truncate(&e.ops.join("+"), 16),
                truncate(&e.kernel, 22),
                time,
                share
            );
            if let Some(sim) = &e.simulated {
                s += &format!(
                    " {:>10} cycles, cube {:>5.1}%, {}-bound",
                    sim.cycles,
                    100.0 * sim.cube_utilization,
                    sim.bound
                );
            }
            s += "\n";
        }
        if timed || self.entries.is_empty() {
            let source = self.source().map(|s| format!("{s:?}")).unwrap_or_default();
            s += &format!(
                "{} kernels, kernel time {} ({source}), wall {} on {}\n",
                self.entries.len(),
                fmt_ns(self.kernel_ns()),
                fmt_ns(self.wall_ns),
                self.device
            );
        } else {
            s += &format!(
                "{} kernels, no per-kernel times (WholeRun: one submission without timestamp \
                 queries), wall of the whole run {} on {}\n",
                self.entries.len(),
                fmt_ns(self.wall_ns),
                self.device
            );
        }
        if let Some(m) = self.memory_bytes {
            s += &format!(
                "device memory high-water: {:.1} MiB\n",
                m as f64 / (1024.0 * 1024.0)
            );
        }
        s
    }

    /// The profile as Chrome-trace JSON (opens in Perfetto and chrome://tracing): one event per
    /// entry, or where the entries have no times of their own ([`TimingSource::WholeRun`]) one
    /// event spanning the run's wall time that lists the kernels in order.
    pub fn chrome_trace(&self) -> serde_json::Value {
        let source = self.source().map(|s| format!("{s:?}"));
        if !self.per_entry_times() && !self.entries.is_empty() {
            let kernels: Vec<&str> = self.entries.iter().map(|e| e.kernel.as_str()).collect();
            let event = serde_json::json!({
                "name": format!("whole run: {} kernels, not timed one by one", self.entries.len()),
                "cat": "run",
                "ph": "X",
                "ts": 0.0,
                "dur": self.wall_ns as f64 / 1000.0,
                "pid": 1,
                "tid": 1,
                "args": { "kernels": kernels, "source": source },
            });
            return serde_json::json!({
                "traceEvents": [event],
                "displayTimeUnit": "ms",
                "otherData": { "device": self.device, "wall_ns": self.wall_ns, "timing_source": source },
            });
        }
        let events: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.nodes.join("+"),
                    "cat": e.ops.join("+"),
                    "ph": "X",
                    "ts": e.start_ns as f64 / 1000.0,
                    "dur": e.duration_ns as f64 / 1000.0,
                    "pid": 1,
                    "tid": 1,
                    "args": { "kernel": e.kernel, "ops": e.ops, "source": format!("{:?}", e.source),
                              "simulated": e.simulated },
                })
            })
            .collect();
        serde_json::json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": { "device": self.device, "wall_ns": self.wall_ns, "timing_source": source },
        })
    }
}

/// `s` cut to `n` characters, the last one an ellipsis where it was cut (table columns).
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// "1.234 ms", "56.7 µs".
pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// What a run returns: the graph's outputs, in order, and the profile.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub profile: Profile,
}

/// A device runs whole graphs. Inputs are given in the order of [`Graph::inputs`].
pub trait Device {
    /// A human-readable name (adapter name and backend, "cpu-reference", ...).
    fn name(&self) -> String;

    /// Run the graph on these inputs; outputs come back in the order of [`Graph::outputs`].
    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput>;

    /// Keep `t` for later runs to read in place ([`Device::run_fed`]): a decoder's KV cache.
    /// The default keeps it on the host; the wgpu device keeps it in a buffer of its own.
    fn keep(&mut self, t: Tensor) -> Result<Kept> {
        Ok(Kept::host(t))
    }

    /// A kept tensor's current contents, on the host.
    fn read_kept(&mut self, k: &Kept) -> Result<Tensor> {
        k.host_tensor().ok_or_else(|| {
            Error::Device(format!(
                "{}: the kept tensor {} {} was kept by another device",
                self.name(),
                k.dtype(),
                k.shape()
            ))
        })
    }

    /// Run with each input fed a host tensor or a kept one, then write outputs into kept
    /// tensors ([`WriteBack`], after every kernel of the run). Outputs come back as from
    /// [`Device::run`]. The default copies kept tensors through the host
    /// ([`crate::kept::run_fed_on_host`]).
    fn run_fed(
        &mut self,
        graph: &Graph,
        feeds: &[Feed<'_>],
        writes: &[WriteBack<'_>],
    ) -> Result<RunOutput> {
        crate::kept::run_fed_on_host(self, graph, feeds, writes)
    }

    /// The saved-run record ([`crate::RunRecord`]) of `out`, a run of `graph` on this device:
    /// the graph as the device ran it, its groups (with their kernels' source where the device
    /// generates any) and the profile. The default records `graph` as given, one group per node,
    /// as the CPU reference runs it; a device that compiles the graph records what it ran.
    fn record(&mut self, model: &str, graph: &Graph, out: &RunOutput) -> Result<crate::RunRecord> {
        Ok(crate::RunRecord::new(
            model,
            graph,
            None,
            out.profile.clone(),
            &out.outputs,
        ))
    }

    /// Kernel choices this device made by a guess since it opened, where measuring could find a
    /// faster one (the wgpu device: matmul shape classes run on the cost model's pick because
    /// no measured winner was cached). 0 for a device with nothing to tune.
    fn untuned_kernels(&self) -> usize {
        0
    }
}

/// Check run inputs against the graph's declared inputs (count, dtypes, shapes).
pub fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<()> {
    let feeds: Vec<Feed<'_>> = inputs.iter().map(Feed::Tensor).collect();
    crate::kept::check_feeds(graph, &feeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(source: TimingSource, durations: &[u64]) -> Profile {
        let mut start = 0;
        let entries = durations
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let e = OpTiming {
                    nodes: vec![format!("n{i}")],
                    ops: vec!["Relu".into()],
                    kernel: format!("k{i}"),
                    start_ns: start,
                    duration_ns: d,
                    source,
                    simulated: None,
                };
                start += d;
                e
            })
            .collect();
        Profile {
            device: "test".into(),
            entries,
            wall_ns: 5_000_000,
            memory_bytes: None,
            setup: None,
        }
    }

    /// Timed entries show their times and shares; entries of a run timed whole show none (not
    /// a made-up 0 or share), and the totals line and the trace say the wall time is the figure.
    #[test]
    fn a_run_timed_whole_shows_no_per_kernel_times() {
        let timed = profile(TimingSource::GpuTimestamp, &[1_000, 3_000]);
        assert!(timed.per_entry_times());
        let t = timed.table();
        assert!(t.contains("25.0%") && t.contains("75.0%"), "{t}");
        assert!(t.contains("kernel time 4.0 µs (GpuTimestamp)"), "{t}");
        let tr = timed.chrome_trace();
        assert_eq!(tr["traceEvents"].as_array().unwrap().len(), 2);
        assert_eq!(tr["otherData"]["timing_source"], "GpuTimestamp");

        let whole = profile(TimingSource::WholeRun, &[0, 0]);
        assert!(!whole.per_entry_times());
        let t = whole.table();
        assert!(!t.contains('%') && !t.contains("µs"), "{t}");
        assert!(
            t.contains("no per-kernel times (WholeRun") && t.contains("whole run 5.000 ms"),
            "{t}"
        );
        let tr = whole.chrome_trace();
        let events = tr["traceEvents"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["dur"], 5000.0);
        assert_eq!(
            events[0]["args"]["kernels"],
            serde_json::json!(["k0", "k1"])
        );
        assert_eq!(tr["otherData"]["timing_source"], "WholeRun");
    }
}
