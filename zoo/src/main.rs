//! `sfumato`: list WebGPU adapters, run the built-in models with a profile (and a Chrome
//! trace), and benchmark matmul and conv kernels.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sfumato_core::op::Conv2d;
use sfumato_core::{CpuDevice, DType, Device, Graph, Tensor};
use sfumato_shaders::MatmulVariant;
use sfumato_wgpu::{AdapterSummary, DeviceOptions, WgpuDevice};
use sfumato_zoo::models::{self, ModelOptions};
use std::path::PathBuf;

mod compare;
mod onnx_cli;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "sfumato",
    version,
    about = "Sfumato: deep-learning compute on WebGPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the WebGPU adapters on this machine and their limits.
    Devices {
        /// Print the adapters as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark one kernel.
    #[command(subcommand)]
    Bench(Bench),
    /// Run a built-in model once (after a warm-up run) and print its outputs and profile.
    Run(RunArgs),
    /// List an ONNX model's inputs, outputs, op histogram and unsupported ops.
    Inspect(onnx_cli::InspectArgs),
    /// Run the ONNX operator conformance suite: pass, fail, unsupported or error per case.
    Conformance(onnx_cli::ConformanceArgs),
    /// Show how a model compiles: its fused groups (which ops form which kernel), the WGSL of a
    /// group, and the totals of the fused and the unfused graph.
    Explain(ExplainArgs),
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// C[M,N] = A[M,K] @ B[K,N] in f32.
    Matmul(MatmulArgs),
    /// A 2-D convolution in f32 (NCHW, no bias).
    Conv(ConvArgs),
    /// Sfumato (fused and unfused) against burn-wgpu on the same adapter, case by case.
    Compare(compare::CompareArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The WebGPU device.
    Wgpu,
    /// The CPU reference interpreter (slow, exact).
    Cpu,
}

#[derive(Args, Debug)]
struct MatmulArgs {
    #[arg(long, value_parser = positive)]
    m: u64,
    #[arg(long, value_parser = positive)]
    n: u64,
    #[arg(long, value_parser = positive)]
    k: u64,
    /// Force a matmul kernel variant (default: autotuned).
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    common: BenchCommon,
}

#[derive(Args, Debug)]
struct ConvArgs {
    #[arg(long, default_value_t = 8, value_parser = positive)]
    batch: u64,
    #[arg(long, default_value_t = 64, value_parser = positive)]
    c_in: u64,
    #[arg(long, default_value_t = 64, value_parser = positive)]
    c_out: u64,
    /// Input height and width.
    #[arg(long, default_value_t = 56, value_parser = positive)]
    size: u64,
    /// Kernel height and width.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    kernel: u64,
    #[arg(long, default_value_t = 1, value_parser = positive)]
    stride: u64,
    /// Padding on every side.
    #[arg(long, default_value_t = 1)]
    pad: u64,
    #[command(flatten)]
    common: BenchCommon,
}

#[derive(Args, Debug)]
struct BenchCommon {
    /// Timed runs (after two warm-up runs).
    #[arg(long, value_parser = positive)]
    iters: Option<u64>,
    #[arg(long, value_enum, default_value_t = DeviceKind::Wgpu)]
    device: DeviceKind,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Which built-in model, at which sizes.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model: mlp, bert-base, resnet-bottleneck, gpt2-decode, or an .onnx file (run only).
    pub model: String,
    /// Batch size (default: 4 for mlp, 1 for the others).
    #[arg(long, value_parser = positive)]
    pub batch: Option<u64>,
    /// Encoder layers of bert-base, bottleneck blocks of resnet-bottleneck.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub layers: u64,
    /// Sequence length of bert-base, KV-cache length of gpt2-decode.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub seq: u64,
    /// Image height and width of resnet-bottleneck.
    #[arg(long, default_value_t = 56, value_parser = positive)]
    pub size: u64,
}

impl ModelArgs {
    pub fn options(&self) -> Result<ModelOptions> {
        let default_batch = if self.model == "mlp" { 4 } else { 1 };
        Ok(ModelOptions {
            batch: usize_of(self.batch.unwrap_or(default_batch), "batch")?,
            layers: usize_of(self.layers, "layers")?,
            seq: usize_of(self.seq, "seq")?,
            size: usize_of(self.size, "size")?,
        })
    }

    pub fn build(&self) -> Result<(Graph, Vec<Tensor>)> {
        let o = self.options()?;
        models::by_name_with(&self.model, &o)
            .with_context(|| format!("building model '{}'", self.model))
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to run (default: wgpu, falling back to the CPU reference if it cannot open).
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
    /// Run one kernel per op of the graph as built: no graph passes, no fusion.
    #[arg(long)]
    no_fusion: bool,
    /// Write the profile as a Chrome trace (JSON) to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// ONNX models: an input from a .npy file, NAME=FILE.npy (repeatable; others are seeded
    /// random).
    #[arg(long)]
    input: Vec<String>,
    /// ONNX models: a symbolic dim's size, NAME=N (repeatable; unbound ones are 1).
    #[arg(long)]
    dim: Vec<String>,
    /// ONNX models: write each output to DIR/NAME.npy.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ExplainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print the generated WGSL of this group (its index in the list) instead of the list.
    #[arg(long)]
    wgsl: Option<usize>,
    /// Explain the unfused plan (one kernel per op) instead of the fused one.
    #[arg(long)]
    no_fusion: bool,
    /// Explain for a target profile instead of this machine's adapter: `webgpu-gpu` (WebGPU's
    /// guaranteed limits, tiled kernels first), `cpu-adapter` or `llvmpipe`. Without it, the
    /// plan is the one the default adapter runs (its limits, its tuned variants).
    #[arg(long)]
    target: Option<TargetArg>,
    /// Print JSON: {"fused": {...totals}, "unfused": {...}, "groups": [...], "passes": {...}}.
    #[arg(long)]
    json: bool,
}

/// A target profile named on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TargetArg {
    WebgpuGpu,
    CpuAdapter,
    Llvmpipe,
}

impl TargetArg {
    fn profile(self) -> sfumato_core::TargetProfile {
        use sfumato_core::TargetProfile;
        match self {
            TargetArg::WebgpuGpu => TargetProfile::webgpu_gpu(),
            TargetArg::CpuAdapter => TargetProfile::cpu_adapter(),
            TargetArg::Llvmpipe => TargetProfile::llvmpipe(),
        }
    }
}

/// What `explain` shows of one plan.
struct PlanView {
    passes: sfumato_core::PassStats,
    groups: Vec<sfumato_shaders::explain::GroupInfo>,
    totals: sfumato_shaders::explain::Totals,
    kernels: Vec<std::sync::Arc<sfumato_shaders::GroupKernels>>,
}

/// The fused and unfused plans of `graph`: the default adapter's own (as a run prepares them:
/// its limits, its tuned variants), or a named target's without a device (also where there is
/// no adapter, with a warning).
fn explain_plans(
    graph: &sfumato_core::Graph,
    target: Option<TargetArg>,
) -> Result<(String, PlanView, PlanView)> {
    if target.is_none() {
        match sfumato_wgpu::WgpuDevice::new(sfumato_wgpu::DeviceOptions::from_env()) {
            Ok(mut dev) => {
                let name = dev.adapter().name.clone();
                let view = |dev: &mut sfumato_wgpu::WgpuDevice, fuse: bool| -> Result<PlanView> {
                    dev.set_fusion(fuse);
                    let x = dev.explain(graph).context("compiling the plan")?;
                    Ok(PlanView {
                        passes: x.passes,
                        groups: x.groups,
                        totals: x.totals,
                        kernels: x.kernels,
                    })
                };
                let fused = view(&mut dev, true)?;
                let unfused = view(&mut dev, false)?;
                return Ok((name, fused, unfused));
            }
            Err(e) => eprintln!("warning: {e}; explaining for the webgpu-gpu profile instead"),
        }
    }
    let profile = target.unwrap_or(TargetArg::WebgpuGpu).profile();
    let name = format!("{} (target profile, no device)", profile.name);
    let view = |fuse: bool| -> Result<PlanView> {
        let c = sfumato_core::compile(
            graph,
            &sfumato_core::CompileOptions {
                fuse,
                target: profile.clone(),
            },
        )
        .context("running the graph passes")?;
        let lopts = sfumato_shaders::LowerOptions {
            matmul: None,
            target: profile.clone(),
        };
        let (groups, totals, kernels) =
            sfumato_shaders::explain::explain(&c.graph, &c.plan, &lopts)
                .context("lowering the plan")?;
        Ok(PlanView {
            passes: c.passes,
            groups,
            totals,
            kernels: kernels.into_iter().map(std::sync::Arc::new).collect(),
        })
    };
    Ok((name, view(true)?, view(false)?))
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices { json } => devices(json),
        Command::Bench(Bench::Matmul(a)) => bench_matmul(&a),
        Command::Bench(Bench::Conv(a)) => bench_conv(&a),
        Command::Bench(Bench::Compare(a)) => compare::compare(&a),
        Command::Run(a) => run_model(&a),
        Command::Explain(a) => explain(&a),
        Command::Inspect(a) => onnx_cli::inspect(&a),
        Command::Conformance(a) => open_run_device(Some(a.device), true)
            .and_then(|mut d| onnx_cli::conformance(&a, d.as_mut())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line: "what we were doing: why it failed".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A count of at least 1.
fn positive(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a positive integer ({e})")),
    }
}

// ---- devices ----

fn devices(json: bool) -> Result<()> {
    let adapters = sfumato_wgpu::list_adapters();
    if adapters.is_empty() {
        bail!("{}", sfumato_wgpu::NO_ADAPTER);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&adapters).context("serializing the adapter list")?
        );
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_adapter(i, a);
    }
    Ok(())
}

