//! ONNX control flow that Sfumato unrolls at import: a `Loop` whose trip count and condition are
//! known when the model loads (computed from initializers, constants and the inputs the caller
//! gave values for) becomes its body repeated, with the scan outputs stacked; a `Scan` (opset 9
//! on) becomes its body once per slice of its scan inputs, whose length every shape fixes. A loop
//! whose count, or an If whose condition, depends on values known only at run time stops the
//! import with `Error::RunTime`; `crate::staged` runs such a model in stages.

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
    ("Scan", Values(|c| c.scan())),
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
                    // The whole node runs staged: its body needs a run-time value.
                    crate::Error::RunTime(r) => super::Fail::RunTime(format!(
                        "in the {what} body, node '{}' ({}): {}",
                        r.node, r.op, r.msg
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

    /// `Scan(states..., scan_inputs...)` → `(final states..., scan outputs...)` (opset 9 on):
    /// the body once per position along each scan input's axis (backwards for direction 1),
    /// the states carried, each scan output's slices stacked along its axis (in reverse for
    /// direction 1).
    pub(super) fn scan(&mut self) -> R<Vec<Val>> {
        if self.opset < 9 {
            return unsup("Scan of opset 8 (batched, with sequence_lens)");
        }
        let body = self.body_attr("body")?;
        let m = self.ai("num_scan_inputs", 0).max(0) as usize;
        let total = self.ins.len();
        if m == 0 || m > total {
            return bad(format!("num_scan_inputs {m} for {total} inputs"));
        }
        let n = total - m;
        if body.input.len() != total || body.output.len() < n {
            return bad(format!(
                "the body takes {} inputs and gives {} outputs; {n} states and {m} scan inputs need {total} and at least {n}",
                body.input.len(),
                body.output.len()
            ));
        }
        let k = body.output.len() - n;
        let list = |s: &Self, name: &str, len: usize| -> R<Vec<i64>> {
            match s.ais(name) {
                Some(v) if v.len() == len => Ok(v),
                Some(v) => bad(format!("{name} has {} values, expected {len}", v.len())),
                None => Ok(vec![0; len]),
            }
        };
        let in_axes = list(self, "scan_input_axes", m)?;
        let in_dirs = list(self, "scan_input_directions", m)?;
        let out_axes = list(self, "scan_output_axes", k)?;
        let out_dirs = list(self, "scan_output_directions", k)?;
        let mut states: Vec<Val> = (0..n).map(|i| self.val(i)).collect::<R<_>>()?;
        let mut scans = Vec::with_capacity(m);
        let mut len = None;
        for j in 0..m {
            let v = self.inp(n + j)?;
            let dims = self.shape(v);
            let axis = self.axis_in(in_axes[j], dims.len())?;
            if len.is_some_and(|l| l != dims[axis]) {
                return bad(format!(
                    "scan inputs of {} and {} steps",
                    len.unwrap_or_default(),
                    dims[axis]
                ));
            }
            len = Some(dims[axis]);
            scans.push((v, axis, in_dirs[j] != 0));
        }
        let steps = len.unwrap_or(0);
        if steps > MAX_LOOP_ITERATIONS {
            return unsup(format!(
                "a Scan of more than {MAX_LOOP_ITERATIONS} steps is not unrolled ({steps})"
            ));
        }
        if steps == 0 && k > 0 {
            return unsup("a Scan of no steps has scan outputs of unknown shape");
        }
        let mut outs: Vec<Vec<ValueId>> = vec![Vec::new(); k];
        for t in 0..steps {
            self.count_inlined(body.node.len() + 1)?;
            let mut args = states.clone();
            for (v, axis, rev) in &scans {
                let at = if *rev { steps - 1 - t } else { t };
                args.push(Val::T(self.index_axis(*v, *axis, at)?));
            }
            let mut res = self.inline_graph(&body, args, &t.to_string())?.into_iter();
            states = res.by_ref().take(n).collect();
            for (o, v) in outs.iter_mut().zip(res) {
                match v {
                    Val::T(v) => o.push(v),
                    _ => return unsup("a Scan output that is not a tensor"),
                }
            }
        }
        let mut result = states;
        for (j, mut o) in outs.into_iter().enumerate() {
            if out_dirs[j] != 0 {
                o.reverse();
            }
            let dims = self.shape(o[0]);
            let axis = self.axis(out_axes[j], dims.len() + 1)?;
            let mut parts = Vec::with_capacity(o.len());
            for v in o {
                let mut d = self.shape(v);
                if d.len() + 1 != dims.len() + 1 || d != dims {
                    return bad(format!(
                        "scan output {j} changes shape: {dims:?} then {d:?}"
                    ));
                }
                d.insert(axis, 1);
                parts.push(self.reshape(v, d)?);
            }
            let stacked = if parts.len() == 1 {
                parts[0]
            } else {
                self.add1(Op::Concat { axis }, &parts)?
            };
            result.push(Val::T(stacked));
        }
        Ok(result)
    }

    /// Input `i` as one boolean known at import.
    fn known_bool(&mut self, i: usize) -> R<bool> {
        let v = self.inp(i)?;
        self.known_bool_of(v)
    }

    fn known_bool_of(&mut self, v: ValueId) -> R<bool> {
        let t = self.const_of(v).ok_or_else(|| {
            super::Fail::RunTime(
                "a Loop or If condition must be known when the model loads (control flow is unrolled at import)".into(),
            )
        })?;
        match t.to_f64_vec().as_slice() {
            [c] => Ok(*c != 0.0),
            _ => bad("a Loop or If condition must be one value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::*;
    use crate::testutil::*;
    use crate::{import, tensor, Error, ImportOptions};
    use sfumato_core::{CpuDevice, DType, Device, Tensor};

    #[test]
    fn a_loop_with_a_known_trip_count_is_unrolled() {
        let m = import(&loop_model(3, "Add", false), &ImportOptions::default()).unwrap();
        let x = Tensor::from_f32([2], vec![1.0, -2.0]).unwrap();
        let out = run_cpu(&m.graph, &[x]);
        // acc: [0, 10] -> +0x -> +1x -> +2x: [3, 4]; scans hold acc before each add.
        assert_eq!(out[0].to_f32_vec(), vec![3.0, 4.0]);
        assert_eq!(out[1].dims(), &[3, 2]);
        assert_eq!(out[1].to_f32_vec(), vec![0.0, 10.0, 0.0, 10.0, 1.0, 8.0]);
    }

    #[test]
    fn a_loop_whose_count_is_known_only_at_run_time_needs_a_staged_run() {
        // The trip count is a graph input with no value given: one graph cannot hold it.
        let e = import(&loop_model(3, "Add", true), &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(&e, Error::RunTime(r) if r.msg.contains("known when the model loads")),
            "{e}"
        );
        // Given the input's value, the same model unrolls.
        let mut opts = ImportOptions::default();
        opts.known_inputs
            .insert("m".into(), Tensor::from_f64(DType::I64, [], &[2.0]));
        let m = import(&loop_model(2, "Add", true), &opts).unwrap();
        assert_eq!(m.inputs, ["x", "m"]);
        // A hostile trip count is refused, not unrolled.
        let e = import(
            &loop_model(1 << 40, "Add", false),
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not unrolled"), "{e}");
    }

    #[test]
    fn an_unsupported_op_inside_a_loop_body_is_listed_with_its_path() {
        match import(&loop_model(2, "Det", false), &ImportOptions::default()) {
            Err(Error::UnsupportedOps(list)) => {
                assert_eq!(list.len(), 1);
                assert_eq!(list[0].op, "Det");
                assert_eq!(list[0].node, "Loop_node/body/Det_node");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn if_on_a_run_time_condition_needs_a_staged_run_and_on_a_known_one_is_the_taken_branch() {
        // If on a run-time condition needs a staged run; on a known one it is the taken branch.
        let branch = |v: f32| AttributeProto {
            name: if v > 0.0 {
                "then_branch"
            } else {
                "else_branch"
            }
            .into(),
            r#type: attr_type::GRAPH,
            g: Some(Box::new(GraphProto {
                name: "b".into(),
                node: vec![node(
                    "Mul",
                    &["x", if v > 0.0 { "two" } else { "three" }],
                    &["r"],
                    vec![],
                )],
                output: vec![vi("r", data_type::FLOAT, &[Ok(2)])],
                ..Default::default()
            })),
            ..Default::default()
        };
        let consts = || {
            vec![
                tensor::to_proto(&Tensor::from_f32([], vec![2.0]).unwrap(), "two"),
                tensor::to_proto(&Tensor::from_f32([], vec![3.0]).unwrap(), "three"),
            ]
        };
        let b = model(
            vec![node("If", &["c"], &["y"], vec![branch(1.0), branch(0.0)])],
            consts(),
            vec![
                vi("x", data_type::FLOAT, &[Ok(2)]),
                vi("c", data_type::BOOL, &[]),
            ],
            vec![vi("y", data_type::FLOAT, &[Ok(2)])],
        );
        let e = import(&b, &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains("known when the model loads"), "{e}");
        let mut opts = ImportOptions::default();
        opts.known_inputs
            .insert("c".into(), Tensor::from_f64(DType::Bool, [], &[0.0]));
        let m = import(&b, &opts).unwrap();
        let x = Tensor::from_f32([2], vec![1.0, -1.0]).unwrap();
        let c = Tensor::from_f64(DType::Bool, [], &[0.0]);
        let out = run_cpu(&m.graph, &[x, c]);
        assert_eq!(out[0].to_f32_vec(), vec![3.0, -3.0]);
    }

    /// A Loop body whose condition is `i < 2` and whose scan output is `i` as f32; with
    /// `own_init`, it adds its own initializer `w` (which hides an outer `w`).
    fn counting_body(own_init: bool) -> GraphProto {
        let mut init = vec![tensor::to_proto(
            &Tensor::from_f64(DType::I64, [], &[2.0]),
            "two",
        )];
        if own_init {
            init.push(tensor::to_proto(
                &Tensor::from_f32([], vec![100.0]).unwrap(),
                "w",
            ));
        }
        GraphProto {
            name: "body".into(),
            node: vec![
                node("Less", &["i", "two"], &["cond_out"], vec![]),
                node(
                    "Cast",
                    &["i"],
                    &["fi"],
                    vec![ints_attr("to", data_type::FLOAT as i64)],
                ),
                node("Add", &["fi", "w"], &["scan"], vec![]),
                node("Identity", &["acc"], &["acc_out"], vec![]),
            ],
            initializer: init,
            input: vec![
                vi("i", data_type::INT64, &[]),
                vi("cond", data_type::BOOL, &[]),
                vi("acc", data_type::FLOAT, &[]),
            ],
            output: vec![
                vi("cond_out", data_type::BOOL, &[]),
                vi("acc_out", data_type::FLOAT, &[]),
                vi("scan", data_type::FLOAT, &[]),
            ],
            ..Default::default()
        }
    }

    fn run_scans(trips: i64, own_init: bool) -> Result<Vec<f32>, Error> {
        let b = model(
            vec![node(
                "Loop",
                &["m", "c0", "a0"],
                &["acc", "scans"],
                vec![graph_attr("body", counting_body(own_init))],
            )],
            vec![
                tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[trips as f64]), "m"),
                tensor::to_proto(&Tensor::from_f64(DType::Bool, [], &[1.0]), "c0"),
                tensor::to_proto(&Tensor::from_f32([], vec![0.0]).unwrap(), "a0"),
                tensor::to_proto(&Tensor::from_f32([], vec![10.0]).unwrap(), "w"),
            ],
            vec![],
            vec![
                vi("acc", data_type::FLOAT, &[]),
                vi("scans", data_type::FLOAT, &[]),
            ],
        );
        let m = import(&b, &ImportOptions::default())?;
        Ok(CpuDevice.run(&m.graph, &[])?.outputs[1].to_f32_vec())
    }

    #[test]
    fn loops_stop_on_their_condition_see_their_own_initializers_and_nest_within_the_cap() {
        // The condition `i < 2` after iterations 0, 1, 2 stops the loop at 3 of 10 trips; the
        // outer `w` (10) is read, or the body's own (100) hides it.
        assert_eq!(run_scans(10, false).unwrap(), vec![10.0, 11.0, 12.0]);
        assert_eq!(run_scans(10, true).unwrap(), vec![100.0, 101.0, 102.0]);
        assert_eq!(run_scans(1, false).unwrap(), vec![10.0]);
        // No iteration: scan outputs have no shape to take.
        let e = run_scans(0, false).unwrap_err();
        assert!(e.to_string().contains("no iteration"), "{e}");
        // A Loop of 4096 whose body is a Loop of 4096 with an empty body: over the unroll cap,
        // refused rather than unrolled 16.7 million times.
        let empty = GraphProto {
            name: "inner".into(),
            node: vec![],
            input: vec![
                vi("j", data_type::INT64, &[]),
                vi("c", data_type::BOOL, &[]),
            ],
            output: vec![vi("c", data_type::BOOL, &[])],
            ..Default::default()
        };
        let outer = GraphProto {
            name: "outer".into(),
            node: vec![node(
                "Loop",
                &["big", ""],
                &[],
                vec![graph_attr("body", empty)],
            )],
            input: vec![
                vi("i", data_type::INT64, &[]),
                vi("c", data_type::BOOL, &[]),
                vi("acc", data_type::FLOAT, &[]),
            ],
            output: vec![
                vi("c", data_type::BOOL, &[]),
                vi("acc", data_type::FLOAT, &[]),
            ],
            ..Default::default()
        };
        let b = model(
            vec![node(
                "Loop",
                &["big", "", "a0"],
                &["y"],
                vec![graph_attr("body", outer)],
            )],
            vec![
                tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[4096.0]), "big"),
                tensor::to_proto(&Tensor::from_f32([], vec![0.0]).unwrap(), "a0"),
            ],
            vec![],
            vec![vi("y", data_type::FLOAT, &[])],
        );
        let t = std::time::Instant::now();
        let e = import(&b, &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains("over 100000 nodes"), "{e}");
        assert!(t.elapsed().as_secs() < 30, "the cap took {:?}", t.elapsed());
    }
}
