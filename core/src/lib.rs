//! sfumato-core: what a model is, with no GPU in it.
//!
//! - [`DType`], [`Shape`] and the host [`Tensor`];
//! - the graph IR ([`Graph`], [`Node`], [`ValueId`]) and its typed builder, which runs shape
//!   inference on every node and names the node, op and shapes in every error;
//! - the closed op set ([`Op`]), each op with shape inference ([`Op::infer`]) and reference
//!   semantics ([`interp`]);
//! - graph passes ([`passes`]: constant folding, BatchNorm folding, dead code and common
//!   subexpression elimination, run together by [`optimize`]);
//! - legalization for a target's limits ([`legalize`]: a MatMul or Gather whose constant is over
//!   the storage-binding limit reads it in blocks);
//! - the device-neutral fusion plan ([`plan`]: which nodes share a kernel, within a target's
//!   limits) and the compile pipeline every device shares ([`compile`]: passes, legalization, then the plan);
//! - the device test suite ([`suite`], [`device_suite!`]): written once, run on every device;
//! - target profiles ([`TargetProfile`]): what a device does well and its limits, as data;
//! - the CPU reference interpreter ([`CpuDevice`]), the oracle every device is tested against;
//! - the [`Device`] trait every backend implements and the [`Profile`] (per-op timings) it returns;
//! - kept tensors ([`kept`]: [`Kept`], [`Feed`], [`WriteBack`]): tensors a device keeps between
//!   runs, read in place and grown by a run's outputs (a decoder's KV cache);
//! - [`RunRecord`] ([`record`]): a saved run (graph, groups and their kernels, profile, outputs)
//!   that the CLI writes and the viewer reads;
//! - [`Progress`]: how long work (kernel builds, uploads, tuning, a suite) tells a UI its steps.
//!
//! Model formats live outside: ONNX import is the crate `sfumato-onnx`, which builds a [`Graph`]
//! with the builder above; this crate has no ONNX type and no protobuf.
//!
//! Invariant: this crate never depends on a GPU or GUI crate (CI checks `cargo tree`).

pub mod compile;
pub mod device;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod interp;
pub mod kept;
pub mod legalize;
pub mod op;
pub mod passes;
pub mod plan;
pub mod precision;
pub mod progress;
pub mod record;
pub mod shape;
pub mod suite;
pub mod target;
pub mod tensor;

pub use compile::{compile, CompileOptions, Compiled, Optimization};
pub use device::{
    Device, OpTiming, Profile, RunOutput, Setup, SimulatedOp, TileSchedule, TimingSource,
};
pub use dtype::DType;
pub use error::{Error, Result};
pub use graph::{Graph, Node, NodeId, ValueId, ValueInfo};
pub use interp::CpuDevice;
pub use kept::{Feed, Kept, WriteBack};
pub use op::Op;
pub use passes::{optimize, PassStats};
pub use progress::{NoProgress, Progress};
pub use record::RunRecord;
pub use shape::Shape;
pub use target::{TargetKind, TargetProfile};
pub use tensor::{Tensor, TensorData};
