//! The device test suite, written once and instantiated for every device (the CPU reference,
//! wgpu, and the NPU simulator when it lands) by [`device_suite!`](crate::device_suite).
//!
//! Each [`Case`] builds a graph and seeded inputs at a shape drawn from a seed, from small to
//! as wide as real models use (K = 3,072, 1,024 channels, rows of 50,257); the device's outputs
//! are compared with the CPU reference interpreter's within the device's [`Tolerances`] for the
//! output's dtype. A device that cannot run a case (an op it does not support) fails it: the
//! suite lists what every device must run.
//!
//! A last test, [`check_kept`], runs a decoder step over a KV cache the device keeps
//! ([`crate::kept`]).
//!
//! ```ignore
//! // in a device crate's tests/suite.rs:
//! sfumato_core::device_suite!(
//!     || my_device(),                     // Option<Box<dyn Device>>: None skips, loudly
//!     sfumato_core::suite::Tolerances::gpu_f32()
//! );
//! ```

use crate::op::{BinaryOp, Conv2d, Gemm, Pool2d, ReduceOp, UnaryOp};
use crate::{CpuDevice, DType, Device, Feed, Graph, Result, Tensor, WriteBack};

/// How close a device's output must be to the reference's, per dtype: `(rtol, atol)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub f32: (f64, f64),
    pub f16: (f64, f64),
    /// Integer and bool outputs (exact on every device so far).
    pub int: (f64, f64),
}

impl Tolerances {
    /// The reference itself: exact.
    pub fn exact() -> Self {
        Tolerances {
            f32: (0.0, 0.0),
            f16: (0.0, 0.0),
            int: (0.0, 0.0),
        }
    }

    /// A GPU computing in f32 (other summation orders, fused multiply-adds, its own
    /// transcendentals).
    pub fn gpu_f32() -> Self {
        Tolerances {
            f32: (2e-4, 2e-4),
            f16: (2e-3, 2e-3),
            int: (0.0, 0.0),
        }
    }

    fn of(&self, d: DType) -> (f64, f64) {
        match d {
            DType::F16 | DType::BF16 => self.f16,
            d if d.is_float() => self.f32,
            _ => self.int,
        }
    }
}

/// A family of cases (one test per family in [`device_suite!`](crate::device_suite)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Elementwise,
    Matmul,
    Conv,
    Rows,
    Tensor,
    Fused,
    Dtypes,
    /// The matmul, conv, rows and fused cases in f16 ([`crate::precision::to_half`], outputs
    /// left f16): a device that stores f16 as f16 runs them so.
    Half,
}

/// One case: a graph and its inputs at a shape drawn from `seed`.
pub struct Case {
    pub name: &'static str,
    pub family: Family,
    pub build: fn(u64) -> Result<(Graph, Vec<Tensor>)>,
}

/// Seeds each case runs with (the shapes differ per seed; the last is the widest).
pub const SEEDS: std::ops::Range<u64> = 0..3;

/// A pick from `choices` by seed.
fn pick<T: Copy>(seed: u64, salt: u64, choices: &[T]) -> T {
    let h = (seed.wrapping_add(1))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(salt as u32 * 7 + 3);
    if seed + 1 == SEEDS.end {
        // The last seed takes the widest choice.
        return choices[choices.len() - 1];
    }
    choices[(h % choices.len() as u64) as usize]
}

fn input(g: &mut Graph, name: &str, dims: &[usize], seed: u64) -> (crate::ValueId, Tensor) {
    let v = g.input(name, DType::F32, dims.to_vec());
    (v, Tensor::random(DType::F32, dims.to_vec(), seed))
}

fn weight(g: &mut Graph, dims: &[usize], seed: u64) -> Result<crate::ValueId> {
    // Scaled so wide sums stay near 1 (as trained weights are).
    let fan_in: usize = dims[1..].iter().product::<usize>().max(1);
    let t = Tensor::random(DType::F32, dims.to_vec(), seed);
    let s = 1.0 / (fan_in as f64).sqrt();
    let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x * s).collect();
    g.constant(Tensor::from_f64(DType::F32, dims.to_vec(), &v))
}

