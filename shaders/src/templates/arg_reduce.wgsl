// ArgMax / ArgMin along one axis: the index of the first largest (smallest) element, or the
// last with the `last` param set; a NaN wins, as in numpy. One invocation per output element.
// len: the axis size; inner: the product of the dims after the axis.
@group(0) @binding(0) var<storage, read> x: array<{{ty}}>;
@group(0) @binding(1) var<storage, read_write> out0: array<i32>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
{{nan_fn}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[AR_N]) {
        return;
    }
    let len = params[AR_LEN];
    let inner = params[AR_INNER];
    let is_max = params[AR_MAX] == 1u;
    let last = params[AR_LAST] == 1u;
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
