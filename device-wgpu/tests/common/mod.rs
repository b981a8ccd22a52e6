#![allow(dead_code)]
//! Shared by the GPU test files: one device per test binary, and the differential check.

use sfumato_core::{CpuDevice, DType, Device, Graph, RunOutput, Tensor};
use sfumato_wgpu::{test_device, WgpuDevice};
use std::sync::{Mutex, OnceLock};

static DEVICE: OnceLock<Option<Mutex<WgpuDevice>>> = OnceLock::new();

/// Run `f` with the shared wgpu device; returns `None` (after a loud message) when there is no
/// adapter and SFUMATO_REQUIRE_GPU is not set.
pub fn with_device<R>(f: impl FnOnce(&mut WgpuDevice) -> R) -> Option<R> {
    let d = DEVICE
        .get_or_init(|| test_device().map(Mutex::new))
        .as_ref()?;
    let mut guard = d.lock().unwrap_or_else(|p| p.into_inner());
    Some(f(&mut guard))
}

/// Run `g` on the shared device with the matmul variant forced (`None`: the device's own
/// choice), then give the choice back to the device; `None` as [`with_device`].
pub fn run_with_variant(
    g: &Graph,
    inputs: &[Tensor],
    variant: Option<sfumato_shaders::MatmulVariant>,
) -> Option<sfumato_core::Result<RunOutput>> {
    with_device(|d| {
        d.set_matmul_variant(variant);
        let r = d.run(g, inputs);
        d.set_matmul_variant(None);
        r
    })
}

/// Tolerances by dtype: (rtol, atol).
pub fn tol(d: DType) -> (f64, f64) {
    match d {
        DType::F32 | DType::F64 => (1e-4, 1e-5),
        DType::F16 => (2e-3, 2e-3),
        DType::BF16 => (1e-2, 1e-2),
        // One step of the format (results rounded from f32 on the device, f64 on the host).
        d => d.mini().map_or((0.0, 0.0), |m| {
            (
                2f64.powi(-(m.man_bits as i32)),
                2f64.powi(m.min_exp() - m.man_bits as i32),
            )
        }),
    }
}

/// Run `g` on the CPU reference and on wgpu and compare every output. Returns an error message
/// describing the first mismatch.
pub fn differential(g: &Graph, inputs: &[Tensor], extra_atol: f64) -> Result<(), String> {
    let got = match with_device(|d| d.run(g, inputs)) {
        None => return Ok(()),
        Some(r) => r.map_err(|e| format!("wgpu: {e}"))?,
    };
    check_outputs(g, inputs, &got, extra_atol)
}

/// Compare a wgpu run's outputs (`got`) with the CPU reference's on the same inputs.
pub fn check_outputs(
    g: &Graph,
    inputs: &[Tensor],
    got: &RunOutput,
    extra_atol: f64,
) -> Result<(), String> {
    let want = CpuDevice.run(g, inputs).map_err(|e| format!("cpu: {e}"))?;
    if want.outputs.len() != got.outputs.len() {
        return Err(format!(
            "wgpu returned {} outputs, the reference {}",
            got.outputs.len(),
            want.outputs.len()
        ));
    }
    for (i, (w, o)) in want.outputs.iter().zip(&got.outputs).enumerate() {
        if (w.dtype(), w.shape()) != (o.dtype(), o.shape()) {
            return Err(format!(
                "output {i} is {} {} on wgpu, {} {} on the reference",
                o.dtype(),
                o.shape(),
                w.dtype(),
                w.shape()
            ));
        }
        let (rtol, atol) = tol(w.dtype());
        if !o.all_close(w, rtol, atol + extra_atol) {
            let (abs, rel) = o.max_diff(w);
            return Err(format!(
                "output {i} ({} {}) differs: max abs {abs:e}, max rel {rel:e}\n  cpu  {}\n  wgpu {}",
                w.dtype(),
                w.shape(),
                w.summary(),
                o.summary()
            ));
        }
    }
    Ok(())
}
