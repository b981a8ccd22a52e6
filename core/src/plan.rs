//! The fusion planner: which nodes of a graph share a kernel.
//!
//! [`plan`] walks the graph in topological order and forms [`Group`]s:
//! - **views** — Reshape, Transpose and Slice whose readers can all read strided become index
//!   arithmetic in those readers and cost no kernel (a reshape of a contiguous value, a permuted
//!   or sliced operand of a matmul or of an elementwise chain, the Q/K/V head split of attention);
//! - **elementwise chains** — Unary, Binary, Where and Cast nodes of one output shape, with any
//!   broadcasting of their other inputs, in one kernel (several outputs where values escape);
//! - **anchors with epilogues** — MatMul/Gemm and Conv2d, and the row reductions Softmax and
//!   LayerNorm, take the elementwise chain that follows them (bias, activation, scale, residual
//!   add) into their store; Softmax and LayerNorm also take the chain that feeds them as a prologue
//!   (recomputed per read: elementwise work only, never a matmul or a conv);
//! - **attention** — `MatMul(Q, Kᵀ) → [scale] → [+ mask] → Softmax → MatMul(·, V)` is one
//!   flash-style kernel (online softmax, no score matrix in memory), and a following head-merge
//!   transpose becomes its store layout.
//!
//! The planner respects the device's storage-buffer count per stage, and a group's external
//! inputs are always values computed before the group starts, so groups run in the order made.

use crate::op::SliceAxis;
use crate::target::Elem;
use crate::{Graph, NodeId, Op, Shape, ValueId};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A strided view: per dim a stride (may be 0 or negative) and a start offset, in elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    pub strides: Vec<i64>,
    pub offset: i64,
}

impl View {
    pub fn contiguous(s: &Shape) -> View {
        View {
            strides: s.strides().iter().map(|&x| x as i64).collect(),
            offset: 0,
        }
    }

    /// Whether the view reads `s` in row-major order (ignoring size-1 dims).
    pub fn is_contiguous(&self, s: &Shape) -> bool {
        let c = s.strides();
        s.dims()
            .iter()
            .zip(self.strides.iter().zip(&c))
            .all(|(&d, (&v, &c))| d == 1 || v == c as i64)
    }

    /// This view read broadcast (numpy rules) to `target`.
    pub fn broadcast(&self, s: &Shape, target: &Shape) -> View {
        let (r, t) = (s.rank(), target.rank());
        let strides = (0..t)
            .map(|d| {
                if d + r < t {
                    0
                } else {
                    let sd = d + r - t;
                    if s.dims()[sd] == 1 && target.dims()[d] != 1 {
                        0
                    } else {
                        self.strides[sd]
                    }
                }
            })
            .collect();
        View {
            strides,
            offset: self.offset,
        }
    }
}

/// What kind of kernel a group becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// A constant, uploaded once.
    Constant,
    /// One node lowered on its own (no fusion applies, or fusion is off).
    Single,
    /// A view node whose value must exist in memory: an alias of its base, or a strided copy.
    View,
    /// A chain of elementwise nodes.
    Elementwise,
    /// MatMul or Gemm with a fused epilogue.
    Matmul,
    /// Conv2d with a fused epilogue.
    Conv,
    /// Softmax with a fused prologue and epilogue.
    Softmax,
    /// LayerNorm with a fused prologue and epilogue.
    LayerNorm,
    /// ReduceSum/Mean/Max/Min (f32) with a fused prologue: `mean((x - m)^2)` is one kernel.
    Reduce,
    /// Scaled-dot-product attention.
    Attention,
}

/// Nodes that share one kernel (or, for views and constants, none).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub kind: GroupKind,
    /// Member nodes in topological order; the anchor (or the first node) first.
    pub nodes: Vec<NodeId>,
    /// Values written to memory by the group: read after it or graph outputs.
    pub outputs: Vec<ValueId>,
    /// A value this group reads only element by element at the index it writes, and that
    /// nothing reads after it: the first output is written over it (in place), so the output
    /// costs no memory of its own.
    pub inplace: Option<ValueId>,
}

/// The fused groups of a graph, in the order they run, and the values that are views.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
    /// Values that never exist in memory: each is read as a view of a base value.
    pub views: HashMap<ValueId, (ValueId, View)>,
    /// Strided views of materialized view nodes (their base and layout).
    pub view_of: HashMap<ValueId, (ValueId, View)>,
    pub fused: bool,
}

