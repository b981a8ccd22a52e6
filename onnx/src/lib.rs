//! sfumato-onnx: ONNX models in Sfumato. A `.onnx` file (opsets 7 to 24) becomes a
//! sfumato-core [`Graph`] that any [`sfumato_core::Device`] runs; [`inspect`] describes a model
//! without importing it; [`conformance`] runs ONNX's operator test suite on a device.
//!
//! - Initializers (inline or in external data files) become constants.
//! - Graph inputs keep their names; symbolic dims (`batch`, `seq`) are bound at load time from
//!   [`ImportOptions::dims`] or from the shapes of the inputs given to [`ImportOptions::input_shapes`].
//! - Attributes take their per-opset defaults (`Softmax`'s axis, `Reduce*` axes as attribute or
//!   input, `Split`, `Slice`, `Pad`, `Clip` inputs from opset 10/11/13/18 on).
//! - Shape computations (`Shape`, `Gather` on shapes, `Concat`, `Range`, `ConstantOfShape`, ...)
//!   are evaluated at import when their inputs are known, so `Reshape(x, Shape(x)...)` chains
//!   exported by PyTorch resolve to static shapes.
//! - Sequences, optionals and control flow (`Loop`, `If`, `SequenceMap`) are resolved at import;
//!   only tensors reach the graph.
//!
//! Invariants:
//! - The converters ([`convert`]) are grouped by op family, each family listing its ops in a
//!   table; the importer dispatches through the one lookup built from those tables, and the
//!   supported-op list ([`convert::supports`], [`convert::supported_ops`], [`inspect`]'s
//!   unsupported ops) is that same table.
//! - A model with ops Sfumato does not support gets one [`Error::UnsupportedOps`] listing all of
//!   them (op, domain, opset, node path); any other error names the node, op and input shapes
//!   (through [`Error::Core`]) or says what in the file is malformed ([`Error::Model`]).
//! - Malformed files (truncated protobuf, negative or huge dims, undefined or cyclic references,
//!   missing initializers) give an error, never a panic; no allocation exceeds what the file's
//!   own data justifies or [`tensor::MAX_ELEMENTS`].
//! - No GPU or GUI crate among the normal dependencies (CI checks `cargo tree`): devices come in
//!   as `&mut dyn Device`; the wgpu device is only a dev-dependency, for the conformance test.

pub mod conformance;
pub mod convert;
pub mod error;
pub mod hostops;
pub mod proto;
pub mod staged;
pub mod tensor;
#[cfg(test)]
pub(crate) mod testutil;

pub use error::{Error, Result};
use prost::Message;
use proto::{ModelProto, NodeProto};
use sfumato_core::{DType, Graph, Tensor, ValueId};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How to import a model.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Sizes for symbolic dims (`dim_param`), by name.
    pub dims: HashMap<String, usize>,
    /// Concrete shapes for graph inputs by name (they bind symbolic dims and override the
    /// model's declared shape where it has none).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Graph inputs whose values are known when loading: they become constants (needed where an
    /// op takes a shape, axes or sizes as an input tensor that is not an initializer).
    pub const_inputs: HashMap<String, Tensor>,
    /// Values the caller will feed for some graph inputs, usable where an op needs a value
    /// when the model loads (a Reshape whose shape is a graph input): the input stays an input.
    pub known_inputs: HashMap<String, Tensor>,
    /// Sequence and optional graph inputs: their values (their structure and leaves' shapes
    /// fix the graph; the leaves become inputs `NAME.K`, fed like any other).
    pub structured_inputs: HashMap<String, OnnxValue>,
    /// Size for symbolic dims that [`ImportOptions::dims`] does not bind (`None`: an error).
    pub default_dim: Option<usize>,
    /// Where external data files are (default: the model file's directory).
    pub base_dir: Option<PathBuf>,
    /// How RNN, GRU and LSTM import (default [`RecurrentForm::Auto`]).
    pub recurrence: RecurrentForm,
}

/// How a recurrent layer imports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecurrentForm {
    /// The device loop up to 4,096 `batch x hidden` (past that the unrolled form's MatMuls,
    /// which spread a step over many workgroups, were the faster on lavapipe: an LSTM of 1,024
    /// units over 8 rows ran 1.7x faster unrolled), and past 4,096 steps, which the unrolled
    /// form does not take (a layer of more than 2,048 hidden units and 4,096 steps is refused).
    /// The command line's `SFUMATO_RECURRENCE=loop|unrolled` picks one of the others.
    #[default]
    Auto,
    /// `Op::Recurrence`: one kernel runs many steps, `h` in workgroup memory (up to 2,048
    /// hidden units; wider layers are unrolled).
    Loop,
    /// A MatMul and the gates' kernels per step (at most 4,096 steps).
    Unrolled,
}

