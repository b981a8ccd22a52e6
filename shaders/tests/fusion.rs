//! The fusion planner's groups on representative graphs, and the WGSL generated for them:
//! every fused module is naga-validated and snapshotted (insta), so a change to generated code
//! shows in review.

use sfumato_core::op::{BinaryOp, Conv2d, UnaryOp};
use sfumato_core::plan::{plan, Group, GroupKind, Plan, PlanOptions};
use sfumato_core::TargetProfile;
use sfumato_core::{DType, Graph, Op, Tensor, ValueId};
use sfumato_shaders::explain::explain;
use sfumato_shaders::{generate, validate, LowerOptions, Lowered};

fn c(g: &mut Graph, dims: &[usize], seed: u64) -> ValueId {
    g.constant(Tensor::random(DType::F32, dims.to_vec(), seed))
        .unwrap()
}

/// A target whose matmul order puts register blocks first (as on CPU adapters) but which reads
/// no operand through uniform blocks: the storage kernels of every family, in the snapshots.
fn register_blocks_first() -> LowerOptions {
    LowerOptions {
        target: TargetProfile {
            fast_workgroup_memory: false,
            ..TargetProfile::webgpu_gpu()
        },
        ..Default::default()
    }
}

/// Kinds of the groups that dispatch (constants and free views left out), and each module,
/// validated.
fn groups(g: &Graph) -> Vec<(GroupKind, String, String)> {
    let p = plan(g, &PlanOptions::default());
    let mut out = Vec::new();
    for group in &p.groups {
        let gk = generate(g, &p, group, &register_blocks_first()).unwrap();
        if let Lowered::Kernels(ks) = &gk.lowered {
            for k in ks {
                validate(&k.name, &k.wgsl).unwrap_or_else(|e| panic!("{}: {e}", gk.label));
                out.push((group.kind, gk.label.clone(), k.wgsl.clone()));
            }
        }
    }
    out
}

fn bert_attention() -> Graph {
    // 2 heads x 128 queries: enough rows for the attention kernel (MIN_ATTENTION_ROWS).
    let (b, s, h, d) = (1usize, 128usize, 2usize, 4usize);
    let e = h * d;
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [b, s, e]);
    let mask = g.input("mask", DType::F32, [b, 1, 1, s]);
    let mut heads = Vec::new();
    for (i, perm) in [[0usize, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]]
        .iter()
        .enumerate()
    {
        let w = c(&mut g, &[e, e], i as u64);
        let bias = c(&mut g, &[e], 10 + i as u64);
        let y = g.matmul(x, w).unwrap();
        let y = g.add_(y, bias).unwrap();
        let y = g
            .reshape(y, &[b as i64, s as i64, h as i64, d as i64])
            .unwrap();
        heads.push(g.transpose(y, perm).unwrap());
    }
    let sc = g.matmul(heads[0], heads[1]).unwrap();
    let k = g
        .constant(Tensor::from_f64(DType::F32, [1], &[0.5]))
        .unwrap();
    let sc = g.mul(sc, k).unwrap();
    let sc = g.add_(sc, mask).unwrap();
    let p = g.softmax(sc, -1).unwrap();
    let o = g.matmul(p, heads[2]).unwrap();
    let o = g.transpose(o, &[0, 2, 1, 3]).unwrap();
    let o = g.reshape(o, &[b as i64, s as i64, e as i64]).unwrap();
    let wo = c(&mut g, &[e, e], 20);
    let bo = c(&mut g, &[e], 21);
    let y = g.matmul(o, wo).unwrap();
    let y = g.add_(y, bo).unwrap();
    let y = g.add_(y, x).unwrap();
    let gamma = c(&mut g, &[e], 22);
    let beta = c(&mut g, &[e], 23);
    let y = g.layer_norm(y, gamma, Some(beta), -1, 1e-12).unwrap();
    let w1 = c(&mut g, &[e, 4 * e], 24);
    let b1 = c(&mut g, &[4 * e], 25);
    let f = g.matmul(y, w1).unwrap();
    let f = g.add_(f, b1).unwrap();
    let f = g.gelu(f).unwrap();
    g.set_outputs(&[f]).unwrap();
    g
}

