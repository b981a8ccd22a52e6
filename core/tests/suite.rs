//! The device suite on the CPU reference itself (exact), and on a device that is wrong by a
//! little: the suite must catch it, so it can fail.

use sfumato_core::suite::{cases, check_case, Tolerances};
use sfumato_core::{CpuDevice, DType, Device, Graph, Result, RunOutput, Tensor};

sfumato_core::device_suite!(
    Some(Box::new(CpuDevice) as Box<dyn Device>),
    Tolerances::exact()
);

/// The CPU reference with every float output nudged by 0.1% (plus 1e-3; f16 and bfloat16 ones
/// by 1% plus 1e-2, some ulps of theirs) and every integer one
/// by 1.
struct Nudged;

impl Device for Nudged {
    fn name(&self) -> String {
        "nudged".into()
    }
    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let mut out = CpuDevice.run(graph, inputs)?;
        for t in &mut out.outputs {
            let nudge = |x: f64| match t.dtype() {
                // Ten units in the last place of the 16-bit floats (one is their rounding).
                DType::F16 | DType::BF16 => x * 1.01 + 1e-2,
                d if d.is_float() => x * 1.001 + 1e-3,
                DType::Bool => x,
                // One step off: exact dtypes must match exactly.
                _ => x + 1.0,
            };
            let v: Vec<f64> = t.to_f64_vec().into_iter().map(nudge).collect();
            *t = Tensor::from_f64(t.dtype(), t.shape().clone(), &v);
        }
        Ok(out)
    }
}

#[test]
fn a_slightly_wrong_device_fails_every_case() {
    for case in cases() {
        let e = check_case(&mut Nudged, &case, 0, &Tolerances::gpu_f32())
            .expect_err(&format!("{} passed a wrong device", case.name));
        assert!(e.contains(case.name) && e.contains("differs"), "{e}");
    }
}
