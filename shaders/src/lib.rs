//! sfumato-shaders: graph → WGSL.
//!
//! Every op lowers to zero or more [`Kernel`]s: a WGSL module made from a template in
//! `src/templates/*.wgsl` (filled by [`template::render`], never by string surgery), the buffers
//! it binds, a `params` array of u32 with the shapes and strides, and a dispatch size. Shapes
//! travel in `params`, not in the WGSL text, so one pipeline serves every shape of an op.
//! Every generated module is validated with naga ([`validate`]); nothing here needs a device.
//!
//! Storage on the device: f32 and f16 tensors live as f32, i32 and i64 as i32, u8 and bool as
//! u32 (see [`Elem`]); the device converts at upload and readback.
//!
//! Fusion: the device-neutral plan (`sfumato_core::plan`) groups the nodes of a graph into kernels
//! (elementwise chains, anchors with epilogues and prologues, attention, views that cost nothing);
//! this crate is its WGSL back end: [`fused::generate`] emits one module per group and
//! [`explain`] sums up a plan (dispatches, bytes moved, peak memory).
//!
//! # Modules, and which way they depend
//!
//! No module imports one that imports it back; from the bottom up:
//!
//! - leaves: [`template`] (the filler), [`loops`] (loop trips and the budget), [`params`]
//!   (named params layouts), [`expr`] (WGSL expressions of elementwise ops), [`views`] (the
//!   plan's view of a value, the view params);
//! - [`emit`]: module assembly (prelude + template parts + helpers), kernel building
//!   (`kernel`, `kernel_of`), grid sizing, and the [`emit::Splice`] an anchor takes;
//! - [`matmul`]: `variant` and `problem` (data), `ubo` (the uniform-block kernel, also the
//!   uniform-block conv's), `choice` (support, candidates, [`matmul::pick_variant`]), `kernel`;
//!   [`options`] ([`LowerOptions`]: the chosen variant and the target) sits between `variant`
//!   and the rest;
//! - families: [`ops::elementwise`], [`ops::reduce`] (softmax, layer norm, reduce, arg-reduce),
//!   [`ops::conv`] (conv2d direct / implicit GEMM / uniform blocks / pointwise, conv transpose,
//!   pools), [`ops::tensor`] (copies, concat, split, gather, resize, pad), [`attention`] (and its
//!   uniform-block kernel);
//! - [`mod@lower`]: the dispatcher from [`Op`](sfumato_core::Op) to family (and the old paths,
//!   re-exported); [`fused`] (and `fused::reads`): one module per group; [`explain`];
//! - rewrites of a finished kernel, each revalidated, which the device applies where its
//!   storage calls for them: [`half`] (f16 storage and arithmetic) and [`packed`] (int8
//!   operands four to a word). These replace exact declaration and read lines a template
//!   writes, and fail (never narrow silently) where the line is not there.
//!
//! # Params layouts
//!
//! Every kernel family's `params` are one [`params::Layout`], defined once beside the family
//! ([`views::VIEW_PARAMS`], [`matmul::MATMUL_PARAMS`] and [`matmul::CONV_GEMM_PARAMS`],
//! [`ops::conv::CONV2D_PARAMS`], [`attention::ATTENTION_PARAMS`], ...): the Rust side fills them
//! by name (`LAYOUT.fill().set("m", ..)...finish()?`, which refuses an unknown or missing name),
//! and the template reads them by the names the layout writes into it through a placeholder
//! (`{{layout}}`; `{{mm_layout}}`, `{{cv_layout}}`, and the prelude's `{{view_layout}}`):
//! `params[MM_TILES_N]`, `params[mm_end(batch) + CV_KH]`. What follows a layout (a splice's
//! params, from `EV`; a view's block, `view_block(v, rank)`) starts at a named base, and what
//! repeats is a record layout read by field name: a view's block ([`views::VIEW_BLOCK`]:
//! `VB_STRIDES`, `vb_offset(rank)`, `vb_len(rank)`), a batch's matmul offsets
//! ([`matmul::MATMUL_OFFSETS`]: `OFF_A`, `OFF_B`, `OFF_BIAS`, `OFF_LEN`), a fused read's slot
//! (`EV_READ0`, ... holding a view block or a [`fused::reads::BLOCK_READ`]). Attention's operand
//! blocks are read back by field name (`k_sb`, ..., `k_off`) for the uniform-block layout.

