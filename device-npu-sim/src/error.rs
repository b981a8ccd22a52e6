//! The simulator's errors: each names the chip, and where an op is at fault, the op and its sizes.

/// Result with [`SimError`].
pub type Result<T, E = SimError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A chip description that could not exist (a buffer too small for one fractal, ...).
    #[error("chip '{chip}': {msg}")]
    Chip { chip: String, msg: String },
    /// A tiling that does not fit the chip's buffers (or is malformed).
    #[error("chip '{chip}', {op}: the tiling {tiling} does not fit: {msg}")]
    Tiling {
        chip: String,
        op: String,
        tiling: String,
        msg: String,
    },
    /// An op the simulator cannot map onto the cube or the vector unit.
    #[error("chip '{chip}': node '{node}' ({op}) cannot be mapped: {msg} (inputs: {inputs})")]
    Unmapped {
        chip: String,
        node: String,
        op: String,
        inputs: String,
        msg: String,
    },
}

impl From<SimError> for sfumato_core::Error {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Unmapped {
                node,
                op,
                inputs,
                msg,
                chip,
            } => sfumato_core::Error::Unsupported {
                node,
                op,
                inputs,
                msg: format!("on the simulated {chip}: {msg}"),
            },
            e => sfumato_core::Error::Device(e.to_string()),
        }
    }
}
