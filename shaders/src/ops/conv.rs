//! Convolutions and pools: conv2d (direct, implicit GEMM, uniform-block weights, pointwise as a
//! matmul), conv transpose, max and average pools.

use super::Io;
use crate::emit::{apply_splice, grid, kernel, module, plain_splice, SpliceFn};
use crate::expr::NEG_INF;
use crate::loops::{self, lp};
use crate::matmul::{
    conv1x1_problem, layout_vals, matmul_kernel, matmul_params, pick_variant, ubo, MatmulProblem,
    MatmulVariant, CONV_GEMM_PARAMS, CONV_PARAMS, MATMUL_COMMON, MATMUL_PARAMS,
};
use crate::options::LowerOptions;
use crate::params::{one, Layout};
use crate::{Buf, Elem, Error, Kernel};
use sfumato_core::op::{Conv2d, Op};
use sfumato_core::Shape;

const POOL2D: &str = include_str!("../templates/pool2d.wgsl");
const CONV2D: &str = include_str!("../templates/conv2d.wgsl");
const CONV2D_GEMM: &str = include_str!("../templates/conv2d_gemm.wgsl");
const CONV_TRANSPOSE2D: &str = include_str!("../templates/conv_transpose2d.wgsl");
const CONV_STAGE: &str = include_str!("../templates/conv_stage.wgsl");
const CONV_DW: &str = include_str!("../templates/conv_dw.wgsl");
const MAXPOOL_TEX: &str = include_str!("../templates/maxpool_tex.wgsl");

/// The depthwise conv's params (`conv_dw.wgsl`): images, channels, input and output sizes, the
/// output blocks a row (`bx`) and a column (`by`), this dispatch's first channel and channels,
/// whether there is a bias. The window is written into the module.
pub const CONV_DW_PARAMS: Layout = Layout::new(
    "conv_dw",
    "DW",
    &[
        one("n"),
        one("c"),
        one("h"),
        one("w"),
        one("oh"),
        one("ow"),
        one("bx"),
        one("by"),
        one("c0"),
        one("cp"),
        one("has_bias"),
    ],
);

/// The params of `conv_stage.wgsl` (the image column written to the staging texture): texels a
/// row (`n4` = ceil(N / 4)), rows (K = C * KH * KW), images, pixels (N = OH * OW), then the
/// input and the window as the implicit GEMM has them (`CONV_GEMM_PARAMS`, from `cv`).
pub const CONV_STAGE_PARAMS: Layout = Layout::new(
    "conv_stage",
    "IS",
    &[one("n4"), one("k"), one("batch"), one("n"), one("cv")],
);

/// The input and window params of a conv (`CONV_GEMM_PARAMS`): channels and size of the input,
/// the output's width, the kernel, strides, pads (top, left) and dilations.
fn conv_window_params(c: &Conv2d, x: &[usize], w: &[usize], ow: usize) -> Result<Vec<u32>, Error> {
    CONV_GEMM_PARAMS
        .fill()
        .set("ch", x[1] as u32)
        .set("h", x[2] as u32)
        .set("w", x[3] as u32)
        .set("ow", ow as u32)
        .window([w[2], w[3]], c.stride, c.padding, c.dilation)
        .finish()
}

/// A pool's params: input and output sizes, the window (kernel, strides, pads top and left,
/// dilations), whether an average counts the pads.
pub const POOL_PARAMS: Layout = Layout::new(
    "pool2d",
    "PL",
    &[
        one("n"),
        one("h"),
        one("w"),
        one("oh"),
        one("ow"),
        one("kh"),
        one("kw"),
        one("sh"),
        one("sw"),
        one("pt"),
        one("pl"),
        one("dh"),
        one("dw"),
        one("count_include_pad"),
    ],
);
/// The direct conv's params: `cig` = C / groups, `cog` = O / groups, `bx` = ceil(OW / 4),
/// `bo` = ceil(cog / 4) (its 4 x 4 register blocks).
pub const CONV2D_PARAMS: Layout = Layout::new(
    "conv2d",
    "C2",
    &[
        one("n"),
        one("c"),
        one("h"),
        one("w"),
        one("o"),
        one("oh"),
        one("ow"),
        one("kh"),
        one("kw"),
        one("sh"),
        one("sw"),
        one("pt"),
        one("pl"),
        one("dh"),
        one("dw"),
        one("cig"),
        one("cog"),
        one("has_bias"),
        one("bx"),
        one("bo"),
    ],
);
/// A conv transpose's params: `cig` = C / groups, `cog` the output channels per group.
pub const CONV_TRANSPOSE_PARAMS: Layout = Layout::new(
    "conv_transpose2d",
    "CT",
    &[
        one("n"),
        one("c"),
        one("h"),
        one("w"),
        one("o"),
        one("oh"),
        one("ow"),
        one("kh"),
        one("kw"),
        one("sh"),
        one("sw"),
        one("pt"),
        one("pl"),
        one("dh"),
        one("dw"),
        one("cig"),
        one("cog"),
        one("has_bias"),
    ],
);

