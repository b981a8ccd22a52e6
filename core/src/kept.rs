//! Tensors a device keeps between runs: a decoder's KV cache, which a run reads in place and
//! then grows by the run's new rows, with nothing going through the host.
//!
//! - [`Device::keep`] makes a [`Kept`] tensor from a host tensor (the wgpu device uploads it into
//!   a buffer of its own; the default keeps it on the host).
//! - [`Device::run_fed`] runs a graph with each input fed ([`Feed`]) either a host tensor or a
//!   kept one, and after the run writes outputs into kept tensors ([`WriteBack`]): an output
//!   whose shape is the kept tensor's but along one axis lands at an offset along it. Every
//!   write-back happens after every kernel of the run, so a kept tensor that is both fed and
//!   written is read as it was before the run.
//! - [`Device::read_kept`] brings a kept tensor back to the host.
//!
//! A kept tensor belongs to the device that made it; feeding it to another is an error.

use crate::{DType, Device, Error, Graph, Result, RunOutput, Shape, Tensor};
use std::any::Any;
use std::cell::RefCell;

/// A tensor kept between runs, by the device that made it ([`Device::keep`]).
pub struct Kept {
    dtype: DType,
    shape: Shape,
    store: Store,
}

enum Store {
    Host(RefCell<Tensor>),
    /// A device's own handle (the wgpu device: its buffer), tagged with the device's id.
    Device {
        owner: u64,
        handle: Box<dyn Any>,
    },
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match &self.store {
            Store::Host(_) => "host".to_string(),
            Store::Device { owner, .. } => format!("device {owner}"),
        };
        write!(f, "Kept({} {}, on {at})", self.dtype, self.shape)
    }
}

impl Kept {
    /// A tensor kept on the host (the default [`Device::keep`]).
    pub fn host(t: Tensor) -> Self {
        Kept {
            dtype: t.dtype(),
            shape: t.shape().clone(),
            store: Store::Host(RefCell::new(t)),
        }
    }

    /// A tensor kept by a device: `owner` identifies the device (unique in the process),
    /// `handle` is what the device needs to bind it.
    pub fn on_device(dtype: DType, shape: Shape, owner: u64, handle: Box<dyn Any>) -> Self {
        Kept {
            dtype,
            shape,
            store: Store::Device { owner, handle },
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The handle device `owner` made this tensor with, or an error naming `what` where another
    /// device (or the host) keeps it.
    pub fn handle<T: 'static>(&self, owner: u64, what: &str) -> Result<&T> {
        match &self.store {
            Store::Device { owner: o, handle } if *o == owner => {
                handle.downcast_ref::<T>().ok_or_else(|| {
                    Error::Device(format!(
                        "{what}: the kept tensor's handle is not this device's"
                    ))
                })
            }
            _ => Err(Error::Device(format!(
                "{what}: the kept tensor {} {} was kept by another device",
                self.dtype, self.shape
            ))),
        }
    }

    /// A copy of a host-kept tensor; `None` where a device keeps it.
    pub fn host_tensor(&self) -> Option<Tensor> {
        match &self.store {
            Store::Host(t) => Some(t.borrow().clone()),
            Store::Device { .. } => None,
        }
    }
}

/// What a run input is fed.
#[derive(Clone, Copy, Debug)]
pub enum Feed<'a> {
    /// A host tensor, uploaded for the run.
    Tensor(&'a Tensor),
    /// A tensor the device keeps, read in place.
    Kept(&'a Kept),
}

impl Feed<'_> {
    pub fn dtype(&self) -> DType {
        match self {
            Feed::Tensor(t) => t.dtype(),
            Feed::Kept(k) => k.dtype(),
        }
    }

    pub fn shape(&self) -> &Shape {
        match self {
            Feed::Tensor(t) => t.shape(),
            Feed::Kept(k) => k.shape(),
        }
    }
}

/// After a run, output `output` is written into `into` from index `at` along `axis`: the
/// output's shape is `into`'s but along `axis`, where it fits from `at`.
#[derive(Clone, Copy, Debug)]
pub struct WriteBack<'a> {
    pub output: usize,
    pub into: &'a Kept,
    pub axis: usize,
    pub at: usize,
}

