//! Helpers for the importer's tests: ONNX protos built by hand (value infos, nodes, attributes,
//! models), the Loop and sequence models that converter tests and the fuzz seeds share, and a
//! run on the CPU reference. Written against the crate's public API through `crate::` paths, so
//! the integration test `tests/import.rs` includes this same file (`#[path]`) after bringing
//! those names into its crate root.

use crate::proto::*;
use crate::{tensor, ImportOptions, OnnxValue};
use prost::Message;
use sfumato_core::{CpuDevice, DType, Device, Graph, Tensor};

pub fn vi(name: &str, elem: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
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

pub fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_node"),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn model(
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
        metadata_props: Vec::new(),
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

/// Run a graph on the CPU reference; its outputs, in order.
pub fn run_cpu(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    CpuDevice.run(g, inputs).unwrap().outputs
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn ints_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i: v,
        ..Default::default()
    }
}

pub fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::GRAPH,
        g: Some(Box::new(g)),
        ..Default::default()
    }
}

pub fn seq_type() -> TypeProto {
    TypeProto {
        sequence_type: Some(vec![]),
        ..Default::default()
    }
}

/// A Loop body: `acc_out = acc + x * i`, `cond_out = cond`, scan output `acc` (before the add).
pub fn loop_body(op_in_body: &str) -> GraphProto {
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

pub fn loop_model(trips: i64, op_in_body: &str, trip_from_input: bool) -> Vec<u8> {
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

/// x [2, 5] split into [2, 2] and [2, 3]; the last piece appended to the sequence input `s`
/// (one [1, 3] element), which is then counted and concatenated; with `s`'s value in the options.
pub fn sequence_model() -> (Vec<u8>, ImportOptions) {
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

/// A `Cast` node's `to`.
pub fn cast_to(to: i32) -> AttributeProto {
    ints_attr("to", to as i64)
}

/// An f32 tensor.
pub fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_f32(dims.to_vec(), v.to_vec()).unwrap()
}

/// Staged runs: `If(ReduceSum(x) > 0)`: x * 2, else x * 3 (the condition is computed, so
/// known only at run time).
pub fn staged_if_model() -> Vec<u8> {
    let branch = |then: bool| {
        graph_attr(
            if then { "then_branch" } else { "else_branch" },
            GraphProto {
                name: "b".into(),
                node: vec![node(
                    "Mul",
                    &["x", if then { "two" } else { "three" }],
                    &["r"],
                    vec![],
                )],
                output: vec![vi("r", data_type::FLOAT, &[Ok(2)])],
                ..Default::default()
            },
        )
    };
    model(
        vec![
            node("ReduceSum", &["x"], &["s"], vec![ints_attr("keepdims", 0)]),
            node("Greater", &["s", "zero"], &["c"], vec![]),
            node("If", &["c"], &["y"], vec![branch(true), branch(false)]),
        ],
        vec![
            tensor::to_proto(&f32s(&[], &[0.0]), "zero"),
            tensor::to_proto(&f32s(&[], &[2.0]), "two"),
            tensor::to_proto(&f32s(&[], &[3.0]), "three"),
        ],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        vec![vi("y", data_type::FLOAT, &[Ok(2)])],
    )
}

/// Staged runs: `m = int64(|n|)` iterations of [`loop_body`]("Add") (`acc += x * i`), then the
/// scans reshaped to `int64(|shape|)`: a trip count and a shape computed from the inputs.
pub fn staged_loop_reshape_model() -> Vec<u8> {
    model(
        vec![
            node("Abs", &["n"], &["na"], vec![]),
            node("Cast", &["na"], &["m"], vec![cast_to(data_type::INT64)]),
            node(
                "Loop",
                &["m", "c0", "a0"],
                &["acc", "scans"],
                vec![graph_attr("body", loop_body("Add"))],
            ),
            node("Abs", &["shape"], &["sa"], vec![]),
            node("Cast", &["sa"], &["si"], vec![cast_to(data_type::INT64)]),
            node("Reshape", &["scans", "si"], &["flat"], vec![]),
        ],
        vec![
            tensor::to_proto(&Tensor::from_f64(DType::Bool, [], &[1.0]), "c0"),
            tensor::to_proto(&f32s(&[2], &[0.0, 10.0]), "a0"),
        ],
        vec![
            vi("x", data_type::FLOAT, &[Ok(2)]),
            vi("n", data_type::FLOAT, &[]),
            vi("shape", data_type::FLOAT, &[Ok(1)]),
        ],
        vec![
            vi("acc", data_type::FLOAT, &[Ok(2)]),
            vi("flat", data_type::FLOAT, &[Err("k")]),
        ],
    )
}

/// Staged runs: a Loop of `int64(|n|)` iterations whose body counts the non-zero elements of
/// `acc` (NonZero: a host step inside the body) and adds the count: `acc` = [0, 1] gives
/// [1, 2], then [3, 4].
pub fn staged_host_loop_model() -> Vec<u8> {
    let body = GraphProto {
        name: "body".into(),
        node: vec![
            node("Identity", &["cond"], &["cond_out"], vec![]),
            node("NonZero", &["acc"], &["nz"], vec![]),
            node("Shape", &["nz"], &["sh"], vec![]),
            node("Gather", &["sh", "one"], &["cnt"], vec![]),
            node("Cast", &["cnt"], &["fc"], vec![cast_to(data_type::FLOAT)]),
            node("Add", &["acc", "fc"], &["acc_out"], vec![]),
        ],
        input: vec![
            vi("i", data_type::INT64, &[]),
            vi("cond", data_type::BOOL, &[]),
            vi("acc", data_type::FLOAT, &[Ok(2)]),
        ],
        output: vec![
            vi("cond_out", data_type::BOOL, &[]),
            vi("acc_out", data_type::FLOAT, &[Ok(2)]),
        ],
        ..Default::default()
    };
    model(
        vec![
            node("Abs", &["n"], &["na"], vec![]),
            node("Cast", &["na"], &["m"], vec![cast_to(data_type::INT64)]),
            node(
                "Loop",
                &["m", "", "a"],
                &["acc"],
                vec![graph_attr("body", body)],
            ),
        ],
        vec![tensor::to_proto(
            &Tensor::from_f64(DType::I64, [], &[1.0]),
            "one",
        )],
        vec![
            vi("n", data_type::FLOAT, &[]),
            vi("a", data_type::FLOAT, &[Ok(2)]),
        ],
        vec![vi("acc", data_type::FLOAT, &[Ok(2)])],
    )
}
