//! The generator: one WGSL module per fused group.
//!
//! An elementwise chain becomes straight-line code over one flat index; an anchor (matmul, conv,
//! softmax, layer norm) gets its chain spliced into its template's `epilogue` (and `load_x`)
//! functions; attention has its own template. Every external input is read through a strided,
//! broadcast view described in `params` (`ev_off`), with direct indexing where the view is the
//! output's own layout and a modulo where it is a broadcast of a trailing block (a bias).

use crate::attention_ubo::{attention_ubo_kernel, kv_layout, AttentionUbo, Strides};
use crate::loops::lp;
use crate::lower::{
    binary_expr, cast_expr, conv2d_kernel, kernel, layernorm_kernel, lower, matmul_kernel_spliced,
    matmul_problem_views, module, plain_splice, read_view, softmax_kernel, unary_expr,
    LowerOptions, Lowered, MatmulProblem, Splice,
};
use crate::{Buf, Elem, Error, Kernel};
use sfumato_core::op::BinaryOp;
use sfumato_core::plan::{Group, GroupKind, Plan, View};
use sfumato_core::{DType, Graph, NodeId, Op, Shape, ValueId};
use std::collections::HashMap;
use std::fmt::Write;

const FUSED_COMMON: &str = include_str!("templates/fused_common.wgsl");
const FUSED_ELEMENTWISE: &str = include_str!("templates/fused_elementwise.wgsl");
const ATTENTION: &str = include_str!("templates/attention.wgsl");
const ATTENTION_VEC4: &str = include_str!("templates/attention_vec4.wgsl");
const ATTENTION_STRIDED: &str = include_str!("templates/attention_strided.wgsl");

/// A group lowered for the device: `Buf::In(i)` binds `inputs[i]`, `Buf::Out(j)` `outputs[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupKernels {
    pub lowered: Lowered,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The member ops joined by `+`, e.g. `MatMul+Add+Gelu`.
    pub label: String,
    /// Output 0 is written over this value's buffer (read in the kernel through output 0).
    pub inplace: Option<ValueId>,
}

/// The ops of a group joined by `+`.
pub fn group_label(g: &Graph, group: &Group) -> String {
    group
        .nodes
        .iter()
        .map(|&n| g.node(n).op.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// The matmul problem of a Matmul group (for the device's autotuner), with its operand views.
pub fn group_matmul_problem(g: &Graph, plan: &Plan, group: &Group) -> Option<MatmulProblem> {
    let anchor = g.node(*group.nodes.first()?);
    if let Op::Conv2d(c) = &anchor.op {
        return crate::lower::conv1x1_problem(
            c,
            g.shape(anchor.inputs[0]).dims(),
            g.shape(anchor.inputs[1]).dims(),
            anchor.inputs.len() == 3,
        );
    }
    if !matches!(anchor.op, Op::MatMul | Op::Gemm(_)) {
        return None;
    }
    if group.kind == GroupKind::Attention {
        return None;
    }
    let (ins, outs) = node_io(g, anchor);
    let views: Vec<View> = anchor
        .inputs
        .iter()
        .map(|&i| view_of(g, plan, i).1)
        .collect();
    let mut p = matmul_problem_views(&anchor.op, &ins, &views, &outs)?;
    // B read whole, as stored, from a constant: the device may hold it as a texture.
    let (b_base, _) = view_of(g, plan, anchor.inputs[1]);
    p.b_const = g.dtype(b_base) == DType::F32
        && g.shape(b_base).numel() == p.k * p.n
        && g.value(b_base)
            .producer
            .is_some_and(|n| matches!(g.node(n).op, Op::Constant(_)));
    Some(p)
}

/// Dtypes and shapes of a node's inputs and outputs, as [`lower`] takes them.
type Io<'a> = Vec<(DType, &'a Shape)>;

fn node_io<'a>(g: &'a Graph, n: &sfumato_core::Node) -> (Io<'a>, Io<'a>) {
    let info = |vs: &[ValueId]| vs.iter().map(|&v| (g.dtype(v), g.shape(v))).collect();
    (info(&n.inputs), info(&n.outputs))
}

/// The base value and view a value is read through.
fn view_of(g: &Graph, plan: &Plan, v: ValueId) -> (ValueId, View) {
    plan.views
        .get(&v)
        .cloned()
        .unwrap_or_else(|| (v, View::contiguous(g.shape(v))))
}

