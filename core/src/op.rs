//! The op set: a closed enum, each op with its attributes and its shape and dtype inference.
//! The reference semantics live in [`crate::interp`], the WGSL lowering in sfumato-shaders;
//! both match on [`Op`] exhaustively, so a new op does not compile until all three exist.

use crate::{DType, Shape, Tensor};
use serde::{Deserialize, Serialize};

/// 2-D convolution attributes. `padding` is `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2d {
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2d {
    fn default() -> Self {
        Conv2d {
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2d {
    /// Same padding `p` on every side, stride `s`.
    pub fn padded(p: usize, s: usize) -> Self {
        Conv2d {
            stride: [s, s],
            padding: [p; 4],
            ..Default::default()
        }
    }
}

/// Transposed 2-D convolution attributes. `padding` is `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvTranspose2d {
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose2d {
    fn default() -> Self {
        ConvTranspose2d {
            stride: [1, 1],
            padding: [0; 4],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// 2-D pooling window. `padding` is `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    /// Average pooling only: divide by the whole window, padding included.
    pub count_include_pad: bool,
}

impl Pool2d {
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Pool2d {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 4],
            dilation: [1, 1],
            count_include_pad: false,
        }
    }
}

/// General matrix multiply: `alpha * op(A) @ op(B) + beta * C`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

/// Elementwise ops of one input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// GELU, exact form `x * Φ(x)` with erf.
    Gelu,
    /// GELU, tanh approximation.
    GeluTanh,
    Silu,
    HardSwish,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Neg,
    Abs,
    Erf,
    Clip {
        min: f32,
        max: f32,
    },
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    /// Round down to an integer.
    Floor,
    /// Round up to an integer.
    Ceil,
    /// Round to the nearest integer, halves to even.
    Round,
    /// -1, 0 or 1.
    Sign,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "Relu",
            UnaryOp::LeakyRelu { .. } => "LeakyRelu",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Gelu => "Gelu",
            UnaryOp::GeluTanh => "GeluTanh",
            UnaryOp::Silu => "Silu",
            UnaryOp::HardSwish => "HardSwish",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Rsqrt => "Rsqrt",
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Erf => "Erf",
            UnaryOp::Clip { .. } => "Clip",
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Tan => "Tan",
            UnaryOp::Asin => "Asin",
            UnaryOp::Acos => "Acos",
            UnaryOp::Atan => "Atan",
            UnaryOp::Sinh => "Sinh",
            UnaryOp::Cosh => "Cosh",
            UnaryOp::Asinh => "Asinh",
            UnaryOp::Acosh => "Acosh",
            UnaryOp::Atanh => "Atanh",
            UnaryOp::Floor => "Floor",
            UnaryOp::Ceil => "Ceil",
            UnaryOp::Round => "Round",
            UnaryOp::Sign => "Sign",
        }
    }

    /// Whether the op is defined on signed integers (i32, i64) too; else floats only.
    pub fn allows_int(self) -> bool {
        matches!(
            self,
            UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Clip { .. }
        )
    }

    /// Every unary op with representative parameters, for tests and listings.
    pub fn all() -> Vec<UnaryOp> {
        vec![
            UnaryOp::Relu,
            UnaryOp::LeakyRelu { alpha: 0.1 },
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Gelu,
            UnaryOp::GeluTanh,
            UnaryOp::Silu,
            UnaryOp::HardSwish,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Rsqrt,
            UnaryOp::Neg,
            UnaryOp::Abs,
            UnaryOp::Erf,
            UnaryOp::Clip {
                min: -0.5,
                max: 0.25,
            },
            UnaryOp::Sin,
            UnaryOp::Cos,
            UnaryOp::Tan,
            UnaryOp::Asin,
            UnaryOp::Acos,
            UnaryOp::Atan,
            UnaryOp::Sinh,
            UnaryOp::Cosh,
            UnaryOp::Asinh,
            UnaryOp::Acosh,
            UnaryOp::Atanh,
            UnaryOp::Floor,
            UnaryOp::Ceil,
            UnaryOp::Round,
            UnaryOp::Sign,
        ]
    }
}

