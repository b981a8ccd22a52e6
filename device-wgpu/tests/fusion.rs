//! Fused kernels against the CPU reference, on random shapes, values and op mixes (proptest):
//! elementwise chains with broadcasting and strided (transposed) inputs, matmul and conv
//! epilogues, softmax and layer-norm prologues and epilogues, attention. Each also checks the
//! fusion happened (the number of dispatches), so a planner that stops fusing fails too.

mod common;

use common::{tol, with_device};
use proptest::prelude::*;
use sfumato_core::op::*;
use sfumato_core::{CpuDevice, DType, Device, Graph, Tensor};

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 30,
        ..ProptestConfig::default()
    }
}

/// Run fused and unfused on wgpu and compare both with the CPU reference; the fused run's
/// dispatch count.
fn check(g: &Graph, inputs: &[Tensor], atol: f64) -> Result<usize, String> {
    let want = CpuDevice.run(g, inputs).map_err(|e| format!("cpu: {e}"))?;
    let runs = with_device(|d| {
        d.set_fusion(true);
        let fused = d.run(g, inputs);
        d.set_fusion(false);
        let unfused = d.run(g, inputs);
        d.set_fusion(true);
        (fused, unfused)
    });
    let Some((fused, unfused)) = runs else {
        return Ok(0);
    };
    let fused = fused.map_err(|e| format!("wgpu fused: {e}"))?;
    let unfused = unfused.map_err(|e| format!("wgpu unfused: {e}"))?;
    for (what, got) in [("fused", &fused), ("unfused", &unfused)] {
        for (i, (w, o)) in want.outputs.iter().zip(&got.outputs).enumerate() {
            let (rtol, a) = tol(w.dtype());
            if !o.all_close(w, rtol, a + atol) {
                let (abs, rel) = o.max_diff(w);
                return Err(format!(
                    "{what} output {i} ({} {}) differs: max abs {abs:e}, max rel {rel:e}\n  cpu  {}\n  wgpu {}",
                    w.dtype(),
                    w.shape(),
                    w.summary(),
                    o.summary()
                ));
            }
        }
    }
    Ok(fused.profile.entries.len())
}

fn unary_op(k: u8) -> UnaryOp {
    match k % 7 {
        0 => UnaryOp::Relu,
        1 => UnaryOp::Sigmoid,
        2 => UnaryOp::Tanh,
        3 => UnaryOp::Gelu,
        4 => UnaryOp::Neg,
        5 => UnaryOp::Abs,
        _ => UnaryOp::Silu,
    }
}

fn binary_op(k: u8) -> BinaryOp {
    match k % 5 {
        0 => BinaryOp::Add,
        1 => BinaryOp::Sub,
        2 => BinaryOp::Mul,
        3 => BinaryOp::Max,
        _ => BinaryOp::Min,
    }
}

/// A shape of rank 1..=4 with dims 1..=6.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..7, 1..=4)
}

/// One step of a chain: a unary op, or a binary op with a side input that broadcasts (dims
/// dropped or set to 1), is transposed (read strided), or is an earlier value of the chain.
#[derive(Clone, Debug)]
enum Step {
    Unary(u8),
    Side {
        op: u8,
        drop: usize,
        ones: Vec<bool>,
        transposed: bool,
        swap: bool,
    },
    Earlier {
        op: u8,
        back: usize,
    },
}

fn step(rank: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<u8>().prop_map(Step::Unary),
        (
            any::<u8>(),
            0..=rank,
            prop::collection::vec(any::<bool>(), rank),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(op, drop, ones, transposed, swap)| Step::Side {
                op,
                drop,
                ones,
                transposed,
                swap
            }),
        (any::<u8>(), 1usize..4).prop_map(|(op, back)| Step::Earlier { op, back }),
    ]
}

fn chain() -> impl Strategy<Value = (Vec<usize>, Vec<Step>, bool, u64)> {
    shape().prop_flat_map(|s| {
        let r = s.len();
        (
            Just(s),
            prop::collection::vec(step(r), 1..9),
            any::<bool>(),
            any::<u64>(),
        )
    })
}

