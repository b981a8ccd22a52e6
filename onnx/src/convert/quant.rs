//! Quantization: QuantizeLinear, DequantizeLinear (per tensor, per axis and blocked; integer,
//! float8 and float4 types), DynamicQuantizeLinear, and the integer products MatMulInteger,
//! ConvInteger, QLinearMatMul and QLinearConv.
//!
//! Each is a composition of device ops. The integer products (MatMulInteger, ConvInteger,
//! QLinearMatMul, QLinearConv, and a MatMul or Conv of two dequantized 8-bit tensors, the QDQ
//! form) of 8-bit operands subtract their zero points in i32 and multiply on
//! [`Op::MatMulInteger`] and [`Op::ConvInteger`], whose sums are i32: exact while they stay in
//! its range. Other operand types (QLinearMatMul's float8) multiply in f32.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use crate::tensor::dtype_of;
use sfumato_core::op::*;
use sfumato_core::{DType, Op, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("QuantizeLinear", Tensors(|c| c.quantize_linear())),
    ("DequantizeLinear", Tensors(|c| c.dequantize_linear())),
    (
        "DynamicQuantizeLinear",
        Tensors(|c| c.dynamic_quantize_linear()),
    ),
    ("MatMulInteger", Tensors(|c| c.integer_product(false))),
    ("ConvInteger", Tensors(|c| c.integer_product(true))),
    ("QLinearMatMul", Tensors(|c| c.qlinear(false))),
    ("QLinearConv", Tensors(|c| c.qlinear(true))),
];

/// What a DequantizeLinear output dequantizes: `(x - zero_point) * scale`, with `axis` the
/// (non-negative) axis of a 1-D scale, `None` for a per-tensor one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dequantized {
    x: ValueId,
    scale: ValueId,
    zero_point: Option<ValueId>,
    axis: Option<usize>,
}

