// Scaled-dot-product attention, flash style: one invocation per query row keeps its query, a
// running max, a running sum and its output row in registers and streams over the keys with an
// online softmax, so the score matrix never exists in memory.
// out[b, h, i, :] = softmax_j(scale * q[b, h, i, :] . k[b, h, j, :] + mask[b, h, i, j]) v[b, h, j, :]
// params: [B, H, Sq, Sk, D, Dv, scale bits, has_mask, rows,
//          q: sb, sh, si, sd, off; k: sb, sh, sj, sd, off; v: sb, sh, sj, sd, off;
//          mask: sb, sh, si, sj, off; out: sb, sh, si, sd, off]
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> params: array<u32>;

const DH: u32 = {{d}}u;
const DV: u32 = {{dv}}u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = (wg.x + wg.y * nwg.x) * 64u + li;
    if (r >= params[8]) {
        return;
    }
    let hh = params[1];
    let sq = params[2];
    let sk = params[3];
    let qi = r % sq;
    let h = (r / sq) % hh;
    let b = r / (sq * hh);
    let scale = bitcast<f32>(params[6]);
    let has_mask = params[7] != 0u;
    var qv: array<f32, DH>;
    let qo = params[13] + b * params[9] + h * params[10] + qi * params[11];
    for (var d = 0u; d < DH; d = d + 1u) {
        qv[d] = q[qo + d * params[12]] * scale;
    }
    let ko = params[18] + b * params[14] + h * params[15];
    let vo = params[23] + b * params[19] + h * params[20];
    let mo = params[28] + b * params[24] + h * params[25] + qi * params[26];
    var acc: array<f32, DV>;
    var m = bitcast<f32>(0xff800000u);
    var l = 0.0;
    for (var j = 0u; j < sk; j = j + 1u) {
        let kj = ko + j * params[16];
        var s = 0.0;
        for (var d = 0u; d < DH; d = d + 1u) {
            s = fma(qv[d], k[kj + d * params[17]], s);
        }
        if (has_mask) {
            s = s + mask[mo + j * params[27]];
        }
        if (s == bitcast<f32>(0xff800000u)) {
            continue;
        }
        if (s > m) {
            let corr = exp(m - s);
            l = l * corr;
            for (var d = 0u; d < DV; d = d + 1u) {
                acc[d] = acc[d] * corr;
            }
            m = s;
        }
        let p = exp(s - m);
        l = l + p;
        let vj = vo + j * params[21];
        for (var d = 0u; d < DV; d = d + 1u) {
            acc[d] = fma(p, v[vj + d * params[22]], acc[d]);
        }
    }
    let inv = 1.0 / l;
    let oo = params[33] + b * params[29] + h * params[30] + qi * params[31];
    for (var d = 0u; d < DV; d = d + 1u) {
        out0[oo + d * params[32]] = acc[d] * inv;
    }
}
