//! llvmpipe's loop limiter (`sfumato_shaders::loops`): every kernel with a loop whose trip count
//! grows with the shape, run on both sides of its boundary. Just under the budget the kernel the
//! generator counted runs and matches the CPU reference (were the count too low, llvmpipe would
//! cut the invocation short there and the result would be wrong); just over it another kernel
//! that fits runs, or the device refuses with an error naming the loop budget. Never a wrong
//! answer. On an adapter with no budget (a real GPU) both sides simply run.
//!
//! Also: the YOLOv8s convs that came out wrong, wide real-model shapes against the reference,
//! a 1x1 conv too wide for a texture, and f64 values past f32's range.

mod common;

use common::{differential, with_device};
use proptest::prelude::*;
use sfumato_core::op::{Conv2d, ConvTranspose2d, Pool2d, ReduceOp};
use sfumato_core::TargetProfile;
use sfumato_core::{CpuDevice, DType, Device, Graph, Op, Shape, Tensor};
use sfumato_shaders::loops::{lp, store_block, LLVMPIPE_LOOP_BUDGET};
use sfumato_shaders::{lower, LowerOptions, Lowered, MatmulVariant};
use sfumato_wgpu::{DeviceOptions, Tuning, WgpuDevice, DEFAULT_TUNE_CANDIDATES};

/// The device's loop budget (`None`: no adapter, or one without a limit).
fn budget() -> Option<u64> {
    with_device(|d| d.adapter().loop_budget).flatten()
}

/// The budget the boundary shapes are computed for: the device's, or llvmpipe's where the
/// adapter has none (both sides then just run).
fn target() -> u64 {
    budget().unwrap_or(LLVMPIPE_LOOP_BUDGET)
}

/// Run `g` on wgpu, fused (the default) or not, and return the kernels dispatched, or the error.
fn run(g: &Graph, inputs: &[Tensor], fusion: bool) -> Option<Result<Vec<String>, String>> {
    with_device(|d| {
        d.set_fusion(fusion);
        let r = d.run(g, inputs);
        d.set_fusion(true);
        r.map(|o| o.profile.entries.iter().map(|e| e.kernel.clone()).collect())
            .map_err(|e| e.to_string())
    })
}

/// Under the budget: matches the reference, fused and unfused.
fn runs_right(what: &str, g: &Graph, inputs: &[Tensor], atol: f64) {
    for fusion in [true, false] {
        with_device(|d| d.set_fusion(fusion));
        let r = differential(g, inputs, atol);
        with_device(|d| d.set_fusion(true));
        if let Err(e) = r {
            panic!("{what} (fusion {fusion}): {e}");
        }
    }
}

/// Over the budget: matches the reference, or is refused with an error that names the loop
/// budget (never a wrong answer). Returns whether it was refused.
fn right_or_refused(what: &str, g: &Graph, inputs: &[Tensor], atol: f64) -> bool {
    let Some(r) = run(g, inputs, true) else {
        return false;
    };
    match r {
        Ok(_) => {
            runs_right(what, g, inputs, atol);
            false
        }
        Err(e) => {
            assert!(
                e.contains("loop budget") || e.contains("loop trips"),
                "{what}: refused for another reason: {e}"
            );
            assert!(
                budget().is_some(),
                "{what}: refused on an adapter without a budget: {e}"
            );
            true
        }
    }
}

/// `t` with its last `n` elements set to `v`: the elements a loop cut short would skip, made to
/// matter (the loops run in order, so a cut loses the end).
fn poke_last(t: Tensor, n: usize, v: f32) -> Tensor {
    let mut x = t.to_f32_vec();
    let len = x.len();
    for e in &mut x[len.saturating_sub(n)..] {
        *e = v;
    }
    Tensor::from_f32(t.dims().to_vec(), x).unwrap()
}

fn conv_graph(c: usize, o: usize, hw: usize, k: usize, groups: usize) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, c, hw, hw]);
    let w = g.input("w", DType::F32, [o, c / groups, k, k]);
    let b = g.input("b", DType::F32, [o]);
    let conv = Conv2d {
        padding: [k / 2; 4],
        groups,
        ..Default::default()
    };
    let y = g.conv2d(x, w, Some(b), conv).unwrap();
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    let inputs = vec![
        poke_last(Tensor::random(DType::F32, [1, c, hw, hw], 1), hw * hw, 30.0),
        Tensor::random(DType::F32, [o, c / groups, k, k], 2),
        Tensor::random(DType::F32, [o], 3),
    ];
    (g, inputs)
}

