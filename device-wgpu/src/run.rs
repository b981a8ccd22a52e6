//! One run: bind, dispatch every step in one submission, read outputs and timestamps back,
//! fill the profile.

use crate::memory::binding_size;
use crate::pipelines::{padded_params, params_words};
use crate::{convert, half, WgpuDevice};
use sfumato_core::device::{OpTiming, Profile, RunOutput, TimingSource};
use sfumato_core::kept::{check_feeds, write_back_runs};
use sfumato_core::{Device, Error, Feed, Graph, Kept, Op, Result, Tensor, ValueId, WriteBack};
use sfumato_shaders::{Buf, GroupKernels, Kernel, Lowered};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use wgpu::util::DeviceExt;

/// One dispatch recorded for the profile.
struct Dispatch {
    nodes: Vec<String>,
    ops: Vec<String>,
    kernel: String,
}

/// What the mapping of a run's readback buffers has come to.
#[derive(Default)]
pub(crate) struct MapState {
    pending: usize,
    pub(crate) errors: Vec<String>,
    waker: Option<Waker>,
}

/// A run submitted to the queue, its readback buffers being mapped.
struct Submitted {
    t0: u64,
    /// The set-up this run did (the first run of a graph).
    setup: Option<sfumato_core::Setup>,
    graph: Arc<Graph>,
    staging: Vec<Option<wgpu::Buffer>>,
    ts_bufs: Vec<wgpu::Buffer>,
    dispatches: Vec<Dispatch>,
    bufs: Vec<Option<Arc<wgpu::Buffer>>>,
    maps: Arc<Mutex<MapState>>,
}

/// Resolves when every readback buffer of a run is mapped. It polls the device without
/// blocking (natively that is what delivers the callbacks; in a browser the event loop does and
/// the callback wakes the task).
pub(crate) struct MapWait<'a> {
    pub(crate) device: &'a wgpu::Device,
    pub(crate) maps: Arc<Mutex<MapState>>,
}

impl Future for MapWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Natively nothing else delivers the callbacks: wait for the queue here (the run was
        // submitted whole, so this returns once it is done). In a browser this is a no-op and
        // the event loop delivers them, waking the task.
        let how = if cfg!(target_arch = "wasm32") {
            wgpu::PollType::Poll
        } else {
            wgpu::PollType::wait_indefinitely()
        };
        let _ = self.device.poll(how);
        let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if m.pending == 0 {
            return Poll::Ready(());
        }
        m.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Device for WgpuDevice {
    fn name(&self) -> String {
        // A browser does not tell pages its adapter's name.
        let name = if self.summary.name.is_empty() {
            "WebGPU adapter"
        } else {
            &self.summary.name
        };
        format!(
            "{name} ({}, {})",
            self.summary.backend, self.summary.device_type
        )
    }

    /// Run and block until the results are back (native; in a browser use
    /// [`WgpuDevice::run_async`]).
    fn run(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let feeds: Vec<Feed<'_>> = inputs.iter().map(Feed::Tensor).collect();
        self.run_fed(graph, &feeds, &[])
    }

    /// Kept in a buffer of this device's own ([`crate::kept`]).
    fn keep(&mut self, t: Tensor) -> Result<Kept> {
        self.keep_tensor(t)
    }

    fn read_kept(&mut self, k: &Kept) -> Result<Tensor> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Device(
                "a browser cannot block until the GPU is done: use WgpuDevice::read_kept_async"
                    .into(),
            ));
        }
        pollster::block_on(self.read_kept_async(k))
    }

    /// Kept inputs are bound in place; write-backs are copy commands after the last kernel, in
    /// the run's one submission.
    fn run_fed(
        &mut self,
        graph: &Graph,
        feeds: &[Feed<'_>],
        writes: &[WriteBack<'_>],
    ) -> Result<RunOutput> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Device(
                "a browser cannot block until the GPU is done: use WgpuDevice::run_async".into(),
            ));
        }
        let s = self.submit(graph, feeds, writes)?;
        self.wait()?;
        self.collect(s)
    }

    /// The graph after the passes, each group with the WGSL this device runs for it.
    fn record(
        &mut self,
        model: &str,
        graph: &Graph,
        out: &RunOutput,
    ) -> Result<sfumato_core::RunRecord> {
        self.explain(graph)?
            .record(model, out.profile.clone(), &out.outputs)
    }

    fn untuned_kernels(&self) -> usize {
        self.untuned.len()
    }
}

