//! Lowering of each op to kernels. `lower` matches on [`Op`] exhaustively.

use crate::loops::{self, lp};
use crate::template::render;
use crate::{Buf, Elem, Error, Kernel};
use serde::{Deserialize, Serialize};
use sfumato_core::op::{BinaryOp, CoordTransform, Op, PadMode, ReduceOp, ResizeMode, UnaryOp};
use sfumato_core::plan::View;
use sfumato_core::shape::contiguous_strides;
use sfumato_core::{DType, Shape, TargetProfile};

const PRELUDE: &str = include_str!("templates/prelude.wgsl");
const UNARY: &str = include_str!("templates/unary.wgsl");
const BINARY: &str = include_str!("templates/binary.wgsl");
const WHERE: &str = include_str!("templates/where.wgsl");
const COPY: &str = include_str!("templates/copy.wgsl");
const BLOCK_COPY: &str = include_str!("templates/block_copy.wgsl");
const BATCHNORM: &str = include_str!("templates/batchnorm.wgsl");
const SOFTMAX: &str = include_str!("templates/softmax.wgsl");
const LAYERNORM: &str = include_str!("templates/layernorm.wgsl");
const REDUCE: &str = include_str!("templates/reduce.wgsl");
const REDUCE_COMMON: &str = include_str!("templates/reduce_common.wgsl");
const REDUCE_WG: &str = include_str!("templates/reduce_wg.wgsl");
const ROW_WG: &str = include_str!("templates/row_wg.wgsl");
const SOFTMAX_WG: &str = include_str!("templates/softmax_wg.wgsl");
const LAYERNORM_WG: &str = include_str!("templates/layernorm_wg.wgsl");
const POOL2D: &str = include_str!("templates/pool2d.wgsl");
const GATHER: &str = include_str!("templates/gather.wgsl");
const NARROW_FLOATS: &str = include_str!("templates/narrow_floats.wgsl");
const INT_POW: &str = include_str!("templates/int_pow.wgsl");
const GATHER_ELEMENTS: &str = include_str!("templates/gather_elements.wgsl");
const ARG_REDUCE: &str = include_str!("templates/arg_reduce.wgsl");
const RESIZE: &str = include_str!("templates/resize.wgsl");
const PAD: &str = include_str!("templates/pad.wgsl");
const CONV2D: &str = include_str!("templates/conv2d.wgsl");
const CONV2D_GEMM: &str = include_str!("templates/conv2d_gemm.wgsl");
const CONV_TRANSPOSE2D: &str = include_str!("templates/conv_transpose2d.wgsl");
pub(crate) const MATMUL_COMMON: &str = include_str!("templates/matmul_common.wgsl");
pub(crate) const CONV_PARAMS: &str = include_str!("templates/conv_params.wgsl");
const MATMUL_NAIVE: &str = include_str!("templates/matmul_naive.wgsl");
const MATMUL_RB4: &str = include_str!("templates/matmul_rb4.wgsl");
const MATMUL_V4: &str = include_str!("templates/matmul_v4.wgsl");
const MATMUL_RB4V4K: &str = include_str!("templates/matmul_rb4v4k.wgsl");
const MATMUL_TILED: &str = include_str!("templates/matmul_tiled.wgsl");

/// Options of lowering.
#[derive(Clone, Debug, Default)]
pub struct LowerOptions {
    /// The matmul kernel to use (chosen by the device's autotuner); `None` takes the target's
    /// first candidate that fits the layout.
    pub matmul: Option<MatmulVariant>,
    /// The device the kernels are for: its strengths order the choices (variant order, uniform
    /// blocks for conv and attention), its limits bound them (workgroups per dimension, uniform
    /// blocks, the loop budget: [`crate::loops`]).
    pub target: TargetProfile,
}

/// Code spliced into an anchor template (matmul, conv, softmax, layer norm): its `extra`
/// declarations (the `epilogue` and, for row reductions, `load_x` functions and their bindings),
/// the params they read (appended after the anchor's own, from index `ev`), and the buffers bound
/// after the template's fixed ones. `first` is what binding 0 holds for row reductions.
#[derive(Clone, Debug)]
pub struct Splice {
    pub extra: String,
    pub params: Vec<u32>,
    pub first: Buf,
    pub bindings: Vec<Buf>,
    /// Loop ends one call of its `load_x` or `epilogue` passes at most (view walks, `pow_u`).
    pub trips: u64,
}

/// The store of an unfused anchor: write the value.
/// `ep_init` reads an epilogue's params once per invocation (matmul kernels call it first).
pub const PLAIN_EPILOGUE: &str =
    "fn epilogue(i: u32, v: f32) {\n    out0[i] = v;\n}\nfn ep_init() {\n}\n";

/// An anchor's splice with nothing fused: read input 0, write the value.
pub fn plain_splice(row_reduction: bool) -> Splice {
    let mut extra = String::new();
    if row_reduction {
        extra += "@group(0) @binding(0) var<storage, read> x: array<f32>;\nfn load_x(i: u32) -> f32 {\n    return x[i];\n}\n";
    }
    extra += PLAIN_EPILOGUE;
    Splice {
        extra,
        params: Vec::new(),
        first: Buf::In(0),
        bindings: Vec::new(),
        trips: 0,
    }
}

