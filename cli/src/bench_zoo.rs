//! `sfumato bench zoo`: the zoo's models measured in the terms of the table Sfumato answers to
//! (the MindSpore Model Zoo on Ascend 910 against PyTorch on a V100), at each model's
//! configuration for the target (`zoo/configs/MODEL/TARGET.toml`), with the reference figures
//! beside ours; the figures go to the local hub that `sfumato zoo list` shows.

use crate::open::{open_wgpu_tuned, open_wgpu_with, DeviceKind};
use crate::timing::{median, time_graph_with};
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::{CpuDevice, DType, Device, Graph, Op, Optimization, Tensor};
use sfumato_zoo::catalog::{self, Figure, TargetConfig};
use sfumato_zoo::models::{self, ModelOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The models `bench zoo` measures by default, in table order.
const DEFAULT_MODELS: &[&str] = &[
    "resnet50",
    "bert-large",
    "bert-base",
    "yolov5s",
    "gpt2-medium",
    "vit-b16",
    "efficientnet-lite0",
];

/// The reference table: model, metric, MindSpore Zoo on Ascend 910, PyTorch on V100, conditions.
const REFERENCE: &[(&str, &str, &str, &str, &str)] = &[
    (
        "resnet50",
        "img/s",
        "105,000 img/s",
        "~98,000 img/s",
        "throughput",
    ),
    (
        "bert-large",
        "ms",
        "12 ms (F1 91.5)",
        "15 ms (F1 ~91.6)",
        "batch 32, seq 384",
    ),
    (
        "yolov5s",
        "FPS",
        "220 FPS (mAP@0.5 56.8)",
        "200 FPS (56.8)",
        "FP16, 640x640",
    ),
    (
        "gpt2-medium",
        "ms/token",
        "16 ms/token",
        "22 ms/token",
        "greedy decoding",
    ),
];

#[derive(Args, Debug)]
pub(crate) struct BenchZooArgs {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceKind::Wgpu)]
    device: DeviceKind,
    /// The configurations to use: webgpu or lavapipe (default: lavapipe on a CPU adapter or the
    /// CPU reference, webgpu otherwise).
    #[arg(long)]
    target: Option<String>,
    /// Models, comma-separated (default: resnet50, bert-large, bert-base, yolov5s, gpt2-medium,
    /// vit-b16, efficientnet-lite0).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Timed runs per figure (after two warm-up runs).
    #[arg(long, default_value_t = 1)]
    iters: u64,
    /// Write `{"models": [{"name", "metric", "value", "unit", "device"}]}` to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also list each model's conv and matmul shapes with their GFLOP/s, beside a 1024³
    /// matmul's in the same run.
    #[arg(long)]
    per_op: bool,
    /// Leave the hub (`sfumato zoo list`'s last figures) as it is.
    #[arg(long)]
    no_record: bool,
}

/// One measured figure of this run.
struct Row {
    model: String,
    metric: String,
    value: f64,
    unit: String,
    conditions: String,
}

