// GatherElements along an axis: out[c] = data[c with c[axis] = indices[c]]. The output has the
// indices' shape; data is read through its own strides. Negative indices wrap; an index still
// out of range reads 0 (the CPU reference reports it as an error).
// len: data's axis size; strides: data's.
@group(0) @binding(0) var<storage, read> data: array<{{ty}}>;
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(3) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[GE_N]) {
        return;
    }
    let rank = params[GE_RANK];
    let axis = params[GE_AXIS];
    let len = i32(params[GE_LEN]);
    var idx = indices[i];
    if (idx < 0) {
        idx = idx + len;
    }
    if (idx < 0 || idx >= len) {
        out0[i] = {{ty}}(0);
        return;
    }
    var rem = i;
    var off = 0u;
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let dim = params[GE_OUT_DIMS + u32(d)];
        var c = rem % dim;
        rem = rem / dim;
        if (u32(d) == axis) {
            c = u32(idx);
        }
        off = off + c * params[ge_strides(rank) + u32(d)];
    }
    out0[i] = data[off];
}
