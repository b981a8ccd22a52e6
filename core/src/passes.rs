//! Graph passes: rewrites of a [`Graph`] that keep what it computes and make it cheaper to run.
//!
//! Each pass is a small named function `fn(&Graph) -> Result<(Graph, usize)>`: it reads a graph
//! and builds a new one (through the typed builder, so shape inference checks every rewritten
//! node), and says how many changes it made. [`optimize`] runs them all to a fixed point.
//!
//! | pass | what it does |
//! |---|---|
//! | [`fold_constants`] | evaluates nodes whose inputs are all constants, on the CPU reference |
//! | [`fold_batch_norm`] | folds an inference BatchNorm into the Conv2d, Gemm or MatMul before it |
//! | [`eliminate_common_subexpressions`] | merges nodes with equal ops and identical inputs |
//! | [`eliminate_dead_code`] | drops nodes none of whose outputs reach a graph output |
//!
//! Invariants every pass keeps:
//! - the graph inputs come out in the same order, with the same names, dtypes and shapes;
//! - the graph outputs come out in the same order, with the same dtypes and shapes;
//! - a node that survives keeps its name (so errors and profiles still name the user's nodes),
//!   and a node rewritten in place (a Conv2d with a BatchNorm folded in) keeps the name of the
//!   node that does the work (the Conv2d);
//! - every value keeps its dtype and shape; a pass that would change one returns an error.
//!
//! Passes never panic on user graphs: a node the CPU reference cannot evaluate is kept as it is
//! (it will fail at run time, under its own name), and a fold that would need a non-finite factor
//! is not made. Reshape and Transpose are left alone (the shader planner turns them into views).

use crate::interp;
use crate::op::{Gemm, Op};
use crate::{Error, Graph, Node, NodeId, Result, Shape, Tensor, TensorData, ValueId};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// [`fold_constants`] leaves a node alone when one of its outputs has more elements than this
/// (16M), so that folding never blows up the size of a model.
pub const MAX_FOLD_ELEMENTS: usize = 1 << 24;

/// The most rounds [`optimize`] runs before it stops, fixed point or not.
pub const MAX_ITERATIONS: usize = 16;

/// What [`optimize`] did, pass by pass (summed over the rounds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassStats {
    /// Nodes replaced by constants ([`fold_constants`]).
    pub constants_folded: usize,
    /// BatchNorms folded into the node before them ([`fold_batch_norm`]).
    pub batch_norms_folded: usize,
    /// Nodes dropped because no graph output needs them ([`eliminate_dead_code`]).
    pub dead_nodes_removed: usize,
    /// Nodes merged into an equal earlier node ([`eliminate_common_subexpressions`]).
    pub common_subexpressions_merged: usize,
    /// Node count of the graph given to [`optimize`].
    pub nodes_before: usize,
    /// Node count of the graph [`optimize`] returned.
    pub nodes_after: usize,
    /// Rounds of the passes [`optimize`] ran (the last one changed nothing, unless the bound
    /// [`MAX_ITERATIONS`] was hit).
    pub iterations: usize,
    /// MatMuls and Gathers whose constant was over the target's binding limit and now read it
    /// in blocks ([`crate::legalize::split_oversized_constants`], run by
    /// [`crate::compile()`] after the passes).
    pub oversized_constants_split: usize,
    /// One-group convs whose input channels were padded with zeros to a multiple-of-4 window
    /// ([`crate::legalize::pad_conv_channels`], run by [`crate::compile()`] on targets that
    /// read conv weights from uniform blocks).
    pub conv_channels_padded: usize,
    /// MatMuls of a narrow constant weight whose columns were padded with zeros to a multiple
    /// of 4, the product sliced back ([`crate::legalize::pad_narrow_matmuls`], on the same
    /// targets).
    pub narrow_matmuls_padded: usize,
}

