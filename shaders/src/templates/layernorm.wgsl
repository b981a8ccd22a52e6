// Layer norm over the trailing `len` elements of each row: one invocation per row.
// The input is read through load_x (an elementwise prologue may compute it) and each result
// goes through epilogue (which may apply an elementwise chain before the store).
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = flat_index(wg, nwg, li);
    if (r >= params[LN_ROWS]) {
        return;
    }
    let len = params[LN_LEN];
    let base = r * len;
    var s = 0.0;
    for (var k = 0u; k < len; k = k + 1u) {
        s = s + load_x(base + k);
    }
    let mean = s / f32(len);
    var v = 0.0;
    for (var k = 0u; k < len; k = k + 1u) {
        let d = load_x(base + k) - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(v / f32(len) + bitcast<f32>(params[LN_EPS]));
    let has_bias = params[LN_HAS_BIAS] != 0u;
    for (var k = 0u; k < len; k = k + 1u) {
        var y = (load_x(base + k) - mean) * inv * scale[k];
        if (has_bias) {
            y = y + bias[k];
        }
        epilogue(base + k, y);
    }
}
