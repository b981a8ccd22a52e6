//! `sfumato explain`: the plan a device runs (groups, kernels, bytes, memory), fused and
//! unfused.

use crate::run::ModelArgs;
use anyhow::{Context, Result};
use clap::Args;
use sfumato_wgpu::Explained;

#[derive(Args, Debug)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Print the generated WGSL of this group (its index in the list) instead of the list.
    #[arg(long)]
    pub(crate) wgsl: Option<usize>,
    /// Explain the unfused plan (one kernel per op) instead of the fused one.
    #[arg(long)]
    pub(crate) no_fusion: bool,
    /// Explain for a target profile instead of this machine's adapter: `webgpu-gpu` (WebGPU's
    /// guaranteed limits, tiled kernels first), `cpu-adapter` or `llvmpipe`. Without it, the
    /// plan is the one the default adapter runs (its limits, its tuned variants).
    #[arg(long)]
    pub(crate) target: Option<TargetArg>,
    /// Print JSON: {"fused": {...totals}, "unfused": {...}, "groups": [...], "passes": {...},
    /// "f16_storage": {"stored", "stored_bytes", "kept_f32": [{"why", "values", "bytes"}],
    /// "f16_kernels"}, "int8_packed": {"weights", "bytes"}}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A target profile named on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum TargetArg {
    WebgpuGpu,
    CpuAdapter,
    Llvmpipe,
}

impl TargetArg {
    fn profile(self) -> sfumato_core::TargetProfile {
        use sfumato_core::TargetProfile;
        match self {
            TargetArg::WebgpuGpu => TargetProfile::webgpu_gpu(),
            TargetArg::CpuAdapter => TargetProfile::cpu_adapter(),
            TargetArg::Llvmpipe => TargetProfile::llvmpipe(),
        }
    }
}

/// The fused and unfused plans of `graph`: the default adapter's own (as a run prepares them:
/// its limits, its tuned variants), or a named target's without a device (also where there is
/// no adapter, with a warning).
pub(crate) fn explain_plans(
    graph: &sfumato_core::Graph,
    target: Option<TargetArg>,
) -> Result<(String, Explained, Explained)> {
    if target.is_none() {
        match sfumato_wgpu::WgpuDevice::new(sfumato_wgpu::DeviceOptions::from_env()) {
            Ok(mut dev) => {
                let name = dev.adapter().name.clone();
                let view = |dev: &mut sfumato_wgpu::WgpuDevice, fuse: bool| -> Result<Explained> {
                    dev.set_fusion(fuse);
                    dev.explain(graph).context("compiling the plan")
                };
                let fused = view(&mut dev, true)?;
                let unfused = view(&mut dev, false)?;
                return Ok((name, fused, unfused));
            }
            Err(e) => eprintln!("warning: {e}; explaining for the webgpu-gpu profile instead"),
        }
    }
    let profile = target.unwrap_or(TargetArg::WebgpuGpu).profile();
    let name = format!("{} (target profile, no device)", profile.name);
    let view = |fuse: bool| -> Result<Explained> {
        let c = sfumato_core::compile(
            graph,
            &sfumato_core::CompileOptions {
                optimization: sfumato_core::Optimization::fused(fuse),
                target: profile.clone(),
            },
        )
        .context("running the graph passes")?;
        let lopts = sfumato_shaders::LowerOptions {
            matmul: None,
            target: profile.clone(),
        };
        let (groups, totals, kernels) =
            sfumato_shaders::explain::explain(&c.graph, &c.plan, &lopts)
                .context("lowering the plan")?;
        Ok(Explained {
            graph: std::sync::Arc::new(c.graph),
            plan: c.plan,
            passes: c.passes,
            groups,
            totals,
            kernels: kernels.into_iter().map(std::sync::Arc::new).collect(),
            f16: Default::default(),
            packed_int8: (0, 0),
        })
    };
    Ok((name, view(true)?, view(false)?))
}

/// The kernels of `x` that compute in f16 (named `*_f16`).
fn f16_kernels(x: &Explained) -> Vec<String> {
    x.all_kernels()
        .filter(|k| k.name.ends_with("_f16"))
        .map(|k| k.name.clone())
        .collect()
}

/// One line on the kernels that compute in f16, by name; `None` without any.
fn f16_arithmetic_summary(kernels: &[String]) -> Option<String> {
    if kernels.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = kernels.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    Some(format!(
        "f16 arithmetic: {} kernels compute in f16 ({})",
        kernels.len(),
        names.join(", ")
    ))
}

/// What "bytes moved" is: counted from the plan, not measured.
const BYTES_NOTE: &str = "(bytes moved is an idealised count from the plan: each tensor a kernel binds, read or \
     written once per dispatch group; caches, re-reads inside a kernel and padding are not measured)";

