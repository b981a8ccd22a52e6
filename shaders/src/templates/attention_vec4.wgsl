// Q, K and V rows contiguous along the head dim (stride 1, every other stride and offset a
// multiple of 4): one vec4 load per four elements.
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;

fn load_q4(base: u32, d4: u32) -> vec4<f32> {
    return q[base / 4u + d4];
}

fn load_k4(base: u32, d4: u32) -> vec4<f32> {
    return k[base / 4u + d4];
}

fn load_v4(base: u32, d4: u32) -> vec4<f32> {
    return v[base / 4u + d4];
}
