//! The functional simulation of a whole graph: every cube product through [`crate::cube`]
//! with the tiling the scheduler chose for it; every other op on the vector-unit model, which
//! computes as the CPU reference does (in fp32 and wider, rounded to the output's dtype).

use crate::cube::{self, Fault, Operands};
use crate::error::SimError;
use crate::predict::cube_problem;
use crate::tiling::{Problem, Tiling};
use sfumato_core::interp::eval_node;
use sfumato_core::op::Op;
use sfumato_core::{DType, Error, Graph, NodeId, Result, Tensor};
use std::collections::HashMap;

/// Run `g` on `inputs` (checked by the caller), cube nodes with `tilings`.
pub fn execute(
    chip: &crate::Chip,
    g: &Graph,
    inputs: &[Tensor],
    tilings: &HashMap<NodeId, Tiling>,
    fault: Fault,
) -> Result<Vec<Tensor>> {
    sfumato_core::interp::eval_graph_with(g, inputs, |id, node, ins| {
        let Some(p) = cube_problem(g, id) else {
            return eval_node(g, node, ins);
        };
        if g.dtype(node.outputs[0]) == DType::F64 {
            return Err(SimError::Unmapped {
                chip: chip.name.clone(),
                node: node.name.clone(),
                op: node.op.name().into(),
                inputs: g.describe_node_inputs(node),
                msg: "the cube multiplies fp16 (and int8); an f64 product has no mapping".into(),
            }
            .into());
        }
        let t = match tilings.get(&id) {
            Some(t) => *t,
            None => crate::tiling::choose(chip, &p, &crate::tiling::Epilogue::NONE).tiling,
        };
        Ok(vec![cube_node(g, id, ins, &p, &t, fault)?])
    })
}

/// A cube operand's values as the cube reads them: rounded to fp16 (bf16 where the tensor is
/// bf16, as the 910B's cube takes it). A finite value past fp16's range (65,504) is an error
/// naming the node, not an infinity in the answer.
fn operand(g: &Graph, node: &sfumato_core::Node, t: &Tensor) -> Result<Vec<f32>> {
    operand_values(g, node, &t.to_f32_vec(), t.dtype())
}

fn operand_values(
    g: &Graph,
    node: &sfumato_core::Node,
    v: &[f32],
    dtype: DType,
) -> Result<Vec<f32>> {
    if dtype == DType::BF16 {
        return Ok(v
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect());
    }
    let r = cube::to_f16(v);
    if let Some(i) = (0..v.len()).find(|&i| v[i].is_finite() && r[i].is_infinite()) {
        return Err(Error::Limit {
            node: node.name.clone(),
            op: node.op.name().into(),
            inputs: g.describe_node_inputs(node),
            msg: format!(
                "operand value {} (element {i}) is past fp16's range (65,504): the simulated \
                 cube reads fp16",
                v[i]
            ),
        });
    }
    Ok(r)
}

/// Index of a broadcast batch: `idx` in the output's batch dims, into an operand's `dims`.
fn batch_offset(idx: usize, out: &[usize], dims: &[usize]) -> usize {
    let coord = sfumato_core::interp::unravel(idx, out);
    let lead = out.len() - dims.len();
    let mut off = 0;
    for (d, &size) in dims.iter().enumerate() {
        let c = if size == 1 { 0 } else { coord[lead + d] };
        off = off * size + c;
    }
    off
}