proptest! {
    #![proptest_config(cfg(32))]

    /// Chains of elementwise ops of one shape become one kernel (two outputs: two stores, still
    /// one kernel), whatever their broadcasting and strided inputs.
    #[test]
    fn elementwise_chains((dims, steps, two_outputs, seed) in chain()) {
        let mut g = Graph::new();
        let mut inputs = vec![Tensor::random(DType::F32, dims.clone(), seed)];
        let x = g.input("x", DType::F32, dims.clone());
        let mut vals = vec![x];
        for (i, s) in steps.iter().enumerate() {
            let cur = *vals.last().unwrap();
            let next = match s {
                Step::Unary(k) => g.unary(unary_op(*k), cur).unwrap(),
                Step::Side { op, drop, ones, transposed, swap } => {
                    let sd: Vec<usize> = dims.iter().enumerate().skip(*drop)
                        .map(|(j, &d)| if ones[j] { 1 } else { d }).collect();
                    let side = if *transposed && sd.len() >= 2 {
                        // Stored transposed; a Transpose node makes it the right shape.
                        let mut st = sd.clone();
                        let n = st.len();
                        st.swap(n - 1, n - 2);
                        let v = g.input(&format!("s{i}"), DType::F32, st.clone());
                        inputs.push(Tensor::random(DType::F32, st, seed + i as u64 + 1));
                        let mut perm: Vec<usize> = (0..n).collect();
                        perm.swap(n - 1, n - 2);
                        g.transpose(v, &perm).unwrap()
                    } else {
                        let v = g.input(&format!("s{i}"), DType::F32, sd.clone());
                        inputs.push(Tensor::random(DType::F32, sd, seed + i as u64 + 1));
                        v
                    };
                    let (a, b) = if *swap { (side, cur) } else { (cur, side) };
                    g.binary(binary_op(*op), a, b).unwrap()
                }
                Step::Earlier { op, back } => {
                    let e = vals[vals.len().saturating_sub(*back + 1)];
                    g.binary(binary_op(*op), cur, e).unwrap()
                }
            };
            vals.push(next);
        }
        let last = *vals.last().unwrap();
        let mut outs = vec![last];
        if two_outputs && vals.len() > 2 {
            outs.push(vals[vals.len() / 2]);
        }
        g.set_outputs(&outs).unwrap();
        let d = check(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
        if d > 0 {
            prop_assert_eq!(d, 1, "an elementwise chain of one shape is one kernel");
        }
    }

    /// Matmul (A possibly transposed, batched) with a random epilogue: bias, activation, scale,
    /// a residual per batch or one for every batch. One kernel.
    #[test]
    fn matmul_epilogues(
        m in 1usize..40, n in 1usize..40, k in 1usize..40, batch in 1usize..3,
        trans_a in any::<bool>(), ops in prop::collection::vec(0u8..6, 0..5), seed in any::<u64>()
    ) {
        let mut g = Graph::new();
        let mut inputs = Vec::new();
        let a = if trans_a {
            let v = g.input("at", DType::F32, [batch, k, m]);
            inputs.push(Tensor::random(DType::F32, [batch, k, m], seed));
            g.transpose(v, &[0, 2, 1]).unwrap()
        } else {
            let v = g.input("a", DType::F32, [batch, m, k]);
            inputs.push(Tensor::random(DType::F32, [batch, m, k], seed));
            v
        };
        let w = g.constant(Tensor::random(DType::F32, [k, n], seed + 1)).unwrap();
        let mut y = g.matmul(a, w).unwrap();
        for (i, op) in ops.iter().enumerate() {
            y = match op {
                0 => {
                    let b = g.constant(Tensor::random(DType::F32, [n], seed + 2 + i as u64)).unwrap();
                    g.add_(y, b).unwrap()
                }
                1 => g.gelu(y).unwrap(),
                2 => g.relu(y).unwrap(),
                3 => {
                    let s = g.constant(Tensor::from_f64(DType::F32, [1], &[0.125])).unwrap();
                    g.mul(y, s).unwrap()
                }
                4 => {
                    // One [m, n] for every batch: read at i % (m n).
                    let r = g.constant(Tensor::random(DType::F32, [m, n], seed + 5 + i as u64)).unwrap();
                    g.add_(y, r).unwrap()
                }
                _ => {
                    let r = g.input(&format!("r{i}"), DType::F32, [batch, m, n]);
                    inputs.push(Tensor::random(DType::F32, [batch, m, n], seed + 9 + i as u64));
                    g.add_(y, r).unwrap()
                }
            };
        }
        g.set_outputs(&[y]).unwrap();
        let d = check(&g, &inputs, 1e-4).map_err(TestCaseError::fail)?;
        if d > 0 {
            prop_assert_eq!(d, 1, "matmul and its epilogue are one kernel");
        }
    }

    /// Conv with a per-channel bias, activation and residual in its epilogue.
    #[test]
    fn conv_epilogues(
        c in 1usize..6, o in 1usize..9, h in 3usize..10, kk in 1usize..4, residual in any::<bool>(),
        seed in any::<u64>()
    ) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, c, h, h]);
        let mut inputs = vec![Tensor::random(DType::F32, [1, c, h, h], seed)];
        let w = g.constant(Tensor::random(DType::F32, [o, c, kk, kk], seed + 1)).unwrap();
        let p = kk / 2;
        let conv = Conv2d { padding: [p, p, p, p], ..Default::default() };
        let y = g.conv2d(x, w, None, conv).unwrap();
        let b = g.constant(Tensor::random(DType::F32, [o, 1, 1], seed + 2)).unwrap();
        let mut y = g.add_(y, b).unwrap();
        y = g.relu(y).unwrap();
        let oh = h + 2 * p - kk + 1;
        if residual {
            let r = g.input("r", DType::F32, [1, o, oh, oh]);
            inputs.push(Tensor::random(DType::F32, [1, o, oh, oh], seed + 3));
            y = g.add_(y, r).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let d = check(&g, &inputs, 1e-4).map_err(TestCaseError::fail)?;
        if d > 0 {
            prop_assert_eq!(d, 1, "conv and its epilogue are one kernel");
        }
    }

    /// Softmax and layer norm with an elementwise prologue (scale, mask, residual add) and
    /// epilogue.
    #[test]
    fn row_reductions_with_prologue_and_epilogue(
        rows in 1usize..20, len in 1usize..40, softmax in any::<bool>(), epilogue in any::<bool>(),
        seed in any::<u64>()
    ) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [rows, len]);
        let r = g.input("r", DType::F32, [1, len]);
        let inputs = vec![
            Tensor::random(DType::F32, [rows, len], seed),
            Tensor::random(DType::F32, [1, len], seed + 1),
        ];
        let s = g.constant(Tensor::from_f64(DType::F32, [1], &[0.5])).unwrap();
        let p = g.mul(x, s).unwrap();
        let p = g.add_(p, r).unwrap();
        let mut y = if softmax {
            g.softmax(p, -1).unwrap()
        } else {
            let gamma = g.constant(Tensor::random(DType::F32, [len], seed + 2)).unwrap();
            let beta = g.constant(Tensor::random(DType::F32, [len], seed + 3)).unwrap();
            g.layer_norm(p, gamma, Some(beta), -1, 1e-5).unwrap()
        };
        if epilogue {
            y = g.relu(y).unwrap();
            y = g.add_(y, x).unwrap();
        }
        g.set_outputs(&[y]).unwrap();
        let d = check(&g, &inputs, 1e-4).map_err(TestCaseError::fail)?;
        if d > 0 {
            prop_assert_eq!(d, 1, "prologue, row reduction and epilogue are one kernel");
        }
    }
}

