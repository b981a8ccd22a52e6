//! The matmul kernels (every variant but `Ubo`, which `ubo` makes) and the variant order.

use super::{layout_vals, matmul_params, ubo, MatmulProblem, MatmulVariant, MATMUL_COMMON};
use crate::emit::{apply_splice, grid, module, plain_int_splice, plain_splice, SpliceFn};
use crate::options::LowerOptions;
use crate::{loops, Buf, Elem, Error, Kernel};

const MATMUL_NAIVE: &str = include_str!("../templates/matmul_naive.wgsl");
const MATMUL_RB4: &str = include_str!("../templates/matmul_rb4.wgsl");
const MATMUL_V4: &str = include_str!("../templates/matmul_v4.wgsl");
const MATMUL_RB4V4K: &str = include_str!("../templates/matmul_rb4v4k.wgsl");
const MATMUL_DOT: &str = include_str!("../templates/matmul_dot.wgsl");
const MATMUL_TILED: &str = include_str!("../templates/matmul_tiled.wgsl");
const MATMUL_INT: &str = include_str!("../templates/matmul_int.wgsl");

/// The integer matmul's k loop over scalar operands: four rows of A and four columns of B, one
/// k a step, through strides.
const INT_LOOP: &str = "    let step = vec4<u32>(0u, 1u, 2u, 3u);
    // Rows and columns past the edge read the last one, and store nothing.
    let r = min(vec4<u32>(m0) + step, vec4<u32>(params[MM_M] - 1u));
    let c = min(vec4<u32>(n0) + step, vec4<u32>(params[MM_N] - 1u));
    var pa = vec4<u32>(params[offs + OFF_A]) + r * params[MM_A_SM];
    var pb = vec4<u32>(params[offs + OFF_B]) + c * params[MM_B_SN];
    let a_sk = params[MM_A_SK];
    let b_sk = params[MM_B_SK];
    for (var k = 0u; k < kk; k = k + 1u) {
        let bv = vec4<i32>(bm[pb.x], bm[pb.y], bm[pb.z], bm[pb.w]);
        acc0 = acc0 + a[pa.x] * bv;
        acc1 = acc1 + a[pa.y] * bv;
        acc2 = acc2 + a[pa.z] * bv;
        acc3 = acc3 + a[pa.w] * bv;
        pa = pa + a_sk;
        pb = pb + b_sk;
    }
";

/// The k loop of `matmul_int_v4`: four k a step, each row of A a vec4 of its four k, each of
/// B's four k rows a vec4 of the block's four columns (indices in vec4s).
const INT_LOOP_V4: &str = "    let step = vec4<u32>(0u, 1u, 2u, 3u);
    // Rows past the edge read the last one; columns past it (whole vec4s, as N is a multiple
    // of 4) read the last four; neither stores.
    let r = min(vec4<u32>(m0) + step, vec4<u32>(params[MM_M] - 1u));
    let c0 = min(n0, params[MM_N] - 4u);
    var pa = (vec4<u32>(params[offs + OFF_A]) + r * params[MM_A_SM]) / 4u;
    var pb = (params[offs + OFF_B] + c0) / 4u;
    let bs = params[MM_B_SK] / 4u;
    for (var k = 0u; k < kk / 4u; k = k + 1u) {
        let a0 = a_vec(pa.x);
        let a1 = a_vec(pa.y);
        let a2 = a_vec(pa.z);
        let a3 = a_vec(pa.w);
        let b0 = b_vec(pb);
        let b1 = b_vec(pb + bs);
        let b2 = b_vec(pb + 2u * bs);
        let b3 = b_vec(pb + 3u * bs);
        acc0 = acc0 + a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        acc1 = acc1 + a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        acc2 = acc2 + a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        acc3 = acc3 + a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        pa = pa + 1u;
        pb = pb + 4u * bs;
    }
";

/// `matmul_int_v4`'s reads of A (four k of a row) and B (four columns of a row): vec4s of four
/// i32 (the bindings are `array<vec4<i32>>`).
const VEC_READS_I32: &str = "fn a_vec(i: u32) -> vec4<i32> {\n    return a[i];\n}\nfn b_vec(i: u32) -> vec4<i32> {\n    return bm[i];\n}\n";

