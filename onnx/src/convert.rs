//! ONNX nodes to Sfumato ops, one node at a time, with each op's per-opset attribute defaults.

use super::proto::{attr_type, AttributeProto, NodeProto, ValueInfoProto};
use super::tensor::{checked_dims, dtype_of, from_proto, MAX_ELEMENTS};
use super::ImportOptions;
use crate::{Error, Result};
use sfumato_core::op::*;
use sfumato_core::{
    CpuDevice, DType, Device, Error as CoreError, Graph, Op, Shape, Tensor, TensorData, ValueId,
};
use std::collections::HashMap;

mod composite;
mod control;
mod more;
mod sequence;
use composite::{ResizeAxis, ResizeSpec};

/// The op types (default domain) the importer converts to ops (the sequence, optional and
/// control-flow ops it resolves itself are `sequence::STRUCTURED_OPS`).
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Attention",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "LpPool",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "NegativeLogLikelihoodLoss",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RMSNormalization",
    "Range",
    "OneHot",
    "Hardmax",
    "LpNormalization",
    "CumSum",
    "IsInf",
    "Swish",
    "SpaceToDepth",
    "DepthToSpace",
    "EyeLike",
    "Compress",
    "CenterCropPad",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "Round",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "SoftmaxCrossEntropyLoss",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Whether the importer converts this node's op (some attribute values may still be refused).
pub fn supports(n: &NodeProto) -> bool {
    (n.domain.is_empty() || n.domain == "ai.onnx")
        && (SUPPORTED.contains(&n.op_type.as_str()) || sequence::is_structured_op(&n.op_type))
}

/// Why one node cannot be converted: a gap (unsupported) or a malformed node (error).
enum Fail {
    Unsupported(String),
    Bad(String),
}

type R<T> = std::result::Result<T, Fail>;

fn bad<T>(m: impl Into<String>) -> R<T> {
    Err(Fail::Bad(m.into()))
}
fn unsup<T>(m: impl Into<String>) -> R<T> {
    Err(Fail::Unsupported(m.into()))
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Unsupported { msg, .. } => Fail::Unsupported(msg),
            CoreError::Node { msg, .. } => Fail::Bad(msg),
            other => Fail::Bad(other.to_string()),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e.into(),
            other => Fail::Bad(other.to_string()),
        }
    }
}

/// A value of the graph being imported: a tensor, or an ONNX sequence or optional of them
/// (known in structure at import; only its tensors reach the graph).
#[derive(Clone, Debug)]
pub(crate) enum Val {
    T(ValueId),
    Seq(Vec<Val>),
    Opt(Option<Box<Val>>),
}

impl Val {
    fn leaf_count(&self) -> usize {
        match self {
            Val::T(_) => 1,
            Val::Seq(s) => s.iter().map(Val::leaf_count).sum(),
            Val::Opt(o) => o.as_ref().map_or(0, |v| v.leaf_count()),
        }
    }

    /// The tensors, depth first.
    fn leaves(&self, out: &mut Vec<ValueId>) {
        match self {
            Val::T(v) => out.push(*v),
            Val::Seq(s) => s.iter().for_each(|x| x.leaves(out)),
            Val::Opt(o) => o.iter().for_each(|x| x.leaves(out)),
        }
    }
}

pub(crate) struct Importer<'a> {
    g: Graph,
    /// Sequences and optionals by name (tensors are in `vals`).
    others: HashMap<String, Val>,
    opset: i64,
    opts: &'a ImportOptions,
    vals: HashMap<String, ValueId>,
    consts: HashMap<ValueId, Tensor>,
    /// The node being converted: name, op type, inputs (empty string: absent), attributes.
    name: String,
    op: String,
    ins: Vec<String>,
    attrs: Vec<AttributeProto>,
    n_outputs: usize,
    helpers: usize,
    /// Control-flow body nodes converted so far (capped: `control::MAX_UNROLLED_NODES`), and the
    /// elements of body initializers copied (capped: `control::MAX_UNROLLED_ELEMENTS`).
    inlined: usize,
    inlined_elements: usize,
}

impl<'a> Importer<'a> {
    pub(crate) fn new(opset: i64, opts: &'a ImportOptions) -> Self {
        Importer {
            g: Graph::new(),
            others: HashMap::new(),
            opset,
            opts,
            vals: HashMap::new(),
            consts: HashMap::new(),
            name: String::new(),
            op: String::new(),
            ins: Vec::new(),
            attrs: Vec::new(),
            n_outputs: 0,
            helpers: 0,
            inlined: 0,
            inlined_elements: 0,
        }
    }

    pub(crate) fn finish(self) -> Graph {
        self.g
    }

    pub(crate) fn is_defined(&self, name: &str) -> bool {
        self.vals.contains_key(name)
    }

    pub(crate) fn define_const(&mut self, name: &str, t: Tensor) -> Result<()> {
        let v = self.g.add_named(name, Op::Constant(t.clone()), &[])?[0];
        self.consts.insert(v, t);
        self.bind(name, Val::T(v));
        Ok(())
    }

    pub(crate) fn define_input(
        &mut self,
        name: &str,
        dtype: DType,
        dims: Vec<usize>,
    ) -> Result<()> {
        let v = self.g.input(name, dtype, dims);
        self.vals.insert(name.to_string(), v);
        Ok(())
    }

    /// A graph output by name: its value, or for a sequence or optional its leaves, named
    /// `NAME.K`.
    pub(crate) fn materialize(&mut self, name: &str) -> Result<Vec<(String, ValueId)>> {
        if let Some(&v) = self.vals.get(name) {
            return Ok(vec![(name.to_string(), v)]);
        }
        let val = self.others.get(name).ok_or_else(|| {
            Error::Model(format!("graph output '{name}' is not produced by any node"))
        })?;
        let mut leaves = Vec::new();
        val.leaves(&mut leaves);
        Ok(leaves
            .into_iter()
            .enumerate()
            .map(|(k, v)| (super::leaf_name(name, k), v))
            .collect())
    }

    /// Name a value (a tensor in `vals`, a sequence or optional in `others`; a name is in one
    /// of them only, so an inner scope's value hides an outer one of the other kind).
    pub(super) fn bind(&mut self, name: &str, v: Val) {
        match v {
            Val::T(t) => {
                self.others.remove(name);
                self.vals.insert(name.to_string(), t);
            }
            other => {
                self.vals.remove(name);
                self.others.insert(name.to_string(), other);
            }
        }
    }

    /// A sequence or optional graph input: a graph input `NAME.K` for each of its tensors.
    pub(crate) fn define_structured_input(
        &mut self,
        name: &str,
        v: &super::OnnxValue,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let val = self.structured_leaves(name, v, &mut names)?;
        self.others.insert(name.to_string(), val);
        Ok(names)
    }

    fn structured_leaves(
        &mut self,
        name: &str,
        v: &super::OnnxValue,
        names: &mut Vec<String>,
    ) -> Result<Val> {
        use super::OnnxValue as O;
        Ok(match v {
            O::Tensor(t) => {
                let leaf = super::leaf_name(name, names.len());
                if self.vals.contains_key(&leaf) || self.others.contains_key(&leaf) {
                    return Err(Error::Model(format!(
                        "the sequence or optional input '{name}' would name a tensor '{leaf}', which the model already defines"
                    )));
                }
                self.define_input(&leaf, t.dtype(), t.dims().to_vec())?;
                let id = self.vals[&leaf];
                names.push(leaf);
                Val::T(id)
            }
            O::Sequence(s) => Val::Seq(
                s.iter()
                    .map(|x| self.structured_leaves(name, x, names))
                    .collect::<Result<_>>()?,
            ),
            O::Optional(o) => Val::Opt(match o {
                None => None,
                Some(x) => Some(Box::new(self.structured_leaves(name, x, names)?)),
            }),
        })
    }

    /// An input's dtype and concrete dims: the caller's shape, else the declared one with
    /// symbolic dims bound.
    pub(crate) fn input_type(&self, v: &ValueInfoProto) -> Result<(DType, Vec<usize>)> {
        let unsupported = |msg: String| {
            Error::Core(CoreError::Unsupported {
                node: v.name.clone(),
                op: "graph input".into(),
                inputs: String::new(),
                msg,
            })
        };
        let t = v
            .r#type
            .as_ref()
            .ok_or_else(|| Error::Model(format!("input '{}' has no type", v.name)))?;
        let Some(tt) = &t.tensor_type else {
            return Err(unsupported(
                "only tensor inputs are supported (not sequences, maps or optionals)".into(),
            ));
        };
        let dtype = dtype_of(tt.elem_type).map_err(unsupported)?;
        if let Some(s) = self.opts.input_shapes.get(&v.name) {
            return Ok((dtype, s.clone()));
        }
        let shape = tt
            .shape
            .as_ref()
            .ok_or_else(|| Error::Model(format!("input '{}' has no shape; give one", v.name)))?;
        let mut dims = Vec::new();
        for d in &shape.dim {
            let n = match (&d.dim_value, &d.dim_param) {
                (Some(n), _) if *n >= 0 => *n as usize,
                (Some(n), _) => {
                    return Err(Error::Model(format!(
                        "input '{}' has a negative dim {n}",
                        v.name
                    )))
                }
                (None, p) => {
                    let p = p.clone().unwrap_or_default();
                    match self.opts.dims.get(&p).copied().or(self.opts.default_dim) {
                        Some(n) => n,
                        None => {
                            return Err(Error::Model(format!(
                                "input '{}' has a symbolic dim '{}'; bind it (e.g. --dim {}=1)",
                                v.name,
                                if p.is_empty() { "?" } else { &p },
                                if p.is_empty() { "NAME" } else { &p }
                            )))
                        }
                    }
                }
            };
            dims.push(n);
        }
        let as_i64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        checked_dims(&as_i64, &format!("input '{}'", v.name))?;
        Ok((dtype, dims))
    }