fn print_adapter(i: usize, a: &AdapterSummary) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("[{i}] {}", a.name);
    println!("    backend:       {}", a.backend);
    println!("    device type:   {}", a.device_type);
    println!("    driver:        {} {}", a.driver, a.driver_info);
    println!(
        "    max storage buffer binding: {:.1} MiB",
        mib(a.max_storage_buffer_binding_size)
    );
    println!(
        "    max buffer size:            {:.1} MiB",
        mib(a.max_buffer_size)
    );
    println!(
        "    max uniform binding:        {:.1} MiB ({} per stage)",
        mib(a.max_uniform_buffer_binding_size),
        a.max_uniform_buffers_per_shader_stage
    );
    println!(
        "    workgroup storage:          {} bytes",
        a.max_compute_workgroup_storage_size
    );
    println!(
        "    invocations per workgroup:  {}",
        a.max_compute_invocations_per_workgroup
    );
    println!(
        "    workgroups per dimension:   {}",
        a.max_compute_workgroups_per_dimension
    );
    println!(
        "    storage buffers per stage:  {}",
        a.max_storage_buffers_per_shader_stage
    );
    println!("    timestamp_query:            {}", yes(a.timestamp_query));
    println!("    shader_f16:                 {}", yes(a.shader_f16));
    println!(
        "    loop_budget:                {}",
        a.loop_budget.map_or_else(
            || "none known".to_string(),
            |b| format!("{b} loop ends per invocation")
        )
    );
}

