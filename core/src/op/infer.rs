//! Shape and dtype inference ([`Op::infer`]), by op family. The match in [`Op::infer`] is
//! exhaustive, so a new op does not compile until it is routed to a family; each family's
//! function holds the rules of its ops.

use super::*;

type Inferred = Result<Vec<(DType, Shape)>, String>;

/// The checks every family's rules use, as closures over `inputs` named at the call site.
macro_rules! checks {
    ($inputs:ident, $arity:ident, $float:ident, $same_dtype:ident, $rank:ident, $one:ident) => {
        #[allow(unused_variables)]
        let $arity = |lo: usize, hi: usize| -> Result<(), String> {
            if $inputs.len() < lo || $inputs.len() > hi {
                Err(if lo == hi {
                    format!("expects {lo} inputs, got {}", $inputs.len())
                } else {
                    format!("expects {lo} to {hi} inputs, got {}", $inputs.len())
                })
            } else {
                Ok(())
            }
        };
        #[allow(unused_variables)]
        let $float = |i: usize| -> Result<(), String> {
            if $inputs[i].0.is_float() {
                Ok(())
            } else {
                Err(format!(
                    "input {i} must be a float tensor, got {}",
                    $inputs[i].0
                ))
            }
        };
        #[allow(unused_variables)]
        let $same_dtype = |i: usize, j: usize| -> Result<(), String> {
            if $inputs[i].0 == $inputs[j].0 {
                Ok(())
            } else {
                Err(format!(
                    "inputs {i} and {j} must have one dtype, got {} and {}",
                    $inputs[i].0, $inputs[j].0
                ))
            }
        };
        #[allow(unused_variables)]
        let $rank = |i: usize, r: usize| -> Result<(), String> {
            if $inputs[i].1.rank() == r {
                Ok(())
            } else {
                Err(format!(
                    "input {i} must have rank {r}, got shape {}",
                    $inputs[i].1
                ))
            }
        };
        #[allow(unused_variables)]
        let $one = |d: DType, s: Vec<usize>| Ok(vec![(d, Shape(s))]);
    };
}