/// The `pb` and `extra` template values of a splice.
type SpliceVals = [(&'static str, String); 2];

/// Apply an anchor's splice: its params after the anchor's own, its bindings after the
/// template's fixed ones (`fixed` gets the splice's first binding, which row reductions place at
/// 0). Returns the bindings, the template's `pb` (params binding) and `extra` values, and the
/// loop ends one call of the splice's functions passes.
pub(crate) fn apply_splice(
    splice: SpliceFn,
    params: &mut Vec<u32>,
    fixed: impl FnOnce(Buf) -> Vec<Buf>,
) -> Result<(Vec<Buf>, SpliceVals, u64), Error> {
    let sp = splice(params.len())?;
    params.extend(&sp.params);
    let mut bindings = fixed(sp.first);
    bindings.extend(&sp.bindings);
    let vals = [("pb", bindings.len().to_string()), ("extra", sp.extra)];
    Ok((bindings, vals, sp.trips))
}

/// Builds a splice given `ev`, the params index where its view block starts.
pub type SpliceFn<'a> = &'a dyn Fn(usize) -> Result<Splice, Error>;

/// What an op becomes on the device.
#[derive(Clone, Debug, PartialEq)]
pub enum Lowered {
    /// Dispatch these kernels, in order.
    Kernels(Vec<Kernel>),
    /// The output is the first input's buffer, unchanged (reshape).
    Alias,
    /// The output is a constant tensor, uploaded once.
    Constant,
}

/// Matmul kernel variants. Which is fastest depends on the adapter (and, for CPU adapters, on
/// the CPU), so the device measures them ([`MatmulVariant::candidates`]) and caches the winner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatmulVariant {
    /// One output per invocation.
    Naive,
    /// 4x4 outputs per invocation, scalar strided loads, no barriers.
    Rb4,
    /// `rows` x `4 * cols4` outputs per invocation, B as vec4, no barriers; workgroup `wg_x` x `wg_y`.
    V4 {
        rows: u8,
        cols4: u8,
        wg_x: u8,
        wg_y: u8,
    },
    /// As `V4`, with B read from an rgba32float texture (`K` rows of `N / 4` texels) instead
    /// of a storage buffer: only for a constant B (a weight) that the device uploads as a texture.
    /// CPU adapters gather texels far faster than storage-buffer elements (lavapipe: 4.9 vs
    /// 1.0 GB/s on a 768x3072 matrix-vector product, `examples/tex_lab.rs`).
    V4Tex {
        rows: u8,
        cols4: u8,
        wg_x: u8,
        wg_y: u8,
    },
    /// `rows` x `4 * cols4` outputs per invocation in named accumulators, A from uniform
    /// bindings of row blocks (`crate::matmul_ubo`), B as vec4 from a texture when it is a
    /// constant that can be one, else from storage; workgroup `wg_x` x 1.
    Ubo { rows: u8, cols4: u8, wg_x: u8 },
    /// 4x8 outputs per invocation, A and B as vec4 (four k per step), no barriers.
    Rb4V4K,
    /// 64x64 tiles staged in workgroup memory, 4x4 per invocation.
    Tiled,
}

/// The register-blocked vec4 shapes the autotuner tries: (rows, vec4 columns, workgroup x, y).
const V4_SHAPES: [(u8, u8, u8, u8); 11] = [
    (8, 2, 8, 8),
    (4, 2, 8, 8),
    (8, 4, 8, 8),
    (16, 2, 8, 8),
    (8, 2, 64, 1),
    (8, 2, 16, 4),
    (16, 4, 8, 8),
    (32, 2, 8, 8),
    (16, 4, 16, 1),
    (16, 2, 16, 4),
    // One row: matrix-vector products (a decode step), where taller blocks recompute one row.
    (1, 2, 64, 1),
];

/// The `V4Tex` shapes: one row for matrix-vector products, taller blocks for matrices.
/// Narrow workgroups give a long-K, short-N product (768 outputs) enough workgroups to spread.
const V4_TEX_SHAPES: [(u8, u8, u8, u8); 7] = [
    (1, 2, 64, 1),
    (1, 2, 16, 1),
    (1, 1, 16, 1),
    (8, 2, 64, 1),
    (8, 2, 8, 8),
    (16, 4, 8, 8),
    (16, 4, 16, 1),
];

/// The `Ubo` shapes: (rows, vec4 columns, workgroup x). Five rows of a long K (3,072) fill a
/// 64 KiB block.
const UBO_SHAPES: [(u8, u8, u8); 7] = [
    (16, 4, 16),
    (8, 4, 16),
    (8, 2, 32),
    (16, 2, 16),
    (5, 4, 16),
    (10, 4, 16),
    (15, 4, 16),
];

/// The largest texture side every WebGPU adapter offers (`max_texture_dimension_2d`'s default).
pub const MAX_TEXTURE_SIDE: usize = 8192;

impl MatmulVariant {
    /// Every variant, in a fixed order.
    pub fn all() -> Vec<MatmulVariant> {
        let mut v = vec![MatmulVariant::Naive, MatmulVariant::Rb4];
        v.extend(
            V4_SHAPES
                .iter()
                .map(|&(rows, cols4, wg_x, wg_y)| MatmulVariant::V4 {
                    rows,
                    cols4,
                    wg_x,
                    wg_y,
                }),
        );
        v.extend(
            V4_TEX_SHAPES
                .iter()
                .map(|&(rows, cols4, wg_x, wg_y)| MatmulVariant::V4Tex {
                    rows,
                    cols4,
                    wg_x,
                    wg_y,
                }),
        );
        v.extend(
            UBO_SHAPES
                .iter()
                .map(|&(rows, cols4, wg_x)| MatmulVariant::Ubo { rows, cols4, wg_x }),
        );
        v.extend([MatmulVariant::Rb4V4K, MatmulVariant::Tiled]);
        v
    }

    pub fn name(self) -> String {
        match self {
            MatmulVariant::Naive => "matmul_naive".into(),
            MatmulVariant::Rb4 => "matmul_rb4".into(),
            MatmulVariant::V4 {
                rows,
                cols4,
                wg_x,
                wg_y,
            } => format!("matmul_v4_{rows}x{}_wg{wg_x}x{wg_y}", cols4 as u32 * 4),
            MatmulVariant::V4Tex {
                rows,
                cols4,
                wg_x,
                wg_y,
            } => format!("matmul_v4tex_{rows}x{}_wg{wg_x}x{wg_y}", cols4 as u32 * 4),
            MatmulVariant::Ubo { rows, cols4, wg_x } => {
                format!("matmul_ubo_{rows}x{}_wg{wg_x}", cols4 as u32 * 4)
            }
            MatmulVariant::Rb4V4K => "matmul_rb4v4k".into(),
            MatmulVariant::Tiled => "matmul_tiled".into(),
        }
    }

    /// Parse a name as [`MatmulVariant::name`] prints it (the `matmul_` prefix is optional).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.trim_start_matches("matmul_");
        Self::all()
            .into_iter()
            .find(|v| v.name().trim_start_matches("matmul_") == s)
    }

    /// Whether the variant can compute this problem (vec4 variants need aligned, contiguous rows).
    pub fn supports(self, p: &MatmulProblem) -> bool {
        let b4 = crate::matmul_ubo::b_vec4(p);
        let a4 = p.a_sk == 1
            && p.k.is_multiple_of(4)
            && p.a_sm.is_multiple_of(4)
            && p.offsets.iter().all(|o| o[0].is_multiple_of(4));
        match self {
            MatmulVariant::Naive | MatmulVariant::Rb4 | MatmulVariant::Tiled => true,
            MatmulVariant::V4 { .. } => b4,
            MatmulVariant::V4Tex { .. } => p.b_texture(),
            MatmulVariant::Ubo { rows, .. } => {
                (b4 || p.b_texture())
                    && crate::matmul_ubo::ubo_layout(
                        p,
                        rows as usize,
                        crate::matmul_ubo::UBO_MAX_BLOCKS,
                    )
                    .is_some()
            }
            MatmulVariant::Rb4V4K => b4 && a4,
        }
    }

    /// Output tile (rows, cols) one workgroup computes; `None` for the per-element kernel.
    pub(crate) fn tile(self) -> Option<(u32, u32)> {
        match self {
            MatmulVariant::Naive => None,
            MatmulVariant::Rb4 => Some((32, 32)),
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
            } => Some((rows as u32 * wg_y as u32, cols4 as u32 * 4 * wg_x as u32)),
            MatmulVariant::Ubo { rows, cols4, wg_x } => {
                Some((rows as u32, cols4 as u32 * 4 * wg_x as u32))
            }
            MatmulVariant::Rb4V4K => Some((32, 64)),
            MatmulVariant::Tiled => Some((64, 64)),
        }
    }

    /// Loop ends one invocation of this variant passes on `p` (see [`crate::loops`]), with `sp`
    /// per call of the store's epilogue.
    pub fn loop_trips(self, p: &MatmulProblem, sp: u64) -> u64 {
        let k = p.k as u64;
        match self {
            MatmulVariant::Naive => lp(k) + sp,
            // The k loop's body is written out; the 4 x 4 store block loops.
            MatmulVariant::Rb4 => lp(k) + lp(4) + 4 * lp(4) + 16 * sp,
            MatmulVariant::V4 { rows, cols4, .. } | MatmulVariant::V4Tex { rows, cols4, .. } => {
                lp(k) + loops::store_block(rows as u64, cols4 as u64, sp)
            }
            MatmulVariant::Ubo { rows, cols4, .. } => {
                let n = rows as u64 * cols4 as u64;
                lp(k) + lp(n) + n * (lp(4) + 4 * sp)
            }
            // Four k a pass, the 4 x 8 store block loops (two stores a pass).
            MatmulVariant::Rb4V4K => lp(k.div_ceil(4)) + lp(4) + 4 * lp(4) + 32 * sp,
            // Per 16 k: the tile load loop, then 16 passes over the 4 x 4 block.
            MatmulVariant::Tiled => {
                let kt = k.div_ceil(16);
                lp(kt)
                    + kt * (lp(4) + lp(16) + 16 * (2 * lp(4) + 4 * lp(4)))
                    + lp(4)
                    + 4 * lp(4)
                    + 16 * sp
            }
        }
    }

    /// The variants that support `p` within the target's loop budget, best guess first for the
    /// target (a guess only orders the candidates; the autotuner measures them).
    pub fn candidates(p: &MatmulProblem, target: &TargetProfile) -> Vec<MatmulVariant> {
        let loop_budget = target.loop_budget;
        let mut all = Self::all();
        if !target.fast_workgroup_memory {
            // Barrier-free register blocking first where workgroup memory is slow (CPU adapters).
            all.sort_by_key(|v| match v {
                MatmulVariant::V4Tex { .. } | MatmulVariant::Ubo { .. } => 0,
                MatmulVariant::V4 { .. } => 0,
                MatmulVariant::Rb4V4K => 1,
                MatmulVariant::Rb4 => 2,
                MatmulVariant::Tiled => 3,
                MatmulVariant::Naive => 4,
            });
        } else {
            all.sort_by_key(|v| match v {
                MatmulVariant::Tiled => 0,
                MatmulVariant::V4 { .. }
                | MatmulVariant::V4Tex { .. }
                | MatmulVariant::Ubo { .. } => 1,
                MatmulVariant::Rb4V4K => 2,
                MatmulVariant::Rb4 => 3,
                MatmulVariant::Naive => 4,
            });
        }
        // One output per invocation only pays off for tiny or vector-shaped products; on a large
        // one it costs the autotuner seconds to rule out.
        let small = p.m * p.n * p.k <= 1 << 20 || p.m == 1 || p.n == 1;
        let ok = |v: &MatmulVariant| v.supports(p) && loops::fits(v.loop_trips(p, 0), loop_budget);
        let mut c: Vec<MatmulVariant> = all
            .iter()
            .copied()
            .filter(|v| ok(v) && (small || *v != MatmulVariant::Naive))
            .collect();
        if c.is_empty() && ok(&MatmulVariant::Naive) {
            // A long K that only the one-output kernel keeps under the loop budget.
            c.push(MatmulVariant::Naive);
        }
        c
    }
}

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

    /// A key for the autotune cache: shape buckets (powers of two) and layout flags.
    pub fn shape_class(&self) -> String {
        let b = |x: usize| x.max(1).next_power_of_two().trailing_zeros();
        let a4 = MatmulVariant::Rb4V4K.supports(self);
        let b4 = MatmulVariant::V4 {
            rows: 8,
            cols4: 2,
            wg_x: 8,
            wg_y: 8,
        }
        .supports(self);
        format!(
            "m{}n{}k{}b{}{}{}{}",
            b(self.m),
            b(self.n),
            b(self.k),
            b(self.offsets.len()),
            if a4 { "A4" } else { "" },
            if b4 { "B4" } else { "" },
            if self.b_texture() { "T" } else { "" }
        )
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.offsets.len() as f64
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
            })
        }
        _ => None,
    }
}

