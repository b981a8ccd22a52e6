//! ONNX ops that Sfumato runs as compositions of its own ops: Attention (opsets 23-24),
//! RMSNormalization, Trilu, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, training-mode
//! BatchNormalization, the Resize modes its kernel lacks (separably, by matrix products) and
//! 3-D ConvTranspose (by depth taps of 2-D ones).
//! The fusion planner turns the elementwise parts back into few kernels; the attention
//! composition has the `QKᵀ → scale → mask → softmax → ·V` shape the attention kernel matches.

use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

impl Importer<'_> {
    pub(super) fn bin(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> R<ValueId> {
        self.add1(Op::Binary(b), &[x, y])
    }

    pub(super) fn un(&mut self, u: UnaryOp, x: ValueId) -> R<ValueId> {
        self.add1(Op::Unary(u), &[x])
    }

    /// Optional input `i`: None where the node leaves it out.
    fn opt_inp(&self, i: usize) -> R<Option<ValueId>> {
        if self.has(i) {
            Ok(Some(self.inp(i)?))
        } else {
            Ok(None)
        }
    }

    pub(super) fn sum_over(&mut self, x: ValueId, axes: Vec<usize>, keepdim: bool) -> R<ValueId> {
        self.add1(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keepdim,
            },
            &[x],
        )
    }

    fn mean_over(&mut self, x: ValueId, axes: Vec<usize>) -> R<ValueId> {
        self.add1(
            Op::Reduce {
                op: ReduceOp::Mean,
                axes,
                keepdim: true,
            },
            &[x],
        )
    }

    /// A constant integer tensor `0, 1, .., n-1` of `dtype`, laid along axis `axis` of a
    /// tensor of rank `rank` (every other dim 1).
    fn iota(&mut self, dtype: DType, n: usize, axis: usize, rank: usize) -> R<ValueId> {
        let mut dims = vec![1; rank];
        dims[axis] = n;
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        self.konst(Tensor::from_f64(dtype, dims, &v))
    }

    /// A 0 / -inf additive bias of `dt` from a bool condition (true: attend).
    fn bias_of(&mut self, allowed: ValueId, dt: DType) -> R<ValueId> {
        let zero = self.scalar(dt, 0.0)?;
        let ninf = self.scalar(dt, f64::NEG_INFINITY)?;
        self.add1(Op::Where, &[allowed, zero, ninf])
    }

    /// `RMSNormalization`: `x / sqrt(mean(x², axes axis..) + epsilon) * scale`.
    pub(super) fn rms_norm(&mut self) -> R<Vec<ValueId>> {
        if self.ai("stash_type", 1) != 1 {
            return unsup("stash_type other than float");
        }
        let (x, scale) = (self.inp(0)?, self.inp(1)?);
        if !self.g.dtype(x).is_float() {
            return bad(format!("RMSNormalization of {}", self.g.dtype(x)));
        }
        let rank = self.g.shape(x).rank();
        let axis = self.axis(self.ai("axis", -1), rank)?;
        let x2 = self.bin(BinaryOp::Mul, x, x)?;
        let ms = self.mean_over(x2, (axis..rank).collect())?;
        let eps = self.scalar(self.g.dtype(x), self.af("epsilon", 1e-5) as f64)?;
        let mse = self.bin(BinaryOp::Add, ms, eps)?;
        let inv = self.un(UnaryOp::Rsqrt, mse)?;
        let y = self.bin(BinaryOp::Mul, x, inv)?;
        Ok(vec![self.bin(BinaryOp::Mul, y, scale)?])
    }

    /// `BatchNormalization` with `training_mode = 1`: normalise by the batch's own mean and
    /// (population) variance over every axis but 1; the second and third outputs are the
    /// running mean and variance, `input * momentum + batch * (1 - momentum)`.
    pub(super) fn batch_norm_training(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let dt = self.g.dtype(x);
        if dims.len() < 2 || !dt.is_float() {
            return bad(format!("BatchNormalization of {dt} {dims:?}"));
        }
        let c = dims[1];
        let axes: Vec<usize> = (0..dims.len()).filter(|&a| a != 1).collect();
        let mut per_c = vec![1; dims.len()];
        per_c[1] = c;
        let mut p = Vec::new();
        for i in 1..5 {
            let v = self.inp(i)?;
            if self.shape(v) != [c] {
                return bad(format!("input {i} must be [{c}]"));
            }
            p.push(v);
        }
        let mean = self.mean_over(x, axes.clone())?;
        let d = self.bin(BinaryOp::Sub, x, mean)?;
        let d2 = self.bin(BinaryOp::Mul, d, d)?;
        let var = self.mean_over(d2, axes)?;
        let eps = self.scalar(dt, self.af("epsilon", 1e-5) as f64)?;
        let ve = self.bin(BinaryOp::Add, var, eps)?;
        let inv = self.un(UnaryOp::Rsqrt, ve)?;
        let y = self.bin(BinaryOp::Mul, d, inv)?;
        let scale = self.reshape(p[0], per_c.clone())?;
        let bias = self.reshape(p[1], per_c)?;
        let y = self.bin(BinaryOp::Mul, y, scale)?;
        let y = self.bin(BinaryOp::Add, y, bias)?;
        let m = self.af("momentum", 0.9) as f64;
        let (km, k1) = (self.scalar(dt, m)?, self.scalar(dt, 1.0 - m)?);
        let running = |s: &mut Self, old: ValueId, batch: ValueId| -> R<ValueId> {
            let b = s.reshape(batch, vec![c])?;
            let a = s.bin(BinaryOp::Mul, old, km)?;
            let b = s.bin(BinaryOp::Mul, b, k1)?;
            s.bin(BinaryOp::Add, a, b)
        };
        let rm = running(self, p[2], mean)?;
        let rv = running(self, p[3], var)?;
        Ok(vec![y, rm, rv])
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

    /// `Attention` (opsets 23 and 24): 3-D or 4-D Q/K/V, the KV cache (past and present),
    /// grouped-query heads, a bool or additive mask (padded to the total key length),
    /// causal masking (offset by the cache, or per batch by `nonpad_kv_seqlen`), `scale`,
    /// `softcap` and the `qk_matmul_output` of every mode.
    pub(super) fn attention(&mut self) -> R<Vec<ValueId>> {
        for w in ["left_window_size", "right_window_size"] {
            if self.ai(w, -1) >= 0 {
                return unsup(format!("{w} (sliding-window attention)"));
            }
        }
        let (mut q, mut k, mut v) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let dt = self.g.dtype(q);
        if !dt.is_float() {
            return bad(format!("Q must be a float tensor, got {dt}"));
        }
        let rank = self.g.shape(q).rank();
        if self.g.shape(k).rank() != rank || self.g.shape(v).rank() != rank {
            return bad("Q, K and V must have one rank");
        }
        if rank == 3 {
            let (qh, kvh) = (self.ai("q_num_heads", 0), self.ai("kv_num_heads", 0));
            if qh <= 0 || kvh <= 0 {
                return bad("3-D inputs need q_num_heads and kv_num_heads");
            }
            q = self.split_heads(q, qh as usize)?;
            k = self.split_heads(k, kvh as usize)?;
            v = self.split_heads(v, kvh as usize)?;
        } else if rank != 4 {
            return bad(format!("Q must be 3-D or 4-D, got rank {rank}"));
        }
        if self.has(4) {
            let pk = self.inp(4)?;
            k = self.add1(Op::Concat { axis: 2 }, &[pk, k])?;
        }
        if self.has(5) {
            let pv = self.inp(5)?;
            v = self.add1(Op::Concat { axis: 2 }, &[pv, v])?;
        }
        let (qd, kd, vd) = (self.shape(q), self.shape(k), self.shape(v));
        let (b, qh, sq, hd) = (qd[0], qd[1], qd[2], qd[3]);
        let (kvh, skv, dv) = (kd[1], kd[2], vd[3]);
        if kd[0] != b || vd[0] != b || kd[3] != hd || vd[1] != kvh || vd[2] != skv {
            return bad(format!(
                "Q [B, Hq, Sq, D] = {qd:?} does not fit K {kd:?} and V {vd:?} (after the cache)"
            ));
        }
        if kvh == 0 || !qh.is_multiple_of(kvh) {
            return bad(format!(
                "{qh} query heads are not a multiple of {kvh} KV heads"
            ));
        }
        let reps = qh / kvh;
        let scale = match self.attr("scale") {
            Some(a) => a.f as f64,
            None => 1.0 / (hd as f64).sqrt(),
        };
        // Grouped heads without copies: the `reps` query heads of one KV head are adjacent,
        // so Q as [B, Hkv, reps * Sq, D] multiplies that head's K directly.
        let kt = self.add1(
            Op::Transpose {
                perm: vec![0, 1, 3, 2],
            },
            &[k],
        )?;
        let qg = self.reshape(q, vec![b, kvh, reps * sq, hd])?;
        let s = self.add1(Op::MatMul, &[qg, kt])?;
        let s = self.reshape(s, vec![b, qh, sq, skv])?;
        let sc = self.scalar(dt, scale)?;
        let mut s = self.bin(BinaryOp::Mul, s, sc)?;
        let softcap = self.af("softcap", 0.0);
        if softcap > 0.0 {
            let c = self.scalar(dt, softcap as f64)?;
            let t = self.bin(BinaryOp::Div, s, c)?;
            let t = self.un(UnaryOp::Tanh, t)?;
            s = self.bin(BinaryOp::Mul, t, c)?;
        }
        let mut qk_out = s;
        let bias = self.attention_bias(dt, b, sq, skv)?;
        if let Some(bias) = bias {
            s = self.bin(BinaryOp::Add, s, bias)?;
        }
        let mode = self.ai("qk_matmul_output_mode", 0);
        if mode == 2 {
            qk_out = s;
        }
        let mut p = self.add1(Op::Softmax { axis: 3 }, &[s])?;
        if let Some(bias) = bias {
            // A query whose every key is masked attends nothing: its weights are 0, not the
            // NaN of a softmax over -inf.
            let rank = self.g.shape(bias).rank();
            let top = self.add1(
                Op::Reduce {
                    op: ReduceOp::Max,
                    axes: vec![rank - 1],
                    keepdim: true,
                },
                &[bias],
            )?;
            let ninf = self.scalar(dt, f64::NEG_INFINITY)?;
            let dead = self.bin(BinaryOp::Eq, top, ninf)?;
            let zero = self.scalar(dt, 0.0)?;
            p = self.add1(Op::Where, &[dead, zero, p])?;
        }
        match mode {
            0..=2 => {}
            3 => qk_out = p,
            m => return bad(format!("qk_matmul_output_mode {m}")),
        }
        let pg = self.reshape(p, vec![b, kvh, reps * sq, skv])?;
        let y = self.add1(Op::MatMul, &[pg, v])?;
        let mut y = self.reshape(y, vec![b, qh, sq, dv])?;
        if rank == 3 {
            let t = self.add1(
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[y],
            )?;
            y = self.reshape(t, vec![b, sq, qh * dv])?;
        }
        Ok(vec![y, k, v, qk_out])
    }

    /// `[B, S, H * D]` to `[B, H, S, D]`.
    fn split_heads(&mut self, x: ValueId, heads: usize) -> R<ValueId> {
        let d = self.shape(x);
        if !d[2].is_multiple_of(heads) {
            return bad(format!(
                "hidden size {} is not a multiple of {heads} heads",
                d[2]
            ));
        }
        let r = self.reshape(x, vec![d[0], d[1], heads, d[2] / heads])?;
        self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[r],
        )
    }

    /// The additive attention bias (0 where a query may attend a key, -inf elsewhere, plus a
    /// float mask), broadcastable to `[B, H, Sq, Skv]`; `None` when nothing is masked.
    fn attention_bias(&mut self, dt: DType, b: usize, sq: usize, skv: usize) -> R<Option<ValueId>> {
        let mut bias: Option<ValueId> = None;
        if self.has(3) {
            let m = self.inp(3)?;
            let mut md = self.shape(m);
            if md.is_empty() {
                return bad("attn_mask must have rank >= 1");
            }
            let mut mb = if self.g.dtype(m) == DType::Bool {
                self.bias_of(m, dt)?
            } else if self.g.dtype(m) != dt {
                self.cast(m, dt)?
            } else {
                m
            };
            let last = md[md.len() - 1];
            if last > skv {
                return bad(format!(
                    "attn_mask has {last} keys, more than the {skv} in K"
                ));
            }
            if last < skv {
                // Keys beyond the mask are masked out.
                *md.last_mut().unwrap_or(&mut 0) = skv - last;
                let n: usize = md.iter().product();
                let pad = self.konst(Tensor::from_f64(
                    dt,
                    md.clone(),
                    &vec![f64::NEG_INFINITY; n],
                ))?;
                let axis = md.len() - 1;
                mb = self.add1(Op::Concat { axis }, &[mb, pad])?;
            }
            bias = Some(mb);
        }
        let nonpad = if self.has(6) {
            let n = self.inp(6)?;
            if self.g.shape(n).dims() != [b] {
                return bad(format!("nonpad_kv_seqlen must be [{b}]"));
            }
            let n = if self.g.dtype(n) == DType::I64 {
                n
            } else {
                self.cast(n, DType::I64)?
            };
            Some(self.reshape(n, vec![b, 1, 1, 1])?)
        } else {
            None
        };
        let add = |s: &mut Self, acc: Option<ValueId>, x: ValueId| -> R<Option<ValueId>> {
            Ok(Some(match acc {
                Some(a) => s.bin(BinaryOp::Add, a, x)?,
                None => x,
            }))
        };
        let i_idx = self.iota(DType::I64, sq, 2, 4)?;
        let j_idx = self.iota(DType::I64, skv, 3, 4)?;
        if self.ai("is_causal", 0) != 0 {
            // Bottom-right aligned: query i attends key j iff j <= i + offset, the offset being
            // the cache length, or per batch nonpad_kv_seqlen - Sq for an external cache.
            let limit = match nonpad {
                Some(n) if !self.has(4) => {
                    let sqc = self.scalar(DType::I64, sq as f64)?;
                    let off = self.bin(BinaryOp::Sub, n, sqc)?;
                    self.bin(BinaryOp::Add, i_idx, off)?
                }
                _ => {
                    let past = if self.has(4) {
                        let pk = self.inp(4)?;
                        self.shape(pk)[2]
                    } else {
                        0
                    };
                    let off = self.scalar(DType::I64, past as f64)?;
                    self.bin(BinaryOp::Add, i_idx, off)?
                }
            };
            let allowed = self.bin(BinaryOp::Le, j_idx, limit)?;
            let cb = self.bias_of(allowed, dt)?;
            bias = add(self, bias, cb)?;
        }
        if let Some(n) = nonpad {
            let allowed = self.bin(BinaryOp::Lt, j_idx, n)?;
            let pb = self.bias_of(allowed, dt)?;
            bias = add(self, bias, pb)?;
        }
        Ok(bias)
    }

    /// `NegativeLogLikelihoodLoss` of log-probabilities `logp` `[N, C, d..]` and integer
    /// targets `[N, d..]`: the target class is picked through a one-hot comparison (no
    /// gather), optional class weights, `ignore_index`, reduction none / sum / mean.
    fn nll(&mut self, logp: ValueId, target: ValueId, weight: Option<ValueId>) -> R<ValueId> {
        let ld = self.shape(logp);
        let td = self.shape(target);
        let dt = self.g.dtype(logp);
        let tt = self.g.dtype(target);
        if ld.len() < 2 || !dt.is_float() {
            return bad(format!("input must be float [N, C, ..], got {dt} {ld:?}"));
        }
        if !tt.is_int() {
            return bad(format!("target must be integers, got {tt}"));
        }
        let mut want = ld.clone();
        want.remove(1);
        if td != want {
            return bad(format!("target {td:?} does not fit input {ld:?}"));
        }
        let c = ld[1];
        let rank = ld.len();
        let mut tu = td.clone();
        tu.insert(1, 1);
        let t1 = self.reshape(target, tu)?;
        let classes = self.iota(tt, c, 1, rank)?;
        let hot = self.bin(BinaryOp::Eq, t1, classes)?;
        let zero = self.scalar(dt, 0.0)?;
        let picked = self.add1(Op::Where, &[hot, logp, zero])?;
        let picked = self.sum_over(picked, vec![1], false)?;
        let mut w = match weight {
            Some(w) => {
                if self.shape(w) != [c] {
                    return bad(format!("weight must be [{c}]"));
                }
                let mut wd = vec![1; rank];
                wd[1] = c;
                let wr = self.reshape(w, wd)?;
                let ws = self.add1(Op::Where, &[hot, wr, zero])?;
                Some(self.sum_over(ws, vec![1], false)?)
            }
            None => None,
        };
        if let Some(ig) = self.attr("ignore_index").map(|a| a.i) {
            let igv = self.scalar(tt, ig as f64)?;
            let keep = self.bin(BinaryOp::Ne, target, igv)?;
            let one = self.scalar(dt, 1.0)?;
            let base = w.unwrap_or(one);
            w = Some(self.add1(Op::Where, &[keep, base, zero])?);
        }
        let neg = self.un(UnaryOp::Neg, picked)?;
        let loss = match w {
            Some(w) => self.bin(BinaryOp::Mul, neg, w)?,
            None => neg,
        };
        let all: Vec<usize> = (0..td.len()).collect();
        match self.astr("reduction", "mean").as_str() {
            "none" => Ok(loss),
            "sum" => self.sum_over(loss, all, false),
            "mean" => {
                let total = self.sum_over(loss, all.clone(), false)?;
                let count = match w {
                    Some(w) => self.sum_over(w, all, false)?,
                    None => self.scalar(dt, td.iter().product::<usize>() as f64)?,
                };
                self.bin(BinaryOp::Div, total, count)
            }
            other => bad(format!("reduction '{other}'")),
        }
    }

    /// `NegativeLogLikelihoodLoss(input, target[, weight])`.
    pub(super) fn nll_loss(&mut self) -> R<Vec<ValueId>> {
        let (x, t) = (self.inp(0)?, self.inp(1)?);
        let w = self.opt_inp(2)?;
        Ok(vec![self.nll(x, t, w)?])
    }

    /// `SoftmaxCrossEntropyLoss(scores, labels[, weights])`: the NLL of the log-softmax over
    /// the class axis; the second output is that log-softmax.
    pub(super) fn softmax_cross_entropy(&mut self) -> R<Vec<ValueId>> {
        let (x, t) = (self.inp(0)?, self.inp(1)?);
        let w = self.opt_inp(2)?;
        if self.g.shape(x).rank() < 2 {
            return bad("scores must be [N, C, ..]");
        }
        let sm = self.add1(Op::Softmax { axis: 1 }, &[x])?;
        let logp = self.un(UnaryOp::Log, sm)?;
        let loss = self.nll(logp, t, w)?;
        Ok(vec![loss, logp])
    }
}

