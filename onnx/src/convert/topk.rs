//! TopK over a long axis by a pruned bitonic network, composed of device ops.
//!
//! The row (padded with the worst value to `K · C`, `K` = k rounded up to a power of two, `C`
//! chunks, a power of two) is cut into chunks of `K`, each sorted best-first by a bitonic
//! network: `log K (log K + 1) / 2` compare-exchange steps, each a Gather of the partner
//! (`i xor j`) and a Where. Then, while more than one chunk is left, each pair of chunks keeps
//! the better of `a[i]` and `b[K-1-i]` (a bitonic sequence holding the pair's best `K`) and
//! `log K` steps sort it again: `log C` rounds, each on half the data of the one before. Ties
//! go to the lower index, as ONNX's TopK orders them; the work is `O(L log² K)` per row and
//! every step is a few kernels with no loop. Short rows keep the rank composition in
//! `scatter.rs` (one comparison mask, `L²` per row, in a couple of kernels).

use super::{Importer, R};
use sfumato_core::op::BinaryOp;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// Rows at most this long use the rank composition; longer ones the bitonic network.
pub const RANK_TOPK_MAX_LEN: usize = 128;

/// A row's keys: values and their original indices (i32), `[.., K]` along the last axis.
#[derive(Clone, Copy)]
struct Keys {
    v: ValueId,
    ix: ValueId,
}