/// Lower one group of a plan. No kernel it returns passes more loop ends per invocation than
/// `opts.target.loop_budget` allows ([`crate::loops`]): a group that cannot be kept under it is an
/// [`Error::LoopBudget`].
pub fn generate(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let gk = generate_group(g, plan, group, opts)?;
    crate::loops::check_all(&gk.lowered, opts.target.loop_budget)?;
    Ok(gk)
}

fn generate_group(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let label = group_label(g, group);
    let first = g.node(group.nodes[0]);
    let single = |lowered: Lowered| GroupKernels {
        lowered,
        inputs: first.inputs.clone(),
        outputs: first.outputs.clone(),
        label: label.clone(),
        inplace: None,
    };
    match group.kind {
        GroupKind::Constant | GroupKind::Single => {
            let (ins, outs) = node_io(g, first);
            Ok(single(lower(&first.op, &ins, &outs, opts)?))
        }
        GroupKind::View => {
            let out = first.outputs[0];
            let (base, view) = plan
                .view_of
                .get(&out)
                .cloned()
                .ok_or_else(|| Error::Unsupported("a view group without a view".into()))?;
            let shape = g.shape(out);
            let lowered = if view.offset == 0
                && view.is_contiguous(shape)
                && g.shape(base).numel() == shape.numel()
            {
                Lowered::Alias
            } else {
                Lowered::Kernels(vec![read_view(shape, view, g.dtype(out), opts)?])
            };
            Ok(GroupKernels {
                lowered,
                inputs: vec![base],
                outputs: vec![out],
                label,
                inplace: None,
            })
        }
        GroupKind::Elementwise => elementwise(g, plan, group, opts, label),
        GroupKind::Matmul => {
            let p = group_matmul_problem(g, plan, group)
                .ok_or_else(|| Error::Unsupported("matmul shapes".into()))?;
            let inputs: Vec<ValueId> = first
                .inputs
                .iter()
                .map(|&i| view_of(g, plan, i).0)
                .collect();
            matmul_group(g, plan, group, label, inputs, &p, opts)
        }
        GroupKind::Conv => {
            let Op::Conv2d(c) = &first.op else {
                return Err(Error::Unsupported("conv group without a conv".into()));
            };
            if let Some(p) = group_matmul_problem(g, plan, group) {
                // Pointwise: a batched matmul (A = weight, B = image) with the same epilogue.
                let mut inputs = vec![first.inputs[1], first.inputs[0]];
                inputs.extend(first.inputs.get(2));
                return matmul_group(g, plan, group, label, inputs, &p, opts);
            }
            let bias = Buf::In(if first.inputs.len() == 3 { 2 } else { 1 });
            let x = g.shape(first.inputs[0]).dims();
            let w = g.shape(first.inputs[1]).dims();
            let out_shape = g.shape(first.outputs[0]);
            let conv = if c.groups == 1 {
                crate::lower::conv2d_gemm_kernel
            } else {
                conv2d_kernel
            };
            let has_bias = first.inputs.len() == 3;
            spliced(g, plan, group, label, first.inputs.clone(), 4, None, |sp| {
                conv(c, x, w, bias, has_bias, out_shape, opts, sp)
            })
        }
        GroupKind::Softmax | GroupKind::LayerNorm | GroupKind::Reduce => {
            let ai = group
                .nodes
                .iter()
                .position(|&n| {
                    matches!(
                        g.node(n).op,
                        Op::Softmax { .. } | Op::LayerNorm { .. } | Op::Reduce { .. }
                    )
                })
                .ok_or_else(|| Error::Unsupported("row reduction group without its op".into()))?;
            let anchor = g.node(group.nodes[ai]);
            let x = anchor.inputs[0];
            let shape = g.shape(anchor.outputs[0]);
            match &anchor.op {
                Op::Softmax { axis } => {
                    spliced(g, plan, group, label, Vec::new(), 2, Some(ai), |sp| {
                        softmax_kernel(*axis, shape, opts, sp).map(|k| vec![k])
                    })
                }
                Op::LayerNorm { axis, epsilon } => {
                    let has_bias = anchor.inputs.len() == 3;
                    let sb = [Buf::In(0), Buf::In(if has_bias { 1 } else { 0 })];
                    let inputs = anchor.inputs[1..].to_vec();
                    spliced(g, plan, group, label, inputs, 4, Some(ai), |sp| {
                        layernorm_kernel(*axis, *epsilon, sb, has_bias, shape, opts, sp)
                            .map(|k| vec![k])
                    })
                }
                Op::Reduce { op, axes, .. } => {
                    spliced(g, plan, group, label, Vec::new(), 2, Some(ai), |sp| {
                        crate::lower::reduce_kernel(
                            *op,
                            g.dtype(x),
                            g.shape(x).dims(),
                            axes,
                            opts,
                            sp,
                        )
                        .map(|k| vec![k])
                    })
                }
                _ => unreachable!("checked above"),
            }
        }
        GroupKind::Attention => attention(g, plan, group, opts, label),
    }
}

