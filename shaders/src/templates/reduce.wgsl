// Reduction, one invocation an output (bindings and `decode` in reduce_common.wgsl).
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
