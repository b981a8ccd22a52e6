//! The graph passes: for each pass, a hand-built graph it must change and one it must leave
//! alone; then proptest on random small graphs (conv + batch-norm + relu chains, matmul and
//! gemm with constant subgraphs, duplicated subexpressions, dead branches) checking that
//! `optimize` keeps what the graph computes on the CPU reference.

use proptest::prelude::*;
use sfumato_core::op::{BinaryOp, Conv2d, Gemm, ReduceOp, UnaryOp};
use sfumato_core::passes::{
    eliminate_common_subexpressions, eliminate_dead_code, fold_batch_norm, fold_constants,
    optimize, PassStats, MAX_FOLD_ELEMENTS,
};
use sfumato_core::{CpuDevice, DType, Device, Error, Graph, Op, Tensor, ValueId};
use std::collections::HashSet;

// ---- helpers ----

fn konst(g: &mut Graph, name: &str, t: Tensor) -> ValueId {
    g.add_named(name, Op::Constant(t), &[]).unwrap()[0]
}

fn rand_const(g: &mut Graph, name: &str, dims: &[usize], seed: u64) -> ValueId {
    konst(g, name, Tensor::random(DType::F32, dims.to_vec(), seed))
}

/// A tensor with every element `|x| + 0.1` (a valid variance).
fn positive(t: Tensor) -> Tensor {
    let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x.abs() + 0.1).collect();
    Tensor::from_f64(t.dtype(), t.shape().clone(), &v)
}

/// Constant scale, bias, mean and var of `c` channels, named after `name`.
fn bn_params(g: &mut Graph, name: &str, c: usize, seed: u64) -> [ValueId; 4] {
    let scale = rand_const(g, &format!("{name}.scale"), &[c], seed);
    let bias = rand_const(g, &format!("{name}.bias"), &[c], seed + 1);
    let mean = rand_const(g, &format!("{name}.mean"), &[c], seed + 2);
    let var = konst(
        g,
        &format!("{name}.var"),
        positive(Tensor::random(DType::F32, [c], seed + 3)),
    );
    [scale, bias, mean, var]
}

fn bn(g: &mut Graph, name: &str, x: ValueId, c: usize, seed: u64) -> ValueId {
    let [s, b, m, v] = bn_params(g, name, c, seed);
    g.add_named(name, Op::BatchNorm { epsilon: 0.1 }, &[x, s, b, m, v])
        .unwrap()[0]
}

/// How many nodes of `g` have the op named `op`.
fn count(g: &Graph, op: &str) -> usize {
    g.nodes().iter().filter(|n| n.op.name() == op).count()
}

fn node_named<'g>(g: &'g Graph, name: &str) -> Option<&'g Op> {
    g.nodes().iter().find(|n| n.name == name).map(|n| &n.op)
}

fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| Tensor::random(g.dtype(v), g.shape(v).clone(), seed + i as u64))
        .collect()
}

fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    CpuDevice.run(g, inputs).unwrap().outputs
}

/// Whether `got` matches `want` to 1e-4 of the larger of 1 and `want`'s largest magnitude
/// (folds reorder f32 arithmetic, and sums may cancel).
fn close(got: &Tensor, want: &Tensor) -> bool {
    let scale = want.to_f64_vec().iter().fold(1.0f64, |m, x| m.max(x.abs()));
    got.all_close(want, 1e-4, 1e-4 * scale)
}

/// `b` computes what `a` does on random inputs, and keeps its inputs and outputs.
fn assert_same_function(a: &Graph, b: &Graph, seed: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.inputs().len(), b.inputs().len());
    for (&x, &y) in a.inputs().iter().zip(b.inputs()) {
        let (x, y) = (a.value(x), b.value(y));
        prop_assert_eq!((&x.name, x.dtype, &x.shape), (&y.name, y.dtype, &y.shape));
    }
    prop_assert_eq!(a.outputs().len(), b.outputs().len());
    let ins = inputs_for(a, seed);
    let (want, got) = (run(a, &ins), run(b, &ins));
    for (k, (w, g)) in want.iter().zip(&got).enumerate() {
        prop_assert!(
            close(g, w),
            "output {k}: max diff {:?}\nwant {}\ngot  {}",
            g.max_diff(w),
            w.summary(),
            g.summary()
        );
    }
    Ok(())
}