/// A conv2d node: pointwise as a batched matmul, one group as an implicit GEMM, else direct.
pub fn conv2d(
    c: &Conv2d,
    ins: &[Io],
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Vec<Kernel>, Error> {
    let has_bias = ins.len() == 3;
    let staged = runs_staged(c, &ins[0].1 .0, &ins[1].1 .0, out_shape, opts);
    if let Some(p) = conv1x1_problem(c, &ins[0].1 .0, &ins[1].1 .0, has_bias).filter(|_| !staged) {
        let mut kerns = matmul_kernel(&p, pick_variant(&p, opts)?, opts)?;
        // The matmul reads A = weight (input 1) and B = image (input 0).
        for b in kerns.iter_mut().flat_map(|k| k.bindings.iter_mut()) {
            *b = match *b {
                Buf::In(0) => Buf::In(1),
                Buf::In(1) => Buf::In(0),
                Buf::StageLinear {
                    input,
                    texels,
                    layer,
                } if input < 2 => Buf::StageLinear {
                    input: 1 - input,
                    texels,
                    layer,
                },
                Buf::Uniform {
                    input: 0,
                    offset,
                    size,
                } => Buf::Uniform {
                    input: 1,
                    offset,
                    size,
                },
                other => other,
            };
        }
        return Ok(kerns);
    }
    let bias = if has_bias { Buf::In(2) } else { Buf::In(1) };
    let conv = if c.groups == 1 {
        conv2d_gemm_kernel
    } else {
        conv2d_kernel
    };
    conv(
        c,
        &ins[0].1 .0,
        &ins[1].1 .0,
        bias,
        has_bias,
        out_shape,
        opts,
        &|_| Ok(plain_splice(false)),
    )
}

/// Max, average, and max-with-indices 2-d pools.
pub fn pool2d(
    op: &Op,
    x: &Shape,
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let (Op::MaxPool2d(p) | Op::AvgPool2d(p) | Op::MaxPoolIndices2d { pool: p, .. }) = op else {
        return Err(Error::Internal(format!("{} is not a pool", op.name())));
    };
    let n = out_shape.numel();
    let x = &x.0;
    if let (Op::MaxPool2d(p), true) = (op, opts.target.uniform_block_operands) {
        if x.len() == 4 && out_shape.0.len() == 4 && p.kernel[0] * p.kernel[1] <= 49 {
            return maxpool_tex(p, x, out_shape, opts);
        }
    }
    let params = pool_params(p, x, out_shape)?;
    let pool_trips = lp(p.kernel[0] as u64) + p.kernel[0] as u64 * lp(p.kernel[1] as u64);
    let (name, vals): (&str, [(&str, String); 4]) = match op {
        Op::MaxPool2d(_) => (
            "maxpool2d",
            [
                ("init", NEG_INF.into()),
                ("combine", "acc = max_nan(acc, v);".into()),
                ("finish", "acc".into()),
                ("out_ty", "f32".into()),
            ],
        ),
        Op::MaxPoolIndices2d { col_major, .. } => (
            "maxpool2d_indices",
            [
                ("init", NEG_INF.into()),
                (
                    "combine",
                    format!(
                        "if (cnt == 0u || v > acc) {{ acc = v; at = base + u32({}); }}",
                        if *col_major {
                            "iy + ix * h"
                        } else {
                            "iy * w + ix"
                        }
                    ),
                ),
                ("finish", "select(-1, i32(at), cnt > 0u)".into()),
                ("out_ty", "i32".into()),
            ],
        ),
        _ => (
            "avgpool2d",
            [
                ("init", "0.0".into()),
                ("combine", "acc = acc + v;".into()),
                (
                    "finish",
                    "acc / f32(select(max(cnt, 1u), params[PL_KH] * params[PL_KW], params[PL_COUNT_INCLUDE_PAD] != 0u))"
                        .into(),
                ),
                ("out_ty", "f32".into()),
            ],
        ),
    };
    let mut vals = vals.to_vec();
    vals.push(("layout", POOL_PARAMS.wgsl()));
    kernel(
        name,
        POOL2D,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        n,
        pool_trips,
        &opts.target,
    )
}

/// A 2-d pool's params (`POOL_PARAMS`): the output's size, the input's and the output's
/// height and width, the window.
fn pool_params(
    p: &sfumato_core::op::Pool2d,
    x: &[usize],
    out_shape: &Shape,
) -> Result<Vec<u32>, Error> {
    POOL_PARAMS
        .fill()
        .set("n", out_shape.numel() as u32)
        .set("h", x[2] as u32)
        .set("w", x[3] as u32)
        .set("oh", out_shape.0[2] as u32)
        .set("ow", out_shape.0[3] as u32)
        .window(p.kernel, p.stride, p.padding, p.dilation)
        .set("count_include_pad", p.count_include_pad as u32)
        .finish()
}

/// A max pool (a window of at most 7x7) on a CPU adapter: `maxpool_tex.wgsl`, the window and
/// the block written out as the depthwise conv's ([`Window`]): about 64 outputs of one plane an
/// invocation, neighbouring invocations neighbouring planes, each input row the block needs read
/// once, as texels where the input is whole texels (copied to the staging texture by a copy
/// command), -inf outside the input. The one-invocation-an-output kernel read each value once
/// per window that holds it, each read a storage read (a loop over the SIMD lanes there).
fn maxpool_tex(
    p: &sfumato_core::op::Pool2d,
    x: &[usize],
    out_shape: &Shape,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let win = Window::new(
        x,
        p.kernel,
        p.stride,
        p.dilation,
        p.padding,
        [oh, ow],
        &opts.target,
    );
    let (rows, cols) = (win.rows, win.cols);
    let (bx, by) = (ow.div_ceil(cols), oh.div_ceil(rows));
    let planes = x[0] * x[1];
    let (accs, body) = win.body(NEG_INF, &|_, v, a| format!("{a} = max_nan({a}, {v});"));
    let res = win.stores(&|at, a| format!("out0[{at}] = {a};"));
    let params = pool_params(p, x, out_shape)?;
    let mut vals: Vec<(&str, String)> = vec![
        ("layout", POOL_PARAMS.wgsl()),
        (
            "source",
            if win.linear {
                "as texels"
            } else {
                "from storage"
            }
            .to_string(),
        ),
        ("planes", planes.to_string()),
        ("bx", bx.to_string()),
        ("by", by.to_string()),
        ("accs", accs),
        ("body", body),
        ("res", res),
    ];
    vals.extend(win.vals());
    let threads = (planes * bx * by) as u64;
    Ok(Kernel {
        name: if win.linear {
            "maxpool2d_tex"
        } else {
            "maxpool2d_block"
        }
        .into(),
        wgsl: module("maxpool_tex", &[MAXPOOL_TEX], &vals)?,
        bindings: vec![win.x_binding(), Buf::Out(0)],
        params,
        workgroups: if out_shape.numel() == 0 {
            [0, 0, 0]
        } else {
            grid(threads.div_ceil(64), &opts.target)?
        },
        loop_trips: 0,
    })
}

/// A conv transpose (fractionally strided conv), one invocation an output.
pub fn conv_transpose2d(
    c: &sfumato_core::op::ConvTranspose2d,
    ins: &[Io],
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let (x, w) = (&ins[0].1 .0, &ins[1].1 .0);
    let has_bias = ins.len() == 3;
    let params = CONV_TRANSPOSE_PARAMS
        .fill()
        .set("n", n as u32)
        .set("c", x[1] as u32)
        .set("h", x[2] as u32)
        .set("w", x[3] as u32)
        .set("o", out_shape.0[1] as u32)
        .set("oh", out_shape.0[2] as u32)
        .set("ow", out_shape.0[3] as u32)
        .window([w[2], w[3]], c.stride, c.padding, c.dilation)
        .set("cig", (x[1] / c.groups) as u32)
        .set("cog", w[1] as u32)
        .set("has_bias", has_bias as u32)
        .finish()?;
    let bias = if has_bias { Buf::In(2) } else { Buf::In(1) };
    let binds = vec![Buf::In(0), Buf::In(1), bias, Buf::Out(0)];
    let (cig, kh, kw) = ((x[1] / c.groups) as u64, w[2] as u64, w[3] as u64);
    let ct_trips = lp(cig) + cig * lp(kh) + cig * kh * lp(kw);
    kernel(
        "conv_transpose2d",
        CONV_TRANSPOSE2D,
        &[("layout", CONV_TRANSPOSE_PARAMS.wgsl())],
        binds,
        params,
        n,
        ct_trips,
        &opts.target,
    )
}

/// Direct conv2d (x, w, optional bias) with a splice for the store; depthwise convs on a CPU
/// adapter take `conv_dw` instead.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_kernel(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    bias: Buf,
    has_bias: bool,
    out_shape: &Shape,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    conv2d_direct(
        c,
        x,
        w,
        bias,
        has_bias,
        out_shape,
        ConvElem::F32,
        opts,
        splice,
    )
}

