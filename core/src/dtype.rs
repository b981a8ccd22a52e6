//! Element types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor.
///
/// Beside the six core types, the ONNX types models and the conformance suite carry: f64,
/// bfloat16, the 8-, 16-, 32- and 64-bit integers, the five 8-bit floats (E4M3FN, E4M3FNUZ,
/// E5M2, E5M2FNUZ and the exponent-only E8M0), the 4-bit float E2M1 and the 4- and 2-bit
/// integers. The host holds each
/// exactly ([`crate::TensorData`]); a device may compute in a wider type and round results to
/// the dtype (see [`DType::round`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    I32,
    I64,
    U8,
    Bool,
    F64,
    BF16,
    I8,
    I16,
    U16,
    U32,
    U64,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    F4E2M1,
    /// Powers of two only (an 8-bit exponent, no sign, no zero): scales of microscaling formats.
    F8E8M0,
    I4,
    U4,
    I2,
    U2,
}

/// The layout of a small float format (8 bits or fewer): exponent and mantissa bits, bias, and
/// which special values it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MiniFloat {
    pub exp_bits: u32,
    pub man_bits: u32,
    pub bias: i32,
    /// The largest finite value.
    pub max: f64,
    /// Overflow (without saturation) gives ±inf (E5M2), else NaN (or ±max where there is no
    /// NaN either, E2M1).
    pub has_inf: bool,
    pub has_nan: bool,
    /// "UZ" formats: no negative zero (its bit pattern is the one NaN).
    pub unsigned_zero: bool,
}

impl MiniFloat {
    /// The smallest normal exponent.
    pub fn min_exp(&self) -> i32 {
        1 - self.bias
    }

    /// The value of bit pattern `bits` (the low `1 + exp_bits + man_bits` bits).
    pub fn decode(&self, bits: u8) -> f64 {
        let width = 1 + self.exp_bits + self.man_bits;
        let sign = (bits >> (width - 1)) & 1 == 1;
        let e = ((bits >> self.man_bits) as u32) & ((1 << self.exp_bits) - 1);
        let m = (bits as u32) & ((1 << self.man_bits) - 1);
        let emax = (1 << self.exp_bits) - 1;
        if self.unsigned_zero && sign && e == 0 && m == 0 {
            return f64::NAN;
        }
        if self.has_inf && e == emax {
            return if m == 0 {
                if sign {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            } else {
                f64::NAN
            };
        }
        let all_ones = m == (1 << self.man_bits) - 1;
        if !self.has_inf && !self.unsigned_zero && self.has_nan && e == emax && all_ones {
            return f64::NAN;
        }
        let scale = |k: i32| 2f64.powi(k);
        let v = if e == 0 {
            m as f64 * scale(self.min_exp() - self.man_bits as i32)
        } else {
            (1.0 + m as f64 / (1u32 << self.man_bits) as f64) * scale(e as i32 - self.bias)
        };
        if sign {
            -v
        } else {
            v
        }
    }

    /// The bit pattern of a value of this format (NaN: its NaN pattern; a value off the grid is
    /// rounded first, without saturation).
    pub fn encode(&self, v: f64) -> u8 {
        let v = self.round(v, false);
        let width = 1 + self.exp_bits + self.man_bits;
        (0..(1u16 << width))
            .map(|b| b as u8)
            .find(|&b| {
                let d = self.decode(b);
                (d.is_nan() && v.is_nan())
                    || (d == v && d.is_sign_negative() == v.is_sign_negative())
            })
            .unwrap_or(0)
    }

    /// Round to the nearest value of the format, ties to even. Out of range (and ±inf) gives
    /// ±max with `saturate` (and always in a format with neither inf nor NaN), else ±inf or NaN.
    pub fn round(&self, x: f64, saturate: bool) -> f64 {
        if x.is_nan() {
            return if self.has_nan { f64::NAN } else { -0.0 };
        }
        let over = |neg: bool| {
            let m = if saturate || (!self.has_inf && !self.has_nan) {
                self.max
            } else if self.has_inf {
                f64::INFINITY
            } else {
                return f64::NAN;
            };
            if neg {
                -m
            } else {
                m
            }
        };
        let a = x.abs();
        if a.is_infinite() {
            return over(x < 0.0);
        }
        // The binary exponent of a (subnormal f64s are far below every format's range).
        let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(self.min_exp());
        let q = 2f64.powi(e - self.man_bits as i32);
        let r = (a / q).round_ties_even() * q;
        if r > self.max {
            return over(x < 0.0);
        }
        if r == 0.0 && self.unsigned_zero {
            return 0.0;
        }
        if x.is_sign_negative() {
            -r
        } else {
            r
        }
    }
}

/// The smallest and largest float8e8m0 values, 2^-127 and 2^127.
pub const E8M0_MIN: f64 = 5.877_471_754_111_438e-39;
pub const E8M0_MAX: f64 = 1.701_411_834_604_692_3e38;

/// `x` as float8e8m0 holds it, rounding up to a power of two (ONNX Cast's default round_mode):
/// at least 2^-127 (0 too); above 2^127 (and +inf) 2^127 with `saturate`, else NaN; NaN and
/// negative values (no sign bit) NaN.
pub fn e8m0_round(x: f64, saturate: bool) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x <= E8M0_MIN {
        return E8M0_MIN;
    }
    if x > E8M0_MAX {
        return if saturate { E8M0_MAX } else { f64::NAN };
    }
    2f64.powi(x.log2().ceil() as i32).max(E8M0_MIN)
}

