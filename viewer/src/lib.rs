//! sfumato-viewer: the egui app (not built yet).
//!
//! It will show a graph, its fused kernels, a per-kernel timeline from a `sfumato_core::Profile`
//! and op details, as a library of panels with thin native (eframe) and web shells.

pub use sfumato_core::Profile;
