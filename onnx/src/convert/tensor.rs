//! Shapes and layout: Reshape, Flatten, (Un)Squeeze, Transpose, Concat, Split, Slice, Gather,
//! GatherND, Expand, Tile, Pad, Trilu, OneHot, SpaceToDepth, DepthToSpace, EyeLike, Compress, CenterCropPad, and
//! the ops evaluated at import (Shape, Size, ConstantOfShape, Range, Constant).

use super::Converter::{self, Tensors};
use super::{bad, reshape_dims, unsup, Fail, Importer, R};
use crate::proto::attr_type;
use crate::tensor::{checked_dims, from_proto, MAX_ELEMENTS};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Shape, Tensor, TensorData, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("OneHot", Tensors(|c| c.one_hot())),
    ("SpaceToDepth", Tensors(|c| c.space_depth(true))),
    ("DepthToSpace", Tensors(|c| c.space_depth(false))),
    ("EyeLike", Tensors(|c| c.eye_like())),
    ("Compress", Tensors(|c| c.compress())),
    ("CenterCropPad", Tensors(|c| c.center_crop_pad())),
    ("Reshape", Tensors(|c| c.reshape_op())),
    ("Flatten", Tensors(|c| c.flatten())),
    ("Squeeze", Tensors(|c| c.squeeze())),
    ("Unsqueeze", Tensors(|c| c.unsqueeze())),
    ("Transpose", Tensors(|c| c.transpose())),
    ("Concat", Tensors(|c| c.concat())),
    ("Split", Tensors(|c| c.split())),
    ("Slice", Tensors(|c| c.slice())),
    ("Gather", Tensors(|c| c.gather())),
    ("GatherElements", Tensors(|c| c.gather_elements())),
    ("Expand", Tensors(|c| c.expand())),
    ("Tile", Tensors(|c| c.tile())),
    ("ReverseSequence", Tensors(|c| c.reverse_sequence())),
    ("GatherND", Tensors(|c| c.gather_nd())),
    ("Pad", Tensors(|c| c.pad())),
    ("Trilu", Tensors(|c| c.trilu())),
    ("Shape", Tensors(|c| c.shape_op())),
    ("Size", Tensors(|c| c.size())),
    ("ConstantOfShape", Tensors(|c| c.constant_of_shape())),
    ("Range", Tensors(|c| c.range())),
    ("Constant", Tensors(|c| c.constant())),
];

