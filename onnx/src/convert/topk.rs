//! TopK over a long axis by a pruned bitonic network, composed of device ops.
//!
//! The row (padded to `K · C` with places that sort after every element, `K` = k rounded up to
//! a power of two, `C` chunks, a power of two) is cut into chunks of `K`, each sorted best-first by a bitonic
//! network: `log K (log K + 1) / 2` compare-exchange steps, each a Gather of the partner
//! (`i xor j`) and a Where. Then, while more than one chunk is left, each pair of chunks keeps
//! the better of `a[i]` and `b[K-1-i]` (a bitonic sequence holding the pair's best `K`) and
//! `log K` steps sort it again: `log C` rounds, each on half the data of the one before. Ties
//! go to the lower index, as ONNX's TopK orders them, and NaN is greater than every number and
//! equal to NaN (numpy's and PyTorch's order); the work is `O(L log² K)` per row and every step
//! is a few kernels with no loop. Short rows keep the rank composition in
//! `scatter.rs` (one comparison mask, `L²` per row, in a couple of kernels).

use super::{Importer, R};
use sfumato_core::op::BinaryOp;
use sfumato_core::{DType, Op, Shape, Tensor, ValueId};

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
        // The network compares keys: for f32 and the half floats, each value's bits as an i32
        // that orders as the floats do (-0 as 0, every NaN one NaN above +inf), so a step is an
        // integer compare with no NaN case; padded with a key below (above) every real one.
        // Other dtypes compare their values, NaN handled in `better`, and the padding goes
        // after every real element by its index.
        let (key, pad, by_index) = if matches!(dt, DType::F32 | DType::F16 | DType::BF16) {
            let worst = if largest { i32::MIN } else { i32::MAX };
            (self.order_key(x2)?, worst as f64, None)
        } else {
            (x2, 0.0, Some(l))
        };
        let kt = self.g.dtype(key);
        let v = if p > l {
            let row = self.konst(Tensor::from_f64(kt, [1, p - l], &vec![pad; p - l]))?;
            let zeros = self.konst(Tensor::from_f64(kt, [rows, 1], &vec![0.0; rows]))?;
            let pad = self.bin(BinaryOp::Add, row, zeros)?;
            self.add1(Op::Concat { axis: 1 }, &[key, pad])?
        } else {
            key
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
                keys = self.exchange(keys, j, &first, largest, by_index)?;
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
            let a_better = self.better(a, b, largest, by_index)?;
            keys = Keys {
                v: self.add1(Op::Where, &[a_better, a.v, b.v])?,
                ix: self.add1(Op::Where, &[a_better, a.ix, b.ix])?,
            };
            let mut j = kk / 2;
            while j >= 1 {
                let first: Vec<bool> = (0..kk).map(|i| i < (i ^ j)).collect();
                keys = self.exchange(keys, j, &first, largest, by_index)?;
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
        let idx = cut(self, keys.ix)?;
        let idx = self.cast(idx, DType::I64)?;
        let vals = if by_index.is_none() {
            self.add1(Op::GatherElements { axis: 1 }, &[x2, idx])?
        } else {
            cut(self, keys.v)?
        };
        Ok((vals, idx))
    }

    /// An i32 per float of `x` that orders as the floats do: -0 made 0 and every NaN the one
    /// quiet NaN (above +inf), then the bits of a negative value flipped but for the sign, so a
    /// signed compare of the keys is the floats' order.
    fn order_key(&mut self, x: ValueId) -> R<ValueId> {
        let x = if self.g.dtype(x) == DType::F32 {
            x
        } else {
            self.cast(x, DType::F32)?
        };
        let zero = self.scalar(DType::F32, 0.0)?;
        let is_zero = self.bin(BinaryOp::Eq, x, zero)?;
        let x = self.add1(Op::Where, &[is_zero, zero, x])?;
        let nan = self.bin(BinaryOp::Ne, x, x)?;
        let qnan = self.scalar(DType::F32, f64::NAN)?;
        let x = self.add1(Op::Where, &[nan, qnan, x])?;
        let bits = self.add1(Op::BitCast { to: DType::I32 }, &[x])?;
        let s31 = self.scalar(DType::I32, 31.0)?;
        let sign = self.bin(BinaryOp::Shr, bits, s31)?;
        let low = self.scalar(DType::I32, i32::MAX as f64)?;
        let flip = self.bin(BinaryOp::BitAnd, sign, low)?;
        self.bin(BinaryOp::BitXor, bits, flip)
    }

    /// Whether `a` goes before `b`: a better value, or an equal one at a lower index; with
    /// `by_index` = `Some(l)`, the padding (indices from `l` on) after every element of the row.
    fn better(&mut self, a: Keys, b: Keys, largest: bool, by_index: Option<usize>) -> R<ValueId> {
        let (beats, tie) = self.beats_or_ties(a.v, b.v, largest)?;
        let lower = self.bin(BinaryOp::Lt, a.ix, b.ix)?;
        let ahead = self.add1(Op::Where, &[tie, lower, beats])?;
        let Some(l) = by_index else {
            return Ok(ahead);
        };
        // A padded place (index >= l) goes after a real one, whatever its value.
        let end = self.scalar(DType::I32, l as f64)?;
        let a_real = self.bin(BinaryOp::Lt, a.ix, end)?;
        let b_real = self.bin(BinaryOp::Lt, b.ix, end)?;
        let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        let yes = self.konst(Tensor::from_bool(Shape::scalar(), vec![true])?)?;
        let when_b_real = self.add1(Op::Where, &[a_real, ahead, no])?;
        // (Two padded places keep their index order, so the network still sorts.)
        let when_b_pad = self.add1(Op::Where, &[a_real, yes, ahead])?;
        self.add1(Op::Where, &[b_real, when_b_real, when_b_pad])
    }

    /// Whether value `a` beats `b` (is larger, or smaller with `largest` false) and whether
    /// they tie, with NaN greater than every number and equal to NaN (numpy's and PyTorch's
    /// order): the largest first, NaN first; the smallest first, NaN last.
    pub(super) fn beats_or_ties(
        &mut self,
        a: ValueId,
        b: ValueId,
        largest: bool,
    ) -> R<(ValueId, ValueId)> {
        let cmp = if largest { BinaryOp::Gt } else { BinaryOp::Lt };
        let beats = self.bin(cmp, a, b)?;
        let tie = self.bin(BinaryOp::Eq, a, b)?;
        if !self.g.dtype(a).is_float() {
            return Ok((beats, tie));
        }
        let (a_nan, b_nan) = (self.bin(BinaryOp::Ne, a, a)?, self.bin(BinaryOp::Ne, b, b)?);
        let yes = self.konst(Tensor::from_bool(Shape::scalar(), vec![true])?)?;
        let no = self.konst(Tensor::from_bool(Shape::scalar(), vec![false])?)?;
        // Both NaN: a tie. One NaN: it beats the number where the largest come first.
        let both = self.add1(Op::Where, &[a_nan, b_nan, no])?;
        let tie = self.add1(Op::Where, &[both, yes, tie])?;
        let (nan_wins, num_wins) = if largest { (yes, no) } else { (no, yes) };
        let b_num = self.add1(Op::Where, &[b_nan, no, yes])?;
        let a_only = self.add1(Op::Where, &[a_nan, b_num, no])?;
        let a_num = self.add1(Op::Where, &[a_nan, no, yes])?;
        let b_only = self.add1(Op::Where, &[b_nan, a_num, no])?;
        let beats = self.add1(Op::Where, &[a_only, nan_wins, beats])?;
        let beats = self.add1(Op::Where, &[b_only, num_wins, beats])?;
        Ok((beats, tie))
    }

    /// One compare-exchange step along the last axis: element `i` and its partner `i xor j`
    /// each keep the better of the two where `first[i]` (the pair's first place), else the
    /// worse.
    fn exchange(
        &mut self,
        keys: Keys,
        j: usize,
        first: &[bool],
        largest: bool,
        by_index: Option<usize>,
    ) -> R<Keys> {
        let kk = first.len();
        let last = self.shape(keys.v).len() - 1;
        let partner: Vec<f64> = (0..kk).map(|i| (i ^ j) as f64).collect();
        let partner = self.konst(Tensor::from_f64(DType::I64, [kk], &partner))?;
        let other = Keys {
            v: self.add1(Op::Gather { axis: last }, &[keys.v, partner])?,
            ix: self.add1(Op::Gather { axis: last }, &[keys.ix, partner])?,
        };
        let mine_better = self.better(keys, other, largest, by_index)?;
        let first = self.konst(Tensor::from_bool([kk], first.to_vec())?)?;
        let keep = self.bin(BinaryOp::Eq, first, mine_better)?;
        Ok(Keys {
            v: self.add1(Op::Where, &[keep, keys.v, other.v])?,
            ix: self.add1(Op::Where, &[keep, keys.ix, other.ix])?,
        })
    }
}
