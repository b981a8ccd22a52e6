//! The CPU reference interpreter: the oracle every device is checked against.
//!
//! Every op is written as the plainest loop that is obviously right, computing in f64 and
//! rounding to the output dtype once ([`Tensor::from_f64`]). It is not meant to be fast.

use crate::device::{check_inputs, Device, OpTiming, Profile, RunOutput, TimingSource};
use crate::graph::describe_inputs;
use crate::op::{BinaryOp, CoordTransform, Op, PadMode, ReduceOp, ResizeMode, UnaryOp};
use crate::shape::contiguous_strides;
use crate::{DType, Error, Graph, Node, Result, Shape, Tensor};
use std::num::Wrapping;
use std::time::Instant;

/// The CPU reference device.
#[derive(Clone, Debug, Default)]
pub struct CpuDevice;

impl Device for CpuDevice {
    fn name(&self) -> String {
        "cpu-reference".into()
    }

    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let t0 = Instant::now();
        check_inputs(graph, inputs)?;
        let mut profile = Profile {
            device: self.name(),
            ..Default::default()
        };
        let outputs = eval_graph_with(graph, inputs, |_, node, ins| {
            let start = t0.elapsed().as_nanos() as u64;
            let outs = eval_node(graph, node, ins)?;
            if !matches!(node.op, Op::Constant(_)) {
                profile.entries.push(OpTiming {
                    nodes: vec![node.name.clone()],
                    ops: vec![node.op.name().to_string()],
                    kernel: "cpu".into(),
                    start_ns: start,
                    duration_ns: t0.elapsed().as_nanos() as u64 - start,
                    source: TimingSource::Cpu,
                    simulated: None,
                });
            }
            Ok(outs)
        })?;
        profile.wall_ns = t0.elapsed().as_nanos() as u64;
        Ok(RunOutput { outputs, profile })
    }
}

