//! The recurrent layers RNN, GRU and LSTM, unrolled over the sequence (its length is known at
//! import): the input projection of every step is one MatMul over the whole sequence, each
//! step one `[B, H] x [H, G*H]` MatMul and its gates' elementwise ops, which the planner fuses.
//! `sequence_lens` masks on the device: a batch row past its length keeps its state and writes
//! zeros to `Y` (a reverse pass then starts at each row's last step, as ONNX has it).

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use crate::RecurrentForm;
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("RNN", Tensors(|c| c.recurrent(RecurrentCell::Rnn))),
    (
        "GRU",
        Tensors(|c| {
            let linear_before_reset = c.ai("linear_before_reset", 0) != 0;
            c.recurrent(RecurrentCell::Gru {
                linear_before_reset,
            })
        }),
    ),
    ("LSTM", Tensors(|c| c.recurrent(RecurrentCell::Lstm))),
];

/// At most this many steps are unrolled (each is a few kernels). A layer run as the device
/// loop ([`Op::Recurrence`], up to [`MAX_RECURRENT_HIDDEN`] hidden units) has no such limit.
pub const MAX_RNN_STEPS: usize = 4096;

/// A layer's inputs and attributes, as the device loop takes them.
struct Layer {
    cell: RecurrentCell,
    x: ValueId,
    w: ValueId,
    r: ValueId,
    bias: Option<ValueId>,
    lens: Option<ValueId>,
    h0: Option<ValueId>,
    c0: Option<ValueId>,
    peep: Option<ValueId>,
    clip: Option<f32>,
    steps: usize,
    batch: usize,
    h: usize,
    dt: DType,
}

/// The most `batch x hidden` [`RecurrentForm::Auto`] runs as the device loop.
const LOOP_MAX_ROW_UNITS: usize = 4096;

