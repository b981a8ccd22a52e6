//! Matmul: the variants ([`MatmulVariant`]), the problem ([`MatmulProblem`]), the order to try
//! them in ([`pick_variant`]), and their kernels (`kernel`; `ubo` for the uniform-block variant,
//! whose kernel also serves the uniform-block conv).

mod choice;
mod kernel;
mod problem;
pub mod ubo;
mod variant;

pub(crate) use choice::variant_order;
pub use choice::{no_matmul_variant, pick_variant};
pub use kernel::{matmul_kernel, matmul_kernel_spliced};
pub use problem::{
    conv1x1_problem, matmul_problem, matmul_problem_views, MatmulProblem, MAX_TEXTURE_SIDE,
};
pub use variant::MatmulVariant;

/// What every matmul template starts with: bindings, the tile and store helpers.
pub(crate) const MATMUL_COMMON: &str = include_str!("../templates/matmul_common.wgsl");
/// The conv params of an implicit-GEMM conv (after the matmul's), shared by `conv2d_gemm` and
/// the uniform-block conv.
pub(crate) const CONV_PARAMS: &str = include_str!("../templates/conv_params.wgsl");
