//! `sfumato run`: a built-in model or an ONNX file, its outputs, per-kernel table and trace.

use crate::args::positive;
use crate::open::{open_wgpu_with, DeviceKind};
use crate::timing::usize_of;
use anyhow::{Context, Result};
use clap::Args;
use sfumato_core::{CpuDevice, Device, Graph, Optimization, Tensor};
use sfumato_zoo::models::{self, ModelOptions};
use std::path::PathBuf;

/// Which built-in model, at which sizes.
#[derive(Args, Debug, Clone)]
pub(crate) struct ModelArgs {
    /// The model: a block (mlp, bert-base, resnet-bottleneck, gpt2-decode), a zoo model
    /// (resnet18/34/50/101, bert-large, vit-b16, yolov5n/s, efficientnet-lite0, ...; `sfumato
    /// zoo list`), or an .onnx file (run only).
    pub model: String,
    /// Batch size (default: 4 for mlp, 1 for the others).
    #[arg(long, value_parser = positive)]
    pub batch: Option<u64>,
    /// Encoder layers (bert-base: 1, bert-large: 24, vit-b16: 12), bottleneck blocks of
    /// resnet-bottleneck (default: the model's own).
    #[arg(long, value_parser = positive)]
    pub layers: Option<u64>,
    /// Sequence length of the BERTs, KV-cache length of gpt2-decode (default 128).
    #[arg(long, value_parser = positive)]
    pub seq: Option<u64>,
    /// Image height and width (default: the model's own, 224 for ResNet, 640 for YOLOv5, 56 for
    /// resnet-bottleneck).
    #[arg(long, value_parser = positive)]
    pub size: Option<u64>,
    /// f16: the model's f32 values in f16 (weights converted once, at load; its inputs and
    /// outputs stay f32). The wgpu device stores them as f16 where the adapter has
    /// `shader-f16` (half the bytes); sums accumulate in f32, and elementwise work whose f16
    /// form rounds as the reference does computes in f16.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
}

/// `--precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

impl PrecisionArg {
    pub fn precision(self) -> sfumato_core::precision::Precision {
        match self {
            PrecisionArg::F32 => sfumato_core::precision::Precision::F32,
            PrecisionArg::F16 => sfumato_core::precision::Precision::F16,
        }
    }
}

impl ModelArgs {
    pub fn options(&self) -> Result<ModelOptions> {
        let default_batch = if self.model == "mlp" { 4 } else { 1 };
        let d = models::default_options(&self.model)?;
        Ok(ModelOptions {
            batch: usize_of(self.batch.unwrap_or(default_batch), "batch")?,
            layers: self
                .layers
                .map_or(Ok(d.layers), |v| usize_of(v, "layers"))?,
            seq: self.seq.map_or(Ok(d.seq), |v| usize_of(v, "seq"))?,
            size: self.size.map_or(Ok(d.size), |v| usize_of(v, "size"))?,
        })
    }

    pub fn build(&self) -> Result<(Graph, Vec<Tensor>)> {
        let o = self.options()?;
        let (g, inputs) = models::by_name_with(&self.model, &o)
            .with_context(|| format!("building model '{}'", self.model))?;
        let g = self
            .precision
            .precision()
            .apply(&g)
            .with_context(|| format!("model '{}' at {:?}", self.model, self.precision))?;
        Ok((g, inputs))
    }
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Where to run (default: wgpu, falling back to the CPU reference if it cannot open).
    #[arg(long, value_enum)]
    pub(crate) device: Option<DeviceKind>,
    /// Run one kernel per op of the graph as built: no graph passes, no fusion.
    #[arg(long)]
    pub(crate) no_fusion: bool,
    /// Write the profile as a Chrome trace (JSON) to this file.
    #[arg(long)]
    pub(crate) trace: Option<PathBuf>,
    /// Save the run for the viewer (`sfumato view FILE`): the graph as the device ran it, its
    /// fused groups with their kernels' WGSL, the profile and the outputs, as JSON.
    #[arg(long)]
    pub(crate) save_run: Option<PathBuf>,
    /// ONNX models: an input from a .npy file or a serialized TensorProto, NAME=FILE.npy or
    /// NAME=FILE.pb (repeatable; others are seeded random).
    #[arg(long)]
    pub(crate) input: Vec<String>,
    /// ONNX models: a symbolic dim's size, NAME=N (repeatable; unbound ones are 1).
    #[arg(long)]
    pub(crate) dim: Vec<String>,
    /// ONNX models: write each output to DIR/NAME.npy.
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// --device npu-sim: the chip (ascend910, ascend910b2, ascend910b4, ascend310, or a chip
    /// .toml file).
    #[arg(long, default_value = "ascend910")]
    pub(crate) chip: String,
    /// --device npu-sim: the cycle model alone, no numbers computed (fast).
    #[arg(long)]
    pub(crate) cycles_only: bool,
}

