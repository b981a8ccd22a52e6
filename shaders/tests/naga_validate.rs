//! Every kernel every op can lower to is valid WGSL (naga), and representative kernels are
//! snapshotted so every change to generated code shows in review.

use sfumato_core::op::*;
use sfumato_core::{DType, Graph, Op, Shape, TargetProfile, Tensor};
use sfumato_shaders::{
    lower, matmul_problem, validate, Buf, Kernel, LowerOptions, Lowered, MatmulVariant,
};

/// A graph using every op, over several dtypes.
fn zoo_of_ops() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 4, 6, 6]);
    let w = g.input("w", DType::F32, [8, 2, 3, 3]);
    let b = g.input("b", DType::F32, [8]);
    g.conv2d(
        x,
        w,
        Some(b),
        Conv2d {
            groups: 2,
            padding: [1; 4],
            ..Default::default()
        },
    )
    .unwrap();
    let wt = g.input("wt", DType::F32, [4, 3, 3, 3]);
    g.conv_transpose2d(
        x,
        wt,
        None,
        ConvTranspose2d {
            stride: [2, 2],
            ..Default::default()
        },
    )
    .unwrap();
    let c = g.input("c", DType::F32, [4]);
    g.batch_norm(x, c, c, c, c, 1e-5).unwrap();
    for u in UnaryOp::all() {
        g.unary(u, x).unwrap();
    }
    let xi = g.input("xi", DType::I32, [3, 5]);
    let xl = g.input("xl", DType::I64, [3, 5]);
    let xu = g.input("xu", DType::U8, [3, 5]);
    for u in [
        UnaryOp::Relu,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Clip {
            min: -2.0,
            max: 3.0,
        },
    ] {
        g.unary(u, xi).unwrap();
        g.unary(u, xl).unwrap();
    }
    let y = g.input("y", DType::F32, [6, 1]);
    for op in BinaryOp::ALL {
        g.binary(op, x, y).unwrap();
        g.binary(op, xi, xi).unwrap();
        g.binary(op, xu, xu).unwrap();
    }
    g.softmax(x, 1).unwrap();
    let s = g.input("s", DType::F32, [6]);
    g.layer_norm(x, s, Some(s), -1, 1e-5).unwrap();
    g.layer_norm(x, s, None, -1, 1e-5).unwrap();
    for r in [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
    ] {
        g.reduce(r, x, &[1, 3], true).unwrap();
        g.reduce(r, xi, &[0], false).unwrap();
        g.reduce(r, xu, &[], false).unwrap();
    }
    g.max_pool2d(x, Pool2d::new(3, 2, 1)).unwrap();
    g.max_pool2d_indices(x, Pool2d::new(3, 2, 1), false)
        .unwrap();
    g.max_pool2d_indices(x, Pool2d::new(2, 1, 0), true).unwrap();
    g.avg_pool2d(x, Pool2d::new(2, 2, 0)).unwrap();
    g.global_avg_pool(x).unwrap();
    g.reshape(x, &[2, -1]).unwrap();
    g.transpose(x, &[0, 2, 3, 1]).unwrap();
    g.concat(&[x, x], 1).unwrap();
    g.slice(x, &[3, 2], &[-1, 0], &[-100, 6], &[-2, 3]).unwrap();
    g.split(x, 1, &[1, 3]).unwrap();
    let idx = g.input("idx", DType::I64, [2, 3]);
    g.gather(x, idx, 2).unwrap();
    let eidx = g.input("eidx", DType::I64, [2, 4, 3, 6]);
    g.gather_elements(x, eidx, 2).unwrap();
    let eidx_i = g.input("eidx_i", DType::I32, [3, 2]);
    g.gather_elements(xi, eidx_i, 1).unwrap();
    let sd = g.input("sd", DType::F32, [6, 4]);
    let su = g.input("su", DType::F32, [3, 4]);
    let st = g.input("st", DType::I64, [3]);
    g.add(
        Op::ScatterRows {
            reduction: ScatterReduction::Add,
        },
        &[sd, su, st],
    )
    .unwrap();
    // Every recurrent cell, with every activation, a hidden size that is not a multiple of 4
    // and one past 256 units (several per invocation).
    let acts = [
        RecurrentAct::Sigmoid,
        RecurrentAct::Tanh,
        RecurrentAct::Relu,
        RecurrentAct::LeakyRelu { alpha: 0.1 },
        RecurrentAct::ThresholdedRelu { alpha: 0.5 },
        RecurrentAct::Elu { alpha: 1.0 },
        RecurrentAct::Softsign,
        RecurrentAct::Softplus,
        RecurrentAct::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        RecurrentAct::Affine {
            alpha: 2.0,
            beta: 0.1,
        },
        RecurrentAct::ScaledTanh {
            alpha: 1.5,
            beta: 0.5,
        },
    ];
    let cells = [
        RecurrentCell::Rnn,
        RecurrentCell::Gru {
            linear_before_reset: false,
        },
        RecurrentCell::Gru {
            linear_before_reset: true,
        },
        RecurrentCell::Lstm,
    ];
    for (i, cell) in cells.into_iter().enumerate() {
        for h in [5usize, 300] {
            let (gates, parts) = (cell.gates(), cell.state_parts());
            let xw = g.input(&format!("rxw{i}_{h}"), DType::F32, [3, 2, gates * h]);
            let r = g.input(&format!("rr{i}_{h}"), DType::F32, [h, gates * h]);
            let s0 = g.input(&format!("rs{i}_{h}"), DType::F32, [2, parts * h]);
            let lens = g.input(&format!("rl{i}_{h}"), DType::I32, [2]);
            let mut ins = vec![xw, r, s0, lens];
            if let Some(rows) = cell.extra_rows() {
                ins.push(g.input(&format!("re{i}_{h}"), DType::F32, [rows, h]));
            }
            let op = Op::Recurrence(Recurrence {
                cell,
                reverse: h == 5,
                clip: (i == 3).then_some(3.0),
                acts: (0..cell.activations())
                    .map(|k| acts[(i * 3 + k) % acts.len()])
                    .collect(),
            });
            g.add(op, &ins).unwrap();
        }
    }
    let ia = g.input("ia", DType::I32, [2, 5, 7]);
    let ib = g.input("ib", DType::I32, [7, 3]);
    g.add(Op::MatMulInteger, &[ia, ib]).unwrap();
    let ix = g.input("ix", DType::I32, [1, 4, 6, 6]);
    let iw = g.input("iw", DType::I32, [8, 2, 3, 3]);
    let grouped = Conv2d {
        groups: 2,
        ..Conv2d::padded(1, 2)
    };
    g.add(Op::ConvInteger(grouped), &[ix, iw]).unwrap();
    for (max, last) in [(true, false), (false, true)] {
        g.arg_reduce(x, max, 1, true, last).unwrap();
        g.arg_reduce(xi, max, -1, false, last).unwrap();
        g.arg_reduce(xu, max, 0, false, last).unwrap();
    }
    let cond = g.input("cond", DType::Bool, [6, 6]);
    g.where_(cond, x, x).unwrap();
    let cond2 = g.input("cond2", DType::Bool, [3, 1]);
    g.where_(cond2, xi, xi).unwrap();
    let x32u = g.input("x32u", DType::U32, [3, 5]);
    let x8 = g.input("x8", DType::I8, [3, 5]);
    for to in DType::ALL {
        g.cast(x, to).unwrap();
        g.cast(xi, to).unwrap();
        g.cast(cond, to).unwrap();
        g.cast(x32u, to).unwrap();
        g.cast(x8, to).unwrap();
    }
    for op in BinaryOp::ALL {
        g.binary(op, x32u, x32u).unwrap();
        g.binary(op, x8, x8).unwrap();
    }
    let x16u = g.input("x16u", DType::U16, [3, 5]);
    let xh = g.input("xh", DType::F16, [3, 5]);
    for (v, tos) in [
        (x, &[DType::I32, DType::U32][..]),
        (xi, &[DType::F32, DType::U32][..]),
        (x32u, &[DType::F32, DType::I32][..]),
        (x8, &[DType::U8, DType::Bool][..]),
        (x16u, &[DType::I16, DType::F16, DType::BF16][..]),
        (xh, &[DType::U16, DType::I16, DType::BF16][..]),
    ] {
        for &to in tos {
            g.add(Op::BitCast { to }, &[v]).unwrap();
        }
    }
    for op in BinaryOp::BITWISE {
        for v in [xi, xl, xu, x32u, x8, x16u] {
            g.binary(op, v, v).unwrap();
        }
    }
    for mode in [ResizeMode::Nearest, ResizeMode::Bilinear] {
        g.resize(x, [9, 4], mode, CoordTransform::HalfPixel)
            .unwrap();
    }
    for mode in [PadMode::Constant(1.5), PadMode::Reflect, PadMode::Edge] {
        g.pad(x, &[[0, 0], [0, 1], [2, 1], [1, 1]], mode).unwrap();
    }
    g.pad(xi, &[[1, 0], [0, 2]], PadMode::Constant(-3.0))
        .unwrap();
    let a = g.input("a", DType::F32, [3, 5, 8]);
    let bm = g.input("bm", DType::F32, [8, 12]);
    g.matmul(a, bm).unwrap();
    let c2 = g.input("c2", DType::F32, [12]);
    let a2 = g.input("a2", DType::F32, [8, 5]);
    g.gemm(
        a2,
        bm,
        Some(c2),
        Gemm {
            trans_a: true,
            ..Default::default()
        },
    )
    .unwrap();
    g
}

