//! The built-in models: each builds with the documented inputs, outputs and op structure, and
//! runs on the CPU reference to finite outputs (at reduced sizes, to keep the f64 reference fast).

use sfumato_core::device::check_inputs;
use sfumato_core::{CpuDevice, Device, Graph, Op, Tensor};
use sfumato_zoo::models::{
    self, by_name, by_name_with, flops, ModelOptions, MASKED, MODELS, REGISTRY,
};

fn opts(f: impl FnOnce(&mut ModelOptions)) -> ModelOptions {
    let mut o = ModelOptions::default();
    f(&mut o);
    o
}

/// `(name, dims)` of the graph's inputs.
fn input_sig(g: &Graph) -> Vec<(String, Vec<usize>)> {
    g.inputs()
        .iter()
        .map(|&v| (g.value(v).name.clone(), g.shape(v).0.clone()))
        .collect()
}

/// `(name, dims)` of the graph's outputs.
fn output_sig(g: &Graph) -> Vec<(String, Vec<usize>)> {
    g.outputs()
        .iter()
        .map(|&v| (g.value(v).name.clone(), g.shape(v).0.clone()))
        .collect()
}

/// The graph's op names in order, constants left out.
fn op_names(g: &Graph) -> Vec<&'static str> {
    g.nodes()
        .iter()
        .filter(|n| !matches!(n.op, Op::Constant(_)))
        .map(|n| n.op.name())
        .collect()
}

/// The perms of the graph's transposes, in order.
fn perms(g: &Graph) -> Vec<Vec<usize>> {
    g.nodes()
        .iter()
        .filter_map(|n| match &n.op {
            Op::Transpose { perm } => Some(perm.clone()),
            _ => None,
        })
        .collect()
}

fn run_cpu(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    CpuDevice
        .run(g, inputs)
        .expect("runs on the CPU reference")
        .outputs
}

fn assert_finite(name: &str, t: &Tensor) {
    let bad = t.to_f64_vec().iter().filter(|x| !x.is_finite()).count();
    assert_eq!(bad, 0, "{name}: {bad} non-finite values in {}", t.summary());
}

/// One post-LN BERT layer exactly as PyTorch exports it (constants left out).
const BERT_LAYER_OPS: &[&str] = &[
    "MatMul",
    "Add",
    "MatMul",
    "Add",
    "MatMul",
    "Add",
    "Reshape",
    "Transpose",
    "Reshape",
    "Transpose",
    "Reshape",
    "Transpose",
    "MatMul",
    "Mul",
    "Add",
    "Softmax",
    "MatMul",
    "Transpose",
    "Reshape",
    "MatMul",
    "Add",
    "Add",
    "LayerNorm",
    "MatMul",
    "Add",
    "Gelu",
    "MatMul",
    "Add",
    "Add",
    "LayerNorm",
];

#[test]
fn registry_lists_every_model_and_each_builds_with_defaults() {
    let names: Vec<&str> = REGISTRY.iter().map(|s| s.name).collect();
    assert_eq!(names, MODELS);
    assert_eq!(MODELS[0], "mlp", "the CLI's error text lists mlp first");
    for name in MODELS {
        let d = models::default_options(name).unwrap();
        let (g, inputs) = by_name_with(name, &d).unwrap();
        check_inputs(&g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!g.outputs().is_empty(), "{name}");
        let f = flops(name, &d).unwrap();
        assert!(f > 0.0, "{name}: {f} FLOPs");
        // The registry's count agrees with one taken from the graph's shapes.
        let counted = models::graph_flops(&g);
        assert!(
            (counted / f - 1.0).abs() < 0.02,
            "{name}: registry {f} FLOPs, graph {counted}"
        );
    }
}

