// Reduction, one invocation an output (bindings and `decode` in reduce_common.wgsl).
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[RD_N_OUT]) {
        return;
    }
    let count = params[RD_COUNT];
    let kr = params[RD_KEPT_RANK];
    let rr = params[RD_RED_RANK];
    let base = decode(i, kr, RD_KEPT_DIMS, rd_kept_strides(kr));
    var acc: {{acc_ty}} = {{init}};
    for (var r = 0u; r < count; r = r + 1u) {
        let v = {{acc_ty}}(load_x(base + decode(r, rr, rd_red_dims(kr), rd_red_strides(kr, rr))));
        acc = {{combine}};
    }
    out0[i] = {{finish}};
}
