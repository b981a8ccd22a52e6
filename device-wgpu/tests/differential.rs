//! Every op on the wgpu device against the CPU reference, on random shapes and values
//! (proptest): broadcasting, permuted (non-contiguous) inputs, sizes that are not multiples of a
//! tile, size-1 and empty dims, every matmul variant.

mod common;

use common::differential;
use proptest::prelude::*;
use sfumato_core::op::*;
use sfumato_core::{CpuDevice, DType, Device, Graph, Op, Tensor};
use sfumato_shaders::MatmulVariant;

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    }
}

/// A random shape of rank 0..=4, dims 0..=5 (0 sometimes: empty tensors).
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![9 => 1usize..6, 1 => Just(0usize)], 0..=4)
}

/// A shape and a second one that broadcasts to it (dims dropped from the front or set to 1).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape()
        .prop_flat_map(|s| {
            let n = s.len();
            (Just(s), 0..=n, prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(s, drop, ones)| {
            let t: Vec<usize> = s
                .iter()
                .enumerate()
                .skip(drop)
                .map(|(i, &d)| if ones[i] { 1 } else { d })
                .collect();
            (s, t)
        })
}

/// Input x of `dims`, optionally fed through a transpose so the op reads a permuted layout.
fn input_maybe_permuted(
    g: &mut Graph,
    dt: DType,
    dims: &[usize],
    permute: bool,
) -> (sfumato_core::ValueId, Vec<usize>) {
    if permute && dims.len() >= 2 {
        let mut src = dims.to_vec();
        let r = src.len();
        src.swap(0, r - 1);
        let x = g.input("x", dt, src.clone());
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(0, r - 1);
        (g.transpose(x, &perm).unwrap(), src)
    } else {
        (g.input("x", dt, dims.to_vec()), dims.to_vec())
    }
}

/// Inputs inside the op's domain, away from its poles: (-0.9, 0.9) for asin, acos and atanh,
/// at least 1.05 for acosh, (-1.2, 1.2) for tan; (-4.5, 4.5) for the rounding ops.
fn in_domain(op: UnaryOp, t: &Tensor) -> Tensor {
    let map: fn(f64) -> f64 = match op {
        UnaryOp::Asin | UnaryOp::Acos | UnaryOp::Atanh => |x| (x * 0.45).clamp(-0.9, 0.9),
        UnaryOp::Acosh => |x| x.abs() + 1.05,
        UnaryOp::Tan => |x| (x * 0.6).clamp(-1.2, 1.2),
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => |x| x * 4.5,
        _ => return t.clone(),
    };
    let v: Vec<f64> = t.to_f64_vec().into_iter().map(map).collect();
    Tensor::from_f64(t.dtype(), t.shape().clone(), &v)
}

fn positive(t: &Tensor) -> Tensor {
    let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x.abs() + 0.05).collect();
    Tensor::from_f64(t.dtype(), t.shape().clone(), &v)
}