pub mod attention;
pub mod emit;
pub mod explain;
pub mod expr;
pub mod fused;
pub mod half;
pub mod loops;
pub mod lower;
pub mod matmul;
pub mod ops;
pub mod options;
pub mod packed;
pub mod params;
pub mod template;
pub mod uniform_params;
pub mod views;

/// The old paths of the uniform-block kernels.
pub use attention::ubo as attention_ubo;
pub use matmul::ubo as matmul_ubo;

pub use explain::COPY_STEP;
pub use fused::{generate, group_matmul_problem, GroupKernels};
pub use lower::lower;
pub use matmul::{matmul_problem, MatmulProblem, MatmulVariant};
pub use options::LowerOptions;
pub use sfumato_core::target::Elem;

/// Errors of shader generation. [`Error::for_node`] makes one a sfumato-core error: only
/// [`Error::Unsupported`] is a gap in coverage; a template error, invalid WGSL or an internal
/// error is a bug, and a limit is the adapter's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template or params layout filled wrongly (a missing or unknown placeholder or field).
    #[error("{0}")]
    Template(String),
    #[error("generated WGSL for kernel '{kernel}' is invalid: {msg}")]
    Naga { kernel: String, msg: String },
    /// Something the back end does not implement: an op on a dtype it has no kernel for.
    #[error("{0}")]
    Unsupported(String),
    /// A group the back end should lower but cannot: the plan and the back end disagree (a
    /// group without its anchor, an output no kernel computes), or a caller broke a contract
    /// (a matmul variant that does not support the problem it is given).
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Limit(String),
    /// A kernel over the adapter's loop budget ([`loops`]): another variant may fit.
    #[error("{0}")]
    LoopBudget(String),
}

impl Error {
    /// The sfumato-core error of this failure while lowering `node` of `g` (the first node of
    /// its group), naming the node, its op and its inputs' dtypes and shapes: an unsupported op
    /// or dtype stays [`sfumato_core::Error::Unsupported`], a limit or loop budget is
    /// [`sfumato_core::Error::Limit`], and everything else (template, naga, internal) is
    /// [`sfumato_core::Error::Internal`], a bug rather than a coverage gap.
    pub fn for_node(
        self,
        g: &sfumato_core::Graph,
        node: &sfumato_core::Node,
    ) -> sfumato_core::Error {
        let (node, op, inputs) = (
            node.name.clone(),
            node.op.name().to_string(),
            g.describe_node_inputs(node),
        );
        match self {
            Error::Unsupported(msg) => sfumato_core::Error::Unsupported {
                node,
                op,
                inputs,
                msg,
            },
            Error::Limit(msg) | Error::LoopBudget(msg) => sfumato_core::Error::Limit {
                node,
                op,
                inputs,
                msg,
            },
            e @ (Error::Template(_) | Error::Naga { .. } | Error::Internal(_)) => {
                sfumato_core::Error::Internal {
                    node,
                    op,
                    inputs,
                    msg: e.to_string(),
                }
            }
        }
    }
}

