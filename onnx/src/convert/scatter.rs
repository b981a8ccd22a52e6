//! Data-dependent indexing as compositions of device ops, with indices known only at run time:
//! ScatterElements, Scatter and ScatterND (every reduction) flatten their targets to rows and
//! run [`Op::ScatterRows`] (up to [`MAX_SCATTER_UPDATES`] update rows; past that they compare
//! each target row with each update's row, a one-hot `[rows, updates]` mask), TensorScatter
//! gathers the update at each cache position, and TopK over a short axis ranks each element
//! against its axis (`L x L` comparisons) and gathers the elements ranked `0..k` (a long axis
//! goes to the bitonic network of `topk.rs`). The one-hot masks grow with the product of the sizes, so each is refused past
//! [`MAX_MASK_ELEMENTS`] with a message naming the sizes.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("ScatterElements", Tensors(|c| c.scatter_elements())),
    ("Scatter", Tensors(|c| c.scatter_elements())),
    ("ScatterND", Tensors(|c| c.scatter_nd())),
    ("TensorScatter", Tensors(|c| c.tensor_scatter())),
    ("TopK", Tensors(|c| c.top_k())),
    ("MaxUnpool", Tensors(|c| c.max_unpool())),
];

/// The most elements a one-hot or rank mask may hold.
pub const MAX_MASK_ELEMENTS: usize = 1 << 24;

