//! A saved run: the graph a device ran, its fused groups (with their kernels' source where the
//! device generates any), the profile and a summary of the outputs, in one serialisable record.
//!
//! `sfumato run --save-run FILE` writes one as JSON and the viewer (`sfumato view FILE`) reads
//! it; the viewer also builds one itself when it runs a model live. The record is device-neutral:
//! a device that generates no kernels (the CPU reference, the NPU simulator) leaves
//! [`GroupRecord::kernels`] empty, and a device that runs one kernel per op gives one group per
//! node.

use crate::plan::{GroupKind, Plan};
use crate::{Error, Graph, Op, Profile, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The format's version: a reader refuses a record of another.
pub const RUN_RECORD_VERSION: u32 = 1;

/// One value of the graph: an edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueRecord {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The node that makes it (its index in [`RunRecord::nodes`]); `None` for graph inputs.
    pub producer: Option<usize>,
}

/// One node: its op, its attributes as text, and the values it reads and writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub op: String,
    /// The op's attributes (`axis: 1`, `stride: [2, 2]`, ...), or a constant's dtype and shape.
    pub attributes: String,
    /// Indices into [`RunRecord::values`].
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// The group that computes it (its index in [`RunRecord::groups`]).
    pub group: Option<usize>,
}

/// One kernel a group dispatches, with its generated source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub name: String,
    /// WGSL for the wgpu device.
    pub source: String,
}

/// Nodes that share one kernel (or, for views and constants, none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// `matmul`, `conv`, `elementwise`, `attention`, ... (the plan's group kind).
    pub kind: String,
    /// What the device calls it (its kernels' template), or the ops joined.
    pub label: String,
    /// Indices into [`RunRecord::nodes`], the anchor first.
    pub nodes: Vec<usize>,
    pub kernels: Vec<KernelRecord>,
    pub dispatches: usize,
    /// Bytes the group's kernels bind for reading and writing, counted from the plan.
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// A graph output: its shape and a summary of its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The first values (at most [`OutputRecord::HEAD`]).
    pub head: Vec<f64>,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl OutputRecord {
    /// How many values [`OutputRecord::head`] keeps.
    pub const HEAD: usize = 16;

    pub fn of(name: &str, t: &Tensor) -> OutputRecord {
        let v = t.to_f64_vec();
        let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let (min, max, mean) = if finite.is_empty() {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            (
                finite.iter().copied().fold(f64::INFINITY, f64::min),
                finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                finite.iter().sum::<f64>() / finite.len() as f64,
            )
        };
        OutputRecord {
            name: name.to_string(),
            dtype: format!("{:?}", t.dtype()),
            shape: t.dims().to_vec(),
            head: v.iter().copied().take(Self::HEAD).collect(),
            min,
            max,
            mean,
        }
    }
}

/// A whole run, as the CLI saves it and the viewer opens it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    /// The model's name (a zoo name or a file name).
    pub model: String,
    /// The device's name (the adapter for wgpu).
    pub device: String,
    /// Whether the run fused ops into shared kernels.
    pub fused: bool,
    pub values: Vec<ValueRecord>,
    pub nodes: Vec<NodeRecord>,
    pub groups: Vec<GroupRecord>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub profile: Profile,
    pub results: Vec<OutputRecord>,
}

/// A node's attributes as text: the op's fields, with a constant shown by dtype and shape (not
/// its data).
pub fn attributes(op: &Op) -> String {
    match op {
        Op::Constant(t) => format!("{:?} {:?}", t.dtype(), t.dims()),
        other => {
            let full = format!("{other:?}");
            // `Conv2d(Conv2d { stride: .. })` -> `Conv2d { stride: .. }`; unit ops have none.
            let inner = match (full.find('('), full.ends_with(')')) {
                (Some(i), true) => full[i + 1..full.len() - 1].to_string(),
                _ => full,
            };
            if inner == op.name() {
                String::new()
            } else {
                inner
            }
        }
    }
}

