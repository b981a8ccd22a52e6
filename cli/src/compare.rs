//! `sfumato bench compare`: the benchmark cases on Sfumato (three ways: the graph as built, the
//! graph passes alone, the passes and fusion, so the passes' gain is not counted as fusion's)
//! and on burn-wgpu (the `bench-burn` binary, built outside the workspace), one case after
//! another on the same adapter (checked: bench-burn says which it opened, and another one is
//! refused), so every ratio comes from figures measured minutes apart on one machine.

use crate::args::positive;
use crate::open::open_wgpu_tuned;
use crate::timing::{median, time_graph_with, Timing, WARMUP_RUNS};
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::op::Conv2d;
use sfumato_core::{DType, Device, Graph, Optimization, Tensor};
use sfumato_zoo::models::{self, ModelOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The cases, named as bench-burn names them (`matmul-b-input` is burn's `matmul`: burn's
/// operands are both device tensors anyway).
pub const CASES: &[&str] = &[
    "matmul",
    "matmul-b-input",
    "conv",
    "resnet-bottleneck",
    "bert-layer",
    "gpt2-decode",
];

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Cases to run (default: all): matmul, matmul-b-input (both operands run inputs), conv,
    /// resnet-bottleneck, bert-layer, gpt2-decode.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Timed runs per case and side (after two warm-up runs).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    iters: u64,
    /// The bench-burn binary (default: $SFUMATO_BURN_BENCH). Without it only Sfumato runs.
    #[arg(long)]
    burn_bin: Option<PathBuf>,
    /// Skip the passes-only and as-built Sfumato runs (the fused one alone).
    #[arg(long)]
    no_unfused: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One case as Sfumato builds it: the graph, its inputs and its FLOPs.
pub(crate) fn case_graph(name: &str) -> Result<(Graph, Vec<Tensor>, f64)> {
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
        "matmul-b-input" => {
            // Both operands run inputs, as burn's are: B cannot be laid out ahead of time.
            let n = 1024;
            let mut g = Graph::new();
            let a = g.input("a", DType::F32, [n, n]);
            let b = g.input("b", DType::F32, [n, n]);
            let c = g.matmul(a, b)?;
            let r = g.relu(c)?;
            g.set_outputs(&[r])?;
            let x = Tensor::random(DType::F32, [n, n], 1);
            let y = Tensor::random(DType::F32, [n, n], 2);
            (g, vec![x, y], 2.0 * (n as f64).powi(3))
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

/// An adapter as both sides name it: wgpu's adapter name and backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdapterId {
    pub(crate) name: String,
    pub(crate) backend: String,
}

impl std::fmt::Display for AdapterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.backend)
    }
}

impl AdapterId {
    /// The adapter of a bench-burn `--json` line (`{"adapter": NAME, "backend": BACKEND, ...}`).
    fn from_burn_line(v: &serde_json::Value) -> Option<Self> {
        Some(AdapterId {
            name: v["adapter"].as_str()?.to_string(),
            backend: v["backend"].as_str()?.to_string(),
        })
    }
}

/// Refuse figures from two adapters: a ratio of burn's time on one adapter to Sfumato's on
/// another says nothing about either.
pub(crate) fn check_same_adapter(ours: &AdapterId, burn: &AdapterId) -> Result<()> {
    if ours != burn {
        bail!(
            "burn ran on {burn} and Sfumato on {ours}: their times would not compare; make both \
             pick one adapter (SFUMATO_ADAPTER=<name> for Sfumato; for burn \
             CUBECL_WGPU_DEFAULT_DEVICE=DiscreteGpu(0), IntegratedGpu(0) or Cpu)"
        );
    }
    Ok(())
}

/// The JSON lines bench-burn printed, and the adapter it says it ran on.
fn burn_lines(bin: &PathBuf, args: &[&str]) -> Result<(Vec<serde_json::Value>, AdapterId)> {
    let out = Command::new(bin)
        .args(args)
        .arg("--json")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let adapter = lines
        .iter()
        .find_map(AdapterId::from_burn_line)
        .with_context(|| {
            format!(
                "{} printed no adapter line ({{\"adapter\", \"backend\"}}): rebuild it from bench-burn/",
                bin.display()
            )
        })?;
    Ok((lines, adapter))
}

/// The adapter bench-burn opens (`--adapter`: it opens the device, says which, and runs nothing).
fn burn_adapter(bin: &PathBuf) -> Result<AdapterId> {
    Ok(burn_lines(bin, &["--adapter"])?.1)
}