fn elementwise(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new();
    let n = pick(seed, 1, &[7usize, 256, 4_099]);
    let (x, tx) = input(&mut g, "x", &[3, n], seed);
    let (b, tb) = input(&mut g, "b", &[1, n], seed + 100);
    let mut outs = Vec::new();
    for u in [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Silu,
        UnaryOp::Exp,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Erf,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Atan,
        UnaryOp::Floor,
    ] {
        outs.push(g.unary(u, x)?);
    }
    // Logarithms and roots of positive values.
    let pos = g.unary(UnaryOp::Exp, x)?;
    for u in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt] {
        outs.push(g.unary(u, pos)?);
    }
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        outs.push(g.binary(op, x, b)?);
    }
    outs.push(g.binary(BinaryOp::Div, x, pos)?);
    g.set_outputs(&outs)?;
    Ok((g, vec![tx, tb]))
}

fn matmul(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new();
    let m = pick(seed, 1, &[1usize, 33, 64]);
    let k = pick(seed, 2, &[5usize, 768, 3_072]);
    let n = pick(seed, 3, &[3usize, 130, 256]);
    let (a, ta) = input(&mut g, "a", &[2, m, k], seed);
    let w = weight(&mut g, &[k, n], seed + 1)?;
    let y = g.matmul(a, w)?;
    // A Gemm with a bias, and a product of two run inputs.
    let (x, tx) = input(&mut g, "x", &[m, k], seed + 2);
    let wt = weight(&mut g, &[n, k], seed + 3)?;
    let bias = weight(&mut g, &[n, 1], seed + 4)?;
    let bias = g.reshape(bias, &[n as i64])?;
    let z = g.gemm(
        x,
        wt,
        Some(bias),
        Gemm {
            trans_b: true,
            ..Default::default()
        },
    )?;
    let (bt, tbt) = input(&mut g, "bt", &[k, m], seed + 5);
    let xx = g.matmul(x, bt)?;
    g.set_outputs(&[y, z, xx])?;
    Ok((g, vec![ta, tx, tbt]))
}

fn conv(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new();
    let c = pick(seed, 1, &[3usize, 64, 1_024]);
    let size = pick(seed, 2, &[9usize, 14, 7]);
    let (x, tx) = input(&mut g, "x", &[1, c, size, size], seed);
    let o = pick(seed, 3, &[4usize, 32, 64]);
    let w3 = weight(&mut g, &[o, c, 3, 3], seed + 1)?;
    let y3 = g.conv2d(x, w3, None, Conv2d::padded(1, 1))?;
    let y3s = g.conv2d(x, w3, None, Conv2d::padded(1, 2))?;
    let w1 = weight(&mut g, &[o, c, 1, 1], seed + 2)?;
    let b1 = weight(&mut g, &[o, 1], seed + 3)?;
    let b1 = g.reshape(b1, &[o as i64])?;
    let y1 = g.conv2d(x, w1, Some(b1), Conv2d::default())?;
    let mp = g.max_pool2d(x, Pool2d::new(3, 2, 1))?;
    let ap = g.avg_pool2d(x, Pool2d::new(2, 2, 0))?;
    let gp = g.global_avg_pool(x)?;
    g.set_outputs(&[y3, y3s, y1, mp, ap, gp])?;
    Ok((g, vec![tx]))
}

fn rows(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new();
    let n = pick(seed, 1, &[10usize, 768, 50_257]);
    let (x, tx) = input(&mut g, "x", &[4, n], seed);
    let sm = g.softmax(x, -1)?;
    let scale = weight(&mut g, &[n, 1], seed + 1)?;
    let scale = g.reshape(scale, &[n as i64])?;
    let ln = g.layer_norm(x, scale, None, -1, 1e-5)?;
    let sum = g.reduce(ReduceOp::Sum, x, &[-1], true)?;
    let mean = g.reduce(ReduceOp::Mean, x, &[0], false)?;
    let max = g.reduce(ReduceOp::Max, x, &[-1], false)?;
    g.set_outputs(&[sm, ln, sum, mean, max])?;
    Ok((g, vec![tx]))
}

