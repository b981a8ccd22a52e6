//! Target profiles: what a device does well and where its limits are, held as data.
//!
//! Every choice that depends on the device — the order matmul variants are tried in, whether a
//! conv or attention reads its operands through uniform blocks, how many buffers one fused kernel
//! may bind, how long a loop may run — reads a [`TargetProfile`], never a flag threaded through
//! the code. A device builds its profile from what it knows of its hardware (the wgpu device from
//! the adapter's type, name and limits); the presets here are the starting points, and tests
//! build profiles by hand to check both sides of a choice without a device.

use crate::DType;
use serde::{Deserialize, Serialize};

/// What kind of hardware a profile describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetKind {
    /// A discrete GPU (its own memory, many warps, fast workgroup memory).
    DiscreteGpu,
    /// A GPU that shares the host's memory.
    IntegratedGpu,
    /// A GPU API implemented on the CPU (Mesa's lavapipe/llvmpipe, SwiftShader, WARP): SIMD lanes
    /// stand in for warps.
    Cpu,
    /// Anything else (a virtual GPU, an unknown adapter).
    Other,
}

/// A device as the compiler sees it: strengths (what to prefer) and limits (what not to pass).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetProfile {
    /// A short name for messages and caches (`"llvmpipe"`, `"webgpu-gpu"`).
    pub name: String,
    pub kind: TargetKind,

    // ---- strengths ----
    /// Operands read through uniform blocks beat storage reads (on CPU adapters a uniform load
    /// is one scalar broadcast to every SIMD lane): the `ubo` matmul, `conv2d_ubo` and
    /// `attention_ubo` kernels are preferred where they fit.
    pub uniform_block_operands: bool,
    /// Weights read as rgba32float textures beat storage reads (the `v4tex` matmul variants).
    pub texture_weights: bool,
    /// Workgroup memory and barriers are cheap: kernels that tile through workgroup memory go
    /// first. Where they are not (CPU adapters: a barrier ends a SIMD loop), barrier-free
    /// register-blocked kernels go first.
    pub fast_workgroup_memory: bool,
    /// Subgroup operations are available (none of today's kernels needs them).
    pub subgroups: bool,
    /// The size the blocks of a split constant aim for: a MatMul or Gather whose constant is
    /// over [`Self::max_binding_bytes`] reads it in blocks of at most this (and never over the
    /// limit; [`crate::legalize`]). On CPU adapters narrower blocks are faster, because a
    /// column block's row stride is how far apart a kernel's reads land: on lavapipe GPT-2
    /// small's LM head (768 x 50,257) in 32 MiB blocks takes a decode step from ~300 to ~160 ms
    /// against blocks at the 128 MiB limit. `u64::MAX`: as big as the limit allows.
    #[serde(default = "no_block_preference")]
    pub split_block_bytes: u64,
    /// Output channels up to which a one-group conv of a window wider than 1x1 gathers its
    /// image column in the matmul (`conv2d_ubo`) rather than staging it, where its weights fit
    /// whole uniform blocks; 0: never (staged wherever staging applies). Measured on lavapipe
    /// only ([`LLVMPIPE_IMPLICIT_CONV_MAX_OUT`]); other CPU adapters keep staging (in Chromium,
    /// SwiftShader's GPU process was lost running ResNet's 64 -> 64 3x3 conv as `conv2d_ubo`).
    #[serde(default)]
    pub implicit_conv_max_out: usize,

    // ---- limits ----
    /// Storage buffers one kernel may bind (its params buffer included).
    pub max_storage_buffers: u32,
    /// Uniform buffers one kernel may bind (WebGPU guarantees 12).
    pub max_uniform_blocks: u32,
    /// Workgroups per dispatch dimension (WebGPU: 65,535).
    pub max_workgroups_per_dim: u32,
    /// Invocations of one workgroup (WebGPU: 256).
    pub max_workgroup_invocations: u32,
    /// Bytes one storage binding may cover.
    pub max_binding_bytes: u64,
    /// Texels a side of a 2-D texture.
    pub max_texture_side: u32,
    /// Loop ends one invocation may pass before the driver cuts its loops short, silently
    /// (llvmpipe: [`LLVMPIPE_LOOP_BUDGET`]); `None` where no such limit is known.
    pub loop_budget: Option<u64>,
}

