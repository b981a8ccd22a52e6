//! Elementwise math (unary functions, arithmetic, comparisons, logic, bitwise ops and shifts,
//! Mod, IsInf, IsNaN), Where,
//! Cast and CastLike, MatMul and Gemm.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Fail, Importer, R};
use crate::tensor::dtype_of;
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Shape, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("Relu", Tensors(|c| c.unary(UnaryOp::Relu))),
    ("Sigmoid", Tensors(|c| c.unary(UnaryOp::Sigmoid))),
    ("Tanh", Tensors(|c| c.unary(UnaryOp::Tanh))),
    ("Exp", Tensors(|c| c.unary(UnaryOp::Exp))),
    ("Log", Tensors(|c| c.unary(UnaryOp::Log))),
    ("Sqrt", Tensors(|c| c.unary(UnaryOp::Sqrt))),
    ("Neg", Tensors(|c| c.unary(UnaryOp::Neg))),
    ("Abs", Tensors(|c| c.unary(UnaryOp::Abs))),
    ("Erf", Tensors(|c| c.unary(UnaryOp::Erf))),
    ("HardSwish", Tensors(|c| c.unary(UnaryOp::HardSwish))),
    ("Sin", Tensors(|c| c.unary(UnaryOp::Sin))),
    ("Cos", Tensors(|c| c.unary(UnaryOp::Cos))),
    ("Tan", Tensors(|c| c.unary(UnaryOp::Tan))),
    ("Asin", Tensors(|c| c.unary(UnaryOp::Asin))),
    ("Acos", Tensors(|c| c.unary(UnaryOp::Acos))),
    ("Atan", Tensors(|c| c.unary(UnaryOp::Atan))),
    ("Sinh", Tensors(|c| c.unary(UnaryOp::Sinh))),
    ("Cosh", Tensors(|c| c.unary(UnaryOp::Cosh))),
    ("Asinh", Tensors(|c| c.unary(UnaryOp::Asinh))),
    ("Acosh", Tensors(|c| c.unary(UnaryOp::Acosh))),
    ("Atanh", Tensors(|c| c.unary(UnaryOp::Atanh))),
    ("Floor", Tensors(|c| c.unary(UnaryOp::Floor))),
    ("Ceil", Tensors(|c| c.unary(UnaryOp::Ceil))),
    ("Round", Tensors(|c| c.unary(UnaryOp::Round))),
    ("Sign", Tensors(|c| c.unary(UnaryOp::Sign))),
    ("Reciprocal", Tensors(|c| c.reciprocal())),
    ("Mod", Tensors(|c| c.modulo())),
    ("Not", Tensors(|c| c.logical())),
    ("And", Tensors(|c| c.logical())),
    ("Or", Tensors(|c| c.logical())),
    ("Xor", Tensors(|c| c.logical())),
    ("IsInf", Tensors(|c| c.is_inf())),
    ("IsNaN", Tensors(|c| c.is_nan())),
    ("BitwiseAnd", Tensors(|c| c.binary(BinaryOp::BitAnd))),
    ("BitwiseOr", Tensors(|c| c.binary(BinaryOp::BitOr))),
    ("BitwiseXor", Tensors(|c| c.binary(BinaryOp::BitXor))),
    ("BitwiseNot", Tensors(|c| c.bitwise_not())),
    ("BitShift", Tensors(|c| c.bit_shift())),
    ("Add", Tensors(|c| c.binary(BinaryOp::Add))),
    ("Sub", Tensors(|c| c.binary(BinaryOp::Sub))),
    ("Mul", Tensors(|c| c.binary(BinaryOp::Mul))),
    ("Div", Tensors(|c| c.binary(BinaryOp::Div))),
    ("Pow", Tensors(|c| c.binary(BinaryOp::Pow))),
    ("Equal", Tensors(|c| c.binary(BinaryOp::Eq))),
    ("Less", Tensors(|c| c.binary(BinaryOp::Lt))),
    ("LessOrEqual", Tensors(|c| c.binary(BinaryOp::Le))),
    ("Greater", Tensors(|c| c.binary(BinaryOp::Gt))),
    ("GreaterOrEqual", Tensors(|c| c.binary(BinaryOp::Ge))),
    ("Max", Tensors(|c| Ok(vec![c.variadic(BinaryOp::Max)?]))),
    ("Min", Tensors(|c| Ok(vec![c.variadic(BinaryOp::Min)?]))),
    ("Sum", Tensors(|c| Ok(vec![c.variadic(BinaryOp::Add)?]))),
    ("Mean", Tensors(|c| c.mean())),
    ("Where", Tensors(|c| c.where_op())),
    ("Cast", Tensors(|c| c.cast_op())),
    ("CastLike", Tensors(|c| c.cast_like())),
    ("BitCast", Tensors(|c| c.bit_cast())),
    ("MatMul", Tensors(|c| c.mat_mul())),
    ("Gemm", Tensors(|c| c.gemm())),
];