impl WgpuDevice {
    /// Run, awaiting the results (the browser's way: nothing blocks).
    pub async fn run_async(&mut self, graph: &Graph, inputs: &[Tensor]) -> Result<RunOutput> {
        let feeds: Vec<Feed<'_>> = inputs.iter().map(Feed::Tensor).collect();
        self.run_fed_async(graph, &feeds, &[]).await
    }

    /// [`Device::run_fed`], awaiting the results.
    pub async fn run_fed_async(
        &mut self,
        graph: &Graph,
        feeds: &[Feed<'_>],
        writes: &[WriteBack<'_>],
    ) -> Result<RunOutput> {
        // A browser reports a shader its compiler refuses, or a bad binding, only to this
        // scope (or the console): without it the run would read back zeros as if it had worked.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let s = self.submit(graph, feeds, writes);
        let refused = scope.pop().await;
        let s = s?;
        if let Some(e) = refused {
            return Err(Error::Device(format!(
                "{}: the WebGPU implementation refused the run: {e}",
                self.summary.name
            )));
        }
        MapWait {
            device: &self.device,
            maps: s.maps.clone(),
        }
        .await;
        self.collect(s)
    }

    /// Prepare, bind, encode and submit a run as one submission, and start mapping its readback
    /// buffers. Without timestamp queries nothing is timed per dispatch (that would take a
    /// submission and a wait each, and time the waits as much as the kernels): the profile
    /// then has the whole run's wall time only ([`TimingSource::WholeRun`]).
    fn submit(
        &mut self,
        graph: &Graph,
        feeds: &[Feed<'_>],
        writes: &[WriteBack<'_>],
    ) -> Result<Submitted> {
        let t0 = self.now_ns();
        check_feeds(graph, feeds)?;
        check_gather_indices(graph, feeds)?;
        let write_runs = writes
            .iter()
            .map(|w| write_back_runs(graph, w))
            .collect::<Result<Vec<_>>>()?;
        let write_bufs = writes
            .iter()
            .map(|w| self.kept_buffer(w.into, "a write-back"))
            .collect::<Result<Vec<_>>>()?;
        let pi = self.prepare(graph)?;
        let setup = self.prepared[pi].setup.take();
        // The high-water of this run starts from what is held now (weights, pooled buffers).
        self.high_water = self.allocated;
        // The graph after the passes: same inputs and outputs, in order.
        let graph_arc = Arc::clone(&self.prepared[pi].graph);
        let graph = &*graph_arc;
        let mut uses = use_counts(&self.prepared[pi].steps, graph);
        let mut bufs: Vec<Option<Arc<wgpu::Buffer>>> = vec![None; graph.values().len()];
        for (v, b) in &self.prepared[pi].consts {
            bufs[v.index()] = Some(Arc::clone(b));
        }
        let textures = self.prepared[pi].textures.clone();
        let stage = self.prepared[pi].stage.clone();
        let stage16 = self.prepared[pi].stage16.clone();
        for (&v, f) in graph.inputs().iter().zip(feeds) {
            let name = &graph.value(v).name;
            bufs[v.index()] = Some(match f {
                Feed::Tensor(t) => self.upload(t, name, false)?,
                Feed::Kept(k) => self.kept_buffer(k, &format!("input '{name}'"))?,
            });
        }
        let (params_buf, offsets) = self.pack_params(pi);
        let per_set = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
        let write_entry = usize::from(write_runs.iter().any(|r| !r.is_empty()));
        let (n_dispatch, query_sets) = self.query_sets(pi, per_set, write_entry);
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut dispatches: Vec<Dispatch> = Vec::new();
        let steps_len = self.prepared[pi].steps.len();
        #[allow(clippy::needless_range_loop)]
        // steps are borrowed from self, which the loop mutates
        for si in 0..steps_len {
            let gk = Arc::clone(&self.prepared[pi].steps[si].kernels);
            match &gk.lowered {
                // Constants are bound before the first step (a fused group may read one whose
                // node comes later in the graph).
                Lowered::Constant => {}
                Lowered::Alias => {
                    bufs[gk.outputs[0].index()] = bufs[gk.inputs[0].index()].clone();
                }
                Lowered::Copies(regions) => {
                    for &o in &gk.outputs {
                        let bytes = self.prepared[pi].bytes_of(o);
                        bufs[o.index()] = Some(self.acquire(bytes));
                    }
                    if !regions.is_empty() {
                        // The copies are one profile entry: an empty pass stamps their start, another
                        // their end (copy commands take no timestamps of their own).
                        let di = dispatches.len();
                        let qs = query_sets.get(di / per_set);
                        let stamp = |enc: &mut wgpu::CommandEncoder, end: bool| {
                            if let Some(qs) = qs {
                                let i = ((di % per_set) * 2 + end as usize) as u32;
                                stamp_pass(enc, qs, i, end, sfumato_shaders::COPY_STEP);
                            }
                        };
                        stamp(&mut enc, false);
                        for r in regions {
                            let missing = |what: &str, v: ValueId| {
                                Error::Graph(format!("copy {what} {} has no buffer", v.0))
                            };
                            let (iv, ov) = (gk.inputs[r.input], gk.outputs[r.output]);
                            let dst = bufs[ov.index()]
                                .as_ref()
                                .ok_or_else(|| missing("target", ov))?;
                            // An f16 copy's source and target are both f16, its offsets even.
                            let e = half::elem_bytes(&self.prepared[pi].half, iv);
                            if r.zero {
                                enc.clear_buffer(dst, r.dst * e, Some(r.len * e));
                                continue;
                            }
                            let src = bufs[iv.index()]
                                .as_ref()
                                .ok_or_else(|| missing("source", iv))?;
                            enc.copy_buffer_to_buffer(src, r.src * e, dst, r.dst * e, r.len * e);
                        }
                        stamp(&mut enc, true);
                        let step = &self.prepared[pi].steps[si];
                        dispatches.push(Dispatch {
                            nodes: step.nodes.clone(),
                            ops: step.ops.clone(),
                            kernel: sfumato_shaders::COPY_STEP.to_string(),
                        });
                    }
                }
                Lowered::Kernels(ks) => {
                    for (j, &o) in gk.outputs.iter().enumerate() {
                        let buf = match gk.inplace {
                            // Written over a value nothing reads after this kernel.
                            Some(v) if j == 0 => bufs[v.index()].take().ok_or_else(|| {
                                Error::Graph(format!("in-place value {} has no buffer", v.0))
                            })?,
                            _ => {
                                let bytes = self.prepared[pi].bytes_of(o);
                                self.acquire(bytes)
                            }
                        };
                        bufs[o.index()] = Some(buf);
                    }
                    // What each layer of the staging texture holds from this step's copies: the
                    // next kernel that reads the same input through it (a part of the same op)
                    // copies nothing.
                    let mut in_stage: HashMap<u32, (ValueId, u32)> = HashMap::new();
                    for (ki, k) in ks.iter().enumerate() {
                        if k.workgroups.contains(&0) {
                            continue;
                        }
                        let pipeline = self
                            .pipeline(&k.name, &k.wgsl)
                            .map_err(|e| Error::Device(e.to_string()))?;
                        // f16 tensors read through the staging texture use the f16 stage
                        // (`half::half_values` decided a kernel's staged inputs together).
                        let half_staged = half::staged_inputs(k, &gk)
                            .first()
                            .is_some_and(|v| self.prepared[pi].half.contains(v));
                        let stage = if half_staged { &stage16 } else { &stage };
                        let entries = kernel_entries(
                            k,
                            &gk,
                            (graph, &self.prepared[pi].half),
                            &bufs,
                            (&textures, stage.as_ref().map(|s| &s.view)),
                            (&params_buf, offsets[si][ki]),
                        )?;
                        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: None,
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &entries,
                        });
                        let di = dispatches.len();
                        let qs = query_sets.get(di / per_set);
                        let start = ((di % per_set) * 2) as u32;
                        // Inputs the kernel reads through the staging texture are copied there
                        // first; an empty pass stamps the copies' start, so that the kernel's
                        // time includes them.
                        let reads: Vec<(u32, (ValueId, u32))> = k
                            .bindings
                            .iter()
                            .filter_map(|b| match *b {
                                Buf::StageLinear {
                                    input,
                                    texels,
                                    layer,
                                } => Some((layer, (gk.inputs[input], texels))),
                                _ => None,
                            })
                            .collect();
                        if (1..reads.len()).any(|i| reads[..i].iter().any(|r| r.0 == reads[i].0)) {
                            return Err(Error::Graph(format!(
                                "kernel {} reads two inputs through one layer of the staging texture",
                                k.name
                            )));
                        }
                        if k.bindings
                            .iter()
                            .any(|b| matches!(b, Buf::Stage { write: true, .. }))
                        {
                            in_stage.clear();
                        }
                        let copies: Vec<(u32, (ValueId, u32))> = reads
                            .into_iter()
                            .filter(|(l, c)| in_stage.get(l) != Some(c))
                            .collect();
                        let staged = !copies.is_empty();
                        if staged {
                            if let Some(qs) = qs {
                                stamp_pass(&mut enc, qs, start, false, "stage copy");
                            }
                        }
                        for (layer, (v, texels)) in copies {
                            let st = stage.as_ref().ok_or_else(|| {
                                Error::Graph(format!("kernel {} has no staging texture", k.name))
                            })?;
                            let buf = bufs[v.index()].as_ref().ok_or_else(|| {
                                Error::Graph(format!("value {} has no buffer", v.0))
                            })?;
                            st.copy_linear(&mut enc, buf, texels, layer);
                            in_stage.insert(layer, (v, texels));
                        }
                        let tw = qs.map(|qs| wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: (!staged).then_some(start),
                            end_of_pass_write_index: Some(start + 1),
                        });
                        {
                            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: Some(&k.name),
                                timestamp_writes: tw,
                            });
                            pass.set_pipeline(&pipeline);
                            pass.set_bind_group(0, &bg, &[]);
                            pass.dispatch_workgroups(
                                k.workgroups[0],
                                k.workgroups[1],
                                k.workgroups[2],
                            );
                        }
                        let step = &self.prepared[pi].steps[si];
                        dispatches.push(Dispatch {
                            nodes: step.nodes.clone(),
                            ops: step.ops.clone(),
                            kernel: k.name.clone(),
                        });
                    }
                }
            }
            let mut seen: Vec<ValueId> = Vec::new();
            for &i in &gk.inputs {
                if seen.contains(&i) {
                    continue;
                }
                seen.push(i);
                uses[i.index()] -= 1;
                if uses[i.index()] == 0 {
                    if let Some(b) = bufs[i.index()].take() {
                        self.release(b);
                    }
                }
            }
        }
        if write_entry == 1 {
            // The write-backs are one profile entry, bracketed as the copies are.
            let di = dispatches.len();
            let qs = query_sets.get(di / per_set);
            let at = ((di % per_set) * 2) as u32;
            if let Some(qs) = qs {
                stamp_pass(&mut enc, qs, at, false, WRITE_BACK);
            }
            for ((w, runs), dst) in writes.iter().zip(&write_runs).zip(&write_bufs) {
                if runs.is_empty() {
                    continue;
                }
                let o = graph.outputs()[w.output];
                let src = bufs[o.index()]
                    .as_ref()
                    .ok_or_else(|| Error::Graph(format!("output {} has no buffer", o.0)))?;
                if write_bufs.iter().any(|d| Arc::ptr_eq(d, src)) {
                    return Err(Error::Input(format!(
                        "output {} ('{}') is a kept tensor that this run writes back into; \
                         write a copy of it instead",
                        w.output,
                        graph.value(o).name
                    )));
                }
                for r in runs {
                    enc.copy_buffer_to_buffer(
                        src,
                        r.src as u64 * 4,
                        dst,
                        r.dst as u64 * 4,
                        r.len as u64 * 4,
                    );
                }
            }
            if let Some(qs) = qs {
                stamp_pass(&mut enc, qs, at + 1, true, WRITE_BACK);
            }
            dispatches.push(Dispatch {
                nodes: Vec::new(),
                ops: vec!["WriteBack".into()],
                kernel: WRITE_BACK.into(),
            });
        }
        // Read back outputs and timestamps.
        let mut staging = Vec::new();
        for &o in graph.outputs() {
            let bytes = graph.shape(o).numel() as u64 * 4;
            if bytes == 0 {
                staging.push(None);
                continue;
            }
            let src = bufs[o.index()]
                .as_ref()
                .ok_or_else(|| Error::Graph(format!("output {} has no buffer", o.0)))?;
            let dst = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(src, 0, &dst, 0, bytes);
            staging.push(Some(dst));
        }
        let mut ts_bufs = Vec::new();
        for qs in &query_sets {
            let count = qs_count(n_dispatch, per_set, ts_bufs.len());
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato timestamps"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sfumato timestamps readback"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(qs, 0..count, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, count as u64 * 8);
            ts_bufs.push(read);
        }
        self.submit_commands(enc.finish());
        let maps = Arc::new(Mutex::new(MapState::default()));
        for b in staging.iter().flatten().chain(ts_bufs.iter()) {
            map_read(&maps, b);
        }
        Ok(Submitted {
            t0,
            setup,
            graph: graph_arc,
            staging,
            ts_bufs,
            dispatches,
            bufs,
            maps,
        })
    }

    /// Read a submitted run's outputs and timestamps back (its buffers mapped) and fill the
    /// profile.
    fn collect(&mut self, s: Submitted) -> Result<RunOutput> {
        let Submitted {
            t0,
            setup,
            graph,
            staging,
            ts_bufs,
            dispatches,
            bufs,
            maps,
        } = s;
        let graph = &*graph;
        if let Some(e) = maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .errors
            .first()
        {
            return Err(Error::Device(format!("reading results back: {e}")));
        }
        let mut outputs = Vec::with_capacity(staging.len());
        for (&o, st) in graph.outputs().iter().zip(&staging) {
            let t = match st {
                None => Tensor::zeros(graph.dtype(o), graph.shape(o).clone()),
                Some(b) => {
                    let view = b
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| Error::Device(format!("mapping: {e:?}")))?;
                    convert::from_device_bytes(graph.dtype(o), graph.shape(o), &view)?
                }
            };
            outputs.push(t);
        }
        let mut stamps: Vec<u64> = Vec::new();
        for b in &ts_bufs {
            let view = b
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("mapping: {e:?}")))?;
            stamps.extend(bytemuck::pod_collect_to_vec::<u8, u64>(&view));
        }
        let period = self.queue.get_timestamp_period() as f64;
        let first = stamps.first().copied().unwrap_or(0);
        let mut profile = Profile {
            device: self.name(),
            setup,
            ..Default::default()
        };
        for (i, d) in dispatches.into_iter().enumerate() {
            let (start_ns, duration_ns, source) = if stamps.is_empty() {
                // No timestamp queries (see `query_sets`): the run's wall time (below) is the
                // only figure.
                (0, 0, TimingSource::WholeRun)
            } else {
                let (a, b) = (
                    stamps.get(2 * i).copied().unwrap_or(0),
                    stamps.get(2 * i + 1).copied().unwrap_or(0),
                );
                (
                    (a.saturating_sub(first) as f64 * period) as u64,
                    (b.saturating_sub(a) as f64 * period) as u64,
                    TimingSource::GpuTimestamp,
                )
            };
            profile.entries.push(OpTiming {
                nodes: d.nodes,
                ops: d.ops,
                kernel: d.kernel,
                start_ns,
                duration_ns,
                source,
                simulated: None,
            });
        }
        // Give the outputs' and inputs' buffers back to the pool.
        for b in bufs.into_iter().flatten() {
            self.release(b);
        }
        profile.wall_ns = self.now_ns().saturating_sub(t0);
        profile.memory_bytes = Some(self.high_water + self.kept_bytes());
        Ok(RunOutput { outputs, profile })
    }
}

