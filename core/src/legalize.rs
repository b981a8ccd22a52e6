//! Legalization: rewrites that make a graph fit a device's limits. Unlike the passes of
//! [`crate::passes`] they are not optimizations but what lets the graph run at all, so
//! [`crate::compile()`] runs them whatever the [`crate::Optimization`].
//!
//! [`split_oversized_constants`]: a WebGPU kernel binds each tensor as one storage buffer, and a
//! binding may not exceed the adapter's `max_storage_buffer_binding_size` (128 MiB on lavapipe
//! and WebGPU's default). A language model's embedding table is bigger (GPT-2 medium's
//! 50,257 x 1,024 f32 is 206 MB; GPT-2 small's 154 MB), and it is read twice: by the token
//! embedding (a Gather) and by the tied LM head (a MatMul). Both are split into blocks that fit:
//!
//! - `MatMul(A, B)` (or the integer `MatMulInteger`) with a constant 2-D `B [K, N]` over the
//!   limit becomes one product per block
//!   of columns, `A @ B[:, j0..j1]` (whole 64-column tiles, an unaligned remainder apart), then
//!   a Concat along the last axis (the output's columns are independent, so this is exact: each
//!   column's sum is the same sum);
//! - `Gather(T, idx)` along axis 0 of a constant table `T [V, ...]` over the limit becomes one
//!   Gather per block of rows at the index clamped into the block, `T[r0..r1][clamp(idx - r0)]`,
//!   and a chain of `Where(idx < r1, this block, later blocks)` that picks the block each index
//!   falls in (negative indices are first wrapped, as Gather wraps them). The result is the
//!   row itself, bit for bit.
//!
//! Sizes are counted as the wgpu device counts them, 4 bytes an element (it stores every dtype
//! in 32-bit words). A constant too big for any block (one column or one row over the limit),
//! a MatMul whose big operand is `A`, a Gemm, and a Gather along another axis are left alone:
//! the device then refuses the graph with its limit error, naming the node.

use crate::op::{BinaryOp, Op, PadMode, SliceAxis};
use crate::passes::{constant, eliminate_dead_code, Rebuild};
use crate::{DType, Graph, Node, Result, Tensor, ValueId};

/// Bytes a tensor of `numel` elements takes on the device (32-bit words), saturating.
fn device_bytes(numel: usize) -> u64 {
    (numel as u64).saturating_mul(4)
}

/// How a node reads an oversized constant, and the blocks it would be split into.
enum Split {
    /// Column ranges of MatMul's `B [K, N]`.
    Columns(Vec<(usize, usize)>),
    /// Row ranges of Gather's table along axis 0.
    Rows(Vec<(usize, usize)>),
}

/// `0..n` in ranges of at most `per` (at least two ranges, else `None`).
fn blocks(n: usize, per: usize) -> Option<Vec<(usize, usize)>> {
    if per == 0 || per >= n {
        return None;
    }
    Some((0..n).step_by(per).map(|s| (s, (s + per).min(n))).collect())
}

/// Column blocks of at most `per` columns, in whole tiles of [`TILE`] columns where `per`
/// allows: an odd width (GPT-2's 50,257) would put a whole block on the matmul kernels' slow
/// path for unaligned widths (on lavapipe the naive kernel is ~4x slower a column), so the
/// remainder under one tile gets a small block of its own.
fn column_blocks(n: usize, per: usize) -> Option<Vec<(usize, usize)>> {
    if per < TILE {
        return blocks(n, per);
    }
    let per = per - per % TILE;
    let mut out = blocks(n, per)?;
    if let Some(&(s, e)) = out.last() {
        let aligned = s + (e - s) / TILE * TILE;
        if aligned > s && aligned < e {
            out.pop();
            out.extend([(s, aligned), (aligned, e)]);
        }
    }
    Some(out)
}

/// Columns of one matmul tile, the alignment of column blocks.
const TILE: usize = 64;