/// Attention as BERT writes it, on `[b, heads, sq, sk, d]`: q, k, v `[b, s, heads * d]` split
/// into heads by reshape + transpose (views), K transposed, an optional scale and additive mask
/// (an input), softmax, P.V, and the heads merged back by transpose + reshape when `merge`.
fn attention_graph(
    [b, heads, sq, sk, d]: [usize; 5],
    scale: Option<f64>,
    mask: Option<Tensor>,
    merge: bool,
    seed: u64,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let e = heads * d;
    let mut inputs = Vec::new();
    let mut split = |g: &mut Graph, name: &str, s: usize, perm: &[usize], seed: u64| {
        let x = g.input(name, DType::F32, [b, s, e]);
        inputs.push(Tensor::random(DType::F32, [b, s, e], seed));
        let x4 = g
            .reshape(x, &[b as i64, s as i64, heads as i64, d as i64])
            .unwrap();
        g.transpose(x4, perm).unwrap()
    };
    let q4 = split(&mut g, "q", sq, &[0, 2, 1, 3], seed);
    let kt = split(&mut g, "k", sk, &[0, 2, 3, 1], seed + 1);
    let v4 = split(&mut g, "v", sk, &[0, 2, 1, 3], seed + 2);
    let mut s = g.matmul(q4, kt).unwrap();
    if let Some(c) = scale {
        let c = g
            .constant(Tensor::from_f64(DType::F32, Vec::<usize>::new(), &[c]))
            .unwrap();
        s = g.mul(s, c).unwrap();
    }
    if let Some(m) = mask {
        let mv = g.input("mask", DType::F32, m.shape().dims().to_vec());
        inputs.push(m);
        s = g.add_(s, mv).unwrap();
    }
    let p = g.softmax(s, -1).unwrap();
    let mut o = g.matmul(p, v4).unwrap();
    if merge {
        o = g.transpose(o, &[0, 2, 1, 3]).unwrap();
        o = g.reshape(o, &[b as i64, sq as i64, e as i64]).unwrap();
    }
    g.set_outputs(&[o]).unwrap();
    (g, inputs)
}