proptest! {
    #![proptest_config(cfg(48))]

    #[test]
    fn unary(dims in shape(), k in 0usize..UnaryOp::all().len(), permute in any::<bool>(), seed in any::<u64>(), f16 in prop::bool::weighted(0.2)) {
        let op = UnaryOp::all()[k];
        let dt = if f16 { DType::F16 } else { DType::F32 };
        let mut g = Graph::new();
        let (x, src) = input_maybe_permuted(&mut g, dt, &dims, permute);
        let y = g.unary(op, x).unwrap();
        g.set_outputs(&[y]).unwrap();
        let mut t = Tensor::random(dt, src, seed);
        if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt) {
            t = positive(&t);
        }
        t = in_domain(op, &t);
        differential(&g, &[t], 0.0).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
    }

    #[test]
    fn unary_int(dims in shape(), k in 0usize..4, seed in any::<u64>(), i64_ in any::<bool>()) {
        let op = [UnaryOp::Relu, UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Clip { min: -3.0, max: 4.0 }][k];
        let dt = if i64_ { DType::I64 } else { DType::I32 };
        let mut g = Graph::new();
        let x = g.input("x", dt, dims.clone());
        let y = g.unary(op, x).unwrap();
        g.set_outputs(&[y]).unwrap();
        differential(&g, &[Tensor::random(dt, dims, seed)], 0.0).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn binary((a, b) in broadcast_pair(), k in 0usize..13, swap in any::<bool>(), dt in prop_oneof![Just(DType::F32), Just(DType::I32), Just(DType::U8), Just(DType::I8), Just(DType::I16), Just(DType::U16), Just(DType::U32), Just(DType::U64), Just(DType::F64), Just(DType::BF16)], seed in any::<u64>()) {
        let op = BinaryOp::ALL[k];
        let (a, b) = if swap { (b, a) } else { (a, b) };
        let mut g = Graph::new();
        let x = g.input("a", dt, a.clone());
        let y = g.input("b", dt, b.clone());
        let z = g.binary(op, x, y).unwrap();
        g.set_outputs(&[z]).unwrap();
        let ta = Tensor::random(dt, a, seed);
        let mut tb = Tensor::random(dt, b, seed ^ 0x55);
        if op == BinaryOp::Pow && !dt.is_float() {
            // Keep integer powers small and non-negative so they stay in range.
            let v: Vec<f64> = tb.to_f64_vec().iter().map(|x| x.abs() % 4.0).collect();
            tb = Tensor::from_f64(dt, tb.shape().clone(), &v);
        }
        differential(&g, &[ta, tb], 0.0).map_err(|e| TestCaseError::fail(format!("{op:?} {dt}: {e}")))?;
    }

    /// Bitwise ops and shifts on every integer dtype the device holds in 32 bits, with shifts
    /// drawn past the width and negative ones too.
    #[test]
    fn bitwise((a, b) in broadcast_pair(), k in 0usize..5, swap in any::<bool>(), dt in prop_oneof![Just(DType::I32), Just(DType::I64), Just(DType::U8), Just(DType::I8), Just(DType::I16), Just(DType::U16), Just(DType::U32), Just(DType::I4), Just(DType::U4)], seed in any::<u64>()) {
        let op = BinaryOp::BITWISE[k];
        let (a, b) = if swap { (b, a) } else { (a, b) };
        let mut g = Graph::new();
        let x = g.input("a", dt, a.clone());
        let y = g.input("b", dt, b.clone());
        let z = g.binary(op, x, y).unwrap();
        g.set_outputs(&[z]).unwrap();
        let ta = Tensor::random(dt, a, seed);
        let mut tb = Tensor::random(dt, b, seed ^ 0x55);
        if matches!(op, BinaryOp::Shl | BinaryOp::Shr) {
            // Shifts from -3 to 40: inside and past every width, and negative where signed.
            let u = Tensor::random(DType::F32, tb.shape().clone(), seed ^ 0xAA).to_f64_vec();
            // The device holds i64 in 32 bits: a left shift of it stays inside them.
            let top = if dt == DType::I64 && op == BinaryOp::Shl { 31.0 } else { 44.0 };
            let v: Vec<f64> = u
                .iter()
                .map(|x| {
                    let s = ((x + 1.0) / 2.0 * top).floor() - 3.0;
                    if dt.is_signed() { s } else { s.abs() }
                })
                .collect();
            tb = Tensor::from_f64(dt, tb.shape().clone(), &v);
        }
        differential(&g, &[ta, tb], 0.0).map_err(|e| TestCaseError::fail(format!("{op:?} {dt}: {e}")))?;
    }

    /// BitCast between every pair of same-width types the device holds, on random values
    /// (f16 and bfloat16 ones exact in their type), against the reference's bit reinterpretation.
    #[test]
    fn bitcast(dims in shape(), pair in 0usize..13, seed in any::<u64>()) {
        let pairs = [
            (DType::F32, DType::I32), (DType::I32, DType::F32), (DType::F32, DType::U32),
            (DType::U32, DType::I32), (DType::I32, DType::U32), (DType::F16, DType::I16),
            (DType::I16, DType::F16), (DType::F16, DType::BF16), (DType::BF16, DType::U16),
            (DType::U16, DType::I16), (DType::I8, DType::U8), (DType::U8, DType::I8),
            (DType::Bool, DType::U8),
        ];
        let (from, to) = pairs[pair];
        let mut g = Graph::new();
        let x = g.input("x", from, dims.clone());
        let y = g.add(Op::BitCast { to }, &[x]).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        let mut t = Tensor::random(from, dims.clone(), seed);
        if from == DType::I32 || from == DType::U32 {
            // Whole 32-bit patterns, not only small integers; reading them as f32 gives NaNs and
            // infinities too, which must come back bit for bit as far as f32 holds them.
            let v: Vec<f64> = Tensor::random(DType::F32, dims.clone(), seed ^ 1)
                .to_f64_vec()
                .iter()
                .map(|u| {
                    let b = ((u + 1.0) / 2.0 * 4294967295.0) as u64 as u32;
                    if from == DType::I32 { b as i32 as f64 } else { b as f64 }
                })
                .collect();
            t = Tensor::from_f64(from, dims, &v);
        } else if from == DType::F16 || from == DType::BF16 {
            // Every 16-bit pattern but NaN's (whose payload the f32 the device holds an f16
            // in need not keep): subnormals, infinities and -0 included.
            let v: Vec<f64> = Tensor::random(DType::F32, dims.clone(), seed ^ 2)
                .to_f64_vec()
                .iter()
                .map(|u| {
                    let b = ((u + 1.0) / 2.0 * 65535.0) as u32;
                    let (exp_mask, man_mask) = if from == DType::F16 { (0x7c00, 0x3ff) } else { (0x7f80, 0x7f) };
                    let b = if b & exp_mask == exp_mask && b & man_mask != 0 { b & !man_mask } else { b };
                    sfumato_core::dtype::from_bits(from, b)
                })
                .collect();
            t = Tensor::from_f64(from, dims, &v);
        }
        differential(&g, &[t], 0.0).map_err(|e| TestCaseError::fail(format!("{from} -> {to}: {e}")))?;
    }

    #[test]
    fn matmul(batch_a in prop::collection::vec(1usize..4, 0..=2), bcast in any::<bool>(), m in 1usize..40, n in 1usize..40, k in 1usize..40,
              vec_a in prop::bool::weighted(0.1), vec_b in prop::bool::weighted(0.1), v in 0usize..64, aligned in any::<bool>(), seed in any::<u64>()) {
        // Aligned sizes let the vec4 variants be drawn too.
        let (n, k) = if aligned { (n.div_ceil(4) * 4, k.div_ceil(4) * 4) } else { (n, k) };
        let batch_b: Vec<usize> = if bcast { batch_a.iter().map(|_| 1).collect() } else { batch_a.clone() };
        let mut sa = batch_a.clone();
        if !vec_a { sa.push(m); }
        sa.push(k);
        let mut sb = batch_b.clone();
        sb.push(k);
        if !vec_b { sb.push(n); }
        let (sa, sb) = if vec_a { (vec![k], sb) } else { (sa, sb) };
        let sb = if vec_b { vec![k] } else { sb };
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, sa.clone());
        let b = g.input("b", DType::F32, sb.clone());
        let c = g.matmul(a, b).unwrap();
        g.set_outputs(&[c]).unwrap();
        let problem = sfumato_shaders::matmul_problem(
            &Op::MatMul,
            &[(DType::F32, g.shape(a)), (DType::F32, g.shape(b))],
            &[(DType::F32, g.shape(c))],
        )
        .unwrap();
        let inputs = [Tensor::random(DType::F32, sa, seed), Tensor::random(DType::F32, sb, seed + 1)];
        // One lock for forcing the variant, the run and going back: the device is shared by the
        // tests of this binary, which set their own variants.
        let got = common::with_device(|d| {
            // Only a variant that computes this layout within the loop budget is forced (the
            // device falls back from any other); which of them is drawn by `v`.
            let budget = d.target().loop_budget;
            let able: Vec<MatmulVariant> = MatmulVariant::all()
                .into_iter()
                .filter(|x| x.supports(&problem) && sfumato_shaders::loops::fits(x.loop_trips(&problem, 0), budget))
                .collect();
            let variant = able[v % able.len()];
            d.set_matmul_variant(Some(variant));
            let r = d.run(&g, &inputs);
            d.set_matmul_variant(None);
            (variant, r)
        });
        let Some((variant, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{variant:?}: {e}")))?;
        common::check_outputs(&g, &inputs, &got, 1e-5 * k as f64).map_err(|e| TestCaseError::fail(format!("{variant:?}: {e}")))?;
        // The forced variant ran, not a fallback: the profile names the kernel of each dispatch.
        let ks: Vec<&str> = got.profile.entries.iter().map(|e| e.kernel.as_str()).collect();
        prop_assert!(!ks.is_empty() && ks.iter().all(|k| *k == variant.name()), "{:?} ran {:?}", variant, ks);
    }

    #[test]
    fn gemm(m in 1usize..30, n in 1usize..30, k in 1usize..30, ta in any::<bool>(), tb in any::<bool>(), c_kind in 0usize..4, alpha in -2.0f32..2.0, beta in -2.0f32..2.0, seed in any::<u64>()) {
        let mut g = Graph::new();
        let sa = if ta { vec![k, m] } else { vec![m, k] };
        let sb = if tb { vec![n, k] } else { vec![k, n] };
        let a = g.input("a", DType::F32, sa.clone());
        let b = g.input("b", DType::F32, sb.clone());
        let sc: Option<Vec<usize>> = match c_kind { 0 => None, 1 => Some(vec![n]), 2 => Some(vec![m, 1]), _ => Some(vec![m, n]) };
        let mut inputs = vec![Tensor::random(DType::F32, sa, seed), Tensor::random(DType::F32, sb, seed + 1)];
        let c = sc.map(|s| { inputs.push(Tensor::random(DType::F32, s.clone(), seed + 2)); g.input("c", DType::F32, s) });
        let y = g.gemm(a, b, c, Gemm { alpha, beta, trans_a: ta, trans_b: tb }).unwrap();
        g.set_outputs(&[y]).unwrap();
        differential(&g, &inputs, 1e-5 * k as f64).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn conv2d(nb in 1usize..3, cg in 1usize..4, og in 1usize..6, groups in 1usize..4, depthwise in prop::bool::weighted(0.2), h in 1usize..11, w in 1usize..11,
              kh in 1usize..4, kw in 1usize..4, s in 1usize..3, p in 0usize..3, d in 1usize..3, bias in any::<bool>(), seed in any::<u64>()) {
        let (groups, cg, og) = if depthwise { (cg * groups, 1, 1) } else { (groups, cg, og) };
        let c = Conv2d { stride: [s, s + 1 - s % 2], padding: [p, p / 2, p, (p + 1) % 3], dilation: [d, 1], groups };
        let (ci, co) = (cg * groups, og * groups);
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [nb, ci, h, w]);
        let wt = g.input("w", DType::F32, [co, cg, kh, kw]);
        let mut inputs = vec![Tensor::random(DType::F32, [nb, ci, h, w], seed), Tensor::random(DType::F32, [co, cg, kh, kw], seed + 1)];
        let b = bias.then(|| { inputs.push(Tensor::random(DType::F32, [co], seed + 2)); g.input("b", DType::F32, [co]) });
        let Ok(y) = g.conv2d(x, wt, b, c) else { return Ok(()); }; // the window does not fit
        g.set_outputs(&[y]).unwrap();
        differential(&g, &inputs, 1e-5 * (cg * kh * kw) as f64).map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
    }

    #[test]
    fn conv_transpose2d(ci_g in 1usize..3, og in 1usize..4, groups in 1usize..3, h in 1usize..7, w in 1usize..7, k in 1usize..4, s in 1usize..3, p in 0usize..2, op in 0usize..2, d in 1usize..3, bias in any::<bool>(), seed in any::<u64>()) {
        let c = ConvTranspose2d { stride: [s, s], padding: [p, 0, p, 0], output_padding: [op.min(s - 1), 0], dilation: [d, d], groups };
        let ci = ci_g * groups;
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, ci, h, w]);
        let wt = g.input("w", DType::F32, [ci, og, k, k]);
        let mut inputs = vec![Tensor::random(DType::F32, [1, ci, h, w], seed), Tensor::random(DType::F32, [ci, og, k, k], seed + 1)];
        let b = bias.then(|| { inputs.push(Tensor::random(DType::F32, [og * groups], seed + 2)); g.input("b", DType::F32, [og * groups]) });
        let Ok(y) = g.conv_transpose2d(x, wt, b, c) else { return Ok(()); };
        g.set_outputs(&[y]).unwrap();
        differential(&g, &inputs, 1e-5 * (ci * k * k) as f64).map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
    }

    #[test]
    fn batch_norm(n in 1usize..3, c in 1usize..6, rest in prop::collection::vec(1usize..6, 0..=2), seed in any::<u64>()) {
        let mut dims = vec![n, c];
        dims.extend(rest);
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, dims.clone());
        let ps: Vec<_> = ["scale", "bias", "mean", "var"].iter().map(|nm| g.input(nm, DType::F32, [c])).collect();
        let y = g.batch_norm(x, ps[0], ps[1], ps[2], ps[3], 1e-5).unwrap();
        g.set_outputs(&[y]).unwrap();
        let mut inputs = vec![Tensor::random(DType::F32, dims, seed)];
        for i in 0..4 { inputs.push(Tensor::random(DType::F32, [c], seed + i + 1)); }
        inputs[4] = positive(&inputs[4]);
        differential(&g, &inputs, 0.0).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn softmax_and_layer_norm(dims in prop::collection::vec(1usize..9, 1..=4), axis_pick in 0usize..4, permute in any::<bool>(), bias in any::<bool>(), seed in any::<u64>()) {
        let axis = axis_pick % dims.len();
        let mut g = Graph::new();
        let (x, src) = input_maybe_permuted(&mut g, DType::F32, &dims, permute);
        let s = g.softmax(x, axis as i64).unwrap();
        let norm: Vec<usize> = dims[axis..].to_vec();
        let scale = g.input("scale", DType::F32, norm.clone());
        let b = bias.then(|| g.input("bias", DType::F32, norm.clone()));
        let l = g.layer_norm(x, scale, b, axis as i64, 1e-5).unwrap();
        g.set_outputs(&[s, l]).unwrap();
        let mut inputs = vec![Tensor::random(DType::F32, src, seed), Tensor::random(DType::F32, norm.clone(), seed + 1)];
        if bias { inputs.push(Tensor::random(DType::F32, norm, seed + 2)); }
        differential(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn reduce(dims in prop::collection::vec(1usize..6, 1..=4), mask in prop::collection::vec(any::<bool>(), 4), k in 0usize..5, keep in any::<bool>(), dt in prop_oneof![Just(DType::F32), Just(DType::I32)], seed in any::<u64>()) {
        let op = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod][k];
        let axes: Vec<i64> = (0..dims.len()).filter(|&i| mask[i]).map(|i| i as i64).collect();
        let mut g = Graph::new();
        let x = g.input("x", dt, dims.clone());
        let y = g.reduce(op, x, &axes, keep).unwrap();
        g.set_outputs(&[y]).unwrap();
        let mut t = Tensor::random(dt, dims, seed);
        if op == ReduceOp::Prod {
            // Factors near 1 (floats) or -1, 0 and 1 (integers), so products stay in range.
            let v: Vec<f64> = t.to_f64_vec().iter().map(|&x| if dt == DType::F32 { 1.0 + x * 0.25 } else { x.signum() }).collect();
            t = Tensor::from_f64(dt, t.shape().clone(), &v);
        }
        differential(&g, &[t], 1e-5).map_err(|e| TestCaseError::fail(format!("{op:?} {axes:?}: {e}")))?;
    }

    #[test]
    fn pools(n in 1usize..3, c in 1usize..4, h in 1usize..10, w in 1usize..10, k in 1usize..4, s in 1usize..3, p in 0usize..2, d in 1usize..3, include in any::<bool>(), seed in any::<u64>()) {
        let pool = Pool2d { kernel: [k, k.max(2) - 1], stride: [s, 1], padding: [p.min(k - 1), 0, p.min(k - 1), 0], dilation: [d, 1], count_include_pad: include };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [n, c, h, w]);
        let (Ok(a), Ok(b)) = (g.max_pool2d(x, pool), g.avg_pool2d(x, pool)) else { return Ok(()); };
        let gap = g.global_avg_pool(x).unwrap();
        g.set_outputs(&[a, b, gap]).unwrap();
        differential(&g, &[Tensor::random(DType::F32, [n, c, h, w], seed)], 1e-6).map_err(|e| TestCaseError::fail(format!("{pool:?}: {e}")))?;
    }

    /// MaxPool's Indices: values on a few levels so windows hold ties (the first maximum in scan
    /// order wins), row- and column-major indices, padding, strides and dilations.
    #[test]
    fn max_pool_indices(n in 1usize..3, c in 1usize..4, h in 1usize..9, w in 1usize..9, k in 1usize..4, s in 1usize..3, p in 0usize..2, d in 1usize..3, col_major in any::<bool>(), levels in 2u32..5, seed in any::<u64>()) {
        let pool = Pool2d { kernel: [k, (k + 1) % 3 + 1], stride: [s, 3 - s], padding: [p.min(k - 1), 0, 0, 0], dilation: [d, 1], count_include_pad: false };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [n, c, h, w]);
        let (Ok(y), Ok(i)) = (g.max_pool2d(x, pool), g.max_pool2d_indices(x, pool, col_major)) else { return Ok(()); };
        g.set_outputs(&[y, i]).unwrap();
        let t = Tensor::random(DType::F32, [n, c, h, w], seed);
        let v: Vec<f64> = t.to_f64_vec().iter().map(|&x| ((x + 1.0) * levels as f64 / 2.0).floor()).collect();
        differential(&g, &[Tensor::from_f64(DType::F32, [n, c, h, w], &v)], 0.0).map_err(|e| TestCaseError::fail(format!("{pool:?} col_major {col_major}: {e}")))?;
    }

    #[test]
    fn movement(dims in prop::collection::vec(1usize..6, 1..=4), seed in any::<u64>(), dt in prop_oneof![Just(DType::F32), Just(DType::I64), Just(DType::Bool)],
                perm_seed in any::<u64>(), starts in prop::collection::vec(-7i64..7, 4), ends in prop::collection::vec(-7i64..8, 4), steps in prop::collection::vec(prop_oneof![1i64..3, -3i64..-1], 4)) {
        let r = dims.len();
        let mut g = Graph::new();
        let x = g.input("x", dt, dims.clone());
        let mut perm: Vec<usize> = (0..r).collect();
        perm.rotate_left((perm_seed % r as u64) as usize);
        let t = g.transpose(x, &perm).unwrap();
        let axes: Vec<i64> = (0..r as i64).collect();
        let s = g.slice(x, &axes, &starts[..r], &ends[..r], &steps[..r]).unwrap();
        let axis = (seed % r as u64) as usize;
        let c = g.concat(&[x, t, x], axis as i64).unwrap_or(x);
        let c2 = g.concat(&[x, x], axis as i64).unwrap();
        let first = dims[axis] / 2;
        let parts = g.split(x, axis as i64, &[first, dims[axis] - first]).unwrap();
        let rs = g.reshape(t, &[-1]).unwrap();
        let mut outs = vec![t, s, c, c2, rs];
        outs.extend(parts);
        g.set_outputs(&outs).unwrap();
        differential(&g, &[Tensor::random(dt, dims, seed)], 0.0).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn gather_where_cast(dims in prop::collection::vec(1usize..6, 1..=3), idx_dims in prop::collection::vec(0usize..4, 0..=2), seed in any::<u64>(),
                         from in 0usize..6, to in 0usize..6) {
        let r = dims.len();
        let axis = (seed % r as u64) as usize;
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, dims.clone());
        let idx = g.input("idx", DType::I64, idx_dims.clone());
        let ga = g.gather(x, idx, axis as i64).unwrap();
        let cond = g.input("cond", DType::Bool, dims[1..].to_vec());
        let y = g.input("y", DType::F32, [1]);
        let w = g.where_(cond, x, y).unwrap();
        let (fd, td) = (DType::ALL[from], DType::ALL[to]);
        let xc = g.input("xc", fd, dims.clone());
        let ca = g.cast(xc, td).unwrap();
        g.set_outputs(&[ga, w, ca]).unwrap();
        let len = dims[axis] as i64;
        let n: usize = idx_dims.iter().product();
        let iv: Vec<i64> = (0..n as i64).map(|i| ((i * 7 + seed as i64 % 13).rem_euclid(2 * len)) - len).collect();
        // Keep float-to-int casts inside every target's range.
        let xc_t = { let t = Tensor::random(fd, dims.clone(), seed + 3); let v: Vec<f64> = t.to_f64_vec().iter().map(|v| v * 3.0).collect(); Tensor::from_f64(fd, dims.clone(), &v) };
        let inputs = vec![
            Tensor::random(DType::F32, dims.clone(), seed),
            Tensor::from_i64(idx_dims, iv).unwrap(),
            Tensor::random(DType::Bool, dims[1..].to_vec(), seed + 1),
            Tensor::random(DType::F32, [1], seed + 2),
            xc_t,
        ];
        differential(&g, &inputs, 0.0).map_err(|e| TestCaseError::fail(format!("cast {fd}->{td}: {e}")))?;
    }

    #[test]
    fn casts_between_every_dtype(dims in prop::collection::vec(1usize..6, 1..=3), from in 0usize..DType::ALL.len(), to in 0usize..DType::ALL.len(), scale in prop_oneof![Just(3.0f64), Just(300.0), Just(1e5)], special in any::<bool>(), saturate in any::<bool>(), seed in any::<u64>()) {
        // Every pair of dtypes, values scaled past the small formats' range, and NaN and ±inf
        // between floats (to an integer they are undefined, as in ONNX), each cast with and
        // without saturation.
        let (fd, td) = (DType::ALL[from], DType::ALL[to]);
        let mut g = Graph::new();
        let x = g.input("x", fd, dims.clone());
        let y = g.add(Op::Cast { to: td, saturate }, &[x]).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        // i64 and u64 live in 32 bits on the device: keep their values (and the source's, no
        // f16 overflow to inf) inside that range.
        let wide = matches!(td, DType::I64 | DType::U64);
        let scale = if wide { scale.min(1e4) } else { scale };
        // Values an f32 holds exactly: the device stores f64 as f32 (documented), and a value
        // that rounds up to an integer there would truncate differently.
        let mut v: Vec<f64> = Tensor::random(DType::F32, dims.clone(), seed).to_f64_vec().iter().map(|x| (x * scale) as f32 as f64).collect();
        if special && fd.is_float() && td.is_float() && !wide && v.len() >= 3 {
            v[0] = f64::NAN;
            v[1] = f64::INFINITY;
            v[2] = f64::NEG_INFINITY;
        }
        if special && fd.is_float() && v.len() >= 4 {
            v[3] = -0.0;
        }
        let t = Tensor::from_f64(fd, dims, &v);
        differential(&g, &[t], 0.0).map_err(|e| TestCaseError::fail(format!("cast {fd} -> {td} (saturate {saturate}): {e}")))?;
    }

    #[test]
    fn gather_elements(dims in prop::collection::vec(1usize..6, 1..=4), shrink in prop::collection::vec(0usize..3, 4), k in 1usize..7, seed in any::<u64>(), int in any::<bool>()) {
        // Indices of data's rank: any length along the axis, at most data's size elsewhere.
        let r = dims.len();
        let axis = (seed % r as u64) as usize;
        let idims: Vec<usize> = (0..r).map(|d| if d == axis { k } else { dims[d].saturating_sub(shrink[d]).max(1) }).collect();
        let dt = if int { DType::I32 } else { DType::F32 };
        let mut g = Graph::new();
        let x = g.input("x", dt, dims.clone());
        let idx = g.input("idx", DType::I64, idims.clone());
        let y = g.gather_elements(x, idx, axis as i64 - if seed % 2 == 0 { r as i64 } else { 0 }).unwrap();
        g.set_outputs(&[y]).unwrap();
        let len = dims[axis] as i64;
        let n: usize = idims.iter().product();
        let iv: Vec<i64> = (0..n as i64).map(|i| ((i * 5 + (seed >> 3) as i64 % 11).rem_euclid(2 * len)) - len).collect();
        let inputs = vec![Tensor::random(dt, dims.clone(), seed), Tensor::from_i64(idims, iv).unwrap()];
        differential(&g, &inputs, 0.0).map_err(|e| TestCaseError::fail(format!("axis {axis}: {e}")))?;
    }

    #[test]
    fn arg_max_min(dims in prop::collection::vec(1usize..7, 1..=4), max in any::<bool>(), keep in any::<bool>(), last in any::<bool>(), dt in prop_oneof![Just(DType::F32), Just(DType::I32), Just(DType::U8)], seed in any::<u64>()) {
        let axis = (seed % dims.len() as u64) as usize;
        let mut g = Graph::new();
        let x = g.input("x", dt, dims.clone());
        let y = g.arg_reduce(x, max, axis as i64, keep, last).unwrap();
        g.set_outputs(&[y]).unwrap();
        // Integers in [-8, 8) tie often, so first-vs-last index is exercised.
        differential(&g, &[Tensor::random(dt, dims, seed)], 0.0).map_err(|e| TestCaseError::fail(format!("max {max} axis {axis} last {last}: {e}")))?;
    }

    #[test]
    fn resize_and_pad(n in 1usize..3, h in 1usize..7, w in 1usize..7, oh in 1usize..12, ow in 1usize..12, mode in any::<bool>(), coord in 0usize..3,
                      pads in prop::collection::vec((0usize..3, 0usize..3), 4), pm in 0usize..3, seed in any::<u64>()) {
        let coord = [CoordTransform::HalfPixel, CoordTransform::AlignCorners, CoordTransform::Asymmetric][coord];
        let mode = if mode { ResizeMode::Bilinear } else { ResizeMode::Nearest };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [n, 2, h, w]);
        let r = g.resize(x, [oh, ow], mode, coord).unwrap();
        let dims = [n, 2, h, w];
        let pmode = [PadMode::Constant(0.5), PadMode::Reflect, PadMode::Edge][pm];
        let pads: Vec<[usize; 2]> = pads.iter().zip(dims).map(|(&(a, b), d)| if pm == 1 { [a.min(d - 1), b.min(d - 1)] } else { [a, b] }).collect();
        let p = g.pad(x, &pads, pmode).unwrap();
        g.set_outputs(&[r, p]).unwrap();
        differential(&g, &[Tensor::random(DType::F32, [n, 2, h, w], seed)], 1e-6).map_err(|e| TestCaseError::fail(format!("{mode:?} {coord:?} {pmode:?}: {e}")))?;
    }
}