/// The most update rows a scatter runs on [`Op::ScatterRows`], whose kernel scans every
/// target per element (two loop ends a target by `sfumato_shaders::loops`' count: under
/// llvmpipe's budget of 65,535); more go to the one-hot mask.
pub const MAX_SCATTER_UPDATES: usize = 16_384;

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Importer<'_> {
    fn reduction(&self) -> R<Reduction> {
        Ok(match self.astr("reduction", "none").as_str() {
            "none" => Reduction::None,
            "add" => Reduction::Add,
            "mul" => Reduction::Mul,
            "max" => Reduction::Max,
            "min" => Reduction::Min,
            r => return bad(format!("reduction '{r}'")),
        })
    }

    /// The lowest (`low`) or highest value of `dt`, the identity of max (min).
    fn extreme(&mut self, dt: DType, low: bool) -> R<ValueId> {
        let v = if dt.is_float() {
            if low {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        } else {
            let (lo, hi) = match dt {
                DType::U8 | DType::U16 | DType::U32 | DType::U64 | DType::U4 | DType::U2 => {
                    (0.0, 2f64.powi(dt.bits() as i32) - 1.0)
                }
                _ => {
                    let h = 2f64.powi(dt.bits() as i32 - 1);
                    (-h, h - 1.0)
                }
            };
            if low {
                lo
            } else {
                hi
            }
        };
        self.scalar(dt, v)
    }

    /// Rows `data [N, S]` with update rows `upd [U, S]` written at rows `target [U]` (i64,
    /// in range), combined by `red`.
    fn scatter_rows(
        &mut self,
        data: ValueId,
        upd: ValueId,
        target: ValueId,
        red: Reduction,
    ) -> R<ValueId> {
        let (dd, ud) = (self.shape(data), self.shape(upd));
        let (n, s, u) = (dd[0], dd[1], ud[0]);
        if u <= MAX_SCATTER_UPDATES {
            let reduction = match red {
                Reduction::None => ScatterReduction::None,
                Reduction::Add => ScatterReduction::Add,
                Reduction::Mul => ScatterReduction::Mul,
                Reduction::Max => ScatterReduction::Max,
                Reduction::Min => ScatterReduction::Min,
            };
            return self.add1(Op::ScatterRows { reduction }, &[data, upd, target]);
        }
        let cells = n.saturating_mul(u).saturating_mul(s);
        if cells > MAX_MASK_ELEMENTS {
            return unsup(format!(
                "a scatter of {u} updates of {s} elements into {n} rows ({cells} mask elements, at most {MAX_MASK_ELEMENTS})"
            ));
        }
        let dt = self.g.dtype(data);
        let rows = self.iota(DType::I64, n, 0, 2)?; // [N, 1]
        let t = self.reshape(target, vec![1, u])?;
        let e = self.bin(BinaryOp::Eq, rows, t)?; // [N, U]
        let e3 = self.reshape(e, vec![n, u, 1])?;
        let u3 = self.reshape(upd, vec![1, u, s])?;
        let over_u = |s: &mut Self, op, v| {
            s.add1(
                Op::Reduce {
                    op,
                    axes: vec![1],
                    keepdim: false,
                },
                &[v],
            )
        };
        let ident = match red {
            Reduction::None | Reduction::Add => self.scalar(dt, 0.0)?,
            Reduction::Mul => self.scalar(dt, 1.0)?,
            Reduction::Max => self.extreme(dt, true)?,
            Reduction::Min => self.extreme(dt, false)?,
        };
        let picked = self.add1(Op::Where, &[e3, u3, ident])?; // [N, U, S]
        let rop = match red {
            Reduction::None | Reduction::Add => ReduceOp::Sum,
            Reduction::Mul => ReduceOp::Prod,
            Reduction::Max => ReduceOp::Max,
            Reduction::Min => ReduceOp::Min,
        };
        let combined = over_u(self, rop, picked)?; // [N, S]
        Ok(match red {
            Reduction::None => {
                let hits = self.cast(e, DType::I32)?;
                let hits = over_u(self, ReduceOp::Max, hits)?;
                let zero = self.scalar(DType::I32, 0.0)?;
                let hit = self.bin(BinaryOp::Gt, hits, zero)?;
                let hit = self.reshape(hit, vec![n, 1])?;
                self.add1(Op::Where, &[hit, combined, data])?
            }
            Reduction::Add => self.bin(BinaryOp::Add, data, combined)?,
            Reduction::Mul => self.bin(BinaryOp::Mul, data, combined)?,
            Reduction::Max => self.bin(BinaryOp::Max, data, combined)?,
            Reduction::Min => self.bin(BinaryOp::Min, data, combined)?,
        })
    }

    /// Indices as i64 with negative ones counted from the end of `dim`.
    fn wrapped_index(&mut self, idx: ValueId, dim: ValueId) -> R<ValueId> {
        let ix = self.cast(idx, DType::I64)?;
        let zero = self.scalar(DType::I64, 0.0)?;
        let neg = self.bin(BinaryOp::Lt, ix, zero)?;
        let up = self.bin(BinaryOp::Add, ix, dim)?;
        self.add1(Op::Where, &[neg, up, ix])
    }

    /// `ScatterElements` (and the older `Scatter`): each update element lands where its own
    /// coordinates say, but for `axis`, which its index gives.
    fn scatter_elements(&mut self) -> R<Vec<ValueId>> {
        let (data, idx, upd) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let (dd, id, ud) = (self.shape(data), self.shape(idx), self.shape(upd));
        let rank = dd.len();
        if id != ud || id.len() != rank || id.iter().zip(&dd).any(|(i, d)| i > d) {
            return bad(format!(
                "indices {id:?} and updates {ud:?} must match and fit data {dd:?}"
            ));
        }
        let axis = self.axis_in(self.ai("axis", 0), rank)?;
        let red = if self.op == "Scatter" {
            Reduction::None
        } else {
            self.reduction()?
        };
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dd[d + 1];
        }
        // Each update's flat target without its axis coordinate, known from the shapes.
        let u: usize = id.iter().product();
        let base: Vec<f64> = (0..u)
            .map(|p| {
                let c = sfumato_core::interp::unravel(p, &id);
                c.iter()
                    .zip(&strides)
                    .enumerate()
                    .filter(|&(d, _)| d != axis)
                    .map(|(_, (c, s))| (c * s) as f64)
                    .sum()
            })
            .collect();
        let base = self.konst(Tensor::from_f64(DType::I64, id.clone(), &base))?;
        let dim = self.scalar(DType::I64, dd[axis] as f64)?;
        let ix = self.wrapped_index(idx, dim)?;
        let st = self.scalar(DType::I64, strides[axis] as f64)?;
        let along = self.bin(BinaryOp::Mul, ix, st)?;
        let target = self.bin(BinaryOp::Add, along, base)?;
        let target = self.reshape(target, vec![u])?;
        let n: usize = dd.iter().product();
        let d2 = self.reshape(data, vec![n, 1])?;
        let u2 = self.reshape(upd, vec![u, 1])?;
        let out = self.scatter_rows(d2, u2, target, red)?;
        Ok(vec![self.reshape(out, dd)?])
    }

    /// `ScatterND`: each index tuple names a slice of data, which its update replaces (or
    /// combines with).
    fn scatter_nd(&mut self) -> R<Vec<ValueId>> {
        let (data, idx, upd) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let (dd, id) = (self.shape(data), self.shape(idx));
        let q = id.len();
        let k = *id.last().unwrap_or(&0);
        if q == 0 || k == 0 || k > dd.len() {
            return bad(format!("indices {id:?} do not index data {dd:?}"));
        }
        let red = self.reduction()?;
        let mut want = id[..q - 1].to_vec();
        want.extend(&dd[k..]);
        if self.shape(upd) != want {
            return bad(format!(
                "updates {} must be {want:?} for indices {id:?} and data {dd:?}",
                self.g.shape(upd)
            ));
        }
        let lim: Vec<f64> = dd[..k].iter().map(|&d| d as f64).collect();
        let lim = self.konst(Tensor::from_f64(DType::I64, [k], &lim))?;
        let ix = self.wrapped_index(idx, lim)?;
        let mut strides = vec![1.0; k];
        for j in (0..k - 1).rev() {
            strides[j] = strides[j + 1] * dd[j + 1] as f64;
        }
        let st = self.konst(Tensor::from_f64(DType::I64, [k], &strides))?;
        let w = self.bin(BinaryOp::Mul, ix, st)?;
        let target = self.sum_over(w, vec![q - 1], false)?;
        let u: usize = id[..q - 1].iter().product();
        let target = self.reshape(target, vec![u])?;
        let (n, s) = (
            dd[..k].iter().product::<usize>(),
            dd[k..].iter().product::<usize>(),
        );
        let d2 = self.reshape(data, vec![n, s])?;
        let u2 = self.reshape(upd, vec![u, s])?;
        let out = self.scatter_rows(d2, u2, target, red)?;
        Ok(vec![self.reshape(out, dd)?])
    }

    /// `TensorScatter` (opset 24): each batch row's update written into the cache from its
    /// write index along `axis` (wrapping round with `mode = circular`), as a gather of the
    /// update at every cache position.
    fn tensor_scatter(&mut self) -> R<Vec<ValueId>> {
        let (past, upd) = (self.inp(0)?, self.inp(1)?);
        let (pd, ud) = (self.shape(past), self.shape(upd));
        let rank = pd.len();
        if rank < 2 || ud.len() != rank {
            return bad(format!(
                "past_cache {pd:?} and update {ud:?} must share a rank >= 2"
            ));
        }
        let axis = self.axis_in(self.ai("axis", -2), rank)?;
        if axis == 0 || (0..rank).any(|d| d != axis && pd[d] != ud[d]) || ud[axis] > pd[axis] {
            return bad(format!(
                "update {ud:?} does not fit past_cache {pd:?} along axis {axis}"
            ));
        }
        let circular = match self.astr("mode", "linear").as_str() {
            "linear" => false,
            "circular" => true,
            m => return bad(format!("mode '{m}'")),
        };
        let (b, max, len) = (pd[0], pd[axis], ud[axis]);
        let mut wd = vec![1; rank];
        wd[0] = b;
        let w = if self.has(2) {
            let w = self.inp(2)?;
            let w = self.cast(w, DType::I64)?;
            self.reshape(w, wd)?
        } else {
            self.konst(Tensor::from_f64(DType::I64, wd, &vec![0.0; b]))?
        };
        // Where each cache position reads the update from.
        let pos = self.iota(DType::I64, max, axis, rank)?;
        let mut off = self.bin(BinaryOp::Sub, pos, w)?;
        if circular {
            let zero = self.scalar(DType::I64, 0.0)?;
            let m = self.scalar(DType::I64, max as f64)?;
            let neg = self.bin(BinaryOp::Lt, off, zero)?;
            let up = self.bin(BinaryOp::Add, off, m)?;
            off = self.add1(Op::Where, &[neg, up, off])?;
        }
        let zero = self.scalar(DType::I64, 0.0)?;
        let l = self.scalar(DType::I64, len as f64)?;
        let ge = self.bin(BinaryOp::Ge, off, zero)?;
        let lt = self.bin(BinaryOp::Lt, off, l)?;
        let no = self.konst(Tensor::from_bool(
            sfumato_core::Shape::scalar(),
            vec![false],
        )?)?;
        let valid = self.add1(Op::Where, &[ge, lt, no])?;
        if len == 0 {
            return Ok(vec![past]);
        }
        let src = self.un(
            UnaryOp::Clip {
                min: 0.0,
                max: (len - 1) as f32,
            },
            off,
        )?;
        let mut full = pd.clone();
        full[axis] = max;
        let src = self.broadcast_to(src, &full)?;
        let valid = self.broadcast_to(valid, &full)?;
        // GatherElements reads the update at src along the axis; its other dims equal the
        // cache's.
        let got = self.add1(Op::GatherElements { axis }, &[upd, src])?;
        self.add(Op::Where, &[valid, got, past])
    }

    /// `MaxUnpool`: zeros of the output shape (`output_shape`, else from the kernel, strides
    /// and pads) with each input value scattered to the flat output position its index gives.
    fn max_unpool(&mut self) -> R<Vec<ValueId>> {
        let (x, idx) = (self.inp(0)?, self.inp(1)?);
        let xd = self.shape(x);
        if xd.len() < 3 || self.shape(idx) != xd {
            return bad(format!(
                "input {xd:?} and indices {} must match, [N, C, ...]",
                self.g.shape(idx)
            ));
        }
        let nd = xd.len() - 2;
        // The unpooled shape the kernel, strides and pads give: the indices count in it.
        let ks = self.ais("kernel_shape").unwrap_or_default();
        if ks.len() != nd {
            return bad(format!("kernel_shape {ks:?} for {nd} spatial dims"));
        }
        let st = self.ais("strides").unwrap_or(vec![1; nd]);
        let pads = self.ais("pads").unwrap_or(vec![0; 2 * nd]);
        if st.len() != nd || pads.len() != 2 * nd {
            return bad(format!(
                "strides {st:?} and pads {pads:?} for {nd} spatial dims"
            ));
        }
        let mut natural = xd[..2].to_vec();
        for i in 0..nd {
            let v = (xd[2 + i] as i64 - 1) * st[i] + ks[i] - pads[i] - pads[i + nd];
            if v < 0 {
                return bad(format!("output dim {v}"));
            }
            natural.push(v as usize);
        }
        // An output_shape larger than it keeps each value's coordinates.
        let out: Vec<usize> = if self.has(2) {
            let o = self.const_ints(2)?;
            if o.len() != xd.len() || o.iter().any(|&d| d < 0) {
                return bad(format!("output_shape {o:?}"));
            }
            o.iter().map(|&d| d as usize).collect()
        } else {
            natural.clone()
        };
        if out[..2] != xd[..2] {
            return bad(format!("output_shape {out:?} for input {xd:?}"));
        }
        let dt = self.g.dtype(x);
        let p: usize = out.iter().product();
        let u: usize = xd.iter().product();
        let zeros = self.konst(Tensor::from_f64(dt, [p, 1], &vec![0.0; p]))?;
        let mut t = self.cast(idx, DType::I64)?;
        if natural != out {
            // Each coordinate of the flat index in the natural shape, re-laid in the output's.
            let (mut ns, mut os) = (1usize, 1usize);
            let mut acc: Option<ValueId> = None;
            for k in (0..out.len()).rev() {
                let nsc = self.scalar(DType::I64, ns as f64)?;
                let q = self.bin(BinaryOp::Div, t, nsc)?;
                let dk = self.scalar(DType::I64, natural[k] as f64)?;
                let qd = self.bin(BinaryOp::Div, q, dk)?;
                let qdk = self.bin(BinaryOp::Mul, qd, dk)?;
                let c = self.bin(BinaryOp::Sub, q, qdk)?;
                let osc = self.scalar(DType::I64, os as f64)?;
                let part = self.bin(BinaryOp::Mul, c, osc)?;
                acc = Some(match acc {
                    Some(a) => self.bin(BinaryOp::Add, a, part)?,
                    None => part,
                });
                ns *= natural[k];
                os *= out[k];
            }
            t = acc.unwrap_or(t);
        }
        let t = self.reshape(t, vec![u])?;
        let xv = self.reshape(x, vec![u, 1])?;
        let y = self.scatter_rows(zeros, xv, t, Reduction::None)?;
        Ok(vec![self.reshape(y, out)?])
    }

    /// `TopK`: each element's rank along the axis (how many elements beat it, ties to the
    /// lower index), then output `r` is the element ranked `r`.
    fn top_k(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let axis = self.axis_in(self.ai("axis", -1), rank)?;
        let k = match self.const_ints(1)?.as_slice() {
            [k] if *k >= 0 && (*k as usize) <= dims[axis] => *k as usize,
            other => return bad(format!("k {other:?} for an axis of {}", dims[axis])),
        };
        let largest = self.ai("largest", 1) != 0;
        let l = dims[axis];
        let rows: usize = dims.iter().product::<usize>() / l.max(1);
        let cells = rows.saturating_mul(l).saturating_mul(l.max(k));
        // The axis last: [rows, L].
        let mut perm: Vec<usize> = (0..rank).filter(|&d| d != axis).collect();
        perm.push(axis);
        let xt = self.add1(Op::Transpose { perm: perm.clone() }, &[x])?;
        let x2 = self.reshape(xt, vec![rows, l])?;
        let (vals, idx) = if l <= super::topk::RANK_TOPK_MAX_LEN && cells <= MAX_MASK_ELEMENTS {
            self.top_k_rank(x2, rows, l, k, largest)?
        } else {
            self.top_k_bitonic(x2, rows, l, k, largest)?
        };
        // Back to x's layout with K along the axis.
        let mut moved: Vec<usize> = perm.iter().map(|&d| dims[d]).collect();
        moved[rank - 1] = k;
        let mut inv = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let mut outs = Vec::new();
        for v in [vals, idx] {
            let v = self.reshape(v, moved.clone())?;
            outs.push(self.add1(Op::Transpose { perm: inv.clone() }, &[v])?);
        }
        Ok(outs)
    }

    /// TopK of short rows (`[rows, l]`): each element's rank is the count of those that beat
    /// it (one `[rows, L, L]` mask), and the element of rank `r` goes to place `r`.
    fn top_k_rank(
        &mut self,
        x2: ValueId,
        rows: usize,
        l: usize,
        k: usize,
        largest: bool,
    ) -> R<(ValueId, ValueId)> {
        let xi = self.reshape(x2, vec![rows, l, 1])?;
        let xj = self.reshape(x2, vec![rows, 1, l])?;
        let (better, tie) = self.beats_or_ties(xj, xi, largest)?;
        let before: Vec<bool> = (0..l * l).map(|p| p % l < p / l).collect();
        let before = self.konst(Tensor::from_bool([1, l, l], before)?)?;
        let no = self.konst(Tensor::from_bool(
            sfumato_core::Shape::scalar(),
            vec![false],
        )?)?;
        let tie_before = self.add1(Op::Where, &[tie, before, no])?;
        let yes = self.konst(Tensor::from_bool(
            sfumato_core::Shape::scalar(),
            vec![true],
        )?)?;
        let beats = self.add1(Op::Where, &[better, yes, tie_before])?; // [rows, L(i), L(j)]
        let beats = self.cast(beats, DType::I32)?;
        let rank_of = self.sum_over(beats, vec![2], false)?; // [rows, L]
        let r3 = self.reshape(rank_of, vec![rows, l, 1])?;
        let slots = self.iota(DType::I32, k, 2, 3)?; // [1, 1, K]
        let at = self.bin(BinaryOp::Eq, r3, slots)?; // [rows, L, K]
        let pos = self.iota(DType::I64, l, 1, 3)?; // [1, L, 1]
        let zi = self.scalar(DType::I64, 0.0)?;
        let idx = self.add1(Op::Where, &[at, pos, zi])?;
        let idx = self.sum_over(idx, vec![1], false)?; // [rows, K]
        let vals = self.add1(Op::GatherElements { axis: 1 }, &[x2, idx])?;
        Ok((vals, idx))
    }
}