/// A matmul group's kernels: the chosen variant, or where its epilogue takes it over the loop
/// budget, the first other candidate that stays under it.
fn matmul_group(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    label: String,
    inputs: Vec<ValueId>,
    p: &crate::MatmulProblem,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let mut over = None;
    for v in crate::lower::variant_order(p, opts) {
        let r = spliced(
            g,
            plan,
            group,
            label.clone(),
            inputs.clone(),
            4,
            None,
            |sp| matmul_kernel_spliced(p, v, opts, sp),
        );
        match r {
            Err(e @ Error::LoopBudget(_)) => {
                over.get_or_insert(e);
            }
            r => return r,
        }
    }
    Err(over.unwrap_or_else(|| crate::lower::no_matmul_variant(p, opts.target.loop_budget)))
}

/// An anchor group's kernel: `build` makes it with the group's splice (`anchor_splice`, generated
/// once, when the builder knows where its params end); the group binds `inputs` (the anchor's
/// fixed operands) plus whatever the splice reads.
#[allow(clippy::too_many_arguments)]
fn spliced(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    label: String,
    inputs: Vec<ValueId>,
    first_slot: u32,
    anchor: Option<usize>,
    build: impl FnOnce(crate::lower::SpliceFn) -> Result<Vec<Kernel>, Error>,
) -> Result<GroupKernels, Error> {
    let bound = std::cell::RefCell::new(None);
    let ks = build(&|ev| {
        let mut ins = inputs.clone();
        let sp = anchor_splice(g, plan, group, &mut ins, ev, first_slot, anchor)?;
        *bound.borrow_mut() = Some(ins);
        Ok(sp)
    })?;
    let inputs = bound
        .into_inner()
        .ok_or_else(|| Error::Unsupported(format!("{label}: the kernel took no splice")))?;
    Ok(GroupKernels {
        lowered: Lowered::Kernels(ks),
        inputs,
        outputs: group.outputs.clone(),
        label,
        inplace: group.inplace,
    })
}

/// Reads of external values at a flat index of `shape`, with the bindings they need.
struct Reads<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    shape: Shape,
    /// The group's inputs (bases); `Buf::In` indexes this.
    inputs: &'a mut Vec<ValueId>,
    /// Next binding number for a new read binding, and the bindings made, in order.
    next_slot: u32,
    skip_slots: Vec<u32>,
    bindings: Vec<(u32, Buf)>,
    /// Declared read bindings: input index -> variable name.
    vars: HashMap<usize, String>,
    decls: String,
    /// The view block, relative to `EV`: [rank, dims.., per read: ...].
    block: Vec<u32>,
    funcs: String,
    n_reads: usize,
    /// Read through `out0` (the group writes its first output over it).
    inplace: Option<ValueId>,
    /// A matmul's epilogue: its `N`. The matmul's store sets `ep_col` to the column, so a read
    /// broadcast over rows of `N` elements (a bias) indexes by it rather than by `i % N` (an
    /// integer division per element, with no SIMD form on CPU adapters).
    col: Option<usize>,
    /// Private copies of params that `ep_init` fills (matmul epilogues only), and its body.
    hoisted: String,
    ep_init: String,
    /// Loop ends of one call of the code made so far: view walks (`ev_off`) and `pow_u`.
    trips: u64,
}

