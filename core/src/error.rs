//! The one error type of sfumato-core, shared by the devices.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, checking or running a graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node's inputs are wrong for its op (shape, dtype, attribute).
    #[error("node '{node}' ({op}): {msg} (inputs: {inputs})")]
    Node {
        node: String,
        op: String,
        inputs: String,
        msg: String,
    },
    /// A node uses something this device or build does not support.
    #[error("node '{node}' ({op}) is not supported: {msg} (inputs: {inputs})")]
    Unsupported {
        node: String,
        op: String,
        inputs: String,
        msg: String,
    },
    /// A tensor or dispatch is over a device limit and cannot be split.
    #[error("node '{node}' ({op}) exceeds a device limit: {msg} (inputs: {inputs})")]
    Limit {
        node: String,
        op: String,
        inputs: String,
        msg: String,
    },
    /// A bug, not a property of the model: code generation failed where it should not (a
    /// template or params-layout error, generated WGSL that naga rejects, a group the back end
    /// cannot lower). Never a gap in coverage: the conformance runner counts it as an error.
    #[error("node '{node}' ({op}): internal error: {msg} (inputs: {inputs})")]
    Internal {
        node: String,
        op: String,
        inputs: String,
        msg: String,
    },
    /// A host tensor is malformed.
    #[error("tensor: {0}")]
    Tensor(String),
    /// The inputs given to a run do not match the graph's inputs.
    #[error("run inputs: {0}")]
    Input(String),
    /// The graph itself is malformed (unknown value, no outputs, ...).
    #[error("graph: {0}")]
    Graph(String),
    /// A device failed (no adapter, lost device, mapping failure, ...).
    #[error("device: {0}")]
    Device(String),
    /// A saved run ([`crate::record::RunRecord`]) is not one this build reads.
    #[error("run record: {0}")]
    Record(String),
}