/// The split `node` needs to keep each binding of its constant under `max_bytes`, if any, in
/// blocks of at most `block_bytes` (capped at `max_bytes`).
fn plan(g: &Graph, node: &Node, max_bytes: u64, block_bytes: u64) -> Option<Split> {
    let (Op::MatMul | Op::MatMulInteger | Op::Gather { axis: 0 }) = node.op else {
        return None;
    };
    let data = if matches!(node.op, Op::MatMul | Op::MatMulInteger) {
        node.inputs[1]
    } else {
        node.inputs[0]
    };
    let t = constant(g, data)?;
    if device_bytes(t.numel()) <= max_bytes {
        return None;
    }
    // Columns or rows a block takes: as many as `block_bytes` holds, or where not even one
    // fits there, as many as the limit holds.
    let per = |line: usize| {
        let line = device_bytes(line.max(1));
        match block_bytes.min(max_bytes) / line {
            0 => (max_bytes / line) as usize,
            n => n as usize,
        }
    };
    match node.op {
        Op::MatMul | Op::MatMulInteger => {
            let [k, n] = *t.dims() else { return None };
            column_blocks(n, per(k)).map(Split::Columns)
        }
        _ => {
            let rows = *t.dims().first()?;
            blocks(rows, per(t.numel() / rows.max(1))).map(Split::Rows)
        }
    }
}

/// Whether any MatMul or Gather of `g` reads a constant over `max_bytes` that
/// [`split_oversized_constants`] would split (cheap: no tensor is copied).
pub fn has_oversized_constants(g: &Graph, max_bytes: u64) -> bool {
    g.nodes()
        .iter()
        .any(|n| plan(g, n, max_bytes, max_bytes).is_some())
}

/// Split every MatMul and Gather that reads a constant over `max_bytes` into blocks of at most
/// `block_bytes` (capped at `max_bytes`; see the module docs); returns the new graph and the
/// number of nodes split. Nodes that need no split, and the names of the split nodes' outputs,
/// stay as they are; the oversized constants are dropped once nothing reads them.
pub fn split_oversized_constants(
    g: &Graph,
    max_bytes: u64,
    block_bytes: u64,
) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("split_oversized_constants", max_bytes).entered();
    let mut rb = Rebuild::new(g, "split_oversized_constants");
    let mut split = 0;
    for node in g.nodes() {
        match plan(g, node, max_bytes, block_bytes) {
            None => rb.keep(node)?,
            Some(Split::Columns(cols)) => {
                split_matmul(&mut rb, g, node, &cols)?;
                split += 1;
            }
            Some(Split::Rows(rows)) => {
                split_gather(&mut rb, g, node, &rows)?;
                split += 1;
            }
        }
    }
    let out = rb.finish()?;
    if split == 0 {
        return Ok((out, 0));
    }
    let (out, _) = eliminate_dead_code(&out)?;
    Ok((out, split))
}

/// The constant tensor `v` is (the caller checked).
fn the_constant(g: &Graph, v: ValueId) -> Result<&Tensor> {
    constant(g, v).ok_or_else(|| {
        crate::Error::Graph(format!(
            "split_oversized_constants: '{}' is not a constant",
            g.value(v).name
        ))
    })
}

/// Bytes of each element of `t` as [`Tensor::to_le_bytes`] lays them out.
fn element_size(t: &Tensor, bytes: &[u8]) -> Result<usize> {
    match bytes.len().checked_div(t.numel()) {
        Some(s) if s * t.numel() == bytes.len() => Ok(s),
        _ => Err(crate::Error::Tensor(format!(
            "split_oversized_constants: {} bytes do not divide into {} elements",
            bytes.len(),
            t.numel()
        ))),
    }
}

