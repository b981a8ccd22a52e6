//! The page's Rust side: the eframe web app around the viewer, a runner on the browser's
//! WebGPU, and the JavaScript API ([`Page`]).

use sfumato_core::{Device, RunRecord};
use sfumato_viewer::{RunState, Runner, Viewer};
use sfumato_wgpu::{DeviceOptions, WgpuDevice};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

/// The WebGPU device (opened once, at the first run) and what a live run reports.
#[derive(Default)]
struct Gpu {
    device: Option<WgpuDevice>,
    error: Option<String>,
    state: Option<RunState>,
    ctx: Option<egui::Context>,
}

type Shared = Rc<RefCell<Gpu>>;

/// The device, taken out of the shared cell for the length of a run (no borrow is held across
/// an await); `Err` says why there is none (no WebGPU in this browser).
async fn take_device(gpu: &Shared) -> Result<WgpuDevice, String> {
    let taken = gpu.borrow_mut().device.take();
    if let Some(d) = taken {
        return Ok(d);
    }
    if let Some(e) = gpu.borrow().error.clone() {
        return Err(e);
    }
    match WgpuDevice::new_async(DeviceOptions::default()).await {
        Ok(d) => Ok(d),
        Err(e) => {
            web_sys::console::warn_1(&format!("sfumato: no WebGPU device: {e}").into());
            let msg = "no WebGPU in this browser (navigator.gpu is missing or gives no adapter): \
                       saved runs, traces and ONNX graphs still open; models cannot run"
                .to_string();
            gpu.borrow_mut().error = Some(msg.clone());
            Err(msg)
        }
    }
}

/// A zoo model at the page's size ([`crate::shrink`]), run on WebGPU after a warm-up run.
async fn run_model(gpu: &Shared, model: &str, fused: bool) -> Result<RunRecord, String> {
    let d = sfumato_zoo::models::default_options(model).map_err(|e| e.to_string())?;
    let (batch, layers, seq, size) = crate::shrink(d.batch, d.layers, d.seq, d.size);
    let opts = sfumato_zoo::models::ModelOptions {
        batch,
        layers,
        seq,
        size,
    };
    let (graph, inputs) =
        sfumato_zoo::models::by_name_with(model, &opts).map_err(|e| e.to_string())?;
    let mut dev = take_device(gpu).await?;
    dev.set_fusion(fused);
    let result = async {
        dev.run_async(&graph, &inputs).await?;
        let out = dev.run_async(&graph, &inputs).await?;
        dev.record(model, &graph, &out)
    }
    .await;
    gpu.borrow_mut().device = Some(dev);
    result.map_err(|e| e.to_string())
}

/// The page's clock, in milliseconds.
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

fn repaint(gpu: &Shared) {
    if let Some(c) = &gpu.borrow().ctx {
        c.request_repaint();
    }
}

/// The viewer's live runs, as futures on the page's event loop.
struct WebRunner {
    gpu: Shared,
}

impl Runner for WebRunner {
    fn models(&self) -> Vec<String> {
        crate::WEB_MODELS.iter().map(|s| s.to_string()).collect()
    }

    fn devices(&self) -> Vec<String> {
        vec!["webgpu".into()]
    }

    fn start(&mut self, model: &str, _device: &str, fused: bool) {
        let gpu = self.gpu.clone();
        let model = model.to_string();
        gpu.borrow_mut().state = Some(RunState::Running(format!("running {model} on WebGPU")));
        spawn_local(async move {
            let r = run_model(&gpu, &model, fused).await;
            gpu.borrow_mut().state = Some(RunState::Done(r.map(Box::new)));
            repaint(&gpu);
        });
    }

    fn poll(&mut self) -> RunState {
        let mut g = self.gpu.borrow_mut();
        match g.state.take() {
            Some(RunState::Running(m)) => {
                g.state = Some(RunState::Running(m.clone()));
                RunState::Running(m)
            }
            Some(done) => done,
            None => RunState::Idle,
        }
    }
}

struct WebApp {
    viewer: Rc<RefCell<Viewer>>,
}

impl eframe::App for WebApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        // Dropped files are read asynchronously in a browser, then opened from the inbox.
        let files = ui.ctx().input(|i| i.raw.dropped_files.clone());
        if !files.is_empty() {
            let inbox = self.viewer.borrow().inbox();
            let ctx = ui.ctx().clone();
            for f in files {
                let inbox = inbox.clone();
                let ctx = ctx.clone();
                spawn_local(async move {
                    let name = f.path().display().to_string();
                    let r = match f.bytes_async().await {
                        Ok(b) => {
                            sfumato_viewer::source::open_bytes(&name, &b).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    };
                    inbox
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((name, r));
                    ctx.request_repaint();
                });
            }
        }
        self.viewer.borrow_mut().ui(ui);
    }
}