/// Options of planning.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Fuse (false: one group per node, as the ops are).
    pub fuse: bool,
    /// Storage buffers one kernel may bind (params included).
    pub max_storage_buffers: u32,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fuse: true,
            max_storage_buffers: 8,
        }
    }
}

impl PlanOptions {
    /// Planning within a target's limits.
    pub fn for_target(t: &crate::target::TargetProfile, fuse: bool) -> Self {
        PlanOptions {
            fuse,
            max_storage_buffers: t.max_storage_buffers,
        }
    }
}

pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. } | Op::BitCast { .. }
    )
}

fn is_view_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. } | Op::Transpose { .. } | Op::Slice { .. }
    )
}

/// The view a view node makes of its input's view, when it is strided.
fn compose(op: &Op, in_shape: &Shape, v: &View, out_shape: &Shape) -> Option<View> {
    match op {
        Op::Reshape { .. } => v.is_contiguous(in_shape).then(|| View {
            strides: View::contiguous(out_shape).strides,
            offset: v.offset,
        }),
        Op::Transpose { perm } => Some(View {
            strides: perm.iter().map(|&p| v.strides[p]).collect(),
            offset: v.offset,
        }),
        Op::Slice { axes } if axes.iter().any(|a| a.step < 0) => None,
        Op::Slice { axes } => Some(View {
            strides: axes
                .iter()
                .zip(&v.strides)
                .map(|(a, &s)| a.step * s)
                .collect(),
            offset: v.offset
                + axes
                    .iter()
                    .zip(&v.strides)
                    .map(|(a, &s): (&SliceAxis, &i64)| a.start * s)
                    .sum::<i64>(),
        }),
        _ => None,
    }
}

/// Query rows (batch x heads x queries) below which attention stays matmul + softmax + matmul...
pub const MIN_ATTENTION_ROWS: usize = 256;
/// ... as long as its score matrix is no larger than this...
pub const MAX_UNFUSED_SCORES_BYTES: usize = 4 << 20;
/// ... and it has fewer keys than this. With few rows and many keys (a decode step over a long
/// KV cache) the kernel splits the keys over a workgroup per row instead.
pub const MIN_SPLIT_KEYS: usize = 256;

/// The attention pattern found at a Softmax node.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMatch {
    pub qk: NodeId,
    pub scale: Option<(NodeId, f32)>,
    pub mask: Option<(NodeId, ValueId)>,
    pub softmax: NodeId,
    pub pv: NodeId,
    /// A head-merge Transpose [0, 2, 1, 3] taken in as the store layout.
    pub out_transpose: Option<NodeId>,
}

impl AttentionMatch {
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut v = vec![self.qk];
        v.extend(self.scale.map(|s| s.0));
        v.extend(self.mask.map(|m| m.0));
        v.push(self.softmax);
        v.push(self.pv);
        v.extend(self.out_transpose);
        v
    }
    pub fn output(&self, g: &Graph) -> ValueId {
        g.node(self.out_transpose.unwrap_or(self.pv)).outputs[0]
    }
}

/// The scalar value of a constant of one element.
fn scalar_const(g: &Graph, v: ValueId) -> Option<f32> {
    let p = g.value(v).producer?;
    match &g.node(p).op {
        Op::Constant(t) if t.shape().numel() == 1 => t.to_f64_vec().first().map(|&x| x as f32),
        _ => None,
    }
}

struct Ctx<'a> {
    g: &'a Graph,
    consumers: Vec<Vec<NodeId>>,
    is_output: Vec<bool>,
}

impl Ctx<'_> {
    fn single_consumer(&self, v: ValueId) -> Option<NodeId> {
        (self.consumers[v.index()].len() == 1 && !self.is_output[v.index()])
            .then(|| self.consumers[v.index()][0])
    }
}