#[test]
fn bert_attention_block_plans_to_few_kernels() {
    let g = bert_attention();
    let gs = groups(&g);
    let labels: Vec<&str> = gs.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        labels,
        [
            "MatMul+Add",
            "MatMul+Add",
            "MatMul+Add",
            "MatMul+Mul+Add+Softmax+MatMul+Transpose",
            "MatMul+Add+Add",
            "LayerNorm",
            "MatMul+Add+Gelu"
        ]
    );
    let by_label = |l: &str| gs.iter().find(|x| x.1 == l).unwrap().2.clone();
    insta::assert_snapshot!(
        "fused_attention",
        by_label("MatMul+Mul+Add+Softmax+MatMul+Transpose")
    );
    // On a CPU adapter the attention reads K and V from uniform bindings (one block here).
    let p = plan(&g, &PlanOptions::default());
    let cpu = LowerOptions {
        target: TargetProfile::llvmpipe().with_loop_budget(None),
        ..Default::default()
    };
    let att = p
        .groups
        .iter()
        .find(|gr| gr.kind == GroupKind::Attention)
        .unwrap();
    let Lowered::Kernels(ks) = generate(&g, &p, att, &cpu).unwrap().lowered else {
        panic!("the attention is a kernel");
    };
    assert_eq!(ks.len(), 1);
    assert_eq!(ks[0].name, "attention_ubo");
    validate(&ks[0].name, &ks[0].wgsl).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("fused_attention_ubo", ks[0].wgsl.clone());
    insta::assert_snapshot!("fused_matmul_bias_residual", by_label("MatMul+Add+Add"));
    insta::assert_snapshot!("fused_matmul_bias_gelu", by_label("MatMul+Add+Gelu"));
    // Unfused, every op is a kernel (reshapes alias).
    let unfused = plan(
        &g,
        &PlanOptions {
            fuse: false,
            ..Default::default()
        },
    );
    let opts = register_blocks_first();
    let (_, fused_totals, _) = explain(&g, &plan(&g, &PlanOptions::default()), &opts).unwrap();
    let (_, unfused_totals, _) = explain(&g, &unfused, &opts).unwrap();
    assert_eq!(fused_totals.dispatches, 7);
    assert!(unfused_totals.dispatches >= 20, "{unfused_totals:?}");
    assert!(fused_totals.bytes_moved < unfused_totals.bytes_moved);
    assert!(fused_totals.peak_bytes <= unfused_totals.peak_bytes);
}

#[test]
fn elementwise_chain_with_broadcast_and_transposed_input_is_one_module() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 6]);
    let yt = g.input("yt", DType::F32, [6, 4]);
    let y = g.transpose(yt, &[1, 0]).unwrap();
    let bias = c(&mut g, &[6], 1);
    let a = g.add_(x, bias).unwrap();
    let m = g.mul(a, y).unwrap();
    let t = g.unary(UnaryOp::Tanh, m).unwrap();
    let s = g.add_(t, a).unwrap();
    g.set_outputs(&[s, a]).unwrap();
    let gs = groups(&g);
    assert_eq!(
        gs.len(),
        1,
        "{:?}",
        gs.iter().map(|x| &x.1).collect::<Vec<_>>()
    );
    assert_eq!(gs[0].0, GroupKind::Elementwise);
    insta::assert_snapshot!("fused_elementwise_chain", gs[0].2.clone());
}

#[test]
fn conv_bias_relu_residual_is_one_module() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, 8, 6, 6]);
    let w = c(&mut g, &[8, 8, 3, 3], 1);
    let b = c(&mut g, &[8, 1, 1], 2);
    let y = g
        .conv2d(
            x,
            w,
            None,
            Conv2d {
                padding: [1, 1, 1, 1],
                ..Default::default()
            },
        )
        .unwrap();
    let y = g.add_(y, b).unwrap();
    let y = g.add_(y, x).unwrap();
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    let gs = groups(&g);
    assert_eq!(gs.len(), 1);
    assert_eq!(gs[0].1, "Conv2d+Add+Add+Relu");
    insta::assert_snapshot!("fused_conv_epilogue", gs[0].2.clone());
}