/// `A @ B` (a MatMul or the integer MatMulInteger) as `Concat(A @ B[:, c0..c1], ...)` along
/// the last axis.
fn split_matmul(rb: &mut Rebuild, g: &Graph, node: &Node, cols: &[(usize, usize)]) -> Result<()> {
    let b = the_constant(g, node.inputs[1])?;
    let (k, n) = (b.dims()[0], b.dims()[1]);
    let bytes = b.to_le_bytes();
    let es = element_size(b, &bytes)?;
    let a = rb.get(node.inputs[0])?;
    let b_name = &g.value(node.inputs[1]).name;
    let mut parts = Vec::with_capacity(cols.len());
    for &(c0, c1) in cols {
        let w = c1 - c0;
        let mut block = Vec::with_capacity(k * w * es);
        for r in 0..k {
            block.extend_from_slice(&bytes[(r * n + c0) * es..(r * n + c1) * es]);
        }
        let t = Tensor::from_le_bytes(b.dtype(), [k, w], &block)?;
        let bc = rb.emit_constant(&format!("{b_name}[:, {c0}..{c1}]"), t)?;
        let y = rb.new.add_named(
            &format!("{}[.., {c0}..{c1}]", node.name),
            node.op.clone(),
            &[a, bc],
        )?[0];
        parts.push(y);
    }
    let axis = g.shape(node.outputs[0]).rank().saturating_sub(1);
    rb.emit(&node.name, Op::Concat { axis }, &parts, &node.outputs)
}

/// A scalar of the index dtype.
fn index_scalar(dt: DType, v: usize) -> Result<Tensor> {
    match dt {
        DType::I32 => Tensor::from_i32(Vec::<usize>::new(), vec![v as i32]),
        _ => Tensor::from_i64(Vec::<usize>::new(), vec![v as i64]),
    }
}