/// The float8e8m0 bit pattern of `v` (255 is NaN) and back.
pub fn e8m0_encode(v: f64) -> u8 {
    if v.is_nan() || v <= 0.0 {
        return 255;
    }
    (v.log2().round() as i32 + 127).clamp(0, 254) as u8
}

pub fn e8m0_decode(b: u8) -> f64 {
    if b == 255 {
        f64::NAN
    } else {
        2f64.powi(b as i32 - 127)
    }
}

const fn mini(
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    max: f64,
    has_inf: bool,
    has_nan: bool,
    unsigned_zero: bool,
) -> MiniFloat {
    MiniFloat {
        exp_bits,
        man_bits,
        bias,
        max,
        has_inf,
        has_nan,
        unsigned_zero,
    }
}

impl DType {
    /// Every dtype, for tests and listings.
    pub const ALL: [DType; 23] = [
        DType::F32,
        DType::F16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
        DType::F64,
        DType::BF16,
        DType::I8,
        DType::I16,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F4E2M1,
        DType::F8E8M0,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
    ];

    /// Bytes per element on the host (the 4- and 2-bit types are held one per byte).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            _ => 1,
        }
    }

    /// Bits per element of the dtype itself (4 for int4, 64 for i64).
    pub fn bits(self) -> u32 {
        match self.sub_byte_int() {
            Some((bits, _)) => bits,
            None if self == DType::F4E2M1 => 4,
            None => 8 * self.size_bytes() as u32,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32 | DType::F16 | DType::F64 | DType::BF16 | DType::F8E8M0
        ) || self.mini().is_some()
    }

    pub fn is_int(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    /// Signed numeric types (floats and signed integers).
    pub fn is_signed(self) -> bool {
        self.is_float()
            || matches!(
                self,
                DType::I32 | DType::I64 | DType::I8 | DType::I16 | DType::I4 | DType::I2
            )
    }

    /// The layout of the 8- and 4-bit floats.
    pub fn mini(self) -> Option<MiniFloat> {
        Some(match self {
            DType::F8E4M3FN => mini(4, 3, 7, 448.0, false, true, false),
            DType::F8E4M3FNUZ => mini(4, 3, 8, 240.0, false, true, true),
            DType::F8E5M2 => mini(5, 2, 15, 57344.0, true, true, false),
            DType::F8E5M2FNUZ => mini(5, 2, 16, 57344.0, false, true, true),
            DType::F4E2M1 => mini(2, 1, 1, 6.0, false, false, false),
            _ => return None,
        })
    }

    /// The bit width and signedness of the 4- and 2-bit integers, which wrap (two's complement)
    /// like numpy's casts.
    pub fn sub_byte_int(self) -> Option<(u32, bool)> {
        match self {
            DType::I4 => Some((4, true)),
            DType::U4 => Some((4, false)),
            DType::I2 => Some((2, true)),
            DType::U2 => Some((2, false)),
            _ => None,
        }
    }

    /// The range of the 8-, 16- and 32-bit integers below i32/i64 that saturate on conversion.
    pub fn int_range(self) -> Option<(f64, f64)> {
        match self {
            DType::I8 => Some((-128.0, 127.0)),
            DType::I16 => Some((-32768.0, 32767.0)),
            DType::U16 => Some((0.0, 65535.0)),
            DType::U8 => Some((0.0, 255.0)),
            _ => None,
        }
    }

    /// `x` as this dtype holds it, as f64: floats round (ties to even; the small floats without
    /// saturation, see [`MiniFloat::round`]), integers truncate toward zero and saturate (the
    /// 4- and 2-bit ones saturate to i32, then wrap), NaN to an integer is 0, bools are
    /// `x != 0`. The one conversion the reference uses.
    pub fn round(self, x: f64) -> f64 {
        if let Some(m) = self.mini() {
            return m.round(x, false);
        }
        if self == DType::F8E8M0 {
            return e8m0_round(x, false);
        }
        if let Some((bits, signed)) = self.sub_byte_int() {
            if x.is_nan() {
                return 0.0;
            }
            let m = 1i64 << bits;
            // Saturated to i32 first (as devices hold them), then wrapped.
            let v = (x.trunc() as i32 as i64).rem_euclid(m);
            return if signed && v >= m / 2 { v - m } else { v } as f64;
        }
        match self {
            DType::F64 => x,
            DType::F32 => x as f32 as f64,
            DType::F16 => half::f16::from_f64(x).to_f64(),
            DType::BF16 => half::bf16::from_f64(x).to_f64(),
            DType::I32 => x as i32 as f64,
            DType::I64 => x as i64 as f64,
            DType::U32 => x as u32 as f64,
            DType::U64 => x as u64 as f64,
            DType::I8 => x as i8 as f64,
            DType::I16 => x as i16 as f64,
            DType::U16 => x as u16 as f64,
            DType::U8 => x as u8 as f64,
            DType::Bool => (x != 0.0) as u8 as f64,
            _ => x,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::Bool => "bool",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E4M3FNUZ => "f8e4m3fnuz",
            DType::F8E5M2 => "f8e5m2",
            DType::F8E5M2FNUZ => "f8e5m2fnuz",
            DType::F4E2M1 => "f4e2m1",
            DType::F8E8M0 => "f8e8m0",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::I2 => "i2",
            DType::U2 => "u2",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The width BitCast reinterprets a dtype at: 8, 16 or 32 bits (bool as 8); `None` for the
/// 64-bit types (the reference carries values as f64, which cannot hold every 64-bit pattern),
/// the float8 and the 4- and 2-bit types.
pub fn bitcast_width(dt: DType) -> Option<u32> {
    match dt {
        DType::F32 | DType::I32 | DType::U32 => Some(32),
        DType::F16 | DType::BF16 | DType::I16 | DType::U16 => Some(16),
        DType::I8 | DType::U8 | DType::Bool => Some(8),
        _ => None,
    }
}

/// The bits of value `x` of `dt` (one of [`bitcast_width`]'s types), in the low bits.
pub fn to_bits(dt: DType, x: f64) -> u32 {
    match dt {
        DType::F32 => (x as f32).to_bits(),
        DType::F16 => half::f16::from_f64(x).to_bits() as u32,
        DType::BF16 => half::bf16::from_f64(x).to_bits() as u32,
        DType::Bool => (x != 0.0) as u32,
        _ => {
            let w = bitcast_width(dt).unwrap_or(32);
            let v = x as i64 as u64;
            (if w == 32 { v } else { v & ((1u64 << w) - 1) }) as u32
        }
    }
}

/// The value of `dt` whose bits are the low bits of `b`.
pub fn from_bits(dt: DType, b: u32) -> f64 {
    match dt {
        DType::F32 => f32::from_bits(b) as f64,
        DType::F16 => half::f16::from_bits(b as u16).to_f64(),
        DType::BF16 => half::bf16::from_bits(b as u16).to_f64(),
        DType::I32 => b as i32 as f64,
        DType::I16 => b as u16 as i16 as f64,
        DType::I8 => b as u8 as i8 as f64,
        DType::U16 => (b & 0xffff) as f64,
        DType::U8 => (b & 0xff) as f64,
        DType::Bool => (b & 0xff != 0) as u8 as f64,
        _ => b as f64,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bits_read_back_as_other_types() {
        assert_eq!(to_bits(DType::F32, 1.0), 0x3f80_0000);
        assert_eq!(
            from_bits(DType::I32, to_bits(DType::F32, -2.5)),
            -1_071_644_672.0
        );
        assert_eq!(
            from_bits(DType::F32, to_bits(DType::I32, 1_081_081_856.0)),
            3.75
        );
        assert_eq!(from_bits(DType::I16, to_bits(DType::U16, 65535.0)), -1.0);
        assert_eq!(from_bits(DType::U8, to_bits(DType::I8, -128.0)), 128.0);
        assert_eq!(from_bits(DType::U16, to_bits(DType::F16, 1.0)), 15360.0);
        assert_eq!(from_bits(DType::BF16, to_bits(DType::U16, 16256.0)), 1.0);
        assert_eq!(from_bits(DType::U8, to_bits(DType::Bool, 1.0)), 1.0);
        assert_eq!(bitcast_width(DType::I64), None);
        assert_eq!(bitcast_width(DType::F8E4M3FN), None);
    }

    use super::*;

    #[test]
    fn small_floats_round_like_onnx() {
        let e4 = DType::F8E4M3FN.mini().unwrap();
        assert_eq!(e4.round(0.478_925_47, false), 0.46875);
        assert!(e4.round(1e6, false).is_nan());
        assert_eq!(e4.round(1e6, true), 448.0);
        assert_eq!(e4.round(f64::NEG_INFINITY, true), -448.0);
        assert!(e4.round(-1e-7, false).is_sign_negative());
        let e5 = DType::F8E5M2.mini().unwrap();
        assert_eq!(e5.round(0.478_925_47, false), 0.5);
        assert_eq!(e5.round(1e6, false), f64::INFINITY);
        assert_eq!(e5.round(1e6, true), 57344.0);
        let uz = DType::F8E5M2FNUZ.mini().unwrap();
        assert!(uz.round(-1e-7, false).is_sign_positive());
        let f4 = DType::F4E2M1.mini().unwrap();
        assert_eq!(f4.round(0.25, false), 0.0);
        assert_eq!(f4.round(-3.5, false), -4.0);
        assert_eq!(f4.round(f64::INFINITY, false), 6.0);
        // Every pattern decodes to a value that encodes back to it.
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
        ] {
            let m = d.mini().unwrap();
            for b in 0..=255u8 {
                let v = m.decode(b);
                if !v.is_nan() {
                    assert_eq!(m.decode(m.encode(v)).to_bits(), v.to_bits(), "{d} {b:#x}");
                }
            }
        }
    }

    #[test]
    fn e8m0_rounds_up_to_powers_of_two() {
        assert_eq!(e8m0_round(0.124, false), 0.125);
        assert_eq!(e8m0_round(1.1, false), 2.0);
        assert_eq!(e8m0_round(4.0, false), 4.0);
        assert_eq!(e8m0_round(0.0, false), E8M0_MIN);
        assert_eq!(e8m0_round(-0.0, false), E8M0_MIN);
        assert!(e8m0_round(-1.0, true).is_nan());
        assert_eq!(e8m0_round(1e39, true), E8M0_MAX);
        assert!(e8m0_round(f64::INFINITY, false).is_nan());
        for b in 0..=254u8 {
            assert_eq!(e8m0_encode(e8m0_decode(b)), b);
        }
        assert!(e8m0_decode(255).is_nan());
    }

    #[test]
    fn sub_byte_ints_wrap() {
        assert_eq!(DType::I4.round(-9.0), 7.0);
        assert_eq!(DType::U4.round(-7.0), 9.0);
        assert_eq!(DType::I2.round(3.0), -1.0);
        assert_eq!(DType::I8.round(300.0), 127.0);
    }
}
