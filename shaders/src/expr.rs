//! WGSL expressions of elementwise ops: unary, binary, casts, and the constants they use.

use crate::{Elem, Error};
use sfumato_core::op::{BinaryOp, UnaryOp};
use sfumato_core::DType;

pub(crate) const NEG_INF: &str = "f32_ninf()";
pub(crate) const POS_INF: &str = "f32_inf()";

/// The bits of a constant in the device element type of `dt`.
pub(crate) fn constant_bits(v: f32, dt: DType) -> u32 {
    match Elem::of(dt) {
        Elem::F32 => v.to_bits(),
        Elem::I32 => dt.round(v as f64) as i32 as u32,
        Elem::U32 => dt.round(v as f64) as u32,
    }
}

/// An exact WGSL f32 literal. NaN and the infinities come from the prelude's run-time helpers:
/// Tint refuses a constant expression whose value is not finite (an ONNX Clip's default bound
/// is infinite).
pub(crate) fn lit(v: f32) -> String {
    if v.is_nan() {
        "f32_nan()".into()
    } else if v == f32::INFINITY {
        POS_INF.into()
    } else if v == f32::NEG_INFINITY {
        NEG_INF.into()
    } else {
        format!("bitcast<f32>({}u)", v.to_bits())
    }
}

pub(crate) fn unary_expr(u: UnaryOp, dt: DType) -> Result<String, Error> {
    if Elem::of(dt) == Elem::I32 {
        return Ok(fit_int(
            dt,
            match u {
                UnaryOp::Relu => "max(x, 0)".into(),
                UnaryOp::Neg => "-x".into(),
                UnaryOp::Abs => "abs(x)".into(),
                UnaryOp::Clip { min, max } => {
                    format!("min(max(x, {}), {})", min as i32, max as i32)
                }
                other => return Err(Error::Unsupported(format!("{} on {dt}", other.name()))),
            },
        ));
    }
    if Elem::of(dt) != Elem::F32 {
        return Err(Error::Unsupported(format!("{} on {dt}", u.name())));
    }
    let e: String = match u {
        UnaryOp::Relu => "max(x, 0.0)".into(),
        UnaryOp::LeakyRelu { alpha } => format!("select({} * x, x, x >= 0.0)", lit(alpha)),
        UnaryOp::Sigmoid => "sigmoid_f(x)".into(),
        UnaryOp::Tanh => "tanh_f(x)".into(),
        UnaryOp::Gelu => "0.5 * x * (1.0 + erf_f(x * 0.7071067811865476))".into(),
        UnaryOp::GeluTanh => {
            "0.5 * x * (1.0 + tanh_f(0.7978845608028654 * (x + 0.044715 * x * x * x)))".into()
        }
        UnaryOp::Silu => "x * sigmoid_f(x)".into(),
        UnaryOp::HardSwish => "x * clamp(x + 3.0, 0.0, 6.0) / 6.0".into(),
        UnaryOp::Exp => "exp(x)".into(),
        UnaryOp::Log => "log(x)".into(),
        UnaryOp::Sqrt => "sqrt(x)".into(),
        UnaryOp::Rsqrt => "inverseSqrt(x)".into(),
        UnaryOp::Neg => "-x".into(),
        UnaryOp::Abs => "abs(x)".into(),
        UnaryOp::Erf => "erf_f(x)".into(),
        UnaryOp::Clip { min, max } => format!("min(max(x, {}), {})", lit(min), lit(max)),
        UnaryOp::Sin => "sin(x)".into(),
        UnaryOp::Cos => "cos(x)".into(),
        UnaryOp::Tan => "tan(x)".into(),
        // Through atan2 and sqrt((1 - x)(1 + x)): llvmpipe's asin/acos builtins lose about
        // 1e-4 relative precision.
        UnaryOp::Asin => "atan2(x, sqrt((1.0 - x) * (1.0 + x)))".into(),
        UnaryOp::Acos => "atan2(sqrt((1.0 - x) * (1.0 + x)), x)".into(),
        UnaryOp::Atan => "atan(x)".into(),
        UnaryOp::Sinh => "sinh(x)".into(),
        UnaryOp::Cosh => "cosh(x)".into(),
        UnaryOp::Asinh => "asinh(x)".into(),
        UnaryOp::Acosh => "acosh(x)".into(),
        UnaryOp::Atanh => "atanh(x)".into(),
        UnaryOp::Floor => "floor(x)".into(),
        UnaryOp::Ceil => "ceil(x)".into(),
        UnaryOp::Round => "round(x)".into(),
        UnaryOp::Sign => "sign(x)".into(),
    };
    Ok(e)
}

/// An i32 result `e` brought into the range of `dt`, which the device holds in an i32: the
/// 8- and 16-bit integers saturate, the 4- and 2-bit ones wrap, as [`DType::round`] does.
pub(crate) fn fit_int(dt: DType, e: String) -> String {
    if let Some((lo, hi)) = dt.int_range().filter(|_| dt != DType::U8) {
        return format!("clamp({e}, {}, {})", lo as i32, hi as i32);
    }
    match dt.sub_byte_int() {
        Some((bits, true)) => format!("(({e}) << {s}u) >> {s}u", s = 32 - bits),
        Some((bits, false)) => format!("({e}) & {}", (1 << bits) - 1),
        None => e,
    }
}