/// Run every pass to a fixed point (at most [`MAX_ITERATIONS`] rounds) and return the new graph
/// and what each pass did.
///
/// Dead code goes first (a dead consumer would block a BatchNorm fold), then each round runs
/// [`fold_constants`], [`fold_batch_norm`], [`eliminate_common_subexpressions`] and
/// [`eliminate_dead_code`], until a round changes nothing.
///
/// Errors if the graph has no outputs (everything would be dead) or if a rewrite would change a
/// value's dtype or shape (a bug in a pass).
pub fn optimize(g: &Graph) -> Result<(Graph, PassStats)> {
    let _span = tracing::info_span!("optimize", nodes = g.nodes().len()).entered();
    let mut stats = PassStats {
        nodes_before: g.nodes().len(),
        ..Default::default()
    };
    let (mut cur, dead) = eliminate_dead_code(g)?;
    stats.dead_nodes_removed += dead;
    for _ in 0..MAX_ITERATIONS {
        stats.iterations += 1;
        let (next, folded) = fold_constants(&cur)?;
        let (next, bns) = fold_batch_norm(&next)?;
        let (next, merged) = eliminate_common_subexpressions(&next)?;
        let (next, dead) = eliminate_dead_code(&next)?;
        cur = next;
        stats.constants_folded += folded;
        stats.batch_norms_folded += bns;
        stats.common_subexpressions_merged += merged;
        stats.dead_nodes_removed += dead;
        if folded + bns + merged + dead == 0 {
            break;
        }
    }
    stats.nodes_after = cur.nodes().len();
    tracing::debug!(?stats, "optimized");
    Ok((cur, stats))
}

/// Replace each node whose inputs are all constants by constants (one per output), computed by
/// the CPU reference ([`interp::eval_node`]). Returns the number of nodes folded.
///
/// Folding goes in graph order, so a chain of constant ops folds in one run. The constants keep
/// the node's name for output 0 and `name:k` for output `k`, so the values keep their names.
///
/// Not folded: [`Op::Constant`] itself; a node with an output over [`MAX_FOLD_ELEMENTS`]
/// elements; a node the CPU reference fails on (it stays, and fails at run time under its own
/// name). The constants it read stay too; [`eliminate_dead_code`] drops them once unused.
pub fn fold_constants(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("fold_constants").entered();
    let mut rb = Rebuild::new(g, "fold_constants");
    // The constant tensor of each old value, where it has one.
    let mut known: Vec<Option<Cow<'_, Tensor>>> = vec![None; g.values().len()];
    let mut folded = 0;
    for node in g.nodes() {
        if let Op::Constant(t) = &node.op {
            known[node.outputs[0].index()] = Some(Cow::Borrowed(t));
            rb.keep(node)?;
            continue;
        }
        let small = node.outputs.iter().all(|&o| {
            g.shape(o)
                .checked_numel()
                .is_some_and(|n| n <= MAX_FOLD_ELEMENTS)
        });
        let ins: Option<Vec<&Tensor>> = node
            .inputs
            .iter()
            .map(|&i| known[i.index()].as_deref())
            .collect();
        let evaluated = match ins {
            Some(ins) if small => match interp::eval_node(g, node, &ins) {
                Ok(outs) => Some(outs),
                Err(e) => {
                    tracing::debug!(node = %node.name, error = %e, "not folded");
                    None
                }
            },
            _ => None,
        };
        let Some(outs) = evaluated else {
            rb.keep(node)?;
            continue;
        };
        if outs.len() != node.outputs.len() {
            return Err(rb.bug(format!(
                "node '{}' evaluated to {} tensors, it has {} outputs",
                node.name,
                outs.len(),
                node.outputs.len()
            )));
        }
        for (k, (&o, t)) in node.outputs.iter().zip(outs).enumerate() {
            let name = if k == 0 {
                node.name.clone()
            } else {
                format!("{}:{k}", node.name)
            };
            rb.emit(&name, Op::Constant(t.clone()), &[], &[o])?;
            known[o.index()] = Some(Cow::Owned(t));
        }
        folded += 1;
    }
    Ok((rb.finish()?, folded))
}