/// The matmul variant for `p`: the one chosen (by the device's autotuner) where it supports the
/// layout, else the first candidate.
pub fn pick_variant(p: &MatmulProblem, opts: &LowerOptions) -> Result<MatmulVariant, Error> {
    variant_order(p, opts)
        .first()
        .copied()
        .ok_or_else(|| no_matmul_variant(p, opts.target.loop_budget))
}

/// The variants to try for `p`, best first: the chosen one (`opts.matmul`) where it supports the
/// layout and fits the loop budget, then the other candidates.
pub(crate) fn variant_order(p: &MatmulProblem, opts: &LowerOptions) -> Vec<MatmulVariant> {
    let chosen = opts
        .matmul
        .filter(|v| v.supports(p) && loops::fits(v.loop_trips(p, 0), opts.target.loop_budget));
    let mut order: Vec<MatmulVariant> = chosen.into_iter().collect();
    order.extend(
        MatmulVariant::candidates(p, &opts.target)
            .into_iter()
            .filter(|&v| Some(v) != chosen),
    );
    order
}

/// The error of a matmul that no variant computes within the adapter's loop budget.
pub fn no_matmul_variant(p: &MatmulProblem, budget: Option<u64>) -> Error {
    Error::LoopBudget(format!(
        "no matmul kernel computes {}x{}x{} (M x N x K) within this adapter's loop budget of {} \
         loop trips per invocation (the shortest, one output per invocation, makes {}): K is \
         too long for this adapter",
        p.m,
        p.n,
        p.k,
        budget.unwrap_or(u64::MAX),
        MatmulVariant::Naive.loop_trips(p, 0)
    ))
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
    })
}

