// Matmul with A read from uniform buffers and the per-invocation block written out: each
// invocation computes {{rows}} rows x {{cols}} columns in named accumulators (no arrays, so
// nothing is indexed at run time), B is read as vec4 ({{b_kind}}). A's rows come in blocks of
// {{ru}} rows, one uniform binding each (a uniform binding holds at most 64 KiB); a workgroup's
// {{rows}} rows lie in one block or span whole blocks (rows too long for more: K = 3,072 fits 5
// rows), and the switch runs that tile's copy of the loop over k. A matmul
// whose blocks outnumber a stage's uniform bindings runs as several dispatches, each over a part
// of A's rows. With one row of invocations per workgroup every invocation reads the same A
// address: one scalar load on SIMD adapters (lavapipe), where a storage-buffer load is a loop
// over the lanes. Workgroup {{wg_x}}x1, tile {{rows}}x{{tile_n}}.
{{a_decls}}
@group(0) @binding(1) {{b_decl}}

fn store4(b: u32, m: u32, n: u32, v: vec4<f32>) {
{{store4_bias}}    for (var e = 0u; e < 4u; e = e + 1u) {
        {{store4_one}};
    }
}

@compute @workgroup_size({{wg_x}}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store_init();
    let t = tile_of(wg, nwg, {{rows}}u, {{tile_n}}u);
    if (!t.valid) {
        return;
    }
    let mm = params[MM_M];
    let nn = params[MM_N];
    let kk = params[MM_K];
    let a_sm = params[MM_A_SM];
    let b_sk4 = params[MM_B_SK] / 4u;
    let n4 = (nn + 3u) / 4u;
    let n0 = t.n0 + lid.x * {{cols}}u;
    // This dispatch's rows start at row `row_base` (a param, so the parts with as many blocks
    // share one pipeline); the tile's block is the switch's case.
    let row_base = params[{{row_base_at}}];
    let blk = t.m0 / {{tile_rows}}u;
    let row0 = row_base + blk * {{tile_rows}}u;
    let mg = row_base + t.m0;
    let pb0 = off_b(t.b) / 4u;
{{setup}}
{{body}}{{stores}}
}