#[test]
fn layer_norm_takes_its_residual_prologue_and_softmax_its_epilogue() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 16]);
    let r = g.input("r", DType::F32, [4, 16]);
    let s = g.add_(x, r).unwrap();
    let gamma = c(&mut g, &[16], 1);
    let y = g.layer_norm(s, gamma, None, -1, 1e-5).unwrap();
    let p = g.softmax(y, -1).unwrap();
    let k = g
        .constant(Tensor::from_f64(DType::F32, [1], &[2.0]))
        .unwrap();
    let p = g.mul(p, k).unwrap();
    g.set_outputs(&[p]).unwrap();
    let gs = groups(&g);
    let labels: Vec<&str> = gs.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(labels, ["Add+LayerNorm", "Softmax+Mul"]);
    insta::assert_snapshot!("fused_layernorm_prologue", gs[0].2.clone());
}

#[test]
fn a_value_read_elsewhere_is_not_swallowed_by_an_anchor() {
    // The matmul output is also a graph output: the epilogue may not hide it.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 8]);
    let w = c(&mut g, &[8, 8], 1);
    let y = g.matmul(x, w).unwrap();
    let r = g.relu(y).unwrap();
    g.set_outputs(&[y, r]).unwrap();
    let gs = groups(&g);
    let labels: Vec<&str> = gs.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(labels, ["MatMul", "Relu"]);
}

#[test]
fn buffer_budget_limits_fusion() {
    // Eight distinct side inputs cannot all join one kernel under a budget of 8 bindings.
    let mut g = Graph::new();
    let mut v = g.input("x", DType::F32, [16]);
    for i in 0..8 {
        let s = g.input(&format!("s{i}"), DType::F32, [16]);
        v = g.add_(v, s).unwrap();
    }
    g.set_outputs(&[v]).unwrap();
    let p = plan(
        &g,
        &PlanOptions {
            fuse: true,
            max_storage_buffers: 8,
        },
    );
    assert!(p.groups.len() >= 2);
    for group in &p.groups {
        let gk = generate(&g, &p, group, &LowerOptions::default()).unwrap();
        if let Lowered::Kernels(ks) = &gk.lowered {
            for k in ks {
                assert!(
                    k.bindings.len() < 8,
                    "{} binds {}",
                    gk.label,
                    k.bindings.len()
                );
            }
        }
    }
}

#[test]
fn decode_step_attention_stays_on_the_matmul_kernels() {
    // One query row per head (a decode step): too few rows for the attention kernel.
    let mut g = Graph::new();
    let q = g.input("q", DType::F32, [1, 12, 1, 64]);
    let k = g.input("k", DType::F32, [1, 12, 64, 129]);
    let v = g.input("v", DType::F32, [1, 12, 129, 64]);
    let s = g.matmul(q, k).unwrap();
    let p = g.softmax(s, -1).unwrap();
    let o = g.matmul(p, v).unwrap();
    g.set_outputs(&[o]).unwrap();
    let kinds: Vec<GroupKind> = groups(&g).iter().map(|x| x.0).collect();
    assert_eq!(
        kinds,
        [GroupKind::Matmul, GroupKind::Softmax, GroupKind::Matmul]
    );
}

