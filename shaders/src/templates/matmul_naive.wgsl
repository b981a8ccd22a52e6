// Matmul, one output per invocation (a reference point and the fallback for tiny shapes).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_init();
    let i = flat_index(wg, nwg, li);
    let mm = params[MM_M];
    let nn = params[MM_N];
    if (i >= mm * nn * params[MM_BATCH]) {
        return;
    }
    let n = i % nn;
    let m = (i / nn) % mm;
    let b = i / (nn * mm);
    store_batch(b);
    let kk = params[MM_K];
    var pa = off_a(b) + m * params[MM_A_SM];
    var pb = off_b(b) + n * params[MM_B_SN];
    var acc = 0.0;
    for (var k = 0u; k < kk; k = k + 1u) {
        acc = acc + a[pa] * bm[pb];
        pa = pa + params[MM_A_SK];
        pb = pb + params[MM_B_SK];
    }
    store(b, m, n, acc);
}