/// Gather and GatherElements indices that come straight from a run input or a constant are
/// range-checked on the host, so an out-of-range index is an error naming the node rather than
/// a 0 read on the GPU. (Indices computed on the device are not checked yet.)
fn check_gather_indices(graph: &Graph, feeds: &[Feed<'_>]) -> Result<()> {
    for node in graph.nodes() {
        let (Op::Gather { axis } | Op::GatherElements { axis }) = node.op else {
            continue;
        };
        let idx = node.inputs[1];
        let values = if let Some(k) = graph.inputs().iter().position(|&v| v == idx) {
            match feeds[k] {
                Feed::Tensor(t) => t.to_i64_vec(),
                // The device's copy could be checked only by reading it back.
                Feed::Kept(_) => {
                    return Err(Error::Node {
                        node: node.name.clone(),
                        op: node.op.name().to_string(),
                        inputs: graph.describe_node_inputs(node),
                        msg: "its indices are a kept tensor, which is not range-checked: feed them from the host".into(),
                    })
                }
            }
        } else if let Some(Op::Constant(t)) = graph.value(idx).producer.map(|p| &graph.node(p).op) {
            t.to_i64_vec()
        } else {
            continue;
        };
        let len = graph.shape(node.inputs[0]).dims()[axis] as i64;
        if let Some(bad) = values.iter().find(|&&i| i < -len || i >= len) {
            return Err(Error::Node {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                inputs: graph.describe_node_inputs(node),
                msg: format!("index {bad} is out of range for axis {axis} of size {len}"),
            });
        }
    }
    Ok(())
}

/// Start mapping `b` for reading, counted in `maps` (a [`MapWait`] awaits it).
pub(crate) fn map_read(maps: &Arc<Mutex<MapState>>, b: &wgpu::Buffer) {
    maps.lock().unwrap_or_else(|p| p.into_inner()).pending += 1;
    let m = maps.clone();
    b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        m.pending -= 1;
        if let Err(e) = r {
            m.errors.push(e.to_string());
        }
        if let Some(w) = m.waker.take() {
            w.wake();
        }
    });
}

