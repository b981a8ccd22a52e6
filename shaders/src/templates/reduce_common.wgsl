// Reduction: one invocation per output element, looping over the reduced elements. The input
// is read through load_x (an elementwise prologue may compute it).
@group(0) @binding(1) var<storage, read_write> out0: array<{{ty}}>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

fn decode(i: u32, rank: u32, dims: u32, strides: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let dim = params[dims + u32(d)];
        off = off + (rem % dim) * params[strides + u32(d)];
        rem = rem / dim;
    }
    return off;
}

