// Shared by every matmul variant. C[b, m, n] = alpha * sum_k A[b, m, k] * B[b, k, n] + beta * Bias[b, m, n].
// A, B and Bias are read through strides, so transposed operands and broadcast batch dims cost no copy.
// params: [M, N, K, batch, alpha bits, beta bits, has_bias, a_sm, a_sk, b_sk, b_sn, c_sm, c_sn,
//        tiles_n, tiles_m, then per batch: offset of A, of B, of Bias]
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{extra}}

struct Tile {
    b: u32,
    m0: u32,
    n0: u32,
    valid: bool,
}

// Which output tile (of tm x tn) this workgroup computes.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>, tm: u32, tn: u32) -> Tile {
    let wid = wg.x + wg.y * nwg.x;
    let tiles_n = params[13];
    let tiles_m = params[14];
    var t: Tile;
    t.n0 = (wid % tiles_n) * tn;
    t.m0 = ((wid / tiles_n) % tiles_m) * tm;
    t.b = wid / (tiles_n * tiles_m);
    t.valid = t.b < params[3];
    return t;
}

fn off_a(b: u32) -> u32 {
    return params[15u + 3u * b];
}

fn off_b(b: u32) -> u32 {
    return params[16u + 3u * b];
}

// The store's params, read once per invocation (`store_init`, first in every matmul's main): a
// storage read after a store to `out0` is made again, as the compiler cannot tell that the
// bindings do not alias, and on lavapipe each storage read is a loop over the lanes.
var<private> st_mm: u32;
var<private> st_nn: u32;
var<private> st_alpha: f32;
var<private> st_beta: f32;
var<private> st_bias: bool;
// The column of the element being stored, for the epilogue's reads of a bias row.
var<private> ep_col: u32;

fn store_init() {
    st_mm = params[0];
    st_nn = params[1];
    st_alpha = bitcast<f32>(params[4]);
    st_beta = bitcast<f32>(params[5]);
    st_bias = params[6] != 0u;
    ep_init();
}

fn store(b: u32, m: u32, n: u32, acc: f32) {
    if (m >= st_mm || n >= st_nn) {
        return;
    }
    var v = st_alpha * acc;
    if (st_bias) {
        v = v + st_beta * bias[params[17u + 3u * b] + m * params[11] + n * params[12]];
    }
    ep_col = n;
    epilogue((b * st_mm + m) * st_nn + n, v);
}
