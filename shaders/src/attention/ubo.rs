//! The attention kernel for CPU adapters (`attention_ubo`): K and V read from uniform bindings,
//! the per-invocation state written out as named variables, and keys taken in chunks so the
//! online softmax rescales the output rows once per chunk rather than once per key.
//!
//! Why: every invocation of a workgroup reads the same key and value rows. On lavapipe a
//! storage-buffer load is a loop over the SIMD lanes with a bounds check per lane even at a
//! lane-uniform address, while a uniform load there is one scalar load (see `matmul_ubo`). The
//! rescale of `r` output rows of `dv` floats per key cost as much as the two dot products; per
//! chunk of [`CHUNK`] keys it costs a quarter. Query and output rows held in arrays indexed at
//! run time stay in memory; as named variables they are values the compiler can keep.

use super::layout::{Operand, ATTENTION_PARAMS};
use crate::emit::{module, switch_cases};
use crate::matmul::ubo::{UBO_ALIGN, UBO_MAX_BYTES};
use crate::{Buf, Error, Kernel};

/// Keys per chunk of the online softmax.
pub const CHUNK: usize = 4;

/// Strides and offset of an operand as the attention params hold them: batch, head, row, dim,
/// offset (elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    pub sb: usize,
    pub sh: usize,
    pub sj: usize,
    pub sd: usize,
    pub off: usize,
}

impl From<Operand> for Strides {
    /// K's or V's block of the attention params (its row: the key).
    fn from(o: Operand) -> Strides {
        Strides {
            sb: o.sb as usize,
            sh: o.sh as usize,
            sj: o.row as usize,
            sd: o.col as usize,
            off: o.off as usize,
        }
    }
}

impl Strides {
    /// Elements that `n` key rows of every head span from the first row's start.
    fn span(&self, n: usize, heads: usize, dim: usize) -> usize {
        (n - 1) * self.sj + (heads - 1) * self.sh + dim
    }
}

/// How K and V split into uniform bindings: `ru` keys per block and each block's byte range in
/// K and in V.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub ru: usize,
    pub k_blocks: Vec<(u32, u32)>,
    pub v_blocks: Vec<(u32, u32)>,
}

/// The key blocks of K and V for `heads` heads of `sk` keys (dims `d` and `dv`), or `None`
/// where they do not fit `max_blocks` uniform bindings: one batch, rows contiguous along the
/// head dim, offsets and strides multiples of 4, blocks at most [`UBO_MAX_BYTES`] and starting
/// at multiples of [`UBO_ALIGN`] bytes.
pub fn kv_layout(
    heads: usize,
    sk: usize,
    (d, k): (usize, Strides),
    (dv, v): (usize, Strides),
    max_blocks: usize,
) -> Option<KvLayout> {
    let ok = |s: &Strides, dim: usize| {
        s.sd == 1
            && dim.is_multiple_of(4)
            && s.sh.is_multiple_of(4)
            && s.sj.is_multiple_of(4)
            && (s.off * 4).is_multiple_of(UBO_ALIGN)
    };
    if heads == 0 || sk == 0 || d == 0 || dv == 0 || !ok(&k, d) || !ok(&v, dv) {
        return None;
    }
    let words = UBO_MAX_BYTES / 4;
    let fits = |n: usize| k.span(n, heads, d) <= words && v.span(n, heads, dv) <= words;
    if !fits(1) {
        return None;
    }
    // The most keys that fit, at most all of them.
    let (mut lo, mut hi) = (1, sk);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut ru = lo;
    if ru < sk {
        // Whole chunks per block, and every block's start aligned.
        let aligned = |n: usize| {
            (n * k.sj * 4).is_multiple_of(UBO_ALIGN) && (n * v.sj * 4).is_multiple_of(UBO_ALIGN)
        };
        let whole = |n: usize| n < CHUNK || n.is_multiple_of(CHUNK);
        while ru > 0 && !(aligned(ru) && whole(ru)) {
            ru -= 1;
        }
        if ru == 0 {
            return None;
        }
    }
    let nb = sk.div_ceil(ru);
    if 2 * nb > max_blocks {
        return None;
    }
    let blocks = |s: &Strides, dim: usize| {
        (0..nb)
            .map(|i| {
                let n = ru.min(sk - i * ru);
                (
                    ((s.off + i * ru * s.sj) * 4) as u32,
                    (s.span(n, heads, dim) * 4) as u32,
                )
            })
            .collect()
    };
    Some(KvLayout {
        ru,
        k_blocks: blocks(&k, d),
        v_blocks: blocks(&v, dv),
    })
}