proptest! {
    #![proptest_config(cfg(6))]

    /// Pads (0-2 a side, every dim, every mode) of images as large as real ones (up to 4 x 700 x
    /// 700: an RGB stem's channel pad, a detector's input), exact.
    #[test]
    fn wide_pads(c in 1usize..5, h in 100usize..700, w in 100usize..700, pads in prop::collection::vec((0usize..3, 0usize..3), 4), pm in 0usize..3, seed in any::<u64>()) {
        let dims = [1, c, h, w];
        let pmode = [PadMode::Constant(-1.5), PadMode::Reflect, PadMode::Edge][pm];
        let pads: Vec<[usize; 2]> = pads.iter().zip(dims).map(|(&(a, b), d)| if pm == 1 { [a.min(d - 1), b.min(d - 1)] } else { [a, b] }).collect();
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, dims);
        let p = g.pad(x, &pads, pmode).unwrap();
        g.set_outputs(&[p]).unwrap();
        differential(&g, &[Tensor::random(DType::F32, dims, seed)], 0.0).map_err(|e| TestCaseError::fail(format!("{dims:?} {pads:?} {pmode:?}: {e}")))?;
    }
}

proptest! {
    #![proptest_config(cfg(12))]

    /// A zero Pad along one axis runs as copy and clear commands (`pad_copies`): ranks 1-4, any
    /// axis, 0-3 a side, up to 6 blocks before the axis, an RGB stem's 3 -> 4 channels among
    /// them. The output's buffer comes from the pool, where an earlier kernel of the same graph
    /// (a product of the same size, summed away) leaves values: every zero must be written.
    /// Exact.
    #[test]
    fn zero_pads_along_one_axis(dims in prop::collection::vec(1usize..7, 1..=4), axis in 0usize..4, before in 0usize..4, after in 0usize..4, stem in any::<bool>(), seed in any::<u64>()) {
        let (dims, axis, before, after) = if stem {
            (vec![2, 3, 40, 56], 1, 0, 1)
        } else {
            (dims.clone(), axis % dims.len(), before, after.max(usize::from(before == 0)))
        };
        let mut pads = vec![[0, 0]; dims.len()];
        pads[axis] = [before, after];
        let mut out = dims.clone();
        out[axis] += before + after;
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, dims.clone());
        let z = g.input("z", DType::F32, out.clone());
        let zz = g.add_(z, z).unwrap();
        let sum = g.reduce(ReduceOp::Sum, zz, &[], false).unwrap();
        let p = g.pad(x, &pads, PadMode::Constant(0.0)).unwrap();
        g.set_outputs(&[sum, p]).unwrap();
        let shapes = sfumato_core::Shape::from(&dims[..]);
        let lowered = sfumato_shaders::lower(
            &Op::Pad { pads: pads.clone(), mode: PadMode::Constant(0.0) },
            &[(DType::F32, &shapes)],
            &[(DType::F32, &sfumato_core::Shape::from(&out[..]))],
            &sfumato_shaders::LowerOptions::default(),
        ).unwrap();
        prop_assert!(matches!(lowered, sfumato_shaders::Lowered::Copies(_)), "{lowered:?}");
        let inputs = [Tensor::random(DType::F32, dims.clone(), seed), Tensor::random(DType::F32, out.clone(), seed + 1)];
        differential(&g, &inputs, 1e-3).map_err(|e| TestCaseError::fail(format!("{dims:?} {pads:?}: {e}")))?;
    }
}

