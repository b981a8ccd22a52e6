// The first dispatch of a scatter: out = data, as 32-bit words.
@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> out0: array<u32>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[SR_ROWS] * params[SR_WIDTH]) {
        return;
    }
    out0[i] = data[i];
}
