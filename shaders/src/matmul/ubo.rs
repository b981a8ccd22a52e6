//! The `ubo` matmul variant: A from uniform bindings of whole row blocks, the per-invocation
//! block written out with named accumulators, B as vec4 from a texture (a constant weight) or a
//! storage buffer.
//!
//! Why: on lavapipe a storage-buffer load is a loop over the SIMD lanes with a bounds check per
//! lane, even when every lane reads one address; a uniform load at a lane-uniform address is one
//! scalar load, and a texel fetch is a gather without branches. Loops over a register block's
//! rows and columns that the shader compiler does not unroll leave the accumulators in an array
//! indexed at run time. `cargo run --release -p sfumato-wgpu --example ubo_lab` measures the
//! combinations on an adapter.

use super::{layout_vals, MatmulProblem, MatmulVariant, CONV_PARAMS, MATMUL_COMMON, MATMUL_PARAMS};
use crate::emit::{apply_splice, grid, kernel_of, module, switch_cases, SpliceFn};
use crate::loops;
use crate::options::LowerOptions;
use crate::params::{one, Layout};
use crate::{Buf, Error, Kernel};

/// The largest uniform binding every WebGPU adapter offers (`max_uniform_buffer_binding_size`).
pub const UBO_MAX_BYTES: usize = 65_536;
/// Uniform bindings per shader stage every WebGPU adapter offers.
pub const UBO_MAX_BLOCKS: usize = 12;
/// Smaller convs keep `conv2d_gemm` on CPU adapters: lavapipe takes seconds to compile the
/// written-out block, longer than such a conv runs.
pub const UBO_CONV_MIN_MACS: u64 = sfumato_core::legalize::STAGED_CONV_MIN_MACS;
/// `min_uniform_buffer_offset_alignment`'s largest allowed value.
pub const UBO_ALIGN: usize = 256;

const MATMUL_UBO: &str = include_str!("../templates/matmul_ubo.wgsl");
const MATMUL_STAGE: &str = include_str!("../templates/matmul_stage.wgsl");
const STAGE_COMMON: &str = include_str!("../templates/stage_common.wgsl");

/// The params of `matmul_stage.wgsl` (B written to the staging texture): texels a row, rows
/// (K), batches, N, B's strides, then each batch's offset of B.
pub const MATMUL_STAGE_PARAMS: Layout = Layout::new(
    "matmul_stage",
    "MS",
    &[
        one("n4"),
        one("k"),
        one("batch"),
        one("n"),
        one("b_sk"),
        one("b_sn"),
        one("offsets"),
    ],
);

/// Rows one staging invocation writes (`matmul_stage`, `conv_stage`).
pub(crate) const STAGE_ROWS: usize = 32;

/// Invocations a workgroup of the staging kernels (`matmul_stage`, `conv_stage`).
const STAGE_WG: usize = 64;
/// Layers of a texture array every WebGPU adapter offers (`maxTextureArrayLayers`).
pub const STAGE_MAX_LAYERS: usize = 256;
/// The largest staging texture a kernel may ask for.
pub const STAGE_MAX_BYTES: usize = 512 << 20;

/// Whether a `ubo` matmul whose B is not a constant texture copies B to the staging texture
/// first (`matmul_stage`) and reads it as texels, rather than as vec4 rows of a storage buffer:
/// on a target that reads uniform blocks and textures fast (a CPU adapter: each storage read is
/// a loop over the SIMD lanes there), where B fits a texture array and the product is large
/// enough (`UBO_CONV_MIN_MACS`) to pay for the copy. Each element of B is then read from
/// storage once, not once per tile of A's rows. On lavapipe (Zen 3) the 1024³ product with both
/// operands run inputs ran at 6.8-7.1 GFLOP/s from storage.
pub fn b_staged(p: &MatmulProblem, target: &sfumato_core::TargetProfile) -> bool {
    let batch = p.offsets.len();
    target.uniform_block_operands
        && target.texture_weights
        && !p.b_texture()
        && stage_fits(p.n, p.k, batch, target)
        && (p.m * p.n * p.k * batch) as u64 >= UBO_CONV_MIN_MACS
}

