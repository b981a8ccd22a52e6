//! Activations (LeakyRelu, Gelu, Clip, Elu, Softplus, Mish, Swish, ...), Softmax, LogSoftmax and
//! Hardmax, Dropout, and the losses NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("LeakyRelu", Tensors(|c| c.leaky_relu())),
    ("Gelu", Tensors(|c| c.gelu())),
    ("Softsign", Tensors(|c| c.softsign())),
    ("HardSigmoid", Tensors(|c| c.hard_sigmoid())),
    ("Clip", Tensors(|c| c.clip())),
    ("PRelu", Tensors(|c| c.prelu())),
    ("Elu", Tensors(|c| c.elu())),
    ("Selu", Tensors(|c| c.elu())),
    ("Celu", Tensors(|c| c.elu())),
    ("ThresholdedRelu", Tensors(|c| c.thresholded_relu())),
    ("Softplus", Tensors(|c| c.softplus())),
    ("Shrink", Tensors(|c| c.shrink())),
    ("Mish", Tensors(|c| c.softplus())),
    ("Dropout", Tensors(|c| c.dropout())),
    ("Hardmax", Tensors(|c| c.hardmax())),
    ("Swish", Tensors(|c| c.swish())),
    ("Softmax", Tensors(|c| c.softmax())),
    ("LogSoftmax", Tensors(|c| c.softmax())),
    ("NegativeLogLikelihoodLoss", Tensors(|c| c.nll_loss())),
    (
        "SoftmaxCrossEntropyLoss",
        Tensors(|c| c.softmax_cross_entropy()),
    ),
];

