// B of a matmul, a run input, written to the staging texture for the `ubo` matmul after it:
// texel (q, k) of layer b holds B[b][k][4q .. 4q + 3] (zero past N), read through B's strides
// (`b_sk`, `b_sn`) from each batch's offset (`stage_common.wgsl`: which texels an invocation
// writes).
{{layout}}
@compute @workgroup_size({{stage_wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = stage_task(stage_index(wg, nwg, li), params[MS_N4], params[MS_K], params[MS_BATCH]);
    if (!t.valid) {
        return;
    }
    let q = t.q;
    let b = t.b;
    let nn = params[MS_N];
    let sk = params[MS_B_SK];
    let sn = params[MS_B_SN];
    let base = params[MS_OFFSETS + b];
    var col: vec4<u32>;
    var live: vec4<bool>;
{{for e in 4}}    live[{{e}}] = q * 4u + {{e}}u < nn;
    col[{{e}}] = base + min(q * 4u + {{e}}u, nn - 1u) * sn;
{{end}}    for (var k = t.k0; k < t.k1; k = k + 1u) {
        let at = col + vec4<u32>(k * sk);
        var v: vec4<f32>;
{{for e in 4}}        v[{{e}}] = select(0.0, src[at[{{e}}]], live[{{e}}]);
{{end}}        textureStore(stage, vec2<u32>(q, k), b, v);
    }
}
