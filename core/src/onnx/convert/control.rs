//! ONNX control flow that Sfumato unrolls at import: a `Loop` whose trip count and condition are
//! known when the model loads (computed from initializers, constants and the inputs the caller
//! gave values for) becomes its body repeated, with the scan outputs stacked. A loop whose count
//! depends on values known only at run time is unsupported.

use super::{bad, unsup, Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};
use crate::{DType, Op, Shape, Tensor, ValueId};

/// At most this many iterations are unrolled ...
pub const MAX_LOOP_ITERATIONS: usize = 4096;
/// ... and at most this many body nodes in all.
pub const MAX_UNROLLED_NODES: usize = 100_000;

impl Importer<'_> {
    /// `Loop(M, cond, v_initial...)` → `(v_final..., scan_outputs...)`.
    pub(super) fn loop_op(&mut self) -> R<Vec<ValueId>> {
        let body: GraphProto = match self.attr("body").and_then(|a| a.g.as_deref()) {
            Some(g) => g.clone(),
            None => return bad("Loop has no body graph"),
        };
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
        let mut carried: Vec<ValueId> =
            (0..n_carried).map(|k| self.inp(k + 2)).collect::<R<_>>()?;
        let mut scans: Vec<Vec<ValueId>> = vec![Vec::new(); n_scan];
        // Saved so that the body's nodes, converted with the same machinery, leave the Loop
        // node's own state as it was.
        let saved = (
            self.name.clone(),
            self.op.clone(),
            self.ins.clone(),
            self.attrs.clone(),
            self.n_outputs,
            self.helpers,
        );
        let outer = self.vals.clone();
        let mut i = 0usize;
        let mut converted = 0usize;
        let result = (|| -> R<()> {
            while i < limit && cond != Some(false) {
                if i == MAX_LOOP_ITERATIONS {
                    return unsup(format!(
                        "a Loop of more than {MAX_LOOP_ITERATIONS} iterations is not unrolled"
                    ));
                }
                converted += body.node.len();
                if converted > MAX_UNROLLED_NODES {
                    return unsup(format!(
                        "unrolling this Loop would take over {MAX_UNROLLED_NODES} nodes"
                    ));
                }
                let it = self.konst(Tensor::from_f64(DType::I64, Shape::scalar(), &[i as f64]))?;
                let c = self.konst(Tensor::from_f64(
                    DType::Bool,
                    Shape::scalar(),
                    &[cond.unwrap_or(true) as u8 as f64],
                ))?;
                self.vals = outer.clone();
                let mut ins = vec![it, c];
                ins.extend(&carried);
                for (vi, &v) in body.input.iter().zip(&ins) {
                    self.vals.insert(vi.name.clone(), v);
                }
                for n in &body.node {
                    let mut n: NodeProto = n.clone();
                    if !n.name.is_empty() {
                        n.name = format!("{}/{i}/{}", saved.0, n.name);
                    }
                    self.node(&n).map_err(|e| match e {
                        crate::Error::Unsupported { node, op, msg, .. } => {
                            super::Fail::Unsupported(format!(
                                "in the Loop body, node '{node}' ({op}): {msg}"
                            ))
                        }
                        other => super::Fail::Bad(format!("in the Loop body: {other}")),
                    })?;
                }
                let out = |s: &Self, k: usize| -> R<ValueId> {
                    let name = &body.output[k].name;
                    s.vals.get(name).copied().ok_or_else(|| {
                        super::Fail::Bad(format!("the body's output '{name}' is not produced"))
                    })
                };
                let c_out = out(self, 0)?;
                carried = (0..n_carried).map(|k| out(self, k + 1)).collect::<R<_>>()?;
                for (k, s) in scans.iter_mut().enumerate() {
                    s.push(out(self, 1 + n_carried + k)?);
                }
                if cond.is_some() {
                    cond = Some(self.known_bool_of(c_out)?);
                }
                i += 1;
            }
            Ok(())
        })();
        self.vals = outer;
        (
            self.name,
            self.op,
            self.ins,
            self.attrs,
            self.n_outputs,
            self.helpers,
        ) = saved;
        result?;
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
            outs.push(self.add1(Op::Concat { axis: 0 }, &stacked)?);
        }
        Ok(outs)
    }

    /// Input `i` as one boolean known at import.
    fn known_bool(&mut self, i: usize) -> R<bool> {
        let v = self.inp(i)?;
        self.known_bool_of(v)
    }

    fn known_bool_of(&mut self, v: ValueId) -> R<bool> {
        let t = self.const_of(v).ok_or_else(|| {
            super::Fail::Unsupported(
                "a Loop condition must be known when the model loads (it is unrolled)".into(),
            )
        })?;
        match t.to_f64_vec().as_slice() {
            [c] => Ok(*c != 0.0),
            _ => bad("a Loop condition must be one value"),
        }
    }
}
