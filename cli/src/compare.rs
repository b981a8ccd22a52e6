//! `sfumato bench compare`: the benchmark cases on Sfumato (fused, then unfused) and on
//! burn-wgpu (the `bench-burn` binary, built outside the workspace), one case after another on
//! the same adapter, so every ratio comes from figures measured minutes apart on one machine.

use crate::args::positive;
use crate::open::open_wgpu_tuned;
use crate::timing::{median, time_graph_with, Timing, WARMUP_RUNS};
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::op::Conv2d;
use sfumato_core::{DType, Device, Graph, Tensor};
use sfumato_zoo::models::{self, ModelOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The cases, named as bench-burn names them.
pub const CASES: &[&str] = &[
    "matmul",
    "conv",
    "resnet-bottleneck",
    "bert-layer",
    "gpt2-decode",
];

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Cases to run (default: all): matmul, conv, resnet-bottleneck, bert-layer, gpt2-decode.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Timed runs per case and side (after two warm-up runs).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    iters: u64,
    /// The bench-burn binary (default: $SFUMATO_BURN_BENCH). Without it only Sfumato runs.
    #[arg(long)]
    burn_bin: Option<PathBuf>,
    /// Skip the unfused Sfumato runs.
    #[arg(long)]
    no_unfused: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One case as Sfumato builds it: the graph, its inputs and its FLOPs.
fn case_graph(name: &str) -> Result<(Graph, Vec<Tensor>, f64)> {
    Ok(match name {
        "matmul" => {
            let n = 1024;
            let mut g = Graph::new();
            let a = g.input("a", DType::F32, [n, n]);
            let b = g.constant(Tensor::random(DType::F32, [n, n], 2))?;
            let c = g.matmul(a, b)?;
            let r = g.relu(c)?;
            g.set_outputs(&[r])?;
            let x = Tensor::random(DType::F32, [n, n], 1);
            (g, vec![x], 2.0 * (n as f64).powi(3))
        }
        "conv" => {
            let (b, c, s) = (8, 64, 56);
            let mut g = Graph::new();
            let x = g.input("x", DType::F32, [b, c, s, s]);
            let w = g.constant(Tensor::random(DType::F32, [c, c, 3, 3], 2))?;
            let y = g.conv2d(x, w, None, Conv2d::padded(1, 1))?;
            let y = g.relu(y)?;
            g.set_outputs(&[y])?;
            let flops = 2.0 * (b * c * c * 9 * s * s) as f64;
            (g, vec![Tensor::random(DType::F32, [b, c, s, s], 1)], flops)
        }
        "resnet-bottleneck" | "bert-layer" | "gpt2-decode" => {
            let model = if name == "bert-layer" {
                "bert-base"
            } else {
                name
            };
            let o = ModelOptions::default();
            let (g, inputs) = models::by_name_with(model, &o)?;
            (g, inputs, models::flops(model, &o)?)
        }
        other => bail!("unknown case '{other}'; cases: {}", CASES.join(", ")),
    })
}

/// burn's median for a case, from one bench-burn run.
fn burn_case(bin: &PathBuf, case: &str, iters: u64) -> Result<f64> {
    let out = Command::new(bin)
        .args(["--case", case, "--iters", &iters.to_string(), "--json"])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} --case {case} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["case"] == case {
                return v["median_ms"]
                    .as_f64()
                    .context("bench-burn printed no median_ms");
            }
        }
    }
    bail!("bench-burn printed no result for {case}: {text}")
}