/// The device a model runs on. By default wgpu, falling back (loudly) to the CPU reference;
/// an explicit `--device wgpu` that cannot open is an error.
pub(crate) fn open_run_device(kind: Option<DeviceKind>, fusion: bool) -> Result<Box<dyn Device>> {
    match kind {
        Some(DeviceKind::Cpu) => Ok(Box::new(CpuDevice)),
        Some(DeviceKind::NpuSim) => Ok(Box::new(
            sfumato_npu_sim::NpuSim::by_name("ascend910")?
                .with_optimization(Optimization::fused(fusion)),
        )),
        Some(DeviceKind::Wgpu) => Ok(Box::new(open_wgpu_with("", Optimization::fused(fusion))?)),
        None => match open_wgpu_with("", Optimization::fused(fusion)) {
            Ok(d) => Ok(Box::new(d)),
            Err(e) => {
                eprintln!("warning: {e:#}; falling back to the CPU reference device");
                Ok(Box::new(CpuDevice))
            }
        },
    }
}

/// One run before the one `run` profiles: a driver compiles each kernel at its first dispatch
/// (lavapipe: up to seconds each), so the profile is a warm run's.
pub(crate) fn warm_up(
    dev: &mut dyn Device,
    graph: &Graph,
    inputs: &[Tensor],
    what: &str,
) -> Result<()> {
    use sfumato_core::Progress;
    let bars = crate::progress::Bars::default();
    bars.stage("warm-up run (kernels compile at their first dispatch)", 0);
    let warm = dev.run(graph, inputs);
    bars.done();
    warm.with_context(|| format!("warm-up run of {what} on {}", dev.name()))?;
    Ok(())
}

pub(crate) fn run_model(a: &RunArgs) -> Result<()> {
    if a.device == Some(DeviceKind::NpuSim) {
        return crate::npu::run_npu(a);
    }
    if a.model.model.ends_with(".onnx") {
        let mut dev = open_run_device(a.device, !a.no_fusion)?;
        println!("device: {}", dev.name());
        crate::devices::print_lavapipe_threads(&dev.name());
        let out = crate::onnx::run(
            std::path::Path::new(&a.model.model),
            dev.as_mut(),
            &a.input,
            &a.dim,
            a.output.as_deref(),
            a.save_run.as_deref(),
            a.model.precision.precision(),
            true,
        )?;
        println!();
        print!("{}", out.profile.table());
        tune_hint(dev.as_ref(), &a.model.model, "");
        return write_trace(&out.profile, a.trace.as_deref());
    }
    let o = a.model.options()?;
    let name = &a.model.model;
    let (graph, inputs) = a.model.build()?;
    let mut dev = open_run_device(a.device, !a.no_fusion)?;
    warm_up(dev.as_mut(), &graph, &inputs, &format!("'{name}'"))?;
    let out = dev
        .run(&graph, &inputs)
        .with_context(|| format!("running '{name}' on {}", dev.name()))?;

    println!("device: {}", dev.name());
    crate::devices::print_lavapipe_threads(&dev.name());
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
    tune_hint(dev.as_ref(), name, &model_flags(&a.model));
    if let Some(path) = &a.save_run {
        save_run(dev.as_mut(), name, &graph, &out, path)?;
    }
    write_trace(&out.profile, a.trace.as_deref())
}

/// Writes the run's record ([`sfumato_core::RunRecord`]) for the viewer.
pub(crate) fn save_run(
    dev: &mut dyn Device,
    model: &str,
    graph: &sfumato_core::Graph,
    out: &sfumato_core::RunOutput,
    path: &std::path::Path,
) -> Result<()> {
    let record = dev
        .record(model, graph, out)
        .with_context(|| format!("recording the run of '{model}'"))?;
    std::fs::write(path, record.to_json()?)
        .with_context(|| format!("writing the run to {}", path.display()))?;
    println!(
        "run saved to {} (open it with `sfumato view {}`)",
        path.display(),
        path.display()
    );
    Ok(())
}

/// The model options the run was given, as `sfumato tune` takes them (the others are the
/// model's defaults there too).
fn model_flags(m: &ModelArgs) -> String {
    [
        ("batch", m.batch),
        ("layers", m.layers),
        ("seq", m.seq),
        ("size", m.size),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!(" --{k} {v}")))
    .collect()
}

/// Where kernels ran on the cost model's guess, say how to measure them (on stderr: a hint, not
/// part of the run's output).
fn tune_hint(dev: &dyn Device, model: &str, flags: &str) {
    let n = dev.untuned_kernels();
    if n > 0 {
        eprintln!(
            "note: {n} matmul shape{} ran the cost model's kernel pick (nothing is measured \
             during a run); `sfumato tune {model}{flags}` measures them on this adapter and \
             caches the fastest for later runs",
            if n == 1 { "" } else { "s" }
        );
    }
}

pub(crate) fn write_trace(
    profile: &sfumato_core::Profile,
    trace: Option<&std::path::Path>,
) -> Result<()> {
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
