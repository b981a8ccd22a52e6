// Rounding to bfloat16 and the 8- and 4-bit floats, appended to a module whose casts use it.

// Round to bfloat16, ties to even (kept in f32).
fn bf16_round(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let u = bitcast<u32>(x);
    return bitcast<f32>((u + 0x7fffu + ((u >> 16u) & 1u)) & 0xffff0000u);
}

// Round to a small float (the 8- and 4-bit formats) of `man` mantissa bits, smallest normal
// exponent `emin` and largest value `maxv`, ties to even (kept in f32). Out of range and ±inf:
// `over` 0 gives ±maxv, 1 ±inf, 2 NaN. `nan_zero`: NaN becomes -0 (a format without NaN);
// `uz`: the format has no -0. Scaling is by exact powers of two built from bits.
fn mini_round(x: f32, man: i32, emin: i32, maxv: f32, over: u32, nan_zero: bool, uz: bool) -> f32 {
    if (is_nan(x)) {
        return select(x, bitcast<f32>(0x80000000u), nan_zero);
    }
    let a = abs(x);
    var r = f32_inf();
    if (bitcast<u32>(a) < 0x7f800000u) {
        let e = max(i32((bitcast<u32>(a) >> 23u) & 0xffu) - 127, emin) - man;
        let q = bitcast<f32>(u32(e + 127) << 23u);
        let q_inv = bitcast<f32>(u32(127 - e) << 23u);
        r = round(a * q_inv) * q;
    }
    if (r > maxv) {
        if (over == 0u) {
            r = maxv;
        } else if (over == 1u) {
            r = f32_inf();
        } else {
            return f32_nan();
        }
    }
    if (uz && r == 0.0) {
        return 0.0;
    }
    return bitcast<f32>(bitcast<u32>(r) | (bitcast<u32>(x) & 0x80000000u));
}

// Round up to a power of two, as float8e8m0 holds it (kept in f32): at least 2^-127 (a subnormal
// f32, read back exactly); above 2^127 2^127 with `saturate`, else NaN; NaN and negatives NaN.
fn e8m0_round(x: f32, saturate: bool) -> f32 {
    if (is_nan(x) || x < 0.0) {
        return f32_nan();
    }
    let u = bitcast<u32>(x) & 0x7fffffffu;
    if (u <= 0x00400000u) {
        return bitcast<f32>(0x00400000u);
    }
    var e = u >> 23u;
    if ((u & 0x7fffffu) != 0u && e != 255u) {
        e = e + 1u;
    }
    if (e >= 255u) {
        return select(f32_nan(), bitcast<f32>(0x7f000000u), saturate);
    }
    return bitcast<f32>(e << 23u);
}