/// What the direct conv computes in: f32, or i32 sums (the integer conv) stored as `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvElem {
    F32,
    Int { out: Elem },
}

impl ConvElem {
    fn vals(self) -> [(&'static str, String); 4] {
        let (el, out, zero, mac) = match self {
            ConvElem::F32 => ("f32", Elem::F32, "0.0", "fma(vec4<f32>(wv), xv, acc)"),
            ConvElem::Int { out } => ("i32", out, "0", "acc + wv * xv"),
        };
        [
            ("el", el.into()),
            ("out_ty", out.wgsl().into()),
            ("zero", zero.into()),
            ("mac", mac.into()),
        ]
    }
}

/// The integer conv ([`Op::ConvInteger`](sfumato_core::Op)): the direct conv's register block
/// over i32 operands (image, weight, and the bias, input 2, where `has_bias`), its sums
/// through the splice's epilogue, stored as `out`. Without a bias its (unread) binding is the
/// image's, never the weight's, so the weight has one reader and may be packed
/// ([`crate::packed`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int_kernel(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    has_bias: bool,
    out_shape: &Shape,
    out: Elem,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    let bias = Buf::In(if has_bias { 2 } else { 0 });
    conv2d_direct(
        c,
        x,
        w,
        bias,
        has_bias,
        out_shape,
        ConvElem::Int { out },
        opts,
        splice,
    )
}

