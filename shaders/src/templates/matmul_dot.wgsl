// Matmul whose B is contiguous along K (a transposed operand: attention's K^T, a Linear weight
// kept as `N x K`): each output is a dot product of an A row and a B column read four k at a
// time as vec4, each invocation computing {{cols}} columns of one row (the A row's load is the same
// address in every lane). Needs A rows and B columns contiguous, and K, A's row stride, B's
// column stride and every offset a multiple of 4. Workgroup {{wg_x}}x1, tile 1x{{tile_n}}.
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bm: array<vec4<f32>>;

@compute @workgroup_size({{wg_x}}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_init();
    let t = tile_of(wg, nwg, 1u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let nn = params[MM_N];
    let k4 = params[MM_K] / 4u;
    let n0 = t.n0 + lid.x * {{cols}}u;
    let pa = off_a(t.b) / 4u + t.m0 * (params[MM_A_SM] / 4u);
    let pbase = off_b(t.b) / 4u;
    let b_sn4 = params[MM_B_SN] / 4u;
{{for c in cols}}    let pb{{c}} = pbase + min(n0 + {{c}}u, nn - 1u) * b_sn4;
    var acc{{c}} = vec4<f32>(0.0);
{{end}}    for (var k = 0u; k < k4; k = k + 1u) {
        let av = a[pa + k];
{{for c in cols}}        acc{{c}} = fma(av, bm[pb{{c}} + k], acc{{c}});
{{end}}    }
{{for c in cols}}    store(t.b, t.m0, n0 + {{c}}u, dot(acc{{c}}, vec4<f32>(1.0)));
{{end}}}
