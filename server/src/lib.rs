//! `sfumato serve`: the Open Inference Protocol (the KServe "v2" protocol, also spoken by
//! Triton, OpenVINO Model Server and Seldon MLServer) over HTTP/REST and gRPC, so KServe,
//! Kubernetes and Triton's clients can place, scale, route to and monitor Sfumato.
//!
//! A request is decoded by its protocol ([`http`], [`grpc`]) into an [`InferRequest`], checked
//! against the model's tensors and the server's limits, and queued on the model's dynamic
//! batcher ([`batcher`]), which runs batches on one device queue per adapter ([`engine`]).

pub mod batcher;
pub mod config;
pub mod engine;
mod error;
pub mod grpc;
pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod pbtxt;
pub mod protocol;
pub mod repository;
pub mod stats;

pub use error::{ErrorKind, ServeError};
pub use protocol::{InferRequest, InferResponse, Limits, OutputTensor};

use batcher::Pending;
use metrics::Metrics;
use repository::Repository;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The protocol extensions this server speaks.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_repository",
    "schedule_policy",
    "statistics",
];

/// How `sfumato serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model_repository: PathBuf,
    /// The REST address (None: no HTTP). Defaults to 127.0.0.1:8000.
    pub http: Option<SocketAddr>,
    /// The gRPC address (None: no gRPC). Defaults to 127.0.0.1:8001.
    pub grpc: Option<SocketAddr>,
    /// A bearer token every request but the health probes must carry.
    pub token: Option<String>,
    pub limits: Limits,
    /// A request's longest time from arrival to answer, where its model sets none.
    pub request_timeout: Duration,
    /// Dynamic batching as the models' configs set it (false: every request runs alone, for
    /// comparing).
    pub batching: bool,
}

impl ServeOptions {
    pub fn new(model_repository: impl Into<PathBuf>) -> Self {
        ServeOptions {
            model_repository: model_repository.into(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
            token: None,
            limits: Limits::default(),
            request_timeout: Duration::from_secs(60),
            batching: true,
        }
    }
}

/// The server's state, shared by both protocols.
pub struct Server {
    pub repo: Arc<Repository>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    token: Option<[u8; 32]>,
    request_timeout: Duration,
    /// False once shutdown begins: readiness fails, so load balancers stop sending.
    accepting: AtomicBool,
    /// True once the startup loads are done.
    loaded: AtomicBool,
}

impl Server {
    /// Open the repository (nothing loaded yet: [`Server::load_all`]).
    pub fn new(opts: &ServeOptions) -> Result<Arc<Server>, ServeError> {
        let metrics = Arc::new(Metrics::default());
        let repo = Arc::new(Repository::new(
            &opts.model_repository,
            metrics.clone(),
            opts.batching,
        )?);
        Ok(Arc::new(Server {
            repo,
            metrics,
            limits: opts.limits,
            token: opts.token.as_deref().map(digest),
            request_timeout: opts.request_timeout,
            accepting: AtomicBool::new(true),
            loaded: AtomicBool::new(false),
        }))
    }

    pub async fn load_all(&self) {
        self.repo.load_all().await;
        self.loaded.store(true, Ordering::SeqCst);
    }

    /// Whether a request's `Authorization` value is the server's bearer token (always, where
    /// the server has none). Compared in constant time, as digests of equal length.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(digest(given)[..].ct_eq(&want[..])) && !given.is_empty()
    }

    pub fn live(&self) -> bool {
        true
    }

    /// Ready: the startup loads are done (a model that failed is reported in the index and
    /// answers 503; the others serve) and shutdown has not begun.
    pub fn ready(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
            && self.loaded.load(Ordering::SeqCst)
            && self.repo.settled()
    }

