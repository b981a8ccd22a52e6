//! Adapter discovery and choice.

use serde::Serialize;
use sfumato_core::target::{
    TargetKind, TargetProfile, LLVMPIPE_IMPLICIT_CONV_MAX_OUT, LLVMPIPE_LOOP_BUDGET,
};

/// What `sfumato devices` prints about an adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_uniform_buffer_binding_size: u64,
    pub max_uniform_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub timestamp_query: bool,
    pub shader_f16: bool,
    /// Loop ends an invocation may pass before the driver cuts its loops short, where one is
    /// known (llvmpipe: 65,535; see `sfumato_shaders::loops`).
    pub loop_budget: Option<u64>,
}

impl AdapterSummary {
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        let f = adapter.features();
        // The loop budget is a fact about the driver: the profile's, after the quirks.
        let budget = target_profile(&info, &l).loop_budget;
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_uniform_buffer_binding_size: l.max_uniform_buffer_binding_size,
            max_uniform_buffers_per_shader_stage: l.max_uniform_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            loop_budget: budget,
        }
    }
}

/// A driver quirk, as data: adapters whose driver or name contains `matches` (lowercase) get
/// `apply` on their target profile.
pub struct Quirk {
    pub matches: &'static str,
    pub why: &'static str,
    pub apply: fn(&mut TargetProfile),
}

/// The quirks known. Mesa's llvmpipe (lavapipe) breaks out of every loop once an invocation has
/// passed 65,535 loop ends, silently; no other driver is known to have such a limit. Its
/// measured strengths go with it: narrow convs gather their image column in the matmul.
pub const QUIRKS: &[Quirk] = &[
    Quirk {
        matches: "llvmpipe",
        why: "breaks every loop after 65,535 loop ends of one invocation (LP_MAX_TGSI_LOOP_ITERATIONS)",
        apply: |t| {
            t.name = "llvmpipe".into();
            t.loop_budget = Some(LLVMPIPE_LOOP_BUDGET);
        },
    },
    Quirk {
        matches: "llvmpipe",
        why: "convs wider than 1x1 to 128 output channels ran faster gathering their image column \
              (conv2d_ubo) than staging it (LLVMPIPE_IMPLICIT_CONV_MAX_OUT)",
        apply: |t| t.implicit_conv_max_out = LLVMPIPE_IMPLICIT_CONV_MAX_OUT,
    },
];

/// The quirks that hold for an adapter.
pub fn quirks_of(info: &wgpu::AdapterInfo) -> impl Iterator<Item = &'static Quirk> + '_ {
    let (driver, name) = (info.driver.to_lowercase(), info.name.to_lowercase());
    QUIRKS
        .iter()
        .filter(move |q| driver.contains(q.matches) || name.contains(q.matches))
}

/// What the compiler should know of an adapter: the preset for its kind (a CPU adapter prefers
/// register blocks and uniform operands, a GPU tiles through workgroup memory), its own limits,
/// then its driver's quirks.
pub fn target_profile(info: &wgpu::AdapterInfo, l: &wgpu::Limits) -> TargetProfile {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => TargetKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => TargetKind::IntegratedGpu,
        wgpu::DeviceType::Cpu => TargetKind::Cpu,
        _ => TargetKind::Other,
    };
    let mut t = TargetProfile::for_kind(kind);
    t.name = info.name.clone();
    t.max_storage_buffers = l.max_storage_buffers_per_shader_stage;
    // WebGPU's 12 at least; lavapipe offers 15.
    t.max_uniform_blocks = l.max_uniform_buffers_per_shader_stage.max(12);
    t.max_workgroups_per_dim = l.max_compute_workgroups_per_dimension;
    t.max_workgroup_invocations = l.max_compute_invocations_per_workgroup;
    t.max_binding_bytes = l.max_storage_buffer_binding_size;
    t.max_texture_side = l.max_texture_dimension_2d;
    for q in quirks_of(info) {
        (q.apply)(&mut t);
    }
    t
}

/// A wgpu instance; `wgpu_env`: let wgpu read its own `WGPU_*` variables (backends, flags),
/// as the command asks through [`DeviceOptions::from_env`](crate::DeviceOptions::from_env).
pub(crate) fn instance(wgpu_env: bool) -> wgpu::Instance {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle();
    wgpu::Instance::new(if wgpu_env { desc.with_env() } else { desc })
}

/// Every adapter wgpu can see on this machine.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance(true);
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

/// How much we prefer an adapter type: discrete GPUs first, CPU adapters last.
fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Pick an adapter: the first whose name, backend or type contains `wanted` (case-insensitive),
/// else the most preferred type.
pub(crate) async fn choose(
    inst: &wgpu::Instance,
    wanted: Option<&str>,
) -> Result<wgpu::Adapter, String> {
    let mut adapters = inst.enumerate_adapters(wgpu::Backends::all()).await;
    if adapters.is_empty() {
        return Err(NO_ADAPTER.to_string());
    }
    if let Some(w) = wanted.filter(|w| !w.is_empty()) {
        let w = w.to_lowercase();
        let pos = adapters.iter().position(|a| {
            let i = a.get_info();
            i.name.to_lowercase().contains(&w)
                || format!("{:?}", i.backend).to_lowercase().contains(&w)
                || format!("{:?}", i.device_type).to_lowercase().contains(&w)
        });
        return match pos {
            Some(p) => Ok(adapters.swap_remove(p)),
            None => Err(format!(
                "the adapter asked for ('{w}', from SFUMATO_ADAPTER or DeviceOptions::adapter) matches none of: {}",
                adapters
                    .iter()
                    .map(|a| a.get_info().name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    adapters.sort_by_key(|a| rank(a.get_info().device_type));
    Ok(adapters.swap_remove(0))
}

/// What to tell a user with no adapter.
pub const NO_ADAPTER: &str = "no WebGPU adapter found. Install a Vulkan driver: on Debian/Ubuntu \
`apt-get install mesa-vulkan-drivers` gives a CPU adapter (lavapipe) that runs everything, slowly; \
with a GPU, install its vendor's Vulkan driver";
