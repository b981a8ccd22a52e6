//! The whole graph on the simulated chip, in cycles: the shared compile pipeline's fused groups
//! mapped onto the cube and the vector unit, with the layout transformations the cube's fractal
//! format needs placed as steps of their own.
//!
//! - A group anchored by a MatMul, Gemm or Conv2d (or an attention group, whose two products
//!   run on the cube) is a cube op: each product gets the scheduler's tiling
//!   ([`crate::tiling::choose`]); the group's other nodes are its epilogue, run on the vector
//!   unit on each block while it sits in the UB, as CANN fuses them: they cost vector cycles but
//!   no global-memory traffic. Unfused, each of them is a vector op of its own that reads and
//!   writes global memory, so fusion's gain shows in cycles.
//! - Every other group is a vector op: its inputs through MTE2 into the UB, its nodes on the
//!   vector unit, its outputs out through MTE3, double-buffered so the three overlap, over
//!   every core.
//! - Layouts: the cube reads A and B as fractals (NZ) and writes NZ. Weights are converted once
//!   when they are loaded; an activation the cube reads that is held as rows (ND) gets a
//!   `TransData ND->NZ` step first, and a cube result that an op other than an elementwise one
//!   reads (a reshape to heads, a softmax, a layer norm; elementwise ops, pooling and batch
//!   norm run on the fractal format as CANN runs them) a `TransData NZ->ND`. Each is a vector
//!   op with its cost, so a model whose cube ops feed each other directly pays none.
//!
//! Ops run one after another, each over all the cores; activations are fp16 (2 bytes) in global
//! memory.

use crate::chip::Chip;
use crate::tiling::{self, Cost, Engines, Problem, Schedule};
use serde::Serialize;
use sfumato_core::device::truncate;
use sfumato_core::op::{Op, UnaryOp};
use sfumato_core::plan::{external_inputs, GroupKind, Plan};
use sfumato_core::{Compiled, DType, Graph, NodeId, ValueId};
use std::collections::{HashMap, HashSet};

/// What ran an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// The cube (with a vector-unit epilogue).
    Cube,
    /// The vector unit alone.
    Vector,
    /// A layout transformation into or out of the cube's fractal format.
    Layout,
}

/// One op of the prediction.
#[derive(Clone, Debug, Serialize)]
pub struct OpCost {
    pub nodes: Vec<String>,
    pub ops: Vec<String>,
    pub unit: Unit,
    /// A short description: the kernel, or the transformation.
    pub kernel: String,
    pub start_cycle: f64,
    pub cost: Cost,
    pub flops: f64,
    /// The cube products' schedules (one for a matmul or conv, two for attention).
    pub schedules: Vec<Schedule>,
}

/// A graph's predicted run on a chip.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub chip: String,
    pub clock_mhz: f64,
    pub cores: u32,
    pub peak_flops: f64,
    pub ops: Vec<OpCost>,
    pub cycles: f64,
    pub flops: f64,
}

impl Prediction {
    pub fn seconds(&self) -> f64 {
        self.cycles / (self.clock_mhz * 1e6)
    }

    /// The chip's cube busy with useful work over the whole run: FLOPs over peak x time.
    pub fn utilization(&self) -> f64 {
        self.flops / (self.peak_flops * self.seconds()).max(f64::MIN_POSITIVE)
    }

    /// Cycles of the ops run by `unit`.
    pub fn cycles_of(&self, unit: Unit) -> f64 {
        self.ops
            .iter()
            .filter(|o| o.unit == unit)
            .map(|o| o.cost.cycles)
            .sum()
    }

    /// Busy cycles per engine over the run.
    pub fn engines(&self) -> Engines {
        let mut e = Engines::default();
        for o in &self.ops {
            e.add(&o.cost.engines);
        }
        e
    }

    /// The `n` ops with the most cycles, most first.
    pub fn top(&self, n: usize) -> Vec<&OpCost> {
        let mut v: Vec<&OpCost> = self.ops.iter().collect();
        v.sort_by(|a, b| b.cost.cycles.total_cmp(&a.cost.cycles));
        v.truncate(n);
        v
    }

