// Q, K and V read element by element through their head-dim strides (any layout).
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;

fn load4(which: u32, base: u32, d4: u32, n: u32, stride: u32) -> vec4<f32> {
    var x = vec4<f32>(0.0);
{{for e in 4}}    {
        let d = d4 * 4u + {{e}}u;
        if (d < n) {
            let i = base + d * stride;
            if (which == 0u) {
                x[{{e}}] = q[i];
            } else if (which == 1u) {
                x[{{e}}] = k[i];
            } else {
                x[{{e}}] = v[i];
            }
        }
    }
{{end}}    return x;
}

fn load_q4(base: u32, d4: u32) -> vec4<f32> {
    return load4(0u, base, d4, DH, params[AT_Q_SD]);
}

fn load_k4(base: u32, d4: u32) -> vec4<f32> {
    return load4(1u, base, d4, DH, params[AT_K_SD]);
}

fn load_v4(base: u32, d4: u32) -> vec4<f32> {
    return load4(2u, base, d4, DV, params[AT_V_SD]);
}