fn match_attention(
    c: &Ctx,
    sm: NodeId,
    avail_before: impl Fn(ValueId, NodeId) -> bool,
) -> Option<AttentionMatch> {
    use crate::op::BinaryOp;
    let g = c.g;
    let node = g.node(sm);
    let Op::Softmax { axis } = node.op else {
        return None;
    };
    let x = node.inputs[0];
    let rank = g.shape(x).rank();
    if axis + 1 != rank || !(3..=4).contains(&rank) {
        return None;
    }
    let pv = c.single_consumer(node.outputs[0])?;
    if g.node(pv).op != Op::MatMul || g.node(pv).inputs[0] != node.outputs[0] {
        return None;
    }
    let mut cur = x;
    let mut mask = None;
    let mut scale = None;
    loop {
        let p = g.value(cur).producer?;
        let pn = g.node(p);
        c.single_consumer(cur)?;
        match &pn.op {
            Op::MatMul => {
                let out = g.shape(pn.outputs[0]);
                if g.shape(pn.inputs[0]).rank() != rank || g.shape(pn.inputs[1]).rank() != rank {
                    return None;
                }
                // Head dim and shapes of the second matmul must agree: out = [.., Sq, Sk].
                let v_shape = g.shape(g.node(pv).inputs[1]);
                if v_shape.dims()[rank - 2] != out.dims()[rank - 1] {
                    return None;
                }
                let d = g.shape(pn.inputs[0]).dims()[rank - 1];
                let dv = v_shape.dims()[rank - 1];
                let sk = out.dims()[rank - 1];
                // Empty heads or keys: the unfused ops give zeros where a kernel would divide by 0.
                if d == 0 || dv == 0 || sk == 0 || d > 256 || dv > 256 {
                    return None;
                }
                // The kernel runs one invocation per query row: with few rows (a decode step)
                // it cannot fill the device, while the score matrix (rows x Sk) is small, so the
                // matmul kernels (parallel over keys) do better. Long sequences always fuse, and
                // so do few rows over many keys (a decode step over a long cache), which a
                // device splits over the keys.
                let rows = out.numel() / sk;
                if rows < MIN_ATTENTION_ROWS
                    && rows * sk * 4 <= MAX_UNFUSED_SCORES_BYTES
                    && sk < MIN_SPLIT_KEYS
                {
                    return None;
                }
                if let Some((_, m)) = mask {
                    if !avail_before(m, p) {
                        return None;
                    }
                }
                let out_transpose = c.single_consumer(g.node(pv).outputs[0]).filter(|&t| {
                    rank == 4
                        && g.node(t).op
                            == Op::Transpose {
                                perm: vec![0, 2, 1, 3],
                            }
                });
                return Some(AttentionMatch {
                    qk: p,
                    scale,
                    mask,
                    softmax: sm,
                    pv,
                    out_transpose,
                });
            }
            Op::Binary(b @ (BinaryOp::Mul | BinaryOp::Div)) if scale.is_none() => {
                if g.shape(pn.outputs[0]) != g.shape(x) {
                    return None;
                }
                let (l, r) = (pn.inputs[0], pn.inputs[1]);
                if let Some(s) = scalar_const(g, r) {
                    scale = Some((p, if *b == BinaryOp::Div { 1.0 / s } else { s }));
                    cur = l;
                } else if *b == BinaryOp::Mul {
                    scale = Some((p, scalar_const(g, l)?));
                    cur = r;
                } else {
                    return None;
                }
                if g.shape(cur) != g.shape(x) {
                    return None;
                }
            }
            Op::Binary(BinaryOp::Add) if mask.is_none() && scale.is_none() => {
                let (a, b) = (pn.inputs[0], pn.inputs[1]);
                let a_score = g.value(a).producer.is_some_and(|q| {
                    matches!(g.node(q).op, Op::MatMul | Op::Binary(_)) && g.shape(a) == g.shape(x)
                });
                let (score, m) = if a_score { (a, b) } else { (b, a) };
                if g.shape(score) != g.shape(x) || g.dtype(m) != g.dtype(x) {
                    return None;
                }
                Shape::broadcast(g.shape(m), g.shape(x))?;
                if g.shape(m).rank() > rank {
                    return None;
                }
                mask = Some((p, m));
                cur = score;
            }
            _ => return None,
        }
    }
}

