//! Opening the device a command runs on.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use sfumato_core::{CpuDevice, Device, Graph, Optimization};
use sfumato_shaders::MatmulVariant;
use sfumato_wgpu::{DeviceOptions, Tuning, WgpuDevice, DEFAULT_TUNE_CANDIDATES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceKind {
    /// The WebGPU device.
    Wgpu,
    /// The CPU reference interpreter (slow, exact).
    Cpu,
    /// The simulated Ascend NPU (a Da Vinci core model: fp16 cube, cycle model); `--chip`
    /// picks the chip where the command has it, else the Ascend 910.
    NpuSim,
}

/// Open the WebGPU device a benchmark times `graphs` on, their matmul shape classes tuned first
/// (cached winners, else measured now: `sfumato tune`'s four candidates, as burn autotunes
/// before it times) on a device of their own that is dropped before the timed one opens. On
/// lavapipe a device that has measured kernels records later timestamp queries that no longer
/// bracket the dispatches (a 1024³ matmul "took" 0.6 ms, 3,300 GFLOP/s), so the device whose
/// figures are printed never measures. `SFUMATO_AUTOTUNE=0` skips the tuning.
pub(crate) fn open_wgpu_tuned(
    hint: &str,
    optimization: Optimization,
    graphs: &[&Graph],
) -> Result<WgpuDevice> {
    open_wgpu_tuned_over(hint, optimization, graphs, DEFAULT_TUNE_CANDIDATES)
}

/// [`open_wgpu_tuned`] measuring `candidates` matmul variants of each shape class the cache
/// lacks (`usize::MAX`: every one, as `sfumato tune --candidates all`).
pub(crate) fn open_wgpu_tuned_over(
    hint: &str,
    optimization: Optimization,
    graphs: &[&Graph],
    candidates: usize,
) -> Result<WgpuDevice> {
    if DeviceOptions::from_env().tuning != Tuning::Off {
        let mut tuner = open_wgpu_with(hint, optimization)?;
        for g in graphs {
            tuner
                .tune(g, candidates, false)
                .context("tuning the benchmark's matmuls")?;
        }
    }
    open_wgpu_with(hint, optimization)
}

/// Open the WebGPU device with the environment's options; passes and fusion run where both the
/// command (`optimization`: `--no-fusion` asks for none) and `SFUMATO_FUSION` (`0`: none) allow
/// them. Nothing is measured during a run: a cached winner or the cost model's pick
/// ([`Tuning::Cached`]).
pub(crate) fn open_wgpu_with(hint: &str, optimization: Optimization) -> Result<WgpuDevice> {
    let env = DeviceOptions::from_env();
    let dev = WgpuDevice::new(DeviceOptions {
        optimization: optimization.min(env.optimization),
        progress: std::sync::Arc::new(crate::progress::Bars::default()),
        ..env
    })
    .with_context(|| format!("could not open the WebGPU device{hint}"))?;
    tracing::info!("opened {}", dev.adapter().name);
    Ok(dev)
}

/// The device a benchmark runs on: no fallback, a wgpu failure is an error.
pub(crate) fn open_bench_device(
    kind: DeviceKind,
    variant: Option<&str>,
    graph: &Graph,
) -> Result<Box<dyn Device>> {
    match kind {
        DeviceKind::NpuSim => bail!(
            "benchmarks time real kernels; the simulated NPU predicts its time: `sfumato run \
             MODEL --device npu-sim` or `sfumato tile matmul`"
        ),
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
            let hint = " (--device cpu benchmarks the CPU reference instead)";
            let mut dev = match variant {
                // A forced kernel needs no tuning.
                Some(_) => open_wgpu_with(hint, Optimization::PassesAndFusion)?,
                None => open_wgpu_tuned(hint, Optimization::PassesAndFusion, &[graph])?,
            };
            if variant.is_some() {
                dev.set_matmul_variant(variant);
            }
            Ok(Box::new(dev))
        }
    }
}

pub(crate) fn parse_variant(name: &str) -> Result<MatmulVariant> {
    MatmulVariant::from_name(name).with_context(|| {
        let known: Vec<String> = MatmulVariant::all().iter().map(|v| v.name()).collect();
        format!(
            "unknown matmul variant '{name}'; known variants: {}",
            known.join(", ")
        )
    })
}
