//! What the viewer opens, turned into a [`RunRecord`]: a saved run, a Chrome trace, an ONNX
//! model or a graph (a zoo model), the last two planned and lowered for a target profile
//! without a device (no times until they run).

use sfumato_core::record::{NodeRecord, ValueRecord};
use sfumato_core::{
    compile, CompileOptions, Graph, OpTiming, Optimization, Profile, RunRecord, TargetProfile,
    TimingSource,
};

/// Why something could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Core(#[from] sfumato_core::Error),
    #[error("ONNX: {0}")]
    Onnx(#[from] sfumato_onnx::Error),
    #[error("{what}: {msg}")]
    Format { what: String, msg: String },
}

pub type Result<T> = std::result::Result<T, OpenError>;

/// A graph's record as `target` would run it, fused or not: its groups and their WGSL, no
/// profile (the graph has not run).
pub fn explain(
    model: &str,
    graph: &Graph,
    fused: bool,
    target: &TargetProfile,
) -> Result<RunRecord> {
    let c = compile(
        graph,
        &CompileOptions {
            optimization: Optimization::fused(fused),
            target: target.clone(),
        },
    )?;
    let lopts = sfumato_shaders::LowerOptions {
        matmul: None,
        target: target.clone(),
    };
    let (infos, _, kernels) = sfumato_shaders::explain::explain(&c.graph, &c.plan, &lopts)
        .map_err(|e| OpenError::Format {
            what: format!("lowering '{model}'"),
            msg: e.to_string(),
        })?;
    let profile = Profile {
        device: format!("{} (planned, not run)", target.name),
        ..Profile::default()
    };
    let mut r = RunRecord::new(model, &c.graph, Some(&c.plan), profile, &[]);
    sfumato_shaders::explain::fill_record(&mut r, &infos, &kernels)?;
    Ok(r)
}

/// An ONNX model's record (see [`explain`]); symbolic dims are 1. A model with ops Sfumato
/// lacks opens as written ([`onnx_as_written`]), its unsupported nodes marked, instead of
/// failing.
pub fn explain_onnx(name: &str, bytes: &[u8], fused: bool) -> Result<RunRecord> {
    match sfumato_onnx::import(bytes, &sfumato_onnx::ImportOptions::default()) {
        Ok(m) => explain(name, &m.graph, fused, &TargetProfile::webgpu_gpu()),
        Err(sfumato_onnx::Error::UnsupportedOps(ops)) => onnx_as_written(name, bytes, &ops),
        Err(e) => Err(e.into()),
    }
}

/// The kind given to the group of a node whose op Sfumato lacks (drawn in red).
pub const UNSUPPORTED: &str = "unsupported";

