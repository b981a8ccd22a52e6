//! Attention (opsets 23-24) as a composition of Sfumato's ops; the fusion planner turns it
//! back into few kernels, and it has the `QKᵀ → scale → mask → softmax → ·V` shape the attention
//! kernel matches.

use super::Converter::{self, Tensors};
use super::{bad, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[("Attention", Tensors(|c| c.attention()))];

impl Importer<'_> {
    /// `Attention` (opsets 23 and 24): 3-D or 4-D Q/K/V, the KV cache (past and present),
    /// grouped-query heads, a bool or additive mask (padded to the total key length),
    /// causal masking and sliding windows (`left_window_size`, `right_window_size`; offset by
    /// the cache, or per batch by `nonpad_kv_seqlen`), `scale`,
    /// `softcap` and the `qk_matmul_output` of every mode.
    pub(super) fn attention(&mut self) -> R<Vec<ValueId>> {
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
        let causal = self.ai("is_causal", 0) != 0;
        let (left, right) = (
            self.ai("left_window_size", -1),
            self.ai("right_window_size", -1),
        );
        if causal || left >= 0 || right >= 0 {
            // The query's absolute position, bottom-right aligned: in-block index i plus the
            // count of valid keys before the block, the cache length, or per batch
            // nonpad_kv_seqlen - Sq for an external cache.
            let pos = match nonpad {
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
            // Causal: j <= pos; a left window: j >= pos - left; a right one: j <= pos + right.
            let mut bounds = Vec::new();
            if causal {
                bounds.push((BinaryOp::Le, 0.0));
            }
            if left >= 0 {
                bounds.push((BinaryOp::Ge, -(left as f64)));
            }
            if right >= 0 {
                bounds.push((BinaryOp::Le, right as f64));
            }
            for (cmp, off) in bounds {
                let lim = if off == 0.0 {
                    pos
                } else {
                    let o = self.scalar(DType::I64, off)?;
                    self.bin(BinaryOp::Add, pos, o)?
                };
                let allowed = self.bin(cmp, j_idx, lim)?;
                let wb = self.bias_of(allowed, dt)?;
                bias = add(self, bias, wb)?;
            }
        }
        if let Some(n) = nonpad {
            let allowed = self.bin(BinaryOp::Lt, j_idx, n)?;
            let pb = self.bias_of(allowed, dt)?;
            bias = add(self, bias, pb)?;
        }
        Ok(bias)
    }

    /// A 0 / -inf additive bias of `dt` from a bool condition (true: attend).
    fn bias_of(&mut self, allowed: ValueId, dt: DType) -> R<ValueId> {
        let zero = self.scalar(dt, 0.0)?;
        let ninf = self.scalar(dt, f64::NEG_INFINITY)?;
        self.add1(Op::Where, &[allowed, zero, ninf])
    }
}
