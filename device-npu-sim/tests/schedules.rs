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
    let conv = Conv2d {
        stride: [stride, stride],
        padding: [k / 2; 4],
        groups,
        ..Default::default()
    };
    conv_graph_with(c, o, hw, k, groups, seed, conv)
}

fn conv_graph_with(
    c: usize,
    o: usize,
    hw: usize,
    k: usize,
    groups: usize,
    seed: u64,
    conv: Conv2d,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, c, hw, hw]);
    let w = g
        .constant(scaled(&[o, c / groups, k, k], seed + 1, c / groups * k * k))
        .unwrap();
    let b = g
        .constant(Tensor::random(DType::F32, [o], seed + 2))
        .unwrap();
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
                // A NaN on one side only is the worst difference, not none.
                .map(|(p, q)| match (p.is_nan(), q.is_nan()) {
                    (true, true) => 0.0,
                    (false, false) => (p - q).abs() / (1.0 + q.abs()),
                    _ => f64::INFINITY,
                })
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Matmuls of ragged sizes up to K 3,072 and N 1,000: within fp16 tolerance of the
    /// reference, on every chip.
    #[test]
    fn matmul_tiles_match_the_reference(m in 1usize..200, k in 1usize..3072, n in 1usize..1000, chip in 0usize..4, seed in 0u64..1000) {
        let chip = ["ascend910", "ascend910b2", "ascend910b4", "ascend310"][chip];
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
        let mut dev = NpuSim::by_name("ascend310").unwrap();
        let d = diff(&mut dev, &g, &x);
        prop_assert!(d < 1e-2, "conv {c}->{o} {hw}x{hw} k{k} s{stride} g{groups}: {d}");
    }

    /// Dilation and uneven padding (top/left apart from bottom/right), on the 910B.
    #[test]
    fn dilated_unevenly_padded_convs_match(c in 1usize..24, o in 1usize..40, hw in 5usize..16, dil in 1usize..3, pads in prop::array::uniform4(0usize..3), stride in 1usize..3, seed in 0u64..1000) {
        let conv = Conv2d { stride: [stride, stride], padding: pads, dilation: [dil, dil], groups: 1 };
        let (g, x) = conv_graph_with(c, o, hw, 3, 1, seed, conv);
        let mut dev = NpuSim::by_name("ascend910b2").unwrap();
        let d = diff(&mut dev, &g, &x);
        prop_assert!(d < 1e-2, "conv {c}->{o} {hw}x{hw} dilation {dil} pads {pads:?} s{stride}: {d}");
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

/// Gemm with every transpose, alpha, beta and a broadcast C, on the cube with its epilogue.
#[test]
fn gemms_match_the_reference() {
    use sfumato_core::op::Gemm;
    for (trans_a, trans_b, alpha, beta, c_row) in [
        (false, false, 1.0, 1.0, true),
        (true, false, 0.5, 2.0, false),
        (false, true, -1.5, 0.0, true),
        (true, true, 2.0, -1.0, false),
    ] {
        let (m, k, n) = (37, 150, 45);
        let mut g = Graph::new();
        let ad = if trans_a { [k, m] } else { [m, k] };
        let bd = if trans_b { [n, k] } else { [k, n] };
        let a = g.input("a", DType::F32, ad);
        let b = g.constant(scaled(&bd, 3, k)).unwrap();
        let cd = if c_row { vec![n] } else { vec![m, n] };
        let c = g.constant(Tensor::random(DType::F32, cd, 4)).unwrap();
        let gm = Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        };
        let y = g.gemm(a, b, Some(c), gm).unwrap();
        g.set_outputs(&[y]).unwrap();
        let x = [Tensor::random(DType::F32, ad, 5)];
        let d = diff(&mut NpuSim::by_name("ascend910").unwrap(), &g, &x);
        assert!(d < 1e-2, "{gm:?}: {d}");
    }
}

/// An operand past fp16's range: an error naming the node, not an infinity in the answer.
#[test]
fn an_operand_past_fp16_is_an_error() {
    let (g, _) = matmul_graph(4, 8, 3, 1);
    let x = [Tensor::from_f32([4, 8], vec![1e5; 32]).unwrap()];
    let e = NpuSim::by_name("ascend910")
        .unwrap()
        .run(&g, &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("matmul") && e.contains("65,504"), "{e}");
}

/// Empty products: nothing to schedule, no NaN in the cycle model.
#[test]
fn empty_products_cost_nothing() {
    let c = Chip::by_name("ascend910").unwrap();
    for p in [
        Problem::matmul(0, 4, 4, 4),
        Problem::matmul(1, 0, 4, 4),
        Problem::matmul(1, 4, 4, 0),
    ] {
        let s = tiling::choose(&c, &p, &tiling::Epilogue::NONE);
        assert_eq!(s.cost.cycles, 0.0, "{p}");
        assert!(!s.cost.utilization.is_nan());
    }
}

/// A tiling for a node that is no cube op (a typo) is an error, not ignored.
#[test]
fn a_tiling_for_no_cube_op_is_an_error() {
    let (g, x) = matmul_graph(8, 8, 8, 1);
    let t: Tiling = "16x16x16".parse().unwrap();
    let e = NpuSim::by_name("ascend910")
        .unwrap()
        .with_tiling("no_such_node", t)
        .run(&g, &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no_such_node"), "{e}");
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
            let s = tiling::choose(&c, &p, &tiling::Epilogue::NONE);
            tiling::check_fits(&c, "test", &s.tiling).unwrap();
            let naive = tiling::cost(&c, &p, &tiling::naive(&c, &p), &tiling::Epilogue::NONE);
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