// ---- opening devices ----

/// Open the WebGPU device; `hint` ends the error message.
fn open_wgpu(hint: &str) -> Result<WgpuDevice> {
    open_wgpu_with(hint, true)
}

fn open_wgpu_with(hint: &str, fusion: bool) -> Result<WgpuDevice> {
    let dev = WgpuDevice::new(DeviceOptions {
        fusion,
        ..DeviceOptions::from_env()
    })
    .with_context(|| format!("could not open the WebGPU device{hint}"))?;
    tracing::info!("opened {}", dev.adapter().name);
    Ok(dev)
}

/// The device a benchmark runs on: no fallback, a wgpu failure is an error.
fn open_bench_device(kind: DeviceKind, variant: Option<&str>) -> Result<Box<dyn Device>> {
    match kind {
        DeviceKind::Cpu => {
            if variant.is_some() {
                bail!(
                    "--variant selects a WebGPU matmul kernel; it does not apply to --device cpu"
                );
            }
            Ok(Box::new(CpuDevice))
        }
        DeviceKind::Wgpu => {
            let variant = variant.map(parse_variant).transpose()?;
            let mut dev = open_wgpu(" (--device cpu benchmarks the CPU reference instead)")?;
            if variant.is_some() {
                dev.set_matmul_variant(variant);
            }
            Ok(Box::new(dev))
        }
    }
}

fn parse_variant(name: &str) -> Result<MatmulVariant> {
    MatmulVariant::from_name(name).with_context(|| {
        let known: Vec<String> = MatmulVariant::all().iter().map(|v| v.name()).collect();
        format!(
            "unknown matmul variant '{name}'; known variants: {}",
            known.join(", ")
        )
    })
}