pub(crate) fn bench_zoo(a: &BenchZooArgs) -> Result<()> {
    let models: Vec<String> = if a.models.is_empty() {
        DEFAULT_MODELS.iter().map(|s| s.to_string()).collect()
    } else {
        a.models.clone()
    };
    let mut dev: Box<dyn Device> = match a.device {
        DeviceKind::Cpu => Box::new(CpuDevice),
        DeviceKind::Wgpu => Box::new(open_wgpu_with(
            " (--device cpu runs the CPU reference)",
            Optimization::PassesAndFusion,
        )?),
    };
    let device = dev.name();
    let target = a.target.clone().unwrap_or_else(|| {
        if a.device == DeviceKind::Cpu || device.contains("llvmpipe") || device.contains("Cpu") {
            "lavapipe".into()
        } else {
            "webgpu".into()
        }
    });
    if !matches!(target.as_str(), "webgpu" | "lavapipe") {
        bail!("--target {target}: bench zoo runs the WebGPU targets (webgpu, lavapipe); the Ascend configurations are for the NPU simulator");
    }
    println!("device: {device}");
    println!("target: {target} (zoo/configs/MODEL/{target}.toml)\n");
    let mut rows: Vec<Row> = Vec::new();
    let mut per_op: Vec<String> = Vec::new();
    for m in &models {
        let cfg = catalog::config(m, &target)?;
        if cfg.hints.tune == Some(true) && a.device == DeviceKind::Wgpu {
            // Tune on a device of its own, then time on a fresh one (see open_wgpu_tuned).
            let graphs = graphs_of(&cfg)?;
            let refs: Vec<&Graph> = graphs.iter().map(|(g, _, _)| g).collect();
            dev = Box::new(open_wgpu_tuned("", Optimization::PassesAndFusion, &refs)?);
        }
        eprintln!("== {m}");
        let got = measure(dev.as_mut(), &cfg, a.iters)
            .with_context(|| format!("benchmarking {m} ({target})"))?;
        if a.per_op {
            for (g, inputs, label) in graphs_of(&cfg)? {
                per_op.extend(op_table(dev.as_mut(), &g, &inputs, &label)?);
            }
        }
        rows.extend(got);
    }
    // The table.
    println!("| model | metric | Sfumato ({target}) | MindSpore Zoo (Ascend 910) | PyTorch (V100) | conditions |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let reference = REFERENCE
            .iter()
            .find(|x| x.0 == r.model && r.unit == x.1)
            .map(|x| (x.2, x.3, x.4));
        let (ms, pt, cond) = reference.unwrap_or(("-", "-", ""));
        let ours = format!("{} {}", fmt_value(r.value), r.unit);
        let cond = if cond.is_empty() {
            r.conditions.clone()
        } else {
            format!("{} (ref: {cond})", r.conditions)
        };
        println!(
            "| {} | {} | {ours} | {ms} | {pt} | {cond} |",
            r.model, r.metric
        );
    }
    if a.per_op {
        println!("\n{}", matmul_1024(dev.as_mut())?);
        for l in &per_op {
            println!("{l}");
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let figures: Vec<Figure> = rows
        .iter()
        .map(|r| Figure {
            name: r.model.clone(),
            metric: r.metric.clone(),
            value: r.value,
            unit: r.unit.clone(),
            device: device.clone(),
            target: target.clone(),
            measured_at: now,
        })
        .collect();
    if let Some(p) = &a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r.model, "metric": r.metric, "value": r.value, "unit": r.unit, "device": device, "target": target, "conditions": r.conditions}))
            .collect();
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({ "models": v }))?,
        )
        .with_context(|| format!("writing {}", p.display()))?;
        println!("\nwrote {}", p.display());
    }
    if !a.no_record {
        if let Some(root) = sfumato_wgpu::default_cache_dir() {
            catalog::update_hub(&root, &figures)?;
            println!("recorded in {}", catalog::hub_path(&root).display());
        }
    }
    Ok(())
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The graphs a configuration measures: `(graph, inputs, label)`.
fn graphs_of(cfg: &TargetConfig) -> Result<Vec<(Graph, Vec<Tensor>, String)>> {
    let model = cfg.model.as_str();
    let mut out = Vec::new();
    let batches: Vec<usize> = if model == "resnet50" {
        // The table's throughput at batch 1 and at the configuration's batch (32 on a GPU).
        let mut b = vec![1, cfg.batch];
        b.dedup();
        b
    } else {
        vec![cfg.batch]
    };
    let name = match model {
        "gpt2-medium" => return Ok(out),
        "all-minilm-l6-v2" => "bert-base",
        m => m,
    };
    for b in batches {
        let d = models::default_options(name)?;
        let o = ModelOptions {
            batch: b,
            seq: cfg.seq.unwrap_or(d.seq),
            size: cfg.image_size.unwrap_or(d.size),
            layers: if name == "bert-base" { 12 } else { d.layers },
        };
        let (g, inputs) = models::by_name_with(name, &o)?;
        out.push((g, inputs, format!("{model} batch {b}")));
    }
    Ok(out)
}

/// The configuration's figures: img/s, FPS, ms or ms/token, by model.
fn measure(dev: &mut dyn Device, cfg: &TargetConfig, iters: u64) -> Result<Vec<Row>> {
    let m = cfg.model.as_str();
    if m == "gpt2-medium" {
        return gpt2_ms_per_token(dev, cfg);
    }
    let mut rows = Vec::new();
    for (g, inputs, _) in graphs_of(cfg)? {
        let b = inputs[0].dims()[0];
        let t = time_graph_with(dev, &g, &inputs, iters.max(1), true)?;
        let s = t.median_wall_ms / 1e3;
        let size = cfg.image_size.unwrap_or(0);
        let seq = cfg.seq.unwrap_or(0);
        let row = |metric: &str, value: f64, unit: &str, conditions: String| Row {
            model: m.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            conditions,
        };
        rows.push(match m {
            "resnet50" | "vit-b16" | "efficientnet-lite0" => row(
                &format!("throughput, batch {b}"),
                b as f64 / s,
                "img/s",
                format!("batch {b}, {size}x{size}, f32"),
            ),
            "yolov5s" => row(
                "frames per second",
                b as f64 / s,
                "FPS",
                format!("batch {b}, {size}x{size}, f32, decoding in the graph, no NMS"),
            ),
            _ => row(
                &format!("latency, batch {b}, seq {seq}"),
                t.median_wall_ms,
                "ms",
                format!("batch {b}, seq {seq}, f32"),
            ),
        });
    }
    Ok(rows)
}

