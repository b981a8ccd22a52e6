//! Lab: how fast does this adapter read a matmul operand from a uniform buffer, a storage
//! buffer or a texture? `cargo run --release -p sfumato-wgpu --example ubo_lab -- M N K`
//! (A is M x K, B is K x N; M*K*4 bytes of A must fit the uniform binding limit).
mod lab;
use lab::{Bind, Lab};

/// Time one kernel and print its rate.
fn time(lab: &Lab, name: &str, src: &str, binds: &[Bind], groups: (u32, u32), flops: f64) {
    let best = lab.best_time(src, binds, groups, 12);
    println!(
        "{name:<28} {:9.3} ms {:7.2} GFLOP/s",
        best * 1e3,
        flops / best / 1e9
    );
}

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (m, n, k) = (
        *a.first().unwrap_or(&64),
        *a.get(1).unwrap_or(&3072),
        *a.get(2).unwrap_or(&256),
    );
    let lab = Lab::open();
    println!(
        "{} (max uniform binding {} bytes)",
        lab.adapter.get_info().name,
        lab.adapter.limits().max_uniform_buffer_binding_size
    );
    let av: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let bv: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let a_s = lab.buffer(&av, wgpu::BufferUsages::STORAGE);
    let a_u = lab.buffer(
        &av,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE,
    );
    let b_s = lab.buffer(&bv, wgpu::BufferUsages::STORAGE);
    let view = lab.weight_texture(&bv, k, n);
    let c = lab.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (m * n) as u64 * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let flops = 2.0 * (m * n * k) as f64;
    let (n4, mk4) = (n / 4, m * k / 4);
    if std::env::var("LAB_BLOCKED").is_ok() {
        blocked(&lab, m, n, k, &a_u, &view, &c);
        return;
    }
    for (rows, cols4, wgx) in shapes() {
        let groups = (n4 / (cols4 * wgx), m / rows);
        for (kind, decl, load) in [
            (
                "storage",
                "@group(0) @binding(0) var<storage, read> a: array<f32>;".to_string(),
                "a[i]",
            ),
            (
                "uniform",
                format!("@group(0) @binding(0) var<uniform> a: array<vec4<f32>, {mk4}>;"),
                "a[i >> 2u][i & 3u]",
            ),
        ] {
            for btex in [false, true] {
                let (bdecl, bload) = if btex {
                    (
                        "var b: texture_2d<f32>;",
                        "textureLoad(b, vec2<u32>(c0 + q, k), 0)".to_string(),
                    )
                } else {
                    (
                        "var<storage, read> b: array<vec4<f32>>;",
                        format!("b[k * {n4}u + c0 + q]"),
                    )
                };
                let src = format!(
                    "{decl}
@group(0) @binding(1) {bdecl}
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
fn ld(i: u32) -> f32 {{ return {load}; }}
@compute @workgroup_size({wgx}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{
    let m0 = wg.y * {rows}u;
    let c0 = (wg.x * {wgx}u + lid.x) * {cols4}u;
    var acc: array<array<vec4<f32>, {cols4}>, {rows}>;
    for (var k = 0u; k < {k}u; k++) {{
        var bv: array<vec4<f32>, {cols4}>;
        for (var q = 0u; q < {cols4}u; q++) {{ bv[q] = {bload}; }}
        for (var r = 0u; r < {rows}u; r++) {{
            let av = vec4<f32>(ld((m0 + r) * {k}u + k));
            for (var q = 0u; q < {cols4}u; q++) {{ acc[r][q] = fma(av, bv[q], acc[r][q]); }}
        }}
    }}
    for (var r = 0u; r < {rows}u; r++) {{
        for (var q = 0u; q < {cols4}u; q++) {{ c[(m0 + r) * {n4}u + c0 + q] = acc[r][q]; }}
    }}
}}"
                );
                let a_b = if kind == "storage" { &a_s } else { &a_u };
                let bb0 = if btex {
                    Bind::Tex(&view)
                } else {
                    Bind::Buf(&b_s)
                };
                time(
                    &lab,
                    &format!(
                        "A {kind} B {} {rows}x{} wg{wgx}",
                        if btex { "tex" } else { "sto" },
                        cols4 * 4
                    ),
                    &src,
                    &[Bind::Buf(a_b), bb0, Bind::Buf(&c)],
                    groups,
                    flops,
                );
                let abl = std::env::var("LAB_ABL").unwrap_or_default();
                let al = |r: u32| {
                    if abl.contains('a') {
                        format!("za + f32(k + {r}u)")
                    } else {
                        format!("ld((m0 + {r}u) * {k}u + k)")
                    }
                };
                let bl = |q: u32| {
                    if abl.contains('b') {
                        format!("zb + vec4<f32>(f32(k * {q}u + c0))")
                    } else {
                        bload.replace("c0 + q", &format!("c0 + {q}u"))
                    }
                };
                let mut body = unrolled(rows, cols4, &al, &bl).replace("KK", &format!("{k}u"));
                for r in 0..rows {
                    for q in 0..cols4 {
                        body += &format!("    c[(m0 + {r}u) * {n4}u + c0 + {q}u] = acc_{r}_{q};\n");
                    }
                }
                let src2 = format!(
                    "{decl}
@group(0) @binding(1) {bdecl}
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
fn ld(i: u32) -> f32 {{ return {load}; }}
@compute @workgroup_size({wgx}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{
    let m0 = wg.y * {rows}u;
    let c0 = (wg.x * {wgx}u + lid.x) * {cols4}u;
    let za = ld(0u);
    let zb = {zb};
{body}}}",
                    zb = bload
                        .replace("c0 + q", "0u")
                        .replace("k * ", "0u * ")
                        .replace(", k)", ", 0u)")
                );
                let bb = if btex {
                    Bind::Tex(&view)
                } else {
                    Bind::Buf(&b_s)
                };
                time(
                    &lab,
                    "  unrolled",
                    &src2,
                    &[Bind::Buf(a_b), bb, Bind::Buf(&c)],
                    groups,
                    flops,
                );
            }
        }
    }
}

