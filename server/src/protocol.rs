//! The protocol's requests and responses, the same for HTTP and gRPC once decoded, and the
//! tensor decoding both share: every size is checked against the limits before anything is
//! allocated.

use crate::config::{dtype_from_protocol, protocol_dtype};
use crate::ServeError;
use sfumato_core::{DType, Tensor};
use std::time::Duration;

/// A decoded input tensor.
#[derive(Clone, Debug)]
pub struct InputTensor {
    pub name: String,
    pub tensor: Tensor,
}

/// An output the client asked for, and whether it wants it as binary data.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
}

#[derive(Clone, Debug)]
pub struct InferRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: String,
    pub inputs: Vec<InputTensor>,
    /// `None`: every output.
    pub outputs: Option<Vec<RequestedOutput>>,
    /// Outputs not named in `outputs` come back as binary data (the request's
    /// `binary_data_output` parameter).
    pub binary_output: bool,
    /// The request's own timeout (its `timeout` parameter, in microseconds), if shorter than
    /// the model's.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct OutputTensor {
    pub name: String,
    pub tensor: Tensor,
    pub binary: bool,
}

#[derive(Clone, Debug)]
pub struct InferResponse {
    pub model: String,
    pub version: String,
    pub id: String,
    pub outputs: Vec<OutputTensor>,
}

/// The server's size limits, checked before a tensor is allocated.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A whole request body (HTTP) or message (gRPC).
    pub max_body_bytes: usize,
    /// One tensor's data.
    pub max_tensor_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 << 20,
            max_tensor_bytes: 32 << 20,
        }
    }
}

/// A tensor's datatype and shape as the request gives them, checked: a known datatype,
/// non-negative dims and a byte size within the limit. Returns the dtype, the dims and the
/// element count.
pub fn check_tensor(
    name: &str,
    datatype: &str,
    shape: &[i64],
    limits: &Limits,
) -> Result<(DType, Vec<usize>, usize), ServeError> {
    let dtype = dtype_from_protocol(datatype).ok_or_else(|| {
        ServeError::bad_request(format!(
            "input '{name}': datatype '{datatype}' is not supported (BOOL, UINT8-64, INT8-64, FP16, BF16, FP32, FP64)"
        ))
    })?;
    let mut dims = Vec::with_capacity(shape.len());
    let mut n: usize = 1;
    for &d in shape {
        let d = usize::try_from(d).map_err(|_| {
            ServeError::bad_request(format!(
                "input '{name}': shape {shape:?} has a negative dim"
            ))
        })?;
        n = n.checked_mul(d).ok_or_else(|| {
            ServeError::too_large(format!("input '{name}': shape {shape:?} overflows"))
        })?;
        dims.push(d);
    }
    let bytes = n.saturating_mul(dtype.size_bytes());
    if bytes > limits.max_tensor_bytes {
        return Err(ServeError::too_large(format!(
            "input '{name}': shape {shape:?} of {datatype} is {bytes} bytes, over the server's \
             limit of {} bytes per tensor",
            limits.max_tensor_bytes
        )));
    }
    Ok((dtype, dims, n))
}

/// A tensor from the binary tensor data extension's bytes (or gRPC's raw contents).
pub fn tensor_from_bytes(
    name: &str,
    dtype: DType,
    dims: Vec<usize>,
    bytes: &[u8],
) -> Result<Tensor, ServeError> {
    let need = dims.iter().product::<usize>() * dtype.size_bytes();
    if bytes.len() != need {
        return Err(ServeError::bad_request(format!(
            "input '{name}': shape {dims:?} of {} needs {need} bytes of data, got {}",
            protocol_dtype(dtype).unwrap_or("?"),
            bytes.len()
        )));
    }
    Tensor::from_le_bytes(dtype, dims, bytes)
        .map_err(|e| ServeError::bad_request(format!("input '{name}': {e}")))
}

/// One JSON element as a number of `dtype` (bools as 0/1 for BOOL only).
fn json_element(
    name: &str,
    dtype: DType,
    v: &serde_json::Value,
    out: &mut Vec<u8>,
) -> Result<(), ServeError> {
    let wrong = || {
        ServeError::bad_request(format!(
            "input '{name}': element {v} is not a {}",
            protocol_dtype(dtype).unwrap_or("?")
        ))
    };
    match dtype {
        DType::Bool => out.push(v.as_bool().ok_or_else(wrong)? as u8),
        DType::F32 => out.extend((v.as_f64().ok_or_else(wrong)? as f32).to_le_bytes()),
        DType::F64 => out.extend(v.as_f64().ok_or_else(wrong)?.to_le_bytes()),
        DType::F16 => out.extend(half::f16::from_f64(v.as_f64().ok_or_else(wrong)?).to_le_bytes()),
        DType::BF16 => {
            out.extend(half::bf16::from_f64(v.as_f64().ok_or_else(wrong)?).to_le_bytes())
        }
        DType::U64 => out.extend(v.as_u64().ok_or_else(wrong)?.to_le_bytes()),
        DType::I64 => out.extend(v.as_i64().ok_or_else(wrong)?.to_le_bytes()),
        d => {
            let x = v.as_i64().ok_or_else(wrong)?;
            let ok = match d {
                DType::I32 => i32::try_from(x)
                    .map(|x| out.extend(x.to_le_bytes()))
                    .is_ok(),
                DType::I16 => i16::try_from(x)
                    .map(|x| out.extend(x.to_le_bytes()))
                    .is_ok(),
                DType::I8 => i8::try_from(x).map(|x| out.extend(x.to_le_bytes())).is_ok(),
                DType::U32 => u32::try_from(x)
                    .map(|x| out.extend(x.to_le_bytes()))
                    .is_ok(),
                DType::U16 => u16::try_from(x)
                    .map(|x| out.extend(x.to_le_bytes()))
                    .is_ok(),
                DType::U8 => u8::try_from(x).map(|x| out.push(x)).is_ok(),
                _ => false,
            };
            if !ok {
                return Err(wrong());
            }
        }
    }
    Ok(())
}

