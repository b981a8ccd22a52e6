//! Loop trips per invocation, and the adapter's budget for them.
//!
//! Mesa's llvmpipe (the lavapipe Vulkan adapter) compiles every shader with a loop limiter: one
//! counter per invocation, set to 65,535 (`LP_MAX_TGSI_LOOP_ITERATIONS`) when the shader starts,
//! shared by every loop, taken down by one each time any loop reaches its end (the pass that
//! exits included), and once it reaches 0 every loop breaks after its current pass. No error is
//! raised: an invocation past the budget computes a wrong result (a 3x3 conv over 375 channels
//! wrote only the first row of its register block). Real GPUs have no such counter.
//!
//! So every kernel the generator makes carries [`Kernel::loop_trips`](crate::Kernel): an upper
//! bound on the loop ends one invocation passes for the shape it was made for, counted from the
//! template's loops ([`lp`]: a loop of `n` passes is counted as `2 (n + 1)`). Loops of a constant trip count
//! in the hot kernels are written out by the template (`{{for}}` in [`crate::template`]), so what
//! is counted does not depend on what a driver unrolls. A device whose adapter has a budget
//! ([`TargetProfile::loop_budget`](sfumato_core::TargetProfile)) never gets a kernel over it: lowering
//! picks a variant or blocking that fits, or refuses with [`Error::LoopBudget`] naming the kernel.

use crate::{Error, Kernel};

/// llvmpipe's budget: loop ends per invocation before every loop breaks early.
pub use sfumato_core::target::LLVMPIPE_LOOP_BUDGET;

/// What a loop of `n` passes is counted as: `n + 1` loop ends (the exiting pass reaches the end
/// too), doubled. Measured on lavapipe (Mesa 22.3, `tests/loop_budget.rs` in sfumato-wgpu): a
/// 3x3 `conv2d_gemm` whose loops make `17 C + 418` ends by this count came out wrong from about
/// C = 3,600, where the limiter counted about 18 a channel, so the driver spends more than the
/// loops' own ends (one more a pass of an outer loop, by that fit). Counting each end twice keeps
/// every kernel at most about half the budget by the driver's own count, whatever its way of
/// counting nested loops.
pub const fn lp(n: u64) -> u64 {
    2 * (n + 1)
}

/// Loop ends of one call of `pow_u` (square and multiply over at most 32 exponent bits).
pub const POW_U_TRIPS: u64 = lp(32);

/// Loop ends of one call of a view-offset walk over `rank` dims (`view_offset`, `ev_off`,
/// `decode`).
pub const fn rank_walk(rank: usize) -> u64 {
    lp(rank as u64)
}

/// Whether `trips` fits `budget` (no budget: always). The last loop end of the budget already
/// breaks, so a kernel must stay strictly below it.
pub fn fits(trips: u64, budget: Option<u64>) -> bool {
    budget.is_none_or(|b| trips < b)
}

/// Refuse a kernel over the budget with an error that names it, its count and the budget.
pub fn check(k: &Kernel, budget: Option<u64>) -> Result<(), Error> {
    match budget {
        Some(b) if k.loop_trips >= b => Err(Error::LoopBudget(format!(
            "kernel '{}' would make {} loop trips per invocation, over this adapter's budget of {b} \
             (llvmpipe's loop limiter cuts a longer invocation short without an error, so it is \
             refused rather than run)",
            k.name, k.loop_trips
        ))),
        _ => Ok(()),
    }
}

/// [`check`] every kernel of a lowering.
pub fn check_all(lowered: &crate::Lowered, budget: Option<u64>) -> Result<(), Error> {
    if let crate::Lowered::Kernels(ks) = lowered {
        for k in ks {
            check(k, budget)?;
        }
    }
    Ok(())
}

/// Loop ends of a matmul store block of `rows` x `cols4` vec4s stored element by element
/// (`for r { for c { for e in 4 { store } } }`), plus `sp` per store for the epilogue.
pub fn store_block(rows: u64, cols4: u64, sp: u64) -> u64 {
    lp(rows) + rows * lp(cols4) + rows * cols4 * lp(4) + rows * cols4 * 4 * sp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_strict() {
        assert_eq!(lp(0), 2);
        assert!(fits(65_534, Some(LLVMPIPE_LOOP_BUDGET)));
        assert!(!fits(65_535, Some(LLVMPIPE_LOOP_BUDGET)));
        assert!(fits(u64::MAX, None));
    }
}