impl Importer<'_> {
    /// `Shrink`: `x + bias` below `-lambd`, `x - bias` above `lambd`, else 0.
    fn shrink(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let (lambd, bias) = (self.af("lambd", 0.5) as f64, self.af("bias", 0.0) as f64);
        let (lo, hi) = (self.scalar(dt, -lambd)?, self.scalar(dt, lambd)?);
        let (bv, zero) = (self.scalar(dt, bias)?, self.scalar(dt, 0.0)?);
        let below = self.bin(BinaryOp::Lt, x, lo)?;
        let above = self.bin(BinaryOp::Gt, x, hi)?;
        let up = self.bin(BinaryOp::Add, x, bv)?;
        let down = self.bin(BinaryOp::Sub, x, bv)?;
        let mid = self.add1(Op::Where, &[above, down, zero])?;
        self.add(Op::Where, &[below, up, mid])
    }

    /// `LeakyRelu`.
    fn leaky_relu(&mut self) -> R<Vec<ValueId>> {
        let alpha = self.af("alpha", 0.01);
        self.unary(UnaryOp::LeakyRelu { alpha })
    }

    /// `Gelu`.
    fn gelu(&mut self) -> R<Vec<ValueId>> {
        match self.astr("approximate", "none").as_str() {
            "none" => self.unary(UnaryOp::Gelu),
            "tanh" => self.unary(UnaryOp::GeluTanh),
            other => unsup(format!("approximate = '{other}'")),
        }
    }

    /// `Softsign`.
    fn softsign(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let a = self.add1(Op::Unary(UnaryOp::Abs), &[x])?;
        let one = self.scalar(self.g.dtype(x), 1.0)?;
        let d = self.add1(Op::Binary(BinaryOp::Add), &[a, one])?;
        self.add(Op::Binary(BinaryOp::Div), &[x, d])
    }

    /// `HardSigmoid`.
    fn hard_sigmoid(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let (alpha, beta) = (self.af("alpha", 0.2), self.af("beta", 0.5));
        let a = self.scalar(dt, alpha as f64)?;
        let b = self.scalar(dt, beta as f64)?;
        let y = self.add1(Op::Binary(BinaryOp::Mul), &[x, a])?;
        let y = self.add1(Op::Binary(BinaryOp::Add), &[y, b])?;
        self.add(Op::Unary(UnaryOp::Clip { min: 0.0, max: 1.0 }), &[y])
    }

    /// `Clip`.
    fn clip(&mut self) -> R<Vec<ValueId>> {
        let opset = self.opset;
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if dt == DType::Bool {
            return bad("Clip of bool");
        }
        if !dt.is_float() {
            // Integers: Max with the lower bound, then Min with the upper one (bounds
            // of the input's dtype, absent ones skipped).
            let mut y = x;
            for (i, b) in [(1, BinaryOp::Max), (2, BinaryOp::Min)] {
                if opset >= 11 && self.has(i) {
                    let t = self.const_in(i)?;
                    if t.numel() != 1 {
                        return bad(format!("input {i} must hold one value"));
                    }
                    let v = self.scalar(dt, t.to_f64_vec()[0])?;
                    y = self.add1(Op::Binary(b), &[y, v])?;
                }
            }
            return Ok(vec![y]);
        }
        let (mut min, mut max) = (f32::NEG_INFINITY, f32::INFINITY);
        if opset < 11 {
            min = self.af("min", min);
            max = self.af("max", max);
        } else {
            if self.has(1) {
                min = self
                    .const_in(1)?
                    .to_f64_vec()
                    .first()
                    .copied()
                    .unwrap_or(min as f64) as f32;
            }
            if self.has(2) {
                max = self
                    .const_in(2)?
                    .to_f64_vec()
                    .first()
                    .copied()
                    .unwrap_or(max as f64) as f32;
            }
        }
        self.add(Op::Unary(UnaryOp::Clip { min, max }), &[x])
    }

    /// `PRelu`.
    fn prelu(&mut self) -> R<Vec<ValueId>> {
        let (x, slope) = (self.inp(0)?, self.inp(1)?);
        let zero = self.scalar(self.g.dtype(x), 0.0)?;
        let neg = self.add1(Op::Binary(BinaryOp::Lt), &[x, zero])?;
        let sx = self.add1(Op::Binary(BinaryOp::Mul), &[x, slope])?;
        self.add(Op::Where, &[neg, sx, x])
    }

    /// `Elu`, `Selu`, `Celu`.
    fn elu(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let (alpha, gamma) = match op.as_str() {
            "Elu" => (self.af("alpha", 1.0), 1.0),
            "Selu" => (self.af("alpha", 1.673_263_2), self.af("gamma", 1.050_701)),
            _ => (self.af("alpha", 1.0), 1.0),
        };
        // alpha * (exp(x / a) - 1) below zero (a = alpha for Celu, else 1), x above.
        let zero = self.scalar(dt, 0.0)?;
        let one = self.scalar(dt, 1.0)?;
        let al = self.scalar(dt, alpha as f64)?;
        let xs = if op == "Celu" {
            self.add1(Op::Binary(BinaryOp::Div), &[x, al])?
        } else {
            x
        };
        let e = self.add1(Op::Unary(UnaryOp::Exp), &[xs])?;
        let em1 = self.add1(Op::Binary(BinaryOp::Sub), &[e, one])?;
        let neg = self.add1(Op::Binary(BinaryOp::Mul), &[em1, al])?;
        let pos = self.add1(Op::Binary(BinaryOp::Gt), &[x, zero])?;
        let y = self.add1(Op::Where, &[pos, x, neg])?;
        if op == "Selu" {
            let g = self.scalar(dt, gamma as f64)?;
            self.add(Op::Binary(BinaryOp::Mul), &[y, g])
        } else {
            Ok(vec![y])
        }
    }

    /// `ThresholdedRelu`.
    fn thresholded_relu(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let a = self.scalar(dt, self.af("alpha", 1.0) as f64)?;
        let zero = self.scalar(dt, 0.0)?;
        let above = self.add1(Op::Binary(BinaryOp::Gt), &[x, a])?;
        self.add(Op::Where, &[above, x, zero])
    }

    /// `Softplus`, `Mish`.
    fn softplus(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        // softplus(x) = log1p(exp(x)), with Kahan's log1p (log(u) * y / (u - 1), u = 1 + y)
        // so it stays accurate where exp(x) is tiny, and x itself above 20.
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let (one, zero, twenty) = (
            self.scalar(dt, 1.0)?,
            self.scalar(dt, 0.0)?,
            self.scalar(dt, 20.0)?,
        );
        let y = self.add1(Op::Unary(UnaryOp::Exp), &[x])?;
        let u = self.add1(Op::Binary(BinaryOp::Add), &[y, one])?;
        let lu = self.add1(Op::Unary(UnaryOp::Log), &[u])?;
        let num = self.add1(Op::Binary(BinaryOp::Mul), &[lu, y])?;
        let den = self.add1(Op::Binary(BinaryOp::Sub), &[u, one])?;
        let q = self.add1(Op::Binary(BinaryOp::Div), &[num, den])?;
        let exact = self.add1(Op::Binary(BinaryOp::Eq), &[den, zero])?;
        let l1p = self.add1(Op::Where, &[exact, y, q])?;
        let big = self.add1(Op::Binary(BinaryOp::Gt), &[x, twenty])?;
        let sp = self.add1(Op::Where, &[big, x, l1p])?;
        if op == "Mish" {
            let t = self.add1(Op::Unary(UnaryOp::Tanh), &[sp])?;
            self.add(Op::Binary(BinaryOp::Mul), &[x, t])
        } else {
            Ok(vec![sp])
        }
    }

    /// `Softmax`, `LogSoftmax`.
    fn softmax(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let opset = self.opset;
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let rank = dims.len();
        let y = if opset < 13 {
            // Softmax over the 2-D coercion [prod(dims[..axis]), prod(dims[axis..])].
            let a = self.axis(self.ai("axis", 1), rank)?;
            let outer: usize = dims[..a].iter().product();
            let inner: usize = dims[a..].iter().product();
            let x2 = self.reshape(x, vec![outer, inner])?;
            let s = self.add1(Op::Softmax { axis: 1 }, &[x2])?;
            self.reshape(s, dims)?
        } else {
            let axis = self.axis(self.ai("axis", -1), rank)?;
            self.add1(Op::Softmax { axis }, &[x])?
        };
        if op == "LogSoftmax" {
            self.add(Op::Unary(UnaryOp::Log), &[y])
        } else {
            Ok(vec![y])
        }
    }

    /// Optional input `i`: None where the node leaves it out.
    fn opt_inp(&self, i: usize) -> R<Option<ValueId>> {
        if self.has(i) {
            Ok(Some(self.inp(i)?))
        } else {
            Ok(None)
        }
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

    /// Hardmax (opset 13): 1 at the first maximum along `axis`, 0 elsewhere.
    pub(super) fn hardmax(&mut self) -> R<Vec<ValueId>> {
        if self.opset < 13 {
            return unsup("Hardmax before opset 13 (2-D coercion)");
        }
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let dt = self.g.dtype(x);
        let axis = self.axis_in(self.ai("axis", -1), dims.len())?;
        let arg = self.add1(
            Op::ArgReduce {
                max: true,
                axis,
                keepdim: true,
                last: false,
            },
            &[x],
        )?;
        let mut rd = vec![1; dims.len()];
        rd[axis] = dims[axis];
        let r = self.arange_i64(dims[axis], rd)?;
        let hit = self.bin(BinaryOp::Eq, arg, r)?;
        Ok(vec![self.cast(hit, dt)?])
    }

    /// Swish: `x * sigmoid(alpha * x)`.
    pub(super) fn swish(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        let a = self.scalar(dt, self.af("alpha", 1.0) as f64)?;
        let ax = self.bin(BinaryOp::Mul, x, a)?;
        let s = self.un(UnaryOp::Sigmoid, ax)?;
        Ok(vec![self.bin(BinaryOp::Mul, x, s)?])
    }

    /// Dropout at inference, or in training mode with a ratio of 0: the input, and a mask of
    /// all true.
    pub(super) fn dropout(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let training =
            (self.has(2) && self.const_ints(2)? != [0]) || self.ai("training_mode", 0) != 0;
        if training {
            let ratio = if self.has(1) {
                self.const_in(1)?.to_f64_vec()
            } else {
                vec![0.5]
            };
            if ratio != [0.0] {
                return unsup("training mode with a ratio above 0 (random)");
            }
        }
        let mut outs = vec![x];
        if self.n_outputs > 1 {
            outs.push(self.all_bool_like(x, true)?);
        }
        Ok(outs)
    }
}