proptest! {
    // Each texture variant compiles a few pipelines (with and without an epilogue, fused and
    // not); a large block's compile takes seconds on lavapipe (`v4tex_16x16` minutes without
    // Mesa's shader cache), so fewer cases here.
    #![proptest_config(cfg(14))]

    /// A constant weight B (`K x N`, N a multiple of 4) is held as a texture and read by the
    /// `V4Tex` and `Ubo` variants: every one of them, with and without fusion, with a bias
    /// epilogue, on batched (`V4Tex`) and matrix-vector (M = 1) products. The profile must name
    /// the kernel.
    #[test]
    fn matmul_constant_weight_as_texture(batch in prop::collection::vec(1usize..3, 0..=2), m in prop_oneof![Just(1usize), 1usize..40],
              n4 in 1usize..12, k in 1usize..40, v in 0usize..64, bias in any::<bool>(), fuse in any::<bool>(), seed in any::<u64>()) {
        let n = n4 * 4;
        let tex: Vec<MatmulVariant> = MatmulVariant::all()
            .into_iter()
            .filter(|v| matches!(v, MatmulVariant::V4Tex { .. } | MatmulVariant::Ubo { .. }))
            .collect();
        let variant = tex[v % tex.len()];
        // The `ubo` variants read one A for every batch, K in fours.
        let ubo = matches!(variant, MatmulVariant::Ubo { .. });
        let (batch, k) = if ubo { (vec![], k.div_ceil(4) * 4) } else { (batch, k) };
        let mut sa = batch.clone();
        sa.extend([m, k]);
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, sa.clone());
        let w = g.constant(Tensor::random(DType::F32, [k, n], seed + 1)).unwrap();
        let mut y = g.matmul(a, w).unwrap();
        if bias {
            let b = g.constant(Tensor::random(DType::F32, [n], seed + 2)).unwrap();
            y = g.add_(y, b).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, sa, seed)];
        // One lock for the whole run: other tests share the device and set their own variant.
        let got = common::with_device(|d| {
            d.set_matmul_variant(Some(variant));
            d.set_fusion(fuse);
            let r = d.run(&g, &inputs);
            d.set_matmul_variant(None);
            d.set_fusion(true);
            r
        });
        let Some(got) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{variant:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (k + 1) as f64),
            "{:?}: max diff {:?}", variant, got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        prop_assert!(ks.contains(&variant.name().as_str()), "{:?} ran {:?}", variant, ks);
    }

    /// Matrix-vector products as wide as a decode step's and a classifier's (K to 4,096, N to
    /// 4,100 columns, a weight of up to 67 MB): each one-row `ubo` variant (A, the activation row,
    /// from a uniform block; the weight as texels) and the default pick, with a fused bias and
    /// GELU, against the reference.
    #[test]
    fn matvec_decode_widths(k in prop::sample::select(vec![768usize, 1024, 2048, 4096]), n in prop::sample::select(vec![1000usize, 3072, 4100]),
                            v in 0usize..5, seed in any::<u64>()) {
        let rows1: Vec<MatmulVariant> = MatmulVariant::all()
            .into_iter()
            .filter(|v| matches!(v, MatmulVariant::Ubo { rows: 1, .. }))
            .collect();
        let variant = rows1.get(v).copied();
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [1, k]);
        let w = g.constant(Tensor::random(DType::F32, [k, n], seed + 1)).unwrap();
        let b = g.constant(Tensor::random(DType::F32, [n], seed + 2)).unwrap();
        let y = g.matmul(a, w).unwrap();
        let y = g.add_(y, b).unwrap();
        let y = g.gelu(y).unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, [1, k], seed)];
        let got = common::run_with_variant(&g, &inputs, variant);
        let Some(got) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{variant:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (k + 1) as f64),
            "{:?} 1x{}x{}: max diff {:?}", variant, n, k, got.outputs[0].max_diff(&want.outputs[0]));
        if let Some(variant) = variant {
            let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
            prop_assert!(ks.contains(&variant.name().as_str()), "{:?} ran {:?}", variant, ks);
        }
    }
}

