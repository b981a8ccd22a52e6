//! Packed int8 weights: a constant B of an integer matmul whose values fit in i8 (a quantized
//! weight less its zero point) is stored four values to a word and read by
//! `matmul_int_v4_i8`, which widens it with `unpack4xI8`; a windowed integer conv's weight is
//! read by `conv2d_int_i8`, one `extractBits` a value. Checked against the CPU reference on
//! random shapes up to real models' widths (K up to 4,096, N up to 3,072, 512 channels), with
//! the weight's bytes a quarter of i32's; and the cases that must keep i32: a value past i8's
//! range, a B also read another way, a shape the vec4 kernel cannot take.

mod common;

use common::{check_outputs, with_device};
use proptest::prelude::*;
use sfumato_core::op::BinaryOp;
use sfumato_core::{DType, Device, Graph, Op, Tensor};
use sfumato_wgpu::WgpuDevice;

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    }
}

/// `n` values in `lo..=hi` from `seed` (a small LCG: the test's own, reproducible).
fn ints(n: usize, lo: i32, hi: i32, seed: u64) -> Vec<i32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

/// Kernel names, packed weights (count, bytes) and a run's output.
type Prepared = (Vec<String>, (usize, u64), sfumato_core::RunOutput);

/// The names of `g`'s kernels on `d`, its packed weights (count, bytes) and a run's output
/// (its profile has the setup's weight bytes).
fn prepared(d: &mut WgpuDevice, g: &Graph, inputs: &[Tensor]) -> Result<Prepared, String> {
    d.trim();
    let out = d.run(g, inputs).map_err(|e| format!("wgpu: {e}"))?;
    let x = d.explain(g).map_err(|e| format!("explain: {e}"))?;
    let names = x.all_kernels().map(|k| k.name.clone()).collect();
    Ok((names, x.packed_int8, out))
}

/// `A [m, k] @ W [k, n]` in i32, W a constant with values in `lo..=hi`, plus (`also`) W read
/// by an elementwise op too.
fn int_matmul(
    m: usize,
    k: usize,
    n: usize,
    lo: i32,
    hi: i32,
    also: bool,
    seed: u64,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let a = g.input("a", DType::I32, [m, k]);
    let w = g
        .constant(Tensor::from_i32([k, n], ints(k * n, lo, hi, seed)).unwrap())
        .unwrap();
    let y = g.add(Op::MatMulInteger, &[a, w]).unwrap()[0];
    let mut outs = vec![y];
    let mut inputs = vec![Tensor::from_i32([m, k], ints(m * k, -255, 255, seed ^ 7)).unwrap()];
    if also {
        // W plus an input (W plus W would fold at compile time).
        let c = g.input("c", DType::I32, [k, n]);
        inputs.push(Tensor::from_i32([k, n], ints(k * n, -9, 9, seed ^ 3)).unwrap());
        let w2 = g.binary(BinaryOp::Add, w, c).unwrap();
        outs.push(w2);
    }
    g.set_outputs(&outs).unwrap();
    (g, inputs)
}

proptest! {
    #![proptest_config(cfg(6))]

    /// Packed where it can be: a whole-vec4 shape and i8 values. Exact against the reference
    /// (integer sums), and the weight takes one byte a value.
    #[test]
    fn int8_weights_are_packed_and_exact(m in 1usize..40, k4 in prop_oneof![1usize..16, 500usize..1025], n4 in prop_oneof![1usize..16, 190usize..769], seed in any::<u64>()) {
        let (k, n) = (4 * k4, 4 * n4);
        let (g, inputs) = int_matmul(m, k, n, -128, 127, false, seed);
        let Some(r) = with_device(|d| prepared(d, &g, &inputs)) else {
            return Ok(());
        };
        let (names, (count, bytes), out) = r.map_err(TestCaseError::fail)?;
        check_outputs(&g, &inputs, &out, 0.0).map_err(TestCaseError::fail)?;
        prop_assert!(names.iter().any(|n| n == "matmul_int_v4_i8"), "{:?}", names);
        prop_assert_eq!(count, 1);
        prop_assert_eq!(bytes, (k * n) as u64);
        let setup = out.profile.setup.as_ref().map(|s| s.weight_bytes);
        prop_assert_eq!(setup, Some((k * n) as u64));
    }
}

/// What keeps i32: a value past i8's range (a uint8 weight less a zero point reaches 255), a
/// weight also read by another kernel, a shape the vec4 kernel cannot take (N not a multiple
/// of 4), a weight that is a graph output. Each is still exact.
#[test]
fn int8_packing_stays_out_of_what_it_cannot_hold() {
    for (k, n, lo, hi, also, why) in [
        (64, 32, -255, 255, false, "a value past i8"),
        (64, 32, -128, 127, true, "a second reader"),
        (64, 30, -128, 127, false, "N not a multiple of 4"),
        (64, 32, -128, 127, false, "a graph output"),
    ] {
        let (mut g, inputs) = int_matmul(5, k, n, lo, hi, also, 11);
        if why == "a graph output" {
            // The weight itself is an output too (read back as i32).
            let mut outs = g.outputs().to_vec();
            let w = g
                .nodes()
                .iter()
                .find(|n| matches!(n.op, Op::Constant(_)))
                .unwrap()
                .outputs[0];
            outs.push(w);
            g.set_outputs(&outs).unwrap();
        }
        let Some(r) = with_device(|d| prepared(d, &g, &inputs)) else {
            return;
        };
        let (names, (count, _), out) = r.unwrap();
        check_outputs(&g, &inputs, &out, 0.0).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(count, 0, "{why}: {names:?}");
        assert!(
            !names.iter().any(|n| n == "matmul_int_v4_i8"),
            "{why}: {names:?}"
        );
    }
}