/// Which tensor a binding holds: a node input or output, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    In(usize),
    Out(usize),
    /// Input `i`, a constant, bound as an rgba32float texture of its rows (`N / 4` texels wide).
    Texture(usize),
    /// The device's staging texture (rgba32float, a 2-d array): `write` binds it as a
    /// write-only storage texture, else as a sampled texture. A kernel's stage is at least
    /// `width` x `height` texels and `layers` layers; the device allocates one per prepared
    /// graph, as large as its largest use. A convolution writes its image column there and the
    /// matmul after it reads it (`conv2d_staged`).
    Stage {
        width: u32,
        height: u32,
        layers: u32,
        write: bool,
    },
    /// Input `input` read through the staging texture: its `texels` x 4 floats copied there by
    /// a copy command before the kernel's dispatch (no kernel: a memcpy on a CPU adapter), four
    /// to a texel in order, [`STAGE_LINEAR_WIDTH`] texels a row of layer `layer`; bound as a
    /// sampled texture. Texel `l` is at `(l % STAGE_LINEAR_WIDTH, l / STAGE_LINEAR_WIDTH)`. A
    /// kernel that reads two inputs this way (decode attention's K and V) gives them two layers.
    StageLinear {
        input: usize,
        texels: u32,
        layer: u32,
    },
    /// `size` bytes of input `input` from byte `offset`, bound as a uniform buffer.
    Uniform {
        input: usize,
        offset: u32,
        size: u32,
    },
}

/// Texels a row of the staging texture's linear layout ([`Buf::StageLinear`]): a power of two,
/// so a kernel finds texel `l` with a mask and a shift, and a row is 16 KiB, a multiple of the
/// 256 bytes a buffer-to-texture copy's rows must be.
pub const STAGE_LINEAR_WIDTH: u32 = 1024;

/// The staging texture's rows that [`Buf::StageLinear`] of `texels` texels takes.
pub fn stage_linear_rows(texels: u32) -> u32 {
    texels.div_ceil(STAGE_LINEAR_WIDTH)
}

/// Whether `texels` texels (at least one) fit the staging texture's linear layout on an adapter
/// of `side` texels a side.
pub fn stage_linear_fits(texels: usize, side: u32) -> bool {
    texels > 0 && u32::try_from(texels).is_ok_and(|t| stage_linear_rows(t) <= side)
}

/// One compute dispatch: bindings `0..bindings.len()` are the listed tensors, the next binding
/// is `params`: read-only storage (u32), or a uniform buffer of
/// [`uniform_params::PARAMS_UNIFORM_BYTES`] where [`Kernel::params_uniform`] says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// The template and variant, e.g. `matmul_rb8v4` (shown in profiles).
    pub name: String,
    pub wgsl: String,
    pub bindings: Vec<Buf>,
    pub params: Vec<u32>,
    pub workgroups: [u32; 3],
    /// Loop ends one invocation passes at most, for the shape it was made for ([`loops`]).
    pub loop_trips: u64,
}

/// What an op becomes on the device.
#[derive(Clone, Debug, PartialEq)]
pub enum Lowered {
    /// Dispatch these kernels, in order.
    Kernels(Vec<Kernel>),
    /// The output is the first input's buffer, unchanged (reshape).
    Alias,
    /// The output is a constant tensor, uploaded once.
    Constant,
    /// Copy ranges of whole buffers (a Concat or Split of contiguous blocks, a zero Pad along
    /// one axis): copy and clear commands, no kernel (a driver's copy, a memcpy on a CPU
    /// adapter, where a kernel's per-lane storage loads and stores moved a decode step's KV
    /// cache at 0.4 GB/s).
    Copies(Vec<CopyRegion>),
}

/// The bits of the first `bitcast<f32>(LITERAL)` whose value is NaN or infinite.
fn non_finite_constant(wgsl: &str) -> Option<u32> {
    const OPEN: &str = "bitcast<f32>(";
    let mut rest = wgsl;
    while let Some(i) = rest.find(OPEN) {
        rest = &rest[i + OPEN.len()..];
        let arg = rest.split(')').next().unwrap_or("").trim();
        let Some(num) = arg.strip_suffix('u') else {
            continue;
        };
        let bits = match num.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse::<u32>().ok(),
        };
        if let Some(b) = bits.filter(|&b| !f32::from_bits(b).is_finite()) {
            return Some(b);
        }
    }
    None
}

