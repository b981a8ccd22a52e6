//! Opening the device a command runs on.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use sfumato_core::{CpuDevice, Device, Optimization};
use sfumato_shaders::MatmulVariant;
use sfumato_wgpu::{DeviceOptions, WgpuDevice};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceKind {
    /// The WebGPU device.
    Wgpu,
    /// The CPU reference interpreter (slow, exact).
    Cpu,
}

/// Open the WebGPU device; `hint` ends the error message.
pub(crate) fn open_wgpu(hint: &str) -> Result<WgpuDevice> {
    open_wgpu_with(hint, Optimization::PassesAndFusion)
}

/// Open the WebGPU device with the environment's options; passes and fusion run where both the
/// command (`optimization`: `--no-fusion` asks for none) and `SFUMATO_FUSION` (`0`: none) allow
/// them.
pub(crate) fn open_wgpu_with(hint: &str, optimization: Optimization) -> Result<WgpuDevice> {
    let env = DeviceOptions::from_env();
    let dev = WgpuDevice::new(DeviceOptions {
        optimization: optimization.min(env.optimization),
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
            let mut dev = open_wgpu(" (--device cpu benchmarks the CPU reference instead)")?;
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
