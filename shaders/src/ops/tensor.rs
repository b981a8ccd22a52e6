//! Data movement: transpose, slice, concat, split, gather, gather elements, resize, pad.

use super::Io;
use crate::emit::kernel;
use crate::expr::constant_bits;
use crate::options::LowerOptions;
use crate::params::{one, per, Layout};
use crate::views::view_params;
use crate::{loops, Buf, CopyRegion, Elem, Error, Kernel};
use sfumato_core::op::{CoordTransform, PadMode, ResizeMode, ScatterReduction, SliceAxis};
use sfumato_core::plan::View;
use sfumato_core::shape::contiguous_strides;
use sfumato_core::{DType, Shape};

const COPY: &str = include_str!("../templates/copy.wgsl");
const BLOCK_COPY: &str = include_str!("../templates/block_copy.wgsl");
const GATHER: &str = include_str!("../templates/gather.wgsl");
const GATHER_ELEMENTS: &str = include_str!("../templates/gather_elements.wgsl");
const RESIZE: &str = include_str!("../templates/resize.wgsl");
const PAD: &str = include_str!("../templates/pad.wgsl");

/// A block copy's params (concat, split): `n` elements in blocks of `blk`, block b read at
/// `src_off + b * src_row` and written at `dst_off + b * dst_row` (vec4s where `block_copy_vec4`).
pub const BLOCK_COPY_PARAMS: Layout = Layout::new(
    "block_copy",
    "BC",
    &[
        one("n"),
        one("blk"),
        one("src_row"),
        one("src_off"),
        one("dst_row"),
        one("dst_off"),
    ],
);
/// Gather's params: `count` indices, `len` the axis size, `inner` the dims after it.
pub const GATHER_PARAMS: Layout = Layout::new(
    "gather",
    "GA",
    &[one("n"), one("count"), one("len"), one("inner")],
);
/// GatherElements' params: `len` the data's axis size, `strides` the data's.
pub const GATHER_ELEMENTS_PARAMS: Layout = Layout::new(
    "gather_elements",
    "GE",
    &[
        one("n"),
        one("rank"),
        one("axis"),
        one("len"),
        per("out_dims", 1, "rank"),
        per("strides", 1, "rank"),
    ],
);
/// Resize's params: input and output spatial dims, the mode and the coordinate transform.
pub const RESIZE_PARAMS: Layout = Layout::new(
    "resize",
    "RS",
    &[
        one("n"),
        one("h"),
        one("w"),
        one("oh"),
        one("ow"),
        one("bilinear"),
        one("coord"),
    ],
);
/// Pad's params: its output's element count and the constant's bits (the shape, pads and mode
/// are written into the kernel: [`pad_walk`]).
pub const PAD_PARAMS: Layout = Layout::new("pad", "PD", &[one("n"), one("value")]);

/// A transpose: a copy of input 0 through its permuted strides.
pub fn transpose(
    perm: &[usize],
    x: &Shape,
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let s = x.strides();
    let src = View {
        strides: perm.iter().map(|&p| s[p] as i64).collect(),
        offset: 0,
    };
    read_view(out_shape, src, out_dt, opts)
}

/// A slice: a copy of input 0 through a strided view with an offset.
pub fn slice(
    axes: &[SliceAxis],
    x: &Shape,
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let s = x.strides();
    let src = View {
        strides: axes
            .iter()
            .zip(&s)
            .map(|(a, &s)| a.step * s as i64)
            .collect(),
        offset: axes.iter().zip(&s).map(|(a, &s)| a.start * s as i64).sum(),
    };
    read_view(out_shape, src, out_dt, opts)
}