fn kernels_of(g: &Graph, opts: &LowerOptions) -> Vec<Kernel> {
    let mut out = Vec::new();
    for node in g.nodes() {
        let ins: Vec<(DType, &Shape)> = node
            .inputs
            .iter()
            .map(|&i| (g.dtype(i), g.shape(i)))
            .collect();
        let outs: Vec<(DType, &Shape)> = node
            .outputs
            .iter()
            .map(|&o| (g.dtype(o), g.shape(o)))
            .collect();
        match lower(&node.op, &ins, &outs, opts).unwrap_or_else(|e| panic!("{}: {e}", node.name)) {
            Lowered::Kernels(ks) => out.extend(ks),
            Lowered::Alias | Lowered::Constant | Lowered::Copies(_) => {}
        }
    }
    out
}

#[test]
fn every_kernel_is_valid_wgsl() {
    let g = zoo_of_ops();
    let ks = kernels_of(&g, &LowerOptions::default());
    assert!(
        ks.len() > 100,
        "expected a kernel per op and dtype, got {}",
        ks.len()
    );
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_matmul_variant_is_valid_wgsl() {
    let a = Shape::from([2, 64, 32]);
    let b = Shape::from([32, 48]);
    let o = Shape::from([2, 64, 48]);
    let ins = [(DType::F32, &a), (DType::F32, &b)];
    let outs = [(DType::F32, &o)];
    let mut p = matmul_problem(&Op::MatMul, &ins, &outs).unwrap();
    // The texture variants need a constant B, which only the graph knows.
    p.b_const = true;
    // The `ubo` variants need one A for every batch.
    let (a2, o2) = (Shape::from([64, 32]), Shape::from([64, 48]));
    let mut p2 = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &a2), (DType::F32, &b)],
        &[(DType::F32, &o2)],
    )
    .unwrap();
    p2.b_const = true;
    // The `dot` variants need B contiguous along K (B transposed: attention's K^T).
    let mut p3 = p.clone();
    (p3.b_sk, p3.b_sn, p3.b_const) = (1, 32, false);
    for v in MatmulVariant::all() {
        let p = match v {
            MatmulVariant::Ubo { .. } => &p2,
            MatmulVariant::Dot { .. } => &p3,
            _ => &p,
        };
        assert!(v.supports(p), "{v:?}");
        let opts = LowerOptions {
            matmul: Some(v),
            ..Default::default()
        };
        for k in sfumato_shaders::lower::matmul_kernel(p, v, &opts).unwrap() {
            assert_eq!(k.name, v.name());
            validate(&v.name(), &k.wgsl).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn vec4_variants_refuse_unaligned_layouts() {
    let a = Shape::from([5, 7]);
    let b = Shape::from([7, 6]);
    let o = Shape::from([5, 6]);
    let p = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &a), (DType::F32, &b)],
        &[(DType::F32, &o)],
    )
    .unwrap();
    assert!(!MatmulVariant::V4 {
        rows: 8,
        cols4: 2,
        wg_x: 8,
        wg_y: 8
    }
    .supports(&p));
    assert!(!MatmulVariant::Rb4V4K.supports(&p));
    assert!(MatmulVariant::Rb4.supports(&p));
}