/// GPT-2 medium's ms per generated token (random weights; greedy).
fn gpt2_ms_per_token(dev: &mut dyn Device, cfg: &TargetConfig) -> Result<Vec<Row>> {
    let tokens = cfg.tokens.unwrap_or(32);
    let prompt = cfg.seq.unwrap_or(8).min(64);
    let c = sfumato_zoo::gpt2::Gpt2Config::gpt2_medium();
    let mut p = sfumato_zoo::params::Params::random("gpt2-medium", 42);
    // A fixed prompt of ordinary tokens; the weights are random, so the text is not the point.
    let ids: Vec<u32> = (0..prompt).map(|i| (1000 + 37 * i) as u32).collect();
    let g = sfumato_zoo::gpt2::generate(dev, &c, &mut p, &ids, tokens, |_| {})?;
    // The generating steps only (the prompt's steps come first; the very first compiles).
    let gen = g.steps.get(prompt.max(1)..).unwrap_or(&[]);
    if gen.is_empty() {
        bail!("gpt2-medium generated no timed steps");
    }
    let t = gen.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1e3 / gen.len() as f64;
    Ok(vec![Row {
        model: cfg.model.clone(),
        metric: format!("greedy decoding, {tokens} tokens"),
        value: t,
        unit: "ms/token".into(),
        conditions: format!("batch 1, prompt {prompt} tokens, KV cache, f32, random weights"),
    }])
}

/// Each conv and matmul shape of a graph with its GFLOP/s in a run (per-kernel times).
fn op_table(
    dev: &mut dyn Device,
    g: &Graph,
    inputs: &[Tensor],
    label: &str,
) -> Result<Vec<String>> {
    dev.run(g, inputs)?;
    let out = dev.run(g, inputs)?;
    if !out.profile.per_entry_times() {
        return Ok(vec![format!("{label}: no per-kernel times on this device")]);
    }
    let by_name: BTreeMap<&str, &sfumato_core::Node> =
        g.nodes().iter().map(|n| (n.name.as_str(), n)).collect();
    // shape -> (count, flops, ns)
    let mut shapes: BTreeMap<String, (usize, f64, u64)> = BTreeMap::new();
    for e in &out.profile.entries {
        for name in &e.nodes {
            let Some(n) = by_name.get(name.as_str()) else {
                continue;
            };
            let desc = match &n.op {
                Op::MatMul | Op::Gemm(_) => {
                    let a = g.shape(n.inputs[0]);
                    let b = g.shape(n.inputs[1]);
                    format!("matmul {a} x {b}")
                }
                Op::Conv2d(c) => {
                    let x = g.shape(n.inputs[0]);
                    let w = g.shape(n.inputs[1]);
                    format!("conv {x} * {w} stride {} groups {}", c.stride[0], c.groups)
                }
                _ => continue,
            };
            let flops = node_flops(g, n);
            let s = shapes.entry(desc).or_insert((0, 0.0, 0));
            s.0 += 1;
            s.1 += flops;
            s.2 += e.duration_ns;
        }
    }
    let mut lines = vec![
        format!("\n{label}: conv and matmul shapes (per-kernel times; fused epilogues included)"),
        "| shape | count | GFLOP/s |".into(),
        "|---|---|---|".into(),
    ];
    let mut v: Vec<_> = shapes.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1 .2));
    for (desc, (count, flops, ns)) in v {
        lines.push(format!(
            "| {desc} | {count} | {:.1} |",
            flops / (ns.max(1) as f64)
        ));
    }
    Ok(lines)
}

/// FLOPs of one MatMul, Gemm or Conv2d node.
fn node_flops(g: &Graph, n: &sfumato_core::Node) -> f64 {
    let out = n
        .outputs
        .first()
        .map_or(0.0, |&o| g.shape(o).numel() as f64);
    match &n.op {
        Op::MatMul | Op::Gemm(_) => {
            2.0 * out * g.shape(n.inputs[0]).0.last().copied().unwrap_or(1) as f64
        }
        Op::Conv2d(_) => {
            2.0 * out * g.shape(n.inputs[1]).0.iter().skip(1).product::<usize>() as f64
        }
        _ => 0.0,
    }
}

/// A 1024³ f32 matmul's GFLOP/s on the same device, the reference for the per-op table.
fn matmul_1024(dev: &mut dyn Device) -> Result<String> {
    let n = 1024;
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [n, n]);
    let b = g.constant(Tensor::random(DType::F32, [n, n], 2))?;
    let c = g.matmul(a, b)?;
    g.set_outputs(&[c])?;
    let x = vec![Tensor::random(DType::F32, [n, n], 1)];
    dev.run(&g, &x)?;
    let mut walls = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        dev.run(&g, &x)?;
        walls.push(t.elapsed().as_secs_f64());
    }
    let gf = 2.0 * (n * n * n) as f64 / median(walls) / 1e9;
    Ok(format!(
        "bench matmul 1024x1024x1024 on the same device, this run: {gf:.1} GFLOP/s (wall)"
    ))
}