/// Run a graph's nodes in order on host tensors, each through `eval` (its id, the node and its
/// inputs), freeing a value after its last reader; returns the graph's outputs. The CPU
/// reference evaluates every node with [`eval_node`]; a simulated device hands some to its own
/// model. `inputs` are assumed checked ([`check_inputs`]).
pub fn eval_graph_with(
    graph: &Graph,
    inputs: &[Tensor],
    mut eval: impl FnMut(crate::NodeId, &Node, &[&Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    let mut uses = graph.use_counts();
    let mut vals: Vec<Option<Tensor>> = vec![None; graph.values().len()];
    for (&v, t) in graph.inputs().iter().zip(inputs) {
        vals[v.index()] = Some(t.clone());
    }
    for (idx, node) in graph.nodes().iter().enumerate() {
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|&i| {
                vals[i.index()]
                    .as_ref()
                    .ok_or_else(|| Error::Graph(format!("value {} was freed early", i.0)))
            })
            .collect::<Result<_>>()?;
        let outs = eval(crate::NodeId(idx as u32), node, &ins)?;
        for &i in &node.inputs {
            uses[i.index()] -= 1;
            if uses[i.index()] == 0 {
                vals[i.index()] = None;
            }
        }
        for (&o, t) in node.outputs.iter().zip(outs) {
            vals[o.index()] = Some(t);
        }
    }
    graph
        .outputs()
        .iter()
        .map(|&o| {
            vals[o.index()]
                .clone()
                .ok_or_else(|| Error::Graph(format!("output {} was not computed", o.0)))
        })
        .collect()
}

/// Evaluate one node on host tensors.
pub fn eval_node(graph: &Graph, node: &Node, ins: &[&Tensor]) -> Result<Vec<Tensor>> {
    let out_info: Vec<(DType, Shape)> = node
        .outputs
        .iter()
        .map(|&o| (graph.dtype(o), graph.shape(o).clone()))
        .collect();
    eval(&node.op, ins, &out_info).map_err(|msg| Error::Node {
        node: node.name.clone(),
        op: node.op.name().to_string(),
        inputs: graph.describe_node_inputs(node),
        msg,
    })
}

/// Evaluate an op given its inputs and the inferred output dtypes and shapes.
pub fn eval(op: &Op, ins: &[&Tensor], outs: &[(DType, Shape)]) -> Result<Vec<Tensor>, String> {
    let (odt, oshape) = outs.first().cloned().ok_or("op has no outputs")?;
    let n = oshape.numel();
    let f = |i: usize| ins[i].to_f64_vec();
    let one = |v: Vec<f64>| Ok(vec![Tensor::from_f64(odt, oshape.clone(), &v)]);
    match op {
        Op::Constant(t) => Ok(vec![t.clone()]),
        Op::MatMul => {
            let (a2, b2) = matmul_2d(ins[0].shape(), ins[1].shape());
            one(batched_matmul(&f(0), &a2, &f(1), &b2))
        }
        Op::MatMulInteger => {
            let (a2, b2) = matmul_2d(ins[0].shape(), ins[1].shape());
            let w = |i: usize| -> Vec<Wrapping<i64>> {
                f(i).iter().map(|&x| Wrapping(x as i64)).collect()
            };
            let p = batched_matmul(&w(0), &a2, &w(1), &b2);
            // Two's complement: the i64 sum modulo 2^32, as the device's i32 sum wraps.
            one(p.iter().map(|x| x.0 as i32 as f64).collect())
        }
        Op::Gemm(g) => {
            let (a, b) = (ins[0].dims(), ins[1].dims());
            let (m, k) = if g.trans_a {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            let nn = if g.trans_b { b[0] } else { b[1] };
            let (av, bv) = (f(0), f(1));
            let cv = ins
                .get(2)
                .map(|c| broadcast_to(&c.to_f64_vec(), c.shape(), &oshape));
            let mut out = vec![0.0; m * nn];
            for i in 0..m {
                for j in 0..nn {
                    let mut acc = 0.0;
                    for p in 0..k {
                        let x = if g.trans_a {
                            av[p * m + i]
                        } else {
                            av[i * k + p]
                        };
                        let y = if g.trans_b {
                            bv[j * k + p]
                        } else {
                            bv[p * nn + j]
                        };
                        acc += x * y;
                    }
                    out[i * nn + j] = g.alpha as f64 * acc
                        + cv.as_ref().map_or(0.0, |c| g.beta as f64 * c[i * nn + j]);
                }
            }
            one(out)
        }
        Op::Conv2d(c) => {
            let bias = ins.get(2).map(|b| b.to_f64_vec());
            one(conv2d_ref(c, ins, &oshape, &f(0), &f(1), bias.as_deref()))
        }
        Op::ConvInteger(c) => {
            // Two's complement: i64 sums modulo 2^32, as the device's i32 sum wraps.
            let w = |v: Vec<f64>| -> Vec<Wrapping<i64>> {
                v.iter().map(|&x| Wrapping(x as i64)).collect()
            };
            let bias = ins.get(2).map(|b| w(b.to_f64_vec()));
            let out = conv2d_ref(c, ins, &oshape, &w(f(0)), &w(f(1)), bias.as_deref());
            one(out.iter().map(|x| x.0 as i32 as f64).collect())
        }
        Op::ConvTranspose2d(c) => {
            let (x, w) = (ins[0].dims(), ins[1].dims());
            let (xv, wv) = (f(0), f(1));
            let (nb, ci, h, wd) = (x[0], x[1], x[2], x[3]);
            let (cog, kh, kw) = (w[1], w[2], w[3]);
            let (co, oh, ow) = (oshape.0[1], oshape.0[2], oshape.0[3]);
            let cig = ci / c.groups;
            let mut out = vec![0.0; n];
            if let Some(b) = ins.get(2) {
                let bv = b.to_f64_vec();
                for (i, o) in out.iter_mut().enumerate() {
                    *o = bv[(i / (oh * ow)) % co];
                }
            }
            for b in 0..nb {
                for ic in 0..ci {
                    let g = ic / cig;
                    for iy in 0..h {
                        for ix in 0..wd {
                            let v = xv[((b * ci + ic) * h + iy) * wd + ix];
                            for ocl in 0..cog {
                                let oc = g * cog + ocl;
                                for ky in 0..kh {
                                    let y = (iy * c.stride[0] + ky * c.dilation[0]) as isize
                                        - c.padding[0] as isize;
                                    if y < 0 || y >= oh as isize {
                                        continue;
                                    }
                                    for kx in 0..kw {
                                        let xo = (ix * c.stride[1] + kx * c.dilation[1]) as isize
                                            - c.padding[1] as isize;
                                        if xo < 0 || xo >= ow as isize {
                                            continue;
                                        }
                                        out[((b * co + oc) * oh + y as usize) * ow
                                            + xo as usize] +=
                                            v * wv[((ic * cog + ocl) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            one(out)
        }
        Op::BatchNorm { epsilon } => {
            let x = f(0);
            let (scale, bias, mean, var) = (f(1), f(2), f(3), f(4));
            let c = oshape.0[1];
            let inner: usize = oshape.0[2..].iter().product();
            one(x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / inner.max(1)) % c;
                    (v - mean[ch]) / (var[ch] + *epsilon as f64).sqrt() * scale[ch] + bias[ch]
                })
                .collect())
        }
        Op::Unary(u) => one(f(0).into_iter().map(|x| unary(*u, x)).collect()),
        Op::Binary(b) => {
            let av = broadcast_to(&f(0), ins[0].shape(), &oshape);
            let bv = broadcast_to(&f(1), ins[1].shape(), &oshape);
            let dt = ins[0].dtype();
            one(av
                .iter()
                .zip(&bv)
                .map(|(&x, &y)| {
                    if b.is_bitwise() {
                        bitwise(*b, x, y, dt)
                    } else {
                        binary(*b, x, y, dt.is_int())
                    }
                })
                .collect())
        }
        Op::Softmax { axis } => {
            let x = f(0);
            let (outer, len, inner) = split_at_axis(&oshape.0, *axis);
            let mut out = vec![0.0; n];
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| (o * len + k) * inner + i;
                    let m = (0..len).map(|k| x[at(k)]).fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = (0..len).map(|k| (x[at(k)] - m).exp()).sum();
                    for k in 0..len {
                        out[at(k)] = (x[at(k)] - m).exp() / s;
                    }
                }
            }
            one(out)
        }
        Op::LayerNorm { axis, epsilon } => {
            let x = f(0);
            let scale = f(1);
            let bias = ins.get(2).map(|b| b.to_f64_vec());
            let len: usize = oshape.0[*axis..].iter().product();
            let mut out = vec![0.0; n];
            if len > 0 {
                for (row, chunk) in x.chunks(len).enumerate() {
                    let mean = chunk.iter().sum::<f64>() / len as f64;
                    let var = chunk.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
                    let inv = 1.0 / (var + *epsilon as f64).sqrt();
                    for (k, v) in chunk.iter().enumerate() {
                        out[row * len + k] =
                            (v - mean) * inv * scale[k] + bias.as_ref().map_or(0.0, |b| b[k]);
                    }
                }
            }
            one(out)
        }
        Op::Reduce { op: r, axes, .. } => {
            let x = f(0);
            let dims = ins[0].dims();
            let kept = crate::op::reduced_dims(dims, axes, true);
            let kstr = contiguous_strides(&kept);
            let count: usize = axes.iter().map(|&a| dims[a]).product();
            let init = match r {
                ReduceOp::Sum | ReduceOp::Mean => 0.0,
                ReduceOp::Max => f64::NEG_INFINITY,
                ReduceOp::Min => f64::INFINITY,
                ReduceOp::Prod => 1.0,
            };
            let mut out = vec![init; n];
            for (i, &v) in x.iter().enumerate() {
                let coords = unravel(i, dims);
                let o: usize = coords
                    .iter()
                    .enumerate()
                    .map(|(d, &c)| if axes.contains(&d) { 0 } else { c * kstr[d] })
                    .sum();
                out[o] = match r {
                    ReduceOp::Sum | ReduceOp::Mean => out[o] + v,
                    ReduceOp::Max => max_nan(out[o], v),
                    ReduceOp::Min => min_nan(out[o], v),
                    ReduceOp::Prod => out[o] * v,
                };
            }
            if *r == ReduceOp::Mean {
                for v in &mut out {
                    *v /= count as f64; // NaN for an empty reduction, as numpy
                }
            }
            one(out)
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) | Op::MaxPoolIndices2d { pool: p, .. } => {
            let col_major = matches!(
                op,
                Op::MaxPoolIndices2d {
                    col_major: true,
                    ..
                }
            );
            let x = f(0);
            let d = ins[0].dims();
            let (h, w) = (d[2], d[3]);
            let (oh, ow) = (oshape.0[2], oshape.0[3]);
            let mut out = vec![0.0; n];
            for (plane, o) in out.chunks_mut(oh * ow).enumerate() {
                let base = plane * h * w;
                for y in 0..oh {
                    for xo in 0..ow {
                        // The input positions under this output's window, padding skipped.
                        let taps = (0..p.kernel[0])
                            .flat_map(|ky| (0..p.kernel[1]).map(move |kx| (ky, kx)))
                            .filter_map(|(ky, kx)| {
                                let iy = (y * p.stride[0] + ky * p.dilation[0])
                                    .checked_sub(p.padding[0])?;
                                let ix = (xo * p.stride[1] + kx * p.dilation[1])
                                    .checked_sub(p.padding[1])?;
                                (iy < h && ix < w).then_some((iy, ix))
                            });
                        let at = |(iy, ix): (usize, usize)| x[base + iy * w + ix];
                        o[y * ow + xo] = match op {
                            Op::MaxPool2d(_) => {
                                taps.fold(f64::NEG_INFINITY, |a, t| max_nan(a, at(t)))
                            }
                            Op::AvgPool2d(_) => {
                                let (sum, cnt) =
                                    taps.fold((0.0, 0usize), |(s, c), t| (s + at(t), c + 1));
                                if p.count_include_pad {
                                    sum / (p.kernel[0] * p.kernel[1]) as f64
                                } else {
                                    sum / cnt.max(1) as f64
                                }
                            }
                            // Where the first maximum is, compared with `>` as ONNX's
                            // reference compares; a window over padding only: -1.
                            _ => match taps.fold(None, |b: Option<(f64, (usize, usize))>, t| {
                                let v = at(t);
                                if b.is_none_or(|(bv, _)| v > bv) {
                                    Some((v, t))
                                } else {
                                    b
                                }
                            }) {
                                None => -1.0,
                                Some((_, (iy, ix))) => {
                                    (base + if col_major { iy + ix * h } else { iy * w + ix })
                                        as f64
                                }
                            },
                        };
                    }
                }
            }
            one(out)
        }
        Op::GlobalAvgPool => {
            let x = f(0);
            let inner: usize = ins[0].dims()[2..].iter().product();
            one((0..n)
                .map(|i| x[i * inner..(i + 1) * inner].iter().sum::<f64>() / inner as f64)
                .collect())
        }
        Op::Reshape { .. } => Ok(vec![ins[0].reshaped(oshape).map_err(|e| e.to_string())?]),
        Op::Transpose { perm } => {
            let x = f(0);
            let istr = ins[0].shape().strides();
            one((0..n)
                .map(|i| {
                    let c = unravel(i, &oshape.0);
                    x[c.iter()
                        .enumerate()
                        .map(|(d, &v)| v * istr[perm[d]])
                        .sum::<usize>()]
                })
                .collect())
        }
        Op::Concat { axis } => {
            let (outer, _, inner) = split_at_axis(&oshape.0, *axis);
            let mut out = Vec::with_capacity(n);
            let parts: Vec<Vec<f64>> = ins.iter().map(|t| t.to_f64_vec()).collect();
            for o in 0..outer {
                for (t, p) in ins.iter().zip(&parts) {
                    let len = t.dims()[*axis] * inner;
                    out.extend_from_slice(&p[o * len..(o + 1) * len]);
                }
            }
            one(out)
        }
        Op::Slice { axes } => {
            let x = f(0);
            let istr = ins[0].shape().strides();
            one((0..n)
                .map(|i| {
                    let c = unravel(i, &oshape.0);
                    let off: i64 = c
                        .iter()
                        .zip(axes)
                        .zip(&istr)
                        .map(|((&v, a), &s)| (a.start + v as i64 * a.step) * s as i64)
                        .sum();
                    x[off as usize]
                })
                .collect())
        }
        Op::Split { axis, sizes } => {
            let x = f(0);
            let dims = ins[0].dims();
            let (outer, len, inner) = split_at_axis(dims, *axis);
            let mut start = 0;
            let mut res = Vec::new();
            for (k, &s) in sizes.iter().enumerate() {
                let mut v = Vec::with_capacity(outer * s * inner);
                for o in 0..outer {
                    let base = (o * len + start) * inner;
                    v.extend_from_slice(&x[base..base + s * inner]);
                }
                res.push(Tensor::from_f64(outs[k].0, outs[k].1.clone(), &v));
                start += s;
            }
            Ok(res)
        }
        Op::Gather { axis } => {
            let x = f(0);
            let idx = ins[1].to_i64_vec();
            let dims = ins[0].dims();
            let (outer, len, inner) = split_at_axis(dims, *axis);
            let mut out = Vec::with_capacity(n);
            for o in 0..outer {
                for &i in &idx {
                    let j = if i < 0 { i + len as i64 } else { i };
                    if j < 0 || j >= len as i64 {
                        return Err(format!(
                            "index {i} is out of range for axis {axis} of size {len}"
                        ));
                    }
                    let base = (o * len + j as usize) * inner;
                    out.extend_from_slice(&x[base..base + inner]);
                }
            }
            one(out)
        }
        Op::Where => {
            let c = broadcast_to(&f(0), ins[0].shape(), &oshape);
            let a = broadcast_to(&f(1), ins[1].shape(), &oshape);
            let b = broadcast_to(&f(2), ins[2].shape(), &oshape);
            one((0..n)
                .map(|i| if c[i] != 0.0 { a[i] } else { b[i] })
                .collect())
        }
        Op::Cast { to, saturate } => match to.mini() {
            Some(m) if *saturate => one(f(0).iter().map(|&x| m.round(x, true)).collect()),
            None if *to == DType::F8E8M0 => one(f(0)
                .iter()
                .map(|&x| crate::dtype::e8m0_round(x, *saturate))
                .collect()),
            _ => one(f(0)),
        },
        Op::BitCast { to } => {
            let from = ins[0].dtype();
            one(f(0)
                .iter()
                .map(|&x| crate::dtype::from_bits(*to, crate::dtype::to_bits(from, x)))
                .collect())
        }
        Op::Resize { mode, coord, size } => {
            let x = f(0);
            let d = ins[0].dims();
            let (h, w) = (d[2], d[3]);
            let (oh, ow) = (size[0], size[1]);
            let mut out = vec![0.0; n];
            for (plane, o) in out.chunks_mut(oh * ow).enumerate() {
                let px = &x[plane * h * w..(plane + 1) * h * w];
                for y in 0..oh {
                    let sy = source_coord(*coord, y, h, oh);
                    for xo in 0..ow {
                        let sx = source_coord(*coord, xo, w, ow);
                        o[y * ow + xo] = match mode {
                            ResizeMode::Nearest => {
                                let iy = (sy.floor().max(0.0) as usize).min(h - 1);
                                let ix = (sx.floor().max(0.0) as usize).min(w - 1);
                                px[iy * w + ix]
                            }
                            ResizeMode::Bilinear => {
                                let cy = sy.clamp(0.0, (h - 1) as f64);
                                let cx = sx.clamp(0.0, (w - 1) as f64);
                                let (y0, x0) = (cy.floor() as usize, cx.floor() as usize);
                                let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                                let (fy, fx) = (cy - y0 as f64, cx - x0 as f64);
                                let top = px[y0 * w + x0] * (1.0 - fx) + px[y0 * w + x1] * fx;
                                let bot = px[y1 * w + x0] * (1.0 - fx) + px[y1 * w + x1] * fx;
                                top * (1.0 - fy) + bot * fy
                            }
                        };
                    }
                }
            }
            one(out)
        }
        Op::Pad { pads, mode } => {
            let x = f(0);
            let idims = ins[0].dims();
            let istr = ins[0].shape().strides();
            one((0..n)
                .map(|i| {
                    let c = unravel(i, &oshape.0);
                    let mut off = 0usize;
                    for d in 0..c.len() {
                        let mut v = c[d] as isize - pads[d][0] as isize;
                        let dim = idims[d] as isize;
                        if v < 0 || v >= dim {
                            match mode {
                                PadMode::Constant(k) => return *k as f64,
                                PadMode::Edge => v = v.clamp(0, dim - 1),
                                PadMode::Reflect => v = if v < 0 { -v } else { 2 * (dim - 1) - v },
                            }
                        }
                        off += v as usize * istr[d];
                    }
                    x[off]
                })
                .collect())
        }
        Op::GatherElements { axis } => {
            let x = f(0);
            let idx = ins[1].to_i64_vec();
            let xstr = ins[0].shape().strides();
            let len = ins[0].dims()[*axis] as i64;
            let mut out = Vec::with_capacity(n);
            for (i, &j) in idx.iter().enumerate() {
                let k = if j < 0 { j + len } else { j };
                if k < 0 || k >= len {
                    return Err(format!(
                        "index {j} is out of range for axis {axis} of size {len}"
                    ));
                }
                let c = unravel(i, &oshape.0);
                let off: usize = (0..c.len())
                    .map(|d| if d == *axis { k as usize } else { c[d] } * xstr[d])
                    .sum();
                out.push(x[off]);
            }
            one(out)
        }
        Op::ScatterRows { reduction } => {
            let mut out = f(0);
            let upd = f(1);
            let target = ins[2].to_i64_vec();
            let (rows, width) = (ins[0].dims()[0] as i64, ins[0].dims()[1]);
            for (u, &t) in target.iter().enumerate() {
                if t < 0 || t >= rows {
                    return Err(format!(
                        "scatter target {t} of update {u} is out of range for {rows} rows"
                    ));
                }
                let (t, u) = (t as usize * width, u * width);
                for s in 0..width {
                    // Rounded to the dtype at each step, as the device stores each.
                    let v = reduction.combine(out[t + s], upd[u + s]);
                    out[t + s] = odt.round(v);
                }
            }
            one(out)
        }
        Op::Recurrence(r) => one(recurrence(
            r,
            &f(0),
            &f(1),
            &f(2),
            &f(3),
            ins.get(4).map(|t| t.to_f64_vec()),
            ins[0].dims(),
            ins[1].dims()[0],
            odt,
        )),
        Op::ArgReduce {
            max, axis, last, ..
        } => {
            let x = f(0);
            let (outer, len, inner) = split_at_axis(ins[0].dims(), *axis);
            let mut out = Vec::with_capacity(n);
            for o in 0..outer {
                for r in 0..inner {
                    let at = |k: usize| x[(o * len + k) * inner + r];
                    let mut best = 0;
                    for k in 1..len {
                        let (b, v) = (at(best), at(k));
                        if b.is_nan() {
                            break;
                        }
                        let better =
                            v.is_nan() || if *max { v > b } else { v < b } || (*last && v == b);
                        if better {
                            best = k;
                        }
                    }
                    out.push(best as f64);
                }
            }
            one(out)
        }
    }
}

/// The input coordinate an output coordinate maps to, before rounding or interpolation.
pub fn source_coord(coord: CoordTransform, o: usize, input: usize, output: usize) -> f64 {
    let scale = input as f64 / output as f64;
    match coord {
        CoordTransform::HalfPixel => (o as f64 + 0.5) * scale - 0.5,
        CoordTransform::Asymmetric => o as f64 * scale,
        CoordTransform::AlignCorners => {
            if output == 1 {
                0.0
            } else {
                o as f64 * (input - 1) as f64 / (output - 1) as f64
            }
        }
    }
}

fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Reference semantics of each unary op.
pub fn unary(u: UnaryOp, x: f64) -> f64 {
    match u {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha as f64 * x
            }
        }
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::HardSwish => x * ((x + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Clip { min, max } => x.max(min as f64).min(max as f64),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tan => x.tan(),
        UnaryOp::Asin => x.asin(),
        UnaryOp::Acos => x.acos(),
        UnaryOp::Atan => x.atan(),
        UnaryOp::Sinh => x.sinh(),
        UnaryOp::Cosh => x.cosh(),
        UnaryOp::Asinh => x.asinh(),
        UnaryOp::Acosh => x.acosh(),
        UnaryOp::Atanh => x.atanh(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
    }
}

/// Reference semantics of each binary op; `int` selects integer division and power.
pub fn binary(b: BinaryOp, x: f64, y: f64, int: bool) -> f64 {
    let t = |c: bool| if c { 1.0 } else { 0.0 };
    match b {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => {
            if int {
                if y == 0.0 {
                    0.0
                } else {
                    (x / y).trunc()
                }
            } else {
                x / y
            }
        }
        BinaryOp::Pow => {
            let p = x.powf(y);
            if int {
                p.trunc()
            } else {
                p
            }
        }
        BinaryOp::Max => max_nan(x, y),
        BinaryOp::Min => min_nan(x, y),
        BinaryOp::Eq => t(x == y),
        BinaryOp::Ne => t(x != y),
        BinaryOp::Lt => t(x < y),
        BinaryOp::Le => t(x <= y),
        BinaryOp::Gt => t(x > y),
        BinaryOp::Ge => t(x >= y),
        BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor | BinaryOp::Shl | BinaryOp::Shr => {
            f64::NAN
        }
    }
}

/// Reference semantics of the bitwise and shift ops on integers of `dt`: the operands as
/// two's-complement (or unsigned) integers of the dtype's width, the result wrapped to it.
/// Bitwise ops on floats have no meaning: NaN.
pub fn bitwise(b: BinaryOp, x: f64, y: f64, dt: DType) -> f64 {
    if !dt.is_int() {
        return f64::NAN;
    }
    let width = dt.bits() as i64;
    let (xi, yi) = (x as i128, y as i128);
    let r: i128 = match b {
        BinaryOp::BitAnd => xi & yi,
        BinaryOp::BitOr => xi | yi,
        BinaryOp::BitXor => xi ^ yi,
        BinaryOp::Shl if (0..width as i128).contains(&yi) => xi << yi,
        BinaryOp::Shl => 0,
        BinaryOp::Shr if (0..width as i128).contains(&yi) => xi >> yi,
        BinaryOp::Shr => {
            if xi < 0 {
                -1
            } else {
                0
            }
        }
        _ => return binary(b, x, y, true),
    };
    // Wrap to the dtype's width, two's complement for the signed ones.
    let m = 1i128 << width;
    let mut w = r.rem_euclid(m);
    if dt.is_signed() && w >= m / 2 {
        w -= m;
    }
    w as f64
}

/// (product of dims before axis, dim at axis, product of dims after axis).
pub fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        dims[..axis].iter().product(),
        dims[axis],
        dims[axis + 1..].iter().product(),
    )
}

/// Row-major coordinates of a flat index.
pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        if dims[d] > 0 {
            c[d] = i % dims[d];
            i /= dims[d];
        }
    }
    c
}

/// Materialise `v` (of shape `from`) broadcast to `to`.
pub fn broadcast_to(v: &[f64], from: &Shape, to: &Shape) -> Vec<f64> {
    if from == to {
        return v.to_vec();
    }
    let s = from.broadcast_strides(to);
    (0..to.numel())
        .map(|i| {
            v[unravel(i, &to.0)
                .iter()
                .zip(&s)
                .map(|(c, s)| c * s)
                .sum::<usize>()]
        })
        .collect()
}

/// A direct NCHW convolution of `x` by `w` (the shapes of `ins[0]` and `ins[1]`) into
/// `out_shape`, in `T`'s arithmetic (f64, or wrapping integers for the integer conv).
fn conv2d_ref<T>(
    c: &crate::op::Conv2d,
    ins: &[&Tensor],
    out_shape: &Shape,
    xv: &[T],
    wv: &[T],
    bias: Option<&[T]>,
) -> Vec<T>
where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    let (x, w) = (ins[0].dims(), ins[1].dims());
    let (nb, ci, h, wd) = (x[0], x[1], x[2], x[3]);
    let (co, cig, kh, kw) = (w[0], w[1], w[2], w[3]);
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let cog = co / c.groups;
    let mut out = vec![T::default(); out_shape.numel()];
    for b in 0..nb {
        for o in 0..co {
            let g = o / cog;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias.map_or(T::default(), |bv| bv[o]);
                    for icl in 0..cig {
                        let ic = g * cig + icl;
                        for ky in 0..kh {
                            let iy = (y * c.stride[0] + ky * c.dilation[0]) as isize
                                - c.padding[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (xo * c.stride[1] + kx * c.dilation[1]) as isize
                                    - c.padding[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                acc = acc
                                    + xv[((b * ci + ic) * h + iy as usize) * wd + ix as usize]
                                        * wv[((o * cig + icl) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[((b * co + o) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    out
}

/// A matmul's operand shapes with 1-D operands made matrices (a row of A, a column of B).
fn matmul_2d(a: &Shape, b: &Shape) -> (Shape, Shape) {
    let a2 = if a.rank() == 1 {
        Shape(vec![1, a.0[0]])
    } else {
        a.clone()
    };
    let b2 = if b.rank() == 1 {
        Shape(vec![b.0[0], 1])
    } else {
        b.clone()
    };
    (a2, b2)
}

fn batched_matmul<T>(a: &[T], ash: &Shape, b: &[T], bsh: &Shape) -> Vec<T>
where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    let (ra, rb) = (ash.rank(), bsh.rank());
    let (m, k, n) = (ash.0[ra - 2], ash.0[ra - 1], bsh.0[rb - 1]);
    let ba = Shape(ash.0[..ra - 2].to_vec());
    let bb = Shape(bsh.0[..rb - 2].to_vec());
    let batch = Shape::broadcast(&ba, &bb).expect("checked by shape inference");
    let (sa, sb) = (ba.broadcast_strides(&batch), bb.broadcast_strides(&batch));
    let mut out = vec![T::default(); batch.numel() * m * n];
    for bi in 0..batch.numel() {
        let c = unravel(bi, &batch.0);
        let oa = c.iter().zip(&sa).map(|(c, s)| c * s).sum::<usize>() * m * k;
        let ob = c.iter().zip(&sb).map(|(c, s)| c * s).sum::<usize>() * k * n;
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::default();
                for p in 0..k {
                    acc = acc + a[oa + i * k + p] * b[ob + p * n + j];
                }
                out[(bi * m + i) * n + j] = acc;
            }
        }
    }
    out
}

/// Describe inputs of an op for error messages outside a graph.
pub fn describe(ins: &[&Tensor]) -> String {
    let infos: Vec<(DType, &Shape)> = ins.iter().map(|t| (t.dtype(), t.shape())).collect();
    describe_inputs(&infos)
}

/// [`Op::Recurrence`]: ONNX's cell equations step by step, in f64, the state rounded to the
/// output's dtype after each step (as the device stores it).
#[allow(clippy::too_many_arguments)]
fn recurrence(
    r: &crate::op::Recurrence,
    xw: &[f64],
    rm: &[f64],
    state0: &[f64],
    lens: &[f64],
    extra: Option<Vec<f64>>,
    xd: &[usize],
    h: usize,
    odt: DType,
) -> Vec<f64> {
    use crate::op::RecurrentCell as C;
    let (t_len, b_len) = (xd[0], xd[1]);
    let (g, s) = (r.cell.gates(), r.cell.state_parts());
    let w = s * h;
    let act = |i: usize, x: f64| r.acts[i].eval(r.clipped(x));
    // `rm` is R^T, [H, G*H]: gate row `row` of R is its column `row`.
    let dot = |row: usize, v: &[f64]| -> f64 { (0..h).map(|k| rm[k * g * h + row] * v[k]).sum() };
    let mut out = vec![0.0; t_len * b_len * w];
    for b in 0..b_len {
        let mut hs: Vec<f64> = state0[b * w..b * w + h].to_vec();
        let mut cs: Vec<f64> = if s == 2 {
            state0[b * w + h..(b + 1) * w].to_vec()
        } else {
            Vec::new()
        };
        for i in 0..t_len {
            let t = if r.reverse { t_len - 1 - i } else { i };
            if (t as f64) < lens[b] {
                let x = &xw[(t * b_len + b) * g * h..(t * b_len + b + 1) * g * h];
                let pre = |k: usize, j: usize, v: &[f64]| x[k * h + j] + dot(k * h + j, v);
                match r.cell {
                    C::Rnn => hs = (0..h).map(|j| act(0, pre(0, j, &hs))).collect(),
                    C::Gru {
                        linear_before_reset,
                    } => {
                        let z: Vec<f64> = (0..h).map(|j| act(0, pre(0, j, &hs))).collect();
                        let rg: Vec<f64> = (0..h).map(|j| act(0, pre(1, j, &hs))).collect();
                        let rbh = extra.as_deref().unwrap_or(&[]);
                        let rh: Vec<f64> = (0..h).map(|j| rg[j] * hs[j]).collect();
                        let cand: Vec<f64> = (0..h)
                            .map(|j| {
                                let rec = if linear_before_reset {
                                    rg[j] * (dot(2 * h + j, &hs) + rbh[j])
                                } else {
                                    dot(2 * h + j, &rh)
                                };
                                act(1, x[2 * h + j] + rec)
                            })
                            .collect();
                        hs = (0..h)
                            .map(|j| odt.round(cand[j] + z[j] * (hs[j] - cand[j])))
                            .collect();
                    }
                    C::Lstm => {
                        let p = extra.as_deref().unwrap_or(&[]);
                        let mut hn = vec![0.0; h];
                        for j in 0..h {
                            let c = cs[j];
                            let i_g = act(0, pre(0, j, &hs) + p[j] * c);
                            let f_g = act(0, pre(2, j, &hs) + p[2 * h + j] * c);
                            let c_g = act(1, pre(3, j, &hs));
                            let cn = odt.round(f_g * c + i_g * c_g);
                            let o_g = act(0, pre(1, j, &hs) + p[h + j] * cn);
                            hn[j] = odt.round(o_g * r.acts[2].eval(cn));
                            cs[j] = cn;
                        }
                        hs = hn;
                    }
                }
                for v in hs.iter_mut() {
                    *v = odt.round(*v);
                }
            }
            let o = &mut out[(t * b_len + b) * w..(t * b_len + b + 1) * w];
            o[..h].copy_from_slice(&hs);
            o[h..].copy_from_slice(&cs);
        }
    }
    out
}