/// A decode step over a long cache (one query row per head, 1,025 keys) fuses into the
/// split-keys kernel: K and V through the staging texture's layers 0 and 1 on a CPU adapter,
/// from storage elsewhere, and with the strided loaders where the head dim is not vec4.
#[test]
fn decode_step_over_a_long_cache_splits_the_keys() {
    use sfumato_shaders::Buf;
    let build = |d: usize| {
        let mut g = Graph::new();
        let q = g.input("q", DType::F32, [1, 16, 1, d]);
        let k = g.input("k", DType::F32, [1, 16, 1025, d]);
        let v = g.input("v", DType::F32, [1, 16, 1025, d]);
        let mask = g.input("mask", DType::F32, [1, 1, 1, 1025]);
        let kt = g.transpose(k, &[0, 1, 3, 2]).unwrap();
        let s = g.matmul(q, kt).unwrap();
        let s = g.add_(s, mask).unwrap();
        let p = g.softmax(s, -1).unwrap();
        let o = g.matmul(p, v).unwrap();
        g.set_outputs(&[o]).unwrap();
        g
    };
    let kernel = |g: &Graph, target: TargetProfile| {
        let p = plan(g, &PlanOptions::default());
        let att = p
            .groups
            .iter()
            .find(|gr| gr.kind == GroupKind::Attention)
            .expect("an attention group");
        let opts = LowerOptions {
            target,
            ..Default::default()
        };
        let Lowered::Kernels(ks) = generate(g, &p, att, &opts).unwrap().lowered else {
            panic!("the attention is a kernel");
        };
        assert_eq!(ks.len(), 1);
        validate(&ks[0].name, &ks[0].wgsl).unwrap_or_else(|e| panic!("{e}"));
        ks[0].clone()
    };
    let g = build(64);
    let gpu = kernel(&g, TargetProfile::webgpu_gpu());
    assert_eq!(gpu.name, "attention_decode");
    assert_eq!(gpu.workgroups, [16, 1, 1]);
    let cpu = kernel(&g, TargetProfile::llvmpipe());
    assert_eq!(cpu.name, "attention_decode_tex");
    let texels = 16 * 1025 * 64 / 4;
    assert_eq!(
        cpu.bindings[1..3],
        [
            Buf::StageLinear {
                input: 1,
                texels,
                layer: 0
            },
            Buf::StageLinear {
                input: 2,
                texels,
                layer: 1
            }
        ]
    );
    insta::assert_snapshot!("attention_decode", gpu.wgsl);
    insta::assert_snapshot!("attention_decode_tex", cpu.wgsl);
    let odd = kernel(&build(6), TargetProfile::llvmpipe());
    assert_eq!(odd.name, "attention_decode");
}

#[test]
fn variance_reduces_the_squared_difference_in_its_prologue() {
    use sfumato_core::op::{BinaryOp, ReduceOp};
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 16]);
    let m = g.reduce(ReduceOp::Mean, x, &[-1], true).unwrap();
    let d = g.binary(BinaryOp::Sub, x, m).unwrap();
    let sq = g.mul(d, d).unwrap();
    let v = g.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
    g.set_outputs(&[v]).unwrap();
    let gs = groups(&g);
    let labels: Vec<&str> = gs.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(labels, ["ReduceMean", "Sub+Mul+ReduceMean"]);
    assert_eq!(gs[1].0, GroupKind::Reduce);
    insta::assert_snapshot!("fused_variance", gs[1].2.clone());
}

/// A long elementwise chain is one valid module whatever its node ids: node 16 or 32 once
/// generated a WGSL function named `f16`/`f32`, which naga refused (found by the ONNX
/// conformance suite's expanded attention models).
#[test]
fn long_elementwise_chains_name_their_functions_apart_from_types() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [4, 8]);
    let mut y = x;
    for i in 0..40 {
        y = if i % 2 == 0 {
            g.unary(UnaryOp::Tanh, y).unwrap()
        } else {
            g.add_(y, x).unwrap()
        };
    }
    g.set_outputs(&[y]).unwrap();
    let gs = groups(&g);
    assert_eq!(gs.len(), 1, "one fused kernel");
    assert!(gs[0].2.contains("fn node_32("), "{}", gs[0].2);
}