/// The direct conv: 4 output channels x 4 columns per invocation, any groups.
#[allow(clippy::too_many_arguments)]
fn conv2d_direct(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    bias: Buf,
    has_bias: bool,
    out_shape: &Shape,
    elem: ConvElem,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    if elem == ConvElem::F32
        && opts.target.uniform_block_operands
        && c.groups == x[1]
        && w[0] == x[1]
        && w[1] == 1
        && w[2] * w[3] <= 25
    {
        return conv_dw_kernels(c, x, w, bias, has_bias, out_shape, opts, splice);
    }
    let n = out_shape.numel();
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let cog = w[0] / c.groups;
    let (bx, bo) = (ow.div_ceil(4), cog.div_ceil(4));
    let mut params = CONV2D_PARAMS
        .fill()
        .set("n", x[0] as u32)
        .set("c", x[1] as u32)
        .set("h", x[2] as u32)
        .set("w", x[3] as u32)
        .set("o", w[0] as u32)
        .set("oh", oh as u32)
        .set("ow", ow as u32)
        .window([w[2], w[3]], c.stride, c.padding, c.dilation)
        .set("cig", w[1] as u32)
        .set("cog", cog as u32)
        .set("has_bias", has_bias as u32)
        .set("bx", bx as u32)
        .set("bo", bo as u32)
        .finish()?;
    let (bindings, spliced, sp) = apply_splice(splice, &mut params, |_| {
        vec![Buf::In(0), Buf::In(1), bias, Buf::Out(0)]
    })?;
    let mut vals = vec![("layout", CONV2D_PARAMS.wgsl())];
    vals.extend(elem.vals());
    vals.extend(spliced);
    let threads = x[0] * c.groups * bo * oh * bx;
    // Per input channel of the group: the tap loops (their 4 x 4 bodies written out); then the
    // 4 x 4 store block.
    let (cig, kh, kw) = (w[1] as u64, w[2] as u64, w[3] as u64);
    let loop_trips = lp(cig) + cig * lp(kh) + cig * kh * lp(kw) + lp(4) + 4 * lp(4) + 16 * sp;
    let name = match elem {
        ConvElem::F32 => "conv2d",
        ConvElem::Int { .. } => "conv2d_int",
    };
    let wgsl = module(name, &[CONV2D], &vals)?;
    let workgroups = if n == 0 {
        [0, 0, 0]
    } else {
        grid(threads.div_ceil(64) as u64, &opts.target)?
    };
    let k = Kernel {
        name: name.into(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips,
    };
    Ok(vec![k])
}

/// The register block of the implicit-GEMM conv: (output channels, pixels) per invocation and the
/// workgroup (x, y). Measured on lavapipe (Zen 3) for the ResNet 3x3 conv 64->64 at 56x56:
/// 16x16 with one row of 16 invocations (weight loads uniform) 142-150 ms; 16x8 x 16x1 172 ms;
/// 8x16 x 8x8 217 ms; 8x8 x 8x8 244 ms; the direct conv2d kernel 334 ms.
const CONV_GEMM_BLOCK: (u32, u32, u32, u32) = (16, 16, 16, 1);

/// The `conv2d_ubo` block on CPU adapters: 16 output channels x 16 pixels per invocation, one
/// row of 16 invocations (a tile of 16 x 256).
const CONV_UBO_ROWS: u8 = 16;
const CONV_UBO_COLS4: u8 = 4;
const CONV_UBO_WG: u8 = 16;
const CONV_UBO_BLOCK: MatmulVariant = MatmulVariant::Ubo {
    rows: CONV_UBO_ROWS,
    cols4: CONV_UBO_COLS4,
    wg_x: CONV_UBO_WG,
};

/// Conv2d with one group as an implicit GEMM (see `conv2d_gemm.wgsl`), with a splice for the
/// store. Bindings: weight (input 1), image (input 0), bias, out, then the splice's.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_gemm_kernel(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    bias: Buf,
    has_bias: bool,
    out_shape: &Shape,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    let (rows, cols, wg_x, wg_y) = CONV_GEMM_BLOCK;
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let (m, n, k) = (w[0], oh * ow, w[1] * w[2] * w[3]);
    let batch = x[0];
    let (tm, tn) = (rows * wg_y, cols * wg_x);
    let (tiles_m, tiles_n) = (m.div_ceil(tm as usize), n.div_ceil(tn as usize));
    let prob = conv_gemm_problem(x, w, out_shape, has_bias);
    let mut params = matmul_params(&prob, tiles_n, tiles_m)?;
    params.extend(conv_window_params(c, x, w, ow)?);
    if opts.target.uniform_block_operands && (m * n * k * batch) as u64 >= ubo::UBO_CONV_MIN_MACS {
        if runs_staged(c, x, w, out_shape, opts) {
            return conv2d_staged(c, x, w, ow, &prob, &params, bias, opts, splice);
        }
        // Weights from uniform blocks, the block written out (`conv2d_ubo`), where they fit.
        let v = CONV_UBO_BLOCK;
        let tile_n = CONV_UBO_COLS4 as usize * 4 * CONV_UBO_WG as usize;
        // (Whole 16-row blocks only: weights of over 1,024 per output channel keep `conv2d_gemm`.)
        if conv_ubo_fits(&prob, &opts.target) {
            params[MATMUL_PARAMS.at("tiles_n")?] = n.div_ceil(tile_n) as u32;
            let spec = ubo::UboSpec {
                a_input: 1,
                b: Buf::In(0),
                bias,
                src: ubo::BSource::Conv,
                name: "conv2d_ubo".into(),
            };
            return ubo::ubo_kernels(&prob, v, opts, splice, params, &spec);
        }
    }
    let (bindings, spliced, sp) = apply_splice(splice, &mut params, |_| {
        vec![Buf::In(1), Buf::In(0), bias, Buf::Out(0)]
    })?;
    // One loop over k = (channel, tap) (the register block's loops are written out), then the
    // store block.
    let loop_trips = lp(k as u64) + loops::store_block(rows as u64, (cols / 4) as u64, sp);
    let mut vals = vec![
        ("rows", rows.to_string()),
        ("cols", cols.to_string()),
        ("cols4", (cols / 4).to_string()),
        ("wg_x", wg_x.to_string()),
        ("wg_y", wg_y.to_string()),
        ("tile_m", tm.to_string()),
        ("tile_n", tn.to_string()),
    ];
    vals.extend(spliced);
    vals.extend(layout_vals(true));
    let wgsl = module(
        "conv2d_gemm",
        &[MATMUL_COMMON, CONV_PARAMS, CONV2D_GEMM],
        &vals,
    )?;
    let wgs = tiles_m * tiles_n * batch;
    let workgroups = if out_shape.numel() == 0 {
        [0, 0, 0]
    } else {
        grid(wgs as u64, &opts.target)?
    };
    let k = Kernel {
        name: "conv2d_gemm".into(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips,
    };
    Ok(vec![k])
}

/// Whether a one-group conv runs staged (`conv2d_staged`) on this target: a CPU adapter's
/// (uniform blocks and textures fast, storage reads slow), a conv of at least
/// `UBO_CONV_MIN_MACS` multiply-adds and enough output channels (`staged_conv_wide_enough`) whose image
/// column fits the staging texture and whose weights fit uniform blocks, unless it is a window
/// wider than 1x1 of at most the target's `implicit_conv_max_out` output channels that
/// `conv2d_ubo` takes (`conv_ubo_fits`; lavapipe: `LLVMPIPE_IMPLICIT_CONV_MAX_OUT`, whose
/// doc has the measurements). Pointwise convs too: on lavapipe (Zen 3) the staged 1x1 convs of
/// ResNet-50 ran 11-13 GFLOP/s against 4-6 for the matmul reading the image as storage vec4
/// rows, and 0.9 for `rb4` where the pixels are not a multiple of 4 (7 x 7).
pub fn runs_staged(c: &Conv2d, x: &[usize], w: &[usize], out: &Shape, opts: &LowerOptions) -> bool {
    let t = &opts.target;
    if c.groups != 1 || !t.uniform_block_operands || x.len() != 4 || w.len() != 4 {
        return false;
    }
    let p = conv_gemm_problem(x, w, out, false);
    let batch = p.offsets.len();
    let pointwise = w[2] == 1 && w[3] == 1;
    (p.m * p.n * p.k * batch) as u64 >= ubo::UBO_CONV_MIN_MACS
        && sfumato_core::legalize::staged_conv_wide_enough(p.m, p.k)
        && ubo::stage_fits(p.n, p.k, batch, t)
        && ubo::ubo_layout(&p, 16, t.max_uniform_blocks as usize).is_some()
        && !(p.m <= t.implicit_conv_max_out && !pointwise && conv_ubo_fits(&p, t))
}

/// Whether `conv2d_ubo` takes the conv of `p`: its weights in whole 16-row uniform blocks (at
/// most 1,024 weights an output channel).
fn conv_ubo_fits(p: &MatmulProblem, t: &sfumato_core::TargetProfile) -> bool {
    ubo::ubo_layout(p, CONV_UBO_ROWS as usize, t.max_uniform_blocks as usize)
        .is_some_and(|l| l.q == 1)
}

/// The matmul a staged conv runs after `conv_stage` (B its image column, a contiguous `K x N`
/// matrix per image in the staging texture), marked `staged_conv`, for the device to choose and
/// measure its `ubo` block by; `None` where the conv does not run staged ([`runs_staged`]).
pub fn staged_conv_problem(
    c: &Conv2d,
    x: &[usize],
    w: &[usize],
    out: &Shape,
    has_bias: bool,
    opts: &LowerOptions,
) -> Option<MatmulProblem> {
    if !runs_staged(c, x, w, out, opts) {
        return None;
    }
    let mut p = conv_gemm_problem(x, w, out, has_bias);
    let (n, k) = (p.n, p.k);
    p.b_sk = n;
    p.b_sn = 1;
    for (b, o) in p.offsets.iter_mut().enumerate() {
        o[1] = b * k * n;
    }
    p.staged_conv = true;
    Some(p)
}

/// A one-group conv as the implicit GEMM sees it: `C[n][o, p] = W[o, k] X[n][k, p]`, M = O,
/// N = OH * OW, K = C * KH * KW, one batch an image (B's offset the image's start).
fn conv_gemm_problem(x: &[usize], w: &[usize], out: &Shape, has_bias: bool) -> MatmulProblem {
    let (m, n, k) = (w[0], out.0[2] * out.0[3], w[1] * w[2] * w[3]);
    MatmulProblem {
        m,
        n,
        k,
        alpha: 1.0,
        beta: 1.0,
        has_bias,
        a_sm: k,
        a_sk: 1,
        b_sk: 0,
        b_sn: 0,
        c_sm: 1,
        c_sn: 0,
        offsets: (0..x[0]).map(|b| [0, b * x[1] * x[2] * x[3], 0]).collect(),
        b_const: false,
        staged_conv: false,
    }
}

/// Conv2d (groups = 1) in two steps where the target reads uniform blocks and textures fast
/// (lavapipe): the image column is written once to the staging texture (`conv_stage.wgsl`),
/// then a `ubo` matmul reads the weights (A, `O x K`) from uniform blocks and the column (B) as
/// texels. The implicit GEMM gathers every pixel of the column once per tile of output
/// channels, each gather a storage read (a loop over the lanes on lavapipe); here each is read
/// once and the matmul reads texels, as it reads a constant weight. For the convs
/// [`runs_staged`] accepts (the column fits the staging texture, the weights uniform blocks).
/// `prob` and `params` are the implicit GEMM's (matmul params, then the conv params).
#[allow(clippy::too_many_arguments)]
fn conv2d_staged(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    ow: usize,
    prob: &MatmulProblem,
    params: &[u32],
    bias: Buf,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    let (n, k, batch) = (prob.n, prob.k, prob.offsets.len());
    let n4 = n.div_ceil(4);
    // A 1x1 conv of stride 1 without padding: the image column is the image (C x N a layer),
    // copied to the staging texture by a copy command where its rows are whole texels.
    // (B then has rows of N values: `prob`, the implicit GEMM's, reads the image through the
    // conv params instead; its images start where the layers would.)
    let pointwise = w[2] == 1 && w[3] == 1 && c.stride == [1, 1] && c.padding == [0; 4];
    let rows = MatmulProblem {
        b_sk: n,
        b_sn: 1,
        ..prob.clone()
    };
    let linear = pointwise
        .then(|| ubo::linear_binding(&rows, 0, &opts.target))
        .flatten();
    // The block the device chose for the conv's shape class (measured by the autotuner,
    // [`staged_conv_problem`]) where it lays the weights out in uniform blocks, else the default.
    let v = opts
        .matmul
        .filter(|v| match *v {
            MatmulVariant::Ubo { rows, .. } => {
                ubo::ubo_layout(prob, rows as usize, opts.target.max_uniform_blocks as usize)
                    .is_some()
            }
            _ => false,
        })
        .unwrap_or_else(|| ubo::staged_conv_default(n));
    let mut mm_params = params.to_vec();
    let (_, tn) = v.tile().unwrap_or((16, 64));
    mm_params[MATMUL_PARAMS.at("tiles_n")?] = n.div_ceil(tn as usize) as u32;
    // B copied (rows of N values) or written by `conv_stage` (the image column, layer per image).
    let (mut ks, b, src) = match linear {
        Some(b) => {
            mm_params[MATMUL_PARAMS.at("b_sk")?] = n as u32;
            mm_params[MATMUL_PARAMS.at("b_sn")?] = 1;
            (Vec::new(), b, ubo::BSource::Linear)
        }
        None => {
            let mut sp = CONV_STAGE_PARAMS
                .fill()
                .set("n4", n4 as u32)
                .set("k", k as u32)
                .set("batch", batch as u32)
                .set("n", n as u32)
                .set("cv", 0)
                .finish()?;
            // The window's params start at the `cv` slot.
            sp.pop();
            sp.extend(conv_window_params(c, x, w, ow)?);
            let write = ubo::stage_kernel(
                "conv_stage",
                CONV_STAGE,
                &[
                    ("layout", CONV_STAGE_PARAMS.wgsl()),
                    ("cv_layout", CONV_GEMM_PARAMS.wgsl()),
                ],
                0,
                prob,
                sp,
                opts,
            )?;
            (vec![write], ubo::stage_of(prob, false), ubo::BSource::Stage)
        }
    };
    let spec = ubo::UboSpec {
        a_input: 1,
        b,
        bias,
        src,
        name: "conv2d_staged".into(),
    };
    ks.extend(ubo::ubo_kernels(prob, v, opts, splice, mm_params, &spec)?);
    Ok(ks)
}

/// Depthwise conv (groups = C = O, a window of at most 5x5) on a CPU adapter: `conv_dw.wgsl`,
/// specialised to the window and the block. Each invocation computes a block of about 64
/// outputs of one channel (neighbouring invocations neighbouring channels) and reads the input
/// rows the block needs once, from the staging texture where the input fits it (copied there
/// by a copy command, [`Buf::StageLinear`]: texels are read in vector code, a storage element
/// in a loop over the SIMD lanes), else from storage; the weights come from uniform blocks, one
/// dispatch per range of channels whose weights fit one (a multiple of 64 channels, so each
/// range starts on a 256-byte boundary). Bindings: x (or its texels), the weights' block, bias,
/// out, the splice's.
#[allow(clippy::too_many_arguments)]
fn conv_dw_kernels(
    c: &sfumato_core::op::Conv2d,
    x: &[usize],
    w: &[usize],
    bias: Buf,
    has_bias: bool,
    out_shape: &Shape,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    let (ch, kh, kw) = (x[1], w[2], w[3]);
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let sw = c.stride[1];
    let dw = c.dilation[1];
    let taps = kh * kw;
    let win = Window::new(
        x,
        [kh, kw],
        c.stride,
        c.dilation,
        c.padding,
        [oh, ow],
        &opts.target,
    );
    let (linear, rows, cols) = (win.linear, win.rows, win.cols);
    let (bx, by) = (ow.div_ceil(cols), oh.div_ceil(rows));
    let seg = (cols - 1) * sw + (kw - 1) * dw + 1;
    let per_block = (ubo::UBO_MAX_BYTES / 4 / taps) / 64 * 64;
    let mut out = Vec::new();
    let mut wloads = String::new();
    for t in 0..taps {
        wloads += &format!("    let w{t} = wt(wb + {t}u);\n");
    }
    let (accs, body) = win.body("0.0", &|tap, v, a| format!("{a} = fma(w{tap}, {v}, {a});"));
    let res = win.stores(&|at, a| format!("epilogue({at}, {a} + b0);"));
    let source = if linear {
        "as texels (x copied to the staging texture, four values a texel in order)"
    } else {
        "from storage"
    };
    let x_bind = win.x_binding();
    let mut c0 = 0;
    while c0 < ch {
        let cp = per_block.min(ch - c0);
        let mut params = CONV_DW_PARAMS
            .fill()
            .set("n", x[0] as u32)
            .set("c", ch as u32)
            .set("h", x[2] as u32)
            .set("w", x[3] as u32)
            .set("oh", oh as u32)
            .set("ow", ow as u32)
            .set("bx", bx as u32)
            .set("by", by as u32)
            .set("c0", c0 as u32)
            .set("cp", cp as u32)
            .set("has_bias", has_bias as u32)
            .finish()?;
        let block = Buf::Uniform {
            input: 1,
            offset: (c0 * taps * 4) as u32,
            size: (cp * taps * 4).div_ceil(16) as u32 * 16,
        };
        let (bindings, spliced, sp) = apply_splice(splice, &mut params, |_| {
            vec![x_bind, block, bias, Buf::Out(0)]
        })?;
        let mut vals: Vec<(&str, String)> = vec![
            ("layout", CONV_DW_PARAMS.wgsl()),
            ("source", source.to_string()),
            ("seg", seg.to_string()),
            ("taps", taps.to_string()),
            ("wlen", (cp * taps).div_ceil(4).to_string()),
            ("wloads", wloads.clone()),
            ("accs", accs.clone()),
            ("body", body.clone()),
            ("res", res.clone()),
        ];
        vals.extend(win.vals());
        vals.extend(spliced);
        let threads = x[0] * cp * by * bx;
        let n = (rows * cols) as u64;
        let k = Kernel {
            name: if linear { "conv_dw_tex" } else { "conv_dw" }.into(),
            wgsl: module("conv_dw", &[CONV_DW], &vals)?,
            bindings,
            params,
            workgroups: if out_shape.numel() == 0 {
                [0, 0, 0]
            } else {
                grid(threads.div_ceil(64) as u64, &opts.target)?
            },
            loop_trips: n * sp,
        };
        out.push(k);
        c0 += cp;
    }
    Ok(out)
}

/// A window op's unrolled block (`conv_dw`, `maxpool2d_tex`): which outputs one invocation
/// computes and how it reads its input. Its rows x columns of outputs of one plane read the
/// input rows the block needs once each, a segment of values a row, as texels of the staging
/// texture's linear layout where the input is whole texels and fits ([`Buf::StageLinear`]), else
/// from storage (`x`). The WGSL it writes expects `plane` (the plane's first value), `iy0` and
/// `ix0` (the block's first input row and column, i32), `h` and `w` (i32), and with texels
/// `xtexel` ([`Window::xfn`]).
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad_top: usize,
    pad_left: usize,
    linear: bool,
    aligned: bool,
    texels: usize,
    rows: usize,
    cols: usize,
}

