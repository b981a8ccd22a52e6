//! Reads of external values in fused code: bindings, strided views (the `EV` block of params),
//! and the straight-line code of elementwise chains, epilogues and prologues.

use crate::emit::{expr_trips, plain_epilogue, plain_splice, Splice};
use crate::expr::{binary_expr, bitcast_expr, cast_expr, unary_expr};
use crate::params::{one, per, Layout};
use crate::views::{view_block, view_of};
use crate::{Buf, Elem, Error};
use sfumato_core::plan::{Group, Plan, View};
use sfumato_core::{Graph, NodeId, Op, Shape, ValueId};
use std::collections::HashMap;
use std::fmt::Write;

const FUSED_COMMON: &str = include_str!("../templates/fused_common.wgsl");

/// The view block of a fused kernel's reads, at `EV` (after the anchor's own params): the index
/// space, then per read that needs params a slot (`EV_READ0`, `EV_READ1`, ..., named in the
/// module at the index where `Reads::read` put it): a general read's [`VIEW_BLOCK`]
/// (`ev_off`), a broadcast block's [`BLOCK_READ`].
///
/// [`VIEW_BLOCK`]: crate::views::VIEW_BLOCK
pub const EV_BLOCK: Layout = Layout::new(
    "fused view block",
    "EVB",
    &[one("rank"), per("dims", 1, "rank")],
);

/// The slot of a read of a broadcast trailing block (a bias, a row): `offset + i % span`.
pub const BLOCK_READ: Layout = Layout::record("block read", "BR", &[one("offset"), one("span")]);

/// Reads of external values at a flat index of `shape`, with the bindings they need.
pub(crate) struct Reads<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    shape: Shape,
    /// The group's inputs (bases); `Buf::In` indexes this.
    inputs: &'a mut Vec<ValueId>,
    /// Next binding number for a new read binding, and the bindings made, in order.
    next_slot: u32,
    skip_slots: Vec<u32>,
    pub(crate) bindings: Vec<(u32, Buf)>,
    /// Declared read bindings: input index -> variable name.
    vars: HashMap<usize, String>,
    decls: String,
    /// The view block, relative to `EV`: [`EV_BLOCK`], then per read its params (its slot).
    pub(crate) block: Vec<u32>,
    /// Where each slot starts in `block` (slot `s` is `EV_READ{s}` in the module).
    slots: Vec<usize>,
    funcs: String,
    n_reads: usize,
    /// Read through `out0` (the group writes its first output over it).
    pub(crate) inplace: Option<ValueId>,
    /// A matmul's epilogue: its `N`. The matmul's store sets `ep_col` to the column, so a read
    /// broadcast over rows of `N` elements (a bias) indexes by it rather than by `i % N` (an
    /// integer division per element, with no SIMD form on CPU adapters).
    col: Option<usize>,
    /// Private copies of params that `ep_init` fills (matmul epilogues only), and its body.
    hoisted: String,
    ep_init: String,
    /// Loop ends of one call of the code made so far: view walks (`ev_off`) and `pow_u`.
    pub(crate) trips: u64,
}

impl<'a> Reads<'a> {
    pub(crate) fn new(
        g: &'a Graph,
        plan: &'a Plan,
        shape: Shape,
        inputs: &'a mut Vec<ValueId>,
        first_slot: u32,
        skip_slots: Vec<u32>,
    ) -> Result<Self, Error> {
        let block = EV_BLOCK
            .fill()
            .set("rank", shape.rank() as u32)
            .set_all("dims", shape.dims().iter().map(|&d| d as u32))
            .finish()?;
        Ok(Reads {
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
            slots: Vec::new(),
            funcs: String::new(),
            n_reads: 0,
            inplace: None,
            col: None,
            hoisted: String::new(),
            ep_init: String::new(),
            trips: 0,
        })
    }

    fn slot(&mut self) -> u32 {
        while self.skip_slots.contains(&self.next_slot) {
            self.next_slot += 1;
        }
        let s = self.next_slot;
        self.next_slot += 1;
        s
    }