/// `optimize` keeps the function, names only nodes the original named (bar new constants),
/// and is a fixed point: running it again changes nothing.
fn check_optimize(g: &Graph, seed: u64) -> Result<(Graph, PassStats), TestCaseError> {
    let (opt, stats) = optimize(g).unwrap();
    assert_same_function(g, &opt, seed)?;
    prop_assert_eq!(stats.nodes_before, g.nodes().len());
    prop_assert_eq!(stats.nodes_after, opt.nodes().len());
    let names: HashSet<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
    for n in opt.nodes() {
        prop_assert!(
            matches!(n.op, Op::Constant(_)) || names.contains(n.name.as_str()),
            "node '{}' ({}) has a name the original graph does not have",
            n.name,
            n.op.name()
        );
    }
    let (_, again) = optimize(&opt).unwrap();
    prop_assert_eq!(
        (
            again.constants_folded,
            again.batch_norms_folded,
            again.dead_nodes_removed,
            again.common_subexpressions_merged
        ),
        (0, 0, 0, 0),
        "optimize is not a fixed point: {:?}",
        again
    );
    Ok((opt, stats))
}

fn same(a: &Graph, b: &Graph) {
    assert_same_function(a, b, 7).unwrap();
}

// ---- fold_constants ----

#[test]
fn fold_constants_folds_a_chain() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let a = rand_const(&mut g, "a", &[3], 1);
    let b = rand_const(&mut g, "b", &[3], 2);
    let s = g
        .add_named("sum", Op::Binary(BinaryOp::Add), &[a, b])
        .unwrap()[0];
    let e = g.add_named("exp", Op::Unary(UnaryOp::Exp), &[s]).unwrap()[0];
    let y = g
        .add_named("y", Op::Binary(BinaryOp::Mul), &[x, e])
        .unwrap()[0];
    g.set_outputs(&[y]).unwrap();

    let (f, n) = fold_constants(&g).unwrap();
    assert_eq!(n, 2);
    assert_eq!(count(&f, "Add"), 0);
    assert_eq!(count(&f, "Exp"), 0);
    assert_eq!(count(&f, "Mul"), 1);
    // The folded values keep their names; the constants they read stay until dead code goes.
    assert!(matches!(node_named(&f, "exp"), Some(Op::Constant(_))));
    assert_eq!(count(&f, "Constant"), 4);
    same(&g, &f);
    let (d, dead) = eliminate_dead_code(&f).unwrap();
    assert_eq!(dead, 3);
    assert_eq!(count(&d, "Constant"), 1);
    same(&g, &d);
}

#[test]
fn fold_constants_folds_multi_output_nodes_and_graph_outputs() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4]);
    let c = rand_const(&mut g, "c", &[4], 3);
    let parts = g
        .add_named(
            "split",
            Op::Split {
                axis: 0,
                sizes: vec![1, 3],
            },
            &[c],
        )
        .unwrap();
    let y = g.add_(x, c).unwrap();
    g.set_outputs(&[parts[1], y, parts[0]]).unwrap();
    let (f, n) = fold_constants(&g).unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&f, "Split"), 0);
    assert!(matches!(node_named(&f, "split:1"), Some(Op::Constant(_))));
    assert_eq!(f.value(f.outputs()[0]).name, "split:1");
    assert_eq!(f.value(f.outputs()[2]).name, "split");
    same(&g, &f);
}

#[test]
fn fold_constants_leaves_nodes_reading_inputs() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let c = rand_const(&mut g, "c", &[3], 1);
    let r = g.relu(x).unwrap();
    let y = g.add_(r, c).unwrap();
    g.set_outputs(&[y]).unwrap();
    let (f, n) = fold_constants(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(f.nodes().len(), g.nodes().len());
    assert_eq!(count(&f, "Relu"), 1);
    assert_eq!(count(&f, "Add"), 1);
}

#[test]
fn fold_constants_keeps_a_node_that_fails_to_evaluate() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let table = rand_const(&mut g, "table", &[3, 2], 1);
    let idx = konst(&mut g, "idx", Tensor::from_i64([1], vec![7]).unwrap());
    let row = g
        .add_named("lookup", Op::Gather { axis: 0 }, &[table, idx])
        .unwrap()[0];
    let y = g.add_(row, x).unwrap();
    g.set_outputs(&[y]).unwrap();
    let (f, n) = fold_constants(&g).unwrap();
    assert_eq!(n, 0);
    assert!(matches!(node_named(&f, "lookup"), Some(Op::Gather { .. })));
    let err = CpuDevice.run(&f, &inputs_for(&f, 1)).unwrap_err();
    assert!(
        matches!(&err, Error::Node { node, .. } if node == "lookup"),
        "{err}"
    );
    // optimize does not fail either: the error waits for run time.
    let (o, _) = optimize(&g).unwrap();
    assert_eq!(count(&o, "Gather"), 1);
}