impl Window {
    fn new(
        x: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        padding: [usize; 4],
        [oh, ow]: [usize; 2],
        target: &sfumato_core::TargetProfile,
    ) -> Window {
        let numel: usize = x.iter().product();
        let texels = numel / 4;
        let linear = numel.is_multiple_of(4)
            && crate::stage_linear_fits(texels, target.max_texture_side)
            && numel < i32::MAX as usize;
        let aligned = linear && x[3].is_multiple_of(4);
        let (rows, cols) = dw_block(oh, ow, stride[1], aligned);
        Window {
            kernel,
            stride,
            dilation,
            pad_top: padding[0],
            pad_left: padding[1],
            linear,
            // Every block's segment starts on the same component of a texel.
            aligned: aligned && (cols * stride[1]).is_multiple_of(4),
            texels,
            rows,
            cols,
        }
    }

    /// The binding of input 0: its texels (copied to the staging texture) or its buffer.
    fn x_binding(&self) -> Buf {
        if self.linear {
            Buf::StageLinear {
                input: 0,
                texels: self.texels as u32,
                layer: 0,
            }
        } else {
            Buf::In(0)
        }
    }

    /// The template values every window kernel fills: binding 0's declaration (`xdecl`) and
    /// texel helper (`xfn`), the block (`rows`, `cols`), the window (`kh`, `kw`, `sh`, `sw`,
    /// `dh`, `dw`) and the pads (`pt`, `pl`).
    fn vals(&self) -> Vec<(&'static str, String)> {
        let (xdecl, xfn) = self.xfn();
        let ([kh, kw], [sh, sw], [dh, dw]) = (self.kernel, self.stride, self.dilation);
        let mut vals = vec![("xdecl", xdecl), ("xfn", xfn)];
        for (k, v) in [
            ("rows", self.rows),
            ("cols", self.cols),
            ("kh", kh),
            ("kw", kw),
            ("sh", sh),
            ("sw", sw),
            ("dh", dh),
            ("dw", dw),
            ("pt", self.pad_top),
            ("pl", self.pad_left),
        ] {
            vals.push((k, v.to_string()));
        }
        vals
    }