impl Importer<'_> {
    /// The activations, per direction, with `activation_alpha` and `activation_beta` consumed
    /// in order by the activations that take them (the others use their op's defaults).
    fn rnn_activations(&self, cell: RecurrentCell, dirs: usize) -> R<Vec<Vec<RecurrentAct>>> {
        let defaults = cell.default_acts();
        let per = defaults.len();
        let named: Option<Vec<String>> = self
            .attr("activations")
            .filter(|a| !a.strings.is_empty())
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            });
        let Some(names) = named else {
            return Ok(vec![defaults.to_vec(); dirs]);
        };
        if names.len() != per * dirs {
            return bad(format!(
                "{} activations for {dirs} direction(s), expected {}",
                names.len(),
                per * dirs
            ));
        }
        let floats = |name: &str| {
            self.attr(name)
                .map(|a| a.floats.clone())
                .unwrap_or_default()
                .into_iter()
        };
        let (mut alphas, mut betas) = (floats("activation_alpha"), floats("activation_beta"));
        let mut acts = Vec::new();
        for name in names {
            let mut alpha = |d: f32| alphas.next().unwrap_or(d);
            let mut beta = |d: f32| betas.next().unwrap_or(d);
            acts.push(match name.as_str() {
                "Sigmoid" => RecurrentAct::Sigmoid,
                "Tanh" => RecurrentAct::Tanh,
                "Relu" => RecurrentAct::Relu,
                "Softsign" => RecurrentAct::Softsign,
                "Softplus" => RecurrentAct::Softplus,
                "LeakyRelu" => RecurrentAct::LeakyRelu { alpha: alpha(0.01) },
                "ThresholdedRelu" => RecurrentAct::ThresholdedRelu { alpha: alpha(1.0) },
                "Elu" => RecurrentAct::Elu { alpha: alpha(1.0) },
                "HardSigmoid" => RecurrentAct::HardSigmoid {
                    alpha: alpha(0.2),
                    beta: beta(0.5),
                },
                "Affine" => RecurrentAct::Affine {
                    alpha: alpha(1.0),
                    beta: beta(0.0),
                },
                "ScaledTanh" => RecurrentAct::ScaledTanh {
                    alpha: alpha(1.0),
                    beta: beta(0.0),
                },
                other => return unsup(format!("recurrent activation {other}")),
            });
        }
        Ok(acts.chunks(per).map(|c| c.to_vec()).collect())
    }

    /// `act` of `x` as graph ops (the unrolled form; the loop evaluates it in its kernel).
    fn activate(&mut self, act: RecurrentAct, x: ValueId) -> R<ValueId> {
        let dt = self.g.dtype(x);
        Ok(match act {
            RecurrentAct::Sigmoid => self.un(UnaryOp::Sigmoid, x)?,
            RecurrentAct::Tanh => self.un(UnaryOp::Tanh, x)?,
            RecurrentAct::Relu => self.un(UnaryOp::Relu, x)?,
            RecurrentAct::LeakyRelu { alpha } => self.un(UnaryOp::LeakyRelu { alpha }, x)?,
            RecurrentAct::Softsign => {
                let m = self.un(UnaryOp::Abs, x)?;
                let one = self.scalar(dt, 1.0)?;
                let d = self.bin(BinaryOp::Add, m, one)?;
                self.bin(BinaryOp::Div, x, d)?
            }
            RecurrentAct::Softplus => {
                let e = self.un(UnaryOp::Exp, x)?;
                let one = self.scalar(dt, 1.0)?;
                let s = self.bin(BinaryOp::Add, e, one)?;
                self.un(UnaryOp::Log, s)?
            }
            RecurrentAct::ThresholdedRelu { alpha } => {
                let t = self.scalar(dt, alpha as f64)?;
                let zero = self.scalar(dt, 0.0)?;
                let above = self.bin(BinaryOp::Gt, x, t)?;
                self.add1(Op::Where, &[above, x, zero])?
            }
            RecurrentAct::Elu { alpha } => {
                let e = self.un(UnaryOp::Exp, x)?;
                let one = self.scalar(dt, 1.0)?;
                let em = self.bin(BinaryOp::Sub, e, one)?;
                let al = self.scalar(dt, alpha as f64)?;
                let neg = self.bin(BinaryOp::Mul, em, al)?;
                let zero = self.scalar(dt, 0.0)?;
                let below = self.bin(BinaryOp::Lt, x, zero)?;
                self.add1(Op::Where, &[below, neg, x])?
            }
            RecurrentAct::ScaledTanh { alpha, beta } => {
                let b = self.scalar(dt, beta as f64)?;
                let xb = self.bin(BinaryOp::Mul, x, b)?;
                let t = self.un(UnaryOp::Tanh, xb)?;
                let a = self.scalar(dt, alpha as f64)?;
                self.bin(BinaryOp::Mul, t, a)?
            }
            // HardSigmoid clips alpha * x + beta to [0, 1]; Affine does not.
            RecurrentAct::HardSigmoid { alpha, beta } | RecurrentAct::Affine { alpha, beta } => {
                let a = self.scalar(dt, alpha as f64)?;
                let b = self.scalar(dt, beta as f64)?;
                let ax = self.bin(BinaryOp::Mul, x, a)?;
                let y = self.bin(BinaryOp::Add, ax, b)?;
                if matches!(act, RecurrentAct::HardSigmoid { .. }) {
                    self.un(UnaryOp::Clip { min: 0.0, max: 1.0 }, y)?
                } else {
                    y
                }
            }
        })
    }

    fn clipped(&mut self, x: ValueId, clip: Option<f32>) -> R<ValueId> {
        match clip {
            Some(c) => self.un(UnaryOp::Clip { min: -c, max: c }, x),
            None => Ok(x),
        }
    }

    /// `RNN`, `GRU` and `LSTM`.
    fn recurrent(&mut self, cell: RecurrentCell) -> R<Vec<ValueId>> {
        let (x, w, r) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let opt = |s: &Self, i: usize| {
            if s.has(i) {
                s.inp(i).map(Some)
            } else {
                Ok(None)
            }
        };
        let (bias, lens, h0) = (opt(self, 3)?, opt(self, 4)?, opt(self, 5)?);
        let (c0, peep) = if cell == RecurrentCell::Lstm {
            (opt(self, 6)?, opt(self, 7)?)
        } else {
            (None, None)
        };
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return bad(format!("recurrent layer over {dt}"));
        }
        if cell == RecurrentCell::Lstm && self.ai("input_forget", 0) != 0 {
            return unsup("LSTM with input_forget = 1");
        }
        let layout = self.ai("layout", 0);
        let x = if layout == 1 {
            self.add1(
                Op::Transpose {
                    perm: vec![1, 0, 2],
                },
                &[x],
            )?
        } else {
            x
        };
        let xd = self.shape(x);
        let (wd, rd) = (self.shape(w), self.shape(r));
        let g = cell.gates();
        if xd.len() != 3 || wd.len() != 3 || rd.len() != 3 || wd[1] % g != 0 {
            return bad(format!(
                "X {xd:?}, W {wd:?} and R {rd:?} do not fit a {}-gate layer",
                g
            ));
        }
        let (steps, batch, input) = (xd[0], xd[1], xd[2]);
        if steps == 0 {
            return bad(format!("X {xd:?} has no steps"));
        }
        let h = wd[1] / g;
        if self.ai("hidden_size", h as i64) != h as i64
            || wd[2] != input
            || rd[1] != g * h
            || rd[2] != h
        {
            return bad(format!(
                "hidden_size {} does not fit W {wd:?} and R {rd:?} for X {xd:?}",
                self.ai("hidden_size", h as i64)
            ));
        }
        let dirs: Vec<bool> = match self.astr("direction", "forward").as_str() {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            d => return bad(format!("direction '{d}'")),
        };
        if wd[0] != dirs.len() || rd[0] != dirs.len() {
            return bad(format!(
                "W {wd:?} and R {rd:?} for {} direction(s)",
                dirs.len()
            ));
        }
        let acts = self.rnn_activations(cell, dirs.len())?;
        let clip = self.attr("clip").map(|a| a.f);
        if let Some(c) = clip.filter(|c| c.is_nan() || *c <= 0.0) {
            return bad(format!("clip {c}: a cell clip threshold must be positive"));
        }
        // Initial states as [D, B, H].
        let to_dbh = |s: &mut Self, v: Option<ValueId>| -> R<Option<ValueId>> {
            match v {
                Some(v) if layout == 1 => Ok(Some(s.add1(
                    Op::Transpose {
                        perm: vec![1, 0, 2],
                    },
                    &[v],
                )?)),
                v => Ok(v),
            }
        };
        let (h0, c0) = (to_dbh(self, h0)?, to_dbh(self, c0)?);
        let as_loop = match self.opts.recurrence {
            RecurrentForm::Auto => batch * h <= LOOP_MAX_ROW_UNITS || steps > MAX_RNN_STEPS,
            RecurrentForm::Loop => true,
            RecurrentForm::Unrolled => false,
        };
        if h <= MAX_RECURRENT_HIDDEN && as_loop {
            let layer = Layer {
                cell,
                x,
                w,
                r,
                bias,
                lens,
                h0,
                c0,
                peep,
                clip,
                steps,
                batch,
                h,
                dt,
            };
            let (ys, hs, cs) = self.recurrent_loops(&layer, &dirs, &acts)?;
            return self.recurrent_outputs(cell, layout, ys, hs, cs);
        }
        if steps > MAX_RNN_STEPS {
            return unsup(format!(
                "a sequence of {steps} steps (at most {MAX_RNN_STEPS}: past a hidden size of {MAX_RECURRENT_HIDDEN} the layer is unrolled)"
            ));
        }
        // Each row's length as i32, [B, 1], to compare with the step (in the layer's float
        // dtype an f16 step past 2,048 would round).
        let lens = match lens {
            Some(l) => {
                let li = self.cast(l, DType::I32)?;
                Some(self.reshape(li, vec![batch, 1])?)
            }
            None => None,
        };
        let zeros = self.konst(Tensor::from_f64(dt, [batch, h], &vec![0.0; batch * h]))?;
        let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        for (d, &rev) in dirs.iter().enumerate() {
            let a = &acts[d];
            let wt = self.index_axis(w, 0, d)?;
            let wt = self.add1(Op::Transpose { perm: vec![1, 0] }, &[wt])?;
            let rt = self.index_axis(r, 0, d)?;
            let rt = self.add1(Op::Transpose { perm: vec![1, 0] }, &[rt])?;
            // The input projection of every step at once: [T, B, G*H].
            let mut xw = self.add1(Op::MatMul, &[x, wt])?;
            let mut rb = None;
            if let Some(b) = bias {
                let bd = self.index_axis(b, 0, d)?;
                let bd = self.reshape(bd, vec![2, g * h])?;
                let wb = self.index_axis(bd, 0, 0)?;
                xw = self.bin(BinaryOp::Add, xw, wb)?;
                rb = Some(self.index_axis(bd, 0, 1)?);
            }
            let mut hp = match h0 {
                Some(v) => self.index_axis(v, 0, d)?,
                None => zeros,
            };
            let mut cp = match c0 {
                Some(v) => self.index_axis(v, 0, d)?,
                None => zeros,
            };
            let pd = match peep {
                Some(p) => {
                    let p = self.index_axis(p, 0, d)?;
                    Some(self.reshape(p, vec![3, h])?)
                }
                None => None,
            };
            let mut ys_d = vec![None; steps];
            let order: Vec<usize> = if rev {
                (0..steps).rev().collect()
            } else {
                (0..steps).collect()
            };
            for t in order {
                let xt = self.index_axis(xw, 0, t)?;
                let mut hr = self.add1(Op::MatMul, &[hp, rt])?;
                if let Some(rb) = rb {
                    hr = self.bin(BinaryOp::Add, hr, rb)?;
                }
                let gate = |s: &mut Self, k: usize| -> R<ValueId> {
                    let xk = s.slice_axis(xt, 1, k * h, h, 1)?;
                    let hk = s.slice_axis(hr, 1, k * h, h, 1)?;
                    s.bin(BinaryOp::Add, xk, hk)
                };
                let (hn, cn) = match cell {
                    RecurrentCell::Rnn => {
                        let z = gate(self, 0)?;
                        let z = self.clipped(z, clip)?;
                        (self.activate(a[0], z)?, cp)
                    }
                    RecurrentCell::Gru {
                        linear_before_reset: lbr,
                    } => {
                        let z = gate(self, 0)?;
                        let z = self.clipped(z, clip)?;
                        let z = self.activate(a[0], z)?;
                        let rg = gate(self, 1)?;
                        let rg = self.clipped(rg, clip)?;
                        let rg = self.activate(a[0], rg)?;
                        let xh = self.slice_axis(xt, 1, 2 * h, h, 1)?;
                        let rec = if lbr {
                            let hh = self.slice_axis(hr, 1, 2 * h, h, 1)?;
                            self.bin(BinaryOp::Mul, rg, hh)?
                        } else {
                            // (r * h) R_h + Rb_h.
                            let rh = self.bin(BinaryOp::Mul, rg, hp)?;
                            let rth = self.slice_axis(rt, 1, 2 * h, h, 1)?;
                            let mut m = self.add1(Op::MatMul, &[rh, rth])?;
                            if let Some(rb) = rb {
                                let rbh = self.reshape(rb, vec![1, g * h])?;
                                let rbh = self.slice_axis(rbh, 1, 2 * h, h, 1)?;
                                m = self.bin(BinaryOp::Add, m, rbh)?;
                            }
                            m
                        };
                        let pre = self.bin(BinaryOp::Add, xh, rec)?;
                        let pre = self.clipped(pre, clip)?;
                        let cand = self.activate(a[1], pre)?;
                        // (1 - z) * cand + z * h = cand + z * (h - cand)
                        let diff = self.bin(BinaryOp::Sub, hp, cand)?;
                        let zd = self.bin(BinaryOp::Mul, z, diff)?;
                        (self.bin(BinaryOp::Add, cand, zd)?, cp)
                    }
                    RecurrentCell::Lstm => {
                        // Gates i, o, f, c; peepholes i, o, f.
                        let peep_of = |s: &mut Self, k: usize, c: ValueId| -> R<Option<ValueId>> {
                            match pd {
                                Some(p) => {
                                    let pk = s.index_axis(p, 0, k)?;
                                    Ok(Some(s.bin(BinaryOp::Mul, pk, c)?))
                                }
                                None => Ok(None),
                            }
                        };
                        let mut gi = gate(self, 0)?;
                        if let Some(pi) = peep_of(self, 0, cp)? {
                            gi = self.bin(BinaryOp::Add, gi, pi)?;
                        }
                        let gi = self.clipped(gi, clip)?;
                        let i = self.activate(a[0], gi)?;
                        let mut gf = gate(self, 2)?;
                        if let Some(pf) = peep_of(self, 2, cp)? {
                            gf = self.bin(BinaryOp::Add, gf, pf)?;
                        }
                        let gf = self.clipped(gf, clip)?;
                        let f = self.activate(a[0], gf)?;
                        let gc = gate(self, 3)?;
                        let gc = self.clipped(gc, clip)?;
                        let cc = self.activate(a[1], gc)?;
                        let fc = self.bin(BinaryOp::Mul, f, cp)?;
                        let ic = self.bin(BinaryOp::Mul, i, cc)?;
                        let cn = self.bin(BinaryOp::Add, fc, ic)?;
                        let mut go = gate(self, 1)?;
                        if let Some(po) = peep_of(self, 1, cn)? {
                            go = self.bin(BinaryOp::Add, go, po)?;
                        }
                        let go = self.clipped(go, clip)?;
                        let o = self.activate(a[0], go)?;
                        let hc = self.activate(a[2], cn)?;
                        (self.bin(BinaryOp::Mul, o, hc)?, cn)
                    }
                };
                let (hn, cn, yt) = match lens {
                    Some(l) => {
                        let tv = self.scalar(DType::I32, t as f64)?;
                        let live = self.bin(BinaryOp::Lt, tv, l)?;
                        let hn = self.add1(Op::Where, &[live, hn, hp])?;
                        let cn = self.add1(Op::Where, &[live, cn, cp])?;
                        let yt = self.add1(Op::Where, &[live, hn, zeros])?;
                        (hn, cn, yt)
                    }
                    None => (hn, cn, hn),
                };
                hp = hn;
                cp = cn;
                ys_d[t] = Some(yt);
            }
            let parts: Vec<ValueId> = ys_d
                .into_iter()
                .map(|y| match y {
                    Some(y) => self.reshape(y, vec![1, 1, batch, h]),
                    None => bad("a step of the sequence was not computed"),
                })
                .collect::<R<_>>()?;
            ys.push(if parts.len() == 1 {
                parts[0]
            } else {
                self.add1(Op::Concat { axis: 0 }, &parts)?
            });
            hs.push(self.reshape(hp, vec![1, batch, h])?);
            cs.push(self.reshape(cp, vec![1, batch, h])?);
        }
        self.recurrent_outputs(cell, layout, ys, hs, cs)
    }

    /// ONNX's outputs from each direction's `Y [T, 1, B, H]`, `Y_h` and `Y_c` (`[1, B, H]`):
    /// directions concatenated, then put in `layout`.
    fn recurrent_outputs(
        &mut self,
        cell: RecurrentCell,
        layout: i64,
        ys: Vec<ValueId>,
        hs: Vec<ValueId>,
        cs: Vec<ValueId>,
    ) -> R<Vec<ValueId>> {
        let cat = |s: &mut Self, v: Vec<ValueId>, axis: usize| -> R<ValueId> {
            if v.len() == 1 {
                Ok(v[0])
            } else {
                s.add1(Op::Concat { axis }, &v)
            }
        };
        let (swap, states) = (vec![1, 0, 2], vec![2, 0, 1, 3]);
        let mut outs = vec![cat(self, ys, 1)?, cat(self, hs, 0)?];
        if cell == RecurrentCell::Lstm {
            outs.push(cat(self, cs, 0)?);
        }
        if layout == 1 {
            for (k, o) in outs.iter_mut().enumerate() {
                let perm = if k == 0 { states.clone() } else { swap.clone() };
                *o = self.add1(Op::Transpose { perm }, &[*o])?;
            }
        }
        Ok(outs)
    }

    /// Each direction as one [`Op::Recurrence`]: the input projection of every step (biases
    /// added) one MatMul, then the device loop over the steps. Returns each direction's `Y`
    /// `[T, 1, B, H]`, `Y_h` and `Y_c` `[1, B, H]`.
    fn recurrent_loops(
        &mut self,
        l: &Layer,
        dirs: &[bool],
        acts: &[Vec<RecurrentAct>],
    ) -> R<(Vec<ValueId>, Vec<ValueId>, Vec<ValueId>)> {
        let (g, h, b, t, dt) = (l.cell.gates(), l.h, l.batch, l.steps, l.dt);
        let lens_i = match l.lens {
            Some(v) => self.cast(v, DType::I32)?,
            None => self.konst(Tensor::from_i32([b], vec![t as i32; b])?)?,
        };
        // Y is zero at a row's steps past its length: live[t, b, 0] = t < lens[b], in i32 as
        // the loop compares them.
        let live = match l.lens {
            Some(_) => {
                let lr = self.reshape(lens_i, vec![1, b, 1])?;
                let ts: Vec<i32> = (0..t as i32).collect();
                let tv = self.konst(Tensor::from_i32([t, 1, 1], ts)?)?;
                Some(self.bin(BinaryOp::Lt, tv, lr)?)
            }
            None => None,
        };
        let zeros_bh = || Tensor::from_f64(dt, [b, h], &vec![0.0; b * h]);
        let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        for (d, &reverse) in dirs.iter().enumerate() {
            let wt = self.index_axis(l.w, 0, d)?;
            let wt = self.add1(Op::Transpose { perm: vec![1, 0] }, &[wt])?;
            let mut xw = self.add1(Op::MatMul, &[l.x, wt])?;
            let rd = self.index_axis(l.r, 0, d)?;
            let rd = self.add1(Op::Transpose { perm: vec![1, 0] }, &[rd])?;
            // R's bias adds outside the gates, but for a linear-before-reset GRU's h gate,
            // which the reset gate multiplies: that part goes to the loop.
            let mut rbh = None;
            if let Some(bias) = l.bias {
                let bd = self.index_axis(bias, 0, d)?;
                let bd = self.reshape(bd, vec![2, g * h])?;
                let wb = self.index_axis(bd, 0, 0)?;
                let rb = self.index_axis(bd, 0, 1)?;
                let rb_out = if l.cell
                    == (RecurrentCell::Gru {
                        linear_before_reset: true,
                    }) {
                    let keep: Vec<f64> = (0..g * h).map(|i| (i < 2 * h) as u8 as f64).collect();
                    let keep = self.konst(Tensor::from_f64(dt, [g * h], &keep))?;
                    let rbr = self.reshape(rb, vec![1, g * h])?;
                    rbh = Some(self.slice_axis(rbr, 1, 2 * h, h, 1)?);
                    self.bin(BinaryOp::Mul, rb, keep)?
                } else {
                    rb
                };
                let both = self.bin(BinaryOp::Add, wb, rb_out)?;
                xw = self.bin(BinaryOp::Add, xw, both)?;
            }
            let h0 = match l.h0 {
                Some(v) => self.index_axis(v, 0, d)?,
                None => self.konst(zeros_bh())?,
            };
            let state0 = if l.cell == RecurrentCell::Lstm {
                let c0 = match l.c0 {
                    Some(v) => self.index_axis(v, 0, d)?,
                    None => self.konst(zeros_bh())?,
                };
                self.add1(Op::Concat { axis: 1 }, &[h0, c0])?
            } else {
                h0
            };
            let mut ins = vec![xw, rd, state0, lens_i];
            match l.cell {
                RecurrentCell::Rnn => {}
                RecurrentCell::Gru { .. } => ins.push(match rbh {
                    Some(v) => v,
                    None => self.konst(Tensor::from_f64(dt, [1, h], &vec![0.0; h]))?,
                }),
                RecurrentCell::Lstm => ins.push(match l.peep {
                    Some(p) => {
                        let p = self.index_axis(p, 0, d)?;
                        self.reshape(p, vec![3, h])?
                    }
                    None => self.konst(Tensor::from_f64(dt, [3, h], &vec![0.0; 3 * h]))?,
                }),
            }
            let op = Op::Recurrence(Recurrence {
                cell: l.cell,
                reverse,
                clip: l.clip,
                acts: acts[d].clone(),
            });
            let states = self.add1(op, &ins)?;
            let hpart = if l.cell == RecurrentCell::Lstm {
                self.slice_axis(states, 2, 0, h, 1)?
            } else {
                states
            };
            let y = match live {
                Some(live) => {
                    let zero = self.scalar(dt, 0.0)?;
                    self.add1(Op::Where, &[live, hpart, zero])?
                }
                None => hpart,
            };
            ys.push(self.reshape(y, vec![t, 1, b, h])?);
            // The state after the last step run: step T - 1 forward, step 0 in reverse.
            let last = if reverse { 0 } else { t - 1 };
            let fin = self.slice_axis(states, 0, last, 1, 1)?;
            let yh = self.slice_axis(fin, 2, 0, h, 1)?;
            hs.push(self.reshape(yh, vec![1, b, h])?);
            if l.cell == RecurrentCell::Lstm {
                let yc = self.slice_axis(fin, 2, h, h, 1)?;
                cs.push(self.reshape(yc, vec![1, b, h])?);
            }
        }
        Ok((ys, hs, cs))
    }
}