#[test]
fn fold_constants_skips_huge_outputs() {
    // 4097 x 4097 booleans: just over the limit; the inputs are small.
    let side = 4097;
    assert!(side * side > MAX_FOLD_ELEMENTS);
    let mut g = Graph::new();
    let x = g.input("x", DType::Bool, [1]);
    let a = konst(&mut g, "a", Tensor::zeros(DType::U8, [1, side]));
    let b = konst(&mut g, "b", Tensor::zeros(DType::U8, [side, 1]));
    let eq = g.binary(BinaryOp::Eq, a, b).unwrap();
    let y = g.binary(BinaryOp::Eq, eq, x).unwrap();
    g.set_outputs(&[y]).unwrap();
    let (f, n) = fold_constants(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(count(&f, "Equal"), 2);
}

// ---- fold_batch_norm ----

fn conv_bn(bias: bool, groups: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 4, 6, 5]);
    let w = rand_const(&mut g, "w", &[8, 4 / groups, 3, 3], 10);
    let b = bias.then(|| rand_const(&mut g, "b", &[8], 11));
    let c = Conv2d {
        groups,
        ..Conv2d::padded(1, 2)
    };
    let mut ins = vec![x, w];
    ins.extend(b);
    let y = g.add_named("conv", Op::Conv2d(c), &ins).unwrap()[0];
    let z = bn(&mut g, "bn", y, 8, 20);
    let r = g.add_named("act", Op::Unary(UnaryOp::Relu), &[z]).unwrap()[0];
    g.set_outputs(&[r]).unwrap();
    g
}

#[test]
fn fold_batch_norm_into_conv() {
    for (bias, groups) in [(true, 1), (false, 1), (true, 2), (false, 4), (true, 4)] {
        let g = conv_bn(bias, groups);
        let (f, n) = fold_batch_norm(&g).unwrap();
        assert_eq!(n, 1);
        assert_eq!(count(&f, "BatchNorm"), 0);
        assert_eq!(count(&f, "Conv2d"), 1);
        assert!(matches!(node_named(&f, "conv"), Some(Op::Conv2d(c)) if c.groups == groups));
        same(&g, &f);
        let (o, stats) = optimize(&g).unwrap();
        assert_eq!(stats.batch_norms_folded, 1);
        // x -> conv(w', b') -> relu: the old weight, bias and BN parameters are gone.
        assert_eq!(o.nodes().len(), 4);
        same(&g, &o);
    }
}

#[test]
fn fold_batch_norm_needs_a_sole_reader_and_constants() {
    // The conv's output is read by a second node.
    let mut g = conv_bn(true, 1);
    let conv_out = g.nodes().iter().find(|n| n.name == "conv").unwrap().outputs[0];
    let extra = g.relu(conv_out).unwrap();
    let outs = [g.outputs()[0], extra];
    g.set_outputs(&outs).unwrap();
    assert_eq!(fold_batch_norm(&g).unwrap().1, 0);

    // The conv's output is a graph output.
    let mut g = conv_bn(true, 1);
    let outs = [g.outputs()[0], conv_out];
    g.set_outputs(&outs).unwrap();
    assert_eq!(fold_batch_norm(&g).unwrap().1, 0);

    // A BN parameter comes from a graph input.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, 2, 3, 3]);
    let mean = g.input("mean", DType::F32, [2]);
    let w = rand_const(&mut g, "w", &[2, 2, 1, 1], 1);
    let y = g.conv2d(x, w, None, Conv2d::default()).unwrap();
    let [s, b, _, v] = bn_params(&mut g, "bn", 2, 5);
    let z = g.batch_norm(y, s, b, mean, v, 1e-5).unwrap();
    g.set_outputs(&[z]).unwrap();
    let (f, n) = fold_batch_norm(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(count(&f, "BatchNorm"), 1);

    // The weight is not a constant.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, 2, 3, 3]);
    let w = g.input("w", DType::F32, [2, 2, 1, 1]);
    let y = g.conv2d(x, w, None, Conv2d::default()).unwrap();
    let z = bn(&mut g, "bn", y, 2, 5);
    g.set_outputs(&[z]).unwrap();
    assert_eq!(fold_batch_norm(&g).unwrap().1, 0);

    // A zero variance with a zero epsilon: no finite factor, no fold.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, 2, 3, 3]);
    let w = rand_const(&mut g, "w", &[2, 2, 1, 1], 1);
    let y = g.conv2d(x, w, None, Conv2d::default()).unwrap();
    let [s, b, m, _] = bn_params(&mut g, "bn", 2, 5);
    let v = konst(&mut g, "var", Tensor::zeros(DType::F32, [2]));
    let z = g.batch_norm(y, s, b, m, v, 0.0).unwrap();
    g.set_outputs(&[z]).unwrap();
    assert_eq!(fold_batch_norm(&g).unwrap().1, 0);
}

fn gemm_bn(trans_b: bool, c_dims: Option<&[usize]>, alpha: f32, beta: f32) -> Graph {
    let (m, k, n) = (3, 4, 5);
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [m, k]);
    let b_dims = if trans_b { [n, k] } else { [k, n] };
    let b = rand_const(&mut g, "B", &b_dims, 30);
    let c = c_dims.map(|d| rand_const(&mut g, "C", d, 31));
    let gm = Gemm {
        alpha,
        beta,
        trans_a: false,
        trans_b,
    };
    let y = g.gemm(x, b, c, gm).unwrap();
    let z = bn(&mut g, "bn", y, n, 40);
    g.set_outputs(&[z]).unwrap();
    g
}