/// `T[idx]` as a chain of per-block Gathers picked by `Where(idx < r1, ...)`.
fn split_gather(rb: &mut Rebuild, g: &Graph, node: &Node, rows: &[(usize, usize)]) -> Result<()> {
    let t = the_constant(g, node.inputs[0])?;
    let dims = t.dims().to_vec();
    let v_rows = dims[0];
    let row = t.numel() / v_rows.max(1);
    let bytes = t.to_le_bytes();
    let es = element_size(t, &bytes)?;
    let t_name = g.value(node.inputs[0]).name.clone();
    let idx_old = node.inputs[1];
    let dt = g.dtype(idx_old);
    let idx_shape = g.shape(idx_old).0.clone();
    let idx = rb.get(idx_old)?;
    let gg = &mut rb.new;
    // Gather wraps negative indices: idx < 0 ? idx + V : idx.
    let zero = gg.constant(index_scalar(dt, 0)?)?;
    let v_c = gg.constant(index_scalar(dt, v_rows)?)?;
    let neg = gg.binary(BinaryOp::Lt, idx, zero)?;
    let wrapped = gg.add_(idx, v_c)?;
    let idx = gg.where_(neg, wrapped, idx)?;
    // The block condition, shaped to broadcast over the gathered rows' trailing dims.
    let cond_shape: Vec<i64> = idx_shape
        .iter()
        .map(|&d| d as i64)
        .chain(std::iter::repeat_n(1, dims.len() - 1))
        .collect();
    let idx_b = gg.reshape(idx, &cond_shape)?;
    let mut picked: Option<ValueId> = None;
    // From the last block back, so the first block's Where is outermost and last emitted.
    for (i, &(r0, r1)) in rows.iter().enumerate().rev() {
        let mut bd = dims.clone();
        bd[0] = r1 - r0;
        let block = Tensor::from_le_bytes(t.dtype(), bd, &bytes[r0 * row * es..r1 * row * es])?;
        let gg = &mut rb.new;
        let tc = gg.add_named(&format!("{t_name}[{r0}..{r1}]"), Op::Constant(block), &[])?[0];
        let start = gg.constant(index_scalar(dt, r0)?)?;
        let last = gg.constant(index_scalar(dt, r1 - r0 - 1)?)?;
        let local = gg.binary(BinaryOp::Sub, idx, start)?;
        let local = gg.binary(BinaryOp::Max, local, zero)?;
        let local = gg.binary(BinaryOp::Min, local, last)?;
        let rows_i = gg.add_named(
            &format!("{}[{r0}..{r1}]", node.name),
            Op::Gather { axis: 0 },
            &[tc, local],
        )?[0];
        picked = Some(match picked {
            None => rows_i,
            Some(later) => {
                let end = gg.constant(index_scalar(dt, r1)?)?;
                let inside = gg.binary(BinaryOp::Lt, idx_b, end)?;
                if i == 0 {
                    return rb.emit(
                        &node.name,
                        Op::Where,
                        &[inside, rows_i, later],
                        &node.outputs,
                    );
                }
                gg.where_(inside, rows_i, later)?
            }
        });
    }
    Err(rb.bug(format!("'{}' split into fewer than two blocks", node.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuDevice, Device};

    /// The split graph computes exactly what the original does (on the CPU reference).
    fn same_outputs(g: &Graph, max_bytes: u64, inputs: &[Tensor]) -> Graph {
        assert!(has_oversized_constants(g, max_bytes));
        let (s, n) = split_oversized_constants(g, max_bytes, u64::MAX).unwrap();
        assert!(n >= 1);
        assert!(!has_oversized_constants(&s, max_bytes));
        let want = CpuDevice.run(g, inputs).unwrap().outputs;
        let got = CpuDevice.run(&s, inputs).unwrap().outputs;
        assert_eq!(want, got);
        // Every constant the split graph holds fits.
        for node in s.nodes() {
            if let Op::Constant(t) = &node.op {
                assert!(device_bytes(t.numel()) <= max_bytes, "{}", node.name);
            }
        }
        s
    }

    #[test]
    fn a_matmul_over_the_limit_runs_in_column_blocks() {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [3, 8]);
        let w = g.constant(Tensor::random(DType::F32, [8, 200], 1)).unwrap();
        let y = g.matmul(a, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        // 8 x 200 x 4 = 6,400 bytes; 2,048 a block is 64 columns: 4 blocks (64, 64, 64, 8).
        let s = same_outputs(&g, 2048, &[Tensor::random(DType::F32, [3, 8], 2)]);
        let matmuls = s.nodes().iter().filter(|n| n.op == Op::MatMul).count();
        assert_eq!(matmuls, 4);
        assert_eq!(s.value(s.outputs()[0]).name, g.value(y).name);
    }

    #[test]
    fn an_integer_matmul_over_the_limit_runs_in_column_blocks() {
        let mut g = Graph::new();
        let a = g.input("a", DType::I32, [3, 8]);
        let w = g.constant(Tensor::random(DType::I32, [8, 200], 1)).unwrap();
        let y = g.add(Op::MatMulInteger, &[a, w]).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        let s = same_outputs(&g, 2048, &[Tensor::random(DType::I32, [3, 8], 2)]);
        let blocks = s
            .nodes()
            .iter()
            .filter(|n| n.op == Op::MatMulInteger)
            .count();
        assert_eq!(blocks, 4);
    }

    #[test]
    fn column_blocks_are_whole_tiles_with_the_remainder_apart() {
        // GPT-2's LM head on a 128 MiB limit: 43,648 columns (682 tiles), then 6,592 (103
        // tiles), then the 17 left over.
        assert_eq!(
            column_blocks(50257, (128 << 20) / (768 * 4)),
            Some(vec![(0, 43648), (43648, 50240), (50240, 50257)])
        );
        assert_eq!(column_blocks(256, 128), Some(vec![(0, 128), (128, 256)]));
        assert_eq!(
            column_blocks(100, 30),
            Some(vec![(0, 30), (30, 60), (60, 90), (90, 100)])
        );
        assert_eq!(column_blocks(100, 200), None);
    }

    #[test]
    fn a_gather_over_the_limit_runs_in_row_blocks_with_negative_indices() {
        let mut g = Graph::new();
        let ids = g.input("ids", DType::I64, [2, 5]);
        let table = g.constant(Tensor::random(DType::F32, [37, 4], 3)).unwrap();
        let y = g.gather(table, ids, 0).unwrap();
        g.set_outputs(&[y]).unwrap();
        let idx = Tensor::from_i64([2, 5], vec![0, 9, 10, 36, -1, 20, 19, 29, 30, -37]).unwrap();
        // 10 rows of 16 bytes a block: 4 blocks.
        let s = same_outputs(&g, 160, &[idx]);
        let gathers = s
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, Op::Gather { .. }))
            .count();
        assert_eq!(gathers, 4);
    }

    #[test]
    fn blocks_aim_for_the_preferred_size_under_the_limit() {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [1, 8]);
        let w = g
            .constant(Tensor::random(DType::F32, [8, 1024], 1))
            .unwrap();
        let y = g.matmul(a, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        let matmuls = |block| {
            let (s, _) = split_oversized_constants(&g, 16 << 10, block).unwrap();
            s.nodes().iter().filter(|n| n.op == Op::MatMul).count()
        };
        // 32 KiB over a 16 KiB limit: 2 blocks at the limit, 8 of 4 KiB (128 columns); a
        // preference under one column's 32 bytes falls back to the limit.
        assert_eq!(matmuls(u64::MAX), 2);
        assert_eq!(matmuls(4 << 10), 8);
        assert_eq!(matmuls(16), 2);
    }

    #[test]
    fn a_graph_within_the_limit_is_left_alone() {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [3, 8]);
        let w = g.constant(Tensor::random(DType::F32, [8, 4], 1)).unwrap();
        let y = g.matmul(a, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        assert!(!has_oversized_constants(&g, 1024));
        let (s, n) = split_oversized_constants(&g, 1024, 16).unwrap();
        assert_eq!(n, 0);
        assert_eq!(s.nodes().len(), g.nodes().len());
    }

    #[test]
    fn a_single_column_over_the_limit_is_not_split() {
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [1, 64]);
        let w = g.constant(Tensor::random(DType::F32, [64, 2], 1)).unwrap();
        let y = g.matmul(a, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        assert!(!has_oversized_constants(&g, 100));
    }
}

