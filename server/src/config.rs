//! A model's `config.pbtxt`, in Triton's schema (the fields Sfumato uses; any other is refused
//! by name, so a misspelt field never goes unseen).
//!
//! ```text
//! name: "bert-layer"
//! platform: "sfumato_zoo"              # or "onnxruntime_onnx" / "onnx" for <version>/model.onnx
//! max_batch_size: 8                     # 0: no batch dimension, requests run as they come
//! input [ { name: "x" data_type: TYPE_FP32 dims: [ 128, 768 ] } ]   # without the batch dim
//! output [ { name: "y" data_type: TYPE_FP32 dims: [ 128, 768 ] } ]
//! dynamic_batching {
//!   preferred_batch_size: [ 4, 8 ]
//!   max_queue_delay_microseconds: 2000
//!   default_queue_policy { max_queue_size: 64 default_timeout_microseconds: 10000000 }
//! }
//! instance_group [ { kind: KIND_GPU count: 1 } ]  # KIND_GPU: WebGPU; KIND_CPU: the CPU reference
//! parameters { key: "model" value: { string_value: "bert-base" } }  # zoo models: which, and
//! parameters { key: "seq" value: { string_value: "128" } }          # its layers/seq/size
//! ```

use crate::pbtxt::{self, Value};
use crate::ServeError;
use sfumato_core::DType;
use std::collections::BTreeMap;
use std::time::Duration;

/// A tensor a model takes or gives, as the config declares it (dims without the batch dim
/// where `max_batch_size > 0`; -1 for a dim of any size).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorConfig {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<i64>,
}

/// Which device runs the model's instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// The WebGPU device (`KIND_GPU`, the default).
    Wgpu,
    /// The CPU reference interpreter (`KIND_CPU`).
    Cpu,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cpu => "cpu",
        }
    }
}

/// Triton's dynamic batcher settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicBatching {
    /// Batch sizes the batcher aims for (empty: the largest that fits).
    pub preferred: Vec<usize>,
    /// How long the first request of a batch may wait for others.
    pub max_queue_delay: Duration,
}

/// What a model is built from.
#[derive(Clone, Debug, PartialEq)]
pub enum Platform {
    /// `<version>/model.onnx` (or `default_model_filename`).
    Onnx,
    /// A zoo model by name (`parameters { key: "model" ... }`), with its options.
    Zoo { model: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub platform: Platform,
    /// The platform as written, echoed in model metadata.
    pub platform_name: String,
    pub max_batch_size: usize,
    pub inputs: Vec<TensorConfig>,
    pub outputs: Vec<TensorConfig>,
    pub dynamic_batching: Option<DynamicBatching>,
    /// Requests a model's queue holds before it answers "unavailable" (503) at once.
    pub max_queue_size: usize,
    /// A request's time from arrival to its answer; past it, it is answered with a timeout.
    pub default_timeout: Option<Duration>,
    pub device: DeviceKind,
    /// Batches of this model in flight at once.
    pub instance_count: usize,
    pub default_model_filename: String,
    /// `parameters` as key/string pairs (zoo options: layers, seq, size).
    pub parameters: BTreeMap<String, String>,
}

/// The queue bound where the config sets none.
pub const DEFAULT_MAX_QUEUE: usize = 256;

/// Triton's `TYPE_*` names and the protocol's datatype names, to sfumato's dtypes.
pub fn dtype_from_config(name: &str) -> Option<DType> {
    dtype_from_protocol(name.strip_prefix("TYPE_")?)
}

/// The protocol's datatype names ("FP32", "INT64", ...) to sfumato's dtypes. BYTES (strings)
/// has no sfumato dtype.
pub fn dtype_from_protocol(name: &str) -> Option<DType> {
    Some(match name {
        "BOOL" => DType::Bool,
        "UINT8" => DType::U8,
        "UINT16" => DType::U16,
        "UINT32" => DType::U32,
        "UINT64" => DType::U64,
        "INT8" => DType::I8,
        "INT16" => DType::I16,
        "INT32" => DType::I32,
        "INT64" => DType::I64,
        "FP16" => DType::F16,
        "BF16" => DType::BF16,
        "FP32" => DType::F32,
        "FP64" => DType::F64,
        _ => return None,
    })
}

/// model_config.proto's `DataType` of a sfumato dtype: its name (`TYPE_FP32`) and number (11);
/// `TYPE_INVALID` (0) where the protocol has none. `…/config` over HTTP writes the name, gRPC's
/// `ModelConfig` the number.
pub fn config_data_type(d: DType) -> (&'static str, i32) {
    match d {
        DType::Bool => ("TYPE_BOOL", 1),
        DType::U8 => ("TYPE_UINT8", 2),
        DType::U16 => ("TYPE_UINT16", 3),
        DType::U32 => ("TYPE_UINT32", 4),
        DType::U64 => ("TYPE_UINT64", 5),
        DType::I8 => ("TYPE_INT8", 6),
        DType::I16 => ("TYPE_INT16", 7),
        DType::I32 => ("TYPE_INT32", 8),
        DType::I64 => ("TYPE_INT64", 9),
        DType::F16 => ("TYPE_FP16", 10),
        DType::F32 => ("TYPE_FP32", 11),
        DType::F64 => ("TYPE_FP64", 12),
        DType::BF16 => ("TYPE_BF16", 14),
        _ => ("TYPE_INVALID", 0),
    }
}

/// model_config.proto's name of `DataType` number `n` ([`config_data_type`] read back):
/// `TYPE_INVALID` where no sfumato dtype has it.
pub fn config_type_name(n: i32) -> &'static str {
    DType::ALL
        .iter()
        .map(|&d| config_data_type(d))
        .find(|&(_, k)| k == n)
        .map_or("TYPE_INVALID", |(name, _)| name)
}

