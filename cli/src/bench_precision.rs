//! `sfumato bench precision`: a case in f32 and in f16 (`--precision f16`: its f32 values in
//! f16, inputs and outputs f32) on one adapter, one after another in the same run: the f16
//! graph on a device that stores f16 as f16 (where the adapter has `shader-f16`), its
//! elementwise kernels computing in f16; on one that stores f16 as f16 but computes in f32;
//! and on one that stores it as f32, each with its time, the ratio to f32, its largest error against the f32
//! run's outputs, and its device memory.
//!
//! `--int8 DIR` adds quantized models as onnxruntime's quantizer writes them (the QDQ form, the
//! folders `scripts/make-quantized-fixtures.py` makes: `f32.onnx`, `model.onnx` and an input),
//! each in f32, in f16 and quantized, the quantized one's integer MatMuls and Convs on the
//! device's integer kernels.

use crate::args::positive;
use crate::compare::case_graph;
use crate::open::open_wgpu_tuned;
use crate::timing::time_graph_with;
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::precision::to_half;
use sfumato_core::{Device, Optimization, Tensor};
use sfumato_wgpu::WgpuDevice;

/// The cases `bench precision` knows (`bench compare`'s blocks).
pub const PRECISION_CASES: &[&str] = &["bert-layer", "resnet-bottleneck", "matmul", "conv"];

#[derive(Args, Debug)]
pub struct BenchPrecisionArgs {
    /// Cases (default: bert-layer and resnet-bottleneck): bert-layer, resnet-bottleneck,
    /// matmul, conv.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Timed runs per case and precision (after two warm-up runs).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    iters: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also time the quantized models in DIR's folders (each `f32.onnx`, its QDQ `model.onnx`
    /// and `test_data_set_0/input_0.pb`, as `scripts/make-quantized-fixtures.py` writes them;
    /// the repository's are in onnx/tests/data/quantized) in f32, f16 and int8.
    #[arg(long, value_name = "DIR")]
    int8: Option<std::path::PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    case: String,
    /// `f32`, `f16` (stored as f16, elementwise kernels computing in f16), `f16-f32-math`
    /// (stored as f16, computed in f32), `f16-in-f32` (f16 values stored as f32), `int8` (the
    /// QDQ model, its int8 weights packed four to a word), `int8-i32` (the same, its weights
    /// held as i32).
    precision: &'static str,
    median_ms: f64,
    vs_f32: f64,
    max_abs_error: f64,
    /// The largest absolute error over the largest output magnitude.
    error_vs_scale: f64,
    /// The largest output's magnitude, for scale.
    max_abs_output: f64,
    high_water_mib: f64,
    /// What the device stored as f16 (`sfumato explain`'s summary).
    f16_storage: String,
    /// The integer products (MatMulInteger, ConvInteger) the graph runs: the int8 rows'.
    integer_products: usize,
    /// Kernels computing in f16 (their names end in `_f16`).
    f16_kernels: usize,
    /// What the device stored as packed int8 (`sfumato explain`'s line).
    int8_packing: String,
}

/// The device with f16 storage and arithmetic (its matmuls tuned for `graphs` first, as
/// `bench compare` does).
fn open(graphs: &[&sfumato_core::Graph]) -> Result<WgpuDevice> {
    open_wgpu_tuned("", Optimization::PassesAndFusion, graphs)
}

/// A second device, the environment's options with `what` turned off by `off` (the tuned
/// winners come from the same cache).
fn open_without(
    what: &str,
    off: impl FnOnce(&mut sfumato_wgpu::DeviceOptions),
) -> Result<WgpuDevice> {
    let mut opts = sfumato_wgpu::DeviceOptions::from_env();
    off(&mut opts);
    WgpuDevice::new(opts).with_context(|| format!("opening a WebGPU device without {what}"))
}

