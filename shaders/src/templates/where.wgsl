// out = cond ? a : b, all three broadcast (strided views).
// params: the view layout (prelude), then per view (cond, a, b): strides, offset.
@group(0) @binding(0) var<storage, read> in0: array<u32>;
@group(0) @binding(1) var<storage, read> in1: array<{{ty}}>;
@group(0) @binding(2) var<storage, read> in2: array<{{ty}}>;
@group(0) @binding(3) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(4) var<storage, read> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[VIEW_N]) {
        return;
    }
    let rank = params[VIEW_RANK];
    let c = in0[view_offset(i, view_block(0u, rank))];
    let a = in1[view_offset(i, view_block(1u, rank))];
    let b = in2[view_offset(i, view_block(2u, rank))];
    out0[i] = select(b, a, c != 0u);
}