    /// A text summary: totals, time per unit, the top ops.
    pub fn summary(&self, top: usize) -> String {
        let us = |c: f64| c / self.clock_mhz;
        let mut s = format!(
            "{}: {:.0} cycles = {:.3} ms at {} MHz; {:.2} GFLOP, {:.1} TFLOP/s, cube utilization \
             {:.1}% of {:.1} TFLOP/s peak\n",
            self.chip,
            self.cycles,
            self.seconds() * 1e3,
            self.clock_mhz,
            self.flops / 1e9,
            self.flops / self.seconds().max(f64::MIN_POSITIVE) / 1e12,
            100.0 * self.utilization(),
            self.peak_flops / 1e12
        );
        for unit in [Unit::Cube, Unit::Vector, Unit::Layout] {
            let n = self.ops.iter().filter(|o| o.unit == unit).count();
            let c = self.cycles_of(unit);
            s += &format!(
                "  {:<7} {:>4} ops {:>12.1} µs {:>5.1}%\n",
                format!("{unit:?}"),
                n,
                us(c),
                100.0 * c / self.cycles.max(1.0)
            );
        }
        s += &format!(
            "top {top} ops by cycles:\n{:<36} {:<22} {:>11} {:>6} {:>8}  bound\n",
            "nodes", "ops", "µs", "share", "cube"
        );
        for o in self.top(top) {
            s += &format!(
                "{:<36} {:<22} {:>11.1} {:>5.1}% {:>7.1}%  {}\n",
                truncate(&o.nodes.join("+"), 36),
                truncate(&o.ops.join("+"), 22),
                us(o.cost.cycles),
                100.0 * o.cost.cycles / self.cycles.max(1.0),
                100.0 * o.cost.utilization,
                o.cost.bound
            );
        }
        s
    }

    /// The per-engine timeline as Chrome-trace JSON (Perfetto): a track per engine (MTE2,
    /// MTE1, Cube, FixPipe, Vector, MTE3) beside the ops' own track, each engine's busy time
    /// on the busiest core within its op's span.
    pub fn engine_trace(&self) -> serde_json::Value {
        let us = |c: f64| c / self.clock_mhz;
        let mut events = vec![];
        let engines = Engines::default().named().map(|(name, _)| name);
        for (tid, name) in ["op"].iter().chain(&engines).enumerate() {
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                "args": { "name": name },
            }));
        }
        for o in &self.ops {
            let name = o.nodes.join("+");
            events.push(serde_json::json!({
                "name": name, "cat": format!("{:?}", o.unit), "ph": "X",
                "ts": us(o.start_cycle), "dur": us(o.cost.cycles), "pid": 1, "tid": 0,
                "args": { "ops": o.ops, "kernel": o.kernel, "cycles": o.cost.cycles,
                          "cube_utilization": o.cost.utilization, "bound": o.cost.bound },
            }));
            for (i, (engine, busy)) in o.cost.engines.named().iter().enumerate() {
                if *busy > 0.0 {
                    events.push(serde_json::json!({
                        "name": name, "cat": engine, "ph": "X", "ts": us(o.start_cycle),
                        "dur": us(busy.min(o.cost.cycles)), "pid": 1, "tid": i + 1,
                        "args": { "busy_cycles": busy },
                    }));
                }
            }
        }
        serde_json::json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": { "device": format!("npu-sim {}", self.chip), "cycles": self.cycles,
                           "clock_mhz": self.clock_mhz },
        })
    }
}

/// Bytes of one element of `d` in the chip's global memory (floats as fp16).
fn elem_bytes(d: DType) -> f64 {
    if d.is_float() {
        2.0
    } else {
        d.size_bytes() as f64
    }
}

fn value_bytes(g: &Graph, v: ValueId) -> f64 {
    g.shape(v).numel() as f64 * elem_bytes(g.dtype(v))
}

/// Vector-unit bytes of work per output element of `op` (fp32 lanes: 4 bytes a pass), and
/// the passes it makes.
fn vector_passes(op: &Op) -> f64 {
    match op {
        Op::Unary(u) => match u {
            UnaryOp::Relu
            | UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Clip { .. }
            | UnaryOp::LeakyRelu { .. } => 1.0,
            _ => 4.0,
        },
        Op::Binary(_) | Op::Where | Op::Cast { .. } | Op::BitCast { .. } => 1.0,
        Op::Softmax { .. } => 5.0,
        Op::LayerNorm { .. } => 6.0,
        Op::BatchNorm { .. } => 2.0,
        _ => 1.0,
    }
}