/// model_config.proto's instance group `Kind` of a device: its name and number.
pub fn config_instance_kind(d: DeviceKind) -> (&'static str, i32) {
    match d {
        DeviceKind::Wgpu => ("KIND_GPU", 1),
        DeviceKind::Cpu => ("KIND_CPU", 2),
    }
}

/// The name of instance group `Kind` number `n` ([`config_instance_kind`] read back).
pub fn config_instance_kind_name(n: i32) -> &'static str {
    [DeviceKind::Wgpu, DeviceKind::Cpu]
        .into_iter()
        .map(config_instance_kind)
        .find(|&(_, k)| k == n)
        .map_or("KIND_AUTO", |(name, _)| name)
}

/// A sfumato dtype's protocol name, where the protocol has one.
pub fn protocol_dtype(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        _ => return None,
    })
}

fn bad(model: &str, msg: impl std::fmt::Display) -> ServeError {
    ServeError::bad_config(format!("{model}/config.pbtxt: {msg}"))
}

fn scalar<'a>(model: &str, field: &str, v: &'a Value) -> Result<&'a str, ServeError> {
    match v {
        Value::Scalar(s) => Ok(s),
        Value::Message(_) => Err(bad(
            model,
            format!("'{field}' must be a value, not a message"),
        )),
    }
}

fn message<'a>(
    model: &str,
    field: &str,
    v: &'a Value,
) -> Result<&'a [(String, Value)], ServeError> {
    match v {
        Value::Message(m) => Ok(m),
        Value::Scalar(_) => Err(bad(model, format!("'{field}' must be a message {{ ... }}"))),
    }
}

fn number<T: std::str::FromStr>(model: &str, field: &str, v: &Value) -> Result<T, ServeError> {
    let s = scalar(model, field, v)?;
    s.parse()
        .map_err(|_| bad(model, format!("'{field}: {s}' is not a valid number here")))
}

fn tensor(
    model: &str,
    field: &str,
    fields: &[(String, Value)],
) -> Result<TensorConfig, ServeError> {
    let (mut name, mut dtype, mut dims) = (None, None, vec![]);
    for (k, v) in fields {
        match k.as_str() {
            "name" => name = Some(scalar(model, "name", v)?.to_string()),
            "data_type" => {
                let s = scalar(model, "data_type", v)?;
                dtype = Some(dtype_from_config(s).ok_or_else(|| {
                    bad(model, format!("{field}: data_type {s} is not supported (TYPE_FP32, TYPE_FP16, TYPE_INT64, ...; TYPE_STRING is not)"))
                })?);
            }
            "dims" => {
                let d: i64 = number(model, "dims", v)?;
                if d < -1 || d == 0 {
                    return Err(bad(
                        model,
                        format!("{field}: dims must be positive or -1, got {d}"),
                    ));
                }
                dims.push(d);
            }
            "format" | "optional" => {}
            other => return Err(bad(model, format!("{field}: unknown field '{other}'"))),
        }
    }
    Ok(TensorConfig {
        name: name.ok_or_else(|| bad(model, format!("an {field} has no name")))?,
        dtype: dtype.ok_or_else(|| bad(model, format!("an {field} has no data_type")))?,
        dims,
    })
}

