//! Benchmark timing: warm-up, timed runs, medians, and their report.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sfumato_core::{Device, Graph, Tensor};
use std::time::Instant;

/// Medians over the timed runs of one graph.
pub(crate) struct Timing {
    pub(crate) device: String,
    pub(crate) kernel: String,
    pub(crate) median_wall_ms: f64,
    /// `None` where the runs had no per-kernel times (no timestamp queries: the profile's
    /// source is `WholeRun`).
    pub(crate) median_kernel_ms: Option<f64>,
}

impl Timing {
    pub(crate) fn gflops(&self, flops: f64) -> f64 {
        flops / (self.median_wall_ms * 1e-3).max(1e-12) / 1e9
    }

    /// GFLOP/s from the kernel time alone (`None` where the device reported none).
    pub(crate) fn gflops_kernel(&self, flops: f64) -> Option<f64> {
        self.median_kernel_ms
            .filter(|&ms| ms > 0.0)
            .map(|ms| flops / (ms * 1e-3) / 1e9)
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) const WARMUP_RUNS: usize = 2;

/// Two warm-up runs (the first lowers, uploads constants and autotunes), then `iters` timed
/// runs: host wall time around each whole run (dispatch and readback) and the profile's kernel time.
pub(crate) fn time_graph_with(
    dev: &mut dyn Device,
    graph: &Graph,
    inputs: &[Tensor],
    iters: u64,
    show_progress: bool,
) -> Result<Timing> {
    for i in 0..WARMUP_RUNS {
        dev.run(graph, inputs)
            .with_context(|| format!("warm-up run {} on {}", i + 1, dev.name()))?;
    }
    let bar = if show_progress {
        ProgressBar::new(iters)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("timing");
    let mut walls = Vec::new();
    let mut kernels = Vec::new();
    let mut kernel = String::new();
    let mut per_kernel = true;
    for i in 0..iters {
        let t = Instant::now();
        let out = dev
            .run(graph, inputs)
            .with_context(|| format!("timed run {} on {}", i + 1, dev.name()))?;
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        kernels.push(out.profile.kernel_ns() as f64 / 1e6);
        per_kernel &= out.profile.per_entry_times();
        if kernel.is_empty() {
            kernel = kernel_names(&out.profile);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Timing {
        device: dev.name(),
        kernel,
        median_wall_ms: median(walls),
        median_kernel_ms: per_kernel.then(|| median(kernels)),
    })
}

/// The kernels a run dispatched, distinct and in order ("matmul_tiled", "im2col+matmul_rb4").
pub(crate) fn kernel_names(p: &sfumato_core::Profile) -> String {
    let mut names: Vec<&str> = Vec::new();
    for e in &p.entries {
        if !names.contains(&e.kernel.as_str()) {
            names.push(&e.kernel);
        }
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join("+")
    }
}

pub(crate) fn usize_of(x: u64, what: &str) -> Result<usize> {
    usize::try_from(x).with_context(|| format!("--{what} {x} does not fit this platform's usize"))
}

pub(crate) fn checked_numel(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{what} {dims:?} has too many elements"))
}

pub(crate) fn print_text_timing(t: &Timing) {
    println!("device:      {}", t.device);
    println!("kernel:      {}", t.kernel);
    println!(
        "median wall:   {:.3} ms (dispatch + readback)",
        t.median_wall_ms
    );
    match t.median_kernel_ms {
        Some(ms) => println!("median kernel: {ms:.3} ms"),
        None => println!("median kernel: not timed (no timestamp queries: wall time only)"),
    }
}
