// Pad: one invocation per output element, the shape written into the kernel ({{shape}}) so that
// each index's divisions are by constants (a division by a run-time value is one per lane on a
// CPU adapter: lavapipe ran EfficientNet's 3 -> 4 channel pad at 2.5-5 ms, 6x an elementwise
// kernel of its size). Mode {{mode}}; a constant pad writes `value`'s bits.
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
    var rem = i;
    var off = 0u;
    var inside = true;
{{walk}}    if (inside) {
        out0[i] = in0[off];
    } else {
        out0[i] = bitcast<{{ty}}>(params[PD_VALUE]);
    }
}