    /// The block's outputs inside the output (`oh` x `ow` from `obase`), each written by
    /// `store(index, accumulator)`.
    fn stores(&self, store: &dyn Fn(&str, &str) -> String) -> String {
        let mut res = String::new();
        for r in 0..self.rows {
            for j in 0..self.cols {
                let at = format!("obase + (oy0 + {r}u) * ow + ox0 + {j}u");
                res += &format!(
                    "    if (oy0 + {r}u < oh && ox0 + {j}u < ow) {{\n        {}\n    }}\n",
                    store(&at, &format!("a{r}_{j}"))
                );
            }
        }
        res
    }

    /// The declaration of binding 0 and the helper that reads a texel (none from storage).
    fn xfn(&self) -> (String, String) {
        if !self.linear {
            return (
                "@group(0) @binding(0) var<storage, read> x: array<f32>;".into(),
                String::new(),
            );
        }
        let xfn = format!(
            "
// Texel l of x (clamped into x: a value outside is masked where it is read).
fn xtexel(l: i32) -> vec4<f32> {{
    let q = u32(clamp(l, 0, {last}));
    return textureLoad(xs, vec2<u32>(q & {mask}u, q >> {shift}u), 0, 0);
}}
",
            last = self.texels - 1,
            mask = crate::STAGE_LINEAR_WIDTH - 1,
            shift = crate::STAGE_LINEAR_WIDTH.trailing_zeros()
        );
        (
            "@group(0) @binding(0) var xs: texture_2d_array<f32>;".into(),
            xfn,
        )
    }

