// Q from its buffer; K and V read through the staging texture, where copy commands put them
// before the dispatch (K in layer 0, V in layer 1; texel l at (l % {{width}}, l / {{width}})). Rows
// contiguous along the head dim, every other stride and offset a multiple of 4. On a CPU adapter
// a texel load per lane beats a storage load, which is a loop over the SIMD lanes.
@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var kst: texture_2d_array<f32>;
@group(0) @binding(2) var vst: texture_2d_array<f32>;

fn load_q4(base: u32, d4: u32) -> vec4<f32> {
    return q[base / 4u + d4];
}

fn load_k4(base: u32, d4: u32) -> vec4<f32> {
    let l = base / 4u + d4;
    return textureLoad(kst, vec2<u32>(l & {{mask}}u, l >> {{shift}}u), 0, 0);
}

fn load_v4(base: u32, d4: u32) -> vec4<f32> {
    let l = base / 4u + d4;
    return textureLoad(vst, vec2<u32>(l & {{mask}}u, l >> {{shift}}u), 1, 0);
}
