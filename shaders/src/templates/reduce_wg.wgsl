// Reduction, one workgroup an output ({{wg}} invocations, each over every {{wg}}-th reduced
// element; their partial results combined in workgroup memory, a tree of log2({{wg}}) steps): for
// reductions too long for one invocation (the loop budget, `loops.rs`) or few and long.
// Bindings and `decode` in reduce_common.wgsl.
const RW: u32 = {{wg}}u;
var<workgroup> red: array<{{acc_ty}}, {{wg}}>;

@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wg.x + wg.y * nwg.x;
    if (i >= params[RD_N_OUT]) {
        return;
    }
    let count = params[RD_COUNT];
    let kr = params[RD_KEPT_RANK];
    let rr = params[RD_RED_RANK];
    let base = decode(i, kr, RD_KEPT_DIMS, rd_kept_strides(kr));
    var acc: {{acc_ty}} = {{init}};
    for (var r = li; r < count; r = r + RW) {
        let v = {{acc_ty}}(load_x(base + decode(r, rr, rd_red_dims(kr), rd_red_strides(kr, rr))));
        acc = {{combine}};
    }
    red[li] = acc;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            let acc = red[li];
            let v = red[li + s];
            red[li] = {{combine}};
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let acc = red[0];
        out0[i] = {{finish}};
    }
}
