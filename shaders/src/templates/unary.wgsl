// One input, one output, elementwise; the input is read through a strided (broadcast) view.
// params: the view layout (prelude), then per view (in0): strides, offset.
@group(0) @binding(0) var<storage, read> in0: array<{{in_ty}}>;
@group(0) @binding(1) var<storage, read_write> out0: array<{{out_ty}}>;
@group(0) @binding(2) var<storage, read> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[VIEW_N]) {
        return;
    }
    let x = in0[view_offset(i, view_block(0u, params[VIEW_RANK]))];
    out0[i] = {{expr}};
}
