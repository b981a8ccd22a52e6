// Integer matmul: C[b, m, n] = sum_k A[b, m, k] * B[b, k, n] in i32, wrapping as two's
// complement does (WGSL's i32 arithmetic wraps): the integer products of quantized models, their
// zero points subtracted before. Exact where an f32 sum rounds past 2^24. 4x4 outputs per
// invocation, 8x8 invocations a 32x32 tile; A and B read through strides, as every matmul
// (the k loop, `k_loop`, is the kernel's: scalar or vec4 loads).
// Each sum goes through `epilogue` (the fused requantisation, or a plain store), whose output
// is typed by the group's last value (`out_ty`: f32, or an 8-bit result as i32 / u32).
// `matmul_int_v4` (A contiguous along K, B along N, both in whole vec4s) reads four k of each
// row of A and four columns of each row of B a load: a quarter of the loads per product. It
// reads them through `a_vec` and `b_vec`: four i32, or (`matmul_int_v4_i8`, a constant operand
// whose values fit in i8, `pack_int8`) four i8 packed in a u32, a quarter of the bytes,
// widened by `unpack4xI8`.
@group(0) @binding(0) var<storage, read> a: array<{{operand}}>;
@group(0) @binding(1) var<storage, read> bm: array<{{operand}}>;
@group(0) @binding(2) var<storage, read_write> out0: array<{{out_ty}}>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{mm_layout}}{{extra}}{{vec_reads}}

// The column of the element being stored, for the epilogue's reads of a per-column row.
var<private> ep_col: u32;

// Row `m` of the block, its four columns from `n0`, stored where they are inside the output.
fn store_row(b: u32, m: u32, n0: u32, acc: vec4<i32>) {
    let mm = params[MM_M];
    let nn = params[MM_N];
    if (m >= mm) {
        return;
    }
    let base = (b * mm + m) * nn;
    if (n0 < nn) {
        ep_col = n0;
        epilogue(base + n0, acc.x);
    }
    if (n0 + 1u < nn) {
        ep_col = n0 + 1u;
        epilogue(base + n0 + 1u, acc.y);
    }
    if (n0 + 2u < nn) {
        ep_col = n0 + 2u;
        epilogue(base + n0 + 2u, acc.z);
    }
    if (n0 + 3u < nn) {
        ep_col = n0 + 3u;
        epilogue(base + n0 + 3u, acc.w);
    }
}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    ep_init();
    let wid = wg.x + wg.y * nwg.x;
    let tiles_n = params[MM_TILES_N];
    let tiles_m = params[MM_TILES_M];
    let b = wid / (tiles_n * tiles_m);
    if (b >= params[MM_BATCH]) {
        return;
    }
    let m0 = ((wid / tiles_n) % tiles_m) * 32u + lid.y * 4u;
    let n0 = (wid % tiles_n) * 32u + lid.x * 4u;
    let offs = MM_OFFSETS + OFF_LEN * b;
    let kk = params[MM_K];
    var acc0 = vec4<i32>(0);
    var acc1 = vec4<i32>(0);
    var acc2 = vec4<i32>(0);
    var acc3 = vec4<i32>(0);
{{k_loop}}    store_row(b, m0, n0, acc0);
    store_row(b, m0 + 1u, n0, acc1);
    store_row(b, m0 + 2u, n0, acc2);
    store_row(b, m0 + 3u, n0, acc3);
}
