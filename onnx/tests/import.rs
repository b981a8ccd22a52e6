//! The ONNX importer: models built here with the proto types, imported and run on the CPU
//! reference; every malformed or hostile input is an error, never a panic (proptest over
//! mutated and random bytes).

use proptest::prelude::*;
use prost::Message;
use sfumato_core::{CpuDevice, DType, Device, Tensor};
use sfumato_onnx::proto::*;
use sfumato_onnx::{import, tensor, Error, ImportOptions};

fn vi(name: &str, elem: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(v) => Dimension {
                                dim_value: Some(*v),
                                dim_param: None,
                            },
                            Err(p) => Dimension {
                                dim_value: None,
                                dim_param: Some(p.to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_node"),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    ins: Vec<ValueInfoProto>,
    outs: Vec<ValueInfoProto>,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "sfumato-tests".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: ins,
            output: outs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// y = relu(x @ W + b), x: [batch, 3] with a symbolic batch, W: [3, 2] (raw data), b: [2]
/// (float_data).
fn mlp_bytes() -> Vec<u8> {
    let w = tensor::to_proto(
        &Tensor::from_f32([3, 2], vec![1., -1., 2., 0.5, -3., 1.]).unwrap(),
        "W",
    );
    let b = TensorProto {
        dims: vec![2],
        data_type: data_type::FLOAT,
        name: "b".into(),
        float_data: vec![0.5, -0.25],
        ..Default::default()
    };
    model(
        vec![
            node("MatMul", &["x", "W"], &["xw"], vec![]),
            node("Add", &["xw", "b"], &["s"], vec![]),
            node("Relu", &["s"], &["y"], vec![]),
        ],
        vec![w, b],
        vec![vi("x", data_type::FLOAT, &[Err("batch"), Ok(3)])],
        vec![vi("y", data_type::FLOAT, &[Err("batch"), Ok(2)])],
    )
}

#[test]
fn a_small_model_imports_binds_its_symbolic_batch_and_runs() {
    let mut opts = ImportOptions::default();
    opts.dims.insert("batch".into(), 2);
    let m = import(&mlp_bytes(), &opts).unwrap();
    assert_eq!(m.inputs, ["x"]);
    assert_eq!(m.outputs, ["y"]);
    let x = Tensor::from_f32([2, 3], vec![1., 2., 3., -1., 0., 1.]).unwrap();
    let y = CpuDevice.run(&m.graph, &[x]).unwrap().outputs.remove(0);
    // Row 0: [1+4-9, -1+1+3] + b = [-4+0.5, 3-0.25] -> relu -> [0, 2.75].
    // Row 1: [-1+0-3, 1+0+1] + b = [-3.5, 1.75] -> [0, 1.75].
    assert_eq!(y.to_f32_vec(), vec![0.0, 2.75, 0.0, 1.75]);
    // Unbound, the symbolic dim is an error naming it.
    let e = import(&mlp_bytes(), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch"), "{e}");
}

#[test]
fn every_unsupported_op_is_listed_in_one_error() {
    let b = model(
        vec![
            node("Relu", &["x"], &["a"], vec![]),
            node("Unique", &["a"], &["b"], vec![]),
            node("Relu", &["b"], &["c"], vec![]),
            node("TopK", &["c", "c"], &["d"], vec![]),
            node("NonZero", &["d"], &["y"], vec![]),
        ],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(4)])],
        vec![vi("y", data_type::FLOAT, &[Ok(4)])],
    );
    match import(&b, &ImportOptions::default()) {
        Err(Error::UnsupportedOps(list)) => {
            let ops: Vec<&str> = list.iter().map(|u| u.op.as_str()).collect();
            assert_eq!(ops, ["Unique", "TopK", "NonZero"]);
            assert!(list.iter().all(|u| u.opset == 17 && !u.node.is_empty()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn undefined_cyclic_and_missing_references_are_errors() {
    // A cycle: a reads b, b reads a.
    let cyc = model(
        vec![
            node("Relu", &["b"], &["a"], vec![]),
            node("Relu", &["a"], &["b"], vec![]),
        ],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        vec![vi("b", data_type::FLOAT, &[Ok(2)])],
    );
    let e = import(&cyc, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("reads 'b'"), "{e}");
    // A missing initializer.
    let miss = model(
        vec![node("Add", &["x", "W"], &["y"], vec![])],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        vec![vi("y", data_type::FLOAT, &[Ok(2)])],
    );
    let e = import(&miss, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("'W'"), "{e}");
    // An output nothing makes.
    let dangling = model(
        vec![],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        vec![vi("z", data_type::FLOAT, &[Ok(2)])],
    );
    assert!(import(&dangling, &ImportOptions::default()).is_err());
}

#[test]
fn hostile_tensors_are_refused_before_allocating() {
    let init = |dims: Vec<i64>, raw: usize| TensorProto {
        dims,
        data_type: data_type::FLOAT,
        name: "W".into(),
        raw_data: vec![0; raw],
        ..Default::default()
    };
    for (t, what) in [
        (init(vec![-1, 4], 16), "negative"),
        (init(vec![1 << 40, 1 << 40], 16), "more than"),
        (init(vec![4, 4], 12), "needs 64 bytes"),
    ] {
        let b = model(
            vec![node("Relu", &["W"], &["y"], vec![])],
            vec![t],
            vec![],
            vec![vi("y", data_type::FLOAT, &[Ok(4)])],
        );
        let e = import(&b, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
    // A huge ConstantOfShape.
    let shape = tensor::to_proto(&Tensor::from_i64([2], vec![1 << 31, 1 << 31]).unwrap(), "s");
    let b = model(
        vec![node("ConstantOfShape", &["s"], &["y"], vec![])],
        vec![shape],
        vec![],
        vec![vi("y", data_type::FLOAT, &[Ok(1)])],
    );
    assert!(import(&b, &ImportOptions::default()).is_err());
    // A cubic Resize whose interpolation matrix would be huge: refused, not allocated.
    let sizes = tensor::to_proto(
        &Tensor::from_i64([2], vec![1, (1 << 20) - 1]).unwrap(),
        "sizes",
    );
    let mode = AttributeProto {
        name: "mode".into(),
        r#type: attr_type::STRING,
        s: b"cubic".to_vec(),
        ..Default::default()
    };
    let b = model(
        vec![node("Resize", &["x", "", "", "sizes"], &["y"], vec![mode])],
        vec![sizes],
        vec![vi("x", data_type::FLOAT, &[Ok(1), Ok(1 << 20)])],
        vec![vi("y", data_type::FLOAT, &[Ok(1), Ok((1 << 20) - 1)])],
    );
    let e = import(&b, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("interpolation matrix"), "{e}");
}

#[test]
fn external_data_is_read_and_paths_outside_the_model_dir_are_refused() {
    let dir = std::env::temp_dir().join(format!("sfumato-onnx-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals: Vec<f32> = vec![1.0, 2.0, 3.0, 4.0];
    let mut bytes = vec![0u8; 8];
    vals.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    std::fs::write(dir.join("w.bin"), &bytes).unwrap();
    let ext = |loc: &str, offset: &str| TensorProto {
        dims: vec![4],
        data_type: data_type::FLOAT,
        name: "W".into(),
        data_location: 1,
        external_data: vec![
            StringStringEntryProto {
                key: "location".into(),
                value: loc.into(),
            },
            StringStringEntryProto {
                key: "offset".into(),
                value: offset.into(),
            },
            StringStringEntryProto {
                key: "length".into(),
                value: "16".into(),
            },
        ],
        ..Default::default()
    };
    let mk = |t| {
        model(
            vec![node("Relu", &["W"], &["y"], vec![])],
            vec![t],
            vec![],
            vec![vi("y", data_type::FLOAT, &[Ok(4)])],
        )
    };
    let opts = ImportOptions {
        base_dir: Some(dir.clone()),
        ..Default::default()
    };
    let m = import(&mk(ext("w.bin", "8")), &opts).unwrap();
    let y = CpuDevice.run(&m.graph, &[]).unwrap().outputs.remove(0);
    assert_eq!(y.to_f32_vec(), vals);
    for (loc, off) in [
        ("../w.bin", "8"),
        ("/etc/passwd", "0"),
        ("w.bin", "16"),
        ("nope.bin", "0"),
    ] {
        assert!(import(&mk(ext(loc, off)), &opts).is_err(), "{loc} at {off}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

proptest! {
    // SFUMATO_FUZZ_CASES=N runs a longer fuzzing session (the README gives one's figures).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SFUMATO_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Flipped, truncated and inserted bytes of a valid model: an error or a model, never a
    /// panic.
    #[test]
    fn mutated_models_never_panic(seed in 0usize..3, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8), cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        // Seeds: the MLP, a Loop (unrolled at import) and a model of sequence ops with a
        // sequence input.
        let (mut b, mut opts) = match seed {
            0 => (mlp_bytes(), ImportOptions::default()),
            1 => (loop_model(3, "Add", false), ImportOptions::default()),
            _ => sequence_model(),
        };
        for (i, v, kind) in edits {
            let at = i.index(b.len());
            match kind {
                0 => b[at] = v,
                1 => b.insert(at, v),
                _ => { b.remove(at); }
            }
        }
        if truncate {
            b.truncate(cut.index(b.len() + 1));
        }
        opts.dims.insert("batch".into(), 2);
        if let Ok(m) = import(&b, &opts) {
            // Whatever imported must also run (or refuse) without panicking.
            let ins: Vec<Tensor> = m.graph.inputs().iter().map(|&v| Tensor::zeros(m.graph.dtype(v), m.graph.shape(v).clone())).collect();
            if m.graph.inputs().iter().all(|&v| m.graph.shape(v).numel() < 1 << 20) {
                let _ = CpuDevice.run(&m.graph, &ins);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = import(&b, &ImportOptions::default());
    }
}

#[test]
fn every_dtype_round_trips_through_a_tensor_proto() {
    // Raw data, with the 4- and 2-bit types packed (odd element counts leave a partial byte),
    // and the float8 bit patterns; values include the small formats' NaN, inf and -0.
    for dt in sfumato_core::DType::ALL {
        for n in [1usize, 5, 8] {
            let mut v: Vec<f64> = Tensor::random(sfumato_core::DType::F32, [n], n as u64)
                .to_f64_vec()
                .iter()
                .map(|x| x * 10.0)
                .collect();
            if dt.is_float() {
                v[0] = if n == 5 { f64::NAN } else { -0.0 };
            }
            let t = Tensor::from_f64(dt, [n], &v);
            let p = tensor::to_proto(&t, "t");
            let bits = match dt.sub_byte_int().map(|(b, _)| b) {
                Some(b) => b as usize,
                None if dt == sfumato_core::DType::F4E2M1 => 4,
                None => 8 * dt.size_bytes(),
            };
            assert_eq!(p.raw_data.len(), (n * bits).div_ceil(8), "{dt}");
            let back = tensor::from_proto(&p, None).unwrap();
            assert_eq!(back.dtype(), dt);
            let (a, b) = (t.to_f64_vec(), back.to_f64_vec());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    "{dt}: {a:?} vs {b:?}"
                );
            }
        }
    }
}

/// A Loop body: `acc_out = acc + x * i`, `cond_out = cond`, scan output `acc` (before the add).
fn loop_body(op_in_body: &str) -> GraphProto {
    GraphProto {
        name: "body".into(),
        node: vec![
            node("Identity", &["cond"], &["cond_out"], vec![]),
            node(
                "Cast",
                &["i"],
                &["fi"],
                vec![AttributeProto {
                    name: "to".into(),
                    r#type: attr_type::INT,
                    i: data_type::FLOAT as i64,
                    ..Default::default()
                }],
            ),
            node("Mul", &["x", "fi"], &["xi"], vec![]),
            node(op_in_body, &["acc", "xi"], &["acc_out"], vec![]),
            node("Identity", &["acc"], &["scan"], vec![]),
        ],
        input: vec![
            vi("i", data_type::INT64, &[]),
            vi("cond", data_type::BOOL, &[]),
            vi("acc", data_type::FLOAT, &[Ok(2)]),
        ],
        output: vec![
            vi("cond_out", data_type::BOOL, &[]),
            vi("acc_out", data_type::FLOAT, &[Ok(2)]),
            vi("scan", data_type::FLOAT, &[Ok(2)]),
        ],
        ..Default::default()
    }
}

fn loop_model(trips: i64, op_in_body: &str, trip_from_input: bool) -> Vec<u8> {
    let mut inits = vec![
        tensor::to_proto(&Tensor::from_f64(DType::Bool, [], &[1.0]), "c0"),
        tensor::to_proto(&Tensor::from_f32([2], vec![0.0, 10.0]).unwrap(), "a0"),
    ];
    let mut ins = vec![vi("x", data_type::FLOAT, &[Ok(2)])];
    if trip_from_input {
        ins.push(vi("m", data_type::INT64, &[]));
    } else {
        inits.push(tensor::to_proto(
            &Tensor::from_f64(DType::I64, [], &[trips as f64]),
            "m",
        ));
    }
    model(
        vec![node(
            "Loop",
            &["m", "c0", "a0"],
            &["acc_final", "scans"],
            vec![AttributeProto {
                name: "body".into(),
                r#type: attr_type::GRAPH,
                g: Some(Box::new(loop_body(op_in_body))),
                ..Default::default()
            }],
        )],
        inits,
        ins,
        vec![
            vi("acc_final", data_type::FLOAT, &[Ok(2)]),
            vi("scans", data_type::FLOAT, &[Ok(trips), Ok(2)]),
        ],
    )
}

#[test]
fn a_loop_with_a_known_trip_count_is_unrolled() {
    let m = import(&loop_model(3, "Add", false), &ImportOptions::default()).unwrap();
    let x = Tensor::from_f32([2], vec![1.0, -2.0]).unwrap();
    let out = CpuDevice.run(&m.graph, &[x]).unwrap().outputs;
    // acc: [0, 10] -> +0x -> +1x -> +2x: [3, 4]; scans hold acc before each add.
    assert_eq!(out[0].to_f32_vec(), vec![3.0, 4.0]);
    assert_eq!(out[1].dims(), &[3, 2]);
    assert_eq!(out[1].to_f32_vec(), vec![0.0, 10.0, 0.0, 10.0, 1.0, 8.0]);
}

#[test]
fn a_loop_whose_count_is_known_only_at_run_time_is_unsupported() {
    // The trip count is a graph input with no value given: unsupported, naming why.
    let e = import(&loop_model(3, "Add", true), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Core(sfumato_core::Error::Unsupported { msg, .. }) if msg.contains("known when the model loads")),
        "{e}"
    );
    // Given the input's value, the same model unrolls.
    let mut opts = ImportOptions::default();
    opts.known_inputs
        .insert("m".into(), Tensor::from_f64(DType::I64, [], &[2.0]));
    let m = import(&loop_model(2, "Add", true), &opts).unwrap();
    assert_eq!(m.inputs, ["x", "m"]);
    // A hostile trip count is refused, not unrolled.
    let e = import(
        &loop_model(1 << 40, "Add", false),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not unrolled"), "{e}");
}

#[test]
fn an_unsupported_op_inside_a_loop_body_is_listed_with_its_path() {
    match import(&loop_model(2, "Unique", false), &ImportOptions::default()) {
        Err(Error::UnsupportedOps(list)) => {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].op, "Unique");
            assert_eq!(list[0].node, "Loop_node/body/Unique_node");
        }
        other => panic!("{other:?}"),
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// 3-D ConvTranspose straight from its definition: every input element scatters its weights.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_3d_naive(
    x: &[f32],
    xs: [usize; 5],
    w: &[f32],
    ws: [usize; 5],
    b: &[f32],
    s: [usize; 3],
    dl: [usize; 3],
    p: [usize; 6],
    op: [usize; 3],
    groups: usize,
) -> (Vec<f32>, [usize; 5]) {
    let (n, c) = (xs[0], xs[1]);
    let (og, o) = (ws[1], ws[1] * groups);
    let out: Vec<usize> = (0..3)
        .map(|d| (xs[2 + d] - 1) * s[d] + (ws[2 + d] - 1) * dl[d] + 1 + op[d] - p[d] - p[3 + d])
        .collect();
    let ys = [n, o, out[0], out[1], out[2]];
    let mut y = vec![0f32; ys.iter().product()];
    let cg = c / groups;
    for ni in 0..n {
        for ci in 0..c {
            let g = ci / cg;
            for (id, ih, iw) in (0..xs[2])
                .flat_map(|a| (0..xs[3]).flat_map(move |b| (0..xs[4]).map(move |c| (a, b, c))))
            {
                let xv = x[(((ni * c + ci) * xs[2] + id) * xs[3] + ih) * xs[4] + iw];
                for oi in 0..og {
                    for (kd, kh, kw) in (0..ws[2]).flat_map(|a| {
                        (0..ws[3]).flat_map(move |b| (0..ws[4]).map(move |c| (a, b, c)))
                    }) {
                        let pos = [
                            (id * s[0] + kd * dl[0]) as isize - p[0] as isize,
                            (ih * s[1] + kh * dl[1]) as isize - p[1] as isize,
                            (iw * s[2] + kw * dl[2]) as isize - p[2] as isize,
                        ];
                        if (0..3).any(|d| pos[d] < 0 || pos[d] >= out[d] as isize) {
                            continue;
                        }
                        let wv = w[(((ci * og + oi) * ws[2] + kd) * ws[3] + kh) * ws[4] + kw];
                        let oc = g * og + oi;
                        let yi = (((ni * o + oc) * out[0] + pos[0] as usize) * out[1]
                            + pos[1] as usize)
                            * out[2]
                            + pos[2] as usize;
                        y[yi] += xv * wv;
                    }
                }
            }
        }
    }
    for (i, v) in y.iter_mut().enumerate() {
        *v += b
            .get((i / (out[0] * out[1] * out[2])) % o)
            .copied()
            .unwrap_or(0.0);
    }
    (y, ys)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// 3-D ConvTranspose (depth taps of 2-D ones) against the definition: strides, dilations,
    /// pads, output_padding, groups and bias.
    #[test]
    fn conv_transpose_3d_matches_its_definition(
        n in 1usize..3, groups in 1usize..3, cg in 1usize..3, og in 1usize..3,
        sp in prop::collection::vec(1usize..4, 3), k in prop::collection::vec(1usize..4, 3),
        s in prop::collection::vec(1usize..3, 3), dl in prop::collection::vec(1usize..3, 3),
        p in prop::collection::vec(0usize..2, 6), op in prop::collection::vec(0usize..2, 3),
        bias in any::<bool>(), seed in any::<u64>()
    ) {
        let c = cg * groups;
        let xs = [n, c, sp[0], sp[1], sp[2]];
        let ws = [c, og, k[0], k[1], k[2]];
        // output_padding must be smaller than the stride or the dilation.
        let op: Vec<usize> = (0..3).map(|d| op[d].min(s[d].max(dl[d]) - 1)).collect();
        let full: Vec<usize> = (0..3).map(|d| (sp[d] - 1) * s[d] + (k[d] - 1) * dl[d] + 1 + op[d]).collect();
        prop_assume!((0..3).all(|d| p[d] + p[3 + d] < full[d]));
        let x = Tensor::random(DType::F32, xs, seed);
        let w = Tensor::random(DType::F32, ws, seed + 1);
        let b = Tensor::random(DType::F32, [c.max(og * groups)], seed + 2);
        let b = Tensor::from_f32([og * groups], b.to_f32_vec()[..og * groups].to_vec()).unwrap();
        let mut ins = vec!["x", "w"];
        let mut inits = vec![tensor::to_proto(&w, "w")];
        if bias {
            ins.push("b");
            inits.push(tensor::to_proto(&b, "b"));
        }
        let to_i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let bytes = model(
            vec![node("ConvTranspose", &ins, &["y"], vec![
                ints("strides", &to_i(&s)), ints("dilations", &to_i(&dl)), ints("pads", &to_i(&p)),
                ints("output_padding", &to_i(&op)),
                AttributeProto { name: "group".into(), r#type: attr_type::INT, i: groups as i64, ..Default::default() },
            ])],
            inits,
            vec![vi("x", data_type::FLOAT, &xs.iter().map(|&d| Ok(d as i64)).collect::<Vec<_>>())],
            vec![vi("y", data_type::FLOAT, &[])],
        );
        let m = import(&bytes, &ImportOptions::default()).unwrap();
        let got = CpuDevice.run(&m.graph, std::slice::from_ref(&x)).unwrap().outputs.remove(0);
        let bv = if bias { b.to_f32_vec() } else { vec![] };
        let arr3 = |v: &[usize]| [v[0], v[1], v[2]];
        let (want, ys) = conv_transpose_3d_naive(&x.to_f32_vec(), xs, &w.to_f32_vec(), ws, &bv,
            arr3(&s), arr3(&dl), [p[0], p[1], p[2], p[3], p[4], p[5]], arr3(&op), groups);
        prop_assert_eq!(got.dims(), &ys[..]);
        let want = Tensor::from_f32(ys, want).unwrap();
        prop_assert!(got.all_close(&want, 1e-4, 1e-5), "{:?}", got.max_diff(&want));
    }
}

fn seq_type() -> TypeProto {
    TypeProto {
        sequence_type: Some(vec![]),
        ..Default::default()
    }
}

#[test]
fn sequences_are_rearranged_at_import_and_their_leaves_are_graph_values() {
    let (bytes, opts) = sequence_model();
    // Without the sequence input's value its structure is unknown: unsupported, saying why.
    let e = import(&bytes, &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("structured_inputs"), "{e}");
    let s0 = Tensor::from_f32([1, 3], vec![7., 8., 9.]).unwrap();
    let m = import(&bytes, &opts).unwrap();
    assert_eq!(m.inputs, ["x", "s.0"]);
    assert_eq!(m.outputs, ["n", "cat", "s2.0", "s2.1"]);
    let x = Tensor::from_f32([2, 5], (0..10).map(|v| v as f32).collect()).unwrap();
    let out = CpuDevice.run(&m.graph, &[x, s0]).unwrap().outputs;
    assert_eq!(out[0].to_i64_vec(), vec![2]);
    assert_eq!(out[1].dims(), &[3, 3]);
    assert_eq!(
        out[1].to_f32_vec(),
        vec![7., 8., 9., 2., 3., 4., 7., 8., 9.]
    );
    assert_eq!(out[3].to_f32_vec(), vec![2., 3., 4., 7., 8., 9.]);
}

fn ints_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i: v,
        ..Default::default()
    }
}

#[test]
fn misused_sequences_and_unknown_conditions_are_errors_not_panics() {
    let pos = |v: i64| tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[v as f64]), "p");
    // A position past the end; a sequence where a tensor is expected.
    for (nodes, init) in [
        (
            vec![
                node("SplitToSequence", &["x"], &["s"], vec![]),
                node("SequenceAt", &["s", "p"], &["y"], vec![]),
            ],
            pos(5),
        ),
        (
            vec![
                node("SplitToSequence", &["x"], &["s"], vec![]),
                node("Relu", &["s"], &["y"], vec![]),
            ],
            pos(0),
        ),
    ] {
        let b = model(
            nodes,
            vec![init],
            vec![vi("x", data_type::FLOAT, &[Ok(2), Ok(2)])],
            vec![vi("y", data_type::FLOAT, &[])],
        );
        assert!(import(&b, &ImportOptions::default()).is_err());
    }
    // If on a run-time condition is unsupported; on a known one it is the taken branch.
    let branch = |v: f32| AttributeProto {
        name: if v > 0.0 {
            "then_branch"
        } else {
            "else_branch"
        }
        .into(),
        r#type: attr_type::GRAPH,
        g: Some(Box::new(GraphProto {
            name: "b".into(),
            node: vec![node(
                "Mul",
                &["x", if v > 0.0 { "two" } else { "three" }],
                &["r"],
                vec![],
            )],
            output: vec![vi("r", data_type::FLOAT, &[Ok(2)])],
            ..Default::default()
        })),
        ..Default::default()
    };
    let consts = || {
        vec![
            tensor::to_proto(&Tensor::from_f32([], vec![2.0]).unwrap(), "two"),
            tensor::to_proto(&Tensor::from_f32([], vec![3.0]).unwrap(), "three"),
        ]
    };
    let b = model(
        vec![node("If", &["c"], &["y"], vec![branch(1.0), branch(0.0)])],
        consts(),
        vec![
            vi("x", data_type::FLOAT, &[Ok(2)]),
            vi("c", data_type::BOOL, &[]),
        ],
        vec![vi("y", data_type::FLOAT, &[Ok(2)])],
    );
    let e = import(&b, &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("known when the model loads"), "{e}");
    let mut opts = ImportOptions::default();
    opts.known_inputs
        .insert("c".into(), Tensor::from_f64(DType::Bool, [], &[0.0]));
    let m = import(&b, &opts).unwrap();
    let x = Tensor::from_f32([2], vec![1.0, -1.0]).unwrap();
    let c = Tensor::from_f64(DType::Bool, [], &[0.0]);
    let out = CpuDevice.run(&m.graph, &[x, c]).unwrap().outputs;
    assert_eq!(out[0].to_f32_vec(), vec![3.0, -3.0]);
}

/// x [2, 5] split into [2, 2] and [2, 3]; the last piece appended to the sequence input `s`
/// (one [1, 3] element), which is then counted and concatenated; with `s`'s value in the options.
fn sequence_model() -> (Vec<u8>, ImportOptions) {
    use sfumato_onnx::OnnxValue;
    let i64s = |name: &str, v: &[i64]| {
        tensor::to_proto(
            &Tensor::from_f64(
                DType::I64,
                [v.len()],
                &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            ),
            name,
        )
    };
    let scalar =
        |name: &str, v: i64| tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[v as f64]), name);
    let bytes = model(
        vec![
            node(
                "SplitToSequence",
                &["x", "sizes"],
                &["pieces"],
                vec![ints_attr("axis", 1)],
            ),
            node("SequenceAt", &["pieces", "minus1"], &["last"], vec![]),
            node("SequenceInsert", &["s", "last"], &["s2"], vec![]),
            node("SequenceLength", &["s2"], &["n"], vec![]),
            node(
                "ConcatFromSequence",
                &["s2"],
                &["cat"],
                vec![ints_attr("axis", 0)],
            ),
        ],
        vec![i64s("sizes", &[2, 3]), scalar("minus1", -1)],
        vec![
            vi("x", data_type::FLOAT, &[Ok(2), Ok(5)]),
            ValueInfoProto {
                name: "s".into(),
                r#type: Some(seq_type()),
            },
        ],
        vec![
            vi("n", data_type::INT64, &[]),
            vi("cat", data_type::FLOAT, &[]),
            ValueInfoProto {
                name: "s2".into(),
                r#type: Some(seq_type()),
            },
        ],
    );
    let mut opts = ImportOptions::default();
    let s0 = Tensor::from_f32([1, 3], vec![7., 8., 9.]).unwrap();
    opts.structured_inputs
        .insert("s".into(), OnnxValue::Sequence(vec![OnnxValue::Tensor(s0)]));
    (bytes, opts)
}

fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::GRAPH,
        g: Some(Box::new(g)),
        ..Default::default()
    }
}

/// A Loop body whose condition is `i < 2` and whose scan output is `i` as f32; with
/// `own_init`, it adds its own initializer `w` (which hides an outer `w`).
fn counting_body(own_init: bool) -> GraphProto {
    let mut init = vec![tensor::to_proto(
        &Tensor::from_f64(DType::I64, [], &[2.0]),
        "two",
    )];
    if own_init {
        init.push(tensor::to_proto(
            &Tensor::from_f32([], vec![100.0]).unwrap(),
            "w",
        ));
    }
    GraphProto {
        name: "body".into(),
        node: vec![
            node("Less", &["i", "two"], &["cond_out"], vec![]),
            node(
                "Cast",
                &["i"],
                &["fi"],
                vec![ints_attr("to", data_type::FLOAT as i64)],
            ),
            node("Add", &["fi", "w"], &["scan"], vec![]),
            node("Identity", &["acc"], &["acc_out"], vec![]),
        ],
        initializer: init,
        input: vec![
            vi("i", data_type::INT64, &[]),
            vi("cond", data_type::BOOL, &[]),
            vi("acc", data_type::FLOAT, &[]),
        ],
        output: vec![
            vi("cond_out", data_type::BOOL, &[]),
            vi("acc_out", data_type::FLOAT, &[]),
            vi("scan", data_type::FLOAT, &[]),
        ],
        ..Default::default()
    }
}

fn run_scans(trips: i64, own_init: bool) -> Result<Vec<f32>, Error> {
    let b = model(
        vec![node(
            "Loop",
            &["m", "c0", "a0"],
            &["acc", "scans"],
            vec![graph_attr("body", counting_body(own_init))],
        )],
        vec![
            tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[trips as f64]), "m"),
            tensor::to_proto(&Tensor::from_f64(DType::Bool, [], &[1.0]), "c0"),
            tensor::to_proto(&Tensor::from_f32([], vec![0.0]).unwrap(), "a0"),
            tensor::to_proto(&Tensor::from_f32([], vec![10.0]).unwrap(), "w"),
        ],
        vec![],
        vec![
            vi("acc", data_type::FLOAT, &[]),
            vi("scans", data_type::FLOAT, &[]),
        ],
    );
    let m = import(&b, &ImportOptions::default())?;
    Ok(CpuDevice.run(&m.graph, &[])?.outputs[1].to_f32_vec())
}

#[test]
fn loops_stop_on_their_condition_see_their_own_initializers_and_nest_within_the_cap() {
    // The condition `i < 2` after iterations 0, 1, 2 stops the loop at 3 of 10 trips; the
    // outer `w` (10) is read, or the body's own (100) hides it.
    assert_eq!(run_scans(10, false).unwrap(), vec![10.0, 11.0, 12.0]);
    assert_eq!(run_scans(10, true).unwrap(), vec![100.0, 101.0, 102.0]);
    assert_eq!(run_scans(1, false).unwrap(), vec![10.0]);
    // No iteration: scan outputs have no shape to take.
    let e = run_scans(0, false).unwrap_err();
    assert!(e.to_string().contains("no iteration"), "{e}");
    // A Loop of 4096 whose body is a Loop of 4096 with an empty body: over the unroll cap,
    // refused rather than unrolled 16.7 million times.
    let empty = GraphProto {
        name: "inner".into(),
        node: vec![],
        input: vec![
            vi("j", data_type::INT64, &[]),
            vi("c", data_type::BOOL, &[]),
        ],
        output: vec![vi("c", data_type::BOOL, &[])],
        ..Default::default()
    };
    let outer = GraphProto {
        name: "outer".into(),
        node: vec![node(
            "Loop",
            &["big", ""],
            &[],
            vec![graph_attr("body", empty)],
        )],
        input: vec![
            vi("i", data_type::INT64, &[]),
            vi("c", data_type::BOOL, &[]),
            vi("acc", data_type::FLOAT, &[]),
        ],
        output: vec![
            vi("c", data_type::BOOL, &[]),
            vi("acc", data_type::FLOAT, &[]),
        ],
        ..Default::default()
    };
    let b = model(
        vec![node(
            "Loop",
            &["big", "", "a0"],
            &["y"],
            vec![graph_attr("body", outer)],
        )],
        vec![
            tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[4096.0]), "big"),
            tensor::to_proto(&Tensor::from_f32([], vec![0.0]).unwrap(), "a0"),
        ],
        vec![],
        vec![vi("y", data_type::FLOAT, &[])],
    );
    let t = std::time::Instant::now();
    let e = import(&b, &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("over 100000 nodes"), "{e}");
    assert!(t.elapsed().as_secs() < 30, "the cap took {:?}", t.elapsed());
}