/// Multiply-adds from which a one-group conv runs staged on a CPU adapter (the WGSL back end's
/// `UBO_CONV_MIN_MACS` is this): the convs [`pad_conv_channels`] pads.
pub const STAGED_CONV_MIN_MACS: u64 = 1 << 21;
/// Output channels from which a one-group conv runs staged on a CPU adapter: writing the image
/// column costs a storage read per element, which a conv of few output channels does not earn
/// back. On lavapipe (Zen 3), batch 1: EfficientNet's 1x1 convs to 16 and 24 channels ran 1.0-1.5x
/// slower staged, to 40 channels 2.4x faster; its 3 -> 32 stem 2x slower (padded to 4 channels).
pub const STAGED_CONV_MIN_OUT: usize = 40;

/// Whether a one-group conv of `out_channels` whose window holds `window` weights an output
/// channel (C x KH x KW) has enough output channels to run staged on a CPU adapter: at least
/// [`STAGED_CONV_MIN_OUT`], or 32 with a window of at least 27 weights (a 3x3 window over 3
/// channels: an RGB stem). (On lavapipe the WGSL back end then sends a window wider than 1x1 of up to 128
/// output channels whose weights fit whole uniform blocks to `conv2d_ubo` instead:
/// `TargetProfile::implicit_conv_max_out`. On lavapipe (Intel Xeon) the 32 -> 32 3x3 conv below took 53.6 ms
/// staged against 24.4 with `conv2d_ubo`.) On lavapipe (Zen 3), batch 1, `bench conv`: YOLOv5's
/// 32 -> 32 3x3 conv at 160x160 ran in 72-74 ms staged against 96-106 ms with `conv2d_ubo`; EfficientNet's
/// 3 -> 32 3x3 stride-2 stem (27 weights, 36 padded) at 2.0-2.2 GFLOP/s staged against 1.6-1.8
/// with `conv2d_gemm` (in the model, with its bias and clip: 7 ms against 15), once the stores
/// read their bias once per element and `conv_stage` its params from a uniform buffer (before
/// those, 23 ms staged against 11-16).
pub fn staged_conv_wide_enough(out_channels: usize, window: usize) -> bool {
    out_channels >= STAGED_CONV_MIN_OUT || (out_channels >= 32 && window >= 27)
}

