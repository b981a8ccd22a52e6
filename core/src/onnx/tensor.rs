//! ONNX `TensorProto` <-> [`Tensor`]: raw little-endian bytes, the typed repeated fields and
//! external data files; dtypes outside Sfumato's set are refused by name.

use super::proto::{data_type as dt, TensorProto};
use crate::{DType, Error, Result, Shape, Tensor, TensorData};
use half::f16;
use std::path::Path;

/// The most elements one tensor of a model may hold (4 GiB of f32): a declared shape above it
/// is refused before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Sfumato's dtype for an ONNX data type, or why there is none.
pub fn dtype_of(t: i32) -> std::result::Result<DType, String> {
    Ok(match t {
        dt::FLOAT => DType::F32,
        dt::FLOAT16 => DType::F16,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::UINT8 => DType::U8,
        dt::BOOL => DType::Bool,
        other => return Err(format!("dtype {} is not supported", dt::name(other))),
    })
}

/// The ONNX data type of a dtype.
pub fn onnx_type(d: DType) -> i32 {
    match d {
        DType::F32 => dt::FLOAT,
        DType::F16 => dt::FLOAT16,
        DType::I32 => dt::INT32,
        DType::I64 => dt::INT64,
        DType::U8 => dt::UINT8,
        DType::Bool => dt::BOOL,
    }
}

/// Dims of a tensor proto, checked: none negative, the element count representable and under
/// [`MAX_ELEMENTS`].
pub fn checked_dims(dims: &[i64], what: &str) -> Result<Vec<usize>> {
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        if d < 0 {
            return Err(Error::Tensor(format!(
                "{what}: negative dim {d} in {dims:?}"
            )));
        }
        n = n
            .checked_mul(d as usize)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                Error::Tensor(format!(
                    "{what}: shape {dims:?} holds more than {MAX_ELEMENTS} elements"
                ))
            })?;
        out.push(d as usize);
    }
    Ok(out)
}

/// Decode a tensor proto. `base_dir` resolves external data (None: external data is an error).
/// A dtype Sfumato does not store is `Error::Unsupported`, naming the tensor.
pub fn from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let what = if t.name.is_empty() {
        "tensor".to_string()
    } else {
        format!("tensor '{}'", t.name)
    };
    let dtype = dtype_of(t.data_type).map_err(|msg| Error::Unsupported {
        node: t.name.clone(),
        op: "tensor".into(),
        inputs: String::new(),
        msg,
    })?;
    let dims = checked_dims(&t.dims, &what)?;
    let n: usize = dims.iter().product();
    let external;
    let raw: Option<&[u8]> = if t.data_location == 1 || !t.external_data.is_empty() {
        external = read_external(t, base_dir, &what)?;
        Some(&external)
    } else if !t.raw_data.is_empty() || n == 0 {
        Some(&t.raw_data)
    } else {
        None
    };
    let count = |got: usize| -> Result<()> {
        if got != n {
            return Err(Error::Tensor(format!(
                "{what}: shape {dims:?} needs {n} elements, the data holds {got}"
            )));
        }
        Ok(())
    };
    if let Some(raw) = raw {
        return Tensor::from_le_bytes(dtype, Shape::new(dims), raw)
            .map_err(|e| Error::Tensor(format!("{what}: raw data: {e}")));
    }
    let data = match dtype {
        DType::F32 => {
            count(t.float_data.len())?;
            TensorData::F32(t.float_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len())?;
            TensorData::I64(t.int64_data.clone())
        }
        DType::F16 => {
            count(t.int32_data.len())?;
            TensorData::F16(
                t.int32_data
                    .iter()
                    .map(|&v| f16::from_bits(v as u16))
                    .collect(),
            )
        }
        DType::I32 => {
            count(t.int32_data.len())?;
            TensorData::I32(t.int32_data.clone())
        }
        DType::U8 => {
            count(t.int32_data.len())?;
            TensorData::U8(t.int32_data.iter().map(|&v| v as u8).collect())
        }
        DType::Bool => {
            count(t.int32_data.len())?;
            TensorData::Bool(t.int32_data.iter().map(|&v| v != 0).collect())
        }
    };
    Tensor::new(Shape::new(dims), data)
}

/// The bytes of an external-data tensor: `location` relative to `base_dir` (no absolute paths,
/// no `..`), `offset` and `length` within the file.
fn read_external(t: &TensorProto, base_dir: Option<&Path>, what: &str) -> Result<Vec<u8>> {
    let key = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let loc = key("location")
        .ok_or_else(|| Error::Tensor(format!("{what}: external data without a location")))?;
    let rel = Path::new(loc);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::Tensor(format!(
            "{what}: external data location '{loc}' must be a relative path inside the model's directory"
        )));
    }
    let base = base_dir.ok_or_else(|| {
        Error::Tensor(format!(
            "{what}: external data '{loc}' but the model has no directory"
        ))
    })?;
    let num = |k: &str| -> Result<Option<u64>> {
        key(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::Tensor(format!("{what}: external data {k} '{v}' is not a number"))
                })
            })
            .transpose()
    };
    let path = base.join(rel);
    let file_len = std::fs::metadata(&path)
        .map_err(|e| Error::Tensor(format!("{what}: external data {}: {e}", path.display())))?
        .len();
    let offset = num("offset")?.unwrap_or(0);
    let length = num("length")?.unwrap_or(file_len.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(Error::Tensor(format!(
            "{what}: external data {} has {file_len} bytes, the tensor asks for {length} at {offset}",
            path.display()
        )));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path)
        .map_err(|e| Error::Tensor(format!("{what}: {}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::Tensor(format!("{what}: {}: {e}", path.display())))?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf)
        .map_err(|e| Error::Tensor(format!("{what}: {}: {e}", path.display())))?;
    Ok(buf)
}

/// Encode a tensor as a proto with raw data (for `--output` and tests).
pub fn to_proto(t: &Tensor, name: &str) -> TensorProto {
    let raw = t.to_le_bytes();
    TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: onnx_type(t.dtype()),
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}
