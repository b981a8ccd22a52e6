//! Host tensor <-> device bytes. Floats live as f32 (f16, f64, bfloat16 and the small floats
//! too), the signed and small integers as i32 (i64 too), u8, u32, u64 and bool as u32.

use half::f16;
use sfumato_core::{DType, Error, Result, Shape, Tensor, TensorData};
use sfumato_shaders::Elem;

/// The device bytes of a tensor.
pub fn to_device_bytes(t: &Tensor, what: &str) -> Result<Vec<u8>> {
    Ok(match t.data() {
        TensorData::F32(v) => bytemuck::cast_slice(v).to_vec(),
        TensorData::F16(v) => {
            bytemuck::cast_slice(&v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>()).to_vec()
        }
        TensorData::I32(v) => bytemuck::cast_slice(v).to_vec(),
        TensorData::I64(v) => narrowed::<i64, i32>(v, what, "i64", "i32")?,
        TensorData::U64(v) => narrowed::<u64, u32>(v, what, "u64", "u32")?,
        TensorData::U32(v) => bytemuck::cast_slice(v).to_vec(),
        TensorData::U8(v) => {
            bytemuck::cast_slice(&v.iter().map(|&x| x as u32).collect::<Vec<u32>>()).to_vec()
        }
        TensorData::Bool(v) => {
            bytemuck::cast_slice(&v.iter().map(|&x| x as u32).collect::<Vec<u32>>()).to_vec()
        }
        TensorData::F64(v) => f64_as_f32(v, what)?,
        // The rest fit their device element exactly (f64 is rounded to f32).
        _ => match Elem::of(t.dtype()) {
            Elem::F32 => bytemuck::cast_slice(&t.to_f32_vec()).to_vec(),
            Elem::I32 => bytemuck::cast_slice(
                &t.to_f64_vec()
                    .iter()
                    .map(|&x| x as i32)
                    .collect::<Vec<i32>>(),
            )
            .to_vec(),
            Elem::U32 => bytemuck::cast_slice(
                &t.to_f64_vec()
                    .iter()
                    .map(|&x| x as u32)
                    .collect::<Vec<u32>>(),
            )
            .to_vec(),
        },
    })
}

/// f64 values in the f32 the device holds them in: rounded to f32's 24-bit significand, and a
/// finite value past f32's range (about 3.4e38), which would become infinite, is an error, not a
/// wrong answer. (Values below f32's smallest subnormal, about 1.4e-45, become 0.)
fn f64_as_f32(v: &[f64], what: &str) -> Result<Vec<u8>> {
    let out = v
        .iter()
        .map(|&x| {
            let y = x as f32;
            if x.is_finite() && !y.is_finite() {
                return Err(Error::Input(format!(
                    "{what}: f64 value {x:e} is outside the f32 range (|x| <= {:e}) the wgpu device stores f64 tensors in",
                    f32::MAX
                )));
            }
            Ok(y)
        })
        .collect::<Result<Vec<f32>>>()?;
    Ok(bytemuck::cast_slice(&out).to_vec())
}

/// 64-bit integers in the 32 bits the device holds them in; a value outside that range is an
/// error, not a wrong answer.
fn narrowed<S, D>(v: &[S], what: &str, from: &str, to: &str) -> Result<Vec<u8>>
where
    S: Copy + std::fmt::Display,
    D: TryFrom<S> + bytemuck::Pod,
{
    let out = v
        .iter()
        .map(|&x| {
            D::try_from(x).map_err(|_| {
                Error::Input(format!(
                    "{what}: {from} value {x} is outside the {to} range the wgpu device stores {from} tensors in"
                ))
            })
        })
        .collect::<Result<Vec<D>>>()?;
    Ok(bytemuck::cast_slice(&out).to_vec())
}

/// A host tensor from device bytes.
pub fn from_device_bytes(dtype: DType, shape: &Shape, bytes: &[u8]) -> Result<Tensor> {
    let n = shape.numel();
    let bytes = &bytes[..n * 4];
    let data = match dtype {
        DType::F32 => TensorData::F32(bytemuck::pod_collect_to_vec(bytes)),
        DType::F16 => TensorData::F16(
            bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
                .into_iter()
                .map(f16::from_f32)
                .collect(),
        ),
        DType::I32 => TensorData::I32(bytemuck::pod_collect_to_vec(bytes)),
        DType::I64 => TensorData::I64(
            bytemuck::pod_collect_to_vec::<u8, i32>(bytes)
                .into_iter()
                .map(|x| x as i64)
                .collect(),
        ),
        DType::U8 => TensorData::U8(
            bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
                .into_iter()
                .map(|x| x.min(255) as u8)
                .collect(),
        ),
        DType::Bool => TensorData::Bool(
            bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
                .into_iter()
                .map(|x| x != 0)
                .collect(),
        ),
        // The rest through f64, rounded to the dtype as the reference rounds (exact for values
        // the device already rounded).
        _ => {
            let v: Vec<f64> = match Elem::of(dtype) {
                Elem::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                Elem::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(bytes)
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                Elem::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            };
            return Ok(Tensor::from_f64(dtype, shape.clone(), &v));
        }
    };
    Tensor::new(shape.clone(), data)
}