/// A split over `nu` uniform bindings of `ru` rows each; the workgroup's row block picks one.
fn blocked(
    lab: &Lab,
    m: u32,
    n: u32,
    k: u32,
    a_u: &wgpu::Buffer,
    view: &wgpu::TextureView,
    c: &wgpu::Buffer,
) {
    let flops = 2.0 * (m * n * k) as f64;
    let n4 = n / 4;
    let limit = 16384 / k; // rows per 64 KiB
    for (rows, cols4, wgx) in shapes() {
        let ru = (limit / rows) * rows;
        if ru == 0 || !n4.is_multiple_of(cols4 * wgx) {
            continue;
        }
        let nu = m.div_ceil(ru).min(15);
        let mcov = (nu * ru).min(m);
        let mut src = String::new();
        for j in 0..nu {
            src += &format!(
                "@group(0) @binding({j}) var<uniform> a{j}: array<vec4<f32>, {}>;\n",
                ru * k / 4
            );
        }
        src += &format!("@group(0) @binding({nu}) var b: texture_2d<f32>;\n@group(0) @binding({}) var<storage, read_write> c: array<vec4<f32>>;\n", nu + 1);
        src += &format!(
            "@compute @workgroup_size({wgx}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{
    let m0 = wg.y * {rows}u;
    let blk = m0 / {ru}u;
    let ml = (m0 % {ru}u) * {k}u;
    let c0 = (wg.x * {wgx}u + lid.x) * {cols4}u;
    var acc: array<array<vec4<f32>, {cols4}>, {rows}>;
    switch blk {{
"
        );
        for j in 0..nu {
            let case = if j + 1 == nu {
                "default".to_string()
            } else {
                format!("case {j}u")
            };
            src += &format!("        {case}: {{
            for (var k = 0u; k < {k}u; k++) {{
                var bv: array<vec4<f32>, {cols4}>;
                for (var q = 0u; q < {cols4}u; q++) {{ bv[q] = textureLoad(b, vec2<u32>(c0 + q, k), 0); }}
                for (var r = 0u; r < {rows}u; r++) {{
                    let i = ml + r * {k}u + k;
                    let av = vec4<f32>(a{j}[i >> 2u][i & 3u]);
                    for (var q = 0u; q < {cols4}u; q++) {{ acc[r][q] = fma(av, bv[q], acc[r][q]); }}
                }}
            }}
        }}
");
        }
        src += &format!(
            "    }}
    for (var r = 0u; r < {rows}u; r++) {{
        for (var q = 0u; q < {cols4}u; q++) {{ c[(m0 + r) * {n4}u + c0 + q] = acc[r][q]; }}
    }}
}}
"
        );
        let mut binds: Vec<Bind> = Vec::new();
        let bytes = (ru * k * 4) as u64;
        let bufs: Vec<wgpu::BufferBinding> = (0..nu)
            .map(|j| wgpu::BufferBinding {
                buffer: a_u,
                offset: j as u64 * bytes,
                size: std::num::NonZeroU64::new(bytes),
            })
            .collect();
        for bb in &bufs {
            binds.push(Bind::Range(bb.clone()));
        }
        binds.push(Bind::Tex(view));
        binds.push(Bind::Buf(c));
        let f = flops * mcov as f64 / m as f64;
        time(
            lab,
            &format!("blocked {nu}x{ru} rows {rows}x{} wg{wgx}", cols4 * 4),
            &src,
            &binds,
            (n4 / (cols4 * wgx), mcov / rows),
            f,
        );
    }
}

/// The body written out: named accumulators, no loops but the one over k.
fn unrolled(
    rows: u32,
    cols4: u32,
    a_load: &dyn Fn(u32) -> String,
    b_load: &dyn Fn(u32) -> String,
) -> String {
    let mut s = String::new();
    for r in 0..rows {
        for q in 0..cols4 {
            s += &format!("    var acc_{r}_{q} = vec4<f32>(0.0);\n");
        }
    }
    s += "    for (var k = 0u; k < KK; k++) {\n";
    for q in 0..cols4 {
        s += &format!("        let b{q} = {};\n", b_load(q));
    }
    for r in 0..rows {
        s += &format!("        let a{r} = vec4<f32>({});\n", a_load(r));
        for q in 0..cols4 {
            s += &format!("        acc_{r}_{q} = fma(a{r}, b{q}, acc_{r}_{q});\n");
        }
    }
    s += "    }\n";
    s
}

fn shapes() -> Vec<(u32, u32, u32)> {
    let s = std::env::var("LAB_SHAPES")
        .unwrap_or("16x4x16,8x2x64,4x1x64,2x1x64,3x1x64,8x1x64,2x2x64".into());
    s.split(',')
        .map(|t| {
            let v: Vec<u32> = t.split('x').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}