/// A concat: one block copy per non-empty input.
pub fn concat(
    axis: usize,
    ins: &[Io],
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Vec<Kernel>, Error> {
    // Part i: blocks of len_i * inner elements, placed at `start * inner` in rows of
    // total * inner.
    let inner: usize = out_shape.0[axis + 1..].iter().product();
    let row = out_shape.0[axis] * inner;
    let mut start = 0usize;
    let mut ks = Vec::new();
    for (i, (_, s)) in ins.iter().enumerate() {
        if s.numel() > 0 {
            let blk = s.0[axis] * inner;
            let rows = [blk, 0, row, start * inner];
            ks.push(block_copy(s.numel(), blk, rows, out_dt, i, 0, opts)?);
        }
        start += s.0[axis];
    }
    Ok(ks)
}

/// At most this many copy (and clear) commands for one Concat, Split or zero Pad; more (a concat
/// along a late axis of a tall tensor: many small blocks) keep the block-copy or pad kernel.
pub const MAX_COPY_REGIONS: usize = 256;

/// A Concat or Split as copies of contiguous blocks: `parts` are the sizes along `axis` of the
/// inputs (concat) or outputs (split) of a tensor of `shape`; `None` past
/// [`MAX_COPY_REGIONS`] copies.
pub fn axis_copies(
    shape: &Shape,
    axis: usize,
    parts: &[usize],
    concat: bool,
) -> Option<Vec<CopyRegion>> {
    let outer: usize = shape.0[..axis].iter().product();
    let inner: usize = shape.0[axis + 1..].iter().product();
    let row = (shape.0[axis] * inner) as u64;
    let live = parts.iter().filter(|&&p| p * inner > 0).count();
    if outer * live > MAX_COPY_REGIONS {
        return None;
    }
    let mut regions = Vec::new();
    let mut start = 0u64;
    for (i, &p) in parts.iter().enumerate() {
        let blk = (p * inner) as u64;
        if blk > 0 {
            for o in 0..outer as u64 {
                let (whole, part) = (o * row + start, o * blk);
                regions.push(if concat {
                    CopyRegion {
                        input: i,
                        output: 0,
                        src: part,
                        dst: whole,
                        len: blk,
                        zero: false,
                    }
                } else {
                    CopyRegion {
                        input: 0,
                        output: i,
                        src: whole,
                        dst: part,
                        len: blk,
                        zero: false,
                    }
                });
            }
        }
        start += blk;
    }
    Some(regions)
}

/// A split: one block copy per non-empty output.
pub fn split(
    axis: usize,
    x: &Shape,
    outs: &[Io],
    out_dt: DType,
    opts: &LowerOptions,
) -> Result<Vec<Kernel>, Error> {
    let inner: usize = x.0[axis + 1..].iter().product();
    let row = x.0[axis] * inner;
    let mut start = 0usize;
    let mut ks = Vec::new();
    for (o, (_, s)) in outs.iter().enumerate() {
        if s.numel() > 0 {
            let blk = s.0[axis] * inner;
            let rows = [row, start * inner, blk, 0];
            ks.push(block_copy(s.numel(), blk, rows, out_dt, 0, o, opts)?);
        }
        start += s.0[axis];
    }
    Ok(ks)
}

/// Gather along `axis` of input 0 at the indices of input 1.
pub fn gather(
    axis: usize,
    ins: &[Io],
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let x = &ins[0].1 .0;
    let (_, len, inner) = sfumato_core::interp::split_at_axis(x, axis);
    let count = ins[1].1.numel();
    let params = GATHER_PARAMS
        .fill()
        .set("n", n as u32)
        .set("count", count.max(1) as u32)
        .set("len", len as u32)
        .set("inner", inner.max(1) as u32)
        .finish()?;
    let vals = [
        ("ty", Elem::of(out_dt).wgsl().to_string()),
        ("layout", GATHER_PARAMS.wgsl()),
    ];
    kernel(
        "gather",
        GATHER,
        &vals,
        vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
        params,
        n,
        0,
        &opts.target,
    )
}

/// ScatterRows' params: data's rows and row width, and the number of update rows.
pub const SCATTER_ROWS_PARAMS: Layout = Layout::new(
    "scatter_rows",
    "SR",
    &[one("rows"), one("width"), one("count")],
);

const SCATTER_ROWS: &str = include_str!("../templates/scatter_rows.wgsl");
const SCATTER_COPY: &str = include_str!("../templates/scatter_copy.wgsl");

/// ScatterRows: a copy of data, then one invocation per update element, the first update of
/// each target row combining every update aimed at it in order (`scatter_rows.wgsl`). Its loop
/// passes over every target: `count` trips, so a loop budget bounds the number of updates.
pub fn scatter_rows(
    reduction: ScatterReduction,
    data: &Shape,
    count: usize,
    (out_dt, _): Io,
    opts: &LowerOptions,
) -> Result<Vec<Kernel>, Error> {
    let (rows, width) = (data.0[0], data.0[1]);
    let params = SCATTER_ROWS_PARAMS
        .fill()
        .set("rows", rows as u32)
        .set("width", width as u32)
        .set("count", count as u32)
        .finish()?;
    let elem = Elem::of(out_dt);
    let float = elem == Elem::F32;
    let combine = match reduction {
        ScatterReduction::None => "v",
        ScatterReduction::Add => "old + v",
        ScatterReduction::Mul => "old * v",
        ScatterReduction::Max if float => "max_nan(old, v)",
        ScatterReduction::Min if float => "min_nan(old, v)",
        ScatterReduction::Max => "max(old, v)",
        ScatterReduction::Min => "min(old, v)",
    };
    let layout = ("layout", SCATTER_ROWS_PARAMS.wgsl());
    let copy = kernel(
        "scatter_copy",
        SCATTER_COPY,
        std::slice::from_ref(&layout),
        vec![Buf::In(0), Buf::Out(0)],
        params.clone(),
        rows * width,
        0,
        &opts.target,
    )?;
    let scatter = kernel(
        "scatter_rows",
        SCATTER_ROWS,
        &[
            ("ty", elem.wgsl().to_string()),
            ("combine", combine.to_string()),
            layout,
        ],
        vec![Buf::In(0), Buf::In(1), Buf::In(2), Buf::Out(0)],
        params,
        count * width,
        loops::lp(count as u64),
        &opts.target,
    )?;
    Ok(vec![copy, scatter])
}

/// GatherElements along `axis` (the output has the indices' shape).
pub fn gather_elements(
    axis: usize,
    x: &Shape,
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let rank = x.rank();
    let params = GATHER_ELEMENTS_PARAMS
        .fill()
        .set("n", n as u32)
        .set("rank", rank as u32)
        .set("axis", axis as u32)
        .set("len", x.0[axis] as u32)
        .set_all("out_dims", out_shape.0.iter().map(|&d| d as u32))
        .set_all(
            "strides",
            contiguous_strides(&x.0).iter().map(|&s| s as u32),
        )
        .finish()?;
    let vals = [
        ("ty", Elem::of(out_dt).wgsl().to_string()),
        ("layout", GATHER_ELEMENTS_PARAMS.wgsl()),
    ];
    kernel(
        "gather_elements",
        GATHER_ELEMENTS,
        &vals,
        vec![Buf::In(0), Buf::In(1), Buf::Out(0)],
        params,
        n,
        loops::rank_walk(rank),
        &opts.target,
    )
}

/// Resize of the two spatial dims of an NCHW input to `size`.
pub fn resize(
    mode: ResizeMode,
    coord: CoordTransform,
    size: &[usize],
    x: &Shape,
    (_, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let x = &x.0;
    let params = RESIZE_PARAMS
        .fill()
        .set("n", n as u32)
        .set("h", x[2] as u32)
        .set("w", x[3] as u32)
        .set("oh", size[0] as u32)
        .set("ow", size[1] as u32)
        .set("bilinear", matches!(mode, ResizeMode::Bilinear) as u32)
        .set(
            "coord",
            match coord {
                CoordTransform::HalfPixel => 0,
                CoordTransform::AlignCorners => 1,
                CoordTransform::Asymmetric => 2,
            },
        )
        .finish()?;
    let vals = [("layout", RESIZE_PARAMS.wgsl())];
    kernel(
        "resize",
        RESIZE,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        n,
        0,
        &opts.target,
    )
}

/// A constant Pad of zeros along one axis, every other dim unpadded (an image's channels padded
/// from 3 to 4 for a staged stem), as copy and clear commands: for each block of the dims before
/// the axis, the input's block copied between the zeroed ranges before and after it (a memcpy
/// and a memset on a CPU adapter, where the `pad` kernel walks every output element: lavapipe,
/// EfficientNet-Lite0's 3 -> 4 channel pad, 0.5-1.1 ms as a kernel). `None` for any other pad,
/// or past [`MAX_COPY_REGIONS`] commands.
pub fn pad_copies(
    pads: &[[usize; 2]],
    mode: PadMode,
    x: &Shape,
    (out_dt, out_shape): Io,
) -> Option<Vec<CopyRegion>> {
    let PadMode::Constant(v) = mode else {
        return None;
    };
    if constant_bits(v, out_dt) != 0 || pads.len() != x.rank() || out_shape.rank() != x.rank() {
        return None;
    }
    let mut padded = (0..pads.len()).filter(|&d| pads[d] != [0, 0]);
    let (Some(a), None) = (padded.next(), padded.next()) else {
        return None;
    };
    let outer: usize = x.0[..a].iter().product();
    let inner: usize = x.0[a + 1..].iter().product();
    let [before, after] = pads[a].map(|p| (p * inner) as u64);
    let blk = (x.0[a] * inner) as u64;
    let row = (out_shape.0[a] * inner) as u64;
    // Each block is a copy and, past the first, at least one clear.
    if blk > 0 && outer > MAX_COPY_REGIONS {
        return None;
    }
    let mut regions: Vec<CopyRegion> = Vec::new();
    let mut push = |dst: u64, len: u64, src: Option<u64>| {
        if len == 0 {
            return;
        }
        // A zeroed range that starts where the last one ends extends it.
        if let (None, Some(last)) = (src, regions.last_mut()) {
            if last.zero && last.dst + last.len == dst {
                last.len += len;
                return;
            }
        }
        regions.push(CopyRegion::first(dst, len, src));
    };
    for o in 0..outer as u64 {
        push(o * row, before, None);
        push(o * row + before, blk, Some(o * blk));
        push(o * row + before + blk, after, None);
    }
    (regions.len() <= MAX_COPY_REGIONS).then_some(regions)
}

/// Pad with a constant, a reflection or the edge.
pub fn pad(
    pads: &[[usize; 2]],
    mode: PadMode,
    x: &Shape,
    (out_dt, out_shape): Io,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let n = out_shape.numel();
    let value = match mode {
        PadMode::Constant(v) => constant_bits(v, out_dt),
        PadMode::Reflect | PadMode::Edge => 0,
    };
    let params = PAD_PARAMS
        .fill()
        .set("n", n as u32)
        .set("value", value)
        .finish()?;
    let vals = [
        ("ty", Elem::of(out_dt).wgsl().to_string()),
        ("layout", PAD_PARAMS.wgsl()),
        ("shape", format!("{:?} -> {:?}", x.0, out_shape.0)),
        ("mode", format!("{mode:?}")),
        ("walk", pad_walk(pads, mode, x, out_shape)?),
    ];
    kernel(
        "pad",
        PAD,
        &vals,
        vec![Buf::In(0), Buf::Out(0)],
        params,
        n,
        0,
        &opts.target,
    )
}

/// Pad's index walk, written out for its shape: from the last dim to the first, the output
/// coordinate `c` of `i` (a division by a constant), its input coordinate `v` (the pad before
/// it taken off, reflected or clamped back into the input), and the input offset `off`. A
/// constant pad clears `inside` where a coordinate falls outside the input.
fn pad_walk(pads: &[[usize; 2]], mode: PadMode, x: &Shape, out: &Shape) -> Result<String, Error> {
    let rank = x.rank();
    if pads.len() != rank || out.rank() != rank {
        return Err(Error::Internal(format!(
            "Pad: {} pads for input {:?} and output {:?}",
            pads.len(),
            x.0,
            out.0
        )));
    }
    let strides = x.strides();
    // The walk's literals are i32 (coordinates) and u32 (dims, strides).
    let widest = (0..rank)
        .map(|d| (2 * x.0[d]).max(out.0[d]).max(pads[d][0]).max(strides[d]))
        .max()
        .unwrap_or(0);
    if widest > i32::MAX as usize {
        return Err(Error::Limit(format!(
            "Pad: input {:?} padded to {:?} has a dim, pad or stride past 2^31 (the kernel's \
             index literals are 32-bit)",
            x.0, out.0
        )));
    }
    let mut walk = String::new();
    for d in (0..rank).rev() {
        let (dim, n_in, before) = (out.0[d], x.0[d], pads[d][0]);
        walk += &format!("    // dim {d}: {n_in} -> {dim}, {before} before\n    {{\n");
        walk += &if dim == 1 {
            "        let c = 0u;\n".to_string()
        } else if d == 0 {
            "        let c = rem;\n".to_string()
        } else {
            format!("        let c = rem % {dim}u;\n        rem = rem / {dim}u;\n")
        };
        let stride = strides[d];
        if n_in == 0 {
            walk += "        inside = false;\n";
        } else if before == 0 && n_in == dim {
            walk += &format!("        off = off + c * {stride}u;\n");
        } else {
            let last = n_in - 1;
            walk += &format!("        var v = i32(c) - {before};\n");
            walk += &match mode {
                PadMode::Constant(_) => format!("        inside = inside && v >= 0 && v < {n_in};\n"),
                PadMode::Reflect => format!(
                    "        if (v < 0) {{\n            v = -v;\n        }} else if (v > {last}) {{\n            v = {} - v;\n        }}\n",
                    2 * last
                ),
                PadMode::Edge => String::new(),
            };
            walk += &format!("        off = off + u32(clamp(v, 0, {last})) * {stride}u;\n");
        }
        walk += "    }\n";
    }
    Ok(walk)
}

/// A contiguous copy of a strided view of input 0 (transpose, slice).
pub fn read_view(dims: &Shape, src: View, dt: DType, opts: &LowerOptions) -> Result<Kernel, Error> {
    copy_kernel(dims, src, View::contiguous(dims), dt, 0, 0, opts)
}

fn copy_kernel(
    dims: &Shape,
    src: View,
    dst: View,
    dt: DType,
    input: usize,
    output: usize,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    let params = view_params(dims, &[src, dst])?;
    let vals = [("ty", Elem::of(dt).wgsl().to_string())];
    kernel(
        "copy",
        COPY,
        &vals,
        vec![Buf::In(input), Buf::Out(output)],
        params,
        dims.numel(),
        // view_offset for the source and the destination.
        2 * loops::rank_walk(dims.rank()),
        &opts.target,
    )
}

/// `n` elements in blocks of `blk`: input `input`'s block b at `src_off + b * src_row`, output
/// `output`'s at `dst_off + b * dst_row`; `rows` = [src_row, src_off, dst_row, dst_off].
fn block_copy(
    n: usize,
    blk: usize,
    rows: [usize; 4],
    dt: DType,
    input: usize,
    output: usize,
    opts: &LowerOptions,
) -> Result<Kernel, Error> {
    // Blocks and rows of whole vec4s copy four elements per invocation: a quarter of the
    // invocations, each paying the params loads once (on CPU adapters every storage load is a
    // loop over the SIMD lanes, so those loads cost as much as the copy itself).
    let v = if blk.is_multiple_of(4) && rows.iter().all(|r| r.is_multiple_of(4)) {
        4
    } else {
        1
    };
    let (n, blk) = (n / v, blk / v);
    let [src_row, src_off, dst_row, dst_off] = rows.map(|r| (r / v) as u32);
    let params = BLOCK_COPY_PARAMS
        .fill()
        .set("n", n as u32)
        .set("blk", blk.max(1) as u32)
        .set("src_row", src_row)
        .set("src_off", src_off)
        .set("dst_row", dst_row)
        .set("dst_off", dst_off)
        .finish()?;
    let ty = Elem::of(dt).wgsl();
    let ty = if v == 4 {
        format!("vec4<{ty}>")
    } else {
        ty.to_string()
    };
    // Which block an element is in: in float arithmetic where every index is below 2^24.
    let div = if n <= 1 << 24 {
        "udiv_small(i, params[BC_BLK])"
    } else {
        "i / params[BC_BLK]"
    };
    let vals = [
        ("ty", ty),
        ("layout", BLOCK_COPY_PARAMS.wgsl()),
        ("block_of", div.to_string()),
    ];
    kernel(
        if v == 4 {
            "block_copy_vec4"
        } else {
            "block_copy"
        },
        BLOCK_COPY,
        &vals,
        vec![Buf::In(input), Buf::Out(output)],
        params,
        n,
        0,
        &opts.target,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfumato_core::DType;

    #[test]
    fn zero_pads_along_one_axis_are_copies_and_clears() {
        let pad = |pads: &[[usize; 2]], mode, x: &[usize], out: &[usize]| {
            pad_copies(pads, mode, &Shape::from(x), (DType::F32, &Shape::from(out)))
        };
        let zero = PadMode::Constant(0.0);
        // An RGB stem's channel pad, batch 2: each image copied, its fourth plane cleared;
        // the second image's copy keeps the clears apart.
        let stem = [[0, 0], [0, 1], [0, 0], [0, 0]];
        assert_eq!(
            pad(&stem, zero, &[2, 3, 4, 5], &[2, 4, 4, 5]),
            Some(vec![
                CopyRegion::first(0, 60, Some(0)),
                CopyRegion::first(60, 20, None),
                CopyRegion::first(80, 60, Some(60)),
                CopyRegion::first(140, 20, None),
            ])
        );
        // Pads on both sides of the last axis: a block's after and the next block's before
        // merge into one clear.
        assert_eq!(
            pad(&[[0, 0], [1, 2]], zero, &[2, 3], &[2, 6]),
            Some(vec![
                CopyRegion::first(0, 1, None),
                CopyRegion::first(1, 3, Some(0)),
                CopyRegion::first(4, 3, None),
                CopyRegion::first(7, 3, Some(3)),
                CopyRegion::first(10, 2, None),
            ])
        );
        // Anything else keeps the kernel: another value, -0.0, two padded axes, other modes.
        assert_eq!(
            pad(&stem, PadMode::Constant(1.0), &[1, 3, 4, 5], &[1, 4, 4, 5]),
            None
        );
        assert_eq!(
            pad(&stem, PadMode::Constant(-0.0), &[1, 3, 4, 5], &[1, 4, 4, 5]),
            None
        );
        assert_eq!(pad(&[[1, 0], [0, 1]], zero, &[2, 3], &[3, 4]), None);
        assert_eq!(
            pad(&stem, PadMode::Edge, &[1, 3, 4, 5], &[1, 4, 4, 5]),
            None
        );
        assert_eq!(pad(&[[0, 0], [0, 0]], zero, &[2, 3], &[2, 3]), None);
        // Past the command limit: one copy and one clear a block.
        let rows = MAX_COPY_REGIONS;
        assert_eq!(pad(&[[0, 0], [0, 1]], zero, &[rows, 3], &[rows, 4]), None);
    }
}
