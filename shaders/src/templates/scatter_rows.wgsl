// Scatter of update rows into data rows (ONNX ScatterElements and ScatterND, their targets
// flattened to rows): `out` starts as a copy of `data` (the `scatter_copy` dispatch before this
// one); then one invocation per element of an update row. The first update of each target row
// (a scan of the earlier targets) owns that row's element: it combines the data element with
// every update aimed at the row, in the updates' order, and stores the result once. No atomics,
// the order is ONNX's (the last of equal targets wins for `none`), and an update aimed past the
// data's rows (the CPU reference reports it) is skipped.
// rows: N; width: S; count: U.
@group(0) @binding(0) var<storage, read> data: array<{{ty}}>;
@group(0) @binding(1) var<storage, read> upd: array<{{ty}}>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding(4) var<storage, read> params: array<u32>;
{{layout}}

fn combine(old: {{ty}}, v: {{ty}}) -> {{ty}} {
    return {{combine}};
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    let width = params[SR_WIDTH];
    let count = params[SR_COUNT];
    if (i >= width * count) {
        return;
    }
    let u = i / width;
    let s = i - u * width;
    let t = targets[u];
    if (t < 0 || u32(t) >= params[SR_ROWS]) {
        return;
    }
    let at = u32(t) * width + s;
    var acc = data[at];
    for (var j = 0u; j < count; j = j + 1u) {
        if (targets[j] == t) {
            if (j < u) {
                // An earlier update owns this row.
                return;
            }
            acc = combine(acc, upd[j * width + s]);
        }
    }
    out0[at] = acc;
}
