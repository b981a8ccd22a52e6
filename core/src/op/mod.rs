//! The op set: a closed enum, each op with its attributes and its shape and dtype inference.
//! The reference semantics live in [`crate::interp`], the WGSL lowering in sfumato-shaders;
//! both match on [`Op`] exhaustively, so a new op does not compile until all three exist.

use crate::{DType, Shape, Tensor};
use serde::{Deserialize, Serialize};

mod infer;

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
    /// Bitwise and, or and exclusive or of integers.
    BitAnd,
    BitOr,
    BitXor,
    /// `a << b` in the dtype's width (the high bits drop); a shift that is negative or at
    /// least the width gives 0.
    Shl,
    /// `a >> b`, arithmetic for signed dtypes; a shift that is negative or at least the width
    /// gives 0, or -1 for a negative signed `a`.
    Shr,
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

    /// The ops defined on integers only.
    pub const BITWISE: [BinaryOp; 5] = [
        BinaryOp::BitAnd,
        BinaryOp::BitOr,
        BinaryOp::BitXor,
        BinaryOp::Shl,
        BinaryOp::Shr,
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
            BinaryOp::BitAnd => "BitwiseAnd",
            BinaryOp::BitOr => "BitwiseOr",
            BinaryOp::BitXor => "BitwiseXor",
            BinaryOp::Shl => "BitShiftLeft",
            BinaryOp::Shr => "BitShiftRight",
        }
    }

    /// Bitwise and shift ops, defined on integers only.
    pub fn is_bitwise(self) -> bool {
        Self::BITWISE.contains(&self)
    }

    /// Comparisons return bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// How [`Op::ScatterRows`] combines an update with what its target holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl ScatterReduction {
    /// `old` combined with `update` (max and min propagate NaN, as ONNX's reference does).
    pub fn combine(self, old: f64, update: f64) -> f64 {
        match self {
            ScatterReduction::None => update,
            ScatterReduction::Add => old + update,
            ScatterReduction::Mul => old * update,
            ScatterReduction::Max | ScatterReduction::Min if old.is_nan() || update.is_nan() => {
                f64::NAN
            }
            ScatterReduction::Max => old.max(update),
            ScatterReduction::Min => old.min(update),
        }
    }
}

/// The cell of an [`Op::Recurrence`]: its gates, in ONNX's order, and what its state holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecurrentCell {
    /// `h = f(x W + h R + b)`: one gate.
    Rnn,
    /// Gates z, r, h. With `linear_before_reset` the reset gate multiplies `h R_h + Rb_h`;
    /// without, it multiplies `h` before `R_h`.
    Gru { linear_before_reset: bool },
    /// Gates i, o, f, c and a cell state `c`; peepholes i, o, f.
    Lstm,
}

impl RecurrentCell {
    /// ONNX's name for the layer.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentCell::Rnn => "RNN",
            RecurrentCell::Gru { .. } => "GRU",
            RecurrentCell::Lstm => "LSTM",
        }
    }

    /// Gates per step (rows of `R` per hidden unit).
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::Rnn => 1,
            RecurrentCell::Gru { .. } => 3,
            RecurrentCell::Lstm => 4,
        }
    }

    /// Activations the cell takes (ONNX's f, g, h).
    pub fn activations(self) -> usize {
        self.default_acts().len()
    }

    /// ONNX's default activations (f, g, h) for the cell.
    pub fn default_acts(self) -> &'static [RecurrentAct] {
        match self {
            RecurrentCell::Rnn => &[RecurrentAct::Tanh],
            RecurrentCell::Gru { .. } => &[RecurrentAct::Sigmoid, RecurrentAct::Tanh],
            RecurrentCell::Lstm => &[
                RecurrentAct::Sigmoid,
                RecurrentAct::Tanh,
                RecurrentAct::Tanh,
            ],
        }
    }

    /// Vectors of `H` the state holds: `h`, and `c` for an LSTM.
    pub fn state_parts(self) -> usize {
        match self {
            RecurrentCell::Lstm => 2,
            _ => 1,
        }
    }

    /// The rows of the fifth input (LSTM's peepholes `[3, H]`, GRU's `Rb_h` `[1, H]`), if any.
    pub fn extra_rows(self) -> Option<usize> {
        match self {
            RecurrentCell::Rnn => None,
            RecurrentCell::Gru { .. } => Some(1),
            RecurrentCell::Lstm => Some(3),
        }
    }
}