#[test]
fn fold_batch_norm_into_gemm() {
    let c_shapes: [Option<&[usize]>; 7] = [
        None,
        Some(&[5]),
        Some(&[1, 5]),
        Some(&[3, 5]),
        Some(&[3, 1]),
        Some(&[]),
        Some(&[1]),
    ];
    for trans_b in [false, true] {
        for c in c_shapes {
            for (alpha, beta) in [(1.0, 1.0), (0.5, -2.0), (1.5, 0.0)] {
                let g = gemm_bn(trans_b, c, alpha, beta);
                let (f, n) = fold_batch_norm(&g).unwrap();
                assert_eq!(n, 1, "trans_b {trans_b} C {c:?}");
                assert_eq!(count(&f, "BatchNorm"), 0);
                assert_eq!(count(&f, "Gemm"), 1);
                same(&g, &f);
            }
        }
    }
}

#[test]
fn fold_batch_norm_into_matmul_makes_a_gemm() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [3, 4]);
    let w = rand_const(&mut g, "w", &[4, 5], 1);
    let y = g.add_named("fc", Op::MatMul, &[x, w]).unwrap()[0];
    let z = bn(&mut g, "bn", y, 5, 2);
    g.set_outputs(&[z]).unwrap();
    let (f, n) = fold_batch_norm(&g).unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&f, "MatMul"), 0);
    assert_eq!(count(&f, "BatchNorm"), 0);
    assert!(matches!(node_named(&f, "fc"), Some(Op::Gemm(_))));
    same(&g, &f);
}

#[test]
fn fold_batch_norm_leaves_batched_matmul_and_other_producers() {
    // A batched MatMul's BatchNorm normalises axis 1, not the matmul's columns.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3, 4]);
    let w = rand_const(&mut g, "w", &[4, 3], 1);
    let y = g.matmul(x, w).unwrap();
    let z = bn(&mut g, "bn", y, 3, 2);
    g.set_outputs(&[z]).unwrap();
    assert_eq!(fold_batch_norm(&g).unwrap().1, 0);
    // BatchNorm after a Relu.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let r = g.relu(x).unwrap();
    let z = bn(&mut g, "bn", r, 3, 2);
    g.set_outputs(&[z]).unwrap();
    let (f, n) = fold_batch_norm(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(count(&f, "BatchNorm"), 1);
}

#[test]
fn fold_batch_norm_in_f16() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F16, [1, 2, 4, 4]);
    let w = konst(&mut g, "w", Tensor::random(DType::F16, [3, 2, 3, 3], 1));
    let y = g.conv2d(x, w, None, Conv2d::padded(1, 1)).unwrap();
    let f16 = |t: Tensor| Tensor::from_f64(DType::F16, t.shape().clone(), &t.to_f64_vec());
    let s = konst(&mut g, "s", f16(Tensor::random(DType::F32, [3], 2)));
    let b = konst(&mut g, "b", f16(Tensor::random(DType::F32, [3], 3)));
    let m = konst(&mut g, "m", f16(Tensor::random(DType::F32, [3], 4)));
    let v = konst(
        &mut g,
        "v",
        f16(positive(Tensor::random(DType::F32, [3], 5))),
    );
    let z = g.batch_norm(y, s, b, m, v, 1e-3).unwrap();
    g.set_outputs(&[z]).unwrap();
    let (f, n) = fold_batch_norm(&g).unwrap();
    assert_eq!(n, 1);
    let ins = inputs_for(&g, 3);
    let (want, got) = (run(&g, &ins), run(&f, &ins));
    assert_eq!(got[0].dtype(), DType::F16);
    assert!(
        got[0].all_close(&want[0], 1e-2, 1e-2),
        "{:?}",
        got[0].max_diff(&want[0])
    );
}

// ---- eliminate_dead_code ----

