//! The matmul kernel variants: what each computes per invocation and workgroup, and their names.

use super::MatmulProblem;
use crate::loops::{self, lp};
use serde::{Deserialize, Serialize};

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
    /// bindings of row blocks (`crate::matmul::ubo`), B as vec4 from a texture when it is a
    /// constant that can be one, else from storage; workgroup `wg_x` x 1.
    Ubo { rows: u8, cols4: u8, wg_x: u8 },
    /// 4x8 outputs per invocation, A and B as vec4 (four k per step), no barriers.
    Rb4V4K,
    /// One row x `cols` columns per invocation, each a dot product of an A row and a B column
    /// read four k at a time as vec4: for a B contiguous along K (a transposed operand,
    /// attention's `K^T`), which no other vec4 variant reads; workgroup `wg_x` x 1.
    Dot { cols: u8, wg_x: u8 },
    /// 64x64 tiles staged in workgroup memory, 4x4 per invocation.
    Tiled,
}

/// The register-blocked vec4 shapes the autotuner tries: (rows, vec4 columns, workgroup x, y).
const V4_SHAPES: [(u8, u8, u8, u8); 12] = [
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
    // One row: matrix-vector products (a decode step), where taller blocks recompute one row;
    // 4 columns in 16 invocations for a narrow product per head (attention's weights x V: 64
    // columns), which a 64-invocation row leaves mostly idle.
    (1, 2, 64, 1),
    (1, 1, 16, 1),
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

/// The `Dot` shapes: (columns per invocation, workgroup x). Narrow workgroups spread a decode
/// step's attention scores (a row of 129-1,024 columns per head) over enough workgroups.
const DOT_SHAPES: [(u8, u8); 3] = [(4, 16), (2, 32), (4, 64)];

/// The `Ubo` shapes: (rows, vec4 columns, workgroup x). One row is the matrix-vector product
/// (a decode step, a classifier): the activation row from a uniform block, one scalar load a k
/// shared by the lanes where `V4Tex` makes it a storage load, which lavapipe runs as a loop over
/// the lanes (1x4096x1024 from constant texels: 4.1-4.7 GFLOP/s against 2.0-2.4). Five rows of a long K (3,072) fill a
/// 64 KiB block. The narrow tiles (16 x 32 and 16 x 64 pixels, one SIMD batch of 8
/// invocations) fit products of few columns: a 7x7 image's 49 pixels waste four fifths of a
/// 256-column tile (`bench matmul --m 2048 --n 52 --k 512`: 12.8 GFLOP/s with 16x8 in 8
/// invocations, 3.8 with 16x16 in 16).
const UBO_SHAPES: [(u8, u8, u8); 14] = [
    (1, 4, 16),
    (1, 4, 8),
    (1, 2, 16),
    (1, 8, 8),
    (16, 4, 16),
    (16, 1, 16),
    (16, 2, 8),
    (16, 1, 8),
    (8, 4, 16),
    (8, 2, 32),
    (16, 2, 16),
    (5, 4, 16),
    (10, 4, 16),
    (15, 4, 16),
];

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
        v.extend(
            DOT_SHAPES
                .iter()
                .map(|&(cols, wg_x)| MatmulVariant::Dot { cols, wg_x }),
        );
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
            MatmulVariant::Dot { cols, wg_x } => format!("matmul_dot_1x{cols}_wg{wg_x}"),
        }
    }

    /// Parse a name as [`MatmulVariant::name`] prints it (the `matmul_` prefix is optional).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.trim_start_matches("matmul_");
        Self::all()
            .into_iter()
            .find(|v| v.name().trim_start_matches("matmul_") == s)
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
            MatmulVariant::Dot { cols, wg_x } => Some((1, cols as u32 * wg_x as u32)),
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
            // Four k a pass; the stores are written out.
            MatmulVariant::Dot { cols, .. } => lp(k.div_ceil(4)) + cols as u64 * sp,
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
}
