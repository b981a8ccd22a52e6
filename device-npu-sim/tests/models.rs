//! Whole zoo models on the simulated NPU against the wgpu device (lavapipe in CI): the same
//! graph, seeded weights and inputs, outputs within fp16 tolerance.

use sfumato_core::Device;
use sfumato_npu_sim::NpuSim;
use sfumato_zoo::models::{by_name_with, default_options};

#[test]
fn zoo_models_agree_with_the_gpu() {
    let Some(mut gpu) = sfumato_wgpu::test_device() else {
        eprintln!("\n!!! SKIPPING zoo_models_agree_with_the_gpu: no WebGPU adapter\n");
        return;
    };
    let mut fails = vec![];
    for (name, layers, seq, size) in [
        ("resnet18", None, None, Some(96)),
        ("bert-base", Some(2), Some(32), None),
        ("vit-b16", Some(2), None, None),
        ("yolov5n", None, None, Some(128)),
        ("efficientnet-lite0", None, None, Some(96)),
        ("gpt2-decode", None, Some(64), None),
    ] {
        let mut o = default_options(name).unwrap();
        o.batch = 1;
        o.layers = layers.unwrap_or(o.layers);
        o.seq = seq.unwrap_or(o.seq);
        o.size = size.unwrap_or(o.size);
        let (g, x) = by_name_with(name, &o).unwrap();
        let want = gpu.run(&g, &x).unwrap().outputs;
        let mut npu = NpuSim::by_name("ascend910").unwrap();
        let got = npu.run(&g, &x).unwrap().outputs;
        let mut worst = 0.0f64;
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape(), "{name}");
            let scale = b
                .to_f64_vec()
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()))
                .max(1.0);
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                let d = if p.is_nan() != q.is_nan() {
                    f64::INFINITY
                } else if p.is_nan() {
                    0.0
                } else {
                    (p - q).abs() / scale
                };
                worst = worst.max(d);
            }
        }
        eprintln!("{name}: worst |npu - gpu| / max|gpu| = {worst:.2e}");
        if worst > 2e-2 {
            fails.push(format!("{name}: {worst:e}"));
        }
    }
    assert!(fails.is_empty(), "{fails:?}");
}
