//! The functional simulation against the CPU reference on random matmul and conv shapes
//! (ragged edges included), the scheduler's choices within the buffers, and broken schedules
//! caught.

use proptest::prelude::*;
use sfumato_core::op::Conv2d;
use sfumato_core::{CpuDevice, DType, Device, Graph, Tensor};
use sfumato_npu_sim::{tiling, Chip, Fault, NpuSim, Problem, Tiling};

fn scaled(dims: &[usize], seed: u64, fan_in: usize) -> Tensor {
    let t = Tensor::random(DType::F32, dims.to_vec(), seed);
    let s = 1.0 / (fan_in as f64).sqrt();
    let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x * s).collect();
    Tensor::from_f64(DType::F32, dims.to_vec(), &v)
}

fn matmul_graph(m: usize, k: usize, n: usize, seed: u64) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [m, k]);
    let w = g.constant(scaled(&[k, n], seed + 1, k)).unwrap();
    let y = g.matmul(a, w).unwrap();
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    (g, vec![Tensor::random(DType::F32, [m, k], seed)])
}

fn conv_graph(
    c: usize,
    o: usize,
    hw: usize,
    k: usize,
    stride: usize,
    groups: usize,
    seed: u64,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, c, hw, hw]);
    let w = g
        .constant(scaled(&[o, c / groups, k, k], seed + 1, c / groups * k * k))
        .unwrap();
    let b = g
        .constant(Tensor::random(DType::F32, [o], seed + 2))
        .unwrap();
    let conv = Conv2d {
        stride: [stride, stride],
        padding: [k / 2; 4],
        groups,
        ..Default::default()
    };
    let y = g.conv2d(x, w, Some(b), conv).unwrap();
    g.set_outputs(&[y]).unwrap();
    (g, vec![Tensor::random(DType::F32, [1, c, hw, hw], seed)])
}

fn diff(dev: &mut dyn Device, g: &Graph, x: &[Tensor]) -> f64 {
    let want = CpuDevice.run(g, x).unwrap().outputs;
    let got = dev.run(g, x).unwrap().outputs;
    got.iter()
        .zip(&want)
        .map(|(a, b)| {
            a.to_f64_vec()
                .iter()
                .zip(b.to_f64_vec())
                .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()))
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Matmuls of ragged sizes up to K 3,072 and N 1,000: within fp16 tolerance of the
    /// reference, on every chip.
    #[test]
    fn matmul_tiles_match_the_reference(m in 1usize..200, k in 1usize..3072, n in 1usize..1000, chip in 0usize..3, seed in 0u64..1000) {
        let chip = ["ascend910", "ascend910b2", "ascend310"][chip];
        let (g, x) = matmul_graph(m, k, n, seed);
        let mut dev = NpuSim::by_name(chip).unwrap();
        let d = diff(&mut dev, &g, &x);
        prop_assert!(d < 1e-2, "{chip} {m}x{k}x{n}: {d}");
    }

    /// Convs through img2col: odd sizes, strides, groups, wide channels.
    #[test]
    fn conv_tiles_match_the_reference(c in 1usize..40, o in 1usize..70, hw in 3usize..20, k in prop::sample::select(vec![1usize, 3, 5]), stride in 1usize..3, grouped in any::<bool>(), seed in 0u64..1000) {
        let groups = if grouped && c % 2 == 0 && o % 2 == 0 { 2 } else { 1 };
        let (g, x) = conv_graph(c, o, hw, k, stride, groups, seed);
        let mut dev = NpuSim::by_name("ascend910").unwrap();
        let d = diff(&mut dev, &g, &x);
        prop_assert!(d < 1e-2, "conv {c}->{o} {hw}x{hw} k{k} s{stride} g{groups}: {d}");
    }
}

/// Batched products: one weight for every batch (the batches become rows of one product), a
/// B per batch (attention), and broadcast batch dims.
#[test]
fn batched_and_broadcast_matmuls_match_the_reference() {
    for (ad, bd) in [
        (vec![2, 33, 70], vec![70, 20]),
        (vec![3, 2, 17, 40], vec![40, 9]),
        (vec![4, 19, 64], vec![4, 64, 23]),
        (vec![1, 19, 64], vec![5, 64, 23]),
        (vec![3, 1, 8, 16], vec![1, 2, 16, 8]),
        (vec![50], vec![50, 7]),
        (vec![2, 6, 30], vec![30]),
    ] {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, ad.clone());
        let b = g.input("b", DType::F32, bd.clone());
        let y = g.matmul(a, b).unwrap();
        g.set_outputs(&[y]).unwrap();
        let x = [
            scaled(&ad, 1, *ad.last().unwrap()),
            Tensor::random(DType::F32, bd.clone(), 2),
        ];
        let mut dev = NpuSim::by_name("ascend910").unwrap();
        let d = diff(&mut dev, &g, &x);
        assert!(d < 1e-2, "{ad:?} x {bd:?}: {d}");
    }
}

