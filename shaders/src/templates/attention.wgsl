// Scaled-dot-product attention, flash style: one invocation per query row keeps its query, a
// max, a sum and its output row in registers and streams over the keys twice with an
// exact two-pass softmax (max, then weights), so the score matrix never exists in memory.
// out[b, h, i, :] = softmax_j(scale * q[b, h, i, :] . k[b, h, j, :] + mask[b, h, i, j]) v[b, h, j, :]
// params: [B, H, Sq, Sk, D, Dv, scale bits, has_mask, rows,
//          q: sb, sh, si, sd, off; k: sb, sh, sj, sd, off; v: sb, sh, sj, sd, off;
//          mask: sb, sh, si, sj, off; out: sb, sh, si, sd, off]
{{loaders}}
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> params: array<u32>;

const DH: u32 = {{d}}u;
const DV: u32 = {{dv}}u;
const DH4: u32 = {{d4}}u;
const DV4: u32 = {{dv4}}u;

// Workgroup (x: block of 64 query rows, y: head, z: batch): every invocation of a workgroup reads
// the same key and value rows, so those loads are uniform. Query, accumulator and key/value rows
// are held as vec4 with constant trip counts so they can live in registers.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let sq = params[2];
    let sk = params[3];
    let qi = wg.x * 64u + li;
    let h = wg.y;
    let b = wg.z;
    let live = qi < sq;
    let qr = min(qi, sq - 1u);
    let scale = bitcast<f32>(params[6]);
    let has_mask = params[7] != 0u;
    var qv: array<vec4<f32>, DH4>;
    let qo = params[13] + b * params[9] + h * params[10] + qr * params[11];
    for (var d4 = 0u; d4 < DH4; d4 = d4 + 1u) {
        qv[d4] = load_q4(qo, d4) * scale;
    }
    let ko = params[18] + b * params[14] + h * params[15];
    let vo = params[23] + b * params[19] + h * params[20];
    let mo = params[28] + b * params[24] + h * params[25] + qr * params[26];
    var acc: array<vec4<f32>, DV4>;
    // Pass 1: the row's max score. Pass 2: exp-weights, their sum and the weighted values.
    // (Two passes instead of an online rescale: no data-dependent branch in the key loop.)
    var m = bitcast<f32>(0xff800000u);
    for (var j = 0u; j < sk; j = j + 1u) {
        var sv = vec4<f32>(0.0);
        let kj = ko + j * params[16];
        for (var d4 = 0u; d4 < DH4; d4 = d4 + 1u) {
            sv = fma(qv[d4], load_k4(kj, d4), sv);
        }
        var s = sv.x + sv.y + sv.z + sv.w;
        if (has_mask) {
            s = s + mask[mo + j * params[27]];
        }
        m = max(m, s);
    }
    // A row masked everywhere with -inf has no finite max: its weights stay 0 and it comes out NaN,
    // as softmax gives.
    let mm = select(m, 0.0, m == bitcast<f32>(0xff800000u));
    var l = 0.0;
    for (var j = 0u; j < sk; j = j + 1u) {
        var sv = vec4<f32>(0.0);
        let kj = ko + j * params[16];
        for (var d4 = 0u; d4 < DH4; d4 = d4 + 1u) {
            sv = fma(qv[d4], load_k4(kj, d4), sv);
        }
        var s = sv.x + sv.y + sv.z + sv.w;
        if (has_mask) {
            s = s + mask[mo + j * params[27]];
        }
        let p = exp(s - mm);
        l = l + p;
        let vj = vo + j * params[21];
        for (var d4 = 0u; d4 < DV4; d4 = d4 + 1u) {
            acc[d4] = fma(vec4<f32>(p), load_v4(vj, d4), acc[d4]);
        }
    }
    if (!live) {
        return;
    }
    let inv = 1.0 / l;
    let oo = params[33] + b * params[29] + h * params[30] + qi * params[31];
    for (var d = 0u; d < DV; d = d + 1u) {
        out0[oo + d * params[32]] = acc[d / 4u][d % 4u] * inv;
    }
}
