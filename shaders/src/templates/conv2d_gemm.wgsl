// Convolution as an implicit GEMM (groups = 1): C[n][o, p] = sum_k W[o, k] * X[n][k, p] with
// k = (c, ky, kx) and p = (oy, ox); the image column X[n][k, p] is gathered from the NCHW input
// (zero outside the padding) instead of being materialised. Register-blocked like matmul_v4:
// each invocation computes {{rows}} output channels x {{cols}} output pixels, no barriers.
// Params as matmul_common (M = O, N = OH*OW, K = C*KH*KW, batch = images, B offset = image
// start), then the conv params (`conv_params`).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> xin: array<f32>;

@compute @workgroup_size({{wg_x}}, {{wg_y}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_init();
    let t = tile_of(wg, nwg, {{tile_m}}u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let cv = conv_params();
    let ch = cv.ch;
    let h = cv.h;
    let w = cv.w;
    let ow = cv.ow;
    let kh = cv.kh;
    let sh = cv.sh;
    let sw = cv.sw;
    let pt = cv.pt;
    let pl = cv.pl;
    let dh = cv.dh;
    let dw = cv.dw;
    let m0 = t.m0 + lid.y * {{rows}}u;
    let n0 = t.n0 + lid.x * {{cols}}u;
    // One loop over k = (channel, tap), K + 1 loop ends; the register block's loops (of a
    // constant trip count) are written out.
    // Where each of this invocation's pixels starts in the input (top-left tap).
    var iy0: array<i32, {{cols}}>;
    var ix0: array<i32, {{cols}}>;
    var live: array<bool, {{cols}}>;
{{for j in cols}}    {
        let p = min(n0 + {{j}}u, nn - 1u);
        live[{{j}}] = n0 + {{j}}u < nn;
        iy0[{{j}}] = i32(p / ow) * sh - pt;
        ix0[{{j}}] = i32(p % ow) * sw - pl;
    }
{{end}}    var ra: array<u32, {{rows}}>;
{{for r in rows}}    ra[{{r}}] = min(m0 + {{r}}u, mm - 1u) * params[MM_A_SM];
{{end}}    let xb = off_b(t.b);
    var acc: array<array<vec4<f32>, {{cols4}}>, {{rows}}>;
    let khw = kh * cv.kw;
    let kk = ch * khw;
    for (var k = 0u; k < kk; k = k + 1u) {
        // The channel and tap of this k (the same in every invocation).
        let ci = k / khw;
        let tap = k - ci * khw;
        let ky = tap / cv.kw;
        let kx = tap - ky * cv.kw;
        let xc = xb + ci * u32(h * w);
        let dy = i32(ky) * dh;
        let dx = i32(kx) * dw;
        var bv: array<vec4<f32>, {{cols4}}>;
{{for q in cols4}}{{for e in 4}}        {
            let j = {{q}}u * 4u + {{e}}u;
            let iy = iy0[j] + dy;
            let ix = ix0[j] + dx;
            let inside = live[j] && iy >= 0 && iy < h && ix >= 0 && ix < w;
            let at = xc + u32(clamp(iy, 0, h - 1) * w + clamp(ix, 0, w - 1));
            bv[{{q}}][{{e}}] = select(0.0, xin[at], inside);
        }
{{end}}{{end}}{{for r in rows}}        {
            let av = vec4<f32>(a[ra[{{r}}] + k]);
{{for q in cols4}}            acc[{{r}}][{{q}}] = fma(av, bv[{{q}}], acc[{{r}}][{{q}}]);
{{end}}        }
{{end}}    }
    for (var r = 0u; r < {{rows}}u; r = r + 1u) {
        for (var q = 0u; q < {{cols4}}u; q = q + 1u) {
            for (var e = 0u; e < 4u; e = e + 1u) {
                store(t.b, m0 + r, n0 + q * 4u + e, acc[r][q][e]);
            }
        }
    }
}
