//! Staged runs: a model that one graph cannot hold, run as device stages with host steps
//! between them.
//!
//! A graph fixes every shape when it is built, and the importer unrolls control flow, so a node
//! that needs a value known only at run time stops an import ([`Error::RunTime`]): a Loop whose
//! trip count or an If whose condition is computed from the inputs, a Reshape or Expand whose
//! shape is, and the ops whose output's shape depends on their input values (NonZero, Unique,
//! NonMaxSuppression: [`crate::hostops`]). [`run`] imports as much of the model as it can as one
//! graph and runs it on the device, reads its values back, and goes on from the node that
//! stopped the import:
//! - with every value before it known, the node imports (a Reshape reads its shape), and the
//!   next stage starts there;
//! - else it is a host step: NonZero, Unique and NonMaxSuppression run on the host; an If runs
//!   its taken branch, and a Loop its body once per iteration, each staged in turn (so a branch
//!   runs on the device, and a loop's body too).
//!
//! The run's profile holds every stage's kernels and one entry per host step (kernel
//! `host: ...`), at their places in the run, so the round trips show on the timeline.

use crate::proto::{
    Dimension, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    TypeTensor, ValueInfoProto,
};
use crate::{Error, ImportOptions, Result};
use sfumato_core::device::{OpTiming, Profile, TimingSource};
use sfumato_core::{DType, Device, Shape, Tensor};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// A Loop run from the host stops with an error after this many iterations (its condition may
/// never turn false).
pub const MAX_STAGED_ITERATIONS: u64 = 1 << 20;

/// One part of a staged run.
#[derive(Clone, Debug)]
pub struct Stage {
    /// A device stage's node range (`nodes 3..9 of main`), or a host step's node and op.
    pub what: String,
    pub on_device: bool,
    /// Host wall time of the stage: import, run and readback for a device stage.
    pub wall_ns: u64,
}

/// What [`run`] returns.
#[derive(Clone, Debug)]
pub struct StagedRun {
    /// The graph outputs by name, in order.
    pub names: Vec<String>,
    pub outputs: Vec<Tensor>,
    /// Per output: whether a device stage computed it (false: a host step, or folded at import).
    pub on_device: Vec<bool>,
    /// Every stage's kernels and every host step, in run order.
    pub profile: Profile,
    pub stages: Vec<Stage>,
}

/// Run `model` in stages on `dev`. `inputs` gives every graph input that is not an
/// initializer; `opts` gives the symbolic dims and the directory of external data (its input
/// shapes and known values are taken from `inputs`).
pub fn run(
    model: &ModelProto,
    opts: &ImportOptions,
    inputs: &HashMap<String, Tensor>,
    dev: &mut dyn Device,
) -> Result<StagedRun> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let unsupported = crate::unsupported_ops(model);
    if !unsupported.is_empty() {
        return Err(Error::UnsupportedOps(unsupported));
    }
    let mut scope = Scope::new(None, g);
    for i in &g.input {
        if scope.inits.contains_key(&i.name) && !inputs.contains_key(&i.name) {
            continue;
        }
        let t = inputs
            .get(&i.name)
            .ok_or_else(|| Error::Model(format!("no value given for graph input '{}'", i.name)))?;
        scope.vals.insert(i.name.clone(), (t.clone(), false));
    }
    let mut r = Runner {
        model,
        opts,
        dev,
        t0: Instant::now(),
        profile: Profile::default(),
        stages: Vec::new(),
    };
    r.profile.device = r.dev.name();
    r.graph(g, &mut scope, "main")?;
    let mut out = StagedRun {
        names: Vec::new(),
        outputs: Vec::new(),
        on_device: Vec::new(),
        profile: Profile::default(),
        stages: Vec::new(),
    };
    for o in &g.output {
        let (t, d) = scope.value(&o.name, opts)?;
        out.names.push(o.name.clone());
        out.outputs.push(t);
        out.on_device.push(d);
    }
    r.profile.wall_ns = r.t0.elapsed().as_nanos() as u64;
    out.profile = r.profile;
    out.stages = r.stages;
    Ok(out)
}

