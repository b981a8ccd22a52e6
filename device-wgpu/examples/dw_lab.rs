//! Can a depthwise conv read its input as texels without a staging kernel?
//! `cargo run --release -p sfumato-wgpu --example dw_lab -- C H W K S [ROWS]`: the input
//! (`C x H x W`, row-major) copied into an rgba32float texture by `copy_buffer_to_texture` (its
//! flat floats four to a texel, `TW` texels a row), then a `K x K` depthwise conv of stride `S`
//! reading those texels, against the same kernel reading the storage buffer; each kernel's
//! outputs checked against a CPU loop.
mod lab;
use lab::{Bind, Lab};

const TW: u32 = sfumato_shaders::STAGE_LINEAR_WIDTH;

/// The kernel: one channel a workgroup row (`wg.y`), `rows x 4` outputs an invocation.
fn source(
    tex: bool,
    [c, h, w, k, s]: [u32; 5],
    rows: u32,
    cols: u32,
    wg: u32,
    lanes_c: bool,
) -> String {
    let (oh, ow) = ((h + 2 * (k / 2) - k) / s + 1, (w + 2 * (k / 2) - k) / s + 1);
    let pad = k / 2;
    let (bx, by) = (ow.div_ceil(cols), oh.div_ceil(rows));
    let seg = (cols - 1) * s + k;
    let nt = (seg + 3).div_ceil(4);
    let nrows = (rows - 1) * s + k;
    let taps = k * k;
    let mut body = String::new();
    for t in 0..taps {
        body += &format!("    let w{t} = wts[c * {taps}u + {t}u];\n");
    }
    for r in 0..rows {
        for j in 0..cols {
            body += &format!("    var a{r}_{j} = 0.0;\n");
        }
    }
    for t in 0..nrows {
        body += &format!(
            "    {{\n        let iy = iy0 + {t};\n        let rok = iy >= 0 && iy < {h};\n        let f0 = plane + iy * {w} + ix0;\n"
        );
        if tex {
            body += "        let lo = f0 >> 2u;\n        let r = f0 & 3;\n";
            for j in 0..nt {
                body += &format!(
                    "        let l{j} = u32(clamp(lo + {j}, 0, {last}));\n        let t{j} = textureLoad(xt, vec2<u32>(l{j} & {m}u, l{j} >> {sh}u), 0);\n",
                    last = c * h * w / 4 - 1,
                    m = TW - 1,
                    sh = TW.trailing_zeros()
                );
            }
            for u in 0..seg {
                let a = |q: u32| format!("t{}[{}]", q / 4, q % 4);
                body += &format!(
                    "        let s{u} = select(0.0, select(select(select({}, {}, r == 1), {}, r == 2), {}, r == 3), rok && ix0 + {u} >= 0 && ix0 + {u} < {w});\n",
                    a(u),
                    a(u + 1),
                    a(u + 2),
                    a(u + 3)
                );
            }
        } else {
            for u in 0..seg {
                body += &format!(
                    "        let s{u} = select(0.0, x[u32(clamp(f0 + {u}, 0, {last}))], rok && ix0 + {u} >= 0 && ix0 + {u} < {w});\n",
                    last = c * h * w - 1
                );
            }
        }
        for r in 0..rows {
            for ky in 0..k {
                if r * s + ky != t {
                    continue;
                }
                for kx in 0..k {
                    for j in 0..cols {
                        body += &format!(
                            "        a{r}_{j} = fma(w{}, s{}, a{r}_{j});\n",
                            ky * k + kx,
                            j * s + kx
                        );
                    }
                }
            }
        }
        body += "    }\n";
    }
    for r in 0..rows {
        for j in 0..cols {
            body += &format!(
                "    if (oy0 + {r}u < {oh}u && ox0 + {j}u < {ow}u) {{ y[c * {ohw}u + (oy0 + {r}u) * {ow}u + ox0 + {j}u] = a{r}_{j}; }}\n",
                ohw = oh * ow
            );
        }
    }
    let xdecl = if tex {
        "@group(0) @binding(0) var xt: texture_2d<f32>;"
    } else {
        "@group(0) @binding(0) var<storage, read> x: array<f32>;"
    };
    format!(
        "{xdecl}
@group(0) @binding(1) var<storage, read> wts: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size({wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {{
{pick}
    let ox0 = (i % {bx}u) * {cols}u;
    let oy0 = (i / {bx}u) * {rows}u;
    let iy0 = i32(oy0 * {s}u) - {pad};
    let ix0 = i32(ox0 * {s}u) - {pad};
    let plane = i32(c * {hw}u);
{body}}}",
        pick = if lanes_c {
            format!("    let g = wid.x * {wg}u + li;\n    if (g >= {n}u) {{\n        return;\n    }}\n    let c = g % {c}u;\n    let i = g / {c}u;", n = c * bx * by)
        } else {
            format!("    let c = wid.y;\n    let i = wid.x * {wg}u + li;\n    if (i >= {blocks}u) {{\n        return;\n    }}", blocks = bx * by)
        },
        hw = h * w
    )
}

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let shape = [0, 1, 2, 3, 4].map(|i| a[i]);
    let [c, h, w, k, s] = shape;
    let rows = *a.get(5).unwrap_or(&4);
    let cols = *a.get(6).unwrap_or(&4);
    let lanes_c = a.get(7) == Some(&1);
    let lab = Lab::open();
    let device = &lab.device;
    println!("{}", lab.adapter.get_info().name);
    let n = c * h * w;
    assert!(n % 4 == 0);
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6)
        .collect();
    let wts: Vec<f32> = (0..c * k * k)
        .map(|i| ((i * 31) % 7) as f32 * 0.2 - 0.5)
        .collect();
    let pad = k / 2;
    let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
    let mut want = vec![0f32; (c * oh * ow) as usize];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0f32;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as i64 - pad as i64;
                        let ix = (ox * s + kx) as i64 - pad as i64;
                        if iy >= 0 && iy < h as i64 && ix >= 0 && ix < w as i64 {
                            acc += wts[(ch * k * k + ky * k + kx) as usize]
                                * x[(ch * h * w) as usize + (iy * w as i64 + ix) as usize];
                        }
                    }
                }
                want[(ch * oh * ow + oy * ow + ox) as usize] = acc;
            }
        }
    }
    let xb = lab.buffer(
        &x,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let wb = lab.buffer(&wts, wgpu::BufferUsages::STORAGE);
    let yb = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: want.len() as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let texels = n / 4;
    let tex = device.create_texture(&wgpu::TextureDescriptor {
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        ..sfumato_wgpu::rgba32_texture("x", TW, texels.div_ceil(TW))
    });
    let view = tex.create_view(&Default::default());
    let copy =
        |enc: &mut wgpu::CommandEncoder| sfumato_wgpu::copy_linear(enc, &xb, &tex, texels, 0);
    let mut best_copy = f64::INFINITY;
    for _ in 0..20 {
        let mut enc = device.create_command_encoder(&Default::default());
        copy(&mut enc);
        let t = std::time::Instant::now();
        lab.queue.submit([enc.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
    }
    let blocks = ow.div_ceil(cols) * oh.div_ceil(rows);
    let (wg, groups) = if lanes_c {
        (64, ((blocks * c).div_ceil(64), 1))
    } else {
        let wg = blocks.next_power_of_two().clamp(8, 64);
        (wg, (blocks.div_ceil(wg), c))
    };
    let read = |what: &str| {
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: want.len() as u64 * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&yb, 0, &staging, 0, None);
        lab.queue.submit([enc.finish()]);
        staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let got: Vec<f32> =
            bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("  {what}: max abs error {err:.2e}");
    };
    let flops = 2.0 * (c * oh * ow * k * k) as f64;
    let t_buf = lab.best_time(
        &source(false, shape, rows, cols, wg, lanes_c),
        &[Bind::Buf(&xb), Bind::Buf(&wb), Bind::Buf(&yb)],
        groups,
        10,
    );
    read("storage");
    let t_tex = lab.best_time(
        &source(true, shape, rows, cols, wg, lanes_c),
        &[Bind::Tex(&view), Bind::Buf(&wb), Bind::Buf(&yb)],
        groups,
        10,
    );
    read("texels");
    println!(
        "{c}x{h}x{w} {k}x{k} stride {s}, {rows}x{cols} outputs, workgroup {wg}, lanes over channels {lanes_c}: copy {:.3} ms ({:.1} GB/s), storage kernel {:.3} ms ({:.2} GFLOP/s), texel kernel {:.3} ms ({:.2} GFLOP/s; with the copy {:.2})",
        best_copy * 1e3,
        n as f64 * 4.0 / best_copy / 1e9,
        t_buf * 1e3,
        flops / t_buf / 1e9,
        t_tex * 1e3,
        flops / t_tex / 1e9,
        flops / (t_tex + best_copy) / 1e9
    );
}