#[test]
fn eliminate_dead_code_drops_unused_branches() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let unused_input = g.input("unused", DType::F32, [1]);
    let c = rand_const(&mut g, "c", &[3], 1);
    let dead1 = g.add_(x, c).unwrap();
    let _dead2 = g.gelu(dead1).unwrap();
    let _dead3 = g.relu(unused_input).unwrap();
    let live = g.sigmoid(x).unwrap();
    g.set_outputs(&[live]).unwrap();
    let (d, n) = eliminate_dead_code(&g).unwrap();
    assert_eq!(n, 4);
    assert_eq!(d.nodes().len(), 1);
    assert_eq!(count(&d, "Sigmoid"), 1);
    // Unused graph inputs stay.
    assert_eq!(d.inputs().len(), 2);
    same(&g, &d);
}

#[test]
fn eliminate_dead_code_keeps_live_graphs_and_whole_multi_output_nodes() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 2]);
    let parts = g.split(x, 0, &[1, 3]).unwrap();
    let y = g.relu(parts[1]).unwrap();
    g.set_outputs(&[y, x]).unwrap();
    let (d, n) = eliminate_dead_code(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(d.nodes().len(), 2);
    same(&g, &d);
}

#[test]
fn eliminate_dead_code_needs_outputs() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    g.relu(x).unwrap();
    assert!(matches!(eliminate_dead_code(&g), Err(Error::Graph(_))));
    assert!(optimize(&g).is_err());
}

// ---- eliminate_common_subexpressions ----

#[test]
fn cse_merges_duplicated_subgraphs() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let c1 = rand_const(&mut g, "c1", &[3], 1);
    let c2 = rand_const(&mut g, "c2", &[3], 1); // same values as c1
    let a1 = g.add_(x, c1).unwrap();
    let a2 = g.add_(x, c2).unwrap();
    let r1 = g.relu(a1).unwrap();
    let r2 = g.relu(a2).unwrap();
    let y = g.mul(r1, r2).unwrap();
    g.set_outputs(&[y]).unwrap();
    let (m, n) = eliminate_common_subexpressions(&g).unwrap();
    assert_eq!(n, 3);
    assert_eq!(count(&m, "Constant"), 1);
    assert_eq!(count(&m, "Add"), 1);
    assert_eq!(count(&m, "Relu"), 1);
    assert_eq!(count(&m, "Mul"), 1);
    same(&g, &m);
}

#[test]
fn cse_keeps_different_ops_and_constants() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    // Equal under ==, different bits.
    let z1 = konst(&mut g, "z1", Tensor::from_f32([1], vec![0.0]).unwrap());
    let z2 = konst(&mut g, "z2", Tensor::from_f32([1], vec![-0.0]).unwrap());
    // Same bits, other dtype / shape.
    let i1 = konst(&mut g, "i1", Tensor::from_i32([2], vec![0, 0]).unwrap());
    let i2 = konst(&mut g, "i2", Tensor::from_i32([1, 2], vec![0, 0]).unwrap());
    let u = konst(&mut g, "u", Tensor::zeros(DType::U8, [2]));
    // Large constants equal but for one element (the hash samples only some elements).
    let big = Tensor::random(DType::F32, [2, 500], 9);
    let mut v = big.to_f32_vec();
    v[1] += 1.0;
    let big1 = konst(&mut g, "big1", big);
    let big2 = konst(&mut g, "big2", Tensor::from_f32([2, 500], v).unwrap());
    let d1 = g.binary(BinaryOp::Div, x, z1).unwrap();
    let d2 = g.binary(BinaryOp::Div, x, z2).unwrap();
    let l1 = g.unary(UnaryOp::LeakyRelu { alpha: 0.1 }, x).unwrap();
    let l2 = g.unary(UnaryOp::LeakyRelu { alpha: 0.2 }, x).unwrap();
    let l3 = g.unary(UnaryOp::LeakyRelu { alpha: 0.0 }, x).unwrap();
    let l4 = g.unary(UnaryOp::LeakyRelu { alpha: -0.0 }, x).unwrap();
    let nan1 = g
        .unary(
            UnaryOp::Clip {
                min: f32::NAN,
                max: 1.0,
            },
            x,
        )
        .unwrap();
    let nan2 = g
        .unary(
            UnaryOp::Clip {
                min: f32::NAN,
                max: 1.0,
            },
            x,
        )
        .unwrap();
    let s1 = g.reduce(ReduceOp::Sum, x, &[0], true).unwrap();
    let s2 = g.reduce(ReduceOp::Sum, x, &[1], true).unwrap();
    // Each pair is read by one add, so only the pair itself can merge.
    let mut outs = Vec::new();
    for (a, b) in [(d1, d2), (l1, l2), (l3, l4), (nan1, nan2), (s1, s2)] {
        outs.push(g.add_(a, b).unwrap());
    }
    for c in [i1, i2, u, big1, big2] {
        outs.push(g.cast(c, DType::F32).unwrap());
    }
    let r1 = g.relu(x).unwrap();
    let r2 = g.relu(x).unwrap(); // a duplicate, but it is a graph output
    outs.extend([r1, r2]);
    g.set_outputs(&outs).unwrap();
    let (m, n) = eliminate_common_subexpressions(&g).unwrap();
    assert_eq!(n, 0);
    assert_eq!(m.nodes().len(), g.nodes().len());
}