/// Plan the groups of `g`.
pub fn plan(g: &Graph, opts: &PlanOptions) -> Plan {
    let n_values = g.values().len();
    let mut consumers = vec![Vec::new(); n_values];
    for n in g.nodes() {
        for &i in &n.inputs {
            if !consumers[i.index()].contains(&n.id) {
                consumers[i.index()].push(n.id);
            }
        }
    }
    let mut is_output = vec![false; n_values];
    for &o in g.outputs() {
        is_output[o.index()] = true;
    }
    let c = Ctx {
        g,
        consumers,
        is_output,
    };
    if !opts.fuse {
        return unfused(g);
    }
    let mut plan = Plan {
        fused: true,
        ..Default::default()
    };
    // 2. Attention patterns.
    let order: HashMap<NodeId, usize> = g
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id, i))
        .collect();
    let avail = |v: ValueId, before: NodeId| -> bool {
        match g.value(v).producer {
            None => true,
            Some(p) => matches!(g.node(p).op, Op::Constant(_)) || order[&p] < order[&before],
        }
    };
    let mut attention: HashMap<NodeId, AttentionMatch> = HashMap::new();
    let mut in_attention: HashSet<NodeId> = HashSet::new();
    for n in g.nodes() {
        if matches!(n.op, Op::Softmax { .. }) {
            if let Some(m) = match_attention(&c, n.id, avail) {
                in_attention.extend(m.nodes());
                attention.insert(m.qk, m);
            }
        }
    }
    // 1. Strided views of view nodes, composed down to a base that is in memory.
    for n in g.nodes() {
        if !is_view_op(&n.op) || in_attention.contains(&n.id) {
            continue;
        }
        let x = n.inputs[0];
        let (base, v) = plan
            .view_of
            .get(&x)
            .cloned()
            .unwrap_or_else(|| (x, View::contiguous(g.shape(x))));
        if let Some(nv) = compose(&n.op, g.shape(x), &v, g.shape(n.outputs[0])) {
            plan.view_of.insert(n.outputs[0], (base, nv));
        }
    }
    // 3. Which view values stay virtual: every reader reads strided.
    let reads_views = |nid: NodeId, v: ValueId| -> bool {
        let n = g.node(nid);
        if in_attention.contains(&nid) {
            // Q, K, V operands of attention, and its mask.
            return !matches!(n.op, Op::Softmax { .. } | Op::Transpose { .. });
        }
        match &n.op {
            op if is_elementwise(op) => true,
            Op::MatMul => true,
            Op::Softmax { .. } | Op::LayerNorm { .. } => {
                n.inputs[0] == v && !n.inputs[1..].contains(&v)
            }
            Op::Reduce { .. } => g.dtype(v).is_float(),
            _ => false,
        }
    };
    let mut virtual_views: HashSet<ValueId> = HashSet::new();
    for n in g.nodes().iter().rev() {
        if !is_view_op(&n.op) || in_attention.contains(&n.id) {
            continue;
        }
        let o = n.outputs[0];
        if !plan.view_of.contains_key(&o) || c.is_output[o.index()] {
            continue;
        }
        let ok = c.consumers[o.index()].iter().all(|&k| {
            let kn = g.node(k);
            if is_view_op(&kn.op) && !in_attention.contains(&k) {
                virtual_views.contains(&kn.outputs[0])
            } else {
                reads_views(k, o)
            }
        });
        if ok {
            virtual_views.insert(o);
        }
    }
    for &v in &virtual_views {
        plan.views.insert(v, plan.view_of[&v].clone());
    }
    // 4. Groups, in topological order.
    let mut assigned: HashSet<NodeId> = HashSet::new();
    let mut slots: Vec<Option<Group>> = Vec::new();
    let mut group_of: HashMap<NodeId, usize> = HashMap::new();
    let budget = opts.max_storage_buffers.max(4) as usize;
    for n in g.nodes() {
        if assigned.contains(&n.id) {
            continue;
        }
        let mut members = vec![n.id];
        let kind = match &n.op {
            Op::Constant(_) => GroupKind::Constant,
            op if is_view_op(op) => {
                if virtual_views.contains(&n.outputs[0]) {
                    assigned.insert(n.id);
                    continue;
                }
                if plan.view_of.contains_key(&n.outputs[0]) {
                    GroupKind::View
                } else {
                    GroupKind::Single
                }
            }
            Op::MatMul if attention.contains_key(&n.id) => {
                members = attention[&n.id].nodes();
                GroupKind::Attention
            }
            Op::MatMul | Op::Gemm(_) | Op::MatMulInteger => GroupKind::Matmul,
            Op::Conv2d(_) | Op::ConvInteger(_) => GroupKind::Conv,
            Op::Softmax { .. } => GroupKind::Softmax,
            Op::LayerNorm { .. } => GroupKind::LayerNorm,
            Op::Reduce { .. } if g.dtype(n.inputs[0]).is_float() => GroupKind::Reduce,
            op if is_elementwise(op) => GroupKind::Elementwise,
            _ => GroupKind::Single,
        };
        // A row reduction takes the elementwise group that only feeds it as its prologue.
        if matches!(
            kind,
            GroupKind::Softmax | GroupKind::LayerNorm | GroupKind::Reduce
        ) {
            let x = n.inputs[0];
            if let Some(p) = g.value(x).producer {
                if let Some(&gi) = group_of.get(&p) {
                    let pg = slots[gi].as_ref();
                    let take = pg.is_some_and(|pg| {
                        pg.kind == GroupKind::Elementwise
                            && pg.outputs == vec![x]
                            && c.single_consumer(x) == Some(n.id)
                            && (kind == GroupKind::Reduce || g.shape(x) == g.shape(n.outputs[0]))
                    });
                    if take {
                        let pg = slots[gi].take().unwrap_or_else(|| unreachable!());
                        let mut pro = pg.nodes;
                        pro.push(n.id);
                        members = pro;
                    }
                }
            }
        }
        let anchor_epilogue = matches!(
            kind,
            GroupKind::Matmul
                | GroupKind::Conv
                | GroupKind::Softmax
                | GroupKind::LayerNorm
                | GroupKind::Attention
        );
        let mut group = Group {
            kind,
            nodes: members.clone(),
            outputs: Vec::new(),
            inplace: None,
        };
        if anchor_epilogue || kind == GroupKind::Elementwise {
            let tail = match kind {
                GroupKind::Attention => attention[&n.id].output(g),
                _ => g.node(*members.last().unwrap_or(&n.id)).outputs[0],
            };
            let shape = g.shape(tail).clone();
            if kind != GroupKind::Attention {
                absorb(
                    &c,
                    &plan,
                    &mut group,
                    &shape,
                    n.id,
                    &order,
                    &assigned,
                    budget,
                    kind != GroupKind::Elementwise,
                );
            }
        }
        group.outputs = group_outputs(&c, &group.nodes);
        if kind == GroupKind::Attention && group.outputs.len() != 1 {
            // Something reads inside the pattern after all: no attention kernel.
            group = Group {
                kind: GroupKind::Single,
                nodes: vec![n.id],
                outputs: n.outputs.clone(),
                inplace: None,
            };
        }
        group.inplace = inplace_source(&c, &plan, &group);
        for &m in &group.nodes {
            assigned.insert(m);
            group_of.insert(m, slots.len());
        }
        slots.push(Some(group));
    }
    plan.groups = slots.into_iter().flatten().collect();
    plan
}

