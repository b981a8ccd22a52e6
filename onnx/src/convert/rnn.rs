//! The recurrent layers RNN, GRU and LSTM, unrolled over the sequence (its length is known at
//! import): the input projection of every step is one MatMul over the whole sequence, each
//! step one `[B, H] x [H, G*H]` MatMul and its gates' elementwise ops, which the planner fuses.
//! `sequence_lens` masks on the device: a batch row past its length keeps its state and writes
//! zeros to `Y` (a reverse pass then starts at each row's last step, as ONNX has it).

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("RNN", Tensors(|c| c.recurrent(Cell::Rnn))),
    ("GRU", Tensors(|c| c.recurrent(Cell::Gru))),
    ("LSTM", Tensors(|c| c.recurrent(Cell::Lstm))),
];

/// At most this many steps are unrolled (each is a few kernels).
pub const MAX_RNN_STEPS: usize = 4096;

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    /// Gates per step, and the activations per direction (f, g, h as ONNX names them).
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }

    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// One activation with its parameters.
#[derive(Clone)]
struct Act {
    name: String,
    alpha: f32,
    beta: f32,
}

impl Importer<'_> {
    /// The activations, per direction, with `activation_alpha` and `activation_beta` consumed
    /// in order by the activations that take them (the others use their op's defaults).
    fn rnn_activations(&self, cell: Cell, dirs: usize) -> R<Vec<Vec<Act>>> {
        let per = cell.default_activations().len();
        let names: Vec<String> = match self.attr("activations") {
            Some(a) if !a.strings.is_empty() => a
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            _ => (0..dirs)
                .flat_map(|_| cell.default_activations().iter().map(|s| s.to_string()))
                .collect(),
        };
        if names.len() != per * dirs {
            return bad(format!(
                "{} activations for {dirs} direction(s), expected {}",
                names.len(),
                per * dirs
            ));
        }
        let alphas = self
            .attr("activation_alpha")
            .map(|a| a.floats.clone())
            .unwrap_or_default();
        let betas = self
            .attr("activation_beta")
            .map(|a| a.floats.clone())
            .unwrap_or_default();
        let (mut ai, mut bi) = (0, 0);
        let mut acts = Vec::new();
        for name in names {
            let (da, db, ta, tb) = match name.as_str() {
                "Sigmoid" | "Tanh" | "Relu" | "Softsign" | "Softplus" => (0.0, 0.0, false, false),
                "LeakyRelu" => (0.01, 0.0, true, false),
                "ThresholdedRelu" | "Elu" => (1.0, 0.0, true, false),
                "HardSigmoid" => (0.2, 0.5, true, true),
                "Affine" | "ScaledTanh" => (1.0, 0.0, true, true),
                other => return unsup(format!("recurrent activation {other}")),
            };
            let take = |list: &[f32], i: &mut usize, d: f32, takes: bool| {
                if takes && *i < list.len() {
                    *i += 1;
                    list[*i - 1]
                } else {
                    d
                }
            };
            let alpha = take(&alphas, &mut ai, da, ta);
            let beta = take(&betas, &mut bi, db, tb);
            acts.push(Act { name, alpha, beta });
        }
        Ok(acts.chunks(per).map(|c| c.to_vec()).collect())
    }

    fn activate(&mut self, a: &Act, x: ValueId) -> R<ValueId> {
        let dt = self.g.dtype(x);
        let (al, be) = (a.alpha as f64, a.beta as f64);
        Ok(match a.name.as_str() {
            "Sigmoid" => self.un(UnaryOp::Sigmoid, x)?,
            "Tanh" => self.un(UnaryOp::Tanh, x)?,
            "Relu" => self.un(UnaryOp::Relu, x)?,
            "LeakyRelu" => self.un(UnaryOp::LeakyRelu { alpha: a.alpha }, x)?,
            "Softsign" => {
                let m = self.un(UnaryOp::Abs, x)?;
                let one = self.scalar(dt, 1.0)?;
                let d = self.bin(BinaryOp::Add, m, one)?;
                self.bin(BinaryOp::Div, x, d)?
            }
            "Softplus" => {
                let e = self.un(UnaryOp::Exp, x)?;
                let one = self.scalar(dt, 1.0)?;
                let s = self.bin(BinaryOp::Add, e, one)?;
                self.un(UnaryOp::Log, s)?
            }
            "ThresholdedRelu" => {
                let t = self.scalar(dt, al)?;
                let zero = self.scalar(dt, 0.0)?;
                let above = self.bin(BinaryOp::Gt, x, t)?;
                self.add1(Op::Where, &[above, x, zero])?
            }
            "Elu" => {
                let e = self.un(UnaryOp::Exp, x)?;
                let one = self.scalar(dt, 1.0)?;
                let em = self.bin(BinaryOp::Sub, e, one)?;
                let al = self.scalar(dt, al)?;
                let neg = self.bin(BinaryOp::Mul, em, al)?;
                let zero = self.scalar(dt, 0.0)?;
                let below = self.bin(BinaryOp::Lt, x, zero)?;
                self.add1(Op::Where, &[below, neg, x])?
            }
            "ScaledTanh" => {
                let b = self.scalar(dt, be)?;
                let xb = self.bin(BinaryOp::Mul, x, b)?;
                let t = self.un(UnaryOp::Tanh, xb)?;
                let a = self.scalar(dt, al)?;
                self.bin(BinaryOp::Mul, t, a)?
            }
            // HardSigmoid clips alpha * x + beta to [0, 1]; Affine does not.
            name => {
                let a = self.scalar(dt, al)?;
                let b = self.scalar(dt, be)?;
                let ax = self.bin(BinaryOp::Mul, x, a)?;
                let y = self.bin(BinaryOp::Add, ax, b)?;
                if name == "HardSigmoid" {
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
    fn recurrent(&mut self, cell: Cell) -> R<Vec<ValueId>> {
        let (x, w, r) = (self.inp(0)?, self.inp(1)?, self.inp(2)?);
        let opt = |s: &Self, i: usize| {
            if s.has(i) {
                s.inp(i).map(Some)
            } else {
                Ok(None)
            }
        };
        let (bias, lens, h0) = (opt(self, 3)?, opt(self, 4)?, opt(self, 5)?);
        let (c0, peep) = if cell == Cell::Lstm {
            (opt(self, 6)?, opt(self, 7)?)
        } else {
            (None, None)
        };
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return bad(format!("recurrent layer over {dt}"));
        }
        if cell == Cell::Lstm && self.ai("input_forget", 0) != 0 {
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
        if steps > MAX_RNN_STEPS {
            return unsup(format!(
                "a sequence of {steps} steps (at most {MAX_RNN_STEPS} unrolled)"
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
        let lbr = self.ai("linear_before_reset", 0) != 0;
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
        // Each row's length as the layer's dtype, [B, 1], to compare with the step.
        let lens = match lens {
            Some(l) => {
                let lf = self.cast(l, dt)?;
                Some(self.reshape(lf, vec![batch, 1])?)
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
                    Cell::Rnn => {
                        let z = gate(self, 0)?;
                        let z = self.clipped(z, clip)?;
                        (self.activate(&a[0], z)?, cp)
                    }
                    Cell::Gru => {
                        let z = gate(self, 0)?;
                        let z = self.clipped(z, clip)?;
                        let z = self.activate(&a[0], z)?;
                        let rg = gate(self, 1)?;
                        let rg = self.clipped(rg, clip)?;
                        let rg = self.activate(&a[0], rg)?;
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
                        let cand = self.activate(&a[1], pre)?;
                        // (1 - z) * cand + z * h = cand + z * (h - cand)
                        let diff = self.bin(BinaryOp::Sub, hp, cand)?;
                        let zd = self.bin(BinaryOp::Mul, z, diff)?;
                        (self.bin(BinaryOp::Add, cand, zd)?, cp)
                    }
                    Cell::Lstm => {
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
                        let i = self.activate(&a[0], gi)?;
                        let mut gf = gate(self, 2)?;
                        if let Some(pf) = peep_of(self, 2, cp)? {
                            gf = self.bin(BinaryOp::Add, gf, pf)?;
                        }
                        let gf = self.clipped(gf, clip)?;
                        let f = self.activate(&a[0], gf)?;
                        let gc = gate(self, 3)?;
                        let gc = self.clipped(gc, clip)?;
                        let cc = self.activate(&a[1], gc)?;
                        let fc = self.bin(BinaryOp::Mul, f, cp)?;
                        let ic = self.bin(BinaryOp::Mul, i, cc)?;
                        let cn = self.bin(BinaryOp::Add, fc, ic)?;
                        let mut go = gate(self, 1)?;
                        if let Some(po) = peep_of(self, 1, cn)? {
                            go = self.bin(BinaryOp::Add, go, po)?;
                        }
                        let go = self.clipped(go, clip)?;
                        let o = self.activate(&a[0], go)?;
                        let hc = self.activate(&a[2], cn)?;
                        (self.bin(BinaryOp::Mul, o, hc)?, cn)
                    }
                };
                let (hn, cn, yt) = match lens {
                    Some(l) => {
                        let tv = self.scalar(dt, t as f64)?;
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
        let cat = |s: &mut Self, v: Vec<ValueId>, axis: usize| -> R<ValueId> {
            if v.len() == 1 {
                Ok(v[0])
            } else {
                s.add1(Op::Concat { axis }, &v)
            }
        };
        let mut y = cat(self, ys, 1)?;
        let mut yh = cat(self, hs, 0)?;
        let mut yc = cat(self, cs, 0)?;
        if layout == 1 {
            y = self.add1(
                Op::Transpose {
                    perm: vec![2, 0, 1, 3],
                },
                &[y],
            )?;
            yh = self.add1(
                Op::Transpose {
                    perm: vec![1, 0, 2],
                },
                &[yh],
            )?;
            yc = self.add1(
                Op::Transpose {
                    perm: vec![1, 0, 2],
                },
                &[yc],
            )?;
        }
        let mut outs = vec![y, yh];
        if cell == Cell::Lstm {
            outs.push(yc);
        }
        Ok(outs)
    }
}