/// The profile entry of a run's write-backs into kept tensors.
pub(crate) const WRITE_BACK: &str = "write back";

fn qs_count(n_dispatch: usize, per_set: usize, set: usize) -> u32 {
    ((n_dispatch - set * per_set).min(per_set) * 2) as u32
}

/// An empty compute pass that writes timestamp `at` of `qs` at its beginning, or at its end
/// (`end`): how copy commands, which take no timestamps, are bracketed in the profile.
fn stamp_pass(
    enc: &mut wgpu::CommandEncoder,
    qs: &wgpu::QuerySet,
    at: u32,
    end: bool,
    label: &str,
) {
    enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
            query_set: qs,
            beginning_of_pass_write_index: (!end).then_some(at),
            end_of_pass_write_index: end.then_some(at),
        }),
    });
}

/// The bind group entries of one kernel: its tensors (whole buffers, byte ranges of uniform
/// blocks, textures) in binding order, then its params (`params`: the run's params buffer and
/// this kernel's offset in it, in words).
fn kernel_entries<'a>(
    k: &Kernel,
    gk: &GroupKernels,
    (graph, half): (&Graph, &HashSet<ValueId>),
    bufs: &'a [Option<Arc<wgpu::Buffer>>],
    (textures, stage): (
        &'a HashMap<ValueId, wgpu::TextureView>,
        Option<&'a wgpu::TextureView>,
    ),
    params: (&'a wgpu::Buffer, usize),
) -> Result<Vec<wgpu::BindGroupEntry<'a>>> {
    let mut entries = Vec::with_capacity(k.bindings.len() + 1);
    for (bi, b) in k.bindings.iter().enumerate() {
        // A buffer binding: the value, and the byte range (whole when
        // `None`).
        let (v, range) = match *b {
            Buf::Uniform {
                input,
                offset,
                size,
            } => (gk.inputs[input], Some((offset as u64, size as u64))),
            Buf::In(i) => (gk.inputs[i], None),
            Buf::Out(i) => (gk.outputs[i], None),
            Buf::Stage { .. } | Buf::StageLinear { .. } => {
                let view = stage.ok_or_else(|| {
                    Error::Graph(format!("kernel {} has no staging texture", k.name))
                })?;
                entries.push(wgpu::BindGroupEntry {
                    binding: bi as u32,
                    resource: wgpu::BindingResource::TextureView(view),
                });
                continue;
            }
            Buf::Texture(i) => {
                let v = gk.inputs[i];
                let view = textures
                    .get(&v)
                    .ok_or_else(|| Error::Graph(format!("value {} has no texture", v.0)))?;
                entries.push(wgpu::BindGroupEntry {
                    binding: bi as u32,
                    resource: wgpu::BindingResource::TextureView(view),
                });
                continue;
            }
        };
        let buf = bufs[v.index()]
            .as_ref()
            .ok_or_else(|| Error::Graph(format!("value {} has no buffer", v.0)))?;
        let (offset, size) = range.unwrap_or_else(|| {
            let whole = graph.shape(v).numel() as u64 * half::elem_bytes(half, v);
            (0, binding_size(whole).min(buf.size()))
        });
        entries.push(wgpu::BindGroupEntry {
            binding: bi as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: buf,
                offset,
                size: wgpu::BufferSize::new(size),
            }),
        });
    }
    let plen = params_words(k);
    entries.push(wgpu::BindGroupEntry {
        binding: k.bindings.len() as u32,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: params.0,
            offset: params.1 as u64 * 4,
            size: wgpu::BufferSize::new(plen as u64 * 4),
        }),
    });
    Ok(entries)
}

