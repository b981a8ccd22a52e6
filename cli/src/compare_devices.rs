//! `sfumato compare MODEL --devices wgpu,npu-sim,cpu`: one graph on several devices, and per op
//! the largest difference from the reference device and each device's time (measured by the
//! GPU's timestamps, predicted by the NPU's cycle model, the CPU reference's wall clock) side
//! by side.
//!
//! The ops are the fused groups of the graph after the passes (planned for a WebGPU GPU): each
//! group's outputs become outputs of the graph every device runs, so every device computes and
//! returns them. They already leave their groups, so no device fuses differently for it.

use crate::open::DeviceKind;
use crate::run::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use sfumato_core::device::truncate;
use sfumato_core::plan::GroupKind;
use sfumato_core::{
    compile, CompileOptions, Device, Optimization, Profile, TargetProfile, Tensor, TimingSource,
};
use std::collections::HashSet;

#[derive(Args, Debug)]
pub(crate) struct CompareDevicesArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The devices, comma-separated; the first is the reference the others are compared with
    /// (default: cpu,wgpu,npu-sim: the CPU reference first).
    #[arg(long, value_delimiter = ',', default_value = "cpu,wgpu,npu-sim")]
    devices: Vec<String>,
    /// The simulated NPU's chip.
    #[arg(long, default_value = "ascend910")]
    chip: String,
    /// Print the N ops with the largest difference only (default: every op, in run order).
    #[arg(long)]
    top: Option<usize>,
    /// Print JSON: {"reference", "devices": [{"name", "time_ns", "source"}], "ops": [{"nodes",
    /// "ops", "diff": {device: max |diff| / (1 + |reference|)}, "time_ns": {device: ns}}]}.
    #[arg(long)]
    json: bool,
}

struct Ran {
    label: String,
    name: String,
    outputs: Vec<Tensor>,
    profile: Profile,
}

fn open(kind: DeviceKind, chip: &str) -> Result<Box<dyn Device>> {
    match kind {
        DeviceKind::NpuSim => Ok(Box::new(sfumato_npu_sim::NpuSim::by_name(chip)?)),
        k => crate::run::open_run_device(Some(k), true),
    }
}

/// Largest |a - b| / (1 + |b|) over two tensors of one shape.
fn diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.shape() != b.shape() {
        return f64::INFINITY;
    }
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| {
            if x.is_nan() && y.is_nan() || x == &y {
                0.0
            } else if x.is_nan() || y.is_nan() {
                f64::INFINITY
            } else {
                (x - y).abs() / (1.0 + y.abs())
            }
        })
        .fold(0.0, f64::max)
}