/// The value a group may write its first output over: read only by the group's elementwise
/// nodes, directly (not through a view, not broadcast), with the output's shape and storage type;
/// made by a kernel (so it owns its buffer), not a graph input, constant or output.
fn inplace_source(c: &Ctx, plan: &Plan, group: &Group) -> Option<ValueId> {
    let g = c.g;
    if !matches!(
        group.kind,
        GroupKind::Elementwise | GroupKind::Matmul | GroupKind::Conv
    ) {
        return None;
    }
    let out = *group.outputs.first()?;
    let first_chain = usize::from(group.kind != GroupKind::Elementwise);
    let chain: HashSet<NodeId> = group.nodes[first_chain..].iter().copied().collect();
    let made: HashSet<ValueId> = group
        .nodes
        .iter()
        .flat_map(|&m| g.node(m).outputs.clone())
        .collect();
    let mut cands: Vec<ValueId> = Vec::new();
    for &m in &group.nodes[first_chain..] {
        for &i in &g.node(m).inputs {
            if !made.contains(&i) && !cands.contains(&i) {
                cands.push(i);
            }
        }
    }
    cands.into_iter().find(|&v| {
        let Some(p) = g.value(v).producer else {
            return false;
        };
        let pop = &g.node(p).op;
        !matches!(pop, Op::Constant(_))
            && !is_view_op(pop)
            && !plan.views.contains_key(&v)
            && !c.is_output[v.index()]
            && g.shape(v) == g.shape(out)
            && Elem::of(g.dtype(v)) == Elem::of(g.dtype(out))
            // Read by this group's elementwise nodes only (not by its matmul or conv).
            && c.consumers[v.index()].iter().all(|k| chain.contains(k))
    })
}