/// An ONNX graph as its file has it, one group per node, where it cannot be imported: the
/// nodes whose ops are in `unsupported` have the group kind [`UNSUPPORTED`], and the record's
/// device says which ops they are. Nothing is planned or timed.
pub fn onnx_as_written(
    name: &str,
    bytes: &[u8],
    unsupported: &[sfumato_onnx::UnsupportedOp],
) -> Result<RunRecord> {
    let m = sfumato_onnx::decode(bytes)?;
    let g = m.graph.as_ref().ok_or_else(|| OpenError::Format {
        what: name.to_string(),
        msg: "the model has no graph".into(),
    })?;
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut values: Vec<ValueRecord> = vec![];
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut value = |values: &mut Vec<ValueRecord>, n: &str, producer: Option<usize>| -> usize {
        if let Some(&i) = index.get(n) {
            if producer.is_some() {
                values[i].producer = producer;
            }
            return i;
        }
        values.push(ValueRecord {
            name: n.to_string(),
            dtype: String::new(),
            shape: vec![],
            producer,
        });
        index.insert(n.to_string(), values.len() - 1);
        values.len() - 1
    };
    let inputs: Vec<usize> = g
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .map(|v| value(&mut values, &v.name, None))
        .collect();
    let bad: std::collections::HashSet<&str> = unsupported.iter().map(|u| u.op.as_str()).collect();
    let mut nodes = vec![];
    let mut groups = vec![];
    for (i, n) in g.node.iter().enumerate() {
        let ins = n
            .input
            .iter()
            .filter(|x| !x.is_empty() && !inits.contains(x.as_str()))
            .map(|x| value(&mut values, x, None))
            .collect();
        let outs = n
            .output
            .iter()
            .map(|x| value(&mut values, x, Some(i)))
            .collect();
        let node_name = if n.name.is_empty() {
            format!("{}_{i}", n.op_type)
        } else {
            n.name.clone()
        };
        let is_bad = bad.contains(n.op_type.as_str());
        let attrs: Vec<&str> = n.attribute.iter().map(|a| a.name.as_str()).collect();
        nodes.push(NodeRecord {
            name: node_name,
            op: n.op_type.clone(),
            attributes: format!(
                "{}{}",
                if is_bad {
                    "not supported by Sfumato; "
                } else {
                    ""
                },
                if attrs.is_empty() {
                    "no attributes".to_string()
                } else {
                    format!("attributes: {}", attrs.join(", "))
                }
            ),
            inputs: ins,
            outputs: outs,
            group: Some(i),
        });
        groups.push(sfumato_core::record::GroupRecord {
            kind: if is_bad {
                UNSUPPORTED.into()
            } else {
                "onnx".into()
            },
            label: n.op_type.clone(),
            nodes: vec![i],
            kernels: vec![],
            dispatches: 0,
            bytes_read: 0,
            bytes_written: 0,
        });
    }
    let outputs = g
        .output
        .iter()
        .filter_map(|v| index.get(&v.name).copied())
        .collect();
    let listed: Vec<String> = unsupported.iter().map(|u| u.to_string()).collect();
    let device = format!(
        "ONNX graph as written: cannot run, unsupported: {}",
        listed.join("; ")
    );
    let r = RunRecord {
        version: sfumato_core::record::RUN_RECORD_VERSION,
        model: name.to_string(),
        device: device.clone(),
        fused: false,
        values,
        nodes,
        groups,
        inputs,
        outputs,
        profile: Profile {
            device,
            ..Profile::default()
        },
        results: vec![],
    };
    r.check()?;
    Ok(r)
}

/// A saved run or a Chrome trace, told apart by their contents.
pub fn from_json(name: &str, text: &str) -> Result<RunRecord> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| OpenError::Format {
        what: name.to_string(),
        msg: format!("not JSON: {e}"),
    })?;
    if v.get("traceEvents").is_some() {
        from_chrome_trace(name, &v)
    } else {
        Ok(RunRecord::from_json(text)?)
    }
}

/// A Chrome trace as the CLI writes it (`--trace`): no graph, so each event becomes a node of a
/// chain in run order, its op and kernel from the event's category and arguments.
pub fn from_chrome_trace(name: &str, v: &serde_json::Value) -> Result<RunRecord> {
    let bad = |msg: &str| OpenError::Format {
        what: name.to_string(),
        msg: msg.to_string(),
    };
    let events = v["traceEvents"]
        .as_array()
        .ok_or_else(|| bad("traceEvents is not a list"))?;
    let mut entries = Vec::new();
    for e in events {
        if e["ph"].as_str() != Some("X") {
            continue;
        }
        let us = |k: &str| e[k].as_f64().filter(|x| x.is_finite() && *x >= 0.0);
        let (Some(ts), Some(dur)) = (us("ts"), us("dur")) else {
            return Err(bad("an event without a valid ts or dur"));
        };
        let label = e["name"].as_str().unwrap_or("?").to_string();
        let ops = e["cat"].as_str().unwrap_or("?").to_string();
        let simulated = e["args"]
            .get("simulated")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        entries.push(OpTiming {
            nodes: label.split('+').map(str::to_string).collect(),
            ops: ops.split('+').map(str::to_string).collect(),
            kernel: e["args"]["kernel"].as_str().unwrap_or("").to_string(),
            start_ns: (ts * 1e3) as u64,
            duration_ns: (dur * 1e3) as u64,
            source: if simulated.is_some() {
                TimingSource::Simulated
            } else {
                TimingSource::GpuTimestamp
            },
            simulated,
        });
    }
    let device = v["otherData"]["device"]
        .as_str()
        .unwrap_or("unknown device")
        .to_string();
    let wall_ns = v["otherData"]["wall_ns"].as_u64().unwrap_or(0);
    let mut r = RunRecord {
        version: sfumato_core::record::RUN_RECORD_VERSION,
        model: name.to_string(),
        device: device.clone(),
        fused: true,
        values: vec![],
        nodes: vec![],
        groups: vec![],
        inputs: vec![],
        outputs: vec![],
        profile: Profile {
            device,
            entries: vec![],
            wall_ns,
            memory_bytes: None,
            setup: None,
        },
        results: vec![],
    };
    for (i, e) in entries.iter().enumerate() {
        r.values.push(ValueRecord {
            name: format!("{}:out", e.nodes.join("+")),
            dtype: String::new(),
            shape: vec![],
            producer: Some(i),
        });
        r.nodes.push(NodeRecord {
            name: e.nodes.first().cloned().unwrap_or_default(),
            op: e.ops.join("+"),
            attributes: format!("kernel {}", e.kernel),
            inputs: if i == 0 { vec![] } else { vec![i - 1] },
            outputs: vec![i],
            group: Some(i),
        });
        r.groups.push(sfumato_core::record::GroupRecord {
            kind: "trace".into(),
            label: e.ops.join("+"),
            nodes: vec![i],
            kernels: vec![],
            dispatches: 1,
            bytes_read: 0,
            bytes_written: 0,
        });
    }
    r.profile.entries = entries;
    r.check()?;
    Ok(r)
}