/// A matmul whose epilogue reads a transposed residual (a view walk per store): the variant the
/// autotuner chose fits the loop budget on its own but not with its 256 stores' epilogue, so the
/// group takes the next candidate that fits (here the one-output kernel), never one over it.
#[test]
fn an_epilogue_over_the_loop_budget_takes_another_variant() {
    let (m, k, n) = (16usize, 1024usize, 16usize);
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [m, k]);
    let w = g.input("w", DType::F32, [k, n]);
    let r = g.input("r", DType::F32, [n, m]);
    let rt = g.transpose(r, &[1, 0]).unwrap();
    let y = g.matmul(a, w).unwrap();
    let y = g.add_(y, rt).unwrap();
    g.set_outputs(&[y]).unwrap();
    let p = plan(&g, &PlanOptions::default());
    let group = p
        .groups
        .iter()
        .find(|gr| gr.kind == GroupKind::Matmul)
        .expect("a matmul group");
    assert!(group.nodes.len() >= 2, "the residual is fused");
    let v = sfumato_shaders::MatmulVariant::V4 {
        rows: 16,
        cols4: 4,
        wg_x: 8,
        wg_y: 8,
    };
    let prob =
        sfumato_shaders::group_matmul_problem(&g, &p, group, &LowerOptions::default()).unwrap();
    let alone = v.loop_trips(&prob, 0);
    let budget = alone + 64;
    let opts = LowerOptions {
        matmul: Some(v),
        target: TargetProfile {
            loop_budget: Some(budget),
            ..Default::default()
        },
    };
    let gk = generate(&g, &p, group, &opts).unwrap();
    let Lowered::Kernels(ks) = &gk.lowered else {
        panic!("no kernels")
    };
    assert_ne!(ks[0].name, v.name());
    assert!(
        ks[0].loop_trips < budget,
        "{} {}",
        ks[0].name,
        ks[0].loop_trips
    );
    // Unbudgeted, the chosen variant is kept.
    let free = LowerOptions {
        matmul: Some(v),
        ..Default::default()
    };
    let gk = generate(&g, &p, group, &free).unwrap();
    let Lowered::Kernels(ks) = &gk.lowered else {
        panic!("no kernels")
    };
    assert_eq!(ks[0].name, v.name());
}

/// Attention over 12,000 keys of head dim 8 (K and V fit 12 uniform blocks): on a CPU adapter
/// with no loop budget it lowers to `attention_ubo`, whose chunks cost more loop ends a key; under
/// llvmpipe's budget that kernel is over it and the storage-buffer `attention` (one loop end a key)
/// runs instead. (`device-wgpu/tests/loop_budget.rs` runs this shape on lavapipe.)
#[test]
fn attention_ubo_over_the_loop_budget_falls_back() {
    let (sq, sk, d) = (256usize, 12_000usize, 8usize);
    let mut g = Graph::new();
    let q = g.input("q", DType::F32, [1, 1, sq, d]);
    let k = g.input("k", DType::F32, [1, 1, sk, d]);
    let v = g.input("v", DType::F32, [1, 1, sk, d]);
    let kt = g.transpose(k, &[0, 1, 3, 2]).unwrap();
    let s = g.matmul(q, kt).unwrap();
    let c = g.constant(Tensor::scalar_f32(0.25)).unwrap();
    let s = g.mul(s, c).unwrap();
    let p = g.softmax(s, -1).unwrap();
    let y = g.matmul(p, v).unwrap();
    g.set_outputs(&[y]).unwrap();
    let pl = plan(&g, &PlanOptions::default());
    let group = pl
        .groups
        .iter()
        .find(|gr| gr.kind == GroupKind::Attention)
        .expect("an attention group");
    let kernel = |budget: Option<u64>| {
        let opts = LowerOptions {
            target: TargetProfile {
                loop_budget: budget,
                ..TargetProfile::llvmpipe()
            },
            ..Default::default()
        };
        let gk = generate(&g, &pl, group, &opts).unwrap();
        let Lowered::Kernels(ks) = gk.lowered else {
            panic!("no kernels")
        };
        (ks[0].name.clone(), ks[0].loop_trips)
    };
    let (free, trips) = kernel(None);
    assert_eq!(free, "attention_ubo");
    let budget = sfumato_shaders::loops::LLVMPIPE_LOOP_BUDGET;
    assert!(trips >= budget, "attention_ubo makes {trips}");
    let (capped, trips) = kernel(Some(budget));
    assert_eq!(capped, "attention");
    assert!(trips < budget);
}

