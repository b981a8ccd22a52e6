// Max or average pooling over NCHW, or where the max is: one invocation per output element.
// params: [n, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, count_include_pad]
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<{{out_ty}}>;
@group(0) @binding(2) var<storage, read> params: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[0]) {
        return;
    }
    let h = i32(params[1]);
    let w = i32(params[2]);
    let oh = params[3];
    let ow = params[4];
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let plane = i / (ow * oh);
    let base = plane * u32(h * w);
    var acc = {{init}};
    var cnt = 0u;
    var at = 0u;
    for (var ky = 0u; ky < params[5]; ky = ky + 1u) {
        let iy = i32(oy * params[7] + ky * params[11]) - i32(params[9]);
        if (iy < 0 || iy >= h) {
            continue;
        }
        for (var kx = 0u; kx < params[6]; kx = kx + 1u) {
            let ix = i32(ox * params[8] + kx * params[12]) - i32(params[10]);
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
