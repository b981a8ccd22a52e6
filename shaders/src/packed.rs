//! Integer constants packed four i8 to a 32-bit word, and the kernels rewritten to read them.
//!
//! The device holds small integers as i32, so a quantized model's weights would move f32's
//! bytes. A constant whose every value fits in i8 (a quantized weight less its zero point) and
//! that only the operands listed here read is uploaded packed, the first value in the low
//! byte, and its kernels rewritten by [`pack_int8`]: a quarter of the bytes in memory and in
//! every read. The device decides which constants qualify ([`packable`] says which bindings
//! can take one).

use crate::{Error, Kernel};

/// One operand a kernel can read packed: its binding, its declaration and its read function's
/// body as the kernel has them (i32), and packed.
struct Operand {
    binding: usize,
    decl: (&'static str, &'static str),
    read: (&'static str, &'static str),
}

/// A kernel whose operands can be read packed, and the name of its rewritten form.
struct Packing {
    kernel: &'static str,
    packed: &'static str,
    /// Whether its reads need WGSL's `packed_4x8_integer_dot_product` (`unpack4xI8`); the
    /// others use `extractBits`, which every adapter has.
    unpack4x: bool,
    operands: &'static [Operand],
}

const PACKINGS: [Packing; 2] = [
    // The vec4 integer matmul: A and B read four k (four columns of B) a word, widened by
    // `unpack4xI8`. A MatMul's weight is its B, a pointwise conv's weight its A.
    Packing {
        kernel: "matmul_int_v4",
        packed: "matmul_int_v4_i8",
        unpack4x: true,
        operands: &[
            Operand {
                binding: 0,
                decl: (
                    "var<storage, read> a: array<vec4<i32>>;",
                    "var<storage, read> a: array<u32>;",
                ),
                read: ("    return a[i];", "    return unpack4xI8(a[i]);"),
            },
            Operand {
                binding: 1,
                decl: (
                    "var<storage, read> bm: array<vec4<i32>>;",
                    "var<storage, read> bm: array<u32>;",
                ),
                read: ("    return bm[i];", "    return unpack4xI8(bm[i]);"),
            },
        ],
    },
    // The direct integer conv (3 x 3 and other windows, any groups): its weight, one value a
    // read, sign-extended out of its word by `extractBits`.
    Packing {
        kernel: "conv2d_int",
        packed: "conv2d_int_i8",
        unpack4x: false,
        operands: &[Operand {
            binding: 1,
            decl: (
                "var<storage, read> w: array<i32>;",
                "var<storage, read> w: array<u32>;",
            ),
            read: (
                "    return w[i];",
                "    return extractBits(bitcast<i32>(w[i >> 2u]), (i & 3u) * 8u, 8u);",
            ),
        }],
    },
];

fn packing(k: &Kernel) -> Option<&'static Packing> {
    PACKINGS.iter().find(|p| p.kernel == k.name)
}

/// Whether binding `binding` of kernel `k` can read a packed constant, on an adapter with
/// (`unpack4x`) or without WGSL's `packed_4x8_integer_dot_product`.
pub fn packable(k: &Kernel, binding: usize, unpack4x: bool) -> bool {
    packing(k).is_some_and(|p| {
        (unpack4x || !p.unpack4x) && p.operands.iter().any(|o| o.binding == binding)
    })
}

/// Kernel `k` reading the operands at bindings `packed` packed, four i8 to a u32, the first in
/// the low byte. `None` for a kernel that has no packed form, or no operand packed; an error
/// for a binding it cannot take packed.
pub fn pack_int8(k: &Kernel, packed: &[usize]) -> Result<Option<Kernel>, Error> {
    let Some(p) = packing(k).filter(|_| !packed.is_empty()) else {
        return Ok(None);
    };
    let mut wgsl = k.wgsl.clone();
    for &b in packed {
        let op = p
            .operands
            .iter()
            .find(|o| o.binding == b)
            .filter(|o| wgsl.contains(o.decl.0) && wgsl.contains(o.read.0))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "kernel '{}' has no i32 operand at binding {b} to pack",
                    k.name
                ))
            })?;
        wgsl = wgsl
            .replacen(op.decl.0, op.decl.1, 1)
            .replacen(op.read.0, op.read.1, 1);
    }
    crate::validate(p.packed, &wgsl)?;
    Ok(Some(Kernel {
        name: p.packed.into(),
        wgsl,
        ..k.clone()
    }))
}
