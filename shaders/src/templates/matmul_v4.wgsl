// Matmul, register-blocked and barrier-free: each invocation computes {{rows}} rows x
// {{cols}} columns, reading B as vec4 (B rows contiguous, N and the B strides multiples of 4) and
// A as scalars. With one row of invocations per workgroup (wg_y = 1) every invocation reads the
// same A rows, so the A loads are uniform (one scalar load on SIMD adapters). Workgroup {{wg_x}}x{{wg_y}}, tile {{tile_m}}x{{tile_n}}.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) {{b_decl}}

@compute @workgroup_size({{wg_x}}, {{wg_y}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_init();
    let t = tile_of(wg, nwg, {{tile_m}}u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let kk = params[MM_K];
    let m0 = t.m0 + {{lane_row}};
    let n0 = t.n0 + lid.x * {{cols}}u;
    let a_sm = params[MM_A_SM];
    let a_sk = params[MM_A_SK];
    let b_sk4 = params[MM_B_SK] / 4u;
    let n4 = nn / 4u;
    // Loops of a constant trip count are written out: only the loop over k runs (K + 1 trips).
    var cb: array<u32, {{cols4}}>;
{{for c in cols4}}    cb[{{c}}] = min(n0 / 4u + {{c}}u, n4 - 1u);
{{end}}    var pb = off_b(t.b) / 4u;
    var ra: array<u32, {{rows}}>;
{{for r in rows}}    ra[{{r}}] = off_a(t.b) + min(m0 + {{r}}u, mm - 1u) * a_sm;
{{end}}    var acc: array<array<vec4<f32>, {{cols4}}>, {{rows}}>;
    for (var k = 0u; k < kk; k = k + 1u) {
        var bv: array<vec4<f32>, {{cols4}}>;
{{for c in cols4}}        {
            let c = {{c}}u;
            bv[c] = {{b_load}};
        }
{{end}}        pb = pb + b_sk4;
        let ka = k * a_sk;
{{for r in rows}}        {
            let av = vec4<f32>(a[ra[{{r}}] + ka]);
{{for c in cols4}}            acc[{{r}}][{{c}}] = fma(av, bv[{{c}}], acc[{{r}}][{{c}}]);
{{end}}        }
{{end}}    }
    for (var r = 0u; r < {{rows}}u; r = r + 1u) {
        for (var c = 0u; c < {{cols4}}u; c = c + 1u) {
            for (var e = 0u; e < 4u; e = e + 1u) {
                store(t.b, m0 + r, n0 + c * 4u + e, acc[r][c][e]);
            }
        }
    }
}