fn tensor(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new();
    let n = pick(seed, 1, &[3usize, 64, 1_000]);
    let (x, tx) = input(&mut g, "x", &[2, 5, n], seed);
    let t = g.transpose(x, &[2, 0, 1])?;
    let r = g.reshape(x, &[10, n as i64])?;
    let c = g.concat(&[x, x], 1)?;
    let s = g.slice(x, &[2], &[1], &[n as i64], &[2])?;
    let idx = g.constant(Tensor::from_f64(DType::I64, [3], &[4.0, 0.0, 2.0]))?;
    let ga = g.gather(x, idx, 1)?;
    g.set_outputs(&[t, r, c, s, ga])?;
    Ok((g, vec![tx]))
}

fn fused(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // A transformer FFN (matmul + bias + gelu, matmul + bias + residual) and a conv block
    // (conv + bias + relu + residual), as a fusing device groups them.
    let mut g = Graph::new();
    let e = pick(seed, 1, &[8usize, 64, 768]);
    let (x, tx) = input(&mut g, "x", &[1, 16, e], seed);
    let w1 = weight(&mut g, &[e, 4 * e], seed + 1)?;
    let b1 = weight(&mut g, &[4 * e, 1], seed + 2)?;
    let b1 = g.reshape(b1, &[4 * e as i64])?;
    let h = g.matmul(x, w1)?;
    let h = g.binary(BinaryOp::Add, h, b1)?;
    let h = g.gelu(h)?;
    let w2 = weight(&mut g, &[4 * e, e], seed + 3)?;
    let y = g.matmul(h, w2)?;
    let y = g.binary(BinaryOp::Add, y, x)?;
    let c = pick(seed, 2, &[4usize, 32, 256]);
    let (im, tim) = input(&mut g, "im", &[1, c, 8, 8], seed + 4);
    let w = weight(&mut g, &[c, c, 3, 3], seed + 5)?;
    let cb = weight(&mut g, &[c, 1], seed + 6)?;
    let cb = g.reshape(cb, &[c as i64])?;
    let z = g.conv2d(im, w, Some(cb), Conv2d::padded(1, 1))?;
    let z = g.relu(z)?;
    let z = g.binary(BinaryOp::Add, z, im)?;
    g.set_outputs(&[y, z])?;
    Ok((g, vec![tx, tim]))
}

fn dtypes(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // f16 and bf16 through casts (rounded to their dtype on the way out), integer arithmetic,
    // and integer results (ArgMax's i64 indices).
    let mut g = Graph::new();
    let n = pick(seed, 1, &[5usize, 300, 4_096]);
    let (x, tx) = input(&mut g, "x", &[4, n], seed);
    let h = g.cast(x, DType::F16)?;
    let h2 = g.binary(BinaryOp::Mul, h, h)?;
    let hs = g.softmax(h2, -1)?;
    let b = g.cast(x, DType::BF16)?;
    let b = g.unary(UnaryOp::Tanh, b)?;
    let i = g.input("i", DType::I32, vec![4, n]);
    let ti = Tensor::random(DType::I32, vec![4, n], seed + 7);
    let i2 = g.binary(BinaryOp::Mul, i, i)?;
    let i3 = g.binary(BinaryOp::Sub, i2, i)?;
    let am = g.arg_reduce(x, true, -1, false, false)?;
    let sq = g.binary(BinaryOp::Mul, x, x)?;
    let gt = g.binary(BinaryOp::Gt, x, sq)?;
    g.set_outputs(&[h2, hs, b, i3, am, gt])?;
    Ok((g, vec![tx, ti]))
}