impl<'a> Reads<'a> {
    fn new(
        g: &'a Graph,
        plan: &'a Plan,
        shape: Shape,
        inputs: &'a mut Vec<ValueId>,
        first_slot: u32,
        skip_slots: Vec<u32>,
    ) -> Self {
        let mut block = vec![shape.rank() as u32];
        block.extend(shape.dims().iter().map(|&d| d as u32));
        Reads {
            g,
            plan,
            shape,
            inputs,
            next_slot: first_slot,
            skip_slots,
            bindings: Vec::new(),
            vars: HashMap::new(),
            decls: String::new(),
            block,
            funcs: String::new(),
            n_reads: 0,
            inplace: None,
            col: None,
            hoisted: String::new(),
            ep_init: String::new(),
            trips: 0,
        }
    }

    fn slot(&mut self) -> u32 {
        while self.skip_slots.contains(&self.next_slot) {
            self.next_slot += 1;
        }
        let s = self.next_slot;
        self.next_slot += 1;
        s
    }

    fn var(&mut self, base: ValueId) -> String {
        let idx = match self.inputs.iter().position(|&b| b == base) {
            Some(i) => i,
            None => {
                self.inputs.push(base);
                self.inputs.len() - 1
            }
        };
        if let Some(v) = self.vars.get(&idx) {
            return v.clone();
        }
        let slot = self.slot();
        let name = format!("in{idx}");
        let _ = writeln!(
            self.decls,
            "@group(0) @binding({slot}) var<storage, read> {name}: array<{}>;",
            Elem::of(self.g.dtype(base)).wgsl()
        );
        self.bindings.push((slot, Buf::In(idx)));
        self.vars.insert(idx, name.clone());
        name
    }

    /// A WGSL expression reading `v` (broadcast to the index space) at flat index `idx`.
    fn read(&mut self, v: ValueId, idx: &str) -> String {
        if self.inplace == Some(v) {
            // Same shape and layout as the output: this invocation's element, before it stores.
            self.n_reads += 1;
            return format!("out0[{idx}]");
        }
        let (base, view) = view_of(self.g, self.plan, v);
        let bv = view.broadcast(self.g.shape(v), &self.shape);
        let name = self.var(base);
        self.n_reads += 1;
        let dims = self.shape.dims().to_vec();
        let contig = View::contiguous(&self.shape).strides;
        if bv.offset == 0 && (0..dims.len()).all(|d| dims[d] == 1 || bv.strides[d] == contig[d]) {
            return format!("{name}[{idx}]");
        }
        // A broadcast of a trailing contiguous block (a bias, a row): offset + i % span.
        let d0 = (0..=dims.len())
            .rev()
            .take_while(|&d| d == dims.len() || dims[d] == 1 || bv.strides[d] == contig[d])
            .last()
            .unwrap_or(dims.len());
        if (0..d0).all(|d| dims[d] == 1 || bv.strides[d] == 0) {
            let span: usize = dims[d0..].iter().product();
            let r = self.block.len();
            self.block.push(bv.offset as i32 as u32);
            self.block.push(span.max(1) as u32);
            if self.col.is_some() {
                // A matmul's: the offset (and span) read once, in `ep_init`.
                for p in [r, r + 1] {
                    let _ = writeln!(self.hoisted, "var<private> ev_p{p}: u32;");
                    let _ = writeln!(self.ep_init, "    ev_p{p} = params[EV + {p}u];");
                }
                if self.col == Some(span) {
                    return format!("{name}[ev_p{r} + ep_col]");
                }
                return format!("{name}[ev_p{r} + {idx} % ev_p{}]", r + 1);
            }
            return format!(
                "{name}[params[EV + {r}u] + {idx} % params[EV + {}u]]",
                r + 1
            );
        }
        let r = self.block.len();
        self.trips += crate::loops::rank_walk(dims.len());
        self.block
            .extend(bv.strides.iter().map(|&s| s as i32 as u32));
        self.block.push(bv.offset as i32 as u32);
        format!("{name}[ev_off({idx}, EV + {r}u)]")
    }

