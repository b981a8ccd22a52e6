//! ONNX `TensorProto` <-> [`Tensor`]: raw little-endian bytes, the typed repeated fields and
//! external data files; dtypes outside Sfumato's set are refused by name.

use super::proto::{data_type as dt, TensorProto};
use half::f16;
use sfumato_core::{DType, Error, Result, Shape, Tensor, TensorData};
use std::path::Path;

/// The most elements one tensor of a model may hold (4 GiB of f32): a declared shape above it
/// is refused before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// ONNX data types and Sfumato's dtypes, one to one.
const TYPES: [(i32, DType); 23] = [
    (dt::FLOAT, DType::F32),
    (dt::FLOAT16, DType::F16),
    (dt::INT32, DType::I32),
    (dt::INT64, DType::I64),
    (dt::UINT8, DType::U8),
    (dt::BOOL, DType::Bool),
    (dt::DOUBLE, DType::F64),
    (dt::BFLOAT16, DType::BF16),
    (dt::INT8, DType::I8),
    (dt::INT16, DType::I16),
    (dt::UINT16, DType::U16),
    (dt::UINT32, DType::U32),
    (dt::UINT64, DType::U64),
    (dt::FLOAT8E4M3FN, DType::F8E4M3FN),
    (dt::FLOAT8E4M3FNUZ, DType::F8E4M3FNUZ),
    (dt::FLOAT8E5M2, DType::F8E5M2),
    (dt::FLOAT8E5M2FNUZ, DType::F8E5M2FNUZ),
    (dt::FLOAT4E2M1, DType::F4E2M1),
    (dt::FLOAT8E8M0, DType::F8E8M0),
    (dt::INT4, DType::I4),
    (dt::UINT4, DType::U4),
    (dt::INT2, DType::I2),
    (dt::UINT2, DType::U2),
];

/// Sfumato's dtype for an ONNX data type, or why there is none.
pub fn dtype_of(t: i32) -> std::result::Result<DType, String> {
    TYPES
        .iter()
        .find(|(o, _)| *o == t)
        .map(|(_, d)| *d)
        .ok_or_else(|| format!("dtype {} is not supported", dt::name(t)))
}

/// The ONNX data type of a dtype.
pub fn onnx_type(d: DType) -> i32 {
    TYPES
        .iter()
        .find(|(_, x)| *x == d)
        .map_or(dt::FLOAT, |(o, _)| *o)
}

/// Bits per element of ONNX's packed sub-byte types (4 or 2), else None.
fn packed_bits(d: DType) -> Option<u32> {
    match d {
        DType::F4E2M1 => Some(4),
        d => d.sub_byte_int().map(|(bits, _)| bits),
    }
}

/// ONNX packs 4-bit (2-bit) elements two (four) to a byte, the first in the low bits: one
/// byte per element, sign-extended for the signed integers, for [`Tensor::from_le_bytes`].
fn unpack(d: DType, bits: u32, packed: &[u8], n: usize) -> Vec<u8> {
    let per = (8 / bits) as usize;
    let mask = (1u8 << bits) - 1;
    (0..n)
        .map(|i| {
            let v = (packed[i / per] >> ((i % per) as u32 * bits)) & mask;
            let signed = d.sub_byte_int().is_some_and(|(_, s)| s);
            if signed && v >> (bits - 1) == 1 {
                v | !mask
            } else {
                v
            }
        })
        .collect()
}