/// Whether a staged B ([`b_staged`]) is copied to the staging texture by a copy command rather
/// than by `matmul_stage` ([`crate::Buf::StageLinear`]): where B's rows are vec4 rows
/// ([`b_vec4`]), read then as texel `pb + column` of the linear layout, as the storage path
/// reads its vec4 `pb + column`, and its extent fits the texture. The copy is a memcpy on a CPU
/// adapter; `matmul_stage` read each element from storage (a loop over the SIMD lanes).
pub fn b_linear(p: &MatmulProblem, target: &sfumato_core::TargetProfile) -> bool {
    b_staged(p, target) && linear_binding(p, 1, target).is_some()
}

/// B of `p` (input `input`) as a [`crate::Buf::StageLinear`] binding, where its rows are vec4
/// rows ([`b_vec4`]) and its extent fits the staging texture's linear layout.
pub(crate) fn linear_binding(
    p: &MatmulProblem,
    input: usize,
    target: &sfumato_core::TargetProfile,
) -> Option<Buf> {
    let texels = b_linear_texels(p);
    (b_vec4(p) && crate::stage_linear_fits(texels, target.max_texture_side)).then_some(
        Buf::StageLinear {
            input,
            texels: texels as u32,
            layer: 0,
        },
    )
}

/// The texels of B a linear copy takes: up to the end of the last batch's last row.
fn b_linear_texels(p: &MatmulProblem) -> usize {
    let rows = p.k.saturating_sub(1) * p.b_sk + p.n;
    p.offsets
        .iter()
        .map(|o| o[1] + rows)
        .max()
        .unwrap_or(0)
        .div_ceil(4)
}

/// The block `conv2d_staged` runs before anything is measured (the autotuner may cache another
/// for the conv's shape class): 16 output channels x 4 or 8 pixels an invocation, one row of 8
/// invocations (a SIMD batch of lavapipe's 256-bit lanes). Measured on lavapipe (Zen 3), the 3x3
/// convs of ResNet-50 at batch 1 (image column and matmul together): 512 -> 512 at 7x7 11.3
/// GFLOP/s with 16x4 (7.4 with 16x8, 6.4 with 16x4 in 16-invocation rows, 2.2 with the
/// matmul's 16x16 block: a 256-pixel tile over 49 pixels); 256 -> 256 at 14x14 13.4 with 16x8
/// (12.8 with 16x4); 64 -> 64 at 56x56 10.6 with 16x8.
pub(crate) fn staged_conv_default(n: usize) -> MatmulVariant {
    MatmulVariant::Ubo {
        rows: 16,
        cols4: if n.div_ceil(4) <= 16 { 1 } else { 2 },
        wg_x: 8,
    }
}

/// Whether `layers` layers of `k` rows of `n` values (in vec4 texels) fit the staging texture on
/// the target: a row of at most its texture side, as many rows, [`STAGE_MAX_LAYERS`] layers and
/// [`STAGE_MAX_BYTES`].
pub(crate) fn stage_fits(
    n: usize,
    k: usize,
    layers: usize,
    target: &sfumato_core::TargetProfile,
) -> bool {
    let n4 = n.div_ceil(4);
    let side = target.max_texture_side as usize;
    n4 <= side && k <= side && layers <= STAGE_MAX_LAYERS && n4 * 16 * k * layers <= STAGE_MAX_BYTES
}

