// Reduction: one invocation per output element, looping over the reduced elements. The input
// is read through load_x (an elementwise prologue may compute it).
// params: [n_out, count, kept_rank, reduced_rank,
//        kept dims.., kept strides.., reduced dims.., reduced strides..]
@group(0) @binding(1) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{extra}}

fn decode(i: u32, rank: u32, dims: u32, strides: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let dim = params[dims + u32(d)];
        off = off + (rem % dim) * params[strides + u32(d)];
        rem = rem / dim;
    }
    return off;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[0]) {
        return;
    }
    let count = params[1];
    let kr = params[2];
    let rr = params[3];
    let base = decode(i, kr, 4u, 4u + kr);
    var acc: {{acc_ty}} = {{init}};
    for (var r = 0u; r < count; r = r + 1u) {
        let v = {{acc_ty}}(load_x(base + decode(r, rr, 4u + 2u * kr, 4u + 2u * kr + rr)));
        acc = {{combine}};
    }
    out0[i] = {{finish}};
}
