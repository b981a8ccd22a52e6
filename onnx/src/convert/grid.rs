//! GridSample (2-D and volumetric; nearest, linear and cubic; zeros, border and reflection
//! padding) as device ops: each output point's taps gathered from the input and weighted; and
//! AffineGrid, the sampling grid of an affine map, as one matrix product.

use super::Converter::{self, Tensors};
use super::{bad, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("GridSample", Tensors(|c| c.grid_sample())),
    ("AffineGrid", Tensors(|c| c.affine_grid())),
];

/// GridSample's interpolation.
#[derive(Clone, Copy, PartialEq)]
enum GridMode {
    Nearest,
    Linear,
    Cubic,
}

/// GridSample's padding.
#[derive(Clone, Copy, PartialEq)]
enum GridPad {
    Zeros,
    Border,
    Reflection,
}

impl Importer<'_> {
    /// `v` reflected into `[lo, hi]` as ONNX's GridSample reflects: by the nearer border,
    /// folding back and forth.
    fn reflect_into(&mut self, v: ValueId, lo: f64, hi: f64) -> R<ValueId> {
        let f = |s: &mut Self, x: f64| s.scalar(DType::F32, x);
        let (lo_c, hi_c, rng) = (f(self, lo)?, f(self, hi)?, f(self, hi - lo)?);
        let below = self.bin(BinaryOp::Lt, v, lo_c)?;
        let above = self.bin(BinaryOp::Gt, v, hi_c)?;
        // The distance past the nearer border, as whole spans n and a remainder r.
        let d_lo = self.bin(BinaryOp::Sub, lo_c, v)?;
        let d_hi = self.bin(BinaryOp::Sub, v, hi_c)?;
        let d = self.add1(Op::Where, &[below, d_lo, d_hi])?;
        let q = self.bin(BinaryOp::Div, d, rng)?;
        let n = self.un(UnaryOp::Floor, q)?;
        let nr = self.bin(BinaryOp::Mul, n, rng)?;
        let r = self.bin(BinaryOp::Sub, d, nr)?;
        let half = f(self, 0.5)?;
        let nh = self.bin(BinaryOp::Mul, n, half)?;
        let nhf = self.un(UnaryOp::Floor, nh)?;
        let even = self.bin(BinaryOp::Eq, nh, nhf)?;
        let lo_r = self.bin(BinaryOp::Add, lo_c, r)?;
        let hi_r = self.bin(BinaryOp::Sub, hi_c, r)?;
        // Below: even n gives lo + r, odd hi - r; above: even hi - r, odd lo + r.
        let from_below = self.add1(Op::Where, &[even, lo_r, hi_r])?;
        let from_above = self.add1(Op::Where, &[even, hi_r, lo_r])?;
        let out = self.add1(Op::Where, &[above, from_above, v])?;
        self.add1(Op::Where, &[below, from_below, out])
    }

    /// `GridSample` (2-D and volumetric): each output point's coordinates from the grid,
    /// padded as `padding_mode` says, and its 1, 2^n or 4^n taps (nearest, linear, cubic)
    /// gathered from the input and weighted.
    fn grid_sample(&mut self) -> R<Vec<ValueId>> {
        let (x, grid) = (self.inp(0)?, self.inp(1)?);
        let (xd, gd) = (self.shape(x), self.shape(grid));
        let nd = xd.len().saturating_sub(2);
        if nd == 0 || gd.len() != nd + 2 || gd[0] != xd[0] || gd[nd + 1] != nd {
            return bad(format!(
                "input {xd:?} and grid {gd:?} (want [N, C, ...] and [N, ..., {nd}])"
            ));
        }
        let mode = match self.astr("mode", "linear").as_str() {
            "nearest" => GridMode::Nearest,
            "linear" | "bilinear" => GridMode::Linear,
            "cubic" | "bicubic" => GridMode::Cubic,
            m => return bad(format!("mode '{m}'")),
        };
        let pad = match self.astr("padding_mode", "zeros").as_str() {
            "zeros" => GridPad::Zeros,
            "border" => GridPad::Border,
            "reflection" => GridPad::Reflection,
            m => return bad(format!("padding_mode '{m}'")),
        };
        let align = self.ai("align_corners", 0) != 0;
        let dt = self.g.dtype(x);
        let (n, c) = (xd[0], xd[1]);
        let sp = &xd[2..];
        let out_sp = gd[1..=nd].to_vec();
        let q: usize = out_sp.iter().product();
        let p: usize = sp.iter().product();
        let g = if self.g.dtype(grid) == DType::F32 {
            grid
        } else {
            self.cast(grid, DType::F32)?
        };
        let g = self.reshape(g, vec![n, q, nd])?;
        let f = |s: &mut Self, v: f64| s.scalar(DType::F32, v);
        // Per spatial dim: the taps' fetch indices (i64) and weights (f32), each [N, Q].
        let mut per_dim: Vec<Vec<(ValueId, ValueId)>> = Vec::with_capacity(nd);
        for (i, &d) in sp.iter().enumerate() {
            // The grid's last axis lists x (the last spatial dim) first.
            let comp = self.index_axis(g, 2, nd - 1 - i)?;
            let df = d as f64;
            // Unnormalized: align ? (g + 1) / 2 * (d - 1) : ((g + 1) * d - 1) / 2.
            let (a, b) = if align {
                ((df - 1.0) / 2.0, (df - 1.0) / 2.0)
            } else {
                (df / 2.0, (df - 1.0) / 2.0)
            };
            let (ac, bc) = (f(self, a)?, f(self, b)?);
            let ax = self.bin(BinaryOp::Mul, comp, ac)?;
            let mut xc = self.bin(BinaryOp::Add, ax, bc)?;
            if mode == GridMode::Nearest {
                xc = self.un(UnaryOp::Round, xc)?;
            }
            let (lo, hi) = if align {
                (0.0, df - 1.0)
            } else {
                (-0.5, df - 0.5)
            };
            match pad {
                GridPad::Border => {
                    let (loc, hic) = (f(self, lo)?, f(self, hi)?);
                    let below = self.bin(BinaryOp::Lt, xc, loc)?;
                    let above = self.bin(BinaryOp::Gt, xc, hic)?;
                    let cl = self.un(
                        UnaryOp::Clip {
                            min: 0.0,
                            max: (d - 1) as f32,
                        },
                        xc,
                    )?;
                    let t = self.add1(Op::Where, &[above, cl, xc])?;
                    xc = self.add1(Op::Where, &[below, cl, t])?;
                }
                GridPad::Reflection => xc = self.reflect_into(xc, lo, hi)?,
                GridPad::Zeros => {}
            }
            // Taps relative to floor(x) and their weights of the fraction t.
            let base = self.un(UnaryOp::Floor, xc)?;
            let t = self.bin(BinaryOp::Sub, xc, base)?;
            let taps: Vec<(i64, ValueId)> = match mode {
                // x is whole after rounding: t = 0 and the one tap weighs 1 - t = 1.
                GridMode::Nearest => {
                    let one = f(self, 1.0)?;
                    vec![(0, self.bin(BinaryOp::Sub, one, t)?)]
                }
                GridMode::Linear => {
                    let one = f(self, 1.0)?;
                    let w0 = self.bin(BinaryOp::Sub, one, t)?;
                    vec![(0, w0), (1, t)]
                }
                GridMode::Cubic => {
                    let mut v = Vec::new();
                    for (off, dist_of) in [(-1i64, 1.0), (0, 0.0), (1, -1.0), (2, -2.0)] {
                        // |t + dist| for the tap at floor + off: 1 + t, t, 1 - t, 2 - t.
                        let dc = f(self, dist_of)?;
                        let s = self.bin(BinaryOp::Add, t, dc)?;
                        let s = self.un(UnaryOp::Abs, s)?;
                        v.push((off, self.cubic_weight(s)?));
                    }
                    v
                }
            };
            let mut list = Vec::with_capacity(taps.len());
            for (off, w) in taps {
                let oc = f(self, off as f64)?;
                let idx = self.bin(BinaryOp::Add, base, oc)?;
                let (idx, w) = match pad {
                    GridPad::Zeros => {
                        let zero = f(self, 0.0)?;
                        let top = f(self, df)?;
                        let ge = self.bin(BinaryOp::Ge, idx, zero)?;
                        let lt = self.bin(BinaryOp::Lt, idx, top)?;
                        let zw = f(self, 0.0)?;
                        let w1 = self.add1(Op::Where, &[ge, w, zw])?;
                        (idx, self.add1(Op::Where, &[lt, w1, zw])?)
                    }
                    GridPad::Border => (idx, w),
                    GridPad::Reflection => {
                        let r = self.reflect_into(idx, lo, hi)?;
                        // The reflected index truncates toward zero.
                        let s = self.un(UnaryOp::Sign, r)?;
                        let m = self.un(UnaryOp::Abs, r)?;
                        let fl = self.un(UnaryOp::Floor, m)?;
                        (self.bin(BinaryOp::Mul, s, fl)?, w)
                    }
                };
                let idx = self.un(
                    UnaryOp::Clip {
                        min: 0.0,
                        max: (d - 1) as f32,
                    },
                    idx,
                )?;
                list.push((idx, w));
            }
            per_dim.push(list);
        }
        // Every combination of taps: the flat index into the spatial dims and the weight.
        let mut strides = vec![1usize; nd];
        for i in (0..nd.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * sp[i + 1];
        }
        let xr = self.reshape(x, vec![n, c, p])?;
        let xr = if dt == DType::F32 {
            xr
        } else {
            self.cast(xr, DType::F32)?
        };
        let mut combos: Vec<(Option<ValueId>, Option<ValueId>)> = vec![(None, None)];
        for (i, list) in per_dim.iter().enumerate() {
            let mut next = Vec::new();
            for &(fi, fw) in &combos {
                for &(idx, w) in list {
                    let sc = f(self, strides[i] as f64)?;
                    let part = self.bin(BinaryOp::Mul, idx, sc)?;
                    let fi = match fi {
                        Some(a) => self.bin(BinaryOp::Add, a, part)?,
                        None => part,
                    };
                    let fw = match fw {
                        Some(a) => self.bin(BinaryOp::Mul, a, w)?,
                        None => w,
                    };
                    next.push((Some(fi), Some(fw)));
                }
            }
            combos = next;
        }
        let mut acc: Option<ValueId> = None;
        for (fi, fw) in combos {
            let (Some(fi), Some(fw)) = (fi, fw) else {
                return bad("a grid sample without taps");
            };
            let ii = self.cast(fi, DType::I64)?;
            let ii = self.reshape(ii, vec![n, 1, q])?;
            let ii = self.broadcast_to(ii, &[n, c, q])?;
            let got = self.add1(Op::GatherElements { axis: 2 }, &[xr, ii])?;
            let w = self.reshape(fw, vec![n, 1, q])?;
            let term = self.bin(BinaryOp::Mul, got, w)?;
            acc = Some(match acc {
                Some(a) => self.bin(BinaryOp::Add, a, term)?,
                None => term,
            });
        }
        let Some(y) = acc else {
            return bad("a grid sample without taps");
        };
        let mut od = vec![n, c];
        od.extend(out_sp);
        let y = self.reshape(y, od)?;
        Ok(vec![if dt == DType::F32 {
            y
        } else {
            self.cast(y, dt)?
        }])
    }

    /// `AffineGrid`: the normalized coordinates of every output point (x first, then y and
    /// z), with a 1 appended, times each batch's `theta` transposed.
    fn affine_grid(&mut self) -> R<Vec<ValueId>> {
        let theta = self.inp(0)?;
        let size = self.const_ints(1)?;
        let td = self.shape(theta);
        let nd = size.len().saturating_sub(2);
        if !(nd == 2 || nd == 3)
            || td != [size[0] as usize, nd, nd + 1]
            || size.iter().any(|&d| d < 1)
        {
            return bad(format!("theta {td:?} and size {size:?} (want [N, 2, 3] with [N, C, H, W] or [N, 3, 4] with [N, C, D, H, W])"));
        }
        let align = self.ai("align_corners", 0) != 0;
        let sp: Vec<usize> = size[2..].iter().map(|&d| d as usize).collect();
        let q: usize = sp.iter().product();
        // Normalized position of index i along a dim of d points.
        let norm = |i: usize, d: usize| -> f64 {
            if align {
                if d == 1 {
                    0.0
                } else {
                    -1.0 + 2.0 * i as f64 / (d - 1) as f64
                }
            } else {
                (2.0 * i as f64 + 1.0) / d as f64 - 1.0
            }
        };
        let mut base = Vec::with_capacity(q * (nd + 1));
        for p in 0..q {
            let c = sfumato_core::interp::unravel(p, &sp);
            // x (the last spatial dim) first.
            for k in (0..nd).rev() {
                base.push(norm(c[k], sp[k]));
            }
            base.push(1.0);
        }
        let dt = self.g.dtype(theta);
        let base = self.konst(Tensor::from_f64(dt, [q, nd + 1], &base))?;
        let tt = self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[theta],
        )?;
        let g = self.add1(Op::MatMul, &[base, tt])?; // [N, Q, nd]
        let mut od = vec![size[0] as usize];
        od.extend(&sp);
        od.push(nd);
        Ok(vec![self.reshape(g, od)?])
    }

    /// Keys' cubic convolution weight (a = -0.75) at distance `s` (0 <= s < 2).
    fn cubic_weight(&mut self, s: ValueId) -> R<ValueId> {
        let a = -0.75;
        let f = |me: &mut Self, v: f64| me.scalar(DType::F32, v);
        // Near (s <= 1): ((a + 2) s - (a + 3)) s² + 1; far: ((a s - 5a) s + 8a) s - 4a.
        let s2 = self.bin(BinaryOp::Mul, s, s)?;
        let (c1, c2) = (f(self, a + 2.0)?, f(self, a + 3.0)?);
        let t = self.bin(BinaryOp::Mul, s, c1)?;
        let t = self.bin(BinaryOp::Sub, t, c2)?;
        let t = self.bin(BinaryOp::Mul, t, s2)?;
        let one = f(self, 1.0)?;
        let near = self.bin(BinaryOp::Add, t, one)?;
        let (ca, c5a, c8a, c4a) = (
            f(self, a)?,
            f(self, 5.0 * a)?,
            f(self, 8.0 * a)?,
            f(self, 4.0 * a)?,
        );
        let u = self.bin(BinaryOp::Mul, s, ca)?;
        let u = self.bin(BinaryOp::Sub, u, c5a)?;
        let u = self.bin(BinaryOp::Mul, u, s)?;
        let u = self.bin(BinaryOp::Add, u, c8a)?;
        let u = self.bin(BinaryOp::Mul, u, s)?;
        let far = self.bin(BinaryOp::Sub, u, c4a)?;
        let is_near = self.bin(BinaryOp::Le, s, one)?;
        self.add1(Op::Where, &[is_near, near, far])
    }
}