/// A conv of 64 channels to `o` through a `k` x `k` window (padded to keep the size) over an
/// `hw` x `hw` image, with a ReLU after where `relu`, and its plan.
fn one_conv(o: usize, k: usize, hw: usize, relu: bool) -> (Graph, Plan) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1, 64, hw, hw]);
    let w = c(&mut g, &[o, 64, k, k], 1);
    let conv = Conv2d {
        padding: [k / 2; 4],
        ..Default::default()
    };
    let mut y = g.conv2d(x, w, None, conv).unwrap();
    if relu {
        y = g.relu(y).unwrap();
    }
    g.set_outputs(&[y]).unwrap();
    let p = plan(&g, &PlanOptions::default());
    (g, p)
}

/// The conv group of `p`.
fn conv_group(p: &Plan) -> &Group {
    p.groups
        .iter()
        .find(|gr| gr.kind == GroupKind::Conv)
        .expect("a conv group")
}

/// Which kernels a conv of `o` output channels from 64 (a `k` x `k` window at 56x56) runs under
/// `target`, each validated.
fn conv_kernels(o: usize, k: usize, target: TargetProfile) -> Vec<String> {
    let (g, p) = one_conv(o, k, 56, false);
    let group = conv_group(&p);
    let opts = LowerOptions {
        target,
        ..Default::default()
    };
    let Lowered::Kernels(ks) = generate(&g, &p, group, &opts).unwrap().lowered else {
        panic!("no kernels")
    };
    for k in &ks {
        validate(&k.name, &k.wgsl).unwrap();
    }
    ks.into_iter().map(|k| k.name).collect()
}

/// On lavapipe's profile a 3x3 conv of up to `implicit_conv_max_out` (128) output channels runs
/// `conv2d_ubo`, gathering its image column, and past it stages the column (`conv_stage`, then
/// the `ubo` matmul); a 1x1 conv keeps its own path whatever its width; another CPU adapter's
/// profile (`implicit_conv_max_out` 0: SwiftShader lost its GPU process on the gathered conv)
/// stages them all.
#[test]
fn narrow_convs_gather_their_column_on_lavapipe_only() {
    let lavapipe = TargetProfile::llvmpipe;
    assert_eq!(lavapipe().implicit_conv_max_out, 128);
    assert_eq!(TargetProfile::cpu_adapter().implicit_conv_max_out, 0);
    assert_eq!(TargetProfile::webgpu_gpu().implicit_conv_max_out, 0);
    for o in [48, 64, 128] {
        assert_eq!(
            conv_kernels(o, 3, lavapipe()),
            ["conv2d_ubo"],
            "{o} channels"
        );
        let other = conv_kernels(o, 3, TargetProfile::cpu_adapter());
        assert_eq!(other[0], "conv_stage", "{o} channels: {other:?}");
    }
    for o in [144, 256] {
        let ks = conv_kernels(o, 3, lavapipe());
        assert_eq!(ks[0], "conv_stage", "{o} channels: {ks:?}");
        assert!(ks[1..].iter().all(|k| k == "conv2d_staged"), "{ks:?}");
    }
    // A 1x1 conv: the image copied to the staging texture, no column, no gather.
    let ks = conv_kernels(64, 1, lavapipe());
    assert!(ks.iter().all(|k| k == "conv2d_staged"), "{ks:?}");
}