/// Elementwise ops of two inputs, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
            BinaryOp::Eq => "Equal",
            BinaryOp::Ne => "NotEqual",
            BinaryOp::Lt => "Less",
            BinaryOp::Le => "LessOrEqual",
            BinaryOp::Gt => "Greater",
            BinaryOp::Ge => "GreaterOrEqual",
        }
    }

    /// Comparisons return bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// Reductions over axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    /// The product (1 over an empty set).
    Prod,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Min => "ReduceMin",
            ReduceOp::Prod => "ReduceProd",
        }
    }
}

/// One axis of a normalized slice: output element `i` reads input element `start + i * step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceAxis {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

impl SliceAxis {
    /// The whole of a dim of size `d`.
    pub fn full(d: usize) -> SliceAxis {
        SliceAxis {
            start: 0,
            step: 1,
            len: d,
        }
    }

    /// ONNX/numpy slice semantics: negative `start`/`end` count from the end, both are clamped,
    /// `step` may be negative but not zero. Returns `None` for step 0.
    pub fn normalize(dim: usize, start: i64, end: i64, step: i64) -> Option<SliceAxis> {
        if step == 0 {
            return None;
        }
        let d = dim as i64;
        let fix = |v: i64| if v < 0 { v + d } else { v };
        let (s, e) = (fix(start), fix(end));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        };
        let len = if step > 0 {
            if e > s {
                (e - s + step - 1) / step
            } else {
                0
            }
        } else if s > e {
            (s - e + (-step) - 1) / (-step)
        } else {
            0
        };
        Some(SliceAxis {
            start: if len == 0 { 0 } else { s },
            step,
            len: len as usize,
        })
    }
}

/// Interpolation of [`Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Nearest neighbour, rounding the source coordinate down (PyTorch's `nearest`).
    Nearest,
    /// Bilinear interpolation.
    Bilinear,
}

/// How an output coordinate maps to an input coordinate in [`Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordTransform {
    /// `(x + 0.5) / scale - 0.5`.
    HalfPixel,
    /// `x * (in - 1) / (out - 1)`.
    AlignCorners,
    /// `x / scale`.
    Asymmetric,
}

/// How [`Op::Pad`] fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PadMode {
    Constant(f32),
    Reflect,
    Edge,
}

/// Every operation a graph node can hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A constant tensor (weights, shapes); no inputs.
    Constant(Tensor),
    /// Batched matrix product with numpy semantics (1-D operands, broadcast batch dims).
    MatMul,
    /// `alpha * op(A) @ op(B) + beta * C`; inputs A, B and optionally C (broadcast to the output).
    Gemm(Gemm),
    /// NCHW convolution; inputs x, w `[O, C/groups, kh, kw]` and optionally bias `[O]`.
    Conv2d(Conv2d),
    /// NCHW transposed convolution; inputs x, w `[C, O/groups, kh, kw]` and optionally bias `[O]`.
    ConvTranspose2d(ConvTranspose2d),
    /// Inference batch norm over axis 1; inputs x, scale, bias, mean, var (each `[C]`).
    BatchNorm {
        epsilon: f32,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Softmax along one axis.
    Softmax {
        axis: usize,
    },
    /// Normalise over axes `axis..rank`; inputs x, scale and optionally bias (shape `x[axis..]`).
    LayerNorm {
        axis: usize,
        epsilon: f32,
    },
    /// Reduce over sorted, distinct axes.
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },
    MaxPool2d(Pool2d),
    /// Where MaxPool2d's maximum is (ONNX MaxPool's `Indices`), as i64: the flat index into the
    /// whole input, `plane * H * W + y * W + x` (`plane = n * C + c`), or with `col_major`
    /// `plane * H * W + y + x * H`; -1 for a window over padding only. The first maximum in scan
    /// order wins, compared with `>` as ONNX's reference compares: a NaN wins only as a window's
    /// first element (MaxPool2d's value propagates any NaN, so there the two can disagree).
    MaxPoolIndices2d {
        pool: Pool2d,
        col_major: bool,
    },
    AvgPool2d(Pool2d),
    GlobalAvgPool,
    /// Same elements, new shape (fully resolved, no -1).
    Reshape {
        shape: Vec<usize>,
    },
    /// Output dim `i` is input dim `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    /// One [`SliceAxis`] per input dim.
    Slice {
        axes: Vec<SliceAxis>,
    },
    /// Several outputs, of `sizes` along `axis`.
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// `data[..., indices, ...]` along `axis`; negative indices count from the end.
    Gather {
        axis: usize,
    },
    /// `cond ? a : b`, broadcast.
    Where,
    /// Convert to `to` ([`DType::round`]); with `saturate`, values beyond the 8- and 4-bit
    /// floats' range (±inf too) become ±max instead of inf or NaN (ONNX's default).
    Cast {
        to: DType,
        saturate: bool,
    },
    /// NCHW resize of the two spatial dims to `size`.
    Resize {
        mode: ResizeMode,
        coord: CoordTransform,
        size: [usize; 2],
    },
    /// Pad each dim by `pads[d] = [before, after]`.
    Pad {
        pads: Vec<[usize; 2]>,
        mode: PadMode,
    },
    /// `out[.., i, ..] = data[.., indices[.., i, ..], ..]` along `axis` (ONNX GatherElements):
    /// indices have data's rank and give the output's shape; negative ones count from the end.
    GatherElements {
        axis: usize,
    },
    /// The i64 index of the largest (`max`) or smallest element along `axis`: the first one on
    /// ties, or the last with `last`; a NaN wins, as in numpy.
    ArgReduce {
        max: bool,
        axis: usize,
        keepdim: bool,
        last: bool,
    },
}