/// The kernel that writes B to the staging texture for `p` (binding B as input `b_input`).
pub(crate) fn b_stage_kernel(
    p: &MatmulProblem,
    b_input: usize,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let (n4, batch) = (p.n.div_ceil(4), p.offsets.len());
    let mut params = MATMUL_STAGE_PARAMS
        .fill()
        .set("n4", n4 as u32)
        .set("k", p.k as u32)
        .set("batch", batch as u32)
        .set("n", p.n as u32)
        .set("b_sk", p.b_sk as u32)
        .set("b_sn", p.b_sn as u32)
        .set("offsets", 0)
        .finish()?;
    // The offsets array starts where the `offsets` slot is.
    params.pop();
    params.extend(p.offsets.iter().map(|o| o[1] as u32));
    stage_kernel(
        "matmul_stage",
        MATMUL_STAGE,
        &[("layout", MATMUL_STAGE_PARAMS.wgsl())],
        b_input,
        p,
        params,
        opts,
    )
}

/// A kernel that writes `p`'s B to the staging texture (`template` after
/// `stage_common.wgsl`, reading input `input`): one invocation a texel column of
/// [`STAGE_ROWS`] rows of a layer.
pub(crate) fn stage_kernel(
    name: &str,
    template: &str,
    vals: &[(&str, String)],
    input: usize,
    p: &MatmulProblem,
    params: Vec<u32>,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let threads = p.offsets.len() * p.k.div_ceil(STAGE_ROWS) * p.n.div_ceil(4);
    let mut vals = vals.to_vec();
    vals.push(("kc", STAGE_ROWS.to_string()));
    vals.push(("stage_wg", STAGE_WG.to_string()));
    kernel_of(
        name,
        &[STAGE_COMMON, template],
        &vals,
        vec![Buf::In(input), stage_of(p, true)],
        params,
        threads.div_ceil(STAGE_WG),
        loops::lp(STAGE_ROWS as u64),
        &opts.target,
    )
}

/// The staging texture binding for B of `p`.
pub(crate) fn stage_of(p: &MatmulProblem, write: bool) -> Buf {
    Buf::Stage {
        width: p.n.div_ceil(4) as u32,
        height: p.k as u32,
        layers: p.offsets.len() as u32,
        write,
    }
}

/// The conv params (`conv_params.wgsl`, shared with `conv2d_gemm`).
const CONV_SETUP: &str = "    let cv = conv_params();
    let h = cv.h;
    let w = cv.w;
    let ow = cv.ow;
    let khw = cv.kh * cv.kw;
    let kw = cv.kw;
    let sh = cv.sh;
    let sw = cv.sw;
    let pt = cv.pt;
    let pl = cv.pl;
    let dh = cv.dh;
    let dw = cv.dw;
    let xb = off_b(t.b);
";

/// One k of the image column: channel and tap (the same for every invocation).
const CONV_TAP: &str = "                let ci = k / khw;
                let tap = k - ci * khw;
                let ky = tap / kw;
                let kx = tap - ky * kw;
                let xc = xb + ci * u32(h * w);
                let dy = i32(ky) * dh;
                let dx = i32(kx) * dw;
";

/// How A splits into uniform bindings: `ru` rows per block, each block's byte range, and the
/// parts (ranges of blocks) that one dispatch each binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UboLayout {
    pub ru: usize,
    /// Blocks per invocation block: 1 where a block holds whole invocation blocks, else the
    /// invocation's rows span `q` consecutive blocks of `ru = rows / q` rows (long rows: K =
    /// 3,072 fits 5 rows a block, so a 10-row invocation block reads two).
    pub q: usize,
    pub blocks: Vec<(u32, u32)>,
    pub parts: Vec<std::ops::Range<usize>>,
}

/// At most this many dispatches for one matmul.
pub const UBO_MAX_PARTS: usize = 64;

