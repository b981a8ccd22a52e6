//! A loaded model: its config, the tensors it takes and gives, its graph built at each batch
//! size it runs, and the queue its requests wait in.

use crate::batcher::{self, Pending};
use crate::config::{protocol_dtype, DeviceKind, ModelConfig, Platform};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::ServeError;
use sfumato_core::{DType, Graph, Tensor};
use sfumato_zoo::models::{self, ModelOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A tensor as model metadata gives it: -1 for the batch dim where the model batches.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorMeta {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
}

impl TensorMeta {
    pub fn datatype(&self) -> &'static str {
        protocol_dtype(self.dtype).unwrap_or("FP32")
    }
}

enum Source {
    Onnx { bytes: Arc<Vec<u8>>, dir: PathBuf },
    Zoo { name: String, options: ModelOptions },
}

/// What the batcher and the request handlers share of a model.
pub struct ModelCore {
    pub config: ModelConfig,
    pub version: String,
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
    source: Source,
    graphs: Mutex<HashMap<usize, Arc<Graph>>>,
    pub engine: Engine,
    /// Sizes a batch is padded up to ([`ModelConfig::batch_buckets`]).
    pub buckets: Vec<usize>,
}

/// A model ready to serve: its core and its queue.
pub struct Model {
    pub core: Arc<ModelCore>,
    pub queue: mpsc::Sender<Pending>,
}

fn meta_of(
    graph: &Graph,
    names: &[String],
    ids: &[sfumato_core::ValueId],
    batched: bool,
) -> Vec<TensorMeta> {
    ids.iter()
        .zip(names)
        .map(|(&v, n)| {
            let mut shape: Vec<i64> = graph.shape(v).dims().iter().map(|&d| d as i64).collect();
            if batched && !shape.is_empty() {
                shape[0] = -1;
            }
            TensorMeta {
                name: n.clone(),
                dtype: graph.dtype(v),
                shape,
            }
        })
        .collect()
}

impl ModelCore {
    /// A tensor's dims as the model configuration writes them: without the batch dim where
    /// the model batches (Triton's `max_batch_size > 0` convention).
    pub fn config_dims<'a>(&self, t: &'a TensorMeta) -> &'a [i64] {
        if self.config.max_batch_size > 0 {
            t.shape.get(1..).unwrap_or_default()
        } else {
            &t.shape
        }
    }

    /// The graph at batch size `batch` (a bucket), built once.
    pub fn graph(&self, batch: usize) -> Result<Arc<Graph>, ServeError> {
        if let Some(g) = self
            .graphs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&batch)
        {
            return Ok(g.clone());
        }
        let g = Arc::new(self.build(batch)?.0);
        self.graphs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(batch, g.clone());
        Ok(g)
    }

    /// Build the graph at `batch` rows; also returns the input and output names.
    fn build(&self, batch: usize) -> Result<(Graph, Vec<String>, Vec<String>), ServeError> {
        build(&self.config, &self.source, batch, &self.inputs)
    }

    /// "model 'name' version v", for messages.
    pub fn what(&self) -> String {
        format!("model '{}' version {}", self.config.name, self.version)
    }
}

fn build(
    config: &ModelConfig,
    source: &Source,
    batch: usize,
    known: &[TensorMeta],
) -> Result<(Graph, Vec<String>, Vec<String>), ServeError> {
    let name = &config.name;
    match source {
        Source::Onnx { bytes, dir } => {
            let mut opts = sfumato_onnx::ImportOptions {
                default_dim: Some(1),
                base_dir: Some(dir.clone()),
                ..Default::default()
            };
            // The config's dims (or, once loaded, the model's own) fix each input's shape,
            // with the batch dim in front where the model batches.
            let given: Vec<(String, Vec<i64>)> = if known.is_empty() {
                config
                    .inputs
                    .iter()
                    .map(|t| (t.name.clone(), t.dims.clone()))
                    .collect()
            } else {
                known
                    .iter()
                    .map(|t| {
                        let dims = if config.max_batch_size > 0 {
                            t.shape[1..].to_vec()
                        } else {
                            t.shape.clone()
                        };
                        (t.name.clone(), dims)
                    })
                    .collect()
            };
            for (input, dims) in given {
                if dims.iter().any(|&d| d < 1) {
                    continue;
                }
                let mut shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
                if config.max_batch_size > 0 {
                    shape.insert(0, batch);
                }
                opts.input_shapes.insert(input, shape);
            }
            let m = sfumato_onnx::import(bytes, &opts).map_err(|e| {
                ServeError::bad_config(format!(
                    "{name}: importing the ONNX model at batch {batch}: {e}"
                ))
            })?;
            Ok((m.graph, m.inputs, m.outputs))
        }
        Source::Zoo { name: zoo, options } => {
            let o = ModelOptions {
                batch: batch.max(1),
                ..*options
            };
            let (g, _) = models::by_name_with(zoo, &o).map_err(|e| {
                ServeError::bad_config(format!(
                    "{name}: building zoo model '{zoo}' at batch {batch}: {e}"
                ))
            })?;
            let ins = g
                .inputs()
                .iter()
                .map(|&v| g.value(v).name.clone())
                .collect();
            let outs = g
                .outputs()
                .iter()
                .map(|&v| g.value(v).name.clone())
                .collect();
            Ok((g, ins, outs))
        }
    }
}