impl Op {
    /// The op's name, as the profile and error messages show it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Constant(_) => "Constant",
            Op::MatMul => "MatMul",
            Op::Gemm(_) => "Gemm",
            Op::Conv2d(_) => "Conv2d",
            Op::ConvTranspose2d(_) => "ConvTranspose2d",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Softmax { .. } => "Softmax",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::Reduce { op, .. } => op.name(),
            Op::MaxPool2d(_) => "MaxPool2d",
            Op::MaxPoolIndices2d { .. } => "MaxPoolIndices2d",
            Op::AvgPool2d(_) => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Split { .. } => "Split",
            Op::Gather { .. } => "Gather",
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::Resize { .. } => "Resize",
            Op::Pad { .. } => "Pad",
            Op::GatherElements { .. } => "GatherElements",
            Op::ArgReduce { max: true, .. } => "ArgMax",
            Op::ArgReduce { max: false, .. } => "ArgMin",
        }
    }

    /// Shape and dtype inference: the outputs' dtypes and shapes, or why the inputs are wrong.
    pub fn infer(&self, inputs: &[(DType, &Shape)]) -> Result<Vec<(DType, Shape)>, String> {
        let arity = |lo: usize, hi: usize| -> Result<(), String> {
            if inputs.len() < lo || inputs.len() > hi {
                Err(if lo == hi {
                    format!("expects {lo} inputs, got {}", inputs.len())
                } else {
                    format!("expects {lo} to {hi} inputs, got {}", inputs.len())
                })
            } else {
                Ok(())
            }
        };
        let float = |i: usize| -> Result<(), String> {
            if inputs[i].0.is_float() {
                Ok(())
            } else {
                Err(format!(
                    "input {i} must be a float tensor, got {}",
                    inputs[i].0
                ))
            }
        };
        let same_dtype = |i: usize, j: usize| -> Result<(), String> {
            if inputs[i].0 == inputs[j].0 {
                Ok(())
            } else {
                Err(format!(
                    "inputs {i} and {j} must have one dtype, got {} and {}",
                    inputs[i].0, inputs[j].0
                ))
            }
        };
        let rank = |i: usize, r: usize| -> Result<(), String> {
            if inputs[i].1.rank() == r {
                Ok(())
            } else {
                Err(format!(
                    "input {i} must have rank {r}, got shape {}",
                    inputs[i].1
                ))
            }
        };
        let one = |d: DType, s: Vec<usize>| Ok(vec![(d, Shape(s))]);
        match self {
            Op::Constant(t) => {
                arity(0, 0)?;
                one(t.dtype(), t.dims().to_vec())
            }
            Op::MatMul => {
                arity(2, 2)?;
                float(0)?;
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
            Op::Conv2d(c) => {
                arity(2, 3)?;
                float(0)?;
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
                let dt = if matches!(self, Op::MaxPoolIndices2d { .. }) {
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
            Op::ArgReduce { axis, keepdim, .. } => {
                arity(1, 1)?;
                let x = inputs[0].1;
                check_axis(*axis, x)?;
                if inputs[0].0 == DType::Bool {
                    return Err(format!("{} is not defined on bool", self.name()));
                }
                if x.0[*axis] == 0 {
                    return Err(format!("{} over an empty axis {axis} of {x}", self.name()));
                }
                one(DType::I64, reduced_dims(&x.0, &[*axis], *keepdim))
            }
        }
    }
}

fn check_axis(axis: usize, x: &Shape) -> Result<(), String> {
    if axis < x.rank() {
        Ok(())
    } else {
        Err(format!("axis {axis} is out of range for {x}"))
    }
}

/// Output size of a sliding window: `(i + pad - d*(k-1) - 1) / s + 1`, or an error if the
/// window does not fit.
pub fn conv_out(i: usize, k: usize, s: usize, pad: usize, d: usize) -> Result<usize, String> {
    let span = d * (k.max(1) - 1) + 1;
    if i + pad < span {
        return Err(format!(
            "window of {k} (dilation {d}) does not fit input {i} with padding {pad}"
        ));
    }
    Ok((i + pad - span) / s + 1)
}

/// Dims after reducing `axes` (sorted), kept as 1 or removed.
pub fn reduced_dims(dims: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if axes.contains(&i) {
                keepdim.then_some(1)
            } else {
                Some(d)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_normalize() {
        assert_eq!(
            SliceAxis::normalize(10, 1, 8, 3),
            Some(SliceAxis {
                start: 1,
                step: 3,
                len: 3
            })
        );
        assert_eq!(
            SliceAxis::normalize(10, -1, -100, -2),
            Some(SliceAxis {
                start: 9,
                step: -2,
                len: 5
            })
        );
        assert_eq!(SliceAxis::normalize(4, 5, 9, 1).unwrap().len, 0);
        assert_eq!(SliceAxis::normalize(4, 0, 4, 0), None);
    }

    #[test]
    fn matmul_shapes() {
        let a = Shape::from([2, 1, 3, 4]);
        let b = Shape::from([5, 4, 6]);
        let out = Op::MatMul
            .infer(&[(DType::F32, &a), (DType::F32, &b)])
            .unwrap();
        assert_eq!(out[0].1, Shape::from([2, 5, 3, 6]));
        let v = Shape::from([4]);
        assert_eq!(
            Op::MatMul
                .infer(&[(DType::F32, &a), (DType::F32, &v)])
                .unwrap()[0]
                .1,
            Shape::from([2, 1, 3])
        );
        assert!(Op::MatMul
            .infer(&[(DType::F32, &b), (DType::F32, &a)])
            .is_err());
        assert!(Op::MatMul
            .infer(&[(DType::I32, &a), (DType::I32, &b)])
            .is_err());
    }

    #[test]
    fn conv_shapes() {
        let x = Shape::from([1, 4, 9, 9]);
        let w = Shape::from([8, 2, 3, 3]);
        let c = Conv2d {
            stride: [2, 2],
            padding: [1; 4],
            groups: 2,
            ..Default::default()
        };
        assert_eq!(
            Op::Conv2d(c)
                .infer(&[(DType::F32, &x), (DType::F32, &w)])
                .unwrap()[0]
                .1,
            Shape::from([1, 8, 5, 5])
        );
        let c1 = Conv2d::default();
        assert!(Op::Conv2d(c1)
            .infer(&[(DType::F32, &x), (DType::F32, &w)])
            .is_err());
    }
}