/// An activation of a recurrent cell: every one ONNX's RNN, GRU and LSTM name, with its
/// parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecurrentAct {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Softsign,
    Softplus,
    /// `clamp(alpha x + beta, 0, 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `alpha x + beta`.
    Affine {
        alpha: f32,
        beta: f32,
    },
    /// `alpha tanh(beta x)`.
    ScaledTanh {
        alpha: f32,
        beta: f32,
    },
}

impl RecurrentAct {
    /// The activation of `x`.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            RecurrentAct::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            RecurrentAct::Tanh => x.tanh(),
            RecurrentAct::Relu => x.max(0.0),
            RecurrentAct::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * x
                } else {
                    x
                }
            }
            RecurrentAct::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            RecurrentAct::Elu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            RecurrentAct::Softsign => x / (1.0 + x.abs()),
            RecurrentAct::Softplus => x.exp().ln_1p(),
            RecurrentAct::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            RecurrentAct::Affine { alpha, beta } => alpha as f64 * x + beta as f64,
            RecurrentAct::ScaledTanh { alpha, beta } => alpha as f64 * (beta as f64 * x).tanh(),
        }
    }

    /// Its float parameters (for hashing).
    pub fn params(self) -> Vec<f32> {
        match self {
            RecurrentAct::LeakyRelu { alpha }
            | RecurrentAct::ThresholdedRelu { alpha }
            | RecurrentAct::Elu { alpha } => vec![alpha],
            RecurrentAct::HardSigmoid { alpha, beta }
            | RecurrentAct::Affine { alpha, beta }
            | RecurrentAct::ScaledTanh { alpha, beta } => vec![alpha, beta],
            _ => Vec::new(),
        }
    }
}

/// The widest hidden state [`Op::Recurrence`] takes: the device loop keeps `h` in workgroup
/// memory, `4 H` bytes (WebGPU guarantees 16 KiB). Wider layers are imported unrolled.
pub const MAX_RECURRENT_HIDDEN: usize = 2048;

/// One direction of a recurrent layer over a whole sequence ([`Op::Recurrence`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recurrence {
    pub cell: RecurrentCell,
    /// Steps run from `T - 1` down to 0.
    pub reverse: bool,
    /// Gate pre-activations are clamped to `[-clip, clip]`.
    pub clip: Option<f32>,
    /// The cell's activations (f, g, h as ONNX names them; [`RecurrentCell::activations`]).
    pub acts: Vec<RecurrentAct>,
}

