// Attention for few query rows over many keys (a decode step over a KV cache), split over the
// keys: one workgroup per query row, whose {{wg}} invocations take keys li, li + {{wg}}, ... each
// with an online softmax of its own (running max, sum and output row); the partial maxima,
// sums and rows then meet in workgroup memory, rescaled to the largest maximum. The row kernel
// (`attention.wgsl`), one invocation per query row, would leave all but a few lanes idle here.
// out[b, h, i, :] = softmax_j(scale * q[b, h, i, :] . k[b, h, j, :] + mask[b, h, i, j]) v[b, h, j, :]
{{loaders}}
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> params: array<u32>;
{{layout}}
const DH: u32 = {{d}}u;
const DV: u32 = {{dv}}u;
const DV4: u32 = {{dv4}}u;
const KW: u32 = {{wg}}u;

var<workgroup> part_m: array<f32, {{wg}}>;
var<workgroup> part_l: array<f32, {{wg}}>;
var<workgroup> part_o: array<vec4<f32>, {{wg_dv4}}>;

@compute @workgroup_size({{wg}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let sq = params[AT_SQ];
    let sk = params[AT_SK];
    let nh = params[AT_H];
    // Workgroup x is the query row: (batch, head, query), the query fastest.
    let row = wg.x;
    let i = row % sq;
    let h = (row / sq) % nh;
    let b = row / (sq * nh);
    let scale = bitcast<f32>(params[AT_SCALE]);
    let has_mask = params[AT_HAS_MASK] != 0u;
    let ninf = f32_ninf();
    let qo = params[AT_Q_OFF] + b * params[AT_Q_SB] + h * params[AT_Q_SH] + i * params[AT_Q_SI];
{{for e in d4}}    let q{{e}} = load_q4(qo, {{e}}u) * scale;
{{end}}    let mo = params[AT_M_OFF] + b * params[AT_M_SB] + h * params[AT_M_SH] + i * params[AT_M_SI];
    let m_sj = params[AT_M_SJ];
    let ko = params[AT_K_OFF] + b * params[AT_K_SB] + h * params[AT_K_SH];
    let k_sj = params[AT_K_SJ];
    let vo = params[AT_V_OFF] + b * params[AT_V_SB] + h * params[AT_V_SH];
    let v_sj = params[AT_V_SJ];
    var m = ninf;
    var l = 0.0;
{{for e in dv4}}    var a{{e}} = vec4<f32>(0.0);
{{end}}    // The one loop with a run-time trip count (head dims written out: see `loops.rs`).
    for (var j = li; j < sk; j = j + KW) {
        let kj = ko + j * k_sj;
        var sv = vec4<f32>(0.0);
{{for e in d4}}        sv = fma(q{{e}}, load_k4(kj, {{e}}u), sv);
{{end}}        var s = sv.x + sv.y + sv.z + sv.w;
        if (has_mask) {
            s = s + mask[mo + j * m_sj];
        }
        // While every score so far is -inf the reference point is 0, so both factors are 0
        // rather than exp(NaN).
        let mn = max(m, s);
        let base = select(mn, 0.0, mn == ninf);
        let c = exp(m - base);
        let p = exp(s - base);
        l = l * c + p;
        m = mn;
        let vj = vo + j * v_sj;
{{for e in dv4}}        a{{e}} = fma(vec4<f32>(p), load_v4(vj, {{e}}u), a{{e}} * c);
{{end}}    }
    part_m[li] = m;
    part_l[li] = l;
{{for e in dv4}}    part_o[li * DV4 + {{e}}u] = a{{e}};
{{end}}    workgroupBarrier();
    var mx = ninf;
    for (var t = 0u; t < KW; t = t + 1u) {
        mx = max(mx, part_m[t]);
    }
    let base = select(mx, 0.0, mx == ninf);
    var total = 0.0;
    for (var t = 0u; t < KW; t = t + 1u) {
        total = total + part_l[t] * exp(part_m[t] - base);
    }
    // A row masked everywhere with -inf has a sum of 0 and comes out NaN, as softmax gives.
    let inv = 1.0 / total;
    let oo = params[AT_O_OFF] + b * params[AT_O_SB] + h * params[AT_O_SH] + i * params[AT_O_SI];
    let o_sd = params[AT_O_SD];
    // Invocation li writes head dims 4e .. 4e + 3 for e = li, li + KW, ...
    for (var e = li; e < DV4; e = e + KW) {
        var o = vec4<f32>(0.0);
        for (var t = 0u; t < KW; t = t + 1u) {
            o = fma(part_o[t * DV4 + e], vec4<f32>(exp(part_m[t] - base)), o);
        }
        o = o * inv;
{{for c in 4}}        if (e * 4u + {{c}}u < DV) {
            out0[oo + (e * 4u + {{c}}u) * o_sd] = o[{{c}}];
        }
{{end}}    }
}
