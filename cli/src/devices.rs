//! `sfumato devices`: every adapter wgpu sees.

use anyhow::{bail, Context, Result};
use sfumato_wgpu::AdapterSummary;

pub(crate) fn devices(json: bool) -> Result<()> {
    let adapters = sfumato_wgpu::list_adapters();
    if adapters.is_empty() {
        bail!("{}", sfumato_wgpu::NO_ADAPTER);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&adapters).context("serializing the adapter list")?
        );
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_adapter(i, a);
    }
    Ok(())
}

pub(crate) fn print_adapter(i: usize, a: &AdapterSummary) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("[{i}] {}", a.name);
    println!("    backend:       {}", a.backend);
    println!("    device type:   {}", a.device_type);
    println!("    driver:        {} {}", a.driver, a.driver_info);
    println!(
        "    max storage buffer binding: {:.1} MiB",
        mib(a.max_storage_buffer_binding_size)
    );
    println!(
        "    max buffer size:            {:.1} MiB",
        mib(a.max_buffer_size)
    );
    println!(
        "    max uniform binding:        {:.1} MiB ({} per stage)",
        mib(a.max_uniform_buffer_binding_size),
        a.max_uniform_buffers_per_shader_stage
    );
    println!(
        "    workgroup storage:          {} bytes",
        a.max_compute_workgroup_storage_size
    );
    println!(
        "    invocations per workgroup:  {}",
        a.max_compute_invocations_per_workgroup
    );
    println!(
        "    workgroups per dimension:   {}",
        a.max_compute_workgroups_per_dimension
    );
    println!(
        "    storage buffers per stage:  {}",
        a.max_storage_buffers_per_shader_stage
    );
    println!("    timestamp_query:            {}", yes(a.timestamp_query));
    println!("    shader_f16:                 {}", yes(a.shader_f16));
    println!(
        "    loop_budget:                {}",
        a.loop_budget.map_or_else(
            || "none known".to_string(),
            |b| format!("{b} loop ends per invocation")
        )
    );
    if a.name.contains("llvmpipe") {
        // The listing's pools are gone with its instance: a device pins its own when it opens.
        let pinning = if sfumato_wgpu::pinning_planned() {
            "each pinned to a CPU of its own when a device opens".to_string()
        } else {
            sfumato_wgpu::Pinning::NotPlanned.to_string()
        };
        println!(
            "    compute threads:            {}",
            lavapipe_threads_line(pinning)
        );
    }
}

/// On lavapipe (`device` names llvmpipe), with a device open: its compute threads and whether
/// the device pinned them when it opened.
pub(crate) fn print_lavapipe_threads(device: &str) {
    if device.contains("llvmpipe") {
        println!(
            "lavapipe compute threads: {}",
            lavapipe_threads_line(
                sfumato_wgpu::last_lavapipe_pinning()
                    .map_or_else(|| "no device open".to_string(), |p| p.to_string())
            )
        );
    }
}

/// Lavapipe's compute threads in this process, then `pinning` (whether they are pinned).
pub(crate) fn lavapipe_threads_line(pinning: String) -> String {
    format!(
        "{} (LP_NUM_THREADS; where it is unset `sfumato` sets one a CPU, each pinned to its \
         CPU, or twice the CPUs with {}=0), {pinning}",
        sfumato_wgpu::lavapipe_threads(),
        sfumato_wgpu::PIN_ENV,
    )
}
