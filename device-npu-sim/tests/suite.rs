//! The per-device suite on the simulated Ascend 910, within fp16 tolerances.

use sfumato_core::Device;

fn open() -> Option<Box<dyn Device>> {
    Some(Box::new(
        sfumato_npu_sim::NpuSim::by_name("ascend910").expect("built-in chip"),
    ))
}

sfumato_core::device_suite!(open(), sfumato_npu_sim::tolerances());
