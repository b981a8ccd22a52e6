//! What the viewer's tests share.

use sfumato_core::{OpTiming, RunRecord, TargetProfile, TimingSource};

/// resnet-bottleneck planned for WebGPU's limits, with made-up but fixed kernel times (one
/// entry per group with a kernel, each as long as its bytes make it), so snapshots are stable.
pub fn timed_record() -> RunRecord {
    let opts = sfumato_zoo::models::default_options("resnet-bottleneck").unwrap();
    let (graph, _) = sfumato_zoo::models::by_name_with("resnet-bottleneck", &opts).unwrap();
    let mut r = sfumato_viewer::source::explain(
        "resnet-bottleneck",
        &graph,
        true,
        &TargetProfile::webgpu_gpu(),
    )
    .unwrap();
    let mut start = 0;
    for (i, g) in r.groups.iter().enumerate() {
        if g.kernels.is_empty() {
            continue;
        }
        let dur = 1_000_000 * (i as u64 % 5 + 1);
        r.profile.entries.push(OpTiming {
            nodes: g.nodes.iter().map(|&n| r.nodes[n].name.clone()).collect(),
            ops: g.nodes.iter().map(|&n| r.nodes[n].op.clone()).collect(),
            kernel: g.kernels[0].name.clone(),
            start_ns: start,
            duration_ns: dur,
            source: TimingSource::GpuTimestamp,
            simulated: None,
        });
        start += dur + 50_000;
    }
    r.profile.device = "test adapter".into();
    r.device = "test adapter".into();
    r.profile.wall_ns = start;
    r
}
