//! sfumato-viewer: see a model's graph, its fused kernels and where the time goes.
//!
//! The panels are a library, shown by thin shells: the native app (`sfumato-viewer`, eframe on
//! wgpu; `sfumato view` starts it) and the web page (`wasm/`, eframe on WebGL2 with the model's
//! compute on the browser's WebGPU). Everything they show comes from a
//! [`sfumato_core::RunRecord`]: a saved run (`sfumato run MODEL --save-run FILE`), a Chrome
//! trace, an ONNX file or a zoo model planned without running, or a live run.
//!
//! - [`layout`]: a layered (Sugiyama-style) DAG layout: longest-path layers, dummy points on long
//!   edges, barycenter crossing reduction, and coordinates relaxed towards neighbours;
//! - [`graph_panel`]: the graph drawn with it, coloured by fused group, shaded by time, pan, zoom,
//!   search, groups collapsed to one box;
//! - [`panels`]: the timeline of dispatches, the op table sorted by time, node details with the
//!   group's WGSL highlighted ([`wgsl`]), two runs compared op by op (with simulated NPU cycles
//!   and cube use where a run has them), the outputs, and a simulated cube op's tile schedule;
//! - [`app`]: the [`Viewer`] that arranges them, with a [`Runner`] for live runs;
//! - [`source`]: records from files and graphs; `native` (not on wasm32): files and zoo models
//!   by name, and live runs on a thread.

pub mod app;
pub mod graph_panel;
pub mod layout;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod panels;
pub mod run;
pub mod source;
pub mod wgsl;

pub use app::{RunState, Runner, Tab, Viewer};
pub use run::Loaded;