#[test]
fn large_dispatches_wrap_into_y() {
    let x = Shape::from([70_000 * 256 + 3]);
    let ins = [(DType::F32, &x)];
    let Lowered::Kernels(ks) = lower(
        &Op::Unary(UnaryOp::Relu),
        &ins,
        &ins,
        &LowerOptions::default(),
    )
    .unwrap() else {
        panic!()
    };
    let [wx, wy, _] = ks[0].workgroups;
    assert!(wx <= 65_535 && wy == 2, "{:?}", ks[0].workgroups);
    assert!(wx as u64 * wy as u64 * 256 >= x.numel() as u64);
}

#[test]
fn constant_and_reshape_need_no_kernel() {
    let s = Shape::from([2, 3]);
    let t = Tensor::zeros(DType::F32, [2, 3]);
    let opts = LowerOptions::default();
    assert_eq!(
        lower(&Op::Constant(t), &[], &[(DType::F32, &s)], &opts).unwrap(),
        Lowered::Constant
    );
    let r = Shape::from([6]);
    assert_eq!(
        lower(
            &Op::Reshape { shape: vec![6] },
            &[(DType::F32, &s)],
            &[(DType::F32, &r)],
            &opts
        )
        .unwrap(),
        Lowered::Alias
    );
}

fn snapshot_of(op: Op, ins: &[(DType, Shape)], opts: &LowerOptions) -> String {
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, opts).unwrap() else {
        panic!()
    };
    snapshot_text(&ks[0])
}

