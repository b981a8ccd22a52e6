//! Normalizations: BatchNormalization (inference and training mode), LayerNormalization,
//! RMSNormalization, LpNormalization, InstanceNormalization, GroupNormalization,
//! MeanVarianceNormalization and LRN.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{Op, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("LpNormalization", Tensors(|c| c.lp_normalization())),
    ("BatchNormalization", Tensors(|c| c.batch_norm())),
    ("LayerNormalization", Tensors(|c| c.layer_norm())),
    ("RMSNormalization", Tensors(|c| c.rms_norm())),
    ("InstanceNormalization", Tensors(|c| c.group_norm(true))),
    ("GroupNormalization", Tensors(|c| c.group_norm(false))),
    ("MeanVarianceNormalization", Tensors(|c| c.mvn())),
    ("LRN", Tensors(|c| c.lrn())),
];

impl Importer<'_> {
    /// `BatchNormalization`.
    fn batch_norm(&mut self) -> R<Vec<ValueId>> {
        if self.ai("training_mode", 0) != 0 {
            return self.batch_norm_training();
        }
        let epsilon = self.af("epsilon", 1e-5);
        let ins: Vec<ValueId> = (0..5).map(|i| self.inp(i)).collect::<R<_>>()?;
        self.add(Op::BatchNorm { epsilon }, &ins)
    }

    /// `LayerNormalization`.
    fn layer_norm(&mut self) -> R<Vec<ValueId>> {
        let _op = self.op.clone();
        if self.ai("stash_type", 1) != 1 {
            return unsup("stash_type other than float");
        }
        let x = self.inp(0)?;
        let axis = self.axis(self.ai("axis", -1), self.g.shape(x).rank())?;
        let epsilon = self.af("epsilon", 1e-5);
        let mut ins = vec![x, self.inp(1)?];
        if self.has(2) {
            ins.push(self.inp(2)?);
        }
        let y = self.add1(Op::LayerNorm { axis, epsilon }, &ins)?;
        if self.n_outputs < 2 {
            return Ok(vec![y]);
        }
        // The optional Mean and InvStdDev outputs, over the normalized axes (kept).
        let axes: Vec<usize> = (axis..self.g.shape(x).rank()).collect();
        let mean_of = |s: &mut Self, v| {
            s.add1(
                Op::Reduce {
                    op: ReduceOp::Mean,
                    axes: axes.clone(),
                    keepdim: true,
                },
                &[v],
            )
        };
        let mean = mean_of(self, x)?;
        let d = self.add1(Op::Binary(BinaryOp::Sub), &[x, mean])?;
        let d2 = self.add1(Op::Binary(BinaryOp::Mul), &[d, d])?;
        let var = mean_of(self, d2)?;
        let eps = self.scalar(self.g.dtype(x), epsilon as f64)?;
        let ve = self.add1(Op::Binary(BinaryOp::Add), &[var, eps])?;
        let inv = self.add1(Op::Unary(UnaryOp::Rsqrt), &[ve])?;
        Ok(vec![y, mean, inv])
    }

    /// `(x - mean) / sqrt(var + eps)` over `axes` (kept), or with `eps_on_std`
    /// `(x - mean) / (sqrt(var) + eps)` as MeanVarianceNormalization has it.
    fn standardize(
        &mut self,
        x: ValueId,
        axes: Vec<usize>,
        eps: f64,
        eps_on_std: bool,
    ) -> R<ValueId> {
        let dt = self.g.dtype(x);
        let mean = self.mean_over(x, axes.clone())?;
        let d = self.bin(BinaryOp::Sub, x, mean)?;
        let d2 = self.bin(BinaryOp::Mul, d, d)?;
        let var = self.mean_over(d2, axes)?;
        let e = self.scalar(dt, eps)?;
        if eps_on_std {
            let sd = self.un(UnaryOp::Sqrt, var)?;
            let den = self.bin(BinaryOp::Add, sd, e)?;
            return self.bin(BinaryOp::Div, d, den);
        }
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let inv = self.un(UnaryOp::Rsqrt, ve)?;
        self.bin(BinaryOp::Mul, d, inv)
    }

    /// `InstanceNormalization` (`instance`) and `GroupNormalization`: x `[N, C, ...]` as
    /// `[N, groups, rest]` standardized over `rest`, then per-channel scale and bias.
    fn group_norm(&mut self, instance: bool) -> R<Vec<ValueId>> {
        let (x, scale, bias) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let dims = self.shape(x);
        if dims.len() < 2 {
            return bad(format!("input {dims:?} needs a channel dim"));
        }
        let (n, c) = (dims[0], dims[1]);
        let groups = if instance {
            c
        } else {
            self.ai("num_groups", 0).max(0) as usize
        };
        if groups == 0 || c % groups != 0 {
            return bad(format!("{c} channels do not split into {groups} groups"));
        }
        if !instance && self.ai("stash_type", 1) != 1 {
            return unsup("stash_type other than float");
        }
        let rest = dims.iter().product::<usize>() / (n * groups).max(1);
        let xg = self.reshape(x, vec![n, groups, rest])?;
        let y = self.standardize(xg, vec![2], self.af("epsilon", 1e-5) as f64, false)?;
        let y = self.reshape(y, dims.clone())?;
        // Scale and bias per channel: [C, 1, ...] against [N, C, ...].
        let mut cd = vec![c];
        cd.extend(std::iter::repeat_n(1, dims.len() - 2));
        if self.g.shape(scale).numel() != c || self.g.shape(bias).numel() != c {
            return bad(format!(
                "scale {} and bias {} must hold {c} values (one per channel)",
                self.g.shape(scale),
                self.g.shape(bias)
            ));
        }
        let sc = self.reshape(scale, cd.clone())?;
        let bi = self.reshape(bias, cd)?;
        let ys = self.bin(BinaryOp::Mul, y, sc)?;
        self.add(Op::Binary(BinaryOp::Add), &[ys, bi])
    }

    /// `MeanVarianceNormalization` over `axes` (default N, H and W).
    fn mvn(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let rank = self.g.shape(x).rank();
        let axes = self.ais("axes").unwrap_or(vec![0, 2, 3]);
        let axes = self.axes(&axes, rank)?;
        Ok(vec![self.standardize(x, axes, 1e-9, true)?])
    }

    /// `LRN`: `x / (bias + alpha / size * sum of x² over the `size` channels around)^beta`,
    /// the sum an average pool (padding counted) over `[N, 1, C, H*W]`.
    fn lrn(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let size = self.ai("size", 0);
        if dims.len() < 3 || size < 1 {
            return bad(format!(
                "LRN needs [N, C, ...] and size >= 1, got {dims:?} and {size}"
            ));
        }
        let size = size as usize;
        let dt = self.g.dtype(x);
        let (alpha, beta, bias) = (
            self.af("alpha", 1e-4) as f64,
            self.af("beta", 0.75) as f64,
            self.af("bias", 1.0) as f64,
        );
        let (n, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let sq = self.bin(BinaryOp::Mul, x, x)?;
        let sq = self.reshape(sq, vec![n, 1, c, hw])?;
        let before = (size - 1) / 2;
        let pool = Pool2d {
            kernel: [size, 1],
            stride: [1, 1],
            padding: [before, 0, size - 1 - before, 0],
            dilation: [1, 1],
            count_include_pad: true,
        };
        let avg = self.add1(Op::AvgPool2d(pool), &[sq])?;
        let avg = self.reshape(avg, dims)?;
        let a = self.scalar(dt, alpha)?;
        let scaled = self.bin(BinaryOp::Mul, avg, a)?;
        let b = self.scalar(dt, bias)?;
        let base = self.bin(BinaryOp::Add, scaled, b)?;
        let p = self.scalar(dt, beta)?;
        let den = self.bin(BinaryOp::Pow, base, p)?;
        self.add(Op::Binary(BinaryOp::Div), &[x, den])
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

    /// LpNormalization: `x / ||x||_p` along `axis` (p = 1 or 2); a zero norm gives 0.
    pub(super) fn lp_normalization(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("LpNormalization of {dt}"));
        }
        let axis = self.axis_in(self.ai("axis", -1), self.shape(x).len())?;
        let norm = match self.ai("p", 2) {
            1 => {
                let a = self.un(UnaryOp::Abs, x)?;
                self.sum_over(a, vec![axis], true)?
            }
            2 => {
                let sq = self.bin(BinaryOp::Mul, x, x)?;
                let s = self.sum_over(sq, vec![axis], true)?;
                self.un(UnaryOp::Sqrt, s)?
            }
            p => return bad(format!("p = {p} (1 or 2)")),
        };
        let zero = self.scalar(dt, 0.0)?;
        let is_zero = self.bin(BinaryOp::Eq, norm, zero)?;
        let y = self.bin(BinaryOp::Div, x, norm)?;
        Ok(vec![self.add1(Op::Where, &[is_zero, zero, y])?])
    }
}
