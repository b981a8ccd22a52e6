//! `sfumato bench zoo`: the zoo's models measured in the terms of the table Sfumato answers to
//! (the MindSpore Model Zoo on Ascend 910 against PyTorch on a V100), at each model's
//! configuration for the target (`zoo/configs/MODEL/TARGET.toml`), with the reference figures
//! beside ours; the figures go to the local hub that `sfumato zoo list` shows.

use crate::open::{open_wgpu_tuned, open_wgpu_tuned_over, open_wgpu_with, DeviceKind};
use crate::timing::{median, time_graph_with};
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::{CpuDevice, DType, Device, Graph, Op, Optimization, Tensor};
use sfumato_zoo::catalog::{self, Figure, TargetConfig};
use sfumato_zoo::models::{self, ModelOptions};
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
    /// Also list each model's conv and matmul shapes, and its fused attentions (as the model
    /// runs them: one kernel), with their GFLOP/s, beside a 1024³ matmul's in the same run.
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
    /// The graph's figures (absent for GPT-2's decoding, timed per token).
    graph: Option<GraphFig>,
}

/// A model graph's time and rate in this run.
struct GraphFig {
    label: String,
    flops: f64,
    /// The first run after the graph is handed to the device: pipelines built (or taken from
    /// the caches), weights uploaded, then the run.
    first_run_ms: f64,
    /// Of the first run: the kernels built (passes, plan, lowering, pipelines) and the weights
    /// uploaded, where the device reports them.
    setup: Option<sfumato_core::Setup>,
    /// The median of the steady-state runs (wall clock: dispatch, kernels, readback).
    steady_ms: f64,
    /// Each conv and matmul shape's figures (`--per-op`).
    shapes: Vec<ShapeFig>,
}

impl GraphFig {
    fn gflops(&self) -> f64 {
        self.flops / (self.steady_ms * 1e-3).max(1e-12) / 1e9
    }
}

/// One conv or matmul shape of a model, timed on its own.
struct ShapeFig {
    op: &'static str,
    shape: String,
    count: usize,
    flops: f64,
    /// Its time in a model: three copies' time over one copy's, halved.
    ms: f64,
    /// One copy's wall time alone (run inputs uploaded, the output read back).
    ms_alone: f64,
    kernel: String,
    /// A fused attention (Q·Kᵀ, scale, mask, softmax, ·V in one dispatch), timed as the model
    /// runs it: its two products' FLOPs over the kernel's time.
    in_attention: bool,
}

impl ShapeFig {
    fn gflops(&self) -> f64 {
        self.flops / (self.ms * 1e-3).max(1e-12) / 1e9
    }
}

