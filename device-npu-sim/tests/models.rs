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

/// Random matmul and conv shapes, ragged edges included (sizes not multiples of 16), on the
/// simulated NPU against the wgpu device: within fp16 tolerance.
#[test]
fn random_products_agree_with_the_gpu() {
    use sfumato_core::op::Conv2d;
    use sfumato_core::{DType, Graph, Tensor};
    let Some(mut gpu) = sfumato_wgpu::test_device() else {
        eprintln!("\n!!! SKIPPING random_products_agree_with_the_gpu: no WebGPU adapter\n");
        return;
    };
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut draw = |lo: usize, hi: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (state % (hi - lo) as u64) as usize
    };
    let scaled = |dims: &[usize], seed: u64, fan_in: usize| {
        let t = Tensor::random(DType::F32, dims.to_vec(), seed);
        let s = 1.0 / (fan_in as f64).sqrt();
        let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x * s).collect();
        Tensor::from_f64(DType::F32, dims.to_vec(), &v)
    };
    let mut fails = vec![];
    for case in 0..12u64 {
        let mut g = Graph::new();
        let (what, x) = if case % 2 == 0 {
            let (m, k, n) = (draw(1, 300), draw(1, 2500), draw(1, 700));
            let a = g.input("a", DType::F32, [m, k]);
            let w = g.constant(scaled(&[k, n], case, k)).unwrap();
            let y = g.matmul(a, w).unwrap();
            g.set_outputs(&[y]).unwrap();
            (
                format!("matmul {m}x{k}x{n}"),
                Tensor::random(DType::F32, [m, k], case + 100),
            )
        } else {
            let (c, o, hw, k, s) = (
                draw(1, 96),
                draw(1, 130),
                draw(3, 30),
                [1, 3, 5][draw(0, 3)],
                draw(1, 3),
            );
            let x = g.input("x", DType::F32, [1, c, hw, hw]);
            let w = g.constant(scaled(&[o, c, k, k], case, c * k * k)).unwrap();
            let conv = Conv2d {
                stride: [s, s],
                padding: [k / 2; 4],
                ..Default::default()
            };
            let y = g.conv2d(x, w, None, conv).unwrap();
            g.set_outputs(&[y]).unwrap();
            (
                format!("conv {c}->{o} {hw}x{hw} k{k} s{s}"),
                Tensor::random(DType::F32, [1, c, hw, hw], case + 100),
            )
        };
        let want = gpu.run(&g, std::slice::from_ref(&x)).unwrap().outputs;
        let got = NpuSim::by_name("ascend910b2")
            .unwrap()
            .run(&g, &[x])
            .unwrap()
            .outputs;
        let worst = got[0]
            .to_f64_vec()
            .iter()
            .zip(want[0].to_f64_vec())
            .map(|(p, q)| {
                if p.is_nan() != q.is_nan() {
                    f64::INFINITY
                } else {
                    (p - q).abs() / (1.0 + q.abs())
                }
            })
            .fold(0.0, f64::max);
        eprintln!("{what}: worst {worst:.2e}");
        if worst >= 1e-2 {
            fails.push(format!("{what}: {worst:e}"));
        }
    }
    assert!(fails.is_empty(), "{fails:?}");
}