/// Opens a file by its name and bytes: `.onnx` is imported and planned, anything else is read
/// as a saved run or a Chrome trace.
pub fn open_bytes(name: &str, bytes: &[u8]) -> Result<RunRecord> {
    if name.to_ascii_lowercase().ends_with(".onnx") {
        return explain_onnx(name, bytes, true);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| OpenError::Format {
        what: name.to_string(),
        msg: "neither an .onnx file nor UTF-8 JSON".into(),
    })?;
    from_json(name, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chrome_trace_opens_as_a_chain_of_timed_kernels() {
        let v = serde_json::json!({
            "traceEvents": [
                {"name": "mm+relu", "cat": "MatMul+Relu", "ph": "X", "ts": 0.0, "dur": 10.0,
                 "args": {"kernel": "matmul_ubo"}},
                {"name": "sm", "cat": "Softmax", "ph": "X", "ts": 10.0, "dur": 5.0,
                 "args": {"kernel": "softmax"}},
            ],
            "otherData": {"device": "llvmpipe", "wall_ns": 20000}
        });
        let r = from_json("t.json", &v.to_string()).unwrap();
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.nodes[1].inputs, vec![0]);
        assert_eq!(r.profile.entries[0].duration_ns, 10_000);
        assert_eq!(r.group_times()[1].ns, 5_000);
    }

    /// An ONNX file with an op Sfumato lacks opens as written, the op marked and listed.
    #[test]
    fn an_onnx_model_with_unsupported_ops_opens_with_them_listed() {
        use prost::Message;
        use sfumato_onnx::proto::{
            GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
        };
        let vi = |n: &str| ValueInfoProto {
            name: n.into(),
            ..Default::default()
        };
        let node = |op: &str, i: &str, o: &str| NodeProto {
            input: vec![i.into()],
            output: vec![o.into()],
            name: format!("{op}_node"),
            op_type: op.into(),
            ..Default::default()
        };
        let m = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                node: vec![node("Relu", "x", "a"), node("NoSuchOp", "a", "y")],
                name: "g".into(),
                input: vec![vi("x")],
                output: vec![vi("y")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = open_bytes("bad.onnx", &m.encode_to_vec()).unwrap();
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.nodes[1].inputs, r.nodes[0].outputs, "the edge is kept");
        assert_eq!(r.groups[1].kind, UNSUPPORTED);
        assert_eq!(r.groups[0].kind, "onnx");
        assert!(r.device.contains("NoSuchOp"), "{}", r.device);
    }

    /// A saved run of another version and a cut-off trace are errors that say so.
    #[test]
    fn another_version_and_a_truncated_trace_are_errors() {
        let e = open_bytes("old.json", br#"{"version": 7, "model": "m"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 7 (this build reads version 1)"), "{e}");
        let t = r#"{"traceEvents": [{"name": "a", "ph": "X", "ts": 0, "dur": 1}"#;
        let e = open_bytes("cut.json", t.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.json") && e.contains("not JSON"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let e = open_bytes("x.json", b"{\"traceEvents\": 3}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.json") && e.contains("not a list"), "{e}");
        let e = open_bytes("x.bin", &[0xff, 0xfe]).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
        assert!(open_bytes("x.onnx", b"garbage").is_err());
    }
}
