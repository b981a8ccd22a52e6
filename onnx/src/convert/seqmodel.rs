//! The newer sequence-model ops, as compositions of device ops: RotaryEmbedding, SwiGLU,
//! CausalConvWithState (a depthwise causal conv with a carried state) and LinearAttention
//! (the linear, gated, delta and gated-delta recurrences, one step per token with the state on
//! the device).

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("RotaryEmbedding", Tensors(|c| c.rotary_embedding())),
    ("SwiGLU", Tensors(|c| c.swiglu())),
    (
        "CausalConvWithState",
        Tensors(|c| c.causal_conv_with_state()),
    ),
    ("LinearAttention", Tensors(|c| c.linear_attention())),
];

/// At most this many tokens of a LinearAttention are unrolled (each is a few kernels).
pub const MAX_LINEAR_ATTENTION_STEPS: usize = 4096;

impl Importer<'_> {
    /// `SwiGLU`: `A * sigmoid(alpha * A) * B`.
    fn swiglu(&mut self) -> R<Vec<ValueId>> {
        let (a, b) = (self.inp(0)?, self.inp(1)?);
        if self.g.shape(a) != self.g.shape(b) {
            return bad(format!(
                "A {} and B {} must have one shape",
                self.g.shape(a),
                self.g.shape(b)
            ));
        }
        let dt = self.g.dtype(a);
        let al = self.scalar(dt, self.af("alpha", 1.0) as f64)?;
        let aa = self.bin(BinaryOp::Mul, a, al)?;
        let s = self.un(UnaryOp::Sigmoid, aa)?;
        let sw = self.bin(BinaryOp::Mul, a, s)?;
        self.add(Op::Binary(BinaryOp::Mul), &[sw, b])
    }

    /// `RotaryEmbedding` (opset 23): halves or interleaved pairs of the first
    /// `rotary_embedding_dim` features rotated by the cached angles of each position.
    fn rotary_embedding(&mut self) -> R<Vec<ValueId>> {
        let (x, cos, sin) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let dims = self.shape(x);
        let interleaved = self.ai("interleaved", 0) != 0;
        // As [B, S, heads, head]: 4-D input is [B, heads, S, head].
        let x4 = match dims.len() {
            4 => self.add1(
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[x],
            )?,
            3 => {
                let heads = self.ai("num_heads", 0);
                if heads <= 0 || !dims[2].is_multiple_of(heads as usize) {
                    return bad(format!("num_heads {heads} for a 3-D input {dims:?}"));
                }
                let heads = heads as usize;
                self.reshape(x, vec![dims[0], dims[1], heads, dims[2] / heads])?
            }
            _ => return bad(format!("input {dims:?} must be 3-D or 4-D")),
        };
        let d4 = self.shape(x4);
        let (b, s, heads, head) = (d4[0], d4[1], d4[2], d4[3]);
        let rd = match self.ai("rotary_embedding_dim", 0) {
            0 => head,
            r if r > 0 && (r as usize) <= head && r % 2 == 0 => r as usize,
            r => return bad(format!("rotary_embedding_dim {r} for head size {head}")),
        };
        let half = rd / 2;
        let (cos, sin) = if self.has(3) {
            let pos = self.inp(3)?;
            (
                self.add1(Op::Gather { axis: 0 }, &[cos, pos])?,
                self.add1(Op::Gather { axis: 0 }, &[sin, pos])?,
            )
        } else {
            (cos, sin)
        };
        for c in [cos, sin] {
            if self.shape(c) != [b, s, half] {
                return bad(format!(
                    "cos/sin cache {} does not give [{b}, {s}, {half}]",
                    self.g.shape(c)
                ));
            }
        }
        let cos = self.reshape(cos, vec![b, s, 1, half])?;
        let sin = self.reshape(sin, vec![b, s, 1, half])?;
        let rot = self.slice_axis(x4, 3, 0, rd, 1)?;
        let (x1, x2) = if interleaved {
            (
                self.slice_axis(rot, 3, 0, half, 2)?,
                self.slice_axis(rot, 3, 1, half, 2)?,
            )
        } else {
            (
                self.slice_axis(rot, 3, 0, half, 1)?,
                self.slice_axis(rot, 3, half, half, 1)?,
            )
        };
        let c1 = self.bin(BinaryOp::Mul, cos, x1)?;
        let s2 = self.bin(BinaryOp::Mul, sin, x2)?;
        let real = self.bin(BinaryOp::Sub, c1, s2)?;
        let s1 = self.bin(BinaryOp::Mul, sin, x1)?;
        let c2 = self.bin(BinaryOp::Mul, cos, x2)?;
        let imag = self.bin(BinaryOp::Add, s1, c2)?;
        let rotated = if interleaved {
            let r = self.reshape(real, vec![b, s, heads, half, 1])?;
            let i = self.reshape(imag, vec![b, s, heads, half, 1])?;
            let p = self.add1(Op::Concat { axis: 4 }, &[r, i])?;
            self.reshape(p, vec![b, s, heads, rd])?
        } else {
            self.add1(Op::Concat { axis: 3 }, &[real, imag])?
        };
        let out = if rd < head {
            let rest = self.slice_axis(x4, 3, rd, head - rd, 1)?;
            self.add1(Op::Concat { axis: 3 }, &[rotated, rest])?
        } else {
            rotated
        };
        if dims.len() == 4 {
            self.add(
                Op::Transpose {
                    perm: vec![0, 2, 1, 3],
                },
                &[out],
            )
        } else {
            Ok(vec![self.reshape(out, dims)?])
        }
    }

    /// `CausalConvWithState`: the past state (or zeros) and the input joined along time, a
    /// depthwise conv over it with no padding, the optional bias and SiLU; the present state is
    /// the joined sequence's last `k - 1` steps.
    fn causal_conv_with_state(&mut self) -> R<Vec<ValueId>> {
        let (x, w) = (self.inp(0)?, self.inp(1)?);
        let (xd, wd) = (self.shape(x), self.shape(w));
        if xd.len() != 3 || wd.len() != 3 || wd[0] != xd[1] || wd[1] != 1 || wd[2] == 0 {
            return bad(format!(
                "input {xd:?} and weight {wd:?} (want [B, C, L] and [C, 1, k])"
            ));
        }
        let (b, c, l, k) = (xd[0], xd[1], xd[2], wd[2]);
        let dt = self.g.dtype(x);
        let act = self.astr("activation", "none");
        if !matches!(act.as_str(), "none" | "silu" | "swish") {
            return bad(format!("activation '{act}'"));
        }
        let joined = if k > 1 {
            let past = if self.has(3) {
                let p = self.inp(3)?;
                if self.shape(p) != [b, c, k - 1] {
                    return bad(format!(
                        "past_state {} (want [{b}, {c}, {}])",
                        self.g.shape(p),
                        k - 1
                    ));
                }
                p
            } else {
                self.konst(Tensor::from_f64(
                    dt,
                    [b, c, k - 1],
                    &vec![0.0; b * c * (k - 1)],
                ))?
            };
            self.add1(Op::Concat { axis: 2 }, &[past, x])?
        } else {
            x
        };
        // A 1-D conv as 2-D over [B, C, 1, L + k - 1].
        let j4 = self.reshape(joined, vec![b, c, 1, l + k - 1])?;
        let w4 = self.reshape(w, vec![c, 1, 1, k])?;
        let mut ins = vec![j4, w4];
        if self.has(2) {
            ins.push(self.inp(2)?);
        }
        let conv = Conv2d {
            groups: c,
            ..Conv2d::default()
        };
        let y = self.add1(Op::Conv2d(conv), &ins)?;
        let mut y = self.reshape(y, vec![b, c, l])?;
        if act != "none" {
            y = self.un(UnaryOp::Silu, y)?;
        }
        let present = if k > 1 {
            self.slice_axis(joined, 2, l, k - 1, 1)?
        } else {
            self.konst(Tensor::from_f64(dt, [b, c, 0], &[]))?
        };
        Ok(vec![y, present])
    }

    /// `LinearAttention` (opset 27), one token at a time: the state `S` `[B, H_kv, d_k, d_v]`
    /// decays (`gated`), takes the outer product `k ⊗ v` (or, for the delta rules,
    /// `β k ⊗ (v - Sᵀk)`), and each query reads `scale · qᵀS`; query heads share their group's
    /// KV head.
    fn linear_attention(&mut self) -> R<Vec<ValueId>> {
        let (q, k, v) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let (qd, kd, vd) = (self.shape(q), self.shape(k), self.shape(v));
        let hq = self.ai("q_num_heads", 0);
        let hk = self.ai("kv_num_heads", 0);
        let rule = self.astr("update_rule", "gated_delta");
        if hq <= 0 || hk <= 0 || hq % hk != 0 {
            return bad(format!(
                "q_num_heads {hq} must be a positive multiple of kv_num_heads {hk}"
            ));
        }
        let (hq, hk) = (hq as usize, hk as usize);
        if qd.len() != 3 || kd.len() != 3 || vd.len() != 3 || qd[2] % hq != 0 || vd[2] % hk != 0 {
            return bad(format!(
                "query {qd:?}, key {kd:?} and value {vd:?} must be [B, T, heads * dim]"
            ));
        }
        let (b, t) = (qd[0], qd[1]);
        let (dk, dv) = (qd[2] / hq, vd[2] / hk);
        if kd != [b, t, hk * dk] || vd[..2] != [b, t] {
            return bad(format!(
                "key {kd:?} and value {vd:?} do not fit query {qd:?}"
            ));
        }
        if t > MAX_LINEAR_ATTENTION_STEPS {
            return unsup(format!(
                "{t} tokens (at most {MAX_LINEAR_ATTENTION_STEPS} unrolled)"
            ));
        }
        let (gated, delta) = match rule.as_str() {
            "linear" => (false, false),
            "gated" => (true, false),
            "delta" => (false, true),
            "gated_delta" => (true, true),
            r => return bad(format!("update_rule '{r}'")),
        };
        let dt = self.g.dtype(q);
        let scale = match self.af("scale", 0.0) {
            0.0 => 1.0 / (dk as f64).sqrt(),
            s => s as f64,
        };
        let mut state = if self.has(3) {
            let p = self.inp(3)?;
            if self.shape(p) != [b, hk, dk, dv] {
                return bad(format!(
                    "past_state {} (want [{b}, {hk}, {dk}, {dv}])",
                    self.g.shape(p)
                ));
            }
            p
        } else {
            let n = b * hk * dk * dv;
            self.konst(Tensor::from_f64(dt, [b, hk, dk, dv], &vec![0.0; n]))?
        };
        let decay = if gated {
            if !self.has(4) {
                return bad(format!("update_rule '{rule}' needs decay"));
            }
            let g = self.inp(4)?;
            let gd = self.shape(g);
            // Per key dimension, or per head.
            let per_key = match gd.as_slice() {
                [gb, gt, n] if *gb == b && *gt == t && *n == hk * dk => true,
                [gb, gt, n] if *gb == b && *gt == t && *n == hk => false,
                _ => {
                    return bad(format!(
                        "decay {gd:?} (want [{b}, {t}, {}] or [{b}, {t}, {hk}])",
                        hk * dk
                    ))
                }
            };
            let e = self.un(UnaryOp::Exp, g)?;
            let shaped = if per_key {
                vec![b, t, hk, dk, 1]
            } else {
                vec![b, t, hk, 1, 1]
            };
            Some(self.reshape(e, shaped)?)
        } else {
            None
        };
        let beta = if delta {
            if !self.has(5) {
                return bad(format!("update_rule '{rule}' needs beta"));
            }
            let be = self.inp(5)?;
            let bd = self.shape(be);
            let h = match bd.as_slice() {
                [bb, bt, n] if *bb == b && *bt == t && (*n == hk || *n == 1) => *n,
                _ => {
                    return bad(format!(
                        "beta {bd:?} (want [{b}, {t}, {hk}] or [{b}, {t}, 1])"
                    ))
                }
            };
            Some(self.reshape(be, vec![b, t, h, 1, 1])?)
        } else {
            None
        };
        let group = hq / hk;
        // Per token: q [B, H_kv, group, d_k], k [B, H_kv, d_k, 1] and as a row [B, H_kv, 1, d_k],
        // v [B, H_kv, 1, d_v].
        let q5 = self.reshape(q, vec![b, t, hk, group, dk])?;
        let k5 = self.reshape(k, vec![b, t, hk, dk, 1])?;
        let v5 = self.reshape(v, vec![b, t, hk, 1, dv])?;
        let sc = self.scalar(dt, scale)?;
        let mut outs = Vec::with_capacity(t);
        let at = |s: &mut Self, x: ValueId, i: usize| -> R<ValueId> {
            let one = s.slice_axis(x, 1, i, 1, 1)?;
            let mut d = s.shape(one);
            d.remove(1);
            s.reshape(one, d)
        };
        for i in 0..t {
            let (qt, kt, vt) = (at(self, q5, i)?, at(self, k5, i)?, at(self, v5, i)?);
            if let Some(g) = decay {
                let gt = at(self, g, i)?;
                state = self.bin(BinaryOp::Mul, state, gt)?;
            }
            let upd = match beta {
                Some(be) => {
                    // Sᵀk as a row: kᵀ [1, d_k] · S [d_k, d_v].
                    let krow = self.reshape(kt, vec![b, hk, 1, dk])?;
                    let sk = self.add1(Op::MatMul, &[krow, state])?;
                    let err = self.bin(BinaryOp::Sub, vt, sk)?;
                    let bt = at(self, be, i)?;
                    let scaled = self.bin(BinaryOp::Mul, err, bt)?;
                    self.bin(BinaryOp::Mul, kt, scaled)?
                }
                None => self.bin(BinaryOp::Mul, kt, vt)?,
            };
            state = self.bin(BinaryOp::Add, state, upd)?;
            let o = self.add1(Op::MatMul, &[qt, state])?;
            let o = self.bin(BinaryOp::Mul, o, sc)?;
            outs.push(self.reshape(o, vec![b, 1, hq * dv])?);
        }
        let out = if outs.len() == 1 {
            outs[0]
        } else {
            self.add1(Op::Concat { axis: 1 }, &outs)?
        };
        Ok(vec![out, state])
    }
}