// ---- optimize ----

#[test]
fn optimize_keeps_inputs_outputs_and_names() {
    let mut g = Graph::new();
    let x = g.input("image", DType::F32, [1, 3, 5, 5]);
    let w = rand_const(&mut g, "w", &[4, 3, 3, 3], 1);
    let y = g
        .add_named("conv1", Op::Conv2d(Conv2d::padded(1, 1)), &[x, w])
        .unwrap()[0];
    let z = bn(&mut g, "bn1", y, 4, 2);
    let r = g
        .add_named("relu1", Op::Unary(UnaryOp::Relu), &[z])
        .unwrap()[0];
    let r_dup = g
        .add_named("relu1_dup", Op::Unary(UnaryOp::Relu), &[z])
        .unwrap()[0];
    let sum = g
        .add_named("sum", Op::Binary(BinaryOp::Add), &[r, r_dup])
        .unwrap()[0];
    let _dead = g
        .add_named("unused", Op::Unary(UnaryOp::Tanh), &[sum])
        .unwrap();
    let pool = g.add_named("pool", Op::GlobalAvgPool, &[sum]).unwrap()[0];
    g.set_outputs(&[pool, sum]).unwrap();

    let (o, stats) = optimize(&g).unwrap();
    assert_eq!(stats.batch_norms_folded, 1);
    assert_eq!(stats.common_subexpressions_merged, 1);
    // The tanh, then the old weight and the four BatchNorm parameters.
    assert_eq!(stats.dead_nodes_removed, 1 + 5);
    assert_eq!(stats.nodes_before, g.nodes().len());
    assert_eq!(stats.nodes_after, o.nodes().len());
    let names: Vec<&str> = o.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bn1.folded_weight",
            "bn1.folded_bias",
            "conv1",
            "relu1",
            "sum",
            "pool"
        ]
    );
    assert_eq!(o.value(o.inputs()[0]).name, "image");
    assert_eq!(o.value(o.outputs()[0]).name, "pool");
    assert_eq!(o.value(o.outputs()[1]).name, "sum");
    same(&g, &o);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["batch_norms_folded"], 1);
}

// ---- proptest: random graphs keep their function ----

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// One conv layer of a random chain.
#[derive(Clone, Debug)]
struct Layer {
    out_channels: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    depthwise: bool,
    bias: bool,
    batch_norm: bool,
    relu: bool,
    /// The conv's output is also a graph output (that blocks the BatchNorm fold).
    expose: bool,
}

fn layer() -> impl Strategy<Value = Layer> {
    (
        1usize..6,
        1usize..4,
        1usize..3,
        0usize..2,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(out_channels, kernel, stride, pad, depthwise, bias, batch_norm, relu, expose)| {
                Layer {
                    out_channels,
                    kernel,
                    stride,
                    pad,
                    depthwise,
                    bias,
                    batch_norm,
                    relu,
                    expose,
                }
            },
        )
}

/// A conv (+ BN) (+ relu) chain on an `[n, c, h, w]` input. Returns the graph and how many
/// BatchNorms can be folded.
fn conv_chain(dims: [usize; 4], layers: &[Layer], seed: u64) -> (Graph, usize) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, dims.to_vec());
    let (mut cur, mut c, mut h, mut w) = (x, dims[1], dims[2], dims[3]);
    let mut outs = Vec::new();
    let mut foldable = 0;
    for (i, l) in layers.iter().enumerate() {
        let k = l.kernel.min(h + 2 * l.pad).min(w + 2 * l.pad);
        let groups = if l.depthwise && l.out_channels % c == 0 {
            c
        } else {
            1
        };
        let wt = rand_const(
            &mut g,
            &format!("w{i}"),
            &[l.out_channels, c / groups, k, k],
            seed + 10 * i as u64,
        );
        let mut ins = vec![cur, wt];
        if l.bias {
            ins.push(rand_const(
                &mut g,
                &format!("b{i}"),
                &[l.out_channels],
                seed + 10 * i as u64 + 1,
            ));
        }
        let conv = Conv2d {
            stride: [l.stride; 2],
            padding: [l.pad; 4],
            dilation: [1, 1],
            groups,
        };
        cur = g
            .add_named(&format!("conv{i}"), Op::Conv2d(conv), &ins)
            .unwrap()[0];
        if l.expose {
            outs.push(cur);
        }
        if l.batch_norm {
            cur = bn(
                &mut g,
                &format!("bn{i}"),
                cur,
                l.out_channels,
                seed + 10 * i as u64 + 2,
            );
            foldable += usize::from(!l.expose);
        }
        if l.relu {
            cur = g
                .add_named(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[cur])
                .unwrap()[0];
        }
        let s = g.shape(cur).dims().to_vec();
        (c, h, w) = (s[1], s[2], s[3]);
    }
    outs.push(cur);
    g.set_outputs(&outs).unwrap();
    (g, foldable)
}

