// ArgMax / ArgMin along one axis: the index of the first largest (smallest) element, or the
// last with params[4] = 1; a NaN wins, as in numpy. One invocation per output element.
// params: [n_out, len (axis size), inner (product of the dims after the axis), max, last]
@group(0) @binding(0) var<storage, read> x: array<{{ty}}>;
@group(0) @binding(1) var<storage, read_write> out0: array<i32>;
@group(0) @binding(2) var<storage, read> params: array<u32>;

{{nan_fn}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[0]) {
        return;
    }
    let len = params[1];
    let inner = params[2];
    let is_max = params[3] == 1u;
    let last = params[4] == 1u;
    let base = (i / inner) * len * inner + i % inner;
    var best = 0u;
    var b = x[base];
    for (var k = 1u; k < len; k = k + 1u) {
        if (nan_of(b)) {
            break;
        }
        let v = x[base + k * inner];
        let wins = select((v < b), (v > b), is_max);
        if (nan_of(v) || wins || (last && v == b)) {
            best = k;
            b = v;
        }
    }
    out0[i] = i32(best);
}