/// The bisected YOLOv8s conv: 3x3 over 375 channels of a 1x1 map (wrong on lavapipe before: only
/// row 0 of each register block was written), and 374 beside it.
#[test]
fn yolo_conv_375_channels() {
    for c in [374, 375] {
        let (g, inputs) = conv_graph(c, 2, 1, 3, 1);
        runs_right(
            &format!("conv 3x3 over {c} channels"),
            &g,
            &inputs,
            1e-5 * c as f64,
        );
    }
}

/// YOLOv8s's 20x20 level: a 3x3 conv of 512 channels.
#[test]
fn conv_512_channels_at_20x20() {
    let (g, inputs) = conv_graph(512, 32, 20, 3, 1);
    runs_right("conv 3x3 512 -> 32 at 20x20", &g, &inputs, 1e-5 * 4608.0);
}

/// conv2d_gemm: one loop over k = (channel, tap), then the 16 x 16 store block (3,594 channels
/// of a 3x3 kernel under llvmpipe's budget).
#[test]
fn conv2d_gemm_boundary() {
    let t = target();
    let trips = |c: u64| lp(9 * c) + store_block(16, 4, 0);
    let c = (1..).find(|&c| trips(c + 1) >= t).unwrap() as usize;
    let (g, inputs) = conv_graph(c, 2, 1, 3, 1);
    runs_right(
        &format!("conv2d_gemm over {c} channels"),
        &g,
        &inputs,
        1e-5 * c as f64,
    );
    let (g, inputs) = conv_graph(c + 1, 2, 1, 3, 1);
    right_or_refused("conv2d_gemm one channel over", &g, &inputs, 1e-5 * c as f64);
}

/// The grouped (direct) conv: per input channel of a group `1 + 2 + 2` trips for a 1x1 kernel.
#[test]
fn grouped_conv_boundary() {
    let t = target();
    let trips = |c: u64| lp(c) + c * lp(1) + c * lp(1) + lp(4) + 4 * lp(4);
    let c = (1..).find(|&c| trips(c + 1) >= t).unwrap() as usize;
    let (g, inputs) = conv_graph(2 * c, 4, 1, 1, 2);
    runs_right(
        &format!("grouped conv, {c} channels a group"),
        &g,
        &inputs,
        1e-5 * c as f64,
    );
    let (g, inputs) = conv_graph(2 * (c + 1), 4, 1, 1, 2);
    right_or_refused(
        "grouped conv one channel over",
        &g,
        &inputs,
        1e-5 * c as f64,
    );
}

#[test]
fn conv_transpose_boundary() {
    let t = target();
    let trips = |c: u64| lp(c) + c * lp(1) + c * lp(1);
    let c = (1..).find(|&c| trips(c + 1) >= t).unwrap() as usize;
    for (ch, over) in [(c, false), (c + 1, true)] {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, ch, 1, 2]);
        let w = g.input("w", DType::F32, [ch, 2, 1, 1]);
        let y = g
            .conv_transpose2d(x, w, None, ConvTranspose2d::default())
            .unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = vec![
            poke_last(Tensor::random(DType::F32, [1, ch, 1, 2], 1), 2, 30.0),
            Tensor::random(DType::F32, [ch, 2, 1, 1], 2),
        ];
        let what = format!("conv_transpose2d over {ch} channels");
        if over {
            right_or_refused(&what, &g, &inputs, 1e-5 * ch as f64);
        } else {
            runs_right(&what, &g, &inputs, 1e-5 * ch as f64);
        }
    }
}

fn matmul_graph(m: usize, k: usize, n: usize) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [m, k]);
    let b = g.input("b", DType::F32, [k, n]);
    let y = g.matmul(a, b).unwrap();
    g.set_outputs(&[y]).unwrap();
    let inputs = vec![
        Tensor::random(DType::F32, [m, k], 1),
        poke_last(Tensor::random(DType::F32, [k, n], 2), n, 30.0),
    ];
    (g, inputs)
}