    /// Convert one node.
    pub(crate) fn node(&mut self, n: &NodeProto) -> Result<()> {
        self.name = super::node_name(n, self.g.nodes().len());
        self.op = n.op_type.clone();
        self.ins = n.input.clone();
        self.attrs = n.attribute.clone();
        self.n_outputs = n.output.len();
        self.helpers = 0;
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if !self.vals.contains_key(i) && !self.others.contains_key(i) {
                return Err(Error::Model(format!(
                    "node '{}' ({}) reads '{i}', which no initializer, input or earlier node defines (the graph must be acyclic and sorted)",
                    self.name, self.op
                )));
            }
        }
        let structured = sequence::is_structured_op(&self.op)
            || (self.op == "Identity"
                && self
                    .ins
                    .first()
                    .is_some_and(|i| self.others.contains_key(i)));
        let converted = if structured {
            self.convert_structured()
        } else {
            self.convert().map(|v| v.into_iter().map(Val::T).collect())
        };
        let outs = match converted {
            Ok(o) => o,
            Err(f) => {
                let inputs = self.describe_inputs();
                return Err(Error::Core(match f {
                    Fail::Unsupported(msg) => CoreError::Unsupported {
                        node: self.name.clone(),
                        op: format!("{} (opset {})", self.op, self.opset),
                        inputs,
                        msg,
                    },
                    Fail::Bad(msg) => CoreError::Node {
                        node: self.name.clone(),
                        op: self.op.clone(),
                        inputs,
                        msg,
                    },
                }));
            }
        };
        for (k, name) in n.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let Some(v) = outs.get(k) else {
                return Err(CoreError::Unsupported {
                    node: self.name.clone(),
                    op: format!("{} (opset {})", self.op, self.opset),
                    inputs: self.describe_inputs(),
                    msg: format!("output {k} ('{name}') is not supported"),
                }
                .into());
            };
            self.bind(name, v.clone());
        }
        Ok(())
    }

    fn describe_inputs(&self) -> String {
        self.ins
            .iter()
            .map(|i| match self.vals.get(i) {
                Some(&v) => format!("{i}: {} {}", self.g.dtype(v), self.g.shape(v)),
                None => format!("{i}: ?"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    // ---- inputs and attributes ----

    fn has(&self, i: usize) -> bool {
        self.ins.get(i).is_some_and(|s| !s.is_empty())
    }

    fn inp(&self, i: usize) -> R<ValueId> {
        match self.ins.get(i).filter(|s| !s.is_empty()) {
            Some(s) => match self.vals.get(s) {
                Some(&v) => Ok(v),
                None if self.others.contains_key(s) => unsup(format!(
                    "input {i} ('{s}') is a sequence or optional where a tensor is expected"
                )),
                None => bad(format!("input {i} ('{s}') is not defined")),
            },
            None => bad(format!("input {i} is missing")),
        }
    }

    fn shape(&self, v: ValueId) -> Vec<usize> {
        self.g.shape(v).dims().to_vec()
    }

    /// The value of input `i`, which must be known at import (an initializer, a constant, or
    /// computed from them).
    fn const_in(&mut self, i: usize) -> R<Tensor> {
        let v = self.inp(i)?;
        self.const_of(v).ok_or_else(|| {
            Fail::Unsupported(format!(
                "input {i} ('{}') must be known when the model loads (an initializer or constant)",
                self.ins[i]
            ))
        })
    }

    fn const_ints(&mut self, i: usize) -> R<Vec<i64>> {
        let t = self.const_in(i)?;
        if t.dtype().is_float() {
            return bad(format!("input {i} must be integers, got {}", t.dtype()));
        }
        Ok(t.to_i64_vec())
    }

    /// The value of `v` if it depends on no graph input: evaluated on the CPU reference.
    fn const_of(&mut self, v: ValueId) -> Option<Tensor> {
        if let Some(t) = self.consts.get(&v) {
            return Some(t.clone());
        }
        // The backward slice of v: every node it needs, none reading a graph input.
        let mut need = vec![false; self.g.nodes().len()];
        let mut leaves: Vec<(ValueId, Tensor)> = Vec::new();
        let mut stack = vec![v];
        while let Some(x) = stack.pop() {
            // A value known already (a constant, or computed before) ends the walk: a chain
            // of unrolled iterations is not evaluated again from its start.
            if let Some(t) = self.consts.get(&x) {
                if !leaves.iter().any(|(l, _)| *l == x) {
                    leaves.push((x, t.clone()));
                }
                continue;
            }
            let Some(p) = self.g.value(x).producer else {
                // A graph input: usable only if the caller gave its value.
                let t = self.opts.known_inputs.get(&self.g.value(x).name)?;
                if !leaves.iter().any(|(l, _)| *l == x) {
                    leaves.push((x, t.clone()));
                }
                continue;
            };
            if !need[p.index()] {
                need[p.index()] = true;
                stack.extend(self.g.node(p).inputs.iter().copied());
            }
        }
        let mut sub = Graph::new();
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for (x, t) in leaves {
            if self.g.dtype(x) != t.dtype() || self.g.shape(x) != t.shape() {
                return None;
            }
            map.insert(
                x,
                sub.add_named(&self.g.value(x).name, Op::Constant(t), &[])
                    .ok()?[0],
            );
        }
        for n in self.g.nodes().iter().filter(|n| need[n.id.index()]) {
            let ins: Vec<ValueId> = n.inputs.iter().map(|i| map[i]).collect();
            let outs = sub.add_named(&n.name, n.op.clone(), &ins).ok()?;
            for (a, b) in n.outputs.iter().zip(outs) {
                map.insert(*a, b);
            }
        }
        sub.set_outputs(&[map[&v]]).ok()?;
        let t = CpuDevice.run(&sub, &[]).ok()?.outputs.pop()?;
        self.consts.insert(v, t.clone());
        Some(t)
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attrs.iter().find(|a| a.name == name)
    }

    fn ai(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    fn af(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    fn ais(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    fn astr(&self, name: &str, default: &str) -> String {
        self.attr(name).map_or(default.to_string(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    }

    // ---- building ----

    fn add(&mut self, op: Op, ins: &[ValueId]) -> R<Vec<ValueId>> {
        let name = if self.helpers == 0 {
            self.name.clone()
        } else {
            format!("{}/{}", self.name, self.helpers)
        };
        self.helpers += 1;
        Ok(self.g.add_named(&name, op, ins)?)
    }

    fn add1(&mut self, op: Op, ins: &[ValueId]) -> R<ValueId> {
        Ok(self.add(op, ins)?[0])
    }

    fn konst(&mut self, t: Tensor) -> R<ValueId> {
        let v = self.add1(Op::Constant(t.clone()), &[])?;
        self.consts.insert(v, t);
        Ok(v)
    }

    fn scalar(&mut self, dtype: DType, x: f64) -> R<ValueId> {
        self.konst(Tensor::from_f64(dtype, Shape::scalar(), &[x]))
    }

    /// A plain (saturating) cast.
    fn cast(&mut self, x: ValueId, to: DType) -> R<ValueId> {
        self.add1(Op::Cast { to, saturate: true }, &[x])
    }

    fn reshape(&mut self, x: ValueId, dims: Vec<usize>) -> R<ValueId> {
        self.add1(Op::Reshape { shape: dims }, &[x])
    }

    /// An axis of a tensor that has one (rank >= 1): where the caller indexes the dims by it.
    fn axis_in(&self, a: i64, rank: usize) -> R<usize> {
        if rank == 0 {
            return bad("the input is a scalar; it has no axis");
        }
        self.axis(a, rank)
    }

    fn axis(&self, a: i64, rank: usize) -> R<usize> {
        let r = rank as i64;
        if a < -r || a >= r.max(1) {
            return bad(format!("axis {a} is out of range for rank {rank}"));
        }
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    }

    fn axes(&self, axes: &[i64], rank: usize) -> R<Vec<usize>> {
        let mut out: Vec<usize> = axes.iter().map(|&a| self.axis(a, rank)).collect::<R<_>>()?;
        out.sort_unstable();
        let n = out.len();
        out.dedup();
        if out.len() != n {
            return bad(format!("repeated axis in {axes:?}"));
        }
        Ok(out)
    }

    fn unary(&mut self, u: UnaryOp) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        self.add(Op::Unary(u), &[x])
    }

    fn binary(&mut self, b: BinaryOp) -> R<Vec<ValueId>> {
        let (a, mut c) = (self.inp(0)?, self.inp(1)?);
        if b == BinaryOp::Pow && self.g.dtype(a) != self.g.dtype(c) {
            let to = self.g.dtype(a);
            c = self.cast(c, to)?;
        }
        self.add(Op::Binary(b), &[a, c])
    }

    fn variadic(&mut self, b: BinaryOp) -> R<ValueId> {
        let n = self.ins.len();
        let mut acc = self.inp(0)?;
        for i in 1..n {
            let x = self.inp(i)?;
            acc = self.add1(Op::Binary(b), &[acc, x])?;
        }
        Ok(acc)
    }

    fn convert(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let opset = self.opset;
        match op.as_str() {
            "Relu" => self.unary(UnaryOp::Relu),
            "Sigmoid" => self.unary(UnaryOp::Sigmoid),
            "Tanh" => self.unary(UnaryOp::Tanh),
            "Exp" => self.unary(UnaryOp::Exp),
            "Log" => self.unary(UnaryOp::Log),
            "Sqrt" => self.unary(UnaryOp::Sqrt),
            "Neg" => self.unary(UnaryOp::Neg),
            "Abs" => self.unary(UnaryOp::Abs),
            "Erf" => self.unary(UnaryOp::Erf),
            "HardSwish" => self.unary(UnaryOp::HardSwish),
            "Sin" => self.unary(UnaryOp::Sin),
            "Cos" => self.unary(UnaryOp::Cos),
            "Tan" => self.unary(UnaryOp::Tan),
            "Asin" => self.unary(UnaryOp::Asin),
            "Acos" => self.unary(UnaryOp::Acos),
            "Atan" => self.unary(UnaryOp::Atan),
            "Sinh" => self.unary(UnaryOp::Sinh),
            "Cosh" => self.unary(UnaryOp::Cosh),
            "Asinh" => self.unary(UnaryOp::Asinh),
            "Acosh" => self.unary(UnaryOp::Acosh),
            "Atanh" => self.unary(UnaryOp::Atanh),
            "Floor" => self.unary(UnaryOp::Floor),
            "Ceil" => self.unary(UnaryOp::Ceil),
            "Round" => self.unary(UnaryOp::Round),
            "Sign" => self.unary(UnaryOp::Sign),

            "LeakyRelu" => {
                let alpha = self.af("alpha", 0.01);
                self.unary(UnaryOp::LeakyRelu { alpha })
            }
            "Gelu" => match self.astr("approximate", "none").as_str() {
                "none" => self.unary(UnaryOp::Gelu),
                "tanh" => self.unary(UnaryOp::GeluTanh),
                other => unsup(format!("approximate = '{other}'")),
            },
            "Reciprocal" => {
                let x = self.inp(0)?;
                let one = self.scalar(self.g.dtype(x), 1.0)?;
                self.add(Op::Binary(BinaryOp::Div), &[one, x])
            }
            "Softsign" => {
                let x = self.inp(0)?;
                let a = self.add1(Op::Unary(UnaryOp::Abs), &[x])?;
                let one = self.scalar(self.g.dtype(x), 1.0)?;
                let d = self.add1(Op::Binary(BinaryOp::Add), &[a, one])?;
                self.add(Op::Binary(BinaryOp::Div), &[x, d])
            }
            "HardSigmoid" => {
                let x = self.inp(0)?;
                let dt = self.g.dtype(x);
                let (alpha, beta) = (self.af("alpha", 0.2), self.af("beta", 0.5));
                let a = self.scalar(dt, alpha as f64)?;
                let b = self.scalar(dt, beta as f64)?;
                let y = self.add1(Op::Binary(BinaryOp::Mul), &[x, a])?;
                let y = self.add1(Op::Binary(BinaryOp::Add), &[y, b])?;
                self.add(Op::Unary(UnaryOp::Clip { min: 0.0, max: 1.0 }), &[y])
            }
            "Clip" => {
                let x = self.inp(0)?;
                let dt = self.g.dtype(x);
                if dt == DType::Bool {
                    return bad("Clip of bool");
                }
                if !dt.is_float() {
                    // Integers: Max with the lower bound, then Min with the upper one (bounds
                    // of the input's dtype, absent ones skipped).
                    let mut y = x;
                    for (i, b) in [(1, BinaryOp::Max), (2, BinaryOp::Min)] {
                        if opset >= 11 && self.has(i) {
                            let t = self.const_in(i)?;
                            if t.numel() != 1 {
                                return bad(format!("input {i} must hold one value"));
                            }
                            let v = self.scalar(dt, t.to_f64_vec()[0])?;
                            y = self.add1(Op::Binary(b), &[y, v])?;
                        }
                    }
                    return Ok(vec![y]);
                }
                let (mut min, mut max) = (f32::NEG_INFINITY, f32::INFINITY);
                if opset < 11 {
                    min = self.af("min", min);
                    max = self.af("max", max);
                } else {
                    if self.has(1) {
                        min = self
                            .const_in(1)?
                            .to_f64_vec()
                            .first()
                            .copied()
                            .unwrap_or(min as f64) as f32;
                    }
                    if self.has(2) {
                        max = self
                            .const_in(2)?
                            .to_f64_vec()
                            .first()
                            .copied()
                            .unwrap_or(max as f64) as f32;
                    }
                }
                self.add(Op::Unary(UnaryOp::Clip { min, max }), &[x])
            }
            "Identity" => Ok(vec![self.inp(0)?]),
            "PRelu" => {
                let (x, slope) = (self.inp(0)?, self.inp(1)?);
                let zero = self.scalar(self.g.dtype(x), 0.0)?;
                let neg = self.add1(Op::Binary(BinaryOp::Lt), &[x, zero])?;
                let sx = self.add1(Op::Binary(BinaryOp::Mul), &[x, slope])?;
                self.add(Op::Where, &[neg, sx, x])
            }
            "Elu" | "Selu" | "Celu" => {
                let x = self.inp(0)?;
                let dt = self.g.dtype(x);
                let (alpha, gamma) = match op.as_str() {
                    "Elu" => (self.af("alpha", 1.0), 1.0),
                    "Selu" => (self.af("alpha", 1.673_263_2), self.af("gamma", 1.050_701)),
                    _ => (self.af("alpha", 1.0), 1.0),
                };
                // alpha * (exp(x / a) - 1) below zero (a = alpha for Celu, else 1), x above.
                let zero = self.scalar(dt, 0.0)?;
                let one = self.scalar(dt, 1.0)?;
                let al = self.scalar(dt, alpha as f64)?;
                let xs = if op == "Celu" {
                    self.add1(Op::Binary(BinaryOp::Div), &[x, al])?
                } else {
                    x
                };
                let e = self.add1(Op::Unary(UnaryOp::Exp), &[xs])?;
                let em1 = self.add1(Op::Binary(BinaryOp::Sub), &[e, one])?;
                let neg = self.add1(Op::Binary(BinaryOp::Mul), &[em1, al])?;
                let pos = self.add1(Op::Binary(BinaryOp::Gt), &[x, zero])?;
                let y = self.add1(Op::Where, &[pos, x, neg])?;
                if op == "Selu" {
                    let g = self.scalar(dt, gamma as f64)?;
                    self.add(Op::Binary(BinaryOp::Mul), &[y, g])
                } else {
                    Ok(vec![y])
                }
            }
            "ThresholdedRelu" => {
                let x = self.inp(0)?;
                let dt = self.g.dtype(x);
                let a = self.scalar(dt, self.af("alpha", 1.0) as f64)?;
                let zero = self.scalar(dt, 0.0)?;
                let above = self.add1(Op::Binary(BinaryOp::Gt), &[x, a])?;
                self.add(Op::Where, &[above, x, zero])
            }
            "Softplus" | "Mish" => {
                // softplus(x) = log1p(exp(x)), with Kahan's log1p (log(u) * y / (u - 1), u = 1 + y)
                // so it stays accurate where exp(x) is tiny, and x itself above 20.
                let x = self.inp(0)?;
                let dt = self.g.dtype(x);
                let (one, zero, twenty) = (
                    self.scalar(dt, 1.0)?,
                    self.scalar(dt, 0.0)?,
                    self.scalar(dt, 20.0)?,
                );
                let y = self.add1(Op::Unary(UnaryOp::Exp), &[x])?;
                let u = self.add1(Op::Binary(BinaryOp::Add), &[y, one])?;
                let lu = self.add1(Op::Unary(UnaryOp::Log), &[u])?;
                let num = self.add1(Op::Binary(BinaryOp::Mul), &[lu, y])?;
                let den = self.add1(Op::Binary(BinaryOp::Sub), &[u, one])?;
                let q = self.add1(Op::Binary(BinaryOp::Div), &[num, den])?;
                let exact = self.add1(Op::Binary(BinaryOp::Eq), &[den, zero])?;
                let l1p = self.add1(Op::Where, &[exact, y, q])?;
                let big = self.add1(Op::Binary(BinaryOp::Gt), &[x, twenty])?;
                let sp = self.add1(Op::Where, &[big, x, l1p])?;
                if op == "Mish" {
                    let t = self.add1(Op::Unary(UnaryOp::Tanh), &[sp])?;
                    self.add(Op::Binary(BinaryOp::Mul), &[x, t])
                } else {
                    Ok(vec![sp])
                }
            }
            "Mod" => {
                let (a, b) = (self.inp(0)?, self.inp(1)?);
                let dt = self.g.dtype(a);
                let fmod = self.ai("fmod", 0) != 0;
                // The truncated quotient: integer division truncates; floats go through i32.
                let q = self.add1(Op::Binary(BinaryOp::Div), &[a, b])?;
                let q = if dt.is_float() {
                    if !fmod {
                        return unsup("Mod with fmod = 0 (floor) on floating-point inputs");
                    }
                    let qi = self.cast(q, DType::I32)?;
                    self.cast(qi, dt)?
                } else {
                    q
                };
                let bq = self.add1(Op::Binary(BinaryOp::Mul), &[b, q])?;
                let r = self.add1(Op::Binary(BinaryOp::Sub), &[a, bq])?;
                if fmod {
                    return Ok(vec![r]);
                }
                // Python's modulo: the sign of the divisor.
                let zero = self.scalar(dt, 0.0)?;
                let nz = self.add1(Op::Binary(BinaryOp::Ne), &[r, zero])?;
                let rn = self.add1(Op::Binary(BinaryOp::Lt), &[r, zero])?;
                let bn = self.add1(Op::Binary(BinaryOp::Lt), &[b, zero])?;
                let differ = self.add1(Op::Binary(BinaryOp::Ne), &[rn, bn])?;
                let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
                let fix = self.add1(Op::Where, &[nz, differ, no])?;
                let rb = self.add1(Op::Binary(BinaryOp::Add), &[r, b])?;
                self.add(Op::Where, &[fix, rb, r])
            }
            "Not" | "And" | "Or" | "Xor" => {
                let a = self.inp(0)?;
                if self.g.dtype(a) != DType::Bool {
                    return bad(format!("{op} takes bool, got {}", self.g.dtype(a)));
                }
                let konst =
                    |s: &mut Self, v: bool| s.konst(Tensor::from_bool(Shape::scalar(), vec![v])?);
                match op.as_str() {
                    "Not" => {
                        let f = konst(self, false)?;
                        self.add(Op::Binary(BinaryOp::Eq), &[a, f])
                    }
                    "Xor" => {
                        let b = self.inp(1)?;
                        self.add(Op::Binary(BinaryOp::Ne), &[a, b])
                    }
                    "And" => {
                        let (b, f) = (self.inp(1)?, konst(self, false)?);
                        self.add(Op::Where, &[a, b, f])
                    }
                    _ => {
                        let (b, t) = (self.inp(1)?, konst(self, true)?);
                        self.add(Op::Where, &[a, t, b])
                    }
                }
            }
            "Dropout" => self.dropout(),
            "OneHot" => self.one_hot(),
            "Hardmax" => self.hardmax(),
            "LpNormalization" => self.lp_normalization(),
            "CumSum" => self.cum_sum(),
            "IsInf" => self.is_inf(),
            "Swish" => self.swish(),
            "SpaceToDepth" => self.space_depth(true),
            "DepthToSpace" => self.space_depth(false),
            "EyeLike" => self.eye_like(),
            "Compress" => self.compress(),
            "CenterCropPad" => self.center_crop_pad(),
            "Add" => self.binary(BinaryOp::Add),
            "Sub" => self.binary(BinaryOp::Sub),
            "Mul" => self.binary(BinaryOp::Mul),
            "Div" => self.binary(BinaryOp::Div),
            "Pow" => self.binary(BinaryOp::Pow),
            "Equal" => self.binary(BinaryOp::Eq),
            "Less" => self.binary(BinaryOp::Lt),
            "LessOrEqual" => self.binary(BinaryOp::Le),
            "Greater" => self.binary(BinaryOp::Gt),
            "GreaterOrEqual" => self.binary(BinaryOp::Ge),
            "Max" => Ok(vec![self.variadic(BinaryOp::Max)?]),
            "Min" => Ok(vec![self.variadic(BinaryOp::Min)?]),
            "Sum" => Ok(vec![self.variadic(BinaryOp::Add)?]),
            "Mean" => {
                let s = self.variadic(BinaryOp::Add)?;
                let n = self.scalar(self.g.dtype(s), self.ins.len() as f64)?;
                self.add(Op::Binary(BinaryOp::Div), &[s, n])
            }
            "Where" => {
                let (c, a, b) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
                self.add(Op::Where, &[c, a, b])
            }
            "Cast" => {
                let to = dtype_of(self.ai("to", 0) as i32).map_err(Fail::Unsupported)?;
                let x = self.inp(0)?;
                let saturate = self.ai("saturate", 1) != 0;
                let round_mode = self.astr("round_mode", "up");
                if to == DType::F8E8M0 && round_mode != "up" {
                    return unsup(format!(
                        "round_mode '{round_mode}' to float8e8m0 (only 'up')"
                    ));
                }
                self.add(Op::Cast { to, saturate }, &[x])
            }
            "CastLike" => {
                let (x, t) = (self.inp(0)?, self.inp(1)?);
                let to = self.g.dtype(t);
                let saturate = self.ai("saturate", 1) != 0;
                self.add(Op::Cast { to, saturate }, &[x])
            }
            "MatMul" => {
                let (a, b) = (self.inp(0)?, self.inp(1)?);
                self.add(Op::MatMul, &[a, b])
            }
            "Gemm" => {
                let gm = Gemm {
                    alpha: self.af("alpha", 1.0),
                    beta: self.af("beta", 1.0),
                    trans_a: self.ai("transA", 0) != 0,
                    trans_b: self.ai("transB", 0) != 0,
                };
                let (a, b) = (self.inp(0)?, self.inp(1)?);
                let mut ins = vec![a, b];
                if self.has(2) {
                    ins.push(self.inp(2)?);
                }
                self.add(Op::Gemm(gm), &ins)
            }
            "Conv" => self.conv(false),
            "ConvTranspose" => self.conv(true),
            "BatchNormalization" => {
                if self.ai("training_mode", 0) != 0 {
                    return self.batch_norm_training();
                }
                let epsilon = self.af("epsilon", 1e-5);
                let ins: Vec<ValueId> = (0..5).map(|i| self.inp(i)).collect::<R<_>>()?;
                self.add(Op::BatchNorm { epsilon }, &ins)
            }
            "Softmax" | "LogSoftmax" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let rank = dims.len();
                let y = if opset < 13 {
                    // Softmax over the 2-D coercion [prod(dims[..axis]), prod(dims[axis..])].
                    let a = self.axis(self.ai("axis", 1), rank)?;
                    let outer: usize = dims[..a].iter().product();
                    let inner: usize = dims[a..].iter().product();
                    let x2 = self.reshape(x, vec![outer, inner])?;
                    let s = self.add1(Op::Softmax { axis: 1 }, &[x2])?;
                    self.reshape(s, dims)?
                } else {
                    let axis = self.axis(self.ai("axis", -1), rank)?;
                    self.add1(Op::Softmax { axis }, &[x])?
                };
                if op == "LogSoftmax" {
                    self.add(Op::Unary(UnaryOp::Log), &[y])
                } else {
                    Ok(vec![y])
                }
            }
            "LayerNormalization" => {
                if self.ai("stash_type", 1) != 1 {
                    return unsup("stash_type other than float");
                }
                let x = self.inp(0)?;
                let axis = self.axis(self.ai("axis", -1), self.g.shape(x).rank())?;
                let epsilon = self.af("epsilon", 1e-5);
                let mut ins = vec![x, self.inp(1)?];
                if self.has(2) {
                    ins.push(self.inp(2)?);
                }
                let y = self.add1(Op::LayerNorm { axis, epsilon }, &ins)?;
                if self.n_outputs < 2 {
                    return Ok(vec![y]);
                }
                // The optional Mean and InvStdDev outputs, over the normalized axes (kept).
                let axes: Vec<usize> = (axis..self.g.shape(x).rank()).collect();
                let mean_of = |s: &mut Self, v| {
                    s.add1(
                        Op::Reduce {
                            op: ReduceOp::Mean,
                            axes: axes.clone(),
                            keepdim: true,
                        },
                        &[v],
                    )
                };
                let mean = mean_of(self, x)?;
                let d = self.add1(Op::Binary(BinaryOp::Sub), &[x, mean])?;
                let d2 = self.add1(Op::Binary(BinaryOp::Mul), &[d, d])?;
                let var = mean_of(self, d2)?;
                let eps = self.scalar(self.g.dtype(x), epsilon as f64)?;
                let ve = self.add1(Op::Binary(BinaryOp::Add), &[var, eps])?;
                let inv = self.add1(Op::Unary(UnaryOp::Rsqrt), &[ve])?;
                Ok(vec![y, mean, inv])
            }
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => {
                // (elementwise before, reduction, elementwise after)
                let (pre, rop, post) = match op.as_str() {
                    "ReduceSum" => (None, ReduceOp::Sum, None),
                    "ReduceMean" => (None, ReduceOp::Mean, None),
                    "ReduceMax" => (None, ReduceOp::Max, None),
                    "ReduceMin" => (None, ReduceOp::Min, None),
                    "ReduceProd" => (None, ReduceOp::Prod, None),
                    "ReduceL1" => (Some("abs"), ReduceOp::Sum, None),
                    "ReduceL2" => (Some("square"), ReduceOp::Sum, Some(UnaryOp::Sqrt)),
                    "ReduceSumSquare" => (Some("square"), ReduceOp::Sum, None),
                    "ReduceLogSum" => (None, ReduceOp::Sum, Some(UnaryOp::Log)),
                    _ => (Some("exp"), ReduceOp::Sum, Some(UnaryOp::Log)),
                };
                let mut x0 = self.inp(0)?;
                let dt0 = self.g.dtype(x0);
                if dt0 == DType::Bool {
                    // Max is any, Min is all: reduce the bools as u8 and cast back.
                    if !matches!(rop, ReduceOp::Max | ReduceOp::Min) || pre.is_some() {
                        return unsup(format!("{op} of bool"));
                    }
                    x0 = self.cast(x0, DType::U8)?;
                }
                let x = match pre {
                    Some("abs") => self.add1(Op::Unary(UnaryOp::Abs), &[x0])?,
                    Some("square") => self.add1(Op::Binary(BinaryOp::Mul), &[x0, x0])?,
                    Some(_) => self.add1(Op::Unary(UnaryOp::Exp), &[x0])?,
                    None => x0,
                };
                let finish = |s: &mut Self, v: ValueId| -> R<Vec<ValueId>> {
                    match post {
                        Some(u) => s.add(Op::Unary(u), &[v]),
                        None => Ok(vec![v]),
                    }
                };
                let rank = self.g.shape(x).rank();
                let axes_as_input = if op == "ReduceSum" {
                    opset >= 13
                } else {
                    opset >= 18
                };
                let axes = if axes_as_input {
                    if self.has(1) {
                        Some(self.const_ints(1)?)
                    } else {
                        None
                    }
                } else {
                    self.ais("axes")
                };
                let keepdim = self.ai("keepdims", 1) != 0;
                let axes = match axes {
                    Some(a) if !a.is_empty() => self.axes(&a, rank)?,
                    _ if self.ai("noop_with_empty_axes", 0) != 0 => {
                        return if dt0 == DType::Bool {
                            Ok(vec![self.inp(0)?])
                        } else {
                            finish(self, x)
                        };
                    }
                    _ => (0..rank).collect(),
                };
                let dims = self.shape(x);
                if matches!(rop, ReduceOp::Max | ReduceOp::Min)
                    && axes.iter().any(|&a| dims[a] == 0)
                {
                    // Over an empty set: the identity, the lowest (highest) value of the dtype.
                    let out = sfumato_core::op::reduced_dims(&dims, &axes, keepdim);
                    let n: usize = out.iter().product();
                    let v = match (rop == ReduceOp::Max, dt0 == DType::Bool) {
                        (true, true) => 0.0,
                        (false, true) => 1.0,
                        (true, false) => f64::NEG_INFINITY,
                        (false, false) => f64::INFINITY,
                    };
                    return Ok(vec![self.konst(Tensor::from_f64(dt0, out, &vec![v; n]))?]);
                }
                let r = self.add1(
                    Op::Reduce {
                        op: rop,
                        axes,
                        keepdim,
                    },
                    &[x],
                )?;
                if dt0 == DType::Bool {
                    return Ok(vec![self.cast(r, DType::Bool)?]);
                }
                finish(self, r)
            }
            "MaxPool" | "AveragePool" => {
                let x = self.inp(0)?;
                self.pool(op == "MaxPool", x, false)
            }
            "LpPool" => self.lp_pool(),
            "GlobalAveragePool" => {
                let x = self.inp(0)?;
                if self.g.shape(x).rank() != 4 {
                    return unsup("GlobalAveragePool of a tensor that is not 4-D (NCHW)");
                }
                self.add(Op::GlobalAvgPool, &[x])
            }
            "GlobalMaxPool" => {
                let x = self.inp(0)?;
                let rank = self.g.shape(x).rank();
                if rank < 3 {
                    return bad("GlobalMaxPool needs N, C and spatial dims");
                }
                self.add(
                    Op::Reduce {
                        op: ReduceOp::Max,
                        axes: (2..rank).collect(),
                        keepdim: true,
                    },
                    &[x],
                )
            }
            "Reshape" => {
                let x = self.inp(0)?;
                let want = if opset < 5 {
                    self.ais("shape").unwrap_or_default()
                } else {
                    self.const_ints(1)?
                };
                let dims = reshape_dims(&self.shape(x), &want, self.ai("allowzero", 0) != 0)
                    .map_err(Fail::Bad)?;
                Ok(vec![self.reshape(x, dims)?])
            }
            "Flatten" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let r = dims.len() as i64;
                let a = self.ai("axis", 1);
                if a < -r || a > r {
                    return bad(format!("axis {a} is out of range for rank {r}"));
                }
                let a = if a < 0 { (a + r) as usize } else { a as usize };
                let outer = dims[..a].iter().product();
                let inner = dims[a..].iter().product();
                Ok(vec![self.reshape(x, vec![outer, inner])?])
            }
            "Squeeze" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let axes = if opset < 13 {
                    self.ais("axes")
                } else if self.has(1) {
                    Some(self.const_ints(1)?)
                } else {
                    None
                };
                let drop: Vec<usize> = match axes {
                    Some(a) => self.axes(&a, dims.len())?,
                    None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
                };
                if let Some(&d) = drop.iter().find(|&&d| dims[d] != 1) {
                    return bad(format!("cannot squeeze axis {d} of size {}", dims[d]));
                }
                let out = dims
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !drop.contains(i))
                    .map(|(_, &d)| d)
                    .collect();
                Ok(vec![self.reshape(x, out)?])
            }
            "Unsqueeze" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let axes = if opset < 13 {
                    self.ais("axes").unwrap_or_default()
                } else {
                    self.const_ints(1)?
                };
                let rank = dims.len() + axes.len();
                let axes = self.axes(&axes, rank)?;
                let mut it = dims.iter();
                let out = (0..rank)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *it.next().unwrap_or(&1)
                        }
                    })
                    .collect();
                Ok(vec![self.reshape(x, out)?])
            }
            "Transpose" => {
                let x = self.inp(0)?;
                let rank = self.g.shape(x).rank();
                let perm = match self.ais("perm") {
                    Some(p) => p
                        .iter()
                        .map(|&a| self.axis(a, rank))
                        .collect::<R<Vec<_>>>()?,
                    None => (0..rank).rev().collect(),
                };
                self.add(Op::Transpose { perm }, &[x])
            }
            "Concat" => {
                let ins: Vec<ValueId> = (0..self.ins.len())
                    .filter(|&i| self.has(i))
                    .map(|i| self.inp(i))
                    .collect::<R<_>>()?;
                let rank = ins.first().map_or(0, |&v| self.g.shape(v).rank());
                let axis = self.axis(self.ai("axis", 0), rank)?;
                self.add(Op::Concat { axis }, &ins)
            }
            "Split" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let axis = self.axis(self.ai("axis", 0), dims.len())?;
                let sizes = if opset < 13 {
                    self.ais("split")
                } else if self.has(1) {
                    Some(self.const_ints(1)?)
                } else {
                    None
                };
                let n_out = self.attr("num_outputs").map_or(0, |a| a.i.max(0) as usize);
                let sizes: Vec<usize> = match sizes {
                    Some(s) if !s.is_empty() => {
                        if s.iter().any(|&v| v < 0) {
                            return bad(format!("negative split size in {s:?}"));
                        }
                        s.iter().map(|&v| v as usize).collect()
                    }
                    _ => {
                        let n = if n_out > 0 {
                            n_out
                        } else {
                            self.outputs_count()
                        };
                        if n == 0 {
                            return bad("no outputs");
                        }
                        let d = dims[axis];
                        let each = d.div_ceil(n);
                        (0..n)
                            .map(|i| each.min(d.saturating_sub(i * each)))
                            .collect()
                    }
                };
                self.add(Op::Split { axis, sizes }, &[x])
            }
            "Slice" => {
                let x = self.inp(0)?;
                let dims = self.shape(x);
                let (starts, ends, axes, steps) = if opset < 10 {
                    (
                        self.ais("starts").unwrap_or_default(),
                        self.ais("ends").unwrap_or_default(),
                        self.ais("axes"),
                        None,
                    )
                } else {
                    let s = self.const_ints(1)?;
                    let e = self.const_ints(2)?;
                    let a = if self.has(3) {
                        Some(self.const_ints(3)?)
                    } else {
                        None
                    };
                    let st = if self.has(4) {
                        Some(self.const_ints(4)?)
                    } else {
                        None
                    };
                    (s, e, a, st)
                };
                if starts.len() != ends.len() {
                    return bad("starts and ends differ in length");
                }
                let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if axes.len() != starts.len() || steps.len() != starts.len() {
                    return bad("starts, ends, axes and steps differ in length");
                }
                let mut spec: Vec<SliceAxis> = dims.iter().map(|&d| SliceAxis::full(d)).collect();
                let mut seen = vec![false; dims.len()];
                for k in 0..starts.len() {
                    let a = self.axis(axes[k], dims.len())?;
                    if std::mem::replace(&mut seen[a], true) {
                        return bad(format!("axis {a} sliced twice"));
                    }
                    spec[a] = SliceAxis::normalize(dims[a], starts[k], ends[k], steps[k])
                        .ok_or_else(|| Fail::Bad("a step of 0".into()))?;
                }
                self.add(Op::Slice { axes: spec }, &[x])
            }
            "Gather" => {
                let (x, i) = (self.inp(0)?, self.inp(1)?);
                let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
                self.add(Op::Gather { axis }, &[x, i])
            }
            "GatherElements" => {
                let (x, i) = (self.inp(0)?, self.inp(1)?);
                let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
                self.add(Op::GatherElements { axis }, &[x, i])
            }
            "ArgMax" | "ArgMin" => {
                let x = self.inp(0)?;
                let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
                let arg = Op::ArgReduce {
                    max: op == "ArgMax",
                    axis,
                    keepdim: self.ai("keepdims", 1) != 0,
                    last: self.ai("select_last_index", 0) != 0,
                };
                self.add(arg, &[x])
            }
            "Expand" => {
                let x = self.inp(0)?;
                let want = self.const_ints(1)?;
                if want.iter().any(|&d| d < 0) {
                    return bad(format!("negative dim in {want:?}"));
                }
                let want = Shape::new(want.iter().map(|&d| d as usize).collect::<Vec<_>>());
                let out = Shape::broadcast(self.g.shape(x), &want).ok_or_else(|| {
                    Fail::Bad(format!("cannot expand {} to {want}", self.g.shape(x)))
                })?;
                let n = out
                    .checked_numel()
                    .filter(|&n| n <= MAX_ELEMENTS)
                    .ok_or_else(|| Fail::Bad(format!("shape {out} is too large")))?;
                let yes = self.konst(Tensor::new(out, TensorData::Bool(vec![true; n]))?)?;
                self.add(Op::Where, &[yes, x, x])
            }
            "Pad" => self.pad(),
            "Resize" => self.resize(),
            "Attention" => self.attention(),
            "RMSNormalization" => self.rms_norm(),
            "Trilu" => self.trilu(),
            "NegativeLogLikelihoodLoss" => self.nll_loss(),
            "SoftmaxCrossEntropyLoss" => self.softmax_cross_entropy(),
            "Shape" => {
                let x = self.inp(0)?;
                let dims: Vec<i64> = self.shape(x).iter().map(|&d| d as i64).collect();
                let r = dims.len() as i64;
                let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
                let s = clamp(self.ai("start", 0));
                let e = clamp(self.ai("end", r));
                let v: Vec<i64> = if s < e {
                    dims[s..e].to_vec()
                } else {
                    Vec::new()
                };
                let n = v.len();
                Ok(vec![self.konst(Tensor::from_i64([n], v)?)?])
            }
            "Size" => {
                let x = self.inp(0)?;
                let n = self.g.shape(x).numel() as i64;
                Ok(vec![
                    self.konst(Tensor::from_i64(Shape::scalar(), vec![n])?)?
                ])
            }
            "ConstantOfShape" => {
                let dims = self.const_ints(0)?;
                let dims = checked_dims(&dims, "ConstantOfShape")?;
                let value = match self.attr("value").and_then(|a| a.t.as_ref()) {
                    Some(t) => from_proto(t, None)?,
                    None => Tensor::from_f32([1], vec![0.0])?,
                };
                if value.numel() != 1 {
                    return bad("value must hold one element");
                }
                let n: usize = dims.iter().product();
                let x = value.to_f64_vec()[0];
                let t = Tensor::from_f64(value.dtype(), Shape::new(dims), &vec![x; n]);
                Ok(vec![self.konst(t)?])
            }
            "Range" => {
                let (s, l, d) = (self.const_in(0)?, self.const_in(1)?, self.const_in(2)?);
                let dt = s.dtype();
                let (s, l, d) = (s.to_f64_vec(), l.to_f64_vec(), d.to_f64_vec());
                let (Some(&s), Some(&l), Some(&d)) = (s.first(), l.first(), d.first()) else {
                    return bad("start, limit and delta must be scalars");
                };
                if d == 0.0 {
                    return bad("delta is 0");
                }
                let n = ((l - s) / d).ceil().max(0.0);
                if n > MAX_ELEMENTS as f64 {
                    return bad(format!("{n} elements is too many"));
                }
                let n = n as usize;
                let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
                Ok(vec![self.konst(Tensor::from_f64(dt, [n], &v))?])
            }
            "Constant" => {
                let a = self
                    .attrs
                    .first()
                    .cloned()
                    .ok_or_else(|| Fail::Bad("no value attribute".into()))?;
                let t = match (a.name.as_str(), a.r#type) {
                    ("value", _) => from_proto(
                        a.t.as_ref()
                            .ok_or_else(|| Fail::Bad("value has no tensor".into()))?,
                        None,
                    )?,
                    ("value_float", _) => Tensor::from_f32(Shape::scalar(), vec![a.f])?,
                    ("value_floats", _) => Tensor::from_f32([a.floats.len()], a.floats.clone())?,
                    ("value_int", _) => Tensor::from_i64(Shape::scalar(), vec![a.i])?,
                    ("value_ints", _) => Tensor::from_i64([a.ints.len()], a.ints.clone())?,
                    (other, t)
                        if t == attr_type::STRING
                            || t == attr_type::STRINGS
                            || other.starts_with("value_string") =>
                    {
                        return unsup("string constants")
                    }
                    (other, _) => return unsup(format!("Constant with attribute '{other}'")),
                };
                Ok(vec![self.konst(t)?])
            }
            other => unsup(format!("op {other}")),
        }
    }

    fn outputs_count(&self) -> usize {
        self.n_outputs
    }

    /// Conv and ConvTranspose, 2-D (NCHW) only.
    /// A 1-D conv or pool (`[N, C, L]`) as a 2-D one of height 1: the spatial attributes get
    /// a leading unit entry (pads a zero pair), `x` (and `w`) a unit dim; returns the lifted
    /// values and the output reshape to undo it.
    fn lift_1d(&mut self, vals: &[ValueId]) -> R<Vec<ValueId>> {
        for a in self.attrs.iter_mut() {
            match a.name.as_str() {
                "strides" | "dilations" | "kernel_shape" if a.ints.len() == 1 => {
                    a.ints.insert(0, 1)
                }
                "output_padding" if a.ints.len() == 1 => a.ints.insert(0, 0),
                "pads" if a.ints.len() == 2 => a.ints = vec![0, a.ints[0], 0, a.ints[1]],
                _ => {}
            }
        }
        vals.iter()
            .map(|&v| {
                let mut d = self.shape(v);
                d.insert(2, 1);
                self.reshape(v, d)
            })
            .collect()
    }

    /// Undo [`Importer::lift_1d`] on the first output.
    fn lower_1d(&mut self, mut outs: Vec<ValueId>) -> R<Vec<ValueId>> {
        let mut d = self.shape(outs[0]);
        d.remove(2);
        outs[0] = self.reshape(outs[0], d)?;
        Ok(outs)
    }

    fn conv(&mut self, transpose: bool) -> R<Vec<ValueId>> {
        let (x, w) = (self.inp(0)?, self.inp(1)?);
        if self.g.shape(x).rank() == 3 && self.g.shape(w).rank() == 3 {
            let l = self.lift_1d(&[x, w])?;
            let outs = self.conv2d(transpose, l[0], l[1])?;
            return self.lower_1d(outs);
        }
        if transpose && self.g.shape(x).rank() == 5 && self.g.shape(w).rank() == 5 {
            return Ok(vec![self.conv_transpose_3d(x, w)?]);
        }
        self.conv2d(transpose, x, w)
    }

    fn conv2d(&mut self, transpose: bool, x: ValueId, w: ValueId) -> R<Vec<ValueId>> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() != 4 || ws.len() != 4 {
            return unsup(format!(
                "{}-D convolution (only 2-D, NCHW)",
                xs.len().saturating_sub(2)
            ));
        }
        let two = |name: &str, d: i64| -> R<[usize; 2]> {
            match self.ais(name) {
                None => Ok([d as usize; 2]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => {
                    Ok([v[0] as usize, v[1] as usize])
                }
                Some(v) => bad(format!("{name} = {v:?}")),
            }
        };
        let stride = two("strides", 1)?;
        let dilation = two("dilations", 1)?;
        let groups = self.ai("group", 1);
        if groups < 1 {
            return bad(format!("group = {groups}"));
        }
        let kernel = [ws[2], ws[3]];
        if let Some(k) = self.ais("kernel_shape") {
            if k.len() != 2 || k[0] as usize != kernel[0] || k[1] as usize != kernel[1] {
                return bad(format!(
                    "kernel_shape {k:?} does not match the weight {ws:?}"
                ));
            }
        }
        let mut padding = self.pads4()?;
        let auto = self.astr("auto_pad", "NOTSET");
        if !transpose {
            if let Some(p) = same_pads(&auto, &[xs[2], xs[3]], &kernel, &stride, &dilation)?
                .map(|p| [p[0], p[1], p[2], p[3]])
            {
                padding = p;
            }
            let c = Conv2d {
                stride,
                padding,
                dilation,
                groups: groups as usize,
            };
            let mut ins = vec![x, w];
            if self.has(2) {
                ins.push(self.inp(2)?);
            }
            return self.add(Op::Conv2d(c), &ins);
        }
        let mut output_padding = two("output_padding", 0)?;
        // An output_shape (or SAME auto_pad: input * stride) fixes the padding: the total is
        // what the full transposed conv has beyond it, split as auto_pad says (SAME_UPPER puts
        // the smaller half first); a shape larger than the full output extends the end.
        let want = match self.ais("output_shape") {
            Some(o) => {
                let o = &o[o.len().saturating_sub(2)..];
                if o.len() != 2 || o.iter().any(|&v| v < 0) {
                    return bad(format!("output_shape {o:?}"));
                }
                Some([o[0] as usize, o[1] as usize])
            }
            None if auto.starts_with("SAME") => Some([xs[2] * stride[0], xs[3] * stride[1]]),
            None => None,
        };
        if auto == "VALID" {
            padding = [0; 4];
        }
        if let Some(want) = want {
            for d in 0..2 {
                let full = stride[d] * (xs[2 + d].max(1) - 1)
                    + output_padding[d]
                    + kernel[d].saturating_sub(1) * dilation[d]
                    + 1;
                if full >= want[d] {
                    let total = full - want[d];
                    let (small, big) = (total / 2, total - total / 2);
                    (padding[d], padding[d + 2]) = if auto == "SAME_UPPER" {
                        (small, big)
                    } else {
                        (big, small)
                    };
                } else {
                    padding[d] = 0;
                    padding[d + 2] = 0;
                    output_padding[d] += want[d] - full;
                }
            }
        }
        let c = ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups: groups as usize,
        };
        let mut ins = vec![x, w];
        if self.has(2) {
            ins.push(self.inp(2)?);
        }
        self.add(Op::ConvTranspose2d(c), &ins)
    }

    /// `pads` as [top, left, bottom, right] (ONNX's begin..., end... order for two dims).
    fn pads4(&self) -> R<[usize; 4]> {
        match self.ais("pads") {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => {
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            Some(p) => unsup(format!("pads {p:?} (2-D, non-negative only)")),
        }
    }

    /// LpPool: `(sum over the window of |x|^p)^(1/p)`, padding counting as 0: the window's size
    /// `K` times an average pool that divides by `K`.
    fn lp_pool(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("LpPool of {dt}"));
        }
        let p = self.ai("p", 2);
        if p < 1 {
            return bad(format!("p = {p} must be at least 1"));
        }
        let a = self.add1(Op::Unary(UnaryOp::Abs), &[x])?;
        let pe = self.scalar(dt, p as f64)?;
        let ap = self.add1(Op::Binary(BinaryOp::Pow), &[a, pe])?;
        // The pool checks kernel_shape first; its product then fits.
        let avg = self.pool(false, ap, true)?[0];
        let window = self
            .ais("kernel_shape")
            .unwrap_or_default()
            .iter()
            .map(|&k| k as f64)
            .product::<f64>();
        let k = self.scalar(dt, window)?;
        let s = self.add1(Op::Binary(BinaryOp::Mul), &[avg, k])?;
        let inv = self.scalar(dt, 1.0 / p as f64)?;
        Ok(vec![self.add1(Op::Binary(BinaryOp::Pow), &[s, inv])?])
    }

    /// MaxPool and AveragePool over 1, 2 or 3 spatial dims. 1-D pools run as 2-D ones of
    /// height 1; 3-D ones as a 2-D pool over (H, W) and one over D, which is exact for both
    /// (a max is separable, and a window's element count is the product of its per-axis counts,
    /// so a mean is a mean of means). `ceil_mode` adds the end padding that gives ONNX's ceil
    /// output size (the last window starting inside the input or its begin padding). Integer
    /// max pools run in f32 (exact for u8 and small integers) and cast back.
    /// With `window_mean` an average that always divides by the whole window (LpPool's sum
    /// over `K`).
    fn pool(&mut self, max: bool, x: ValueId, window_mean: bool) -> R<Vec<ValueId>> {
        let xs = self.shape(x);
        let dt = self.g.dtype(x);
        if !(3..=5).contains(&xs.len()) {
            return unsup(format!("pooling of rank {}", xs.len()));
        }
        if !(dt.is_float() || max && dt.is_int()) {
            return unsup(format!(
                "{} of {dt}",
                if max { "MaxPool" } else { "AveragePool" }
            ));
        }
        let nd = xs.len() - 2;
        let ints = |name: &str, n: usize, default: usize| -> R<Vec<usize>> {
            match self.ais(name) {
                None => Ok(vec![default; n]),
                Some(v) if v.len() == n && v.iter().all(|&x| x >= default as i64) => {
                    Ok(v.iter().map(|&x| x as usize).collect())
                }
                Some(v) => bad(format!("{name} = {v:?} for {nd} spatial dims")),
            }
        };
        let kernel = match self.ais("kernel_shape") {
            Some(k) if k.len() == nd && k.iter().all(|&v| v >= 1) => {
                k.iter().map(|&v| v as usize).collect::<Vec<_>>()
            }
            k => return bad(format!("kernel_shape {k:?} for {nd} spatial dims")),
        };
        let stride = ints("strides", nd, 1)?;
        let dilation = ints("dilations", nd, 1)?;
        let mut pads = ints("pads", 2 * nd, 0)?;
        let spatial = &xs[2..];
        if let Some(p) = same_pads(
            &self.astr("auto_pad", "NOTSET"),
            spatial,
            &kernel,
            &stride,
            &dilation,
        )? {
            pads = p;
        }
        let include_pad = window_mean || self.ai("count_include_pad", 0) != 0;
        // The pads as given: with count_include_pad the divisor counts them but not what
        // ceil_mode adds past them.
        let given_pads = pads.clone();
        if self.ai("ceil_mode", 0) != 0 {
            for d in 0..nd {
                let span = dilation[d] * (kernel[d] - 1) + 1;
                let padded = spatial[d] + pads[d] + pads[nd + d];
                if padded < span {
                    return bad(format!(
                        "the window {span} is larger than the padded input {padded}"
                    ));
                }
                let mut out = (padded - span).div_ceil(stride[d]) + 1;
                if (out - 1) * stride[d] >= spatial[d] + pads[d] {
                    out -= 1;
                }
                let extra = ((out - 1) * stride[d] + span).saturating_sub(padded);
                pads[nd + d] += extra;
            }
        }
        let xf = if dt.is_float() {
            x
        } else {
            self.cast(x, DType::F32)?
        };
        let indices = max && self.n_outputs > 1 && self.ins.len() == 1;
        let col_major = self.ai("storage_order", 0) != 0;
        if indices && nd == 3 {
            return unsup("MaxPool's Indices output of a 3-D pool");
        }
        // The pool over two of the axes, and where its maxima are when MaxPool's Indices are
        // asked for (1-D and 2-D only: one call).
        let pool = |s: &mut Self,
                    v: ValueId,
                    ax: [usize; 2],
                    pad: [usize; 4]|
         -> R<(ValueId, Option<ValueId>)> {
            let get = |a: &[usize], i: usize, d: usize| if i == usize::MAX { d } else { a[i] };
            let p = Pool2d {
                kernel: [get(&kernel, ax[0], 1), get(&kernel, ax[1], 1)],
                stride: [get(&stride, ax[0], 1), get(&stride, ax[1], 1)],
                padding: pad,
                dilation: [get(&dilation, ax[0], 1), get(&dilation, ax[1], 1)],
                count_include_pad: include_pad,
            };
            let op = if max {
                Op::MaxPool2d(p)
            } else {
                Op::AvgPool2d(p)
            };
            let y = s.add1(op, &[v])?;
            let i = if indices {
                Some(s.add1(Op::MaxPoolIndices2d { pool: p, col_major }, &[v])?)
            } else {
                None
            };
            Ok((y, i))
        };
        let none = usize::MAX;
        let (n, c) = (xs[0], xs[1]);
        let (y, idx) = match nd {
            1 => {
                let x4 = self.reshape(xf, vec![n, c, 1, xs[2]])?;
                let (y, i) = pool(self, x4, [none, 0], [0, pads[0], 0, pads[1]])?;
                let l = self.shape(y)[3];
                let i = match i {
                    Some(i) => Some(self.reshape(i, vec![n, c, l])?),
                    None => None,
                };
                (self.reshape(y, vec![n, c, l])?, i)
            }
            2 => pool(self, xf, [0, 1], [pads[0], pads[1], pads[2], pads[3]])?,
            _ => {
                let (d, h, w) = (xs[2], xs[3], xs[4]);
                let x4 = self.reshape(xf, vec![n, c * d, h, w])?;
                let hw = pool(self, x4, [1, 2], [pads[1], pads[2], pads[4], pads[5]])?.0;
                let (oh, ow) = (self.shape(hw)[2], self.shape(hw)[3]);
                let x4 = self.reshape(hw, vec![n, c, d, oh * ow])?;
                let y = pool(self, x4, [0, none], [pads[0], 0, pads[3], 0])?.0;
                let od = self.shape(y)[2];
                (self.reshape(y, vec![n, c, od, oh, ow])?, None)
            }
        };
        let mut y = if dt.is_float() { y } else { self.cast(y, dt)? };
        if !max && include_pad && !window_mean && pads != given_pads {
            // The kernels divided by the whole window; ceil_mode's overhang is not part of the
            // divisor: scale each output by window / (taps inside the input and given pads).
            // One factor per axis (a window's count is the product of its per-axis counts), so
            // the constants hold the sum of the output dims, not their product.
            let out = self.shape(y)[2..].to_vec();
            for (d, &o) in out.iter().enumerate() {
                let span = spatial[d] + given_pads[d] + given_pads[nd + d];
                let factor: Vec<f64> = (0..o)
                    .map(|i| {
                        let inside = (0..kernel[d])
                            .filter(|&k| i * stride[d] + k * dilation[d] < span)
                            .count();
                        kernel[d] as f64 / inside.max(1) as f64
                    })
                    .collect();
                if factor.iter().all(|&f| f == 1.0) {
                    continue;
                }
                let mut dims = vec![1; 2 + nd];
                dims[2 + d] = o;
                let f = self.konst(Tensor::from_f64(dt, dims, &factor))?;
                y = self.add1(Op::Binary(BinaryOp::Mul), &[y, f])?;
            }
        }
        let mut outs = vec![y];
        outs.extend(idx);
        Ok(outs)
    }

    fn pad(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let mode = self.astr("mode", "constant");
        let (pads, value, axes) = if self.opset < 11 {
            (
                self.ais("pads").unwrap_or_default(),
                self.af("value", 0.0) as f64,
                None,
            )
        } else {
            let p = self.const_ints(1)?;
            let v = if self.has(2) {
                self.const_in(2)?
                    .to_f64_vec()
                    .first()
                    .copied()
                    .unwrap_or(0.0)
            } else {
                0.0
            };
            let a = if self.has(3) {
                Some(self.const_ints(3)?)
            } else {
                None
            };
            (p, v, a)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&v| self.axis(v, rank)).collect::<R<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return bad(format!("{} pads for {} axes", pads.len(), axes.len()));
        }
        if pads.iter().any(|&p| p < 0) {
            return unsup("negative pads (cropping)");
        }
        let mut per = vec![[0usize; 2]; rank];
        for (k, &a) in axes.iter().enumerate() {
            per[a] = [pads[k] as usize, pads[k + axes.len()] as usize];
        }
        let mode = match mode.as_str() {
            "constant" => PadMode::Constant(value as f32),
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => return unsup(format!("mode '{other}'")),
        };
        self.add(Op::Pad { pads: per, mode }, &[x])
    }

    /// Resize: the common 2-D cases (nearest with floor rounding, linear; half-pixel,
    /// align-corners, asymmetric; output size over input size as the scale) run on Sfumato's
    /// Resize kernel; every other case (cubic, antialiasing, the other nearest roundings and
    /// coordinate maps, `axes`, `keep_aspect_ratio_policy`, scales that are not out/in, any
    /// rank) runs separably, one constant interpolation matrix per resized axis
    /// ([`Importer::resize_separable`]).
    fn resize(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let r = dims.len();
        let (roi_i, scales_i, sizes_i) = if self.opset < 11 {
            (usize::MAX, 1, usize::MAX)
        } else {
            (1, 2, 3)
        };
        let axes: Vec<usize> = match self.ais("axes") {
            Some(a) => {
                let a: Vec<usize> = a.iter().map(|&v| self.axis(v, r)).collect::<R<_>>()?;
                let mut u = a.clone();
                u.sort_unstable();
                u.dedup();
                if u.len() != a.len() {
                    return bad(format!("repeated axis in {a:?}"));
                }
                a
            }
            None => (0..r).collect(),
        };
        let n = axes.len();
        let mut out: Vec<usize> = dims.clone();
        let mut scale: Vec<f64> = vec![1.0; r];
        let given_sizes = self.has(sizes_i);
        if given_sizes {
            let s = self.const_ints(sizes_i)?;
            if s.len() != n || s.iter().any(|&v| v < 0) {
                return bad(format!("sizes {s:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                out[a] = s[k] as usize;
                scale[a] = s[k] as f64 / dims[a].max(1) as f64;
            }
            let policy = self.astr("keep_aspect_ratio_policy", "stretch");
            if policy != "stretch" {
                let ss = axes.iter().map(|&a| scale[a]);
                let one = match policy.as_str() {
                    "not_larger" => ss.fold(f64::INFINITY, f64::min),
                    "not_smaller" => ss.fold(0.0, f64::max),
                    other => return bad(format!("keep_aspect_ratio_policy '{other}'")),
                };
                for &a in &axes {
                    scale[a] = one;
                    out[a] = (one * dims[a] as f64 + 0.5) as usize;
                }
            }
        } else if self.has(scales_i) && self.const_in(scales_i)?.numel() > 0 {
            let s = self.const_in(scales_i)?.to_f64_vec();
            if s.len() != n || s.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
                return bad(format!("scales {s:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                scale[a] = s[k];
                out[a] = (dims[a] as f64 * s[k]) as usize;
            }
        } else {
            return bad("neither scales nor sizes");
        }
        if out.iter().product::<usize>() > MAX_ELEMENTS {
            return bad(format!("output {out:?} is too large"));
        }
        let mut roi = vec![[0.0, 1.0]; r];
        let coord = self.astr(
            "coordinate_transformation_mode",
            if self.opset < 11 {
                "asymmetric"
            } else {
                "half_pixel"
            },
        );
        if coord == "tf_crop_and_resize" {
            let v = if self.has(roi_i) {
                self.const_in(roi_i)?.to_f64_vec()
            } else {
                Vec::new()
            };
            if v.len() != 2 * n {
                return bad(format!("roi {v:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                roi[a] = [v[k], v[n + k]];
            }
        }
        let spec = ResizeSpec {
            mode: self.astr("mode", "nearest"),
            nearest: self.astr("nearest_mode", "round_prefer_floor"),
            coord,
            cubic_a: self.af("cubic_coeff_a", -0.75) as f64,
            antialias: self.ai("antialias", 0) != 0,
            exclude_outside: self.ai("exclude_outside", 0) != 0,
            extrapolation: self.af("extrapolation_value", 0.0) as f64,
        };
        // Sfumato's Resize kernel: 4-D, only H and W resized, out/in as the scale.
        let kernel_mode = match (spec.mode.as_str(), spec.nearest.as_str()) {
            ("nearest", "floor") => Some(ResizeMode::Nearest),
            ("linear" | "bilinear", _) => Some(ResizeMode::Bilinear),
            _ => None,
        };
        let kernel_coord = match spec.coord.as_str() {
            "half_pixel" => Some(CoordTransform::HalfPixel),
            "pytorch_half_pixel" if r == 4 && out[2] > 1 && out[3] > 1 => {
                Some(CoordTransform::HalfPixel)
            }
            "align_corners" => Some(CoordTransform::AlignCorners),
            "asymmetric" => Some(CoordTransform::Asymmetric),
            _ => None,
        };
        let fits_kernel = r == 4
            && out[0] == dims[0]
            && out[1] == dims[1]
            && !spec.antialias
            && !spec.exclude_outside
            && (2..4).all(|d| (out[d] as f64 / dims[d].max(1) as f64 - scale[d]).abs() < 1e-6)
            && self.g.dtype(x).is_float();
        if let (true, Some(mode), Some(coord)) = (fits_kernel, kernel_mode, kernel_coord) {
            return self.add(
                Op::Resize {
                    mode,
                    coord,
                    size: [out[2], out[3]],
                },
                &[x],
            );
        }
        let plan: Vec<ResizeAxis> = axes
            .iter()
            .map(|&a| ResizeAxis {
                axis: a,
                input: dims[a],
                output: out[a],
                scale: scale[a],
                roi: roi[a],
            })
            .collect();
        Ok(vec![self.resize_separable(x, &spec, &plan)?])
    }
}

/// `auto_pad` SAME_UPPER/SAME_LOWER/VALID as explicit pads; `None` for NOTSET.
fn same_pads(
    auto: &str,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> R<Option<Vec<usize>>> {
    let n = input.len();
    match auto {
        "NOTSET" | "" => Ok(None),
        "VALID" => Ok(Some(vec![0; 2 * n])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0usize; 2 * n];
            for d in 0..n {
                let out = input[d].div_ceil(stride[d].max(1));
                let span = dilation[d] * (kernel[d].max(1) - 1) + 1;
                let total = ((out.saturating_sub(1)) * stride[d] + span).saturating_sub(input[d]);
                let (small, big) = (total / 2, total - total / 2);
                if auto == "SAME_UPPER" {
                    p[d] = small;
                    p[d + n] = big;
                } else {
                    p[d] = big;
                    p[d + n] = small;
                }
            }
            Ok(Some(p))
        }
        other => bad(format!("auto_pad '{other}'")),
    }
}

/// ONNX Reshape's target: 0 copies the input dim (unless `allowzero`), one -1 is inferred.
pub fn reshape_dims(
    input: &[usize],
    want: &[i64],
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(want.len());
    let mut infer = None;
    for (i, &w) in want.iter().enumerate() {
        match w {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("0 at {i} has no input dim to copy"))?,
            ),
            w if w >= 0 => out.push(w as usize),
            w => return Err(format!("bad dim {w} in {want:?}")),
        }
    }
    let known: usize = out
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != infer)
        .try_fold(1usize, |a, (_, &d)| a.checked_mul(d))
        .ok_or_else(|| format!("shape {want:?} overflows"))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {want:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} elements) to {want:?}"
        ));
    }
    Ok(out)
}
