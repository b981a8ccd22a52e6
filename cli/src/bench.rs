//! `sfumato bench matmul` and `sfumato bench conv`.

use crate::args::positive;
use crate::open::{open_bench_device, DeviceKind};
use crate::timing::{checked_numel, print_text_timing, time_graph_with, usize_of, Timing};
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_core::op::Conv2d;
use sfumato_core::{DType, Graph, Tensor};

#[derive(Args, Debug)]
pub(crate) struct MatmulArgs {
    #[arg(long, value_parser = positive)]
    pub(crate) m: u64,
    #[arg(long, value_parser = positive)]
    pub(crate) n: u64,
    #[arg(long, value_parser = positive)]
    pub(crate) k: u64,
    /// Force a matmul kernel variant (default: autotuned).
    #[arg(long)]
    pub(crate) variant: Option<String>,
    /// B is a run input too (a product of two activations, as attention's Q·Kᵀ): it cannot be
    /// laid out ahead of time as a weight can (no texture, no constant upload).
    #[arg(long)]
    pub(crate) b_input: bool,
    #[command(flatten)]
    pub(crate) common: BenchCommon,
}

#[derive(Args, Debug)]
pub(crate) struct ConvArgs {
    #[arg(long, default_value_t = 8, value_parser = positive)]
    pub(crate) batch: u64,
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub(crate) c_in: u64,
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub(crate) c_out: u64,
    /// Input height and width.
    #[arg(long, default_value_t = 56, value_parser = positive)]
    pub(crate) size: u64,
    /// Kernel height and width.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub(crate) kernel: u64,
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub(crate) stride: u64,
    /// Padding on every side.
    #[arg(long, default_value_t = 1)]
    pub(crate) pad: u64,
    /// Groups: C-in and C-out must be multiples (`--groups C` with C-in = C-out = C is a
    /// depthwise conv, as MobileNet's and EfficientNet's).
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub(crate) groups: u64,
    #[command(flatten)]
    pub(crate) common: BenchCommon,
}

#[derive(Args, Debug)]
pub(crate) struct BenchCommon {
    /// Timed runs (after two warm-up runs).
    #[arg(long, value_parser = positive)]
    pub(crate) iters: Option<u64>,
    #[arg(long, value_enum, default_value_t = DeviceKind::Wgpu)]
    pub(crate) device: DeviceKind,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn bench_matmul(a: &MatmulArgs) -> Result<()> {
    let (m, n, k) = (
        usize_of(a.m, "m")?,
        usize_of(a.n, "n")?,
        usize_of(a.k, "k")?,
    );
    checked_numel(&[m, k], "A")?;
    checked_numel(&[k, n], "B")?;
    checked_numel(&[m, n], "C")?;
    let iters = a.common.iters.unwrap_or(10);
    // A is a run input (all-constant graphs are folded by the passes); B a weight, or with
    // `--b-input` a run input too (uploaded every run, like A).
    let mut g = Graph::new();
    let lhs = g.input("a", DType::F32, [m, k]);
    let mut inputs = vec![Tensor::random(DType::F32, [m, k], 1)];
    let rhs = if a.b_input {
        inputs.push(Tensor::random(DType::F32, [k, n], 2));
        g.input("b", DType::F32, [k, n])
    } else {
        g.constant(Tensor::random(DType::F32, [k, n], 2))?
    };
    let c = g.matmul(lhs, rhs)?;
    g.set_outputs(&[c])?;
    let mut dev = open_bench_device(a.common.device, a.variant.as_deref(), &g)?;

    let t = time_graph_with(dev.as_mut(), &g, &inputs, iters, !a.common.json)?;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let gflops = t.gflops(flops);
    let fields =
        serde_json::json!({ "m": m, "n": n, "k": k, "iters": iters, "b_input": a.b_input });
    let b = if a.b_input { ", B a run input" } else { "" };
    report(
        &t,
        flops,
        a.common.json,
        fields,
        format!("matmul {m}x{n}x{k} f32{b}: {gflops:.1} GFLOP/s"),
    )
}

pub(crate) fn bench_conv(a: &ConvArgs) -> Result<()> {
    let batch = usize_of(a.batch, "batch")?;
    let (c_in, c_out) = (usize_of(a.c_in, "c-in")?, usize_of(a.c_out, "c-out")?);
    let (size, kk) = (usize_of(a.size, "size")?, usize_of(a.kernel, "kernel")?);
    let (stride, pad) = (usize_of(a.stride, "stride")?, usize_of(a.pad, "pad")?);
    let groups = usize_of(a.groups, "groups")?;
    if !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        bail!("--groups {groups} must divide --c-in {c_in} and --c-out {c_out}");
    }
    let cig = c_in / groups;
    checked_numel(&[batch, c_in, size, size], "x")?;
    checked_numel(&[c_out, cig, kk, kk], "weight")?;
    let iters = a.common.iters.unwrap_or(5);

    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [batch, c_in, size, size]);
    let inputs = [Tensor::random(DType::F32, [batch, c_in, size, size], 1)];
    let w = g.constant(Tensor::random(DType::F32, [c_out, cig, kk, kk], 2))?;
    let conv = Conv2d {
        groups,
        ..Conv2d::padded(pad, stride)
    };
    let y = g
        .conv2d(x, w, None, conv)
        .context("building the convolution")?;
    g.set_outputs(&[y])?;
    let (oh, ow) = match g.shape(y).dims() {
        &[_, _, oh, ow] => (oh, ow),
        other => bail!("conv output has unexpected shape {other:?}"),
    };
    checked_numel(&[batch, c_out, oh, ow], "output")?;
    let mut dev = open_bench_device(a.common.device, None, &g)?;

    let t = time_graph_with(dev.as_mut(), &g, &inputs, iters, !a.common.json)?;
    let flops =
        2.0 * batch as f64 * c_out as f64 * cig as f64 * (kk * kk) as f64 * oh as f64 * ow as f64;
    let gflops = t.gflops(flops);
    let fields = serde_json::json!({
        "batch": batch,
        "c_in": c_in,
        "c_out": c_out,
        "size": size,
        "kernel_size": kk,
        "stride": stride,
        "pad": pad,
        "groups": groups,
        "out_size": [oh, ow],
        "iters": iters,
    });
    let line =
        format!("conv {kk}x{kk} {size}x{size}x{c_in}->{c_out} groups {groups} b{batch} f32: {gflops:.1} GFLOP/s");
    report(&t, flops, a.common.json, fields, line)
}

/// Print a benchmark's result: JSON (the case's `fields` plus the timings), or the text report
/// whose last line is `line`.
pub(crate) fn report(
    t: &Timing,
    flops: f64,
    json: bool,
    mut fields: serde_json::Value,
    line: String,
) -> Result<()> {
    if json {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("kernel".into(), t.kernel.clone().into());
            obj.insert("median_wall_ms".into(), t.median_wall_ms.into());
            obj.insert("median_kernel_ms".into(), t.median_kernel_ms.into());
            obj.insert("gflops".into(), t.gflops(flops).into());
            obj.insert(
                "gflops_kernel".into(),
                serde_json::json!(t.gflops_kernel(flops)),
            );
            obj.insert("adapter".into(), t.device.clone().into());
        }
        println!("{}", serde_json::to_string_pretty(&fields)?);
    } else {
        print_text_timing(t);
        if let Some(gk) = t.gflops_kernel(flops) {
            println!("kernel-only: {gk:.1} GFLOP/s");
        }
        println!("{line}");
    }
    Ok(())
}