/// The values a graph sees: its own (each with whether a device stage computed it) and
/// initializers, then its enclosing graphs'.
struct Scope<'p> {
    vals: HashMap<String, (Tensor, bool)>,
    inits: HashMap<String, &'p TensorProto>,
    parent: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    fn new(parent: Option<&'p Scope<'p>>, g: &'p GraphProto) -> Self {
        Scope {
            vals: HashMap::new(),
            inits: g.initializer.iter().map(|t| (t.name.clone(), t)).collect(),
            parent,
        }
    }

    /// A run-time value, else an initializer, by name, nearest scope first.
    fn lookup(&self, name: &str) -> Option<Either<'_>> {
        if let Some(v) = self.vals.get(name) {
            return Some(Either::Val(v));
        }
        if let Some(t) = self.inits.get(name) {
            return Some(Either::Init(t));
        }
        self.parent?.lookup(name)
    }

    /// A value as a tensor (an initializer is read).
    fn value(&self, name: &str, opts: &ImportOptions) -> Result<(Tensor, bool)> {
        match self.lookup(name) {
            Some(Either::Val((t, d))) => Ok((t.clone(), *d)),
            Some(Either::Init(p)) => Ok((
                crate::tensor::from_proto(p, opts.base_dir.as_deref())?,
                false,
            )),
            None => Err(Error::Model(format!(
                "'{name}' is read but no input, initializer or earlier node defines it"
            ))),
        }
    }
}

enum Either<'a> {
    Val(&'a (Tensor, bool)),
    Init(&'a TensorProto),
}

struct Runner<'a> {
    model: &'a ModelProto,
    opts: &'a ImportOptions,
    dev: &'a mut dyn Device,
    t0: Instant,
    profile: Profile,
    stages: Vec<Stage>,
}

/// The names a graph reads from outside itself: its nodes' inputs, its subgraphs' free names
/// and its outputs (a branch may output an outer value as it is), less what it defines (its
/// inputs, initializers and node outputs).
fn free_names(g: &GraphProto) -> HashSet<String> {
    let mut defined: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let mut free = free_in(&g.node, defined.clone());
    free.extend(
        g.output
            .iter()
            .filter(|o| !defined.contains(o.name.as_str()))
            .map(|o| o.name.clone()),
    );
    free
}

/// The names `nodes` read that neither `defined` nor an earlier node of theirs defines.
fn free_in<'n>(nodes: &'n [NodeProto], mut defined: HashSet<&'n str>) -> HashSet<String> {
    let mut free = HashSet::new();
    for n in nodes {
        for r in reads(n) {
            if !defined.contains(r.as_str()) {
                free.insert(r);
            }
        }
        defined.extend(n.output.iter().map(String::as_str));
    }
    free
}

/// Every name a node reads: its inputs and its subgraphs' free names.
fn reads(n: &NodeProto) -> Vec<String> {
    let mut r: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
    for a in &n.attribute {
        for sub in a.g.as_deref().into_iter().chain(&a.graphs) {
            r.extend(free_names(sub));
        }
    }
    r
}

fn value_info(name: &str, t: &Tensor) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: crate::tensor::onnx_type(t.dtype()),
                shape: Some(TensorShapeProto {
                    dim: t
                        .dims()
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d as i64),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    }
}

/// One device stage, imported: its graph (outputs named as the model names them) and what to
/// feed it.
struct Built {
    model: crate::OnnxModel,
    feed: Vec<Tensor>,
}