/// Vector work of a node in bytes: its passes over the larger of its input and its output.
fn vector_work(g: &Graph, n: NodeId) -> f64 {
    let node = g.node(n);
    let out: usize = node.outputs.iter().map(|&o| g.shape(o).numel()).sum();
    let inp: usize = node
        .inputs
        .iter()
        .map(|&i| g.shape(i).numel())
        .max()
        .unwrap_or(0);
    let window = match &node.op {
        Op::Gather { .. } | Op::GatherElements { .. } => {
            return 4.0 * out as f64;
        }
        Op::ConvTranspose2d(c) => {
            // Each output gathers (C / groups) x kh x kw / (stride_h x stride_w) products.
            let w = g.shape(node.inputs[1]);
            let per =
                w.0[0] / c.groups.max(1) * w.0[2] * w.0[3] / (c.stride[0] * c.stride[1]).max(1);
            return 4.0 * 2.0 * (out * per.max(1)) as f64;
        }
        Op::MatMul | Op::Gemm(_) => {
            // An integer product on the vector unit: K multiply-adds per output.
            let k = g.shape(node.inputs[0]).0.last().copied().unwrap_or(1);
            return 4.0 * 2.0 * (out * k.max(1)) as f64;
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
            return 4.0 * (out * p.kernel[0] * p.kernel[1]) as f64;
        }
        Op::Conv2d(_) => {
            // A depthwise conv on the vector unit: one multiply-add per weight per output.
            let w = g.shape(node.inputs[1]);
            2.0 * w.0[1..].iter().product::<usize>() as f64
        }
        _ => 1.0,
    };
    4.0 * vector_passes(&node.op) * (out.max(inp) as f64) * window
}

/// The tiles a vector op's bytes make on each core: the UB split in two (ping-pong), each
/// half holding a tile's input and output.
pub fn ub_tiles(chip: &Chip, bytes: f64) -> u64 {
    let per_core = bytes / chip.cores as f64;
    ((per_core / (chip.ub_bytes as f64 / 2.0)).ceil() as u64).max(1)
}

/// A vector op: `work` bytes through the vector unit, `inb` bytes in through MTE2 and `outb`
/// out through MTE3, split over every core, double-buffered.
pub fn vector_cost(chip: &Chip, work: f64, inb: f64, outb: f64) -> Cost {
    let cores = chip.cores as f64;
    let lat = chip.dma_latency_cycles as f64;
    let mte2_rate = chip
        .mte2_bytes_per_cycle
        .min(chip.l2_bytes_per_cycle / cores);
    let e = Engines {
        mte2: inb / cores / mte2_rate,
        vector: work / cores / chip.vector_bytes_per_cycle,
        mte3: outb / cores / chip.mte3_bytes_per_cycle,
        ..Default::default()
    };
    // Tiles through the UB, double-buffered: the engines overlap from tile to tile, and the
    // first tile's load and the last one's store do not.
    let core = e.mte2.max(e.vector).max(e.mte3) + 2.0 * lat;
    let memory = (inb + outb) / chip.memory_bytes_per_cycle();
    let bound = if memory > core {
        "memory"
    } else if e.vector >= e.mte2.max(e.mte3) {
        "vector"
    } else if e.mte2 >= e.mte3 {
        "MTE2"
    } else {
        "MTE3"
    };
    Cost {
        cycles: core.max(memory),
        engines: e,
        utilization: 0.0,
        global_bytes: inb + outb,
        bound,
    }
}

