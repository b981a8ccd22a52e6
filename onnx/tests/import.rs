//! The ONNX importer as a whole: models built here with the proto types, imported and run on the
//! CPU reference; every malformed or hostile input is an error, never a panic (proptest over
//! mutated and random bytes). The tests of one op family sit next to its converters in
//! `src/convert/*.rs`, and those of TensorProto encoding in `src/tensor.rs`.

use proptest::prelude::*;
use sfumato_core::{CpuDevice, Device, Tensor};
use sfumato_onnx::proto::*;
use sfumato_onnx::{import, tensor, Error, ImportOptions};
// `testutil.rs` names `crate::{proto, tensor, ImportOptions, OnnxValue}`: these two only for it.
use sfumato_onnx::{proto, OnnxValue};

/// The helpers the crate's unit tests use, shared rather than copied.
#[path = "../src/testutil.rs"]
#[allow(dead_code)]
mod testutil;
use testutil::*;

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
    let y = run_cpu(&m.graph, &[x]).remove(0);
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
            node("Col2Im", &["a"], &["b"], vec![]),
            node("Relu", &["b"], &["c"], vec![]),
            node("Det", &["c"], &["d"], vec![]),
            node("DeformConv", &["d"], &["y"], vec![]),
        ],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(4)])],
        vec![vi("y", data_type::FLOAT, &[Ok(4)])],
    );
    match import(&b, &ImportOptions::default()) {
        Err(Error::UnsupportedOps(list)) => {
            let ops: Vec<&str> = list.iter().map(|u| u.op.as_str()).collect();
            assert_eq!(ops, ["Col2Im", "Det", "DeformConv"]);
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
    let y = run_cpu(&m.graph, &[]).remove(0);
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