/// An imported model.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub graph: Graph,
    /// The default-domain opset the model imports.
    pub opset: i64,
    pub ir_version: i64,
    pub producer: String,
    /// Graph inputs that stayed inputs (initializers and const inputs removed), in order.
    pub inputs: Vec<String>,
    /// Graph output names, in order.
    pub outputs: Vec<String>,
    /// The model's metadata (`metadata_props`), key and value, in file order.
    pub metadata: Vec<(String, String)>,
}

/// One node whose op Sfumato does not support.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnsupportedOp {
    pub op: String,
    pub domain: String,
    pub opset: i64,
    pub node: String,
}

impl std::fmt::Display for UnsupportedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dom = if self.domain.is_empty() {
            String::new()
        } else {
            format!("{}.", self.domain)
        };
        write!(
            f,
            "{dom}{} (opset {}) at node '{}'",
            self.op, self.opset, self.node
        )
    }
}

/// A graph input or output as the model declares it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IoInfo {
    pub name: String,
    /// The ONNX element type's name (`float`, `int64`, ...), or the kind of a non-tensor type.
    pub dtype: String,
    /// Each dim: a number, a symbol, or `?`.
    pub dims: Vec<String>,
}

/// What `sfumato inspect` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Inspection {
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub initializers: usize,
    pub initializer_bytes: u64,
    /// Op type -> node count.
    pub ops: BTreeMap<String, usize>,
    pub unsupported: Vec<UnsupportedOp>,
}

/// Decode a model's bytes (protobuf); a malformed file is an error naming what is wrong.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| Error::Model(format!("not a valid ONNX model: {e}")))?;
    if m.graph.is_none() {
        return Err(Error::Model("the model has no graph".into()));
    }
    Ok(m)
}

/// The default-domain opset of a model (ONNX says 1 when none is listed).
pub fn opset_of(m: &ModelProto) -> i64 {
    m.opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1)
}

/// Read and import a `.onnx` file.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<OnnxModel> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    let mut o = opts.clone();
    if o.base_dir.is_none() {
        o.base_dir = path.parent().map(Path::to_path_buf);
    }
    import(&bytes, &o)
}

/// Import a model from its bytes.
pub fn import(bytes: &[u8], opts: &ImportOptions) -> Result<OnnxModel> {
    import_model(&decode(bytes)?, opts)
}

/// Import a decoded model.
pub fn import_model(m: &ModelProto, opts: &ImportOptions) -> Result<OnnxModel> {
    let opset = opset_of(m);
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let unsupported = unsupported_ops(m);
    if !unsupported.is_empty() {
        return Err(Error::UnsupportedOps(unsupported));
    }
    let mut cx = convert::Importer::new(opset, opts);
    // Initializers first: constants (an initializer may also be listed as an input, with a
    // default value; the initializer wins unless the caller feeds it as a const input).
    for t in &g.initializer {
        if t.name.is_empty() {
            return Err(Error::Model("an initializer has no name".into()));
        }
        let v = tensor::from_proto(t, opts.base_dir.as_deref())?;
        cx.define_const(&t.name, v)?;
    }
    let mut inputs = Vec::new();
    for i in &g.input {
        if cx.is_defined(&i.name) {
            continue;
        }
        if let Some(t) = opts.const_inputs.get(&i.name) {
            cx.define_const(&i.name, t.clone())?;
            continue;
        }
        let kind = i.r#type.as_ref().map_or("?", value_type_kind);
        if kind == "sequence" || kind == "optional" {
            let v = opts
                .structured_inputs
                .get(&i.name)
                .ok_or_else(|| sfumato_core::Error::Unsupported {
                    node: i.name.clone(),
                    op: "graph input".into(),
                    inputs: String::new(),
                    msg: format!(
                        "a {kind} input needs its value, whose structure fixes the graph (ImportOptions::structured_inputs)"
                    ),
                })?;
            inputs.extend(cx.define_structured_input(&i.name, v)?);
            continue;
        }
        let (dtype, dims) = cx.input_type(i)?;
        cx.define_input(&i.name, dtype, dims)?;
        inputs.push(i.name.clone());
    }
    for (i, n) in g.node.iter().enumerate() {
        cx.node(n).map_err(|e| match e {
            Error::RunTime(mut r) => {
                r.index = i;
                Error::RunTime(r)
            }
            other => other,
        })?;
    }
    let mut outs: Vec<ValueId> = Vec::new();
    let mut outputs = Vec::new();
    for o in &g.output {
        for (name, v) in cx.materialize(&o.name)? {
            outs.push(v);
            outputs.push(name);
        }
    }
    let mut graph = cx.finish();
    graph.set_outputs(&outs)?;
    Ok(OnnxModel {
        graph,
        opset,
        ir_version: m.ir_version,
        producer: format!("{} {}", m.producer_name, m.producer_version)
            .trim()
            .to_string(),
        inputs,
        outputs,
        metadata: m
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
    })
}