impl Recurrence {
    /// A clipped gate pre-activation.
    pub fn clipped(&self, x: f64) -> f64 {
        match self.clip {
            // max and min, not clamp: a threshold that is not positive must not panic here
            // (inference refuses it).
            Some(c) => x.max(-(c as f64)).min(c as f64),
            None => x,
        }
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
    /// [`Op::MatMul`] of two i32 operands, accumulated in i32 (wrapping, as two's complement
    /// does): exact where a float product rounds its sums past 2^24. The integer products of
    /// quantized models (MatMulInteger, QLinearMatMul, a QDQ MatMul) run on it, their zero
    /// points subtracted beforehand.
    MatMulInteger,
    /// `alpha * op(A) @ op(B) + beta * C`; inputs A, B and optionally C (broadcast to the output).
    Gemm(Gemm),
    /// NCHW convolution; inputs x, w `[O, C/groups, kh, kw]` and optionally bias `[O]`.
    Conv2d(Conv2d),
    /// [`Op::Conv2d`] of i32 operands (and an i32 bias), accumulated in i32, wrapping: the
    /// integer convs of quantized models (ConvInteger, QLinearConv, a QDQ Conv), their zero
    /// points subtracted beforehand (so padding reads zero, as ONNX's reference pads).
    ConvInteger(Conv2d),
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
    /// The same bits read as `to` (ONNX BitCast): the input's and `to`'s widths must match;
    /// types of 8, 16 and 32 bits (bool as 8), not the 64-bit ones, the float8 or the 4- and 2-bit
    /// types.
    BitCast {
        to: DType,
    },
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
    /// Rows of `data [N, S]` combined with rows of `updates [U, S]` at rows `target [U]` (i32
    /// or i64, in `0..N`), in the updates' order (ONNX ScatterElements and ScatterND, their
    /// targets flattened): `none` writes the update (the last of equal targets wins), the
    /// others combine it with what is there. Output: data's shape and dtype.
    ScatterRows {
        reduction: ScatterReduction,
    },
    /// One direction of an RNN, GRU or LSTM over all its steps (the loop runs on the device,
    /// the state kept in workgroup memory between steps). Inputs:
    /// - `xw [T, B, G*H]`: each step's input projection plus the biases that add outside a
    ///   gate's reset (all of them but a linear-before-reset GRU's `Rb_h`);
    /// - `rt [H, G*H]`: ONNX's `R` for this direction, transposed (column `g*H + j` holds gate
    ///   `g`'s weights for unit `j`: neighbouring units read neighbouring words);
    /// - `state0 [B, S*H]`: the initial `h` (and `c` for an LSTM, `S = 2`);
    /// - `lens [B]` (i32): row `b` updates its state at step `t` only where `t < lens[b]`;
    /// - LSTM: `peep [3, H]` (i, o, f); GRU: `rb_h [1, H]` (R's bias of the h gate, used with
    ///   `linear_before_reset`).
    ///
    /// Output `[T, B, S*H]`: the state after each step (`h`, then `c`), a row's state carried
    /// unchanged through its steps past its length. ONNX's `Y` is its `h` part where the step
    /// is live, `Y_h` and `Y_c` the state after the last step run.
    Recurrence(Recurrence),
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
            Op::MatMulInteger => "MatMulInteger",
            Op::Gemm(_) => "Gemm",
            Op::Conv2d(_) => "Conv2d",
            Op::ConvInteger(_) => "ConvInteger",
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
            Op::BitCast { .. } => "BitCast",
            Op::Resize { .. } => "Resize",
            Op::Pad { .. } => "Pad",
            Op::GatherElements { .. } => "GatherElements",
            Op::ScatterRows { .. } => "ScatterRows",
            Op::Recurrence(r) => r.cell.name(),
            Op::ArgReduce { max: true, .. } => "ArgMax",
            Op::ArgReduce { max: false, .. } => "ArgMin",
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

    /// The checks' messages, word for word (a macro must not leak its own names into them).
    #[test]
    fn inference_errors_read_plainly() {
        let a = Shape::from([2, 3]);
        let e = Op::MatMul.infer(&[(DType::F32, &a)]).unwrap_err();
        assert_eq!(e, "expects 2 inputs, got 1");
        let e = Op::Gemm(Gemm::default())
            .infer(&[(DType::F32, &a)])
            .unwrap_err();
        assert_eq!(e, "expects 2 to 3 inputs, got 1");
        let e = Op::Binary(BinaryOp::Add)
            .infer(&[(DType::F32, &a), (DType::I32, &a)])
            .unwrap_err();
        assert_eq!(e, "inputs 0 and 1 must have one dtype, got f32 and i32");
        let e = Op::Softmax { axis: 0 }
            .infer(&[(DType::I32, &a)])
            .unwrap_err();
        assert!(e.starts_with("input 0 must be a float tensor"), "{e}");
    }

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
        // The integer product: i32 operands only, the same shapes.
        let int = Op::MatMulInteger
            .infer(&[(DType::I32, &a), (DType::I32, &b)])
            .unwrap();
        assert_eq!(int[0], (DType::I32, Shape::from([2, 5, 3, 6])));
        for dt in [DType::F32, DType::I8, DType::I64] {
            assert!(Op::MatMulInteger.infer(&[(dt, &a), (dt, &b)]).is_err());
        }
    }

    #[test]
    fn integer_matmul_wraps_as_i32_does() {
        // 2^30 x 2 + 2^30 x 2 = 2^32 wraps to 0; 2^30 x 2 = 2^31 wraps to -2^31.
        let big = (1i64 << 30) as f64;
        let a = Tensor::from_f64(DType::I32, [2, 2], &[big, big, big, 0.0]);
        let b = Tensor::from_f64(DType::I32, [2, 1], &[2.0, 2.0]);
        let out = crate::interp::eval(
            &Op::MatMulInteger,
            &[&a, &b],
            &[(DType::I32, Shape::from([2, 1]))],
        )
        .unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![0.0, -big * 2.0]);
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
