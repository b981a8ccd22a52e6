//! The native side: opening files and zoo models by name, and running models live on a thread
//! (wgpu, the CPU reference, the simulated NPU).

use crate::app::{RunState, Runner};
use sfumato_core::{Device, Optimization, RunRecord, TargetProfile};
use std::sync::{Arc, Mutex};

/// Opens a path (a saved run, a trace, an .onnx file) or a zoo model by name (planned for
/// WebGPU's guaranteed limits, not run).
pub fn open_target(target: &str) -> Result<RunRecord, String> {
    let path = std::path::Path::new(target);
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {target}: {e}"))?;
        let name = path
            .file_name()
            .map_or(target.to_string(), |f| f.to_string_lossy().into_owned());
        return crate::source::open_bytes(&name, &bytes).map_err(|e| e.to_string());
    }
    plan_model(target)
}

/// GPT-2's whole forward pass (every layer, an 8-token prompt, seeded random weights) by name:
/// `gpt2` or `gpt2-medium` (the zoo's runnable GPT-2 is the one-layer `gpt2-decode`).
fn gpt2_graph(model: &str) -> Option<Result<sfumato_core::Graph, String>> {
    let cfg = match model {
        "gpt2" => sfumato_zoo::gpt2::Gpt2Config::gpt2_small(),
        "gpt2-medium" => sfumato_zoo::gpt2::Gpt2Config::gpt2_medium(),
        _ => return None,
    };
    let mut p = sfumato_zoo::params::Params::random(model, 42);
    Some(sfumato_zoo::gpt2::gpt2_forward(&cfg, &mut p, 1, 8).map_err(|e| e.to_string()))
}

/// A graph by model name, planned for WebGPU's guaranteed limits (not run): a zoo model, or
/// `gpt2` / `gpt2-medium` whole.
pub fn plan_model(model: &str) -> Result<RunRecord, String> {
    let graph = match gpt2_graph(model) {
        Some(g) => g?,
        None => build(model)?.0,
    };
    crate::source::explain(model, &graph, true, &TargetProfile::webgpu_gpu())
        .map_err(|e| e.to_string())
}

fn build(model: &str) -> Result<(sfumato_core::Graph, Vec<sfumato_core::Tensor>), String> {
    let opts = sfumato_zoo::models::default_options(model)
        .map_err(|e| format!("'{model}' is neither a file nor a model ({e})"))?;
    sfumato_zoo::models::by_name_with(model, &opts).map_err(|e| e.to_string())
}

/// Devices a live run can use.
pub const DEVICES: &[&str] = &["wgpu", "cpu", "npu-sim"];

/// A model run live on `device`: a warm-up run (kernels compile), then the measured one, and
/// its record.
pub fn run_live(
    model: &str,
    device: &str,
    fused: bool,
    progress: &dyn Fn(String),
) -> Result<RunRecord, String> {
    progress(format!("building {model}"));
    let (graph, inputs) = build(model)?;
    let opt = Optimization::fused(fused);
    let mut dev: Box<dyn Device> = match device {
        "cpu" => Box::new(sfumato_core::CpuDevice),
        "npu-sim" => Box::new(
            sfumato_npu_sim::NpuSim::by_name("ascend910")
                .map_err(|e| e.to_string())?
                .with_optimization(opt),
        ),
        "wgpu" => {
            let mut o = sfumato_wgpu::DeviceOptions::from_env();
            o.optimization = opt;
            Box::new(sfumato_wgpu::WgpuDevice::new(o).map_err(|e| e.to_string())?)
        }
        other => return Err(format!("unknown device '{other}' (wgpu, cpu, npu-sim)")),
    };
    if device == "wgpu" {
        progress(format!("warm-up run of {model} (kernels compile)"));
        dev.run(&graph, &inputs).map_err(|e| e.to_string())?;
    }
    progress(format!("running {model} on {}", dev.name()));
    let out = dev.run(&graph, &inputs).map_err(|e| e.to_string())?;
    progress("recording".into());
    dev.record(model, &graph, &out).map_err(|e| e.to_string())
}

/// Runs models on a thread of their own.
#[derive(Default)]
pub struct ThreadRunner {
    state: Arc<Mutex<Option<RunState>>>,
}

impl Runner for ThreadRunner {
    fn models(&self) -> Vec<String> {
        sfumato_zoo::MODELS.iter().map(|s| s.to_string()).collect()
    }

    fn devices(&self) -> Vec<String> {
        DEVICES.iter().map(|s| s.to_string()).collect()
    }

    fn start(&mut self, model: &str, device: &str, fused: bool) {
        let state = self.state.clone();
        let (model, device) = (model.to_string(), device.to_string());
        *state.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(RunState::Running(format!("starting {model}")));
        std::thread::spawn(move || {
            let report = |s: String| {
                *state.lock().unwrap_or_else(|p| p.into_inner()) = Some(RunState::Running(s));
            };
            let r = run_live(&model, &device, fused, &report);
            *state.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(RunState::Done(r.map(Box::new)));
        });
    }

    fn poll(&mut self) -> RunState {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.take() {
            Some(RunState::Running(m)) => {
                *s = Some(RunState::Running(m.clone()));
                RunState::Running(m)
            }
            Some(done) => done,
            None => RunState::Idle,
        }
    }
}