/// As wide as real models: 512 channels x 3x3 (K 4,608) at 7x7, and a 1,024 x 4,096 x 1,024
/// matmul row block.
#[test]
fn wide_shapes_match_the_reference() {
    let mut dev = NpuSim::by_name("ascend910").unwrap();
    let (g, x) = conv_graph(512, 512, 7, 3, 1, 1, 3);
    let d = diff(&mut dev, &g, &x);
    assert!(d < 1e-2, "{d}");
    let (g, x) = matmul_graph(64, 4096, 1024, 4);
    let d = diff(&mut dev, &g, &x);
    assert!(d < 1e-2, "{d}");
}

/// A tile skipped, a k-step added twice, a ping-pong buffer reused too early: each gives an
/// answer the comparison with the reference rejects, where the right schedule passes.
#[test]
fn a_broken_schedule_is_caught() {
    let (g, x) = matmul_graph(100, 300, 90, 7);
    let name = g
        .nodes()
        .iter()
        .find(|n| n.op.name() == "MatMul")
        .unwrap()
        .name
        .clone();
    let t: Tiling = "32x32x64,step_k=2,cores=8".parse().unwrap();
    let mut good = NpuSim::by_name("ascend910").unwrap().with_tiling(&name, t);
    assert!(diff(&mut good, &g, &x) < 1e-2);
    for fault in [Fault::SkipBlock(5), Fault::KStepTwice, Fault::EarlyReuse] {
        let mut bad = NpuSim::by_name("ascend910")
            .unwrap()
            .with_tiling(&name, t)
            .with_fault(fault);
        let d = diff(&mut bad, &g, &x);
        assert!(d > 0.05, "{fault:?} was not caught: {d}");
    }
}

/// The scheduler's tiling always fits the chip's buffers, and never loses to the naive one.
#[test]
fn chosen_tilings_fit_and_beat_naive() {
    for chip in ["ascend910", "ascend910b2", "ascend310"] {
        let c = Chip::by_name(chip).unwrap();
        for (m, n, k) in [
            (1, 1000, 2048),
            (197, 2304, 768),
            (3136, 64, 576),
            (49, 2048, 512),
            (4096, 4096, 4096),
            (17, 33, 70),
        ] {
            let p = Problem::matmul(1, m, n, k);
            let s = tiling::choose(&c, &p, 0.0);
            tiling::check_fits(&c, "test", &s.tiling).unwrap();
            let naive = tiling::cost(&c, &p, &tiling::naive(&c, &p), 0.0);
            assert!(
                s.cost.cycles < naive.cost.cycles,
                "{chip} {p}: {s} vs {naive:?}"
            );
            assert!(s.cost.utilization > 0.0 && s.cost.utilization <= 1.0, "{s}");
        }
    }
}

/// A tiling given by hand that overflows a buffer: an error naming the chip, the op, the
/// tiling and the buffer with its sizes.
#[test]
fn a_tiling_that_does_not_fit_is_a_clear_error() {
    let (g, x) = matmul_graph(512, 512, 512, 1);
    let name = g
        .nodes()
        .iter()
        .find(|n| n.op.name() == "MatMul")
        .unwrap()
        .name
        .clone();
    let t: Tiling = "256x256x128".parse().unwrap();
    let mut dev = NpuSim::by_name("ascend910b2")
        .unwrap()
        .with_tiling(&name, t);
    let e = dev.run(&g, &x).unwrap_err().to_string();
    assert!(
        e.contains("ascend910b2") && e.contains(&name) && e.contains("L0A needs 131072 bytes"),
        "{e}"
    );
}

/// An f64 product has no cube mapping: an error naming the chip, node and op.
#[test]
fn an_unmappable_op_is_a_clear_error() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F64, [4, 8]);
    let b = g.input("b", DType::F64, [8, 3]);
    let y = g.matmul(a, b).unwrap();
    g.set_outputs(&[y]).unwrap();
    let x = [
        Tensor::random(DType::F64, [4, 8], 1),
        Tensor::random(DType::F64, [8, 3], 2),
    ];
    let e = NpuSim::by_name("ascend310")
        .unwrap()
        .run(&g, &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ascend310") && e.contains("MatMul") && e.contains("f64"),
        "{e}"
    );
}