pub(crate) fn bench_zoo(a: &BenchZooArgs) -> Result<()> {
    let models: Vec<String> = if a.models.is_empty() {
        DEFAULT_MODELS.iter().map(|s| s.to_string()).collect()
    } else {
        a.models.clone()
    };
    let mut dev: Box<dyn Device> = match a.device {
        DeviceKind::Cpu => Box::new(CpuDevice),
        DeviceKind::NpuSim => anyhow::bail!(
            "bench zoo times real kernels; `sfumato run MODEL --device npu-sim` predicts a \
             model on the simulated NPU"
        ),
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
    let lavapipe_threads = device
        .contains("llvmpipe")
        .then(sfumato_wgpu::lavapipe_threads);
    crate::devices::print_lavapipe_threads(&device);
    let pinning = lavapipe_threads.and_then(|_| sfumato_wgpu::last_lavapipe_pinning());
    println!("target: {target} (zoo/configs/MODEL/{target}.toml)\n");
    let mut rows: Vec<Row> = Vec::new();
    for m in &models {
        let cfg = catalog::config(m, &target)?;
        if cfg.hints.tune == Some(true) && a.device == DeviceKind::Wgpu {
            // Tune on a device of its own, then time on a fresh one (see open_wgpu_tuned).
            let graphs = graphs_of(&cfg)?;
            let refs: Vec<&Graph> = graphs.iter().map(|(g, _, _)| g).collect();
            dev = Box::new(open_wgpu_tuned("", Optimization::PassesAndFusion, &refs)?);
        }
        eprintln!("== {m}");
        let mut got = measure(dev.as_mut(), &cfg, a.iters)
            .with_context(|| format!("benchmarking {m} ({target})"))?;
        if a.per_op {
            let graphs = graphs_of(&cfg)?;
            for (row, (g, _, _)) in got.iter_mut().filter(|r| r.graph.is_some()).zip(&graphs) {
                if let Some(gf) = row.graph.as_mut() {
                    let fused = attention_groups(g, &target)?;
                    gf.shapes = op_shapes(dev.as_mut(), g, &fused)
                        .with_context(|| format!("timing the shapes of {m}"))?;
                }
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
    let matmul_gflops = if a.per_op {
        let gf = if a.device == DeviceKind::Wgpu {
            // The reference is the adapter's fastest 1024³ kernel, not the cost model's pick:
            // every matmul variant measured once (cached per adapter, as `sfumato tune
            // --candidates all` caches it), then timed on a fresh device.
            let g = matmul_1024_graph()?;
            let mut best =
                open_wgpu_tuned_over("", Optimization::PassesAndFusion, &[&g], usize::MAX)?;
            matmul_1024(&mut best)?
        } else {
            matmul_1024(dev.as_mut())?
        };
        println!(
            "\nbench matmul 1024x1024x1024 on the same device, its fastest kernel, this run: {gf:.1} GFLOP/s (wall)"
        );
        for l in per_op_lines(&rows, gf) {
            println!("{l}");
        }
        Some(gf)
    } else {
        None
    };
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
            .map(|r| {
                let mut o = serde_json::json!({"name": r.model, "metric": r.metric, "value": r.value, "unit": r.unit, "device": device, "target": target, "conditions": r.conditions});
                if let Some(gf) = &r.graph {
                    o["graph"] = gf.label.clone().into();
                    o["flops"] = gf.flops.into();
                    o["first_run_ms"] = gf.first_run_ms.into();
                    if let Some(su) = gf.setup {
                        o["setup"] = serde_json::json!({"kernels_ms": su.kernels_ns as f64 / 1e6, "weights_ms": su.weights_ns as f64 / 1e6, "weight_bytes": su.weight_bytes});
                    }
                    o["steady_ms"] = gf.steady_ms.into();
                    o["gflops"] = gf.gflops().into();
                    if let Some(mm) = matmul_gflops {
                        o["ratio_to_matmul"] = (gf.gflops() / mm).into();
                        o["shapes"] = gf
                            .shapes
                            .iter()
                            .map(|s| serde_json::json!({"op": s.op, "shape": s.shape, "count": s.count, "kernel": s.kernel, "ms": s.ms, "ms_alone": s.ms_alone, "in_fused_attention": s.in_attention, "gflops": s.gflops(), "ratio_to_matmul": s.gflops() / mm}))
                            .collect();
                    }
                }
                o
            })
            .collect();
        let mut doc =
            serde_json::json!({ "device": device, "cpu": sfumato_wgpu::cpu_model(), "models": v });
        if let Some(mm) = matmul_gflops {
            doc["matmul_gflops"] = mm.into();
        }
        if let Some(n) = lavapipe_threads {
            doc["lavapipe_threads"] = n.into();
        }
        if let Some(p) = &pinning {
            doc["lavapipe_pinned"] = matches!(p, sfumato_wgpu::Pinning::Pinned { .. }).into();
        }
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
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
        // f16: the model's f32 values in f16, stored as f16 where the adapter has shader-f16.
        let (g, label) = match cfg.precision {
            catalog::Precision::F16 => (
                sfumato_core::precision::to_half(&g)?,
                format!("{model} batch {b} f16"),
            ),
            _ => (g, format!("{model} batch {b}")),
        };
        out.push((g, inputs, label));
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
    for (g, inputs, label) in graphs_of(cfg)? {
        let b = inputs[0].dims()[0];
        let t0 = Instant::now();
        let first = dev
            .run(&g, &inputs)
            .with_context(|| format!("first run of {label}"))?;
        let first_run_ms = t0.elapsed().as_secs_f64() * 1e3;
        let setup = first.profile.setup;
        let t = time_graph_with(dev, &g, &inputs, iters.max(1), true)?;
        let graph = Some(GraphFig {
            label,
            flops: models::graph_flops(&g),
            first_run_ms,
            setup,
            steady_ms: t.median_wall_ms,
            shapes: Vec::new(),
        });
        let s = t.median_wall_ms / 1e3;
        let size = cfg.image_size.unwrap_or(0);
        let seq = cfg.seq.unwrap_or(0);
        let row = |metric: &str, value: f64, unit: &str, conditions: String| Row {
            model: m.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            conditions,
            graph,
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
    // A decode step reads every weight once (f32 on the device): its rate against the memory's.
    let weight_bytes = p.requested_elements() as f64 * 4.0;
    let gbs = weight_bytes / (t * 1e-3) / 1e9;
    let stream = stream_copy_gbs();
    let short = Row {
        model: cfg.model.clone(),
        metric: format!("greedy decoding, {tokens} tokens"),
        value: t,
        unit: "ms/token".into(),
        conditions: format!(
            "batch 1, prompt {prompt} tokens, KV cache, f32, random weights; weights read {gbs:.2} GB/s, {:.2}x a {stream:.1} GB/s STREAM copy",
            gbs / stream
        ),
        graph: None,
    };
    Ok(vec![
        short,
        gpt2_full_context(dev, &c, weight_bytes, stream)?,
    ])
}

/// Decode steps timed at the model's full context (1,024 positions): the cache, kept on the
/// device, starts with all but the last few positions filled (random keys and values), so each
/// timed step attends over about 1,020 of them. A step reads every weight and the whole cache.
fn gpt2_full_context(
    dev: &mut dyn Device,
    c: &sfumato_zoo::gpt2::Gpt2Config,
    weight_bytes: f64,
    stream: f64,
) -> Result<Row> {
    const STEPS: usize = 4;
    let ctx = c.n_positions;
    let mut p = sfumato_zoo::params::Params::random("gpt2-medium", 42);
    let mut gen = sfumato_zoo::gpt2::Generator::new(c, &mut p, ctx)?;
    gen.fill_cache(dev, ctx - STEPS - 1, 7)?;
    // The first step compiles the step graph for this cache length: not timed.
    gen.step(dev, 1000)?;
    let mut times = Vec::with_capacity(STEPS);
    for i in 0..STEPS {
        let t0 = Instant::now();
        gen.step(dev, 1001 + i as u32)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let t = times.iter().sum::<f64>() / STEPS as f64;
    let cache_bytes = (2 * c.n_layer * ctx * c.n_embd * 4) as f64;
    let gbs = (weight_bytes + cache_bytes) / (t * 1e-3) / 1e9;
    Ok(Row {
        model: "gpt2-medium".into(),
        metric: format!("decode step at {ctx} positions"),
        value: t,
        unit: "ms/token".into(),
        conditions: format!(
            "batch 1, KV cache kept on the device, {:.0} MB of it read per step, f32, random weights; weights and cache read {gbs:.2} GB/s, {:.2}x a {stream:.1} GB/s STREAM copy",
            cache_bytes / 1e6,
            gbs / stream
        ),
        graph: None,
    })
}

/// Copies of a node timed in one graph: the rate of a shape is the time three copies take over
/// one copy's, halved (see [`op_shapes`]).
const COPIES: usize = 3;

/// A graph of `copies` copies of node `n` of `g` (its constants random, one set per copy; its
/// run inputs `x{i}_{j}`, one set per copy, all declared whatever `copies` is), each copy's
/// output added to the previous one's (an epilogue the conv or matmul kernel fuses), and the
/// run inputs for it.
fn copies_of(g: &Graph, n: &sfumato_core::Node, copies: usize) -> Result<(Graph, Vec<Tensor>)> {
    let mut one = Graph::new();
    let mut inputs = Vec::new();
    let is_const = |v| {
        g.nodes()
            .iter()
            .any(|m| m.outputs.contains(&v) && matches!(m.op, Op::Constant(_)))
    };
    let mut sets = Vec::new();
    for c in 0..COPIES {
        let mut ins = Vec::new();
        for (i, &v) in n.inputs.iter().enumerate() {
            let t = Tensor::random(g.dtype(v), g.shape(v).clone(), (7 + 10 * c + i) as u64);
            ins.push(if is_const(v) {
                one.constant(t)?
            } else {
                inputs.push(t);
                one.input(&format!("x{c}_{i}"), g.dtype(v), g.shape(v).clone())
            });
        }
        sets.push(ins);
    }
    let mut acc: Option<sfumato_core::ValueId> = None;
    for ins in sets.iter().take(copies) {
        let y = one.add(n.op.clone(), ins)?[0];
        acc = Some(match acc {
            Some(prev) => one.add_(y, prev)?,
            None => y,
        });
    }
    let out = acc.context("a node copy with no output")?;
    one.set_outputs(&[out])?;
    Ok((one, inputs))
}

/// A shape's time in a model from a graph of one copy and one of [`COPIES`]: the difference
/// over `COPIES - 1` (the upload, dispatch and readback drop out), or one copy's time where the
/// difference is lost in the noise (a tiny op). Returns it and one copy's timing.
fn time_copies(
    dev: &mut dyn Device,
    (g1, in1): (Graph, Vec<Tensor>),
    (g3, in3): (Graph, Vec<Tensor>),
    what: &str,
) -> Result<(f64, crate::timing::Timing)> {
    let t1 = time_graph_with(dev, &g1, &in1, 3, false).with_context(|| format!("timing {what}"))?;
    let t3 = time_graph_with(dev, &g3, &in3, 3, false)
        .with_context(|| format!("timing {COPIES} copies of {what}"))?;
    let diff = (t3.median_wall_ms - t1.median_wall_ms) / (COPIES - 1) as f64;
    let ms = if diff > 0.02 * t1.median_wall_ms {
        diff
    } else {
        t1.median_wall_ms
    };
    Ok((ms, t1))
}

/// Each distinct conv and matmul shape of a graph, timed in graphs of its own: one copy of the
/// node, then three (each with its own weights, so that no pass merges them, and each copy's
/// output added to the last's in the kernel's epilogue); the shape's time is the difference
/// over two: the upload of the run inputs, the dispatch and the readback, the same in both,
/// drop out. (The wall time of one copy alone, `ms_alone`, holds them: a 640x640 YOLO conv's
/// 3 MB image and output cost more to move than to compute.) Each graph: two warm-up runs,
/// then the median wall time of three. Per-kernel timestamps are not used: on lavapipe they did
/// not bracket every dispatch (a 1x1 conv's kernel "took" 67 us, 190 GFLOP/s).
fn op_shapes(dev: &mut dyn Device, g: &Graph, attention: &Attention) -> Result<Vec<ShapeFig>> {
    let mut shapes: Vec<(String, &'static str, &sfumato_core::Node, usize)> = Vec::new();
    for n in g.nodes() {
        // Its products run inside the fused attention kernel, timed below as one.
        if attention.names.contains(&n.name) {
            continue;
        }
        let (op, desc) = match &n.op {
            Op::MatMul | Op::Gemm(_) => (
                "matmul",
                format!("{} x {}", g.shape(n.inputs[0]), g.shape(n.inputs[1])),
            ),
            Op::Conv2d(c) => (
                "conv",
                format!(
                    "{} * {} stride {} groups {}",
                    g.shape(n.inputs[0]),
                    g.shape(n.inputs[1]),
                    c.stride[0],
                    c.groups
                ),
            ),
            _ => continue,
        };
        match shapes.iter_mut().find(|s| s.0 == desc) {
            Some(s) => s.3 += 1,
            None => shapes.push((desc, op, n, 1)),
        }
    }
    let mut out = Vec::new();
    for (shape, op, n, count) in shapes {
        let one = copies_of(g, n, 1)?;
        let flops = models::graph_flops(&one.0);
        let three = copies_of(g, n, COPIES)?;
        let (ms, t1) = time_copies(dev, one, three, &format!("{op} {shape}"))?;
        out.push(ShapeFig {
            op,
            shape,
            count,
            flops,
            ms,
            ms_alone: t1.median_wall_ms,
            kernel: t1.kernel,
            in_attention: false,
        });
    }
    // Each distinct fused attention, timed the same way: copies of its group with the views that
    // feed it, so its kernel reads Q, K and V through the same strides as in the model.
    let mut units: Vec<(String, &[sfumato_core::NodeId], usize)> = Vec::new();
    for nodes in &attention.groups {
        let cg = &attention.graph;
        let mm: Vec<&sfumato_core::Node> = nodes
            .iter()
            .map(|&n| cg.node(n))
            .filter(|n| n.op == Op::MatMul)
            .collect();
        let [qk, pv] = mm[..] else { continue };
        let desc = format!(
            "Q {} K {} V {}",
            cg.shape(qk.inputs[0]),
            cg.shape(qk.inputs[1]),
            cg.shape(pv.inputs[1])
        );
        match units.iter_mut().find(|u| u.0 == desc) {
            Some(u) => u.2 += 1,
            None => units.push((desc, nodes, 1)),
        }
    }
    for (shape, nodes, count) in units {
        let one = group_copies(&attention.graph, nodes, 1)?;
        let flops = models::graph_flops(&one.0);
        let three = group_copies(&attention.graph, nodes, COPIES)?;
        let (ms, t1) = time_copies(dev, one, three, &format!("attention {shape}"))?;
        out.push(ShapeFig {
            op: "attention",
            shape,
            count,
            flops,
            ms,
            ms_alone: t1.median_wall_ms,
            kernel: t1.kernel,
            in_attention: true,
        });
    }
    // Where the model's time goes first: by the shape's time over all its uses.
    out.sort_by(|a, b| (b.ms * b.count as f64).total_cmp(&(a.ms * a.count as f64)));
    Ok(out)
}

/// The per-model and per-shape tables, each rate beside the 1024³ matmul's of this run.
fn per_op_lines(rows: &[Row], matmul: f64) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        "| model | GFLOP/s (steady, wall) | ratio to matmul | first run ms (kernels built + weights uploaded) | steady ms |".into(),
        "|---|---|---|---|---|".into(),
    ];
    let graphs: Vec<&GraphFig> = rows.iter().filter_map(|r| r.graph.as_ref()).collect();
    for gf in &graphs {
        let setup = gf.setup.map_or(String::new(), |su| {
            format!(
                " ({:.0} + {:.0}: {:.0} MB)",
                su.kernels_ns as f64 / 1e6,
                su.weights_ns as f64 / 1e6,
                su.weight_bytes as f64 / 1e6
            )
        });
        lines.push(format!(
            "| {} | {:.2} | {:.2} | {:.0}{setup} | {:.1} |",
            gf.label,
            gf.gflops(),
            gf.gflops() / matmul,
            gf.first_run_ms,
            gf.steady_ms
        ));
    }
    for gf in graphs {
        lines.push(format!(
            "\n{}: conv and matmul shapes, and fused attentions (wall time of 3 copies over 1, halved; alone: 1 copy's wall time)",
            gf.label
        ));
        lines.push("| shape | count | kernel | ms | ms alone | GFLOP/s | ratio to matmul |".into());
        lines.push("|---|---|---|---|---|---|---|".into());
        for s in &gf.shapes {
            lines.push(format!(
                "| {} {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                s.op,
                s.shape,
                s.count,
                s.kernel,
                s.ms,
                s.ms_alone,
                s.gflops(),
                s.gflops() / matmul
            ));
        }
    }
    lines
}

/// The per-op table's reference product: a `[1024, 1024]` input times a constant
/// `[1024, 1024]` weight.
fn matmul_1024_graph() -> Result<Graph> {
    let n = 1024;
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [n, n]);
    let b = g.constant(Tensor::random(DType::F32, [n, n], 2))?;
    let c = g.matmul(a, b)?;
    g.set_outputs(&[c])?;
    Ok(g)
}

/// [`matmul_1024_graph`]'s GFLOP/s on `dev`: the median wall time of 3 runs after one.
fn matmul_1024(dev: &mut dyn Device) -> Result<f64> {
    let n = 1024;
    let g = matmul_1024_graph()?;
    let x = vec![Tensor::random(DType::F32, [n, n], 1)];
    dev.run(&g, &x)?;
    let mut walls = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        dev.run(&g, &x)?;
        walls.push(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / median(walls) / 1e9)
}

/// This machine's memory bandwidth as a STREAM-style copy measures it: 64 MiB of f32 copied
/// into a second array by one thread per CPU (as STREAM runs), bytes read and written counted,
/// the best of five (GB/s).
fn stream_copy_gbs() -> f64 {
    let n = 16 << 20;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut b = vec![0.0f32; n];
    let chunk = n.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (dst, src) in b.chunks_mut(chunk).zip(a.chunks(chunk)) {
                s.spawn(move || dst.copy_from_slice(src));
            }
        });
        std::hint::black_box(&mut b);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (2 * n * 4) as f64 / best.max(1e-9) / 1e9
}

/// The fused attention groups of the target's plan: the graph after the passes, each group's
/// nodes in it, and the names of all of them (the same names as in the graph before).
struct Attention {
    graph: Graph,
    groups: Vec<Vec<sfumato_core::NodeId>>,
    names: std::collections::HashSet<String>,
}

/// A graph of `copies` copies of the fused attention `nodes` of `g`, each with the view nodes
/// (reshapes, transposes, slices) that feed it, from run inputs of its own (one set per copy, all
/// declared whatever `copies` is, as [`copies_of`] does) and `g`'s constants; each copy's output
/// added to the previous one's. Returns it and the run inputs.
fn group_copies(
    g: &Graph,
    nodes: &[sfumato_core::NodeId],
    copies: usize,
) -> Result<(Graph, Vec<Tensor>)> {
    use sfumato_core::{NodeId, ValueId};
    use std::collections::HashMap;
    let is_view = |op: &Op| {
        matches!(
            op,
            Op::Reshape { .. } | Op::Transpose { .. } | Op::Slice { .. }
        )
    };
    let mut order: Vec<NodeId> = nodes.to_vec();
    // The view chains into the group, back to the values they start from.
    let mut stack: Vec<ValueId> = nodes
        .iter()
        .flat_map(|&n| g.node(n).inputs.clone())
        .collect();
    while let Some(v) = stack.pop() {
        let Some(p) = g.value(v).producer else {
            continue;
        };
        if !order.contains(&p) && is_view(&g.node(p).op) {
            order.push(p);
            stack.extend(g.node(p).inputs.iter().copied());
        }
    }
    order.sort_by_key(|n| n.0);
    let last = *nodes.last().context("an empty attention group")?;
    let out = g.node(last).outputs[0];
    let mut one = Graph::new();
    let mut inputs = Vec::new();
    let mut acc: Option<ValueId> = None;
    for c in 0..COPIES {
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for &n in &order {
            let node = g.node(n);
            let mut ins = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                if let Some(&m) = map.get(&v) {
                    ins.push(m);
                    continue;
                }
                let m = match g.value(v).producer.map(|p| &g.node(p).op) {
                    Some(Op::Constant(t)) => one.constant(t.clone())?,
                    _ => {
                        let seed = (7 + 10 * c + inputs.len()) as u64;
                        inputs.push(Tensor::random(g.dtype(v), g.shape(v).clone(), seed));
                        let name = format!("x{c}_{}", inputs.len());
                        one.input(&name, g.dtype(v), g.shape(v).clone())
                    }
                };
                map.insert(v, m);
                ins.push(m);
            }
            let outs = one.add(node.op.clone(), &ins)?;
            for (&o, &m) in node.outputs.iter().zip(&outs) {
                map.insert(o, m);
            }
        }
        if c < copies {
            let y = map[&out];
            acc = Some(match acc {
                Some(prev) => one.add_(y, prev)?,
                None => y,
            });
        }
    }
    let acc = acc.context("no copy of the attention")?;
    one.set_outputs(&[acc])?;
    Ok((one, inputs))
}

/// The fused attention groups the target's plan makes of `g`.
fn attention_groups(g: &Graph, target: &str) -> Result<Attention> {
    let profile = if target == "lavapipe" {
        sfumato_core::TargetProfile::llvmpipe()
    } else {
        sfumato_core::TargetProfile::webgpu_gpu()
    };
    let c = sfumato_core::compile(
        g,
        &sfumato_core::CompileOptions {
            optimization: sfumato_core::Optimization::PassesAndFusion,
            target: profile,
        },
    )?;
    let groups: Vec<Vec<sfumato_core::NodeId>> = c
        .plan
        .groups
        .iter()
        .filter(|gr| gr.kind == sfumato_core::plan::GroupKind::Attention)
        .map(|gr| gr.nodes.clone())
        .collect();
    let names = groups
        .iter()
        .flatten()
        .map(|&n| c.graph.node(n).name.clone())
        .collect();
    Ok(Attention {
        graph: c.graph,
        groups,
        names,
    })
}