// ---- bench ----

/// Medians over the timed runs of one graph.
pub(crate) struct Timing {
    device: String,
    kernel: String,
    median_wall_ms: f64,
    median_kernel_ms: f64,
}

impl Timing {
    fn gflops(&self, flops: f64) -> f64 {
        flops / (self.median_wall_ms * 1e-3).max(1e-12) / 1e9
    }

    /// GFLOP/s from the kernel time alone (`None` where the device reported none).
    fn gflops_kernel(&self, flops: f64) -> Option<f64> {
        (self.median_kernel_ms > 0.0).then(|| flops / (self.median_kernel_ms * 1e-3) / 1e9)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

const WARMUP_RUNS: usize = 2;

/// Two warm-up runs (the first lowers, uploads constants and autotunes), then `iters` timed
/// runs: host wall time around each whole run (dispatch and readback) and the profile's kernel time.
fn time_graph_with(
    dev: &mut dyn Device,
    graph: &Graph,
    inputs: &[Tensor],
    iters: u64,
    show_progress: bool,
) -> Result<Timing> {
    for i in 0..WARMUP_RUNS {
        dev.run(graph, inputs)
            .with_context(|| format!("warm-up run {} on {}", i + 1, dev.name()))?;
    }
    let bar = if show_progress {
        ProgressBar::new(iters)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("timing");
    let mut walls = Vec::new();
    let mut kernels = Vec::new();
    let mut kernel = String::new();
    for i in 0..iters {
        let t = Instant::now();
        let out = dev
            .run(graph, inputs)
            .with_context(|| format!("timed run {} on {}", i + 1, dev.name()))?;
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        kernels.push(out.profile.kernel_ns() as f64 / 1e6);
        if kernel.is_empty() {
            kernel = kernel_names(&out.profile);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Timing {
        device: dev.name(),
        kernel,
        median_wall_ms: median(walls),
        median_kernel_ms: median(kernels),
    })
}

/// The kernels a run dispatched, distinct and in order ("matmul_tiled", "im2col+matmul_rb4").
fn kernel_names(p: &sfumato_core::Profile) -> String {
    let mut names: Vec<&str> = Vec::new();
    for e in &p.entries {
        if !names.contains(&e.kernel.as_str()) {
            names.push(&e.kernel);
        }
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join("+")
    }
}

fn usize_of(x: u64, what: &str) -> Result<usize> {
    usize::try_from(x).with_context(|| format!("--{what} {x} does not fit this platform's usize"))
}

fn checked_numel(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{what} {dims:?} has too many elements"))
}

fn print_text_timing(t: &Timing) {
    println!("device:      {}", t.device);
    println!("kernel:      {}", t.kernel);
    println!(
        "median wall:   {:.3} ms (dispatch + readback)",
        t.median_wall_ms
    );
    println!("median kernel: {:.3} ms", t.median_kernel_ms);
}

fn bench_matmul(a: &MatmulArgs) -> Result<()> {
    let (m, n, k) = (
        usize_of(a.m, "m")?,
        usize_of(a.n, "n")?,
        usize_of(a.k, "k")?,
    );
    checked_numel(&[m, k], "A")?;
    checked_numel(&[k, n], "B")?;
    checked_numel(&[m, n], "C")?;
    let iters = a.common.iters.unwrap_or(10);
    let mut dev = open_bench_device(a.common.device, a.variant.as_deref())?;

    // A is a run input (all-constant graphs are folded by the passes), B a weight.
    let mut g = Graph::new();
    let lhs = g.input("a", DType::F32, [m, k]);
    let rhs = g.constant(Tensor::random(DType::F32, [k, n], 2))?;
    let c = g.matmul(lhs, rhs)?;
    g.set_outputs(&[c])?;
    let inputs = [Tensor::random(DType::F32, [m, k], 1)];

    let t = time_graph_with(dev.as_mut(), &g, &inputs, iters, !a.common.json)?;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let gflops = t.gflops(flops);
    let fields = serde_json::json!({ "m": m, "n": n, "k": k, "iters": iters });
    report(
        &t,
        flops,
        a.common.json,
        fields,
        format!("matmul {m}x{n}x{k} f32: {gflops:.1} GFLOP/s"),
    )
}

fn bench_conv(a: &ConvArgs) -> Result<()> {
    let batch = usize_of(a.batch, "batch")?;
    let (c_in, c_out) = (usize_of(a.c_in, "c-in")?, usize_of(a.c_out, "c-out")?);
    let (size, kk) = (usize_of(a.size, "size")?, usize_of(a.kernel, "kernel")?);
    let (stride, pad) = (usize_of(a.stride, "stride")?, usize_of(a.pad, "pad")?);
    checked_numel(&[batch, c_in, size, size], "x")?;
    checked_numel(&[c_out, c_in, kk, kk], "weight")?;
    let iters = a.common.iters.unwrap_or(5);
    let mut dev = open_bench_device(a.common.device, None)?;

    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [batch, c_in, size, size]);
    let inputs = [Tensor::random(DType::F32, [batch, c_in, size, size], 1)];
    let w = g.constant(Tensor::random(DType::F32, [c_out, c_in, kk, kk], 2))?;
    let y = g
        .conv2d(x, w, None, Conv2d::padded(pad, stride))
        .context("building the convolution")?;
    g.set_outputs(&[y])?;
    let (oh, ow) = match g.shape(y).dims() {
        &[_, _, oh, ow] => (oh, ow),
        other => bail!("conv output has unexpected shape {other:?}"),
    };
    checked_numel(&[batch, c_out, oh, ow], "output")?;

    let t = time_graph_with(dev.as_mut(), &g, &inputs, iters, !a.common.json)?;
    let flops =
        2.0 * batch as f64 * c_out as f64 * c_in as f64 * (kk * kk) as f64 * oh as f64 * ow as f64;
    let gflops = t.gflops(flops);
    let fields = serde_json::json!({
        "batch": batch,
        "c_in": c_in,
        "c_out": c_out,
        "size": size,
        "kernel_size": kk,
        "stride": stride,
        "pad": pad,
        "out_size": [oh, ow],
        "iters": iters,
    });
    let line =
        format!("conv {kk}x{kk} {size}x{size}x{c_in}->{c_out} b{batch} f32: {gflops:.1} GFLOP/s");
    report(&t, flops, a.common.json, fields, line)
}

/// Print a benchmark's result: JSON (the case's `fields` plus the timings), or the text report
/// whose last line is `line`.
fn report(
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

// ---- run ----

/// The device a model runs on. By default wgpu, falling back (loudly) to the CPU reference;
/// an explicit `--device wgpu` that cannot open is an error.
fn open_run_device(kind: Option<DeviceKind>, fusion: bool) -> Result<Box<dyn Device>> {
    match kind {
        Some(DeviceKind::Cpu) => Ok(Box::new(CpuDevice)),
        Some(DeviceKind::Wgpu) => Ok(Box::new(open_wgpu_with("", fusion)?)),
        None => match open_wgpu_with("", fusion) {
            Ok(d) => Ok(Box::new(d)),
            Err(e) => {
                eprintln!("warning: {e:#}; falling back to the CPU reference device");
                Ok(Box::new(CpuDevice))
            }
        },
    }
}

fn run_model(a: &RunArgs) -> Result<()> {
    if a.model.model.ends_with(".onnx") {
        let mut dev = open_run_device(a.device, !a.no_fusion)?;
        println!("device: {}", dev.name());
        let out = onnx_cli::run(
            std::path::Path::new(&a.model.model),
            dev.as_mut(),
            &a.input,
            &a.dim,
            a.output.as_deref(),
        )?;
        println!();
        print!("{}", out.profile.table());
        return write_trace(&out.profile, a.trace.as_deref());
    }
    let o = a.model.options()?;
    let name = &a.model.model;
    let (graph, inputs) = a.model.build()?;
    let mut dev = open_run_device(a.device, !a.no_fusion)?;
    dev.run(&graph, &inputs)
        .with_context(|| format!("warm-up run of '{name}' on {}", dev.name()))?;
    let out = dev
        .run(&graph, &inputs)
        .with_context(|| format!("running '{name}' on {}", dev.name()))?;

    println!("device: {}", dev.name());
    println!(
        "model:  {name} (batch {}{}){}",
        o.batch,
        match name.as_str() {
            "bert-base" => format!(", {} layers, seq {}", o.layers, o.seq),
            "gpt2-decode" => format!(", KV cache {}", o.seq),
            "resnet-bottleneck" => format!(", {} blocks, {}x{}", o.layers, o.size, o.size),
            _ => String::new(),
        },
        if a.no_fusion { ", unfused" } else { "" }
    );
    for (i, (&v, t)) in graph.outputs().iter().zip(&out.outputs).enumerate() {
        println!("output {i} '{}': {}", graph.value(v).name, t.summary());
    }
    println!();
    print!("{}", out.profile.table());
    write_trace(&out.profile, a.trace.as_deref())
}

fn write_trace(profile: &sfumato_core::Profile, trace: Option<&std::path::Path>) -> Result<()> {
    if let Some(path) = trace {
        let text = serde_json::to_string_pretty(&profile.chrome_trace())
            .context("serializing the trace")?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the trace to {}", path.display()))?;
        println!(
            "trace written to {} (open it in https://ui.perfetto.dev)",
            path.display()
        );
    }
    Ok(())
}

// ---- explain ----

fn explain(a: &ExplainArgs) -> Result<()> {
    use sfumato_shaders::Lowered;
    let (graph, _) = a.model.build()?;
    let (device_name, fused_x, unfused_x) = explain_plans(&graph, a.target)?;
    let (stats, fused, unfused) = (
        fused_x.passes.clone(),
        fused_x.totals.clone(),
        unfused_x.totals.clone(),
    );
    let (groups, kernels) = if a.no_fusion {
        (unfused_x.groups, unfused_x.kernels)
    } else {
        (fused_x.groups, fused_x.kernels)
    };
    if let Some(gi) = a.wgsl {
        let gk = kernels
            .get(gi)
            .with_context(|| format!("no group {gi}: the plan has groups 0..{}", kernels.len()))?;
        match &gk.lowered {
            Lowered::Kernels(ks) => {
                for k in ks {
                    println!(
                        "// group {gi}: {} — kernel {}\n{}",
                        gk.label, k.name, k.wgsl
                    );
                }
            }
            Lowered::Alias => println!("// group {gi}: {} is a view: no kernel", gk.label),
            Lowered::Constant => println!("// group {gi}: {} is a constant: no kernel", gk.label),
        }
        return Ok(());
    }
    if a.json {
        let v = serde_json::json!({
            "model": a.model.model,
            "options": {
                "batch": a.model.options()?.batch,
                "layers": a.model.layers,
                "seq": a.model.seq,
                "size": a.model.size,
            },
            "device": device_name,
            "fused": fused,
            "unfused": unfused,
            "passes": stats,
            "groups": groups,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("device: {device_name}");
    println!(
        "model: {} ({} nodes; after the passes {}: {} constants folded, {} batch-norms folded, {} dead, {} merged)",
        a.model.model,
        stats.nodes_before,
        stats.nodes_after,
        stats.constants_folded,
        stats.batch_norms_folded,
        stats.dead_nodes_removed,
        stats.common_subexpressions_merged
    );
    println!();
    println!(
        "{:>5}  {:<12} {:>9} {:>10}  ops (nodes)",
        "group", "kind", "read MiB", "write MiB"
    );
    for gi in &groups {
        if gi.dispatches == 0 {
            continue;
        }
        let kind = serde_json::to_value(gi.kind)?
            .as_str()
            .unwrap_or("?")
            .to_string();
        let nodes = if gi.nodes.len() > 4 {
            format!(
                "{}, ... {}",
                gi.nodes[..3].join(", "),
                gi.nodes[gi.nodes.len() - 1]
            )
        } else {
            gi.nodes.join(", ")
        };
        println!(
            "{:>5}  {:<12} {:>9.2} {:>10.2}  {} ({nodes})",
            gi.index,
            kind,
            mib(gi.bytes_read),
            mib(gi.bytes_written),
            gi.label
        );
    }
    println!();
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>12} {:>14}",
        "", "dispatches", "bytes moved", "peak memory", "weights", "largest live"
    );
    for (name, t) in [("fused", &fused), ("unfused", &unfused)] {
        println!(
            "{:<10} {:>10} {:>10.1} MiB {:>10.1} MiB {:>8.1} MiB {:>10.1} MiB",
            name,
            t.dispatches,
            mib(t.bytes_moved),
            mib(t.peak_bytes),
            mib(t.weight_bytes),
            mib(t.largest_live_bytes)
        );
    }
    println!();
    println!(
        "(views and constants cost no kernel and are left out; `--wgsl N` prints group N's WGSL)"
    );
    Ok(())
}