/// How the matmul of the dense test is made.
#[derive(Clone, Debug)]
enum Dense {
    MatMul,
    Gemm {
        alpha: f32,
        beta: f32,
        trans_b: bool,
        c: Option<u8>,
    },
}

fn dense() -> impl Strategy<Value = Dense> {
    prop_oneof![
        Just(Dense::MatMul),
        (
            prop_oneof![Just(1.0f32), -2.0f32..2.0],
            prop_oneof![Just(1.0f32), Just(0.0f32), -2.0f32..2.0],
            any::<bool>(),
            prop::option::of(0u8..5)
        )
            .prop_map(|(alpha, beta, trans_b, c)| Dense::Gemm {
                alpha,
                beta,
                trans_b,
                c
            }),
    ]
}

/// `x [m, k]` times a weight computed from constants (transpose, scale, reshape), optionally
/// followed by a BatchNorm and a relu.
fn dense_graph(m: usize, k: usize, n: usize, d: &Dense, batch_norm: bool, seed: u64) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [m, k]);
    let trans_b = matches!(d, Dense::Gemm { trans_b: true, .. });
    // A weight stored [n * k] and reshaped, transposed and scaled: all folded to one constant.
    let raw = rand_const(&mut g, "raw", &[n * k], seed);
    let w = g.reshape(raw, &[n as i64, k as i64]).unwrap();
    let w = if trans_b {
        w
    } else {
        g.transpose(w, &[1, 0]).unwrap()
    };
    let scale = rand_const(&mut g, "scale", &[], seed + 1);
    let two = konst(&mut g, "two", Tensor::scalar_f32(2.0));
    let scale = g.mul(scale, two).unwrap();
    let w = g.mul(w, scale).unwrap();
    let y = match *d {
        Dense::MatMul => g.add_named("fc", Op::MatMul, &[x, w]).unwrap()[0],
        Dense::Gemm {
            alpha,
            beta,
            trans_b,
            c,
        } => {
            let c_dims: Option<Vec<usize>> = c.map(|i| match i {
                0 => vec![n],
                1 => vec![1, n],
                2 => vec![m, n],
                3 => vec![m, 1],
                _ => vec![],
            });
            let c = c_dims.map(|d| rand_const(&mut g, "c", &d, seed + 2));
            let gm = Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            };
            let mut ins = vec![x, w];
            ins.extend(c);
            g.add_named("fc", Op::Gemm(gm), &ins).unwrap()[0]
        }
    };
    let y = if batch_norm {
        bn(&mut g, "bn", y, n, seed + 3)
    } else {
        y
    };
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    g
}

/// One step of a random elementwise program over values of shape [2, 3].
#[derive(Clone, Debug)]
enum Step {
    Unary(usize, u8),
    Binary(usize, usize, u8),
    /// `values[i] + f(constant)`, with `f` a constant subexpression.
    AddConst(usize, u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..4).prop_map(|(i, k)| Step::Unary(i.index(1 << 16), k)),
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            0u8..3
        )
            .prop_map(|(a, b, k)| Step::Binary(a.index(1 << 16), b.index(1 << 16), k)),
        (any::<prop::sample::Index>(), 0u64..4)
            .prop_map(|(i, s)| Step::AddConst(i.index(1 << 16), s)),
    ]
}