impl Importer<'_> {
    /// The best `k` of each row of `x2` (`[rows, l]`), best first: values and i64 indices.
    pub(super) fn top_k_bitonic(
        &mut self,
        x2: ValueId,
        rows: usize,
        l: usize,
        k: usize,
        largest: bool,
    ) -> R<(ValueId, ValueId)> {
        let kk = k.max(1).next_power_of_two();
        let mut chunks = l.div_ceil(kk).next_power_of_two();
        let p = kk * chunks;
        let dt = self.g.dtype(x2);
        // The pad: the worst value of the dtype, behind every real element (its indices are
        // past the row's, so a real element equal to it stays ahead).
        let v = if p > l {
            let worst = worst_value(dt, largest);
            let row = self.konst(Tensor::from_f64(dt, [1, p - l], &vec![worst; p - l]))?;
            let zeros = self.konst(Tensor::from_f64(dt, [rows, 1], &vec![0.0; rows]))?;
            let pad = self.bin(BinaryOp::Add, row, zeros)?;
            self.add1(Op::Concat { axis: 1 }, &[x2, pad])?
        } else {
            x2
        };
        let iota = self.iota(DType::I32, p, 1, 2)?;
        let zeros = self.konst(Tensor::from_f64(DType::I32, [rows, 1], &vec![0.0; rows]))?;
        let ix = self.bin(BinaryOp::Add, iota, zeros)?;
        let mut keys = Keys {
            v: self.reshape(v, vec![rows, chunks, kk])?,
            ix: self.reshape(ix, vec![rows, chunks, kk])?,
        };
        // Each chunk sorted best-first; the last stage sorts every chunk the same way.
        let mut size = 2;
        while size <= kk {
            let mut j = size / 2;
            while j >= 1 {
                let first: Vec<bool> = (0..kk)
                    .map(|i| (i < (i ^ j)) != (size < kk && i & size != 0))
                    .collect();
                keys = self.exchange(keys, j, &first, largest)?;
                j /= 2;
            }
            size *= 2;
        }
        // Pairs of chunks pruned to their best K, then sorted again.
        while chunks > 1 {
            chunks /= 2;
            let halves = |s: &mut Self, x: ValueId| -> R<(ValueId, ValueId)> {
                let x4 = s.reshape(x, vec![rows, chunks, 2, kk])?;
                let parts = s.add(
                    Op::Split {
                        axis: 2,
                        sizes: vec![1, 1],
                    },
                    &[x4],
                )?;
                let a = s.reshape(parts[0], vec![rows, chunks, kk])?;
                let b = s.reshape(parts[1], vec![rows, chunks, kk])?;
                Ok((a, b))
            };
            let (av, bv) = halves(self, keys.v)?;
            let (ai, bi) = halves(self, keys.ix)?;
            let rev: Vec<f64> = (0..kk).rev().map(|i| i as f64).collect();
            let rev = self.konst(Tensor::from_f64(DType::I64, [kk], &rev))?;
            let b = Keys {
                v: self.add1(Op::Gather { axis: 2 }, &[bv, rev])?,
                ix: self.add1(Op::Gather { axis: 2 }, &[bi, rev])?,
            };
            let a = Keys { v: av, ix: ai };
            let a_better = self.better(a, b, largest)?;
            keys = Keys {
                v: self.add1(Op::Where, &[a_better, a.v, b.v])?,
                ix: self.add1(Op::Where, &[a_better, a.ix, b.ix])?,
            };
            let mut j = kk / 2;
            while j >= 1 {
                let first: Vec<bool> = (0..kk).map(|i| i < (i ^ j)).collect();
                keys = self.exchange(keys, j, &first, largest)?;
                j /= 2;
            }
        }
        let cut = |s: &mut Self, x: ValueId| -> R<ValueId> {
            let x2 = s.reshape(x, vec![rows, kk])?;
            if k == kk {
                return Ok(x2);
            }
            let parts = s.add(
                Op::Split {
                    axis: 1,
                    sizes: vec![k, kk - k],
                },
                &[x2],
            )?;
            Ok(parts[0])
        };
        let vals = cut(self, keys.v)?;
        let idx = cut(self, keys.ix)?;
        let idx = self.cast(idx, DType::I64)?;
        Ok((vals, idx))
    }

    /// Whether `a` goes before `b`: a better value, or an equal one at a lower index.
    fn better(&mut self, a: Keys, b: Keys, largest: bool) -> R<ValueId> {
        let beats = self.bin(if largest { BinaryOp::Gt } else { BinaryOp::Lt }, a.v, b.v)?;
        let tie = self.bin(BinaryOp::Eq, a.v, b.v)?;
        let lower = self.bin(BinaryOp::Lt, a.ix, b.ix)?;
        self.add1(Op::Where, &[tie, lower, beats])
    }

    /// One compare-exchange step along the last axis: element `i` and its partner `i xor j`
    /// each keep the better of the two where `first[i]` (the pair's first place), else the
    /// worse.
    fn exchange(&mut self, keys: Keys, j: usize, first: &[bool], largest: bool) -> R<Keys> {
        let kk = first.len();
        let last = self.shape(keys.v).len() - 1;
        let partner: Vec<f64> = (0..kk).map(|i| (i ^ j) as f64).collect();
        let partner = self.konst(Tensor::from_f64(DType::I64, [kk], &partner))?;
        let other = Keys {
            v: self.add1(Op::Gather { axis: last }, &[keys.v, partner])?,
            ix: self.add1(Op::Gather { axis: last }, &[keys.ix, partner])?,
        };
        let mine_better = self.better(keys, other, largest)?;
        let first = self.konst(Tensor::from_bool([kk], first.to_vec())?)?;
        let keep = self.bin(BinaryOp::Eq, first, mine_better)?;
        Ok(Keys {
            v: self.add1(Op::Where, &[keep, keys.v, other.v])?,
            ix: self.add1(Op::Where, &[keep, keys.ix, other.ix])?,
        })
    }
}

/// The value every other one beats: -inf (or the dtype's least) for the largest, +inf (or its
/// greatest) for the smallest; integers as the device holds them, in 32 bits.
fn worst_value(dt: DType, largest: bool) -> f64 {
    let inf = if largest {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };
    if dt.is_float() {
        return inf;
    }
    let bits = dt.bits().min(32) as i32;
    match (dt.is_signed(), largest) {
        (true, true) => -(2f64.powi(bits - 1)),
        (true, false) => 2f64.powi(bits - 1) - 1.0,
        (false, true) => 0.0,
        (false, false) => 2f64.powi(bits) - 1.0,
    }
}
