//! `--precision f16` on the built-in models: the f16 graph (`to_half`) on the wgpu device, with
//! its f16 tensors stored as f16 where the adapter has `shader-f16`, agrees with the f32 model
//! within an f16 tolerance (the largest error under 1% of the largest output) and with the CPU
//! reference's run of the same f16 graph.

use sfumato_core::precision::to_half;
use sfumato_core::{CpuDevice, Device, Tensor};
use sfumato_wgpu::test_device;
use sfumato_zoo::models::{by_name_with, ModelOptions};

/// The largest absolute error over the largest magnitude of `want`.
fn error_vs_scale(got: &[Tensor], want: &[Tensor]) -> f64 {
    let (mut abs, mut scale) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.to_f64_vec().iter().zip(w.to_f64_vec()) {
            abs = abs.max((a - b).abs());
            scale = scale.max(b.abs());
        }
    }
    abs / scale.max(f64::MIN_POSITIVE)
}

#[test]
fn models_in_f16_agree_with_f32() {
    let Some(mut dev) = test_device() else {
        return;
    };
    let opts = |layers, seq, size| ModelOptions {
        batch: 1,
        layers,
        seq,
        size,
    };
    // Whether all the weights are f16 on the device: lavapipe's convolutions read theirs as
    // uniform blocks, whose layout is f32, so the bottleneck's stay f32 there.
    for (name, o, all_weights) in [
        ("bert-base", opts(1, 32, 1), true),
        ("resnet-bottleneck", opts(1, 1, 16), false),
        ("mlp", opts(1, 1, 1), true),
    ] {
        let (g, inputs) = by_name_with(name, &o).unwrap();
        let h = to_half(&g).unwrap();
        let f32_out = dev.run(&g, &inputs).unwrap().outputs;
        let f16_out = dev.run(&h, &inputs).unwrap().outputs;
        let e = error_vs_scale(&f16_out, &f32_out);
        assert!(e > 0.0 && e < 1e-2, "{name}: f16 against f32: {e:e}");
        let cpu = CpuDevice.run(&h, &inputs).unwrap().outputs;
        let e = error_vs_scale(&f16_out, &cpu);
        assert!(
            e < 4e-3,
            "{name}: f16 on wgpu against the CPU reference: {e:e}"
        );
        if dev.has_half_storage() {
            let x = dev.explain(&h).unwrap();
            assert!(x.f16.stored > 0, "{name}: {:?}", x.f16.summary());
            let (w16, w32) = (
                x.totals.weight_bytes,
                dev.explain(&g).unwrap().totals.weight_bytes,
            );
            let halved = w16 * 2 <= w32 + 64;
            assert!(
                w16 < w32 && (halved || !all_weights),
                "{name}: weights {w16} bytes in f16, {w32} in f32"
            );
        } else {
            eprintln!("\n!!! this adapter has no shader-f16: f16 storage is not tested\n");
        }
    }
}