/// The highest numbered version folder under `dir` (that holds `file`, where one is named).
fn latest_version(dir: &Path, file: Option<&str>) -> Option<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n: u64 = e.file_name().to_str()?.parse().ok()?;
            let p = match file {
                Some(f) => e.path().join(f),
                None => e.path(),
            };
            let ok = if file.is_some() {
                p.is_file()
            } else {
                p.is_dir()
            };
            ok.then_some((n, p))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(n, p)| (n.to_string(), p))
}

/// Load the model in folder `dir` of the repository: read its config and model, build it at
/// batch size 1 to learn its tensors, check them against the config, and start its queue.
pub fn load(
    dir: &Path,
    folder: &str,
    engine_for: impl Fn(DeviceKind) -> Result<Engine, ServeError>,
    metrics: Arc<Metrics>,
    batching: bool,
) -> Result<Model, ServeError> {
    let text = std::fs::read_to_string(dir.join("config.pbtxt"))
        .map_err(|e| ServeError::bad_config(format!("{folder}/config.pbtxt: {e}")))?;
    let mut config = ModelConfig::parse(folder, &text)?;
    if !batching {
        config.dynamic_batching = None;
    }
    let (version, source) = match &config.platform {
        Platform::Onnx => {
            let (version, path) = latest_version(dir, Some(&config.default_model_filename))
                .ok_or_else(|| {
                    ServeError::bad_config(format!(
                        "{folder}: no version folder holds {} (expected {folder}/1/{})",
                        config.default_model_filename, config.default_model_filename
                    ))
                })?;
            let bytes = std::fs::read(&path)
                .map_err(|e| ServeError::bad_config(format!("{}: {e}", path.display())))?;
            let vdir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (
                version,
                Source::Onnx {
                    bytes: Arc::new(bytes),
                    dir: vdir,
                },
            )
        }
        Platform::Zoo { model } => {
            let d = models::default_options(model)
                .map_err(|e| ServeError::bad_config(format!("{folder}: {e}")))?;
            let options = ModelOptions {
                batch: 1,
                layers: config.usize_param("layers")?.unwrap_or(d.layers),
                seq: config.usize_param("seq")?.unwrap_or(d.seq),
                size: config.usize_param("size")?.unwrap_or(d.size),
            };
            let version = latest_version(dir, None)
                .map(|v| v.0)
                .unwrap_or_else(|| "1".into());
            (
                version,
                Source::Zoo {
                    name: model.clone(),
                    options,
                },
            )
        }
    };
    let batched = config.max_batch_size > 0;
    let (g, in_names, out_names) = build(&config, &source, 1, &[])?;
    let inputs = meta_of(&g, &in_names, g.inputs(), batched);
    let outputs = meta_of(&g, &out_names, g.outputs(), batched);
    check_against_config(&config, &inputs, &outputs, &g)?;
    for t in inputs.iter().chain(&outputs) {
        if protocol_dtype(t.dtype).is_none() {
            return Err(ServeError::bad_config(format!(
                "{folder}: tensor '{}' is {}, which the protocol has no datatype for",
                t.name, t.dtype
            )));
        }
    }
    let engine = engine_for(config.device)?;
    let buckets = config.batch_buckets();
    let core = Arc::new(ModelCore {
        graphs: Mutex::new(HashMap::from([(1, Arc::new(g))])),
        config,
        version,
        inputs,
        outputs,
        source,
        engine,
        buckets,
    });
    let queue = batcher::spawn(core.clone(), metrics);
    Ok(Model { core, queue })
}