fn cube_node(
    g: &Graph,
    id: NodeId,
    ins: &[&Tensor],
    p: &Problem,
    t: &Tiling,
    fault: Fault,
) -> Result<Tensor> {
    let node = g.node(id);
    let out_v = node.outputs[0];
    let (odt, oshape) = (g.dtype(out_v), g.shape(out_v).clone());
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let out: Vec<f64> = match &node.op {
        Op::MatMul => {
            let (a, b) = (ins[0], ins[1]);
            let mut ad = a.dims().to_vec();
            if ad.len() == 1 {
                ad.insert(0, 1);
            }
            let mut bd = b.dims().to_vec();
            if bd.len() == 1 {
                bd.push(1);
            }
            let (ab, bb) = (&ad[..ad.len() - 2], &bd[..bd.len() - 2]);
            let rank = ab.len().max(bb.len());
            let pad = |d: &[usize]| {
                let mut v = vec![1; rank - d.len()];
                v.extend_from_slice(d);
                v
            };
            let (ab, bb) = (pad(ab), pad(bb));
            let outb: Vec<usize> = ab.iter().zip(&bb).map(|(x, y)| *x.max(y)).collect();
            let batch: usize = outb.iter().product();
            let (av, bv) = (operand(g, node, a)?, operand(g, node, b)?);
            // A's own rows (with one B, `p.m` counts every batch's rows).
            let am = ad[ad.len() - 2];
            let mut aa = Vec::with_capacity(batch * am * k);
            for i in 0..batch {
                let o = batch_offset(i, &outb, &ab);
                aa.extend_from_slice(&av[o * am * k..(o + 1) * am * k]);
            }
            let shared = bb.iter().product::<usize>() == 1;
            let bbuf;
            let bs: &[f32] = if shared {
                &bv
            } else {
                let mut v = Vec::with_capacity(batch * k * n);
                for i in 0..batch {
                    let o = batch_offset(i, &outb, &bb);
                    v.extend_from_slice(&bv[o * k * n..(o + 1) * k * n]);
                }
                bbuf = v;
                &bbuf
            };
            // With one B, `p` has the batches as rows of one product (see `cube_problem`).
            let ops = Operands {
                a: &aa,
                b: bs,
                b_shared: shared,
            };
            cube::run(p, t, &ops, fault)
                .iter()
                .map(|&x| x as f64)
                .collect()
        }
        Op::Gemm(gm) => {
            let (a, b) = (ins[0].to_f32_vec(), ins[1].to_f32_vec());
            let at: Vec<f32> = if gm.trans_a {
                (0..m * k).map(|i| a[(i % k) * m + i / k]).collect()
            } else {
                a
            };
            let bt: Vec<f32> = if gm.trans_b {
                (0..k * n).map(|i| b[(i % n) * k + i / n]).collect()
            } else {
                b
            };
            let (at, bt) = (
                operand_values(g, node, &at, ins[0].dtype())?,
                operand_values(g, node, &bt, ins[1].dtype())?,
            );
            let acc = cube::run(
                p,
                t,
                &Operands {
                    a: &at,
                    b: &bt,
                    b_shared: true,
                },
                fault,
            );
            // The epilogue on the vector unit: alpha * acc + beta * C.
            let c = ins
                .get(2)
                .map(|c| sfumato_core::interp::broadcast_to(&c.to_f64_vec(), c.shape(), &oshape));
            acc.iter()
                .enumerate()
                .map(|(i, &x)| {
                    gm.alpha as f64 * x as f64 + c.as_ref().map_or(0.0, |c| gm.beta as f64 * c[i])
                })
                .collect()
        }
        Op::Conv2d(c) => {
            let (xd, wd) = (ins[0].dims().to_vec(), ins[1].dims().to_vec());
            let (nb, ci, h, w) = (xd[0], xd[1], xd[2], xd[3]);
            let (co, cig, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
            let (oh, ow) = (oshape.0[2], oshape.0[3]);
            let groups = c.groups;
            let cog = co / groups;
            let xv = operand(g, node, ins[0])?;
            let wv = operand(g, node, ins[1])?;
            let pixels = oh * ow;
            // img2col (the MTE's Load3D): one row per output pixel, K = cig x kh x kw.
            let img2col = |b: usize, gi: usize, a: &mut Vec<f32>| {
                for y in 0..oh {
                    for xo in 0..ow {
                        for icl in 0..cig {
                            let ic = gi * cig + icl;
                            for ky in 0..kh {
                                let iy = (y * c.stride[0] + ky * c.dilation[0]) as isize
                                    - c.padding[0] as isize;
                                for kx in 0..kw {
                                    let ix = (xo * c.stride[1] + kx * c.dilation[1]) as isize
                                        - c.padding[1] as isize;
                                    let inside =
                                        iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                                    a.push(if inside {
                                        xv[((b * ci + ic) * h + iy as usize) * w + ix as usize]
                                    } else {
                                        0.0
                                    });
                                }
                            }
                        }
                    }
                }
            };
            let weights = |gi: usize, bm: &mut Vec<f32>| {
                for kk in 0..k {
                    for o in 0..cog {
                        bm.push(wv[(gi * cog + o) * k + kk]);
                    }
                }
            };
            let mut a = Vec::with_capacity(nb * groups * pixels * k);
            let mut bm = Vec::new();
            for b in 0..nb {
                for gi in 0..groups {
                    img2col(b, gi, &mut a);
                    if groups > 1 {
                        weights(gi, &mut bm);
                    }
                }
            }
            if groups == 1 {
                weights(0, &mut bm);
            }
            let res = cube::run(
                p,
                t,
                &Operands {
                    a: &a,
                    b: &bm,
                    b_shared: groups == 1,
                },
                fault,
            );
            let bias = ins.get(2).map(|b| b.to_f64_vec());
            let mut out = vec![0.0; nb * co * pixels];
            for b in 0..nb {
                for gi in 0..groups {
                    let base = (b * groups + gi) * pixels * cog;
                    for px in 0..pixels {
                        for o in 0..cog {
                            let oc = gi * cog + o;
                            out[(b * co + oc) * pixels + px] = res[base + px * cog + o] as f64
                                + bias.as_ref().map_or(0.0, |bv| bv[oc]);
                        }
                    }
                }
            }
            out
        }
        _ => unreachable!("cube_problem maps MatMul, Gemm and Conv2d only"),
    };
    Ok(Tensor::from_f64(odt, oshape, &out))
}