/// One copy of [`Lowered::Copies`]: `len` elements (4 bytes each on the device, 2 for f16
/// stored as f16) from element
/// `src` of input `input` to element `dst` of output `output`; where `zero`, `len` zero
/// elements written from element `dst` of output `output` instead (a clear: `input` and `src`
/// are unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRegion {
    pub input: usize,
    pub output: usize,
    pub src: u64,
    pub dst: u64,
    pub len: u64,
    pub zero: bool,
}

impl CopyRegion {
    /// `len` elements of output 0 from element `dst`: copied from input 0's element `src`, or
    /// cleared where `src` is `None`.
    pub fn first(dst: u64, len: u64, src: Option<u64>) -> CopyRegion {
        CopyRegion {
            input: 0,
            output: 0,
            src: src.unwrap_or(0),
            dst,
            len,
            zero: src.is_none(),
        }
    }
}

/// Parse and validate a WGSL module with naga, and with a rule of Tint's (the WGSL compiler of
/// Chrome and Dawn) that naga does not have: a constant expression must be finite, so
/// `bitcast<f32>(0x7fc00000u)` (NaN) or an infinity's bits would fail to compile in a browser
/// (the prelude's `f32_nan()`, `f32_inf()` and `f32_ninf()` make them at run time).
pub fn validate(kernel: &str, wgsl: &str) -> Result<(), Error> {
    validated(kernel, wgsl).map(|_| ())
}

/// [`validate`], giving the parsed module: what a native device hands wgpu, so that the WGSL is
/// parsed once (naga's WGSL front end takes time that grows faster than a kernel's length: an
/// unrolled kernel's parse is most of building its pipeline on lavapipe with Mesa's cache warm).
pub fn parse_validated(kernel: &str, wgsl: &str) -> Result<naga::Module, Error> {
    validated(kernel, wgsl).map(|(m, _)| m)
}

/// [`validate`], giving the parsed module and naga's analysis of it (its expressions' types).
pub(crate) fn validated(
    kernel: &str,
    wgsl: &str,
) -> Result<(naga::Module, naga::valid::ModuleInfo), Error> {
    if let Some(bits) = non_finite_constant(wgsl) {
        return Err(Error::Naga {
            kernel: kernel.to_string(),
            msg: format!(
                "bitcast<f32>({bits:#x}u) is a constant expression that is not finite: Tint \
                 (browsers) refuses it; use f32_nan(), f32_inf() or f32_ninf()"
            ),
        });
    }
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| Error::Naga {
        kernel: kernel.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    // f16 only where the module enables it (an f16 storage rewrite, [`half`]).
    let caps = if wgsl.trim_start().starts_with("enable f16;") {
        naga::valid::Capabilities::SHADER_FLOAT16
    } else {
        naga::valid::Capabilities::empty()
    };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| Error::Naga {
            kernel: kernel.to_string(),
            msg: format!("{e:?}"),
        })?;
    Ok((module, info))
}

#[cfg(test)]
mod tint_rule_tests {
    #[test]
    fn non_finite_constants_are_refused_as_a_browser_would() {
        let ok = "fn f(x: u32) -> f32 { return bitcast<f32>(x) + bitcast<f32>(1065353216u); }";
        assert_eq!(super::non_finite_constant(ok), None);
        assert_eq!(
            super::non_finite_constant("let a = bitcast<f32>(0x7fc00000u);"),
            Some(0x7fc0_0000)
        );
        assert_eq!(
            super::non_finite_constant("let a = bitcast<f32>(2139095040u);"),
            Some(0x7f80_0000)
        );
        let e = super::validate("k", "fn f() -> f32 { return bitcast<f32>(0xff800000u); }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not finite"), "{e}");
    }
}
