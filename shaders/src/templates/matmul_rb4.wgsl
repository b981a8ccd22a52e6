// Matmul, register-blocked and barrier-free: each invocation computes a 4x4 block with scalar,
// strided loads (any layout). Workgroup 8x8, tile 32x32.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_init();
    let t = tile_of(wg, nwg, 32u, 32u);
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let kk = params[MM_K];
    let m0 = t.m0 + (li / 8u) * 4u;
    let n0 = t.n0 + (li % 8u) * 4u;
    let a_sm = params[MM_A_SM];
    let a_sk = params[MM_A_SK];
    let b_sk = params[MM_B_SK];
    let b_sn = params[MM_B_SN];
    // The 4 x 4 block's loops are written out: only the loop over k runs (K + 1 trips).
    var ra: array<u32, 4>;
    var rb: array<u32, 4>;
{{for r in 4}}    ra[{{r}}] = off_a(t.b) + min(m0 + {{r}}u, mm - 1u) * a_sm;
    rb[{{r}}] = off_b(t.b) + min(n0 + {{r}}u, nn - 1u) * b_sn;
{{end}}    var acc: array<array<f32, 4>, 4>;
    for (var k = 0u; k < kk; k = k + 1u) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
{{for r in 4}}        av[{{r}}] = a[ra[{{r}}] + k * a_sk];
        bv[{{r}}] = bm[rb[{{r}}] + k * b_sk];
{{end}}{{for r in 4}}{{for c in 4}}        acc[{{r}}][{{c}}] = fma(av[{{r}}], bv[{{c}}], acc[{{r}}][{{c}}]);
{{end}}{{end}}    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            store(t.b, m0 + r, n0 + c, acc[r][c]);
        }
    }
}