/// The largest interpolation matrix (elements) the separable Resize builds for one axis.
const MAX_MATRIX: usize = 1 << 24;

/// The attributes of an ONNX Resize that shape its interpolation.
pub(super) struct ResizeSpec {
    /// `nearest`, `linear` or `cubic`.
    pub mode: String,
    /// `round_prefer_floor`, `round_prefer_ceil`, `floor` or `ceil`.
    pub nearest: String,
    pub coord: String,
    pub cubic_a: f64,
    pub antialias: bool,
    pub exclude_outside: bool,
    pub extrapolation: f64,
}

/// One resized axis: its input and output sizes, the scale of the coordinate map and (for
/// `tf_crop_and_resize`) the region of interest.
pub(super) struct ResizeAxis {
    pub axis: usize,
    pub input: usize,
    pub output: usize,
    pub scale: f64,
    pub roi: [f64; 2],
}

impl ResizeSpec {
    /// The source coordinate of output index `y` (None: outside the crop, extrapolated).
    fn source(&self, a: &ResizeAxis, y: f64) -> R<Option<f64>> {
        let (inp, scale) = (a.input as f64, a.scale);
        let out_f = scale * inp;
        Ok(Some(match self.coord.as_str() {
            "half_pixel" => (y + 0.5) / scale - 0.5,
            "pytorch_half_pixel" if out_f == 1.0 => -0.5,
            "pytorch_half_pixel" => (y + 0.5) / scale - 0.5,
            "align_corners" if out_f == 1.0 => 0.0,
            "align_corners" => y * (inp - 1.0) / (out_f - 1.0),
            "asymmetric" => y / scale,
            "half_pixel_symmetric" => {
                let offset = inp / 2.0 * (1.0 - a.output as f64 / out_f);
                offset + (y + 0.5) / scale - 0.5
            }
            "tf_crop_and_resize" => {
                let [r0, r1] = a.roi;
                let x = if out_f == 1.0 {
                    (r1 - r0) * (inp - 1.0) / 2.0
                } else {
                    y * (r1 - r0) * (inp - 1.0) / (out_f - 1.0)
                } + r0 * (inp - 1.0);
                if x < 0.0 || x > inp - 1.0 {
                    return Ok(None);
                }
                x
            }
            other => return unsup(format!("coordinate_transformation_mode '{other}'")),
        }))
    }

