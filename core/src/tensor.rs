//! A host tensor: a shape, a dtype and the elements, row-major.

use crate::{DType, Error, Result, Shape};
use half::{bf16, f16};

/// The elements of a host tensor: one variant per [`DType`], but one, [`TensorData::Narrow`],
/// for the 8- and 4-bit floats and the 4- and 2-bit integers.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    /// A narrow dtype's elements, each as its exact value in f32 (unpacked: one per element).
    Narrow(DType, Vec<f32>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
            TensorData::F64(_) => DType::F64,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Narrow(d, _) => *d,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Narrow(_, v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense, row-major tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: TensorData,
}

impl Tensor {
    /// A tensor from a shape and its elements; the element count must match the shape.
    pub fn new(shape: impl Into<Shape>, data: TensorData) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel() != Some(data.len()) {
            return Err(Error::Tensor(format!(
                "shape {shape} needs {} elements, got {}",
                shape
                    .checked_numel()
                    .map_or("too many".to_string(), |n| n.to_string()),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn from_f32(shape: impl Into<Shape>, v: Vec<f32>) -> Result<Self> {
        Self::new(shape, TensorData::F32(v))
    }

    pub fn from_i64(shape: impl Into<Shape>, v: Vec<i64>) -> Result<Self> {
        Self::new(shape, TensorData::I64(v))
    }

    pub fn from_i32(shape: impl Into<Shape>, v: Vec<i32>) -> Result<Self> {
        Self::new(shape, TensorData::I32(v))
    }

    pub fn from_bool(shape: impl Into<Shape>, v: Vec<bool>) -> Result<Self> {
        Self::new(shape, TensorData::Bool(v))
    }

    /// A scalar f32.
    pub fn scalar_f32(v: f32) -> Self {
        Tensor {
            shape: Shape::scalar(),
            data: TensorData::F32(vec![v]),
        }
    }

    /// All zeros.
    pub fn zeros(dtype: DType, shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        Self::from_f64(dtype, shape, &vec![0.0; n])
    }

    /// A tensor of `dtype` from f64 values by [`DType::round`]: floats round, integers truncate
    /// toward zero and saturate (4- and 2-bit ones wrap), bools are `v != 0`. This is the one
    /// conversion the reference interpreter uses.
    pub fn from_f64(dtype: DType, shape: impl Into<Shape>, v: &[f64]) -> Self {
        let shape = shape.into();
        debug_assert_eq!(shape.numel(), v.len());
        fn map<T>(v: &[f64], f: impl Fn(f64) -> T) -> Vec<T> {
            v.iter().map(|&x| f(x)).collect()
        }
        let data = match dtype {
            DType::F32 => TensorData::F32(map(v, |x| x as f32)),
            DType::F16 => TensorData::F16(map(v, f16::from_f64)),
            DType::I32 => TensorData::I32(map(v, |x| x as i32)),
            DType::I64 => TensorData::I64(map(v, |x| x as i64)),
            DType::U8 => TensorData::U8(map(v, |x| x as u8)),
            DType::Bool => TensorData::Bool(map(v, |x| x != 0.0)),
            DType::F64 => TensorData::F64(v.to_vec()),
            DType::BF16 => TensorData::BF16(map(v, bf16::from_f64)),
            DType::I8 => TensorData::I8(map(v, |x| x as i8)),
            DType::I16 => TensorData::I16(map(v, |x| x as i16)),
            DType::U16 => TensorData::U16(map(v, |x| x as u16)),
            DType::U32 => TensorData::U32(map(v, |x| x as u32)),
            DType::U64 => TensorData::U64(map(v, |x| x as u64)),
            d => TensorData::Narrow(d, map(v, |x| d.round(x) as f32)),
        };
        Tensor { shape, data }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The same elements under another shape with the same element count.
    pub fn reshaped(&self, shape: impl Into<Shape>) -> Result<Self> {
        Tensor::new(shape, self.data.clone())
    }

    /// Every element as f64 (exact for every dtype but i64 beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::BF16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Narrow(_, v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every element as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            _ => self.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }

    /// Every element as i64 (floats truncate).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
            _ => self.to_f64_vec().into_iter().map(|x| x as i64).collect(),
        }
    }

    /// The elements as fixed-width little-endian bytes (bool as one byte, 0 or 1; the 8- and
    /// 4-bit floats as their bit patterns and the 4- and 2-bit integers as one byte each,
    /// unpacked): the layout of ONNX raw data (before sub-byte packing) and .npy files.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.numel() * self.dtype().size_bytes());
        match &self.data {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::U8(v) => out.extend(v),
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::F64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::BF16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I8(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::U16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::U32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::U64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Narrow(d, v) => match d.mini() {
                Some(m) => out.extend(v.iter().map(|&x| m.encode(x as f64))),
                None if *d == DType::F8E8M0 => {
                    out.extend(v.iter().map(|&x| crate::dtype::e8m0_encode(x as f64)))
                }
                None => out.extend(v.iter().map(|&x| x as i8 as u8)),
            },
        }
        out
    }

    /// A tensor from fixed-width little-endian bytes ([`Tensor::to_le_bytes`]); the byte count
    /// must match the shape.
    pub fn from_le_bytes(dtype: DType, shape: impl Into<Shape>, b: &[u8]) -> Result<Self> {
        let shape = shape.into();
        let size = dtype.size_bytes();
        let n = shape.checked_numel();
        if n.and_then(|n| n.checked_mul(size)) != Some(b.len()) {
            return Err(Error::Tensor(format!(
                "shape {shape} of {dtype} needs {} bytes, got {}",
                n.map_or("too many".to_string(), |n| (n * size).to_string()),
                b.len()
            )));
        }
        fn le<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| f(c.try_into().unwrap_or([0; N])))
                .collect()
        }
        let data = match dtype {
            DType::F32 => TensorData::F32(le(b, f32::from_le_bytes)),
            DType::F16 => TensorData::F16(le(b, f16::from_le_bytes)),
            DType::I32 => TensorData::I32(le(b, i32::from_le_bytes)),
            DType::I64 => TensorData::I64(le(b, i64::from_le_bytes)),
            DType::U8 => TensorData::U8(b.to_vec()),
            DType::Bool => TensorData::Bool(b.iter().map(|&x| x != 0).collect()),
            DType::F64 => TensorData::F64(le(b, f64::from_le_bytes)),
            DType::BF16 => TensorData::BF16(le(b, bf16::from_le_bytes)),
            DType::I8 => TensorData::I8(le(b, i8::from_le_bytes)),
            DType::I16 => TensorData::I16(le(b, i16::from_le_bytes)),
            DType::U16 => TensorData::U16(le(b, u16::from_le_bytes)),
            DType::U32 => TensorData::U32(le(b, u32::from_le_bytes)),
            DType::U64 => TensorData::U64(le(b, u64::from_le_bytes)),
            DType::F8E8M0 => TensorData::Narrow(
                dtype,
                b.iter()
                    .map(|&x| crate::dtype::e8m0_decode(x) as f32)
                    .collect(),
            ),
            d => match d.mini() {
                Some(m) => TensorData::Narrow(d, b.iter().map(|&x| m.decode(x) as f32).collect()),
                None => TensorData::Narrow(
                    d,
                    b.iter().map(|&x| d.round(x as i8 as f64) as f32).collect(),
                ),
            },
        };
        Tensor::new(shape, data)
    }

    /// Copy runs of `src`'s elements into this tensor (a kept tensor's write-back,
    /// [`crate::kept`]): each run's `len` elements from `src` at `run.src` to `run.dst`. The
    /// dtypes must match and every run must fit both tensors.
    pub fn copy_runs(&mut self, src: &Tensor, runs: &[crate::kept::Run]) -> Result<()> {
        let (n, m) = (self.numel(), src.numel());
        if let Some(r) = runs.iter().find(|r| r.src + r.len > m || r.dst + r.len > n) {
            return Err(Error::Input(format!(
                "a copy of {} elements from {} to {} does not fit {} {} from {} {}",
                r.len,
                r.src,
                r.dst,
                self.dtype(),
                self.shape,
                src.dtype(),
                src.shape
            )));
        }
        macro_rules! copy {
            ($($v:ident),*) => {
                match (&mut self.data, &src.data) {
                    $((TensorData::$v(d), TensorData::$v(s)) => {
                        for r in runs {
                            d[r.dst..r.dst + r.len].clone_from_slice(&s[r.src..r.src + r.len]);
                        }
                    })*
                    (TensorData::Narrow(a, d), TensorData::Narrow(b, s)) if a == b => {
                        for r in runs {
                            d[r.dst..r.dst + r.len].copy_from_slice(&s[r.src..r.src + r.len]);
                        }
                    }
                    _ => {
                        return Err(Error::Input(format!(
                            "copying {} elements into a {} tensor",
                            src.dtype(),
                            self.dtype()
                        )))
                    }
                }
            };
        }
        copy!(F32, F16, I32, I64, U8, Bool, F64, BF16, I8, I16, U16, U32, U64);
        Ok(())
    }

    /// Elements as f32 if the dtype is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// A deterministic pseudo-random tensor (uniform in [-1, 1) for floats, [-8, 8) for
    /// integers), from a seed. Used by tests, benchmarks and the CLI's default inputs.
    pub fn random(dtype: DType, shape: impl Into<Shape>, seed: u64) -> Self {
        let shape = shape.into();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f64> = (0..shape.numel())
            .map(|_| {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
                let u = r as f64 / (1u64 << 53) as f64;
                match dtype {
                    d if d.is_float() => u * 2.0 - 1.0,
                    DType::Bool => (u < 0.5) as u8 as f64,
                    d if !d.is_signed() => (u * 16.0).floor(),
                    _ => (u * 16.0).floor() - 8.0,
                }
            })
            .collect();
        Tensor::from_f64(dtype, shape, &v)
    }

    /// Largest absolute and relative difference to `other` (same shape required).
    pub fn max_diff(&self, other: &Tensor) -> (f64, f64) {
        let a = self.to_f64_vec();
        let b = other.to_f64_vec();
        let mut abs: f64 = 0.0;
        let mut rel: f64 = 0.0;
        for (x, y) in a.iter().zip(&b) {
            if x == y || (x.is_nan() && y.is_nan()) {
                continue;
            }
            let d = (x - y).abs();
            abs = abs.max(d);
            rel = rel.max(d / y.abs().max(f64::MIN_POSITIVE));
        }
        (abs, rel)
    }

    /// Whether every element is within `atol + rtol * |other|` of `other` (NaN matches NaN,
    /// infinities must match exactly), and the shapes and dtypes are equal.
    pub fn all_close(&self, other: &Tensor, rtol: f64, atol: f64) -> bool {
        if self.shape != other.shape || self.dtype() != other.dtype() {
            return false;
        }
        self.to_f64_vec()
            .iter()
            .zip(other.to_f64_vec())
            .all(|(&x, y)| {
                if x.is_nan() || y.is_nan() {
                    x.is_nan() && y.is_nan()
                } else if x.is_infinite() || y.is_infinite() {
                    x == y
                } else {
                    (x - y).abs() <= atol + rtol * y.abs()
                }
            })
    }

    /// One-line summary: shape, dtype, min, max, mean and the first few values.
    pub fn summary(&self) -> String {
        let v = self.to_f64_vec();
        let n = v.len();
        if n == 0 {
            return format!("{} {} (empty)", self.dtype(), self.shape);
        }
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean = v.iter().sum::<f64>() / n as f64;
        let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.4}")).collect();
        format!(
            "{} {} min {min:.4} max {max:.4} mean {mean:.4} [{}{}]",
            self.dtype(),
            self.shape,
            head.join(", "),
            if n > 4 { ", ..." } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_count() {
        assert!(Tensor::from_f32([2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::from_f32([2, 3], vec![0.0; 6]).is_ok());
    }

    #[test]
    fn conversions_round_trip() {
        let t = Tensor::random(DType::I64, [3, 4], 7);
        let u = Tensor::from_f64(DType::I64, [3, 4], &t.to_f64_vec());
        assert_eq!(t, u);
        let b = Tensor::from_f64(DType::Bool, [2], &[0.0, 3.0]);
        assert_eq!(b.data(), &TensorData::Bool(vec![false, true]));
    }

    #[test]
    fn all_close_can_fail() {
        let a = Tensor::from_f32([2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::from_f32([2], vec![1.0, 2.1]).unwrap();
        assert!(!a.all_close(&b, 1e-3, 1e-5));
        assert!(a.all_close(&a, 0.0, 0.0));
    }
}
