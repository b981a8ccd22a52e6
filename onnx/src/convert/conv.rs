//! Convolutions and pools: Conv and ConvTranspose (1-D and 2-D, 3-D ConvTranspose by depth taps
//! of 2-D ones), MaxPool, AveragePool, LpPool, GlobalAveragePool and GlobalMaxPool.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::op::*;
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("Conv", Tensors(|c| c.conv(false))),
    ("ConvTranspose", Tensors(|c| c.conv(true))),
    ("MaxPool", Tensors(|c| c.max_or_average_pool())),
    ("AveragePool", Tensors(|c| c.max_or_average_pool())),
    ("LpPool", Tensors(|c| c.lp_pool())),
    ("GlobalAveragePool", Tensors(|c| c.global_average_pool())),
    ("GlobalMaxPool", Tensors(|c| c.global_max_pool())),
];

impl Importer<'_> {
    /// `MaxPool`, `AveragePool`.
    fn max_or_average_pool(&mut self) -> R<Vec<ValueId>> {
        let op = self.op.clone();
        let x = self.inp(0)?;
        self.pool(op == "MaxPool", x, false)
    }

    /// `GlobalAveragePool`.
    fn global_average_pool(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        if self.g.shape(x).rank() != 4 {
            return unsup("GlobalAveragePool of a tensor that is not 4-D (NCHW)");
        }
        self.add(Op::GlobalAvgPool, &[x])
    }

    /// `GlobalMaxPool`.
    fn global_max_pool(&mut self) -> R<Vec<ValueId>> {
        let _op = self.op.clone();
        let x = self.inp(0)?;
        let rank = self.g.shape(x).rank();
        if rank < 3 {
            return bad("GlobalMaxPool needs N, C and spatial dims");
        }
        self.add(
            Op::Reduce {
                op: ReduceOp::Max,
                axes: (2..rank).collect(),
                keepdim: true,
            },
            &[x],
        )
    }

    /// Conv and ConvTranspose, 2-D (NCHW) only.
    /// A 1-D conv or pool (`[N, C, L]`) as a 2-D one of height 1: the spatial attributes get
    /// a leading unit entry (pads a zero pair), `x` (and `w`) a unit dim; returns the lifted
    /// values and the output reshape to undo it.
    fn lift_1d(&mut self, vals: &[ValueId]) -> R<Vec<ValueId>> {
        for a in self.attrs.iter_mut() {
            match a.name.as_str() {
                "strides" | "dilations" | "kernel_shape" if a.ints.len() == 1 => {
                    a.ints.insert(0, 1)
                }
                "output_padding" if a.ints.len() == 1 => a.ints.insert(0, 0),
                "pads" if a.ints.len() == 2 => a.ints = vec![0, a.ints[0], 0, a.ints[1]],
                _ => {}
            }
        }
        vals.iter()
            .map(|&v| {
                let mut d = self.shape(v);
                d.insert(2, 1);
                self.reshape(v, d)
            })
            .collect()
    }

    /// Undo [`Importer::lift_1d`] on the first output.
    fn lower_1d(&mut self, mut outs: Vec<ValueId>) -> R<Vec<ValueId>> {
        let mut d = self.shape(outs[0]);
        d.remove(2);
        outs[0] = self.reshape(outs[0], d)?;
        Ok(outs)
    }

    fn conv(&mut self, transpose: bool) -> R<Vec<ValueId>> {
        let (x, w) = (self.inp(0)?, self.inp(1)?);
        let bias = if self.has(2) {
            Some(self.inp(2)?)
        } else {
            None
        };
        if self.g.shape(x).rank() == 3 && self.g.shape(w).rank() == 3 {
            let l = self.lift_1d(&[x, w])?;
            let outs = self.conv2d(transpose, l[0], l[1], bias)?;
            return self.lower_1d(outs);
        }
        if transpose && self.g.shape(x).rank() == 5 && self.g.shape(w).rank() == 5 {
            return Ok(vec![self.conv_transpose_3d(x, w)?]);
        }
        if !transpose {
            if let Some(y) = self.qdq_conv(x, w, bias)? {
                return Ok(vec![y]);
            }
        }
        self.conv2d(transpose, x, w, bias)
    }

    /// A 2-D convolution of `x` by `w` (and `bias`) with this node's Conv attributes.
    pub(super) fn conv2d(
        &mut self,
        transpose: bool,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
    ) -> R<Vec<ValueId>> {
        self.conv_node(transpose, false, x, w, bias)
    }

    /// [`Op::ConvInteger`] with this node's attributes, of i32 operands (and bias).
    pub(super) fn int_conv2d(
        &mut self,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
    ) -> R<ValueId> {
        Ok(self.conv_node(false, true, x, w, bias)?[0])
    }

    fn conv_node(
        &mut self,
        transpose: bool,
        int: bool,
        x: ValueId,
        w: ValueId,
        bias: Option<ValueId>,
    ) -> R<Vec<ValueId>> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() != 4 || ws.len() != 4 {
            return unsup(format!(
                "{}-D convolution (only 2-D, NCHW)",
                xs.len().saturating_sub(2)
            ));
        }
        let two = |name: &str, d: i64| -> R<[usize; 2]> {
            match self.ais(name) {
                None => Ok([d as usize; 2]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => {
                    Ok([v[0] as usize, v[1] as usize])
                }
                Some(v) => bad(format!("{name} = {v:?}")),
            }
        };
        let stride = two("strides", 1)?;
        let dilation = two("dilations", 1)?;
        let groups = self.ai("group", 1);
        if groups < 1 {
            return bad(format!("group = {groups}"));
        }
        let kernel = [ws[2], ws[3]];
        if let Some(k) = self.ais("kernel_shape") {
            if k.len() != 2 || k[0] as usize != kernel[0] || k[1] as usize != kernel[1] {
                return bad(format!(
                    "kernel_shape {k:?} does not match the weight {ws:?}"
                ));
            }
        }
        let mut padding = self.pads4()?;
        let auto = self.astr("auto_pad", "NOTSET");
        if !transpose {
            if let Some(p) = same_pads(&auto, &[xs[2], xs[3]], &kernel, &stride, &dilation)?
                .map(|p| [p[0], p[1], p[2], p[3]])
            {
                padding = p;
            }
            let c = Conv2d {
                stride,
                padding,
                dilation,
                groups: groups as usize,
            };
            let mut ins = vec![x, w];
            ins.extend(bias);
            let op = if int {
                Op::ConvInteger(c)
            } else {
                Op::Conv2d(c)
            };
            return self.add(op, &ins);
        }
        let mut output_padding = two("output_padding", 0)?;
        // An output_shape (or SAME auto_pad: input * stride) fixes the padding: the total is
        // what the full transposed conv has beyond it, split as auto_pad says (SAME_UPPER puts
        // the smaller half first); a shape larger than the full output extends the end.
        let want = match self.ais("output_shape") {
            Some(o) => {
                let o = &o[o.len().saturating_sub(2)..];
                if o.len() != 2 || o.iter().any(|&v| v < 0) {
                    return bad(format!("output_shape {o:?}"));
                }
                Some([o[0] as usize, o[1] as usize])
            }
            None if auto.starts_with("SAME") => Some([xs[2] * stride[0], xs[3] * stride[1]]),
            None => None,
        };
        if auto == "VALID" {
            padding = [0; 4];
        }
        if let Some(want) = want {
            for d in 0..2 {
                let full = stride[d] * (xs[2 + d].max(1) - 1)
                    + output_padding[d]
                    + kernel[d].saturating_sub(1) * dilation[d]
                    + 1;
                if full >= want[d] {
                    let total = full - want[d];
                    let (small, big) = (total / 2, total - total / 2);
                    (padding[d], padding[d + 2]) = if auto == "SAME_UPPER" {
                        (small, big)
                    } else {
                        (big, small)
                    };
                } else {
                    padding[d] = 0;
                    padding[d + 2] = 0;
                    output_padding[d] += want[d] - full;
                }
            }
        }
        let c = ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups: groups as usize,
        };
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.add(Op::ConvTranspose2d(c), &ins)
    }

    /// `pads` as [top, left, bottom, right] (ONNX's begin..., end... order for two dims).
    fn pads4(&self) -> R<[usize; 4]> {
        match self.ais("pads") {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => {
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            Some(p) => unsup(format!("pads {p:?} (2-D, non-negative only)")),
        }
    }

    /// LpPool: `(sum over the window of |x|^p)^(1/p)`, padding counting as 0: the window's size
    /// `K` times an average pool that divides by `K`.
    fn lp_pool(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("LpPool of {dt}"));
        }
        let p = self.ai("p", 2);
        if p < 1 {
            return bad(format!("p = {p} must be at least 1"));
        }
        let a = self.add1(Op::Unary(UnaryOp::Abs), &[x])?;
        let pe = self.scalar(dt, p as f64)?;
        let ap = self.add1(Op::Binary(BinaryOp::Pow), &[a, pe])?;
        // The pool checks kernel_shape first; its product then fits.
        let avg = self.pool(false, ap, true)?[0];
        let window = self
            .ais("kernel_shape")
            .unwrap_or_default()
            .iter()
            .map(|&k| k as f64)
            .product::<f64>();
        let k = self.scalar(dt, window)?;
        let s = self.add1(Op::Binary(BinaryOp::Mul), &[avg, k])?;
        let inv = self.scalar(dt, 1.0 / p as f64)?;
        Ok(vec![self.add1(Op::Binary(BinaryOp::Pow), &[s, inv])?])
    }

    /// MaxPool and AveragePool over 1, 2 or 3 spatial dims. 1-D pools run as 2-D ones of
    /// height 1; 3-D ones as a 2-D pool over (H, W) and one over D, which is exact for both
    /// (a max is separable, and a window's element count is the product of its per-axis counts,
    /// so a mean is a mean of means). `ceil_mode` adds the end padding that gives ONNX's ceil
    /// output size (the last window starting inside the input or its begin padding). Integer
    /// max pools run in f32 (exact for u8 and small integers) and cast back.
    /// With `window_mean` an average that always divides by the whole window (LpPool's sum
    /// over `K`).
    fn pool(&mut self, max: bool, x: ValueId, window_mean: bool) -> R<Vec<ValueId>> {
        let xs = self.shape(x);
        let dt = self.g.dtype(x);
        if !(3..=5).contains(&xs.len()) {
            return unsup(format!("pooling of rank {}", xs.len()));
        }
        if !(dt.is_float() || max && dt.is_int()) {
            return unsup(format!(
                "{} of {dt}",
                if max { "MaxPool" } else { "AveragePool" }
            ));
        }
        let nd = xs.len() - 2;
        let ints = |name: &str, n: usize, default: usize| -> R<Vec<usize>> {
            match self.ais(name) {
                None => Ok(vec![default; n]),
                Some(v) if v.len() == n && v.iter().all(|&x| x >= default as i64) => {
                    Ok(v.iter().map(|&x| x as usize).collect())
                }
                Some(v) => bad(format!("{name} = {v:?} for {nd} spatial dims")),
            }
        };
        let kernel = match self.ais("kernel_shape") {
            Some(k) if k.len() == nd && k.iter().all(|&v| v >= 1) => {
                k.iter().map(|&v| v as usize).collect::<Vec<_>>()
            }
            k => return bad(format!("kernel_shape {k:?} for {nd} spatial dims")),
        };
        let stride = ints("strides", nd, 1)?;
        let dilation = ints("dilations", nd, 1)?;
        let mut pads = ints("pads", 2 * nd, 0)?;
        let spatial = &xs[2..];
        if let Some(p) = same_pads(
            &self.astr("auto_pad", "NOTSET"),
            spatial,
            &kernel,
            &stride,
            &dilation,
        )? {
            pads = p;
        }
        let include_pad = window_mean || self.ai("count_include_pad", 0) != 0;
        // The pads as given: with count_include_pad the divisor counts them but not what
        // ceil_mode adds past them.
        let given_pads = pads.clone();
        if self.ai("ceil_mode", 0) != 0 {
            for d in 0..nd {
                let span = dilation[d] * (kernel[d] - 1) + 1;
                let padded = spatial[d] + pads[d] + pads[nd + d];
                if padded < span {
                    return bad(format!(
                        "the window {span} is larger than the padded input {padded}"
                    ));
                }
                let mut out = (padded - span).div_ceil(stride[d]) + 1;
                if (out - 1) * stride[d] >= spatial[d] + pads[d] {
                    out -= 1;
                }
                let extra = ((out - 1) * stride[d] + span).saturating_sub(padded);
                pads[nd + d] += extra;
            }
        }
        let xf = if dt.is_float() {
            x
        } else {
            self.cast(x, DType::F32)?
        };
        let indices = max && self.n_outputs > 1 && self.ins.len() == 1;
        let col_major = self.ai("storage_order", 0) != 0;
        if indices && nd == 3 {
            return unsup("MaxPool's Indices output of a 3-D pool");
        }
        // The pool over two of the axes, and where its maxima are when MaxPool's Indices are
        // asked for (1-D and 2-D only: one call).
        let pool = |s: &mut Self,
                    v: ValueId,
                    ax: [usize; 2],
                    pad: [usize; 4]|
         -> R<(ValueId, Option<ValueId>)> {
            let get = |a: &[usize], i: usize, d: usize| if i == usize::MAX { d } else { a[i] };
            let p = Pool2d {
                kernel: [get(&kernel, ax[0], 1), get(&kernel, ax[1], 1)],
                stride: [get(&stride, ax[0], 1), get(&stride, ax[1], 1)],
                padding: pad,
                dilation: [get(&dilation, ax[0], 1), get(&dilation, ax[1], 1)],
                count_include_pad: include_pad,
            };
            let op = if max {
                Op::MaxPool2d(p)
            } else {
                Op::AvgPool2d(p)
            };
            let y = s.add1(op, &[v])?;
            let i = if indices {
                Some(s.add1(Op::MaxPoolIndices2d { pool: p, col_major }, &[v])?)
            } else {
                None
            };
            Ok((y, i))
        };
        let none = usize::MAX;
        let (n, c) = (xs[0], xs[1]);
        let (y, idx) = match nd {
            1 => {
                let x4 = self.reshape(xf, vec![n, c, 1, xs[2]])?;
                let (y, i) = pool(self, x4, [none, 0], [0, pads[0], 0, pads[1]])?;
                let l = self.shape(y)[3];
                let i = match i {
                    Some(i) => Some(self.reshape(i, vec![n, c, l])?),
                    None => None,
                };
                (self.reshape(y, vec![n, c, l])?, i)
            }
            2 => pool(self, xf, [0, 1], [pads[0], pads[1], pads[2], pads[3]])?,
            _ => {
                let (d, h, w) = (xs[2], xs[3], xs[4]);
                let x4 = self.reshape(xf, vec![n, c * d, h, w])?;
                let hw = pool(self, x4, [1, 2], [pads[1], pads[2], pads[4], pads[5]])?.0;
                let (oh, ow) = (self.shape(hw)[2], self.shape(hw)[3]);
                let x4 = self.reshape(hw, vec![n, c, d, oh * ow])?;
                let y = pool(self, x4, [0, none], [pads[0], 0, pads[3], 0])?.0;
                let od = self.shape(y)[2];
                (self.reshape(y, vec![n, c, od, oh, ow])?, None)
            }
        };
        let mut y = if dt.is_float() { y } else { self.cast(y, dt)? };
        if !max && include_pad && !window_mean && pads != given_pads {
            // The kernels divided by the whole window; ceil_mode's overhang is not part of the
            // divisor: scale each output by window / (taps inside the input and given pads).
            // One factor per axis (a window's count is the product of its per-axis counts), so
            // the constants hold the sum of the output dims, not their product.
            let out = self.shape(y)[2..].to_vec();
            for (d, &o) in out.iter().enumerate() {
                let span = spatial[d] + given_pads[d] + given_pads[nd + d];
                let factor: Vec<f64> = (0..o)
                    .map(|i| {
                        let inside = (0..kernel[d])
                            .filter(|&k| i * stride[d] + k * dilation[d] < span)
                            .count();
                        kernel[d] as f64 / inside.max(1) as f64
                    })
                    .collect();
                if factor.iter().all(|&f| f == 1.0) {
                    continue;
                }
                let mut dims = vec![1; 2 + nd];
                dims[2 + d] = o;
                let f = self.konst(Tensor::from_f64(dt, dims, &factor))?;
                y = self.add1(Op::Binary(BinaryOp::Mul), &[y, f])?;
            }
        }
        let mut outs = vec![y];
        outs.extend(idx);
        Ok(outs)
    }

    /// 3-D ConvTranspose, NCDHW, as one 2-D ConvTranspose over (H, W) per depth tap `kd` with
    /// the depth folded into the batch: tap `kd` puts input depth `id` at output depth
    /// `id * sd + kd * dd` (before the depth pads are cropped), so each tap's result is spread
    /// by the stride (zeros between), shifted by `kd * dd`, and the taps are summed. The bias is
    /// added once at the end.
    pub(super) fn conv_transpose_3d(&mut self, x: ValueId, w: ValueId) -> R<ValueId> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        let three = |s: &Self, name: &str, d: usize| -> R<[usize; 3]> {
            match s.ais(name) {
                None => Ok([d; 3]),
                Some(v) if v.len() == 3 && v.iter().all(|&x| x >= 0) => {
                    Ok([v[0] as usize, v[1] as usize, v[2] as usize])
                }
                Some(v) => bad(format!("{name} = {v:?} for a 3-D ConvTranspose")),
            }
        };
        let stride = three(self, "strides", 1)?;
        let dilation = three(self, "dilations", 1)?;
        let out_pad = three(self, "output_padding", 0)?;
        if stride.contains(&0) || dilation.contains(&0) {
            return bad("strides and dilations must be positive");
        }
        let pads = match self.ais("pads") {
            None => [0; 6],
            Some(p) if p.len() == 6 && p.iter().all(|&x| x >= 0) => {
                let mut a = [0; 6];
                for (d, &v) in a.iter_mut().zip(&p) {
                    *d = v as usize;
                }
                a
            }
            Some(p) => return bad(format!("pads = {p:?} for a 3-D ConvTranspose")),
        };
        let auto = self.astr("auto_pad", "NOTSET");
        if self.ais("output_shape").is_some() || auto.starts_with("SAME") {
            return unsup("3-D ConvTranspose with output_shape or SAME auto_pad");
        }
        let pads = if auto == "VALID" { [0; 6] } else { pads };
        let groups = self.ai("group", 1);
        if groups < 1 || xs[1] != ws[0] || xs[1] % groups as usize != 0 {
            return bad(format!(
                "group = {groups} with {} input channels and a weight of {ws:?}",
                xs[1]
            ));
        }
        let (n, c, d) = (xs[0], xs[1], xs[2]);
        let kd = ws[2];
        let o = ws[1] * groups as usize;
        // Output depth before the pads are cropped (and the spread input's depth), checked: the
        // attributes come from the file.
        const MAX_DEPTH: usize = 1 << 24;
        let full = (d.max(1) - 1)
            .checked_mul(stride[0])
            .zip((kd.max(1) - 1).checked_mul(dilation[0]))
            .and_then(|(a, b)| a.checked_add(b)?.checked_add(1 + out_pad[0]))
            .filter(|&f| f <= MAX_DEPTH && d.saturating_mul(stride[0]) <= MAX_DEPTH);
        let Some(full) = full else {
            return bad(format!(
                "a 3-D ConvTranspose of depth {d} with stride {} and dilation {} is too deep",
                stride[0], dilation[0]
            ));
        };
        if d == 0 || kd == 0 || pads[0].saturating_add(pads[3]) >= full {
            return bad(format!(
                "a 3-D ConvTranspose of {xs:?} by {ws:?} with pads {pads:?} has no output depth"
            ));
        }
        // [N, C, D, H, W] -> [N * D, C, H, W]
        let xt = self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1, 3, 4],
            },
            &[x],
        )?;
        let xt = self.reshape(xt, vec![n * d, c, xs[3], xs[4]])?;
        let mut sum: Option<ValueId> = None;
        let (mut plane, mut hw) = (0, (0, 0));
        for k in 0..kd {
            let mut axes: Vec<SliceAxis> = ws.iter().map(|&s| SliceAxis::full(s)).collect();
            axes[2] = SliceAxis {
                start: k as i64,
                step: 1,
                len: 1,
            };
            let wk = self.add1(Op::Slice { axes }, &[w])?;
            let wk = self.reshape(wk, vec![ws[0], ws[1], ws[3], ws[4]])?;
            let ct = ConvTranspose2d {
                stride: [stride[1], stride[2]],
                padding: [pads[1], pads[2], pads[4], pads[5]],
                output_padding: [out_pad[1], out_pad[2]],
                dilation: [dilation[1], dilation[2]],
                groups: groups as usize,
            };
            let z = self.add1(Op::ConvTranspose2d(ct), &[xt, wk])?;
            let zs = self.shape(z);
            plane = zs[1] * zs[2] * zs[3];
            hw = (zs[2], zs[3]);
            // Spread by the depth stride: [N, D, 1, P] padded to [N, D, sd, P] is depth
            // id * sd, then shifted by k * dd within the full depth.
            let z = self.reshape(z, vec![n, d, 1, plane])?;
            let z = self.add1(
                Op::Pad {
                    pads: vec![[0, 0], [0, 0], [0, stride[0] - 1], [0, 0]],
                    mode: PadMode::Constant(0.0),
                },
                &[z],
            )?;
            let mut z = self.reshape(z, vec![n, d * stride[0], plane])?;
            let shift = k * dilation[0];
            let room = full - shift;
            if d * stride[0] > room {
                // Only trailing zeros of the spread fall past the end.
                let axes = vec![
                    SliceAxis::full(n),
                    SliceAxis {
                        start: 0,
                        step: 1,
                        len: room,
                    },
                    SliceAxis::full(plane),
                ];
                z = self.add1(Op::Slice { axes }, &[z])?;
            }
            let len = self.shape(z)[1];
            let z = self.add1(
                Op::Pad {
                    pads: vec![[0, 0], [shift, full - shift - len], [0, 0]],
                    mode: PadMode::Constant(0.0),
                },
                &[z],
            )?;
            sum = Some(match sum {
                None => z,
                Some(s) => self.bin(BinaryOp::Add, s, z)?,
            });
        }
        let sum = sum.ok_or_else(|| super::Fail::Bad("no depth taps".into()))?;
        let od = full - pads[0] - pads[3];
        let axes = vec![
            SliceAxis::full(n),
            SliceAxis {
                start: pads[0] as i64,
                step: 1,
                len: od,
            },
            SliceAxis::full(plane),
        ];
        let y = self.add1(Op::Slice { axes }, &[sum])?;
        let y = self.reshape(y, vec![n, od, o, hw.0, hw.1])?;
        let mut y = self.add1(
            Op::Transpose {
                perm: vec![0, 2, 1, 3, 4],
            },
            &[y],
        )?;
        if self.has(2) {
            let b = self.inp(2)?;
            let b = self.reshape(b, vec![1, o, 1, 1, 1])?;
            y = self.bin(BinaryOp::Add, y, b)?;
        }
        Ok(y)
    }
}