/// Lower one op. `ins` and `outs` are the dtypes and shapes of its inputs and outputs. No
/// kernel it returns passes more loop ends per invocation than `opts.target.loop_budget` allows
/// ([`crate::loops`]); an op that cannot be kept under it is an [`Error::LoopBudget`].
pub fn lower(
    op: &Op,
    ins: &[(DType, &Shape)],
    outs: &[(DType, &Shape)],
    opts: &LowerOptions,
) -> Result<Lowered, Error> {
    let lowered = lower_op(op, ins, outs, opts)?;
    loops::check_all(&lowered, opts.target.loop_budget)?;
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
    let n = out_shape.numel();
    let k = |ks: Vec<Kernel>| Ok(Lowered::Kernels(ks));
    match op {
        Op::Constant(_) => Ok(Lowered::Constant),
        Op::Reshape { .. } => Ok(Lowered::Alias),
        Op::MatMul | Op::Gemm(_) => {
            let p = matmul_problem(op, ins, outs)
                .ok_or_else(|| Error::Unsupported("matmul shapes".into()))?;
            k(matmul_kernel(&p, pick_variant(&p, opts)?, opts)?)
        }
        Op::Unary(u) => k(vec![elementwise1(
            "unary",
            ins[0],
            out_dt,
            &out_shape,
            unary_expr(*u, ins[0].0)?,
            opts,
        )?]),
        Op::Cast { to, saturate } => k(vec![elementwise1(
            "cast",
            ins[0],
            *to,
            &out_shape,
            cast_expr(ins[0].0, *to, *saturate),
            opts,
        )?]),
        Op::Binary(b) => {
            let dt = ins[0].0;
            let binary_trips =
                2 * loops::rank_walk(out_shape.rank()) + expr_trips(&binary_expr(*b, dt));
            let vals = [
                ("in_ty", Elem::of(dt).wgsl().to_string()),
                ("out_ty", Elem::of(out_dt).wgsl().to_string()),
                ("expr", binary_expr(*b, dt)),
            ];
            let params = view_params(
                &out_shape,
                &[strided(ins[0].1, &out_shape), strided(ins[1].1, &out_shape)],
            );
            k(vec![kernel(
                "binary",
                BINARY,
                &vals,
                vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
                params,
                n,
                binary_trips,
                opts,
            )?])
        }
        Op::Where => {
            let vals = [("ty", Elem::of(out_dt).wgsl().to_string())];
            let views: Vec<View> = ins.iter().map(|i| strided(i.1, &out_shape)).collect();
            let params = view_params(&out_shape, &views);
            k(vec![kernel(
                "where",
                WHERE,
                &vals,
                vec![Buf::In(0), Buf::In(1), Buf::In(2), Buf::Out(0)],
                params,
                n,
                3 * loops::rank_walk(out_shape.rank()),
                opts,
            )?])
        }
        Op::Transpose { perm } => {
            let s = ins[0].1.strides();
            let src = View {
                strides: perm.iter().map(|&p| s[p] as i64).collect(),
                offset: 0,
            };
            k(vec![read_view(&out_shape, src, out_dt, opts)?])
        }
        Op::Slice { axes } => {
            let s = ins[0].1.strides();
            let src = View {
                strides: axes
                    .iter()
                    .zip(&s)
                    .map(|(a, &s)| a.step * s as i64)
                    .collect(),
                offset: axes.iter().zip(&s).map(|(a, &s)| a.start * s as i64).sum(),
            };
            k(vec![read_view(&out_shape, src, out_dt, opts)?])
        }
        Op::Concat { axis } => {
            // Part i: blocks of len_i * inner elements, placed at `start * inner` in rows of
            // total * inner.
            let inner: usize = out_shape.0[*axis + 1..].iter().product();
            let row = out_shape.0[*axis] * inner;
            let mut start = 0usize;
            let mut ks = Vec::new();
            for (i, (_, s)) in ins.iter().enumerate() {
                if s.numel() > 0 {
                    let blk = s.0[*axis] * inner;
                    let rows = [blk, 0, row, start * inner];
                    ks.push(block_copy(s.numel(), blk, rows, out_dt, i, 0, opts)?);
                }
                start += s.0[*axis];
            }
            k(ks)
        }
        Op::Split { axis, .. } => {
            let x = ins[0].1;
            let inner: usize = x.0[*axis + 1..].iter().product();
            let row = x.0[*axis] * inner;
            let mut start = 0usize;
            let mut ks = Vec::new();
            for (o, (_, s)) in outs.iter().enumerate() {
                if s.numel() > 0 {
                    let blk = s.0[*axis] * inner;
                    let rows = [row, start * inner, blk, 0];
                    ks.push(block_copy(s.numel(), blk, rows, out_dt, 0, o, opts)?);
                }
                start += s.0[*axis];
            }
            k(ks)
        }
        Op::BatchNorm { epsilon } => {
            let d = &ins[0].1 .0;
            let inner: usize = d[2..].iter().product();
            let params = vec![
                n as u32,
                d[1] as u32,
                inner.max(1) as u32,
                epsilon.to_bits(),
            ];
            let binds = vec![
                Buf::In(0),
                Buf::In(1),
                Buf::In(2),
                Buf::In(3),
                Buf::In(4),
                Buf::Out(0),
            ];
            k(vec![kernel(
                "batchnorm",
                BATCHNORM,
                &[],
                binds,
                params,
                n,
                0,
                opts,
            )?])
        }
        Op::Softmax { axis } => k(vec![softmax_kernel(*axis, &out_shape, opts, &|_| {
            Ok(plain_splice(true))
        })?]),
        Op::LayerNorm { axis, epsilon } => k(vec![layernorm_kernel(
            *axis,
            *epsilon,
            [
                Buf::In(1),
                if ins.len() == 3 {
                    Buf::In(2)
                } else {
                    Buf::In(1)
                },
            ],
            ins.len() == 3,
            &out_shape,
            opts,
            &|_| Ok(plain_splice(true)),
        )?]),
        Op::Reduce { op: r, axes, .. } => k(vec![reduce_kernel(
            *r,
            ins[0].0,
            &ins[0].1 .0,
            axes,
            opts,
            &|_| Ok(plain_reduce_splice(ins[0].0)),
        )?]),
        Op::GlobalAvgPool => {
            let axes: Vec<usize> = (2..ins[0].1.rank()).collect();
            k(vec![reduce_kernel(
                ReduceOp::Mean,
                ins[0].0,
                &ins[0].1 .0,
                &axes,
                opts,
                &|_| Ok(plain_reduce_splice(ins[0].0)),
            )?])
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) | Op::MaxPoolIndices2d { pool: p, .. } => {
            let x = &ins[0].1 .0;
            let params = vec![
                n as u32,
                x[2] as u32,
                x[3] as u32,
                out_shape.0[2] as u32,
                out_shape.0[3] as u32,
                p.kernel[0] as u32,
                p.kernel[1] as u32,
                p.stride[0] as u32,
                p.stride[1] as u32,
                p.padding[0] as u32,
                p.padding[1] as u32,
                p.dilation[0] as u32,
                p.dilation[1] as u32,
                p.count_include_pad as u32,
            ];
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
                                if *col_major { "iy + ix * h" } else { "iy * w + ix" }
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
                            "acc / f32(select(max(cnt, 1u), params[5] * params[6], params[13] != 0u))"
                                .into(),
                        ),
                        ("out_ty", "f32".into()),
                    ],
                ),
            };
            k(vec![kernel(
                name,
                POOL2D,
                &vals,
                vec![Buf::In(0), Buf::Out(0)],
                params,
                n,
                pool_trips,
                opts,
            )?])
        }
        Op::Conv2d(c)
            if conv1x1_problem(c, &ins[0].1 .0, &ins[1].1 .0, ins.len() == 3).is_some() =>
        {
            let p = conv1x1_problem(c, &ins[0].1 .0, &ins[1].1 .0, ins.len() == 3)
                .ok_or_else(|| Error::Unsupported("pointwise conv".into()))?;
            let mut kerns = matmul_kernel(&p, pick_variant(&p, opts)?, opts)?;
            // The matmul reads A = weight (input 1) and B = image (input 0).
            for b in kerns.iter_mut().flat_map(|k| k.bindings.iter_mut()) {
                *b = match *b {
                    Buf::In(0) => Buf::In(1),
                    Buf::In(1) => Buf::In(0),
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
            k(kerns)
        }
        Op::Conv2d(c) => {
            let bias = if ins.len() == 3 {
                Buf::In(2)
            } else {
                Buf::In(1)
            };
            let conv = if c.groups == 1 {
                conv2d_gemm_kernel
            } else {
                conv2d_kernel
            };
            k(conv(
                c,
                &ins[0].1 .0,
                &ins[1].1 .0,
                bias,
                ins.len() == 3,
                &out_shape,
                opts,
                &|_| Ok(plain_splice(false)),
            )?)
        }
        Op::ConvTranspose2d(c) => {
            let (x, w) = (&ins[0].1 .0, &ins[1].1 .0);
            let has_bias = ins.len() == 3;
            let params = vec![
                n as u32,
                x[1] as u32,
                x[2] as u32,
                x[3] as u32,
                out_shape.0[1] as u32,
                out_shape.0[2] as u32,
                out_shape.0[3] as u32,
                w[2] as u32,
                w[3] as u32,
                c.stride[0] as u32,
                c.stride[1] as u32,
                c.padding[0] as u32,
                c.padding[1] as u32,
                c.dilation[0] as u32,
                c.dilation[1] as u32,
                (x[1] / c.groups) as u32,
                w[1] as u32,
                has_bias as u32,
            ];
            let bias = if has_bias { Buf::In(2) } else { Buf::In(1) };
            let binds = vec![Buf::In(0), Buf::In(1), bias, Buf::Out(0)];
            let (cig, kh, kw) = ((x[1] / c.groups) as u64, w[2] as u64, w[3] as u64);
            let ct_trips = lp(cig) + cig * lp(kh) + cig * kh * lp(kw);
            k(vec![kernel(
                "conv_transpose2d",
                CONV_TRANSPOSE2D,
                &[],
                binds,
                params,
                n,
                ct_trips,
                opts,
            )?])
        }
        Op::Gather { axis } => {
            let x = &ins[0].1 .0;
            let (_, len, inner) = sfumato_core::interp::split_at_axis(x, *axis);
            let count = ins[1].1.numel();
            let params = vec![
                n as u32,
                count.max(1) as u32,
                len as u32,
                inner.max(1) as u32,
            ];
            let vals = [("ty", Elem::of(out_dt).wgsl().to_string())];
            k(vec![kernel(
                "gather",
                GATHER,
                &vals,
                vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
                params,
                n,
                0,
                opts,
            )?])
        }
        Op::GatherElements { axis } => {
            let x = &ins[0].1;
            let rank = x.rank();
            let mut params = vec![n as u32, rank as u32, *axis as u32, x.0[*axis] as u32];
            params.extend(out_shape.0.iter().map(|&d| d as u32));
            params.extend(contiguous_strides(&x.0).iter().map(|&s| s as u32));
            let vals = [("ty", Elem::of(out_dt).wgsl().to_string())];
            k(vec![kernel(
                "gather_elements",
                GATHER_ELEMENTS,
                &vals,
                vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
                params,
                n,
                loops::rank_walk(rank),
                opts,
            )?])
        }
        Op::ArgReduce {
            max, axis, last, ..
        } => {
            let (_, len, inner) = sfumato_core::interp::split_at_axis(&ins[0].1 .0, *axis);
            let params = vec![
                n as u32,
                len as u32,
                inner.max(1) as u32,
                *max as u32,
                *last as u32,
            ];
            let e = Elem::of(ins[0].0);
            let nan_fn = if e == Elem::F32 {
                "fn nan_of(v: f32) -> bool {\n    return is_nan(v);\n}".to_string()
            } else {
                format!(
                    "fn nan_of(v: {}) -> bool {{\n    return false;\n}}",
                    e.wgsl()
                )
            };
            let vals = [("ty", e.wgsl().to_string()), ("nan_fn", nan_fn)];
            k(vec![kernel(
                "arg_reduce",
                ARG_REDUCE,
                &vals,
                vec![Buf::In(0), Buf::Out(0)],
                params,
                n,
                lp(len as u64),
                opts,
            )?])
        }
        Op::Resize { mode, coord, size } => {
            let x = &ins[0].1 .0;
            let params = vec![
                n as u32,
                x[2] as u32,
                x[3] as u32,
                size[0] as u32,
                size[1] as u32,
                matches!(mode, ResizeMode::Bilinear) as u32,
                match coord {
                    CoordTransform::HalfPixel => 0,
                    CoordTransform::AlignCorners => 1,
                    CoordTransform::Asymmetric => 2,
                },
            ];
            k(vec![kernel(
                "resize",
                RESIZE,
                &[],
                vec![Buf::In(0), Buf::Out(0)],
                params,
                n,
                0,
                opts,
            )?])
        }
        Op::Pad { pads, mode } => {
            let x = ins[0].1;
            let mut params = vec![n as u32, x.rank() as u32];
            params.extend(out_shape.0.iter().map(|&d| d as u32));
            params.extend(x.0.iter().map(|&d| d as u32));
            params.extend(x.strides().iter().map(|&d| d as u32));
            params.extend(pads.iter().map(|p| p[0] as u32));
            let (m, value) = match mode {
                PadMode::Constant(v) => (0, constant_bits(*v, out_dt)),
                PadMode::Reflect => (1, 0),
                PadMode::Edge => (2, 0),
            };
            params.push(m);
            params.push(value);
            let vals = [("ty", Elem::of(out_dt).wgsl().to_string())];
            k(vec![kernel(
                "pad",
                PAD,
                &vals,
                vec![Buf::In(0), Buf::Out(0)],
                params,
                n,
                loops::rank_walk(x.rank()),
                opts,
            )?])
        }
    }
}