/// A tensor from the JSON `data` field: flat or nested row-major arrays, exactly `numel`
/// elements of the datatype.
pub fn tensor_from_json(
    name: &str,
    dtype: DType,
    dims: Vec<usize>,
    numel: usize,
    data: &serde_json::Value,
) -> Result<Tensor, ServeError> {
    let mut bytes = Vec::with_capacity(numel * dtype.size_bytes());
    let mut count = 0usize;
    let mut stack = vec![data];
    // Depth-first, in order: arrays push their items reversed.
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
            v => {
                count += 1;
                if count > numel {
                    break;
                }
                json_element(name, dtype, v, &mut bytes)?;
            }
        }
    }
    if count != numel {
        return Err(ServeError::bad_request(format!(
            "input '{name}': shape {dims:?} has {numel} elements, the data has {}",
            if count > numel {
                format!("more than {numel}")
            } else {
                count.to_string()
            }
        )));
    }
    tensor_from_bytes(name, dtype, dims, &bytes)
}

/// A tensor's elements as a flat JSON array (NaN and infinities, which JSON cannot hold, as
/// null).
pub fn tensor_to_json(t: &Tensor) -> serde_json::Value {
    use serde_json::Value;
    match t.dtype() {
        DType::Bool => Value::Array(
            t.to_le_bytes()
                .iter()
                .map(|&b| Value::Bool(b != 0))
                .collect(),
        ),
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => Value::Array(
            t.to_f64_vec()
                .into_iter()
                .map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number))
                .collect(),
        ),
        DType::U64 => Value::Array(
            t.to_le_bytes()
                .chunks_exact(8)
                .map(|c| Value::from(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
                .collect(),
        ),
        _ => Value::Array(t.to_i64_vec().into_iter().map(Value::from).collect()),
    }
}

/// The datatype name of a tensor sfumato gives back.
pub fn datatype_of(t: &Tensor) -> &'static str {
    protocol_dtype(t.dtype()).unwrap_or("FP32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_data_nested_or_flat() {
        let l = Limits::default();
        let (d, dims, n) = check_tensor("x", "FP32", &[2, 2], &l).unwrap();
        let a = tensor_from_json("x", d, dims.clone(), n, &json!([[1, 2.5], [3, 4]])).unwrap();
        let b = tensor_from_json("x", d, dims, n, &json!([1, 2.5, 3, 4])).unwrap();
        assert_eq!(a.to_f32_vec(), vec![1.0, 2.5, 3.0, 4.0]);
        assert_eq!(a.to_f32_vec(), b.to_f32_vec());
        let (d, dims, n) = check_tensor("i", "INT64", &[2], &l).unwrap();
        let i = tensor_from_json("i", d, dims, n, &json!([i64::MAX, -1])).unwrap();
        assert_eq!(i.to_i64_vec(), vec![i64::MAX, -1]);
        assert_eq!(tensor_to_json(&i), json!([i64::MAX, -1]));
    }

    #[test]
    fn bad_tensors_are_refused_before_allocation() {
        let l = Limits {
            max_body_bytes: 1 << 20,
            max_tensor_bytes: 1024,
        };
        let e = check_tensor("x", "FP32", &[1 << 40, 1 << 40], &l).unwrap_err();
        assert_eq!(e.http_status(), 413, "{e}");
        let e = check_tensor("x", "FP32", &[1000], &l).unwrap_err();
        assert!(e.message.contains("over the server's limit"), "{e}");
        assert_eq!(
            check_tensor("x", "BYTES", &[1], &l)
                .unwrap_err()
                .http_status(),
            400
        );
        assert_eq!(
            check_tensor("x", "FP32", &[-1], &l)
                .unwrap_err()
                .http_status(),
            400
        );
        let (d, dims, n) = check_tensor("x", "INT8", &[3], &l).unwrap();
        let e = tensor_from_json("x", d, dims.clone(), n, &json!([1, 2, 300])).unwrap_err();
        assert!(e.message.contains("300"), "{e}");
        let e = tensor_from_json("x", d, dims.clone(), n, &json!([1, 2])).unwrap_err();
        assert!(e.message.contains("has 3 elements, the data has 2"), "{e}");
        let e = tensor_from_json("x", d, dims.clone(), n, &json!([1, 2, 3, 4])).unwrap_err();
        assert!(e.message.contains("more than 3"), "{e}");
        let e = tensor_from_bytes("x", d, dims, &[1, 2]).unwrap_err();
        assert!(e.message.contains("needs 3 bytes"), "{e}");
    }
}