fn snapshot_text(k: &Kernel) -> String {
    // The shared prelude is snapshotted once, on its own.
    let body = k
        .wgsl
        .split_once("\n@group")
        .map(|(_, b)| format!("@group{b}"))
        .unwrap_or_else(|| k.wgsl.clone());
    format!(
        "kernel: {}\nbindings: {:?}\nmeta: {:?}\nworkgroups: {:?}\nloop trips: {}\n---\n{body}",
        k.name, k.bindings, k.params, k.workgroups, k.loop_trips
    )
}

#[test]
fn snapshots() {
    let f = |d: &[usize]| (DType::F32, Shape::from(d));
    let opts = LowerOptions::default();
    insta::assert_snapshot!(
        "gelu",
        snapshot_of(Op::Unary(UnaryOp::Gelu), &[f(&[4, 8])], &opts)
    );
    insta::assert_snapshot!(
        "add_broadcast",
        snapshot_of(Op::Binary(BinaryOp::Add), &[f(&[2, 3]), f(&[3])], &opts)
    );
    // A left shift on int8 wraps to 8 bits and gives 0 past the width.
    let i8s = (DType::I8, Shape::from(&[2, 3][..]));
    insta::assert_snapshot!(
        "shl_i8",
        snapshot_of(Op::Binary(BinaryOp::Shl), &[i8s.clone(), i8s], &opts)
    );
    // BitCast reads f16 bits through the appended half_bits helpers.
    insta::assert_snapshot!(
        "bitcast_f16_to_i16",
        snapshot_of(
            Op::BitCast { to: DType::I16 },
            &[(DType::F16, Shape::from(&[2, 3][..]))],
            &opts
        )
    );
    // A float comparison spells out NaN.
    insta::assert_snapshot!(
        "ne_f32",
        snapshot_of(Op::Binary(BinaryOp::Ne), &[f(&[2, 3]), f(&[3])], &opts)
    );
    insta::assert_snapshot!(
        "softmax",
        snapshot_of(Op::Softmax { axis: 1 }, &[f(&[2, 5])], &opts)
    );
    insta::assert_snapshot!(
        "conv2d",
        snapshot_of(
            Op::Conv2d(Conv2d::padded(1, 1)),
            &[f(&[1, 3, 8, 8]), f(&[4, 3, 3, 3])],
            &opts
        )
    );
    // Grouped (here depthwise) convs keep the direct kernel.
    insta::assert_snapshot!(
        "conv2d_depthwise",
        snapshot_of(
            Op::Conv2d(Conv2d {
                groups: 4,
                ..Conv2d::padded(1, 1)
            }),
            &[f(&[1, 4, 8, 8]), f(&[4, 1, 3, 3])],
            &opts
        )
    );
    // A cast to float8 (E4M3FN, saturating) appends the narrow-float helpers.
    insta::assert_snapshot!(
        "cast_f32_to_f8e4m3fn",
        snapshot_of(
            Op::Cast {
                to: DType::F8E4M3FN,
                saturate: true
            },
            &[f(&[4, 8])],
            &opts
        )
    );
    insta::assert_snapshot!(
        "gather_elements",
        snapshot_of(
            Op::GatherElements { axis: 1 },
            &[f(&[3, 5]), (DType::I64, Shape::from(&[3, 2][..]))],
            &opts
        )
    );
    // Pad writes its shape into the walk: divisions by constants, the unpadded dims no test.
    // (A pad of zeros along one axis is copies and clears: `pad_copies`.)
    insta::assert_snapshot!(
        "pad_channels",
        snapshot_of(
            Op::Pad {
                pads: vec![[0, 0], [0, 1], [0, 0], [0, 0]],
                mode: PadMode::Constant(0.5),
            },
            &[f(&[1, 3, 6, 5])],
            &opts
        )
    );
    insta::assert_snapshot!(
        "pad_reflect",
        snapshot_of(
            Op::Pad {
                pads: vec![[1, 2], [0, 3]],
                mode: PadMode::Reflect,
            },
            &[f(&[4, 5])],
            &opts
        )
    );
    let i32s = |d: &[usize]| (DType::I32, Shape::from(d));
    insta::assert_snapshot!(
        "matmul_int",
        snapshot_of(Op::MatMulInteger, &[i32s(&[2, 5, 7]), i32s(&[7, 3])], &opts)
    );
    insta::assert_snapshot!(
        "conv2d_int",
        snapshot_of(
            Op::ConvInteger(Conv2d::padded(1, 1)),
            &[i32s(&[1, 4, 6, 6]), i32s(&[8, 4, 3, 3])],
            &opts
        )
    );
    for (name, cell) in [
        ("recurrence_lstm", RecurrentCell::Lstm),
        (
            "recurrence_gru",
            RecurrentCell::Gru {
                linear_before_reset: false,
            },
        ),
    ] {
        let (gates, parts, h) = (cell.gates(), cell.state_parts(), 6);
        let mut ins = vec![
            (DType::F32, Shape::from(&[4, 2, gates * h][..])),
            (DType::F32, Shape::from(&[h, gates * h][..])),
            (DType::F32, Shape::from(&[2, parts * h][..])),
            (DType::I32, Shape::from(&[2][..])),
        ];
        if let Some(rows) = cell.extra_rows() {
            ins.push((DType::F32, Shape::from(&[rows, h][..])));
        }
        let ins: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
        let out = Shape::from(&[4, 2, parts * h][..]);
        let op = Op::Recurrence(Recurrence {
            cell,
            reverse: false,
            clip: None,
            acts: match cell {
                RecurrentCell::Lstm => vec![
                    RecurrentAct::Sigmoid,
                    RecurrentAct::Tanh,
                    RecurrentAct::Tanh,
                ],
                _ => vec![RecurrentAct::Sigmoid, RecurrentAct::Tanh],
            },
        });
        let Lowered::Kernels(ks) = lower(&op, &ins, &[(DType::F32, &out)], &opts).unwrap() else {
            panic!("a recurrence lowers to kernels")
        };
        assert_eq!(ks.len(), 1, "four steps are one dispatch");
        validate(&ks[0].name, &ks[0].wgsl).unwrap();
        insta::assert_snapshot!(name, snapshot_text(&ks[0]));
    }
    let (sd, su, st) = (
        Shape::from(&[6, 4][..]),
        Shape::from(&[3, 4][..]),
        Shape::from(&[3][..]),
    );
    let scatter = lower(
        &Op::ScatterRows {
            reduction: ScatterReduction::Max,
        },
        &[(DType::F32, &sd), (DType::F32, &su), (DType::I64, &st)],
        &[(DType::F32, &sd)],
        &opts,
    )
    .unwrap();
    let Lowered::Kernels(ks) = scatter else {
        panic!("ScatterRows lowers to kernels")
    };
    assert_eq!(ks.len(), 2, "a copy, then the scatter");
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap();
    }
    insta::assert_snapshot!("scatter_rows", snapshot_text(&ks[1]));
    insta::assert_snapshot!(
        "argmax",
        snapshot_of(
            Op::ArgReduce {
                max: true,
                axis: 1,
                keepdim: false,
                last: false
            },
            &[f(&[3, 5, 2])],
            &opts
        )
    );
    for v in MatmulVariant::all() {
        let o = LowerOptions {
            matmul: Some(v),
            ..Default::default()
        };
        // A 64 x 32 x 64 product in the layout the variant needs, as the device sees it.
        let direct = |layout: &dyn Fn(&mut sfumato_shaders::MatmulProblem)| {
            let (a, b, c) = (
                Shape::from([64, 32]),
                Shape::from([32, 64]),
                Shape::from([64, 64]),
            );
            let ins = [(DType::F32, &a), (DType::F32, &b)];
            let mut p = matmul_problem(&Op::MatMul, &ins, &[(DType::F32, &c)]).unwrap();
            layout(&mut p);
            snapshot_text(&sfumato_shaders::lower::matmul_kernel(&p, v, &o).unwrap()[0])
        };
        let text = match v {
            // B a constant weight.
            MatmulVariant::V4Tex { .. } => direct(&|p| p.b_const = true),
            // B contiguous along K: a transposed operand (attention's K^T).
            MatmulVariant::Dot { .. } => direct(&|p| (p.b_sk, p.b_sn) = (1, 32)),
            _ => snapshot_of(Op::MatMul, &[f(&[64, 32]), f(&[32, 64])], &o),
        };
        insta::assert_snapshot!(v.name(), text);
    }
    let prelude = include_str!("../src/templates/prelude.wgsl");
    insta::assert_snapshot!("prelude", prelude);
}