const NEG_INF: &str = "bitcast<f32>(0xff800000u)";
const POS_INF: &str = "bitcast<f32>(0x7f800000u)";

/// The bits of a constant in the device element type of `dt`.
fn constant_bits(v: f32, dt: DType) -> u32 {
    match Elem::of(dt) {
        Elem::F32 => v.to_bits(),
        Elem::I32 => dt.round(v as f64) as i32 as u32,
        Elem::U32 => dt.round(v as f64) as u32,
    }
}

/// An exact WGSL f32 literal.
fn lit(v: f32) -> String {
    format!("bitcast<f32>({}u)", v.to_bits())
}

pub(crate) fn unary_expr(u: UnaryOp, dt: DType) -> Result<String, Error> {
    if Elem::of(dt) == Elem::I32 {
        return Ok(fit_int(
            dt,
            match u {
                UnaryOp::Relu => "max(x, 0)".into(),
                UnaryOp::Neg => "-x".into(),
                UnaryOp::Abs => "abs(x)".into(),
                UnaryOp::Clip { min, max } => {
                    format!("min(max(x, {}), {})", min as i32, max as i32)
                }
                other => return Err(Error::Unsupported(format!("{} on {dt}", other.name()))),
            },
        ));
    }
    if Elem::of(dt) != Elem::F32 {
        return Err(Error::Unsupported(format!("{} on {dt}", u.name())));
    }
    let e: String = match u {
        UnaryOp::Relu => "max(x, 0.0)".into(),
        UnaryOp::LeakyRelu { alpha } => format!("select({} * x, x, x >= 0.0)", lit(alpha)),
        UnaryOp::Sigmoid => "sigmoid_f(x)".into(),
        UnaryOp::Tanh => "tanh_f(x)".into(),
        UnaryOp::Gelu => "0.5 * x * (1.0 + erf_f(x * 0.7071067811865476))".into(),
        UnaryOp::GeluTanh => {
            "0.5 * x * (1.0 + tanh_f(0.7978845608028654 * (x + 0.044715 * x * x * x)))".into()
        }
        UnaryOp::Silu => "x * sigmoid_f(x)".into(),
        UnaryOp::HardSwish => "x * clamp(x + 3.0, 0.0, 6.0) / 6.0".into(),
        UnaryOp::Exp => "exp(x)".into(),
        UnaryOp::Log => "log(x)".into(),
        UnaryOp::Sqrt => "sqrt(x)".into(),
        UnaryOp::Rsqrt => "inverseSqrt(x)".into(),
        UnaryOp::Neg => "-x".into(),
        UnaryOp::Abs => "abs(x)".into(),
        UnaryOp::Erf => "erf_f(x)".into(),
        UnaryOp::Clip { min, max } => format!("min(max(x, {}), {})", lit(min), lit(max)),
        UnaryOp::Sin => "sin(x)".into(),
        UnaryOp::Cos => "cos(x)".into(),
        UnaryOp::Tan => "tan(x)".into(),
        // Through atan2 and sqrt((1 - x)(1 + x)): llvmpipe's asin/acos builtins lose about
        // 1e-4 relative precision.
        UnaryOp::Asin => "atan2(x, sqrt((1.0 - x) * (1.0 + x)))".into(),
        UnaryOp::Acos => "atan2(sqrt((1.0 - x) * (1.0 + x)), x)".into(),
        UnaryOp::Atan => "atan(x)".into(),
        UnaryOp::Sinh => "sinh(x)".into(),
        UnaryOp::Cosh => "cosh(x)".into(),
        UnaryOp::Asinh => "asinh(x)".into(),
        UnaryOp::Acosh => "acosh(x)".into(),
        UnaryOp::Atanh => "atanh(x)".into(),
        UnaryOp::Floor => "floor(x)".into(),
        UnaryOp::Ceil => "ceil(x)".into(),
        UnaryOp::Round => "round(x)".into(),
        UnaryOp::Sign => "sign(x)".into(),
    };
    Ok(e)
}