pub fn bench_precision(a: &BenchPrecisionArgs) -> Result<()> {
    let cases: Vec<String> = if a.cases.is_empty() {
        vec!["bert-layer".into(), "resnet-bottleneck".into()]
    } else {
        a.cases.clone()
    };
    let mut rows = Vec::new();
    for case in &cases {
        if !PRECISION_CASES.contains(&case.as_str()) {
            bail!(
                "unknown case '{case}'; known: {}",
                PRECISION_CASES.join(", ")
            );
        }
        let (g32, inputs, _) = case_graph(case)?;
        let g16 = to_half(&g32).with_context(|| format!("case '{case}' in f16"))?;
        let mut dev = open(&[&g32, &g16])?;
        if !dev.has_half_storage() {
            eprintln!(
                "warning: {} has no shader-f16: its f16 tensors are stored as f32",
                dev.adapter().name
            );
        }
        let want = dev.run(&g32, &inputs)?.outputs;
        let mut wide_math = open_without("f16 arithmetic", |o| o.half_compute = false)?;
        let mut plain = open_without("f16 storage", |o| {
            o.half_storage = false;
            o.half_compute = false;
        })?;
        for (label, graph, which) in [
            ("f32", &g32, 0),
            ("f16", &g16, 0),
            ("f16-f32-math", &g16, 1),
            ("f16-in-f32", &g16, 2),
        ] {
            let d = match which {
                0 => &mut dev,
                1 => &mut wide_math,
                _ => &mut plain,
            };
            rows.push(measure(d, case, label, graph, &inputs, &want, a)?);
        }
        relative_to_f32(&mut rows, 4);
        if !a.json {
            println!(
                "device: {} (cpu: {})",
                dev.adapter().name,
                sfumato_wgpu::cpu_model()
            );
        }
    }
    if let Some(dir) = &a.int8 {
        for (name, g32, gq, inputs) in quantized_models(dir)? {
            let g16 = to_half(&g32).with_context(|| format!("{name} in f16"))?;
            let mut dev = open(&[&g32, &g16, &gq])?;
            let want = dev.run(&g32, &inputs)?.outputs;
            for (label, graph) in [("f32", &g32), ("f16", &g16), ("int8", &gq)] {
                rows.push(measure(&mut dev, &name, label, graph, &inputs, &want, a)?);
            }
            // The same QDQ model with its int8 weights held as i32 (no packing).
            let mut unpacked = open_without("int8 packing", |o| o.pack_int8 = false)?;
            rows.push(measure(
                &mut unpacked,
                &name,
                "int8-i32",
                &gq,
                &inputs,
                &want,
                a,
            )?);
            relative_to_f32(&mut rows, 4);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<11} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "case", "precision", "median ms", "vs f32", "max abs err", "err / max|y|", "peak MiB"
    );
    for r in &rows {
        println!(
            "{:<18} {:<11} {:>10.2} {:>7.2}x {:>12.3e} {:>12.3e} {:>10.1}",
            r.case,
            r.precision,
            r.median_ms,
            r.vs_f32,
            r.max_abs_error,
            r.error_vs_scale,
            r.high_water_mib
        );
    }
    for r in rows.iter().filter(|r| !r.f16_storage.is_empty()) {
        println!(
            "{} {}: {}; {} kernels compute in f16",
            r.case, r.precision, r.f16_storage, r.f16_kernels
        );
    }
    for r in rows.iter().filter(|r| r.integer_products > 0) {
        println!(
            "{} {}: {} integer products (MatMulInteger, ConvInteger); {}",
            r.case,
            r.precision,
            r.integer_products,
            if r.int8_packing.is_empty() {
                "no int8 packing"
            } else {
                &r.int8_packing
            }
        );
    }
    if a.int8.is_some() {
        println!(
            "(int8: the QDQ model against its f32 model, so its error is the quantization's \
             own; onnxruntime's basic level computes the same to within one output step, \
             onnx/tests/quantized.rs)"
        );
    }
    println!(
        "(errors against the f32 run's outputs on the same device, and over the largest output's \
         magnitude; vs f32 > 1 is faster; peak: the device's memory high-water in the run)"
    );
    Ok(())
}

/// One row: `graph` timed on `d` (its memory alone: what the previous graph held is trimmed
/// first), its outputs against `want`, what it stored as f16 and its integer products.
fn measure(
    d: &mut WgpuDevice,
    case: &str,
    precision: &'static str,
    graph: &sfumato_core::Graph,
    inputs: &[Tensor],
    want: &[Tensor],
    a: &BenchPrecisionArgs,
) -> Result<Row> {
    d.trim();
    let t = time_graph_with(d, graph, inputs, a.iters, !a.json)?;
    let out = d.run(graph, inputs)?;
    let (abs, scale) = largest_error(want, &out.outputs);
    let integer_products = graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op.name(), "MatMulInteger" | "ConvInteger"))
        .count();
    let x = d.explain(graph)?;
    let f16_kernels = x.all_kernels().filter(|k| k.name.ends_with("_f16")).count();
    Ok(Row {
        case: case.to_string(),
        precision,
        median_ms: t.median_wall_ms,
        vs_f32: 0.0,
        max_abs_error: abs,
        error_vs_scale: abs / scale.max(f64::MIN_POSITIVE),
        max_abs_output: scale,
        high_water_mib: out.profile.memory_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
        f16_storage: x.f16.summary().unwrap_or_default(),
        integer_products,
        f16_kernels,
        int8_packing: x.packed_summary().unwrap_or_default(),
    })
}

/// The last `n` rows' time ratios to the first of them (the f32 run).
fn relative_to_f32(rows: &mut [Row], n: usize) {
    let at = rows.len() - n;
    let base = rows[at].median_ms;
    for r in &mut rows[at..] {
        r.vs_f32 = base / r.median_ms.max(1e-9);
    }
}

/// A quantized model beside the f32 one it came from: name, f32 graph, QDQ graph, inputs.
type QuantizedModel = (
    String,
    sfumato_core::Graph,
    sfumato_core::Graph,
    Vec<Tensor>,
);

/// Each folder of `dir` with `f32.onnx`, `model.onnx` and `test_data_set_0/input_0.pb`: its
/// name, the f32 graph, the quantized graph and the input. Sorted by name.
fn quantized_models(dir: &std::path::Path) -> Result<Vec<QuantizedModel>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut folders: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("f32.onnx").is_file() && p.join("model.onnx").is_file())
        .collect();
    folders.sort();
    for f in folders {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opts = sfumato_onnx::ImportOptions::default();
        let g32 = sfumato_onnx::load(&f.join("f32.onnx"), &opts)?.graph;
        let gq = sfumato_onnx::load(&f.join("model.onnx"), &opts)?.graph;
        let x = sfumato_onnx::read_tensor_pb(&f.join("test_data_set_0/input_0.pb"))?;
        out.push((name, g32, gq, vec![x]));
    }
    if out.is_empty() {
        bail!(
            "{}: no folder with f32.onnx and model.onnx (scripts/make-quantized-fixtures.py \
             writes them; the repository's are in onnx/tests/data/quantized)",
            dir.display()
        );
    }
    Ok(out)
}

/// The largest absolute error and the largest output magnitude.
fn largest_error(want: &[Tensor], got: &[Tensor]) -> (f64, f64) {
    let (mut abs, mut scale) = (0.0f64, 0.0f64);
    for (w, g) in want.iter().zip(got) {
        let (w, g) = (w.to_f64_vec(), g.to_f64_vec());
        for (a, b) in w.iter().zip(&g) {
            scale = scale.max(a.abs());
            abs = abs.max((a - b).abs());
        }
    }
    (abs, scale)
}
