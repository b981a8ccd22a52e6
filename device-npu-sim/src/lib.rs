//! sfumato-npu-sim: a simulated Huawei Da Vinci AI core, the second device of Sfumato.
//!
//! A graph runs here through the same compile pipeline as on the GPU (passes, fusion plan),
//! then each fused group is mapped onto the core: matmuls and convs (through img2col) onto the
//! 3D cube with a tiling chosen by the scheduler ([`tiling`]), everything else onto the vector
//! unit, with the layout transformations into and out of the cube's fractal format as steps of
//! their own ([`predict`]). The run is functional ([`cube`], [`exec`]): operands rounded to
//! fp16, products accumulated in fp32 tile by tile in the schedule's order, so the answers come
//! from the tiles scheduled; and timed by a cycle model per engine (MTE2, MTE1, cube, FixPipe,
//! vector, MTE3), which fills the [`sfumato_core::Profile`] with simulated time. [`NpuSim`] is
//! the [`sfumato_core::Device`].
//!
//! # The hardware, as modelled
//!
//! Chips are data: `chips/*.toml`, one [`Chip`] each, checked when loaded ([`Chip::validate`]).
//! The figures and where they come from (“ini” are the CANN `platform_config` files
//! `Ascend910B2.ini` and the CANN test stubs for the 310/910, as quoted in public repositories;
//! the files themselves ship only with the CANN toolkit):
//!
//! | figure | 910 | 910B2 | 310 | source |
//! |---|---|---|---|---|
//! | cube, fp16 (m x n x k per cycle) | 16x16x16 | 16x16x16 | 16x16x16 | Ascend TBE guide, "AI Core > Compute Units"; Hot Chips 31 (4,096 fp16 MACs) |
//! | cube, int8 | 16x16x32 | 16x16x32 | 16x16x32 | same ("16x32 and 32x16 at once"); Hot Chips 31 (8,192 int8 MACs) |
//! | AI cores | 32 | 24 (48 vector) | 2 | TBE `SOC_VERSION_MAP`; `Ascend910B2.ini` `cube_core_cnt` |
//! | clock, MHz | 1,000 | 1,800 | 488 | 910B2: ini `cube_freq=1800`; 910: 256 TFLOPS marketed gives 977 MHz, 1.0 GHz is the quoted clock (262 TFLOPS); 310: its published 8 TFLOPS fp16 over 2 cores gives 488 MHz (a CANN stub board uses 680) |
//! | L1 | 1 MiB | 512 KiB | 1 MiB | ini `l1_size`; Huawei's catlass `arch.hpp` (910B) |
//! | L0A / L0B | 64 / 64 KiB | 64 / 64 KiB | 64 / 64 KiB | ini `l0_a_size`, `l0_b_size` (all agree) |
//! | L0C | 256 KiB | 128 KiB | 256 KiB | ini `l0_c_size`; catlass |
//! | UB | 248 KiB usable (256) | 192 KiB | 248 KiB usable | ini `ub_size`; compile-info 253,952 for 310/910 |
//! | L2 | 32 MiB (unverified) | 192 MiB | 8 MiB | ini `l2_size`; catlass `L2CacheByte` |
//! | memory | HBM2, 1,200 GB/s (unverified) | HBM2e, 1,600 GB/s | LPDDR4X, 47.7 GB/s (unverified) | 910B2: third-party figure; the profiler's roofline says 1.8 TB/s, a measured copy 1.27 TB/s |
//! | MTE2 (from L2), B/cycle/core | 128 | 110 | 128 | ini `l2_read_rate` (910B1), stub 128 (coupled) |
//! | MTE1 L1->L0A / L1->L0B, B/cycle | 512 / 256 | 512 / 256 | 512 / 256 | ini `l1_to_l0_a_rate`, `l1_to_l0_b_rate`; no source was found for 910B's L0B port (the 256 / 128 is not supported by the ini) |
//! | L0C out, B/cycle | 256 (to UB) | 128 (FixPipe) | 256 (to UB) | compile-info `l0_c_to_ub_rate`; FixPipe's rate not found (assumed) |
//! | MTE3 (UB -> GM), B/cycle | 64 | 64 | 64 | ini `ub_to_l2_rate` |
//! | vector unit, B/cycle | 256 | 256 | 256 | CANN best practices: 128 fp16 additions a cycle |
//! | FixPipe | no | yes | no | Ascend C TPosition table (CO2 is the UB on 910/310, GM on 910B) |
//! | MMAD issue, cycles | 21 + 1 per fractal | same | same | the figure this project's issue gives; no public source found (unverified) |
//! | DMA latency, cycles | 200 | 200 | 200 | assumed |
//!
//! Where sources disagree: the 910B's peak is quoted by third parties at 256 to 376 TFLOPS (the
//! ini clock gives 353.9); its memory at 400 GB/s to 1.8 TB/s; the 310's clock at 488 MHz (from
//! its peak) or 680 (a stub). L2 bandwidth to the cores, all of them together, is MTE2's rate
//! times the cores on the 910 and 310 (4,096 and 256 B/cycle), and the CANN profiler's L2
//! roofline of 8 TB/s on the 910B (4,444 B/cycle at 1.8 GHz, kept per cycle for the 910B4). It
//! is counted per cycle: on-chip bandwidth scales with the clock; off-chip memory does not.
//!
//! The 910B4 (`ascend910b4`, for the catlass figure below) is the 910B2 with the `Ascend910B4.ini`
//! core count and clock (20 cores, 1,500 MHz), 96 MiB of L2 (a third-party profiler table) and
//! 960 GB/s of memory (the ini's 32 B/cycle/core at its clock: derived, unverified).
//!
//! # Predicted against published
//!
//! Held by `tests/published.rs` (`cargo test -p sfumato-npu-sim --test published --
//! --nocapture` prints it):
//!
//! | figure | predicted | published | error |
//! |---|---|---|---|
//! | fp16 GEMM 4096³ on the 910B2 | 308.9 TFLOPS | 314.5 TFLOPS | -1.8% |
//! | catlass M1024 N576 K6144, 20-core 910B, 128x256 blocks | 62.0 µs | 72.5 µs | -14.4% |
//! | the same with the scheduler's tiling (256x128) | 35.1 µs | 48.6 µs | -27.7% |
//! | ResNet-50 training on the 910 (3x forward) | 5,340 img/s | 2,115 img/s | +152% |
//! | BERT-Large training on the 910 (3x forward) | 729 sentences/s | 269 sentences/s | +171% |
//! | clock 1.2 / 1.1 GHz, GEMM 2048³ (compute-bound) | 1.091x | 1.092x | -0.1% |
//! | clock 1.2 / 1.1 GHz, ResNet-50 at batch 32 | 1.036x | 1.092x | -5.2% |
//!
//! Fractals: every cube operand fractal is 16 rows x 32 bytes (16x16 fp16, 16x32 int8), 512 B;
//! L0C's are 16x16 fp32. Activations the cube reads are held as `NZ` (fractals in column
//! order, rows inside), weights converted once on load; img2col is MTE1's Load3D.

pub mod chip;
pub mod cube;
pub mod device;
pub mod error;
pub mod exec;
pub mod predict;
pub mod tiling;

pub use chip::Chip;
pub use cube::Fault;
pub use device::{tolerances, NpuSim};
pub use error::{Result, SimError};
pub use predict::{OpCost, Prediction, Unit};
pub use tiling::{Problem, Schedule, Tiling};

/// The Da Vinci cube's fp16 fractal: 16 x 16 x 16 multiply-accumulates per cycle (the chips
/// carry their own, [`Chip::cube_f16`]).
pub const CUBE_M: usize = 16;
pub const CUBE_N: usize = 16;
pub const CUBE_K: usize = 16;