/// An i32 result `e` brought into the range of `dt`, which the device holds in an i32: the
/// 8- and 16-bit integers saturate, the 4- and 2-bit ones wrap, as [`DType::round`] does.
fn fit_int(dt: DType, e: String) -> String {
    if let Some((lo, hi)) = dt.int_range().filter(|_| dt != DType::U8) {
        return format!("clamp({e}, {}, {})", lo as i32, hi as i32);
    }
    match dt.sub_byte_int() {
        Some((bits, true)) => format!("(({e}) << {s}u) >> {s}u", s = 32 - bits),
        Some((bits, false)) => format!("({e}) & {}", (1 << bits) - 1),
        None => e,
    }
}

/// A value `e` cast to `dt`, which the device holds in an f32: bfloat16 and the small floats
/// round here (their arithmetic, like f16's, runs in f32 and rounds when read back).
/// `saturate`: see [`Op::Cast`].
fn fit_float(dt: DType, e: String, saturate: bool) -> String {
    if dt == DType::BF16 {
        return format!("bf16_round({e})");
    }
    if dt == DType::F8E8M0 {
        return format!("e8m0_round({e}, {saturate})");
    }
    match dt.mini() {
        Some(m) => {
            let over = if saturate || (!m.has_inf && !m.has_nan) {
                0
            } else if m.has_inf {
                1
            } else {
                2
            };
            format!(
                "mini_round({e}, {}, {}, {}, {over}u, {}, {})",
                m.man_bits,
                m.min_exp(),
                lit(m.max as f32),
                !m.has_nan,
                m.unsigned_zero
            )
        }
        None => e,
    }
}

pub(crate) fn binary_expr(b: BinaryOp, dt: DType) -> String {
    let cmp = |o: &str| format!("select(0u, 1u, a {o} b)");
    match b {
        BinaryOp::Eq => return cmp("=="),
        BinaryOp::Ne => return cmp("!="),
        BinaryOp::Lt => return cmp("<"),
        BinaryOp::Le => return cmp("<="),
        BinaryOp::Gt => return cmp(">"),
        BinaryOp::Ge => return cmp(">="),
        _ => {}
    }
    match Elem::of(dt) {
        Elem::F32 => match b {
            BinaryOp::Add => "a + b".into(),
            BinaryOp::Sub => "a - b".into(),
            BinaryOp::Mul => "a * b".into(),
            BinaryOp::Div => "a / b".into(),
            BinaryOp::Pow => "pow_f(a, b)".into(),
            BinaryOp::Max => "max_nan(a, b)".into(),
            _ => "min_nan(a, b)".into(),
        },
        Elem::I32 => fit_int(dt, int_binary(b, "a", "b")),
        // u8: compute in i32, saturate to 0..255 like the reference's conversion.
        Elem::U32 if dt == DType::U8 => {
            format!("u32(clamp({}, 0, 255))", int_binary(b, "i32(a)", "i32(b)"))
        }
        // u32 (and u64, held in a u32): saturating unsigned arithmetic.
        Elem::U32 => match b {
            BinaryOp::Add => "select(a + b, 4294967295u, a + b < a)".into(),
            BinaryOp::Sub => "select(a - b, 0u, b > a)".into(),
            BinaryOp::Mul => "select(a * b, 4294967295u, b != 0u && a > 4294967295u / b)".into(),
            BinaryOp::Div => "select(a / b, 0u, b == 0u)".into(),
            BinaryOp::Pow => "pow_u(a, b)".into(),
            BinaryOp::Max => "max(a, b)".into(),
            _ => "min(a, b)".into(),
        },
    }
}

fn int_binary(b: BinaryOp, a: &str, c: &str) -> String {
    match b {
        BinaryOp::Add => format!("{a} + {c}"),
        BinaryOp::Sub => format!("{a} - {c}"),
        BinaryOp::Mul => format!("{a} * {c}"),
        BinaryOp::Div => format!("select({a} / {c}, 0, {c} == 0)"),
        BinaryOp::Pow => format!("i32(round(pow_f(f32({a}), f32({c}))))"),
        BinaryOp::Max => format!("max({a}, {c})"),
        _ => format!("min({a}, {c})"),
    }
}