/// A `ubo` matmul whose A spans several uniform bindings (a long K), B a constant texture: the
/// bindings, their byte ranges and the switch over the blocks.
#[test]
fn ubo_matmul_blocks() {
    let (a, b, c) = (
        Shape::from([20, 2048]),
        Shape::from([2048, 64]),
        Shape::from([20, 64]),
    );
    let mut p = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &a), (DType::F32, &b)],
        &[(DType::F32, &c)],
    )
    .unwrap();
    p.b_const = true;
    let v = MatmulVariant::Ubo {
        rows: 4,
        cols4: 4,
        wg_x: 16,
    };
    let lay = sfumato_shaders::matmul_ubo::ubo_layout(&p, 4, 12).unwrap();
    // Eight rows of 2,048 fill 64 KiB: three blocks, the last of four rows, in one dispatch.
    assert_eq!(lay.ru, 8);
    assert_eq!(
        lay.blocks,
        vec![(0, 65_536), (65_536, 65_536), (131_072, 32_768)]
    );
    assert_eq!(lay.parts, vec![0..3]);
    // With two uniform bindings per stage: two dispatches, the second from row 16.
    let o = LowerOptions {
        matmul: Some(v),
        target: TargetProfile {
            max_uniform_blocks: 2,
            ..Default::default()
        },
    };
    let ks = sfumato_shaders::lower::matmul_kernel(&p, v, &o).unwrap();
    assert_eq!(ks.len(), 2);
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap_or_else(|e| panic!("{e}"));
    }
    // The part's first row is its last param (the parts could share a pipeline).
    assert_eq!(
        (ks[0].params.last(), ks[1].params.last()),
        (Some(&0), Some(&16))
    );
    // Row tiles: four of the first part's 16 rows, one of the second's 4.
    assert_eq!((ks[0].params[14], ks[1].params[14]), (4, 1));
    let text: Vec<String> = ks.iter().map(snapshot_text).collect();
    insta::assert_snapshot!("matmul_ubo_blocks", text.join("\n=====\n"));
    // Rows too long for a whole 16-row block: 8 rows of 2,048 a block, two blocks a tile (q = 2);
    // the last tile has one block, its rows past M read it.
    let lay16 = sfumato_shaders::matmul_ubo::ubo_layout(&p, 16, 12).unwrap();
    assert_eq!((lay16.ru, lay16.q, lay16.blocks.len()), (8, 2, 3));
    let v16 = MatmulVariant::Ubo {
        rows: 16,
        cols4: 4,
        wg_x: 16,
    };
    let k16 = sfumato_shaders::lower::matmul_kernel(&p, v16, &Default::default()).unwrap();
    assert_eq!(k16.len(), 1);
    validate(&k16[0].name, &k16[0].wgsl).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("matmul_ubo_two_blocks_a_tile", snapshot_text(&k16[0]));
    // K = 3,072 (BERT's FFN2): 5 rows a block; 15-row tiles span 3, a part holds whole tiles.
    let ffn2 = matmul_problem(
        &Op::MatMul,
        &[
            (DType::F32, &Shape::from([128, 3072])),
            (DType::F32, &Shape::from([3072, 768])),
        ],
        &[(DType::F32, &Shape::from([128, 768]))],
    )
    .unwrap();
    let l = sfumato_shaders::matmul_ubo::ubo_layout(&ffn2, 15, 14).unwrap();
    assert_eq!((l.ru, l.q, l.blocks.len()), (5, 3, 26));
    assert_eq!(l.parts, vec![0..12, 12..24, 24..26]);
    // More than 64 dispatches (800 blocks of 8 rows, 12 a dispatch), rows that do not fit,
    // batched A: not supported.
    let big = Shape::from([6400, 2048]);
    let pb = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &big), (DType::F32, &b)],
        &[(DType::F32, &Shape::from([6400, 64]))],
    )
    .unwrap();
    assert!(!v.supports(&pb));
    // One row of K = 16,384 fills a block: a 16-row tile would need 16 bindings.
    let long = matmul_problem(
        &Op::MatMul,
        &[
            (DType::F32, &Shape::from([20, 16384])),
            (DType::F32, &Shape::from([16384, 64])),
        ],
        &[(DType::F32, &Shape::from([20, 64]))],
    )
    .unwrap();
    assert!(!v16.supports(&long));
    assert!(MatmulVariant::Ubo {
        rows: 4,
        cols4: 4,
        wg_x: 16
    }
    .supports(&long));
    let ab = Shape::from([2, 20, 2048]);
    // Batches with their own B keep their A offsets: no uniform blocks.
    let pbat = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &ab), (DType::F32, &Shape::from([2, 2048, 64]))],
        &[(DType::F32, &Shape::from([2, 20, 64]))],
    )
    .unwrap();
    assert!(!v.supports(&pbat));
    // Batches sharing B are one matmul of 40 rows, which the blocks hold.
    let folded = matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &ab), (DType::F32, &b)],
        &[(DType::F32, &Shape::from([2, 20, 64]))],
    )
    .unwrap();
    assert_eq!((folded.m, folded.offsets.len()), (40, 1));
    assert!(v.supports(&folded));
}