/// Whether `node` is a one-group f32 conv of a constant 4-D weight whose window holds a
/// multiple-of-4 count of weights only with more input channels, and of at least
/// [`STAGED_CONV_MIN_MACS`]: the channels it would have.
fn padded_channels(g: &Graph, node: &Node) -> Option<usize> {
    let Op::Conv2d(c) = &node.op else { return None };
    let w = constant(g, *node.inputs.get(1)?)?;
    let wd = w.dims();
    if c.groups != 1 || wd.len() != 4 || w.dtype() != DType::F32 {
        return None;
    }
    let (o, ch, taps) = (wd[0], wd[1], wd[2] * wd[3]);
    if (ch * taps).is_multiple_of(4) || taps == 0 {
        return None;
    }
    let out = g.shape(*node.outputs.first()?);
    let macs = out.numel() as u64 * (ch * taps) as u64;
    if macs < STAGED_CONV_MIN_MACS || !staged_conv_wide_enough(o, ch * taps) {
        return None;
    }
    (ch + 1..=ch + 4).find(|c2| (c2 * taps).is_multiple_of(4))
}

/// Pad the input channels of one-group convs whose window (C x KH x KW weights an output
/// channel) is not a multiple of 4 with zero channels (a `Pad` of the input, zero weights), for
/// targets that read conv weights from uniform blocks in vec4 rows (`uniform_block_operands`):
/// an image stem's 3 channels (ResNet's 3 x 7 x 7 = 147, EfficientNet's 27) otherwise keep the
/// slow one-kernel conv. Exact: each added product is 0 x 0. Returns the graph and the count.
pub fn pad_conv_channels(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("pad_conv_channels").entered();
    let mut rb = Rebuild::new(g, "pad_conv_channels");
    let mut padded = 0;
    for node in g.nodes() {
        let Some(c2) = padded_channels(g, node) else {
            rb.keep(node)?;
            continue;
        };
        let w = the_constant(g, node.inputs[1])?;
        let wd = w.dims().to_vec();
        let (o, ch, taps) = (wd[0], wd[1], wd[2] * wd[3]);
        let src = w.to_f32_vec();
        let mut data = vec![0.0f32; o * c2 * taps];
        for oc in 0..o {
            data[oc * c2 * taps..oc * c2 * taps + ch * taps]
                .copy_from_slice(&src[oc * ch * taps..(oc + 1) * ch * taps]);
        }
        let wp = rb.emit_constant(
            &format!("{} (channels padded to {c2})", g.value(node.inputs[1]).name),
            Tensor::from_f32([o, c2, wd[2], wd[3]], data)?,
        )?;
        let x = rb.get(node.inputs[0])?;
        let xp = rb.new.add_named(
            &format!("{}.pad_channels", node.name),
            Op::Pad {
                pads: vec![[0, 0], [0, c2 - ch], [0, 0], [0, 0]],
                mode: PadMode::Constant(0.0),
            },
            &[x],
        )?[0];
        let mut ins = vec![xp, wp];
        if let Some(&b) = node.inputs.get(2) {
            ins.push(rb.get(b)?);
        }
        rb.emit(&node.name, node.op.clone(), &ins, &node.outputs)?;
        padded += 1;
    }
    let out = rb.finish()?;
    if padded == 0 {
        return Ok((out, 0));
    }
    let (out, _) = eliminate_dead_code(&out)?;
    Ok((out, padded))
}

/// Output columns under which a matmul of a constant weight has its columns padded
/// ([`pad_narrow_matmuls`])...
pub const NARROW_MATMUL_COLS: usize = 16;
/// ... where its A holds at least this many elements (rows x K): below it the one-output
/// kernel with its epilogue fused beats a padded product and the slice's own dispatch.
pub const NARROW_MATMUL_MIN_A: usize = 1 << 16;

/// Whether `node` is a MatMul of a 2-D f32 constant weight `[K, N]` with N not a multiple of 4
/// and under [`NARROW_MATMUL_COLS`], of an A of at least [`NARROW_MATMUL_MIN_A`] elements: the
/// padded column count.
fn narrow_cols(g: &Graph, node: &Node) -> Option<usize> {
    if node.op != Op::MatMul {
        return None;
    }
    let w = constant(g, *node.inputs.get(1)?)?;
    let n = *w.dims().get(1)?;
    if w.dims().len() != 2 || w.dtype() != DType::F32 || n.is_multiple_of(4) {
        return None;
    }
    let a = g.shape(*node.inputs.first()?).numel();
    (n < NARROW_MATMUL_COLS && a >= NARROW_MATMUL_MIN_A).then(|| n.next_multiple_of(4))
}