proptest! {
    // Each case compiles a conv pipeline of its own (the weight blocks' sizes are in the WGSL).
    #![proptest_config(cfg(12))]

    /// On a CPU adapter a one-group conv of at least `UBO_CONV_MIN_MACS` multiply-adds whose
    /// weights fit uniform blocks runs as `conv2d_ubo`
    /// (weights from uniform bindings, the image column gathered per tap): strides, padding,
    /// dilation, bias, a fused ReLU and weights over several 64 KiB blocks (`wide`: 40 x 1,008).
    #[test]
    fn conv2d_uniform_weights(nb in 1usize..3, c4 in 1usize..4, o in 1usize..40, h in 4usize..17, w in 4usize..17, kh in 1usize..4, kw in 1usize..4,
                              s in 1usize..3, p in 0usize..3, d in 1usize..3, bias in any::<bool>(), relu in any::<bool>(), wide in prop::bool::weighted(0.2), seed in any::<u64>()) {
        let (ci, o, kh, kw) = if wide { (112, 40, 3, 3) } else { (16 * c4, o, kh, kw) };
        let c = Conv2d { stride: [s, 1], padding: [p, p / 2, p, (p + 1) % 3], dilation: [d, 1], groups: 1 };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [nb, ci, h, w]);
        let wt = g.constant(Tensor::random(DType::F32, [o, ci, kh, kw], seed + 1)).unwrap();
        let b = bias.then(|| g.constant(Tensor::random(DType::F32, [o], seed + 2)).unwrap());
        let Ok(mut y) = g.conv2d(x, wt, b, c) else { return Ok(()); };
        if relu {
            y = g.unary(UnaryOp::Relu, y).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, [nb, ci, h, w], seed)];
        let got = common::with_device(|d| (d.target().uniform_block_operands, d.run(&g, &inputs)));
        let Some((cpu_adapter, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (ci * kh * kw) as f64),
            "{:?}: max diff {:?}", c, got.outputs[0].max_diff(&want.outputs[0]));
        // (The right padding is never 0 when the others are, so no case is a pointwise conv.)
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        let shape = got.outputs[0].shape().dims().to_vec();
        let macs = (shape.iter().product::<usize>() * ci * kh * kw) as u64;
        let big = macs >= sfumato_shaders::matmul_ubo::UBO_CONV_MIN_MACS;
        prop_assert!(!cpu_adapter || !big || ks.contains(&"conv2d_staged") || ks.contains(&"conv2d_ubo"), "{:?} ran {:?}", c, ks);
    }
}

/// A one-group conv of `nb` square images of `ci` channels, `hw` a side, to `o` channels
/// through a `k` x `k` window of stride `s` padded to keep the size (`k / 2` a side), an optional
/// bias and fused ReLU, with its random input.
#[allow(clippy::too_many_arguments)]
fn square_conv(
    nb: usize,
    ci: usize,
    o: usize,
    hw: usize,
    k: usize,
    s: usize,
    bias: bool,
    relu: bool,
    seed: u64,
) -> (Conv2d, Graph, [Tensor; 1]) {
    let p = k / 2;
    let c = Conv2d {
        stride: [s, s],
        padding: [p, p, p, p],
        dilation: [1, 1],
        groups: 1,
    };
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [nb, ci, hw, hw]);
    let wt = g
        .constant(Tensor::random(DType::F32, [o, ci, k, k], seed + 1))
        .unwrap();
    let b = bias.then(|| {
        g.constant(Tensor::random(DType::F32, [o], seed + 2))
            .unwrap()
    });
    let mut y = g.conv2d(x, wt, b, c).unwrap();
    if relu {
        y = g.unary(UnaryOp::Relu, y).unwrap();
    }
    g.set_outputs(&[y]).unwrap();
    (c, g, [Tensor::random(DType::F32, [nb, ci, hw, hw], seed)])
}

