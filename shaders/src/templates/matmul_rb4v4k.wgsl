// Matmul, register-blocked and barrier-free, both operands as vec4: A rows are read four k at a
// time, B rows four n at a time. Each invocation computes 4 rows x 8 columns.
// Needs A and B rows contiguous and K, N and every stride and offset a multiple of 4.
// Workgroup {{wg_x}}x{{wg_y}}, tile {{tile_m}}x{{tile_n}}.
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bm: array<vec4<f32>>;

@compute @workgroup_size({{wg_x}}, {{wg_y}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_init();
    let t = tile_of(wg, nwg, {{tile_m}}u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let k4 = params[MM_K] / 4u;
    let m0 = t.m0 + lid.y * 4u;
    let n0 = t.n0 + lid.x * 8u;
    let a_sm4 = params[MM_A_SM] / 4u;
    let b_sk4 = params[MM_B_SK] / 4u;
    let n4 = nn / 4u;
    let c0 = min(n0 / 4u, n4 - 1u);
    let c1 = min(n0 / 4u + 1u, n4 - 1u);
    var pb = off_b(t.b) / 4u;
    // The 4-row block's loops are written out: only the loop over k / 4 runs.
    var ra: array<u32, 4>;
{{for r in 4}}    ra[{{r}}] = off_a(t.b) / 4u + min(m0 + {{r}}u, mm - 1u) * a_sm4;
{{end}}    var acc0: array<vec4<f32>, 4>;
    var acc1: array<vec4<f32>, 4>;
    for (var k = 0u; k < k4; k = k + 1u) {
        let b00 = bm[pb + c0];
        let b01 = bm[pb + c1];
        let b10 = bm[pb + b_sk4 + c0];
        let b11 = bm[pb + b_sk4 + c1];
        let b20 = bm[pb + 2u * b_sk4 + c0];
        let b21 = bm[pb + 2u * b_sk4 + c1];
        let b30 = bm[pb + 3u * b_sk4 + c0];
        let b31 = bm[pb + 3u * b_sk4 + c1];
        pb = pb + 4u * b_sk4;
{{for r in 4}}        {
            let av = a[ra[{{r}}] + k];
            acc0[{{r}}] = fma(vec4<f32>(av.x), b00, acc0[{{r}}]);
            acc1[{{r}}] = fma(vec4<f32>(av.x), b01, acc1[{{r}}]);
            acc0[{{r}}] = fma(vec4<f32>(av.y), b10, acc0[{{r}}]);
            acc1[{{r}}] = fma(vec4<f32>(av.y), b11, acc1[{{r}}]);
            acc0[{{r}}] = fma(vec4<f32>(av.z), b20, acc0[{{r}}]);
            acc1[{{r}}] = fma(vec4<f32>(av.z), b21, acc1[{{r}}]);
            acc0[{{r}}] = fma(vec4<f32>(av.w), b30, acc0[{{r}}]);
            acc1[{{r}}] = fma(vec4<f32>(av.w), b31, acc1[{{r}}]);
        }
{{end}}    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            store(t.b, m0 + r, n0 + c, acc0[r][c]);
            store(t.b, m0 + r, n0 + 4u + c, acc1[r][c]);
        }
    }
}