/// What the kernel is generated for.
pub struct AttentionUbo<'a> {
    /// The attention params ([`ATTENTION_PARAMS`]).
    pub params: &'a [u32],
    pub heads: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    /// Query rows per invocation and invocations per workgroup.
    pub r: usize,
    pub wg: usize,
    pub has_mask: bool,
    /// Inputs of the group: Q, K, V, mask (Q when none).
    pub iq: usize,
    pub ik: usize,
    pub iv: usize,
    pub im: usize,
    pub layout: &'a KvLayout,
}

/// The kernel. Bindings: Q (vec4 storage), out, the mask (when there is one), K's blocks, V's
/// blocks, then params.
/// Batch 1 only (the caller checks).
pub fn attention_ubo_kernel(a: &AttentionUbo) -> Result<Kernel, Error> {
    let (r, wg) = (a.r, a.wg);
    let d4 = a.d / 4;
    let dv4 = a.dv / 4;
    let lay = a.layout;
    let nb = lay.k_blocks.len();
    let mut bindings = vec![Buf::In(a.iq), Buf::Out(0)];
    let mut decls = String::new();
    if a.has_mask {
        // (Bound only when read: a layout derived from the shader leaves unread bindings out.)
        decls += "@group(0) @binding(2) var<storage, read> mask: array<f32>;\n";
        bindings.push(Buf::In(a.im));
    }
    for (name, input, blocks) in [("kb", a.ik, &lay.k_blocks), ("vb", a.iv, &lay.v_blocks)] {
        for (i, &(offset, size)) in blocks.iter().enumerate() {
            decls += &format!(
                "@group(0) @binding({}) var<uniform> {name}{i}: array<vec4<f32>, {}>;\n",
                bindings.len(),
                size / 16
            );
            bindings.push(Buf::Uniform {
                input,
                offset,
                size,
            });
        }
    }
    // A mask that is the same for every query row (query stride 0) is read once per key.
    let m_si = ATTENTION_PARAMS.at("m_si")?;
    let mask_per_row = a.has_mask && a.params.get(m_si).is_some_and(|&s| s != 0);
    let mut setup = String::new();
    for t in 0..r {
        setup += &format!(
            "    let qo{t} = (params[AT_Q_OFF] + h * params[AT_Q_SH] + min(i0 + {}u, sq - 1u) * params[AT_Q_SI]) / 4u;\n",
            t * wg
        );
        for e in 0..d4 {
            setup += &format!("    let q{t}_{e} = q[qo{t} + {e}u] * scale;\n");
        }
        for e in 0..dv4 {
            setup += &format!("    var a{t}_{e} = vec4<f32>(0.0);\n");
        }
        setup += &format!("    var m{t} = ninf;\n    var l{t} = 0.0;\n");
        if mask_per_row {
            setup += &format!(
                "    let mo{t} = params[AT_M_OFF] + h * params[AT_M_SH] + min(i0 + {}u, sq - 1u) * params[AT_M_SI];\n",
                t * wg
            );
        }
    }
    // One chunk of keys `j .. j + CHUNK` of a block (`KB`, `VB`): scores, one rescale, P.V.
    let mut chunk = format!(
        "for (var j = j0; j < jn; j = j + {CHUNK}u) {{\n    var sc: array<f32, {}>;\n    for (var c = 0u; c < {CHUNK}u; c = c + 1u) {{\n        let jj = min(j + c, jn - 1u);\n        let live = j + c < jn;\n        let ek = ((jj - j0) * sjk + kh) / 4u;\n",
        CHUNK * r
    );
    for e in 0..d4 {
        chunk += &format!("        let k{e} = KB[ek + {e}u];\n");
    }
    if a.has_mask && !mask_per_row {
        chunk += "        let mk = mask[mo + jj * msj];\n";
    }
    for t in 0..r {
        chunk += &format!("        var x{t} = q{t}_0 * k0;\n");
        for e in 1..d4 {
            chunk += &format!("        x{t} = fma(q{t}_{e}, k{e}, x{t});\n");
        }
        let add = match (a.has_mask, mask_per_row) {
            (false, _) => String::new(),
            (true, false) => " + mk".into(),
            (true, true) => format!(" + mask[mo{t} + jj * msj]"),
        };
        chunk += &format!(
            "        sc[c * {r}u + {t}u] = select(ninf, x{t}.x + x{t}.y + x{t}.z + x{t}.w{add}, live);\n"
        );
    }
    chunk += "    }\n";
    for t in 0..r {
        chunk += &format!("    var mx{t} = m{t};\n");
        for c in 0..CHUNK {
            chunk += &format!("    mx{t} = max(mx{t}, sc[{}u]);\n", c * r + t);
        }
        // While every score so far is -inf the reference point is 0, so both factors are 0
        // rather than exp(NaN).
        chunk += &format!(
            "    let bs{t} = select(mx{t}, 0.0, mx{t} == ninf);\n    let cr{t} = exp(m{t} - bs{t});\n    m{t} = mx{t};\n    l{t} = l{t} * cr{t};\n"
        );
        for e in 0..dv4 {
            chunk += &format!("    a{t}_{e} = a{t}_{e} * cr{t};\n");
        }
    }
    chunk += &format!(
        "    for (var c = 0u; c < {CHUNK}u; c = c + 1u) {{\n        let jj = min(j + c, jn - 1u);\n        let ev = ((jj - j0) * sjv + vh) / 4u;\n"
    );
    for e in 0..dv4 {
        chunk += &format!("        let v{e} = VB[ev + {e}u];\n");
    }
    for t in 0..r {
        chunk += &format!(
            "        let p{t} = exp(sc[c * {r}u + {t}u] - bs{t});\n        l{t} = l{t} + p{t};\n"
        );
        for e in 0..dv4 {
            chunk += &format!("        a{t}_{e} = fma(vec4<f32>(p{t}), v{e}, a{t}_{e});\n");
        }
    }
    chunk += "    }\n}\n";
    let indent = |s: &str, n: usize| -> String {
        let pad = " ".repeat(n);
        s.lines().map(|l| format!("{pad}{l}\n")).collect()
    };
    let body = switch_cases("blk", nb, 8, |i| {
        let copy = chunk
            .replace("KB", &format!("kb{i}"))
            .replace("VB", &format!("vb{i}"));
        indent(&copy, 16)
    });
    let mut stores = format!("    var res: array<vec4<f32>, {}>;\n", r * dv4);
    for t in 0..r {
        stores += &format!("    let inv{t} = 1.0 / l{t};\n");
        for e in 0..dv4 {
            stores += &format!("    res[{}] = a{t}_{e} * inv{t};\n", t * dv4 + e);
        }
    }
    let mask_setup = if a.has_mask {
        "    let mo = params[AT_M_OFF] + h * params[AT_M_SH];\n    let msj = params[AT_M_SJ];\n"
    } else {
        ""
    };
    let vals = [
        ("decls", decls),
        ("mask_setup", mask_setup.to_string()),
        ("params_binding", bindings.len().to_string()),
        ("r", r.to_string()),
        ("wg", wg.to_string()),
        ("rows", (r * wg).to_string()),
        ("nb", nb.to_string()),
        ("ru", lay.ru.to_string()),
        ("chunk", CHUNK.to_string()),
        ("dv4", dv4.to_string()),
        ("nres", (r * dv4).to_string()),
        ("setup", setup),
        ("body", body),
        ("stores", stores),
        ("layout", ATTENTION_PARAMS.wgsl()),
    ];
    let wgsl = module("attention_ubo", &[ATTENTION_UBO], &vals)?;
    let workgroups = if a.sq == 0 || a.sk == 0 || a.d == 0 || a.dv == 0 || a.heads == 0 {
        [0, 0, 0]
    } else {
        [a.sq.div_ceil(wg * r) as u32, a.heads as u32, 1]
    };
    // The block loop; per block its chunks of keys, each two passes over the chunk; the stores.
    let mut loop_trips = crate::loops::lp(nb as u64);
    for b in 0..nb {
        let keys = a.sk.saturating_sub(b * lay.ru).min(lay.ru) as u64;
        let chunks = keys.div_ceil(CHUNK as u64);
        loop_trips += crate::loops::lp(chunks) + chunks * 2 * crate::loops::lp(CHUNK as u64);
    }
    let nres = (r * dv4) as u64;
    loop_trips += crate::loops::lp(nres) + nres * crate::loops::lp(4);
    Ok(Kernel {
        name: "attention_ubo".into(),
        wgsl,
        bindings,
        params: a.params.to_vec(),
        workgroups,
        loop_trips,
    })
}