/// An 8-bit tensor widened to i32 (values in `lo..=hi`), as a quantized model's integer
/// product gets its operands.
fn int8_tensor(dims: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    let t = Tensor::random(DType::F32, dims.to_vec(), seed);
    let v: Vec<f64> = t
        .to_f64_vec()
        .iter()
        .map(|x| (lo + (x * 0.5 + 0.5) * (hi - lo)).round().clamp(lo, hi))
        .collect();
    Tensor::from_f64(DType::I32, dims.to_vec(), &v)
}

fn int_matmul(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // 8-bit operands summed exactly in i32: uint8 (zero point 0) times uint8 at K = 4,096
    // sums to about 6.6e7, past 2^24, where an f32 sum rounds; then shifted int8 (-255..255).
    let mut g = Graph::new();
    let m = pick(seed, 1, &[1usize, 37, 128]);
    let k = pick(seed, 2, &[5usize, 768, 4_096]);
    let n = pick(seed, 3, &[3usize, 130, 256]);
    let a = g.input("a", DType::I32, vec![2, m, k]);
    let ta = int8_tensor(&[2, m, k], seed, 0.0, 255.0);
    let w = g.constant(int8_tensor(&[k, n], seed + 1, 0.0, 255.0))?;
    let y = g.add(crate::Op::MatMulInteger, &[a, w])?[0];
    // Two run inputs, B batched.
    let b = g.input("b", DType::I32, vec![2, k, n]);
    let tb = int8_tensor(&[2, k, n], seed + 2, -255.0, 255.0);
    let z = g.add(crate::Op::MatMulInteger, &[a, b])?[0];
    g.set_outputs(&[y, z])?;
    Ok((g, vec![ta, tb]))
}

fn int_conv(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // uint8 images and weights (zero points 0) through a 3x3 conv: at 512 channels K is 4,608
    // and the sums pass 2^24; a strided, padded conv with an i32 bias; a depthwise one and a
    // pointwise one over shifted int8 (-255..255).
    let mut g = Graph::new();
    let c = pick(seed, 1, &[3usize, 64, 512]);
    let size = pick(seed, 2, &[9usize, 14, 7]);
    let o = pick(seed, 3, &[4usize, 24, 32]);
    let x = g.input("x", DType::I32, vec![1, c, size, size]);
    let tx = int8_tensor(&[1, c, size, size], seed, 0.0, 255.0);
    let w = g.constant(int8_tensor(&[o, c, 3, 3], seed + 1, 0.0, 255.0))?;
    let conv = |g: &mut Graph, ins: &[crate::ValueId], c: Conv2d| -> Result<crate::ValueId> {
        Ok(g.add(crate::Op::ConvInteger(c), ins)?[0])
    };
    let y = conv(&mut g, &[x, w], Conv2d::padded(1, 1))?;
    let b = g.constant(int8_tensor(&[o], seed + 2, -1e5, 1e5))?;
    let ys = conv(&mut g, &[x, w, b], Conv2d::padded(1, 2))?;
    let d = g.input("d", DType::I32, vec![1, c, size, size]);
    let td = int8_tensor(&[1, c, size, size], seed + 3, -255.0, 255.0);
    let wd = g.constant(int8_tensor(&[c, 1, 3, 3], seed + 4, -255.0, 255.0))?;
    let dw = Conv2d {
        groups: c,
        ..Conv2d::padded(1, 1)
    };
    let yd = conv(&mut g, &[d, wd], dw)?;
    // Pointwise, which runs as the integer matmul.
    let w1 = g.constant(int8_tensor(&[o, c, 1, 1], seed + 5, -255.0, 255.0))?;
    let y1 = conv(&mut g, &[d, w1], Conv2d::default())?;
    g.set_outputs(&[y, ys, yd, y1])?;
    Ok((g, vec![tx, td]))
}

