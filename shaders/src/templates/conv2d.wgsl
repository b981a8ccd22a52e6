// Direct NCHW convolution (groups, stride, padding, dilation; depthwise is groups = C).
// Each invocation computes 4 output channels x 4 adjacent output columns, reusing every input
// value for 4 channels and every weight for 4 columns.
// params: [N, C, H, W, O, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, cig (C/groups), cog (O/groups),
//        has_bias, blocks_x (ceil(OW/4)), blocks_o (ceil(cog/4))]
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{extra}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * 64u + li;
    let h = i32(params[2]);
    let wd = i32(params[3]);
    let oc_total = params[4];
    let oh = params[5];
    let ow = params[6];
    let kh = params[7];
    let kw = params[8];
    let cig = params[15];
    let cog = params[16];
    let bx = params[18];
    let bo = params[19];
    let groups = oc_total / cog;
    let total = params[0] * groups * bo * oh * bx;
    if (i >= total) {
        return;
    }
    let xb = i % bx;
    let oy = (i / bx) % oh;
    let ob = (i / (bx * oh)) % bo;
    let g = (i / (bx * oh * bo)) % groups;
    let n = i / (bx * oh * bo * groups);
    let ox0 = xb * 4u;
    let oc0 = g * cog + ob * 4u;
    var acc: array<vec4<f32>, 4>;
    var wrow: array<u32, 4>;
{{for j in 4}}    wrow[{{j}}] = (min(ob * 4u + {{j}}u, cog - 1u) + g * cog) * cig * kh * kw;
{{end}}
    let iy0 = i32(oy * params[9]) - i32(params[11]);
    for (var icl = 0u; icl < cig; icl = icl + 1u) {
        let xplane = (n * params[1] + g * cig + icl) * u32(h * wd);
        for (var ky = 0u; ky < kh; ky = ky + 1u) {
            let iy = iy0 + i32(ky * params[13]);
            if (iy < 0 || iy >= h) {
                continue;
            }
            let xrow = xplane + u32(iy * wd);
            for (var kx = 0u; kx < kw; kx = kx + 1u) {
                // The 4 x 4 block's loops are written out (only the channel and tap loops run).
                var xv = vec4<f32>(0.0);
{{for c in 4}}                {
                    let ix = i32((ox0 + {{c}}u) * params[10] + kx * params[14]) - i32(params[12]);
                    if (ix >= 0 && ix < wd) {
                        xv[{{c}}] = x[xrow + u32(ix)];
                    }
                }
{{end}}                let widx = (icl * kh + ky) * kw + kx;
{{for j in 4}}                acc[{{j}}] = fma(vec4<f32>(w[wrow[{{j}}] + widx]), xv, acc[{{j}}]);
{{end}}
            }
        }
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let ocl = ob * 4u + j;
        if (ocl >= cog) {
            continue;
        }
        let oc = oc0 + j;
        var b = 0.0;
        if (params[17] != 0u) {
            b = bias[oc];
        }
        for (var c = 0u; c < 4u; c = c + 1u) {
            let ox = ox0 + c;
            if (ox < ow) {
                epilogue(((n * oc_total + oc) * oh + oy) * ow + ox, acc[j][c] + b);
            }
        }
    }
}