const ATTENTION_UBO: &str = include_str!("../templates/attention_ubo.wgsl");

#[cfg(test)]
mod tests {
    use super::*;

    /// BERT-base's K (or V): `[128 keys, 768]`, 12 heads of 64 at column `64 h`.
    fn bert() -> Strides {
        Strides {
            sb: 128 * 768,
            sh: 64,
            sj: 768,
            sd: 1,
            off: 0,
        }
    }

    #[test]
    fn bert_keys_in_seven_blocks() {
        let l = kv_layout(12, 128, (64, bert()), (64, bert()), 15).unwrap();
        // 21 keys of 3 KiB fit 64 KiB; 20 are whole chunks.
        assert_eq!(l.ru, 20);
        assert_eq!(l.k_blocks.len(), 7);
        assert_eq!(l.k_blocks[1], (20 * 3072, 20 * 3072));
        // The last block: keys 120..128.
        assert_eq!(l.k_blocks[6], (120 * 3072, 8 * 3072));
        assert_eq!(l.k_blocks, l.v_blocks);
        // 14 bindings: not within WebGPU's 12.
        assert_eq!(kv_layout(12, 128, (64, bert()), (64, bert()), 12), None);
    }

    #[test]
    fn refusals() {
        let k = bert();
        // Head-major ([heads, keys, 64]): a block would span every head.
        let hm = Strides {
            sh: 128 * 64,
            sj: 64,
            ..k
        };
        assert_eq!(kv_layout(12, 128, (64, hm), (64, k), 15), None);
        // Strided head dim, unaligned offset, head dim not a multiple of 4, or 0.
        assert_eq!(
            kv_layout(12, 128, (64, Strides { sd: 2, ..k }), (64, k), 15),
            None
        );
        assert_eq!(
            kv_layout(12, 128, (64, Strides { off: 4, ..k }), (64, k), 15),
            None
        );
        assert_eq!(kv_layout(12, 128, (62, k), (64, k), 15), None);
        assert_eq!(kv_layout(12, 128, (64, k), (0, k), 15), None);
        // Offsets at 256 bytes are fine; few keys make one block of exactly their span.
        let l = kv_layout(12, 3, (64, Strides { off: 64, ..k }), (64, k), 2).unwrap();
        assert_eq!(l.k_blocks, vec![(256, (2 * 768 + 768) * 4)]);
    }
}
