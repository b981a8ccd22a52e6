// A fused chain of elementwise ops: each invocation reads its inputs (strided, broadcast views),
// computes the chain in registers and writes every value the rest of the graph needs.
// params: the layout, then the view block at EV.
{{decls}}
{{layout}}@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[FE_N]) {
        return;
    }
{{body}}
}
