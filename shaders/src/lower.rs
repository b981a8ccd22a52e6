//! The dispatcher: [`lower`] matches on [`Op`] exhaustively and hands each op to its family
//! (`crate::ops::*`, `crate::matmul`). The old paths of the matmul and emission items are
//! re-exported here for the crates that import them from `sfumato_shaders::lower`.

pub use crate::emit::{grid, plain_splice, Splice, SpliceFn, PLAIN_EPILOGUE};
pub use crate::matmul::{
    conv1x1_problem, matmul_int_kernel, matmul_kernel, matmul_kernel_spliced, matmul_problem,
    matmul_problem_views, no_matmul_variant, pick_variant, MatmulProblem, MatmulVariant,
    MAX_TEXTURE_SIDE,
};
pub use crate::ops::conv::{conv2d_gemm_kernel, conv2d_kernel};
pub use crate::ops::reduce::{
    layernorm_kernel, plain_reduce_splice, reduce_kernel, softmax_kernel, LONG_ROW,
};
pub use crate::ops::tensor::read_view;
pub use crate::options::LowerOptions;
pub use crate::Lowered;

use crate::ops::{conv, elementwise, reduce, tensor};
use crate::{loops, Error, Kernel};
use sfumato_core::op::{Op, ReduceOp};
use sfumato_core::{DType, Shape};

/// Lower one op. `ins` and `outs` are the dtypes and shapes of its inputs and outputs. No
/// kernel it returns passes more loop ends per invocation than `opts.target.loop_budget` allows
/// ([`crate::loops`]); an op that cannot be kept under it is an [`Error::LoopBudget`].
pub fn lower(
    op: &Op,
    ins: &[(DType, &Shape)],
    outs: &[(DType, &Shape)],
    opts: &LowerOptions,
) -> Result<Lowered, Error> {
    let mut lowered = lower_op(op, ins, outs, opts)?;
    loops::check_all(&lowered, opts.target.loop_budget)?;
    crate::uniform_params::apply(&mut lowered);
    Ok(lowered)
}

fn lower_op(
    op: &Op,
    ins: &[(DType, &Shape)],
    outs: &[(DType, &Shape)],
    opts: &LowerOptions,
) -> Result<Lowered, Error> {
    let out_dt = outs.first().map(|o| o.0).unwrap_or(DType::F32);
    let out_shape = outs.first().map(|o| o.1.clone()).unwrap_or_default();
    let out = (out_dt, &out_shape);
    let one = |k: Result<Kernel, Error>| Ok(Lowered::Kernels(vec![k?]));
    let ks = |ks: Result<Vec<Kernel>, Error>| Ok(Lowered::Kernels(ks?));
    match op {
        Op::Constant(_) => Ok(Lowered::Constant),
        Op::Reshape { .. } => Ok(Lowered::Alias),
        Op::MatMul | Op::Gemm(_) => {
            let p = matmul_problem(op, ins, outs)
                .ok_or_else(|| Error::Internal("matmul shapes".into()))?;
            ks(matmul_kernel(&p, pick_variant(&p, opts)?, opts))
        }
        Op::MatMulInteger => {
            let p = matmul_problem(&Op::MatMul, ins, outs)
                .ok_or_else(|| Error::Internal("matmul shapes".into()))?;
            one(matmul_int_kernel(&p, opts))
        }
        Op::Unary(u) => one(elementwise::unary(*u, ins[0], out, opts)),
        Op::Cast { to, saturate } => one(elementwise::cast(*to, *saturate, ins[0], out, opts)),
        Op::BitCast { to } => one(elementwise::bitcast(*to, ins[0], out, opts)),
        Op::Binary(b) => one(elementwise::binary(*b, ins, out, opts)),
        Op::Where => one(elementwise::where_(ins, out, opts)),
        Op::BatchNorm { epsilon } => one(elementwise::batchnorm(*epsilon, ins, out, opts)),
        Op::Transpose { perm } => one(tensor::transpose(perm, ins[0].1, out, opts)),
        Op::Slice { axes } => one(tensor::slice(axes, ins[0].1, out, opts)),
        Op::Concat { axis } => {
            let parts: Vec<usize> = ins.iter().map(|(_, s)| s.0[*axis]).collect();
            match tensor::axis_copies(&out_shape, *axis, &parts, true) {
                Some(regions) => Ok(Lowered::Copies(regions)),
                None => ks(tensor::concat(*axis, ins, out, opts)),
            }
        }
        Op::Split { axis, .. } => {
            let parts: Vec<usize> = outs.iter().map(|(_, s)| s.0[*axis]).collect();
            match tensor::axis_copies(ins[0].1, *axis, &parts, false) {
                Some(regions) => Ok(Lowered::Copies(regions)),
                None => ks(tensor::split(*axis, ins[0].1, outs, out_dt, opts)),
            }
        }
        Op::Gather { axis } => one(tensor::gather(*axis, ins, out, opts)),
        Op::GatherElements { axis } => one(tensor::gather_elements(*axis, ins[0].1, out, opts)),
        Op::ScatterRows { reduction } => ks(tensor::scatter_rows(
            *reduction,
            ins[0].1,
            ins[1].1 .0[0],
            out,
            opts,
        )),
        Op::Recurrence(r) => ks(crate::ops::rnn::recurrence(r, ins, opts)),
        Op::Resize { mode, coord, size } => {
            one(tensor::resize(*mode, *coord, size, ins[0].1, out, opts))
        }
        Op::Pad { pads, mode } => match tensor::pad_copies(pads, *mode, ins[0].1, out) {
            Some(regions) => Ok(Lowered::Copies(regions)),
            None => one(tensor::pad(pads, *mode, ins[0].1, out, opts)),
        },
        Op::Softmax { axis } => one(softmax_kernel(*axis, &out_shape, opts, &|_| {
            Ok(plain_splice(true))
        })),
        Op::LayerNorm { axis, epsilon } => one(layernorm_kernel(
            *axis,
            *epsilon,
            [
                crate::Buf::In(1),
                crate::Buf::In(if ins.len() == 3 { 2 } else { 1 }),
            ],
            ins.len() == 3,
            &out_shape,
            opts,
            &|_| Ok(plain_splice(true)),
        )),
        Op::Reduce { op: r, axes, .. } => one(reduce_kernel(
            *r,
            ins[0].0,
            &ins[0].1 .0,
            axes,
            opts,
            &|_| Ok(plain_reduce_splice(ins[0].0)),
        )),
        Op::GlobalAvgPool => {
            let axes: Vec<usize> = (2..ins[0].1.rank()).collect();
            one(reduce_kernel(
                ReduceOp::Mean,
                ins[0].0,
                &ins[0].1 .0,
                &axes,
                opts,
                &|_| Ok(plain_reduce_splice(ins[0].0)),
            ))
        }
        Op::ArgReduce {
            max, axis, last, ..
        } => one(reduce::arg_reduce(*max, *axis, *last, ins[0], out, opts)),
        Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::MaxPoolIndices2d { .. } => {
            one(conv::pool2d(op, ins[0].1, out, opts))
        }
        Op::Conv2d(c) => ks(conv::conv2d(c, ins, out, opts)),
        Op::ConvInteger(c) => ks(conv::conv2d_int_kernel(
            c,
            &ins[0].1 .0,
            &ins[1].1 .0,
            ins.len() == 3,
            &out_shape,
            crate::Elem::I32,
            opts,
            &crate::emit::plain_int_splice,
        )),
        Op::ConvTranspose2d(c) => one(conv::conv_transpose2d(c, ins, out, opts)),
    }
}