    /// Append a read's params as a new slot of the view block; its name in the module.
    fn slot_of(&mut self, params: Vec<u32>) -> String {
        let s = self.slots.len();
        self.slots.push(self.block.len());
        self.block.extend(params);
        format!("EV_READ{s}")
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
    fn read(&mut self, v: ValueId, idx: &str) -> Result<String, Error> {
        if self.inplace == Some(v) {
            // Same shape and layout as the output: this invocation's element, before it stores.
            self.n_reads += 1;
            return Ok(format!("out0[{idx}]"));
        }
        let (base, view) = view_of(self.g, self.plan, v);
        let bv = view.broadcast(self.g.shape(v), &self.shape);
        let name = self.var(base);
        self.n_reads += 1;
        let dims = self.shape.dims().to_vec();
        let contig = View::contiguous(&self.shape).strides;
        if bv.offset == 0 && (0..dims.len()).all(|d| dims[d] == 1 || bv.strides[d] == contig[d]) {
            return Ok(format!("{name}[{idx}]"));
        }
        // A broadcast of a trailing contiguous block (a bias, a row): offset + i % span.
        let d0 = (0..=dims.len())
            .rev()
            .take_while(|&d| d == dims.len() || dims[d] == 1 || bv.strides[d] == contig[d])
            .last()
            .unwrap_or(dims.len());
        if (0..d0).all(|d| dims[d] == 1 || bv.strides[d] == 0) {
            let span: usize = dims[d0..].iter().product();
            let p = BLOCK_READ
                .fill()
                .set("offset", bv.offset as i32 as u32)
                .set("span", span.max(1) as u32)
                .finish()?;
            let s = self.slot_of(p);
            let (off, span_p) = (format!("{s} + BR_OFFSET"), format!("{s} + BR_SPAN"));
            if self.col.is_some() {
                // A matmul's: the offset (and span) read once, in `ep_init`.
                let v = s.to_lowercase();
                for (f, at) in [("offset", &off), ("span", &span_p)] {
                    let _ = writeln!(self.hoisted, "var<private> {v}_{f}: u32;");
                    let _ = writeln!(self.ep_init, "    {v}_{f} = params[{at}];");
                }
                if self.col == Some(span) {
                    return Ok(format!("{name}[{v}_offset + ep_col]"));
                }
                return Ok(format!("{name}[{v}_offset + {idx} % {v}_span]"));
            }
            return Ok(format!("{name}[params[{off}] + {idx} % params[{span_p}]]"));
        }
        self.trips += crate::loops::rank_walk(dims.len());
        let s = self.slot_of(view_block(&bv, dims.len())?);
        Ok(format!("{name}[ev_off({idx}, {s})]"))
    }

    /// Straight-line code for `nodes`; `known` maps values already in variables.
    pub(crate) fn chain(
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
                        let e = self.read(i, idx)?;
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
            self.trips += expr_trips(&func);
            self.funcs.push_str(&func);
            let _ = writeln!(out, "    let v{} = {fname}({});", o.0, args.join(", "));
            known.insert(o, format!("v{}", o.0));
        }
        Ok(())
    }

    /// Declarations: read bindings, the view block base and its slots, ev_off and the node
    /// functions.
    pub(crate) fn finish(&self, ev: usize) -> String {
        let mut slots = String::new();
        for (s, at) in self.slots.iter().enumerate() {
            let _ = writeln!(slots, "const EV_READ{s}: u32 = EV + {at}u;");
        }
        // The division `ev_off` steps through the index space's dims with: in float arithmetic
        // where every index is below 2^24 (`udiv_small`).
        let ev_div = if self.shape.numel() <= 1 << 24 {
            "udiv_small(a, d)"
        } else {
            "a / d"
        };
        format!(
            "{}const EV: u32 = {ev}u;\n{}{}{slots}fn ev_div(a: u32, d: u32) -> u32 {{\n    return {ev_div};\n}}\n{}\n{}",
            self.decls,
            EV_BLOCK.wgsl(),
            BLOCK_READ.wgsl(),
            FUSED_COMMON,
            self.funcs
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
        Op::BitCast { to } => format!(
            "fn {fname}(x: {}) -> {out} {{\n    return {};\n}}\n",
            ty(in0),
            bitcast_expr(g.dtype(in0), *to)
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
            return Err(Error::Internal(format!(
                "{} is not elementwise",
                other.name()
            )))
        }
    })
}

/// The splice of an anchor group: its epilogue (nodes after the anchor) and, for row reductions
/// (`anchor` = position of the reduction in the group), its prologue (nodes before).
pub(crate) fn anchor_splice(
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
        let mut sp = plain_splice(false);
        sp.extra = plain_epilogue(Elem::of(g.dtype(out)).wgsl());
        return Ok(sp);
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
    )?;
    r.inplace = group.inplace;
    if matches!(a.op, Op::MatMul | Op::Gemm(_) | Op::MatMulInteger) && !row {
        // Every matmul variant stores through `matmul_common`'s `store`, which sets `ep_col`
        // (`matmul_int` sets it too).
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
            None => r.read(x, "i")?,
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
        "{}fn epilogue(i: u32, v: {}) {{\n{body}    out0[i] = {tail};\n}}\nfn ep_init() {{\n{}}}\n",
        r.hoisted,
        Elem::of(g.dtype(out)).wgsl(),
        r.ep_init
    );
    let mut bindings = r.bindings.clone();
    bindings.sort_by_key(|b| b.0);
    let (first, rest): (Buf, Vec<Buf>) = if row {
        let f = bindings
            .iter()
            .find(|b| b.0 == 0)
            .map(|b| b.1)
            .ok_or_else(|| Error::Internal("row reduction without an input".into()))?;
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