impl RunRecord {
    /// The record of `graph` as `plan` groups it (`None`: one group per node, as a device that
    /// does not fuse runs it), with `profile` and the run's outputs. Kernels and byte counts are
    /// the device's to add ([`RunRecord::set_group_kernels`]).
    pub fn new(
        model: &str,
        graph: &Graph,
        plan: Option<&Plan>,
        profile: Profile,
        outputs: &[Tensor],
    ) -> RunRecord {
        let values = graph
            .values()
            .iter()
            .map(|v| ValueRecord {
                name: v.name.clone(),
                dtype: format!("{:?}", v.dtype),
                shape: v.shape.dims().to_vec(),
                producer: v.producer.map(|n| n.index()),
            })
            .collect();
        let mut nodes: Vec<NodeRecord> = graph
            .nodes()
            .iter()
            .map(|n| NodeRecord {
                name: n.name.clone(),
                op: n.op.name().to_string(),
                attributes: attributes(&n.op),
                inputs: n.inputs.iter().map(|v| v.index()).collect(),
                outputs: n.outputs.iter().map(|v| v.index()).collect(),
                group: None,
            })
            .collect();
        let groups: Vec<GroupRecord> = match plan {
            Some(p) => p
                .groups
                .iter()
                .map(|g| {
                    let ops: Vec<&str> = g.nodes.iter().map(|n| graph.node(*n).op.name()).collect();
                    GroupRecord {
                        kind: kind_name(g.kind),
                        label: ops.join("+"),
                        nodes: g.nodes.iter().map(|n| n.index()).collect(),
                        kernels: vec![],
                        dispatches: 0,
                        bytes_read: 0,
                        bytes_written: 0,
                    }
                })
                .collect(),
            None => graph
                .nodes()
                .iter()
                .map(|n| GroupRecord {
                    kind: if matches!(n.op, Op::Constant(_)) {
                        "constant".into()
                    } else {
                        "single".into()
                    },
                    label: n.op.name().to_string(),
                    nodes: vec![n.id.index()],
                    kernels: vec![],
                    dispatches: 0,
                    bytes_read: 0,
                    bytes_written: 0,
                })
                .collect(),
        };
        for (gi, g) in groups.iter().enumerate() {
            for &n in &g.nodes {
                nodes[n].group = Some(gi);
            }
        }
        let results = graph
            .outputs()
            .iter()
            .zip(outputs)
            .map(|(v, t)| OutputRecord::of(&graph.value(*v).name, t))
            .collect();
        RunRecord {
            version: RUN_RECORD_VERSION,
            model: model.to_string(),
            device: profile.device.clone(),
            fused: plan.is_some_and(|p| p.fused),
            values,
            nodes,
            groups,
            inputs: graph.inputs().iter().map(|v| v.index()).collect(),
            outputs: graph.outputs().iter().map(|v| v.index()).collect(),
            profile,
            results,
        }
    }

    /// Gives group `index` the kernels a device generated for it and the bytes they bind.
    pub fn set_group_kernels(
        &mut self,
        index: usize,
        label: &str,
        kernels: Vec<KernelRecord>,
        bytes: (u64, u64),
    ) -> Result<()> {
        let n = self.groups.len();
        let g = self
            .groups
            .get_mut(index)
            .ok_or_else(|| Error::Record(format!("no group {index} (it has {n})")))?;
        g.label = label.to_string();
        g.dispatches = kernels.len();
        g.kernels = kernels;
        (g.bytes_read, g.bytes_written) = bytes;
        Ok(())
    }

    /// The record as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Record(e.to_string()))
    }

    /// A record from JSON, checked: its version, and every index in range.
    pub fn from_json(text: &str) -> Result<RunRecord> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Record(format!("not a Sfumato run record: {e}")))?;
        // The version first: a record of another version may differ in any field.
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(n) if n != RUN_RECORD_VERSION as u64 => {
                return Err(Error::Record(format!(
                    "version {n} (this build reads version {RUN_RECORD_VERSION})"
                )))
            }
            Some(_) => {}
            None => return Err(Error::Record("not a Sfumato run record: no version".into())),
        }
        let r: RunRecord = serde_json::from_value(v)
            .map_err(|e| Error::Record(format!("not a Sfumato run record: {e}")))?;
        r.check()?;
        Ok(r)
    }

    /// Every index in range and the version known, so a reader can index without checking.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Record(what));
        if self.version != RUN_RECORD_VERSION {
            return bad(format!(
                "version {} (this build reads version {RUN_RECORD_VERSION})",
                self.version
            ));
        }
        let (nv, nn, ng) = (self.values.len(), self.nodes.len(), self.groups.len());
        for v in &self.values {
            if v.producer.is_some_and(|p| p >= nn) {
                return bad(format!(
                    "value '{}' made by node {:?} of {nn}",
                    v.name, v.producer
                ));
            }
        }
        for n in &self.nodes {
            if let Some(v) = n.inputs.iter().chain(&n.outputs).find(|&&v| v >= nv) {
                return bad(format!("node '{}' names value {v} of {nv}", n.name));
            }
            if n.group.is_some_and(|g| g >= ng) {
                return bad(format!("node '{}' in group {:?} of {ng}", n.name, n.group));
            }
        }
        for (gi, g) in self.groups.iter().enumerate() {
            if let Some(n) = g.nodes.iter().find(|&&n| n >= nn) {
                return bad(format!("group {gi} names node {n} of {nn}"));
            }
        }
        if let Some(v) = self.inputs.iter().chain(&self.outputs).find(|&&v| v >= nv) {
            return bad(format!("graph input or output names value {v} of {nv}"));
        }
        Ok(())
    }

    /// Node index by name.
    pub fn node_index(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect()
    }

    /// Per group, the profile's time that covers its nodes (ns), and the entries' simulated
    /// cycles where a cycle model made them. An entry counts towards the group of its first node.
    pub fn group_times(&self) -> Vec<GroupTime> {
        let index = self.node_index();
        let mut out = vec![GroupTime::default(); self.groups.len()];
        for e in &self.profile.entries {
            let Some(g) = e
                .nodes
                .iter()
                .find_map(|n| index.get(n.as_str()).and_then(|&i| self.nodes[i].group))
            else {
                continue;
            };
            let t = &mut out[g];
            t.ns += e.duration_ns;
            t.entries += 1;
            if let Some(s) = &e.simulated {
                t.cycles = Some(t.cycles.unwrap_or(0) + s.cycles);
                t.cube_utilization = Some(s.cube_utilization);
            }
        }
        out
    }
}

