//! Which matmul variants compute a problem, at what loop cost, and in what order to try them:
//! the candidates (best guess first for the target), the chosen one first ([`pick_variant`]).

use super::{ubo, MatmulProblem, MatmulVariant};
use crate::loops;
use crate::options::LowerOptions;
use crate::Error;
use sfumato_core::TargetProfile;

impl MatmulVariant {
    /// Whether the variant can compute this problem (vec4 variants need aligned, contiguous rows)
    /// on any WebGPU adapter: textures of at most 8,192 texels a side, 12 uniform blocks (the
    /// guaranteed limits; lowering then lays the blocks out within the target's own).
    pub fn supports(self, p: &MatmulProblem) -> bool {
        let b4 = ubo::b_vec4(p);
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
                    && ubo::ubo_layout(p, rows as usize, ubo::UBO_MAX_BLOCKS).is_some()
            }
            MatmulVariant::Rb4V4K => b4 && a4,
        }
    }

    /// The variants that support `p` within the target's loop budget, best guess first for the
    /// target (a guess only orders the candidates; the autotuner measures them).
    pub fn candidates(p: &MatmulProblem, target: &TargetProfile) -> Vec<MatmulVariant> {
        let loop_budget = target.loop_budget;
        let mut all = Self::all();
        // Within a rank, the variants whose operand path the target is good at go first: B as a
        // texture (`texture_weights`), A through uniform blocks (`uniform_block_operands`).
        all.sort_by_key(|v| match v {
            MatmulVariant::V4Tex { .. } => !target.texture_weights,
            MatmulVariant::Ubo { .. } => !target.uniform_block_operands,
            _ => false,
        });
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

impl MatmulProblem {
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
