// Shared helpers, prepended to every generated module.
// Shapes and strides travel in `params` (a read-only u32 array), so one pipeline serves every shape.

const WG: u32 = 256u;

// NaN and the infinities, made at run time: Tint (Chrome's and Dawn's WGSL compiler) evaluates
// a bitcast of NaN's bits (0x7fc00000) as a constant expression and refuses the shader: the
// value is not finite; a private variable's bits are not a constant expression.
var<private> F32_SPECIAL_BITS: vec3<u32> = vec3<u32>(0x7fc00000u, 0x7f800000u, 0xff800000u);
fn f32_nan() -> f32 {
    return bitcast<f32>(F32_SPECIAL_BITS.x);
}
fn f32_inf() -> f32 {
    return bitcast<f32>(F32_SPECIAL_BITS.y);
}
fn f32_ninf() -> f32 {
    return bitcast<f32>(F32_SPECIAL_BITS.z);
}

// Flat invocation index over a 2-D grid of workgroups (dispatches over 65,535 per dimension
// wrap into y).
fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + li;
}

// A strided view's params (elementwise and copy kernels): the view layout below, then per view
// a block (the `vb` layout) at `view_block(v, rank)`: strides (i32, may be 0 for broadcast or
// negative for reversed slices), then the start offset.
{{view_layout}}
fn view_block(v: u32, rank: u32) -> u32 {
    return view_end(rank) + v * vb_len(rank);
}

// Offset of flat output index `i` in the strided view whose block starts at `params[base]`.
fn view_offset(i: u32, base: u32) -> u32 {
    let rank = params[VIEW_RANK];
    var rem = i;
    var off = i32(params[base + vb_offset(rank)]);
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let dim = params[VIEW_DIMS + u32(d)];
        let c = rem % dim;
        rem = rem / dim;
        off = off + i32(c) * bitcast<i32>(params[base + VB_STRIDES + u32(d)]);
    }
    return u32(off);
}

// a / d for a below 2^24 (an index of a space of at most 2^24 elements), d at least 1, in float
// arithmetic: on a CPU adapter an integer division is one per SIMD lane, a float division one
// per SIMD batch. Both operands convert exactly and the float quotient is within 1 of the
// integer one; one step corrects it.
fn udiv_small(a: u32, d: u32) -> u32 {
    let q = u32(f32(a) / f32(d));
    let r = i32(a) - i32(q * d);
    return select(select(q, q + 1u, r >= i32(d)), q - 1u, r < 0);
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn max_nan(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) {
        return f32_nan();
    }
    return max(a, b);
}

fn min_nan(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) {
        return f32_nan();
    }
    return min(a, b);
}

// erf, Abramowitz & Stegun 7.1.26 refined (max abs error about 1.5e-7).
fn erf_f(x: f32) -> f32 {
    // Near 0 the approximation below (Abramowitz-Stegun 7.1.26) is 1 minus a number near 1:
    // its cancellation costs ~1e-7 absolute, most of erf's value at |x| < 1e-4. The odd series
    // 2/sqrt(pi) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216) is exact to f32 below 0.25.
    if (abs(x) < 0.25) {
        let x2 = x * x;
        return 1.1283791670955126 * x * (1.0 - x2 * (1.0 / 3.0 - x2 * (0.1 - x2 * (1.0 / 42.0 - x2 * (1.0 / 216.0)))));
    }
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return s * y;
}

fn tanh_f(x: f32) -> f32 {
    // Near 0 the builtin can lose relative precision (llvmpipe: ~1e-3 at 1e-4, it goes through
    // exp); the odd series x - x^3/3 + 2x^5/15 is exact to f32 there.
    if (abs(x) < 0.0625) {
        let x2 = x * x;
        return x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    }
    return tanh(clamp(x, -20.0, 20.0));
}

fn sigmoid_f(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// pow with the real-valued result for a negative base and an integral exponent.
fn pow_f(a: f32, b: f32) -> f32 {
    if (b == 0.0) {
        return 1.0;
    }
    if (a == 0.0) {
        if (b > 0.0) {
            return 0.0;
        }
        return f32_inf();
    }
    let r = exp2(b * log2(abs(a)));
    if (a < 0.0) {
        if (b != floor(b)) {
            return f32_nan();
        }
        if (abs(b % 2.0) == 1.0) {
            return -r;
        }
    }
    return r;
}