/// Every matmul variant forced at the longest K its count allows (it runs, and matches), then
/// at one more (another variant that fits runs instead, and matches). A variant that supports no
/// K that long (the `ubo` ones: A's rows must fit a uniform block) is skipped.
#[test]
fn every_matmul_variant_at_its_boundary() {
    let t = target();
    let (m, n) = (8, 16);
    for v in MatmulVariant::all() {
        let prob = |k: usize| sfumato_shaders::MatmulProblem {
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            has_bias: false,
            a_sm: k,
            a_sk: 1,
            b_sk: n,
            b_sn: 1,
            c_sm: 0,
            c_sn: 0,
            offsets: vec![[0, 0, 0]],
            b_const: false,
            staged_conv: false,
        };
        let Some(k) = (4..200_000usize)
            .step_by(4)
            .take_while(|&k| v.loop_trips(&prob(k), 0) < t)
            .last()
        else {
            continue;
        };
        if !v.supports(&prob(k)) || v.loop_trips(&prob(k + 4), 0) < t {
            continue;
        }
        for (kk, over) in [(k, false), (k + 4, true)] {
            let (g, inputs) = matmul_graph(m, kk, n);
            let ran = common::run_with_variant(&g, &inputs, Some(v));
            let Some(ran) = ran else { return };
            let got = match ran {
                // Over: no variant left that fits (K past even the one-output kernel's).
                Err(e) if over && e.to_string().contains("loop budget") => continue,
                r => r.unwrap_or_else(|e| panic!("{} at K = {kk}: {e}", v.name())),
            };
            let want = CpuDevice.run(&g, &inputs).unwrap();
            assert!(
                got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * kk as f64),
                "{} at K = {kk}: max diff {:?}",
                v.name(),
                got.outputs[0].max_diff(&want.outputs[0])
            );
            let used = got.profile.entries.iter().any(|e| e.kernel == v.name());
            if !over {
                assert!(
                    used,
                    "{} at K = {kk} (under its budget) did not run",
                    v.name()
                );
            } else if budget().is_some() {
                assert!(!used, "{} at K = {kk} (over the budget) ran", v.name());
            }
        }
    }
}

/// The one-output matmul's loop over K is the longest any matmul computes on llvmpipe; one more
/// k is refused.
#[test]
fn the_longest_matmul() {
    let t = target();
    let k = (1..).find(|&k| lp(k + 1) >= t).unwrap() as usize;
    let (g, inputs) = matmul_graph(2, k, 3);
    runs_right(&format!("matmul K = {k}"), &g, &inputs, 1e-5 * k as f64);
    let (g, inputs) = matmul_graph(2, k + 1, 3);
    let refused = right_or_refused("matmul K one over", &g, &inputs, 1e-5 * k as f64);
    assert_eq!(refused, budget().is_some());
}

/// Whether the generator lowers `op` over `ins` within the budget `t`, and the kernel's name.
fn lowers(op: &Op, ins: &[(DType, Shape)], t: u64) -> Option<String> {
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let opts = LowerOptions {
        target: TargetProfile {
            loop_budget: Some(t),
            ..TargetProfile::cpu_adapter()
        },
        ..Default::default()
    };
    match lower(op, &ins_ref, &outs_ref, &opts) {
        Ok(Lowered::Kernels(ks)) => Some(ks[0].name.clone()),
        Ok(_) => None,
        Err(e) => {
            assert!(e.to_string().contains("loop trips"), "{e}");
            None
        }
    }
}

/// The longest `n` (a power-of-two search, then bisection) for which `make(n)` lowers within
/// the budget.
fn longest(make: impl Fn(usize) -> (Op, Vec<(DType, Shape)>), t: u64) -> usize {
    let ok = |n: usize| {
        let (op, ins) = make(n);
        lowers(&op, &ins, t).is_some()
    };
    let mut hi = 1usize;
    while ok(hi) {
        hi *= 2;
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if ok(mid) {
            lo = mid
        } else {
            hi = mid
        }
    }
    lo
}

