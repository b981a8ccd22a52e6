// NCHW resize of the two spatial dims: nearest (round down) or bilinear.
// bilinear: 0 nearest, 1 bilinear; coord: 0 half-pixel, 1 align-corners, 2 asymmetric.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
fn src(o: u32, input: u32, output: u32, coord: u32) -> f32 {
    let scale = f32(input) / f32(output);
    if (coord == 0u) {
        return (f32(o) + 0.5) * scale - 0.5;
    }
    if (coord == 1u) {
        if (output == 1u) {
            return 0.0;
        }
        return f32(o) * f32(input - 1u) / f32(output - 1u);
    }
    return f32(o) * scale;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[RS_N]) {
        return;
    }
    let h = params[RS_H];
    let w = params[RS_W];
    let oh = params[RS_OH];
    let ow = params[RS_OW];
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let base = (i / (ow * oh)) * h * w;
    let sy = src(oy, h, oh, params[RS_COORD]);
    let sx = src(ox, w, ow, params[RS_COORD]);
    if (params[RS_BILINEAR] == 0u) {
        let iy = min(u32(max(floor(sy), 0.0)), h - 1u);
        let ix = min(u32(max(floor(sx), 0.0)), w - 1u);
        out0[i] = x[base + iy * w + ix];
        return;
    }
    let cy = clamp(sy, 0.0, f32(h - 1u));
    let cx = clamp(sx, 0.0, f32(w - 1u));
    let y0 = u32(floor(cy));
    let x0 = u32(floor(cx));
    let y1 = min(y0 + 1u, h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    let fy = cy - f32(y0);
    let fx = cx - f32(x0);
    let top = x[base + y0 * w + x0] * (1.0 - fx) + x[base + y0 * w + x1] * fx;
    let bot = x[base + y1 * w + x0] * (1.0 - fx) + x[base + y1 * w + x1] * fx;
    out0[i] = top * (1.0 - fy) + bot * fy;
}
