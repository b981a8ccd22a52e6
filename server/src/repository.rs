//! The model repository, laid out as Triton's and KServe's are: one folder per model, named
//! as the model, holding `config.pbtxt` and numbered version folders (`1/model.onnx`).
//!
//! Every model loads on its own: one that fails is reported unavailable with its error while
//! the others serve. A (re)load builds the new model beside the old, which serves until the
//! new one is ready and is swapped in; requests already holding the old one finish on it.

use crate::engine::Engines;
use crate::metrics::Metrics;
use crate::model::{self, Model};
use crate::ServeError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A model's state, as the repository index reports it.
#[derive(Clone)]
pub enum Entry {
    Ready(Arc<Model>),
    Loading,
    Unavailable { reason: String },
}

impl Entry {
    pub fn state(&self) -> &'static str {
        match self {
            Entry::Ready(_) => "READY",
            Entry::Loading => "LOADING",
            Entry::Unavailable { .. } => "UNAVAILABLE",
        }
    }
}

/// One row of the repository index.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexRow {
    pub name: String,
    pub version: String,
    pub state: String,
    pub reason: String,
}

pub struct Repository {
    root: PathBuf,
    models: RwLock<BTreeMap<String, Entry>>,
    engines: Engines,
    metrics: Arc<Metrics>,
    /// False: models load without their dynamic batching ([`crate::ServeOptions::batching`]).
    batching: bool,
}