/// The tensor graph inputs a run must feed (initializers left out), each with its dtype and
/// concrete dims (the caller's shape, else the declared one with symbolic dims bound).
pub fn input_types(
    m: &ModelProto,
    opts: &ImportOptions,
) -> Result<Vec<(String, DType, Vec<usize>)>> {
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let cx = convert::Importer::new(opset_of(m), opts);
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| {
            let (d, dims) = cx.input_type(i)?;
            Ok((i.name.clone(), d, dims))
        })
        .collect()
}

/// The nodes of a model whose op (in its domain and opset) the importer does not support.
pub fn unsupported_ops(m: &ModelProto) -> Vec<UnsupportedOp> {
    let opset = opset_of(m);
    let Some(g) = &m.graph else { return Vec::new() };
    let mut out = Vec::new();
    unsupported_in(g, opset, "", &mut out);
    out
}

/// The unsupported ops of a graph and of the graphs its nodes hold (a Loop's body, both of an
/// If's branches), by the node path (`loop/body/inner`).
fn unsupported_in(g: &proto::GraphProto, opset: i64, prefix: &str, out: &mut Vec<UnsupportedOp>) {
    for (i, n) in g.node.iter().enumerate() {
        let name = format!("{prefix}{}", node_name(n, i));
        if !convert::supports(n) {
            out.push(UnsupportedOp {
                op: n.op_type.clone(),
                domain: n.domain.clone(),
                opset,
                node: name.clone(),
            });
        }
        for a in &n.attribute {
            for sub in a.g.as_deref().into_iter().chain(&a.graphs) {
                unsupported_in(sub, opset, &format!("{name}/{}/", a.name), out);
            }
        }
    }
}

/// A node's name, or `op_type#index` when it has none.
pub fn node_name(n: &NodeProto, i: usize) -> String {
    if n.name.is_empty() {
        format!("{}#{i}", n.op_type)
    } else {
        n.name.clone()
    }
}

