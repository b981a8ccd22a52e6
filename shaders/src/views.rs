//! How kernels read tensors: the plan's view of a value, a broadcast view, and the params block
//! that describes views to `view_offset` (`prelude.wgsl`).

use sfumato_core::plan::{Plan, View};
use sfumato_core::{DType, Graph, Shape, ValueId};

/// Dtypes and shapes of a node's inputs and outputs, as [`lower`] takes them.
pub(crate) type Io<'a> = Vec<(DType, &'a Shape)>;

pub(crate) fn node_io<'a>(g: &'a Graph, n: &sfumato_core::Node) -> (Io<'a>, Io<'a>) {
    let info = |vs: &[ValueId]| vs.iter().map(|&v| (g.dtype(v), g.shape(v))).collect();
    (info(&n.inputs), info(&n.outputs))
}

/// The base value and view a value is read through.
pub(crate) fn view_of(g: &Graph, plan: &Plan, v: ValueId) -> (ValueId, View) {
    plan.views
        .get(&v)
        .cloned()
        .unwrap_or_else(|| (v, View::contiguous(g.shape(v))))
}

/// The view that reads `s` broadcast to `target`.
pub(crate) fn strided(s: &Shape, target: &Shape) -> View {
    View {
        strides: s
            .broadcast_strides(target)
            .iter()
            .map(|&x| x as i64)
            .collect(),
        offset: 0,
    }
}

/// `[n, rank, dims.., (strides.., offset) per view]`.
pub(crate) fn view_params(dims: &Shape, views: &[View]) -> Vec<u32> {
    let mut m = vec![dims.numel() as u32, dims.rank() as u32];
    m.extend(dims.0.iter().map(|&d| d as u32));
    for v in views {
        m.extend(v.strides.iter().map(|&s| s as i32 as u32));
        m.push(v.offset as i32 as u32);
    }
    m
}