/// A row of K = 4,096 against a sum computed by hand: every weight -128 (i8's end, whose bits
/// `unpack4xI8` must sign-extend), so each output is -128 times the row's sum.
#[test]
fn a_wide_packed_row_sums_exactly() {
    let (k, n) = (4096, 8);
    let mut g = Graph::new();
    let a = g.input("a", DType::I32, [1, k]);
    // Every weight -128: the row's sum is -128 times the sum of A.
    let w = g
        .constant(Tensor::from_i32([k, n], vec![-128; k * n]).unwrap())
        .unwrap();
    let y = g.add(Op::MatMulInteger, &[a, w]).unwrap()[0];
    g.set_outputs(&[y]).unwrap();
    let av = ints(k, -255, 255, 3);
    let want: i64 = -128 * av.iter().map(|&x| x as i64).sum::<i64>();
    let inputs = [Tensor::from_i32([1, k], av).unwrap()];
    let Some(r) = with_device(|d| prepared(d, &g, &inputs)) else {
        return;
    };
    let (names, (count, _), out) = r.unwrap();
    assert_eq!(count, 1, "{names:?}");
    for v in out.outputs[0].to_f64_vec() {
        assert_eq!(v as i64, want);
    }
    let cpu = sfumato_core::CpuDevice.run(&g, &inputs).unwrap();
    assert_eq!(cpu.outputs[0].to_f64_vec(), out.outputs[0].to_f64_vec());
}

proptest! {
    #![proptest_config(cfg(6))]

    /// A pointwise integer conv runs as the integer matmul, weight times image: its weight is
    /// the matmul's A, packed as B is (up to 1,024 channels in and out).
    #[test]
    fn a_pointwise_conv_weight_is_packed_as_a(c4 in prop_oneof![1usize..8, 64usize..257], o in prop_oneof![1usize..8, 256usize..1025], s in 2usize..9, seed in any::<u64>()) {
        use sfumato_core::op::Conv2d;
        let c = 4 * c4;
        let hw = 4 * s * s;
        let mut g = Graph::new();
        let x = g.input("x", DType::I32, [1, c, 2 * s, 2 * s]);
        let w = g.constant(Tensor::from_i32([o, c, 1, 1], ints(o * c, -128, 127, seed)).unwrap()).unwrap();
        let y = g.add(Op::ConvInteger(Conv2d::padded(0, 1)), &[x, w]).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::from_i32([1, c, 2 * s, 2 * s], ints(c * hw, -255, 255, seed ^ 5)).unwrap()];
        let Some(r) = with_device(|d| prepared(d, &g, &inputs)) else {
            return Ok(());
        };
        let (names, (count, bytes), out) = r.map_err(TestCaseError::fail)?;
        check_outputs(&g, &inputs, &out, 0.0).map_err(TestCaseError::fail)?;
        prop_assert!(names.iter().any(|n| n == "matmul_int_v4_i8"), "{:?}", names);
        prop_assert_eq!((count, bytes), (1, (o * c) as u64));
    }
}

proptest! {
    #![proptest_config(cfg(6))]

    /// A windowed integer conv (3 x 3 or 5 x 5, stride 1 or 2, one group or two, with or without
    /// a bias) runs the
    /// direct integer conv reading its weight packed (`conv2d_int_i8`, `extractBits` a value):
    /// exact against the reference, the weight one byte a value, up to 512 channels in and
    /// out (K = C x 9 = 4,608) as ResNet's last stage has.
    #[test]
    fn a_windowed_conv_weight_is_packed(c in prop_oneof![1usize..9, 256usize..513], o in prop_oneof![1usize..9, 256usize..513], k in prop_oneof![Just(3usize), Just(5)], stride in 1usize..3, grouped in any::<bool>(), bias in any::<bool>(), s in 3usize..10, seed in any::<u64>()) {
        use sfumato_core::op::Conv2d;
        // Several groups where the channels divide; then the weight's rows are C / groups.
        let groups = if grouped && c % 2 == 0 && o % 2 == 0 { 2 } else { 1 };
        let (cig, pad) = (c / groups, k / 2);
        // A whole number of words: the packing takes only those.
        let o = if (o * cig * k * k) % 4 == 0 { o } else { 4 * o };
        let conv = Conv2d { groups, stride: [stride, stride], ..Conv2d::padded(pad, 1) };
        let mut g = Graph::new();
        let x = g.input("x", DType::I32, [1, c, s, s + 1]);
        let wn = o * cig * k * k;
        let w = g.constant(Tensor::from_i32([o, cig, k, k], ints(wn, -128, 127, seed)).unwrap()).unwrap();
        // With a bias (a third input, i32), or without: then the kernel's bias binding is the
        // image's, so the weight keeps one reader.
        let mut ins = vec![x, w];
        if bias {
            ins.push(g.constant(Tensor::from_i32([o], ints(o, -100_000, 100_000, seed ^ 9)).unwrap()).unwrap());
        }
        let y = g.add(Op::ConvInteger(conv), &ins).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::from_i32([1, c, s, s + 1], ints(c * s * (s + 1), -255, 255, seed ^ 5)).unwrap()];
        let Some(r) = with_device(|d| prepared(d, &g, &inputs)) else {
            return Ok(());
        };
        let (names, (count, bytes), out) = r.map_err(TestCaseError::fail)?;
        check_outputs(&g, &inputs, &out, 0.0).map_err(TestCaseError::fail)?;
        prop_assert!(names.iter().any(|n| n == "conv2d_int_i8"), "{:?}", names);
        prop_assert_eq!((count, bytes), (1, wn as u64));
    }
}