impl ModelConfig {
    /// Parse `text`, the config of the model in folder `folder` (the name must match the
    /// folder's where the config gives one, as Triton requires).
    pub fn parse(folder: &str, text: &str) -> Result<ModelConfig, ServeError> {
        let fields = pbtxt::parse(text).map_err(|e| bad(folder, e))?;
        let mut c = ModelConfig {
            name: folder.to_string(),
            platform: Platform::Onnx,
            platform_name: String::new(),
            max_batch_size: 0,
            inputs: vec![],
            outputs: vec![],
            dynamic_batching: None,
            max_queue_size: DEFAULT_MAX_QUEUE,
            default_timeout: None,
            device: DeviceKind::Wgpu,
            instance_count: 1,
            default_model_filename: "model.onnx".into(),
            parameters: BTreeMap::new(),
        };
        let mut platform = None;
        for (k, v) in &fields {
            match k.as_str() {
                "name" => {
                    let n = scalar(folder, "name", v)?;
                    if n != folder {
                        return Err(bad(
                            folder,
                            format!("name '{n}' differs from its folder's name '{folder}'"),
                        ));
                    }
                }
                "platform" | "backend" => platform = Some(scalar(folder, k, v)?.to_string()),
                "max_batch_size" => c.max_batch_size = number(folder, k, v)?,
                "input" => c
                    .inputs
                    .push(tensor(folder, "input", message(folder, k, v)?)?),
                "output" => c
                    .outputs
                    .push(tensor(folder, "output", message(folder, k, v)?)?),
                "default_model_filename" => {
                    let f = scalar(folder, k, v)?;
                    if f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.') {
                        return Err(bad(
                            folder,
                            format!("default_model_filename '{f}' must be a plain file name"),
                        ));
                    }
                    c.default_model_filename = f.to_string();
                }
                "dynamic_batching" => {
                    let mut d = DynamicBatching {
                        preferred: vec![],
                        max_queue_delay: Duration::ZERO,
                    };
                    for (k, v) in message(folder, k, v)? {
                        match k.as_str() {
                            "preferred_batch_size" => {
                                let b: usize = number(folder, k, v)?;
                                if b == 0 {
                                    return Err(bad(
                                        folder,
                                        "preferred_batch_size must be positive",
                                    ));
                                }
                                d.preferred.push(b)
                            }
                            "max_queue_delay_microseconds" => {
                                d.max_queue_delay = Duration::from_micros(number(folder, k, v)?)
                            }
                            "default_queue_policy" => {
                                for (k, v) in message(folder, k, v)? {
                                    match k.as_str() {
                                        "max_queue_size" => {
                                            c.max_queue_size = number(folder, k, v)?;
                                        }
                                        "default_timeout_microseconds" => {
                                            let us: u64 = number(folder, k, v)?;
                                            c.default_timeout =
                                                (us > 0).then(|| Duration::from_micros(us));
                                        }
                                        "timeout_action" | "allow_timeout_override" => {}
                                        other => {
                                            return Err(bad(
                                                folder,
                                                format!(
                                                    "default_queue_policy: unknown field '{other}'"
                                                ),
                                            ))
                                        }
                                    }
                                }
                            }
                            "preserve_ordering" => {}
                            other => {
                                return Err(bad(
                                    folder,
                                    format!("dynamic_batching: unknown field '{other}'"),
                                ))
                            }
                        }
                    }
                    d.preferred.sort_unstable();
                    d.preferred.dedup();
                    c.dynamic_batching = Some(d);
                }
                "instance_group" => {
                    for (k, v) in message(folder, k, v)? {
                        match k.as_str() {
                            "count" => c.instance_count = number(folder, k, v)?,
                            "kind" => {
                                c.device = match scalar(folder, k, v)? {
                                    "KIND_GPU" | "KIND_AUTO" => DeviceKind::Wgpu,
                                    "KIND_CPU" => DeviceKind::Cpu,
                                    other => return Err(bad(folder, format!("instance_group kind {other}: KIND_GPU (WebGPU) or KIND_CPU (the CPU reference)"))),
                                }
                            }
                            "name" | "gpus" => {}
                            other => return Err(bad(folder, format!("instance_group: unknown field '{other}'"))),
                        }
                    }
                }
                "parameters" => {
                    let (mut key, mut value) = (None, None);
                    for (k, v) in message(folder, k, v)? {
                        match k.as_str() {
                            "key" => key = Some(scalar(folder, k, v)?.to_string()),
                            "value" => {
                                for (k2, v2) in message(folder, k, v)? {
                                    if k2 == "string_value" {
                                        value = Some(scalar(folder, k2, v2)?.to_string());
                                    }
                                }
                            }
                            other => {
                                return Err(bad(
                                    folder,
                                    format!("parameters: unknown field '{other}'"),
                                ))
                            }
                        }
                    }
                    match (key, value) {
                        (Some(k), Some(v)) => {
                            c.parameters.insert(k, v);
                        }
                        _ => {
                            return Err(bad(
                                folder,
                                "a parameters entry needs key and value { string_value }",
                            ))
                        }
                    }
                }
                "version_policy" | "model_warmup" | "optimization" => {}
                other => return Err(bad(folder, format!("unknown field '{other}'"))),
            }
        }
        if c.instance_count == 0 {
            return Err(bad(folder, "instance_group count must be positive"));
        }
        if c.max_queue_size == 0 {
            c.max_queue_size = DEFAULT_MAX_QUEUE;
        }
        let platform = platform.unwrap_or_else(|| "onnxruntime_onnx".into());
        c.platform = match platform.as_str() {
            "onnxruntime_onnx" | "onnxruntime" | "onnx" => Platform::Onnx,
            "sfumato_zoo" | "sfumato" => Platform::Zoo {
                model: c
                    .parameters
                    .get("model")
                    .cloned()
                    .ok_or_else(|| bad(folder, "platform sfumato_zoo needs parameters { key: \"model\" value: { string_value: \"bert-base\" } }"))?,
            },
            other => {
                return Err(bad(
                    folder,
                    format!("platform '{other}' is not served here (onnxruntime_onnx, onnx or sfumato_zoo)"),
                ))
            }
        };
        c.platform_name = platform;
        if let Some(d) = &c.dynamic_batching {
            if c.max_batch_size == 0 {
                return Err(bad(folder, "dynamic_batching needs max_batch_size > 0"));
            }
            if let Some(&p) = d.preferred.iter().find(|&&p| p > c.max_batch_size) {
                return Err(bad(
                    folder,
                    format!(
                        "preferred_batch_size {p} is over max_batch_size {}",
                        c.max_batch_size
                    ),
                ));
            }
        }
        Ok(c)
    }

    /// The batch sizes a batch is padded up to (each is built once): 1, the preferred sizes
    /// and the largest; a model without batching runs at its own size.
    pub fn batch_buckets(&self) -> Vec<usize> {
        let mut b = vec![1, self.max_batch_size.max(1)];
        if let Some(d) = &self.dynamic_batching {
            b.extend(&d.preferred);
        }
        b.sort_unstable();
        b.dedup();
        b
    }

    /// A zoo option from `parameters`, if given.
    pub fn usize_param(&self, key: &str) -> Result<Option<usize>, ServeError> {
        self.parameters
            .get(key)
            .map(|v| {
                v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    bad(
                        &self.name,
                        format!("parameter {key} = '{v}' is not a positive number"),
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_enums_read_back() {
        for d in DType::ALL {
            let (name, n) = config_data_type(d);
            assert_eq!(config_type_name(n), name, "{d:?}");
        }
        assert_eq!(config_type_name(11), "TYPE_FP32");
        assert_eq!(config_type_name(99), "TYPE_INVALID");
        for d in [DeviceKind::Wgpu, DeviceKind::Cpu] {
            let (name, n) = config_instance_kind(d);
            assert_eq!(config_instance_kind_name(n), name);
        }
        assert_eq!(config_instance_kind_name(0), "KIND_AUTO");
    }

    #[test]
    fn a_full_config() {
        let c = ModelConfig::parse(
            "bert",
            r#"name: "bert" platform: "sfumato_zoo" max_batch_size: 8
               input [ { name: "x" data_type: TYPE_FP32 dims: [ 128, 768 ] } ]
               dynamic_batching { preferred_batch_size: [ 8, 4 ] max_queue_delay_microseconds: 500
                 default_queue_policy { max_queue_size: 3 default_timeout_microseconds: 1000 } }
               instance_group [ { kind: KIND_CPU count: 2 } ]
               parameters { key: "model" value: { string_value: "bert-base" } }"#,
        )
        .unwrap();
        assert_eq!(
            c.platform,
            Platform::Zoo {
                model: "bert-base".into()
            }
        );
        assert_eq!(c.inputs[0].dims, vec![128, 768]);
        assert_eq!(c.dynamic_batching.as_ref().unwrap().preferred, vec![4, 8]);
        assert_eq!(c.max_queue_size, 3);
        assert_eq!(c.default_timeout, Some(Duration::from_millis(1)));
        assert_eq!((c.device, c.instance_count), (DeviceKind::Cpu, 2));
        assert_eq!(c.batch_buckets(), vec![1, 4, 8]);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("name: \"other\"", "differs from its folder"),
            ("max_batch_sise: 4", "unknown field 'max_batch_sise'"),
            ("platform: \"tensorrt_plan\"", "not served here"),
            (
                "input [ { name: \"x\" data_type: TYPE_STRING dims: [1] } ]",
                "TYPE_STRING",
            ),
            ("dynamic_batching { }", "needs max_batch_size"),
            (
                "max_batch_size: 2 dynamic_batching { preferred_batch_size: 4 }",
                "over max_batch_size",
            ),
            ("platform: \"sfumato_zoo\"", "needs parameters"),
            ("default_model_filename: \"../x.onnx\"", "plain file name"),
            ("input { name: \"x\" ", "line 1"),
        ] {
            let e = ModelConfig::parse("m", text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains("m/config.pbtxt"), "{e}");
        }
    }
}
