// Scaled-dot-product attention, flash style: an invocation keeps its query rows, running maxima,
// sums and output rows in registers and streams over the keys once, so the score matrix never
// exists in memory.
// out[b, h, i, :] = softmax_j(scale * q[b, h, i, :] . k[b, h, j, :] + mask[b, h, i, j]) v[b, h, j, :]
{{loaders}}
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> params: array<u32>;
{{layout}}
const DH: u32 = {{d}}u;
const DV: u32 = {{dv}}u;
const DH4: u32 = {{d4}}u;
const DV4: u32 = {{dv4}}u;

// Workgroup (x: block of {{wg}} x {{r}} query rows, y: head, z: batch). Each invocation owns {{r}}
// query rows (rows li, li + {{wg}}, ...) and streams over the keys once: every key and value row it
// loads serves all its query rows, and every invocation of a workgroup reads the same key and
// value rows. Softmax is online (a running max rescales the sum and the output rows), branch-free.
// Query, accumulator and key/value rows are vec4 arrays with constant trip counts.
const QR: u32 = {{r}}u;
const QWG: u32 = {{wg}}u;

@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let sq = params[AT_SQ];
    let sk = params[AT_SK];
    let h = wg.y;
    let b = wg.z;
    let scale = bitcast<f32>(params[AT_SCALE]);
    let has_mask = params[AT_HAS_MASK] != 0u;
    let ninf = f32_ninf();
    var qv: array<array<vec4<f32>, DH4>, QR>;
    var mo: array<u32, QR>;
    var m: array<f32, QR>;
    var l: array<f32, QR>;
    var acc: array<array<vec4<f32>, DV4>, QR>;
{{for t in r}}    {
        let qr = min(wg.x * QWG * QR + {{t}}u * QWG + li, sq - 1u);
        let qo = params[AT_Q_OFF] + b * params[AT_Q_SB] + h * params[AT_Q_SH] + qr * params[AT_Q_SI];
{{for e in d4}}        qv[{{t}}][{{e}}] = load_q4(qo, {{e}}u) * scale;
{{end}}        mo[{{t}}] = params[AT_M_OFF] + b * params[AT_M_SB] + h * params[AT_M_SH] + qr * params[AT_M_SI];
        m[{{t}}] = ninf;
        l[{{t}}] = 0.0;
    }
{{end}}    let ko = params[AT_K_OFF] + b * params[AT_K_SB] + h * params[AT_K_SH];
    let vo = params[AT_V_OFF] + b * params[AT_V_SB] + h * params[AT_V_SH];
    // The one loop with a run-time trip count: over the keys (the loops over query rows and
    // head dims are written out, so an invocation makes sk + 1 trips; see `loops.rs`).
    for (var j = 0u; j < sk; j = j + 1u) {
        let kj = ko + j * params[AT_K_SJ];
        var kv: array<vec4<f32>, DH4>;
{{for e in d4}}        kv[{{e}}] = load_k4(kj, {{e}}u);
{{end}}        var c: array<f32, QR>;
        var p: array<f32, QR>;
{{for t in r}}        {
            var sv = vec4<f32>(0.0);
{{for e in d4}}            sv = fma(qv[{{t}}][{{e}}], kv[{{e}}], sv);
{{end}}            var s = sv.x + sv.y + sv.z + sv.w;
            if (has_mask) {
                s = s + mask[mo[{{t}}] + j * params[AT_M_SJ]];
            }
            // While every score so far is -inf the reference point is 0, so both factors are 0
            // rather than exp(NaN).
            let mn = max(m[{{t}}], s);
            let base = select(mn, 0.0, mn == ninf);
            c[{{t}}] = exp(m[{{t}}] - base);
            p[{{t}}] = exp(s - base);
            l[{{t}}] = l[{{t}}] * c[{{t}}] + p[{{t}}];
            m[{{t}}] = mn;
        }
{{end}}        let vj = vo + j * params[AT_V_SJ];
{{for e in dv4}}        {
            let vv = load_v4(vj, {{e}}u);
{{for t in r}}            acc[{{t}}][{{e}}] = fma(vec4<f32>(p[{{t}}]), vv, acc[{{t}}][{{e}}] * c[{{t}}]);
{{end}}        }
{{end}}    }
    // A row masked everywhere with -inf has l = 0 and comes out NaN, as softmax gives.
    for (var t = 0u; t < QR; t = t + 1u) {
        let qi = wg.x * QWG * QR + t * QWG + li;
        if (qi < sq) {
            let inv = 1.0 / l[t];
            let oo = params[AT_O_OFF] + b * params[AT_O_SB] + h * params[AT_O_SH] + qi * params[AT_O_SI];
            for (var d = 0u; d < DV; d = d + 1u) {
                out0[oo + d * params[AT_O_SD]] = acc[t][d / 4u][d % 4u] * inv;
            }
        }
    }
}