proptest! {
    #![proptest_config(cfg(10))]

    /// On a CPU adapter one-group convs run staged (`conv_stage` writes the image column to the
    /// staging texture, `conv2d_staged` reads it as texels and the weights from uniform blocks),
    /// pointwise ones included, on the shapes real models have: K in the thousands (512 channels
    /// of a 3x3 window: 4,608), hundreds of output channels, 7x7 and 14x14 images (pixels not a
    /// multiple of 4), stride 2, two images (two layers), a bias and a fused ReLU, each checked
    /// against the CPU reference. A window wider than 1x1 to at most the profile's
    /// `implicit_conv_max_out` channels (lavapipe: 128) whose weights fit whole 16-row uniform blocks (K up to 1,024: 112 channels of a
    /// 3x3 window, 1,008) runs `conv2d_ubo` instead, no column. (Convs under
    /// `UBO_CONV_MIN_MACS` keep the one-kernel paths.)
    #[test]
    fn conv2d_staged_wide(nb in 1usize..3, ci in prop::sample::select(vec![16usize, 24, 64, 112, 256, 512]), o in prop::sample::select(vec![48usize, 128, 200, 512]),
                          hw in prop::sample::select(vec![7usize, 13, 14]), k in prop::sample::select(vec![1usize, 3]), s in 1usize..3,
                          bias in any::<bool>(), relu in any::<bool>(), seed in any::<u64>()) {
        let (c, g, inputs) = square_conv(nb, ci, o, hw, k, s, bias, relu, seed);
        let got = common::with_device(|d| (d.target().uniform_block_operands, d.target().implicit_conv_max_out, d.run(&g, &inputs)));
        let Some((cpu_adapter, implicit_max, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (ci * k * k) as f64),
            "{:?}: max diff {:?}", c, got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        let macs = (got.outputs[0].shape().numel() * ci * k * k) as u64;
        let big = macs >= sfumato_shaders::matmul_ubo::UBO_CONV_MIN_MACS;
        // A 1x1 conv of stride 1 whose image is whole texels (14 x 14) copies it to the staging
        // texture with a copy command; the others write the image column with `conv_stage`.
        let copied = k == 1 && s == 1 && (hw * hw) % 4 == 0;
        let implicit = k > 1 && o <= implicit_max && ci * k * k <= 1024;
        if implicit {
            prop_assert!(!cpu_adapter || !big || (ks.contains(&"conv2d_ubo") && !ks.contains(&"conv_stage")), "{:?} ran {:?}", c, ks);
        } else {
            prop_assert!(!cpu_adapter || !big || (ks.contains(&"conv_stage") != copied && ks.contains(&"conv2d_staged")), "{:?} ran {:?}", c, ks);
        }
    }
}

proptest! {
    #![proptest_config(cfg(8))]

    /// The convs lavapipe runs as `conv2d_ubo` rather than staged (a window wider than 1x1, at
    /// most its profile's `implicit_conv_max_out` output channels, K up to 1,024), at the image sizes
    /// of real models' early layers: an RGB stem (3 channels, padded to 4, 3x3 and 7x7 windows),
    /// 32-112 channels of a 3x3 window, 32-128 output channels (several 16-channel tiles), images
    /// of 24-57 pixels a side (several 256-pixel tiles and a partial one), strides 1 and 2, a bias
    /// and a fused ReLU, against the CPU reference.
    #[test]
    fn conv2d_ubo_images(ck in prop::sample::select(vec![(3usize, 7usize), (3, 3), (32, 3), (64, 3), (112, 3)]),
                         o in prop::sample::select(vec![32usize, 64, 128]), hw in prop::sample::select(vec![24usize, 33, 57]),
                         s in 1usize..3, bias in any::<bool>(), relu in any::<bool>(), seed in any::<u64>()) {
        let (ci, k) = ck;
        // The widest windows at the largest image would take the CPU reference too long.
        let hw = if ci * k * k > 300 { hw.min(33) } else { hw };
        let (c, g, inputs) = square_conv(1, ci, o, hw, k, s, bias, relu, seed);
        let got = common::with_device(|d| (d.target().implicit_conv_max_out >= o, d.run(&g, &inputs)));
        let Some((implicit, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (ci * k * k) as f64),
            "{ci}x{hw}x{hw} * {o}x{ci}x{k}x{k} {c:?}: max diff {:?}", got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        let macs = (got.outputs[0].shape().numel() * ci * k * k) as u64;
        let big = macs >= sfumato_shaders::matmul_ubo::UBO_CONV_MIN_MACS;
        prop_assert!(!implicit || !big || (ks.contains(&"conv2d_ubo") && !ks.contains(&"conv_stage")), "{ci}x{hw}x{hw} * {o}x{ci}x{k}x{k} {c:?} ran {ks:?}");
    }
}

/// Index arithmetic near 2^24: a fused kernel's strided reads (a transpose of 4,097 x 4,095
/// under an add: 16,777,215 elements) and a split's block copy (4,097 blocks of 4,094) divide
/// indices below 2^24 in float arithmetic (`udiv_small`); every element, against the CPU
/// reference, exactly. Odd sizes put indices at k x d - 1 and k x d, where a float quotient
/// rounded up would land on the next integer (lavapipe's division is exact there; the
/// correction step is for adapters whose division is not).
#[test]
fn index_division_near_two_to_the_24() {
    let (r, c) = (4097usize, 4095usize);
    assert!(r * c < 1 << 24 && r * c > (1 << 24) - 2);
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [r, c]);
    let t = g.transpose(x, &[1, 0]).unwrap();
    let one = g
        .constant(Tensor::from_f64(DType::F32, Vec::<usize>::new(), &[1.0]))
        .unwrap();
    let y = g.add_(t, one).unwrap();
    let parts = g.split(x, 1, &[1, c - 1]).unwrap();
    g.set_outputs(&[y, parts[1]]).unwrap();
    // Distinct values (the flat index), so that an element read from a neighbour shows.
    let v: Vec<f64> = (0..r * c).map(|i| i as f64).collect();
    let inputs = [Tensor::from_f64(DType::F32, [r, c], &v)];
    differential(&g, &inputs, 0.0).unwrap_or_else(|e| panic!("{e}"));
}

/// `ubo` matmuls whose A needs many uniform blocks (K = 3,072: five rows a block), with a bias
/// and a residual in the epilogue: 300 rows in 5-row blocks (four dispatches on lavapipe, 15
/// blocks each: one pipeline, the parts differ in their first row, a param; five where a stage
/// has 12); invocation blocks spanning 3 and 4 blocks (`q`, five and seven dispatches); 37 rows
/// in 4-row blocks, whose last tile has two blocks of four and rows past M.
#[test]
fn ubo_matmul_in_parts() {
    let k = 3072usize;
    let n = 16usize;
    for (m, rows, parts) in [
        (300usize, 5u8, 4..=5),
        (300, 15, 4..=5),
        (300, 16, 7..=7),
        (37, 16, 1..=1),
    ] {
        let variant = MatmulVariant::Ubo {
            rows,
            cols4: 4,
            wg_x: 16,
        };
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [m, k]);
        let r = g.input("r", DType::F32, [m, n]);
        let w = g.constant(Tensor::random(DType::F32, [k, n], 2)).unwrap();
        let b = g.constant(Tensor::random(DType::F32, [n], 3)).unwrap();
        let y = g.matmul(a, w).unwrap();
        let y = g.add_(y, b).unwrap();
        let y = g.add_(y, r).unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = [
            Tensor::random(DType::F32, [m, k], 1),
            Tensor::random(DType::F32, [m, n], 4),
        ];
        let got = common::run_with_variant(&g, &inputs, Some(variant));
        let Some(got) = got else { return };
        let got = got.unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        let want = CpuDevice.run(&g, &inputs).unwrap();
        assert!(
            got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * k as f64),
            "{variant:?} on {m} rows: max diff {:?}",
            got.outputs[0].max_diff(&want.outputs[0])
        );
        let ran = got
            .profile
            .entries
            .iter()
            .filter(|e| e.kernel == variant.name())
            .count();
        assert!(parts.contains(&ran), "{variant:?}: {ran} dispatches");
    }
}

/// BitCast of f16 subnormals, the smallest normal, ±0, ±inf and a NaN, both ways through u16.
#[test]
fn bitcast_f16_specials() {
    let bits: Vec<u32> = vec![
        0x0001, 0x0002, 0x01ff, 0x0200, 0x03ff, 0x0400, 0x8001, 0x83ff, 0x0000, 0x8000, 0x3c00,
        0x7bff, 0x7c00, 0xfc00,
    ];
    let n = bits.len();
    let mut g = Graph::new();
    let h = g.input("h", DType::F16, [n]);
    let u = g.input("u", DType::U16, [n + 1]);
    let hb = g.add(Op::BitCast { to: DType::U16 }, &[h]).unwrap()[0];
    let uh = g.add(Op::BitCast { to: DType::F16 }, &[u]).unwrap()[0];
    g.set_outputs(&[hb, uh]).unwrap();
    let hv: Vec<f64> = bits
        .iter()
        .map(|&b| sfumato_core::dtype::from_bits(DType::F16, b))
        .collect();
    let mut uv: Vec<f64> = bits.iter().map(|&b| b as f64).collect();
    uv.push(0x7e00 as f64); // a quiet NaN
    let inputs = [
        Tensor::from_f64(DType::F16, [n], &hv),
        Tensor::from_f64(DType::U16, [n + 1], &uv),
    ];
    differential(&g, &inputs, 0.0).unwrap();
}

/// Float comparisons with NaN and the infinities: only `!=` is true where a NaN takes part
/// (the driver may fold `a != a` to false). Bool outputs compare exactly.
#[test]
fn float_comparisons_with_nan() {
    let a = [f32::NAN, 1.0, f32::NAN, f32::INFINITY, -0.0, 2.0];
    let b = [
        f32::NAN,
        f32::NAN,
        1.0,
        f32::INFINITY,
        0.0,
        f32::NEG_INFINITY,
    ];
    let mut g = Graph::new();
    let x = g.input("a", DType::F32, [6]);
    let y = g.input("b", DType::F32, [6]);
    let mut outs = Vec::new();
    for op in BinaryOp::ALL.into_iter().filter(|op| op.is_comparison()) {
        outs.push(g.binary(op, x, y).unwrap());
        outs.push(g.binary(op, x, x).unwrap());
    }
    g.set_outputs(&outs).unwrap();
    let inputs = [
        Tensor::from_f32([6], a.to_vec()).unwrap(),
        Tensor::from_f32([6], b.to_vec()).unwrap(),
    ];
    differential(&g, &inputs, 0.0).unwrap();
}

