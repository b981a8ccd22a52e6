//! sfumato-wasm: the browser entry point (not built yet).
//!
//! It will run zoo models on the browser's WebGPU through sfumato-wgpu and show them in the
//! viewer, drawn with WebGL2 (headless Chromium does not capture WebGPU canvases).

pub use sfumato_core::Graph;