/// A model name a request may use: letters, digits, `_`, `-` and `.`, not starting with a
/// dot, at most 128 characters. Nothing else reaches the filesystem.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl Repository {
    pub fn new(
        root: &Path,
        metrics: Arc<Metrics>,
        batching: bool,
    ) -> Result<Repository, ServeError> {
        let root = root.canonicalize().map_err(|e| {
            ServeError::bad_config(format!("model repository {}: {e}", root.display()))
        })?;
        if !root.is_dir() {
            return Err(ServeError::bad_config(format!(
                "model repository {} is not a folder",
                root.display()
            )));
        }
        Ok(Repository {
            root,
            models: RwLock::new(BTreeMap::new()),
            engines: Engines::default(),
            metrics,
            batching,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model folders in the repository (those with a config.pbtxt).
    pub fn scan(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("config.pbtxt").is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| valid_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The folder of model `name`, which must be a folder directly inside the repository
    /// (after following links).
    fn folder(&self, name: &str) -> Result<PathBuf, ServeError> {
        let unknown = || ServeError::not_found(format!("no model '{name}' in the repository"));
        if !valid_name(name) {
            return Err(ServeError::bad_request(format!(
                "'{name}' is not a model name (letters, digits, '_', '-', '.')"
            )));
        }
        let dir = self.root.join(name).canonicalize().map_err(|_| unknown())?;
        if dir.parent() != Some(self.root.as_path()) || !dir.join("config.pbtxt").is_file() {
            return Err(unknown());
        }
        Ok(dir)
    }

    fn set(&self, name: &str, e: Entry) {
        self.metrics
            .ready
            .with_label_values(&[name])
            .set(matches!(e, Entry::Ready(_)) as i64);
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), e);
    }

    /// Load (or reload) model `name`: build it, warm it up at each batch size it runs, then
    /// swap it in. On failure an earlier version keeps serving where there is one; otherwise
    /// the model is reported unavailable with the error.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), ServeError> {
        let dir = self.folder(name)?;
        let had_ready = matches!(self.entry(name), Some(Entry::Ready(_)));
        if !had_ready {
            self.set(name, Entry::Loading);
        }
        let me = self.clone();
        let folder = name.to_string();
        let metrics = self.metrics.clone();
        let handle = tokio::runtime::Handle::current();
        let batching = self.batching;
        let built = tokio::task::spawn_blocking(move || {
            let _rt = handle.enter();
            model::load(&dir, &folder, |k| me.engines.get(k), metrics, batching)
        })
        .await
        .map_err(|e| ServeError::internal(format!("loading '{name}': {e}")))
        .and_then(|r| r);
        let result = match built {
            Ok(m) => {
                let m = Arc::new(m);
                match warm_up(&m).await {
                    Ok(()) => {
                        tracing::info!(model = name, version = %m.core.version, "model ready");
                        self.set(name, Entry::Ready(m));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(model = name, error = %e, "model failed to load");
            if !had_ready {
                self.set(
                    name,
                    Entry::Unavailable {
                        reason: e.message.clone(),
                    },
                );
            }
        }
        result
    }

    /// Load every model in the repository, each on its own (a failure is reported, the rest
    /// load).
    pub async fn load_all(self: &Arc<Self>) {
        for name in self.scan() {
            let _ = self.load(&name).await;
        }
    }

    /// Unload model `name`: it answers "unavailable" from now on; requests already queued
    /// finish.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        if !valid_name(name) || self.entry(name).is_none() {
            return Err(ServeError::not_found(format!(
                "no model '{name}' is loaded"
            )));
        }
        self.set(
            name,
            Entry::Unavailable {
                reason: "unloaded".into(),
            },
        );
        Ok(())
    }

    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// A ready model, at `version` if one is asked for.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, ServeError> {
        match self.entry(name) {
            None => Err(ServeError::not_found(format!("unknown model '{name}'"))),
            Some(Entry::Ready(m)) => match version {
                Some(v) if !v.is_empty() && v != m.core.version => {
                    Err(ServeError::not_found(format!(
                        "model '{name}' has no version '{v}' (version {} is served)",
                        m.core.version
                    )))
                }
                _ => Ok(m),
            },
            Some(Entry::Loading) => Err(ServeError::unavailable(format!(
                "model '{name}' is loading"
            ))),
            Some(Entry::Unavailable { reason }) => Err(ServeError::unavailable(format!(
                "model '{name}' is not ready: {reason}"
            ))),
        }
    }

    /// Every model in the repository, loaded or not.
    pub fn index(&self, ready_only: bool) -> Vec<IndexRow> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let mut names = self.scan();
        names.extend(models.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| {
                let (version, state, reason) = match models.get(&n) {
                    Some(Entry::Ready(m)) => (m.core.version.clone(), "READY", String::new()),
                    Some(e @ Entry::Unavailable { reason }) => {
                        (String::new(), e.state(), reason.clone())
                    }
                    Some(e) => (String::new(), e.state(), String::new()),
                    None => (String::new(), "UNAVAILABLE", "not loaded".to_string()),
                };
                (!ready_only || state == "READY").then(|| IndexRow {
                    name: n,
                    version,
                    state: state.into(),
                    reason,
                })
            })
            .collect()
    }

    /// Whether no model is loading: every model found at startup has been tried (a model that
    /// failed is reported unavailable and does not hold the server back, as Triton's
    /// `--strict-readiness=false`).
    pub fn settled(&self) -> bool {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        !models.values().any(|e| matches!(e, Entry::Loading))
    }

    /// Stop taking requests: every model's queue closes (queued requests finish), then the
    /// device threads end.
    pub fn shut_down(&self) {
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.engines.stop();
    }
}

/// Run the model once at each batch size it is built at, so no request pays for compiling
/// kernels or uploading weights.
async fn warm_up(m: &Arc<Model>) -> Result<(), ServeError> {
    let core = &m.core;
    let sizes = if core.config.max_batch_size > 0 {
        core.buckets.clone()
    } else {
        vec![1]
    };
    for b in sizes {
        let c2 = core.clone();
        let graph = tokio::task::spawn_blocking(move || c2.graph(b))
            .await
            .map_err(|e| ServeError::internal(format!("warming up: {e}")))??;
        let inputs = graph
            .inputs()
            .iter()
            .map(|&v| sfumato_core::Tensor::zeros(graph.dtype(v), graph.shape(v).clone()))
            .collect();
        core.engine
            .run(
                graph,
                inputs,
                format!("{} (warm-up at batch {b})", core.what()),
            )
            .await
            .map_err(|e| {
                ServeError::bad_config(format!("{}: the warm-up run failed: {e}", core.config.name))
            })?;
    }
    Ok(())
}
