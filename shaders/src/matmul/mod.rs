//! Matmul: the variants ([`MatmulVariant`]), the problem ([`MatmulProblem`]), the order to try
//! them in ([`pick_variant`]), and their kernels (`kernel`; `ubo` for the uniform-block variant,
//! whose kernel also serves the uniform-block conv).

mod choice;
mod kernel;
mod problem;
pub mod ubo;
pub(crate) mod variant;

pub(crate) use choice::variant_order;
pub use choice::{no_matmul_variant, pick_variant};
pub use kernel::{
    matmul_int_kernel, matmul_int_kernel_spliced, matmul_kernel, matmul_kernel_spliced,
};
pub use problem::{
    conv1x1_problem, matmul_problem, matmul_problem_views, MatmulProblem, MAX_TEXTURE_SIDE,
};
pub use variant::MatmulVariant;

use crate::params::{one, per, Layout};
use crate::Error;

/// What every matmul template starts with: bindings, the tile and store helpers.
pub(crate) const MATMUL_COMMON: &str = include_str!("../templates/matmul_common.wgsl");
/// The conv params of an implicit-GEMM conv (after the matmul's), shared by `conv2d_gemm` and
/// the uniform-block conv.
pub(crate) const CONV_PARAMS: &str = include_str!("../templates/conv_params.wgsl");

/// The element offsets of one batch's A, B and Bias, per batch at `MM_OFFSETS + OFF_LEN * b`.
pub const MATMUL_OFFSETS: Layout =
    Layout::record("matmul offsets", "OFF", &[one("a"), one("b"), one("bias")]);

/// The params of every matmul kernel (`matmul_common.wgsl`): the problem, the grid of output
/// tiles, then per batch its [`MATMUL_OFFSETS`].
pub const MATMUL_PARAMS: Layout = Layout::new(
    "matmul",
    "MM",
    &[
        one("m"),
        one("n"),
        one("k"),
        one("batch"),
        one("alpha"),
        one("beta"),
        one("has_bias"),
        one("a_sm"),
        one("a_sk"),
        one("b_sk"),
        one("b_sn"),
        one("c_sm"),
        one("c_sn"),
        one("tiles_n"),
        one("tiles_m"),
        per("offsets", MATMUL_OFFSETS.size(), "batch"),
    ],
);

/// The conv params of an implicit-GEMM conv (`conv_params.wgsl`), after [`MATMUL_PARAMS`] (at
/// `mm_end(batch)`): the input's channels and size, the output's width, the kernel, strides,
/// pads (top, left) and dilations.
pub const CONV_GEMM_PARAMS: Layout = Layout::new(
    "conv_gemm",
    "CV",
    &[
        one("ch"),
        one("h"),
        one("w"),
        one("ow"),
        one("kh"),
        one("kw"),
        one("sh"),
        one("sw"),
        one("pt"),
        one("pl"),
        one("dh"),
        one("dw"),
    ],
);

/// [`MATMUL_PARAMS`] for `p` over `tiles_n` x `tiles_m` output tiles.
pub(crate) fn matmul_params(
    p: &MatmulProblem,
    tiles_n: usize,
    tiles_m: usize,
) -> Result<Vec<u32>, Error> {
    let mut offsets = Vec::with_capacity(p.offsets.len() * MATMUL_OFFSETS.size() as usize);
    for &[a, b, bias] in &p.offsets {
        offsets.extend(
            MATMUL_OFFSETS
                .fill()
                .set("a", a as u32)
                .set("b", b as u32)
                .set("bias", bias as u32)
                .finish()?,
        );
    }
    MATMUL_PARAMS
        .fill()
        .set("m", p.m as u32)
        .set("n", p.n as u32)
        .set("k", p.k as u32)
        .set("batch", p.offsets.len() as u32)
        .set("alpha", p.alpha.to_bits())
        .set("beta", p.beta.to_bits())
        .set("has_bias", p.has_bias as u32)
        .set("a_sm", p.a_sm as u32)
        .set("a_sk", p.a_sk as u32)
        .set("b_sk", p.b_sk as u32)
        .set("b_sn", p.b_sn as u32)
        .set("c_sm", p.c_sm as u32)
        .set("c_sn", p.c_sn as u32)
        .set("tiles_n", tiles_n as u32)
        .set("tiles_m", tiles_m as u32)
        .set_all("offsets", offsets)
        .finish()
}

/// The template values that name the params of a module made of `matmul_common.wgsl` (and, for
/// a conv, `conv_params.wgsl`).
pub(crate) fn layout_vals(conv: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![("mm_layout", MATMUL_PARAMS.wgsl() + &MATMUL_OFFSETS.wgsl())];
    if conv {
        v.push(("cv_layout", CONV_GEMM_PARAMS.wgsl()));
    }
    v
}