    /// Straight-line code for `nodes`; `known` maps values already in variables.
    fn chain(
        &mut self,
        nodes: &[NodeId],
        known: &mut HashMap<ValueId, String>,
        idx: &str,
        out: &mut String,
    ) -> Result<(), Error> {
        for &nid in nodes {
            let node = self.g.node(nid);
            let mut args = Vec::new();
            for &i in &node.inputs {
                let a = match known.get(&i) {
                    Some(n) => n.clone(),
                    None => {
                        let e = self.read(i, idx);
                        let name = format!("r{}", self.n_reads);
                        let _ = writeln!(out, "    let {name} = {e};");
                        name
                    }
                };
                args.push(a);
            }
            let o = node.outputs[0];
            // Not `f{n}`: node 16 or 32 would declare a function named like a type (`f32`).
            let fname = format!("node_{}", nid.0);
            let func = node_fn(self.g, node, &fname)?;
            self.trips += crate::lower::expr_trips(&func);
            self.funcs.push_str(&func);
            let _ = writeln!(out, "    let v{} = {fname}({});", o.0, args.join(", "));
            known.insert(o, format!("v{}", o.0));
        }
        Ok(())
    }

    /// Declarations: read bindings, the view block base, ev_off and the node functions.
    fn finish(&self, ev: usize) -> String {
        format!(
            "{}const EV: u32 = {ev}u;\n{}\n{}",
            self.decls, FUSED_COMMON, self.funcs
        )
    }
}

/// A WGSL function computing one elementwise node.
fn node_fn(g: &Graph, node: &sfumato_core::Node, fname: &str) -> Result<String, Error> {
    let ty = |v: ValueId| Elem::of(g.dtype(v)).wgsl();
    let out = ty(node.outputs[0]);
    let in0 = node.inputs[0];
    Ok(match &node.op {
        Op::Unary(u) => format!(
            "fn {fname}(x: {}) -> {out} {{\n    return {};\n}}\n",
            ty(in0),
            unary_expr(*u, g.dtype(in0))?
        ),
        Op::Cast { to, saturate } => format!(
            "fn {fname}(x: {}) -> {out} {{\n    return {};\n}}\n",
            ty(in0),
            cast_expr(g.dtype(in0), *to, *saturate)
        ),
        Op::Binary(b) => format!(
            "fn {fname}(a: {t}, b: {t}) -> {out} {{\n    return {};\n}}\n",
            binary_expr(*b, g.dtype(in0)),
            t = ty(in0)
        ),
        Op::Where => format!(
            "fn {fname}(c: u32, a: {out}, b: {out}) -> {out} {{\n    return select(b, a, c != 0u);\n}}\n"
        ),
        other => {
            return Err(Error::Unsupported(format!(
                "{} is not elementwise",
                other.name()
            )))
        }
    })
}

