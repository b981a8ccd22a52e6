//! How kernels read tensors: the plan's view of a value, a broadcast view, and the params block
//! that describes views to `view_offset` (`prelude.wgsl`).

use crate::params::{one, per, Layout};
use crate::Error;
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

/// The params of the elementwise and copy kernels (`view_offset` in `prelude.wgsl`, which every
/// module names): the index space, then per view a [`VIEW_BLOCK`] (at `view_block(v, rank)`).
pub const VIEW_PARAMS: Layout = Layout::new(
    "view",
    "VIEW",
    &[one("n"), one("rank"), per("dims", 1, "rank")],
);

/// The block of one view (after [`VIEW_PARAMS`] at `view_block(v, rank)`, and a fused kernel's
/// general reads, `ev_off`): its strides (i32 bits, 0 for broadcast, negative for reversed
/// slices), one per dim of the index space's `rank`, then its start offset.
pub const VIEW_BLOCK: Layout = Layout::record(
    "view block",
    "VB",
    &[per("strides", 1, "rank"), one("offset")],
);

/// [`VIEW_BLOCK`] of `v` over an index space of `rank` dims (an error unless `v` has as many
/// strides).
pub(crate) fn view_block(v: &View, rank: usize) -> Result<Vec<u32>, Error> {
    VIEW_BLOCK
        .fill()
        .given("rank", rank as u32)
        .set_all("strides", v.strides.iter().map(|&s| s as i32 as u32))
        .set("offset", v.offset as i32 as u32)
        .finish()
}

/// [`VIEW_PARAMS`] for `dims`, then the block of each view.
pub(crate) fn view_params(dims: &Shape, views: &[View]) -> Result<Vec<u32>, Error> {
    let mut m = VIEW_PARAMS
        .fill()
        .set("n", dims.numel() as u32)
        .set("rank", dims.rank() as u32)
        .set_all("dims", dims.0.iter().map(|&d| d as u32))
        .finish()?;
    for v in views {
        m.extend(view_block(v, dims.rank())?);
    }
    Ok(m)
}
