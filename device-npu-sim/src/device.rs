//! The simulated NPU as a [`Device`]: graphs go through the shared compile pipeline for the
//! chip's target profile, run functionally (cube tiles in fp16 with fp32 accumulation, the rest
//! on the vector-unit model) and come back with a profile in simulated time.

use crate::chip::Chip;
use crate::cube::Fault;
use crate::predict::{predict, Prediction};
use crate::tiling::Tiling;
use sfumato_core::device::check_inputs;
use sfumato_core::{
    compile, CompileOptions, Compiled, Device, Graph, NodeId, OpTiming, Optimization, Profile,
    Result, RunOutput, SimulatedOp, TargetKind, TargetProfile, Tensor, TileSchedule, TimingSource,
};
use std::collections::HashMap;

/// The simulated Da Vinci device.
pub struct NpuSim {
    chip: Chip,
    optimization: Optimization,
    fault: Fault,
    tilings: HashMap<String, Tiling>,
    last: Option<Prediction>,
}

impl NpuSim {
    pub fn new(chip: Chip) -> NpuSim {
        NpuSim {
            chip,
            optimization: Optimization::PassesAndFusion,
            fault: Fault::None,
            tilings: HashMap::new(),
            last: None,
        }
    }

    /// A built-in chip by name (or a chip file's path).
    pub fn by_name(chip: &str) -> Result<NpuSim> {
        Ok(NpuSim::new(Chip::by_name(chip)?))
    }

    pub fn chip(&self) -> &Chip {
        &self.chip
    }

    pub fn with_optimization(mut self, o: Optimization) -> Self {
        self.optimization = o;
        self
    }

    /// Break every cube op's schedule on purpose (tests of the validation).
    pub fn with_fault(mut self, f: Fault) -> Self {
        self.fault = f;
        self
    }

    /// Fix the tiling of the cube op at this node (by name) instead of the scheduler's; a
    /// tiling that does not fit is an error at the next run.
    pub fn with_tiling(mut self, node: &str, t: Tiling) -> Self {
        self.tilings.insert(node.to_string(), t);
        self
    }

    /// The target profile the shared pipeline plans for: no binding limits to split around,
    /// no uniform-block layouts (those are a CPU adapter's), room for a fused group's operands.
    pub fn target(&self) -> TargetProfile {
        TargetProfile {
            name: self.chip.name.clone(),
            kind: TargetKind::Other,
            max_storage_buffers: 16,
            max_binding_bytes: u64::MAX / 4,
            split_block_bytes: u64::MAX,
            ..TargetProfile::webgpu_gpu()
        }
    }

    fn compile(&self, graph: &Graph) -> Result<Compiled> {
        compile(
            graph,
            &CompileOptions {
                optimization: self.optimization,
                target: self.target(),
            },
        )
    }

    /// The tilings given by hand, by node; a name that is no cube op of the compiled graph is
    /// an error (a typo would otherwise leave the scheduler's choice in place, silently).
    fn fixed(&self, c: &Compiled) -> Result<HashMap<NodeId, Tiling>> {
        let mut fixed = HashMap::new();
        for (name, t) in &self.tilings {
            let found = c.graph.nodes().iter().enumerate().find(|(i, n)| {
                &n.name == name
                    && crate::predict::cube_problem(&c.graph, NodeId(*i as u32)).is_some()
            });
            match found {
                Some((i, _)) => {
                    fixed.insert(NodeId(i as u32), *t);
                }
                None => {
                    return Err(sfumato_core::Error::Device(format!(
                        "{}: a tiling was given for node '{name}', which is no matmul or conv \
                         on the cube in the compiled graph",
                        self.name()
                    )))
                }
            }
        }
        Ok(fixed)
    }

    /// The cycle model alone: no numbers are computed (the fast mode).
    pub fn predict(&mut self, graph: &Graph) -> Result<Prediction> {
        let c = self.compile(graph)?;
        let (p, _) = predict(&self.chip, &c, &self.fixed(&c)?)?;
        self.last = Some(p.clone());
        Ok(p)
    }