/// The config's declared tensors (where it declares them) must be the model's: names,
/// datatypes and dims; a batched model's tensors must all lead with the batch dim.
fn check_against_config(
    c: &ModelConfig,
    inputs: &[TensorMeta],
    outputs: &[TensorMeta],
    g: &Graph,
) -> Result<(), ServeError> {
    let batched = c.max_batch_size > 0;
    for (kind, declared, actual) in [
        ("input", &c.inputs, inputs),
        ("output", &c.outputs, outputs),
    ] {
        for d in declared.iter() {
            let a = actual.iter().find(|a| a.name == d.name).ok_or_else(|| {
                ServeError::bad_config(format!(
                    "{}: the config's {kind} '{}' is not among the model's {kind}s ({})",
                    c.name,
                    d.name,
                    actual
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let dims = if batched {
                &a.shape[1.min(a.shape.len())..]
            } else {
                &a.shape[..]
            };
            let dims_match = dims.len() == d.dims.len()
                && dims.iter().zip(&d.dims).all(|(&x, &y)| y == -1 || x == y);
            if a.dtype != d.dtype || !dims_match {
                return Err(ServeError::bad_config(format!(
                    "{}: the config's {kind} '{}' is {} {:?}, the model's is {} {:?}{}",
                    c.name,
                    d.name,
                    protocol_dtype(d.dtype).unwrap_or("?"),
                    d.dims,
                    protocol_dtype(a.dtype).unwrap_or("?"),
                    dims,
                    if batched {
                        " (without the batch dim)"
                    } else {
                        ""
                    }
                )));
            }
        }
        if batched {
            if let Some(t) = actual.iter().find(|t| t.shape.is_empty()) {
                return Err(ServeError::bad_config(format!(
                    "{}: max_batch_size is {} but {kind} '{}' is a scalar, with no batch dim",
                    c.name, c.max_batch_size, t.name
                )));
            }
        }
    }
    if batched {
        // Built at batch 1, every tensor's first dim must be 1.
        for &v in g.inputs().iter().chain(g.outputs()) {
            if g.shape(v).dims().first() != Some(&1) {
                return Err(ServeError::bad_config(format!(
                    "{}: max_batch_size is {} but '{}' has shape {} at batch 1: its first dim is not the batch",
                    c.name,
                    c.max_batch_size,
                    g.value(v).name,
                    g.shape(v)
                )));
            }
        }
    }
    Ok(())
}

/// Stack requests' tensors along dim 0 and pad with zero rows up to `rows` (a bucket).
pub fn stack(parts: &[&Tensor], rows: usize) -> Result<Tensor, ServeError> {
    let first = parts
        .first()
        .ok_or_else(|| ServeError::internal("an empty batch"))?;
    let mut dims = first.dims().to_vec();
    let per_row: usize = dims[1..].iter().product::<usize>() * first.dtype().size_bytes();
    let mut bytes = Vec::with_capacity(per_row * rows);
    for p in parts {
        bytes.extend(p.to_le_bytes());
    }
    bytes.resize(per_row * rows, 0);
    dims[0] = rows;
    Tensor::from_le_bytes(first.dtype(), dims, &bytes)
        .map_err(|e| ServeError::internal(format!("stacking a batch: {e}")))
}

/// Split a batch's output along dim 0 into the requests' rows (padding rows dropped).
pub fn unstack(t: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>, ServeError> {
    let dims = t.dims();
    let total: usize = rows.iter().sum();
    if dims.first().is_none_or(|&d| d < total) {
        return Err(ServeError::internal(format!(
            "an output of shape {:?} has fewer than the batch's {total} rows",
            dims
        )));
    }
    let per_row: usize = dims[1..].iter().product::<usize>() * t.dtype().size_bytes();
    let bytes = t.to_le_bytes();
    let mut at = 0;
    rows.iter()
        .map(|&r| {
            let mut d = dims.to_vec();
            d[0] = r;
            let part = &bytes[at * per_row..(at + r) * per_row];
            at += r;
            Tensor::from_le_bytes(t.dtype(), d, part)
                .map_err(|e| ServeError::internal(format!("splitting a batch: {e}")))
        })
        .collect()
}