/// Replay `steps` on `vals` (indices taken modulo the values there are).
fn replay(g: &mut Graph, vals: &mut Vec<ValueId>, steps: &[Step]) {
    for s in steps {
        let pick = |i: usize| vals[i % vals.len()];
        let v = match *s {
            Step::Unary(i, k) => {
                let op = [UnaryOp::Tanh, UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Neg][k as usize];
                g.unary(op, pick(i)).unwrap()
            }
            Step::Binary(a, b, k) => {
                let op = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Max][k as usize];
                g.binary(op, pick(a), pick(b)).unwrap()
            }
            Step::AddConst(i, seed) => {
                let c = konst(g, "k", Tensor::random(DType::F32, [3], seed));
                let c = g.unary(UnaryOp::Exp, c).unwrap();
                let half = konst(g, "half", Tensor::scalar_f32(0.5));
                let c = g.mul(c, half).unwrap();
                g.add_(pick(i), c).unwrap()
            }
        };
        vals.push(v);
    }
}

proptest! {
    #![proptest_config(cfg(48))]

    #[test]
    fn conv_bn_relu_chains_keep_their_function(
        n in 1usize..3,
        c in 1usize..5,
        h in 3usize..8,
        w in 3usize..8,
        layers in prop::collection::vec(layer(), 1..4),
        seed in any::<u64>(),
    ) {
        let seed = seed >> 8;
        let (g, foldable) = conv_chain([n, c, h, w], &layers, seed);
        let (o, stats) = check_optimize(&g, seed)?;
        prop_assert_eq!(stats.batch_norms_folded, foldable);
        prop_assert_eq!(count(&o, "BatchNorm"), count(&g, "BatchNorm") - foldable);
        prop_assert_eq!(count(&o, "Conv2d"), layers.len());
        // Constants left: one weight per conv, a bias per conv that has one or had a BN
        // folded in, and the parameters of the BNs that stay.
        let biases = layers.iter().filter(|l| l.bias || (l.batch_norm && !l.expose)).count();
        prop_assert_eq!(
            count(&o, "Constant"),
            layers.len() + biases + 4 * (count(&g, "BatchNorm") - foldable)
        );
    }

    #[test]
    fn dense_layers_with_constant_weights_keep_their_function(
        m in 1usize..5,
        k in 1usize..6,
        n in 1usize..6,
        d in dense(),
        batch_norm in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let seed = seed >> 8;
        let g = dense_graph(m, k, n, &d, batch_norm, seed);
        let (o, stats) = check_optimize(&g, seed)?;
        prop_assert!(stats.constants_folded >= 3, "{:?}", stats);
        prop_assert_eq!(stats.batch_norms_folded, usize::from(batch_norm));
        for op in ["Reshape", "Transpose", "Mul", "BatchNorm"] {
            prop_assert_eq!(count(&o, op), 0, "{} left", op);
        }
        if batch_norm {
            prop_assert_eq!(count(&o, "MatMul"), 0);
        }
        // x -> Gemm(w, [c]) -> relu
        prop_assert_eq!(count(&o, "Relu"), 1);
        prop_assert_eq!(count(&o, "Gemm") + count(&o, "MatMul"), 1);
        let has_c = batch_norm || matches!(d, Dense::Gemm { c: Some(_), .. });
        prop_assert_eq!(count(&o, "Constant"), 1 + usize::from(has_c));
    }

    #[test]
    fn duplicated_and_dead_subgraphs_keep_their_function(
        steps in prop::collection::vec(step(), 1..10),
        first_output in any::<prop::sample::Index>(),
        outputs in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        seed in any::<u64>(),
    ) {
        let seed = seed >> 8;
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [2, 3]);
        let y = g.input("y", DType::F32, [3]);
        // The program twice over the same inputs: the second copy duplicates the first.
        let mut first = vec![x, y];
        replay(&mut g, &mut first, &steps);
        let mut second = vec![x, y];
        replay(&mut g, &mut second, &steps);
        let one_copy = g.nodes().len() / 2;
        // One output from the first copy, the rest from the second; the values they do not
        // need are dead, the ones both need are duplicates.
        let mut outs = vec![first[2 + first_output.index(steps.len())]];
        outs.extend(outputs.iter().map(|i| second[2 + i.index(steps.len())]));
        g.set_outputs(&outs).unwrap();
        let (o, stats) = check_optimize(&g, seed)?;
        // Only the graph outputs themselves may stay duplicated.
        prop_assert!(
            o.nodes().len() <= one_copy + outs.len(),
            "{} nodes left of {} per copy: {:?}", o.nodes().len(), one_copy, stats
        );
        let inner_dups = o
            .nodes()
            .iter()
            .filter(|n| !n.outputs.iter().any(|v| o.outputs().contains(v)))
            .map(|n| (format!("{:?}", n.op), n.inputs.clone()))
            .collect::<Vec<_>>();
        let distinct: HashSet<_> = inner_dups.iter().cloned().collect();
        prop_assert_eq!(distinct.len(), inner_dups.len(), "duplicates left");
        prop_assert_eq!(count(&o, "Exp"), 0);
    }
}