#[test]
fn unknown_model_and_bad_options_are_errors() {
    let err = by_name("nosuchmodel", 1).unwrap_err().to_string();
    for name in [
        "nosuchmodel",
        "known models: mlp",
        "bert-base",
        "gpt2-decode",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert!(flops("nosuchmodel", &ModelOptions::default()).is_err());
    for name in MODELS {
        let err = by_name(name, 0).unwrap_err().to_string();
        assert!(err.contains("batch"), "{name}: {err}");
    }
    for spec in REGISTRY {
        let two = ModelOptions {
            layers: 2,
            ..spec.defaults
        };
        let (built, counted) = (by_name_with(spec.name, &two), flops(spec.name, &two));
        assert_eq!(built.is_err(), spec.single_block, "{}", spec.name);
        assert_eq!(counted.is_err(), spec.single_block, "{}", spec.name);
        if let Err(e) = built {
            assert!(e.to_string().contains("layers"), "{}: {e}", spec.name);
        }
    }
    let single: Vec<&str> = REGISTRY
        .iter()
        .filter(|s| s.single_block)
        .map(|s| s.name)
        .collect();
    assert_eq!(
        single,
        [
            "mlp",
            "gpt2-decode",
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "yolov5n",
            "yolov5s",
            "efficientnet-lite0"
        ]
    );
    assert!(by_name_with("bert-base", &opts(|o| o.seq = 0)).is_err());
    assert!(by_name_with("resnet-bottleneck", &opts(|o| o.size = 0)).is_err());
}

#[test]
fn mlp_is_unchanged_through_by_name() {
    let (g, inputs) = by_name("mlp", 3).unwrap();
    let (g2, inputs2) = models::mlp(3).unwrap();
    assert_eq!(input_sig(&g), vec![("x".into(), vec![3, 784])]);
    assert_eq!(inputs, inputs2);
    assert_eq!(op_names(&g), op_names(&g2));
    let y = &run_cpu(&g, &inputs)[0];
    assert_eq!(y.dims(), &[3, 10]);
    assert_eq!(
        flops("mlp", &opts(|o| o.batch = 3)).unwrap(),
        2.0 * 3.0 * (784.0 * 256.0 + 256.0 * 128.0 + 128.0 * 10.0)
    );
}

#[test]
fn bert_base_has_the_exported_op_structure_per_layer() {
    let o = opts(|o| {
        o.batch = 2;
        o.layers = 2;
        o.seq = 8;
    });
    let (g, inputs) = models::bert_base(&o).unwrap();
    assert_eq!(
        input_sig(&g),
        vec![
            ("hidden".into(), vec![2, 8, 768]),
            ("mask".into(), vec![2, 1, 1, 8]),
        ]
    );
    assert_eq!(
        output_sig(&g),
        vec![("last_hidden_state".into(), vec![2, 8, 768])]
    );
    check_inputs(&g, &inputs).unwrap();
    assert_eq!(op_names(&g), BERT_LAYER_OPS.repeat(2));
    let layer_perms = vec![
        vec![0, 2, 1, 3],
        vec![0, 2, 3, 1],
        vec![0, 2, 1, 3],
        vec![0, 2, 1, 3],
    ];
    assert_eq!(perms(&g), [layer_perms.clone(), layer_perms].concat());

    // The attention scale is a scalar constant 0.125 (rank 0 or [1]), the mask is added after it.
    for n in g.nodes().iter().filter(|n| matches!(n.op, Op::Binary(_))) {
        if n.op.name() != "Mul" {
            continue;
        }
        let c = g.value(n.inputs[1]).producer.map(|p| &g.node(p).op);
        match c {
            Some(Op::Constant(t)) => {
                assert!(t.numel() == 1 && t.dims().len() <= 1, "{}", t.summary());
                assert_eq!(t.to_f64_vec(), vec![0.125]);
            }
            other => panic!("Mul's second input is not a constant: {other:?}"),
        }
    }
    // Weights have the documented shapes: Wq [768, 768], W1 [768, 3072], W2 [3072, 768].
    let weight_dims: Vec<Vec<usize>> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::MatMul))
        .filter_map(
            |n| match &g.value(n.inputs[1]).producer.map(|p| &g.node(p).op) {
                Some(Op::Constant(t)) => Some(t.dims().to_vec()),
                _ => None,
            },
        )
        .collect();
    let per_layer = vec![
        vec![768, 768],
        vec![768, 768],
        vec![768, 768],
        vec![768, 768],
        vec![768, 3072],
        vec![3072, 768],
    ];
    assert_eq!(weight_dims, [per_layer.clone(), per_layer].concat());
    // LayerNorms use eps 1e-12 over the last axis.
    for n in g.nodes() {
        if let Op::LayerNorm { axis, epsilon } = n.op {
            assert_eq!((axis, epsilon), (2, 1e-12));
        }
    }
}

