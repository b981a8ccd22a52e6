//! ONNX nodes to Sfumato ops, one node at a time, with each op's per-opset attribute defaults.
//!
//! Each op family's module lists its converters (`OPS`: ONNX op type to converter); `FAMILIES`
//! joins them into the one table `Importer::node` dispatches on, and [`supports`] and
//! [`supported_ops`] read the same table, so the list of supported ops cannot drift from the
//! converters.

use super::proto::{AttributeProto, NodeProto, ValueInfoProto};
use super::tensor::{checked_dims, dtype_of};
use super::ImportOptions;
use crate::{Error, Result};
use sfumato_core::op::*;
use sfumato_core::{
    CpuDevice, DType, Device, Error as CoreError, Graph, Op, Shape, Tensor, ValueId,
};
use std::collections::HashMap;
use std::sync::OnceLock;

mod attention;
mod control;
mod conv;
mod dft;
mod einsum;
mod grid;
mod host;
mod math;
mod nn;
mod norm;
mod quant;
mod reduce;
mod resize;
mod rnn;
mod scatter;
mod seqmodel;
mod sequence;
mod tensor;
mod topk;

/// How one ONNX op converts: to tensors, or (sequences, optionals and control flow, whose values
/// may be any of them) to values of any kind.
#[derive(Clone, Copy)]
enum Converter {
    Tensors(fn(&mut Importer<'_>) -> R<Vec<ValueId>>),
    Values(fn(&mut Importer<'_>) -> R<Vec<Val>>),
}

/// Every op family's converters, by ONNX op type (default domain).
const FAMILIES: &[&[(&str, Converter)]] = &[
    math::OPS,
    nn::OPS,
    norm::OPS,
    attention::OPS,
    conv::OPS,
    resize::OPS,
    reduce::OPS,
    einsum::OPS,
    quant::OPS,
    rnn::OPS,
    seqmodel::OPS,
    scatter::OPS,
    grid::OPS,
    dft::OPS,
    host::OPS,
    tensor::OPS,
    sequence::OPS,
    control::OPS,
];

/// The one table from ONNX op type (default domain) to its converter, built from [`FAMILIES`]
/// (an op listed twice is a bug, caught on first use).
fn table() -> &'static HashMap<&'static str, Converter> {
    static TABLE: OnceLock<HashMap<&'static str, Converter>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for &(op, c) in FAMILIES.iter().flat_map(|f| f.iter()) {
            assert!(t.insert(op, c).is_none(), "ONNX op {op} has two converters");
        }
        t
    })
}

/// The op types (default domain) the importer converts, sorted: the keys of the converter
/// table.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

/// Whether the importer converts this node's op (some attribute values may still be refused).
pub fn supports(n: &NodeProto) -> bool {
    (n.domain.is_empty() || n.domain == "ai.onnx") && table().contains_key(n.op_type.as_str())
}

/// Why one node cannot be converted: a gap (unsupported) or a malformed node (error).
enum Fail {
    Unsupported(String),
    Bad(String),
    /// The node needs a value known only at run time (`Error::RunTime`).
    RunTime(String),
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
            Error::RunTime(r) => Fail::RunTime(r.msg),
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
    /// The DequantizeLinear outputs converted so far, by value: what they dequantize
    /// (`quant::Dequantized`), so that a MatMul of two runs as an integer product.
    dequantized: HashMap<ValueId, quant::Dequantized>,
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
            dequantized: HashMap::new(),
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
        let converted = match table().get(self.op.as_str()) {
            Some(Converter::Values(f)) => self.convert_structured(*f),
            Some(Converter::Tensors(f)) => f(self).map(|v| v.into_iter().map(Val::T).collect()),
            None => unsup(format!("op {}", self.op)),
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
                    Fail::RunTime(msg) => {
                        return Err(Error::RunTime(Box::new(crate::error::RunTimeNeed {
                            index: 0,
                            node: self.name.clone(),
                            op: self.op.clone(),
                            inputs,
                            msg,
                        })))
                    }
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
            Fail::RunTime(format!(
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

    /// `v[..., start..start + len, ...]` along `axis` (step `step`), every other axis whole.
    fn slice_axis(
        &mut self,
        v: ValueId,
        axis: usize,
        start: usize,
        len: usize,
        step: i64,
    ) -> R<ValueId> {
        let mut axes: Vec<SliceAxis> = self.shape(v).into_iter().map(SliceAxis::full).collect();
        axes[axis] = SliceAxis {
            start: start as i64,
            step,
            len,
        };
        self.add1(Op::Slice { axes }, &[v])
    }

    /// `v[..., i, ...]` along `axis`, that axis dropped.
    fn index_axis(&mut self, v: ValueId, axis: usize, i: usize) -> R<ValueId> {
        let mut dims = self.shape(v);
        let s = self.slice_axis(v, axis, i, 1, 1)?;
        dims.remove(axis);
        self.reshape(s, dims)
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

    fn bin(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> R<ValueId> {
        self.add1(Op::Binary(b), &[x, y])
    }

    fn un(&mut self, u: UnaryOp, x: ValueId) -> R<ValueId> {
        self.add1(Op::Unary(u), &[x])
    }

    fn sum_over(&mut self, x: ValueId, axes: Vec<usize>, keepdim: bool) -> R<ValueId> {
        self.add1(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keepdim,
            },
            &[x],
        )
    }

    /// A constant integer tensor `0, 1, .., n-1` of `dtype`, laid along axis `axis` of a
    /// tensor of rank `rank` (every other dim 1).
    fn iota(&mut self, dtype: DType, n: usize, axis: usize, rank: usize) -> R<ValueId> {
        let mut dims = vec![1; rank];
        dims[axis] = n;
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        self.konst(Tensor::from_f64(dtype, dims, &v))
    }

    /// A bool tensor of `x`'s shape, all `v`: computed from a float `x` (`|x| < 0` is false
    /// for every value, NaN too), so nothing of `x`'s size is allocated at import.
    fn all_bool_like(&mut self, x: ValueId, v: bool) -> R<ValueId> {
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("a mask like a {dt} tensor"));
        }
        let a = self.un(UnaryOp::Abs, x)?;
        let zero = self.scalar(dt, 0.0)?;
        let none = self.bin(BinaryOp::Lt, a, zero)?;
        if !v {
            return Ok(none);
        }
        let f = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        self.bin(BinaryOp::Eq, none, f)
    }

    /// `[0, 1, ..., n)` as i64, shaped `dims` (one of them `n`).
    fn arange_i64(&mut self, n: usize, dims: Vec<usize>) -> R<ValueId> {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        self.konst(Tensor::from_f64(DType::I64, Shape::new(dims), &v))
    }

    fn outputs_count(&self) -> usize {
        self.n_outputs
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family's ops land in the one table once (`table` panics on an op listed twice),
    /// and the supported list is that table, sequence and control-flow ops included.
    #[test]
    fn the_supported_ops_are_the_converter_table() {
        let ops = supported_ops();
        let listed: usize = FAMILIES.iter().map(|f| f.len()).sum();
        assert_eq!(ops.len(), listed);
        for op in [
            "Relu",
            "Conv",
            "Resize",
            "Attention",
            "ReduceSum",
            "Loop",
            "Identity",
        ] {
            assert!(ops.contains(&op), "{op}");
        }
        let node = |op: &str, domain: &str| NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            ..Default::default()
        };
        assert!(supports(&node("SequenceAt", "")));
        assert!(supports(&node("Gemm", "ai.onnx")));
        assert!(!supports(&node("Gemm", "com.microsoft")));
        assert!(!supports(&node("NoSuchOp", "")));
    }
}
