//! Reductions: Reduce* (axes as attribute or input), ArgMax and ArgMin, CumSum and CumProd.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("CumSum", Tensors(|c| c.cum_sum())),
    ("CumProd", Tensors(|c| c.cum_prod())),
    ("ReduceSum", Tensors(|c| c.reduce())),
    ("ReduceMean", Tensors(|c| c.reduce())),
    ("ReduceMax", Tensors(|c| c.reduce())),
    ("ReduceMin", Tensors(|c| c.reduce())),
    ("ReduceProd", Tensors(|c| c.reduce())),
    ("ReduceL1", Tensors(|c| c.reduce())),
    ("ReduceL2", Tensors(|c| c.reduce())),
    ("ReduceSumSquare", Tensors(|c| c.reduce())),
    ("ReduceLogSum", Tensors(|c| c.reduce())),
    ("ReduceLogSumExp", Tensors(|c| c.reduce())),
    ("ArgMax", Tensors(|c| c.arg_reduce())),
    ("ArgMin", Tensors(|c| c.arg_reduce())),
];

/// CumSum runs as a product with a triangular `[L, L]` matrix: at most this long an axis.
pub const MAX_CUMSUM_AXIS: usize = 2048;

impl Importer<'_> {
    /// `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`, `ReduceL1`, `ReduceL2`, `ReduceSumSquare`, `ReduceLogSum`, `ReduceLogSumExp`.
    fn reduce(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let opset = self.opset;
        // (elementwise before, reduction, elementwise after)
        let (pre, rop, post) = match op.as_str() {
            "ReduceSum" => (None, ReduceOp::Sum, None),
            "ReduceMean" => (None, ReduceOp::Mean, None),
            "ReduceMax" => (None, ReduceOp::Max, None),
            "ReduceMin" => (None, ReduceOp::Min, None),
            "ReduceProd" => (None, ReduceOp::Prod, None),
            "ReduceL1" => (Some("abs"), ReduceOp::Sum, None),
            "ReduceL2" => (Some("square"), ReduceOp::Sum, Some(UnaryOp::Sqrt)),
            "ReduceSumSquare" => (Some("square"), ReduceOp::Sum, None),
            "ReduceLogSum" => (None, ReduceOp::Sum, Some(UnaryOp::Log)),
            _ => (Some("exp"), ReduceOp::Sum, Some(UnaryOp::Log)),
        };
        let mut x0 = self.inp(0)?;
        let dt0 = self.g.dtype(x0);
        if dt0 == DType::Bool {
            // Max is any, Min is all: reduce the bools as u8 and cast back.
            if !matches!(rop, ReduceOp::Max | ReduceOp::Min) || pre.is_some() {
                return unsup(format!("{op} of bool"));
            }
            x0 = self.cast(x0, DType::U8)?;
        }
        let x = match pre {
            Some("abs") => self.add1(Op::Unary(UnaryOp::Abs), &[x0])?,
            Some("square") => self.add1(Op::Binary(BinaryOp::Mul), &[x0, x0])?,
            Some(_) => self.add1(Op::Unary(UnaryOp::Exp), &[x0])?,
            None => x0,
        };
        let finish = |s: &mut Self, v: ValueId| -> R<Vec<ValueId>> {
            match post {
                Some(u) => s.add(Op::Unary(u), &[v]),
                None => Ok(vec![v]),
            }
        };
        let rank = self.g.shape(x).rank();
        let axes_as_input = if op == "ReduceSum" {
            opset >= 13
        } else {
            opset >= 18
        };
        let axes = if axes_as_input {
            if self.has(1) {
                Some(self.const_ints(1)?)
            } else {
                None
            }
        } else {
            self.ais("axes")
        };
        let keepdim = self.ai("keepdims", 1) != 0;
        let axes = match axes {
            Some(a) if !a.is_empty() => self.axes(&a, rank)?,
            _ if self.ai("noop_with_empty_axes", 0) != 0 => {
                return if dt0 == DType::Bool {
                    Ok(vec![self.inp(0)?])
                } else {
                    finish(self, x)
                };
            }
            _ => (0..rank).collect(),
        };
        let dims = self.shape(x);
        if matches!(rop, ReduceOp::Max | ReduceOp::Min) && axes.iter().any(|&a| dims[a] == 0) {
            // Over an empty set: the identity, the lowest (highest) value of the dtype.
            let out = sfumato_core::op::reduced_dims(&dims, &axes, keepdim);
            let n: usize = out.iter().product();
            let v = match (rop == ReduceOp::Max, dt0 == DType::Bool) {
                (true, true) => 0.0,
                (false, true) => 1.0,
                (true, false) => f64::NEG_INFINITY,
                (false, false) => f64::INFINITY,
            };
            return Ok(vec![self.konst(Tensor::from_f64(dt0, out, &vec![v; n]))?]);
        }
        let r = self.add1(
            Op::Reduce {
                op: rop,
                axes,
                keepdim,
            },
            &[x],
        )?;
        if dt0 == DType::Bool {
            return Ok(vec![self.cast(r, DType::Bool)?]);
        }
        finish(self, r)
    }

    /// `ArgMax`, `ArgMin`.
    fn arg_reduce(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let x = self.inp(0)?;
        let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
        let arg = Op::ArgReduce {
            max: op == "ArgMax",
            axis,
            keepdim: self.ai("keepdims", 1) != 0,
            last: self.ai("select_last_index", 0) != 0,
        };
        self.add(arg, &[x])
    }

    /// CumSum along a known axis: the axis moved last, times a triangular 0/1 matrix
    /// (`exclusive`, `reverse` choose which triangle), moved back. Integers sum in f32 (exact
    /// while partial sums stay within 2^24).
    /// `CumProd` as a doubling scan: `ceil(log2 L)` steps, each multiplying by the running
    /// products shifted `d = 1, 2, 4, ...` places (ones shifted in); `exclusive` shifts the input
    /// one place first, `reverse` flips the axis before and after.
    pub(super) fn cum_prod(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let axis = self.cum_axis(rank)?;
        let l = dims[axis];
        let (excl, rev) = (self.ai("exclusive", 0) != 0, self.ai("reverse", 0) != 0);
        let flip = |s: &mut Self, v: ValueId| s.slice_axis(v, axis, l - 1, l, -1);
        // v shifted `d` places along the axis, ones in front.
        let shift = |s: &mut Self, v: ValueId, d: usize| -> R<ValueId> {
            let head = s.slice_axis(v, axis, 0, l - d, 1)?;
            let mut pads = vec![[0, 0]; rank];
            pads[axis] = [d, 0];
            s.add1(
                Op::Pad {
                    pads,
                    mode: PadMode::Constant(1.0),
                },
                &[head],
            )
        };
        if l == 0 {
            return Ok(vec![x]);
        }
        let mut y = if rev { flip(self, x)? } else { x };
        if excl {
            y = shift(self, y, 1)?;
        }
        let mut d = 1;
        while d < l {
            let s = shift(self, y, d)?;
            y = self.bin(BinaryOp::Mul, y, s)?;
            d *= 2;
        }
        Ok(vec![if rev { flip(self, y)? } else { y }])
    }

    /// CumSum's and CumProd's axis, input 1.
    fn cum_axis(&mut self, rank: usize) -> R<usize> {
        match self.const_ints(1)?.as_slice() {
            [a] => self.axis_in(*a, rank),
            other => bad(format!("axis {other:?} must be one integer")),
        }
    }

    pub(super) fn cum_sum(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let dims = self.shape(x);
        let rank = dims.len();
        let axis = self.cum_axis(rank)?;
        let l = dims[axis];
        if l > MAX_CUMSUM_AXIS {
            return unsup(format!(
                "CumSum over an axis of {l} (at most {MAX_CUMSUM_AXIS})"
            ));
        }
        let (excl, rev) = (self.ai("exclusive", 0) != 0, self.ai("reverse", 0) != 0);
        let mut t = vec![0.0; l * l];
        for i in 0..l {
            for j in 0..l {
                let take = match (rev, excl) {
                    (false, false) => i <= j,
                    (false, true) => i < j,
                    (true, false) => i >= j,
                    (true, true) => i > j,
                };
                t[i * l + j] = take as u8 as f64;
            }
        }
        let work = if dt.is_float() && dt != DType::F64 {
            dt
        } else {
            DType::F32
        };
        let xw = if work == dt { x } else { self.cast(x, work)? };
        let mut perm: Vec<usize> = (0..rank).filter(|&d| d != axis).collect();
        perm.push(axis);
        let moved = if axis + 1 == rank {
            xw
        } else {
            self.add1(Op::Transpose { perm: perm.clone() }, &[xw])?
        };
        let tri = self.konst(Tensor::from_f64(work, [l, l], &t))?;
        let s = self.add1(Op::MatMul, &[moved, tri])?;
        let back = if axis + 1 == rank {
            s
        } else {
            let mut inv = vec![0; rank];
            for (k, &p) in perm.iter().enumerate() {
                inv[p] = k;
            }
            self.add1(Op::Transpose { perm: inv }, &[s])?
        };
        Ok(vec![if work == dt {
            back
        } else {
            self.cast(back, dt)?
        }])
    }
}