/// Values of `nodes` read outside them or returned by the graph.
fn group_outputs(c: &Ctx, nodes: &[NodeId]) -> Vec<ValueId> {
    let set: HashSet<NodeId> = nodes.iter().copied().collect();
    let mut outs = Vec::new();
    for &m in nodes {
        for &o in &c.g.node(m).outputs {
            let escapes =
                c.is_output[o.index()] || c.consumers[o.index()].iter().any(|k| !set.contains(k));
            if escapes {
                outs.push(o);
            }
        }
    }
    outs
}

/// The distinct memory values a set of nodes reads from outside (views resolved to their bases).
pub fn external_inputs(
    g: &Graph,
    views: &HashMap<ValueId, (ValueId, View)>,
    nodes: &[NodeId],
) -> Vec<ValueId> {
    let made: HashSet<ValueId> = nodes
        .iter()
        .flat_map(|&m| g.node(m).outputs.clone())
        .collect();
    let mut ext = Vec::new();
    for &m in nodes {
        for &i in &g.node(m).inputs {
            if made.contains(&i) {
                continue;
            }
            let base = views.get(&i).map(|v| v.0).unwrap_or(i);
            if !ext.contains(&base) {
                ext.push(base);
            }
        }
    }
    ext
}

/// Grow `group` with the elementwise nodes that follow it: same output shape, every other input
/// computed before the group starts, within the buffer budget. Anchors keep one output.
#[allow(clippy::too_many_arguments)]
fn absorb(
    c: &Ctx,
    plan: &Plan,
    group: &mut Group,
    shape: &Shape,
    first: NodeId,
    order: &HashMap<NodeId, usize>,
    assigned: &HashSet<NodeId>,
    budget: usize,
    single_output: bool,
) {
    let g = c.g;
    let start = order[&first];
    let avail = |v: ValueId| -> bool {
        let base = plan.views.get(&v).map(|x| x.0).unwrap_or(v);
        match g.value(base).producer {
            None => true,
            Some(p) => matches!(g.node(p).op, Op::Constant(_)) || order[&p] < start,
        }
    };
    let mut best = group.nodes.clone();
    let mut cur = group.nodes.clone();
    loop {
        let made: HashSet<ValueId> = cur
            .iter()
            .flat_map(|&m| g.node(m).outputs.clone())
            .collect();
        let set: HashSet<NodeId> = cur.iter().copied().collect();
        let mut cands: Vec<NodeId> = made
            .iter()
            .flat_map(|v| c.consumers[v.index()].iter().copied())
            .filter(|k| !set.contains(k) && !assigned.contains(k))
            .collect();
        cands.sort_by_key(|k| order[k]);
        cands.dedup();
        let next = cands.into_iter().find(|&k| {
            let kn = g.node(k);
            is_elementwise(&kn.op)
                && g.shape(kn.outputs[0]) == shape
                && kn.inputs.iter().all(|i| made.contains(i) || avail(*i))
        });
        let Some(k) = next else { break };
        cur.push(k);
        let ext = external_inputs(g, &plan.views, &cur).len();
        let outs = group_outputs(c, &cur);
        // Inputs, outputs, params and one spare (a bias slot bound to another buffer).
        if ext + outs.len() + 2 > budget {
            break;
        }
        let last_out = g.node(k).outputs[0];
        // Anchors store f32, but for the integer products, whose store is typed by their output
        // (a requantisation ends in an 8-bit cast).
        let typed_store = matches!(g.node(first).op, Op::MatMulInteger | Op::ConvInteger(_));
        let f32_out = g.dtype(last_out).is_float() || typed_store;
        if !single_output || (outs == vec![last_out] && f32_out) {
            best = cur.clone();
        }
    }
    group.nodes = best;
}

/// One group per node: the ops as they are.
fn unfused(g: &Graph) -> Plan {
    let groups = g
        .nodes()
        .iter()
        .map(|n| Group {
            kind: match n.op {
                Op::Constant(_) => GroupKind::Constant,
                // The matmul group lowers with what the graph knows (a constant B as a texture).
                Op::MatMul | Op::Gemm(_) => GroupKind::Matmul,
                _ => GroupKind::Single,
            },
            nodes: vec![n.id],
            outputs: n.outputs.clone(),
            inplace: None,
        })
        .collect();
    Plan {
        groups,
        fused: false,
        ..Default::default()
    }
}