/// Fused and unfused timed in alternation, run by run (each side first in every other pair), so
/// a slow spell of a shared machine falls on both: the medians of each side's wall times and
/// the median of the per-pair ratios (unfused / fused).
fn time_interleaved(
    fused: &mut dyn Device,
    unfused: &mut dyn Device,
    g: &Graph,
    inputs: &[Tensor],
    iters: u64,
) -> Result<(f64, f64, f64)> {
    for i in 0..WARMUP_RUNS {
        fused
            .run(g, inputs)
            .with_context(|| format!("fused warm-up run {}", i + 1))?;
        unfused
            .run(g, inputs)
            .with_context(|| format!("unfused warm-up run {}", i + 1))?;
    }
    let (mut f, mut u, mut r) = (Vec::new(), Vec::new(), Vec::new());
    let timed = |dev: &mut dyn Device, what: &str, i: u64| -> Result<f64> {
        let t = Instant::now();
        dev.run(g, inputs)
            .with_context(|| format!("{what} timed run {}", i + 1))?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for i in 0..iters {
        // Each side goes first in every other pair.
        let (tf, tu) = if i % 2 == 0 {
            let tf = timed(fused, "fused", i)?;
            (tf, timed(unfused, "unfused", i)?)
        } else {
            let tu = timed(unfused, "unfused", i)?;
            (timed(fused, "fused", i)?, tu)
        };
        f.push(tf);
        u.push(tu);
        r.push(tu / tf.max(1e-9));
    }
    Ok((median(f), median(u), median(r)))
}

/// The kernels dispatched per run, from one profiled run.
fn dispatches(dev: &mut dyn Device, g: &Graph, inputs: &[Tensor]) -> Result<usize> {
    Ok(dev.run(g, inputs)?.profile.entries.len())
}

pub fn compare(a: &CompareArgs) -> Result<()> {
    let cases: Vec<String> = if a.cases.is_empty() {
        CASES.iter().map(|s| s.to_string()).collect()
    } else {
        a.cases.clone()
    };
    for c in &cases {
        if !CASES.contains(&c.as_str()) {
            bail!("unknown case '{c}'; cases: {}", CASES.join(", "));
        }
    }
    let burn = a
        .burn_bin
        .clone()
        .or_else(|| std::env::var_os("SFUMATO_BURN_BENCH").map(PathBuf::from));
    if burn.is_none() && !a.json {
        eprintln!("note: no --burn-bin (or SFUMATO_BURN_BENCH): burn is not run; see bench-burn/README.md");
    }
    let mut fused_dev = open_wgpu_tuned("", true)?;
    let mut unfused_dev = open_wgpu_tuned("", false)?;
    let adapter = fused_dev.name();
    let cpu = sfumato_wgpu::cpu_model();
    let iters = a.iters;
    let mut rows = Vec::new();
    if !a.json {
        println!("adapter: {adapter}\ncpu:     {cpu}\n");
        println!(
            "{:<18} {:>11} {:>11} {:>11} {:>9} {:>9} {:>10}",
            "case", "ours ms", "unfused ms", "burn ms", "vs burn", "fusion", "dispatches"
        );
    }
    for case in &cases {
        let (g, inputs, flops) = case_graph(case)?;
        // (ours, unfused, speedup): with the unfused side, the two alternate run by run.
        let (ours, unfused, speedup) = if a.no_unfused {
            let t: Timing = time_graph_with(&mut fused_dev, &g, &inputs, iters, false)
                .with_context(|| format!("{case}: fused run"))?;
            (t.median_wall_ms, None, None)
        } else {
            let (f, u, r) = time_interleaved(&mut fused_dev, &mut unfused_dev, &g, &inputs, iters)
                .with_context(|| format!("{case}: fused and unfused runs"))?;
            (f, Some(u), Some(r))
        };
        let nd_fused = dispatches(&mut fused_dev, &g, &inputs)?;
        let nd_unfused = if a.no_unfused {
            None
        } else {
            let n = dispatches(&mut unfused_dev, &g, &inputs)?;
            unfused_dev.trim();
            Some(n)
        };
        fused_dev.trim();
        let burn_ms = match &burn {
            Some(bin) => Some(burn_case(bin, case, iters)?),
            None => None,
        };
        let row = serde_json::json!({
            "case": case,
            "flops": flops,
            "ours_ms": ours,
            "ours_gflops": flops / (ours * 1e-3) / 1e9,
            "unfused_ms": unfused,
            "burn_ms": burn_ms,
            "burn_gflops": burn_ms.map(|b| flops / (b * 1e-3) / 1e9),
            "ratio_vs_burn": burn_ms.map(|b| b / ours),
            "fusion_speedup": speedup,
            "dispatches_fused": nd_fused,
            "dispatches_unfused": nd_unfused,
            "iters": iters,
        });
        if !a.json {
            let f = |v: Option<f64>, unit: &str| {
                v.map(|x| format!("{x:.2}{unit}"))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{:<18} {:>11.1} {:>11} {:>11} {:>9} {:>9} {:>10}",
                case,
                ours,
                f(unfused, ""),
                f(burn_ms, ""),
                f(burn_ms.map(|b| b / ours), "x"),
                f(speedup, "x"),
                match nd_unfused {
                    Some(u) => format!("{nd_fused}/{u}"),
                    None => nd_fused.to_string(),
                }
            );
        }
        rows.push(row);
    }
    if a.json {
        let v = serde_json::json!({ "adapter": adapter, "cpu": cpu, "cases": rows });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("\n(medians of {iters} runs, wall time per run including readback; vs burn = burn ms / ours ms; fusion = the median over runs of unfused ms / fused ms, the two run in alternation; dispatches fused/unfused)");
    }
    Ok(())
}
