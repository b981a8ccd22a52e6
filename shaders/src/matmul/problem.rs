//! The matmul problem: a batched, strided `C = alpha A B + beta Bias`, from a MatMul, a Gemm or a
//! pointwise conv.

use sfumato_core::op::Op;
use sfumato_core::plan::View;
use sfumato_core::{DType, Shape};

/// The largest texture side every WebGPU adapter offers (`max_texture_dimension_2d`'s default).
pub const MAX_TEXTURE_SIDE: usize = 8192;

/// A batched matmul with strides: `C[b] = alpha * A[b] @ B[b] + beta * Bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulProblem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub has_bias: bool,
    pub a_sm: usize,
    pub a_sk: usize,
    pub b_sk: usize,
    pub b_sn: usize,
    pub c_sm: usize,
    pub c_sn: usize,
    /// Per batch: element offsets of A, B and Bias.
    pub offsets: Vec<[usize; 3]>,
    /// B is all of a constant f32 tensor, `K x N` row-major, shared by every batch: the device
    /// can hold it as a texture for the `V4Tex` variants.
    pub b_const: bool,
    /// B is a one-group conv's image column, written to the staging texture by `conv_stage`
    /// before a `ubo` matmul reads it (`conv2d_staged`): only `ubo` variants compute it. The
    /// problem stands for that matmul (B as a contiguous `K x N` matrix per image) when the
    /// device chooses and measures its variant.
    pub staged_conv: bool,
}

impl MatmulProblem {
    /// Whether B can be read as an rgba32float texture of `K` rows of `N / 4` texels.
    pub fn b_texture(&self) -> bool {
        self.b_const
            && self.b_sn == 1
            && self.b_sk == self.n
            && self.n.is_multiple_of(4)
            && self.n / 4 <= MAX_TEXTURE_SIDE
            && self.k <= MAX_TEXTURE_SIDE
            && self.offsets.iter().all(|o| o[1] == 0)
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.offsets.len() as f64
    }
}

/// Batches that share B and whose A rows follow one another at A's row stride are one taller
/// matmul (`[B, S, H] @ [H, N]`, a transformer's dense layer at batch B): C's rows run on across
/// batches too (element `(b * M + m) * N + n`), so M grows by the batch count and one batch is
/// left, which the `ubo` and texture variants need. Otherwise the offsets are kept.
fn fold_batches(m: usize, a_sm: i64, offsets: Vec<[usize; 3]>) -> (usize, Vec<[usize; 3]>) {
    let Some(&[a0, b0, _]) = offsets.first() else {
        return (m, offsets);
    };
    let step = m * a_sm.max(0) as usize;
    let follows = offsets.len() > 1
        && a_sm > 0
        && offsets
            .iter()
            .enumerate()
            .all(|(i, o)| o[1] == b0 && o[0] == a0 + i * step);
    if follows {
        (m * offsets.len(), vec![[a0, b0, 0]])
    } else {
        (m, offsets)
    }
}

/// The matmul problem of a MatMul or Gemm node, or `None` for other ops.
pub fn matmul_problem(
    op: &Op,
    ins: &[(DType, &Shape)],
    outs: &[(DType, &Shape)],
) -> Option<MatmulProblem> {
    let views: Vec<View> = ins.iter().map(|i| View::contiguous(i.1)).collect();
    matmul_problem_views(op, ins, &views, outs)
}