impl Importer<'_> {
    /// What `a` and `b` dequantize, when both are 8-bit tensors dequantized by f32 scales, A's
    /// per tensor and B's per tensor or along `b_axis`.
    fn qdq_operands(
        &self,
        a: ValueId,
        b: ValueId,
        b_axis: Option<usize>,
    ) -> Option<(Dequantized, Dequantized)> {
        let (&da, &db) = (self.dequantized.get(&a)?, self.dequantized.get(&b)?);
        let eight_bit = |d: &Dequantized| {
            matches!(self.g.dtype(d.x), DType::I8 | DType::U8)
                && self.g.dtype(d.scale) == DType::F32
        };
        let fits = eight_bit(&da)
            && eight_bit(&db)
            && da.axis.is_none()
            && (db.axis.is_none() || db.axis == b_axis);
        fits.then_some((da, db))
    }

    /// A Conv of a dequantized 8-bit image (per tensor) by a dequantized 8-bit weight (per
    /// tensor or per output channel), as QDQ models hold them: the integer conv
    /// ([`Op::ConvInteger`]) times one multiplier per output channel, plus the f32 bias (which
    /// quantizers write as a dequantized i32 tensor). `None` for any other operands.
    pub(super) fn qdq_conv(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
    ) -> R<Option<ValueId>> {
        if self.g.shape(x).rank() != 4 || self.g.shape(w).rank() != 4 {
            return Ok(None);
        }
        let Some((dx, dw)) = self.qdq_operands(x, w, Some(0)) else {
            return Ok(None);
        };
        let p = self.shifted_conv(dx.x, dx.zero_point, dw.x, dw.zero_point, None)?;
        let pf = self.cast(p, DType::F32)?;
        let out = self.shape(pf);
        let sx = self.quant_param(dx.scale, &out, 1, 0)?;
        let sw = self.quant_param(dw.scale, &out, 1, 0)?;
        let sxw = self.bin(BinaryOp::Mul, sx, sw)?;
        let y = self.bin(BinaryOp::Mul, pf, sxw)?;
        let Some(b) = bias else {
            return Ok(Some(y));
        };
        if self.g.dtype(b) != DType::F32 {
            return bad(format!("Conv bias of {}", self.g.dtype(b)));
        }
        let bc = self.quant_param(b, &out, 1, 0)?;
        Ok(Some(self.bin(BinaryOp::Add, y, bc)?))
    }

    /// A MatMul of two dequantized 8-bit tensors (the QDQ form quantizers write) as their
    /// integer product ([`Op::MatMulInteger`]) times both scales, when A's scale is per tensor
    /// and B's per tensor or per column; `None` (an f32 MatMul of the dequantized values) for
    /// any other operands. The same function in exact integer sums, as onnxruntime's int8
    /// kernels compute it.
    pub(super) fn qdq_matmul(&mut self, a: ValueId, b: ValueId) -> R<Option<ValueId>> {
        let rb = self.g.shape(b).rank();
        let Some((da, db)) = self.qdq_operands(a, b, rb.checked_sub(1).filter(|_| rb >= 2)) else {
            return Ok(None);
        };
        let p = self.shifted_matmul(da.x, da.zero_point, db.x, db.zero_point)?;
        let pf = self.cast(p, DType::F32)?;
        let out = self.shape(pf);
        let last = out.len().saturating_sub(1) as i64;
        // One multiplier (constants fold to one): the epilogue binds one buffer, not two.
        let sa = self.quant_param(da.scale, &out, last, 0)?;
        let sb = self.quant_param(db.scale, &out, last, 0)?;
        let sab = self.bin(BinaryOp::Mul, sa, sb)?;
        Ok(Some(self.bin(BinaryOp::Mul, pf, sab)?))
    }

    /// `v` as f32 (a cast unless it is one already).
    fn as_f32(&mut self, v: ValueId) -> R<ValueId> {
        self.as_dtype(v, DType::F32)
    }

    /// A scale or zero point laid against `x` (of `dims`): a scalar or one-element tensor as
    /// it is, a 1-D one along `axis`, a blocked one (x's rank, `ceil(d / block)` along `axis`)
    /// repeated `block` times along it and cut to `d`.
    fn quant_param(&mut self, p: ValueId, dims: &[usize], axis: i64, block: i64) -> R<ValueId> {
        let pd = self.shape(p);
        let n: usize = pd.iter().product();
        if block > 0 {
            let rank = dims.len();
            let a = self.axis_in(axis, rank)?;
            let b = block as usize;
            let want_blocks = dims[a].div_ceil(b);
            let ok = pd.len() == rank
                && pd[a] == want_blocks
                && (0..rank).all(|d| d == a || pd[d] == dims[d]);
            if !ok {
                return bad(format!(
                    "blocked parameter {pd:?} does not fit input {dims:?} (axis {a}, block {b})"
                ));
            }
            let mut split = pd.clone();
            split.insert(a + 1, 1);
            let mut wide = pd.clone();
            wide.insert(a + 1, b);
            let mut merged = pd.clone();
            merged[a] = want_blocks * b;
            let s = self.reshape(p, split)?;
            let s = self.broadcast_to(s, &wide)?;
            let s = self.reshape(s, merged.clone())?;
            if merged[a] == dims[a] {
                return Ok(s);
            }
            return self.slice_axis(s, a, 0, dims[a], 1);
        }
        if n == 1 || pd.is_empty() {
            return Ok(p);
        }
        if pd.len() != 1 {
            return bad(format!(
                "parameter {pd:?} must be a scalar, 1-D, or blocked (block_size > 0)"
            ));
        }
        let a = self.axis_in(axis, dims.len())?;
        if dims[a] != n {
            return bad(format!(
                "parameter of {n} values along axis {a} of input {dims:?}"
            ));
        }
        let mut shaped = vec![1; dims.len()];
        shaped[a] = n;
        self.reshape(p, shaped)
    }

    /// `DequantizeLinear`: `(x - zero_point) * scale` in f32, cast to the output type.
    fn dequantize_linear(&mut self) -> R<Vec<ValueId>> {
        let (x, scale) = (self.inp(0)?, self.inp(1)?);
        let dims = self.shape(x);
        let (axis, block) = (self.ai("axis", 1), self.ai("block_size", 0));
        let to = match self.ai("output_dtype", 0) {
            0 => self.g.dtype(scale),
            t => dtype_of(t as i32).map_err(super::Fail::Unsupported)?,
        };
        if !to.is_float() {
            return bad(format!("DequantizeLinear to {to}"));
        }
        let xf = self.as_f32(x)?;
        let shifted = if self.has(2) {
            let zp = self.inp(2)?;
            if self.g.dtype(zp) != self.g.dtype(x) {
                return bad(format!(
                    "zero point of {} for input of {}",
                    self.g.dtype(zp),
                    self.g.dtype(x)
                ));
            }
            let zp = self.quant_param(zp, &dims, axis, block)?;
            let zf = self.as_f32(zp)?;
            self.bin(BinaryOp::Sub, xf, zf)?
        } else {
            xf
        };
        let s = self.quant_param(scale, &dims, axis, block)?;
        let sf = self.as_f32(s)?;
        let y = self.bin(BinaryOp::Mul, shifted, sf)?;
        if to != DType::F32 {
            return Ok(vec![self.cast(y, to)?]);
        }
        let n = self.g.shape(scale).numel();
        let per_axis = self.g.shape(scale).rank() == 1 && n > 1;
        if block == 0 && (n == 1 || per_axis) {
            let axis = if per_axis {
                Some(self.axis_in(axis, dims.len())?)
            } else {
                None
            };
            let zero_point = if self.has(2) {
                Some(self.inp(2)?)
            } else {
                None
            };
            // A zero point of another size than the scale's (ONNX says they match) was
            // subtracted along `axis` above; the integer product would subtract it elsewhere.
            let same = zero_point.is_none_or(|z| self.g.shape(z).numel() == n);
            if same {
                let d = Dequantized {
                    x,
                    scale,
                    zero_point,
                    axis,
                };
                self.dequantized.insert(y, d);
            }
        }
        Ok(vec![y])
    }

    /// `x / scale` (`x` without a scale) rounded half to even, plus the zero point, clamped to
    /// `to`'s range, in `to`; to a float8 or float4 type, `x / scale + zero_point` cast
    /// (saturating unless `saturate = 0`).
    fn requantize(
        &mut self,
        xf: ValueId,
        sf: Option<ValueId>,
        zf: Option<ValueId>,
        to: DType,
    ) -> R<ValueId> {
        let q = match sf {
            Some(s) => self.bin(BinaryOp::Div, xf, s)?,
            None => xf,
        };
        if to.is_float() {
            let q = match zf {
                Some(z) => self.bin(BinaryOp::Add, q, z)?,
                None => q,
            };
            let saturate = self.ai("saturate", 1) != 0;
            return self.add1(Op::Cast { to, saturate }, &[q]);
        }
        let r = self.un(UnaryOp::Round, q)?;
        let r = match zf {
            Some(z) => self.bin(BinaryOp::Add, r, z)?,
            None => r,
        };
        let (lo, hi) = int_bounds(to)
            .ok_or_else(|| super::Fail::Unsupported(format!("quantizing to {to}")))?;
        let c = self.un(
            UnaryOp::Clip {
                min: lo as f32,
                max: hi as f32,
            },
            r,
        )?;
        self.cast(c, to)
    }

    /// `QuantizeLinear`.
    fn quantize_linear(&mut self) -> R<Vec<ValueId>> {
        let (x, scale) = (self.inp(0)?, self.inp(1)?);
        let dims = self.shape(x);
        let (axis, block) = (self.ai("axis", 1), self.ai("block_size", 0));
        if self.ai("precision", 0) != 0 {
            return unsup("QuantizeLinear with a precision attribute");
        }
        let zp = if self.has(2) {
            Some(self.inp(2)?)
        } else {
            None
        };
        let to = match (zp, self.ai("output_dtype", 0)) {
            (Some(z), _) => self.g.dtype(z),
            (None, 0) => DType::U8,
            (None, t) => dtype_of(t as i32).map_err(super::Fail::Unsupported)?,
        };
        let xf = self.as_f32(x)?;
        let s = self.quant_param(scale, &dims, axis, block)?;
        let sf = self.as_f32(s)?;
        let zf = match zp {
            Some(z) => {
                let z = self.quant_param(z, &dims, axis, block)?;
                Some(self.as_f32(z)?)
            }
            None => None,
        };
        Ok(vec![self.requantize(xf, Some(sf), zf, to)?])
    }

    /// `DynamicQuantizeLinear`: uint8 over `[min(x, 0), max(x, 0)]`, with its scale and zero
    /// point.
    fn dynamic_quantize_linear(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        if self.g.dtype(x) != DType::F32 {
            return bad(format!("DynamicQuantizeLinear of {}", self.g.dtype(x)));
        }
        let rank = self.g.shape(x).rank();
        let all: Vec<usize> = (0..rank).collect();
        let reduce = |s: &mut Self, op| {
            s.add1(
                Op::Reduce {
                    op,
                    axes: all.clone(),
                    keepdim: false,
                },
                &[x],
            )
        };
        let zero = self.scalar(DType::F32, 0.0)?;
        let mx = reduce(self, ReduceOp::Max)?;
        let mx = self.bin(BinaryOp::Max, mx, zero)?;
        let mn = reduce(self, ReduceOp::Min)?;
        let mn = self.bin(BinaryOp::Min, mn, zero)?;
        let span = self.bin(BinaryOp::Sub, mx, mn)?;
        let q = self.scalar(DType::F32, 255.0)?;
        let scale = self.bin(BinaryOp::Div, span, q)?;
        let neg = self.un(UnaryOp::Neg, mn)?;
        let z = self.bin(BinaryOp::Div, neg, scale)?;
        let z = self.un(UnaryOp::Round, z)?;
        let z = self.un(
            UnaryOp::Clip {
                min: 0.0,
                max: 255.0,
            },
            z,
        )?;
        let y = self.requantize(x, Some(scale), Some(z), DType::U8)?;
        let zp = self.cast(z, DType::U8)?;
        Ok(vec![y, scale, zp])
    }

    /// `v - zero_point` in `to` (i32: exact, both are 8-bit; or f32) for an integer product's
    /// operand, the zero point a scalar or one per index of `axis`.
    fn shifted(&mut self, v: ValueId, zp: Option<ValueId>, axis: usize, to: DType) -> R<ValueId> {
        let vt = self.as_dtype(v, to)?;
        let Some(z) = zp else {
            return Ok(vt);
        };
        let dims = self.shape(v);
        let zt = self.quant_param(z, &dims, axis as i64, 0)?;
        let zt = self.as_dtype(zt, to)?;
        self.bin(BinaryOp::Sub, vt, zt)
    }

    /// `v` as `to` (a cast unless it is one already).
    fn as_dtype(&mut self, v: ValueId, to: DType) -> R<ValueId> {
        if self.g.dtype(v) == to {
            Ok(v)
        } else {
            self.cast(v, to)
        }
    }

    /// Whether both operands are 8-bit integers, the types ONNX's integer products define: their
    /// products run in i32 ([`Op::MatMulInteger`], [`Op::ConvInteger`]). Others (QLinearMatMul's
    /// float8 inputs) multiply as f32.
    fn both_eight_bit(&self, a: ValueId, b: ValueId) -> bool {
        let eight = |v| matches!(self.g.dtype(v), DType::I8 | DType::U8);
        eight(a) && eight(b)
    }

    /// `MatMulInteger` and `ConvInteger`: i32 products of zero-point-shifted integers.
    fn integer_product(&mut self, conv: bool) -> R<Vec<ValueId>> {
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        let za = if self.has(2) {
            Some(self.inp(2)?)
        } else {
            None
        };
        let zb = if self.has(3) {
            Some(self.inp(3)?)
        } else {
            None
        };
        let p = if conv {
            self.shifted_conv(a, za, b, zb, None)?
        } else {
            self.shifted_matmul(a, za, b, zb)?
        };
        Ok(vec![self.as_dtype(p, DType::I32)?])
    }

    /// The product of two zero-point-shifted operands, A's zero point per row, B's per column:
    /// of two 8-bit tensors an i32 [`Op::MatMulInteger`] (exact sums), else an f32 MatMul.
    pub(super) fn shifted_matmul(
        &mut self,
        a: ValueId,
        za: Option<ValueId>,
        b: ValueId,
        zb: Option<ValueId>,
    ) -> R<ValueId> {
        let (ra, rb) = (self.g.shape(a).rank(), self.g.shape(b).rank());
        if ra < 1 || rb < 1 {
            return bad("integer product of a scalar");
        }
        let int = self.both_eight_bit(a, b);
        let to = if int { DType::I32 } else { DType::F32 };
        let at = self.shifted(a, za, ra.saturating_sub(2), to)?;
        let bt = self.shifted(b, zb, rb - 1, to)?;
        let op = if int { Op::MatMulInteger } else { Op::MatMul };
        self.add1(op, &[at, bt])
    }

    /// The Conv (this node's attributes) of two zero-point-shifted operands, X's zero point per
    /// tensor, W's per output channel, plus the i32 bias: of two 8-bit tensors an i32
    /// [`Op::ConvInteger`] (exact sums), else an f32 Conv.
    pub(super) fn shifted_conv(
        &mut self,
        x: ValueId,
        zx: Option<ValueId>,
        w: ValueId,
        zw: Option<ValueId>,
        bias: Option<ValueId>,
    ) -> R<ValueId> {
        if self.g.shape(x).rank() < 2 || self.g.shape(w).rank() < 1 {
            return bad("integer conv of a scalar or a vector");
        }
        let int = self.both_eight_bit(x, w);
        let to = if int { DType::I32 } else { DType::F32 };
        let xt = self.shifted(x, zx, 1, to)?;
        let wt = self.shifted(w, zw, 0, to)?;
        let bias = match bias {
            Some(b) => Some(self.as_dtype(b, to)?),
            None => None,
        };
        if int {
            return self.int_conv2d(xt, wt, bias);
        }
        Ok(self.conv2d(false, xt, wt, bias)?[0])
    }

    /// `QLinearMatMul` and `QLinearConv`: the i32 sums (a conv's with its i32 bias) times
    /// `a_scale * b_scale / y_scale`, plus `y_zero_point`, rounded and clamped, as ONNX's
    /// reference computes them. The scales are constants in quantized models, so the multiplier
    /// folds to one value per tensor, column or output channel.
    fn qlinear(&mut self, conv: bool) -> R<Vec<ValueId>> {
        let ins: Vec<ValueId> = (0..8).map(|i| self.inp(i)).collect::<R<_>>()?;
        let [a, sa, za, b, sb, zb, sy, zy] = ins[..] else {
            return bad("QLinear op needs 8 inputs");
        };
        let p = if conv {
            let bias = if self.has(8) {
                Some(self.inp(8)?)
            } else {
                None
            };
            self.shifted_conv(a, Some(za), b, Some(zb), bias)?
        } else {
            self.shifted_matmul(a, Some(za), b, Some(zb))?
        };
        let p = self.as_f32(p)?;
        let out = self.shape(p);
        let rank = out.len();
        // The scales: A's per row (per tensor for a conv's input), B's per column or per output
        // channel.
        let a_axis = if conv { 1 } else { rank.saturating_sub(2) };
        let b_axis = if conv { 1 } else { rank - 1 };
        let saf = self.quant_param(sa, &out, a_axis as i64, 0)?;
        let sbf = self.quant_param(sb, &out, b_axis as i64, 0)?;
        let saf = self.as_f32(saf)?;
        let sbf = self.as_f32(sbf)?;
        let syf = self.quant_param(sy, &out, 1, 0)?;
        let syf = self.as_f32(syf)?;
        let zyf = self.quant_param(zy, &out, 1, 0)?;
        let to = self.g.dtype(zy);
        let zyf = self.as_f32(zyf)?;
        let sab = self.bin(BinaryOp::Mul, saf, sbf)?;
        let mult = self.bin(BinaryOp::Div, sab, syf)?;
        let d = self.bin(BinaryOp::Mul, p, mult)?;
        Ok(vec![self.requantize(d, None, Some(zyf), to)?])
    }
}

/// The range an integer quantized type holds.
fn int_bounds(dt: DType) -> Option<(f64, f64)> {
    if let Some((bits, signed)) = dt.sub_byte_int() {
        let n = (1i64 << bits) as f64;
        return Some(if signed {
            (-n / 2.0, n / 2.0 - 1.0)
        } else {
            (0.0, n - 1.0)
        });
    }
    Some(match dt {
        DType::I8 => (-128.0, 127.0),
        DType::U8 => (0.0, 255.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U16 => (0.0, 65535.0),
        DType::I32 => (-2147483648.0, 2147483647.0),
        DType::U32 => (0.0, 4294967295.0),
        _ => return None,
    })
}
