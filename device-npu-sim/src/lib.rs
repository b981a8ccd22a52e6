//! sfumato-npu-sim: a device that simulates one Huawei Da Vinci AI core (not built yet).
//!
//! It will hold: the core model (a 16x16x16 fp16 "3D cube" matrix unit with fp32 accumulation,
//! the L1, L0A, L0B, L0C and unified buffers, the MTE data-movement engines and the vector unit),
//! a tiling scheduler that maps each graph op onto cube and vector work, and a cycle model that
//! fills a `sfumato_core::Profile` with simulated time. Its results will be checked against the
//! CPU reference and the wgpu device. It depends on sfumato-core only.

/// The Da Vinci cube's fixed fragment: 16 x 16 x 16 fp16 multiply-accumulates per cycle.
pub const CUBE_M: usize = 16;
pub const CUBE_N: usize = 16;
pub const CUBE_K: usize = 16;
