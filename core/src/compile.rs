//! The compile pipeline every device shares: graph → passes → legalization for the target's
//! limits ([`crate::legalize`]) → fusion plan for a target.
//!
//! A device asks [`compile`] for the plan it will run, with its own [`TargetProfile`] (its
//! binding limits) and [`Optimization`] (passes, fusion); what happens to each group next is
//! the device's back end (the wgpu device lowers each group to WGSL, the CPU reference
//! interprets nodes). `sfumato explain` asks the device for the same preparation, so what it
//! shows is what the device runs; the viewer and the NPU simulator will call this function too.

use crate::legalize::{
    has_oversized_constants, pad_conv_channels, pad_narrow_matmuls, split_oversized_constants,
};
use crate::passes::{optimize, PassStats};
use crate::plan::{plan, Plan, PlanOptions};
use crate::target::TargetProfile;
use crate::{Error, Graph, Result};
use serde::Serialize;

/// How much of the compiler runs. `sfumato bench compare` times all three, so what the graph
/// passes gain (BatchNorm folded into the conv, constants folded, dead and duplicate nodes
/// dropped) is not counted as fusion's gain. Ordered from least to most optimized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Optimization {
    /// The graph as built: no passes, one group (kernel) per node.
    AsBuilt,
    /// The graph passes, then one group per node of the graph they leave: no fusion.
    PassesOnly,
    /// The graph passes, then fusion (the default).
    #[default]
    PassesAndFusion,
}

impl Optimization {
    /// The fusion switch of the command line and the tests: on is [`Self::PassesAndFusion`],
    /// off [`Self::AsBuilt`] (one kernel per op of the graph as built).
    pub fn fused(on: bool) -> Self {
        if on {
            Optimization::PassesAndFusion
        } else {
            Optimization::AsBuilt
        }
    }

    /// Whether the graph passes run.
    pub fn passes(self) -> bool {
        self != Optimization::AsBuilt
    }

    /// Whether ops are fused into groups.
    pub fn fuse(self) -> bool {
        self == Optimization::PassesAndFusion
    }
}

/// Options of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Which passes run and whether to fuse.
    pub optimization: Optimization,
    /// The device the plan is for.
    pub target: TargetProfile,
}

/// A graph made ready for a device: the graph after the passes, its plan, and what the passes did.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub graph: Graph,
    pub plan: Plan,
    /// What the passes did (all zero for [`Optimization::AsBuilt`]: the passes do not run).
    pub passes: PassStats,
}

/// Run the passes (unless [`Optimization::AsBuilt`]), split MatMuls and Gathers whose constant is
/// over the target's binding limit (always: see [`crate::legalize`]), and plan the groups within
/// the target's limits (fused for [`Optimization::PassesAndFusion`]).
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled> {
    opts.target.validate().map_err(Error::Device)?;
    let o = opts.optimization;
    let _span =
        tracing::info_span!("compile", optimization = ?o, target = %opts.target.name).entered();
    let (mut graph, mut passes) = if o.passes() {
        optimize(graph)?
    } else {
        (graph.clone(), PassStats::default())
    };
    // Legalization, not optimization: a constant over the binding limit could not run at all.
    let max_bytes = opts.target.max_binding_bytes;
    if has_oversized_constants(&graph, max_bytes) {
        let block = opts.target.split_block_bytes;
        let (split, n) = split_oversized_constants(&graph, max_bytes, block)?;
        graph = split;
        passes.oversized_constants_split = n;
    }
    if o.passes() && opts.target.uniform_block_operands {
        // A layout for the target's conv kernels (see `pad_conv_channels`).
        let (padded, n) = pad_conv_channels(&graph)?;
        graph = padded;
        passes.conv_channels_padded = n;
        // And for its vec4 matmuls (see `pad_narrow_matmuls`).
        let (padded, n) = pad_narrow_matmuls(&graph)?;
        graph = padded;
        passes.narrow_matmuls_padded = n;
    }
    let plan = plan(&graph, &PlanOptions::for_target(&opts.target, o.fuse()));
    Ok(Compiled {
        graph,
        plan,
        passes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Conv2d;
    use crate::{DType, Tensor};

    /// The ops of the groups that run a kernel (constants and views run none).
    fn kernels(c: &Compiled) -> Vec<String> {
        c.plan
            .groups
            .iter()
            .map(|grp| {
                grp.nodes
                    .iter()
                    .map(|&n| c.graph.node(n).op.name())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .filter(|ops| ops != "Constant")
            .collect()
    }

    /// A conv, its BatchNorm and a ReLU: the passes fold the BatchNorm into the conv (one
    /// kernel fewer with no fusion at all), fusion then takes the ReLU into the conv.
    #[test]
    fn passes_only_folds_without_fusing() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, 4, 6, 6]);
        let w = g
            .constant(Tensor::random(DType::F32, [8, 4, 3, 3], 1))
            .unwrap();
        let y = g.conv2d(x, w, None, Conv2d::padded(1, 1)).unwrap();
        let p: Vec<_> = (0..4)
            .map(|i| {
                let t = Tensor::random(DType::F32, [8], 2 + i);
                let t = if i == 3 {
                    let v: Vec<f64> = t.to_f64_vec().iter().map(|v| v.abs() + 0.5).collect();
                    Tensor::from_f64(DType::F32, t.shape().clone(), &v)
                } else {
                    t
                };
                g.constant(t).unwrap()
            })
            .collect();
        let y = g.batch_norm(y, p[0], p[1], p[2], p[3], 1e-5).unwrap();
        let y = g.relu(y).unwrap();
        g.set_outputs(&[y]).unwrap();
        let run = |optimization| {
            let c = compile(
                &g,
                &CompileOptions {
                    optimization,
                    ..Default::default()
                },
            )
            .unwrap();
            (kernels(&c), c.passes.batch_norms_folded)
        };
        assert_eq!(
            run(Optimization::AsBuilt),
            (vec!["Conv2d".into(), "BatchNorm".into(), "Relu".into()], 0)
        );
        assert_eq!(
            run(Optimization::PassesOnly),
            (vec!["Conv2d".into(), "Relu".into()], 1)
        );
        assert_eq!(
            run(Optimization::PassesAndFusion),
            (vec!["Conv2d+Relu".into()], 1)
        );
    }
}
