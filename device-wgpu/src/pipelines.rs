//! Compute pipelines, cached by their WGSL text, and the params every kernel binds last.

use crate::WgpuDevice;
use sfumato_core::{Error, Result};
use std::sync::Arc;

impl WgpuDevice {
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))
    }

    /// The pipeline of a kernel, compiled once per WGSL text. Its one error is naga refusing
    /// the module, a bug the caller names the node of ([`sfumato_shaders::Error::for_node`]).
    pub(crate) fn pipeline(
        &mut self,
        name: &str,
        wgsl: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>, sfumato_shaders::Error> {
        if let Some(p) = self.pipelines.get(wgsl) {
            return Ok(p.clone());
        }
        sfumato_shaders::validate(name, wgsl)?;
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        };
        let started = self.now_ns();
        let module = if !self.opts.checked_matmul && name.starts_with("matmul_") {
            // SAFETY: every matmul template clamps each row and column it loads to the operand's
            // bounds and `prepare` checked every tensor against the binding limit, so naga's
            // per-access bounds checks (a clamp on every load of the inner loop) can go.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        };
        let p = Arc::new(
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }),
        );
        tracing::debug!(
            kernel = name,
            ms = self.now_ns().saturating_sub(started) as f64 / 1e6,
            "pipeline compiled"
        );
        self.pipelines.insert(wgsl.to_string(), p.clone());
        Ok(p)
    }
}

/// A binding of a kernel being timed: a storage buffer or a texture.
pub(crate) enum Res {
    Buf(Arc<wgpu::Buffer>),
    Tex(wgpu::TextureView),
    /// A byte range of a buffer (offset, size).
    Range(Arc<wgpu::Buffer>, u32, u32),
}

/// Params padded to at least 4 words (a binding may not be empty).
pub(crate) fn padded_params(p: &[u32]) -> Vec<u32> {
    let mut v = p.to_vec();
    while v.len() < 4 {
        v.push(0);
    }
    v
}