impl Importer<'_> {
    /// `Reshape`.
    fn reshape_op(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let want = if opset < 5 {
            self.ais("shape").unwrap_or_default()
        } else {
            self.const_ints(1)?
        };
        let dims =
            reshape_dims(&self.shape(x), &want, self.ai("allowzero", 0) != 0).map_err(Fail::Bad)?;
        Ok(vec![self.reshape(x, dims)?])
    }

    /// `Flatten`.
    fn flatten(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let r = dims.len() as i64;
        let a = self.ai("axis", 1);
        if a < -r || a > r {
            return bad(format!("axis {a} is out of range for rank {r}"));
        }
        let a = if a < 0 { (a + r) as usize } else { a as usize };
        let outer = dims[..a].iter().product();
        let inner = dims[a..].iter().product();
        Ok(vec![self.reshape(x, vec![outer, inner])?])
    }

    /// `Squeeze`.
    fn squeeze(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let axes = if opset < 13 {
            self.ais("axes")
        } else if self.has(1) {
            Some(self.const_ints(1)?)
        } else {
            None
        };
        let drop: Vec<usize> = match axes {
            Some(a) => self.axes(&a, dims.len())?,
            None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        };
        if let Some(&d) = drop.iter().find(|&&d| dims[d] != 1) {
            return bad(format!("cannot squeeze axis {d} of size {}", dims[d]));
        }
        let out = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, &d)| d)
            .collect();
        Ok(vec![self.reshape(x, out)?])
    }

    /// `Unsqueeze`.
    fn unsqueeze(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let axes = if opset < 13 {
            self.ais("axes").unwrap_or_default()
        } else {
            self.const_ints(1)?
        };
        let rank = dims.len() + axes.len();
        let axes = self.axes(&axes, rank)?;
        let mut it = dims.iter();
        let out = (0..rank)
            .map(|i| {
                if axes.contains(&i) {
                    1
                } else {
                    *it.next().unwrap_or(&1)
                }
            })
            .collect();
        Ok(vec![self.reshape(x, out)?])
    }

    /// `Transpose`.
    fn transpose(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let rank = self.g.shape(x).rank();
        let perm = match self.ais("perm") {
            Some(p) => p
                .iter()
                .map(|&a| self.axis(a, rank))
                .collect::<R<Vec<_>>>()?,
            None => (0..rank).rev().collect(),
        };
        self.add(Op::Transpose { perm }, &[x])
    }

    /// `Concat`.
    fn concat(&mut self) -> R<Vec<ValueId>> {
        let ins: Vec<ValueId> = (0..self.ins.len())
            .filter(|&i| self.has(i))
            .map(|i| self.inp(i))
            .collect::<R<_>>()?;
        let rank = ins.first().map_or(0, |&v| self.g.shape(v).rank());
        let axis = self.axis(self.ai("axis", 0), rank)?;
        self.add(Op::Concat { axis }, &ins)
    }

    /// `Split`.
    fn split(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let axis = self.axis(self.ai("axis", 0), dims.len())?;
        let sizes = if opset < 13 {
            self.ais("split")
        } else if self.has(1) {
            Some(self.const_ints(1)?)
        } else {
            None
        };
        let n_out = self.attr("num_outputs").map_or(0, |a| a.i.max(0) as usize);
        let sizes: Vec<usize> = match sizes {
            Some(s) if !s.is_empty() => {
                if s.iter().any(|&v| v < 0) {
                    return bad(format!("negative split size in {s:?}"));
                }
                s.iter().map(|&v| v as usize).collect()
            }
            _ => {
                let n = if n_out > 0 {
                    n_out
                } else {
                    self.outputs_count()
                };
                if n == 0 {
                    return bad("no outputs");
                }
                let d = dims[axis];
                let each = d.div_ceil(n);
                (0..n)
                    .map(|i| each.min(d.saturating_sub(i * each)))
                    .collect()
            }
        };
        self.add(Op::Split { axis, sizes }, &[x])
    }

    /// `Slice`.
    fn slice(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let (starts, ends, axes, steps) = if opset < 10 {
            (
                self.ais("starts").unwrap_or_default(),
                self.ais("ends").unwrap_or_default(),
                self.ais("axes"),
                None,
            )
        } else {
            let s = self.const_ints(1)?;
            let e = self.const_ints(2)?;
            let a = if self.has(3) {
                Some(self.const_ints(3)?)
            } else {
                None
            };
            let st = if self.has(4) {
                Some(self.const_ints(4)?)
            } else {
                None
            };
            (s, e, a, st)
        };
        if starts.len() != ends.len() {
            return bad("starts and ends differ in length");
        }
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if axes.len() != starts.len() || steps.len() != starts.len() {
            return bad("starts, ends, axes and steps differ in length");
        }
        let mut spec: Vec<SliceAxis> = dims.iter().map(|&d| SliceAxis::full(d)).collect();
        let mut seen = vec![false; dims.len()];
        for k in 0..starts.len() {
            let a = self.axis(axes[k], dims.len())?;
            if std::mem::replace(&mut seen[a], true) {
                return bad(format!("axis {a} sliced twice"));
            }
            spec[a] = SliceAxis::normalize(dims[a], starts[k], ends[k], steps[k])
                .ok_or_else(|| Fail::Bad("a step of 0".into()))?;
        }
        self.add(Op::Slice { axes: spec }, &[x])
    }

    /// `Gather`.
    fn gather(&mut self) -> R<Vec<ValueId>> {
        let (x, i) = (self.inp(0)?, self.inp(1)?);
        let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
        self.add(Op::Gather { axis }, &[x, i])
    }

    /// `GatherElements`.
    fn gather_elements(&mut self) -> R<Vec<ValueId>> {
        let (x, i) = (self.inp(0)?, self.inp(1)?);
        let axis = self.axis(self.ai("axis", 0), self.g.shape(x).rank())?;
        self.add(Op::GatherElements { axis }, &[x, i])
    }

    /// `Expand`.
    fn expand(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let want = self.const_ints(1)?;
        if want.iter().any(|&d| d < 0) {
            return bad(format!("negative dim in {want:?}"));
        }
        let want = Shape::new(want.iter().map(|&d| d as usize).collect::<Vec<_>>());
        let out = Shape::broadcast(self.g.shape(x), &want)
            .ok_or_else(|| Fail::Bad(format!("cannot expand {} to {want}", self.g.shape(x))))?;
        let n = out
            .checked_numel()
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| Fail::Bad(format!("shape {out} is too large")))?;
        let yes = self.konst(Tensor::new(out, TensorData::Bool(vec![true; n]))?)?;
        self.add(Op::Where, &[yes, x, x])
    }

    /// `x` broadcast to `dims` (same rank; each of x's dims is 1 or equal): a `Where` with a
    /// constant condition that holds the broadcast dims only.
    pub(super) fn broadcast_to(&mut self, x: ValueId, dims: &[usize]) -> R<ValueId> {
        let have = self.shape(x);
        if have == dims {
            return Ok(x);
        }
        let cond: Vec<usize> = have
            .iter()
            .zip(dims)
            .map(|(&h, &d)| if h == d { 1 } else { d })
            .collect();
        let n = cond
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| Fail::Bad(format!("shape {dims:?} is too large")))?;
        let yes = self.konst(Tensor::new(cond, TensorData::Bool(vec![true; n]))?)?;
        self.add1(Op::Where, &[yes, x, x])
    }

    /// `Tile`: each dim `d` repeated `r` times is `[1, d]` broadcast to `[r, d]`, then merged.
    fn tile(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let reps = self.const_ints(1)?;
        let dims = self.shape(x);
        if reps.len() != dims.len() || reps.iter().any(|&r| r < 0) {
            return bad(format!(
                "repeats {reps:?} must be {} non-negative integers",
                dims.len()
            ));
        }
        let (mut split, mut wide, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for (&d, &r) in dims.iter().zip(&reps) {
            split.extend([1, d]);
            wide.extend([r as usize, d]);
            out.push(r as usize * d);
        }
        if reps.iter().all(|&r| r == 1) {
            return Ok(vec![x]);
        }
        let xs = self.reshape(x, split)?;
        let b = self.broadcast_to(xs, &wide)?;
        Ok(vec![self.reshape(b, out)?])
    }

    /// `ReverseSequence`: each batch row's first `len` steps along the time axis reversed,
    /// the rest kept, as a gather along time with indices computed on the device.
    fn reverse_sequence(&mut self) -> R<Vec<ValueId>> {
        let (x, lens) = (self.inp(0)?, self.inp(1)?);
        let dims = self.shape(x);
        let rank = dims.len();
        let (ta, ba) = (self.ai("time_axis", 0), self.ai("batch_axis", 1));
        let (ta, ba) = (self.axis_in(ta, rank)?, self.axis_in(ba, rank)?);
        if rank < 2 || ta == ba || self.g.shape(lens).dims() != [dims[ba]] {
            return bad(format!(
                "input {dims:?}, time axis {ta}, batch axis {ba} and sequence_lens {}",
                self.g.shape(lens)
            ));
        }
        let t = self.iota(DType::I64, dims[ta], ta, rank)?;
        let l = self.cast(lens, DType::I64)?;
        let mut ld = vec![1; rank];
        ld[ba] = dims[ba];
        let l = self.reshape(l, ld)?;
        // Within the length: len - 1 - t; past it: t.
        let one = self.scalar(DType::I64, 1.0)?;
        let last = self.bin(BinaryOp::Sub, l, one)?;
        let rev = self.bin(BinaryOp::Sub, last, t)?;
        let inside = self.bin(BinaryOp::Lt, t, l)?;
        let src = self.add1(Op::Where, &[inside, rev, t])?;
        let src = self.broadcast_to(src, &dims)?;
        self.add(Op::GatherElements { axis: ta }, &[x, src])
    }

    /// `GatherND`: each index tuple becomes one flat row index (negative entries counted from
    /// the end, batch dims folded in), computed on the device, and a Gather of the rows.
    fn gather_nd(&mut self) -> R<Vec<ValueId>> {
        let (x, idx) = (self.inp(0)?, self.inp(1)?);
        let (dims, idims) = (self.shape(x), self.shape(idx));
        let b = self.ai("batch_dims", 0).max(0) as usize;
        let q = idims.len();
        let k = *idims.last().unwrap_or(&0);
        if q == 0 || b >= q || b + k > dims.len() || idims[..b] != dims[..b] {
            return bad(format!(
                "indices {idims:?} do not fit data {dims:?} with batch_dims {b}"
            ));
        }
        let ix = self.cast(idx, DType::I64)?;
        // Negative entries count from the end of their dim.
        let lim: Vec<f64> = dims[b..b + k].iter().map(|&d| d as f64).collect();
        let lim = self.konst(Tensor::from_f64(DType::I64, [k], &lim))?;
        let zero = self.scalar(DType::I64, 0.0)?;
        let neg = self.bin(BinaryOp::Lt, ix, zero)?;
        let wrapped = self.bin(BinaryOp::Add, ix, lim)?;
        let ix = self.add1(Op::Where, &[neg, wrapped, ix])?;
        // Row-major strides over the indexed dims, summed along the tuple.
        let mut strides = vec![1.0; k];
        for j in (0..k.saturating_sub(1)).rev() {
            strides[j] = strides[j + 1] * dims[b + j + 1] as f64;
        }
        let st = self.konst(Tensor::from_f64(DType::I64, [k], &strides))?;
        let weighted = self.bin(BinaryOp::Mul, ix, st)?;
        let mut flat = self.sum_over(weighted, vec![q - 1], false)?;
        let rows: usize = dims[b..b + k].iter().product();
        if b > 0 {
            // Each batch position's first row.
            let nb: usize = dims[..b].iter().product();
            let mut od = dims[..b].to_vec();
            od.extend(std::iter::repeat_n(1, q - 1 - b));
            let off: Vec<f64> = (0..nb).map(|i| (i * rows) as f64).collect();
            let off = self.konst(Tensor::from_f64(DType::I64, od, &off))?;
            flat = self.bin(BinaryOp::Add, flat, off)?;
        }
        let mut rdims = vec![dims[..b + k].iter().product::<usize>()];
        rdims.extend(&dims[b + k..]);
        let xr = self.reshape(x, rdims)?;
        self.add(Op::Gather { axis: 0 }, &[xr, flat])
    }

    /// `Shape`.
    fn shape_op(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims: Vec<i64> = self.shape(x).iter().map(|&d| d as i64).collect();
        let r = dims.len() as i64;
        let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
        let s = clamp(self.ai("start", 0));
        let e = clamp(self.ai("end", r));
        let v: Vec<i64> = if s < e {
            dims[s..e].to_vec()
        } else {
            Vec::new()
        };
        let n = v.len();
        Ok(vec![self.konst(Tensor::from_i64([n], v)?)?])
    }

    /// `Size`.
    fn size(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let n = self.g.shape(x).numel() as i64;
        Ok(vec![
            self.konst(Tensor::from_i64(Shape::scalar(), vec![n])?)?
        ])
    }

    /// `ConstantOfShape`.
    fn constant_of_shape(&mut self) -> R<Vec<ValueId>> {
        let dims = self.const_ints(0)?;
        let dims = checked_dims(&dims, "ConstantOfShape")?;
        let value = match self.attr("value").and_then(|a| a.t.as_ref()) {
            Some(t) => from_proto(t, None)?,
            None => Tensor::from_f32([1], vec![0.0])?,
        };
        if value.numel() != 1 {
            return bad("value must hold one element");
        }
        let n: usize = dims.iter().product();
        let x = value.to_f64_vec()[0];
        let t = Tensor::from_f64(value.dtype(), Shape::new(dims), &vec![x; n]);
        Ok(vec![self.konst(t)?])
    }

    /// `Range`.
    fn range(&mut self) -> R<Vec<ValueId>> {
        let (s, l, d) = (self.const_in(0)?, self.const_in(1)?, self.const_in(2)?);
        let dt = s.dtype();
        let (s, l, d) = (s.to_f64_vec(), l.to_f64_vec(), d.to_f64_vec());
        let (Some(&s), Some(&l), Some(&d)) = (s.first(), l.first(), d.first()) else {
            return bad("start, limit and delta must be scalars");
        };
        if d == 0.0 {
            return bad("delta is 0");
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > MAX_ELEMENTS as f64 {
            return bad(format!("{n} elements is too many"));
        }
        let n = n as usize;
        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
        Ok(vec![self.konst(Tensor::from_f64(dt, [n], &v))?])
    }

    /// `Constant`.
    fn constant(&mut self) -> R<Vec<ValueId>> {
        let a = self
            .attrs
            .first()
            .cloned()
            .ok_or_else(|| Fail::Bad("no value attribute".into()))?;
        let t = match (a.name.as_str(), a.r#type) {
            ("value", _) => from_proto(
                a.t.as_ref()
                    .ok_or_else(|| Fail::Bad("value has no tensor".into()))?,
                None,
            )?,
            ("value_float", _) => Tensor::from_f32(Shape::scalar(), vec![a.f])?,
            ("value_floats", _) => Tensor::from_f32([a.floats.len()], a.floats.clone())?,
            ("value_int", _) => Tensor::from_i64(Shape::scalar(), vec![a.i])?,
            ("value_ints", _) => Tensor::from_i64([a.ints.len()], a.ints.clone())?,
            (other, t)
                if t == attr_type::STRING
                    || t == attr_type::STRINGS
                    || other.starts_with("value_string") =>
            {
                return unsup("string constants")
            }
            (other, _) => return unsup(format!("Constant with attribute '{other}'")),
        };
        Ok(vec![self.konst(t)?])
    }

    fn pad(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let mode = self.astr("mode", "constant");
        let (pads, value, axes) = if self.opset < 11 {
            (
                self.ais("pads").unwrap_or_default(),
                self.af("value", 0.0) as f64,
                None,
            )
        } else {
            let p = self.const_ints(1)?;
            let v = if self.has(2) {
                self.const_in(2)?
                    .to_f64_vec()
                    .first()
                    .copied()
                    .unwrap_or(0.0)
            } else {
                0.0
            };
            let a = if self.has(3) {
                Some(self.const_ints(3)?)
            } else {
                None
            };
            (p, v, a)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&v| self.axis(v, rank)).collect::<R<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return bad(format!("{} pads for {} axes", pads.len(), axes.len()));
        }
        if pads.iter().any(|&p| p < 0) {
            return unsup("negative pads (cropping)");
        }
        let mut per = vec![[0usize; 2]; rank];
        for (k, &a) in axes.iter().enumerate() {
            per[a] = [pads[k] as usize, pads[k + axes.len()] as usize];
        }
        if mode == "wrap" {
            // Circular: output position i along an axis reads (i - before) mod d.
            let mut v = x;
            for (a, &[before, after]) in per.iter().enumerate() {
                if before == 0 && after == 0 {
                    continue;
                }
                let d = dims[a];
                if d == 0 {
                    return bad(format!("wrap padding of an empty axis {a}"));
                }
                let n = d + before + after;
                let idx: Vec<f64> = (0..n)
                    .map(|i| ((i as i64 - before as i64).rem_euclid(d as i64)) as f64)
                    .collect();
                let idx = self.konst(Tensor::from_f64(DType::I64, [n], &idx))?;
                v = self.add1(Op::Gather { axis: a }, &[v, idx])?;
            }
            return Ok(vec![v]);
        }
        let mode = match mode.as_str() {
            "constant" => PadMode::Constant(value as f32),
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => return unsup(format!("mode '{other}'")),
        };
        self.add(Op::Pad { pads: per, mode }, &[x])
    }

    /// `Trilu`: keep the elements on and above (upper) or below (lower) diagonal `k` of the
    /// last two dims, zero the rest.
    pub(super) fn trilu(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        if dims.len() < 2 {
            return bad(format!("Trilu needs rank >= 2, got {}", dims.len()));
        }
        let k = if self.has(1) {
            match self.const_ints(1)?.as_slice() {
                [k] => *k,
                other => return bad(format!("k must hold one value, got {other:?}")),
            }
        } else {
            0
        };
        let upper = self.ai("upper", 1) != 0;
        let (n, m) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let keep: Vec<bool> = (0..n * m)
            .map(|e| {
                let (i, j) = ((e / m) as i64, (e % m) as i64);
                if upper {
                    j - i >= k
                } else {
                    j - i <= k
                }
            })
            .collect();
        let keep = self.konst(Tensor::from_bool([n, m], keep)?)?;
        let zero = self.scalar(self.g.dtype(x), 0.0)?;
        self.add(Op::Where, &[keep, x, zero])
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
}
