// Softmax along one axis, one workgroup a row ({{wg}} invocations, each over every {{wg}}-th
// element, combined by `row_max` and `row_sum`): for rows too long for one invocation (the
// loop budget, `loops.rs`) or so few and long that one invocation a row leaves the device idle.
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= params[SM_ROWS]) {
        return;
    }
    let len = params[SM_LEN];
    let inner = params[SM_INNER];
    let base = (r / inner) * len * inner + r % inner;
    var m = f32_ninf();
    for (var k = li; k < len; k = k + RW) {
        m = max(m, load_x(base + k * inner));
    }
    let mx = row_max(li, m);
    var s = 0.0;
    for (var k = li; k < len; k = k + RW) {
        s = s + exp(load_x(base + k * inner) - mx);
    }
    let inv = 1.0 / row_sum(li, s);
    for (var k = li; k < len; k = k + RW) {
        epilogue(base + k * inner, exp(load_x(base + k * inner) - mx) * inv);
    }
}
