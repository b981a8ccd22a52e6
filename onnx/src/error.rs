//! The error type of sfumato-onnx: a malformed model, unsupported ops, or an error of
//! sfumato-core (a node the graph builder refuses, a tensor, a device), passed through as is.

use crate::UnsupportedOp;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, importing or running an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file is malformed (bad protobuf, undefined values, missing data) or cannot be
    /// read.
    #[error("onnx: {0}")]
    Model(String),
    /// A model uses ops Sfumato does not support: all of them, listed.
    #[error("{} unsupported op(s): {}", .0.len(), .0.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; "))]
    UnsupportedOps(Vec<UnsupportedOp>),
    /// An error of sfumato-core: a node's inputs are wrong for its op or unsupported (naming
    /// the node, op and input shapes), a malformed tensor, a device failure.
    #[error(transparent)]
    Core(#[from] sfumato_core::Error),
    /// A node needs a value that is known only when the model runs: a Loop's trip count or an
    /// If's condition computed from the inputs, a shape computed on the device, or an op whose
    /// output's shape depends on its input values (NonZero, Unique, NonMaxSuppression). One
    /// graph cannot hold it; [`crate::staged::run`] runs such a model in stages, reading the
    /// value back between them.
    #[error("node '{}' ({}) with inputs {}: {}; it needs a value known only at run time, so the model runs in stages (sfumato run does; sfumato_onnx::staged::run)", .0.node, .0.op, .0.inputs, .0.msg)]
    RunTime(Box<RunTimeNeed>),
}

/// Where an import met a value known only at run time: the node (its index among the nodes
/// of the graph imported, its name, op and inputs) and what it needs.
#[derive(Clone, Debug)]
pub struct RunTimeNeed {
    pub index: usize,
    pub node: String,
    pub op: String,
    pub inputs: String,
    pub msg: String,
}

impl Error {
    /// Whether this error means "not supported" (a coverage gap: an op, dtype or attribute
    /// Sfumato lacks) rather than a malformed model or a bug.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedOps(_)
                | Error::Core(sfumato_core::Error::Unsupported { .. })
                | Error::RunTime(_)
        )
    }
}