/// The blocks of A for a `rows`-row invocation block with at most `max_blocks` uniform bindings
/// per dispatch, or `None` where A does not fit: A must be one matrix for every batch (offset
/// 0), rows contiguous along K, K and the row stride multiples of 4, a block at most
/// [`UBO_MAX_BYTES`], and at most [`UBO_MAX_PARTS`] dispatches.
pub fn ubo_layout(p: &MatmulProblem, rows: usize, max_blocks: usize) -> Option<UboLayout> {
    if p.m == 0
        || p.k == 0
        || rows == 0
        || max_blocks == 0
        || p.a_sk != 1
        || !p.k.is_multiple_of(4)
        || !p.a_sm.is_multiple_of(4)
        || p.a_sm < p.k
        || p.offsets.iter().any(|o| o[0] != 0)
    {
        return None;
    }
    let words = UBO_MAX_BYTES / 4;
    if p.k > words {
        return None;
    }
    // Rows whose span ((r - 1) * a_sm + k elements) fits one binding.
    let fit = (words - p.k) / p.a_sm + 1;
    let aligned = |ru: usize| ru >= p.m || (ru * p.a_sm * 4).is_multiple_of(UBO_ALIGN);
    let mut ru = (fit / rows * rows).min(p.m.div_ceil(rows) * rows);
    // Block offsets must be aligned when there is more than one block.
    while ru >= rows && !aligned(ru) {
        ru -= rows;
    }
    let mut q = 1;
    if ru < rows {
        // Rows too long for a whole invocation block: `q` blocks of `rows / q` rows each.
        let d = (1..=fit.min(rows - 1))
            .rev()
            .find(|&d| rows.is_multiple_of(d) && aligned(d))?;
        if rows / d > max_blocks {
            return None;
        }
        (ru, q) = (d, rows / d);
    }
    let nu = p.m.div_ceil(ru);
    // A part holds whole invocation blocks.
    let per_part = max_blocks / q * q;
    if nu.div_ceil(per_part) > UBO_MAX_PARTS {
        return None;
    }
    let blocks = (0..nu)
        .map(|j| {
            let first = j * ru;
            let n = ru.min(p.m - first);
            (
                (first * p.a_sm * 4) as u32,
                (((n - 1) * p.a_sm + p.k) * 4) as u32,
            )
        })
        .collect();
    let parts = (0..nu)
        .step_by(per_part)
        .map(|j| j..(j + per_part).min(nu))
        .collect();
    Some(UboLayout {
        ru,
        q,
        blocks,
        parts,
    })
}

/// Whether B can be read as vec4 rows from a storage buffer.
pub(crate) fn b_vec4(p: &MatmulProblem) -> bool {
    p.b_sn == 1
        && p.n.is_multiple_of(4)
        && p.b_sk.is_multiple_of(4)
        && p.offsets.iter().all(|o| o[1].is_multiple_of(4))
}

/// Where B comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BSource {
    /// Rows of vec4 texels (a constant weight).
    Texture,
    /// Rows of vec4 from a storage buffer, through the matmul's B strides.
    Storage,
    /// Rows of vec4 texels of the staging texture's layer `t.b` (an image column that a kernel
    /// before wrote there, `conv2d_staged`); a row's last texel is zero past N.
    Stage,
    /// B's vec4 rows as texels of the staging texture's linear layout (copied there by a copy
    /// command, `Buf::StageLinear`), at the indices the storage path reads.
    Linear,
    /// The image column of a convolution (implicit im2col), gathered from the NCHW input with
    /// zeros outside it; the conv params (`CONV_GEMM_PARAMS`) follow the matmul's at `mm_end(batch)`
    /// (as `conv2d_gemm`'s).
    Conv,
}

/// What the kernel binds and reads: A's input index, B's binding and kind, the bias binding,
/// and the kernel's name.
#[derive(Clone, Debug)]
pub(crate) struct UboSpec {
    pub a_input: usize,
    pub b: Buf,
    pub bias: Buf,
    pub src: BSource,
    pub name: String,
}