/// llvmpipe (Mesa's CPU Vulkan driver) breaks out of every loop after 65,535 loop ends of one
/// invocation (`LP_MAX_TGSI_LOOP_ITERATIONS`), whatever the loop's condition says.
pub const LLVMPIPE_LOOP_BUDGET: u64 = 65_535;

/// lavapipe's [`TargetProfile::implicit_conv_max_out`]. A staged conv's image column costs each
/// of its values a storage read and a texel store, each a loop over the SIMD lanes on lavapipe
/// (with its stores removed, as an experiment, `conv_stage` took 41% of its time in ResNet-50,
/// 39% in YOLOv5s), while the implicit GEMM gathers each value once per 16 output channels: up
/// to 8 such tiles the gathers cost less or about the same. The image size is not part of the
/// rule (no zoo model has such a conv on a small image, where `conv2d_ubo`'s 256-pixel tile
/// would idle). Measured on lavapipe (Intel Xeon, 2 CPUs; `bench conv
/// --batch 1`, median kernel, `conv2d_ubo` against staged): 32 -> 32 3x3 at 160x160 24.4
/// against 53.6 ms; 32 -> 64 3x3 stride 2 at 320x320 45.9 against 87.9; 64 -> 64 3x3 at 80x80
/// 21.6-21.9 against 34.7-36.8, at 56x56 11.1 against 14.5-15.1; 3 -> 64 7x7 stride 2 at
/// 224x224 (ResNet's stem) 15.1 against 21.0; 96 -> 96 3x3 at 28x28 10.1 against 14.1;
/// 64 -> 128 3x3 stride 2 at 160x160 44.1-44.5 against 57.6-64.0; 112 -> 112 3x3 at 28x28 13.0
/// against 12.8. Past it the column pays: 64 -> 256 3x3 at 56x56 55.0 against 46.9, at 28x28
/// 29.4 against 20.2; and 1x1 convs keep their paths (672 -> 192 at 7x7: 3.1 against 1.2).
pub const LLVMPIPE_IMPLICIT_CONV_MAX_OUT: usize = 128;

impl TargetProfile {
    /// A WebGPU GPU with WebGPU's guaranteed limits: tiled kernels first, storage operands.
    pub fn webgpu_gpu() -> Self {
        TargetProfile {
            name: "webgpu-gpu".into(),
            kind: TargetKind::DiscreteGpu,
            uniform_block_operands: false,
            texture_weights: false,
            fast_workgroup_memory: true,
            subgroups: false,
            split_block_bytes: u64::MAX,
            implicit_conv_max_out: 0,
            max_storage_buffers: 8,
            max_uniform_blocks: 12,
            max_workgroups_per_dim: 65_535,
            max_workgroup_invocations: 256,
            max_binding_bytes: 128 << 20,
            max_texture_side: 8_192,
            loop_budget: None,
        }
    }

    /// A GPU API on the CPU, as lavapipe is measured: register-blocked, barrier-free kernels
    /// first, operands through uniform blocks and textures.
    pub fn cpu_adapter() -> Self {
        TargetProfile {
            name: "cpu-adapter".into(),
            kind: TargetKind::Cpu,
            uniform_block_operands: true,
            texture_weights: true,
            fast_workgroup_memory: false,
            split_block_bytes: 32 << 20,
            ..Self::webgpu_gpu()
        }
    }

    /// Mesa's lavapipe (llvmpipe) as measured here: a CPU adapter with 15 uniform blocks a
    /// stage, llvmpipe's loop budget, and narrow convs gathered rather than staged.
    pub fn llvmpipe() -> Self {
        TargetProfile {
            name: "llvmpipe".into(),
            max_uniform_blocks: 15,
            loop_budget: Some(LLVMPIPE_LOOP_BUDGET),
            implicit_conv_max_out: LLVMPIPE_IMPLICIT_CONV_MAX_OUT,
            ..Self::cpu_adapter()
        }
    }