    /// The accumulators `a{r}_{j}` (starting at `init`) and the unrolled reads: each input row,
    /// its segment `s{u}` (`init` outside the input), then `tap(t, s, a)` for each (output,
    /// tap t) that reads value s of it.
    fn body(&self, init: &str, tap: &dyn Fn(usize, &str, &str) -> String) -> (String, String) {
        let ([kh, kw], [sh, sw], [dh, dw]) = (self.kernel, self.stride, self.dilation);
        let (rows, cols) = (self.rows, self.cols);
        let seg = (cols - 1) * sw + (kw - 1) * dw + 1;
        let nrows = (rows - 1) * sh + (kh - 1) * dh + 1;
        let mut accs = String::new();
        for r in 0..rows {
            for j in 0..cols {
                accs += &format!("    var a{r}_{j} = {init};\n");
            }
        }
        for u in 0..seg {
            accs += &format!("    let okx{u} = ix0 + {u} >= 0 && ix0 + {u} < w;\n");
        }
        // Input row t of the block: the segment of `seg` values, then each (output row, tap
        // row) that reads it.
        let mut body = String::new();
        for t in 0..nrows {
            body += &format!(
                "    {{\n        let iy = iy0 + {t};\n        let rok = iy >= 0 && iy < h;\n"
            );
            if self.linear {
                // The segment's first value is component r of texel lo; value u is component
                // (r + u) % 4 of texel lo + (r + u) / 4, picked by r (a constant where every
                // row and block starts on the same component: W a multiple of 4 and the
                // block's columns too, after the stride).
                body += "        let f0 = i32(plane) + iy * w + ix0;\n        let lo = f0 >> 2u;\n";
                if self.aligned {
                    body += &format!("        let r = {};\n", (4 - self.pad_left % 4) % 4);
                } else {
                    body += "        let r = f0 & 3;\n";
                }
                for j in 0..(seg + 3).div_ceil(4) {
                    body += &format!("        let t{j} = xtexel(lo + {j});\n");
                }
                let at = |q: usize| format!("t{}[{}]", q / 4, q % 4);
                for u in 0..seg {
                    body += &format!(
                        "        let s{u} = select({init}, select(select(select({}, {}, r == 1), {}, r == 2), {}, r == 3), rok && okx{u});\n",
                        at(u),
                        at(u + 1),
                        at(u + 2),
                        at(u + 3)
                    );
                }
            } else {
                body += "        let row = plane + u32(clamp(iy, 0, h - 1) * w);\n";
                for u in 0..seg {
                    body += &format!(
                        "        let s{u} = select({init}, x[row + u32(clamp(ix0 + {u}, 0, w - 1))], rok && okx{u});\n"
                    );
                }
            }
            for r in 0..rows {
                for ky in 0..kh {
                    if r * sh + ky * dh != t {
                        continue;
                    }
                    for kx in 0..kw {
                        for j in 0..cols {
                            let (v, a) = (format!("s{}", j * sw + kx * dw), format!("a{r}_{j}"));
                            body += &format!("        {}\n", tap(ky * kw + kx, &v, &a));
                        }
                    }
                }
            }
            body += "    }\n";
        }
        (accs, body)
    }
}

