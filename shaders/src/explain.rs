//! What a plan costs, without a device: dispatches, bytes kernels read and write, and the peak
//! memory of a run that frees each value after its last reader (the memory plan).

use crate::fused::{generate, GroupKernels};
use crate::options::LowerOptions;
use crate::Error;
use crate::Lowered;
use serde::Serialize;
use sfumato_core::plan::{GroupKind, Plan};
use sfumato_core::{Graph, Op, ValueId};
use std::borrow::Borrow;
use std::collections::HashMap;

/// Totals of a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Kernel dispatches of one run.
    pub dispatches: usize,
    /// Bytes every kernel reads (each bound input, once) and writes.
    pub bytes_moved: u64,
    /// Weights plus the largest set of values alive at once.
    pub peak_bytes: u64,
    /// Constants (weights), resident for the whole run.
    pub weight_bytes: u64,
    /// The largest set of non-constant values alive at once.
    pub largest_live_bytes: u64,
}

/// One group as `explain` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupInfo {
    pub index: usize,
    pub kind: GroupKind,
    pub label: String,
    pub nodes: Vec<String>,
    pub kernels: Vec<String>,
    pub dispatches: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// Bytes a value takes on the device (4 per element: i64 as i32, and f16 as f32 on a device
/// without f16 storage; [`summarize_with`] takes a device's own count).
pub fn device_bytes(g: &Graph, v: ValueId) -> u64 {
    g.shape(v).numel() as u64 * 4
}

