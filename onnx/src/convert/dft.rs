//! DFT and STFT: the transformed axis moved last, real and imaginary parts apart, then either
//! multiplied by constant `[N, K]` cosine and sine matrices (the O(N·K) transform, exact to f32
//! rounding: lengths below [`FFT_MIN_LENGTH`]), or, from it on, a radix-2 FFT of device ops
//! (O(N log N), below): directly for a power of two up to [`MAX_FFT_LENGTH`], through
//! Bluestein's chirp for any other length up to [`MAX_BLUESTEIN_LENGTH`] (the DFT as a
//! convolution, done by FFTs of the power of two at least 2N - 1).

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

/// Shorter lengths run as matrix products; power-of-two lengths from this one on run as a
/// radix-2 FFT ...
pub const FFT_MIN_LENGTH: usize = 4096;
/// ... up to this one.
pub const MAX_FFT_LENGTH: usize = 1 << 22;
/// Other lengths from [`FFT_MIN_LENGTH`] on run by Bluestein's algorithm up to this one (its
/// FFTs are twice as long, at most [`MAX_FFT_LENGTH`]).
pub const MAX_BLUESTEIN_LENGTH: usize = MAX_FFT_LENGTH / 2;

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
        let fft = n.is_power_of_two() && (FFT_MIN_LENGTH..=MAX_FFT_LENGTH).contains(&n);
        let bluestein =
            !n.is_power_of_two() && (FFT_MIN_LENGTH..=MAX_BLUESTEIN_LENGTH).contains(&n);
        let matrices = n < FFT_MIN_LENGTH;
        if n == 0 || !(matrices || fft || bluestein) {
            return unsup(format!(
                "a DFT of length {n} (1 to {MAX_BLUESTEIN_LENGTH}, or a power of two up to {MAX_FFT_LENGTH})"
            ));
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
            let p = s.index_axis(xf, r - 1, c)?;
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
                return s.slice_axis(v, rank - 1, 0, take, 1);
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
        let (re, im) = if fft {
            self.fft_parts(a, b, n, inverse, irfft, k_out)?
        } else if bluestein {
            self.bluestein_parts(a, b, n, inverse, irfft, k_out)?
        } else {
            self.dft_matrices(a, b, n, inverse, irfft, k_out)?
        };
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

    /// The same transform as [`Self::dft_matrices`] by a radix-2 FFT (decimation in frequency)
    /// of device ops, for a power-of-two `n`. Each of the `log2 n` stages splits every
    /// sequence of the batch in halves `a` and `b` and makes two of half the length,
    /// `a + b` (the even bins) and `(a - b)·w^j` (the odd ones; `w` the stage's root of unity):
    /// a few elementwise ops, a Split and a Concat, no loop and no index constant. The bins come
    /// out in bit-reversed order; one Gather puts them back. An inverse one-sided transform
    /// first rebuilds the full spectrum from its half (`X[n-k]` = conjugate of `X[k]`).
    fn fft_parts(
        &mut self,
        a: ValueId,
        b: Option<ValueId>,
        n: usize,
        inverse: bool,
        irfft: bool,
        k_out: usize,
    ) -> R<(ValueId, ValueId)> {
        let (lead, mut re, mut im) = self.whole_signal(a, b, n, irfft)?;
        let rows: usize = lead.iter().product();
        let sign = if inverse { 1.0 } else { -1.0 };
        let mut m = rows;
        let mut len = n;
        while len > 1 {
            let h = len / 2;
            let halves = |s: &mut Self, x: ValueId| -> R<(ValueId, ValueId)> {
                let x3 = s.reshape(x, vec![m, 2, h])?;
                let p = s.add(
                    Op::Split {
                        axis: 1,
                        sizes: vec![1, 1],
                    },
                    &[x3],
                )?;
                Ok((p[0], p[1]))
            };
            let (ar, br) = halves(self, re)?;
            let (ai, bi) = halves(self, im)?;
            let th: Vec<f64> = (0..h)
                .map(|j| sign * 2.0 * PI * j as f64 / len as f64)
                .collect();
            let wr = self.konst(Tensor::from_f64(
                DType::F32,
                [1, 1, h],
                &th.iter().map(|t| t.cos()).collect::<Vec<_>>(),
            ))?;
            let wi = self.konst(Tensor::from_f64(
                DType::F32,
                [1, 1, h],
                &th.iter().map(|t| t.sin()).collect::<Vec<_>>(),
            ))?;
            let ur = self.bin(BinaryOp::Add, ar, br)?;
            let ui = self.bin(BinaryOp::Add, ai, bi)?;
            let dr = self.bin(BinaryOp::Sub, ar, br)?;
            let di = self.bin(BinaryOp::Sub, ai, bi)?;
            // (dr + i·di)(wr + i·wi)
            let (p, q) = (
                self.bin(BinaryOp::Mul, dr, wr)?,
                self.bin(BinaryOp::Mul, di, wi)?,
            );
            let vr = self.bin(BinaryOp::Sub, p, q)?;
            let (p, q) = (
                self.bin(BinaryOp::Mul, dr, wi)?,
                self.bin(BinaryOp::Mul, di, wr)?,
            );
            let vi = self.bin(BinaryOp::Add, p, q)?;
            let r2 = self.add1(Op::Concat { axis: 1 }, &[ur, vr])?;
            let i2 = self.add1(Op::Concat { axis: 1 }, &[ui, vi])?;
            m *= 2;
            len = h;
            re = self.reshape(r2, vec![m, len])?;
            im = self.reshape(i2, vec![m, len])?;
        }
        // Row r's bins at flat positions bit-reversed: bin k of the first stage's split is
        // the outermost of the log2 n halvings.
        let bits = n.trailing_zeros();
        let order: Vec<f64> = (0..k_out)
            .map(|k| {
                let rev = if bits == 0 {
                    0
                } else {
                    k.reverse_bits() >> (usize::BITS - bits)
                };
                rev as f64
            })
            .collect();
        let order = self.konst(Tensor::from_f64(DType::I64, [k_out], &order))?;
        let mut out = Vec::new();
        for x in [re, im] {
            let x = self.reshape(x, vec![rows, n])?;
            let mut x = self.add1(Op::Gather { axis: 1 }, &[x, order])?;
            if inverse {
                let s = self.scalar(DType::F32, 1.0 / n as f64)?;
                x = self.bin(BinaryOp::Mul, x, s)?;
            }
            let mut d = lead.clone();
            d.push(k_out);
            out.push(self.reshape(x, d)?);
        }
        Ok((out[0], out[1]))
    }

    /// The transform of a length `n` that is not a power of two, by Bluestein's algorithm:
    /// with `jk = (j² + k² - (k - j)²) / 2`, `X[k] = w[k] · Σ_j (x[j]·w[j]) · conj(w[k - j])`
    /// for the chirp `w[j] = exp(±iπ j² / n)`, a convolution, done as the inverse FFT of the
    /// product of two FFTs of the power of two `M >= 2n - 1` ([`Self::fft_parts`]); the
    /// chirp's own spectrum is a constant, computed here in f64. Same parts in and out as
    /// [`Self::dft_matrices`].
    fn bluestein_parts(
        &mut self,
        a: ValueId,
        b: Option<ValueId>,
        n: usize,
        inverse: bool,
        irfft: bool,
        k_out: usize,
    ) -> R<(ValueId, ValueId)> {
        let (lead, xr, xi) = self.whole_signal(a, b, n, irfft)?;
        let sign = if inverse { 1.0 } else { -1.0 };
        // w[j] = exp(i·sign·π·j²/n), its angle from j² mod 2n (exact in integers).
        let chirp = |j: usize| -> (f64, f64) {
            let m = (j as u128 * j as u128 % (2 * n) as u128) as f64;
            let th = sign * PI * m / n as f64;
            (th.cos(), th.sin())
        };
        let (wr, wi): (Vec<f64>, Vec<f64>) = (0..n).map(chirp).unzip();
        let (wr_c, wi_c) = (
            self.konst(Tensor::from_f64(DType::F32, [n], &wr))?,
            self.konst(Tensor::from_f64(DType::F32, [n], &wi))?,
        );
        let (ur, ui) = self.complex_mul((xr, xi), (wr_c, wi_c))?;
        let big = (2 * n - 1).next_power_of_two();
        let pad = |s: &mut Self, v: ValueId| -> R<ValueId> {
            s.add1(
                Op::Pad {
                    pads: vec![[0, 0], [0, big - n]],
                    mode: PadMode::Constant(0.0),
                },
                &[v],
            )
        };
        let (ur, ui) = (pad(self, ur)?, pad(self, ui)?);
        let (fr, fi) = self.fft_parts(ur, Some(ui), big, false, false, big)?;
        // The kernel conj(w[m]) for m from -(n - 1) to n - 1, laid circularly, and its spectrum.
        let mut kernel = vec![(0.0, 0.0); big];
        for m in 0..n {
            let (c, s) = (wr[m], -wi[m]);
            kernel[m] = (c, s);
            if m > 0 {
                kernel[big - m] = (c, s);
            }
        }
        host_fft(&mut kernel);
        let (kr, ki): (Vec<f64>, Vec<f64>) = kernel.into_iter().unzip();
        let (kr, ki) = (
            self.konst(Tensor::from_f64(DType::F32, [big], &kr))?,
            self.konst(Tensor::from_f64(DType::F32, [big], &ki))?,
        );
        let (pr, pi) = self.complex_mul((fr, fi), (kr, ki))?;
        let (cr, ci) = self.fft_parts(pr, Some(pi), big, true, false, big)?;
        // The first k_out bins times w[k] (and 1/n for an inverse transform).
        let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
        let (or, oi): (Vec<f64>, Vec<f64>) = (0..k_out)
            .map(|k| {
                let (c, s) = chirp(k);
                (c * scale, s * scale)
            })
            .unzip();
        let (or, oi) = (
            self.konst(Tensor::from_f64(DType::F32, [k_out], &or))?,
            self.konst(Tensor::from_f64(DType::F32, [k_out], &oi))?,
        );
        let cr = self.slice_axis(cr, 1, 0, k_out, 1)?;
        let ci = self.slice_axis(ci, 1, 0, k_out, 1)?;
        let (re, im) = self.complex_mul((cr, ci), (or, oi))?;
        let mut d = lead;
        d.push(k_out);
        Ok((self.reshape(re, d.clone())?, self.reshape(im, d)?))
    }

    /// The whole complex signal of `n` samples from the parts given (`[..., take]`): the
    /// leading dims, and the real and imaginary parts flattened to `[rows, n]`; the imaginary
    /// part 0 for a real input, and an inverse one-sided transform's spectrum rebuilt from its
    /// half (bins 0..=n/2 given; bin k > n/2 is bin n - k conjugated).
    fn whole_signal(
        &mut self,
        a: ValueId,
        b: Option<ValueId>,
        n: usize,
        irfft: bool,
    ) -> R<(Vec<usize>, ValueId, ValueId)> {
        let dims = self.shape(a);
        let lead = dims[..dims.len() - 1].to_vec();
        let rows: usize = lead.iter().product();
        let take = dims[dims.len() - 1];
        let a = self.reshape(a, vec![rows, take])?;
        let b = match b {
            Some(b) => Some(self.reshape(b, vec![rows, take])?),
            None => None,
        };
        if irfft {
            let ext: Vec<f64> = (0..n).map(|k| k.min(n - k) as f64).collect();
            let ext = self.konst(Tensor::from_f64(DType::I64, [n], &ext))?;
            let conj: Vec<f64> = (0..n).map(|k| if k > n / 2 { -1.0 } else { 1.0 }).collect();
            let conj = self.konst(Tensor::from_f64(DType::F32, [n], &conj))?;
            let b = b.ok_or_else(|| {
                super::Fail::Bad("an inverse one-sided DFT takes complex input".into())
            })?;
            let re = self.add1(Op::Gather { axis: 1 }, &[a, ext])?;
            let im = self.add1(Op::Gather { axis: 1 }, &[b, ext])?;
            return Ok((lead, re, self.bin(BinaryOp::Mul, im, conj)?));
        }
        let im = match b {
            Some(b) => b,
            None => {
                let zero = self.scalar(DType::F32, 0.0)?;
                self.bin(BinaryOp::Mul, a, zero)?
            }
        };
        Ok((lead, a, im))
    }

    /// `(a + ib)(c + id)`, elementwise (broadcast).
    fn complex_mul(
        &mut self,
        (a, b): (ValueId, ValueId),
        (c, d): (ValueId, ValueId),
    ) -> R<(ValueId, ValueId)> {
        let (ac, bd) = (
            self.bin(BinaryOp::Mul, a, c)?,
            self.bin(BinaryOp::Mul, b, d)?,
        );
        let (ad, bc) = (
            self.bin(BinaryOp::Mul, a, d)?,
            self.bin(BinaryOp::Mul, b, c)?,
        );
        Ok((
            self.bin(BinaryOp::Sub, ac, bd)?,
            self.bin(BinaryOp::Add, ad, bc)?,
        ))
    }

    /// The transform as products with constant cosine and sine matrices: `(re, im)` of
    /// `[..., k_out]` from the parts `a` (real) and `b` (imaginary, if any) of `[..., take]`.
    fn dft_matrices(
        &mut self,
        a: ValueId,
        b: Option<ValueId>,
        n: usize,
        inverse: bool,
        irfft: bool,
        k_out: usize,
    ) -> R<(ValueId, ValueId)> {
        let take = if irfft { n / 2 + 1 } else { n };
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
        Ok((re, im))
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

/// The forward DFT of `x` (a power-of-two length) in place, in f64 on the host: an iterative
/// radix-2 FFT, for a constant's spectrum (Bluestein's kernel).
fn host_fft(x: &mut [(f64, f64)]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            x.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let h = len / 2;
        let tw: Vec<(f64, f64)> = (0..h)
            .map(|k| {
                let th = -2.0 * PI * k as f64 / len as f64;
                (th.cos(), th.sin())
            })
            .collect();
        for start in (0..n).step_by(len) {
            for (k, &(c, s)) in tw.iter().enumerate() {
                let (ar, ai) = x[start + k];
                let (br, bi) = x[start + k + h];
                let (tr, ti) = (br * c - bi * s, br * s + bi * c);
                x[start + k] = (ar + tr, ai + ti);
                x[start + k + h] = (ar - tr, ai - ti);
            }
        }
        len *= 2;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_fft_is_the_dft() {
        let n = 16;
        let x: Vec<(f64, f64)> = (0..n)
            .map(|i| ((i as f64 * 0.7).sin(), (i as f64 * 0.3).cos()))
            .collect();
        let mut y = x.clone();
        super::host_fft(&mut y);
        for (k, &(yr, yi)) in y.iter().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &(a, b)) in x.iter().enumerate() {
                let th = -2.0 * std::f64::consts::PI * (j * k) as f64 / n as f64;
                re += a * th.cos() - b * th.sin();
                im += a * th.sin() + b * th.cos();
            }
            assert!(
                (re - yr).abs() < 1e-12 && (im - yi).abs() < 1e-12,
                "bin {k}"
            );
        }
    }
}
