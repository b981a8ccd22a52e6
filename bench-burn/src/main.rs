//! bench-burn: Sfumato's benchmark cases written with burn 0.22 tensor ops on burn's wgpu
//! backend, timed the way `sfumato` times its own runs, so the two can be compared case by case.
//!
//! Fusion and autotune are on with the default feature `fusion` (burn's defaults, what a
//! burn user gets); `--no-default-features` builds burn without them (as peer-probe does). The
//! output says which.
//!
//! Each case does the same work as the Sfumato model of the same name (sfumato-zoo's
//! `models.rs`): same shapes, same ops, weights drawn at the same scales. FLOP counts use the
//! same formulas (matmul and conv multiply-adds, two FLOPs each).
//!
//! Timing: two untimed warm-up runs (shader compilation, and autotune when on), then `iters`
//! timed runs, each ending in a scalar read back (`.sum().into_scalar()`), so the GPU work is
//! finished and only 4 bytes cross the bus. Reports the median and the minimum.
//!
//! Adapter: burn's default wgpu device is opened through `Device::wgpu_options().init_with_setup()`
//! (the default adapter selector and graphics API, as `Device::default()` has them), which hands
//! back the wgpu handles burn runs on, so the output names the adapter burn really used;
//! `sfumato bench compare` refuses burn's figures from another adapter than its own.
//!
//! usage: bench-burn [--case NAME]... [--iters N] [--json] [--adapter]

use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::module::{batch_norm, conv2d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, TensorData};
use std::process::ExitCode;
use std::time::Instant;

/// The case names, as `sfumato` names the same work.
const CASES: &[&str] = &[
    "matmul",
    "conv",
    "resnet-bottleneck",
    "bert-layer",
    "gpt2-decode",
];

/// Whether burn runs with fusion and autotune (this crate's `fusion` feature).
const BURN_FEATURES: &str = if cfg!(feature = "fusion") {
    "fusion on, autotune on"
} else {
    "fusion off, autotune off (built with --no-default-features)"
};

const HIDDEN: usize = 768;
const HEADS: usize = 12;
const HEAD_DIM: usize = 64;
const FFN: usize = 3072;
const SEQ: usize = 128;
const KV_CACHE: usize = 128;

const USAGE: &str = "usage: bench-burn [--case NAME]... [--iters N] [--json] [--adapter]
  --case NAME  run this case (repeatable; default: all): matmul, conv, resnet-bottleneck,
               bert-layer, gpt2-decode
  --iters N    timed iterations per case, after two warm-ups (default 10)
  --json       one JSON object per line: first the adapter burn opened,
               {\"adapter\", \"backend\", \"device_type\", \"driver\", \"config\"},
               then one per case: {\"case\", \"median_ms\", \"min_ms\", \"iters\", \"flops\"}
  --adapter    open the device, print the adapter and run no case";

struct Args {
    cases: Vec<String>,
    iters: usize,
    json: bool,
    adapter_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cases: Vec::new(),
        iters: 10,
        json: false,
        adapter_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--case" => {
                let name = it.next().ok_or("--case needs a name")?;
                if !CASES.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown case '{name}'; known cases: {}",
                        CASES.join(", ")
                    ));
                }
                args.cases.push(name);
            }
            "--iters" => {
                let n = it.next().ok_or("--iters needs a number")?;
                args.iters = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--iters needs a positive number, got '{n}'"))?;
            }
            "--json" => args.json = true,
            "--adapter" => args.adapter_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    if args.cases.is_empty() {
        args.cases = CASES.iter().map(|s| s.to_string()).collect();
    }
    Ok(args)
}

/// One benchmark: its FLOPs per forward and the forward, which returns a scalar read back.
struct Case {
    flops: f64,
    forward: Box<dyn FnMut() -> f32>,
}

struct Timing {
    median_ms: f64,
    min_ms: f64,
}

