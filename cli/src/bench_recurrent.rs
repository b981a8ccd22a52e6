//! `sfumato bench recurrent`: ONNX RNN, GRU and LSTM layers at the sizes speech and older NLP
//! models use, each imported two ways and timed one after the other on the same device: as the
//! device loop (`Op::Recurrence`: one kernel runs many steps, `h` in workgroup memory) and
//! unrolled (a MatMul and the gates' kernels per step). Reports each one's first run (pipelines
//! built, weights uploaded), its steady-state median, its kernels per run, the loop's speed-up,
//! and the largest difference between the two outputs (each is checked against ONNX's equations
//! by `onnx/tests/compositions.rs`).

use crate::args::positive;
use crate::timing::time_graph_with;
use anyhow::{bail, Context, Result};
use clap::Args;
use prost::Message;
use sfumato_core::{DType, Device, Graph, Tensor};
use sfumato_onnx::proto::*;
use sfumato_onnx::{import, tensor, ImportOptions, RecurrentForm};
use std::time::Instant;

/// A layer: op, direction, steps, batch, input width, hidden size.
struct Layer {
    name: &'static str,
    op: &'static str,
    direction: &'static str,
    t: usize,
    b: usize,
    input: usize,
    h: usize,
}

const LAYERS: &[Layer] = &[
    // A CTC speech model's bidirectional LSTM over 1 s of 10 ms frames (80 mel bins).
    Layer {
        name: "lstm-speech",
        op: "LSTM",
        direction: "bidirectional",
        t: 100,
        b: 1,
        input: 80,
        h: 256,
    },
    // The same as a GRU (linear before reset, as PyTorch exports it).
    Layer {
        name: "gru-speech",
        op: "GRU",
        direction: "forward",
        t: 100,
        b: 1,
        input: 80,
        h: 256,
    },
    // A long sequence: 1,000 steps (several dispatches under llvmpipe's loop budget).
    Layer {
        name: "lstm-long",
        op: "LSTM",
        direction: "forward",
        t: 1000,
        b: 1,
        input: 40,
        h: 128,
    },
    // A wide layer over a batch: an NMT encoder's 1,024 units, 8 sentences of 32 tokens.
    Layer {
        name: "lstm-wide",
        op: "LSTM",
        direction: "forward",
        t: 32,
        b: 8,
        input: 512,
        h: 1024,
    },
];

#[derive(Args, Debug)]
pub struct BenchRecurrentArgs {
    /// Layers (default: all): lstm-speech, gru-speech, lstm-long, lstm-wide.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Timed runs per layer and form (after two warm-up runs).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    iters: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    case: String,
    /// `loop` (the device loop) or `unrolled`.
    form: &'static str,
    kernels: usize,
    first_run_ms: f64,
    median_ms: f64,
    median_kernel_ms: Option<f64>,
    /// The loop's speed-up over this form: this form's median over the loop's (> 1: the loop
    /// is faster).
    speedup: f64,
    /// The largest difference from the device loop's outputs.
    max_abs_diff: f64,
}

/// Seeded values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The layer as an ONNX model (weights as initializers, X an input) and an input.
fn model(l: &Layer) -> (Vec<u8>, Tensor) {
    let g = match l.op {
        "RNN" => 1,
        "GRU" => 3,
        _ => 4,
    };
    let d = if l.direction == "bidirectional" { 2 } else { 1 };
    let s = 1.0 / (l.h as f64).sqrt();
    let w = Tensor::from_f64(
        DType::F32,
        [d, g * l.h, l.input],
        &values(d * g * l.h * l.input, 1, s),
    );
    let r = Tensor::from_f64(
        DType::F32,
        [d, g * l.h, l.h],
        &values(d * g * l.h * l.h, 2, s),
    );
    let b = Tensor::from_f64(
        DType::F32,
        [d, 2 * g * l.h],
        &values(d * 2 * g * l.h, 3, 0.1),
    );
    let x = Tensor::from_f64(
        DType::F32,
        [l.t, l.b, l.input],
        &values(l.t * l.b * l.input, 4, 1.0),
    );
    let attr_i = |name: &str, i: i64| AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    };
    let mut attrs = vec![
        attr_i("hidden_size", l.h as i64),
        AttributeProto {
            name: "direction".into(),
            r#type: 3,
            s: l.direction.as_bytes().to_vec(),
            ..Default::default()
        },
    ];
    if l.op == "GRU" {
        attrs.push(attr_i("linear_before_reset", 1));
    }
    let outs: &[&str] = if l.op == "LSTM" {
        &["y", "yh", "yc"]
    } else {
        &["y", "yh"]
    };
    let vi = |name: &str, dims: Option<&[usize]>| ValueInfoProto {
        name: name.into(),
        r#type: dims.map(|dims| TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&v| Dimension {
                            dim_value: Some(v as i64),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    };
    let bytes = ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 14,
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: ["x", "w", "r", "b"].iter().map(|s| s.to_string()).collect(),
                output: outs.iter().map(|s| s.to_string()).collect(),
                name: l.name.into(),
                op_type: l.op.into(),
                attribute: attrs,
                ..Default::default()
            }],
            name: l.name.into(),
            initializer: vec![
                tensor::to_proto(&w, "w"),
                tensor::to_proto(&r, "r"),
                tensor::to_proto(&b, "b"),
            ],
            input: vec![vi("x", Some(&[l.t, l.b, l.input]))],
            output: outs.iter().map(|o| vi(o, None)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    (bytes, x)
}

fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            x.to_f64_vec()
                .into_iter()
                .zip(y.to_f64_vec())
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

fn run_form(
    dev: &mut dyn Device,
    l: &Layer,
    form: &'static str,
    g: &Graph,
    x: &Tensor,
    iters: u64,
    progress: bool,
) -> Result<(Row, Vec<Tensor>)> {
    let inputs = [x.clone()];
    let t0 = Instant::now();
    let first = dev
        .run(g, &inputs)
        .with_context(|| format!("first run of {} ({form})", l.name))?;
    let first_run_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t = time_graph_with(dev, g, &inputs, iters, progress)?;
    Ok((
        Row {
            case: l.name.into(),
            form,
            kernels: first.profile.entries.len(),
            first_run_ms,
            median_ms: t.median_wall_ms,
            median_kernel_ms: t.median_kernel_ms,
            speedup: 1.0,
            max_abs_diff: 0.0,
        },
        first.outputs,
    ))
}

pub fn bench_recurrent(a: &BenchRecurrentArgs) -> Result<()> {
    for c in &a.cases {
        if !LAYERS.iter().any(|l| l.name == c) {
            let known: Vec<&str> = LAYERS.iter().map(|l| l.name).collect();
            bail!("unknown case '{c}'; known: {}", known.join(", "));
        }
    }
    let mut dev = sfumato_wgpu::WgpuDevice::new(sfumato_wgpu::DeviceOptions::from_env())
        .context("opening the WebGPU device")?;
    let mut rows = Vec::new();
    for l in LAYERS
        .iter()
        .filter(|l| a.cases.is_empty() || a.cases.iter().any(|c| c == l.name))
    {
        let (bytes, x) = model(l);
        let mut forms = Vec::new();
        for (form, recurrence) in [
            ("loop", RecurrentForm::Loop),
            ("unrolled", RecurrentForm::Unrolled),
        ] {
            let opts = ImportOptions {
                recurrence,
                ..Default::default()
            };
            let m = import(&bytes, &opts).with_context(|| format!("importing {}", l.name))?;
            forms.push(run_form(&mut dev, l, form, &m.graph, &x, a.iters, !a.json)?);
        }
        let loop_out = forms[0].1.clone();
        let loop_ms = forms[0].0.median_ms;
        for (mut row, out) in forms {
            row.speedup = row.median_ms / loop_ms.max(f64::MIN_POSITIVE);
            row.max_abs_diff = max_abs_diff(&loop_out, &out);
            rows.push(row);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "device: {} (cpu: {})",
        dev.adapter().name,
        sfumato_wgpu::cpu_model()
    );
    println!(
        "{:<12} {:<9} {:>8} {:>12} {:>10} {:>11} {:>9} {:>12}",
        "case", "form", "kernels", "first ms", "median ms", "kernel ms", "loop gain", "max |diff|"
    );
    for r in &rows {
        println!(
            "{:<12} {:<9} {:>8} {:>12.1} {:>10.2} {:>11} {:>8.2}x {:>12.2e}",
            r.case,
            r.form,
            r.kernels,
            r.first_run_ms,
            r.median_ms,
            r.median_kernel_ms
                .map(|k| format!("{k:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.speedup,
            r.max_abs_diff
        );
    }
    println!(
        "(loop gain: the row's median over the loop's, above 1 where the loop is faster; \
         max |diff|: against the loop's outputs)"
    );
    Ok(())
}