pub(crate) fn cast_expr(from: DType, to: DType, saturate: bool) -> String {
    let (fe, te) = (Elem::of(from), Elem::of(to));
    // The largest f32 below 2^31 and 2^32.
    const I32_MAX_F: &str = "2147483520.0";
    const U32_MAX_F: &str = "4294967040.0";
    match (fe, to) {
        (_, DType::Bool) => match fe {
            Elem::F32 => "select(0u, 1u, x != 0.0 || is_nan(x))".into(),
            Elem::I32 => "select(0u, 1u, x != 0)".into(),
            Elem::U32 => "select(0u, 1u, x != 0u)".into(),
        },
        (Elem::F32, DType::U8) => "select(u32(clamp(x, 0.0, 255.0)), 0u, is_nan(x))".into(),
        (Elem::I32, DType::U8) => "u32(clamp(x, 0, 255))".into(),
        (Elem::U32, DType::U8) => "min(x, 255u)".into(),
        // Floats to integers truncate and saturate (±inf too); NaN gives 0, as in the reference.
        (Elem::F32, _) if te == Elem::U32 => format!(
            "select(select(u32(clamp(x, 0.0, {U32_MAX_F})), 4294967295u, x >= 4294967296.0), 0u, is_nan(x))"
        ),
        (Elem::I32, _) if te == Elem::U32 => "u32(max(x, 0))".into(),
        (Elem::U32, _) if te == Elem::I32 => fit_int(to, "i32(min(x, 2147483647u))".into()),
        (Elem::F32, _) if te == Elem::I32 => match to.int_range() {
            Some((lo, hi)) => format!("select(i32(clamp(x, {lo:.1}, {hi:.1})), 0, is_nan(x))"),
            None => fit_int(
                to,
                format!(
                    "select(select(i32(clamp(x, -2147483648.0, {I32_MAX_F})), 2147483647, x >= 2147483648.0), 0, is_nan(x))"
                ),
            ),
        },
        (Elem::I32, _) if te == Elem::I32 => fit_int(to, "x".into()),
        _ if te == Elem::F32 => {
            let base = if fe == te {
                "x".into()
            } else {
                "f32(x)".to_string()
            };
            fit_float(to, base, saturate)
        }
        _ if fe == te => "x".into(),
        _ => format!("{}(x)", te.wgsl()),
    }
}

/// The view that reads `s` broadcast to `target`.
fn strided(s: &Shape, target: &Shape) -> View {
    View {
        strides: s
            .broadcast_strides(target)
            .iter()
            .map(|&x| x as i64)
            .collect(),
        offset: 0,
    }
}

/// `[n, rank, dims.., (strides.., offset) per view]`.
fn view_params(dims: &Shape, views: &[View]) -> Vec<u32> {
    let mut m = vec![dims.numel() as u32, dims.rank() as u32];
    m.extend(dims.0.iter().map(|&d| d as u32));
    for v in views {
        m.extend(v.strides.iter().map(|&s| s as i32 as u32));
        m.push(v.offset as i32 as u32);
    }
    m
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
    let params = view_params(out_shape, &[strided(input.1, out_shape)]);
    kernel(
        name,
        UNARY,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        out_shape.numel(),
        trips,
        opts,
    )
}

/// A contiguous copy of a strided view of input 0 (transpose, slice).
pub fn read_view(dims: &Shape, src: View, dt: DType, opts: &LowerOptions) -> Result<Kernel, Error> {
    copy_kernel(dims, src, View::contiguous(dims), dt, 0, 0, opts)
}