#[test]
fn bert_base_mask_pads_the_last_positions() {
    let (_, inputs) = models::bert_base(&opts(|o| o.batch = 2)).unwrap();
    let m = inputs[1].to_f64_vec();
    for (row, r) in m.chunks(128).enumerate() {
        let masked = r.iter().filter(|&&v| v == MASKED as f64).count();
        let open = r.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(masked + open, 128);
        assert_eq!(masked, 16 + row, "row {row}");
        assert!(r[128 - masked..].iter().all(|&v| v == MASKED as f64));
    }
}

#[test]
fn bert_base_runs_on_cpu_and_ignores_masked_positions() {
    let o = opts(|o| o.seq = 16);
    let (g, inputs) = models::bert_base(&o).unwrap();
    let y = &run_cpu(&g, &inputs)[0];
    assert_eq!(y.dims(), &[1, 16, 768]);
    assert_finite("bert-base", y);
    // The output is layer-normed: each token's features have mean ~ 0 and spread ~ 1.
    let v = y.to_f64_vec();
    for (t, row) in v.chunks(768).enumerate() {
        let mean = row.iter().sum::<f64>() / 768.0;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 768.0;
        assert!(mean.abs() < 0.1, "token {t}: mean {mean}");
        assert!(
            (0.8..1.25).contains(&var.sqrt()),
            "token {t}: std {}",
            var.sqrt()
        );
    }

    // Changing a masked token's embedding leaves every unmasked token's output as it was.
    let mask = inputs[1].to_f64_vec();
    let masked = mask
        .iter()
        .position(|&m| m != 0.0)
        .expect("some tokens are masked");
    let mut hidden = inputs[0].to_f32_vec();
    for h in &mut hidden[masked * 768..(masked + 1) * 768] {
        *h = -*h + 0.5;
    }
    let changed = vec![
        Tensor::from_f32([1, 16, 768], hidden).unwrap(),
        inputs[1].clone(),
    ];
    let y2 = run_cpu(&g, &changed)[0].to_f64_vec();
    let open = &v[..masked * 768];
    let max_diff = open
        .iter()
        .zip(&y2[..masked * 768])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(max_diff < 1e-5, "unmasked tokens moved by {max_diff}");
    assert_ne!(v[masked * 768..], y2[masked * 768..]);
}

#[test]
fn resnet_bottleneck_shapes_and_cpu_run() {
    let (g, inputs) = by_name("resnet-bottleneck", 1).unwrap();
    assert_eq!(input_sig(&g), vec![("x".into(), vec![1, 256, 56, 56])]);
    assert_eq!(output_sig(&g), vec![("y".into(), vec![1, 256, 56, 56])]);
    check_inputs(&g, &inputs).unwrap();
    assert_eq!(
        op_names(&g),
        [
            "Conv2d",
            "BatchNorm",
            "Relu",
            "Conv2d",
            "BatchNorm",
            "Relu",
            "Conv2d",
            "BatchNorm",
            "Add",
            "Relu"
        ]
    );
    let convs: Vec<_> = g
        .nodes()
        .iter()
        .filter_map(|n| match n.op {
            Op::Conv2d(c) => Some((n.inputs.len(), g.shape(n.inputs[1]).0.clone(), c.padding)),
            _ => None,
        })
        .collect();
    assert_eq!(
        convs,
        vec![
            (2, vec![64, 256, 1, 1], [0; 4]),
            (2, vec![64, 64, 3, 3], [1; 4]),
            (2, vec![256, 64, 1, 1], [0; 4]),
        ]
    );

    // Run it at 14x14 (the f64 reference is slow at 56x56), two blocks deep.
    let small = opts(|o| {
        o.size = 14;
        o.layers = 2;
    });
    let (g, inputs) = by_name_with("resnet-bottleneck", &small).unwrap();
    assert_eq!(op_names(&g).len(), 20);
    let y = &run_cpu(&g, &inputs)[0];
    assert_eq!(y.dims(), &[1, 256, 14, 14]);
    assert_finite("resnet-bottleneck", y);
    let v = y.to_f64_vec();
    assert!(v.iter().all(|&x| x >= 0.0), "the block ends in Relu");
    assert!(v.iter().filter(|&&x| x > 0.0).count() > v.len() / 4);
}

