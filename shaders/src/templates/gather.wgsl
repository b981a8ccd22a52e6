// Gather along an axis: out[o, j, r] = data[o, indices[j], r]. Negative indices wrap; an index
// still out of range reads 0 (the CPU reference reports it as an error).
// count: the number of indices; len: the axis size.
@group(0) @binding(0) var<storage, read> data: array<{{ty}}>;
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(3) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[GA_N]) {
        return;
    }
    let count = params[GA_COUNT];
    let len = i32(params[GA_LEN]);
    let inner = params[GA_INNER];
    let r = i % inner;
    let j = (i / inner) % count;
    let o = i / (inner * count);
    var idx = indices[j];
    if (idx < 0) {
        idx = idx + len;
    }
    if (idx < 0 || idx >= len) {
        out0[i] = {{ty}}(0);
        return;
    }
    out0[i] = data[(o * u32(len) + u32(idx)) * inner + r];
}