/// A staged conv (lavapipe's profile) is a matmul shape class of its own for the autotuner
/// (marked `S`, only `ubo` blocks its candidates, the measured default first), and its lowering
/// takes the block the device chose; a GPU's profile keeps the conv off that path.
#[test]
fn staged_conv_is_tuned_as_its_own_class_and_takes_the_chosen_block() {
    // 256 output channels: on lavapipe up to `implicit_conv_max_out` (128) a 3x3 conv runs
    // `conv2d_ubo`.
    let (g, p) = one_conv(256, 3, 28, true);
    let group = conv_group(&p);
    let lavapipe = LowerOptions {
        target: TargetProfile::llvmpipe(),
        ..Default::default()
    };
    let prob = sfumato_shaders::group_matmul_problem(&g, &p, group, &lavapipe)
        .expect("a staged conv's problem");
    assert!(prob.staged_conv);
    assert_eq!((prob.m, prob.n, prob.k), (256, 784, 576));
    assert!(prob.shape_class().ends_with('S'), "{}", prob.shape_class());
    let cands = sfumato_shaders::MatmulVariant::candidates(&prob, &lavapipe.target);
    assert!(cands.len() >= 4, "{cands:?}");
    assert!(cands
        .iter()
        .all(|v| matches!(v, sfumato_shaders::MatmulVariant::Ubo { .. })));
    // The default block (16 x 8 pixels, 8 invocations) first: what runs before tuning.
    assert_eq!(cands[0].name(), "matmul_ubo_16x8_wg8");
    let staged_wgsl = |opts: &LowerOptions| -> String {
        let Lowered::Kernels(ks) = generate(&g, &p, group, opts).unwrap().lowered else {
            panic!("no kernels")
        };
        assert_eq!(ks[0].name, "conv_stage");
        ks[1].wgsl.clone()
    };
    assert!(staged_wgsl(&lavapipe).contains("Workgroup 8x1, tile 16x64."));
    for v in &cands[1..] {
        let sfumato_shaders::MatmulVariant::Ubo { rows, cols4, wg_x } = *v else {
            unreachable!()
        };
        let chosen = LowerOptions {
            matmul: Some(*v),
            ..lavapipe.clone()
        };
        let wgsl = staged_wgsl(&chosen);
        let tile = format!(
            "Workgroup {wg_x}x1, tile {rows}x{}.",
            cols4 as u32 * 4 * wg_x as u32
        );
        assert!(wgsl.contains(&tile), "{v:?}: no '{tile}'");
        validate("conv2d_staged", &wgsl).unwrap();
    }
    // On a GPU's profile the conv is not staged: no such class.
    let gpu = LowerOptions::default();
    assert!(sfumato_shaders::group_matmul_problem(&g, &p, group, &gpu).is_none());
}

/// The requantisation QLinearMatMul and QLinearConv import after their integer product:
/// cast to f32, times one multiplier per column or channel (`a_scale * b_scale / y_scale`),
/// rounded, shifted by the output's zero point, clamped and cast to u8. Returns the groups.
fn requantised(
    int_product: impl Fn(&mut Graph, ValueId, ValueId) -> ValueId,
    x: &[usize],
    w: &[usize],
    per: &[usize],
) -> Vec<(GroupKind, String, String)> {
    let mut g = Graph::new();
    let a = g.input("a", DType::U8, x.to_vec());
    let n: usize = w.iter().product();
    let w = g
        .constant(Tensor::from_f64(
            DType::I8,
            w.to_vec(),
            &(0..n).map(|i| (i % 251) as f64 - 125.0).collect::<Vec<_>>(),
        ))
        .unwrap();
    let ai = g.cast(a, DType::I32).unwrap();
    let za = g
        .constant(Tensor::from_f64(DType::I32, [], &[3.0]))
        .unwrap();
    let ai = g.binary(BinaryOp::Sub, ai, za).unwrap();
    let wi = g.cast(w, DType::I32).unwrap();
    let p = int_product(&mut g, ai, wi);
    let pf = g.cast(p, DType::F32).unwrap();
    let mult = c(&mut g, per, 7);
    let y = g.binary(BinaryOp::Mul, pf, mult).unwrap();
    let zy = g
        .constant(Tensor::from_f64(DType::F32, [], &[128.0]))
        .unwrap();
    let q = g.unary(UnaryOp::Round, y).unwrap();
    let q = g.binary(BinaryOp::Add, q, zy).unwrap();
    let q = g
        .unary(
            UnaryOp::Clip {
                min: 0.0,
                max: 255.0,
            },
            q,
        )
        .unwrap();
    let q = g.cast(q, DType::U8).unwrap();
    g.set_outputs(&[q]).unwrap();
    groups(&g)
}

