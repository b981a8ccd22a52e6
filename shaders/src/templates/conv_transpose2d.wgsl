// Transposed NCHW convolution as a gather: one invocation per output element sums the inputs
// whose stride-spread footprint covers it.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding(4) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[CT_N]) {
        return;
    }
    let c_in = params[CT_C];
    let h = i32(params[CT_H]);
    let wd = i32(params[CT_W]);
    let oc_total = params[CT_O];
    let oh = params[CT_OH];
    let ow = params[CT_OW];
    let kh = params[CT_KH];
    let kw = params[CT_KW];
    let sh = i32(params[CT_SH]);
    let sw = i32(params[CT_SW]);
    let cig = params[CT_CIG];
    let cog = params[CT_COG];
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let oc = (i / (ow * oh)) % oc_total;
    let n = i / (ow * oh * oc_total);
    let g = oc / cog;
    let ocl = oc % cog;
    var acc = 0.0;
    if (params[CT_HAS_BIAS] != 0u) {
        acc = bias[oc];
    }
    for (var icl = 0u; icl < cig; icl = icl + 1u) {
        let ic = g * cig + icl;
        for (var ky = 0u; ky < kh; ky = ky + 1u) {
            let ty = i32(oy) + i32(params[CT_PT]) - i32(ky * params[CT_DH]);
            if (ty < 0 || ty % sh != 0 || ty / sh >= h) {
                continue;
            }
            let iy = ty / sh;
            for (var kx = 0u; kx < kw; kx = kx + 1u) {
                let tx = i32(ox) + i32(params[CT_PL]) - i32(kx * params[CT_DW]);
                if (tx < 0 || tx % sw != 0 || tx / sw >= wd) {
                    continue;
                }
                let ix = tx / sw;
                acc = acc + x[((n * c_in + ic) * u32(h) + u32(iy)) * u32(wd) + u32(ix)]
                    * w[((ic * cog + ocl) * kh + ky) * kw + kx];
            }
        }
    }
    out0[i] = acc;
}