impl WgpuDevice {
    /// Submit encoded work to the queue, counted ([`WgpuDevice::submissions`]).
    pub(crate) fn submit_commands(&mut self, commands: wgpu::CommandBuffer) {
        self.submissions += 1;
        self.queue.submit([commands]);
    }

    /// Every kernel's params in one buffer, each at an offset aligned for a binding; the
    /// offsets (in words) per step and kernel.
    fn pack_params(&self, pi: usize) -> (wgpu::Buffer, Vec<Vec<usize>>) {
        let align = self
            .limits
            .min_storage_buffer_offset_alignment
            .max(self.limits.min_uniform_buffer_offset_alignment)
            .max(4) as usize
            / 4;
        let mut params: Vec<u32> = Vec::new();
        let mut offsets: Vec<Vec<usize>> = Vec::new();
        for step in &self.prepared[pi].steps {
            let mut o = Vec::new();
            if let Lowered::Kernels(ks) = &step.kernels.lowered {
                for k in ks {
                    o.push(params.len());
                    params.extend(padded_params(k));
                    params.resize(params.len().div_ceil(align) * align, 0);
                }
            }
            offsets.push(o);
        }
        // A buffer may not be empty (a graph of copies and aliases dispatches nothing).
        params.resize(params.len().max(4), 0);
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sfumato params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            });
        (buf, offsets)
    }

    /// The run's dispatch count and, where the adapter has timestamp queries, query sets of at
    /// most `per_set` dispatches (two stamps each).
    fn query_sets(&self, pi: usize, per_set: usize, extra: usize) -> (usize, Vec<wgpu::QuerySet>) {
        let n_dispatch: usize = self.prepared[pi]
            .steps
            .iter()
            .map(|s| match &s.kernels.lowered {
                Lowered::Kernels(ks) => ks
                    .iter()
                    .filter(|k| k.workgroups.iter().all(|&w| w > 0))
                    .count(),
                Lowered::Copies(rs) => usize::from(!rs.is_empty()),
                _ => 0,
            })
            .sum::<usize>()
            + extra;
        // None to trust once this device has measured kernels: lavapipe's stamps then no
        // longer bracket the dispatches.
        if !self.timestamps || self.measured {
            return (n_dispatch, Vec::new());
        }
        let sets = (0..n_dispatch.div_ceil(per_set))
            .map(|i| {
                let count = (n_dispatch - i * per_set).min(per_set) as u32 * 2;
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("sfumato timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                })
            })
            .collect();
        (n_dispatch, sets)
    }
}

/// Uses of each value by the steps (each step once) and by the graph's outputs: a buffer goes
/// back to the pool when its count reaches 0.
fn use_counts(steps: &[crate::prepare::Step], graph: &Graph) -> Vec<usize> {
    let mut uses = vec![0usize; graph.values().len()];
    for step in steps {
        let mut seen: Vec<ValueId> = Vec::new();
        for &i in &step.kernels.inputs {
            if !seen.contains(&i) {
                seen.push(i);
                uses[i.index()] += 1;
            }
        }
    }
    for &o in graph.outputs() {
        uses[o.index()] += 1;
    }
    uses
}
