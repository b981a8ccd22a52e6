//! DFT and STFT as matrix products: the transformed axis moved last and multiplied by constant
//! `[N, K]` cosine and sine matrices (real and imaginary parts apart). This is the O(N·K)
//! transform, exact to f32 rounding; a radix-2 kernel for long signals is future work, so a
//! transform longer than [`MAX_DFT_LENGTH`] is refused.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};
use std::f64::consts::PI;

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("DFT", Tensors(|c| c.dft())),
    ("STFT", Tensors(|c| c.stft())),
];

/// The longest transform run as a matrix product.
pub const MAX_DFT_LENGTH: usize = 8192;

impl Importer<'_> {
    /// `DFT` (opsets 17 to 20): `axis` an attribute before opset 20, an input from it.
    fn dft(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let r = dims.len();
        if r < 2 || !matches!(dims[r - 1], 1 | 2) {
            return bad(format!(
                "input {dims:?} must end in 1 (real) or 2 (complex)"
            ));
        }
        let axis = if self.opset >= 20 {
            if self.has(2) {
                match self.const_ints(2)?.as_slice() {
                    [a] => *a,
                    a => return bad(format!("axis {a:?} must be one value")),
                }
            } else {
                -2
            }
        } else {
            self.ai("axis", 1)
        };
        let axis = if axis < 0 { axis + r as i64 } else { axis };
        if axis < 0 || axis as usize >= r - 1 {
            return bad(format!(
                "axis {axis} for input {dims:?} (the last dim holds the parts)"
            ));
        }
        let axis = axis as usize;
        let inverse = self.ai("inverse", 0) != 0;
        let onesided = self.ai("onesided", 0) != 0;
        let irfft = inverse && onesided;
        let n = if self.has(1) {
            match self.const_ints(1)?.as_slice() {
                [l] if *l > 0 => *l as usize,
                l => return bad(format!("dft_length {l:?} must be one positive value")),
            }
        } else if irfft {
            2 * dims[axis].saturating_sub(1)
        } else {
            dims[axis]
        };
        if irfft && dims[r - 1] != 2 {
            return bad("an inverse one-sided DFT takes complex input");
        }
        if onesided && !inverse && dims[r - 1] != 1 {
            return bad("a one-sided DFT takes real input");
        }
        Ok(vec![self.dft_along(x, axis, n, inverse, onesided)?])
    }

    /// The DFT of `x` (`[..., 1 or 2]`) along `axis` at length `n`: complex `[..., 2]` out, or
    /// real `[..., 1]` for an inverse one-sided one.
    fn dft_along(
        &mut self,
        x: ValueId,
        axis: usize,
        n: usize,
        inverse: bool,
        onesided: bool,
    ) -> R<ValueId> {
        if n == 0 || n > MAX_DFT_LENGTH {
            return unsup(format!("a DFT of length {n} (1 to {MAX_DFT_LENGTH})"));
        }
        let dims = self.shape(x);
        let r = dims.len();
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return bad(format!("DFT of {dt}"));
        }
        let xf = if dt == DType::F32 {
            x
        } else {
            self.cast(x, DType::F32)?
        };
        let irfft = inverse && onesided;
        // The parts, each with the axis moved last.
        let mut perm: Vec<usize> = (0..r - 1).filter(|&d| d != axis).collect();
        perm.push(axis);
        let mut lead: Vec<usize> = perm[..r - 2].iter().map(|&d| dims[d]).collect();
        let part = |s: &mut Self, c: usize| -> R<ValueId> {
            let axes = dims
                .iter()
                .enumerate()
                .map(|(d, &l)| SliceAxis {
                    start: if d == r - 1 { c as i64 } else { 0 },
                    step: 1,
                    len: if d == r - 1 { 1 } else { l },
                })
                .collect();
            let p = s.add1(Op::Slice { axes }, &[xf])?;
            let p = s.reshape(p, dims[..r - 1].to_vec())?;
            s.add1(Op::Transpose { perm: perm.clone() }, &[p])
        };
        // Input length used: n samples, or n / 2 + 1 bins for an inverse one-sided DFT.
        let take = if irfft { n / 2 + 1 } else { n };
        let fit = |s: &mut Self, v: ValueId| -> R<ValueId> {
            let have = dims[axis];
            let rank = r - 1;
            if have == take {
                return Ok(v);
            }
            if have > take {
                let mut axes: Vec<SliceAxis> = s
                    .shape(v)
                    .iter()
                    .map(|&l| SliceAxis {
                        start: 0,
                        step: 1,
                        len: l,
                    })
                    .collect();
                axes[rank - 1].len = take;
                return s.add1(Op::Slice { axes }, &[v]);
            }
            let mut pads = vec![[0, 0]; rank];
            pads[rank - 1] = [0, take - have];
            s.add1(
                Op::Pad {
                    pads,
                    mode: PadMode::Constant(0.0),
                },
                &[v],
            )
        };
        let a = part(self, 0)?;
        let a = fit(self, a)?;
        let b = if dims[r - 1] == 2 {
            let b = part(self, 1)?;
            Some(fit(self, b)?)
        } else {
            None
        };
        let k_out = if irfft || !onesided { n } else { n / 2 + 1 };
        let sign = if inverse { 1.0 } else { -1.0 };
        let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
        // C[i, k] = cos(2π i k / n), S likewise; an inverse one-sided DFT weighs each bin
        // but the first (and the Nyquist bin of an even n) twice, for its mirror image.
        let mut c = vec![0.0; take * k_out];
        let mut sn = vec![0.0; take * k_out];
        for i in 0..take {
            let w = if irfft && i != 0 && !(n.is_multiple_of(2) && i == n / 2) {
                2.0
            } else {
                1.0
            };
            for k in 0..k_out {
                let th = 2.0 * PI * ((i * k) % n) as f64 / n as f64;
                c[i * k_out + k] = w * scale * th.cos();
                sn[i * k_out + k] = w * scale * th.sin();
            }
        }
        let cm = self.konst(Tensor::from_f64(DType::F32, [take, k_out], &c))?;
        let sm = self.konst(Tensor::from_f64(DType::F32, [take, k_out], &sn))?;
        // (a + ib)(cos θ + i·sign·sin θ): re = aC - sign·bS, im = sign·aS + bC.
        let ac = self.add1(Op::MatMul, &[a, cm])?;
        let as_ = self.add1(Op::MatMul, &[a, sm])?;
        let sg = self.scalar(DType::F32, sign)?;
        let mut re = ac;
        let mut im = self.bin(BinaryOp::Mul, as_, sg)?;
        if let Some(b) = b {
            let bc = self.add1(Op::MatMul, &[b, cm])?;
            let bs = self.add1(Op::MatMul, &[b, sm])?;
            let sbs = self.bin(BinaryOp::Mul, bs, sg)?;
            re = self.bin(BinaryOp::Sub, re, sbs)?;
            im = self.bin(BinaryOp::Add, im, bc)?;
        }
        // Back to the input's layout, the parts in a new last dim.
        lead.push(k_out);
        let mut inv = vec![0; r - 1];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let mut od = dims.clone();
        od[axis] = k_out;
        let mut parts = vec![re];
        if !irfft {
            parts.push(im);
        }
        od[r - 1] = parts.len();
        let mut laid = Vec::new();
        for p in parts {
            let t = self.add1(Op::Transpose { perm: inv.clone() }, &[p])?;
            let mut d = od.clone();
            d[r - 1] = 1;
            laid.push(self.reshape(t, d)?);
        }
        let y = if laid.len() == 1 {
            laid[0]
        } else {
            self.add1(Op::Concat { axis: r - 1 }, &laid)?
        };
        Ok(if dt == DType::F32 {
            y
        } else {
            self.cast(y, dt)?
        })
    }

    /// `STFT`: frames of `frame_length` every `frame_step` samples, times the window, each
    /// transformed (one-sided by default).
    fn stft(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        if dims.len() != 3 || !matches!(dims[2], 1 | 2) {
            return bad(format!("signal {dims:?} must be [batch, length, 1 or 2]"));
        }
        let step = match self.const_ints(1)?.as_slice() {
            [s] if *s > 0 => *s as usize,
            s => return bad(format!("frame_step {s:?}")),
        };
        let window = if self.has(2) {
            Some(self.inp(2)?)
        } else {
            None
        };
        let flen = if self.has(3) {
            match self.const_ints(3)?.as_slice() {
                [l] if *l > 0 => *l as usize,
                l => return bad(format!("frame_length {l:?}")),
            }
        } else if let Some(w) = window {
            self.g.shape(w).numel()
        } else {
            return bad("STFT needs a window or a frame_length");
        };
        let len = dims[1];
        if flen > len {
            return bad(format!(
                "frame_length {flen} is longer than the signal ({len})"
            ));
        }
        let frames = (len - flen) / step + 1;
        let onesided = self.ai("onesided", 1) != 0;
        // Every frame's sample indices, gathered along the signal: [batch, frames, flen, parts].
        let idx: Vec<f64> = (0..frames)
            .flat_map(|f| (0..flen).map(move |i| (f * step + i) as f64))
            .collect();
        let idx = self.konst(Tensor::from_f64(DType::I64, [frames, flen], &idx))?;
        let mut fr = self.add1(Op::Gather { axis: 1 }, &[x, idx])?;
        if let Some(w) = window {
            if self.g.shape(w).numel() != flen {
                return bad(format!("window {} for frames of {flen}", self.g.shape(w)));
            }
            let w = self.reshape(w, vec![1, 1, flen, 1])?;
            let w = if self.g.dtype(w) == self.g.dtype(fr) {
                w
            } else {
                let to = self.g.dtype(fr);
                self.cast(w, to)?
            };
            fr = self.bin(BinaryOp::Mul, fr, w)?;
        }
        Ok(vec![self.dft_along(
            fr,
            2,
            flen,
            false,
            onesided && dims[2] == 1,
        )?])
    }
}
