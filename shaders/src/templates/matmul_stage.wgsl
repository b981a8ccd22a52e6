// B of a matmul, a run input, written to the staging texture for the `ubo` matmul after it:
// texel (q, k) of layer b holds B[b][k][4q .. 4q + 3] (zero past N), read through B's strides
// (`b_sk`, `b_sn`) from each batch's offset. One invocation writes one texel column q for
// {{kc}} consecutive rows k, so the params are read once per {{kc}} texels.
@group(0) @binding(0) var<storage, read> bin: array<f32>;
@group(0) @binding(1) var stage: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    let n4 = params[MS_N4];
    let kk = params[MS_K];
    let chunks = (kk + {{kc}}u - 1u) / {{kc}}u;
    if (i >= params[MS_BATCH] * chunks * n4) {
        return;
    }
    let q = i % n4;
    let k0 = ((i / n4) % chunks) * {{kc}}u;
    let b = i / (n4 * chunks);
    let nn = params[MS_N];
    let sk = params[MS_B_SK];
    let sn = params[MS_B_SN];
    let base = params[MS_OFFSETS + b];
    var col: vec4<u32>;
    var live: vec4<bool>;
{{for e in 4}}    live[{{e}}] = q * 4u + {{e}}u < nn;
    col[{{e}}] = base + min(q * 4u + {{e}}u, nn - 1u) * sn;
{{end}}    let k1 = min(k0 + {{kc}}u, kk);
    for (var k = k0; k < k1; k = k + 1u) {
        let at = col + vec4<u32>(k * sk);
        var v: vec4<f32>;
{{for e in 4}}        v[{{e}}] = select(0.0, bin[at[{{e}}]], live[{{e}}]);
{{end}}        textureStore(stage, vec2<u32>(q, k), b, v);
    }
}