    /// The interpolation weights of the taps around a source coordinate whose fractional part
    /// is `ratio` (1 at an integer).
    fn coeffs(&self, ratio: f64, scale: f64) -> R<Vec<f64>> {
        let a = self.cubic_a;
        let cubic = |x: f64| {
            let x = x.abs();
            if x <= 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
            } else {
                0.0
            }
        };
        let normalized = |v: Vec<f64>| {
            let s: f64 = v.iter().sum();
            v.into_iter().map(|c| c / s).collect::<Vec<_>>()
        };
        Ok(match self.mode.as_str() {
            "nearest" if ratio == 1.0 => vec![0.0, 1.0],
            "nearest" => {
                let up = match self.nearest.as_str() {
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    "ceil" => true,
                    other => return bad(format!("nearest_mode '{other}'")),
                };
                vec![(!up) as u8 as f64, up as u8 as f64]
            }
            "linear" if self.antialias => {
                let s = scale.min(1.0);
                let start = (-1.0 / s).floor() as i64 + 1;
                let taps = 2 - 2 * start;
                normalized(
                    (start..start + taps)
                        .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                        .collect(),
                )
            }
            "linear" => vec![1.0 - ratio, ratio],
            "cubic" if self.antialias => {
                let s = scale.min(1.0);
                let start = (-2.0 / s).floor() as i64 + 1;
                normalized(
                    (start..2 - start)
                        .map(|i| cubic(s * (i as f64 - ratio)))
                        .collect(),
                )
            }
            "cubic" => [ratio + 1.0, ratio, 1.0 - ratio, 2.0 - ratio]
                .iter()
                .map(|&x| cubic(x))
                .collect(),
            other => return unsup(format!("mode '{other}'")),
        })
    }

    /// The `[output, input]` interpolation matrix of one axis (edge-clamped taps, or taps
    /// outside dropped and the rest renormalized with `exclude_outside`), and which output
    /// rows are extrapolated.
    fn matrix(&self, a: &ResizeAxis) -> R<(Vec<f64>, Vec<bool>)> {
        let (n_in, n_out) = (a.input, a.output);
        let mut w = vec![0.0; n_out * n_in];
        let mut outside = vec![false; n_out];
        for y in 0..n_out {
            let Some(x) = self.source(a, y as f64)? else {
                outside[y] = true;
                continue;
            };
            let xi = x.floor();
            let ratio = if x == xi { 1.0 } else { x - xi };
            let mut c = self.coeffs(ratio, a.scale)?;
            let n = c.len() as i64;
            // The n taps nearest x (the lower one on ties), as ONNX's reference picks them.
            let pad = (n + 1) / 2;
            let xp = x + pad as f64;
            let p = xp.floor();
            let frac = xp - p;
            let offset = if n % 2 == 0 {
                if frac == 0.0 {
                    -(n / 2)
                } else {
                    -(n / 2) + 1
                }
            } else if frac <= 0.5 {
                -((n - 1) / 2)
            } else {
                -((n - 1) / 2) + 1
            };
            let first = p as i64 + offset - pad;
            if self.exclude_outside {
                for (k, ck) in c.iter_mut().enumerate() {
                    let i = first + k as i64;
                    if i < 0 || i >= n_in as i64 {
                        *ck = 0.0;
                    }
                }
                let s: f64 = c.iter().sum();
                let s = if s == 0.0 { 1.0 } else { s };
                c.iter_mut().for_each(|ck| *ck /= s);
            }
            for (k, ck) in c.iter().enumerate() {
                let i = (first + k as i64).clamp(0, n_in as i64 - 1) as usize;
                w[y * n_in + i] += ck;
            }
        }
        Ok((w, outside))
    }
}

