//! More ONNX ops as compositions of Sfumato's: OneHot, Hardmax, LpNormalization, CumSum, IsInf,
//! Swish, SpaceToDepth, DepthToSpace, EyeLike, Compress, CenterCropPad, and Dropout's mask.

use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Shape, Tensor, ValueId};

/// CumSum runs as a product with a triangular `[L, L]` matrix: at most this long an axis.
pub const MAX_CUMSUM_AXIS: usize = 2048;

impl Importer<'_> {
    /// A bool tensor of `x`'s shape, all `v`: computed from a float `x` (`|x| < 0` is false
    /// for every value, NaN too), so nothing of `x`'s size is allocated at import.
    fn all_bool_like(&mut self, x: ValueId, v: bool) -> R<ValueId> {
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("a mask like a {dt} tensor"));
        }
        let a = self.un(UnaryOp::Abs, x)?;
        let zero = self.scalar(dt, 0.0)?;
        let none = self.bin(BinaryOp::Lt, a, zero)?;
        if !v {
            return Ok(none);
        }
        let f = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        self.bin(BinaryOp::Eq, none, f)
    }

    /// `[0, 1, ..., n)` as i64, shaped `dims` (one of them `n`).
    fn arange_i64(&mut self, n: usize, dims: Vec<usize>) -> R<ValueId> {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        self.konst(Tensor::from_f64(DType::I64, Shape::new(dims), &v))
    }

    /// OneHot(indices, depth, [off, on]): `on` where `indices` (negative ones plus depth) equals
    /// the position along the new axis, `off` elsewhere (out-of-range indices: all `off`).
    pub(super) fn one_hot(&mut self) -> R<Vec<ValueId>> {
        let idx = self.inp(0)?;
        let depth = self.const_in(1)?.to_f64_vec();
        let depth = match depth.as_slice() {
            [d] if *d >= 1.0 && d.is_finite() => *d as usize,
            other => return bad(format!("depth {other:?} must be one positive number")),
        };
        if depth > 1 << 20 {
            return unsup(format!("OneHot of depth {depth}"));
        }
        let values = self.inp(2)?;
        if self.g.shape(values).numel() != 2 {
            return bad("values must hold [off, on]");
        }
        let dims = self.shape(idx);
        let rank = dims.len();
        let axis = self.axis(self.ai("axis", -1), rank + 1)?;
        let i = self.cast(idx, DType::I64)?;
        let zero = self.scalar(DType::I64, 0.0)?;
        let neg = self.bin(BinaryOp::Lt, i, zero)?;
        let d = self.scalar(DType::I64, depth as f64)?;
        let wrapped = self.bin(BinaryOp::Add, i, d)?;
        let i = self.add1(Op::Where, &[neg, wrapped, i])?;
        let mut id = dims.clone();
        id.insert(axis, 1);
        let i = self.reshape(i, id)?;
        let mut rd = vec![1; rank + 1];
        rd[axis] = depth;
        let r = self.arange_i64(depth, rd)?;
        let hit = self.bin(BinaryOp::Eq, i, r)?;
        let vals_flat = self.reshape(values, vec![2])?;
        let pick = |s: &mut Self, k: i64| -> R<ValueId> {
            let axes = vec![SliceAxis {
                start: k,
                step: 1,
                len: 1,
            }];
            let v = s.add1(Op::Slice { axes }, &[vals_flat])?;
            s.reshape(v, Vec::new())
        };
        let (off, on) = (pick(self, 0)?, pick(self, 1)?);
        Ok(vec![self.add1(Op::Where, &[hit, on, off])?])
    }

    /// Hardmax (opset 13): 1 at the first maximum along `axis`, 0 elsewhere.
    pub(super) fn hardmax(&mut self) -> R<Vec<ValueId>> {
        if self.opset < 13 {
            return unsup("Hardmax before opset 13 (2-D coercion)");
        }
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let dt = self.g.dtype(x);
        let axis = self.axis_in(self.ai("axis", -1), dims.len())?;
        let arg = self.add1(
            Op::ArgReduce {
                max: true,
                axis,
                keepdim: true,
                last: false,
            },
            &[x],
        )?;
        let mut rd = vec![1; dims.len()];
        rd[axis] = dims[axis];
        let r = self.arange_i64(dims[axis], rd)?;
        let hit = self.bin(BinaryOp::Eq, arg, r)?;
        Ok(vec![self.cast(hit, dt)?])
    }

    /// LpNormalization: `x / ||x||_p` along `axis` (p = 1 or 2); a zero norm gives 0.
    pub(super) fn lp_normalization(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("LpNormalization of {dt}"));
        }
        let axis = self.axis_in(self.ai("axis", -1), self.shape(x).len())?;
        let norm = match self.ai("p", 2) {
            1 => {
                let a = self.un(UnaryOp::Abs, x)?;
                self.sum_over(a, vec![axis], true)?
            }
            2 => {
                let sq = self.bin(BinaryOp::Mul, x, x)?;
                let s = self.sum_over(sq, vec![axis], true)?;
                self.un(UnaryOp::Sqrt, s)?
            }
            p => return bad(format!("p = {p} (1 or 2)")),
        };
        let zero = self.scalar(dt, 0.0)?;
        let is_zero = self.bin(BinaryOp::Eq, norm, zero)?;
        let y = self.bin(BinaryOp::Div, x, norm)?;
        Ok(vec![self.add1(Op::Where, &[is_zero, zero, y])?])
    }

    /// CumSum along a known axis: the axis moved last, times a triangular 0/1 matrix
    /// (`exclusive`, `reverse` choose which triangle), moved back. Integers sum in f32 (exact
    /// while partial sums stay within 2^24).
    pub(super) fn cum_sum(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let dims = self.shape(x);
        let rank = dims.len();
        let axis = match self.const_ints(1)?.as_slice() {
            [a] => self.axis_in(*a, rank)?,
            other => return bad(format!("axis {other:?} must be one integer")),
        };
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

    /// Swish: `x * sigmoid(alpha * x)`.
    pub(super) fn swish(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let a = self.scalar(dt, self.af("alpha", 1.0) as f64)?;
        let ax = self.bin(BinaryOp::Mul, x, a)?;
        let s = self.un(UnaryOp::Sigmoid, ax)?;
        Ok(vec![self.bin(BinaryOp::Mul, x, s)?])
    }

    /// SpaceToDepth and DepthToSpace (modes DCR and CRD): a reshape to six dims, a transpose
    /// and a reshape back.
    pub(super) fn space_depth(&mut self, to_depth: bool) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let d = self.shape(x);
        if d.len() != 4 {
            return bad(format!("input of rank {} (4 expected)", d.len()));
        }
        let bs = self.ai("blocksize", 0);
        if bs < 1 {
            return bad(format!("blocksize {bs}"));
        }
        let bs = bs as usize;
        let crd = self.astr("mode", "DCR") == "CRD";
        let (b, c, h, w) = (d[0], d[1], d[2], d[3]);
        let (six, perm, out) = if to_depth {
            if h % bs != 0 || w % bs != 0 {
                return bad(format!("{h}x{w} is not a multiple of blocksize {bs}"));
            }
            let six = vec![b, c, h / bs, bs, w / bs, bs];
            let perm = if crd {
                vec![0, 1, 3, 5, 2, 4]
            } else {
                vec![0, 3, 5, 1, 2, 4]
            };
            (six, perm, vec![b, c * bs * bs, h / bs, w / bs])
        } else {
            if c % (bs * bs) != 0 {
                return bad(format!(
                    "{c} channels are not a multiple of blocksize² {}",
                    bs * bs
                ));
            }
            let cc = c / (bs * bs);
            let (six, perm) = if crd {
                (vec![b, cc, bs, bs, h, w], vec![0, 1, 4, 2, 5, 3])
            } else {
                (vec![b, bs, bs, cc, h, w], vec![0, 3, 4, 1, 5, 2])
            };
            (six, perm, vec![b, cc, h * bs, w * bs])
        };
        let r = self.reshape(x, six)?;
        let t = self.add1(Op::Transpose { perm }, &[r])?;
        Ok(vec![self.reshape(t, out)?])
    }

    /// EyeLike: a constant of the input's 2-D shape, ones on diagonal `k`.
    pub(super) fn eye_like(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let d = self.shape(x);
        if d.len() != 2 {
            return bad(format!("input of rank {} (2 expected)", d.len()));
        }
        let dt = if self.attr("dtype").is_some() {
            super::dtype_of(self.ai("dtype", 1) as i32).map_err(super::Fail::Unsupported)?
        } else {
            self.g.dtype(x)
        };
        let k = self.ai("k", 0);
        if d[0].saturating_mul(d[1]) > 1 << 26 {
            return unsup(format!("EyeLike of {}x{} (a constant)", d[0], d[1]));
        }
        let mut v = vec![0.0; d[0] * d[1]];
        for i in 0..d[0] {
            let j = i as i64 + k;
            if (0..d[1] as i64).contains(&j) {
                v[i * d[1] + j as usize] = 1.0;
            }
        }
        Ok(vec![self.konst(Tensor::from_f64(dt, d, &v))?])
    }

    /// Compress with a condition known at import: a Gather of the kept positions (of the
    /// flattened input without `axis`).
    pub(super) fn compress(&mut self) -> R<Vec<ValueId>> {
        let mut x = self.inp(0)?;
        let cond = self.const_in(1)?.to_f64_vec();
        let axis = match self.attr("axis") {
            Some(_) => self.axis_in(self.ai("axis", 0), self.shape(x).len())?,
            None => {
                let n = self.g.shape(x).numel();
                x = self.reshape(x, vec![n])?;
                0
            }
        };
        let len = self.shape(x)[axis];
        if cond.len() > len {
            return bad(format!(
                "a condition of {} for an axis of {len}",
                cond.len()
            ));
        }
        let keep: Vec<f64> = cond
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != 0.0)
            .map(|(i, _)| i as f64)
            .collect();
        let idx = self.konst(Tensor::from_f64(DType::I64, [keep.len()], &keep))?;
        Ok(vec![self.add1(Op::Gather { axis }, &[x, idx])?])
    }

    /// CenterCropPad: per listed axis, a centred slice (crop) or zero padding (pad); the odd
    /// unit goes to the end as ONNX's reference puts it.
    pub(super) fn center_crop_pad(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let want = self.const_ints(1)?;
        let axes: Vec<usize> = match self.ais("axes") {
            Some(a) => a.iter().map(|&a| self.axis_in(a, rank)).collect::<R<_>>()?,
            None => (0..rank).collect(),
        };
        if want.len() != axes.len() || want.iter().any(|&w| w < 0) {
            return bad(format!("shape {want:?} for axes {axes:?}"));
        }
        let mut slice: Vec<SliceAxis> = dims.iter().map(|&d| SliceAxis::full(d)).collect();
        let mut pads = vec![[0usize; 2]; rank];
        for (&a, &w) in axes.iter().zip(&want) {
            let (d, w) = (dims[a], w as usize);
            if w < d {
                slice[a] = SliceAxis {
                    start: ((d - w) / 2) as i64,
                    step: 1,
                    len: w,
                };
            } else if w > d {
                let lo = (w - d) / 2;
                pads[a] = [lo, w - d - lo];
            }
        }
        let y = self.add1(Op::Slice { axes: slice }, &[x])?;
        Ok(vec![self.add1(
            Op::Pad {
                pads,
                mode: PadMode::Constant(0.0),
            },
            &[y],
        )?])
    }

    /// Dropout at inference, or in training mode with a ratio of 0: the input, and a mask of
    /// all true.
    pub(super) fn dropout(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let training =
            (self.has(2) && self.const_ints(2)? != [0]) || self.ai("training_mode", 0) != 0;
        if training {
            let ratio = if self.has(1) {
                self.const_in(1)?.to_f64_vec()
            } else {
                vec![0.5]
            };
            if ratio != [0.0] {
                return unsup("training mode with a ratio above 0 (random)");
            }
        }
        let mut outs = vec![x];
        if self.n_outputs > 1 {
            outs.push(self.all_bool_like(x, true)?);
        }
        Ok(outs)
    }
}