    /// The cycle model with the layout transforms placed naively: around every cube op
    /// ([`crate::predict::predict_with`]); against [`Self::predict`] it shows what placing
    /// them saves.
    pub fn predict_naive_layouts(&self, graph: &Graph) -> Result<Prediction> {
        let c = self.compile(graph)?;
        Ok(crate::predict::predict_with(&self.chip, &c, &self.fixed(&c)?, true)?.0)
    }

    /// The prediction of the last run (or [`Self::predict`]).
    pub fn last_prediction(&self) -> Option<&Prediction> {
        self.last.as_ref()
    }
}

/// A prediction as a [`Profile`]: one entry per op at the chip's clock.
pub fn profile_of(p: &Prediction, device: String, wall_ns: u64) -> Profile {
    let ns = |c: f64| (c * 1e3 / p.clock_mhz).round() as u64;
    Profile {
        device,
        entries: p
            .ops
            .iter()
            .map(|o| OpTiming {
                nodes: o.nodes.clone(),
                ops: o.ops.clone(),
                kernel: o.kernel.clone(),
                start_ns: ns(o.start_cycle),
                duration_ns: ns(o.cost.cycles),
                source: TimingSource::Simulated,
                simulated: Some(SimulatedOp {
                    cycles: o.cost.cycles.round() as u64,
                    cube_utilization: o.cost.utilization,
                    bound: o.cost.bound.to_string(),
                    tiles: o
                        .schedules
                        .iter()
                        .map(|s| TileSchedule {
                            text: s.to_string(),
                            batch: s.problem.batch,
                            m: s.problem.m,
                            n: s.problem.n,
                            k: s.problem.k,
                            base_m: s.tiling.base_m,
                            base_n: s.tiling.base_n,
                            base_k: s.tiling.base_k,
                            m_blocks: s.m_blocks,
                            n_blocks: s.n_blocks,
                            k_steps: s.k_steps,
                            cores: s.tiling.cores,
                        })
                        .collect(),
                }),
            })
            .collect(),
        wall_ns,
        memory_bytes: None,
        setup: None,
    }
}

impl Device for NpuSim {
    fn name(&self) -> String {
        format!(
            "npu-sim {} ({} cores at {} MHz, simulated)",
            self.chip.name, self.chip.cores, self.chip.clock_mhz
        )
    }

    /// The compiled graph and its fused groups, as the simulator ran them (no kernel source:
    /// the schedules are in the profile's simulated cycles).
    fn record(
        &mut self,
        model: &str,
        graph: &Graph,
        out: &RunOutput,
    ) -> Result<sfumato_core::RunRecord> {
        let c = self.compile(graph)?;
        Ok(sfumato_core::RunRecord::new(
            model,
            &c.graph,
            Some(&c.plan),
            out.profile.clone(),
            &out.outputs,
        ))
    }

    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let t0 = std::time::Instant::now();
        check_inputs(graph, inputs)?;
        let c = self.compile(graph)?;
        let (p, tilings) = predict(&self.chip, &c, &self.fixed(&c)?)?;
        let outputs = crate::exec::execute(&self.chip, &c.graph, inputs, &tilings, self.fault)?;
        let profile = profile_of(&p, self.name(), t0.elapsed().as_nanos() as u64);
        self.last = Some(p);
        Ok(RunOutput { outputs, profile })
    }
}

/// How close the simulator's outputs are to the CPU reference's. Cube operands are rounded to
/// fp16 (a relative error up to 2^-11 each) and summed in fp32, so a product's error grows
/// like 2^-11 x sqrt(K) x the operands' size: 1e-2 relative, and 5e-2 absolute for the suite's
/// product of two unscaled run inputs at K 3,072 (outputs up to about 20; the worst error seen
/// is 1.8e-2). Exact for integers, which never touch the cube.
pub fn tolerances() -> sfumato_core::suite::Tolerances {
    sfumato_core::suite::Tolerances {
        f32: (1e-2, 5e-2),
        f16: (1e-2, 5e-2),
        int: (0.0, 0.0),
    }
}