impl Importer<'_> {
    /// Resize as one matrix product per resized axis: the axis is brought to the middle of an
    /// `[outer, in, inner]` view and multiplied by the constant `[out, in]` interpolation matrix;
    /// extrapolated rows (`tf_crop_and_resize`) take `extrapolation_value`. Axes that keep
    /// their size at scale 1 (and the whole region) are skipped, as in ONNX's reference.
    pub(super) fn resize_separable(
        &mut self,
        x: ValueId,
        spec: &ResizeSpec,
        axes: &[ResizeAxis],
    ) -> R<ValueId> {
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("Resize of {dt} in mode '{}'", spec.mode));
        }
        if spec.antialias && spec.mode == "nearest" {
            return bad("antialias with mode 'nearest'");
        }
        let mut y = x;
        for a in axes {
            let identity = (a.scale - 1.0).abs() < 1e-9
                && a.output == a.input
                && a.roi[0].abs() < 1e-9
                && (a.roi[1] - 1.0).abs() < 1e-9;
            if identity {
                continue;
            }
            let mut dims = self.shape(y);
            if a.input == 0 && a.output > 0 {
                return bad(format!(
                    "cannot resize an empty axis {} to {}",
                    a.axis, a.output
                ));
            }
            if a.input.saturating_mul(a.output) > MAX_MATRIX {
                return unsup(format!(
                    "resizing axis {} from {} to {} needs a {}x{} interpolation matrix, over {MAX_MATRIX} elements",
                    a.axis, a.input, a.output, a.output, a.input
                ));
            }
            let outer: usize = dims[..a.axis].iter().product();
            let inner: usize = dims[a.axis + 1..].iter().product();
            let (w, outside) = spec.matrix(a)?;
            let w = self.konst(Tensor::from_f64(dt, [a.output, a.input], &w))?;
            let v = self.reshape(y, vec![outer, a.input, inner])?;
            let mut r = self.add1(Op::MatMul, &[w, v])?;
            if outside.iter().any(|&o| o) {
                let mask = self.konst(Tensor::from_bool([1, a.output, 1], outside)?)?;
                let e = self.scalar(dt, spec.extrapolation)?;
                r = self.add1(Op::Where, &[mask, e, r])?;
            }
            dims[a.axis] = a.output;
            y = self.reshape(r, dims)?;
        }
        Ok(y)
    }

    /// 3-D ConvTranspose, NCDHW, as one 2-D ConvTranspose over (H, W) per depth tap `kd` with
    /// the depth folded into the batch: tap `kd` puts input depth `id` at output depth
    /// `id * sd + kd * dd` (before the depth pads are cropped), so each tap's result is spread
    /// by the stride (zeros between), shifted by `kd * dd`, and the taps are summed. The bias is
    /// added once at the end.
    pub(super) fn conv_transpose_3d(&mut self, x: ValueId, w: ValueId) -> R<ValueId> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        let three = |s: &Self, name: &str, d: usize| -> R<[usize; 3]> {
            match s.ais(name) {
                None => Ok([d; 3]),
                Some(v) if v.len() == 3 && v.iter().all(|&x| x >= 0) => {
                    Ok([v[0] as usize, v[1] as usize, v[2] as usize])
                }
                Some(v) => bad(format!("{name} = {v:?} for a 3-D ConvTranspose")),
            }
        };
        let stride = three(self, "strides", 1)?;
        let dilation = three(self, "dilations", 1)?;
        let out_pad = three(self, "output_padding", 0)?;
        if stride.contains(&0) || dilation.contains(&0) {
            return bad("strides and dilations must be positive");
        }
        let pads = match self.ais("pads") {
            None => [0; 6],
            Some(p) if p.len() == 6 && p.iter().all(|&x| x >= 0) => {
                let mut a = [0; 6];
                for (d, &v) in a.iter_mut().zip(&p) {
                    *d = v as usize;
                }
                a
            }
            Some(p) => return bad(format!("pads = {p:?} for a 3-D ConvTranspose")),
        };
        let auto = self.astr("auto_pad", "NOTSET");
        if self.ais("output_shape").is_some() || auto.starts_with("SAME") {
            return unsup("3-D ConvTranspose with output_shape or SAME auto_pad");
        }
        let pads = if auto == "VALID" { [0; 6] } else { pads };
        let groups = self.ai("group", 1);
        if groups < 1 || xs[1] != ws[0] || xs[1] % groups as usize != 0 {
            return bad(format!(
                "group = {groups} with {} input channels and a weight of {ws:?}",
                xs[1]
            ));
        }
        let (n, c, d) = (xs[0], xs[1], xs[2]);
        let kd = ws[2];
        let o = ws[1] * groups as usize;
        // Output depth before the pads are cropped (and the spread input's depth), checked: the
        // attributes come from the file.
        const MAX_DEPTH: usize = 1 << 24;
        let full = (d.max(1) - 1)
            .checked_mul(stride[0])
            .zip((kd.max(1) - 1).checked_mul(dilation[0]))
            .and_then(|(a, b)| a.checked_add(b)?.checked_add(1 + out_pad[0]))
            .filter(|&f| f <= MAX_DEPTH && d.saturating_mul(stride[0]) <= MAX_DEPTH);
        let Some(full) = full else {
            return bad(format!(
                "a 3-D ConvTranspose of depth {d} with stride {} and dilation {} is too deep",
                stride[0], dilation[0]
            ));
        };
        if d == 0 || kd == 0 || pads[0].saturating_add(pads[3]) >= full {
            return bad(format!(
                "a 3-D ConvTranspose of {xs:?} by {ws:?} with pads {pads:?} has no output depth"
            ));
        }
        // [N, C, D, H, W] -> [N * D, C, H, W]
        let xt = self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1, 3, 4],
            },
            &[x],
        )?;
        let xt = self.reshape(xt, vec![n * d, c, xs[3], xs[4]])?;
        let mut sum: Option<ValueId> = None;
        let (mut plane, mut hw) = (0, (0, 0));
        for k in 0..kd {
            let mut axes: Vec<SliceAxis> = ws.iter().map(|&s| SliceAxis::full(s)).collect();
            axes[2] = SliceAxis {
                start: k as i64,
                step: 1,
                len: 1,
            };
            let wk = self.add1(Op::Slice { axes }, &[w])?;
            let wk = self.reshape(wk, vec![ws[0], ws[1], ws[3], ws[4]])?;
            let ct = ConvTranspose2d {
                stride: [stride[1], stride[2]],
                padding: [pads[1], pads[2], pads[4], pads[5]],
                output_padding: [out_pad[1], out_pad[2]],
                dilation: [dilation[1], dilation[2]],
                groups: groups as usize,
            };
            let z = self.add1(Op::ConvTranspose2d(ct), &[xt, wk])?;
            let zs = self.shape(z);
            plane = zs[1] * zs[2] * zs[3];
            hw = (zs[2], zs[3]);
            // Spread by the depth stride: [N, D, 1, P] padded to [N, D, sd, P] is depth
            // id * sd, then shifted by k * dd within the full depth.
            let z = self.reshape(z, vec![n, d, 1, plane])?;
            let z = self.add1(
                Op::Pad {
                    pads: vec![[0, 0], [0, 0], [0, stride[0] - 1], [0, 0]],
                    mode: PadMode::Constant(0.0),
                },
                &[z],
            )?;
            let mut z = self.reshape(z, vec![n, d * stride[0], plane])?;
            let shift = k * dilation[0];
            let room = full - shift;
            if d * stride[0] > room {
                // Only trailing zeros of the spread fall past the end.
                let axes = vec![
                    SliceAxis::full(n),
                    SliceAxis {
                        start: 0,
                        step: 1,
                        len: room,
                    },
                    SliceAxis::full(plane),
                ];
                z = self.add1(Op::Slice { axes }, &[z])?;
            }
            let len = self.shape(z)[1];
            let z = self.add1(
                Op::Pad {
                    pads: vec![[0, 0], [shift, full - shift - len], [0, 0]],
                    mode: PadMode::Constant(0.0),
                },
                &[z],
            )?;
            sum = Some(match sum {
                None => z,
                Some(s) => self.bin(BinaryOp::Add, s, z)?,
            });
        }
        let sum = sum.ok_or_else(|| super::Fail::Bad("no depth taps".into()))?;
        let od = full - pads[0] - pads[3];
        let axes = vec![
            SliceAxis::full(n),
            SliceAxis {
                start: pads[0] as i64,
                step: 1,
                len: od,
            },
            SliceAxis::full(plane),
        ];
        let y = self.add1(Op::Slice { axes }, &[sum])?;
        let y = self.reshape(y, vec![n, od, o, hw.0, hw.1])?;
        let mut y = self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1, 3, 4],
            },
            &[y],
        )?;
        if self.has(2) {
            let b = self.inp(2)?;
            let b = self.reshape(b, vec![1, o, 1, 1, 1])?;
            y = self.bin(BinaryOp::Add, y, b)?;
        }
        Ok(y)
    }
}