/// The cube problem of a MatMul, Gemm or Conv2d node (`None`: it runs on the vector unit,
/// as a depthwise conv does).
pub fn cube_problem(g: &Graph, n: NodeId) -> Option<Problem> {
    let node = g.node(n);
    if !g.dtype(node.outputs[0]).is_float() {
        return None;
    }
    let dims = |i: usize| g.shape(node.inputs[i]).0.clone();
    match &node.op {
        Op::MatMul => {
            let (a, b) = (dims(0), dims(1));
            let k = *a.last()?;
            let m = if a.len() >= 2 { a[a.len() - 2] } else { 1 };
            let nn = if b.len() >= 2 { *b.last()? } else { 1 };
            let out = g.shape(node.outputs[0]).numel();
            let batch = out / (m * nn).max(1);
            if b.len() <= 2 || b[..b.len() - 2].iter().all(|&d| d == 1) {
                // One B for every batch (a weight): the batches are rows of one product.
                return Some(Problem::matmul(1, (batch * m) as u64, nn as u64, k as u64));
            }
            Some(Problem::matmul(batch as u64, m as u64, nn as u64, k as u64))
        }
        Op::Gemm(gm) => {
            let (a, b) = (dims(0), dims(1));
            let (m, k) = if gm.trans_a {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            let nn = if gm.trans_b { b[0] } else { b[1] };
            Some(Problem::matmul(1, m as u64, nn as u64, k as u64))
        }
        Op::Conv2d(c) => {
            let (x, w) = (dims(0), dims(1));
            let o = g.shape(node.outputs[0]).0.clone();
            let (cog, cig) = (w[0] / c.groups, w[1]);
            if c.groups > 1 && cig == 1 && cog == 1 {
                return None; // depthwise: the vector unit
            }
            let k = cig * w[2] * w[3];
            let pixels = o[2] * o[3];
            let expand = ((w[2] * w[3]) as f64 / (c.stride[0] * c.stride[1]) as f64).max(1.0);
            let (batch, m) = if c.groups == 1 {
                (1, x[0] * pixels)
            } else {
                (x[0] * c.groups, pixels)
            };
            Some(Problem {
                batch: batch as u64,
                m: m as u64,
                n: cog as u64,
                k: k as u64,
                a_expand: expand.round() as u64,
            })
        }
        _ => None,
    }
}

/// Ops that run on the cube's fractal format as they find it (CANN runs them on NC1HWC0 /
/// NZ): elementwise ones, pooling and batch norm over channels.
fn keeps_format(op: &Op) -> bool {
    sfumato_core::plan::is_elementwise(op)
        || matches!(
            op,
            Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::GlobalAvgPool | Op::BatchNorm { .. }
        )
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Layout {
    Nd,
    Nz,
}

/// Predict a compiled graph on `chip`. `tilings` may fix a node's tiling (else the scheduler
/// chooses); the chosen ones are returned per node, for the functional simulation to follow.
pub fn predict(
    chip: &Chip,
    c: &Compiled,
    fixed: &HashMap<NodeId, tiling::Tiling>,
) -> crate::Result<(Prediction, HashMap<NodeId, tiling::Tiling>)> {
    predict_with(chip, c, fixed, false)
}

/// [`predict`], or with `naive_layouts` the layouts as a framework without layout propagation
/// places them: every cube op converts its activations to fractals and its results back to
/// rows, whoever reads them (what placing the transforms saves is the difference).
pub fn predict_with(
    chip: &Chip,
    c: &Compiled,
    fixed: &HashMap<NodeId, tiling::Tiling>,
    naive_layouts: bool,
) -> crate::Result<(Prediction, HashMap<NodeId, tiling::Tiling>)> {
    let g = &c.graph;
    let plan: &Plan = &c.plan;
    let mut ops: Vec<OpCost> = vec![];
    let mut chosen = HashMap::new();
    // Which layouts each value exists in (absent: rows, as graph inputs and weights are).
    let mut layouts: HashMap<ValueId, HashSet<Layout>> = HashMap::new();
    let has = |l: &HashMap<ValueId, HashSet<Layout>>, v: ValueId, want: Layout| {
        l.get(&v).map_or(want == Layout::Nd, |s| s.contains(&want))
    };
    let is_const = |v: ValueId| {
        g.value(v)
            .producer
            .is_some_and(|p| matches!(g.node(p).op, Op::Constant(_)))
    };
    let base = |v: ValueId| plan.views.get(&v).map(|x| x.0).unwrap_or(v);
    let transform = |ops: &mut Vec<OpCost>,
                     layouts: &mut HashMap<ValueId, HashSet<Layout>>,
                     v: ValueId,
                     to: Layout,
                     force: bool| {
        if is_const(v) || (!force && has(layouts, v, to)) {
            return;
        }
        let bytes = value_bytes(g, v);
        let cost = vector_cost(chip, bytes * 2.0, bytes, bytes);
        ops.push(OpCost {
            nodes: vec![format!(
                "{}.{}",
                g.value(v).name,
                if to == Layout::Nz { "nz" } else { "nd" }
            )],
            ops: vec!["TransData".into()],
            unit: Unit::Layout,
            kernel: if to == Layout::Nz {
                "TransData ND->NZ"
            } else {
                "TransData NZ->ND"
            }
            .into(),
            start_cycle: 0.0,
            cost,
            flops: 0.0,
            schedules: vec![],
        });
        layouts
            .entry(v)
            .or_insert_with(|| HashSet::from([Layout::Nd]))
            .insert(to);
    };
    for grp in &plan.groups {
        if grp.kind == GroupKind::Constant {
            continue;
        }
        let names: Vec<String> = grp.nodes.iter().map(|&n| g.node(n).name.clone()).collect();
        let opnames: Vec<String> = grp
            .nodes
            .iter()
            .map(|&n| g.node(n).op.name().to_string())
            .collect();
        let ext = external_inputs(g, &plan.views, &grp.nodes);
        let cube_nodes: Vec<(NodeId, Problem)> = grp
            .nodes
            .iter()
            .filter_map(|&n| cube_problem(g, n).map(|p| (n, p)))
            .collect();
        if grp.kind == GroupKind::View {
            // A view that must exist in memory: free where it aliases its base, else a copy.
            let out = grp.outputs.first().copied();
            let strided = out.is_some_and(|o| {
                plan.view_of.get(&o).is_some_and(|(b, v)| {
                    !v.is_contiguous(g.shape(*b)) || g.shape(*b).numel() != g.shape(o).numel()
                })
            });
            for &e in &ext {
                transform(&mut ops, &mut layouts, e, Layout::Nd, false);
            }
            if strided {
                let bytes: f64 = grp.outputs.iter().map(|&o| value_bytes(g, o)).sum();
                ops.push(OpCost {
                    nodes: names,
                    ops: opnames,
                    unit: Unit::Vector,
                    kernel: "copy".into(),
                    start_cycle: 0.0,
                    cost: vector_cost(chip, 0.0, bytes, bytes),
                    flops: 0.0,
                    schedules: vec![],
                });
            }
            continue;
        }
        if cube_nodes.is_empty() {
            // A vector op: elementwise chains keep the fractal layout of their inputs; other
            // ops read rows.
            let elementwise = grp.nodes.iter().all(|&n| keeps_format(&g.node(n).op));
            let nz = elementwise
                && ext
                    .iter()
                    .any(|&e| has(&layouts, e, Layout::Nz) && !has(&layouts, e, Layout::Nd));
            // Inputs in the other layout are converted (a broadcast operand, as a bias row, is
            // read as it is).
            let out_numel = grp.outputs.first().map_or(0, |&o| g.shape(o).numel());
            for &e in &ext {
                if is_const(e) {
                    continue;
                }
                if !nz {
                    transform(&mut ops, &mut layouts, e, Layout::Nd, false);
                } else if g.shape(e).numel() == out_numel {
                    transform(&mut ops, &mut layouts, e, Layout::Nz, false);
                }
            }
            let work: f64 = grp.nodes.iter().map(|&n| vector_work(g, n)).sum();
            // A gather reads the rows it gathers, not its whole table.
            let read_of = |e: ValueId| -> f64 {
                let gathered: Option<f64> = grp
                    .nodes
                    .iter()
                    .filter(|&&n| {
                        matches!(g.node(n).op, Op::Gather { .. } | Op::GatherElements { .. })
                            && base(g.node(n).inputs[0]) == e
                    })
                    .map(|&n| value_bytes(g, g.node(n).outputs[0]))
                    .reduce(|a, b| a + b);
                gathered.map_or(value_bytes(g, e), |b| b.min(value_bytes(g, e)))
            };
            let inb: f64 = ext.iter().map(|&e| read_of(e)).sum();
            let outb: f64 = grp.outputs.iter().map(|&o| value_bytes(g, o)).sum();
            ops.push(OpCost {
                nodes: names,
                ops: opnames,
                unit: Unit::Vector,
                kernel: format!(
                    "vector {}, {} UB tiles a core",
                    format!("{:?}", grp.kind).to_lowercase(),
                    ub_tiles(chip, inb + outb)
                ),
                start_cycle: 0.0,
                cost: vector_cost(chip, work, inb, outb),
                flops: 0.0,
                schedules: vec![],
            });
            let l = if nz { Layout::Nz } else { Layout::Nd };
            for &o in &grp.outputs {
                layouts.insert(o, HashSet::from([l]));
            }
            continue;
        }
        // A cube op: its products' operands in fractals first.
        let cube_set: HashSet<NodeId> = cube_nodes.iter().map(|x| x.0).collect();
        let made: HashSet<ValueId> = grp
            .nodes
            .iter()
            .flat_map(|&n| g.node(n).outputs.clone())
            .collect();
        for &(n, _) in &cube_nodes {
            let node = g.node(n);
            let operands = if matches!(node.op, Op::Conv2d(_)) {
                1
            } else {
                2
            };
            for &i in node.inputs.iter().take(operands) {
                if !made.contains(&i) {
                    transform(&mut ops, &mut layouts, base(i), Layout::Nz, naive_layouts);
                }
            }
        }
        // The epilogue: vector work per output element of the anchor, in the UB.
        let epilogue: Vec<NodeId> = grp
            .nodes
            .iter()
            .copied()
            .filter(|n| !cube_set.contains(n))
            .collect();
        let mut total = Cost::default();
        let mut largest = 0.0;
        let mut schedules = vec![];
        let mut flops = 0.0;
        let single = cube_nodes.len() == 1;
        for &(n, p) in &cube_nodes {
            let node = g.node(n);
            if g.dtype(node.outputs[0]) == DType::F64 {
                return Err(crate::SimError::Unmapped {
                    chip: chip.name.clone(),
                    node: node.name.clone(),
                    op: node.op.name().into(),
                    inputs: g.describe_node_inputs(node),
                    msg: "the cube multiplies fp16 (and int8); an f64 product has no mapping"
                        .into(),
                });
            }
            let epi = if single {
                // Epilogue operands from global memory (a residual, a bias) through MTE2,
                // per output element of the product.
                let extra: f64 = ext
                    .iter()
                    .filter(|e| !g.node(n).inputs.iter().any(|&i| base(i) == **e))
                    .map(|&e| value_bytes(g, e))
                    .sum();
                let out = g.shape(g.node(n).outputs[0]).numel().max(1) as f64;
                tiling::Epilogue {
                    vector_bytes_per_elem: epilogue
                        .iter()
                        .map(|&e| 4.0 * vector_passes(&g.node(e).op))
                        .sum::<f64>(),
                    read_bytes_per_elem: extra / out,
                }
            } else {
                tiling::Epilogue::NONE
            };
            let s = match fixed.get(&n) {
                Some(t) => {
                    let t = &t.resolved(chip, &p);
                    tiling::check_fits(chip, &format!("node '{}' ({})", g.node(n).name, p), t)?;
                    tiling::cost(chip, &p, t, &epi)
                }
                None => tiling::choose(chip, &p, &epi),
            };
            chosen.insert(n, s.tiling);
            flops += p.flops();
            add_cost(&mut total, &s.cost, &mut largest);
            schedules.push(s);
        }
        if !single {
            // Attention: softmax and scaling on the vector unit over the scores in the UB.
            let work: f64 = epilogue.iter().map(|&e| vector_work(g, e)).sum();
            add_cost(&mut total, &vector_cost(chip, work, 0.0, 0.0), &mut largest);
        }
        let ideal: f64 = flops / 2.0 / chip.macs_per_cycle() as f64 / chip.cores as f64;
        total.utilization = ideal / total.cycles.max(1.0);
        ops.push(OpCost {
            nodes: names,
            ops: opnames,
            unit: Unit::Cube,
            kernel: schedules
                .iter()
                .map(|s| s.tiling.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
            start_cycle: 0.0,
            cost: total,
            flops,
            schedules,
        });
        for &o in &grp.outputs {
            layouts.insert(o, HashSet::from([Layout::Nz]));
            if naive_layouts {
                transform(&mut ops, &mut layouts, o, Layout::Nd, true);
                layouts.insert(o, HashSet::from([Layout::Nd]));
            }
        }
    }
    // The graph's outputs leave as rows.
    for &o in g.outputs() {
        let b = base(o);
        if !has(&layouts, b, Layout::Nd) {
            transform(&mut ops, &mut layouts, b, Layout::Nd, false);
        }
    }
    let mut t = 0.0;
    for o in &mut ops {
        o.start_cycle = t;
        t += o.cost.cycles;
    }
    let flops = ops.iter().map(|o| o.flops).sum();
    Ok((
        Prediction {
            chip: chip.name.clone(),
            clock_mhz: chip.clock_mhz,
            cores: chip.cores,
            peak_flops: chip.peak_flops(),
            ops,
            cycles: t,
            flops,
        },
        chosen,
    ))
}

/// Add a component's cost to an op's (attention: two products and the vector work between);
/// the op's bound is its largest component's.
fn add_cost(total: &mut Cost, c: &Cost, largest: &mut f64) {
    total.cycles += c.cycles;
    total.engines.add(&c.engines);
    total.global_bytes += c.global_bytes;
    if c.cycles >= *largest {
        *largest = c.cycles;
        total.bound = c.bound;
    }
}