/// Generate the kernels, one per part of A's rows. Bindings: A's first block of the part, B,
/// bias (A when none), out, the splice's, then the part's other blocks. `params` are the
/// matmul's (`MATMUL_PARAMS`; its `tiles_m` is replaced by the part's).
pub(crate) fn matmul_ubo_kernels(
    p: &MatmulProblem,
    v: MatmulVariant,
    opts: &LowerOptions,
    splice: SpliceFn,
    params: Vec<u32>,
) -> Result<Vec<Kernel>, Error> {
    let tex = p.b_texture();
    let staged = b_staged(p, &opts.target);
    // A staged B of vec4 rows is copied there (`b_linear`), no kernel.
    let linear = staged.then(|| linear_binding(p, 1, &opts.target)).flatten();
    let (b, src) = if tex {
        (Buf::Texture(1), BSource::Texture)
    } else if let Some(b) = linear {
        (b, BSource::Linear)
    } else if staged {
        (stage_of(p, false), BSource::Stage)
    } else {
        (Buf::In(1), BSource::Storage)
    };
    let spec = UboSpec {
        a_input: 0,
        b,
        bias: if p.has_bias { Buf::In(2) } else { Buf::In(0) },
        src,
        name: v.name(),
    };
    let mut ks = Vec::new();
    if staged && linear.is_none() {
        ks.push(b_stage_kernel(p, 1, opts)?);
    }
    ks.extend(ubo_kernels(p, v, opts, splice, params, &spec)?);
    Ok(ks)
}

/// The kernels of `spec` over `p`.
pub(crate) fn ubo_kernels(
    p: &MatmulProblem,
    v: MatmulVariant,
    opts: &LowerOptions,
    splice: SpliceFn,
    params: Vec<u32>,
    spec: &UboSpec,
) -> Result<Vec<Kernel>, Error> {
    let MatmulVariant::Ubo { rows, .. } = v else {
        return Err(Error::Internal(format!(
            "{} is not a ubo variant",
            v.name()
        )));
    };
    let rows = rows as usize;
    let lay = ubo_layout(p, rows, opts.target.max_uniform_blocks as usize)
        .ok_or_else(|| Error::Internal(format!("{}: A does not fit uniform bindings", v.name())))?;
    let batch = p.offsets.len();
    let (_, tn) = v.tile().unwrap_or((rows as u32, 64));
    let tiles_n = p.n.div_ceil(tn as usize);
    let tiles_m_at = MATMUL_PARAMS.at("tiles_m")?;
    let mut out = Vec::new();
    for part in &lay.parts {
        let row_base = part.start * lay.ru;
        let part_rows = (part.end * lay.ru).min(p.m) - row_base;
        let tiles_m = part_rows.div_ceil(rows);
        let mut params = params.clone();
        params[tiles_m_at] = tiles_m as u32;
        let workgroups = if p.n == 0 || batch == 0 {
            [0, 0, 0]
        } else {
            grid((tiles_n * tiles_m * batch) as u64, &opts.target)?
        };
        out.push(part_kernel(
            p,
            v,
            &lay,
            part.clone(),
            splice,
            params,
            workgroups,
            spec,
        )?);
    }
    Ok(out)
}