/// What a profile says of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupTime {
    pub ns: u64,
    pub entries: usize,
    pub cycles: Option<u64>,
    pub cube_utilization: Option<f64>,
}

/// The plan's name for a group kind (`matmul`, `layer_norm`, ...).
pub fn kind_name(k: GroupKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{k:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, PlanOptions};
    use crate::{CpuDevice, DType, Device};

    fn small() -> Graph {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [2, 3]);
        let w = g
            .constant(Tensor::from_f32([3, 4], vec![0.5; 12]).unwrap())
            .unwrap();
        let y = g.matmul(x, w).unwrap();
        let r = g.relu(y).unwrap();
        g.set_outputs(&[r]).unwrap();
        g
    }

    #[test]
    fn a_record_round_trips_and_groups_its_nodes() {
        let g = small();
        let x = Tensor::from_f32([2, 3], vec![1.0, -2.0, 3.0, 0.5, 0.5, 0.5]).unwrap();
        let out = CpuDevice.run(&g, &[x]).unwrap();
        let p = plan(&g, &PlanOptions::default());
        let mut r = RunRecord::new("small", &g, Some(&p), out.profile.clone(), &out.outputs);
        let mm = r.nodes.iter().position(|n| n.op == "MatMul").unwrap();
        let relu = r.nodes.iter().position(|n| n.op == "Relu").unwrap();
        assert_eq!(r.nodes[mm].group, r.nodes[relu].group, "matmul + relu fuse");
        let gi = r.nodes[mm].group.unwrap();
        r.set_group_kernels(
            gi,
            "matmul",
            vec![KernelRecord {
                name: "k".into(),
                source: "fn main() {}".into(),
            }],
            (10, 20),
        )
        .unwrap();
        assert!(r.set_group_kernels(99, "x", vec![], (0, 0)).is_err());
        let back = RunRecord::from_json(&r.to_json().unwrap()).unwrap();
        assert_eq!(back.nodes, r.nodes);
        assert_eq!(back.groups, r.groups);
        assert_eq!(back.results, r.results);
        assert_eq!(back.results[0].shape, vec![2, 4]);
        assert_eq!(back.results[0].head[0], 1.0);
        assert_eq!(back.profile.entries.len(), r.profile.entries.len());
        let times = back.group_times();
        assert!(
            times[gi].entries >= 1,
            "the CPU's matmul entry counts for its group"
        );
        assert_eq!(attributes(&g.nodes()[0].op), "F32 [3, 4]");
    }

    #[test]
    fn a_bad_record_is_an_error_not_a_panic() {
        assert!(RunRecord::from_json("{}").is_err());
        assert!(RunRecord::from_json("not json").is_err());
        let g = small();
        let mut r = RunRecord::new("small", &g, None, Profile::default(), &[]);
        r.nodes[0].inputs.push(1000);
        let e = RunRecord::from_json(&r.to_json().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("names value 1000"), "{e}");
        r.nodes[0].inputs.pop();
        r.version = 99;
        let e = RunRecord::from_json(&r.to_json().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 99"), "{e}");
    }
}