/// `auto_pad` SAME_UPPER/SAME_LOWER/VALID as explicit pads; `None` for NOTSET.
fn same_pads(
    auto: &str,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> R<Option<Vec<usize>>> {
    let n = input.len();
    match auto {
        "NOTSET" | "" => Ok(None),
        "VALID" => Ok(Some(vec![0; 2 * n])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0usize; 2 * n];
            for d in 0..n {
                let out = input[d].div_ceil(stride[d].max(1));
                let span = dilation[d] * (kernel[d].max(1) - 1) + 1;
                let total = ((out.saturating_sub(1)) * stride[d] + span).saturating_sub(input[d]);
                let (small, big) = (total / 2, total - total / 2);
                if auto == "SAME_UPPER" {
                    p[d] = small;
                    p[d + n] = big;
                } else {
                    p[d] = big;
                    p[d + n] = small;
                }
            }
            Ok(Some(p))
        }
        other => bad(format!("auto_pad '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::*;
    use crate::testutil::*;
    use crate::{import, tensor, ImportOptions};
    use proptest::prelude::*;
    use sfumato_core::{DType, Tensor};

    /// 3-D ConvTranspose straight from its definition: every input element scatters its weights.
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose_3d_naive(
        x: &[f32],
        xs: [usize; 5],
        w: &[f32],
        ws: [usize; 5],
        b: &[f32],
        s: [usize; 3],
        dl: [usize; 3],
        p: [usize; 6],
        op: [usize; 3],
        groups: usize,
    ) -> (Vec<f32>, [usize; 5]) {
        let (n, c) = (xs[0], xs[1]);
        let (og, o) = (ws[1], ws[1] * groups);
        let out: Vec<usize> = (0..3)
            .map(|d| (xs[2 + d] - 1) * s[d] + (ws[2 + d] - 1) * dl[d] + 1 + op[d] - p[d] - p[3 + d])
            .collect();
        let ys = [n, o, out[0], out[1], out[2]];
        let mut y = vec![0f32; ys.iter().product()];
        let cg = c / groups;
        for ni in 0..n {
            for ci in 0..c {
                let g = ci / cg;
                for (id, ih, iw) in (0..xs[2])
                    .flat_map(|a| (0..xs[3]).flat_map(move |b| (0..xs[4]).map(move |c| (a, b, c))))
                {
                    let xv = x[(((ni * c + ci) * xs[2] + id) * xs[3] + ih) * xs[4] + iw];
                    for oi in 0..og {
                        for (kd, kh, kw) in (0..ws[2]).flat_map(|a| {
                            (0..ws[3]).flat_map(move |b| (0..ws[4]).map(move |c| (a, b, c)))
                        }) {
                            let pos = [
                                (id * s[0] + kd * dl[0]) as isize - p[0] as isize,
                                (ih * s[1] + kh * dl[1]) as isize - p[1] as isize,
                                (iw * s[2] + kw * dl[2]) as isize - p[2] as isize,
                            ];
                            if (0..3).any(|d| pos[d] < 0 || pos[d] >= out[d] as isize) {
                                continue;
                            }
                            let wv = w[(((ci * og + oi) * ws[2] + kd) * ws[3] + kh) * ws[4] + kw];
                            let oc = g * og + oi;
                            let yi = (((ni * o + oc) * out[0] + pos[0] as usize) * out[1]
                                + pos[1] as usize)
                                * out[2]
                                + pos[2] as usize;
                            y[yi] += xv * wv;
                        }
                    }
                }
            }
        }
        for (i, v) in y.iter_mut().enumerate() {
            *v += b
                .get((i / (out[0] * out[1] * out[2])) % o)
                .copied()
                .unwrap_or(0.0);
        }
        (y, ys)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// 3-D ConvTranspose (depth taps of 2-D ones) against the definition: strides, dilations,
        /// pads, output_padding, groups and bias.
        #[test]
        fn conv_transpose_3d_matches_its_definition(
            n in 1usize..3, groups in 1usize..3, cg in 1usize..3, og in 1usize..3,
            sp in prop::collection::vec(1usize..4, 3), k in prop::collection::vec(1usize..4, 3),
            s in prop::collection::vec(1usize..3, 3), dl in prop::collection::vec(1usize..3, 3),
            p in prop::collection::vec(0usize..2, 6), op in prop::collection::vec(0usize..2, 3),
            bias in any::<bool>(), seed in any::<u64>()
        ) {
            let c = cg * groups;
            let xs = [n, c, sp[0], sp[1], sp[2]];
            let ws = [c, og, k[0], k[1], k[2]];
            // output_padding must be smaller than the stride or the dilation.
            let op: Vec<usize> = (0..3).map(|d| op[d].min(s[d].max(dl[d]) - 1)).collect();
            let full: Vec<usize> = (0..3).map(|d| (sp[d] - 1) * s[d] + (k[d] - 1) * dl[d] + 1 + op[d]).collect();
            prop_assume!((0..3).all(|d| p[d] + p[3 + d] < full[d]));
            let x = Tensor::random(DType::F32, xs, seed);
            let w = Tensor::random(DType::F32, ws, seed + 1);
            let b = Tensor::random(DType::F32, [c.max(og * groups)], seed + 2);
            let b = Tensor::from_f32([og * groups], b.to_f32_vec()[..og * groups].to_vec()).unwrap();
            let mut ins = vec!["x", "w"];
            let mut inits = vec![tensor::to_proto(&w, "w")];
            if bias {
                ins.push("b");
                inits.push(tensor::to_proto(&b, "b"));
            }
            let to_i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
            let bytes = model(
                vec![node("ConvTranspose", &ins, &["y"], vec![
                    ints("strides", &to_i(&s)), ints("dilations", &to_i(&dl)), ints("pads", &to_i(&p)),
                    ints("output_padding", &to_i(&op)),
                    AttributeProto { name: "group".into(), r#type: attr_type::INT, i: groups as i64, ..Default::default() },
                ])],
                inits,
                vec![vi("x", data_type::FLOAT, &xs.iter().map(|&d| Ok(d as i64)).collect::<Vec<_>>())],
                vec![vi("y", data_type::FLOAT, &[])],
            );
            let m = import(&bytes, &ImportOptions::default()).unwrap();
            let got = run_cpu(&m.graph, std::slice::from_ref(&x)).remove(0);
            let bv = if bias { b.to_f32_vec() } else { vec![] };
            let arr3 = |v: &[usize]| [v[0], v[1], v[2]];
            let (want, ys) = conv_transpose_3d_naive(&x.to_f32_vec(), xs, &w.to_f32_vec(), ws, &bv,
                arr3(&s), arr3(&dl), [p[0], p[1], p[2], p[3], p[4], p[5]], arr3(&op), groups);
            prop_assert_eq!(got.dims(), &ys[..]);
            let want = Tensor::from_f32(ys, want).unwrap();
            prop_assert!(got.all_close(&want, 1e-4, 1e-5), "{:?}", got.max_diff(&want));
        }
    }
}