/// burn's median for a case, from one bench-burn run, checked to have run on `ours`.
fn burn_case(bin: &PathBuf, case: &str, iters: u64, ours: &AdapterId) -> Result<f64> {
    let iters = iters.to_string();
    let (lines, adapter) = burn_lines(bin, &["--case", case, "--iters", &iters])?;
    check_same_adapter(ours, &adapter)?;
    for v in &lines {
        if v["case"] == case {
            return v["median_ms"]
                .as_f64()
                .context("bench-burn printed no median_ms");
        }
    }
    bail!("bench-burn printed no result for {case}")
}

/// The three Sfumato configurations, least optimized first: the graph as built, the graph
/// passes alone, the passes and fusion.
const MODES: [Optimization; 3] = [
    Optimization::AsBuilt,
    Optimization::PassesOnly,
    Optimization::PassesAndFusion,
];

/// Medians of interleaved runs: per device, its wall time; per round, the ratios of
/// neighbouring devices' times.
struct Interleaved {
    /// Median wall time per device, in the order given (ms).
    ms: Vec<f64>,
    /// Median over rounds of `time[i] / time[i + 1]`, per neighbouring pair.
    ratios: Vec<f64>,
    /// Median over rounds of `time[0] / time[last]`.
    total: f64,
}

/// The devices timed in alternation, run by run (each round starts with the next device), so a
/// slow spell of a shared machine falls on all of them.
fn time_interleaved(
    devs: &mut [(&str, &mut dyn Device)],
    g: &Graph,
    inputs: &[Tensor],
    iters: u64,
) -> Result<Interleaved> {
    for i in 0..WARMUP_RUNS {
        for (what, dev) in devs.iter_mut() {
            dev.run(g, inputs)
                .with_context(|| format!("{what} warm-up run {}", i + 1))?;
        }
    }
    let n = devs.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    for i in 0..iters {
        let mut round = vec![0.0; n];
        for j in 0..n {
            let d = (i as usize + j) % n;
            let (what, dev) = &mut devs[d];
            let t = Instant::now();
            dev.run(g, inputs)
                .with_context(|| format!("{what} timed run {}", i + 1))?;
            round[d] = t.elapsed().as_secs_f64() * 1e3;
        }
        for (d, t) in round.into_iter().enumerate() {
            times[d].push(t);
        }
    }
    let ratio = |a: usize, b: usize| -> f64 {
        median(
            times[a]
                .iter()
                .zip(&times[b])
                .map(|(x, y)| x / y.max(1e-9))
                .collect(),
        )
    };
    Ok(Interleaved {
        ratios: (0..n.saturating_sub(1)).map(|i| ratio(i, i + 1)).collect(),
        total: ratio(0, n - 1),
        ms: times.into_iter().map(median).collect(),
    })
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
    // Least optimized first; with --no-unfused the fused one alone.
    let modes: &[Optimization] = if a.no_unfused { &MODES[2..] } else { &MODES };
    let graphs = cases
        .iter()
        .map(|c| case_graph(c))
        .collect::<Result<Vec<_>>>()?;
    let gs: Vec<&Graph> = graphs.iter().map(|(g, _, _)| g).collect();
    let mut devs = modes
        .iter()
        .map(|&m| open_wgpu_tuned("", m, &gs))
        .collect::<Result<Vec<_>>>()?;
    let adapter = devs[0].name();
    let ours = AdapterId {
        name: devs[0].adapter().name.clone(),
        backend: devs[0].adapter().backend.clone(),
    };
    let burn_adapter = match &burn {
        Some(bin) => {
            let b = burn_adapter(bin)?;
            check_same_adapter(&ours, &b)?;
            Some(b)
        }
        None => None,
    };
    let cpu = sfumato_wgpu::cpu_model();
    let iters = a.iters;
    let mut rows = Vec::new();
    if !a.json {
        println!("adapter: {adapter}");
        if let Some(b) = &burn_adapter {
            println!("burn:    {b} (the same adapter)");
        }
        println!("cpu:     {cpu}\n");
        println!(
            "{:<18} {:>9} {:>10} {:>11} {:>9} {:>8} {:>7} {:>7} {:>7} {:>10}",
            "case",
            "fused ms",
            "passes ms",
            "as-built ms",
            "burn ms",
            "vs burn",
            "passes",
            "fusion",
            "both",
            "dispatches"
        );
    }
    for (case, (g, inputs, flops)) in cases.iter().zip(graphs) {
        let fused_at = devs.len() - 1;
        let (ours_ms, passes_ms, as_built_ms, speedups) = if devs.len() == 1 {
            let t: Timing = time_graph_with(&mut devs[0], &g, &inputs, iters, false)
                .with_context(|| format!("{case}: fused run"))?;
            (t.median_wall_ms, None, None, None)
        } else {
            let mut named: Vec<(&str, &mut dyn Device)> = devs
                .iter_mut()
                .zip(["as-built", "passes-only", "fused"])
                .map(|(d, w)| (w, d as &mut dyn Device))
                .collect();
            let t = time_interleaved(&mut named, &g, &inputs, iters)
                .with_context(|| format!("{case}: the three Sfumato runs"))?;
            (
                t.ms[2],
                Some(t.ms[1]),
                Some(t.ms[0]),
                Some((t.ratios[0], t.ratios[1], t.total)),
            )
        };
        let mut nd = Vec::new();
        for d in devs.iter_mut() {
            nd.push(dispatches(d, &g, &inputs)?);
            d.trim();
        }
        let burn_ms = match &burn {
            Some(bin) => {
                let burn_name = if *case == "matmul-b-input" {
                    "matmul"
                } else {
                    case
                };
                Some(burn_case(bin, burn_name, iters, &ours)?)
            }
            None => None,
        };
        let row = serde_json::json!({
            "case": case,
            "flops": flops,
            "ours_ms": ours_ms,
            "ours_gflops": flops / (ours_ms * 1e-3) / 1e9,
            "passes_only_ms": passes_ms,
            "as_built_ms": as_built_ms,
            "burn_ms": burn_ms,
            "burn_gflops": burn_ms.map(|b| flops / (b * 1e-3) / 1e9),
            "ratio_vs_burn": burn_ms.map(|b| b / ours_ms),
            "speedup_passes": speedups.map(|s| s.0),
            "speedup_fusion": speedups.map(|s| s.1),
            "speedup_passes_and_fusion": speedups.map(|s| s.2),
            "dispatches_fused": nd[fused_at],
            "dispatches_passes_only": (nd.len() == 3).then(|| nd[1]),
            "dispatches_as_built": (nd.len() == 3).then(|| nd[0]),
            "iters": iters,
        });
        if !a.json {
            let f = |v: Option<f64>, unit: &str| {
                v.map(|x| format!("{x:.2}{unit}"))
                    .unwrap_or_else(|| "-".into())
            };
            let nds: Vec<String> = nd.iter().rev().map(|n| n.to_string()).collect();
            println!(
                "{:<18} {:>9.1} {:>10} {:>11} {:>9} {:>8} {:>7} {:>7} {:>7} {:>10}",
                case,
                ours_ms,
                f(passes_ms, ""),
                f(as_built_ms, ""),
                f(burn_ms, ""),
                f(burn_ms.map(|b| b / ours_ms), "x"),
                f(speedups.map(|s| s.0), "x"),
                f(speedups.map(|s| s.1), "x"),
                f(speedups.map(|s| s.2), "x"),
                nds.join("/")
            );
        }
        rows.push(row);
    }
    if a.json {
        let v = serde_json::json!({
            "adapter": adapter,
            "burn_adapter": burn_adapter.map(|b| b.to_string()),
            "cpu": cpu,
            "cases": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("\n(medians of {iters} runs, wall time per run including readback; fused = the graph passes and fusion, passes = the passes alone (one kernel per op they leave), as-built = neither; vs burn = burn ms / fused ms; passes = as-built ms / passes ms, fusion = passes ms / fused ms, both = as-built ms / fused ms, each the median over rounds of the three run in alternation; dispatches fused/passes/as-built)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, backend: &str) -> AdapterId {
        AdapterId {
            name: name.into(),
            backend: backend.into(),
        }
    }

    #[test]
    fn another_adapter_or_backend_is_refused() {
        let ours = id("llvmpipe (LLVM 19.1.7, 256 bits)", "Vulkan");
        assert!(check_same_adapter(&ours, &ours.clone()).is_ok());
        let e = check_same_adapter(&ours, &id("NVIDIA GeForce RTX 4090", "Vulkan"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NVIDIA GeForce RTX 4090 (Vulkan)") && e.contains("llvmpipe (LLVM"),
            "{e}"
        );
        assert!(check_same_adapter(&ours, &id("llvmpipe (LLVM 19.1.7, 256 bits)", "Gl")).is_err());
    }

    #[test]
    fn the_adapter_comes_from_bench_burns_adapter_line() {
        let line: serde_json::Value = serde_json::from_str(
            r#"{"adapter": "llvmpipe (LLVM 19.1.7, 256 bits)", "backend": "Vulkan", "device_type": "Cpu"}"#,
        )
        .unwrap();
        assert_eq!(
            AdapterId::from_burn_line(&line),
            Some(id("llvmpipe (LLVM 19.1.7, 256 bits)", "Vulkan"))
        );
        let case: serde_json::Value =
            serde_json::from_str(r#"{"case": "matmul", "median_ms": 1.0}"#).unwrap();
        assert_eq!(AdapterId::from_burn_line(&case), None);
    }
}
