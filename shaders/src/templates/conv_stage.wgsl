// The image column of a convolution (groups = 1), written to the staging texture for the matmul
// after it (`conv2d_staged`): texel (q, k) of layer b holds pixels 4q .. 4q + 3 of row
// k = (channel, tap) of image b, zero in the padding and past the last pixel
// (`stage_common.wgsl`: which texels an invocation writes).
{{layout}}{{cv_layout}}
@compute @workgroup_size({{stage_wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = stage_task(stage_index(wg, nwg, li), params[IS_N4], params[IS_K], params[IS_BATCH]);
    if (!t.valid) {
        return;
    }
    let q = t.q;
    let b = t.b;
    let k0 = t.k0;
    let nn = params[IS_N];
    let kw = params[IS_CV + CV_KW];
    let khw = params[IS_CV + CV_KH] * kw;
    let h = i32(params[IS_CV + CV_H]);
    let w = i32(params[IS_CV + CV_W]);
    let ow = params[IS_CV + CV_OW];
    let dh = i32(params[IS_CV + CV_DH]);
    let dw = i32(params[IS_CV + CV_DW]);
    let img = b * params[IS_CV + CV_CH] * u32(h * w);
    // The top-left tap of each of the texel's four pixels.
    var iy0: vec4<i32>;
    var ix0: vec4<i32>;
    var live: vec4<bool>;
{{for e in 4}}    {
        let p = q * 4u + {{e}}u;
        live[{{e}}] = p < nn;
        iy0[{{e}}] = i32(p / ow) * i32(params[IS_CV + CV_SH]) - i32(params[IS_CV + CV_PT]);
        ix0[{{e}}] = i32(p % ow) * i32(params[IS_CV + CV_SW]) - i32(params[IS_CV + CV_PL]);
    }
{{end}}    // The channel and tap of k, stepped rather than divided for each k (a division of a vector
    // is one per lane on a CPU).
    var ci = k0 / khw;
    let tap0 = k0 - ci * khw;
    var ky = tap0 / kw;
    var kx = tap0 - ky * kw;
    let kh = khw / kw;
    for (var k = k0; k < t.k1; k = k + 1u) {
        let plane = img + ci * u32(h * w);
        let iy = iy0 + vec4<i32>(i32(ky) * dh);
        let ix = ix0 + vec4<i32>(i32(kx) * dw);
        let inside = live & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(h)) & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(w));
        let at = vec4<u32>(clamp(iy, vec4<i32>(0), vec4<i32>(h - 1)) * w + clamp(ix, vec4<i32>(0), vec4<i32>(w - 1))) + vec4<u32>(plane);
        var v: vec4<f32>;
{{for e in 4}}        v[{{e}}] = select(0.0, src[at[{{e}}]], inside[{{e}}]);
{{end}}        textureStore(stage, vec2<u32>(q, k), b, v);
        kx = kx + 1u;
        if (kx == kw) {
            kx = 0u;
            ky = ky + 1u;
            if (ky == kh) {
                ky = 0u;
                ci = ci + 1u;
            }
        }
    }
}