/// Whether the integer matmul can read whole vec4s: A contiguous along K and B along N, K,
/// N, the row strides and every batch's offsets multiples of 4.
fn int_vec4(p: &MatmulProblem) -> bool {
    p.a_sk == 1
        && p.b_sn == 1
        && p.k.is_multiple_of(4)
        && p.n.is_multiple_of(4)
        && p.a_sm.is_multiple_of(4)
        && p.b_sk.is_multiple_of(4)
        && p.offsets
            .iter()
            .all(|o| o[0].is_multiple_of(4) && o[1].is_multiple_of(4))
}

/// The tile of [`matmul_int_kernel`]: 32 x 32 outputs a workgroup (8 x 8 invocations of 4 x 4).
const INT_TILE: usize = 32;

/// The kernel of [`Op::MatMulInteger`](sfumato_core::Op): i32 operands accumulated in i32 (the
/// integer products of quantized models), with the strides and batches of a float matmul's
/// problem, storing its i32 sums.
pub fn matmul_int_kernel(p: &MatmulProblem, opts: &LowerOptions) -> Result<Kernel, Error> {
    matmul_int_kernel_spliced(p, Elem::I32, opts, &plain_int_splice)
}

/// [`matmul_int_kernel`] whose store runs a splice's epilogue (the requantisation after it),
/// whose last value, of `out`, is what the kernel stores. Bindings: A, B, out, then the
/// splice's.
pub fn matmul_int_kernel_spliced(
    p: &MatmulProblem,
    out: Elem,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Kernel, Error> {
    let batch = p.offsets.len();
    let (tiles_m, tiles_n) = (p.m.div_ceil(INT_TILE), p.n.div_ceil(INT_TILE));
    let mut params = matmul_params(p, tiles_n, tiles_m)?;
    let empty = p.m == 0 || p.n == 0 || batch == 0;
    let workgroups = if empty {
        [0, 0, 0]
    } else {
        grid((tiles_m * tiles_n * batch) as u64, &opts.target)?
    };
    let (bindings, spliced, sp) = apply_splice(splice, &mut params, |_| {
        vec![Buf::In(0), Buf::In(1), Buf::Out(0)]
    })?;
    let v4 = int_vec4(p);
    let (name, operand, k_loop, vec_reads, trips) = if v4 {
        (
            "matmul_int_v4",
            "vec4<i32>",
            INT_LOOP_V4,
            VEC_READS_I32,
            p.k as u64 / 4,
        )
    } else {
        ("matmul_int", "i32", INT_LOOP, "", p.k as u64)
    };
    let mut vals: Vec<(&str, String)> = vec![
        ("out_ty", out.wgsl().to_string()),
        ("operand", operand.to_string()),
        ("k_loop", k_loop.to_string()),
        ("vec_reads", vec_reads.to_string()),
    ];
    vals.extend(spliced);
    vals.extend(layout_vals(false));
    let k = Kernel {
        name: name.into(),
        wgsl: module(name, &[MATMUL_INT], &vals)?,
        bindings,
        params,
        workgroups,
        // The k loop, and 16 stores through the epilogue.
        loop_trips: loops::lp(trips) + 16 * sp,
    };
    Ok(k)
}

/// The kernels of a matmul: one dispatch, or (`Ubo` over more row blocks than one dispatch can
/// bind) one per part of A's rows.
pub fn matmul_kernel(
    p: &MatmulProblem,
    v: MatmulVariant,
    opts: &LowerOptions,
) -> Result<Vec<Kernel>, Error> {
    matmul_kernel_spliced(p, v, opts, &|_| Ok(plain_splice(false)))
}

/// A matmul whose store runs a splice's epilogue. Bindings: A, B, bias (A when none), out,
/// then the splice's (then, for `Ubo`, A's other row blocks).
pub fn matmul_kernel_spliced(
    p: &MatmulProblem,
    v: MatmulVariant,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    // Both paths (one kernel, or the `ubo` parts) are checked here, so that a caller can try the
    // next variant when a splice takes this one over the loop budget.
    let ks = matmul_kernels(p, v, opts, splice)?;
    for k in &ks {
        loops::check(k, opts.target.loop_budget)?;
    }
    Ok(ks)
}

fn matmul_kernels(
    p: &MatmulProblem,
    v: MatmulVariant,
    opts: &LowerOptions,
    splice: SpliceFn,
) -> Result<Vec<Kernel>, Error> {
    if !v.supports(p) {
        return Err(Error::Internal(format!(
            "{} does not support this matmul layout",
            v.name()
        )));
    }
    let batch = p.offsets.len();
    let (tiles_m, tiles_n, wgs) = match v.tile() {
        None => (0, 0, (batch * p.m * p.n).div_ceil(256)),
        Some((tm, tn)) => {
            let (a, b) = (p.m.div_ceil(tm as usize), p.n.div_ceil(tn as usize));
            (a, b, a * b * batch)
        }
    };
    let mut params = matmul_params(p, tiles_n, tiles_m)?;
    if matches!(v, MatmulVariant::Ubo { .. }) {
        // One kernel per part of A's rows, each with its own grid.
        return ubo::matmul_ubo_kernels(p, v, opts, splice, params);
    }
    let empty = p.m == 0 || p.n == 0 || batch == 0;
    let workgroups = if empty {
        [0, 0, 0]
    } else {
        grid(wgs as u64, &opts.target)?
    };
    let bias = if p.has_bias { Buf::In(2) } else { Buf::In(0) };
    let tex = matches!(v, MatmulVariant::V4Tex { .. });
    let b = if tex { Buf::Texture(1) } else { Buf::In(1) };
    let (bindings, spliced, sp) = apply_splice(splice, &mut params, |_| {
        vec![Buf::In(0), b, bias, Buf::Out(0)]
    })?;
    let body = match v {
        MatmulVariant::Naive => MATMUL_NAIVE,
        MatmulVariant::Rb4 => MATMUL_RB4,
        // Returned above.
        MatmulVariant::V4 { .. } | MatmulVariant::V4Tex { .. } | MatmulVariant::Ubo { .. } => {
            MATMUL_V4
        }
        MatmulVariant::Rb4V4K => MATMUL_RB4V4K,
        MatmulVariant::Dot { .. } => MATMUL_DOT,
        MatmulVariant::Tiled => MATMUL_TILED,
    };
    let mut vals: Vec<(&str, String)> = match v {
        MatmulVariant::V4 {
            rows,
            cols4,
            wg_x,
            wg_y,
        }
        | MatmulVariant::V4Tex {
            rows,
            cols4,
            wg_x,
            wg_y,
        } => {
            let (tm, tn) = v.tile().unwrap_or((64, 64));
            let (b_decl, b_load) = if tex {
                (
                    "var bm: texture_2d<f32>;",
                    "textureLoad(bm, vec2<u32>(cb[c], k), 0)",
                )
            } else {
                ("var<storage, read> bm: array<vec4<f32>>;", "bm[pb + cb[c]]")
            };
            vec![
                ("b_decl", b_decl.to_string()),
                ("b_load", b_load.to_string()),
                ("rows", rows.to_string()),
                (
                    "lane_row",
                    if wg_y == 1 {
                        "0u".to_string()
                    } else {
                        format!("lid.y * {rows}u")
                    },
                ),
                ("cols", (cols4 as u32 * 4).to_string()),
                ("cols4", cols4.to_string()),
                ("wg_x", wg_x.to_string()),
                ("wg_y", wg_y.to_string()),
                ("tile_m", tm.to_string()),
                ("tile_n", tn.to_string()),
            ]
        }
        MatmulVariant::Dot { cols, wg_x } => vec![
            ("cols", cols.to_string()),
            ("wg_x", wg_x.to_string()),
            ("tile_n", (cols as u32 * wg_x as u32).to_string()),
        ],
        MatmulVariant::Rb4V4K => vec![
            ("wg_x", "8".into()),
            ("wg_y", "8".into()),
            ("tile_m", "32".into()),
            ("tile_n", "64".into()),
        ],
        _ => vec![],
    };
    vals.extend(spliced);
    vals.extend(layout_vals(false));
    let wgsl = module(&v.name(), &[MATMUL_COMMON, body], &vals)?;
    let k = Kernel {
        name: v.name(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips: v.loop_trips(p, sp),
    };
    Ok(vec![k])
}