/// The matmul problem of a MatMul whose operands are strided views (Gemm: contiguous only).
pub fn matmul_problem_views(
    op: &Op,
    ins: &[(DType, &Shape)],
    views: &[View],
    outs: &[(DType, &Shape)],
) -> Option<MatmulProblem> {
    match op {
        Op::MatMul => {
            let (a, b) = (ins[0].1, ins[1].1);
            if views
                .iter()
                .any(|v| v.strides.iter().any(|&s| s < 0) || v.offset < 0)
            {
                return None;
            }
            let (va, vb) = (&views[0], &views[1]);
            let (a2, sa): (Vec<usize>, Vec<i64>) = if a.rank() == 1 {
                (vec![1, a.0[0]], vec![0, va.strides[0]])
            } else {
                (a.0.clone(), va.strides.clone())
            };
            let (b2, sb): (Vec<usize>, Vec<i64>) = if b.rank() == 1 {
                (vec![b.0[0], 1], vec![vb.strides[0], 0])
            } else {
                (b.0.clone(), vb.strides.clone())
            };
            let (ra, rb) = (a2.len(), b2.len());
            let (m, k, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 1]);
            let ba = Shape(a2[..ra - 2].to_vec());
            let bb = Shape(b2[..rb - 2].to_vec());
            let batch = Shape::broadcast(&ba, &bb)?;
            let bview = |dims: &Shape, strides: &[i64]| -> Vec<i64> {
                View {
                    strides: strides[..dims.rank()].to_vec(),
                    offset: 0,
                }
                .broadcast(dims, &batch)
                .strides
            };
            let (sba, sbb) = (bview(&ba, &sa), bview(&bb, &sb));
            let offsets = (0..batch.numel())
                .map(|i| {
                    let c = sfumato_core::interp::unravel(i, &batch.0);
                    let oa: i64 = c.iter().zip(&sba).map(|(&c, s)| c as i64 * s).sum();
                    let ob: i64 = c.iter().zip(&sbb).map(|(&c, s)| c as i64 * s).sum();
                    [(oa + va.offset) as usize, (ob + vb.offset) as usize, 0]
                })
                .collect();
            let _ = outs;
            let (m, offsets) = fold_batches(m, sa[ra - 2], offsets);
            Some(MatmulProblem {
                m,
                n,
                k,
                alpha: 1.0,
                beta: 0.0,
                has_bias: false,
                a_sm: sa[ra - 2] as usize,
                a_sk: sa[ra - 1] as usize,
                b_sk: sb[rb - 2] as usize,
                b_sn: sb[rb - 1] as usize,
                c_sm: 0,
                c_sn: 0,
                offsets,
                b_const: false,
                staged_conv: false,
            })
        }
        Op::Gemm(g) => {
            let (a, b) = (&ins[0].1 .0, &ins[1].1 .0);
            let (m, k) = if g.trans_a {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            let n = if g.trans_b { b[0] } else { b[1] };
            let (a_sm, a_sk) = if g.trans_a { (1, m) } else { (k, 1) };
            let (b_sk, b_sn) = if g.trans_b { (1, k) } else { (n, 1) };
            let (c_sm, c_sn) = match ins.get(2) {
                Some((_, c)) => {
                    let s = c.broadcast_strides(&Shape(vec![m, n]));
                    (s[0], s[1])
                }
                None => (0, 0),
            };
            Some(MatmulProblem {
                m,
                n,
                k,
                alpha: g.alpha,
                beta: g.beta,
                has_bias: ins.len() == 3,
                a_sm,
                a_sk,
                b_sk,
                b_sn,
                c_sm,
                c_sn,
                offsets: vec![[0, 0, 0]],
                b_const: false,
                staged_conv: false,
            })
        }
        _ => None,
    }
}

/// A pointwise conv (1x1 kernel, stride 1, no padding, one group) as a batched matmul:
/// `Y[n] = W[O, C] @ X[n][C, H*W] (+ bias[O])`, whose output layout is the conv's NCHW. A is the
/// weight (input 1), B the image (input 0).
pub fn conv1x1_problem(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    has_bias: bool,
) -> Option<MatmulProblem> {
    let pointwise = w.len() == 4
        && x.len() == 4
        && w[2] == 1
        && w[3] == 1
        && c.stride == [1, 1]
        && c.padding == [0; 4]
        && c.groups == 1;
    if !pointwise {
        return None;
    }
    let (n, ch, hw, o) = (x[0], x[1], x[2] * x[3], w[0]);
    Some(MatmulProblem {
        m: o,
        n: hw,
        k: ch,
        alpha: 1.0,
        beta: 1.0,
        has_bias,
        a_sm: ch,
        a_sk: 1,
        b_sk: hw,
        b_sn: 1,
        c_sm: 1,
        c_sn: 0,
        offsets: (0..n).map(|b| [0, b * ch * hw, 0]).collect(),
        b_const: false,
        staged_conv: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(a: &[usize], b: &[usize]) -> MatmulProblem {
        let (sa, sb) = (Shape(a.to_vec()), Shape(b.to_vec()));
        let mut out = a.to_vec();
        *out.last_mut().unwrap() = b[b.len() - 1];
        let so = Shape(out);
        matmul_problem(
            &Op::MatMul,
            &[(DType::F32, &sa), (DType::F32, &sb)],
            &[(DType::F32, &so)],
        )
        .unwrap()
    }

    #[test]
    fn batches_sharing_b_fold_into_m() {
        let p = problem(&[4, 128, 768], &[768, 3072]);
        assert_eq!((p.m, p.offsets.clone()), (512, vec![[0, 0, 0]]));
        let p = problem(&[2, 3, 5, 8], &[8, 4]);
        assert_eq!((p.m, p.offsets.len()), (30, 1));
        // Each batch its own B: kept.
        let p = problem(&[4, 128, 64], &[4, 64, 128]);
        assert_eq!((p.m, p.offsets.len()), (128, 4));
        // A broadcast over B's batches: kept.
        let p = problem(&[128, 64], &[4, 64, 128]);
        assert_eq!((p.m, p.offsets.len()), (128, 4));
    }
}
