// What the staging kernels (`matmul_stage`, `conv_stage`) share: the source, the staging texture
// and the params, and which texels an invocation writes: one texel column q of layer b, rows
// k0 .. k1 ({{kc}} consecutive rows, so the params are read once per {{kc}} texels; on lavapipe
// every storage read is a loop over the SIMD lanes).
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var stage: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<storage, read> params: array<u32>;

// Invocations a workgroup: small, so that a small stage (a 7x7 image's column) still spreads
// over a CPU adapter's threads, each of which runs whole workgroups.
const STAGE_WG: u32 = {{stage_wg}}u;

// Invocation li of workgroup wg's flat index.
fn stage_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * STAGE_WG + li;
}

struct StageTask {
    q: u32,
    k0: u32,
    k1: u32,
    b: u32,
    valid: bool,
}

// Invocation i's texels of `batch` layers of `kk` rows of `n4` texels.
fn stage_task(i: u32, n4: u32, kk: u32, batch: u32) -> StageTask {
    let chunks = (kk + {{kc}}u - 1u) / {{kc}}u;
    var t: StageTask;
    t.valid = i < batch * chunks * n4;
    t.q = i % max(n4, 1u);
    t.k0 = ((i / max(n4, 1u)) % max(chunks, 1u)) * {{kc}}u;
    t.k1 = min(t.k0 + {{kc}}u, kk);
    t.b = i / max(n4 * chunks, 1u);
    return t;
}