proptest! {
    #![proptest_config(cfg(24))]

    /// Mean and variance: `mean((x - mean(x))^2)` over random axes is two kernels, the second
    /// computing the squared difference as the reduction's prologue; max and sum too.
    #[test]
    fn reductions_with_prologue(
        dims in prop::collection::vec(1usize..7, 1..=4), axis_pick in any::<u8>(),
        keepdim in any::<bool>(), which in 0u8..3, seed in any::<u64>()
    ) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, dims.clone());
        let axis = -1 - (axis_pick as i64 % dims.len() as i64);
        let m = g.reduce(ReduceOp::Mean, x, &[axis], true).unwrap();
        let d = g.binary(BinaryOp::Sub, x, m).unwrap();
        let sq = g.mul(d, d).unwrap();
        let op = [ReduceOp::Mean, ReduceOp::Max, ReduceOp::Sum][which as usize];
        let v = g.reduce(op, sq, &[axis], keepdim).unwrap();
        g.set_outputs(&[v]).unwrap();
        let inputs = [Tensor::random(DType::F32, dims.clone(), seed)];
        let n = check(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
        if n > 0 {
            prop_assert_eq!(n, 2, "mean, then the squared difference and its reduction");
        }
    }

    /// Attention as BERT writes it: heads split by reshape + transpose (views), K transposed,
    /// scale, additive mask, softmax, P.V, heads merged by transpose + reshape. One kernel for
    /// the attention (with enough query rows), none for the views. Up to 2 x 4 x 139 query rows,
    /// so the kernel runs with 1, 2 and 4 query rows per invocation.
    #[test]
    fn attention(
        b in 1usize..3, heads in 1usize..5, sq in prop_oneof![1usize..20, 64usize..90, 120usize..140], sk in 1usize..20,
        d in prop::sample::select(vec![1usize, 4, 8, 16]), mask in any::<bool>(),
        scale in any::<bool>(), merge in any::<bool>(), seed in any::<u64>()
    ) {
        let mask = mask.then(|| {
            let mut mv = vec![0.0; b * sk];
            for (i, x) in mv.iter_mut().enumerate() {
                // The last two keys masked with -10000, only where a key is left unmasked:
                // with every key masked the answer hangs on f32's rounding of `score - 10000`
                // (an ulp of 1e-3), which no two summation orders share.
                if i % sk >= sk.saturating_sub(2) && sk > 3 {
                    *x = -10000.0;
                }
                // A first key masked with -inf: the online softmax starts from a -inf score.
                if i % sk == 0 && sk > 2 {
                    *x = f64::NEG_INFINITY;
                }
            }
            Tensor::from_f64(DType::F32, [b, 1, 1, sk], &mv)
        });
        let (g, inputs) = attention_graph([b, heads, sq, sk, d], scale.then_some(0.25), mask, merge, seed);
        let n = check(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
        if n > 0 && b * heads * sq >= sfumato_core::plan::MIN_ATTENTION_ROWS {
            // One kernel, or on a CPU adapter with K and V in uniform bindings one per batch.
            prop_assert!(n == 1 || n == b, "attention took {} kernels for {} batches", n, b);
        } else if n > 0 {
            // Few query rows: QK (with its scale and mask), softmax, PV (and the head merge,
            // a copy: a reshape of a transposed value is not a view).
            prop_assert!(n == 3 || (merge && n == 4), "a short attention took {} kernels", n);
        }
    }
}