/// Fold an inference BatchNorm into the linear node before it. Returns the number of folds.
///
/// With `s = scale / sqrt(var + eps)` per channel (computed in f64, stored in the weight's
/// dtype), `BatchNorm(y) = s * y + (bias - s * mean)`, so:
/// - `Conv2d(x, W[, b])` becomes `Conv2d(x, W', b')` with `W'[o] = W[o] * s_o` and
///   `b'_o = (b_o - mean_o) * s_o + bias_o` (groups and dilation do not matter: `o` is always
///   the first dim of `W`);
/// - `Gemm(A, B[, C])` (`alpha * op(A) @ op(B) + beta * C`) becomes `Gemm(A, B', C')` with the
///   columns of `op(B)` scaled by `s` (rows of `B` when `trans_b`), and
///   `C' = s * (beta * C - mean) + bias` broadcast to `C`'s shape and `[N]`, with `beta = 1`;
/// - `MatMul(A [M, K], W [K, N])` becomes `Gemm(A, W', c')` with `c' = bias - s * mean`.
///
/// A fold is made only when: the BatchNorm reads the node's output as its input 0 and is its
/// only reader, that output is not a graph output, the weight (and bias or C, if any) and all
/// four BatchNorm parameters are [`Op::Constant`]s, and every `s` is finite. The fused node
/// keeps the name of the Conv2d, Gemm or MatMul; the new constants are named
/// `<batchnorm>.folded_weight` and `<batchnorm>.folded_bias`. The old constants stay (run
/// [`eliminate_dead_code`] to drop them).
///
/// Not handled: ConvTranspose2d, a MatMul with batch dims or a non-constant weight, a
/// BatchNorm between nodes of other kinds.
pub fn fold_batch_norm(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("fold_batch_norm").entered();
    let uses = g.use_counts();
    let mut folds: HashMap<NodeId, BnFold> = HashMap::new();
    let mut absorbed: HashSet<NodeId> = HashSet::new();
    for bn in g.nodes() {
        let Op::BatchNorm { epsilon } = bn.op else {
            continue;
        };
        let y = bn.inputs[0];
        let Some(p) = g.value(y).producer else {
            continue;
        };
        if uses[y.index()] != 1 {
            continue;
        }
        let params: Option<Vec<&Tensor>> = bn.inputs[1..].iter().map(|&v| constant(g, v)).collect();
        let Some(params) = params else {
            continue;
        };
        let Some(fold) = plan_bn_fold(g, g.node(p), bn, epsilon, &params) else {
            continue;
        };
        absorbed.insert(bn.id);
        folds.insert(p, fold);
    }
    let count = folds.len();
    if count == 0 {
        return Ok((g.clone(), 0));
    }
    let mut rb = Rebuild::new(g, "fold_batch_norm");
    for node in g.nodes() {
        if absorbed.contains(&node.id) {
            continue;
        }
        let Some(fold) = folds.remove(&node.id) else {
            rb.keep(node)?;
            continue;
        };
        let bn = g.node(fold.bn);
        let x = rb.get(node.inputs[0])?;
        let w = rb.emit_constant(&format!("{}.folded_weight", bn.name), fold.weight)?;
        let b = rb.emit_constant(&format!("{}.folded_bias", bn.name), fold.bias)?;
        rb.emit(&node.name, fold.op, &[x, w, b], &bn.outputs)?;
    }
    Ok((rb.finish()?, count))
}

/// Drop every node none of whose outputs reaches a graph output. Returns the number dropped.
///
/// A node with several outputs stays whole if any of them is needed. Graph inputs always stay,
/// used or not. Errors if the graph has no outputs (call [`Graph::set_outputs`] first).
pub fn eliminate_dead_code(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("eliminate_dead_code").entered();
    if g.outputs().is_empty() {
        return Err(Error::Graph(
            "eliminate_dead_code: the graph has no outputs (call set_outputs), so every node \
             would be dead"
                .into(),
        ));
    }
    let mut live = vec![false; g.values().len()];
    for &o in g.outputs() {
        live[o.index()] = true;
    }
    let mut keep = vec![false; g.nodes().len()];
    for node in g.nodes().iter().rev() {
        if node.outputs.iter().any(|o| live[o.index()]) {
            keep[node.id.index()] = true;
            for &i in &node.inputs {
                live[i.index()] = true;
            }
        }
    }
    let dead = keep.iter().filter(|&&k| !k).count();
    if dead == 0 {
        return Ok((g.clone(), 0));
    }
    let mut rb = Rebuild::new(g, "eliminate_dead_code");
    for node in g.nodes() {
        if keep[node.id.index()] {
            rb.keep(node)?;
        }
    }
    Ok((rb.finish()?, dead))
}