pub(crate) fn explain(a: &ExplainArgs) -> Result<()> {
    use sfumato_shaders::Lowered;
    let (graph, _) = a.model.build()?;
    let (device_name, fused_x, unfused_x) = explain_plans(&graph, a.target)?;
    let (stats, fused, unfused) = (
        fused_x.passes.clone(),
        fused_x.totals.clone(),
        unfused_x.totals.clone(),
    );
    let (f16_summary, packed_summary) = (fused_x.f16.summary(), fused_x.packed_summary());
    let f16_kernels = f16_kernels(&fused_x);
    let packed_int8 = fused_x.packed_int8;
    let (groups, kernels) = if a.no_fusion {
        (unfused_x.groups, unfused_x.kernels)
    } else {
        (fused_x.groups, fused_x.kernels)
    };
    if let Some(gi) = a.wgsl {
        let gk = kernels
            .get(gi)
            .with_context(|| format!("no group {gi}: the plan has groups 0..{}", kernels.len()))?;
        match &gk.lowered {
            Lowered::Kernels(ks) => {
                for k in ks {
                    println!(
                        "// group {gi}: {} — kernel {}\n{}",
                        gk.label, k.name, k.wgsl
                    );
                }
            }
            Lowered::Alias => println!("// group {gi}: {} is a view: no kernel", gk.label),
            Lowered::Constant => println!("// group {gi}: {} is a constant: no kernel", gk.label),
            Lowered::Copies(rs) => println!(
                "// group {gi}: {} is {} buffer copy and clear commands: no kernel",
                gk.label,
                rs.len()
            ),
        }
        return Ok(());
    }
    if a.json {
        let v = serde_json::json!({
            "model": a.model.model,
            "options": {
                "batch": a.model.options()?.batch,
                "layers": a.model.options()?.layers,
                "seq": a.model.options()?.seq,
                "size": a.model.options()?.size,
            },
            "device": device_name,
            "fused": fused,
            "unfused": unfused,
            "bytes_moved_note": BYTES_NOTE,
            "passes": stats,
            "groups": groups,
            "f16_storage": {
                "stored": fused_x.f16.stored,
                "stored_bytes": fused_x.f16.stored_bytes,
                "kept_f32": fused_x.f16.kept.iter().map(|(why, n, bytes)| serde_json::json!({
                    "why": why, "values": n, "bytes": bytes,
                })).collect::<Vec<_>>(),
                "f16_kernels": f16_kernels.len(),
            },
            "int8_packed": {"weights": packed_int8.0, "bytes": packed_int8.1},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("device: {device_name}");
    println!(
        "model: {} ({} nodes; after the passes {}: {} constants folded, {} batch-norms folded, {} dead, {} merged)",
        a.model.model,
        stats.nodes_before,
        stats.nodes_after,
        stats.constants_folded,
        stats.batch_norms_folded,
        stats.dead_nodes_removed,
        stats.common_subexpressions_merged
    );
    println!();
    println!(
        "{:>5}  {:<12} {:>9} {:>10}  ops (nodes)",
        "group", "kind", "read MiB", "write MiB"
    );
    for gi in &groups {
        if gi.dispatches == 0 {
            continue;
        }
        let kind = serde_json::to_value(gi.kind)?
            .as_str()
            .unwrap_or("?")
            .to_string();
        let nodes = if gi.nodes.len() > 4 {
            format!(
                "{}, ... {}",
                gi.nodes[..3].join(", "),
                gi.nodes[gi.nodes.len() - 1]
            )
        } else {
            gi.nodes.join(", ")
        };
        println!(
            "{:>5}  {:<12} {:>9.2} {:>10.2}  {} ({nodes})",
            gi.index,
            kind,
            mib(gi.bytes_read),
            mib(gi.bytes_written),
            gi.label
        );
    }
    println!();
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>12} {:>14}",
        "", "dispatches", "bytes moved", "peak memory", "weights", "largest live"
    );
    for (name, t) in [("fused", &fused), ("unfused", &unfused)] {
        println!(
            "{:<10} {:>10} {:>10.1} MiB {:>10.1} MiB {:>8.1} MiB {:>10.1} MiB",
            name,
            t.dispatches,
            mib(t.bytes_moved),
            mib(t.peak_bytes),
            mib(t.weight_bytes),
            mib(t.largest_live_bytes)
        );
    }
    for s in [
        f16_summary,
        f16_arithmetic_summary(&f16_kernels),
        packed_summary,
    ]
    .into_iter()
    .flatten()
    {
        println!("{s}");
    }
    println!();
    println!(
        "(views and constants cost no kernel and are left out; `--wgsl N` prints group N's WGSL)"
    );
    println!("{BYTES_NOTE}");
    Ok(())
}