/// Row kernels: softmax and layer norm rows and reductions take one invocation a row up to 4,096
/// elements, then a workgroup a row (64, then 256 invocations, each over every 64th or 256th
/// element), up to the longest row whose invocations stay under the budget (found from the
/// generator), which runs; one element more is refused. Also the switch itself (4,096 and 4,097)
/// and GPT-2's vocabulary (50,257). ArgMax stays one invocation a row (`L + 1` loop ends).
#[test]
fn row_kernels_boundary() {
    let t = target();
    let rows = |n: usize| {
        (
            Op::Softmax { axis: 1 },
            vec![(DType::F32, Shape(vec![1, n]))],
        )
    };
    let norm = |n: usize| {
        (
            Op::LayerNorm {
                axis: 1,
                epsilon: 1e-5,
            },
            vec![
                (DType::F32, Shape(vec![1, n])),
                (DType::F32, Shape(vec![n])),
            ],
        )
    };
    let sum = |n: usize| {
        (
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![0],
                keepdim: false,
            },
            vec![(DType::F32, Shape(vec![n]))],
        )
    };
    let arg = |n: usize| {
        (
            Op::ArgReduce {
                max: true,
                axis: 0,
                keepdim: false,
                last: false,
            },
            vec![(DType::F32, Shape(vec![n]))],
        )
    };
    let (ls, ln) = (longest(rows, t), longest(norm, t));
    let lsum = longest(sum, t);
    let larg = longest(arg, t);
    assert_eq!(lowers(&rows(4096).0, &rows(4096).1, t).unwrap(), "softmax");
    assert_eq!(
        lowers(&rows(4097).0, &rows(4097).1, t).unwrap(),
        "softmax_wg"
    );
    assert!(
        ls > 1_000_000 && ln > 1_000_000 && lsum > 1_000_000,
        "{ls} {ln} {lsum}"
    );
    for (len, over) in [
        (4096, false),
        (4097, false),
        (50_257, false),
        (ls.min(ln), false),
        (ls.max(ln) + 1, true),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [2, len]);
        let y = g.softmax(x, -1).unwrap();
        let s = g.input("s", DType::F32, [len]);
        let z = g.layer_norm(x, s, None, -1, 1e-5).unwrap();
        g.set_outputs(&[y, z]).unwrap();
        let inputs = vec![
            poke_last(Tensor::random(DType::F32, [2, len], 1), 1, 8.0),
            Tensor::random(DType::F32, [len], 2),
        ];
        let what = format!("softmax and layer norm over rows of {len}");
        if over {
            assert!(right_or_refused(&what, &g, &inputs, 1e-7) == budget().is_some());
        } else {
            runs_right(&what, &g, &inputs, 1e-7);
        }
    }
    for (count, over) in [
        (4096, false),
        (100_000, false),
        (lsum, false),
        (lsum + 1, true),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [count]);
        let y = g.reduce(ReduceOp::Sum, x, &[], false).unwrap();
        let m = g.reduce(ReduceOp::Max, x, &[], false).unwrap();
        g.set_outputs(&[y, m]).unwrap();
        let inputs = vec![poke_last(Tensor::random(DType::F32, [count], 1), 1, 1e4)];
        let what = format!("sum and max of {count}");
        // f32 sums of a million terms in another order: a few ulp of the sum per term.
        let atol = 1e-6 * count as f64;
        if over {
            assert!(right_or_refused(&what, &g, &inputs, atol) == budget().is_some());
        } else {
            runs_right(&what, &g, &inputs, atol);
        }
    }
    for (len, over) in [(larg, false), (larg + 1, true)] {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [len]);
        let y = g.arg_reduce(x, true, 0, false, false).unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = vec![poke_last(Tensor::random(DType::F32, [len], 1), 1, 100.0)];
        let what = format!("argmax of {len}");
        if over {
            right_or_refused(&what, &g, &inputs, 0.0);
        } else {
            runs_right(&what, &g, &inputs, 0.0);
        }
    }
}

/// A pool's window: `(KH + 1) + KH (KW + 1)` trips.
#[test]
fn pool_window_boundary() {
    let t = target();
    let kh = 255usize;
    let kw = (1..)
        .find(|&kw| lp(kh as u64) + kh as u64 * lp(kw + 1) >= t)
        .unwrap() as usize;
    for (w, over) in [(kw, false), (kw + 1, true)] {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, 1, kh, w]);
        let p = Pool2d {
            kernel: [kh, w],
            ..Pool2d::new(1, 1, 0)
        };
        let y = g.max_pool2d(x, p).unwrap();
        let z = g.avg_pool2d(x, p).unwrap();
        g.set_outputs(&[y, z]).unwrap();
        let inputs = vec![poke_last(
            Tensor::random(DType::F32, [1, 1, kh, w], 1),
            1,
            1e4,
        )];
        let what = format!("max and average pools {kh}x{w}");
        if over {
            right_or_refused(&what, &g, &inputs, 1e-4);
        } else {
            runs_right(&what, &g, &inputs, 1e-4);
        }
    }
}

