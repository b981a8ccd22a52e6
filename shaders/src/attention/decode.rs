//! Attention for few query rows over many keys (`attention_decode.wgsl`): a decode step over a
//! KV cache, one query row per head. One workgroup per query row splits the keys over its
//! invocations, each with an online softmax of its own, and the partial results meet in
//! workgroup memory. The row kernel runs one invocation per query row: at 16 rows it kept 16
//! lanes busy.
//!
//! Where the target reads textures better than storage (CPU adapters), K and V are read through
//! the staging texture (`attention_staged.wgsl`, [`Buf::StageLinear`]: layers 0 and 1, copied
//! there by copy commands), else from their buffers with the row kernel's loaders.

use crate::emit::module;
use crate::loops::lp;
use crate::{Buf, Error, Kernel, STAGE_LINEAR_WIDTH};

const ATTENTION_DECODE: &str = include_str!("../templates/attention_decode.wgsl");
const ATTENTION_STAGED: &str = include_str!("../templates/attention_staged.wgsl");

/// Workgroup memory WebGPU guarantees a kernel (bytes).
const WORKGROUP_BYTES: usize = 16384;

/// Invocations per workgroup: the most of 64, 32, 16 and 8 whose partial output rows (`dv`
/// floats each, rounded up to vec4) and partial maxima and sums fit workgroup memory.
pub fn decode_workgroup(dv: usize) -> usize {
    let dv4 = dv.div_ceil(4).max(1);
    [64, 32, 16, 8]
        .into_iter()
        .find(|&wg| wg * dv4 * 16 + wg * 8 <= WORKGROUP_BYTES)
        .unwrap_or(8)
}

/// What the decode kernel needs from the attention lowering.
pub(crate) struct Decode<'a> {
    pub params: Vec<u32>,
    pub rows: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    /// Operand rows are vec4-aligned (the vec4 loaders apply).
    pub vec4: bool,
    /// The loaders for storage reads (vec4 or strided), rendered.
    pub storage_loaders: &'a str,
    /// Bindings 0-3: Q, K, V and mask inputs (the mask stands in for itself or for Q).
    pub iq: usize,
    pub ik: usize,
    pub iv: usize,
    pub im: usize,
    /// Elements of K's and V's whole buffers, where they may go through the staging texture
    /// (`None`: read from storage).
    pub staged: Option<(usize, usize)>,
    pub layout: String,
    pub max_workgroups: usize,
}

/// Whether a buffer of `numel` elements can be read through the staging texture's linear layout.
pub(crate) fn stages(numel: usize, side: u32) -> bool {
    numel.is_multiple_of(4) && crate::stage_linear_fits(numel / 4, side)
}

pub(crate) fn decode_kernel(p: Decode<'_>) -> Result<Kernel, Error> {
    if p.rows > p.max_workgroups {
        return Err(Error::Limit(format!(
            "decode attention over {} query rows needs as many workgroups, over {} per dimension",
            p.rows, p.max_workgroups
        )));
    }
    let wg = decode_workgroup(p.dv);
    let (d4, dv4) = (p.d.div_ceil(4).max(1), p.dv.div_ceil(4).max(1));
    let staged = p.staged.filter(|_| p.vec4);
    let loaders = match staged {
        Some(_) => crate::template::render(
            "attention_staged",
            ATTENTION_STAGED,
            &[
                ("width", STAGE_LINEAR_WIDTH.to_string()),
                ("mask", (STAGE_LINEAR_WIDTH - 1).to_string()),
                ("shift", STAGE_LINEAR_WIDTH.trailing_zeros().to_string()),
            ],
        )?,
        None => p.storage_loaders.to_string(),
    };
    let vals = [
        ("loaders", loaders),
        ("wg", wg.to_string()),
        ("wg_dv4", (wg * dv4).to_string()),
        ("d", p.d.max(1).to_string()),
        ("dv", p.dv.max(1).to_string()),
        ("d4", d4.to_string()),
        ("dv4", dv4.to_string()),
        ("layout", p.layout),
    ];
    let wgsl = module("attention_decode", &[ATTENTION_DECODE], &vals)?;
    // The key loop, the two loops over the partial results, and the output loop with its loop
    // over the partial rows.
    let loop_trips = lp(p.sk.div_ceil(wg) as u64)
        + 2 * lp(wg as u64)
        + lp(dv4.div_ceil(wg) as u64) * (1 + lp(wg as u64));
    let (k_bind, v_bind, name) = match staged {
        Some((k_numel, v_numel)) => (
            Buf::StageLinear {
                input: p.ik,
                texels: (k_numel / 4) as u32,
                layer: 0,
            },
            Buf::StageLinear {
                input: p.iv,
                texels: (v_numel / 4) as u32,
                layer: 1,
            },
            "attention_decode_tex",
        ),
        None => (Buf::In(p.ik), Buf::In(p.iv), "attention_decode"),
    };
    let workgroups = if p.rows == 0 || p.sk == 0 || p.d == 0 || p.dv == 0 {
        [0, 0, 0]
    } else {
        [p.rows as u32, 1, 1]
    };
    Ok(Kernel {
        name: name.into(),
        wgsl,
        bindings: vec![Buf::In(p.iq), k_bind, v_bind, Buf::In(p.im), Buf::Out(0)],
        params: p.params,
        workgroups,
        loop_trips,
    })
}