/// erf and gelu near 0, where an approximation of the form 1 - (...) * exp(-x^2) cancels to
/// ~1e-7 absolute: the kernel must keep erf's relative precision at tiny arguments.
#[test]
fn erf_is_accurate_near_zero() {
    let xs: Vec<f32> = [
        1e-7f32, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.2, 0.249, 0.251, 0.5, 2.0,
    ]
    .iter()
    .flat_map(|&x| [x, -x])
    .collect();
    let n = xs.len();
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [n]);
    let e = g.unary(UnaryOp::Erf, x).unwrap();
    let ge = g.gelu(x).unwrap();
    g.set_outputs(&[e, ge]).unwrap();
    let inputs = [Tensor::from_f32([n], xs.clone()).unwrap()];
    let Some(got) = common::with_device(|d| d.run(&g, &inputs)) else {
        return;
    };
    let got = got.unwrap();
    let want = CpuDevice.run(&g, &inputs).unwrap();
    assert_eq!(got.outputs.len(), want.outputs.len());
    for (o, (a, b)) in got.outputs.iter().zip(&want.outputs).enumerate() {
        for (i, (p, q)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
            // Relative precision where the series holds (|x| < 0.25); beyond, the approximation's
            // own bound (1.5e-7 absolute, plus f32 rounding of its terms).
            let (abs, rel) = ((p - q).abs(), (p - q).abs() / q.abs().max(1e-30));
            let ok = if xs[i].abs() < 0.25 {
                rel < 2e-6
            } else {
                abs < 5e-7
            };
            assert!(
                ok,
                "output {o} at x = {:e}: {p:e} vs {q:e} (abs {abs:e}, rel {rel:e})",
                xs[i]
            );
        }
    }
}

proptest! {
    #![proptest_config(cfg(10))]

    /// Depthwise convs (groups = C = O) on the shapes EfficientNet and MobileNet have: 3x3 and
    /// 5x5 windows, stride 1 and 2, dilation, 16 to 1,152 channels (1,152 5x5 weights span two
    /// uniform blocks: two dispatches), 7x7 to 56x56 images, two images, a bias and a fused ReLU;
    /// against the CPU reference. On a CPU adapter they run as `conv_dw`.
    #[test]
    fn conv2d_depthwise(nb in 1usize..3, ch in prop::sample::select(vec![16usize, 144, 672, 1152]), hw in prop::sample::select(vec![7usize, 14, 30, 56]),
                        k in prop::sample::select(vec![3usize, 5]), s in 1usize..3, d in prop::sample::select(vec![1usize, 1, 2]),
                        bias in any::<bool>(), relu in any::<bool>(), seed in any::<u64>()) {
        let p = k / 2 * d;
        let c = Conv2d { stride: [s, s], padding: [p, p, p, p], dilation: [d, d], groups: ch };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [nb, ch, hw, hw]);
        let wt = g.constant(Tensor::random(DType::F32, [ch, 1, k, k], seed + 1)).unwrap();
        let b = bias.then(|| g.constant(Tensor::random(DType::F32, [ch], seed + 2)).unwrap());
        let mut y = g.conv2d(x, wt, b, c).unwrap();
        if relu {
            y = g.unary(UnaryOp::Relu, y).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, [nb, ch, hw, hw], seed)];
        let got = common::with_device(|d| (d.target().uniform_block_operands, d.run(&g, &inputs)));
        let Some((cpu_adapter, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (k * k) as f64),
            "{:?}: max diff {:?}", c, got.outputs[0].max_diff(&want.outputs[0]));
        // Every such input is whole texels (channels a multiple of 16): read as texels.
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        prop_assert!(!cpu_adapter || ks.iter().all(|k| *k == "conv_dw_tex"), "{:?} ran {:?}", c, ks);
    }

    /// Depthwise convs of odd sizes: 2-9 channels, images 1-40 a side and not square, windows
    /// 1x1 to 5x5 (not square), strides 1-3, pads 0-2 on each side (not symmetric), one or two
    /// images. Inputs of whole texels (a multiple of 4 values) read as texels, the others from
    /// storage (`conv_dw`); against the CPU reference.
    #[test]
    fn conv2d_depthwise_odd(nb in 1usize..3, ch in 2usize..10, h in 1usize..41, w in 1usize..41,
                            kh in 1usize..6, kw in 1usize..6, sh in 1usize..4, sw in 1usize..4,
                            pads in prop::array::uniform4(0usize..3), seed in any::<u64>()) {
        prop_assume!(h + pads[0] + pads[2] >= kh && w + pads[1] + pads[3] >= kw);
        let c = Conv2d { stride: [sh, sw], padding: pads, dilation: [1, 1], groups: ch };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [nb, ch, h, w]);
        let wt = g.constant(Tensor::random(DType::F32, [ch, 1, kh, kw], seed + 1)).unwrap();
        let b = g.constant(Tensor::random(DType::F32, [ch], seed + 2)).unwrap();
        let y = g.conv2d(x, wt, Some(b), c).unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, [nb, ch, h, w], seed)];
        let got = common::with_device(|d| (d.target().uniform_block_operands, d.run(&g, &inputs)));
        let Some((cpu_adapter, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (kh * kw) as f64),
            "{:?}: max diff {:?}", c, got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        let want_kernel = if (nb * ch * h * w) % 4 == 0 { "conv_dw_tex" } else { "conv_dw" };
        prop_assert!(!cpu_adapter || ks.iter().all(|k| *k == want_kernel), "{:?} ran {:?}", c, ks);
    }

    /// Max pools as models have them (YOLOv5's SPPF: 5x5, stride 1, pads 2 on 256 channels at
    /// 20x20; ResNet's 3x3 stride 2 at 112x112) and of odd sizes: windows 1x1 to 7x7 (not
    /// square), strides 1-3, dilations 1-2, uneven pads, images 1-40 a side. On a CPU adapter
    /// `maxpool2d_tex` where the input is whole texels, `maxpool2d_block` (the same blocks, from
    /// storage) where not; against the CPU reference, exactly.
    #[test]
    fn max_pool_blocks(real in 0u8..4, nb in 1usize..3, ch in 1usize..10, h in 1usize..41, w in 1usize..41,
                       kh in 1usize..8, kw in 1usize..8, sh in 1usize..4, sw in 1usize..4, dil in 1usize..3,
                       pads in prop::array::uniform4(0usize..4), seed in any::<u64>()) {
        let (shape, pool) = match real {
            0 => ([1, 256, 20, 20], Pool2d::new(5, 1, 2)),
            1 => ([1, 64, 112, 112], Pool2d::new(3, 2, 1)),
            _ => {
                let pads = [pads[0].min(kh - 1), pads[1].min(kw - 1), pads[2].min(kh - 1), pads[3].min(kw - 1)];
                ([nb, ch, h, w], Pool2d { kernel: [kh, kw], stride: [sh, sw], padding: pads, dilation: [dil, dil], count_include_pad: false })
            }
        };
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, shape);
        let Ok(y) = g.max_pool2d(x, pool) else { return Ok(()) };
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, shape, seed)];
        let got = common::with_device(|d| (d.target().uniform_block_operands, d.run(&g, &inputs)));
        let Some((cpu_adapter, got)) = got else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(format!("{pool:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 0.0, 0.0),
            "{:?}: max diff {:?}", pool, got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        let want_kernel = if shape.iter().product::<usize>() % 4 == 0 { "maxpool2d_tex" } else { "maxpool2d_block" };
        prop_assert!(!cpu_adapter || ks == [want_kernel], "{:?} ran {:?}", pool, ks);
    }
}

proptest! {
    #![proptest_config(cfg(10))]

    /// `ubo` matmuls whose B is a run input (a product of two activations): on a CPU adapter B
    /// is first copied to the staging texture (`matmul_stage`) and read as texels. Both operands
    /// inputs, K up to 2,048, a batched B under one A (two layers), a fused bias and ReLU;
    /// against the CPU reference.
    #[test]
    fn matmul_b_input_staged(m in prop::sample::select(vec![16usize, 64, 200]), k in prop::sample::select(vec![256usize, 1000, 2048]),
                             n4 in prop::sample::select(vec![13usize, 49, 64]), odd in any::<bool>(), batched in any::<bool>(),
                             v in 0usize..10, bias in any::<bool>(), seed in any::<u64>()) {
        // B's rows whole texels (copied to the staging texture by a copy command) or not
        // (written there by `matmul_stage`).
        let n = n4 * 4 - usize::from(odd);
        let ubo: Vec<MatmulVariant> = MatmulVariant::all()
            .into_iter()
            .filter(|v| matches!(v, MatmulVariant::Ubo { .. }))
            .collect();
        let variant = ubo[v % ubo.len()];
        let sb: Vec<usize> = if batched { vec![2, k, n] } else { vec![k, n] };
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [m, k]);
        let b = g.input("b", DType::F32, sb.clone());
        let mut y = g.matmul(a, b).unwrap();
        if bias {
            let c = g.constant(Tensor::random(DType::F32, [n], seed + 2)).unwrap();
            y = g.add_(y, c).unwrap();
            y = g.relu(y).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F32, [m, k], seed), Tensor::random(DType::F32, sb, seed + 1)];
        let got = common::with_device(|d| {
            d.set_matmul_variant(Some(variant));
            let r = d.run(&g, &inputs).map(|o| (d.target().uniform_block_operands, o));
            d.set_matmul_variant(None);
            r
        });
        let Some(got) = got else { return Ok(()) };
        let (cpu_adapter, got) = got.map_err(|e| TestCaseError::fail(format!("{variant:?}: {e}")))?;
        let want = CpuDevice.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (k + 1) as f64),
            "{:?}: max diff {:?}", variant, got.outputs[0].max_diff(&want.outputs[0]));
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        if ks.contains(&variant.name().as_str()) {
            let big = (m * n * k * if batched { 2 } else { 1 }) as u64 >= sfumato_shaders::matmul_ubo::UBO_CONV_MIN_MACS;
            prop_assert!(!cpu_adapter || !big || ks.contains(&"matmul_stage") == odd, "{:?} ran {:?}", variant, ks);
        }
    }
}

