//! The compile pipeline every device shares: graph → passes → fusion plan for a target.
//!
//! A device asks [`compile`] for the plan it will run, with its own [`TargetProfile`] (its
//! binding limits) and fusion switch; what happens to each group next is the device's back end
//! (the wgpu device lowers each group to WGSL, the CPU reference interprets nodes). `sfumato
//! explain` asks the device for the same preparation, so what it shows is what the device runs;
//! the viewer and the NPU simulator will call this function too.

use crate::passes::{optimize, PassStats};
use crate::plan::{plan, Plan, PlanOptions};
use crate::target::TargetProfile;
use crate::{Error, Graph, Result};

/// Options of [`compile`].
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Run the graph passes and fuse (false: the graph as built, one group per node).
    pub fuse: bool,
    /// The device the plan is for.
    pub target: TargetProfile,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            fuse: true,
            target: TargetProfile::default(),
        }
    }
}

/// A graph made ready for a device: the graph after the passes, its plan, and what the passes did.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub graph: Graph,
    pub plan: Plan,
    /// What the passes did (all zero when fusion is off: the passes do not run).
    pub passes: PassStats,
}

/// Run the passes (when fusing) and plan the groups within the target's limits.
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled> {
    opts.target.validate().map_err(Error::Device)?;
    let _span =
        tracing::info_span!("compile", fuse = opts.fuse, target = %opts.target.name).entered();
    let (graph, passes) = if opts.fuse {
        optimize(graph)?
    } else {
        (graph.clone(), PassStats::default())
    };
    let plan = plan(&graph, &PlanOptions::for_target(&opts.target, opts.fuse));
    Ok(Compiled {
        graph,
        plan,
        passes,
    })
}