/// A value `e` cast to `dt`, which the device holds in an f32: f16, bfloat16 and the small
/// floats round here, ties to even (their arithmetic runs in f32; an f16 stored as f16 rounds
/// again, to the same value, when stored). `saturate`: see [`Op::Cast`].
fn fit_float(dt: DType, e: String, saturate: bool) -> String {
    if dt == DType::BF16 {
        return format!("bf16_round({e})");
    }
    if dt == DType::F16 {
        // 10 mantissa bits, smallest normal 2^-14, largest 65504, past it ±inf.
        return format!(
            "mini_round({e}, 10, -14, {}, 1u, false, false)",
            lit(65504.0)
        );
    }
    if dt == DType::F8E8M0 {
        return format!("e8m0_round({e}, {saturate})");
    }
    match dt.mini() {
        Some(m) => {
            let over = if saturate || (!m.has_inf && !m.has_nan) {
                0
            } else if m.has_inf {
                1
            } else {
                2
            };
            format!(
                "mini_round({e}, {}, {}, {}, {over}u, {}, {})",
                m.man_bits,
                m.min_exp(),
                lit(m.max as f32),
                !m.has_nan,
                m.unsigned_zero
            )
        }
        None => e,
    }
}

pub(crate) fn binary_expr(b: BinaryOp, dt: DType) -> String {
    // A float comparison with a NaN is false, but `!=` is true; spelled out with `is_nan`,
    // since the driver may compile `a != a` as false.
    let float = Elem::of(dt) == Elem::F32;
    let cmp = |o: &str| match (float, o) {
        (false, _) => format!("select(0u, 1u, a {o} b)"),
        (true, "!=") => "select(0u, 1u, a != b || is_nan(a) || is_nan(b))".to_string(),
        (true, _) => format!("select(0u, 1u, a {o} b && !is_nan(a) && !is_nan(b))"),
    };
    match b {
        BinaryOp::Eq => return cmp("=="),
        BinaryOp::Ne => return cmp("!="),
        BinaryOp::Lt => return cmp("<"),
        BinaryOp::Le => return cmp("<="),
        BinaryOp::Gt => return cmp(">"),
        BinaryOp::Ge => return cmp(">="),
        _ if b.is_bitwise() => return bitwise_expr(b, dt),
        _ => {}
    }
    match Elem::of(dt) {
        Elem::F32 => match b {
            BinaryOp::Add => "a + b".into(),
            BinaryOp::Sub => "a - b".into(),
            BinaryOp::Mul => "a * b".into(),
            BinaryOp::Div => "a / b".into(),
            BinaryOp::Pow => "pow_f(a, b)".into(),
            BinaryOp::Max => "max_nan(a, b)".into(),
            _ => "min_nan(a, b)".into(),
        },
        Elem::I32 => fit_int(dt, int_binary(b, "a", "b")),
        // u8: compute in i32, saturate to 0..255 like the reference's conversion.
        Elem::U32 if dt == DType::U8 => {
            format!("u32(clamp({}, 0, 255))", int_binary(b, "i32(a)", "i32(b)"))
        }
        // u32 (and u64, held in a u32): saturating unsigned arithmetic.
        Elem::U32 => match b {
            BinaryOp::Add => "select(a + b, 4294967295u, a + b < a)".into(),
            BinaryOp::Sub => "select(a - b, 0u, b > a)".into(),
            BinaryOp::Mul => "select(a * b, 4294967295u, b != 0u && a > 4294967295u / b)".into(),
            BinaryOp::Div => "select(a / b, 0u, b == 0u)".into(),
            BinaryOp::Pow => "pow_u(a, b)".into(),
            BinaryOp::Max => "max(a, b)".into(),
            _ => "min(a, b)".into(),
        },
    }
}

/// The bitwise and shift ops (integers only; the core's shape inference refuses floats, and on
/// an f32 element the expression is invalid WGSL, so naga would refuse it, never a wrong value).
/// The device holds every integer in 32 bits: a shift of 32 or more drops every bit it holds.
fn bitwise_expr(b: BinaryOp, dt: DType) -> String {
    let width = dt.bits().min(32);
    let signed = Elem::of(dt) == Elem::I32;
    let (zero, out_of_range) = if signed {
        ("0", format!("b < 0 || b >= {width}"))
    } else {
        ("0u", format!("b >= {width}u"))
    };
    let shift = if signed { "u32(b)" } else { "b" };
    match b {
        BinaryOp::BitAnd => "a & b".into(),
        BinaryOp::BitOr => "a | b".into(),
        BinaryOp::BitXor => "a ^ b".into(),
        BinaryOp::Shl => {
            // Wrap to the dtype's width (the high bits drop): sign-extend the narrow signed
            // ones, mask the narrow unsigned ones.
            let e = format!("a << {shift}");
            let wrapped = match (width, dt.is_signed()) {
                (32, _) => e,
                (w, true) => format!("(({e}) << {s}u) >> {s}u", s = 32 - w),
                (w, false) if signed => format!("({e}) & {}", (1u32 << w) - 1),
                (w, false) => format!("({e}) & {}u", (1u32 << w) - 1),
            };
            format!("select({wrapped}, {zero}, {out_of_range})")
        }
        _ => {
            let fill = if signed { "select(0, -1, a < 0)" } else { "0u" };
            format!("select(a >> {shift}, {fill}, {out_of_range})")
        }
    }
}