fn copy_kernel(
    dims: &Shape,
    src: View,
    dst: View,
    dt: DType,
    input: usize,
    output: usize,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let params = view_params(dims, &[src, dst]);
    let vals = [("ty", Elem::of(dt).wgsl().to_string())];
    kernel(
        "copy",
        COPY,
        &vals,
        vec![Buf::In(input), Buf::Out(output)],
        params,
        dims.numel(),
        // view_offset for the source and the destination.
        2 * loops::rank_walk(dims.rank()),
        opts,
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
    let mut params = vec![
        n_out as u32,
        count as u32,
        kept.len() as u32,
        axes.len() as u32,
    ];
    params.extend(kept.iter().map(|&d| dims[d] as u32));
    params.extend(kept.iter().map(|&d| strides[d] as u32));
    params.extend(axes.iter().map(|&d| dims[d] as u32));
    params.extend(axes.iter().map(|&d| strides[d] as u32));
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
            opts,
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
                opts,
            )
        }
    }
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
        return Err(Error::Unsupported(format!(
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
    let mut params = vec![
        p.m as u32,
        p.n as u32,
        p.k as u32,
        batch as u32,
        p.alpha.to_bits(),
        p.beta.to_bits(),
        p.has_bias as u32,
        p.a_sm as u32,
        p.a_sk as u32,
        p.b_sk as u32,
        p.b_sn as u32,
        p.c_sm as u32,
        p.c_sn as u32,
        tiles_n as u32,
        tiles_m as u32,
    ];
    for o in &p.offsets {
        params.extend(o.iter().map(|&x| x as u32));
    }
    if matches!(v, MatmulVariant::Ubo { .. }) {
        // One kernel per part of A's rows, each with its own grid.
        return crate::matmul_ubo::matmul_ubo_kernels(p, v, opts, splice, params);
    }
    let empty = p.m == 0 || p.n == 0 || batch == 0;
    let workgroups = if empty {
        [0, 0, 0]
    } else {
        grid(wgs as u64, opts)?
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
        MatmulVariant::Rb4V4K => vec![
            ("wg_x", "8".into()),
            ("wg_y", "8".into()),
            ("tile_m", "32".into()),
            ("tile_n", "64".into()),
        ],
        _ => vec![],
    };
    vals.extend(spliced);
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

/// A call of `pow_u` (`int_pow.wgsl`), appended to the modules that make one.
const POW_U_CALL: &str = "pow_u(";

/// Loop ends one evaluation of an expression passes: `pow_u` is the one helper with a loop.
pub(crate) fn expr_trips(expr: &str) -> u64 {
    if expr.contains(POW_U_CALL) {
        loops::POW_U_TRIPS
    } else {
        0
    }
}

/// Prelude + template parts, filled.
pub(crate) fn module(name: &str, parts: &[&str], vals: &[(&str, String)]) -> Result<String, Error> {
    let mut src = String::from(PRELUDE);
    for p in parts {
        src.push('\n');
        src.push_str(p);
    }
    let mut out = render(name, &src, vals)?;
    // Helpers outside the prelude, appended only where the module calls them.
    for (calls, helper) in [
        (
            &["bf16_round(", "mini_round(", "e8m0_round("][..],
            NARROW_FLOATS,
        ),
        (&[POW_U_CALL][..], INT_POW),
    ] {
        if calls.iter().any(|c| out.contains(c)) {
            out.push('\n');
            out.push_str(helper);
        }
    }
    Ok(out)
}

/// A kernel of 256-invocation workgroups over `threads` invocations.
/// `n` elements in blocks of `blk`: input `input`'s block b at `src_off + b * src_row`, output
/// `output`'s at `dst_off + b * dst_row`; `rows` = [src_row, src_off, dst_row, dst_off].
fn block_copy(
    n: usize,
    blk: usize,
    rows: [usize; 4],
    dt: DType,
    input: usize,
    output: usize,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    // Blocks and rows of whole vec4s copy four elements per invocation: a quarter of the
    // invocations, each paying the params loads once (on CPU adapters every storage load is a
    // loop over the SIMD lanes, so those loads cost as much as the copy itself).
    let v = if blk.is_multiple_of(4) && rows.iter().all(|r| r.is_multiple_of(4)) {
        4
    } else {
        1
    };
    let (n, blk) = (n / v, blk / v);
    let mut params = vec![n as u32, blk.max(1) as u32];
    params.extend(rows.iter().map(|&r| (r / v) as u32));
    let ty = Elem::of(dt).wgsl();
    let ty = if v == 4 {
        format!("vec4<{ty}>")
    } else {
        ty.to_string()
    };
    let vals = [("ty", ty)];
    kernel(
        if v == 4 {
            "block_copy_vec4"
        } else {
            "block_copy"
        },
        BLOCK_COPY,
        &vals,
        vec![Buf::In(input), Buf::Out(output)],
        params,
        n,
        0,
        opts,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel(
    name: &str,
    template: &str,
    vals: &[(&str, String)],
    bindings: Vec<Buf>,
    params: Vec<u32>,
    threads: usize,
    loop_trips: u64,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    kernel_of(
        name,
        &[template],
        vals,
        bindings,
        params,
        threads.div_ceil(256),
        loop_trips,
        opts,
    )
}

/// A kernel of template `parts` over `workgroups` workgroups (spread by [`grid`]).
#[allow(clippy::too_many_arguments)]
fn kernel_of(
    name: &str,
    parts: &[&str],
    vals: &[(&str, String)],
    bindings: Vec<Buf>,
    params: Vec<u32>,
    workgroups: usize,
    loop_trips: u64,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let wgsl = module(name, parts, vals)?;
    let workgroups = if workgroups == 0 {
        [0, 0, 0]
    } else {
        grid(workgroups as u64, opts)?
    };
    Ok(Kernel {
        name: name.to_string(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips,
    })
}

/// Spread `n` workgroups over x and y so neither exceeds the per-dimension limit.
pub fn grid(n: u64, opts: &LowerOptions) -> Result<[u32; 3], Error> {
    let lim = opts.target.max_workgroups_per_dim.max(1) as u64;
    let x = n.min(lim);
    let y = n.div_ceil(x.max(1));
    if y > lim {
        return Err(Error::Limit(format!("{n} workgroups exceed {lim} x {lim}")));
    }
    Ok([x as u32, y as u32, 1])
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
    let mut params = vec![rows as u32, len as u32, inner.max(1) as u32];
    let (bindings, vals, sp) = apply_splice(splice, &mut params, |first| vec![first, Buf::Out(0)])?;
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
            opts,
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
                opts,
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
    let mut params = vec![rows as u32, len as u32, epsilon.to_bits(), has_bias as u32];
    let (bindings, vals, sp) = apply_splice(splice, &mut params, |first| {
        vec![first, scale_bias[0], scale_bias[1], Buf::Out(0)]
    })?;
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

/// Direct conv2d (x, w, optional bias) with a splice for the store.
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
    let n = out_shape.numel();
    let (oh, ow) = (out_shape.0[2], out_shape.0[3]);
    let cog = w[0] / c.groups;
    let (bx, bo) = (ow.div_ceil(4), cog.div_ceil(4));
    let mut params = vec![
        x[0] as u32,
        x[1] as u32,
        x[2] as u32,
        x[3] as u32,
        w[0] as u32,
        oh as u32,
        ow as u32,
        w[2] as u32,
        w[3] as u32,
        c.stride[0] as u32,
        c.stride[1] as u32,
        c.padding[0] as u32,
        c.padding[1] as u32,
        c.dilation[0] as u32,
        c.dilation[1] as u32,
        w[1] as u32,
        cog as u32,
        has_bias as u32,
        bx as u32,
        bo as u32,
    ];
    let (bindings, vals, sp) = apply_splice(splice, &mut params, |_| {
        vec![Buf::In(0), Buf::In(1), bias, Buf::Out(0)]
    })?;
    let threads = x[0] * c.groups * bo * oh * bx;
    // Per input channel of the group: the tap loops (their 4 x 4 bodies written out); then the
    // 4 x 4 store block.
    let (cig, kh, kw) = (w[1] as u64, w[2] as u64, w[3] as u64);
    let loop_trips = lp(cig) + cig * lp(kh) + cig * kh * lp(kw) + lp(4) + 4 * lp(4) + 16 * sp;
    let wgsl = module("conv2d", &[CONV2D], &vals)?;
    let workgroups = if n == 0 {
        [0, 0, 0]
    } else {
        grid(threads.div_ceil(64) as u64, opts)?
    };
    let k = Kernel {
        name: "conv2d".into(),
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
    let mut params = vec![
        m as u32,
        n as u32,
        k as u32,
        batch as u32,
        1f32.to_bits(),
        1f32.to_bits(),
        has_bias as u32,
        k as u32,
        1,
        0,
        0,
        1,
        0,
        tiles_n as u32,
        tiles_m as u32,
    ];
    for b in 0..batch {
        params.extend([0, (b * x[1] * x[2] * x[3]) as u32, 0]);
    }
    params.extend(
        [
            x[1],
            x[2],
            x[3],
            ow,
            w[2],
            w[3],
            c.stride[0],
            c.stride[1],
            c.padding[0],
            c.padding[1],
            c.dilation[0],
            c.dilation[1],
        ]
        .iter()
        .map(|&v| v as u32),
    );
    if opts.target.uniform_block_operands
        && (m * n * k * batch) as u64 >= crate::matmul_ubo::UBO_CONV_MIN_MACS
    {
        // Weights from uniform blocks, the block written out (`conv2d_ubo`), where they fit.
        let v = CONV_UBO_BLOCK;
        let prob = MatmulProblem {
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
            offsets: (0..batch).map(|b| [0, b * x[1] * x[2] * x[3], 0]).collect(),
            b_const: false,
        };
        let rows = CONV_UBO_ROWS as usize;
        let tile_n = CONV_UBO_COLS4 as usize * 4 * CONV_UBO_WG as usize;
        // (Whole 16-row blocks only: weights of over 1,024 per output channel keep `conv2d_gemm`.)
        if crate::matmul_ubo::ubo_layout(&prob, rows, opts.target.max_uniform_blocks as usize)
            .is_some_and(|l| l.q == 1)
        {
            params[13] = n.div_ceil(tile_n) as u32;
            let spec = crate::matmul_ubo::UboSpec {
                a_input: 1,
                b: Buf::In(0),
                bias,
                src: crate::matmul_ubo::BSource::Conv,
                name: "conv2d_ubo".into(),
            };
            return crate::matmul_ubo::ubo_kernels(&prob, v, opts, splice, params, &spec);
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
    let wgsl = module(
        "conv2d_gemm",
        &[MATMUL_COMMON, CONV_PARAMS, CONV2D_GEMM],
        &vals,
    )?;
    let wgs = tiles_m * tiles_n * batch;
    let workgroups = if out_shape.numel() == 0 {
        [0, 0, 0]
    } else {
        grid(wgs as u64, opts)?
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