impl Runner<'_> {
    fn elapsed(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Run every node of `g` (named `label` in stage names), binding its values in `scope`.
    ///
    /// A stage is imported without the values of its inputs, so what it computes, it computes
    /// on the device. Where a node needs one of them, the nodes before it run first; then it is
    /// imported again with its own inputs' values (read back from the device), and where even
    /// that does not do, or it is an op no graph holds, it is a host step.
    fn graph<'p>(&mut self, g: &'p GraphProto, scope: &mut Scope<'p>, label: &str) -> Result<()> {
        let mut start = 0;
        let mut known: Vec<String> = Vec::new();
        while start < g.node.len() {
            let end = g.node.len();
            match self.build(g, start, end, scope, &known) {
                Ok(b) => return self.run_stage(b, scope, label, start, end),
                Err(Error::RunTime(need)) if need.index > 0 => {
                    let end = start + need.index;
                    let b = self.build(g, start, end, scope, &known)?;
                    self.run_stage(b, scope, label, start, end)?;
                    start = end;
                    known.clear();
                }
                Err(Error::RunTime(need)) => {
                    let n = &g.node[start];
                    if known.is_empty() && !crate::hostops::is_host_op(&n.op_type) {
                        // The values it needs: a Loop's trip count and condition, an If's
                        // condition; any input of another op (a Reshape's shape).
                        let needs = match n.op_type.as_str() {
                            "Loop" => 2,
                            "If" => 1,
                            _ => n.input.len(),
                        };
                        known = n.input[..needs.min(n.input.len())]
                            .iter()
                            .filter(|s| matches!(scope.lookup(s), Some(Either::Val(_))))
                            .cloned()
                            .collect();
                        if known.is_empty() {
                            self.host_step(n, scope, label, start, Some(*need))?;
                            start += 1;
                            continue;
                        }
                        self.mark(n, start, label, &known);
                    } else {
                        self.host_step(n, scope, label, start, Some(*need))?;
                        start += 1;
                        known.clear();
                    }
                }
                // An If or Loop that its values do not let import (a Loop past the unrolling
                // caps): run from the host instead, its read-back mark taken back.
                Err(_)
                    if !known.is_empty()
                        && matches!(g.node[start].op_type.as_str(), "If" | "Loop") =>
                {
                    self.profile.entries.pop();
                    self.stages.pop();
                    self.host_step(&g.node[start], scope, label, start, None)?;
                    start += 1;
                    known.clear();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A node whose inputs' values are read back before it is imported: a zero-length entry
    /// on the timeline, where the device stage before it ends.
    fn mark(&mut self, n: &NodeProto, i: usize, label: &str, known: &[String]) {
        let name = crate::node_name(n, i);
        let what = format!("{} read back, imported with their values", known.join(", "));
        self.profile.entries.push(OpTiming {
            nodes: vec![name.clone()],
            ops: vec![n.op_type.clone()],
            kernel: format!("host: {what}"),
            start_ns: self.elapsed(),
            duration_ns: 0,
            source: TimingSource::Cpu,
            simulated: None,
        });
        self.stages.push(Stage {
            what: format!("{name} ({}) of {label}: {what}", n.op_type),
            on_device: false,
            wall_ns: 0,
        });
    }

    /// Import nodes `start..end` of `g` as one graph: inputs the values they read from `scope`
    /// (the `known` ones with their values, so shapes and counts computed from them resolve),
    /// outputs the values they define that a later node or the graph's outputs read.
    fn build(
        &self,
        g: &GraphProto,
        start: usize,
        end: usize,
        scope: &Scope<'_>,
        known: &[String],
    ) -> Result<Built> {
        let nodes = &g.node[start..end];
        let mut later: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
        for n in &g.node[end..] {
            later.extend(reads(n));
        }
        let mut sub = GraphProto {
            node: nodes.to_vec(),
            name: g.name.clone(),
            ..Default::default()
        };
        let mut opts = ImportOptions {
            dims: self.opts.dims.clone(),
            default_dim: self.opts.default_dim,
            base_dir: self.opts.base_dir.clone(),
            ..Default::default()
        };
        let mut values: HashMap<String, Tensor> = HashMap::new();
        let mut free: Vec<String> = free_in(nodes, HashSet::new()).into_iter().collect();
        free.sort();
        for name in free {
            match scope.lookup(&name) {
                Some(Either::Val((t, _))) => {
                    sub.input.push(value_info(&name, t));
                    opts.input_shapes.insert(name.clone(), t.dims().to_vec());
                    if known.contains(&name) {
                        opts.known_inputs.insert(name.clone(), t.clone());
                    }
                    values.insert(name, t.clone());
                }
                Some(Either::Init(p)) => sub.initializer.push((*p).clone()),
                None => {
                    return Err(Error::Model(format!(
                        "'{name}' is read but no input, initializer or earlier node defines it"
                    )))
                }
            }
        }
        let mut seen = HashSet::new();
        for n in nodes {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if later.contains(o) && seen.insert(o.clone()) {
                    sub.output.push(ValueInfoProto {
                        name: o.clone(),
                        r#type: None,
                    });
                }
            }
        }
        let m = ModelProto {
            ir_version: self.model.ir_version,
            opset_import: self.model.opset_import.clone(),
            graph: Some(sub),
            ..Default::default()
        };
        let model = crate::import_model(&m, &opts)?;
        // The importer keeps the inputs it uses, in order.
        let feed = model
            .inputs
            .iter()
            .map(|n| {
                values
                    .remove(n)
                    .ok_or_else(|| Error::Model(format!("stage input '{n}' has no value")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Built { model, feed })
    }

    /// Run a built stage and bind its outputs.
    fn run_stage(
        &mut self,
        b: Built,
        scope: &mut Scope<'_>,
        label: &str,
        start: usize,
        end: usize,
    ) -> Result<()> {
        if b.model.outputs.is_empty() {
            return Ok(());
        }
        let at = self.elapsed();
        let out = self.dev.run(&b.model.graph, &b.feed)?;
        let g = &b.model.graph;
        let computed = crate::conformance::computed_outputs(g);
        let any_kernel = !out.profile.entries.is_empty();
        let mut outs = Vec::new();
        for (((name, t), d), &v) in b
            .model
            .outputs
            .iter()
            .zip(out.outputs)
            .zip(computed)
            .zip(g.outputs())
        {
            // A stage input handed on (maybe reshaped) keeps where it was computed.
            let handed_on = reshaped_input(g, v)
                .and_then(|i| scope.lookup(&g.value(i).name))
                .is_some_and(|x| matches!(x, Either::Val((_, true))));
            outs.push((name.clone(), (t, (d && any_kernel) || handed_on)));
        }
        scope.vals.extend(outs);
        for mut e in out.profile.entries {
            if e.source != TimingSource::WholeRun {
                e.start_ns += at;
            }
            self.profile.entries.push(e);
        }
        self.profile.memory_bytes = match (self.profile.memory_bytes, out.profile.memory_bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(s) = out.profile.setup {
            let mut acc = self.profile.setup.unwrap_or_default();
            acc.kernels_ns += s.kernels_ns;
            acc.weights_ns += s.weights_ns;
            acc.weight_bytes += s.weight_bytes;
            self.profile.setup = Some(acc);
        }
        self.stages.push(Stage {
            what: format!("nodes {start}..{end} of {label}"),
            on_device: true,
            wall_ns: self.elapsed() - at,
        });
        Ok(())
    }

    /// A node no graph can hold, at index `i` of its graph, run from the host.
    fn host_step<'p>(
        &mut self,
        n: &'p NodeProto,
        scope: &mut Scope<'p>,
        label: &str,
        i: usize,
        need: Option<crate::error::RunTimeNeed>,
    ) -> Result<()> {
        let at = self.elapsed();
        let name = crate::node_name(n, i);
        let what = match n.op_type.as_str() {
            op if crate::hostops::is_host_op(op) => {
                let ins = n
                    .input
                    .iter()
                    .map(|s| {
                        if s.is_empty() {
                            Ok(None)
                        } else {
                            scope.value(s, self.opts).map(|(t, _)| Some(t))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                let outs = crate::hostops::run(op, &n.attribute, &ins, n.output.len())?;
                for (o, t) in n.output.iter().zip(outs) {
                    scope.vals.insert(o.clone(), (t, false));
                }
                format!("{op} computed on the host")
            }
            "If" => self.if_step(n, scope, &name)?,
            "Loop" => self.loop_step(n, scope, &name)?,
            op => {
                return Err(match need {
                    Some(need) => Error::RunTime(Box::new(need)),
                    None => Error::Model(format!("{op} '{name}' cannot run from the host")),
                })
            }
        };
        let dur = self.elapsed() - at;
        self.profile.entries.push(OpTiming {
            nodes: vec![name.clone()],
            ops: vec![n.op_type.clone()],
            kernel: format!("host: {what}"),
            start_ns: at,
            duration_ns: dur,
            source: TimingSource::Cpu,
            simulated: None,
        });
        self.stages.push(Stage {
            what: format!("{name} ({}) of {label}: {what}", n.op_type),
            on_device: false,
            wall_ns: dur,
        });
        Ok(())
    }

    fn subgraph<'p>(n: &'p NodeProto, attr: &str) -> Result<&'p GraphProto> {
        n.attribute
            .iter()
            .find(|a| a.name == attr)
            .and_then(|a| a.g.as_deref())
            .ok_or_else(|| Error::Model(format!("{} has no graph attribute '{attr}'", n.op_type)))
    }

    /// One boolean read back.
    fn flag(&self, scope: &Scope<'_>, name: &str) -> Result<bool> {
        one_flag(&scope.value(name, self.opts)?.0, name)
    }

    /// Run a branch or loop body staged, in a scope of its own under `scope` with `bound`
    /// named first; its outputs.
    fn body(
        &mut self,
        body: &GraphProto,
        scope: &Scope<'_>,
        bound: Vec<(String, (Tensor, bool))>,
        label: &str,
    ) -> Result<Vec<(Tensor, bool)>> {
        let mut inner = Scope::new(Some(scope), body);
        inner.vals.extend(bound);
        self.graph(body, &mut inner, label)?;
        body.output
            .iter()
            .map(|o| inner.value(&o.name, self.opts))
            .collect()
    }

    /// `If`: the condition read back, then the taken branch staged; its outputs bound to the
    /// node's.
    fn if_step<'p>(
        &mut self,
        n: &'p NodeProto,
        scope: &mut Scope<'p>,
        name: &str,
    ) -> Result<String> {
        let cond_name = n
            .input
            .first()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Model(format!("If '{name}' has no condition")))?;
        let cond = self.flag(scope, cond_name)?;
        let branch = if cond { "then_branch" } else { "else_branch" };
        let body = Self::subgraph(n, branch)?;
        let outs = self.body(body, scope, Vec::new(), &format!("{name}/{branch}"))?;
        bind_outputs(n, outs, scope)?;
        Ok(format!("condition read back: {cond}, {branch} run"))
    }

    /// `Loop(M, cond, carried...)`: the trip count and condition read back, the body staged
    /// once per iteration; scan outputs stacked on the host.
    fn loop_step<'p>(
        &mut self,
        n: &'p NodeProto,
        scope: &mut Scope<'p>,
        name: &str,
    ) -> Result<String> {
        let body = Self::subgraph(n, "body")?;
        let input = |k: usize| n.input.get(k).filter(|s| !s.is_empty());
        let n_carried = n.input.len().saturating_sub(2);
        if body.input.len() != n_carried + 2 || body.output.len() < n_carried + 1 {
            return Err(Error::Model(format!(
                "Loop '{name}': its body takes {} inputs and gives {} outputs for {n_carried} loop-carried values",
                body.input.len(),
                body.output.len()
            )));
        }
        let trips = match input(0) {
            Some(m) => {
                let (t, _) = scope.value(m, self.opts)?;
                Some(t.to_i64_vec().first().copied().unwrap_or(0).max(0) as u64)
            }
            None => None,
        };
        let mut cond = match input(1) {
            Some(c) => self.flag(scope, c)?,
            None => true,
        };
        if trips.is_none() && input(1).is_none() {
            return Err(Error::Model(format!(
                "Loop '{name}' has neither a trip count nor a condition: it never ends"
            )));
        }
        let mut carried: Vec<(Tensor, bool)> = (0..n_carried)
            .map(|k| scope.value(&n.input[k + 2], self.opts))
            .collect::<Result<_>>()?;
        let n_scan = body.output.len() - n_carried - 1;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
        let mut scan_dev = vec![false; n_scan];
        let mut i = 0u64;
        while trips.is_none_or(|m| i < m) && cond {
            if i == MAX_STAGED_ITERATIONS {
                return Err(Error::Model(format!(
                    "Loop '{name}' ran {MAX_STAGED_ITERATIONS} iterations and goes on (trip count {trips:?}); a staged Loop stops there"
                )));
            }
            let it = Tensor::from_f64(DType::I64, Shape::scalar(), &[i as f64]);
            let c = Tensor::from_f64(DType::Bool, Shape::scalar(), &[1.0]);
            let mut bound = vec![
                (body.input[0].name.clone(), (it, false)),
                (body.input[1].name.clone(), (c, false)),
            ];
            bound.extend(
                body.input[2..]
                    .iter()
                    .map(|vi| vi.name.clone())
                    .zip(carried),
            );
            let outs = self.body(body, scope, bound, &format!("{name}/body#{i}"))?;
            let mut outs = outs.into_iter();
            let (c, _) = outs.next().expect("the body gives a condition");
            if input(1).is_some() {
                cond = one_flag(&c, &body.output[0].name)?;
            }
            carried = outs.by_ref().take(n_carried).collect();
            for (k, (t, d)) in outs.enumerate() {
                scans[k].push(t);
                scan_dev[k] |= d;
            }
            i += 1;
        }
        let mut result = carried;
        for (s, d) in scans.into_iter().zip(scan_dev) {
            result.push((stack(&s, name)?, d));
        }
        bind_outputs(n, result, scope)?;
        Ok(format!(
            "{i} iterations, trip count and condition read back"
        ))
    }
}

/// The graph input that `v` is, through Reshapes only.
fn reshaped_input(
    g: &sfumato_core::Graph,
    mut v: sfumato_core::ValueId,
) -> Option<sfumato_core::ValueId> {
    loop {
        match g.value(v).producer {
            None => return g.inputs().contains(&v).then_some(v),
            Some(p) => {
                let n = g.node(p);
                if !matches!(n.op, sfumato_core::Op::Reshape { .. }) {
                    return None;
                }
                v = *n.inputs.first()?;
            }
        }
    }
}

/// A condition's one value as a boolean (`name` for the error).
fn one_flag(t: &Tensor, name: &str) -> Result<bool> {
    match t.to_f64_vec().as_slice() {
        [c] => Ok(*c != 0.0),
        _ => Err(Error::Model(format!(
            "the condition '{name}' must be one value, not {}",
            t.shape()
        ))),
    }
}

/// Bind a control-flow node's outputs (an empty name: not wanted).
fn bind_outputs(n: &NodeProto, outs: Vec<(Tensor, bool)>, scope: &mut Scope<'_>) -> Result<()> {
    if outs.len() < n.output.iter().filter(|o| !o.is_empty()).count() {
        return Err(Error::Model(format!(
            "{} gives {} values for {} outputs",
            n.op_type,
            outs.len(),
            n.output.len()
        )));
    }
    for (o, v) in n.output.iter().zip(outs) {
        if !o.is_empty() {
            scope.vals.insert(o.clone(), v);
        }
    }
    Ok(())
}

/// Per-iteration values stacked along a new first axis.
fn stack(parts: &[Tensor], name: &str) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        return Err(Error::Core(sfumato_core::Error::Unsupported {
            node: name.to_string(),
            op: "Loop".into(),
            inputs: String::new(),
            msg: "a Loop that runs no iteration has scan outputs of unknown shape".into(),
        }));
    };
    let mut bytes = Vec::new();
    for p in parts {
        if p.shape() != first.shape() || p.dtype() != first.dtype() {
            return Err(Error::Model(format!(
                "Loop '{name}': a scan output is {} {} in one iteration and {} {} in another",
                first.dtype(),
                first.shape(),
                p.dtype(),
                p.shape()
            )));
        }
        bytes.extend(p.to_le_bytes());
    }
    let mut dims = vec![parts.len()];
    dims.extend(first.dims());
    Ok(Tensor::from_le_bytes(first.dtype(), dims, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::*;
    use crate::testutil::*;
    use crate::{decode, import, tensor};
    use sfumato_core::CpuDevice;

    fn staged(bytes: &[u8], inputs: &[(&str, Tensor)]) -> StagedRun {
        let m = decode(bytes).unwrap();
        let ins: HashMap<String, Tensor> = inputs
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        run(&m, &ImportOptions::default(), &ins, &mut CpuDevice).unwrap()
    }

    fn host_entries(r: &StagedRun) -> Vec<String> {
        r.profile
            .entries
            .iter()
            .filter(|e| e.kernel.starts_with("host:"))
            .map(|e| format!("{} {}", e.ops[0], e.kernel))
            .collect()
    }

    #[test]
    fn an_if_on_a_computed_condition_reads_it_back_and_runs_the_taken_branch() {
        let b = staged_if_model();
        // One graph cannot hold it: the error names the node and says how it runs.
        let e = import(&b, &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(&e, Error::RunTime(r) if r.index == 2 && r.op == "If"),
            "{e}"
        );
        assert!(e.to_string().contains("runs in stages"), "{e}");
        let r = staged(&b, &[("x", f32s(&[2], &[1.0, 2.0]))]);
        assert_eq!(r.outputs[0].to_f32_vec(), vec![2.0, 4.0]);
        assert_eq!(r.on_device, vec![true]);
        let r = staged(&b, &[("x", f32s(&[2], &[-1.0, -2.0]))]);
        assert_eq!(r.outputs[0].to_f32_vec(), vec![-3.0, -6.0]);
        // The sum and comparison ran first, then the If with its condition read back.
        assert_eq!(r.stages.len(), 3, "{:?}", r.stages);
        assert!(r.stages[0].on_device && r.stages[0].what.starts_with("nodes 0..2"));
        assert!(!r.stages[1].on_device && r.stages[1].what.contains("c read back"));
        assert!(r.stages[2].on_device && r.stages[2].what.starts_with("nodes 2..3"));
        assert_eq!(host_entries(&r).len(), 1, "{:?}", host_entries(&r));
    }

    #[test]
    fn a_loop_with_a_computed_trip_count_and_a_reshape_to_a_computed_shape() {
        // m = int(|n|) iterations of acc += x * i, then the scans reshaped to |shape|.
        let b = staged_loop_reshape_model();
        let r = staged(
            &b,
            &[
                ("x", f32s(&[2], &[1.0, -2.0])),
                ("n", f32s(&[], &[-3.0])),
                ("shape", f32s(&[1], &[-6.0])),
            ],
        );
        // acc: [0, 10] -> +0x -> +1x -> +2x; the scans hold acc before each add.
        assert_eq!(r.outputs[0].to_f32_vec(), vec![3.0, 4.0]);
        assert_eq!(r.outputs[1].dims(), &[6]);
        assert_eq!(
            r.outputs[1].to_f32_vec(),
            vec![0.0, 10.0, 0.0, 10.0, 1.0, 8.0]
        );
        let marks = host_entries(&r);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert!(marks[0].starts_with("Loop host: m read back"), "{marks:?}");
        assert!(
            marks[1].starts_with("Reshape host: scans, si read back"),
            "{marks:?}"
        );
    }

    #[test]
    fn non_zero_runs_on_the_host_between_device_stages() {
        // The positions of x > 0, as floats, doubled.
        let b = model(
            vec![
                node("Greater", &["x", "zero"], &["g"], vec![]),
                node("NonZero", &["g"], &["nz"], vec![]),
                node("Cast", &["nz"], &["f"], vec![cast_to(data_type::FLOAT)]),
                node("Mul", &["f", "two"], &["y"], vec![]),
            ],
            vec![
                tensor::to_proto(&f32s(&[], &[0.0]), "zero"),
                tensor::to_proto(&f32s(&[], &[2.0]), "two"),
            ],
            vec![vi("x", data_type::FLOAT, &[Ok(2), Ok(3)])],
            vec![vi("y", data_type::FLOAT, &[Ok(2), Err("k")])],
        );
        let r = staged(
            &b,
            &[("x", f32s(&[2, 3], &[0.0, 1.0, -1.0, 2.0, 0.0, 3.0]))],
        );
        assert_eq!(r.outputs[0].dims(), &[2, 3]);
        assert_eq!(
            r.outputs[0].to_f32_vec(),
            vec![0.0, 2.0, 2.0, 2.0, 0.0, 4.0]
        );
        assert_eq!(r.on_device, vec![true]);
        let on_device: Vec<bool> = r.stages.iter().map(|s| s.on_device).collect();
        assert_eq!(on_device, vec![true, false, true], "{:?}", r.stages);
        assert_eq!(
            host_entries(&r),
            vec!["NonZero host: NonZero computed on the host"]
        );
        // With no element above 0 the host step gives an empty result, and so does the stage.
        let r = staged(&b, &[("x", f32s(&[2, 3], &[0.0; 6]))]);
        assert_eq!(r.outputs[0].dims(), &[2, 0]);
    }

    #[test]
    fn a_loop_whose_body_needs_a_host_step_runs_iteration_by_iteration() {
        // Each iteration counts the non-zero elements of acc (a host step inside the body) and
        // adds that count to acc: acc = [0, 1] -> [1, 2] -> [3, 4].
        let b = staged_host_loop_model();
        let r = staged(
            &b,
            &[("n", f32s(&[], &[2.0])), ("a", f32s(&[2], &[0.0, 1.0]))],
        );
        assert_eq!(r.outputs[0].to_f32_vec(), vec![3.0, 4.0]);
        let hosts = host_entries(&r);
        assert!(
            hosts
                .iter()
                .any(|h| h.starts_with("Loop host: 2 iterations")),
            "{hosts:?}"
        );
        assert_eq!(
            hosts.iter().filter(|h| h.starts_with("NonZero")).count(),
            2,
            "{hosts:?}"
        );
    }

    #[test]
    fn a_loop_past_the_unrolling_caps_runs_from_the_host() {
        // 4,097 iterations: over the importer's 4,096 (MAX_LOOP_ITERATIONS), so not unrolled even with the count
        // known; the body runs once per iteration instead.
        let n = 4097usize;
        let r = staged(
            &staged_loop_reshape_model(),
            &[
                ("x", f32s(&[2], &[1.0, -2.0])),
                ("n", f32s(&[], &[n as f32])),
                ("shape", f32s(&[1], &[-2.0 * n as f32])),
            ],
        );
        // acc[0] = the sum of 0..n, exact in f32.
        assert_eq!(r.outputs[0].to_f32_vec()[0], (n * (n - 1) / 2) as f32);
        assert_eq!(r.outputs[1].dims(), &[2 * n]);
        let hosts = host_entries(&r);
        assert!(
            hosts
                .iter()
                .any(|h| h.starts_with(&format!("Loop host: {n} iterations"))),
            "{hosts:?}"
        );
        // (The trip count's read-back mark is taken back when the Loop runs from the host.)
        assert!(
            !hosts
                .iter()
                .any(|h| h.starts_with("Loop host: m read back")),
            "{hosts:?}"
        );
    }

    #[test]
    fn a_branch_may_output_an_outer_value_as_it_is() {
        // then: y = x (no node); else: y = x * 3.
        let then = GraphProto {
            name: "t".into(),
            output: vec![vi("x", data_type::FLOAT, &[Ok(2)])],
            ..Default::default()
        };
        let other = GraphProto {
            name: "e".into(),
            node: vec![node("Mul", &["x", "three"], &["r"], vec![])],
            output: vec![vi("r", data_type::FLOAT, &[Ok(2)])],
            ..Default::default()
        };
        let b = model(
            vec![
                node("ReduceSum", &["x"], &["s"], vec![ints_attr("keepdims", 0)]),
                node("Greater", &["s", "zero"], &["c"], vec![]),
                node(
                    "If",
                    &["c"],
                    &["y"],
                    vec![
                        graph_attr("then_branch", then),
                        graph_attr("else_branch", other),
                    ],
                ),
            ],
            vec![
                tensor::to_proto(&f32s(&[], &[0.0]), "zero"),
                tensor::to_proto(&f32s(&[], &[3.0]), "three"),
            ],
            vec![vi("x", data_type::FLOAT, &[Ok(2)])],
            vec![vi("y", data_type::FLOAT, &[Ok(2)])],
        );
        let r = staged(&b, &[("x", f32s(&[2], &[1.0, 2.0]))]);
        assert_eq!(r.outputs[0].to_f32_vec(), vec![1.0, 2.0]);
        let r = staged(&b, &[("x", f32s(&[2], &[-1.0, -2.0]))]);
        assert_eq!(r.outputs[0].to_f32_vec(), vec![-3.0, -6.0]);
    }
}
