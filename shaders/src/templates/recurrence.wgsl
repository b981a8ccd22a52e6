// One direction of a recurrent layer ({{cell}}) over a chunk of its steps: one workgroup per
// ROWS batch rows runs every step of the chunk, their h in workgroup memory (read by every
// unit's gate columns) and an LSTM's c in registers; each read of R^T serves all ROWS rows.
// An invocation owns LANES neighbouring hidden units (a V: vec4 where H is a multiple of 4,
// so each read of R^T, xw and the state is one vec4), its groups 256 LANES units apart. Each
// step reads the step's input projection xw (biases added), dots h with R^T's columns,
// applies the cell, and writes the state after the step (h, then c) to out0; a row past its
// length keeps its state. The first chunk starts from state0, a later one from the state its
// previous chunk wrote last. batch: B; first: the chunk's first step; steps: its length;
// fresh: 1 for the first chunk.
// The buffers spell V out, so the f16 storage rewrite (`half.rs`) can follow them.
alias V = {{v}};
@group(0) @binding(0) var<storage, read> xw: array<{{v}}>;
@group(0) @binding(1) var<storage, read> rt: array<{{v}}>;
@group(0) @binding(2) var<storage, read> state0: array<{{v}}>;
@group(0) @binding(3) var<storage, read> lens: array<i32>;
{{extra_binding}}@group(0) @binding({{out_binding}}) var<storage, read_write> out0: array<{{v}}>;
@group(0) @binding({{params_binding}}) var<storage, read> params: array<u32>;
{{layout}}

const HIDDEN: u32 = {{hidden}}u;
const UNITS: u32 = {{units}}u;
const LANES: u32 = {{lanes}}u;
const ROWS: u32 = {{rows}}u;
const PARTS: u32 = {{parts}}u;
const GATES: u32 = {{gates}}u;
// A row of R^T in Vs: every gate's column of every unit.
const ROW: u32 = GATES * HIDDEN / LANES;
// h of each of the workgroup's rows, HIDDEN apart.
var<workgroup> hs: array<f32, {{shared_len}}>;
{{shared_extra}}
{{helpers}}
{{acts}}
{{dots}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let batch = params[RC_BATCH];
    let b0 = (wg.x + wg.y * nwg.x) * ROWS;
    if (b0 >= batch) {
        return;
    }
    let t0 = params[RC_FIRST];
    let steps = params[RC_STEPS];
    let fresh = params[RC_FRESH] != 0u;
    // Per unit group and row (slot u * ROWS + rr); a row past the batch repeats the last one
    // and is not stored.
    var hn: array<V, {{slots}}>;
    {{registers_extra}}
    // The chunk's starting state (element offsets; units are LANES-aligned).
    for (var u = 0u; u < UNITS; u = u + 1u) {
        let j = (li + u * 256u) * LANES;
        if (j < HIDDEN) {
            for (var rr = 0u; rr < ROWS; rr = rr + 1u) {
                let b = min(b0 + rr, batch - 1u);
                let start = select(({{prev}} * batch + b) * PARTS * HIDDEN, b * PARTS * HIDDEN, fresh);
                if (fresh) {
                    hs_set(rr, j, state0[(start + j) / LANES]);{{load_c_fresh}}
                } else {
                    hs_set(rr, j, out0[(start + j) / LANES]);{{load_c_prev}}
                }
            }
        }
    }
    workgroupBarrier();
    for (var s = 0u; s < steps; s = s + 1u) {
        let t = {{t}};
{{step}}        workgroupBarrier();
        for (var u = 0u; u < UNITS; u = u + 1u) {
            let j = (li + u * 256u) * LANES;
            if (j < HIDDEN) {
                for (var rr = 0u; rr < ROWS; rr = rr + 1u) {
                    let slot = u * ROWS + rr;
                    hs_set(rr, j, hn[slot]);
                    if (b0 + rr < batch) {
                        let o = (t * batch + b0 + rr) * PARTS * HIDDEN + j;
                        out0[o / LANES] = hn[slot];{{store_c}}
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
