//! The options of lowering: the chosen matmul variant and the target the kernels are for.

// The variant type alone (a leaf: data and loop counts), not the matmul module that uses
// these options.
use crate::matmul::variant::MatmulVariant;
use sfumato_core::TargetProfile;

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
