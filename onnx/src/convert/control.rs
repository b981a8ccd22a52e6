//! ONNX control flow that Sfumato unrolls at import: a `Loop` whose trip count and condition are
//! known when the model loads (computed from initializers, constants and the inputs the caller
//! gave values for) becomes its body repeated, with the scan outputs stacked. A loop whose count
//! depends on values known only at run time is unsupported.

use super::Converter::{self, Values};
use super::{bad, unsup, Importer, Val, R};
use crate::proto::{GraphProto, NodeProto};
use sfumato_core::{DType, Op, Shape, Tensor, ValueId};

/// At most this many iterations are unrolled ...
pub const MAX_LOOP_ITERATIONS: usize = 4096;
/// ... and at most this many body nodes in all (Loop, If and SequenceMap bodies together) ...
/// ... and at most this many elements of body initializers, copied once per unrolled body.
pub const MAX_UNROLLED_ELEMENTS: usize = 1 << 26;
pub const MAX_UNROLLED_NODES: usize = 100_000;

/// Control flow: unrolled (Loop) or resolved (If) at import, its values of any kind.
pub(super) const OPS: &[(&str, Converter)] = &[
    ("Loop", Values(|c| c.loop_op())),
    ("If", Values(|c| c.if_op())),
    ("SequenceMap", Values(|c| c.sequence_map())),
];