/// Rows too long for one invocation under llvmpipe's loop budget (or long enough to leave a device
/// idle) spread over a workgroup a row: softmax over GPT-2's vocabulary, layer norm over 8,192,
/// a sum of 100,000, a mean over a 112x112 map. Valid WGSL, under the budget, snapshotted.
#[test]
fn long_rows_spread_over_a_workgroup() {
    let opts = LowerOptions {
        target: TargetProfile {
            loop_budget: Some(sfumato_shaders::loops::LLVMPIPE_LOOP_BUDGET),
            ..Default::default()
        },
        ..Default::default()
    };
    let cases = [
        (
            Op::Softmax { axis: 1 },
            vec![(DType::F32, Shape(vec![2, 50_257]))],
            "softmax_wg",
        ),
        (
            Op::LayerNorm {
                axis: 1,
                epsilon: 1e-5,
            },
            vec![
                (DType::F32, Shape(vec![3, 8192])),
                (DType::F32, Shape(vec![8192])),
            ],
            "layernorm_wg",
        ),
        (
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![0],
                keepdim: false,
            },
            vec![(DType::F32, Shape(vec![100_000]))],
            "reducesum_wg",
        ),
        (
            Op::Reduce {
                op: ReduceOp::Mean,
                axes: vec![2, 3],
                keepdim: true,
            },
            vec![(DType::I32, Shape(vec![1, 4, 112, 112]))],
            "reducemean_wg",
        ),
    ];
    for (op, ins, name) in cases {
        let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
        let outs = op.infer(&ins_ref).unwrap();
        let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
        let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, &opts).unwrap() else {
            panic!("{name}: no kernel")
        };
        let k = &ks[0];
        assert_eq!(k.name, name);
        assert!(k.loop_trips < sfumato_shaders::loops::LLVMPIPE_LOOP_BUDGET);
        validate(&k.name, &k.wgsl).unwrap_or_else(|e| panic!("{e}"));
        if matches!(name, "softmax_wg" | "reducemean_wg") {
            insta::assert_snapshot!(name, snapshot_text(k));
        }
    }
}