#[test]
fn gpt2_decode_shapes_and_cpu_run_appends_to_the_cache() {
    let (g, inputs) = by_name("gpt2-decode", 1).unwrap();
    assert_eq!(
        input_sig(&g),
        vec![
            ("x".into(), vec![1, 1, 768]),
            ("past_k".into(), vec![1, 12, 128, 64]),
            ("past_v".into(), vec![1, 12, 128, 64]),
        ]
    );
    assert_eq!(
        output_sig(&g),
        vec![
            ("y".into(), vec![1, 1, 768]),
            ("k_all".into(), vec![1, 12, 129, 64]),
            ("v_all".into(), vec![1, 12, 129, 64]),
        ]
    );
    assert_eq!(
        op_names(&g),
        [
            "LayerNorm",
            "MatMul",
            "Add",
            "Split",
            "Reshape",
            "Transpose",
            "Reshape",
            "Transpose",
            "Reshape",
            "Transpose",
            "Concat",
            "Concat",
            "Transpose",
            "MatMul",
            "Mul",
            "Softmax",
            "MatMul",
            "Transpose",
            "Reshape",
            "MatMul",
            "Add",
            "Add",
            "LayerNorm",
            "MatMul",
            "Add",
            "GeluTanh",
            "MatMul",
            "Add",
            "Add"
        ]
    );
    assert_eq!(
        perms(&g),
        vec![
            vec![0, 2, 1, 3],
            vec![0, 2, 1, 3],
            vec![0, 2, 1, 3],
            vec![0, 1, 3, 2],
            vec![0, 2, 1, 3],
        ]
    );

    let out = run_cpu(&g, &inputs);
    assert_eq!(out.len(), 3);
    assert_finite("y", &out[0]);
    // Each head's cache keeps its 128 past rows and gains one new row.
    for (cache, past) in [(&out[1], &inputs[1]), (&out[2], &inputs[2])] {
        let (c, p) = (cache.to_f32_vec(), past.to_f32_vec());
        for head in 0..12 {
            let ch = &c[head * 129 * 64..(head + 1) * 129 * 64];
            assert_eq!(ch[..128 * 64], p[head * 128 * 64..(head + 1) * 128 * 64]);
            assert!(ch[128 * 64..].iter().all(|x| x.is_finite()));
        }
    }
    // The new key and value rows differ (k and v come from different weights).
    assert_ne!(
        out[1].to_f32_vec()[128 * 64..129 * 64],
        out[2].to_f32_vec()[128 * 64..129 * 64]
    );
}

#[test]
fn flops_follow_the_documented_formulas() {
    let d = ModelOptions::default();
    let bert =
        2.0 * 128.0 * (4.0 * 768.0 * 768.0 + 2.0 * 768.0 * 3072.0) + 4.0 * 128.0 * 128.0 * 768.0;
    assert_eq!(flops("bert-base", &d).unwrap(), bert);
    assert_eq!(
        flops(
            "bert-base",
            &opts(|o| {
                o.batch = 2;
                o.layers = 3;
            })
        )
        .unwrap(),
        6.0 * bert
    );
    let resnet = 2.0 * 56.0 * 56.0 * (256.0 * 64.0 + 9.0 * 64.0 * 64.0 + 64.0 * 256.0);
    assert_eq!(flops("resnet-bottleneck", &d).unwrap(), resnet);
    let gpt2 = 2.0 * (768.0 * 2304.0 + 768.0 * 768.0 + 2.0 * 768.0 * 3072.0) + 4.0 * 129.0 * 768.0;
    assert_eq!(flops("gpt2-decode", &d).unwrap(), gpt2);
    assert!(flops("gpt2-decode", &opts(|o| o.layers = 2)).is_err());
}
