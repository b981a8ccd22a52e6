//! Elementwise ops: unary, cast, binary, where, batch norm.

use super::Io;
use crate::emit::{expr_trips, kernel};
use crate::expr::{binary_expr, bitcast_expr, cast_expr, unary_expr};
use crate::options::LowerOptions;
use crate::params::{one, Layout};
use crate::views::{strided, view_params};
use crate::{loops, Buf, Elem, Error, Kernel};
use sfumato_core::op::{BinaryOp, UnaryOp};
use sfumato_core::plan::View;
use sfumato_core::{DType, Shape};

const UNARY: &str = include_str!("../templates/unary.wgsl");
const BINARY: &str = include_str!("../templates/binary.wgsl");
const WHERE: &str = include_str!("../templates/where.wgsl");
const BATCHNORM: &str = include_str!("../templates/batchnorm.wgsl");

/// Batch norm's params: `inner` the product of the dims after the channels, `eps` f32 bits.
pub const BATCHNORM_PARAMS: Layout = Layout::new(
    "batchnorm",
    "BN",
    &[one("n"), one("channels"), one("inner"), one("eps")],
);

/// A unary op on one input read through a broadcast view.
pub fn unary(
    u: UnaryOp,
    input: Io,
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let expr = unary_expr(u, input.0)?;
    elementwise1("unary", input, out_dt, out_shape, expr, opts)
}

/// A cast (`saturate`: see `Op::Cast`).
pub fn cast(
    to: DType,
    saturate: bool,
    input: Io,
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let expr = cast_expr(input.0, to, saturate);
    elementwise1("cast", input, to, out_shape, expr, opts)
}

/// BitCast: the same bits read as `to`.
pub fn bitcast(
    to: DType,
    input: Io,
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let expr = bitcast_expr(input.0, to);
    elementwise1("bitcast", input, to, out_shape, expr, opts)
}

/// Two inputs with numpy broadcasting, one contiguous output.
pub fn binary(
    b: BinaryOp,
    ins: &[Io],
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let dt = ins[0].0;
    let binary_trips = 2 * loops::rank_walk(out_shape.rank()) + expr_trips(&binary_expr(b, dt));
    let vals = [
        ("in_ty", Elem::of(dt).wgsl().to_string()),
        ("out_ty", Elem::of(out_dt).wgsl().to_string()),
        ("expr", binary_expr(b, dt)),
    ];
    let params = view_params(
        out_shape,
        &[strided(ins[0].1, out_shape), strided(ins[1].1, out_shape)],
    )?;
    kernel(
        "binary",
        BINARY,
        &vals,
        vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
        params,
        out_shape.numel(),
        binary_trips,
        &opts.target,
    )
}

/// `select(b, a, c)` over three broadcast inputs.
pub fn where_(ins: &[Io], (out_dt, out_shape): Io, opts: &LowerOptions) -> Result<Kernel, Error> {
    let vals = [("ty", Elem::of(out_dt).wgsl().to_string())];
    let views: Vec<View> = ins.iter().map(|i| strided(i.1, out_shape)).collect();
    let params = view_params(out_shape, &views)?;
    kernel(
        "where",
        WHERE,
        &vals,
        vec![Buf::In(0), Buf::In(1), Buf::In(2), Buf::Out(0)],
        params,
        out_shape.numel(),
        3 * loops::rank_walk(out_shape.rank()),
        &opts.target,
    )
}

/// Inference batch norm over the channels (axis 1) of input 0.
pub fn batchnorm(
    epsilon: f32,
    ins: &[Io],
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let d = &ins[0].1 .0;
    let inner: usize = d[2..].iter().product();
    let params = BATCHNORM_PARAMS
        .fill()
        .set("n", n as u32)
        .set("channels", d[1] as u32)
        .set("inner", inner.max(1) as u32)
        .set("eps", epsilon.to_bits())
        .finish()?;
    let binds = vec![
        Buf::In(0),
        Buf::In(1),
        Buf::In(2),
        Buf::In(3),
        Buf::In(4),
        Buf::Out(0),
    ];
    kernel(
        "batchnorm",
        BATCHNORM,
        &[("layout", BATCHNORM_PARAMS.wgsl())],
        binds,
        params,
        n,
        0,
        &opts.target,
    )
}

/// One input read through a broadcast view, one output, `expr` of `x` (unary ops and casts).
fn elementwise1(
    name: &str,
    input: (DType, &Shape),
    out_dt: DType,
    out_shape: &Shape,
    expr: String,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let trips = loops::rank_walk(out_shape.rank()) + expr_trips(&expr);
    let vals = [
        ("in_ty", Elem::of(input.0).wgsl().to_string()),
        ("out_ty", Elem::of(out_dt).wgsl().to_string()),
        ("expr", expr),
    ];
    let params = view_params(out_shape, &[strided(input.1, out_shape)])?;
    kernel(
        name,
        UNARY,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        out_shape.numel(),
        trips,
        &opts.target,
    )
}