/// The inverse of [`unpack`].
fn pack(bits: u32, bytes: &[u8]) -> Vec<u8> {
    let per = (8 / bits) as usize;
    let mask = (1u8 << bits) - 1;
    bytes
        .chunks(per)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (k, &v)| acc | ((v & mask) << (k as u32 * bits)))
        })
        .collect()
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
        let unpacked;
        let raw = match packed_bits(dtype) {
            Some(bits) => {
                let need = n.div_ceil((8 / bits) as usize);
                if raw.len() != need {
                    return Err(Error::Tensor(format!(
                        "{what}: shape {dims:?} of {dtype} needs {need} packed bytes, got {}",
                        raw.len()
                    )));
                }
                unpacked = unpack(dtype, bits, raw, n);
                &unpacked[..]
            }
            None => raw,
        };
        return Tensor::from_le_bytes(dtype, Shape::new(dims), raw)
            .map_err(|e| Error::Tensor(format!("{what}: raw data: {e}")));
    }
    // The typed fields: the small types (and bfloat16, float16) as bit patterns in int32_data,
    // sub-byte ones packed there too.
    let int32_bytes = |s: &[i32]| -> Vec<u8> { s.iter().map(|&v| v as u8).collect() };
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
        DType::F64 => {
            count(t.double_data.len())?;
            TensorData::F64(t.double_data.clone())
        }
        DType::U32 | DType::U64 => {
            count(t.uint64_data.len())?;
            let v: Vec<f64> = t.uint64_data.iter().map(|&x| x as f64).collect();
            if dtype == DType::U64 {
                TensorData::U64(t.uint64_data.clone())
            } else {
                return Ok(Tensor::from_f64(dtype, Shape::new(dims), &v));
            }
        }
        DType::BF16 => {
            count(t.int32_data.len())?;
            TensorData::BF16(
                t.int32_data
                    .iter()
                    .map(|&v| half::bf16::from_bits(v as u16))
                    .collect(),
            )
        }
        DType::I8 | DType::I16 | DType::U16 => {
            count(t.int32_data.len())?;
            let v: Vec<f64> = t.int32_data.iter().map(|&x| x as f64).collect();
            return Ok(Tensor::from_f64(dtype, Shape::new(dims), &v));
        }
        d => {
            let bytes = match packed_bits(d) {
                Some(bits) => {
                    let need = n.div_ceil((8 / bits) as usize);
                    if t.int32_data.len() != need {
                        return Err(Error::Tensor(format!(
                            "{what}: shape {dims:?} of {d} needs {need} packed values, got {}",
                            t.int32_data.len()
                        )));
                    }
                    unpack(d, bits, &int32_bytes(&t.int32_data), n)
                }
                None => {
                    count(t.int32_data.len())?;
                    int32_bytes(&t.int32_data)
                }
            };
            return Tensor::from_le_bytes(d, Shape::new(dims), &bytes)
                .map_err(|e| Error::Tensor(format!("{what}: {e}")));
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
    let raw = match packed_bits(t.dtype()) {
        Some(bits) => pack(bits, &t.to_le_bytes()),
        None => t.to_le_bytes(),
    };
    TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: onnx_type(t.dtype()),
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::{from_proto, to_proto};
    use sfumato_core::Tensor;

    #[test]
    fn every_dtype_round_trips_through_a_tensor_proto() {
        // Raw data, with the 4- and 2-bit types packed (odd element counts leave a partial byte),
        // and the float8 bit patterns; values include the small formats' NaN, inf and -0.
        for dt in sfumato_core::DType::ALL {
            for n in [1usize, 5, 8] {
                let mut v: Vec<f64> = Tensor::random(sfumato_core::DType::F32, [n], n as u64)
                    .to_f64_vec()
                    .iter()
                    .map(|x| x * 10.0)
                    .collect();
                if dt.is_float() {
                    v[0] = if n == 5 { f64::NAN } else { -0.0 };
                }
                let t = Tensor::from_f64(dt, [n], &v);
                let p = to_proto(&t, "t");
                let bits = match dt.sub_byte_int().map(|(b, _)| b) {
                    Some(b) => b as usize,
                    None if dt == sfumato_core::DType::F4E2M1 => 4,
                    None => 8 * dt.size_bytes(),
                };
                assert_eq!(p.raw_data.len(), (n * bits).div_ceil(8), "{dt}");
                let back = from_proto(&p, None).unwrap();
                assert_eq!(back.dtype(), dt);
                let (a, b) = (t.to_f64_vec(), back.to_f64_vec());
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        "{dt}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
}