/// With no autotuner choosing, the matmul variant follows the target profile: a GPU whose
/// workgroup memory is fast gets the tiled kernel, a CPU adapter a barrier-free register block
/// (before, every adapter got the CPU order).
#[test]
fn pick_variant_follows_the_target_profile() {
    use sfumato_shaders::lower::pick_variant;
    let (a, b, c) = (
        Shape::from([256, 512]),
        Shape::from([512, 256]),
        Shape::from([256, 256]),
    );
    let p = sfumato_shaders::matmul_problem(
        &Op::MatMul,
        &[(DType::F32, &a), (DType::F32, &b)],
        &[(DType::F32, &c)],
    )
    .unwrap();
    let pick = |target: TargetProfile| {
        pick_variant(
            &p,
            &LowerOptions {
                matmul: None,
                target,
            },
        )
        .unwrap()
    };
    let gpu = pick(TargetProfile::webgpu_gpu());
    assert_eq!(gpu, MatmulVariant::Tiled, "GPU picked {}", gpu.name());
    for cpu in [TargetProfile::cpu_adapter(), TargetProfile::llvmpipe()] {
        let v = pick(cpu);
        assert!(
            matches!(
                v,
                MatmulVariant::V4 { .. } | MatmulVariant::V4Tex { .. } | MatmulVariant::Ubo { .. }
            ),
            "CPU adapter picked {}",
            v.name()
        );
    }
}

/// A one-group conv on a CPU adapter's profile runs staged: `conv_stage` writes the image
/// column (7 x 7 pixels: the last texel of a row half empty) to the staging texture, then
/// `conv2d_staged` reads it as texels, the weights (K = 4,608: two rows a 64 KiB block) from
/// uniform blocks. Valid WGSL, both snapshotted.
#[test]
fn conv_staged_kernels() {
    let opts = LowerOptions {
        target: TargetProfile::llvmpipe(),
        ..Default::default()
    };
    let op = Op::Conv2d(Conv2d::padded(1, 1));
    let ins = [
        (DType::F32, Shape(vec![1, 512, 7, 7])),
        (DType::F32, Shape(vec![64, 512, 3, 3])),
    ];
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, &opts).unwrap() else {
        panic!("a conv lowers to kernels")
    };
    let names: Vec<&str> = ks.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names[0], "conv_stage");
    assert!(
        names[1..].iter().all(|n| *n == "conv2d_staged"),
        "{names:?}"
    );
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap();
    }
    insta::assert_snapshot!("conv_stage", snapshot_text(&ks[0]));
    insta::assert_snapshot!("conv2d_staged", snapshot_text(&ks[1]));
    // A 1x1 conv of stride 1 whose image is whole texels (14 x 14, two images): no
    // `conv_stage`, the image copied to the staging texture by a copy command and read at B's
    // vec4 rows.
    let op = Op::Conv2d(Conv2d::padded(0, 1));
    let ins = [
        (DType::F32, Shape(vec![2, 256, 14, 14])),
        (DType::F32, Shape(vec![64, 256, 1, 1])),
    ];
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, &opts).unwrap() else {
        panic!("a conv lowers to kernels")
    };
    assert!(ks.iter().all(|k| k.name == "conv2d_staged"));
    let texels = 2 * 256 * 196 / 4;
    assert!(ks[0].bindings.contains(&Buf::StageLinear {
        input: 0,
        texels,
        layer: 0
    }));
    validate(&ks[0].name, &ks[0].wgsl).unwrap();
    insta::assert_snapshot!("conv2d_staged_pointwise", snapshot_text(&ks[0]));
}