proptest! {
    #![proptest_config(cfg(12))]

    /// A decode step over a long KV cache: few query rows (up to 2 x 16 x 2) over 256 to 2,100
    /// keys, one kernel that splits the keys (`attention_decode_tex` on a CPU adapter, K and V
    /// through the staging texture; `attention_decode` elsewhere and for head dims that are not
    /// a multiple of 4), against the CPU reference: masks with -inf and -10000 entries, heads
    /// merged or not, head dims up to 64.
    #[test]
    fn attention_decode(
        b in 1usize..3, heads in prop::sample::select(vec![1usize, 3, 12, 16]), sq in 1usize..3,
        sk in prop_oneof![256usize..300, 1000usize..1100, 2040usize..2100],
        d in prop::sample::select(vec![4usize, 6, 8, 64]), mask in any::<bool>(),
        merge in any::<bool>(), seed in any::<u64>()
    ) {
        let mask = mask.then(|| {
            let mv: Vec<f64> = (0..b * sk)
                .map(|i| match i % sk {
                    0 => f64::NEG_INFINITY,
                    j if j + 2 >= sk => -10000.0,
                    j if j % 7 == 3 => f64::from(f32::MIN),
                    _ => 0.0,
                })
                .collect();
            Tensor::from_f64(DType::F32, [b, 1, 1, sk], &mv)
        });
        let (g, inputs) = attention_graph([b, heads, sq, sk, d], Some(0.125), mask, merge, seed);
        let n = check(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
        if n > 0 {
            prop_assert_eq!(n, 1, "decode attention is one kernel");
            let name = common::with_device(|dev| {
                dev.set_fusion(true);
                dev.run(&g, &inputs).map(|o| o.profile.entries[0].kernel.clone())
            });
            if let Some(name) = name {
                let name = name.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(name.starts_with("attention_decode"), "ran {}", name);
            }
        }
    }
}

proptest! {
    // Each case compiles a pipeline of its own (the key blocks are in the WGSL).
    #![proptest_config(cfg(10))]

    /// On a CPU adapter an attention whose K and V fit uniform bindings runs as
    /// `attention_ubo`, one kernel per batch (each batch's keys its own blocks): keys over
    /// several blocks (up to 8 heads of 64: 32 keys a block), a partial last chunk of keys,
    /// masks broadcast over the query rows or per row (and per head, and per batch), with -inf
    /// entries, and the heads merged or not.
    #[test]
    fn attention_uniform_kv(
        b in 1usize..4, heads in 1usize..9, d in prop::sample::select(vec![4usize, 16, 64]), sq in 1usize..140,
        sk in 1usize..100, mask in 0u8..4, merge in any::<bool>(), seed in any::<u64>()
    ) {
        let sq = sq.max(sfumato_core::plan::MIN_ATTENTION_ROWS.div_ceil(heads));
        let e = heads * d;
        let mask = (mask > 0).then(|| {
            // [1, 1, 1, sk] (broadcast over query rows), [1, 1, sq, sk], [1, h, sq, sk].
            let shape = match mask {
                1 => vec![b, 1, 1, sk],
                2 => vec![b, 1, sq, sk],
                _ => vec![b, heads, sq, sk],
            };
            let n: usize = shape.iter().product();
            let mv: Vec<f64> = (0..n)
                .map(|i| match (i * 7 + i / sk) % 11 {
                    0 if i % sk != 0 => f64::NEG_INFINITY,
                    3 => -10000.0,
                    5 => 1.5,
                    _ => 0.0,
                })
                .collect();
            Tensor::from_f64(DType::F32, shape, &mv)
        });
        let (g, inputs) = attention_graph([b, heads, sq, sk, d], Some(0.125), mask, merge, seed);
        check(&g, &inputs, 1e-5).map_err(TestCaseError::fail)?;
        let ran = common::with_device(|d| {
            d.set_fusion(true);
            (
                d.target().uniform_block_operands,
                d.target().max_uniform_blocks as usize,
                d.run(&g, &inputs),
            )
        });
        let Some((cpu_adapter, blocks, got)) = ran else { return Ok(()) };
        let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ks: Vec<&str> = got.profile.entries.iter().map(|t| t.kernel.as_str()).collect();
        // Whether every key block of K and V fits the adapter's uniform bindings.
        let fits = (0..b).all(|i| {
            let k = sfumato_shaders::attention_ubo::Strides { sb: sk * e, sh: d, sj: e, sd: 1, off: i * sk * e };
            sfumato_shaders::attention_ubo::kv_layout(heads, sk, (d, k), (d, k), blocks).is_some()
        });
        prop_assert!(!cpu_adapter || !fits || ks == vec!["attention_ubo"; b], "ran {:?}", ks);
    }
}

/// A chain after a kernel that cannot fuse (concat) writes over that kernel's output in place:
/// the values match, and the plan says so.
#[test]
fn elementwise_in_place_over_a_dead_value() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [3, 5]);
    let b = g.input("b", DType::F32, [2, 5]);
    let bias = g.constant(Tensor::random(DType::F32, [5], 3)).unwrap();
    let c = g.concat(&[a, b], 0).unwrap();
    let y = g.add_(c, bias).unwrap();
    let y = g.unary(UnaryOp::Tanh, y).unwrap();
    let y = g.mul(y, c).unwrap();
    g.set_outputs(&[y]).unwrap();
    let p = sfumato_core::plan::plan(&g, &Default::default());
    let ew = p
        .groups
        .iter()
        .find(|gr| gr.kind == sfumato_core::plan::GroupKind::Elementwise)
        .unwrap();
    assert_eq!(ew.inplace, Some(c));
    let inputs = [
        Tensor::random(DType::F32, [3, 5], 1),
        Tensor::random(DType::F32, [2, 5], 2),
    ];
    assert!(check(&g, &inputs, 1e-6).unwrap_or_else(|e| panic!("{e}")) <= 3);
}

/// A BERT-base attention (12 heads of 64, 128 queries and keys, additive mask with -inf and
/// -10000 entries): enough rows for four query rows per invocation.
#[test]
fn attention_with_four_rows_per_invocation() {
    let (b, heads, s, d) = (1usize, 12usize, 128usize, 64usize);
    let mask: Vec<f64> = (0..s)
        .map(|j| match j % 7 {
            0 => f64::NEG_INFINITY,
            3 => -10000.0,
            _ => 0.0,
        })
        .collect();
    let mask = Tensor::from_f64(DType::F32, [b, 1, 1, s], &mask);
    let (g, inputs) = attention_graph([b, heads, s, s, d], Some(0.125), Some(mask), false, 11);
    let n = check(&g, &inputs, 1e-5).unwrap();
    assert!(n == 0 || n == 1, "attention took {n} kernels");
}