/// The requantisation is the integer matmul's and the integer conv's epilogue: one kernel
/// each, whose store is typed by the u8 result (u32 on the device).
#[test]
fn requantisation_is_the_integer_products_epilogue() {
    let mm = requantised(
        |g, a, w| g.add(Op::MatMulInteger, &[a, w]).unwrap()[0],
        &[8, 64],
        &[64, 12],
        &[1, 12],
    );
    let conv = requantised(
        |g, a, w| {
            g.add(Op::ConvInteger(Conv2d::padded(1, 1)), &[a, w])
                .unwrap()[0]
        },
        &[1, 8, 6, 6],
        &[16, 8, 3, 3],
        &[1, 16, 1, 1],
    );
    for (gs, kind, label, snap) in [
        (
            &mm,
            GroupKind::Matmul,
            "MatMulInteger+Cast+Mul+Round+Add+Clip+Cast",
            "fused_matmul_int_requantise",
        ),
        (
            &conv,
            GroupKind::Conv,
            "ConvInteger+Cast+Mul+Round+Add+Clip+Cast",
            "fused_conv_int_requantise",
        ),
    ] {
        let anchored: Vec<_> = gs.iter().filter(|x| x.0 == kind).collect();
        assert_eq!(anchored.len(), 1, "{gs:?}");
        assert_eq!(anchored[0].1, label, "the requantisation is the epilogue");
        assert!(anchored[0]
            .2
            .contains("var<storage, read_write> out0: array<u32>"));
        insta::assert_snapshot!(snap, anchored[0].2.clone());
    }
    // The same kernel reading a B packed four i8 to a word (a constant weight whose values fit
    // in i8): only B's declaration and `b_vec` change; and with A packed too.
    let wgsl = mm
        .iter()
        .find(|x| x.0 == GroupKind::Matmul)
        .unwrap()
        .2
        .clone();
    let k = |name: &str| sfumato_shaders::Kernel {
        name: name.into(),
        wgsl: wgsl.clone(),
        bindings: Vec::new(),
        params: Vec::new(),
        workgroups: [1, 1, 1],
        loop_trips: 0,
    };
    use sfumato_shaders::packed::{pack_int8, packable};
    let packed = pack_int8(&k("matmul_int_v4"), &[1])
        .unwrap()
        .expect("a matmul_int_v4 kernel packs");
    assert_eq!(packed.name, "matmul_int_v4_i8");
    assert!(packed.wgsl.contains("var<storage, read> bm: array<u32>;"));
    assert!(packed.wgsl.contains("return unpack4xI8(bm[i]);"));
    insta::assert_snapshot!("fused_matmul_int_requantise_packed", packed.wgsl);
    let both = pack_int8(&k("matmul_int_v4"), &[0, 1]).unwrap().unwrap();
    assert!(both.wgsl.contains("var<storage, read> a: array<u32>;"));
    assert!(both.wgsl.contains("return unpack4xI8(a[i]);"));
    for (name, which) in [("matmul_int", &[1][..]), ("matmul_int_v4", &[])] {
        assert!(pack_int8(&k(name), which).unwrap().is_none());
    }
    // The matmul's operands need `unpack4xI8`; without it nothing of it is packable.
    assert!(packable(&k("matmul_int_v4"), 0, true) && !packable(&k("matmul_int_v4"), 0, false));
    assert!(!packable(&k("matmul_int_v4"), 2, true));
    // The integer conv's weight (binding 1), sign-extended by `extractBits` on any adapter; its
    // image stays i32.
    let conv_kernel = conv
        .iter()
        .find(|x| x.0 == GroupKind::Conv)
        .unwrap()
        .2
        .clone();
    let conv_k = sfumato_shaders::Kernel {
        wgsl: conv_kernel,
        ..k("conv2d_int")
    };
    assert!(packable(&conv_k, 1, false) && !packable(&conv_k, 0, true));
    let packed = pack_int8(&conv_k, &[1]).unwrap().expect("conv2d_int packs");
    assert_eq!(packed.name, "conv2d_int_i8");
    assert!(packed.wgsl.contains("var<storage, read> w: array<u32>;"));
    assert!(packed.wgsl.contains("extractBits(bitcast<i32>(w[i >> 2u])"));
    insta::assert_snapshot!("fused_conv_int_requantise_packed", packed.wgsl);
    assert!(
        pack_int8(&conv_k, &[0]).is_err(),
        "the image has no packed form"
    );
}