/// The page's JavaScript API.
#[wasm_bindgen]
pub struct Page {
    viewer: Rc<RefCell<Viewer>>,
    gpu: Shared,
    runner: eframe::WebRunner,
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl Page {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Page {
        let gpu: Shared = Rc::default();
        let viewer = Viewer::default().with_runner(Box::new(WebRunner { gpu: gpu.clone() }));
        Page {
            viewer: Rc::new(RefCell::new(viewer)),
            gpu,
            runner: eframe::WebRunner::new(),
        }
    }

    /// Starts the viewer in the canvas with this id (drawn with WebGL2).
    pub fn start(&self, canvas_id: String) -> js_sys::Promise {
        let viewer = self.viewer.clone();
        let gpu = self.gpu.clone();
        let runner = self.runner.clone();
        future_to_promise(async move {
            let canvas = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.get_element_by_id(&canvas_id))
                .ok_or_else(|| JsValue::from_str(&format!("no element #{canvas_id}")))?
                .dyn_into::<web_sys::HtmlCanvasElement>()
                .map_err(|_| JsValue::from_str(&format!("#{canvas_id} is not a canvas")))?;
            runner
                .start(
                    canvas,
                    eframe::WebOptions::default(),
                    Box::new(move |cc| {
                        gpu.borrow_mut().ctx = Some(cc.egui_ctx.clone());
                        Ok(Box::new(WebApp { viewer }))
                    }),
                )
                .await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The WebGPU adapter's name, or why there is none.
    pub fn adapter(&self) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            match take_device(&gpu).await {
                Ok(d) => {
                    let name = d.name();
                    gpu.borrow_mut().device = Some(d);
                    Ok(JsValue::from_str(&name))
                }
                Err(e) => Err(JsValue::from_str(&e)),
            }
        })
    }

    /// The zoo models the page runs.
    pub fn models(&self) -> Vec<String> {
        crate::WEB_MODELS.iter().map(|s| s.to_string()).collect()
    }

    /// Runs a zoo model on WebGPU, opens the run in the viewer and resolves to its record as
    /// JSON (outputs summarised, profile, groups).
    pub fn run(&self, model: String, fused: bool) -> js_sys::Promise {
        let (gpu, viewer) = (self.gpu.clone(), self.viewer.clone());
        future_to_promise(async move {
            let r = run_model(&gpu, &model, fused)
                .await
                .map_err(|e| JsValue::from_str(&e))?;
            let json = r.to_json().map_err(|e| JsValue::from_str(&e.to_string()))?;
            viewer.borrow_mut().open(r, format!("{model} on WebGPU"));
            repaint(&gpu);
            Ok(JsValue::from_str(&json))
        })
    }

    /// Opens a file's bytes: an .onnx model (planned), a saved run or a Chrome trace.
    pub fn open(&self, name: String, bytes: Vec<u8>) -> Result<(), JsValue> {
        let r = sfumato_viewer::source::open_bytes(&name, &bytes)
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        self.viewer.borrow_mut().open(r, name);
        repaint(&self.gpu);
        Ok(())
    }

    /// Selects a node of the shown run by name.
    pub fn select(&self, node: String) -> bool {
        let ok = self.viewer.borrow_mut().select_by_name(&node);
        repaint(&self.gpu);
        ok
    }

    /// The selected node's name.
    pub fn selected(&self) -> Option<String> {
        let v = self.viewer.borrow();
        let run = v.runs.get(v.current)?;
        v.selected.map(|n| run.record.nodes[n].name.clone())
    }

    /// What the detail panel shows for the selected node, as JSON: node, op, attributes, group
    /// label and kind, kernel names.
    pub fn details(&self) -> Option<String> {
        let v = self.viewer.borrow();
        let run = v.runs.get(v.current)?;
        let n = &run.record.nodes[v.selected?];
        let g = n.group.map(|g| &run.record.groups[g]);
        Some(
            serde_json::json!({
                "node": n.name,
                "op": n.op,
                "attributes": n.attributes,
                "group": g.map(|g| &g.label),
                "kind": g.map(|g| &g.kind),
                "kernels": g.map(|g| g.kernels.iter().map(|k| &k.name).collect::<Vec<_>>()),
            })
            .to_string(),
        )
    }

