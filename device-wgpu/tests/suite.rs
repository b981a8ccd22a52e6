//! The device suite (`sfumato_core::suite`) on the wgpu device, fused as it runs by default,
//! within a GPU's f32 tolerances.

use sfumato_core::suite::Tolerances;
use sfumato_core::Device;

fn open() -> Option<Box<dyn Device>> {
    sfumato_wgpu::test_device().map(|d| Box::new(d) as Box<dyn Device>)
}

sfumato_core::device_suite!(open(), Tolerances::gpu_f32());