/// A max pool on a CPU adapter's profile: YOLOv5's SPPF pool (5x5, stride 1, pads 2, 256
/// channels at 20x20) in window blocks read as texels (`maxpool2d_tex`); valid, snapshotted.
#[test]
fn maxpool_tex_kernel() {
    let opts = LowerOptions {
        target: TargetProfile::llvmpipe(),
        ..Default::default()
    };
    let op = Op::MaxPool2d(Pool2d::new(5, 1, 2));
    let ins = [(DType::F32, Shape(vec![1, 256, 20, 20]))];
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, &opts).unwrap() else {
        panic!("a pool lowers to kernels")
    };
    assert_eq!(ks.len(), 1);
    assert_eq!(ks[0].name, "maxpool2d_tex");
    let texels = 256 * 400 / 4;
    assert_eq!(
        ks[0].bindings[0],
        Buf::StageLinear {
            input: 0,
            texels,
            layer: 0
        }
    );
    validate(&ks[0].name, &ks[0].wgsl).unwrap();
    insta::assert_snapshot!("maxpool_tex", snapshot_text(&ks[0]));
}

/// A `ubo` matmul whose B is a run input on a CPU adapter's profile: B of whole-texel rows
/// (512 x 256) is copied to the staging texture by a copy command (`Buf::StageLinear`), no
/// `matmul_stage` kernel.
#[test]
fn matmul_b_input_staging() {
    let opts = LowerOptions {
        target: TargetProfile::llvmpipe(),
        matmul: Some(MatmulVariant::Ubo {
            rows: 16,
            cols4: 2,
            wg_x: 8,
        }),
    };
    let ins = [
        (DType::F32, Shape(vec![256, 512])),
        (DType::F32, Shape(vec![512, 256])),
    ];
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = Op::MatMul.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&Op::MatMul, &ins_ref, &outs_ref, &opts).unwrap() else {
        panic!("a matmul lowers to kernels")
    };
    let names: Vec<&str> = ks.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["matmul_ubo_16x8_wg8"]);
    let b = Buf::StageLinear {
        input: 1,
        texels: 512 * 256 / 4,
        layer: 0,
    };
    assert!(ks[0].bindings.contains(&b));
    validate(&ks[0].name, &ks[0].wgsl).unwrap();
    insta::assert_snapshot!("matmul_ubo_b_linear", snapshot_text(&ks[0]));
}

/// The kernels of a depthwise conv of `x` (channels, height, width) with a `k` x `k` window
/// (pads `k / 2`, stride `s`) on a CPU adapter's profile.
fn depthwise_kernels([c, h, w]: [usize; 3], k: usize, s: usize) -> Vec<Kernel> {
    let opts = LowerOptions {
        target: TargetProfile::llvmpipe(),
        ..Default::default()
    };
    let op = Op::Conv2d(Conv2d {
        groups: c,
        ..Conv2d::padded(k / 2, s)
    });
    let ins = [
        (DType::F32, Shape(vec![1, c, h, w])),
        (DType::F32, Shape(vec![c, 1, k, k])),
    ];
    let ins_ref: Vec<(DType, &Shape)> = ins.iter().map(|(d, s)| (*d, s)).collect();
    let outs = op.infer(&ins_ref).unwrap();
    let outs_ref: Vec<(DType, &Shape)> = outs.iter().map(|(d, s)| (*d, s)).collect();
    let Lowered::Kernels(ks) = lower(&op, &ins_ref, &outs_ref, &opts).unwrap() else {
        panic!("a conv lowers to kernels")
    };
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap();
    }
    ks
}

/// A depthwise conv on a CPU adapter's profile: `conv_dw_tex`, the 5x5 window written out, the
/// 1,152 channels' weights in two uniform blocks (640 channels, then 512), one dispatch each,
/// the input (1152 x 49 values, whole texels) copied to the staging texture. An input that is not
/// whole texels (5 x 49 values) runs `conv_dw`, from storage.
#[test]
fn conv_dw_kernels() {
    let ks = depthwise_kernels([1152, 7, 7], 5, 1);
    assert_eq!(ks.len(), 2);
    for k in &ks {
        let texels = 1152 * 49 / 4;
        assert_eq!(k.name, "conv_dw_tex");
        assert_eq!(
            k.bindings[0],
            Buf::StageLinear {
                input: 0,
                texels,
                layer: 0
            }
        );
    }
    insta::assert_snapshot!("conv_dw", snapshot_text(&ks[0]));
    let ks = depthwise_kernels([5, 7, 7], 3, 2);
    assert_eq!(ks.len(), 1);
    let first = (ks[0].name.as_str(), ks[0].bindings[0]);
    assert_eq!(first, ("conv_dw", Buf::In(0)));
    insta::assert_snapshot!("conv_dw_storage", snapshot_text(&ks[0]));
}
