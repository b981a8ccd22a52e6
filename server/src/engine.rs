//! One device queue per adapter: a thread that owns the device (the WebGPU device, or the CPU
//! reference) and runs the batches every model on it sends, one at a time, in arrival order.
//! A graph is prepared (compiled, its weights uploaded) on its first batch and kept by the
//! device for the next.

use crate::config::DeviceKind;
use crate::ServeError;
use sfumato_core::{CpuDevice, Device, Graph, Tensor};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The outputs of one batch and the device time it took.
pub type JobResult = Result<(Vec<Tensor>, Duration), ServeError>;

struct Job {
    graph: Arc<Graph>,
    inputs: Vec<Tensor>,
    what: String,
    reply: oneshot::Sender<JobResult>,
}

/// A handle to one device's queue.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Job>,
    /// The adapter's name.
    pub name: Arc<str>,
}

impl Engine {
    /// Run `graph` on `inputs`; `what` names the model and batch in an error.
    pub async fn run(&self, graph: Arc<Graph>, inputs: Vec<Tensor>, what: String) -> JobResult {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                graph,
                inputs,
                what,
                reply,
            })
            .map_err(|_| {
                ServeError::unavailable(format!("the {} device has stopped", self.name))
            })?;
        rx.await.map_err(|_| {
            ServeError::internal(format!("the {} device dropped a batch", self.name))
        })?
    }
}

/// How many prepared graphs (model × batch size) a device keeps compiled and uploaded.
pub const PREPARED_GRAPHS: usize = 32;

fn open(kind: DeviceKind) -> Result<Box<dyn Device>, ServeError> {
    match kind {
        DeviceKind::Cpu => Ok(Box::new(CpuDevice)),
        DeviceKind::Wgpu => {
            let dev = sfumato_wgpu::WgpuDevice::new(sfumato_wgpu::DeviceOptions {
                max_prepared: PREPARED_GRAPHS,
                ..sfumato_wgpu::DeviceOptions::from_env()
            })
            .map_err(|e| {
                ServeError::unavailable(format!("could not open the WebGPU device: {e}"))
            })?;
            Ok(Box::new(dev))
        }
    }
}

fn start(kind: DeviceKind) -> Result<Engine, ServeError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("sfumato-{}", kind.name()))
        .spawn(move || {
            let mut dev = match open(kind) {
                Ok(d) => {
                    let _ = ready_tx.send(Ok(d.name()));
                    d
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Ends when every handle is dropped: the queue drains first.
            while let Ok(job) = rx.recv() {
                if job.reply.is_closed() {
                    continue;
                }
                let t0 = Instant::now();
                let out = dev
                    .run(&job.graph, &job.inputs)
                    .map(|o| (o.outputs, t0.elapsed()))
                    .map_err(|e| ServeError::internal(format!("{}: {e}", job.what)));
                let _ = job.reply.send(out);
            }
        })
        .map_err(|e| ServeError::internal(format!("could not start a device thread: {e}")))?;
    let name = ready_rx
        .recv()
        .map_err(|_| ServeError::internal("the device thread ended while opening"))??;
    tracing::info!(device = %name, "device queue started");
    Ok(Engine {
        tx,
        name: name.into(),
    })
}

/// The device queues, started on first use (a repository of CPU models never opens a GPU).
#[derive(Default)]
pub struct Engines {
    started: Mutex<HashMap<DeviceKind, Engine>>,
}

impl Engines {
    pub fn get(&self, kind: DeviceKind) -> Result<Engine, ServeError> {
        let mut m = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = m.get(&kind) {
            return Ok(e.clone());
        }
        let e = start(kind)?;
        m.insert(kind, e.clone());
        Ok(e)
    }

    /// Drop the queues' handles: each device thread ends once its queue is empty.
    pub fn stop(&self) {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
