//! Row and axis reductions: softmax, layer norm, reduce, arg-reduce.

use super::Io;
use crate::emit::{apply_splice, kernel, kernel_of, Splice, SpliceFn};
use crate::expr::{fit_int, NEG_INF, POS_INF};
use crate::loops::{self, lp};
use crate::options::LowerOptions;
use crate::params::{one, per, Layout};
use crate::{Buf, Elem, Error, Kernel};
use sfumato_core::op::ReduceOp;
use sfumato_core::shape::contiguous_strides;
use sfumato_core::{DType, Shape};

const SOFTMAX: &str = include_str!("../templates/softmax.wgsl");
const LAYERNORM: &str = include_str!("../templates/layernorm.wgsl");
const REDUCE: &str = include_str!("../templates/reduce.wgsl");
const REDUCE_COMMON: &str = include_str!("../templates/reduce_common.wgsl");
const REDUCE_WG: &str = include_str!("../templates/reduce_wg.wgsl");
const ROW_WG: &str = include_str!("../templates/row_wg.wgsl");
const SOFTMAX_WG: &str = include_str!("../templates/softmax_wg.wgsl");
const LAYERNORM_WG: &str = include_str!("../templates/layernorm_wg.wgsl");
const ARG_REDUCE: &str = include_str!("../templates/arg_reduce.wgsl");

/// ArgMax / ArgMin's params: `len` the axis size, `inner` the dims after it, `max` and `last`
/// flags.
pub const ARG_REDUCE_PARAMS: Layout = Layout::new(
    "arg_reduce",
    "AR",
    &[one("n"), one("len"), one("inner"), one("max"), one("last")],
);
/// Softmax's params: rows of `len` elements `inner` apart.
pub const SOFTMAX_PARAMS: Layout =
    Layout::new("softmax", "SM", &[one("rows"), one("len"), one("inner")]);
/// Layer norm's params: `eps` f32 bits.
pub const LAYERNORM_PARAMS: Layout = Layout::new(
    "layernorm",
    "LN",
    &[one("rows"), one("len"), one("eps"), one("has_bias")],
);
/// A reduction's params: the kept dims and their strides, the reduced dims and their strides.
pub const REDUCE_PARAMS: Layout = Layout::new(
    "reduce",
    "RD",
    &[
        one("n_out"),
        one("count"),
        one("kept_rank"),
        one("red_rank"),
        per("kept_dims", 1, "kept_rank"),
        per("kept_strides", 1, "kept_rank"),
        per("red_dims", 1, "red_rank"),
        per("red_strides", 1, "red_rank"),
    ],
);

/// ArgMax / ArgMin along `axis` (`last`: the last of equal extremes).
pub fn arg_reduce(
    max: bool,
    axis: usize,
    last: bool,
    input: Io,
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let (_, len, inner) = sfumato_core::interp::split_at_axis(&input.1 .0, axis);
    let params = ARG_REDUCE_PARAMS
        .fill()
        .set("n", n as u32)
        .set("len", len as u32)
        .set("inner", inner.max(1) as u32)
        .set("max", max as u32)
        .set("last", last as u32)
        .finish()?;
    let e = Elem::of(input.0);
    let nan_fn = if e == Elem::F32 {
        "fn nan_of(v: f32) -> bool {\n    return is_nan(v);\n}".to_string()
    } else {
        format!(
            "fn nan_of(v: {}) -> bool {{\n    return false;\n}}",
            e.wgsl()
        )
    };
    let vals = [
        ("ty", e.wgsl().to_string()),
        ("nan_fn", nan_fn),
        ("layout", ARG_REDUCE_PARAMS.wgsl()),
    ];
    kernel(
        "arg_reduce",
        ARG_REDUCE,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        n,
        lp(len as u64),
        &opts.target,
    )
}

/// A reduction's splice with nothing fused: `load_x` reads binding 0 as it is stored.
pub fn plain_reduce_splice(dt: DType) -> Splice {
    let ty = Elem::of(dt).wgsl();
    Splice {
        extra: format!(
            "@group(0) @binding(0) var<storage, read> in0: array<{ty}>;\nfn load_x(i: u32) -> {ty} {{\n    return in0[i];\n}}\n"
        ),
        params: Vec::new(),
        first: Buf::In(0),
        bindings: Vec::new(),
        trips: 0,
    }
}