/// Merge nodes that compute the same thing: equal ops reading identical inputs. The later node
/// goes, its readers read the earlier node's outputs. Returns the number of nodes merged.
///
/// Ops are compared attribute by attribute with float attributes compared by their bits (so
/// `-0.0` and `0.0` differ and a NaN attribute never merges); constants are compared by dtype,
/// shape and the bits of every element, after a cheap hash of the dtype, shape and a sample of
/// the elements. Merging goes in graph order, so whole duplicated subgraphs merge in one run.
///
/// Not merged: a node one of whose outputs is a graph output (its output keeps its own name and
/// the outputs stay distinct values).
pub fn eliminate_common_subexpressions(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("eliminate_common_subexpressions").entered();
    let graph_outputs: HashSet<ValueId> = g.outputs().iter().copied().collect();
    let mut rb = Rebuild::new(g, "eliminate_common_subexpressions");
    // Hash of (op, inputs) to the indices of the new graph's nodes with that hash.
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut merged = 0;
    for node in g.nodes() {
        let ins = rb.inputs_of(node)?;
        let key = op_key(&node.op, &ins);
        let mergeable = !node.outputs.iter().any(|o| graph_outputs.contains(o));
        let earlier = seen
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&k| &rb.new.nodes()[k])
            .find(|n| n.inputs == ins && same_op(&n.op, &node.op))
            .map(|n| n.outputs.clone());
        match earlier {
            Some(outs) if mergeable && outs.len() == node.outputs.len() => {
                for (&old, &new) in node.outputs.iter().zip(&outs) {
                    rb.alias(old, new);
                }
                merged += 1;
            }
            _ => {
                rb.emit(&node.name, node.op.clone(), &ins, &node.outputs)?;
                seen.entry(key).or_default().push(rb.new.nodes().len() - 1);
            }
        }
    }
    Ok((rb.finish()?, merged))
}

// ---- BatchNorm folding ----

/// A planned BatchNorm fold: the producer node becomes `op(x, weight, bias)` and takes over the
/// BatchNorm's output.
struct BnFold {
    bn: NodeId,
    op: Op,
    weight: Tensor,
    bias: Tensor,
}

/// The fold of BatchNorm `bn` into its producer `p`, or `None` when it cannot be made.
fn plan_bn_fold(
    g: &Graph,
    p: &Node,
    bn: &Node,
    epsilon: f32,
    params: &[&Tensor],
) -> Option<BnFold> {
    let [scale, beta, mean, var] = params else {
        return None;
    };
    let (scale, beta, mean, var) = (
        scale.to_f64_vec(),
        beta.to_f64_vec(),
        mean.to_f64_vec(),
        var.to_f64_vec(),
    );
    let s: Vec<f64> = scale
        .iter()
        .zip(&var)
        .map(|(sc, v)| sc / (v + epsilon as f64).sqrt())
        .collect();
    if s.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let channels = s.len();
    // The bias of a node with none, folded: bias - s * mean.
    let shift = |b: Option<&[f64]>| -> Vec<f64> {
        (0..channels)
            .map(|c| (b.map_or(0.0, |b| b[c]) - mean[c]) * s[c] + beta[c])
            .collect()
    };
    let out = g.shape(bn.outputs[0]);
    match &p.op {
        Op::Conv2d(_) => {
            let w = constant(g, p.inputs[1])?;
            let bias = match p.inputs.get(2) {
                Some(&b) => Some(constant(g, b)?.to_f64_vec()),
                None => None,
            };
            let per = w.numel().checked_div(channels)?;
            if w.dims().first() != Some(&channels) {
                return None;
            }
            let wv: Vec<f64> = w
                .to_f64_vec()
                .iter()
                .enumerate()
                .map(|(i, x)| x * s[i / per])
                .collect();
            Some(BnFold {
                bn: bn.id,
                op: p.op.clone(),
                weight: Tensor::from_f64(w.dtype(), w.shape().clone(), &wv),
                bias: Tensor::from_f64(w.dtype(), [channels], &shift(bias.as_deref())),
            })
        }
        Op::Gemm(gm) => {
            let b = constant(g, p.inputs[1])?;
            if out.rank() != 2 || b.dims().len() != 2 {
                return None;
            }
            let bv = scale_columns(b, &s, gm.trans_b)?;
            let (cshape, cv) = match p.inputs.get(2) {
                Some(&c) => {
                    let c = constant(g, c)?;
                    let cshape = Shape::broadcast(c.shape(), &Shape(vec![channels]))?;
                    let cb = interp::broadcast_to(&c.to_f64_vec(), c.shape(), &cshape);
                    let cv: Vec<f64> = cb
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| {
                            let j = i % channels;
                            (gm.beta as f64 * x - mean[j]) * s[j] + beta[j]
                        })
                        .collect();
                    (cshape, cv)
                }
                None => (Shape(vec![channels]), shift(None)),
            };
            Some(BnFold {
                bn: bn.id,
                op: Op::Gemm(Gemm { beta: 1.0, ..*gm }),
                weight: Tensor::from_f64(b.dtype(), b.shape().clone(), &bv),
                bias: Tensor::from_f64(b.dtype(), cshape, &cv),
            })
        }
        Op::MatMul => {
            let w = constant(g, p.inputs[1])?;
            if out.rank() != 2 || w.dims().len() != 2 || g.shape(p.inputs[0]).rank() != 2 {
                return None;
            }
            let wv = scale_columns(w, &s, false)?;
            Some(BnFold {
                bn: bn.id,
                op: Op::Gemm(Gemm::default()),
                weight: Tensor::from_f64(w.dtype(), w.shape().clone(), &wv),
                bias: Tensor::from_f64(w.dtype(), [channels], &shift(None)),
            })
        }
        _ => None,
    }
}