/// Every block the autotuner may choose for a staged conv computes it: the first candidates of
/// the staged conv's class (`staged_conv` problems, `ubo` blocks only), each forced in turn, on a
/// 3x3 conv with pixels not a multiple of the tile (14x14, two images, stride 1 and 2) and a
/// 1x1 conv at 28x28, with a bias and a fused ReLU, against the CPU reference. On a target that
/// does not stage convs there is no such class and nothing to force.
#[test]
fn staged_conv_every_tuned_block() {
    use sfumato_shaders::LowerOptions;
    for (nb, ci, o, hw, k, s) in [
        // (144 channels: on lavapipe a 3x3 conv of K <= 1,024 to at most 128 runs `conv2d_ubo`,
        // `implicit_conv_max_out`; 128 x 3 x 3 = 1,152 is past that.)
        (2usize, 64usize, 144usize, 14usize, 3usize, 1usize),
        (1, 128, 64, 14, 3, 2),
        (1, 96, 48, 28, 1, 1),
    ] {
        let (c, g, inputs) = square_conv(nb, ci, o, hw, k, s, true, true, 10);
        let p = k / 2;
        let want = CpuDevice.run(&g, &inputs).unwrap();
        let oh = (hw + 2 * p - k) / s + 1;
        let prob = sfumato_shaders::MatmulProblem {
            m: o,
            n: oh * oh,
            k: ci * k * k,
            alpha: 1.0,
            beta: 1.0,
            has_bias: true,
            a_sm: ci * k * k,
            a_sk: 1,
            b_sk: oh * oh,
            b_sn: 1,
            c_sm: 1,
            c_sn: 0,
            offsets: (0..nb).map(|i| [0, i * ci * k * k * oh * oh, 0]).collect(),
            b_const: false,
            staged_conv: true,
        };
        let ran = common::with_device(|d| {
            let target = d.target().clone();
            let staged = sfumato_shaders::ops::conv::staged_conv_problem(
                &c,
                &[nb, ci, hw, hw],
                &[o, ci, k, k],
                &sfumato_core::Shape::from([nb, o, oh, oh]),
                true,
                &LowerOptions {
                    matmul: None,
                    target: target.clone(),
                },
            );
            let Some(staged) = staged else {
                return Ok(0);
            };
            assert_eq!(staged, prob);
            let cands = MatmulVariant::candidates(&prob, &target);
            for &v in cands.iter().take(5) {
                d.set_matmul_variant(Some(v));
                let got = d.run(&g, &inputs);
                d.set_matmul_variant(None);
                let got = got.map_err(|e| format!("{v:?}: {e}"))?;
                let ks: Vec<&str> = got
                    .profile
                    .entries
                    .iter()
                    .map(|t| t.kernel.as_str())
                    .collect();
                assert!(ks.contains(&"conv2d_staged"), "{v:?} ran {ks:?}");
                assert!(
                    got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * (ci * k * k) as f64),
                    "{v:?} on {nb}x{ci}x{hw}x{hw} * {o}x{ci}x{k}x{k} stride {s}: max diff {:?}",
                    got.outputs[0].max_diff(&want.outputs[0])
                );
            }
            Ok::<usize, String>(cands.len().min(5))
        });
        if let Some(r) = ran {
            r.unwrap();
        }
    }
}

proptest! {
    #![proptest_config(cfg(12))]

    /// A decode step's attention products at long context, each kernel forced: the scores
    /// `q K^T` (B contiguous along K: the `dot` variants) over 1-12 heads, 1-1,100 keys and head
    /// widths of 4-80, and the weights times V (`v4_1x4`, a 64-column product per head) with K
    /// the key count, against the CPU reference.
    #[test]
    fn attention_products_at_long_context(h in 1usize..13, m in prop::sample::select(vec![1usize, 2, 5]), s in 1usize..1100,
                                          d in prop::sample::select(vec![4usize, 16, 64, 80]), v in 0usize..3, seed in any::<u64>()) {
        let dots: Vec<MatmulVariant> = MatmulVariant::all()
            .into_iter()
            .filter(|x| matches!(x, MatmulVariant::Dot { .. }))
            .collect();
        let narrow = MatmulVariant::from_name("v4_1x4_wg16x1").expect("the narrow v4 block");
        // Scores: q [h, m, d] x K^T, K [h, s, d].
        let mut g = Graph::new();
        let q = g.input("q", DType::F32, [h, m, d]);
        let kc = g.input("k", DType::F32, [h, s, d]);
        let kt = g.transpose(kc, &[0, 2, 1]).unwrap();
        let sc = g.matmul(q, kt).unwrap();
        g.set_outputs(&[sc]).unwrap();
        let inputs = [Tensor::random(DType::F32, [h, m, d], seed), Tensor::random(DType::F32, [h, s, d], seed + 1)];
        // Weights x V: p [h, m, s] x V [h, s, 64].
        let mut g2 = Graph::new();
        let p = g2.input("p", DType::F32, [h, m, s]);
        let vv = g2.input("v", DType::F32, [h, s, 64]);
        let o = g2.matmul(p, vv).unwrap();
        g2.set_outputs(&[o]).unwrap();
        let inputs2 = [Tensor::random(DType::F32, [h, m, s], seed + 2), Tensor::random(DType::F32, [h, s, 64], seed + 3)];
        let variant = dots[v % dots.len()];
        let got = common::with_device(|dev| {
            dev.set_matmul_variant(Some(variant));
            let r = dev.run(&g, &inputs);
            dev.set_matmul_variant(Some(narrow));
            let r2 = dev.run(&g2, &inputs2);
            dev.set_matmul_variant(None);
            (r, r2)
        });
        let Some((got, got2)) = got else { return Ok(()) };
        for (g, inputs, got, want, k) in [(&g, &inputs[..], got, variant, d), (&g2, &inputs2[..], got2, narrow, s)] {
            let got = got.map_err(|e| TestCaseError::fail(format!("{want:?}: {e}")))?;
            common::check_outputs(g, inputs, &got, 1e-5 * k as f64).map_err(|e| TestCaseError::fail(format!("{want:?}: {e}")))?;
            let ks: Vec<&str> = got.profile.entries.iter().map(|e| e.kernel.as_str()).collect();
            prop_assert!(ks.contains(&want.name().as_str()), "{:?} not run: {:?}", want, ks);
        }
    }
}

/// Concat and Split of contiguous blocks are buffer copies (`buffer_copy`, no kernel): a decode
/// step's KV cache (12 heads x 1,024 keys x 64 and the new key) and a QKV split, exact; a
/// concat of many small blocks (a late axis of a tall tensor: over `MAX_COPY_REGIONS` copies)
/// keeps the block-copy kernel, exact too.
#[test]
fn concat_and_split_as_copies() {
    let mut g = Graph::new();
    let past = g.input("past", DType::F32, [1, 12, 1024, 64]);
    let new = g.input("new", DType::F32, [1, 12, 1, 64]);
    let all = g.concat(&[past, new], 2).unwrap();
    let qkv = g.input("qkv", DType::F32, [1, 1, 2304]);
    let parts = g.split(qkv, 2, &[768, 768, 768]).unwrap();
    let tall = g.input("tall", DType::F32, [300, 2]);
    let wide = g.input("wide", DType::F32, [300, 3]);
    let many = g.concat(&[tall, wide], 1).unwrap();
    let mut outs = vec![all, many];
    outs.extend(parts);
    g.set_outputs(&outs).unwrap();
    let inputs = [
        Tensor::random(DType::F32, [1, 12, 1024, 64], 1),
        Tensor::random(DType::F32, [1, 12, 1, 64], 2),
        Tensor::random(DType::F32, [1, 1, 2304], 3),
        Tensor::random(DType::F32, [300, 2], 4),
        Tensor::random(DType::F32, [300, 3], 5),
    ];
    let Some(got) = common::with_device(|d| d.run(&g, &inputs)) else {
        return;
    };
    let got = got.unwrap();
    common::check_outputs(&g, &inputs, &got, 0.0).unwrap();
    let ks: Vec<&str> = got
        .profile
        .entries
        .iter()
        .map(|e| e.kernel.as_str())
        .collect();
    let copies = ks
        .iter()
        .filter(|k| **k == sfumato_shaders::COPY_STEP)
        .count();
    assert_eq!(copies, 2, "the KV concat and the split are copies: {ks:?}");
    assert!(
        ks.iter().any(|k| k.starts_with("block_copy")),
        "601 small blocks keep the kernel: {ks:?}"
    );
}