    /// Where a node's box was drawn last frame, `[x0, y0, x1, y1]` in CSS pixels of the
    /// canvas, or nothing where it is off screen.
    pub fn node_rect(&self, node: String) -> Option<Vec<f32>> {
        let v = self.viewer.borrow();
        let run = v.runs.get(v.current)?;
        let i = *run.node_by_name.get(&node)?;
        let r = v.graph.painted_rect(run, i)?;
        Some(vec![r.min.x, r.min.y, r.max.x, r.max.y])
    }

    /// The names of the shown run's nodes that are not constants.
    pub fn nodes(&self) -> Vec<String> {
        let v = self.viewer.borrow();
        v.runs.get(v.current).map_or(vec![], |run| {
            run.record
                .nodes
                .iter()
                .filter(|n| n.op != "Constant")
                .map(|n| n.name.clone())
                .collect()
        })
    }

    /// Benchmarks an ONNX model on WebGPU: `warmup` runs, then `iters` timed ones (each from
    /// the call to its outputs read back, as a page uses them), on seeded random inputs. Opens the
    /// last run in the viewer and resolves to `{meta: JSON, inputs: [Float32Array],
    /// outputs: [Float32Array]}`, so the page can feed another engine the same inputs and compare
    /// the outputs; `meta` has the model, device, times (ms), dispatches, input and output names
    /// and dims.
    pub fn bench_onnx(
        &self,
        name: String,
        bytes: Vec<u8>,
        warmup: u32,
        iters: u32,
    ) -> js_sys::Promise {
        let (gpu, viewer) = (self.gpu.clone(), self.viewer.clone());
        future_to_promise(async move {
            let js = |e: String| JsValue::from_str(&e);
            let m = sfumato_onnx::import(&bytes, &sfumato_onnx::ImportOptions::default())
                .map_err(|e| js(format!("{name}: {e}")))?;
            let inputs: Vec<sfumato_core::Tensor> = m
                .graph
                .inputs()
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    sfumato_core::Tensor::random(
                        m.graph.dtype(v),
                        m.graph.shape(v).clone(),
                        1 + i as u64,
                    )
                })
                .collect();
            let mut dev = take_device(&gpu).await.map_err(js)?;
            dev.set_fusion(true);
            let result = async {
                for _ in 0..warmup {
                    dev.run_async(&m.graph, &inputs).await?;
                }
                let mut times = vec![];
                let mut last = None;
                for _ in 0..iters.max(1) {
                    let t0 = now_ms();
                    let out = dev.run_async(&m.graph, &inputs).await?;
                    times.push(now_ms() - t0);
                    last = Some(out);
                }
                let out = last.expect("at least one timed run");
                let rec = dev.record(&name, &m.graph, &out)?;
                Ok::<_, sfumato_core::Error>((times, out, rec))
            }
            .await;
            gpu.borrow_mut().device = Some(dev);
            let (times, out, rec) = result.map_err(|e| js(format!("{name}: {e}")))?;
            let meta = serde_json::json!({
                "model": name,
                "device": rec.device,
                "times_ms": times,
                "dispatches": rec.profile.entries.len(),
                // The last timed run's dispatches: kernel, GPU time where the browser grants
                // timestamp queries, else null (only the whole run's time is known then).
                "kernels": rec.profile.entries.iter()
                    .map(|e| serde_json::json!({
                        "kernel": e.kernel,
                        "ms": (e.source == sfumato_core::TimingSource::GpuTimestamp)
                            .then(|| e.duration_ns as f64 / 1e6),
                        "source": e.source,
                    }))
                    .collect::<Vec<_>>(),
                "inputs": m.inputs.iter().zip(&inputs)
                    .map(|(n, t)| serde_json::json!({"name": n, "dims": t.dims()}))
                    .collect::<Vec<_>>(),
                "outputs": m.outputs.iter().zip(&out.outputs)
                    .map(|(n, t)| serde_json::json!({"name": n, "dims": t.dims()}))
                    .collect::<Vec<_>>(),
            });
            let arrays = |ts: &[sfumato_core::Tensor]| -> js_sys::Array {
                ts.iter()
                    .map(|t| {
                        let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
                        JsValue::from(js_sys::Float32Array::from(v.as_slice()))
                    })
                    .collect()
            };
            let result = js_sys::Object::new();
            js_sys::Reflect::set(&result, &"meta".into(), &meta.to_string().into())?;
            js_sys::Reflect::set(&result, &"inputs".into(), &arrays(&inputs))?;
            js_sys::Reflect::set(&result, &"outputs".into(), &arrays(&out.outputs))?;
            viewer.borrow_mut().open(rec, format!("{name} (benchmark)"));
            repaint(&gpu);
            Ok(result.into())
        })
    }

    /// The viewer's status line (what it opened, or why it could not).
    pub fn status(&self) -> String {
        self.viewer.borrow().status.clone()
    }
}
