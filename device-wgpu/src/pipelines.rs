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
        let p = Arc::new(build_pipeline(
            &self.device,
            &*self.opts.clock,
            name,
            wgsl,
            self.opts.checked_matmul,
        )?);
        self.pipelines.insert(wgsl.to_string(), p.clone());
        Ok(p)
    }

    /// Whether the pipeline of this WGSL is built.
    pub(crate) fn has_pipeline(&self, wgsl: &str) -> bool {
        self.pipelines.contains_key(wgsl)
    }

    /// Compile the pipelines of `kernels` (name, WGSL) that are not cached yet, on as many
    /// threads as the machine has cores (up to 8; one in the browser): naga's parse, validation and
    /// SPIR-V, and the driver's own compile (lavapipe's SPIR-V to NIR), are each one module's
    /// work, so a model's first run builds its pipelines in parallel. The first error, with the
    /// index of its kernel, where naga refuses one.
    pub(crate) fn build_pipelines(
        &mut self,
        kernels: &[(String, String)],
    ) -> Result<(), (usize, sfumato_shaders::Error)> {
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<usize> = (0..kernels.len())
            .filter(|&i| {
                !self.pipelines.contains_key(&kernels[i].1) && seen.insert(kernels[i].1.as_str())
            })
            .collect();
        let checked = self.opts.checked_matmul;
        let (device, clock, progress) = (&self.device, &*self.opts.clock, &*self.opts.progress);
        if !todo.is_empty() {
            progress.stage("compiling pipelines", todo.len() as u64);
        }
        let build = |i: usize| {
            let r = build_pipeline(device, clock, &kernels[i].0, &kernels[i].1, checked);
            progress.step(&kernels[i].0);
            r
        };
        let built = build_all(&todo, &build);
        if !todo.is_empty() {
            progress.done();
        }
        for (i, r) in built {
            let p = r.map_err(|e| (i, e))?;
            self.pipelines.insert(kernels[i].1.clone(), Arc::new(p));
        }
        Ok(())
    }
}

/// At most this many threads build pipelines at once.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const BUILD_THREADS: usize = 8;

type Built = Result<wgpu::ComputePipeline, sfumato_shaders::Error>;

/// `build` over `todo` on up to [`BUILD_THREADS`] threads, each taking the next index as it
/// finishes one (modules differ in cost), in `todo`'s order.
#[cfg(not(target_arch = "wasm32"))]
fn build_all(todo: &[usize], build: &(dyn Fn(usize) -> Built + Sync)) -> Vec<(usize, Built)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, BUILD_THREADS)
        .min(todo.len());
    if threads < 2 {
        return todo.iter().map(|&i| (i, build(i))).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut all = Vec::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = todo.get(j) else { break };
                        mine.push((i, build(i)));
                    }
                    mine
                })
            })
            .collect();
        for w in workers {
            // A worker only panics where wgpu does; pass that panic on.
            all.extend(w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
    });
    all.sort_by_key(|x| x.0);
    all
}

/// In the browser (no threads, and wgpu's handles are not shared across them): one by one.
#[cfg(target_arch = "wasm32")]
fn build_all(todo: &[usize], build: &dyn Fn(usize) -> Built) -> Vec<(usize, Built)> {
    todo.iter().map(|&i| (i, build(i))).collect()
}

/// Validate a kernel's WGSL (naga's error names the kernel) and compile its pipeline.
fn build_pipeline(
    device: &wgpu::Device,
    clock: &dyn crate::host::Clock,
    name: &str,
    wgsl: &str,
    checked_matmul: bool,
) -> Result<wgpu::ComputePipeline, sfumato_shaders::Error> {
    let started = clock.now_ns();
    // Natively wgpu takes the module naga parsed here (once, not again from the text); a
    // browser's WebGPU takes WGSL.
    #[cfg(not(target_arch = "wasm32"))]
    let source = wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(
        sfumato_shaders::parse_validated(name, wgsl)?,
    ));
    #[cfg(target_arch = "wasm32")]
    let source = {
        sfumato_shaders::validate(name, wgsl)?;
        wgpu::ShaderSource::Wgsl(wgsl.into())
    };
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source,
    };
    let module = if !checked_matmul && name.starts_with("matmul_") {
        // SAFETY: every matmul template clamps each row and column it loads to the operand's
        // bounds and `prepare` checked every tensor against the binding limit, so naga's
        // per-access bounds checks (a clamp on every load of the inner loop) can go.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    } else {
        device.create_shader_module(desc)
    };
    let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    tracing::debug!(
        kernel = name,
        ms = clock.now_ns().saturating_sub(started) as f64 / 1e6,
        "pipeline compiled"
    );
    Ok(p)
}

/// A binding of a kernel being timed: a storage buffer or a texture.
pub(crate) enum Res {
    Buf(Arc<wgpu::Buffer>),
    Tex(wgpu::TextureView),
    /// A byte range of a buffer (offset, size).
    Range(Arc<wgpu::Buffer>, u32, u32),
}

/// A kernel's params padded to its binding's size: at least 4 words (a binding may not be
/// empty), the whole uniform array where it reads them from a uniform buffer.
pub(crate) fn padded_params(k: &sfumato_shaders::Kernel) -> Vec<u32> {
    let mut v = k.params.clone();
    v.resize(v.len().max(params_words(k)), 0);
    v
}

/// Words of a kernel's params binding.
pub(crate) fn params_words(k: &sfumato_shaders::Kernel) -> usize {
    if k.params_uniform() {
        sfumato_shaders::uniform_params::PARAMS_UNIFORM_WORDS
    } else {
        k.params.len().max(4)
    }
}