impl Importer<'_> {
    /// `Reciprocal`.
    fn reciprocal(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let one = self.scalar(self.g.dtype(x), 1.0)?;
        self.add(Op::Binary(BinaryOp::Div), &[one, x])
    }

    /// `Mod`: integers by truncated division (with `fmod = 0`, moved to the divisor's sign);
    /// floats as `a - b * trunc(a / b)` (`fmod = 1`) or `a - b * floor(a / b)` (`fmod = 0`,
    /// numpy's `mod`), with a finite `a` over an infinite `b` as C's `fmod` and numpy have it.
    fn modulo(&mut self) -> R<Vec<ValueId>> {
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        let dt = self.g.dtype(a);
        let fmod = self.ai("fmod", 0) != 0;
        if dt.is_float() {
            return Ok(vec![self.float_mod(a, b, fmod)?]);
        }
        let q = self.add1(Op::Binary(BinaryOp::Div), &[a, b])?;
        let bq = self.add1(Op::Binary(BinaryOp::Mul), &[b, q])?;
        let r = self.add1(Op::Binary(BinaryOp::Sub), &[a, bq])?;
        if fmod {
            return Ok(vec![r]);
        }
        // Python's modulo: the sign of the divisor.
        let zero = self.scalar(dt, 0.0)?;
        let nz = self.add1(Op::Binary(BinaryOp::Ne), &[r, zero])?;
        let rn = self.add1(Op::Binary(BinaryOp::Lt), &[r, zero])?;
        let bn = self.add1(Op::Binary(BinaryOp::Lt), &[b, zero])?;
        let differ = self.add1(Op::Binary(BinaryOp::Ne), &[rn, bn])?;
        let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        let fix = self.add1(Op::Where, &[nz, differ, no])?;
        let rb = self.add1(Op::Binary(BinaryOp::Add), &[r, b])?;
        self.add(Op::Where, &[fix, rb, r])
    }

    fn float_mod(&mut self, a: ValueId, b: ValueId, fmod: bool) -> R<ValueId> {
        let dt = self.g.dtype(a);
        let q = self.bin(BinaryOp::Div, a, b)?;
        let q = if fmod {
            // trunc(q) = sign(q) * floor(|q|)
            let s = self.un(UnaryOp::Sign, q)?;
            let m = self.un(UnaryOp::Abs, q)?;
            let f = self.un(UnaryOp::Floor, m)?;
            self.bin(BinaryOp::Mul, s, f)?
        } else {
            self.un(UnaryOp::Floor, q)?
        };
        let bq = self.bin(BinaryOp::Mul, b, q)?;
        let r = self.bin(BinaryOp::Sub, a, bq)?;
        // b = ±inf, a finite: a (fmod, or the same signs, or a = 0), else b.
        let inf = self.scalar(dt, f64::INFINITY)?;
        let babs = self.un(UnaryOp::Abs, b)?;
        let b_inf = self.bin(BinaryOp::Eq, babs, inf)?;
        let aabs = self.un(UnaryOp::Abs, a)?;
        let a_fin = self.bin(BinaryOp::Lt, aabs, inf)?;
        let at_inf = if fmod {
            a
        } else {
            let zero = self.scalar(dt, 0.0)?;
            let an = self.bin(BinaryOp::Lt, a, zero)?;
            let bn = self.bin(BinaryOp::Lt, b, zero)?;
            let differ = self.bin(BinaryOp::Ne, an, bn)?;
            let a_nz = self.bin(BinaryOp::Ne, a, zero)?;
            let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
            let take_b = self.add1(Op::Where, &[a_nz, differ, no])?;
            self.add1(Op::Where, &[take_b, b, a])?
        };
        let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        let use_inf = self.add1(Op::Where, &[b_inf, a_fin, no])?;
        self.add1(Op::Where, &[use_inf, at_inf, r])
    }

    /// `Not`, `And`, `Or`, `Xor`.
    fn logical(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let a = self.inp(0)?;
        if self.g.dtype(a) != DType::Bool {
            return bad(format!("{op} takes bool, got {}", self.g.dtype(a)));
        }
        let konst = |s: &mut Self, v: bool| s.konst(Tensor::from_bool(Shape::scalar(), vec![v])?);
        match op.as_str() {
            "Not" => {
                let f = konst(self, false)?;
                self.add(Op::Binary(BinaryOp::Eq), &[a, f])
            }
            "Xor" => {
                let b = self.inp(1)?;
                self.add(Op::Binary(BinaryOp::Ne), &[a, b])
            }
            "And" => {
                let (b, f) = (self.inp(1)?, konst(self, false)?);
                self.add(Op::Where, &[a, b, f])
            }
            _ => {
                let (b, t) = (self.inp(1)?, konst(self, true)?);
                self.add(Op::Where, &[a, t, b])
            }
        }
    }

    /// `BitwiseNot`: exclusive or with every bit of the dtype set (-1 for the signed ones).
    fn bitwise_not(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_int() {
            return bad(format!("BitwiseNot takes an integer tensor, got {dt}"));
        }
        let ones = if dt.is_signed() {
            -1.0
        } else {
            2f64.powi(dt.bits() as i32) - 1.0
        };
        let m = self.scalar(dt, ones)?;
        self.add(Op::Binary(BinaryOp::BitXor), &[x, m])
    }

    /// `BitShift` with `direction` LEFT or RIGHT.
    fn bit_shift(&mut self) -> R<Vec<ValueId>> {
        let dir = self.astr("direction", "");
        let op = match dir.as_str() {
            "LEFT" => BinaryOp::Shl,
            "RIGHT" => BinaryOp::Shr,
            d => {
                return bad(format!(
                    "BitShift direction must be LEFT or RIGHT, got '{d}'"
                ))
            }
        };
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        if !self.g.dtype(a).is_int() {
            return bad(format!(
                "BitShift takes integer tensors, got {}",
                self.g.dtype(a)
            ));
        }
        self.add(Op::Binary(op), &[a, b])
    }

    /// `IsNaN`: the one value not equal to itself.
    fn is_nan(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("IsNaN of {dt}"));
        }
        self.add(Op::Binary(BinaryOp::Ne), &[x, x])
    }

    /// `Mean`.
    fn mean(&mut self) -> R<Vec<ValueId>> {
        let s = self.variadic(BinaryOp::Add)?;
        let n = self.scalar(self.g.dtype(s), self.ins.len() as f64)?;
        self.add(Op::Binary(BinaryOp::Div), &[s, n])
    }

    /// `Where`.
    fn where_op(&mut self) -> R<Vec<ValueId>> {
        let (c, a, b) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        self.add(Op::Where, &[c, a, b])
    }

    /// `Cast`.
    fn cast_op(&mut self) -> R<Vec<ValueId>> {
        let to = dtype_of(self.ai("to", 0) as i32).map_err(Fail::Unsupported)?;
        let x = self.inp(0)?;
        let saturate = self.ai("saturate", 1) != 0;
        let round_mode = self.astr("round_mode", "up");
        if to == DType::F8E8M0 && round_mode != "up" {
            return unsup(format!(
                "round_mode '{round_mode}' to float8e8m0 (only 'up')"
            ));
        }
        self.add(Op::Cast { to, saturate }, &[x])
    }

    /// `BitCast` (opset 26): the same bits read as `to`.
    fn bit_cast(&mut self) -> R<Vec<ValueId>> {
        let to = dtype_of(self.ai("to", 0) as i32).map_err(Fail::Unsupported)?;
        let x = self.inp(0)?;
        let from = self.g.dtype(x);
        let (wf, wt) = (
            sfumato_core::dtype::bitcast_width(from),
            sfumato_core::dtype::bitcast_width(to),
        );
        if wf.is_none() || wt.is_none() {
            return unsup(format!(
                "BitCast from {from} to {to} (8-, 16- and 32-bit types only)"
            ));
        }
        if wf != wt {
            return bad(format!("BitCast from {from} to {to}: the widths differ"));
        }
        self.add(Op::BitCast { to }, &[x])
    }

    /// `CastLike`.
    fn cast_like(&mut self) -> R<Vec<ValueId>> {
        let (x, t) = (self.inp(0)?, self.inp(1)?);
        let to = self.g.dtype(t);
        let saturate = self.ai("saturate", 1) != 0;
        self.add(Op::Cast { to, saturate }, &[x])
    }

    /// `MatMul`.
    fn mat_mul(&mut self) -> R<Vec<ValueId>> {
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        if let Some(y) = self.qdq_matmul(a, b)? {
            return Ok(vec![y]);
        }
        self.add(Op::MatMul, &[a, b])
    }

    /// `Gemm`.
    fn gemm(&mut self) -> R<Vec<ValueId>> {
        let gm = Gemm {
            alpha: self.af("alpha", 1.0),
            beta: self.af("beta", 1.0),
            trans_a: self.ai("transA", 0) != 0,
            trans_b: self.ai("transB", 0) != 0,
        };
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        let mut ins = vec![a, b];
        if self.has(2) {
            ins.push(self.inp(2)?);
        }
        self.add(Op::Gemm(gm), &ins)
    }

    /// IsInf with `detect_positive` / `detect_negative`.
    pub(super) fn is_inf(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("IsInf of {dt}"));
        }
        let (pos, neg) = (
            self.ai("detect_positive", 1) != 0,
            self.ai("detect_negative", 1) != 0,
        );
        let inf = self.scalar(dt, f64::INFINITY)?;
        Ok(vec![match (pos, neg) {
            (true, true) => {
                let a = self.un(UnaryOp::Abs, x)?;
                self.bin(BinaryOp::Eq, a, inf)?
            }
            (true, false) => self.bin(BinaryOp::Eq, x, inf)?,
            (false, true) => {
                let ninf = self.scalar(dt, f64::NEG_INFINITY)?;
                self.bin(BinaryOp::Eq, x, ninf)?
            }
            (false, false) => self.all_bool_like(x, false)?,
        }])
    }
}