/// The elements of 2-D `b` with the columns of `op(b)` scaled by `s` (rows of `b` when
/// `transposed`), or `None` if `s` does not have one factor per column.
fn scale_columns(b: &Tensor, s: &[f64], transposed: bool) -> Option<Vec<f64>> {
    let (rows, cols) = (b.dims()[0], b.dims()[1]);
    let n = if transposed { rows } else { cols };
    if n != s.len() {
        return None;
    }
    Some(
        b.to_f64_vec()
            .iter()
            .enumerate()
            .map(|(i, x)| x * s[if transposed { i / cols } else { i % cols }])
            .collect(),
    )
}

/// The tensor of `v` if a Constant node makes it.
pub(crate) fn constant(g: &Graph, v: ValueId) -> Option<&Tensor> {
    match &g.node(g.value(v).producer?).op {
        Op::Constant(t) => Some(t),
        _ => None,
    }
}

// ---- Op equality for CSE ----

/// A cheap hash of an op and its inputs: the op's name, the inputs, and for a constant its
/// dtype, shape and at most 64 sampled elements.
fn op_key(op: &Op, inputs: &[ValueId]) -> u64 {
    let mut h = DefaultHasher::new();
    op.name().hash(&mut h);
    inputs.hash(&mut h);
    if let Op::Constant(t) = op {
        t.dtype().hash(&mut h);
        t.dims().hash(&mut h);
        let n = t.numel();
        let step = (n / 64).max(1);
        for i in (0..n).step_by(step) {
            element_bits(t.data(), i).hash(&mut h);
        }
    }
    h.finish()
}

/// The bits of element `i`.
fn element_bits(d: &TensorData, i: usize) -> u64 {
    match d {
        TensorData::F32(v) => v[i].to_bits() as u64,
        TensorData::F16(v) => v[i].to_bits() as u64,
        TensorData::I32(v) => v[i] as u32 as u64,
        TensorData::I64(v) => v[i] as u64,
        TensorData::U8(v) => v[i] as u64,
        TensorData::Bool(v) => v[i] as u64,
        TensorData::F64(v) => v[i].to_bits(),
        TensorData::BF16(v) => v[i].to_bits() as u64,
        TensorData::I8(v) => v[i] as u8 as u64,
        TensorData::I16(v) => v[i] as u16 as u64,
        TensorData::U16(v) => v[i] as u64,
        TensorData::U32(v) => v[i] as u64,
        TensorData::U64(v) => v[i],
        TensorData::Narrow(_, v) => v[i].to_bits() as u64,
    }
}

/// Whether two tensors have the same dtype, shape and bits.
fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && (0..a.numel()).all(|i| element_bits(a.data(), i) == element_bits(b.data(), i))
}

/// Whether two ops compute the same function: equal attributes, float attributes equal in
/// bits, constants equal in bits.
fn same_op(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Constant(x), Op::Constant(y)) => same_bits(x, y),
        _ => a == b && float_attr_bits(a) == float_attr_bits(b),
    }
}

/// The bits of an op's float attributes (`==` says `-0.0 == 0.0`; these do not).
fn float_attr_bits(op: &Op) -> Vec<u32> {
    use crate::op::{PadMode, UnaryOp};
    match op {
        Op::Gemm(g) => vec![g.alpha.to_bits(), g.beta.to_bits()],
        Op::BatchNorm { epsilon } | Op::LayerNorm { epsilon, .. } => vec![epsilon.to_bits()],
        Op::Unary(UnaryOp::LeakyRelu { alpha }) => vec![alpha.to_bits()],
        Op::Unary(UnaryOp::Clip { min, max }) => vec![min.to_bits(), max.to_bits()],
        Op::Pad {
            mode: PadMode::Constant(v),
            ..
        } => vec![v.to_bits()],
        Op::Recurrence(r) => r
            .clip
            .into_iter()
            .chain(r.acts.iter().flat_map(|a| a.params()))
            .map(f32::to_bits)
            .collect(),
        Op::Unary(_)
        | Op::Pad { .. }
        | Op::Constant(_)
        | Op::MatMul
        | Op::MatMulInteger
        | Op::Conv2d(_)
        | Op::ConvInteger(_)
        | Op::ConvTranspose2d(_)
        | Op::Binary(_)
        | Op::Softmax { .. }
        | Op::Reduce { .. }
        | Op::MaxPool2d(_)
        | Op::MaxPoolIndices2d { .. }
        | Op::AvgPool2d(_)
        | Op::GlobalAvgPool
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Split { .. }
        | Op::Gather { .. }
        | Op::Where
        | Op::Cast { .. }
        | Op::BitCast { .. }
        | Op::Resize { .. }
        | Op::GatherElements { .. }
        | Op::ScatterRows { .. }
        | Op::ArgReduce { .. } => Vec::new(),
    }
}