fn int_binary(b: BinaryOp, a: &str, c: &str) -> String {
    match b {
        BinaryOp::Add => format!("{a} + {c}"),
        BinaryOp::Sub => format!("{a} - {c}"),
        BinaryOp::Mul => format!("{a} * {c}"),
        BinaryOp::Div => format!("select({a} / {c}, 0, {c} == 0)"),
        BinaryOp::Pow => format!("i32(round(pow_f(f32({a}), f32({c}))))"),
        BinaryOp::Max => format!("max({a}, {c})"),
        _ => format!("min({a}, {c})"),
    }
}

/// BitCast: the bits of `x` (a `from` value) read as `to` (the same width, at most 32 bits).
/// f16 and bfloat16 live in an f32 on the device: their bits come from `half_bits.wgsl` and the
/// top half of the f32.
pub(crate) fn bitcast_expr(from: DType, to: DType) -> String {
    let w = sfumato_core::dtype::bitcast_width(from).unwrap_or(32);
    let mask = |e: String| {
        if w == 32 {
            e
        } else {
            format!("({e} & {}u)", (1u64 << w) - 1)
        }
    };
    let bits = match from {
        DType::F32 => "bitcast<u32>(x)".to_string(),
        DType::F16 => "f16_bits(x)".to_string(),
        DType::BF16 => "(bitcast<u32>(x) >> 16u)".to_string(),
        _ if Elem::of(from) == Elem::I32 => mask("bitcast<u32>(x)".to_string()),
        _ => mask("x".to_string()),
    };
    match to {
        DType::F32 => format!("bitcast<f32>({bits})"),
        DType::F16 => format!("f16_of_bits({bits})"),
        DType::BF16 => format!("bitcast<f32>({bits} << 16u)"),
        DType::Bool => format!("select(0u, 1u, {bits} != 0u)"),
        _ if Elem::of(to) == Elem::I32 && to.is_signed() => {
            if w == 32 {
                format!("bitcast<i32>({bits})")
            } else {
                format!("(bitcast<i32>({bits} << {s}u) >> {s}u)", s = 32 - w)
            }
        }
        _ if Elem::of(to) == Elem::I32 => format!("i32({bits})"),
        _ => bits,
    }
}

pub(crate) fn cast_expr(from: DType, to: DType, saturate: bool) -> String {
    let (fe, te) = (Elem::of(from), Elem::of(to));
    // The largest f32 below 2^31 and 2^32.
    const I32_MAX_F: &str = "2147483520.0";
    const U32_MAX_F: &str = "4294967040.0";
    match (fe, to) {
        (_, DType::Bool) => match fe {
            Elem::F32 => "select(0u, 1u, x != 0.0 || is_nan(x))".into(),
            Elem::I32 => "select(0u, 1u, x != 0)".into(),
            Elem::U32 => "select(0u, 1u, x != 0u)".into(),
        },
        (Elem::F32, DType::U8) => "select(u32(clamp(x, 0.0, 255.0)), 0u, is_nan(x))".into(),
        (Elem::I32, DType::U8) => "u32(clamp(x, 0, 255))".into(),
        (Elem::U32, DType::U8) => "min(x, 255u)".into(),
        // Floats to integers truncate and saturate (±inf too); NaN gives 0, as in the reference.
        (Elem::F32, _) if te == Elem::U32 => format!(
            "select(select(u32(clamp(x, 0.0, {U32_MAX_F})), 4294967295u, x >= 4294967296.0), 0u, is_nan(x))"
        ),
        (Elem::I32, _) if te == Elem::U32 => "u32(max(x, 0))".into(),
        (Elem::U32, _) if te == Elem::I32 => fit_int(to, "i32(min(x, 2147483647u))".into()),
        (Elem::F32, _) if te == Elem::I32 => match to.int_range() {
            Some((lo, hi)) => format!("select(i32(clamp(x, {lo:.1}, {hi:.1})), 0, is_nan(x))"),
            None => fit_int(
                to,
                format!(
                    "select(select(i32(clamp(x, -2147483648.0, {I32_MAX_F})), 2147483647, x >= 2147483648.0), 0, is_nan(x))"
                ),
            ),
        },
        (Elem::I32, _) if te == Elem::I32 => fit_int(to, "x".into()),
        _ if te == Elem::F32 => {
            let base = if fe == te {
                "x".into()
            } else {
                "f32(x)".to_string()
            };
            fit_float(to, base, saturate)
        }
        _ if fe == te => "x".into(),
        _ => format!("{}(x)", te.wgsl()),
    }
}