pub(crate) fn compare_devices(a: &CompareDevicesArgs) -> Result<()> {
    if a.model.model.ends_with(".onnx") {
        bail!("compare takes a built-in or zoo model (`sfumato zoo list`); run an ONNX file with `sfumato run FILE --device ...`");
    }
    let kinds: Vec<DeviceKind> = a
        .devices
        .iter()
        .map(|d| DeviceKind::from_str(d.trim(), true).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()
        .context("--devices takes cpu, wgpu and npu-sim")?;
    if kinds.len() < 2 {
        bail!("--devices needs two devices or more (the first is the reference)");
    }
    for (i, k) in kinds.iter().enumerate() {
        if kinds[..i].contains(k) {
            bail!("--devices names {} twice", a.devices[i].trim());
        }
    }
    let (graph, inputs) = a.model.build()?;
    // The ops: the fused groups of the graph after the passes, each group's outputs exposed.
    let c = compile(
        &graph,
        &CompileOptions {
            optimization: Optimization::PassesAndFusion,
            target: TargetProfile::webgpu_gpu(),
        },
    )?;
    let mut g = c.graph.clone();
    let mut outs = g.outputs().to_vec();
    let mut ops = vec![];
    for grp in &c.plan.groups {
        if matches!(grp.kind, GroupKind::Constant | GroupKind::View) {
            continue;
        }
        let names: Vec<String> = grp.nodes.iter().map(|&n| g.node(n).name.clone()).collect();
        let opn: Vec<String> = grp
            .nodes
            .iter()
            .map(|&n| g.node(n).op.name().to_string())
            .collect();
        let mut at = vec![];
        for &o in &grp.outputs {
            let i = match outs.iter().position(|&x| x == o) {
                Some(i) => i,
                None => {
                    outs.push(o);
                    outs.len() - 1
                }
            };
            at.push(i);
        }
        ops.push((names, opn, at));
    }
    g.set_outputs(&outs)?;
    let mut ran = vec![];
    for (kind, label) in kinds.iter().zip(&a.devices) {
        let mut dev = open(*kind, &a.chip)?;
        if *kind == DeviceKind::Wgpu {
            // Pipelines compile at their first dispatch: time the second run.
            dev.run(&g, &inputs)
                .with_context(|| format!("warm-up run on {}", dev.name()))?;
        }
        let out = dev
            .run(&g, &inputs)
            .with_context(|| format!("running '{}' on {}", a.model.model, dev.name()))?;
        eprintln!("ran on {}", dev.name());
        ran.push(Ran {
            label: label.trim().to_string(),
            name: dev.name(),
            outputs: out.outputs,
            profile: out.profile,
        });
    }
    let time_of = |p: &Profile, names: &[String]| -> Option<u64> {
        if !p.per_entry_times() {
            return None;
        }
        let set: HashSet<&str> = names.iter().map(|s| s.as_str()).collect();
        let t: u64 = p
            .entries
            .iter()
            .filter(|e| e.nodes.iter().any(|n| set.contains(n.as_str())))
            .map(|e| e.duration_ns)
            .sum();
        Some(t)
    };
    struct Row {
        nodes: String,
        ops: String,
        diffs: Vec<f64>,
        times: Vec<Option<u64>>,
    }
    let mut rows: Vec<Row> = ops
        .iter()
        .map(|(names, opn, at)| Row {
            nodes: names.join("+"),
            ops: opn.join("+"),
            diffs: ran[1..]
                .iter()
                .map(|r| {
                    at.iter()
                        .map(|&i| diff(&r.outputs[i], &ran[0].outputs[i]))
                        .fold(0.0, f64::max)
                })
                .collect(),
            times: ran.iter().map(|r| time_of(&r.profile, names)).collect(),
        })
        .collect();
    if let Some(n) = a.top {
        rows.sort_by(|x, y| {
            let m = |r: &Row| r.diffs.iter().copied().fold(0.0, f64::max);
            m(y).total_cmp(&m(x))
        });
        rows.truncate(n);
    }
    let source = |p: &Profile| match p.source() {
        Some(TimingSource::GpuTimestamp) => "measured (GPU timestamps)",
        Some(TimingSource::Simulated) => "predicted (cycle model)",
        Some(TimingSource::Cpu) => "measured (host clock)",
        _ => "whole run only",
    };
    if a.json {
        let j = serde_json::json!({
            "model": a.model.model,
            "reference": ran[0].label,
            "devices": ran.iter().map(|r| serde_json::json!({
                "device": r.label, "name": r.name, "time_ns": r.profile.kernel_ns(),
                "wall_ns": r.profile.wall_ns, "source": source(&r.profile),
            })).collect::<Vec<_>>(),
            "ops": rows.iter().map(|row| serde_json::json!({
                "nodes": row.nodes, "ops": row.ops,
                "diff": ran[1..].iter().zip(&row.diffs).map(|(r, d)| (r.label.clone(), serde_json::json!(d))).collect::<serde_json::Map<_, _>>(),
                "time_ns": ran.iter().zip(&row.times).map(|(r, t)| (r.label.clone(), serde_json::json!(t))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    for r in &ran {
        println!("{:<8} {} — {}", r.label, r.name, source(&r.profile));
    }
    println!(
        "difference: max |x - {}| / (1 + |{}|) over each op's outputs",
        ran[0].label, ran[0].label
    );
    let mut head = format!("{:<34} {:<20}", "nodes", "ops");
    for r in &ran[1..] {
        head += &format!(" {:>11}", format!("diff {}", r.label));
    }
    for r in &ran {
        head += &format!(" {:>12}", format!("µs {}", r.label));
    }
    println!("{head}");
    for row in &rows {
        let mut line = format!(
            "{:<34} {:<20}",
            truncate(&row.nodes, 34),
            truncate(&row.ops, 20)
        );
        for d in &row.diffs {
            line += &format!(" {:>11.2e}", d);
        }
        for t in &row.times {
            line += &match t {
                Some(t) => format!(" {:>12.1}", *t as f64 / 1e3),
                None => format!(" {:>12}", "-"),
            };
        }
        println!("{line}");
    }
    let mut total = format!("{:<55}", format!("{} ops; total", rows.len()));
    for j in 0..ran.len() - 1 {
        let worst = rows.iter().map(|row| row.diffs[j]).fold(0.0, f64::max);
        total += &format!(" {:>11.2e}", worst);
    }
    for r in &ran {
        total += &if r.profile.per_entry_times() {
            format!(" {:>12.1}", r.profile.kernel_ns() as f64 / 1e3)
        } else {
            format!(
                " {:>12}",
                format!("wall {:.0}", r.profile.wall_ns as f64 / 1e3)
            )
        };
    }
    println!("{total}");
    Ok(())
}