/// The splice of an anchor group: its epilogue (nodes after the anchor) and, for row reductions
/// (`anchor` = position of the reduction in the group), its prologue (nodes before).
fn anchor_splice(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    inputs: &mut Vec<ValueId>,
    ev: usize,
    first_slot: u32,
    anchor: Option<usize>,
) -> Result<Splice, Error> {
    let ai = anchor.unwrap_or(0);
    let a = g.node(group.nodes[ai]);
    let out = a.outputs[0];
    // Row reductions index their input (the same shape as the output, except for Reduce).
    let shape = if anchor.is_some() {
        g.shape(a.inputs[0]).clone()
    } else {
        g.shape(out).clone()
    };
    let (pro, epi) = (&group.nodes[..ai], &group.nodes[ai + 1..]);
    let x_is_view = anchor.is_some() && plan.views.contains_key(&a.inputs[0]);
    if pro.is_empty() && epi.is_empty() && !x_is_view {
        if anchor.is_some() {
            // Row reductions: the plain splice reads binding 0, the input.
            let x = a.inputs[0];
            let idx = match inputs.iter().position(|&b| b == x) {
                Some(i) => i,
                None => {
                    inputs.push(x);
                    inputs.len() - 1
                }
            };
            let mut sp = plain_splice(true);
            sp.first = Buf::In(idx);
            return Ok(sp);
        }
        return Ok(plain_splice(false));
    }
    // Binding 0 is the first read of a row reduction; its other fixed bindings are skipped.
    let fixed: Vec<u32> = (0..first_slot).collect();
    let row = anchor.is_some();
    let mut r = Reads::new(
        g,
        plan,
        shape,
        inputs,
        if row { 0 } else { first_slot },
        if row { fixed[1..].to_vec() } else { Vec::new() },
    );
    r.inplace = group.inplace;
    if matches!(a.op, Op::MatMul | Op::Gemm(_)) && !row {
        // Every matmul variant stores through `matmul_common`'s `store`, which sets `ep_col`.
        let b_rank = g.shape(a.inputs[1]).rank();
        r.col = Some(if b_rank >= 2 {
            r.shape.dims().last().copied().unwrap_or(1)
        } else {
            1
        });
    }
    let mut extra_body = String::new();
    if row {
        let x = a.inputs[0];
        let mut known = HashMap::new();
        let mut body = String::new();
        r.chain(pro, &mut known, "i", &mut body)?;
        let ret = match known.get(&x) {
            Some(v) => v.clone(),
            None => r.read(x, "i"),
        };
        let _ = write!(
            extra_body,
            "fn load_x(i: u32) -> f32 {{\n{body}    return {ret};\n}}\n"
        );
    }
    let mut known = HashMap::from([(out, "v".to_string())]);
    let mut body = String::new();
    r.chain(epi, &mut known, "i", &mut body)?;
    let tail = epi
        .last()
        .map(|&n| format!("v{}", g.node(n).outputs[0].0))
        .unwrap_or_else(|| "v".into());
    let _ = write!(
        extra_body,
        "{}fn epilogue(i: u32, v: f32) {{\n{body}    out0[i] = {tail};\n}}\nfn ep_init() {{\n{}}}\n",
        r.hoisted, r.ep_init
    );
    let mut bindings = r.bindings.clone();
    bindings.sort_by_key(|b| b.0);
    let (first, rest): (Buf, Vec<Buf>) = if row {
        let f = bindings
            .iter()
            .find(|b| b.0 == 0)
            .map(|b| b.1)
            .ok_or_else(|| Error::Unsupported("row reduction without an input".into()))?;
        (
            f,
            bindings.iter().filter(|b| b.0 != 0).map(|b| b.1).collect(),
        )
    } else {
        (Buf::In(0), bindings.iter().map(|b| b.1).collect())
    };
    Ok(Splice {
        extra: r.finish(ev) + &extra_body,
        params: r.block.clone(),
        first,
        bindings: rest,
        trips: r.trips,
    })
}

fn elementwise(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
    label: String,
) -> Result<GroupKernels, Error> {
    let shape = g.shape(g.node(group.nodes[0]).outputs[0]).clone();
    let mut inputs = Vec::new();
    let mut r = Reads::new(g, plan, shape.clone(), &mut inputs, 0, Vec::new());
    r.inplace = group.inplace;
    let mut known = HashMap::new();
    let mut body = String::new();
    r.chain(&group.nodes, &mut known, "i", &mut body)?;
    let mut decls = String::new();
    let mut bindings: Vec<Buf> = {
        let mut b = r.bindings.clone();
        b.sort_by_key(|x| x.0);
        b.into_iter().map(|x| x.1).collect()
    };
    for (j, &o) in group.outputs.iter().enumerate() {
        let slot = bindings.len();
        let _ = writeln!(
            decls,
            "@group(0) @binding({slot}) var<storage, read_write> out{j}: array<{}>;",
            Elem::of(g.dtype(o)).wgsl()
        );
        let v = known
            .get(&o)
            .cloned()
            .ok_or_else(|| Error::Unsupported("a group output not computed by it".into()))?;
        let _ = writeln!(body, "    out{j}[i] = {v};");
        bindings.push(Buf::Out(j));
    }
    let _ = writeln!(
        decls,
        "@group(0) @binding({}) var<storage, read> params: array<u32>;",
        bindings.len()
    );
    let mut params = vec![shape.numel() as u32];
    let ev = params.len();
    params.extend(&r.block);
    let all = decls + &r.finish(ev);
    let vals = [("decls", all), ("body", body.trim_end().to_string())];
    let name = "fused_elementwise";
    let k = kernel(
        name,
        FUSED_ELEMENTWISE,
        &vals,
        bindings,
        params,
        shape.numel(),
        r.trips,
        opts,
    )?;
    Ok(GroupKernels {
        lowered: Lowered::Kernels(vec![k]),
        inputs,
        outputs: group.outputs.clone(),
        label,
        inplace: group.inplace,
    })
}