/// The kernel of one part: blocks `part` of `lay`.
#[allow(clippy::too_many_arguments)]
fn part_kernel(
    p: &MatmulProblem,
    v: MatmulVariant,
    lay: &UboLayout,
    part: std::ops::Range<usize>,
    splice: SpliceFn,
    mut params: Vec<u32>,
    workgroups: [u32; 3],
    spec: &UboSpec,
) -> Result<Kernel, Error> {
    let MatmulVariant::Ubo { rows, cols4, wg_x } = v else {
        return Err(Error::Internal(format!(
            "{} is not a ubo variant",
            v.name()
        )));
    };
    let (rows, cols4) = (rows as usize, cols4 as usize);
    let block = |j: usize| Buf::Uniform {
        input: spec.a_input,
        offset: lay.blocks[j].0,
        size: lay.blocks[j].1,
    };
    let (mut bindings, mut spliced, sp) = apply_splice(splice, &mut params, |_| {
        vec![block(part.start), spec.b, spec.bias, Buf::Out(0)]
    })?;
    // The part's first row, after the splice's params (at the same index in every part).
    let row_base_at = params.len();
    params.push((part.start * lay.ru) as u32);
    let mut slots = vec![0usize];
    for j in part.start + 1..part.end {
        slots.push(bindings.len());
        bindings.push(block(j));
    }
    spliced[0].1 = bindings.len().to_string();
    let a_decls: String = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "@group(0) @binding({s}) var<uniform> ua{i}: array<vec4<f32>, {}>;\n",
                lay.blocks[part.start + i].1 / 16
            )
        })
        .collect();
    let (b_decl, b_kind) = match spec.src {
        BSource::Texture => ("var bm: texture_2d<f32>;", "texture"),
        BSource::Storage => ("var<storage, read> bm: array<vec4<f32>>;", "storage"),
        BSource::Stage => (
            "var bm: texture_2d_array<f32>;",
            "the staging texture, the tile's image's layer",
        ),
        BSource::Linear => (
            "var bm: texture_2d_array<f32>;",
            "the staging texture, B's vec4 rows in order (copied there)",
        ),
        BSource::Conv => (
            "var<storage, read> xin: array<f32>;",
            "the image column of a convolution, gathered",
        ),
    };
    let mut setup = String::new();
    if spec.src == BSource::Conv {
        setup += CONV_SETUP;
        for j in 0..cols4 * 4 {
            setup += &format!(
                "    let p{j} = min(n0 + {j}u, nn - 1u);\n    let live{j} = n0 + {j}u < nn;\n    let iy{j} = i32(p{j} / ow) * sh - pt;\n    let ix{j} = i32(p{j} % ow) * sw - pl;\n"
            );
        }
    } else {
        for q in 0..cols4 {
            setup += &format!("    let cb{q} = min(n0 / 4u + {q}u, n4 - 1u);\n");
        }
    }
    let (ru, qb) = (lay.ru, lay.q);
    for r in 0..rows {
        if qb == 1 {
            setup += &format!("    let ra{r} = (min(mg + {r}u, mm - 1u) - row0) * a_sm;\n");
        } else {
            // Row r lies in the tile's block r / ru; a row past M reads that block's first.
            setup += &format!(
                "    let ra{r} = select(0u, (mg + {r}u - row0 - {}u) * a_sm, mg + {r}u < mm);\n",
                r / ru * ru
            );
        }
        for q in 0..cols4 {
            setup += &format!("    var acc{r}_{q} = vec4<f32>(0.0);\n");
        }
    }
    // A copy of the loop over k per block: the switch is taken once, outside the loop.
    let mut inner = String::new();
    if spec.src == BSource::Conv {
        inner += CONV_TAP;
        for j in 0..cols4 * 4 {
            inner += &format!(
                "        let y{j} = iy{j} + dy;\n        let x{j} = ix{j} + dx;\n        let v{j} = select(0.0, xin[xc + u32(clamp(y{j}, 0, h - 1) * w + clamp(x{j}, 0, w - 1))], live{j} && y{j} >= 0 && y{j} < h && x{j} >= 0 && x{j} < w);\n"
            );
        }
    }
    for q in 0..cols4 {
        let load = match spec.src {
            BSource::Texture => format!("textureLoad(bm, vec2<u32>(cb{q}, k), 0)"),
            BSource::Stage => format!("textureLoad(bm, vec2<u32>(cb{q}, k), t.b, 0)"),
            BSource::Storage => format!("bm[pb + cb{q}]"),
            BSource::Linear => format!(
                "textureLoad(bm, vec2<u32>((pb + cb{q}) & {}u, (pb + cb{q}) >> {}u), 0, 0)",
                crate::STAGE_LINEAR_WIDTH - 1,
                crate::STAGE_LINEAR_WIDTH.trailing_zeros()
            ),
            BSource::Conv => {
                let j = q * 4;
                format!("vec4<f32>(v{j}, v{}, v{}, v{})", j + 1, j + 2, j + 3)
            }
        };
        inner += &format!("        let b{q} = {load};\n");
    }
    for r in 0..rows {
        // `UA<s>[`: the tile's block s, named per case below.
        inner += &format!(
            "        let e{r} = ra{r} + k;\n        let av{r} = vec4<f32>(UA{}[e{r} >> 2u][e{r} & 3u]);\n",
            if qb == 1 { 0 } else { r / ru }
        );
        for q in 0..cols4 {
            inner += &format!("        acc{r}_{q} = fma(av{r}, b{q}, acc{r}_{q});\n");
        }
    }
    inner += "        pb = pb + b_sk4;\n";
    let nb = slots.len();
    let body = switch_cases("blk", nb.div_ceil(qb), 4, |c| {
        // A part's last tile may have fewer blocks (the end of A): its rows past them are past
        // M and read the last block.
        let mut copy = inner.clone();
        for sb in 0..qb {
            copy = copy.replace(
                &format!("UA{sb}["),
                &format!("ua{}[", (c * qb + sb).min(nb - 1)),
            );
        }
        format!(
            "            var pb = pb0;\n            for (var k = 0u; k < kk; k = k + 1u) {{\n{}            }}\n",
            copy.replace("\n        ", "\n                ").replacen("        ", "                ", 1)
        )
    });
    // The stores loop over an array: written out, each store's bounds checks and epilogue
    // would be copied per element (lavapipe's compile took minutes).
    let mut stores = format!("    var res: array<vec4<f32>, {}>;\n", rows * cols4);
    for r in 0..rows {
        for q in 0..cols4 {
            stores += &format!("    res[{}] = acc{r}_{q};\n", r * cols4 + q);
        }
    }
    // A bound the compiler cannot see (the batch count is never 0 in a dispatch), so it keeps
    // the loop: unrolled, 32 stores took lavapipe 20 s to compile.
    stores += &format!(
        "    let nst = select({n}u, 0u, params[MM_BATCH] == 0u);\n    for (var i = 0u; i < nst; i = i + 1u) {{\n        store4(t.b, mg + i / {cols4}u, n0 + (i % {cols4}u) * 4u, res[i]);\n    }}\n",
        n = rows * cols4
    );
    let (_, tn) = v.tile().unwrap_or((rows as u32, 64));
    let mut vals: Vec<(&str, String)> = vec![
        ("a_decls", a_decls),
        ("b_decl", b_decl.to_string()),
        ("b_kind", b_kind.to_string()),
        ("rows", rows.to_string()),
        ("cols", (cols4 * 4).to_string()),
        ("ru", lay.ru.to_string()),
        ("tile_rows", (lay.ru * lay.q).to_string()),
        ("row_base_at", row_base_at.to_string()),
        ("wg_x", wg_x.to_string()),
        ("tile_n", tn.to_string()),
        ("setup", setup),
        ("body", body),
        ("stores", stores),
    ];
    // A bias constant along a row (a conv's per-channel bias) is read once for the four
    // elements: on lavapipe each storage read is a loop over the lanes, and a conv of few input
    // channels (K = 16 to 40) spent more time reading its bias than multiplying.
    if p.has_bias && p.c_sn == 0 {
        vals.push((
            "store4_bias",
            "    // The bias is constant along the row: one read for the four.\n    let bv = bias_at(m, n);\n".into(),
        ));
        vals.push(("store4_one", "store_bv(b, m, n + e, v[e], bv)".into()));
    } else {
        vals.push(("store4_bias", String::new()));
        vals.push(("store4_one", "store(b, m, n + e, v[e])".into()));
    }
    vals.extend(spliced);
    vals.extend(layout_vals(spec.src == BSource::Conv));
    let parts: &[&str] = if spec.src == BSource::Conv {
        &[MATMUL_COMMON, CONV_PARAMS, MATMUL_UBO]
    } else {
        &[MATMUL_COMMON, MATMUL_UBO]
    };
    let wgsl = module(&spec.name, parts, &vals)?;
    let k = Kernel {
        name: spec.name.clone(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips: v.loop_trips(p, sp),
    };
    Ok(k)
}