/// Pad the columns of a narrow constant weight (a span head's 2 outputs, a binary classifier)
/// with zeros to a multiple of 4 and slice the product back, for targets that read weights in
/// vec4 rows from textures and uniform blocks (`uniform_block_operands`): with 2 columns only
/// the one-output kernel could compute it (BERT-large's SQuAD head, 128 x 1024 x 2: 0.01x the
/// matmul's rate). Exact: the kept columns are the same sums. Returns the graph and the count.
pub fn pad_narrow_matmuls(g: &Graph) -> Result<(Graph, usize)> {
    let _span = tracing::debug_span!("pad_narrow_matmuls").entered();
    let mut rb = Rebuild::new(g, "pad_narrow_matmuls");
    let mut padded = 0;
    for node in g.nodes() {
        let Some(n4) = narrow_cols(g, node) else {
            rb.keep(node)?;
            continue;
        };
        let w = the_constant(g, node.inputs[1])?;
        let (k, n) = (w.dims()[0], w.dims()[1]);
        let src = w.to_f32_vec();
        let mut data = vec![0.0f32; k * n4];
        for (row, s) in data.chunks_exact_mut(n4).zip(src.chunks_exact(n)) {
            row[..n].copy_from_slice(s);
        }
        let wp = rb.emit_constant(
            &format!("{} (columns padded to {n4})", g.value(node.inputs[1]).name),
            Tensor::from_f32([k, n4], data)?,
        )?;
        let a = rb.get(node.inputs[0])?;
        let y = rb
            .new
            .add_named(&format!("{}.padded", node.name), Op::MatMul, &[a, wp])?[0];
        let dims = rb.new.shape(y).dims().to_vec();
        let mut axes: Vec<SliceAxis> = dims.iter().map(|&d| SliceAxis::full(d)).collect();
        if let Some(last) = axes.last_mut() {
            *last = SliceAxis::normalize(n4, 0, n as i64, 1)
                .ok_or_else(|| crate::Error::Graph("a narrow matmul's slice".into()))?;
        }
        rb.emit(&node.name, Op::Slice { axes }, &[y], &node.outputs)?;
        padded += 1;
    }
    let out = rb.finish()?;
    if padded == 0 {
        return Ok((out, 0));
    }
    let (out, _) = eliminate_dead_code(&out)?;
    Ok((out, padded))
}

#[cfg(test)]
mod narrow_tests {
    use super::*;
    use crate::{CpuDevice, Device};

    /// A span head (1024 -> 2) and a 3-column one get zero columns to 4 and a slice, and compute
    /// the same values bit for bit; 4 or 16 columns, a small A, and a run-value B are left
    /// alone.
    #[test]
    fn narrow_weights_padded_exactly() {
        for (n, pads) in [
            (2usize, true),
            (3, true),
            (4, false),
            (13, true),
            (16, false),
        ] {
            let mut g = Graph::new();
            let x = g.input("x", DType::F32, [2, 32, 1024]);
            let w = g
                .constant(Tensor::random(DType::F32, [1024, n], 2))
                .unwrap();
            let y = g.matmul(x, w).unwrap();
            let b = g.constant(Tensor::random(DType::F32, [n], 3)).unwrap();
            let z = g.add_(y, b).unwrap();
            g.set_outputs(&[z]).unwrap();
            let (p, count) = pad_narrow_matmuls(&g).unwrap();
            assert_eq!(count, usize::from(pads), "{n} columns");
            assert_eq!(p.shape(p.outputs()[0]), g.shape(g.outputs()[0]));
            if pads {
                assert!(p.nodes().iter().any(|nd| matches!(nd.op, Op::Slice { .. })));
            }
            let xs = [Tensor::random(DType::F32, [2, 32, 1024], 1)];
            let want = CpuDevice.run(&g, &xs).unwrap().outputs;
            let got = CpuDevice.run(&p, &xs).unwrap().outputs;
            assert_eq!(got, want, "{n} columns");
        }
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [64, 1024]);
        let w = g.input("w", DType::F32, [1024, 2]);
        let y = g.matmul(x, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        assert_eq!(pad_narrow_matmuls(&g).unwrap().1, 0);
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [63, 1024]);
        let w = g
            .constant(Tensor::random(DType::F32, [1024, 2], 2))
            .unwrap();
        let y = g.matmul(x, w).unwrap();
        g.set_outputs(&[y]).unwrap();
        assert_eq!(pad_narrow_matmuls(&g).unwrap().1, 0, "a small A");
    }
}