fn scatter_rows(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // Every reduction over repeated targets (`none` over distinct ones: ONNX leaves repeats
    // undefined there), rows as wide as a KV cache's.
    use crate::op::ScatterReduction as R;
    let mut g = Graph::new();
    let n = pick(seed, 1, &[5usize, 300, 4_096]);
    let s = pick(seed, 2, &[3usize, 64, 128]);
    let u = pick(seed, 3, &[2usize, 40, 512]);
    let (data, td) = input(&mut g, "data", &[n, s], seed);
    let (upd, tu) = input(&mut g, "upd", &[u, s], seed + 1);
    let repeated: Vec<f64> = (0..u)
        .map(|i| ((i * 7) % n.min(u / 2 + 1)) as f64)
        .collect();
    let distinct: Vec<f64> = (0..u).map(|i| ((i * 7919) % n) as f64).collect();
    let mut outs = Vec::new();
    for (r, t) in [
        (R::None, &distinct),
        (R::Add, &repeated),
        (R::Mul, &repeated),
        (R::Max, &repeated),
        (R::Min, &repeated),
    ] {
        let t = g.constant(Tensor::from_f64(DType::I64, vec![u], t))?;
        outs.push(g.add(crate::Op::ScatterRows { reduction: r }, &[data, upd, t])?[0]);
    }
    g.set_outputs(&outs)?;
    Ok((g, vec![td, tu]))
}

fn recurrent(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    // The device loop of each cell (both GRU reset placements), forward and reverse, with rows
    // of different lengths: 300 steps at H = 256 (two dispatches of the GRU without
    // linear-before-reset under llvmpipe's loop budget), H = 7 (scalar units, a remainder
    // loop) and H = 600 (vec4 units), over 1 or 3 batch rows (a CPU adapter's workgroup runs
    // 2 of them, the last repeated).
    use crate::op::{Recurrence, RecurrentAct as A, RecurrentCell as C};
    let mut g = Graph::new();
    let (t, h) = pick(
        seed,
        1,
        &[(5usize, 7usize), (40, 64), (300, 256), (12, 600)],
    );
    let b = pick(seed, 2, &[1usize, 3]);
    let cells = [
        (C::Rnn, vec![A::Tanh]),
        (
            C::Gru {
                linear_before_reset: false,
            },
            vec![A::Sigmoid, A::Tanh],
        ),
        (
            C::Gru {
                linear_before_reset: true,
            },
            vec![
                A::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                A::Softsign,
            ],
        ),
        (C::Lstm, vec![A::Sigmoid, A::Tanh, A::Tanh]),
    ];
    let lens: Vec<i32> = (0..b).map(|i| (t - i * t / 3) as i32).collect();
    let lens = g.constant(Tensor::from_i32([b], lens)?)?;
    let mut ins = Vec::new();
    let mut outs = Vec::new();
    for (i, (cell, acts)) in cells.into_iter().enumerate() {
        let (gates, parts) = (cell.gates(), cell.state_parts());
        let s = seed * 10 + i as u64;
        let (xw, txw) = input(&mut g, &format!("xw{i}"), &[t, b, gates * h], s);
        // R^T, scaled by 1/sqrt(H) as R is.
        let rv = Tensor::random(DType::F32, vec![h, gates * h], s + 1).to_f64_vec();
        let scale = 1.0 / (h as f64).sqrt();
        let rv: Vec<f64> = rv.iter().map(|v| v * scale).collect();
        let r = g.constant(Tensor::from_f64(DType::F32, [h, gates * h], &rv))?;
        let (s0, ts0) = input(&mut g, &format!("s{i}"), &[b, parts * h], s + 2);
        let mut node_ins = vec![xw, r, s0, lens];
        if let Some(rows) = cell.extra_rows() {
            node_ins.push(weight(&mut g, &[rows, h], s + 3)?);
        }
        let op = crate::Op::Recurrence(Recurrence {
            cell,
            reverse: i % 2 == 1,
            clip: (i == 3).then_some(2.5),
            acts,
        });
        outs.push(g.add(op, &node_ins)?[0]);
        ins.extend([txw, ts0]);
    }
    g.set_outputs(&outs)?;
    Ok((g, ins))
}

