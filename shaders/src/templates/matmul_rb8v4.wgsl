// Matmul, register-blocked and barrier-free: each invocation computes 8 rows x 8 columns,
// reading B as vec4 (B rows contiguous, N and the B strides multiples of 4) and A as scalars.
// Workgroup {{wg_x}}x{{wg_y}}, tile {{tile_m}}x{{tile_n}}.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<vec4<f32>>;

@compute @workgroup_size({{wg_x}}, {{wg_y}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = tile_of(wg, nwg, {{tile_m}}u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let mm = params[0];
    let nn = params[1];
    let kk = params[2];
    let m0 = t.m0 + lid.y * 8u;
    let n0 = t.n0 + lid.x * 8u;
    let a_sm = params[7];
    let a_sk = params[8];
    let b_sk4 = params[9] / 4u;
    let n4 = nn / 4u;
    let c0 = min(n0 / 4u, n4 - 1u);
    let c1 = min(n0 / 4u + 1u, n4 - 1u);
    var pb = off_b(t.b) / 4u;
    var ra: array<u32, 8>;
    for (var r = 0u; r < 8u; r = r + 1u) {
        ra[r] = off_a(t.b) + min(m0 + r, mm - 1u) * a_sm;
    }
    var acc0: array<vec4<f32>, 8>;
    var acc1: array<vec4<f32>, 8>;
    for (var k = 0u; k < kk; k = k + 1u) {
        let b0 = bm[pb + c0];
        let b1 = bm[pb + c1];
        pb = pb + b_sk4;
        let ka = k * a_sk;
        for (var r = 0u; r < 8u; r = r + 1u) {
            let av = a[ra[r] + ka];
            acc0[r] = fma(vec4<f32>(av), b0, acc0[r]);
            acc1[r] = fma(vec4<f32>(av), b1, acc1[r]);
        }
    }
    for (var r = 0u; r < 8u; r = r + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            store(t.b, m0 + r, n0 + c, acc0[r][c]);
            store(t.b, m0 + r, n0 + 4u + c, acc1[r][c]);
        }
    }
}