/// Inputs, outputs, op histogram and unsupported ops of a model, without importing it.
pub fn inspect(bytes: &[u8]) -> Result<Inspection> {
    let m = decode(bytes)?;
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let io = |v: &proto::ValueInfoProto| {
        let (dtype, dims) = match v.r#type.as_ref() {
            Some(t) => match &t.tensor_type {
                Some(tt) => (
                    proto::data_type::name(tt.elem_type),
                    tt.shape
                        .as_ref()
                        .map(|s| {
                            s.dim
                                .iter()
                                .map(|d| match (&d.dim_value, &d.dim_param) {
                                    (Some(v), _) => v.to_string(),
                                    (None, Some(p)) if !p.is_empty() => p.clone(),
                                    _ => "?".to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                None => (value_type_kind(t).to_string(), Vec::new()),
            },
            None => ("?".to_string(), Vec::new()),
        };
        IoInfo {
            name: v.name.clone(),
            dtype,
            dims,
        }
    };
    let mut ops = BTreeMap::new();
    for n in &g.node {
        *ops.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(Inspection {
        ir_version: m.ir_version,
        opset: opset_of(&m),
        producer: format!("{} {}", m.producer_name, m.producer_version)
            .trim()
            .to_string(),
        inputs: g
            .input
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .map(io)
            .collect(),
        outputs: g.output.iter().map(io).collect(),
        initializers: g.initializer.len(),
        initializer_bytes: g
            .initializer
            .iter()
            .map(|t| {
                t.raw_data.len() as u64
                    + t.float_data.len() as u64 * 4
                    + t.int64_data.len() as u64 * 8
            })
            .sum(),
        ops,
        unsupported: unsupported_ops(&m),
    })
}

/// The kind of a graph input or output's type: `tensor`, `sequence`, `optional`, `map`,
/// `sparse` (as [`IoInfo::dtype`] names non-tensor types).
pub fn value_type_kind(t: &proto::TypeProto) -> &'static str {
    if t.tensor_type.is_some() {
        "tensor"
    } else if t.sequence_type.is_some() {
        "sequence"
    } else if t.optional_type.is_some() {
        "optional"
    } else if t.map_type.is_some() {
        "map"
    } else if t.sparse_tensor_type.is_some() {
        "sparse"
    } else {
        "?"
    }
}

/// A graph input's or output's value that need not be one tensor: ONNX sequences and optionals
/// (their elements tensors, sequences or optionals again). The importer gives every tensor in
/// one (its leaves, in order) a graph input or output of its own, named `NAME.K`.
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxValue {
    Tensor(Tensor),
    Sequence(Vec<OnnxValue>),
    Optional(Option<Box<OnnxValue>>),
}

impl OnnxValue {
    /// The tensors, depth first.
    pub fn leaves(&self) -> Vec<&Tensor> {
        match self {
            OnnxValue::Tensor(t) => vec![t],
            OnnxValue::Sequence(s) => s.iter().flat_map(|v| v.leaves()).collect(),
            OnnxValue::Optional(o) => o.iter().flat_map(|v| v.leaves()).collect(),
        }
    }

    /// A short description: `tensor`, `sequence of 3`, `optional (empty)`, ...
    pub fn describe(&self) -> String {
        match self {
            OnnxValue::Tensor(t) => format!("{} {}", t.dtype(), t.shape()),
            OnnxValue::Sequence(s) => format!("sequence of {}", s.len()),
            OnnxValue::Optional(None) => "optional (empty)".into(),
            OnnxValue::Optional(Some(v)) => format!("optional of {}", v.describe()),
        }
    }
}

fn sequence_value(s: &proto::SequenceProto, base: Option<&Path>) -> Result<OnnxValue> {
    use proto::value_kind as k;
    Ok(OnnxValue::Sequence(match s.elem_type {
        k::TENSOR | k::UNDEFINED => s
            .tensor_values
            .iter()
            .map(|t| tensor::from_proto(t, base).map(OnnxValue::Tensor))
            .collect::<sfumato_core::Result<_>>()?,
        k::SEQUENCE => s
            .sequence_values
            .iter()
            .map(|v| sequence_value(v, base))
            .collect::<Result<_>>()?,
        k::OPTIONAL => s
            .optional_values
            .iter()
            .map(|v| optional_value(v, base))
            .collect::<Result<_>>()?,
        other => {
            return Err(Error::Model(format!(
                "a sequence of element kind {other} (maps and sparse tensors are not supported)"
            )))
        }
    }))
}

fn optional_value(o: &proto::OptionalProto, base: Option<&Path>) -> Result<OnnxValue> {
    use proto::value_kind as k;
    let inner = match (
        o.elem_type,
        &o.tensor_value,
        &o.sequence_value,
        &o.optional_value,
    ) {
        (k::UNDEFINED, ..) => None,
        (k::TENSOR, Some(t), ..) => Some(OnnxValue::Tensor(tensor::from_proto(t, base)?)),
        (k::SEQUENCE, _, Some(s), _) => Some(sequence_value(s, base)?),
        (k::OPTIONAL, _, _, Some(v)) => Some(optional_value(v, base)?),
        (k::TENSOR | k::SEQUENCE | k::OPTIONAL, ..) => {
            return Err(Error::Model(format!(
                "an optional of element kind {} holds no such element",
                o.elem_type
            )))
        }
        (other, ..) => {
            return Err(Error::Model(format!(
                "an optional of element kind {other} (maps and sparse tensors are not supported)"
            )))
        }
    };
    Ok(OnnxValue::Optional(inner.map(Box::new)))
}

/// Read a serialized value of the given kind (`sequence`, `optional`, else a tensor), as the
/// ONNX test data stores graph inputs and outputs.
pub fn read_value_pb(path: &Path, kind: &str) -> Result<OnnxValue> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    let what = |e: prost::DecodeError, t: &str| {
        Error::Model(format!("{}: not a {t}: {e}", path.display()))
    };
    match kind {
        "sequence" => sequence_value(
            &proto::SequenceProto::decode(bytes.as_slice())
                .map_err(|e| what(e, "SequenceProto"))?,
            path.parent(),
        ),
        "optional" => optional_value(
            &proto::OptionalProto::decode(bytes.as_slice())
                .map_err(|e| what(e, "OptionalProto"))?,
            path.parent(),
        ),
        _ => Ok(OnnxValue::Tensor(read_tensor_pb(path)?)),
    }
}

/// The name of tensor `k` (depth first) of a sequence or optional graph input or output `name`,
/// as the importer names the graph's inputs and outputs for it.
pub fn leaf_name(name: &str, k: usize) -> String {
    format!("{name}.{k}")
}

/// Read one serialized `TensorProto` (a conformance case's `input_0.pb`).
pub fn read_tensor_pb(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    let t = proto::TensorProto::decode(bytes.as_slice())
        .map_err(|e| Error::Model(format!("{}: not a TensorProto: {e}", path.display())))?;
    Ok(tensor::from_proto(&t, path.parent())?)
}