/// softmax(q k^T / 4) v for one head of `sq` queries over `sk` keys of dim `d`; K is an input
/// `[1, 1, d, sk]`, or with `k_rows` one of `[1, 1, sk, d]` transposed by a view.
fn attention_graph(sq: usize, sk: usize, d: usize, k_rows: bool) -> Graph {
    let mut g = Graph::new();
    let q = g.input("q", DType::F32, [1, 1, sq, d]);
    let kt = if k_rows {
        let k = g.input("k", DType::F32, [1, 1, sk, d]);
        g.transpose(k, &[0, 1, 3, 2]).unwrap()
    } else {
        g.input("kt", DType::F32, [1, 1, d, sk])
    };
    let v = g.input("v", DType::F32, [1, 1, sk, d]);
    let s = g.matmul(q, kt).unwrap();
    let c = g.constant(Tensor::scalar_f32(0.25)).unwrap();
    let s = g.mul(s, c).unwrap();
    let p = g.softmax(s, -1).unwrap();
    let y = g.matmul(p, v).unwrap();
    g.set_outputs(&[y]).unwrap();
    g
}

/// Attention over a long key set: the fused kernel's loops are over the keys and the stores (one
/// query row per invocation, its other loops written out).
#[test]
fn attention_over_long_keys() {
    let t = target();
    // 256 query rows: the row kernel (fewer rows over this many keys split the keys over a
    // workgroup, `attention_decode`, whose key loop is 32 times shorter).
    let (sq, d) = (256usize, 8usize);
    let sk = (1..)
        .find(|&s| lp(s + 1) + lp(1) + lp(d as u64) >= t)
        .unwrap() as usize;
    for (sk, over) in [(sk, false), (sk + 1, true)] {
        let g = attention_graph(sq, sk, d, false);
        // The last key scores high and its value is large: a cut-short key loop misses it.
        let inputs = vec![
            Tensor::from_f32(vec![1, 1, sq, d], vec![1.0; sq * d]).unwrap(),
            {
                let mut kt = Tensor::random(DType::F32, [1, 1, d, sk], 2).to_f32_vec();
                for i in 0..d {
                    kt[i * sk + sk - 1] = 2.0;
                }
                Tensor::from_f32(vec![1, 1, d, sk], kt).unwrap()
            },
            poke_last(Tensor::random(DType::F32, [1, 1, sk, d], 3), d, 1e3),
        ];
        let what = format!("attention over {sk} keys");
        if over {
            right_or_refused(&what, &g, &inputs, 1e-4);
        } else {
            // Fused: one attention kernel; unfused, softmax's row is over its budget there.
            let r = run(&g, &inputs, true);
            if let Some(r) = r {
                let ks = r.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    ks.iter().any(|k| k.starts_with("attention")),
                    "{what}: {ks:?}"
                );
                differential(&g, &inputs, 1e-4).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

/// Attention over 12,000 keys of head dim 8 with K stored [keys, dim]: K and V fit uniform
/// blocks, but `attention_ubo` would be over the budget (`shaders/tests/fusion.rs`), so the
/// storage-buffer `attention` runs, and matches.
#[test]
fn attention_falls_back_from_uniform_blocks() {
    let (sq, sk, d) = (256usize, 12_000usize, 8usize);
    let g = attention_graph(sq, sk, d, true);
    let inputs = vec![
        Tensor::random(DType::F32, [1, 1, sq, d], 1),
        poke_last(Tensor::random(DType::F32, [1, 1, sk, d], 2), d, 3.0),
        poke_last(Tensor::random(DType::F32, [1, 1, sk, d], 3), d, 1e3),
    ];
    if let Some(r) = run(&g, &inputs, true) {
        let ks = r.unwrap();
        if budget().is_some() {
            assert!(ks.iter().any(|k| k == "attention"), "{ks:?}");
        }
    }
    runs_right("attention over 12,000 keys", &g, &inputs, 1e-4);
}

/// The `ubo` matmul (A's rows in 64 KiB uniform blocks: K at most 16,384) and `conv2d_ubo`
/// (K at most 1,024) cannot reach llvmpipe's budget: their longest K stays under it with every
/// store's epilogue costing a view walk of rank 8.
#[test]
fn ubo_kernels_cannot_reach_the_budget() {
    for v in MatmulVariant::all() {
        if !matches!(v, MatmulVariant::Ubo { .. }) {
            continue;
        }
        let p = sfumato_shaders::MatmulProblem {
            m: 1,
            n: 4,
            k: 16_384,
            alpha: 1.0,
            beta: 0.0,
            has_bias: false,
            a_sm: 16_384,
            a_sk: 1,
            b_sk: 4,
            b_sn: 1,
            c_sm: 0,
            c_sn: 0,
            offsets: vec![[0, 0, 0]],
            b_const: false,
            staged_conv: false,
        };
        let trips = v.loop_trips(&p, sfumato_shaders::loops::rank_walk(8));
        assert!(trips < LLVMPIPE_LOOP_BUDGET, "{}: {trips}", v.name());
        let longer = sfumato_shaders::MatmulProblem {
            k: 16_388,
            a_sm: 16_388,
            ..p
        };
        assert!(!v.supports(&longer), "{} takes K past a block", v.name());
    }
}

/// A 1x1 conv over 20,000 channels: its matmul's K is over the largest texture side, so no
/// variant reads B from a texture, and the autotuner (on here) must not make one (wgpu panicked
/// in `create_texture`: "Dimension Y value 20000 exceeds the limit of 16384").
#[test]
fn pointwise_conv_over_20000_channels() {
    // (`test_device` says loudly when there is no adapter, and fails under SFUMATO_REQUIRE_GPU.)
    if sfumato_wgpu::test_device().is_none() {
        return;
    }
    let mut d = WgpuDevice::new(DeviceOptions {
        tuning: Tuning::Measure {
            candidates: DEFAULT_TUNE_CANDIDATES,
        },
        tune_store: None,
        ..DeviceOptions::from_env()
    })
    .unwrap();
    let (g, inputs) = conv_graph(20_000, 4, 2, 1, 1);
    let got = d.run(&g, &inputs).unwrap();
    let want = CpuDevice.run(&g, &inputs).unwrap();
    assert!(
        got.outputs[0].all_close(&want.outputs[0], 1e-4, 1e-5 * 20_000.0),
        "max diff {:?}",
        got.outputs[0].max_diff(&want.outputs[0])
    );
}

/// f64 tensors live as f32 on the device: a value past f32's range is refused with an error that
/// names the input or the constant (it became inf before).
#[test]
fn f64_past_f32_range_is_refused() {
    let mut g = Graph::new();
    let a = g.input("big_a", DType::F64, [2]);
    let b = g.input("b", DType::F64, [2]);
    let y = g.add_(a, b).unwrap();
    g.set_outputs(&[y]).unwrap();
    let big = Tensor::from_f64(DType::F64, [2], &[1e198, 1.0]);
    let small = Tensor::from_f64(DType::F64, [2], &[1.0, 2.0]);
    let Some(r) = with_device(|d| d.run(&g, &[big.clone(), small.clone()])) else {
        return;
    };
    let e = r
        .expect_err("1e198 as f32 is inf: it must be refused")
        .to_string();
    assert!(e.contains("big_a") && e.contains("f32 range"), "{e}");
    // In range: runs, to f32's precision.
    let ok = Tensor::from_f64(DType::F64, [2], &[1e30, -3.5]);
    differential(&g, &[ok, small.clone()], 0.0).unwrap();
    // A constant past the range names the constant.
    let mut g = Graph::new();
    let b = g.input("b", DType::F64, [2]);
    let c = g.constant(big).unwrap();
    let y = g.mul(b, c).unwrap();
    g.set_outputs(&[y]).unwrap();
    let e = with_device(|d| d.run(&g, &[small]))
        .unwrap()
        .expect_err("a constant past f32's range must be refused")
        .to_string();
    assert!(e.contains("f32 range"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 10, ..ProptestConfig::default() })]

    /// Real models' widths: 3x3 and 1x1 convs over 64 to 2,048 channels (K to 18,432) on 7x7 to
    /// 20x20 maps, and matmuls with K to 8,192, against the reference.
    #[test]
    fn wide_real_model_shapes(c in prop_oneof![Just(64usize), Just(375), Just(512), Just(1024), Just(2048)],
                              hw in prop_oneof![Just(7usize), Just(14), Just(20)], k in prop_oneof![Just(1usize), Just(3)],
                              mk in prop_oneof![Just(768usize), Just(3072), Just(4608), Just(8192)], seed in any::<u64>()) {
        let o = 8;
        let (g, mut inputs) = conv_graph(c, o, hw, k, 1);
        inputs[0] = Tensor::random(DType::F32, [1, c, hw, hw], seed);
        runs_right(&format!("conv {k}x{k} {c} -> {o} at {hw}x{hw}"), &g, &inputs, 1e-5 * (c * k * k) as f64);
        let (g, mut inputs) = matmul_graph(16, mk, 24);
        inputs[0] = Tensor::random(DType::F32, [16, mk], seed);
        runs_right(&format!("matmul 16x{mk}x24"), &g, &inputs, 1e-5 * mk as f64);
    }
}
