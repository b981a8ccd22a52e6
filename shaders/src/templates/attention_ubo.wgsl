// Scaled-dot-product attention for CPU adapters, flash style, with K and V read from uniform
// bindings: blocks of up to {{ru}} keys of every head, one binding per block for K and one for V
// ({{nb}} of each). Query rows per invocation: {{r}} (i0, i0 + {{wg}}, ...), held as named values.
// The keys stream in chunks of {{chunk}}: the chunk's scores, then one rescale of the running sums
// and output rows, then P.V. Every invocation reads the same key and value rows, so on SIMD-on-CPU
// adapters a key row is scalar loads rather than a loop over the lanes.
// out[0, h, i, :] = softmax_j(scale * q[0, h, i, :] . k[0, h, j, :] + mask[0, h, i, j]) v[0, h, j, :]
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{params_binding}}) var<storage, read> params: array<u32>;
{{layout}}{{decls}}
@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let sq = params[AT_SQ];
    let sk = params[AT_SK];
    let h = wg.y;
    let scale = bitcast<f32>(params[AT_SCALE]);
    let ninf = f32_ninf();
    let i0 = wg.x * {{rows}}u + li;
    // Offsets within a block (a block starts at its first key row of head 0).
    let kh = h * params[AT_K_SH];
    let vh = h * params[AT_V_SH];
    let sjk = params[AT_K_SJ];
    let sjv = params[AT_V_SJ];
{{mask_setup}}{{setup}}
    for (var blk = 0u; blk < {{nb}}u; blk = blk + 1u) {
        let j0 = blk * {{ru}}u;
        let jn = min(j0 + {{ru}}u, sk);
{{body}}    }
{{stores}}
    // A bound the compiler cannot see (the row count is never 0 in a dispatch), so the stores
    // stay a loop rather than one written-out copy per element.
    let nst = select({{nres}}u, 0u, params[AT_ROWS] == 0u);
    for (var i = 0u; i < nst; i = i + 1u) {
        let qi = i0 + (i / {{dv4}}u) * {{wg}}u;
        if (qi < sq) {
            let oo = params[AT_O_OFF] + h * params[AT_O_SH] + qi * params[AT_O_SI] + (i % {{dv4}}u) * 4u * params[AT_O_SD];
            for (var e = 0u; e < 4u; e = e + 1u) {
                out0[oo + e * params[AT_O_SD]] = res[i][e];
            }
        }
    }
}
