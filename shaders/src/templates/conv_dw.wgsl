// Depthwise conv (groups = C = O) on a CPU adapter: one invocation computes {{rows}} output rows
// x {{cols}} output columns of one channel, and neighbouring invocations take neighbouring
// channels (a SIMD batch stays full on a 7x7 image). The input rows the block needs are read
// once each, a segment of {{seg}} values a row, {{source}}; the channel's {{taps}} weights come
// from a uniform block (this dispatch's channels: `c0` .. `c0 + cp`), the taps written out.
// Window {{kh}}x{{kw}}, stride {{sh}}x{{sw}}, dilation {{dh}}x{{dw}}, pads top {{pt}} left {{pl}}.
// bx = ceil(OW / {{cols}}), by = ceil(OH / {{rows}}).
{{xdecl}}
@group(0) @binding(1) var<uniform> uw: array<vec4<f32>, {{wlen}}>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out0: array<f32>;
@group(0) @binding({{pb}}) var<storage, read> params: array<u32>;
{{layout}}{{extra}}

fn wt(i: u32) -> f32 {
    return uw[i >> 2u][i & 3u];
}
{{xfn}}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * 64u + li;
    let bx = params[DW_BX];
    let by = params[DW_BY];
    let cp = params[DW_CP];
    if (i >= params[DW_N] * cp * by * bx) {
        return;
    }
    ep_init();
    let h = i32(params[DW_H]);
    let w = i32(params[DW_W]);
    let oh = params[DW_OH];
    let ow = params[DW_OW];
    let cl = i % cp;
    let xb = (i / cp) % bx;
    let yb = (i / (cp * bx)) % by;
    let b = i / (cp * bx * by);
    let c = params[DW_C0] + cl;
    let ch = params[DW_C];
    let plane = (b * ch + c) * u32(h * w);
    let oy0 = yb * {{rows}}u;
    let ox0 = xb * {{cols}}u;
    let iy0 = i32(oy0) * {{sh}} - {{pt}};
    let ix0 = i32(ox0) * {{sw}} - {{pl}};
    let wb = cl * {{taps}}u;
{{wloads}}{{accs}}{{body}}    var b0 = 0.0;
    if (params[DW_HAS_BIAS] != 0u) {
        b0 = bias[c];
    }
    let obase = (b * ch + c) * oh * ow;
{{res}}}
