//! The graph IR: values (typed, shaped edges) and nodes (ops), built by a typed builder that runs
//! shape inference on every node, so a graph that exists is a graph whose shapes are right.

use crate::op::{
    BinaryOp, Conv2d, ConvTranspose2d, CoordTransform, Gemm, Op, PadMode, Pool2d, ReduceOp,
    ResizeMode, SliceAxis, UnaryOp,
};
use crate::shape::normalize_axis;
use crate::{DType, Error, Result, Shape, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};

/// A value (an edge: a graph input, a constant or a node output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// A node (an op applied to values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a value is: its name, dtype, shape and the node that makes it (none for graph inputs).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    pub producer: Option<NodeId>,
}

/// One op applied to input values, making output values.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

static NEXT_GRAPH_ID: AtomicU64 = AtomicU64::new(1);

/// A dataflow graph in topological order (the builder only lets a node use values that exist).
#[derive(Debug)]
pub struct Graph {
    id: u64,
    values: Vec<ValueInfo>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

impl Clone for Graph {
    /// A clone is a new graph: it gets its own identity, so devices never mix up their caches.
    fn clone(&self) -> Self {
        Graph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed),
            values: self.values.clone(),
            nodes: self.nodes.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }
    }
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl Graph {
    pub fn new() -> Self {
        Graph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed),
            values: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// An identity for caches: unique per graph, and it changes whenever the graph changes.
    pub fn fingerprint(&self) -> (u64, usize, Vec<ValueId>) {
        (self.id, self.nodes.len(), self.outputs.clone())
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn value(&self, id: ValueId) -> &ValueInfo {
        &self.values[id.index()]
    }

    pub fn values(&self) -> &[ValueInfo] {
        &self.values
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    pub fn shape(&self, v: ValueId) -> &Shape {
        &self.values[v.index()].shape
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.values[v.index()].dtype
    }

    /// Mark values as the graph's outputs, in order.
    pub fn set_outputs(&mut self, outputs: &[ValueId]) -> Result<()> {
        for &o in outputs {
            self.check_value(o)?;
        }
        self.outputs = outputs.to_vec();
        Ok(())
    }

    /// A graph input of a given dtype and shape.
    pub fn input(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueInfo {
            name: name.to_string(),
            dtype,
            shape: shape.into(),
            producer: None,
        });
        self.inputs.push(id);
        id
    }

    fn check_value(&self, v: ValueId) -> Result<()> {
        if v.index() < self.values.len() {
            Ok(())
        } else {
            Err(Error::Graph(format!(
                "value {} does not exist in this graph",
                v.0
            )))
        }
    }

    /// Add a node with an explicit name; shape inference runs first and names the node on error.
    pub fn add_named(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<Vec<ValueId>> {
        for &i in inputs {
            self.check_value(i)?;
        }
        let infos: Vec<(DType, &Shape)> = inputs
            .iter()
            .map(|&i| (self.dtype(i), self.shape(i)))
            .collect();
        let outs = op.infer(&infos).map_err(|msg| Error::Node {
            node: name.to_string(),
            op: op.name().to_string(),
            inputs: describe_inputs(&infos),
            msg,
        })?;
        let id = NodeId(self.nodes.len() as u32);
        let mut out_ids = Vec::with_capacity(outs.len());
        for (k, (dtype, shape)) in outs.into_iter().enumerate() {
            let vid = ValueId(self.values.len() as u32);
            let vname = if k == 0 {
                name.to_string()
            } else {
                format!("{name}:{k}")
            };
            self.values.push(ValueInfo {
                name: vname,
                dtype,
                shape,
                producer: Some(id),
            });
            out_ids.push(vid);
        }
        self.nodes.push(Node {
            id,
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: out_ids.clone(),
        });
        Ok(out_ids)
    }

    /// Add a node named after its op and index.
    pub fn add(&mut self, op: Op, inputs: &[ValueId]) -> Result<Vec<ValueId>> {
        let name = format!("{}_{}", op.name().to_lowercase(), self.nodes.len());
        self.add_named(&name, op, inputs)
    }

    fn add1(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        Ok(self.add(op, inputs)?[0])
    }

    /// Describe a node's inputs for error messages ("x: f32 [1, 3]").
    pub fn describe_node_inputs(&self, node: &Node) -> String {
        let infos: Vec<(DType, &Shape)> = node
            .inputs
            .iter()
            .map(|&i| (self.dtype(i), self.shape(i)))
            .collect();
        describe_inputs(&infos)
    }

    /// For each value, the number of nodes that read it plus one if it is a graph output.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i.index()] += 1;
            }
        }
        for &o in &self.outputs {
            uses[o.index()] += 1;
        }
        uses
    }

    // ---- The typed builder. Each returns the output value, or an error naming the node. ----

    pub fn constant(&mut self, t: Tensor) -> Result<ValueId> {
        self.add1(Op::Constant(t), &[])
    }

    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add1(Op::MatMul, &[a, b])
    }

    pub fn gemm(&mut self, a: ValueId, b: ValueId, c: Option<ValueId>, g: Gemm) -> Result<ValueId> {
        let mut ins = vec![a, b];
        ins.extend(c);
        self.add1(Op::Gemm(g), &ins)
    }

    pub fn conv2d(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        c: Conv2d,
    ) -> Result<ValueId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add1(Op::Conv2d(c), &ins)
    }

    pub fn conv_transpose2d(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
        c: ConvTranspose2d,
    ) -> Result<ValueId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add1(Op::ConvTranspose2d(c), &ins)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        x: ValueId,
        scale: ValueId,
        bias: ValueId,
        mean: ValueId,
        var: ValueId,
        epsilon: f32,
    ) -> Result<ValueId> {
        self.add1(Op::BatchNorm { epsilon }, &[x, scale, bias, mean, var])
    }

    pub fn unary(&mut self, op: UnaryOp, x: ValueId) -> Result<ValueId> {
        self.add1(Op::Unary(op), &[x])
    }

    pub fn relu(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Relu, x)
    }

    pub fn gelu(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Gelu, x)
    }

    pub fn sigmoid(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Sigmoid, x)
    }

    pub fn binary(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add1(Op::Binary(op), &[a, b])
    }

    pub fn add_(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Add, a, b)
    }

    pub fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// Softmax along `axis` (negative counts from the end).
    pub fn softmax(&mut self, x: ValueId, axis: i64) -> Result<ValueId> {
        let axis = self.axis("Softmax", x, axis)?;
        self.add1(Op::Softmax { axis }, &[x])
    }

    /// Layer norm over the last `x.rank() - axis` dims.
    pub fn layer_norm(
        &mut self,
        x: ValueId,
        scale: ValueId,
        bias: Option<ValueId>,
        axis: i64,
        epsilon: f32,
    ) -> Result<ValueId> {
        let axis = self.axis("LayerNorm", x, axis)?;
        let mut ins = vec![x, scale];
        ins.extend(bias);
        self.add1(Op::LayerNorm { axis, epsilon }, &ins)
    }

    /// Reduce over `axes` (negative count from the end; empty means all).
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: ValueId,
        axes: &[i64],
        keepdim: bool,
    ) -> Result<ValueId> {
        let rank = self.shape(x).rank();
        let mut norm: Vec<usize> = if axes.is_empty() {
            (0..rank).collect()
        } else {
            axes.iter()
                .map(|&a| self.axis(op.name(), x, a))
                .collect::<Result<_>>()?
        };
        norm.sort_unstable();
        norm.dedup();
        self.add1(
            Op::Reduce {
                op,
                axes: norm,
                keepdim,
            },
            &[x],
        )
    }

    pub fn max_pool2d(&mut self, x: ValueId, p: Pool2d) -> Result<ValueId> {
        self.add1(Op::MaxPool2d(p), &[x])
    }

    /// Where [`Graph::max_pool2d`]'s maxima are (see [`Op::MaxPoolIndices2d`]).
    pub fn max_pool2d_indices(
        &mut self,
        x: ValueId,
        p: Pool2d,
        col_major: bool,
    ) -> Result<ValueId> {
        self.add1(Op::MaxPoolIndices2d { pool: p, col_major }, &[x])
    }

    pub fn avg_pool2d(&mut self, x: ValueId, p: Pool2d) -> Result<ValueId> {
        self.add1(Op::AvgPool2d(p), &[x])
    }

    pub fn global_avg_pool(&mut self, x: ValueId) -> Result<ValueId> {
        self.add1(Op::GlobalAvgPool, &[x])
    }

    /// Reshape; one dim may be -1 (inferred) and 0 copies the input dim.
    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let dims = self.shape(x).0.clone();
        let resolved = resolve_reshape(&dims, shape)
            .map_err(|msg| self.builder_error("Reshape", &[x], msg))?;
        self.add1(Op::Reshape { shape: resolved }, &[x])
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        self.add1(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    pub fn concat(&mut self, xs: &[ValueId], axis: i64) -> Result<ValueId> {
        let first = *xs
            .first()
            .ok_or_else(|| Error::Graph("concat of no inputs".into()))?;
        let axis = self.axis("Concat", first, axis)?;
        self.add1(Op::Concat { axis }, xs)
    }

    /// numpy/ONNX slice: per listed axis a start, end and step (clamped like ONNX).
    pub fn slice(
        &mut self,
        x: ValueId,
        axes: &[i64],
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> Result<ValueId> {
        let dims = self.shape(x).0.clone();
        if axes.len() != starts.len() || axes.len() != ends.len() || axes.len() != steps.len() {
            return Err(self.builder_error(
                "Slice",
                &[x],
                "axes, starts, ends and steps differ in length".into(),
            ));
        }
        let mut norm: Vec<SliceAxis> = dims.iter().map(|&d| SliceAxis::full(d)).collect();
        for (k, &a) in axes.iter().enumerate() {
            let ax = self.axis("Slice", x, a)?;
            norm[ax] = SliceAxis::normalize(dims[ax], starts[k], ends[k], steps[k])
                .ok_or_else(|| self.builder_error("Slice", &[x], format!("step 0 on axis {a}")))?;
        }
        self.add1(Op::Slice { axes: norm }, &[x])
    }

    pub fn split(&mut self, x: ValueId, axis: i64, sizes: &[usize]) -> Result<Vec<ValueId>> {
        let axis = self.axis("Split", x, axis)?;
        self.add(
            Op::Split {
                axis,
                sizes: sizes.to_vec(),
            },
            &[x],
        )
    }

    pub fn gather(&mut self, x: ValueId, indices: ValueId, axis: i64) -> Result<ValueId> {
        let axis = self.axis("Gather", x, axis)?;
        self.add1(Op::Gather { axis }, &[x, indices])
    }

    pub fn gather_elements(&mut self, x: ValueId, indices: ValueId, axis: i64) -> Result<ValueId> {
        let axis = self.axis("GatherElements", x, axis)?;
        self.add1(Op::GatherElements { axis }, &[x, indices])
    }

    /// ArgMax (`max`) or ArgMin along `axis`: i64 indices, the first on ties unless `last`.
    pub fn arg_reduce(
        &mut self,
        x: ValueId,
        max: bool,
        axis: i64,
        keepdim: bool,
        last: bool,
    ) -> Result<ValueId> {
        let axis = self.axis(if max { "ArgMax" } else { "ArgMin" }, x, axis)?;
        let op = Op::ArgReduce {
            max,
            axis,
            keepdim,
            last,
        };
        self.add1(op, &[x])
    }

    pub fn where_(&mut self, cond: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.add1(Op::Where, &[cond, a, b])
    }

    pub fn cast(&mut self, x: ValueId, to: DType) -> Result<ValueId> {
        self.add1(Op::Cast { to, saturate: true }, &[x])
    }

    pub fn resize(
        &mut self,
        x: ValueId,
        size: [usize; 2],
        mode: ResizeMode,
        coord: CoordTransform,
    ) -> Result<ValueId> {
        self.add1(Op::Resize { mode, coord, size }, &[x])
    }

    pub fn pad(&mut self, x: ValueId, pads: &[[usize; 2]], mode: PadMode) -> Result<ValueId> {
        self.add1(
            Op::Pad {
                pads: pads.to_vec(),
                mode,
            },
            &[x],
        )
    }

    fn axis(&self, op: &str, x: ValueId, axis: i64) -> Result<usize> {
        let rank = self.shape(x).rank();
        normalize_axis(axis, rank).ok_or_else(|| {
            self.builder_error(
                op,
                &[x],
                format!("axis {axis} is out of range for rank {rank}"),
            )
        })
    }

    fn builder_error(&self, op: &str, inputs: &[ValueId], msg: String) -> Error {
        let infos: Vec<(DType, &Shape)> = inputs
            .iter()
            .map(|&i| (self.dtype(i), self.shape(i)))
            .collect();
        Error::Node {
            node: format!("{}_{}", op.to_lowercase(), self.nodes.len()),
            op: op.to_string(),
            inputs: describe_inputs(&infos),
            msg,
        }
    }
}

/// "f32 [1, 3], i64 [4]".
pub fn describe_inputs(infos: &[(DType, &Shape)]) -> String {
    if infos.is_empty() {
        return "none".into();
    }
    infos
        .iter()
        .map(|(d, s)| format!("{d} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolve a reshape target with ONNX rules: 0 copies the input dim, one -1 is inferred.
pub fn resolve_reshape(dims: &[usize], target: &[i64]) -> Result<Vec<usize>, String> {
    let numel: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            -1 => return Err("more than one -1 in the target shape".into()),
            0 => out.push(
                *dims
                    .get(i)
                    .ok_or_else(|| format!("0 at position {i} has no input dim to copy"))?,
            ),
            t if t > 0 => out.push(t as usize),
            t => return Err(format!("negative dim {t} in the target shape")),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !numel.is_multiple_of(rest) {
            return Err(format!("cannot infer -1: {numel} elements into {target:?}"));
        }
        out[i] = numel / rest;
    }
    if out.iter().product::<usize>() != numel {
        return Err(format!("{numel} elements do not fit {target:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_names_node_on_error() {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [2, 3]);
        let b = g.input("b", DType::F32, [4, 5]);
        let err = g.matmul(a, b).unwrap_err().to_string();
        assert!(
            err.contains("matmul_0")
                && err.contains("MatMul")
                && err.contains("[2, 3]")
                && err.contains("[4, 5]"),
            "{err}"
        );
        let i = g.input("i", DType::I32, [2]);
        let err = g.unary(UnaryOp::Sigmoid, i).unwrap_err().to_string();
        assert!(err.contains("Sigmoid") && err.contains("i32"), "{err}");
    }

    #[test]
    fn reshape_rules() {
        assert_eq!(resolve_reshape(&[2, 3, 4], &[0, -1]).unwrap(), vec![2, 12]);
        assert!(resolve_reshape(&[2, 3], &[-1, -1]).is_err());
        assert!(resolve_reshape(&[2, 3], &[4, 2]).is_err());
    }

    #[test]
    fn clone_gets_new_identity() {
        let g = Graph::new();
        assert_ne!(g.fingerprint(), g.clone().fingerprint());
    }
}