    /// The statistics extension: `name`'s (at `version`, else the served one; a model that is
    /// not ready is an error, as for inference), or every ready model's where no name is given.
    pub fn model_stats(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<stats::ModelStats>, ServeError> {
        let Some(name) = name else {
            return Ok(self
                .repo
                .index(true)
                .into_iter()
                .map(|row| self.metrics.stats.of(&row.name, &row.version))
                .collect());
        };
        let m = self.repo.get(name, version)?;
        Ok(vec![self.metrics.stats.of(name, &m.core.version)])
    }

    /// Begin shutdown: readiness fails from now on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Run one inference request: check it against the model, queue it, await its batch.
    pub async fn infer(&self, req: InferRequest) -> Result<InferResponse, ServeError> {
        let arrived = Instant::now();
        let model_name = req.model.clone();
        let result = self.infer_inner(req, arrived).await;
        let (model, version) = match &result {
            Ok(r) => (r.model.clone(), r.version.clone()),
            Err(_) => (model_name, String::new()),
        };
        // Unknown models are not given a label of their own (a client could mint any number).
        if self.repo.entry(&model).is_some() {
            let version = if version.is_empty() {
                self.repo
                    .get(&model, None)
                    .map(|m| m.core.version.clone())
                    .unwrap_or_default()
            } else {
                version
            };
            let failure = result.as_ref().err().map(|e| e.metric_reason());
            (self.metrics).answered(&model, &version, arrived.elapsed(), failure);
        }
        result
    }

    async fn infer_inner(
        &self,
        req: InferRequest,
        arrived: Instant,
    ) -> Result<InferResponse, ServeError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(ServeError::unavailable("the server is shutting down"));
        }
        let m = self.repo.get(&req.model, req.version.as_deref())?;
        let core = &m.core;
        let what = core.what();
        let batched = core.config.max_batch_size > 0;
        // Inputs: every one the model takes, once, with its datatype and shape.
        let mut ordered = Vec::with_capacity(core.inputs.len());
        let mut rows = None;
        for t in &req.inputs {
            if !core.inputs.iter().any(|i| i.name == t.name) {
                return Err(ServeError::bad_request(format!(
                    "{what}: unknown input '{}' (the model takes {})",
                    t.name,
                    names(core.inputs.iter().map(|i| i.name.as_str()))
                )));
            }
        }
        for meta in &core.inputs {
            let mut given = req.inputs.iter().filter(|t| t.name == meta.name);
            let t = given.next().ok_or_else(|| {
                ServeError::bad_request(format!("{what}: input '{}' is missing", meta.name))
            })?;
            if given.next().is_some() {
                return Err(ServeError::bad_request(format!(
                    "{what}: input '{}' is given twice",
                    meta.name
                )));
            }
            if t.tensor.dtype() != meta.dtype {
                return Err(ServeError::bad_request(format!(
                    "{what}: input '{}' is {}, the model takes {}",
                    meta.name,
                    protocol::datatype_of(&t.tensor),
                    meta.datatype()
                )));
            }
            let dims = t.tensor.dims();
            let fits = dims.len() == meta.shape.len()
                && dims
                    .iter()
                    .zip(&meta.shape)
                    .all(|(&d, &m)| m == -1 || d as i64 == m);
            if !fits {
                return Err(ServeError::bad_request(format!(
                    "{what}: input '{}' has shape {dims:?}, the model takes {:?}{}",
                    meta.name,
                    meta.shape,
                    if batched {
                        " (-1: the batch, 1 to max_batch_size)"
                    } else {
                        ""
                    }
                )));
            }
            if batched {
                let b = dims[0];
                if b == 0 || b > core.config.max_batch_size {
                    return Err(ServeError::bad_request(format!(
                        "{what}: input '{}' has batch {b}; the model takes 1 to {}",
                        meta.name, core.config.max_batch_size
                    )));
                }
                if rows.is_some_and(|r| r != b) {
                    return Err(ServeError::bad_request(format!(
                        "{what}: the inputs' batch sizes differ ({} and {b})",
                        rows.unwrap_or(0)
                    )));
                }
                rows = Some(b);
            }
            ordered.push(t.tensor.clone());
        }
        // Outputs asked for must exist.
        if let Some(outs) = &req.outputs {
            for o in outs {
                if !core.outputs.iter().any(|m| m.name == o.name) {
                    return Err(ServeError::bad_request(format!(
                        "{what}: unknown output '{}' (the model gives {})",
                        o.name,
                        names(core.outputs.iter().map(|m| m.name.as_str()))
                    )));
                }
            }
        }
        let timeout = [
            Some(self.request_timeout),
            core.config.default_timeout,
            req.timeout,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.request_timeout);
        let deadline = arrived + timeout;
        let (reply, rx) = oneshot::channel();
        let labels = [core.config.name.as_str(), core.version.as_str()];
        let pending = Pending {
            inputs: ordered,
            rows: rows.unwrap_or(1),
            arrived,
            deadline: Some(deadline),
            reply,
        };
        match m.queue.try_send(pending) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                return Err(ServeError::unavailable(format!(
                    "{what}: the queue is full ({} requests waiting); try again later",
                    core.config.max_queue_size
                )))
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(ServeError::unavailable(format!(
                    "{what}: the model is unloading"
                )))
            }
        }
        self.metrics.pending.with_label_values(&labels).inc();
        let outs = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(ServeError::internal(format!(
                    "{what}: the batch was dropped"
                )))
            }
            Err(_) => {
                return Err(ServeError::timeout(format!(
                    "{what}: no answer within {:.0} ms",
                    timeout.as_secs_f64() * 1e3
                )))
            }
        };
        let outputs = core
            .outputs
            .iter()
            .zip(outs)
            .filter_map(|(meta, tensor)| {
                let binary = match &req.outputs {
                    None => req.binary_output,
                    Some(o) => o.iter().find(|o| o.name == meta.name)?.binary,
                };
                Some(OutputTensor {
                    name: meta.name.clone(),
                    tensor,
                    binary,
                })
            })
            .collect();
        Ok(InferResponse {
            model: core.config.name.clone(),
            version: core.version.clone(),
            id: req.id,
            outputs,
        })
    }
}

fn digest(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(s.as_bytes()));
    out
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// Bind `addr` for `protocol`, recording the address it got (port 0 picks a free one).
async fn bind(
    addr: SocketAddr,
    protocol: &str,
    bound: &mut Vec<(String, SocketAddr)>,
) -> Result<tokio::net::TcpListener, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::internal(format!("binding {protocol} on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::internal(e.to_string()))?;
    bound.push((protocol.to_string(), local));
    Ok(listener)
}

/// Serve until `shutdown` resolves, then drain: readiness fails, the listeners stop taking
/// connections and wait for requests in flight, and the device queues finish their batches.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Vec<(String, SocketAddr)>) + Send,
) -> Result<(), ServeError> {
    let server = Server::new(&opts)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut bound = vec![];
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = opts.http {
        let listener = bind(addr, "http", &mut bound).await?;
        let app = http::router(server.clone());
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
                .map_err(|e| ServeError::internal(format!("HTTP server: {e}")))
        });
    }
    if let Some(addr) = opts.grpc {
        let listener = bind(addr, "grpc", &mut bound).await?;
        let (rx, s) = (stop_rx.clone(), server.clone());
        tasks.spawn(async move { grpc::serve(s, listener, rx).await });
    }
    // Models load while the listeners answer: live at once, ready once every model is.
    server.load_all().await;
    on_ready(bound);
    shutdown.await;
    tracing::info!("shutting down: draining requests in flight");
    server.stop_accepting();
    let _ = stop_tx.send(true);
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            result = Err(e);
        }
    }
    server.repo.shut_down();
    result
}
