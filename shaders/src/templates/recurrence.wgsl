// One direction of a recurrent layer ({{cell}}) over a chunk of its steps: one workgroup per
// batch row runs every step of the chunk, its h in workgroup memory (read by every unit's gate
// columns) and an LSTM's c in registers. An invocation owns LANES neighbouring hidden units (a
// V: vec4 where H is a multiple of 4, so each read of R^T, xw and the state is one vec4), its
// groups 256 LANES units apart. Each step reads the step's input projection xw (biases
// added), dots h with R^T's columns, applies the cell, and writes the state after the step
// (h, then c) to out0; a row past its length keeps its state. The first chunk starts from
// state0, a later one from the state its previous chunk wrote last. batch: B; first: the
// chunk's first step; steps: its length; fresh: 1 for the first chunk.
alias V = {{v}};
@group(0) @binding(0) var<storage, read> xw: array<V>;
@group(0) @binding(1) var<storage, read> rt: array<V>;
@group(0) @binding(2) var<storage, read> state0: array<V>;
@group(0) @binding(3) var<storage, read> lens: array<i32>;
{{extra_binding}}@group(0) @binding({{out_binding}}) var<storage, read_write> out0: array<V>;
@group(0) @binding({{params_binding}}) var<storage, read> params: array<u32>;
{{layout}}

const HIDDEN: u32 = {{hidden}}u;
const UNITS: u32 = {{units}}u;
const LANES: u32 = {{lanes}}u;
const PARTS: u32 = {{parts}}u;
const GATES: u32 = {{gates}}u;
// A row of R^T in Vs: every gate's column of every unit.
const ROW: u32 = GATES * HIDDEN / LANES;
var<workgroup> hs: array<f32, {{hidden}}>;
{{shared_extra}}
{{helpers}}
{{acts}}
{{dots}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let b = wg.x + wg.y * nwg.x;
    let batch = params[RC_BATCH];
    if (b >= batch) {
        return;
    }
    let t0 = params[RC_FIRST];
    let steps = params[RC_STEPS];
    let fresh = params[RC_FRESH] != 0u;
    var hn: array<V, {{units}}>;
    {{registers_extra}}
    // The chunk's starting state (element offsets; units are LANES-aligned).
    let start = select(({{prev}} * batch + b) * PARTS * HIDDEN, b * PARTS * HIDDEN, fresh);
    for (var u = 0u; u < UNITS; u = u + 1u) {
        let j = (li + u * 256u) * LANES;
        if (j < HIDDEN) {
            if (fresh) {
                hs_set(j, state0[(start + j) / LANES]);{{load_c_fresh}}
            } else {
                hs_set(j, out0[(start + j) / LANES]);{{load_c_prev}}
            }
        }
    }
    workgroupBarrier();
    for (var s = 0u; s < steps; s = s + 1u) {
        let t = {{t}};
        let live = i32(t) < lens[b];
        let xrow = (t * batch + b) * GATES * HIDDEN;
{{step}}        workgroupBarrier();
        for (var u = 0u; u < UNITS; u = u + 1u) {
            let j = (li + u * 256u) * LANES;
            if (j < HIDDEN) {
                let o = (t * batch + b) * PARTS * HIDDEN + j;
                hs_set(j, hn[u]);
                out0[o / LANES] = hn[u];{{store_c}}
            }
        }
        workgroupBarrier();
    }
}