/// A reduction over `axes` of `dims` with a splice (`load_x`, the input, maybe computed by a
/// prologue). Bindings: the splice's first, out, then the splice's others.
pub fn reduce_kernel(
    r: ReduceOp,
    dt: DType,
    dims: &[usize],
    axes: &[usize],
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Kernel, Error> {
    let strides = contiguous_strides(dims);
    let kept: Vec<usize> = (0..dims.len()).filter(|d| !axes.contains(d)).collect();
    let n_out: usize = kept.iter().map(|&d| dims[d]).product();
    let count: usize = axes.iter().map(|&d| dims[d]).product();
    let mut params = REDUCE_PARAMS
        .fill()
        .set("n_out", n_out as u32)
        .set("count", count as u32)
        .set("kept_rank", kept.len() as u32)
        .set("red_rank", axes.len() as u32)
        .set_all("kept_dims", kept.iter().map(|&d| dims[d] as u32))
        .set_all("kept_strides", kept.iter().map(|&d| strides[d] as u32))
        .set_all("red_dims", axes.iter().map(|&d| dims[d] as u32))
        .set_all("red_strides", axes.iter().map(|&d| strides[d] as u32))
        .finish()?;
    let e = Elem::of(dt);
    let float = e == Elem::F32;
    let acc_ty = if float { "f32" } else { "i32" };
    let init = match (r, float) {
        (ReduceOp::Sum | ReduceOp::Mean, true) => "0.0",
        (ReduceOp::Sum | ReduceOp::Mean, false) => "0",
        (ReduceOp::Max, true) => NEG_INF,
        (ReduceOp::Max, false) => "-2147483647 - 1",
        (ReduceOp::Min, true) => POS_INF,
        (ReduceOp::Min, false) => "2147483647",
        (ReduceOp::Prod, true) => "1.0",
        (ReduceOp::Prod, false) => "1",
    };
    let combine = match (r, float) {
        (ReduceOp::Sum | ReduceOp::Mean, _) => "acc + v",
        (ReduceOp::Max, true) => "max_nan(acc, v)",
        (ReduceOp::Min, true) => "min_nan(acc, v)",
        (ReduceOp::Max, false) => "max(acc, v)",
        (ReduceOp::Min, false) => "min(acc, v)",
        (ReduceOp::Prod, _) => "acc * v",
    };
    let value = match (r, float) {
        (ReduceOp::Mean, true) => "acc / f32(count)",
        (ReduceOp::Mean, false) => "select(acc / i32(count), 0, count == 0u)",
        _ => "acc",
    };
    if matches!(dt, DType::U32 | DType::U64) {
        return Err(Error::Unsupported(format!("{} of {dt}", r.name())));
    }
    let finish = match e {
        Elem::U32 => format!("u32(clamp({value}, 0, 255))"),
        Elem::I32 => fit_int(dt, value.to_string()),
        Elem::F32 => value.to_string(),
    };
    let (bindings, spliced, sp) =
        apply_splice(splice, &mut params, |first| vec![first, Buf::Out(0)])?;
    // decode(i) once, then per reduced element: decode(r) and load_x; spread over a workgroup,
    // every wg-th element, then the tree.
    let rr = axes.len();
    let walk =
        |each: u64| loops::rank_walk(kept.len()) + lp(each) + each * (loops::rank_walk(rr) + sp);
    let spread = |wg: usize| walk(count.div_ceil(wg) as u64) + tree_trips(wg);
    let plan = row_plan(count, walk(count as u64), spread, opts);
    let mut vals = vec![
        ("ty", e.wgsl().to_string()),
        ("acc_ty", acc_ty.to_string()),
        ("init", init.to_string()),
        ("combine", combine.to_string()),
        ("finish", finish),
        ("layout", REDUCE_PARAMS.wgsl()),
    ];
    vals.extend(spliced);
    let name = r.name().to_lowercase();
    match plan {
        RowPlan::Serial => kernel_of(
            &name,
            &[REDUCE_COMMON, REDUCE],
            &vals,
            bindings,
            params,
            n_out.div_ceil(256),
            walk(count as u64),
            &opts.target,
        ),
        RowPlan::Workgroup(wg) => {
            vals.push(("wg", wg.to_string()));
            // One workgroup an output.
            kernel_of(
                &format!("{name}_wg"),
                &[REDUCE_COMMON, REDUCE_WG],
                &vals,
                bindings,
                params,
                n_out,
                spread(wg),
                &opts.target,
            )
        }
    }
}

/// Softmax along `axis` of `shape`, one invocation per row, with a splice.
pub fn softmax_kernel(
    axis: usize,
    shape: &Shape,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Kernel, Error> {
    let (outer, len, inner) = sfumato_core::interp::split_at_axis(&shape.0, axis);
    let rows = outer * inner;
    let mut params = SOFTMAX_PARAMS
        .fill()
        .set("rows", rows as u32)
        .set("len", len as u32)
        .set("inner", inner.max(1) as u32)
        .finish()?;
    let (bindings, spliced, sp) =
        apply_splice(splice, &mut params, |first| vec![first, Buf::Out(0)])?;
    let mut vals = vec![("layout", SOFTMAX_PARAMS.wgsl())];
    vals.extend(spliced);
    three_pass_row(
        ["softmax", "softmax_wg"],
        [SOFTMAX, SOFTMAX_WG],
        &vals,
        bindings,
        params,
        (rows, len, sp),
        opts,
    )
}

/// Softmax and layer norm: three passes over a row, per element three `load_x` and one
/// `epilogue` (`sp` loop ends each); one invocation a row (`templates[0]`), or one workgroup a
/// row (`templates[1]`: each pass over every wg-th element, and two trees).
fn three_pass_row(
    names: [&str; 2],
    templates: [&str; 2],
    vals: &[(&str, String)],
    bindings: Vec<Buf>,
    params: Vec<u32>,
    (rows, len, sp): (usize, usize, u64),
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let pass = |each: u64| 3 * lp(each) + each * 4 * sp;
    let spread = |wg: usize| pass(len.div_ceil(wg) as u64) + 2 * tree_trips(wg);
    match row_plan(len, pass(len as u64), spread, opts) {
        RowPlan::Serial => kernel(
            names[0],
            templates[0],
            vals,
            bindings,
            params,
            rows,
            pass(len as u64),
            &opts.target,
        ),
        RowPlan::Workgroup(wg) => {
            let mut vals = vals.to_vec();
            vals.push(("wg", wg.to_string()));
            // One workgroup a row.
            kernel_of(
                names[1],
                &[ROW_WG, templates[1]],
                &vals,
                bindings,
                params,
                rows,
                spread(wg),
                &opts.target,
            )
        }
    }
}

/// How a row kernel (softmax, layer norm, a reduction) spreads over the device.
enum RowPlan {
    /// One invocation a row.
    Serial,
    /// One workgroup of this many invocations a row.
    Workgroup(usize),
}

/// Rows longer than this take a workgroup a row even where one invocation would stay under the
/// loop budget: one invocation walking a long row leaves the device's other lanes idle.
pub const LONG_ROW: usize = 4096;
/// The workgroup sizes a row may spread over, smallest first.
const ROW_WGS: [usize; 2] = [64, 256];

/// One invocation a row where that fits the loop budget and the row is not long, else the
/// smallest workgroup a row whose invocations fit (`wg_trips`), else one invocation a row (which
/// the budget check then refuses).
fn row_plan(
    len: usize,
    serial_trips: u64,
    wg_trips: impl Fn(usize) -> u64,
    opts: &LowerOptions,
) -> RowPlan {
    if len <= LONG_ROW && loops::fits(serial_trips, opts.target.loop_budget) {
        return RowPlan::Serial;
    }
    ROW_WGS
        .into_iter()
        .find(|&wg| loops::fits(wg_trips(wg), opts.target.loop_budget))
        .map_or(RowPlan::Serial, RowPlan::Workgroup)
}

/// Loop ends of one tree combine across a workgroup of `wg` (log2 wg halvings).
fn tree_trips(wg: usize) -> u64 {
    lp(wg.trailing_zeros() as u64)
}

/// Layer norm over `axis..` of `shape`, one invocation per row, with a splice. `scale_bias` are
/// the scale and bias buffers (the scale twice when there is no bias).
pub fn layernorm_kernel(
    axis: usize,
    epsilon: f32,
    scale_bias: [Buf; 2],
    has_bias: bool,
    shape: &Shape,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Kernel, Error> {
    let len: usize = shape.0[axis..].iter().product();
    let rows = shape.numel().checked_div(len).unwrap_or(0);
    let mut params = LAYERNORM_PARAMS
        .fill()
        .set("rows", rows as u32)
        .set("len", len as u32)
        .set("eps", epsilon.to_bits())
        .set("has_bias", has_bias as u32)
        .finish()?;
    let (bindings, spliced, sp) = apply_splice(splice, &mut params, |first| {
        vec![first, scale_bias[0], scale_bias[1], Buf::Out(0)]
    })?;
    let mut vals = vec![("layout", LAYERNORM_PARAMS.wgsl())];
    vals.extend(spliced);
    three_pass_row(
        ["layernorm", "layernorm_wg"],
        [LAYERNORM, LAYERNORM_WG],
        &vals,
        bindings,
        params,
        (rows, len, sp),
        opts,
    )
}
