// Softmax along one axis: one invocation per row (outer x inner), three passes over the axis.
// The input is read through load_x (an elementwise prologue may compute it) and each result
// goes through epilogue (which may apply an elementwise chain before the store).
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = flat_index(wg, nwg, li);
    if (r >= params[SM_ROWS]) {
        return;
    }
    let len = params[SM_LEN];
    let inner = params[SM_INNER];
    let base = (r / inner) * len * inner + r % inner;
    var m = f32_ninf();
    for (var k = 0u; k < len; k = k + 1u) {
        m = max(m, load_x(base + k * inner));
    }
    var s = 0.0;
    for (var k = 0u; k < len; k = k + 1u) {
        s = s + exp(load_x(base + k * inner) - m);
    }
    let inv = 1.0 / s;
    for (var k = 0u; k < len; k = k + 1u) {
        epilogue(base + k * inner, exp(load_x(base + k * inner) - m) * inv);
    }
}