/// A case's graph in f16: its f32 values f16 ([`crate::precision::to_half`]) and its outputs
/// left f16 (compared at the device's f16 tolerance), its inputs as given.
fn in_half(
    build: fn(u64) -> Result<(Graph, Vec<Tensor>)>,
    seed: u64,
) -> Result<(Graph, Vec<Tensor>)> {
    let (g, inputs) = build(seed)?;
    let mut h = crate::precision::to_half(&g)?;
    let outs: Vec<crate::ValueId> = h
        .outputs()
        .iter()
        .map(|&o| match h.value(o).producer.map(|p| h.node(p)) {
            Some(n)
                if matches!(n.op, crate::Op::Cast { to: DType::F32, .. })
                    && h.dtype(n.inputs[0]) == DType::F16 =>
            {
                n.inputs[0]
            }
            _ => o,
        })
        .collect();
    h.set_outputs(&outs)?;
    Ok((h, inputs))
}

fn half_matmul(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    in_half(matmul, seed)
}

fn half_conv(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    in_half(conv, seed)
}

fn half_rows(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    in_half(rows, seed)
}

fn half_fused(seed: u64) -> Result<(Graph, Vec<Tensor>)> {
    in_half(fused, seed)
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "elementwise",
            family: Family::Elementwise,
            build: elementwise,
        },
        Case {
            name: "matmul",
            family: Family::Matmul,
            build: matmul,
        },
        Case {
            name: "conv",
            family: Family::Conv,
            build: conv,
        },
        Case {
            name: "rows",
            family: Family::Rows,
            build: rows,
        },
        Case {
            name: "tensor",
            family: Family::Tensor,
            build: tensor,
        },
        Case {
            name: "scatter rows",
            family: Family::Tensor,
            build: scatter_rows,
        },
        Case {
            name: "fused",
            family: Family::Fused,
            build: fused,
        },
        Case {
            name: "recurrent loop",
            family: Family::Fused,
            build: recurrent,
        },
        Case {
            name: "dtypes",
            family: Family::Dtypes,
            build: dtypes,
        },
        Case {
            name: "integer matmul",
            family: Family::Dtypes,
            build: int_matmul,
        },
        Case {
            name: "integer conv",
            family: Family::Dtypes,
            build: int_conv,
        },
        Case {
            name: "f16 matmul",
            family: Family::Half,
            build: half_matmul,
        },
        Case {
            name: "f16 conv",
            family: Family::Half,
            build: half_conv,
        },
        Case {
            name: "f16 rows",
            family: Family::Half,
            build: half_rows,
        },
        Case {
            name: "f16 fused",
            family: Family::Half,
            build: half_fused,
        },
    ]
}

/// Run one case at one seed on `dev` and compare with the CPU reference: `Err` names the case,
/// the seed, the output and its largest differences.
pub fn check_case(
    dev: &mut dyn Device,
    case: &Case,
    seed: u64,
    tol: &Tolerances,
) -> Result<(), String> {
    let name = dev.name();
    let what = |m: String| format!("{} (seed {seed}) on {name}: {m}", case.name);
    let (g, inputs) = (case.build)(seed).map_err(|e| what(format!("building: {e}")))?;
    let want = CpuDevice
        .run(&g, &inputs)
        .map_err(|e| what(format!("reference: {e}")))?;
    let got = dev.run(&g, &inputs).map_err(|e| what(e.to_string()))?;
    compare(&got.outputs, &want.outputs, tol).map_err(what)
}

