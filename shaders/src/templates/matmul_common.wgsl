// Shared by every matmul variant. C[b, m, n] = alpha * sum_k A[b, m, k] * B[b, k, n] + beta * Bias[b, m, n].
// A, B and Bias are read through strides, so transposed operands and broadcast batch dims cost no copy.
// offsets: per batch, the offset of A, of B, of Bias (the `off` layout).
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{mm_layout}}{{extra}}

struct Tile {
    b: u32,
    m0: u32,
    n0: u32,
    valid: bool,
}

// Which output tile (of tm x tn) this workgroup computes.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>, tm: u32, tn: u32) -> Tile {
    let wid = wg.x + wg.y * nwg.x;
    let tiles_n = params[MM_TILES_N];
    let tiles_m = params[MM_TILES_M];
    var t: Tile;
    t.n0 = (wid % tiles_n) * tn;
    t.m0 = ((wid / tiles_n) % tiles_m) * tm;
    t.b = wid / (tiles_n * tiles_m);
    t.valid = t.b < params[MM_BATCH];
    store_batch(t.b);
    return t;
}

fn off_a(b: u32) -> u32 {
    return params[MM_OFFSETS + OFF_LEN * b + OFF_A];
}

fn off_b(b: u32) -> u32 {
    return params[MM_OFFSETS + OFF_LEN * b + OFF_B];
}

// The store's params, read once per invocation (`store_init`, first in every matmul's main): a
// storage read after a store to `out0` is made again, as the compiler cannot tell that the
// bindings do not alias, and on lavapipe each storage read is a loop over the lanes.
var<private> st_mm: u32;
var<private> st_nn: u32;
var<private> st_alpha: f32;
var<private> st_beta: f32;
var<private> st_bias: bool;
var<private> st_c_sm: u32;
var<private> st_c_sn: u32;
// The offset of the bias of the batch this invocation stores (`store_batch`, called by
// `tile_of`): with the strides above, a stored element reads one storage word, not four.
var<private> st_boff: u32;
// The column of the element being stored, for the epilogue's reads of a bias row.
var<private> ep_col: u32;

fn store_init() {
    st_mm = params[MM_M];
    st_nn = params[MM_N];
    st_alpha = bitcast<f32>(params[MM_ALPHA]);
    st_beta = bitcast<f32>(params[MM_BETA]);
    st_bias = params[MM_HAS_BIAS] != 0u;
    st_c_sm = params[MM_C_SM];
    st_c_sn = params[MM_C_SN];
    ep_init();
}

// The batch whose bias the following stores read (a batch past the last reads a clamped word
// and stores nothing).
fn store_batch(b: u32) {
    st_boff = params[MM_OFFSETS + OFF_LEN * b + OFF_BIAS];
}

// Element (m, n) of the bias of the current batch.
fn bias_at(m: u32, n: u32) -> f32 {
    return bias[st_boff + m * st_c_sm + n * st_c_sn];
}

// `store` with the bias element already read (`bv`; unused without a bias).
fn store_bv(b: u32, m: u32, n: u32, acc: f32, bv: f32) {
    if (m >= st_mm || n >= st_nn) {
        return;
    }
    var v = st_alpha * acc;
    if (st_bias) {
        v = v + st_beta * bv;
    }
    ep_col = n;
    epilogue((b * st_mm + m) * st_nn + n, v);
}

fn store(b: u32, m: u32, n: u32, acc: f32) {
    var bv = 0.0;
    if (st_bias) {
        bv = bias_at(m, n);
    }
    store_bv(b, m, n, acc, bv);
}