    /// The preset for a kind of hardware (its limits WebGPU's; a device overwrites them with
    /// its own).
    pub fn for_kind(kind: TargetKind) -> Self {
        match kind {
            TargetKind::Cpu => Self::cpu_adapter(),
            kind => TargetProfile {
                kind,
                ..Self::webgpu_gpu()
            },
        }
    }

    /// The same profile under a loop budget at most `budget` (a budget can only be lowered:
    /// a larger one would let a driver that cuts loops short do so again).
    pub fn with_loop_budget(mut self, budget: Option<u64>) -> Self {
        self.loop_budget = match (budget, self.loop_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// Check that the profile is one a device could have: a clear error names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |field: &str, why: &str| Err(format!("target '{}': {field} {why}", self.name));
        if self.max_storage_buffers < 2 {
            return bad(
                "max_storage_buffers",
                "must be at least 2 (an input and params)",
            );
        }
        if self.max_workgroups_per_dim == 0 {
            return bad("max_workgroups_per_dim", "must be at least 1");
        }
        if self.max_workgroup_invocations < 64 {
            return bad("max_workgroup_invocations", "must be at least 64");
        }
        if self.max_binding_bytes < 16 {
            return bad("max_binding_bytes", "must be at least 16");
        }
        if self.split_block_bytes < 16 {
            return bad("split_block_bytes", "must be at least 16");
        }
        if self.loop_budget == Some(0) {
            return bad("loop_budget", "must be at least 1 (or none)");
        }
        Ok(())
    }
}

/// [`TargetProfile::split_block_bytes`] of a profile saved without it: no preference.
fn no_block_preference() -> u64 {
    u64::MAX
}

impl Default for TargetProfile {
    fn default() -> Self {
        Self::webgpu_gpu()
    }
}

/// The element type a tensor has in device memory: f32 and f16 tensors live as f32, i32 and i64
/// as i32, u8, bool, u32 and u64 as u32 (devices convert at upload and readback).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    I32,
    U32,
}

impl Elem {
    pub fn of(d: DType) -> Elem {
        match d {
            DType::U8 | DType::Bool | DType::U32 | DType::U64 => Elem::U32,
            d if d.is_float() => Elem::F32,
            _ => Elem::I32,
        }
    }

    /// The element's name in shader code (`f32`, `i32`, `u32`).
    pub fn wgsl(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::I32 => "i32",
            Elem::U32 => "u32",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_differ_where_it_matters() {
        let gpu = TargetProfile::webgpu_gpu();
        let cpu = TargetProfile::cpu_adapter();
        for t in [&gpu, &cpu, &TargetProfile::llvmpipe()] {
            t.validate().unwrap();
        }
        assert!(gpu.fast_workgroup_memory && !cpu.fast_workgroup_memory);
        assert!(!gpu.uniform_block_operands && cpu.uniform_block_operands);
        assert_eq!(
            TargetProfile::llvmpipe().loop_budget,
            Some(LLVMPIPE_LOOP_BUDGET)
        );
        assert_eq!(TargetProfile::for_kind(TargetKind::Cpu), cpu);
    }

    #[test]
    fn a_budget_can_only_be_lowered() {
        let cpu = TargetProfile::llvmpipe();
        assert_eq!(
            cpu.clone().with_loop_budget(Some(100)).loop_budget,
            Some(100)
        );
        assert_eq!(
            cpu.clone().with_loop_budget(Some(1 << 40)).loop_budget,
            Some(LLVMPIPE_LOOP_BUDGET)
        );
        assert_eq!(
            TargetProfile::webgpu_gpu()
                .with_loop_budget(Some(7))
                .loop_budget,
            Some(7)
        );
    }

    #[test]
    fn a_bad_profile_names_the_field() {
        let t = TargetProfile {
            max_storage_buffers: 1,
            ..TargetProfile::default()
        };
        let e = t.validate().unwrap_err();
        assert!(e.contains("max_storage_buffers"), "{e}");
    }
}
