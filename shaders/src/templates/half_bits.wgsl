// The bits of f16 values the device holds in f32s, for BitCast; appended to a module that
// calls them. Without the shader-f16 feature there is no f16 type to bitcast through.

// The 16 bits of an f16 value held exactly in an f32 (no rounding: it is an f16 already).
fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let s = (u >> 16u) & 0x8000u;
    let e = (u >> 23u) & 0xffu;
    let m = u & 0x7fffffu;
    if (e == 255u) {
        return s | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    if (e > 112u) {
        return s | ((e - 112u) << 10u) | (m >> 13u);
    }
    if (e < 103u) {
        return s;
    }
    // A subnormal f16: the significand with its leading 1, shifted to units of 2^-24.
    return s | ((m | 0x800000u) >> (126u - e));
}

// The f16 value whose bits are the low 16 of `h`, as an f32.
fn f16_of_bits(h: u32) -> f32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 31u) {
        return bitcast<f32>(s | 0x7f800000u | (m << 13u));
    }
    if (e == 0u) {
        let v = f32(m) * bitcast<f32>(0x33800000u);
        return select(v, -v, s != 0u);
    }
    return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
