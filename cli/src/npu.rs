//! The simulated NPU on the command line: `sfumato run MODEL --device npu-sim --chip CHIP` and
//! `sfumato tile matmul`.

use crate::run::RunArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sfumato_core::{Device, Optimization};
use sfumato_npu_sim::{tiling, Chip, NpuSim, Problem, Tiling, Unit};

/// Run (or only predict) a model on the simulated chip and print what the cycle model says.
pub(crate) fn run_npu(a: &RunArgs) -> Result<()> {
    let name = &a.model.model;
    let mut dev = NpuSim::by_name(&a.chip)?.with_optimization(Optimization::fused(!a.no_fusion));
    println!("device: {}", dev.name());
    let t0 = std::time::Instant::now();
    let mut batch = 1;
    let mut built = None;
    let prediction = if name.ends_with(".onnx") {
        anyhow::ensure!(
            !a.cycles_only,
            "--cycles-only takes a built-in model; an ONNX file runs functionally"
        );
        crate::onnx::run(
            std::path::Path::new(name),
            &mut dev,
            &a.input,
            &a.dim,
            a.output.as_deref(),
            a.save_run.as_deref(),
            a.model.precision.precision(),
            // The simulator has nothing to compile: one run, its prediction.
            false,
        )?;
        dev.last_prediction()
            .cloned()
            .context("the run left no prediction")?
    } else {
        let (graph, inputs) = a.model.build()?;
        batch = inputs
            .first()
            .and_then(|t| t.dims().first().copied())
            .unwrap_or(1);
        let p = if a.cycles_only {
            let p = dev
                .predict(&graph)
                .with_context(|| format!("predicting '{name}' on {}", dev.name()))?;
            if let Some(path) = &a.save_run {
                // No outputs: the cycle model alone computes none.
                let out = sfumato_core::RunOutput {
                    outputs: vec![],
                    profile: sfumato_npu_sim::device::profile_of(&p, dev.name(), 0),
                };
                crate::run::save_run(&mut dev, name, &graph, &out, path)?;
            }
            p
        } else {
            let out = dev
                .run(&graph, &inputs)
                .with_context(|| format!("running '{name}' on {}", dev.name()))?;
            for (i, (&v, t)) in graph.outputs().iter().zip(&out.outputs).enumerate() {
                println!("output {i} '{}': {}", graph.value(v).name, t.summary());
            }
            if let Some(path) = &a.save_run {
                crate::run::save_run(&mut dev, name, &graph, &out, path)?;
            }
            dev.last_prediction()
                .cloned()
                .context("the run left no prediction")?
        };
        built = Some(graph);
        p
    };
    let wall = t0.elapsed();
    println!(
        "model:  {name} (batch {batch}){}",
        if a.no_fusion { ", unfused" } else { "" }
    );
    println!();
    print!("{}", prediction.summary(10));
    let layout = |p: &sfumato_npu_sim::Prediction| {
        (
            p.ops.iter().filter(|o| o.unit == Unit::Layout).count(),
            p.cycles_of(Unit::Layout) / p.clock_mhz,
        )
    };
    if let Some(graph) = &built {
        let naive = dev.predict_naive_layouts(graph)?;
        let ((n, us), (nn, nus)) = (layout(&prediction), layout(&naive));
        println!(
            "layout transforms (ND <-> NZ fractals): {n} placed, {us:.1} µs; a transform around \
             every cube op would be {nn}, {nus:.1} µs ({:.3} ms in all against {:.3})",
            naive.seconds() * 1e3,
            prediction.seconds() * 1e3
        );
    }
    println!(
        "predicted throughput: {:.1} items/s (batch {batch} in {:.3} ms)",
        batch as f64 / prediction.seconds(),
        prediction.seconds() * 1e3
    );
    println!(
        "simulation took {:.2} s on this machine ({})",
        wall.as_secs_f64(),
        if a.cycles_only {
            "cycle model only"
        } else {
            "functional: every cube tile computed"
        }
    );
    if let Some(path) = &a.trace {
        let text = serde_json::to_string_pretty(&prediction.engine_trace())?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "per-engine trace written to {} (open it in https://ui.perfetto.dev)",
            path.display()
        );
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub(crate) enum TileCommand {
    /// C[M,N] = A[M,K] @ B[K,N] in fp16 on the cube.
    Matmul(TileArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TileArgs {
    #[arg(long)]
    m: u64,
    #[arg(long)]
    n: u64,
    #[arg(long)]
    k: u64,
    /// Independent products of this size.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    #[arg(long, default_value = "ascend910")]
    chip: String,
    /// A tiling by hand instead of the scheduler's: MxNxK[,step_k=S][,single][,cores=C].
    #[arg(long)]
    tiling: Option<String>,
    /// Print JSON: {"chosen": {"cycles", "utilization", "tiling", ...}, "naive": {...}}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn tile(c: &TileCommand) -> Result<()> {
    let TileCommand::Matmul(a) = c;
    for (what, v) in [("m", a.m), ("n", a.n), ("k", a.k), ("batch", a.batch)] {
        anyhow::ensure!(v > 0, "--{what} must be positive");
    }
    let chip = Chip::by_name(&a.chip)?;
    let p = Problem::matmul(a.batch, a.m, a.n, a.k);
    let chosen = match &a.tiling {
        Some(t) => {
            let t: Tiling = t.parse().map_err(anyhow::Error::msg)?;
            let t = t.resolved(&chip, &p);
            tiling::check_fits(&chip, &format!("matmul {p}"), &t)?;
            tiling::cost(&chip, &p, &t, &tiling::Epilogue::NONE)
        }
        None => tiling::choose(&chip, &p, &tiling::Epilogue::NONE),
    };
    let naive = tiling::cost(
        &chip,
        &p,
        &tiling::naive(&chip, &p),
        &tiling::Epilogue::NONE,
    );
    let us = |c: f64| c / chip.clock_mhz;
    if a.json {
        let entry = |s: &sfumato_npu_sim::Schedule| {
            serde_json::json!({
                "cycles": s.cost.cycles,
                "utilization": s.cost.utilization,
                "microseconds": us(s.cost.cycles),
                "tflops": p.flops() / us(s.cost.cycles) / 1e6,
                "bound": s.cost.bound,
                "engines": s.cost.engines,
                "tiling": s.tiling,
                "blocks": [s.m_blocks, s.n_blocks],
                "k_steps": s.k_steps,
            })
        };
        let j = serde_json::json!({
            "chip": chip.name,
            "problem": p,
            "chosen": entry(&chosen),
            "naive": entry(&naive),
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "{} ({} cores at {} MHz, {:.1} TFLOP/s fp16 peak)",
        chip.description,
        chip.cores,
        chip.clock_mhz,
        chip.peak_flops() / 1e12
    );
    println!("problem: {p} ({:.3} GFLOP)", p.flops() / 1e9);
    for (label, s) in [
        (
            if a.tiling.is_some() {
                "given"
            } else {
                "chosen"
            },
            &chosen,
        ),
        ("naive", &naive),
    ] {
        println!("{label:>7}: {}", s.tiling);
        println!(
            "         {} x {} blocks x {} k-steps: {:.0} cycles = {:.2} µs, {:.1} TFLOP/s, cube utilization {:.1}% ({}-bound)",
            s.m_blocks,
            s.n_blocks,
            s.k_steps,
            s.cost.cycles,
            us(s.cost.cycles),
            p.flops() / us(s.cost.cycles) / 1e6,
            100.0 * s.cost.utilization,
            s.cost.bound
        );
        let e = s.cost.engines;
        println!(
            "         busy cycles per engine (busiest core): {}",
            e.named()
                .iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(n, v)| format!("{n} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "chosen / naive: {:.1}x faster",
        naive.cost.cycles / chosen.cost.cycles
    );
    Ok(())
}