#[cfg(test)]
mod pad_tests {
    use super::*;
    use crate::op::Conv2d;
    use crate::{CpuDevice, Device};

    /// A 3-channel 7x7 stem (K = 147) to 64 channels gets a fourth, zero input channel and
    /// computes the same values bit for bit; a conv with K a multiple of 4, too small, or of
    /// few output channels is left alone.
    #[test]
    fn stem_channels_padded_exactly() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [1, 3, 64, 64]);
        let w = g
            .constant(Tensor::random(DType::F32, [64, 3, 7, 7], 2))
            .unwrap();
        let b = g.constant(Tensor::random(DType::F32, [64], 3)).unwrap();
        let y = g.conv2d(x, w, Some(b), Conv2d::padded(3, 2)).unwrap();
        let w2 = g
            .constant(Tensor::random(DType::F32, [8, 64, 3, 3], 4))
            .unwrap();
        let z = g.conv2d(y, w2, None, Conv2d::padded(1, 1)).unwrap();
        g.set_outputs(&[z]).unwrap();
        let (p, n) = pad_conv_channels(&g).unwrap();
        assert_eq!(n, 1);
        let convs: Vec<_> = p
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d(_)))
            .collect();
        assert_eq!(p.shape(convs[0].inputs[1]).dims(), &[64, 4, 7, 7]);
        assert_eq!(p.shape(convs[1].inputs[1]).dims(), &[8, 64, 3, 3]);
        let inputs = [Tensor::random(DType::F32, [1, 3, 64, 64], 1)];
        let want = CpuDevice.run(&g, &inputs).unwrap();
        let got = CpuDevice.run(&p, &inputs).unwrap();
        assert_eq!(got.outputs[0], want.outputs[0]);
        // Under the threshold: unchanged.
        let mut s = Graph::new();
        let x = s.input("x", DType::F32, [1, 3, 8, 8]);
        let w = s
            .constant(Tensor::random(DType::F32, [4, 3, 3, 3], 2))
            .unwrap();
        let y = s.conv2d(x, w, None, Conv2d::padded(1, 1)).unwrap();
        s.set_outputs(&[y]).unwrap();
        assert_eq!(pad_conv_channels(&s).unwrap().1, 0);
        // EfficientNet's 3 -> 32 stem (27 weights a window) is padded to 4 channels; with 16
        // output channels it is too narrow to stage: unchanged.
        for (o, padded) in [(32, 1), (16, 0)] {
            let mut e = Graph::new();
            let x = e.input("x", DType::F32, [1, 3, 224, 224]);
            let w = e
                .constant(Tensor::random(DType::F32, [o, 3, 3, 3], 2))
                .unwrap();
            let y = e.conv2d(x, w, None, Conv2d::padded(1, 2)).unwrap();
            e.set_outputs(&[y]).unwrap();
            let (p, n) = pad_conv_channels(&e).unwrap();
            assert_eq!(n, padded, "{o} output channels");
            if padded == 1 {
                let c = p
                    .nodes()
                    .iter()
                    .find(|n| matches!(n.op, Op::Conv2d(_)))
                    .unwrap();
                assert_eq!(p.shape(c.inputs[1]).dims(), &[32, 4, 3, 3]);
            }
        }
    }
}
