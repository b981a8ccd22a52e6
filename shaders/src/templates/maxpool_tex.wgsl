// Max pool on a CPU adapter: one invocation computes {{rows}} output rows x {{cols}} output
// columns of one plane (an image's channel), neighbouring invocations neighbouring planes; the
// input rows the block needs are read once each, {{source}}, -inf outside the input. Window
// {{kh}}x{{kw}}, stride {{sh}}x{{sw}}, dilation {{dh}}x{{dw}}, pads top {{pt}} left {{pl}};
// {{planes}} planes of {{bx}} x {{by}} blocks.
{{xdecl}}
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<u32>;
{{layout}}{{xfn}}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * nwg.x) * 64u + li;
    if (i >= {{planes}}u * {{bx}}u * {{by}}u) {
        return;
    }
    let h = i32(params[PL_H]);
    let w = i32(params[PL_W]);
    let oh = params[PL_OH];
    let ow = params[PL_OW];
    let p = i % {{planes}}u;
    let xb = (i / {{planes}}u) % {{bx}}u;
    let yb = i / ({{planes}}u * {{bx}}u);
    let plane = p * u32(h * w);
    let oy0 = yb * {{rows}}u;
    let ox0 = xb * {{cols}}u;
    let iy0 = i32(oy0) * {{sh}} - {{pt}};
    let ix0 = i32(ox0) * {{sw}} - {{pl}};
{{accs}}{{body}}    let obase = p * oh * ow;
{{res}}}