#[test]
fn sequence_map_empty_sequences_and_empty_optionals() {
    // SequenceMap over a split of x [3, 2]: each row times the whole tensor `k`; an empty
    // sequence's length; an empty optional as a graph output has no tensors.
    let body = GraphProto {
        name: "body".into(),
        node: vec![node("Mul", &["row", "k"], &["out"], vec![])],
        input: vec![
            vi("row", data_type::FLOAT, &[]),
            vi("k", data_type::FLOAT, &[]),
        ],
        output: vec![vi("out", data_type::FLOAT, &[])],
        ..Default::default()
    };
    let opt_type = TypeProto {
        optional_type: Some(vec![]),
        ..Default::default()
    };
    let b = model(
        vec![
            node("SplitToSequence", &["x"], &["rows"], vec![]),
            node(
                "SequenceMap",
                &["rows", "k"],
                &["scaled"],
                vec![graph_attr("body", body)],
            ),
            node("SequenceEmpty", &[], &["none"], vec![]),
            node("SequenceLength", &["none"], &["zero"], vec![]),
            node("Optional", &[], &["nothing"], vec![]),
            node("OptionalHasElement", &["nothing"], &["has"], vec![]),
        ],
        vec![tensor::to_proto(
            &Tensor::from_f32([], vec![2.0]).unwrap(),
            "k",
        )],
        vec![vi("x", data_type::FLOAT, &[Ok(3), Ok(2)])],
        vec![
            ValueInfoProto {
                name: "scaled".into(),
                r#type: Some(seq_type()),
            },
            vi("zero", data_type::INT64, &[]),
            ValueInfoProto {
                name: "nothing".into(),
                r#type: Some(opt_type),
            },
            vi("has", data_type::BOOL, &[]),
        ],
    );
    let m = import(&b, &ImportOptions::default()).unwrap();
    assert_eq!(
        m.outputs,
        ["scaled.0", "scaled.1", "scaled.2", "zero", "has"]
    );
    let x = Tensor::from_f32([3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    let out = CpuDevice.run(&m.graph, &[x]).unwrap().outputs;
    assert_eq!(out[1].dims(), &[1, 2]);
    assert_eq!(out[1].to_f32_vec(), vec![6.0, 8.0]);
    assert_eq!(out[3].to_i64_vec(), vec![0]);
    assert_eq!(out[4].to_f64_vec(), vec![0.0]);
}