// ---- Rebuilding ----

/// Builds the new graph of a pass: the old graph's inputs first (same order, names, dtypes and
/// shapes), then the nodes the pass emits, then the old outputs, mapped. Tracks, for each old
/// value, the new value that stands for it.
pub(crate) struct Rebuild<'a> {
    pass: &'static str,
    old: &'a Graph,
    pub(crate) new: Graph,
    map: Vec<Option<ValueId>>,
}

impl<'a> Rebuild<'a> {
    pub(crate) fn new(old: &'a Graph, pass: &'static str) -> Self {
        let mut new = Graph::new();
        let mut map = vec![None; old.values().len()];
        for &v in old.inputs() {
            let info = old.value(v);
            map[v.index()] = Some(new.input(&info.name, info.dtype, info.shape.clone()));
        }
        Rebuild {
            pass,
            old,
            new,
            map,
        }
    }

    pub(crate) fn bug(&self, msg: String) -> Error {
        Error::Graph(format!("pass {}: {msg}", self.pass))
    }

    /// The new value standing for old value `v`.
    pub(crate) fn get(&self, v: ValueId) -> Result<ValueId> {
        self.map.get(v.index()).copied().flatten().ok_or_else(|| {
            let name = self
                .old
                .values()
                .get(v.index())
                .map_or("?", |i| i.name.as_str());
            self.bug(format!("value '{name}' is read but was dropped"))
        })
    }

    pub(crate) fn inputs_of(&self, node: &Node) -> Result<Vec<ValueId>> {
        node.inputs.iter().map(|&i| self.get(i)).collect()
    }

    /// From now on, old value `old` is new value `new`.
    pub(crate) fn alias(&mut self, old: ValueId, new: ValueId) {
        self.map[old.index()] = Some(new);
    }

    /// Add `op` reading `inputs` (new values) and let its outputs stand for `old_outputs`, which
    /// must have the same dtypes and shapes.
    pub(crate) fn emit(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        old_outputs: &[ValueId],
    ) -> Result<()> {
        let outs = self.new.add_named(name, op, inputs)?;
        if outs.len() != old_outputs.len() {
            return Err(self.bug(format!(
                "node '{name}' now has {} outputs instead of {}",
                outs.len(),
                old_outputs.len()
            )));
        }
        for (&old, &new) in old_outputs.iter().zip(&outs) {
            let (o, n) = (self.old.value(old), self.new.value(new));
            if o.dtype != n.dtype || o.shape != n.shape {
                return Err(self.bug(format!(
                    "value '{}' changes from {} {} to {} {}",
                    o.name, o.dtype, o.shape, n.dtype, n.shape
                )));
            }
            self.map[old.index()] = Some(new);
        }
        Ok(())
    }

    /// Add a constant that stands for no old value.
    pub(crate) fn emit_constant(&mut self, name: &str, t: Tensor) -> Result<ValueId> {
        Ok(self.new.add_named(name, Op::Constant(t), &[])?[0])
    }

    /// Copy an old node as it is (same name, op and the new values of its inputs).
    pub(crate) fn keep(&mut self, node: &Node) -> Result<()> {
        let ins = self.inputs_of(node)?;
        self.emit(&node.name, node.op.clone(), &ins, &node.outputs)
    }

    /// The new graph, with the old outputs (mapped) as its outputs.
    pub(crate) fn finish(mut self) -> Result<Graph> {
        let outs: Vec<ValueId> = self
            .old
            .outputs()
            .iter()
            .map(|&o| self.get(o))
            .collect::<Result<_>>()?;
        self.new.set_outputs(&outs)?;
        Ok(self.new)
    }
}
