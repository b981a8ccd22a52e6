//! Opening the device a command runs on.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use sfumato_core::{CpuDevice, Device, Optimization};
use sfumato_shaders::MatmulVariant;
use sfumato_wgpu::{DeviceOptions, Tuning, WgpuDevice, DEFAULT_TUNE_CANDIDATES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceKind {
    /// The WebGPU device.
    Wgpu,
    /// The CPU reference interpreter (slow, exact).
    Cpu,
}

/// Open the WebGPU device for a benchmark; `hint` ends the error message. Benchmarks time the
/// kernels a tuned run takes: a shape class the cache lacks is measured during the warm-up
/// (unless `SFUMATO_AUTOTUNE` says otherwise), as burn autotunes during its own.
pub(crate) fn open_wgpu_tuned(hint: &str, optimization: Optimization) -> Result<WgpuDevice> {
    open(hint, optimization, true)
}

/// Open the WebGPU device with the environment's options; passes and fusion run where both the
/// command (`optimization`: `--no-fusion` asks for none) and `SFUMATO_FUSION` (`0`: none) allow
/// them. Nothing is measured during a run: a cached winner or the cost model's pick
/// ([`Tuning::Cached`]).
pub(crate) fn open_wgpu_with(hint: &str, optimization: Optimization) -> Result<WgpuDevice> {
    open(hint, optimization, false)
}

fn open(hint: &str, optimization: Optimization, bench: bool) -> Result<WgpuDevice> {
    let env = DeviceOptions::from_env();
    let tuning = match env.tuning {
        Tuning::Cached if bench => Tuning::Measure {
            candidates: DEFAULT_TUNE_CANDIDATES,
        },
        t => t,
    };
    let dev = WgpuDevice::new(DeviceOptions {
        optimization: optimization.min(env.optimization),
        tuning,
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
) -> Result<Box<dyn Device>> {
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
            let mut dev = open_wgpu_tuned(
                " (--device cpu benchmarks the CPU reference instead)",
                Optimization::PassesAndFusion,
            )?;
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