impl Op {
    /// The dtypes and shapes of the outputs for these inputs, or why the inputs do not fit.
    pub fn infer(&self, inputs: &[(DType, &Shape)]) -> Inferred {
        match self {
            Op::Constant(_)
            | Op::MatMul
            | Op::MatMulInteger
            | Op::Gemm(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Cast { .. }
            | Op::BitCast { .. } => math(self, inputs),
            Op::Conv2d(_)
            | Op::ConvInteger(_)
            | Op::ConvTranspose2d(_)
            | Op::BatchNorm { .. }
            | Op::Softmax { .. }
            | Op::LayerNorm { .. }
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::MaxPoolIndices2d { .. }
            | Op::GlobalAvgPool
            | Op::Resize { .. } => nn(self, inputs),
            Op::Reduce { .. } | Op::ArgReduce { .. } => reduce(self, inputs),
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Concat { .. }
            | Op::Slice { .. }
            | Op::Split { .. }
            | Op::Gather { .. }
            | Op::Pad { .. }
            | Op::GatherElements { .. }
            | Op::ScatterRows { .. } => tensor(self, inputs),
            Op::Recurrence(r) => recurrence(r, inputs),
        }
    }
}

/// Inference for elementwise ops, Constant, MatMul and Gemm.
fn math(op: &Op, inputs: &[(DType, &Shape)]) -> Inferred {
    checks!(inputs, arity, float, same_dtype, rank, one);
    match op {
        Op::Constant(t) => {
            arity(0, 0)?;
            one(t.dtype(), t.dims().to_vec())
        }
        Op::MatMul | Op::MatMulInteger => {
            arity(2, 2)?;
            if *op == Op::MatMul {
                float(0)?;
            } else if inputs[0].0 != DType::I32 {
                return Err(format!(
                    "input 0 must be an i32 tensor, got {}",
                    inputs[0].0
                ));
            }
            same_dtype(0, 1)?;
            let (a, b) = (inputs[0].1, inputs[1].1);
            if a.rank() == 0 || b.rank() == 0 {
                return Err("operands must have rank >= 1".into());
            }
            let (m, k1) = if a.rank() == 1 {
                (None, a.0[0])
            } else {
                (Some(a.0[a.rank() - 2]), a.0[a.rank() - 1])
            };
            let (k2, n) = if b.rank() == 1 {
                (b.0[0], None)
            } else {
                (b.0[b.rank() - 2], Some(b.0[b.rank() - 1]))
            };
            if k1 != k2 {
                return Err(format!("inner dims differ: {a} @ {b}"));
            }
            let ba = Shape(a.0[..a.rank().saturating_sub(2)].to_vec());
            let bb = Shape(b.0[..b.rank().saturating_sub(2)].to_vec());
            let batch = Shape::broadcast(&ba, &bb)
                .ok_or_else(|| format!("batch dims do not broadcast: {a} @ {b}"))?;
            let mut out = batch.0;
            out.extend(m);
            out.extend(n);
            one(inputs[0].0, out)
        }
        Op::Gemm(g) => {
            arity(2, 3)?;
            float(0)?;
            same_dtype(0, 1)?;
            rank(0, 2)?;
            rank(1, 2)?;
            let (a, b) = (inputs[0].1, inputs[1].1);
            let (m, k1) = if g.trans_a {
                (a.0[1], a.0[0])
            } else {
                (a.0[0], a.0[1])
            };
            let (k2, n) = if g.trans_b {
                (b.0[1], b.0[0])
            } else {
                (b.0[0], b.0[1])
            };
            if k1 != k2 {
                return Err(format!(
                    "inner dims differ: A {a} (trans {}) and B {b} (trans {})",
                    g.trans_a, g.trans_b
                ));
            }
            let out = Shape(vec![m, n]);
            if inputs.len() == 3 {
                same_dtype(0, 2)?;
                let c = inputs[2].1;
                if c.rank() > 2 || Shape::broadcast(c, &out).as_ref() != Some(&out) {
                    return Err(format!("C {c} does not broadcast to the output {out}"));
                }
            }
            one(inputs[0].0, out.0)
        }
        Op::Unary(u) => {
            arity(1, 1)?;
            let d = inputs[0].0;
            let ok = d.is_float() || (u.allows_int() && matches!(d, DType::I32 | DType::I64));
            if !ok {
                return Err(format!("{} is not defined on {d}", u.name()));
            }
            one(d, inputs[0].1 .0.clone())
        }
        Op::Binary(b) => {
            arity(2, 2)?;
            same_dtype(0, 1)?;
            if !b.is_comparison() && inputs[0].0 == DType::Bool {
                return Err(format!("{} is not defined on bool", b.name()));
            }
            if b.is_bitwise() && !inputs[0].0.is_int() {
                return Err(format!("{} is not defined on {}", b.name(), inputs[0].0));
            }
            let s = Shape::broadcast(inputs[0].1, inputs[1].1).ok_or_else(|| {
                format!(
                    "shapes {} and {} do not broadcast",
                    inputs[0].1, inputs[1].1
                )
            })?;
            one(
                if b.is_comparison() {
                    DType::Bool
                } else {
                    inputs[0].0
                },
                s.0,
            )
        }
        Op::Where => {
            arity(3, 3)?;
            if inputs[0].0 != DType::Bool {
                return Err(format!("condition must be bool, got {}", inputs[0].0));
            }
            same_dtype(1, 2)?;
            let s = Shape::broadcast(inputs[0].1, inputs[1].1)
                .and_then(|s| Shape::broadcast(&s, inputs[2].1))
                .ok_or_else(|| {
                    format!(
                        "shapes {}, {} and {} do not broadcast",
                        inputs[0].1, inputs[1].1, inputs[2].1
                    )
                })?;
            one(inputs[1].0, s.0)
        }
        Op::Cast { to, .. } => {
            arity(1, 1)?;
            one(*to, inputs[0].1 .0.clone())
        }
        Op::BitCast { to } => {
            arity(1, 1)?;
            let from = inputs[0].0;
            for d in [from, *to] {
                if crate::dtype::bitcast_width(d).is_none() {
                    return Err(format!("BitCast of {d} (8-, 16- and 32-bit types only)"));
                }
            }
            if crate::dtype::bitcast_width(from) != crate::dtype::bitcast_width(*to) {
                return Err(format!("BitCast from {from} to {to}: the widths differ"));
            }
            one(*to, inputs[0].1 .0.clone())
        }
        other => Err(format!("{} is not routed to this family", other.name())),
    }
}

/// Inference for convolutions, pools, normalizations, Softmax and Resize.
fn nn(op: &Op, inputs: &[(DType, &Shape)]) -> Inferred {
    checks!(inputs, arity, float, same_dtype, rank, one);
    match op {
        Op::Conv2d(c) | Op::ConvInteger(c) => {
            arity(2, 3)?;
            if matches!(op, Op::Conv2d(_)) {
                float(0)?;
            } else if inputs[0].0 != DType::I32 {
                return Err(format!(
                    "input 0 must be an i32 tensor, got {}",
                    inputs[0].0
                ));
            }
            same_dtype(0, 1)?;
            rank(0, 4)?;
            rank(1, 4)?;
            let (x, w) = (&inputs[0].1 .0, &inputs[1].1 .0);
            if c.groups == 0 || c.stride.contains(&0) || c.dilation.contains(&0) {
                return Err("groups, stride and dilation must be positive".into());
            }
            if x[1] % c.groups != 0 || w[0] % c.groups != 0 || x[1] / c.groups != w[1] {
                return Err(format!(
                    "channels do not fit groups {}: x has {} channels, w is {}",
                    c.groups, x[1], inputs[1].1
                ));
            }
            if inputs.len() == 3 {
                same_dtype(0, 2)?;
                if inputs[2].1 .0 != [w[0]] {
                    return Err(format!("bias must be [{}], got {}", w[0], inputs[2].1));
                }
            }
            let oh = conv_out(
                x[2],
                w[2],
                c.stride[0],
                c.padding[0] + c.padding[2],
                c.dilation[0],
            )?;
            let ow = conv_out(
                x[3],
                w[3],
                c.stride[1],
                c.padding[1] + c.padding[3],
                c.dilation[1],
            )?;
            one(inputs[0].0, vec![x[0], w[0], oh, ow])
        }
        Op::ConvTranspose2d(c) => {
            arity(2, 3)?;
            float(0)?;
            same_dtype(0, 1)?;
            rank(0, 4)?;
            rank(1, 4)?;
            let (x, w) = (&inputs[0].1 .0, &inputs[1].1 .0);
            if c.groups == 0 || c.stride.contains(&0) || c.dilation.contains(&0) {
                return Err("groups, stride and dilation must be positive".into());
            }
            if x[1] != w[0] || x[1] % c.groups != 0 {
                return Err(format!(
                    "x has {} channels, w is {} (groups {})",
                    x[1], inputs[1].1, c.groups
                ));
            }
            let o = w[1] * c.groups;
            if inputs.len() == 3 {
                same_dtype(0, 2)?;
                if inputs[2].1 .0 != [o] {
                    return Err(format!("bias must be [{o}], got {}", inputs[2].1));
                }
            }
            let dim = |i: usize,
                       k: usize,
                       s: usize,
                       p: usize,
                       d: usize,
                       op: usize|
             -> Result<usize, String> {
                let full = (i.max(1) - 1) * s + d * (k - 1) + op + 1;
                if i == 0 || full <= p {
                    Err(format!(
                        "output would be empty (input {i}, kernel {k}, padding {p})"
                    ))
                } else {
                    Ok(full - p)
                }
            };
            let oh = dim(
                x[2],
                w[2],
                c.stride[0],
                c.padding[0] + c.padding[2],
                c.dilation[0],
                c.output_padding[0],
            )?;
            let ow = dim(
                x[3],
                w[3],
                c.stride[1],
                c.padding[1] + c.padding[3],
                c.dilation[1],
                c.output_padding[1],
            )?;
            one(inputs[0].0, vec![x[0], o, oh, ow])
        }
        Op::BatchNorm { .. } => {
            arity(5, 5)?;
            float(0)?;
            let x = inputs[0].1;
            if x.rank() < 2 {
                return Err(format!("x must have rank >= 2, got {x}"));
            }
            for (i, (_, s)) in inputs.iter().enumerate().skip(1) {
                same_dtype(0, i)?;
                if s.0 != [x.0[1]] {
                    return Err(format!("input {i} must be [{}], got {s}", x.0[1]));
                }
            }
            one(inputs[0].0, x.0.clone())
        }
        Op::Softmax { axis } => {
            arity(1, 1)?;
            float(0)?;
            check_axis(*axis, inputs[0].1)?;
            one(inputs[0].0, inputs[0].1 .0.clone())
        }
        Op::LayerNorm { axis, .. } => {
            arity(2, 3)?;
            float(0)?;
            let x = inputs[0].1;
            check_axis(*axis, x)?;
            let norm = &x.0[*axis..];
            for (i, (_, s)) in inputs.iter().enumerate().skip(1) {
                same_dtype(0, i)?;
                if s.0 != norm {
                    return Err(format!(
                        "input {i} must have shape {}, got {s}",
                        Shape(norm.to_vec())
                    ));
                }
            }
            one(inputs[0].0, x.0.clone())
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) | Op::MaxPoolIndices2d { pool: p, .. } => {
            arity(1, 1)?;
            float(0)?;
            rank(0, 4)?;
            let x = &inputs[0].1 .0;
            if p.kernel.contains(&0) || p.stride.contains(&0) || p.dilation.contains(&0) {
                return Err("kernel, stride and dilation must be positive".into());
            }
            if p.padding[0].max(p.padding[2]) >= p.kernel[0] * p.dilation[0]
                || p.padding[1].max(p.padding[3]) >= p.kernel[1] * p.dilation[1]
            {
                return Err(format!(
                    "padding {:?} must be smaller than the window {:?}",
                    p.padding, p.kernel
                ));
            }
            let oh = conv_out(
                x[2],
                p.kernel[0],
                p.stride[0],
                p.padding[0] + p.padding[2],
                p.dilation[0],
            )?;
            let ow = conv_out(
                x[3],
                p.kernel[1],
                p.stride[1],
                p.padding[1] + p.padding[3],
                p.dilation[1],
            )?;
            let dt = if matches!(op, Op::MaxPoolIndices2d { .. }) {
                DType::I64
            } else {
                inputs[0].0
            };
            one(dt, vec![x[0], x[1], oh, ow])
        }
        Op::GlobalAvgPool => {
            arity(1, 1)?;
            float(0)?;
            let x = inputs[0].1;
            if x.rank() < 3 {
                return Err(format!("x must have rank >= 3, got {x}"));
            }
            let mut out = x.0.clone();
            for d in out.iter_mut().skip(2) {
                *d = 1;
            }
            one(inputs[0].0, out)
        }
        Op::Resize { size, .. } => {
            arity(1, 1)?;
            float(0)?;
            rank(0, 4)?;
            let x = &inputs[0].1 .0;
            if size.contains(&0) {
                return Err(format!("output size {size:?} must be positive"));
            }
            if x[2] == 0 || x[3] == 0 {
                return Err(format!("cannot resize an empty image {}", inputs[0].1));
            }
            one(inputs[0].0, vec![x[0], x[1], size[0], size[1]])
        }
        other => Err(format!("{} is not routed to this family", other.name())),
    }
}

/// Inference for reductions.
fn reduce(op: &Op, inputs: &[(DType, &Shape)]) -> Inferred {
    checks!(inputs, arity, float, same_dtype, rank, one);
    match op {
        Op::Reduce { op, axes, keepdim } => {
            arity(1, 1)?;
            if inputs[0].0 == DType::Bool {
                return Err(format!("{} is not defined on bool", op.name()));
            }
            let x = inputs[0].1;
            for w in axes.windows(2) {
                if w[0] >= w[1] {
                    return Err(format!("axes {axes:?} must be sorted and distinct"));
                }
            }
            for &a in axes {
                check_axis(a, x)?;
                if matches!(op, ReduceOp::Max | ReduceOp::Min) && x.0[a] == 0 {
                    return Err(format!("{} over an empty axis {a} of {x}", op.name()));
                }
            }
            let out = reduced_dims(&x.0, axes, *keepdim);
            one(inputs[0].0, out)
        }
        Op::ArgReduce { axis, keepdim, .. } => {
            arity(1, 1)?;
            let x = inputs[0].1;
            check_axis(*axis, x)?;
            if inputs[0].0 == DType::Bool {
                return Err(format!("{} is not defined on bool", op.name()));
            }
            if x.0[*axis] == 0 {
                return Err(format!("{} over an empty axis {axis} of {x}", op.name()));
            }
            one(DType::I64, reduced_dims(&x.0, &[*axis], *keepdim))
        }
        other => Err(format!("{} is not routed to this family", other.name())),
    }
}

/// Inference for layout and indexing ops.
fn tensor(op: &Op, inputs: &[(DType, &Shape)]) -> Inferred {
    checks!(inputs, arity, float, same_dtype, rank, one);
    match op {
        Op::Reshape { shape } => {
            arity(1, 1)?;
            let s = Shape(shape.clone());
            if s.checked_numel() != Some(inputs[0].1.numel()) {
                return Err(format!("cannot reshape {} to {s}", inputs[0].1));
            }
            one(inputs[0].0, shape.clone())
        }
        Op::Transpose { perm } => {
            arity(1, 1)?;
            let x = inputs[0].1;
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm
                    .iter()
                    .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "perm {perm:?} is not a permutation of the dims of {x}"
                ));
            }
            one(inputs[0].0, perm.iter().map(|&p| x.0[p]).collect())
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("expects at least 1 input".into());
            }
            let first = inputs[0].1;
            check_axis(*axis, first)?;
            let mut out = first.0.clone();
            out[*axis] = 0;
            for (i, (d, s)) in inputs.iter().enumerate() {
                same_dtype(0, i)?;
                let same = s.rank() == first.rank()
                    && (0..s.rank()).all(|j| j == *axis || s.0[j] == first.0[j]);
                if !same {
                    return Err(format!(
                        "input {i} {s} does not match input 0 {first} outside axis {axis}"
                    ));
                }
                let _ = d;
                out[*axis] += s.0[*axis];
            }
            one(inputs[0].0, out)
        }
        Op::Slice { axes } => {
            arity(1, 1)?;
            let x = inputs[0].1;
            if axes.len() != x.rank() {
                return Err(format!(
                    "slice has {} axes, input {x} has {}",
                    axes.len(),
                    x.rank()
                ));
            }
            for (d, a) in axes.iter().enumerate() {
                if a.step == 0 {
                    return Err(format!("step 0 on axis {d}"));
                }
                if a.len > 0 {
                    let last = a.start + (a.len as i64 - 1) * a.step;
                    let dim = x.0[d] as i64;
                    if a.start < 0 || a.start >= dim || last < 0 || last >= dim {
                        return Err(format!(
                            "axis {d}: slice {a:?} reads outside dim {}",
                            x.0[d]
                        ));
                    }
                }
            }
            one(inputs[0].0, axes.iter().map(|a| a.len).collect())
        }
        Op::Split { axis, sizes } => {
            arity(1, 1)?;
            let x = inputs[0].1;
            check_axis(*axis, x)?;
            if sizes.iter().sum::<usize>() != x.0[*axis] || sizes.is_empty() {
                return Err(format!(
                    "split sizes {sizes:?} do not add up to dim {} of {x}",
                    x.0[*axis]
                ));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut d = x.0.clone();
                    d[*axis] = s;
                    (inputs[0].0, Shape(d))
                })
                .collect())
        }
        Op::Gather { axis } => {
            arity(2, 2)?;
            let (x, idx) = (inputs[0].1, inputs[1].1);
            check_axis(*axis, x)?;
            if !matches!(inputs[1].0, DType::I32 | DType::I64) {
                return Err(format!("indices must be i32 or i64, got {}", inputs[1].0));
            }
            let mut out = x.0[..*axis].to_vec();
            out.extend_from_slice(&idx.0);
            out.extend_from_slice(&x.0[*axis + 1..]);
            one(inputs[0].0, out)
        }
        Op::Pad { pads, mode } => {
            arity(1, 1)?;
            let x = inputs[0].1;
            if pads.len() != x.rank() {
                return Err(format!(
                    "{} pads for an input of rank {}",
                    pads.len(),
                    x.rank()
                ));
            }
            for (d, p) in pads.iter().enumerate() {
                let dim = x.0[d];
                let bad = match mode {
                    PadMode::Reflect => (p[0] > 0 || p[1] > 0) && (p[0] >= dim || p[1] >= dim),
                    PadMode::Edge => (p[0] > 0 || p[1] > 0) && dim == 0,
                    PadMode::Constant(_) => false,
                };
                if bad {
                    return Err(format!(
                        "pads {p:?} on dim {d} of size {dim} do not fit mode {mode:?}"
                    ));
                }
            }
            one(
                inputs[0].0,
                x.0.iter().zip(pads).map(|(d, p)| d + p[0] + p[1]).collect(),
            )
        }
        Op::GatherElements { axis } => {
            arity(2, 2)?;
            let (x, idx) = (inputs[0].1, inputs[1].1);
            check_axis(*axis, x)?;
            if !matches!(inputs[1].0, DType::I32 | DType::I64) {
                return Err(format!("indices must be i32 or i64, got {}", inputs[1].0));
            }
            if idx.rank() != x.rank() {
                return Err(format!("indices {idx} must have the rank of data {x}"));
            }
            let fits = (0..x.rank()).all(|d| d == *axis || idx.0[d] <= x.0[d]);
            if !fits || (x.0[*axis] == 0 && idx.numel() > 0) {
                return Err(format!("indices {idx} do not fit data {x} off axis {axis}"));
            }
            one(inputs[0].0, idx.0.clone())
        }
        Op::ScatterRows { .. } => {
            arity(3, 3)?;
            same_dtype(0, 1)?;
            let (data, upd, target) = (inputs[0].1, inputs[1].1, inputs[2].1);
            if !matches!(inputs[2].0, DType::I32 | DType::I64) {
                return Err(format!("targets must be i32 or i64, got {}", inputs[2].0));
            }
            let ok = data.rank() == 2
                && upd.rank() == 2
                && target.rank() == 1
                && upd.0[1] == data.0[1]
                && target.0[0] == upd.0[0];
            if !ok {
                return Err(format!(
                    "data [N, S], updates [U, S] and targets [U] expected, got {data}, {upd} and {target}"
                ));
            }
            one(inputs[0].0, data.0.clone())
        }
        other => Err(format!("{} is not routed to this family", other.name())),
    }
}

