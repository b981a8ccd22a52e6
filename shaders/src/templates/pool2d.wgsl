// Max or average pooling over NCHW, or where the max is: one invocation per output element.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<{{out_ty}}>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[PL_N]) {
        return;
    }
    let h = i32(params[PL_H]);
    let w = i32(params[PL_W]);
    let oh = params[PL_OH];
    let ow = params[PL_OW];
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let plane = i / (ow * oh);
    let base = plane * u32(h * w);
    var acc = {{init}};
    var cnt = 0u;
    var at = 0u;
    for (var ky = 0u; ky < params[PL_KH]; ky = ky + 1u) {
        let iy = i32(oy * params[PL_SH] + ky * params[PL_DH]) - i32(params[PL_PT]);
        if (iy < 0 || iy >= h) {
            continue;
        }
        for (var kx = 0u; kx < params[PL_KW]; kx = kx + 1u) {
            let ix = i32(ox * params[PL_SW] + kx * params[PL_DW]) - i32(params[PL_PL]);
            if (ix < 0 || ix >= w) {
                continue;
            }
            let v = x[base + u32(iy * w + ix)];
            {{combine}}
            cnt = cnt + 1u;
        }
    }
    out0[i] = {{finish}};
}