fn time(name: &str, case: &mut Case, iters: usize) -> Result<Timing, String> {
    for _ in 0..2 {
        (case.forward)(); // warm-up: autotune (when on), shader compilation
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let v = (case.forward)();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !v.is_finite() {
            return Err(format!("{name}: the result is not finite ({v})"));
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The device `Device::default()` gives (no BURN_DEVICE override), opened here so that
    // burn hands back the wgpu adapter it chose.
    let (dev, setup) = match Device::wgpu_options().init_with_setup() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: burn could not open its wgpu device: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = setup.adapter.get_info();
    dev.seed(42);
    let config = format!("burn 0.22 on {dev:?}, {BURN_FEATURES}");
    if args.json {
        eprintln!("{config}");
        println!(
            "{{\"adapter\": {}, \"backend\": {}, \"device_type\": {}, \"driver\": {}, \"config\": {}}}",
            json_string(&info.name),
            json_string(&format!("{:?}", info.backend)),
            json_string(&format!("{:?}", info.device_type)),
            json_string(&info.driver),
            json_string(&config)
        );
    } else {
        println!("{config}");
        println!(
            "adapter: {} ({:?}, {:?})",
            info.name, info.backend, info.device_type
        );
    }
    if args.adapter_only {
        return ExitCode::SUCCESS;
    }
    for name in &args.cases {
        let mut case = build(name, &dev);
        let t = match time(name, &mut case, args.iters) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if args.json {
            println!(
                "{{\"case\": \"{name}\", \"median_ms\": {}, \"min_ms\": {}, \"iters\": {}, \"flops\": {}}}",
                t.median_ms, t.min_ms, args.iters, case.flops
            );
        } else {
            println!(
                "{name}: median {:.3} ms, min {:.3} ms, {:.1} GFLOP/s ({} iters)",
                t.median_ms,
                t.min_ms,
                case.flops / t.median_ms / 1e6,
                args.iters
            );
        }
    }
    ExitCode::SUCCESS
}

/// A JSON string literal (quotes, backslashes and control characters escaped).
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build(name: &str, dev: &Device) -> Case {
    match name {
        "matmul" => matmul(dev),
        "conv" => conv(dev),
        "resnet-bottleneck" => resnet_bottleneck(dev),
        "bert-layer" => bert_layer(dev),
        "gpt2-decode" => gpt2_decode(dev),
        _ => unreachable!("case names are checked when parsing"),
    }
}

// ---- weights and inputs, at the scales sfumato-zoo draws them ----

fn uniform<const D: usize>(dev: &Device, shape: [usize; D], lo: f64, hi: f64) -> Tensor<D> {
    Tensor::random(shape, Distribution::Uniform(lo, hi), dev)
}

/// Inputs: uniform in [-1, 1), like `Tensor::random` in sfumato-core.
fn input<const D: usize>(dev: &Device, shape: [usize; D]) -> Tensor<D> {
    uniform(dev, shape, -1.0, 1.0)
}

/// A linear layer `x @ W + b` (burn keeps W as `[in, out]`, like the ONNX MatMul).
struct Linear {
    w: Tensor<2>,
    b: Tensor<1>,
}

impl Linear {
    fn new(dev: &Device, fan_in: usize, fan_out: usize) -> Self {
        Linear {
            w: uniform(dev, [fan_in, fan_out], -0.05, 0.05),
            b: uniform(dev, [fan_out], -0.02, 0.02),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.w.clone(), Some(self.b.clone()))
    }
}

/// A layer norm over the last axis.
struct LayerNorm {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    fn new(dev: &Device, dim: usize, eps: f64) -> Self {
        LayerNorm {
            gamma: uniform(dev, [dim], 0.95, 1.05),
            beta: uniform(dev, [dim], -0.02, 0.02),
            eps,
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.gamma.clone(), Some(self.beta.clone()), self.eps)
    }
}

/// A bias-free `k`x`k` convolution ("same" padding, stride 1) then inference batch norm.
struct ConvBn {
    w: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    pad: usize,
}

impl ConvBn {
    fn new(dev: &Device, cin: usize, cout: usize, k: usize) -> Self {
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        ConvBn {
            w: uniform(dev, [cout, cin, k, k], -bound, bound),
            gamma: uniform(dev, [cout], 0.9, 1.1),
            beta: uniform(dev, [cout], -0.05, 0.05),
            mean: uniform(dev, [cout], -0.05, 0.05),
            var: uniform(dev, [cout], 0.5, 1.5),
            pad: k / 2,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = ConvOptions::new([1, 1], [self.pad, self.pad], [1, 1], 1);
        let y = conv2d(x, self.w.clone(), None, opts);
        batch_norm(
            y,
            self.gamma.clone(),
            self.beta.clone(),
            self.mean.clone(),
            self.var.clone(),
            1e-5,
        )
    }
}

/// Split `[b, s, 768]` into heads `[b, 12, s, 64]`.
fn heads(x: Tensor<3>, b: usize, s: usize) -> Tensor<4> {
    x.reshape([b, s, HEADS, HEAD_DIM]).swap_dims(1, 2)
}

/// Merge `[b, 12, s, 64]` back into `[b, s, 768]`.
fn merge_heads(x: Tensor<4>, b: usize, s: usize) -> Tensor<3> {
    x.swap_dims(1, 2).reshape([b, s, HIDDEN])
}

// ---- the cases ----

/// `relu(a @ b)`, 1024^3.
fn matmul(dev: &Device) -> Case {
    const N: usize = 1024;
    let a = input(dev, [N, N]);
    let b = input(dev, [N, N]);
    Case {
        flops: 2.0 * (N as f64).powi(3),
        forward: Box::new(move || relu(a.clone().matmul(b.clone())).sum().into_scalar()),
    }
}

/// `relu(conv3x3(x))`, 56x56, 64 -> 64 channels, pad 1, batch 8, no bias.
fn conv(dev: &Device) -> Case {
    let (b, c, n) = (8, 64, 56);
    let x = input(dev, [b, c, n, n]);
    let bound = 1.0 / ((c * 9) as f64).sqrt();
    let w = uniform(dev, [c, c, 3, 3], -bound, bound);
    Case {
        flops: 2.0 * (b * c * c * 9 * n * n) as f64,
        forward: Box::new(move || {
            let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            relu(conv2d(x.clone(), w.clone(), None, opts))
                .sum()
                .into_scalar()
        }),
    }
}

/// ResNet-50 stage-1 bottleneck, batch 1, 256x56x56: 1x1 256->64, BN, relu; 3x3 64->64, BN,
/// relu; 1x1 64->256, BN; add the input; relu.
fn resnet_bottleneck(dev: &Device) -> Case {
    let n = 56;
    let x = input(dev, [1, 256, n, n]);
    let c1 = ConvBn::new(dev, 256, 64, 1);
    let c2 = ConvBn::new(dev, 64, 64, 3);
    let c3 = ConvBn::new(dev, 64, 256, 1);
    let macs_per_pixel = (256 * 64 + 9 * 64 * 64 + 64 * 256) as f64;
    Case {
        flops: 2.0 * (n * n) as f64 * macs_per_pixel,
        forward: Box::new(move || {
            let h = relu(c1.forward(x.clone()));
            let h = relu(c2.forward(h));
            let h = c3.forward(h);
            relu(h + x.clone()).sum().into_scalar()
        }),
    }
}

/// One post-LN BERT-base encoder layer, batch 1, seq 128, with an additive mask (0 to attend,
/// -10000 on the last 16 positions).
fn bert_layer(dev: &Device) -> Case {
    let (b, s) = (1, SEQ);
    let x = input(dev, [b, s, HIDDEN]);
    let mut m = vec![0.0f32; s];
    m[s - s / 8..].fill(-10000.0);
    let mask = Tensor::<4>::from_data(TensorData::new(m, [b, 1, 1, s]), dev);
    let (q, k, v, o) = (
        Linear::new(dev, HIDDEN, HIDDEN),
        Linear::new(dev, HIDDEN, HIDDEN),
        Linear::new(dev, HIDDEN, HIDDEN),
        Linear::new(dev, HIDDEN, HIDDEN),
    );
    let ln1 = LayerNorm::new(dev, HIDDEN, 1e-12);
    let (f1, f2) = (Linear::new(dev, HIDDEN, FFN), Linear::new(dev, FFN, HIDDEN));
    let ln2 = LayerNorm::new(dev, HIDDEN, 1e-12);
    let (hf, ff, sf) = (HIDDEN as f64, FFN as f64, s as f64);
    Case {
        flops: 2.0 * sf * (4.0 * hf * hf + 2.0 * hf * ff) + 4.0 * sf * sf * hf,
        forward: Box::new(move || {
            let x = x.clone();
            let qh = heads(q.forward(x.clone()), b, s);
            let kt = k
                .forward(x.clone())
                .reshape([b, s, HEADS, HEAD_DIM])
                .permute([0, 2, 3, 1]);
            let vh = heads(v.forward(x.clone()), b, s);
            let scores = qh.matmul(kt).mul_scalar(0.125) + mask.clone();
            let ctx = softmax(scores, 3).matmul(vh);
            let h = ln1.forward(o.forward(merge_heads(ctx, b, s)) + x);
            let f = f2.forward(gelu(f1.forward(h.clone())));
            ln2.forward(f + h).sum().into_scalar()
        }),
    }
}

/// One GPT-2 small block decoding one token over a 128-token KV cache, batch 1. Reads back
/// the output and both grown caches (the Sfumato model's three outputs).
fn gpt2_decode(dev: &Device) -> Case {
    let b = 1;
    let x = input(dev, [b, 1, HIDDEN]);
    let past_k = input(dev, [b, HEADS, KV_CACHE, HEAD_DIM]);
    let past_v = input(dev, [b, HEADS, KV_CACHE, HEAD_DIM]);
    let ln1 = LayerNorm::new(dev, HIDDEN, 1e-5);
    let qkv = Linear::new(dev, HIDDEN, 3 * HIDDEN);
    let o = Linear::new(dev, HIDDEN, HIDDEN);
    let ln2 = LayerNorm::new(dev, HIDDEN, 1e-5);
    let (f1, f2) = (Linear::new(dev, HIDDEN, FFN), Linear::new(dev, FFN, HIDDEN));
    let (hf, ff, tf) = (HIDDEN as f64, FFN as f64, (KV_CACHE + 1) as f64);
    Case {
        flops: 2.0 * (3.0 * hf * hf + hf * hf + 2.0 * hf * ff) + 4.0 * tf * hf,
        forward: Box::new(move || {
            let x = x.clone();
            let parts = qkv
                .forward(ln1.forward(x.clone()))
                .split_with_sizes(vec![HIDDEN; 3], 2);
            let [q, k, v]: [Tensor<3>; 3] = parts.try_into().expect("three parts");
            let k_all = Tensor::cat(vec![past_k.clone(), heads(k, b, 1)], 2);
            let v_all = Tensor::cat(vec![past_v.clone(), heads(v, b, 1)], 2);
            let scores = heads(q, b, 1)
                .matmul(k_all.clone().swap_dims(2, 3))
                .mul_scalar(0.125);
            let ctx = softmax(scores, 3).matmul(v_all.clone());
            let h1 = o.forward(merge_heads(ctx, b, 1)) + x;
            let f = f2.forward(gelu_approximate(f1.forward(ln2.forward(h1.clone()))));
            let y = f + h1;
            (y.sum() + k_all.sum() + v_all.sum()).into_scalar()
        }),
    }
}