/// A depthwise conv's block of output rows x columns for one invocation: about 64 outputs,
/// the columns at most 16 and splitting the width evenly. Measured on lavapipe (Zen 3,
/// `examples/dw_lab.rs`, input read as texels; noisy to +-50%): blocks of 28 to 96 outputs ran
/// alike (672 channels 5x5 at 14x14: 0.7-0.8 ms in 7 x 7, 7 x 14 and 4 x 16), blocks of 16 up
/// to 3x slower (2.2 ms in 4 x 4). Where `aligned` (the input read as texels, its width a
/// multiple of 4) the columns are a multiple of 4 after the stride where that wastes at most a
/// seventh of the row, so that every block's segment starts on the same component of a texel.
fn dw_block(oh: usize, ow: usize, sw: usize, aligned: bool) -> (usize, usize) {
    let even = |n: usize, most: usize| n.div_ceil(n.div_ceil(most.max(1)));
    let mut cols = even(ow, 16);
    if aligned {
        let step = 4 / gcd(sw, 4);
        if let Some(c) = (1..=16 / step)
            .rev()
            .map(|m| m * step)
            .find(|&c| ow.div_ceil(c) * c * 7 <= ow * 8)
        {
            cols = c;
        }
    }
    (even(oh, (64 / cols).max(1)), cols)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