/// Query rows per invocation and invocations per workgroup of the attention kernel. Each key
/// and value row an invocation loads serves all its query rows, so more rows per invocation
/// means fewer loads (which dominate on SIMD-on-CPU adapters such as lavapipe); it stops where
/// fewer than 256 invocations would be left to spread over the cores, where a head has fewer
/// query rows, and where an invocation's rows would hold many registers (4 rows up to a head
/// dim of 64, 2 up to 128: an invocation keeps `r * (d + dv)` floats of query and output rows).
fn attention_blocking(rows: usize, sq: usize, d: usize, dv: usize) -> (usize, usize) {
    let r = [4, 2]
        .into_iter()
        .find(|&r| rows / r >= 256 && r <= sq && r * d.max(dv) <= 256)
        .unwrap_or(1);
    let wg = sq.div_ceil(r).next_power_of_two().clamp(8, 64);
    (r, wg)
}

/// The attention kernel of a group `[QK, (scale), (mask), Softmax, PV, (Transpose)]`.
fn attention(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
    label: String,
) -> Result<GroupKernels, Error> {
    let node = |n: NodeId| g.node(n);
    let qk = node(group.nodes[0]);
    let mut scale = 1.0f32;
    let mut mask = None;
    let mut pv = None;
    let mut transpose = None;
    let mut after_softmax = false;
    let made: Vec<ValueId> = group
        .nodes
        .iter()
        .flat_map(|&n| node(n).outputs.clone())
        .collect();
    for &n in &group.nodes[1..] {
        let nd = node(n);
        match &nd.op {
            Op::Binary(b @ (BinaryOp::Mul | BinaryOp::Div)) => {
                let c = nd
                    .inputs
                    .iter()
                    .find(|i| !made.contains(i))
                    .copied()
                    .ok_or_else(|| Error::Unsupported("attention scale".into()))?;
                let t = g
                    .value(c)
                    .producer
                    .map(|p| &node(p).op)
                    .and_then(|op| match op {
                        Op::Constant(t) => t.to_f64_vec().first().copied(),
                        _ => None,
                    })
                    .ok_or_else(|| Error::Unsupported("attention scale".into()))?
                    as f32;
                scale = if *b == BinaryOp::Div { 1.0 / t } else { t };
            }
            Op::Binary(BinaryOp::Add) => {
                mask = nd.inputs.iter().find(|i| !made.contains(i)).copied();
            }
            Op::Softmax { .. } => after_softmax = true,
            Op::MatMul if after_softmax => pv = Some(nd),
            Op::Transpose { .. } => transpose = Some(nd),
            _ => {}
        }
    }
    let pv = pv.ok_or_else(|| Error::Unsupported("attention without P.V".into()))?;
    let scores = g.shape(qk.outputs[0]);
    let rank = scores.rank();
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; 4 - d.len()];
        v.extend_from_slice(d);
        v
    };
    let sd = pad(scores.dims());
    let (b, h, sq, sk) = (sd[0], sd[1], sd[2], sd[3]);
    let q_shape = g.shape(qk.inputs[0]);
    let d = q_shape.dims()[rank - 1];
    let dv = g.shape(pv.inputs[1]).dims()[rank - 1];
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut params = vec![
        b as u32,
        h as u32,
        sq as u32,
        sk as u32,
        d as u32,
        dv as u32,
        scale.to_bits(),
        mask.is_some() as u32,
        (b * h * sq) as u32,
    ];
    let mut operand = |v: ValueId, target: [usize; 4], order: [usize; 4]| -> usize {
        let (base, view) = view_of(g, plan, v);
        let bv = view.broadcast(g.shape(v), &Shape(target.to_vec()));
        params.extend(order.iter().map(|&o| bv.strides[o] as u32));
        params.push(bv.offset as u32);
        match inputs.iter().position(|&x| x == base) {
            Some(i) => i,
            None => {
                inputs.push(base);
                inputs.len() - 1
            }
        }
    };
    let iq = operand(qk.inputs[0], [b, h, sq, d], [0, 1, 2, 3]);
    // K arrives transposed, [.., D, Sk]: its key stride is the last, its dim stride the third.
    let ik = operand(qk.inputs[1], [b, h, d, sk], [0, 1, 3, 2]);
    let iv = operand(pv.inputs[1], [b, h, sk, dv], [0, 1, 2, 3]);
    let im = match mask {
        Some(m) => operand(m, [b, h, sq, sk], [0, 1, 2, 3]),
        None => {
            params.extend([0, 0, 0, 0, 0]);
            iq
        }
    };
    let out = group
        .outputs
        .first()
        .copied()
        .ok_or_else(|| Error::Unsupported("attention without an output".into()))?;
    if transpose.is_some() {
        // Stored as [B, Sq, H, Dv].
        let c = Shape(vec![b, sq, h, dv]).strides();
        params.extend([c[0], c[2], c[1], c[3], 0].iter().map(|&x| x as u32));
    } else {
        let c = Shape(vec![b, h, sq, dv]).strides();
        params.extend([c[0], c[1], c[2], c[3], 0].iter().map(|&x| x as u32));
    }
    // Head-dim rows contiguous and 16-byte aligned: vec4 loads.
    let aligned = |o: usize| {
        let s = &params[o..o + 5];
        s[3] == 1 && [s[0], s[1], s[2], s[4]].iter().all(|x| x.is_multiple_of(4))
    };
    let vec4 =
        d.is_multiple_of(4) && dv.is_multiple_of(4) && aligned(9) && aligned(14) && aligned(19);
    // (The strided loaders' element loop is written out: rendered before it is spliced in.)
    let loaders = if vec4 {
        ATTENTION_VEC4.to_string()
    } else {
        crate::template::render("attention_strided", ATTENTION_STRIDED, &[])?
    };
    let rows = b * h * sq;
    let (r, wg) = attention_blocking(rows, sq, d, dv);
    let lim = opts.target.max_workgroups_per_dim as usize;
    let grid = [sq.div_ceil(wg * r), h, b];
    if grid.iter().any(|&x| x > lim) {
        return Err(Error::Limit(format!(
            "attention over {b} x {h} heads x {sq} queries needs {grid:?} workgroups, over {lim} per dimension"
        )));
    }
    // Targets that read operands well through uniform blocks (CPU adapters): K and V from
    // uniform bindings where they fit.
    if opts.target.uniform_block_operands && vec4 && b == 1 {
        let layout = kv_layout(
            h,
            sk,
            (d, Strides::at(&params, 14)),
            (dv, Strides::at(&params, 19)),
            opts.target.max_uniform_blocks as usize,
        );
        if let Some(layout) = layout {
            let k = attention_ubo_kernel(&AttentionUbo {
                params: &params,
                heads: h,
                sq,
                sk,
                d,
                dv,
                r,
                wg,
                has_mask: mask.is_some(),
                iq,
                ik,
                iv,
                im,
                layout: &layout,
            })?;
            // (More loop ends a key than the storage kernel: that one may still fit.)
            if crate::loops::fits(k.loop_trips, opts.target.loop_budget) {
                return Ok(GroupKernels {
                    lowered: Lowered::Kernels(vec![k]),
                    inputs,
                    outputs: vec![out],
                    label,
                    inplace: None,
                });
            }
        }
    }
    let vals = [
        ("loaders", loaders),
        ("r", r.to_string()),
        ("wg", wg.to_string()),
        ("d", d.max(1).to_string()),
        ("dv", dv.max(1).to_string()),
        ("d4", d.div_ceil(4).max(1).to_string()),
        ("dv4", dv.div_ceil(4).max(1).to_string()),
    ];
    let wgsl = module("attention", &[ATTENTION], &vals)?;
    // The key loop (its body written out), then the store loops over rows and values.
    let loop_trips = lp(sk as u64) + lp(r as u64) + r as u64 * lp(dv as u64);
    let workgroups = if rows == 0 || sk == 0 || d == 0 || dv == 0 {
        [0, 0, 0]
    } else {
        grid.map(|x| x as u32)
    };
    let k = Kernel {
        name: "attention".into(),
        wgsl,
        bindings: vec![
            Buf::In(iq),
            Buf::In(ik),
            Buf::In(iv),
            Buf::In(im),
            Buf::Out(0),
        ],
        params,
        workgroups,
        loop_trips,
    };
    Ok(GroupKernels {
        lowered: Lowered::Kernels(vec![k]),
        inputs,
        outputs: vec![out],
        label,
        inplace: None,
    })
}