/// One contiguous run of a write-back, in elements: from `src` in the output to `dst` in the
/// kept tensor, `len` long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub src: usize,
    pub dst: usize,
    pub len: usize,
}

/// Check feeds against the graph's declared inputs (count, dtypes, shapes).
pub fn check_feeds(graph: &Graph, feeds: &[Feed<'_>]) -> Result<()> {
    if feeds.len() != graph.inputs().len() {
        return Err(Error::Input(format!(
            "the graph has {} inputs, {} were given",
            graph.inputs().len(),
            feeds.len()
        )));
    }
    if graph.outputs().is_empty() {
        return Err(Error::Graph(
            "the graph has no outputs (call set_outputs)".into(),
        ));
    }
    for (&v, f) in graph.inputs().iter().zip(feeds) {
        let info = graph.value(v);
        if info.dtype != f.dtype() || &info.shape != f.shape() {
            let kept = if matches!(f, Feed::Kept(_)) {
                "a kept "
            } else {
                ""
            };
            return Err(Error::Input(format!(
                "input '{}' expects {} {}, got {kept}{} {}",
                info.name,
                info.dtype,
                info.shape,
                f.dtype(),
                f.shape()
            )));
        }
    }
    Ok(())
}

/// Check a write-back against the graph and return its contiguous runs.
pub fn write_back_runs(graph: &Graph, w: &WriteBack<'_>) -> Result<Vec<Run>> {
    let o = *graph.outputs().get(w.output).ok_or_else(|| {
        Error::Input(format!(
            "write-back of output {}: the graph has {} outputs",
            w.output,
            graph.outputs().len()
        ))
    })?;
    let info = graph.value(o);
    let (out, kept) = (info.shape.dims(), w.into.shape().dims());
    let bad = |why: String| {
        Error::Input(format!(
            "write-back of output {} '{}' ({} {}) into a kept {} {} at {} along axis {}: {why}",
            w.output,
            info.name,
            info.dtype,
            info.shape,
            w.into.dtype(),
            w.into.shape(),
            w.at,
            w.axis
        ))
    };
    if info.dtype != w.into.dtype() {
        return Err(bad("the dtypes differ".into()));
    }
    if out.len() != kept.len() || w.axis >= out.len() {
        return Err(bad("the ranks differ or the axis is past them".into()));
    }
    if out
        .iter()
        .zip(kept)
        .enumerate()
        .any(|(i, (a, b))| i != w.axis && a != b)
    {
        return Err(bad("the shapes differ off the axis".into()));
    }
    if w.at + out[w.axis] > kept[w.axis] {
        return Err(bad(format!(
            "{} + {} is past the kept tensor's {}",
            w.at, out[w.axis], kept[w.axis]
        )));
    }
    let inner: usize = out[w.axis + 1..].iter().product();
    let outer: usize = out[..w.axis].iter().product();
    let len = out[w.axis] * inner;
    if len == 0 {
        return Ok(Vec::new());
    }
    Ok((0..outer)
        .map(|i| Run {
            src: i * len,
            dst: (i * kept[w.axis] + w.at) * inner,
            len,
        })
        .collect())
}

/// [`Device::run_fed`] for a device that keeps tensors on the host: the kept inputs are copied
/// into the run, and the outputs written back into them after it.
pub fn run_fed_on_host<D: Device + ?Sized>(
    dev: &mut D,
    graph: &Graph,
    feeds: &[Feed<'_>],
    writes: &[WriteBack<'_>],
) -> Result<RunOutput> {
    check_feeds(graph, feeds)?;
    let runs = writes
        .iter()
        .map(|w| write_back_runs(graph, w))
        .collect::<Result<Vec<_>>>()?;
    let mut inputs = Vec::with_capacity(feeds.len());
    for f in feeds {
        inputs.push(match f {
            Feed::Tensor(t) => (*t).clone(),
            Feed::Kept(k) => k.host_tensor().ok_or_else(|| {
                Error::Device(format!(
                    "{}: a kept tensor {} {} was kept by another device",
                    dev.name(),
                    k.dtype(),
                    k.shape()
                ))
            })?,
        });
    }
    let out = dev.run(graph, &inputs)?;
    for (w, runs) in writes.iter().zip(&runs) {
        let Store::Host(cell) = &w.into.store else {
            return Err(Error::Device(format!(
                "{}: write-back into a tensor kept by another device",
                dev.name()
            )));
        };
        let src = out.outputs.get(w.output).ok_or_else(|| {
            Error::Device(format!("{}: output {} is missing", dev.name(), w.output))
        })?;
        cell.borrow_mut().copy_runs(src, runs)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuDevice;

    /// A step graph: the cache `[2, 4, 3]` is read (summed into the output), and `new` `[2, 1,
    /// 3]` is returned to be written back.
    fn step() -> Graph {
        let mut g = Graph::new();
        let cache = g.input("cache", DType::F32, [2, 4, 3]);
        let new = g.input("new", DType::F32, [2, 1, 3]);
        let s = g
            .reduce(crate::op::ReduceOp::Sum, cache, &[1], true)
            .unwrap();
        let y = g.add_(s, new).unwrap();
        let n = g.unary(crate::op::UnaryOp::Neg, new).unwrap();
        g.set_outputs(&[y, n]).unwrap();
        g
    }

    #[test]
    fn runs_cover_the_slice_along_the_axis() {
        let g = step();
        let k = Kept::host(Tensor::zeros(DType::F32, [2, 4, 3]));
        let w = WriteBack {
            output: 1,
            into: &k,
            axis: 1,
            at: 2,
        };
        assert_eq!(
            write_back_runs(&g, &w).unwrap(),
            vec![
                Run {
                    src: 0,
                    dst: 6,
                    len: 3
                },
                Run {
                    src: 3,
                    dst: 18,
                    len: 3
                }
            ]
        );
        for (axis, at, why) in [(1, 4, "past"), (0, 0, "differ off"), (3, 0, "axis")] {
            let w = WriteBack {
                output: 1,
                into: &k,
                axis,
                at,
            };
            let e = write_back_runs(&g, &w).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_kept_cache_grows_a_row_per_run_and_is_read_before_it() {
        let g = step();
        let k = CpuDevice
            .keep(Tensor::zeros(DType::F32, [2, 4, 3]))
            .unwrap();
        let mut want = vec![0f32; 24];
        for pos in 0..4 {
            let new = Tensor::random(DType::F32, [2, 1, 3], pos as u64);
            let w = [WriteBack {
                output: 1,
                into: &k,
                axis: 1,
                at: pos,
            }];
            let out = CpuDevice
                .run_fed(&g, &[Feed::Kept(&k), Feed::Tensor(&new)], &w)
                .unwrap();
            // The sum is over the cache as it was before this run's write.
            let sums: Vec<f32> = (0..2)
                .flat_map(|b| {
                    let want = &want;
                    (0..3).map(move |c| (0..4).map(|r| want[b * 12 + r * 3 + c]).sum::<f32>())
                })
                .collect();
            let y = out.outputs[0].to_f32_vec();
            let nv = new.to_f32_vec();
            for i in 0..6 {
                assert!((y[i] - (sums[i] + nv[i])).abs() < 1e-5);
            }
            for b in 0..2 {
                for c in 0..3 {
                    want[b * 12 + pos * 3 + c] = -nv[b * 3 + c];
                }
            }
            assert_eq!(CpuDevice.read_kept(&k).unwrap().to_f32_vec(), want);
        }
        let wrong = Tensor::zeros(DType::F32, [2, 4, 4]);
        let e = CpuDevice
            .run_fed(&g, &[Feed::Tensor(&wrong), Feed::Kept(&k)], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("input 'cache'"), "{e}");
        let e = CpuDevice
            .run_fed(&g, &[Feed::Kept(&k), Feed::Kept(&k)], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a kept f32"), "{e}");
    }

    #[test]
    fn another_devices_tensor_is_refused() {
        let k = Kept::on_device(DType::F32, Shape::from([1]), 7, Box::new(0u8));
        assert!(k.handle::<u8>(7, "x").is_ok());
        assert!(k.handle::<u8>(8, "x").is_err());
        assert!(k.handle::<u16>(7, "x").is_err());
        assert!(CpuDevice.read_kept(&k).is_err());
    }
}
