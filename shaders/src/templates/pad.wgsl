// Pad: one invocation per output element.
// pads: before each dim; mode: 0 constant, 1 reflect, 2 edge; value: the constant's bits.
@group(0) @binding(0) var<storage, read> in0: array<{{ty}}>;
@group(0) @binding(1) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[PD_N]) {
        return;
    }
    let rank = params[PD_RANK];
    let mode = params[pd_mode(rank)];
    var rem = i;
    var off = 0u;
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let ud = u32(d);
        let dim = params[PD_OUT_DIMS + ud];
        let c = rem % dim;
        rem = rem / dim;
        let n_in = i32(params[pd_in_dims(rank) + ud]);
        var v = i32(c) - i32(params[pd_pads(rank) + ud]);
        if (v < 0 || v >= n_in) {
            if (mode == 0u) {
                out0[i] = bitcast<{{ty}}>(params[pd_value(rank)]);
                return;
            } else if (mode == 1u) {
                if (v < 0) {
                    v = -v;
                } else {
                    v = 2 * (n_in - 1) - v;
                }
            } else {
                v = clamp(v, 0, n_in - 1);
            }
        }
        off = off + u32(v) * params[pd_in_strides(rank) + ud];
    }
    out0[i] = in0[off];
}