impl Importer<'_> {
    /// `Loop(M, cond, v_initial...)` → `(v_final..., scan_outputs...)`; loop-carried values may
    /// be sequences or optionals.
    pub(super) fn loop_op(&mut self) -> R<Vec<Val>> {
        let body = self.body_attr("body")?;
        let n_carried = self.ins.len().saturating_sub(2);
        if body.input.len() != n_carried + 2 {
            return bad(format!(
                "the body takes {} inputs; a Loop with {n_carried} loop-carried values needs {}",
                body.input.len(),
                n_carried + 2
            ));
        }
        if body.output.len() < n_carried + 1 {
            return bad(format!(
                "the body gives {} outputs; a Loop with {n_carried} loop-carried values needs at least {}",
                body.output.len(),
                n_carried + 1
            ));
        }
        let n_scan = body.output.len() - n_carried - 1;
        // The trip count (absent: unbounded, the condition decides).
        let trips = if self.has(0) {
            let m = self.const_in(0)?.to_i64_vec();
            match m.as_slice() {
                [m] => Some((*m).max(0) as usize),
                _ => return bad("the trip count M must be one value"),
            }
        } else {
            None
        };
        let mut cond = if self.has(1) {
            Some(self.known_bool(1)?)
        } else {
            None
        };
        if trips.is_none() && cond.is_none() {
            return unsup("a Loop with neither a trip count nor a condition never ends");
        }
        if trips.is_some_and(|m| m > MAX_LOOP_ITERATIONS) {
            return unsup(format!(
                "a Loop of more than {MAX_LOOP_ITERATIONS} iterations is not unrolled (M = {})",
                trips.unwrap_or_default()
            ));
        }
        let limit = trips.unwrap_or(usize::MAX).min(MAX_LOOP_ITERATIONS + 1);
        let mut carried: Vec<Val> = (0..n_carried).map(|k| self.val(k + 2)).collect::<R<_>>()?;
        let mut scans: Vec<Vec<ValueId>> = vec![Vec::new(); n_scan];
        let mut i = 0usize;
        while i < limit && cond != Some(false) {
            if i == MAX_LOOP_ITERATIONS {
                return unsup(format!(
                    "a Loop of more than {MAX_LOOP_ITERATIONS} iterations is not unrolled"
                ));
            }
            self.count_inlined(body.node.len() + 1)?;
            let it = self.konst(Tensor::from_f64(DType::I64, Shape::scalar(), &[i as f64]))?;
            let c = self.konst(Tensor::from_f64(
                DType::Bool,
                Shape::scalar(),
                &[cond.unwrap_or(true) as u8 as f64],
            ))?;
            let mut ins = vec![Val::T(it), Val::T(c)];
            ins.extend(carried.iter().cloned());
            let mut outs = self.inline_graph(&body, ins, &i.to_string())?.into_iter();
            let c_out = match outs.next() {
                Some(Val::T(t)) => t,
                _ => return bad("the body's condition output must be a tensor"),
            };
            carried = outs.by_ref().take(n_carried).collect();
            for (s, v) in scans.iter_mut().zip(outs) {
                match v {
                    Val::T(t) => s.push(t),
                    _ => return unsup("a Loop scan output that is not a tensor"),
                }
            }
            if cond.is_some() {
                cond = Some(self.known_bool_of(c_out)?);
            }
            i += 1;
        }
        let mut outs = carried;
        for s in scans {
            if s.is_empty() {
                return unsup("a Loop that runs no iteration has scan outputs of unknown shape");
            }
            let mut stacked = Vec::with_capacity(s.len());
            for v in s {
                let mut dims = vec![1];
                dims.extend(self.shape(v));
                stacked.push(self.reshape(v, dims)?);
            }
            outs.push(Val::T(self.add1(Op::Concat { axis: 0 }, &stacked)?));
        }
        Ok(outs)
    }

    /// The subgraph attribute `name` (a Loop or SequenceMap body, an If branch).
    fn body_attr(&self, name: &str) -> R<GraphProto> {
        match self.attr(name).and_then(|a| a.g.as_deref()) {
            Some(g) => Ok(g.clone()),
            None => bad(format!("{} has no graph attribute '{name}'", self.op)),
        }
    }

    /// Body nodes converted so far across the whole model (each inlined body counts one more,
    /// so empty bodies count too), refused past the cap.
    fn count_inlined(&mut self, n: usize) -> R<()> {
        self.inlined += n;
        if self.inlined > MAX_UNROLLED_NODES {
            return unsup(format!(
                "unrolling control flow would take over {MAX_UNROLLED_NODES} nodes"
            ));
        }
        Ok(())
    }

    /// Convert a subgraph (a Loop, If or SequenceMap body) in place, its inputs bound to `ins`;
    /// it sees the enclosing scope's values and its own names do not leak out. Returns its
    /// outputs. Named nodes get `NODE/TAG/` before their names.
    pub(super) fn inline_graph(
        &mut self,
        body: &GraphProto,
        ins: Vec<Val>,
        tag: &str,
    ) -> R<Vec<Val>> {
        if body.input.len() != ins.len() {
            return bad(format!(
                "the body takes {} inputs, {} given",
                body.input.len(),
                ins.len()
            ));
        }
        // The node's own state, which the body's nodes overwrite.
        let saved = (
            self.name.clone(),
            self.op.clone(),
            self.ins.clone(),
            self.attrs.clone(),
            self.n_outputs,
            self.helpers,
        );
        let outer = (self.vals.clone(), self.others.clone());
        for (vi, v) in body.input.iter().zip(ins) {
            self.bind(&vi.name, v);
        }
        let what = saved.1.clone();
        let mut result = Ok(());
        // The body's own initializers, in its scope.
        for t in &body.initializer {
            let defined = crate::tensor::from_proto(t, self.opts.base_dir.as_deref())
                .map_err(crate::Error::from)
                .and_then(|v| {
                    self.inlined_elements += v.shape().numel();
                    if self.inlined_elements > MAX_UNROLLED_ELEMENTS {
                        return Err(crate::Error::Model(format!(
                            "unrolling copies over {MAX_UNROLLED_ELEMENTS} elements of body initializers"
                        )));
                    }
                    self.define_const(&t.name, v)
                });
            if let Err(e) = defined {
                result = Err(super::Fail::Bad(format!(
                    "in the {what} body, initializer '{}': {e}",
                    t.name
                )));
                break;
            }
        }
        for n in body
            .node
            .iter()
            .take(if result.is_ok() { usize::MAX } else { 0 })
        {
            let mut n: NodeProto = n.clone();
            if !n.name.is_empty() {
                n.name = format!("{}/{tag}/{}", saved.0, n.name);
            }
            if let Err(e) = self.node(&n) {
                result = Err(match e {
                    crate::Error::Core(sfumato_core::Error::Unsupported {
                        node, op, msg, ..
                    }) => super::Fail::Unsupported(format!(
                        "in the {what} body, node '{node}' ({op}): {msg}"
                    )),
                    other => super::Fail::Bad(format!("in the {what} body: {other}")),
                });
                break;
            }
        }
        let outs = result.and_then(|_| {
            body.output
                .iter()
                .map(
                    |o| match (self.vals.get(&o.name), self.others.get(&o.name)) {
                        (Some(&t), _) => Ok(Val::T(t)),
                        (None, Some(v)) => Ok(v.clone()),
                        (None, None) => {
                            bad(format!("the body's output '{}' is not produced", o.name))
                        }
                    },
                )
                .collect::<R<Vec<Val>>>()
        });
        (self.vals, self.others) = outer;
        (
            self.name,
            self.op,
            self.ins,
            self.attrs,
            self.n_outputs,
            self.helpers,
        ) = saved;
        outs
    }

    /// `If(cond)` with the condition known at import: the taken branch, inlined.
    pub(super) fn if_op(&mut self) -> R<Vec<Val>> {
        let cond = self.known_bool(0)?;
        let branch = if cond { "then_branch" } else { "else_branch" };
        let body = self.body_attr(branch)?;
        self.count_inlined(body.node.len() + 1)?;
        self.inline_graph(&body, Vec::new(), branch)
    }

    /// `SequenceMap(seq, extra...)`: the body once per element of the first input, with the
    /// same element of every other sequence input and every tensor input whole; each output is
    /// the sequence of the body's results.
    pub(super) fn sequence_map(&mut self) -> R<Vec<Val>> {
        let body = self.body_attr("body")?;
        let ins: Vec<Val> = (0..self.ins.len()).map(|i| self.val(i)).collect::<R<_>>()?;
        let n = match ins.first() {
            Some(Val::Seq(s)) => s.len(),
            _ => return bad("SequenceMap's first input must be a sequence"),
        };
        if let Some(bad_len) = ins.iter().find_map(|v| match v {
            Val::Seq(s) if s.len() != n => Some(s.len()),
            _ => None,
        }) {
            return bad(format!(
                "SequenceMap over sequences of {n} and {bad_len} elements"
            ));
        }
        let mut outs: Vec<Vec<Val>> = vec![Vec::new(); body.output.len()];
        for i in 0..n {
            self.count_inlined(body.node.len() + 1)?;
            let args: Vec<Val> = ins
                .iter()
                .map(|v| match v {
                    Val::Seq(s) => s[i].clone(),
                    other => other.clone(),
                })
                .collect();
            for (o, v) in outs
                .iter_mut()
                .zip(self.inline_graph(&body, args, &i.to_string())?)
            {
                o.push(v);
            }
        }
        Ok(outs.into_iter().map(Val::Seq).collect())
    }

    /// Input `i` as one boolean known at import.
    fn known_bool(&mut self, i: usize) -> R<bool> {
        let v = self.inp(i)?;
        self.known_bool_of(v)
    }

    fn known_bool_of(&mut self, v: ValueId) -> R<bool> {
        let t = self.const_of(v).ok_or_else(|| {
            super::Fail::Unsupported(
                "a Loop or If condition must be known when the model loads (control flow is unrolled at import)".into(),
            )
        })?;
        match t.to_f64_vec().as_slice() {
            [c] => Ok(*c != 0.0),
            _ => bad("a Loop or If condition must be one value"),
        }
    }
}
