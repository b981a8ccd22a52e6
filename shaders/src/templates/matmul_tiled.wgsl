// Matmul, classic tiling through workgroup memory (what discrete GPUs prefer): workgroup 16x16,
// tile 64x64, K step 16, each invocation a 4x4 block. Any layout (strided loads).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<f32>;

var<workgroup> sa: array<f32, 1024>;
var<workgroup> sb: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_init();
    let t = tile_of(wg, nwg, 64u, 64u);
    // Every invocation of the workgroup shares `t`, so this return is uniform.
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let kk = params[MM_K];
    let oa = off_a(t.b);
    let ob = off_b(t.b);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < kk; k0 = k0 + 16u) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li * 4u + e;
            // sa[kk][m]: 16 x 64
            let am = idx % 64u;
            let ak = idx / 64u;
            let gm = t.m0 + am;
            let gk = k0 + ak;
            var va = 0.0;
            if (gm < mm && gk < kk) {
                va = a[oa + gm * params[MM_A_SM] + gk * params[MM_A_SK]];
            }
            sa[ak * 64u + am] = va;
            let gn = t.n0 + am;
            var vb = 0.0;
            if (gn < nn && gk < kk) {
                vb = bm[ob + gk * params[MM_B_SK] + gn * params[MM_B_SN]];
            }
            sb[ak * 64u + am] = vb;
        }
        workgroupBarrier();
        for (var k = 0u; k < 16u; k = k + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var r = 0u; r < 4u; r = r + 1u) {
                av[r] = sa[k * 64u + lid.y * 4u + r];
                bv[r] = sb[k * 64u + lid.x * 4u + r];
            }
            for (var r = 0u; r < 4u; r = r + 1u) {
                for (var c = 0u; c < 4u; c = c + 1u) {
                    acc[r][c] = fma(av[r], bv[c], acc[r][c]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            store(t.b, t.m0 + lid.y * 4u + r, t.n0 + lid.x * 4u + c, acc[r][c]);
        }
    }
}
