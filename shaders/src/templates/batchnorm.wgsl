// Inference batch norm over axis 1 of a contiguous tensor.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> var_: array<f32>;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read> params: array<u32>;
{{layout}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= params[BN_N]) {
        return;
    }
    let c = (i / params[BN_INNER]) % params[BN_CHANNELS];
    let eps = bitcast<f32>(params[BN_EPS]);
    out0[i] = (x[i] - mean[c]) * inverseSqrt(var_[c] + eps) * scale[c] + bias[c];
}
