// Layer norm over the trailing `len` elements of each row, one workgroup a row ({{wg}}
// invocations, each over every {{wg}}-th element, combined by `row_sum`): for rows too long for
// one invocation (the loop budget, `loops.rs`) or few and long.
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= params[LN_ROWS]) {
        return;
    }
    let len = params[LN_LEN];
    let base = r * len;
    var s = 0.0;
    for (var k = li; k < len; k = k + RW) {
        s = s + load_x(base + k);
    }
    let mean = row_sum(li, s) / f32(len);
    var v = 0.0;
    for (var k = li; k < len; k = k + RW) {
        let d = load_x(base + k) - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(row_sum(li, v) / f32(len) + bitcast<f32>(params[LN_EPS]));
    let has_bias = params[LN_HAS_BIAS] != 0u;
    for (var k = li; k < len; k = k + RW) {
        var y = (load_x(base + k) - mean) * inv * scale[k];
        if (has_bias) {
            y = y + bias[k];
        }
        epilogue(base + k, y);
    }
}
