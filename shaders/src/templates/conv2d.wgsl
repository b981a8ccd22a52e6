// Direct NCHW convolution (groups, stride, padding, dilation; depthwise is groups = C).
// Each invocation computes 4 output channels x 4 adjacent output columns, reusing every input
// value for 4 channels and every weight for 4 columns.
// cig = C / groups, cog = O / groups, bx = ceil(OW / 4), bo = ceil(cog / 4).
// `el` is f32, or i32 for the integer conv (sums in i32, wrapping), whose store is typed by the
// group's last value (`out_ty`).
@group(0) @binding(0) var<storage, read> x: array<{{el}}>;
@group(0) @binding(1) var<storage, read> w: array<{{el}}>;
@group(0) @binding(2) var<storage, read> bias: array<{{el}}>;
@group(0) @binding(3) var<storage, read_write> out0: array<{{out_ty}}>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

// Weight i (the integer conv's may be packed four to a word: `sfumato_shaders::packed`).
fn w_at(i: u32) -> {{el}} {
    return w[i];
}

// acc + wv * xv.
fn mac4(acc: vec4<{{el}}>, wv: {{el}}, xv: vec4<{{el}}>) -> vec4<{{el}}> {
    return {{mac}};
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * 64u + li;
    let h = i32(params[C2_H]);
    let wd = i32(params[C2_W]);
    let oc_total = params[C2_O];
    let oh = params[C2_OH];
    let ow = params[C2_OW];
    let kh = params[C2_KH];
    let kw = params[C2_KW];
    let cig = params[C2_CIG];
    let cog = params[C2_COG];
    let bx = params[C2_BX];
    let bo = params[C2_BO];
    let groups = oc_total / cog;
    let total = params[C2_N] * groups * bo * oh * bx;
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
    var acc: array<vec4<{{el}}>, 4>;
    var wrow: array<u32, 4>;
{{for j in 4}}    wrow[{{j}}] = (min(ob * 4u + {{j}}u, cog - 1u) + g * cog) * cig * kh * kw;
{{end}}
    let iy0 = i32(oy * params[C2_SH]) - i32(params[C2_PT]);
    for (var icl = 0u; icl < cig; icl = icl + 1u) {
        let xplane = (n * params[C2_C] + g * cig + icl) * u32(h * wd);
        for (var ky = 0u; ky < kh; ky = ky + 1u) {
            let iy = iy0 + i32(ky * params[C2_DH]);
            if (iy < 0 || iy >= h) {
                continue;
            }
            let xrow = xplane + u32(iy * wd);
            for (var kx = 0u; kx < kw; kx = kx + 1u) {
                // The 4 x 4 block's loops are written out (only the channel and tap loops run).
                var xv = vec4<{{el}}>({{zero}});
{{for c in 4}}                {
                    let ix = i32((ox0 + {{c}}u) * params[C2_SW] + kx * params[C2_DW]) - i32(params[C2_PL]);
                    if (ix >= 0 && ix < wd) {
                        xv[{{c}}] = x[xrow + u32(ix)];
                    }
                }
{{end}}                let widx = (icl * kh + ky) * kw + kx;
{{for j in 4}}                acc[{{j}}] = mac4(acc[{{j}}], w_at(wrow[{{j}}] + widx), xv);
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
        var b = {{zero}};
        if (params[C2_HAS_BIAS] != 0u) {
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
