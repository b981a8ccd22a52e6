// Copy of equal contiguous blocks between two row layouts (one part of a concat or a split):
// block b, element e: out[dst_off + b * dst_row + e] = in[src_off + b * src_row + e]. One divide
// per element (in float arithmetic where indices are below 2^24), where the strided copy pays
// one per dimension.
@group(0) @binding(0) var<storage, read> in0: array<{{ty}}>;
@group(0) @binding(1) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[BC_N]) {
        return;
    }
    let b = {{block_of}};
    let e = i - b * params[BC_BLK];
    out0[params[BC_DST_OFF] + b * params[BC_DST_ROW] + e] = in0[params[BC_SRC_OFF] + b * params[BC_SRC_ROW] + e];
}