/// Outputs against the reference's: count, dtypes, shapes, then values within `tol`.
fn compare(got: &[Tensor], want: &[Tensor], tol: &Tolerances) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, want {}", got.len(), want.len()));
    }
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        if a.dtype() != b.dtype() || a.shape() != b.shape() {
            return Err(format!(
                "output {i} is {} {}, want {} {}",
                a.dtype(),
                a.shape(),
                b.dtype(),
                b.shape()
            ));
        }
        let (rtol, atol) = tol.of(b.dtype());
        if !a.all_close(b, rtol, atol) {
            let (abs, rel) = a.max_diff(b);
            return Err(format!(
                "output {i} ({} {}) differs: max abs {abs:e}, max rel {rel:e} (rtol {rtol:e}, atol {atol:e})",
                b.dtype(),
                b.shape()
            ));
        }
    }
    Ok(())
}

/// Run every case of a family at every seed; panics with every failure listed (a test's
/// body).
pub fn run_family(dev: Option<Box<dyn Device>>, family: Family, tol: &Tolerances) {
    let Some(mut dev) = dev else {
        eprintln!("\n!!! SKIPPING the device suite ({family:?}): no device\n");
        return;
    };
    let mut fails = Vec::new();
    for case in cases().iter().filter(|c| c.family == family) {
        for seed in SEEDS {
            if let Err(e) = check_case(dev.as_mut(), case, seed, tol) {
                fails.push(e);
            }
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// A decoder's step over a KV cache the device keeps ([`crate::kept`]), as GPT-2's decode step
/// is built: the cached keys and values, fed kept, are concatenated with the step's new ones,
/// attended over with a mask, and the new ones written back at the step's position. The cache
/// starts filled with random values, `steps` positions short of full; each step's outputs and
/// the cache after the last are compared with the CPU reference doing the same through the
/// host. At the widest seed the cache is 16 heads x 1,024 slots x 64.
pub fn check_kept(dev: &mut dyn Device, seed: u64, tol: &Tolerances) -> Result<(), String> {
    let name = dev.name();
    let what = |m: String| format!("kept cache (seed {seed}) on {name}: {m}");
    let heads = pick(seed, 1, &[1, 2, 3, 16]);
    let slots = pick(seed, 2, &[5, 17, 40, 1024]);
    let hd = pick(seed, 3, &[4, 8, 20, 64]);
    let steps = 3.min(slots);
    let build = || -> Result<Graph> {
        let mut g = Graph::new();
        let q = g.input("q", DType::F32, [1, heads, 1, hd]);
        let x = g.input("x", DType::F32, [1, heads, 1, hd]);
        let mask = g.input("mask", DType::F32, [1, 1, 1, slots + 1]);
        let ck = g.input("past.key", DType::F32, [1, heads, slots, hd]);
        let cv = g.input("past.value", DType::F32, [1, heads, slots, hd]);
        let half = g.constant(Tensor::scalar_f32(0.5))?;
        let one = g.constant(Tensor::scalar_f32(1.0))?;
        let nk = g.mul(x, half)?;
        let nv = g.add_(x, one)?;
        let ka = g.concat(&[ck, nk], 2)?;
        let va = g.concat(&[cv, nv], 2)?;
        let kt = g.transpose(ka, &[0, 1, 3, 2])?;
        let s = g.matmul(q, kt)?;
        let scale = g.constant(Tensor::scalar_f32(1.0 / (hd as f32).sqrt()))?;
        let s = g.mul(s, scale)?;
        let s = g.add_(s, mask)?;
        let p = g.softmax(s, -1)?;
        let ctx = g.matmul(p, va)?;
        g.set_outputs(&[ctx, nk, nv])?;
        Ok(g)
    };
    let g = build().map_err(|e| what(format!("building: {e}")))?;
    let cache = |i: u64| Tensor::random(DType::F32, [1, heads, slots, hd], seed * 10 + i);
    let mut cpu = CpuDevice;
    let (rk, rv) = (
        cpu.keep(cache(0)).map_err(|e| what(e.to_string()))?,
        cpu.keep(cache(1)).map_err(|e| what(e.to_string()))?,
    );
    let (dk, dv) = (
        dev.keep(cache(0)).map_err(|e| what(e.to_string()))?,
        dev.keep(cache(1)).map_err(|e| what(e.to_string()))?,
    );
    for pos in slots - steps..slots {
        let mask: Vec<f32> = (0..=slots)
            .map(|j| if j < pos || j == slots { 0.0 } else { f32::MIN })
            .collect();
        let small = [
            Tensor::random(DType::F32, [1, heads, 1, hd], seed * 100 + pos as u64),
            Tensor::random(DType::F32, [1, heads, 1, hd], seed * 1000 + pos as u64),
            Tensor::from_f32([1, 1, 1, slots + 1], mask).map_err(|e| what(e.to_string()))?,
        ];
        let mut outs = Vec::new();
        for (d, k, v) in [
            (&mut cpu as &mut dyn Device, &rk, &rv),
            (&mut *dev, &dk, &dv),
        ] {
            let feeds: Vec<Feed<'_>> = small
                .iter()
                .map(Feed::Tensor)
                .chain([Feed::Kept(k), Feed::Kept(v)])
                .collect();
            let writes = [(1, k), (2, v)].map(|(output, into)| WriteBack {
                output,
                into,
                axis: 2,
                at: pos,
            });
            let out = d
                .run_fed(&g, &feeds, &writes)
                .map_err(|e| what(format!("step at {pos}: {e}")))?;
            outs.push(out.outputs);
        }
        compare(&outs[1], &outs[0], tol).map_err(|e| what(format!("step at {pos}: {e}")))?;
    }
    for (r, d, which) in [(&rk, &dk, "keys"), (&rv, &dv, "values")] {
        let want = cpu.read_kept(r).map_err(|e| what(e.to_string()))?;
        let got = dev.read_kept(d).map_err(|e| what(e.to_string()))?;
        compare(&[got], &[want], tol).map_err(|e| what(format!("cached {which}: {e}")))?;
    }
    Ok(())
}

/// Run [`check_kept`] at every seed; panics with every failure listed (a test's body).
pub fn run_kept(dev: Option<Box<dyn Device>>, tol: &Tolerances) {
    let Some(mut dev) = dev else {
        eprintln!("\n!!! SKIPPING the device suite (kept tensors): no device\n");
        return;
    };
    let fails: Vec<String> = SEEDS
        .filter_map(|seed| check_kept(dev.as_mut(), seed, tol).err())
        .collect();
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Instantiate the device suite: one `#[test]` per [`Family`], each opening the device with
/// `$open` (an expression giving `Option<Box<dyn Device>>`; `None` skips loudly) and checking
/// it against the CPU reference within `$tol` ([`Tolerances`]).
#[macro_export]
macro_rules! device_suite {
    ($open:expr, $tol:expr) => {
        #[test]
        fn suite_elementwise() {
            $crate::suite::run_family($open, $crate::suite::Family::Elementwise, &$tol);
        }
        #[test]
        fn suite_matmul() {
            $crate::suite::run_family($open, $crate::suite::Family::Matmul, &$tol);
        }
        #[test]
        fn suite_conv() {
            $crate::suite::run_family($open, $crate::suite::Family::Conv, &$tol);
        }
        #[test]
        fn suite_rows() {
            $crate::suite::run_family($open, $crate::suite::Family::Rows, &$tol);
        }
        #[test]
        fn suite_tensor() {
            $crate::suite::run_family($open, $crate::suite::Family::Tensor, &$tol);
        }
        #[test]
        fn suite_fused() {
            $crate::suite::run_family($open, $crate::suite::Family::Fused, &$tol);
        }
        #[test]
        fn suite_dtypes() {
            $crate::suite::run_family($open, $crate::suite::Family::Dtypes, &$tol);
        }
        #[test]
        fn suite_half() {
            $crate::suite::run_family($open, $crate::suite::Family::Half, &$tol);
        }
        #[test]
        fn suite_kept() {
            $crate::suite::run_kept($open, &$tol);
        }
    };
}