/// Lower every group of a plan with `opts` and sum it up (a device's own lowering, its tuned
/// variants included, is summed up by [`summarize`]).
pub fn explain(
    g: &Graph,
    plan: &Plan,
    opts: &LowerOptions,
) -> Result<(Vec<GroupInfo>, Totals, Vec<GroupKernels>), Error> {
    let lowered = plan
        .groups
        .iter()
        .map(|group| generate(g, plan, group, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let (infos, totals) = summarize(g, plan, &lowered);
    Ok((infos, totals, lowered))
}

/// The name a step of copy commands ([`Lowered::Copies`]) has in profiles and summaries.
pub const COPY_STEP: &str = "buffer_copy";

/// Sum up a lowered plan: one [`GroupInfo`] per group (`lowered[i]` is group `i`'s kernels)
/// and the totals.
pub fn summarize<K: Borrow<GroupKernels>>(
    g: &Graph,
    plan: &Plan,
    lowered: &[K],
) -> (Vec<GroupInfo>, Totals) {
    summarize_with(g, plan, lowered, &|v| device_bytes(g, v))
}

/// [`summarize`] with the device's bytes of each value (an f16 one stored as f16 takes 2 an
/// element).
pub fn summarize_with<K: Borrow<GroupKernels>>(
    g: &Graph,
    plan: &Plan,
    lowered: &[K],
    device_bytes: &dyn Fn(ValueId) -> u64,
) -> (Vec<GroupInfo>, Totals) {
    let mut infos = Vec::new();
    let mut totals = Totals::default();
    for (index, (group, gk)) in plan.groups.iter().zip(lowered).enumerate() {
        let gk: &GroupKernels = gk.borrow();
        let kernels: Vec<String> = match &gk.lowered {
            Lowered::Kernels(ks) => ks
                .iter()
                .filter(|k| !k.workgroups.contains(&0))
                .map(|k| k.name.clone())
                .collect(),
            // The copies of a step are one entry (one pass of copy commands).
            Lowered::Copies(rs) if !rs.is_empty() => vec![COPY_STEP.to_string()],
            _ => Vec::new(),
        };
        let runs = !kernels.is_empty();
        let bytes_read: u64 = if runs {
            gk.inputs.iter().map(|&v| device_bytes(v)).sum()
        } else {
            0
        };
        let bytes_written: u64 = if runs {
            gk.outputs.iter().map(|&v| device_bytes(v)).sum()
        } else {
            0
        };
        totals.dispatches += kernels.len();
        totals.bytes_moved += bytes_read + bytes_written;
        infos.push(GroupInfo {
            index,
            kind: group.kind,
            label: gk.label.clone(),
            nodes: group
                .nodes
                .iter()
                .map(|&n| g.node(n).name.clone())
                .collect(),
            dispatches: kernels.len(),
            kernels,
            bytes_read,
            bytes_written,
        });
    }
    let (weights, live) = memory_with(g, lowered, device_bytes);
    totals.weight_bytes = weights;
    totals.largest_live_bytes = live;
    totals.peak_bytes = weights + live;
    (infos, totals)
}

/// Weight bytes and the largest live set of a run of `steps` in order: each value is allocated
/// when its group runs (graph inputs at the start) and freed after its last reader; an alias
/// shares its base's memory and keeps it alive.
pub fn memory<K: Borrow<GroupKernels>>(g: &Graph, steps: &[K]) -> (u64, u64) {
    memory_with(g, steps, &|v| device_bytes(g, v))
}

/// [`memory`] with the device's bytes of each value.
pub fn memory_with<K: Borrow<GroupKernels>>(
    g: &Graph,
    steps: &[K],
    device_bytes: &dyn Fn(ValueId) -> u64,
) -> (u64, u64) {
    let n = g.values().len();
    let mut owner: Vec<usize> = (0..n).collect();
    let mut weights = 0u64;
    for s in steps {
        let s: &GroupKernels = s.borrow();
        match s.lowered {
            Lowered::Alias => {
                if let (Some(&o), Some(&i)) = (s.outputs.first(), s.inputs.first()) {
                    owner[o.index()] = owner[i.index()];
                }
            }
            Lowered::Constant => {
                weights += s.outputs.iter().map(|&o| device_bytes(o)).sum::<u64>();
            }
            Lowered::Copies(_) => {}
            Lowered::Kernels(_) => {
                if let (Some(v), Some(&o)) = (s.inplace, s.outputs.first()) {
                    owner[o.index()] = owner[v.index()];
                }
            }
        }
    }
    let is_const: Vec<bool> = g
        .values()
        .iter()
        .map(|v| {
            v.producer
                .is_some_and(|p| matches!(g.node(p).op, Op::Constant(_)))
        })
        .collect();
    // Last step reading each owner (usize::MAX: a graph output, alive to the end).
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (si, s) in steps.iter().enumerate() {
        let s: &GroupKernels = s.borrow();
        for &i in s.inputs.iter().chain(s.outputs.iter()) {
            let o = owner[i.index()];
            let e = last.entry(o).or_insert(si);
            *e = (*e).max(si);
        }
    }
    for &o in g.outputs() {
        last.insert(owner[o.index()], usize::MAX);
    }
    let mut live = 0u64;
    for &i in g.inputs() {
        live += device_bytes(i);
    }
    let mut peak = live;
    let mut alive: Vec<usize> = g.inputs().iter().map(|v| v.index()).collect();
    for (si, s) in steps.iter().enumerate() {
        let s: &GroupKernels = s.borrow();
        if let Lowered::Kernels(_) = s.lowered {
            for &o in &s.outputs {
                if owner[o.index()] == o.index() && !is_const[o.index()] {
                    live += device_bytes(o);
                    alive.push(o.index());
                }
            }
        }
        peak = peak.max(live);
        alive.retain(|&v| {
            let done = last.get(&v).is_none_or(|&l| l <= si);
            if done {
                live -= device_bytes(ValueId(v as u32));
            }
            !done
        });
    }
    (weights, peak)
}

/// Gives each group of `record` (made from the same plan) its kernels' WGSL, bytes and dispatch
/// count from the lowering, as `explain` and a device's preparation sum them up.
pub fn fill_record<K: Borrow<GroupKernels>>(
    record: &mut sfumato_core::RunRecord,
    infos: &[GroupInfo],
    kernels: &[K],
) -> Result<(), sfumato_core::Error> {
    use sfumato_core::record::KernelRecord;
    for (i, (info, gk)) in infos.iter().zip(kernels).enumerate() {
        let ks = match &gk.borrow().lowered {
            Lowered::Kernels(ks) => ks
                .iter()
                .map(|k| KernelRecord {
                    name: k.name.clone(),
                    source: k.wgsl.clone(),
                })
                .collect(),
            _ => vec![],
        };
        record.set_group_kernels(i, &info.label, ks, (info.bytes_read, info.bytes_written))?;
        record.groups[i].dispatches = info.dispatches;
    }
    Ok(())
}
