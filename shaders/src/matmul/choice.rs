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
        if p.staged_conv {
            // Only a `ubo` matmul reads the staging texture (`conv2d_staged`).
            return matches!(self, MatmulVariant::Ubo { rows, .. }
                if ubo::ubo_layout(p, rows as usize, ubo::UBO_MAX_BLOCKS).is_some());
        }
        match self {
            MatmulVariant::Naive | MatmulVariant::Rb4 | MatmulVariant::Tiled => true,
            MatmulVariant::V4 { .. } => b4,
            MatmulVariant::V4Tex { .. } => p.b_texture(),
            MatmulVariant::Ubo { rows, .. } => {
                (b4 || p.b_texture())
                    && ubo::ubo_layout(p, rows as usize, ubo::UBO_MAX_BLOCKS).is_some()
            }
            MatmulVariant::Rb4V4K => b4 && a4,
            MatmulVariant::Dot { .. } => {
                a4 && p.b_sk == 1
                    && p.b_sn.is_multiple_of(4)
                    && p.offsets.iter().all(|o| o[1].is_multiple_of(4))
            }
        }
    }

    /// The variants that support `p` within the target's loop budget, cheapest first by
    /// [`MatmulVariant::estimated_cost`] on the target (the first is the default a device runs
    /// before it has measured anything; the autotuner measures the first few).
    pub fn candidates(p: &MatmulProblem, target: &TargetProfile) -> Vec<MatmulVariant> {
        let loop_budget = target.loop_budget;
        // One output per invocation only pays off for tiny or vector-shaped products; on a large
        // one it costs the autotuner seconds to rule out.
        let small = p.m * p.n * p.k <= 1 << 20 || p.m == 1 || p.n == 1;
        let ok = |v: &MatmulVariant| v.supports(p) && loops::fits(v.loop_trips(p, 0), loop_budget);
        let mut c: Vec<(f64, MatmulVariant)> = Self::all()
            .into_iter()
            .filter(|v| ok(v) && (small || *v != MatmulVariant::Naive))
            .map(|v| (v.estimated_cost(p, target), v))
            .collect();
        if c.is_empty() && ok(&MatmulVariant::Naive) {
            // A long K that only the one-output kernel keeps under the loop budget.
            c.push((0.0, MatmulVariant::Naive));
        }
        // A stable sort: equal estimates keep `all()`'s order.
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut order: Vec<MatmulVariant> = c.into_iter().map(|(_, v)| v).collect();
        if p.staged_conv {
            // The measured block for staged convs goes first (what runs before any tuning).
            let d = ubo::staged_conv_default(p.n);
            if let Some(i) = order.iter().position(|&v| v == d) {
                order.remove(i);
                order.insert(0, d);
            }
        }
        order
    }

    /// A model of this variant's time on `p` on the target, in arbitrary units (only the order
    /// it gives the candidates means anything). Each invocation computes `r x c` outputs; per
    /// multiply-add it loads `1/c` of an A element and `1/r` of a B element, at a cost per
    /// element that depends on where the operand lives (storage, a texture, a uniform block)
    /// and on the target's strengths, plus a fixed cost per multiply-add. The work counted is
    /// the padded work (whole workgroup tiles), and a grid of fewer workgroups than the target
    /// runs at once leaves the rest idle.
    ///
    /// The constants are fitted to lavapipe's measured times of every variant on the zoo's
    /// matmul shapes (`shaders/tests/data/llvmpipe-matmul-times.json`, checked by
    /// `cost_model_picks_near_the_measured_best`): a storage element costs ~250, a texel ~25, a
    /// uniform-block element ~1 (broadcast), a workgroup-memory tile divides both loads by its
    /// side where that memory is fast, and barriers double the cost where it is not.
    pub fn estimated_cost(self, p: &MatmulProblem, target: &TargetProfile) -> f64 {
        const STORAGE: f64 = 250.0;
        let texel = if target.texture_weights {
            25.0
        } else {
            STORAGE
        };
        // A uniform-block element is nearly free (one scalar broadcast to the lanes), but not
        // quite: at 0 a 16 x 4 block tied 16 x 8 (both read B as texels at the same cost a
        // row) and won by coming first, and measured on lavapipe and on SwiftShader 16 x 8 ran
        // BERT's products 1.04-1.56x faster (`sfumato tune bert-base --layers 1`).
        let uniform = if target.uniform_block_operands {
            1.0
        } else {
            STORAGE
        };
        // A `ubo` matmul copies a B that is not a constant texture to the staging texture
        // first where it fits (`ubo::b_staged`): texels, plus one storage read per element.
        let staged = ubo::b_staged(p, target);
        let b_path = if p.b_texture() || staged {
            texel
        } else {
            STORAGE
        };
        // (rows, cols) per invocation, the per-element costs of A and B, the fixed cost.
        let (r, c, a_cost, b_cost, fixed) = match self {
            MatmulVariant::Naive => (1.0, 1.0, STORAGE, STORAGE, 0.0),
            MatmulVariant::Rb4 => (4.0, 4.0, STORAGE, STORAGE, 0.0),
            MatmulVariant::Rb4V4K => (4.0, 8.0, STORAGE, STORAGE, 0.0),
            // A vec4 load of each operand serves four k: a quarter of an element's cost.
            MatmulVariant::Dot { cols, .. } => {
                (1.0, cols as f64, STORAGE / 4.0, STORAGE / 4.0, 0.0)
            }
            MatmulVariant::V4 { rows, cols4, .. } => {
                (rows as f64, 4.0 * cols4 as f64, STORAGE, STORAGE, 0.0)
            }
            MatmulVariant::V4Tex { rows, cols4, .. } => {
                (rows as f64, 4.0 * cols4 as f64, STORAGE, texel, 4.5)
            }
            MatmulVariant::Ubo { rows, cols4, .. } => {
                (rows as f64, 4.0 * cols4 as f64, uniform, b_path, 6.0)
            }
            MatmulVariant::Tiled if target.fast_workgroup_memory => {
                (64.0, 64.0, STORAGE, STORAGE, 2.0)
            }
            // Workgroup memory without its speed: a 4 x 4 block behind two barriers a step.
            MatmulVariant::Tiled => (4.0, 4.0, 2.0 * STORAGE, 2.0 * STORAGE, 0.0),
        };
        let batches = p.offsets.len().max(1);
        let (outputs, workgroups) = match self.tile() {
            Some((tm, tn)) => {
                let (tm, tn) = (tm as usize, tn as usize);
                let tiles = batches * p.m.div_ceil(tm) * p.n.div_ceil(tn);
                (tiles * tm * tn, tiles)
            }
            // One output per invocation, 256 invocations a workgroup.
            None => {
                let wgs = (batches * p.m * p.n).div_ceil(256);
                (wgs * 256, wgs)
            }
        };
        let (work, workgroups) = (outputs as f64 * p.k as f64, workgroups.max(1) as f64);
        // Workgroups a target keeps busy at once: a GPU's compute units (a few workgroups
        // each); a CPU adapter's threads (one per core: two at least).
        let slots = match target.kind {
            sfumato_core::TargetKind::Cpu => 2.0,
            _ => 256.0,
        };
        let idle = (slots / workgroups).max(1.0);
        // Past 128 accumulators a block ran no faster on lavapipe (`ubo_16x16` and `ubo_16x8`
        // within a few percent on every measured shape) but compiled three times slower (6-7 s
        // against 2.5 s with an empty Mesa cache), a cost every first run pays: ties go to the
        // smaller block.
        let big_block = if r * c > 128.0 { 1.05 } else { 1.0 };
        // The copy to the staging texture: a storage read an element by `matmul_stage`, or a
        // copy command (`ubo::b_linear`, a memcpy: about one unit an element).
        let copy = match self {
            MatmulVariant::Ubo { .. } if ubo::b_linear(p, target) => (batches * p.k * p.n) as f64,
            MatmulVariant::Ubo { .. } if staged => (batches * p.k * p.n) as f64 * STORAGE,
            _ => 0.0,
        };
        work * (a_cost / c + b_cost / r + fixed) * idle * big_block + copy
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
            "m{}n{}k{}b{}{}{}{}{}",
            b(self.m),
            b(self.n),
            b(self.k),
            b(self.offsets.len()),
            if a4 { "A4" } else { "" },
            if b4 { "B4" } else { "" },
            if self.b_texture() { "T" } else { "" },
            if self.staged_conv { "S" } else { "" }
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