/// Inference for [`Op::Recurrence`].
fn recurrence(r: &Recurrence, inputs: &[(DType, &Shape)]) -> Inferred {
    checks!(inputs, arity, float, same_dtype, rank, one);
    let extra = r.cell.extra_rows();
    let n = 4 + extra.is_some() as usize;
    arity(n, n)?;
    float(0)?;
    for i in [1, 2] {
        same_dtype(0, i)?;
    }
    if extra.is_some() {
        same_dtype(0, 4)?;
    }
    if inputs[3].0 != DType::I32 {
        return Err(format!("lens must be i32, got {}", inputs[3].0));
    }
    if let Some(c) = r.clip.filter(|c| c.is_nan() || *c <= 0.0) {
        return Err(format!("clip {c}: the threshold must be positive"));
    }
    if r.acts.len() != r.cell.activations() {
        return Err(format!(
            "{} activations for a cell that takes {}",
            r.acts.len(),
            r.cell.activations()
        ));
    }
    let (xw, rm, s0, lens) = (inputs[0].1, inputs[1].1, inputs[2].1, inputs[3].1);
    let g = r.cell.gates();
    let s = r.cell.state_parts();
    let bad = || {
        format!(
            "xw [T, B, {g}H], rt [H, {g}H], state0 [B, {s}H] and lens [B] expected, got {xw}, \
             {rm}, {s0} and {lens}"
        )
    };
    if xw.rank() != 3 || rm.rank() != 2 || s0.rank() != 2 || lens.rank() != 1 {
        return Err(bad());
    }
    let (t, b, h) = (xw.0[0], xw.0[1], rm.0[0]);
    if xw.0[2] != g * h || rm.0[1] != g * h || s0.0 != [b, s * h] || lens.0[0] != b {
        return Err(bad());
    }
    if let Some(rows) = extra {
        if inputs[4].1 .0 != [rows, h] {
            return Err(format!(
                "the cell's fifth input must be [{rows}, {h}], got {}",
                inputs[4].1
            ));
        }
    }
    one(inputs[0].0, vec![t, b, s * h])
}
