//! Fused attention: `softmax(Q K^T * scale + mask) V` in one kernel, an online softmax over the
//! keys (`attention.wgsl`), or where the target reads uniform blocks well, K and V from uniform
//! bindings (`ubo`).

pub mod decode;
mod layout;
pub mod ubo;

pub use layout::ATTENTION_PARAMS;

use crate::emit::module;
use crate::loops::lp;
use crate::options::LowerOptions;
use crate::views::view_of;
use crate::{Buf, Error, Kernel};
use layout::Operand;
use sfumato_core::op::BinaryOp;
use sfumato_core::plan::{Group, Plan};
use sfumato_core::{Graph, NodeId, Op, Shape, ValueId};
use ubo::{attention_ubo_kernel, kv_layout, AttentionUbo, Strides};

const ATTENTION: &str = include_str!("../templates/attention.wgsl");
const ATTENTION_VEC4: &str = include_str!("../templates/attention_vec4.wgsl");
const ATTENTION_STRIDED: &str = include_str!("../templates/attention_strided.wgsl");

/// Query rows per invocation and invocations per workgroup of the attention kernel. Each key
/// and value row an invocation loads serves all its query rows, so more rows per invocation
/// means fewer loads (which dominate on SIMD-on-CPU adapters such as lavapipe); it stops where
/// fewer than 256 invocations would be left to spread over the cores, where a head has fewer
/// query rows, and where an invocation's rows would hold many registers (4 rows up to a head
/// dim of 64, 2 up to 128: an invocation keeps `r * (d + dv)` floats of query and output rows).
fn attention_blocking(rows: usize, sq: usize, d: usize, dv: usize) -> (usize, usize) {
    let r = [4, 2]
        .into_iter()
        .find(|&r| rows / r >= 256 && r <= sq && r * d.max(dv) <= 256)
        .unwrap_or(1);
    let wg = sq.div_ceil(r).next_power_of_two().clamp(8, 64);
    (r, wg)
}

/// The attention kernels of a group `[QK, (scale), (mask), Softmax, PV, (Transpose)]` (one, or
/// one per batch on uniform-block targets), with the group's inputs (bases) it binds and its
/// output.
pub fn attention(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Result<(Vec<Kernel>, Vec<ValueId>, ValueId), Error> {
    let node = |n: NodeId| g.node(n);
    let qk = node(group.nodes[0]);
    let mut scale = 1.0f32;
    let mut mask = None;
    let mut pv = None;
    let mut transpose = None;
    let mut after_softmax = false;
    let made: Vec<ValueId> = group
        .nodes
        .iter()
        .flat_map(|&n| node(n).outputs.clone())
        .collect();
    for &n in &group.nodes[1..] {
        let nd = node(n);
        match &nd.op {
            Op::Binary(b @ (BinaryOp::Mul | BinaryOp::Div)) => {
                let c = nd
                    .inputs
                    .iter()
                    .find(|i| !made.contains(i))
                    .copied()
                    .ok_or_else(|| Error::Internal("attention scale".into()))?;
                let t = g
                    .value(c)
                    .producer
                    .map(|p| &node(p).op)
                    .and_then(|op| match op {
                        Op::Constant(t) => t.to_f64_vec().first().copied(),
                        _ => None,
                    })
                    .ok_or_else(|| Error::Internal("attention scale".into()))?
                    as f32;
                scale = if *b == BinaryOp::Div { 1.0 / t } else { t };
            }
            Op::Binary(BinaryOp::Add) => {
                mask = nd.inputs.iter().find(|i| !made.contains(i)).copied();
            }
            Op::Softmax { .. } => after_softmax = true,
            Op::MatMul if after_softmax => pv = Some(nd),
            Op::Transpose { .. } => transpose = Some(nd),
            _ => {}
        }
    }
    let pv = pv.ok_or_else(|| Error::Internal("attention without P.V".into()))?;
    let scores = g.shape(qk.outputs[0]);
    let rank = scores.rank();
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; 4 - d.len()];
        v.extend_from_slice(d);
        v
    };
    let sd = pad(scores.dims());
    let (b, h, sq, sk) = (sd[0], sd[1], sd[2], sd[3]);
    let q_shape = g.shape(qk.inputs[0]);
    let d = q_shape.dims()[rank - 1];
    let dv = g.shape(pv.inputs[1]).dims()[rank - 1];
    let mut inputs: Vec<ValueId> = Vec::new();
    // Each operand's strides (batch, head, row, column) and offset, and its input.
    let mut operand = |v: ValueId, target: [usize; 4], order: [usize; 4]| -> (Operand, usize) {
        let (base, view) = view_of(g, plan, v);
        let bv = view.broadcast(g.shape(v), &Shape(target.to_vec()));
        let [sb, sh, row, col] = order.map(|o| bv.strides[o] as u32);
        let block = Operand {
            sb,
            sh,
            row,
            col,
            off: bv.offset as u32,
        };
        let i = match inputs.iter().position(|&x| x == base) {
            Some(i) => i,
            None => {
                inputs.push(base);
                inputs.len() - 1
            }
        };
        (block, i)
    };
    let (qs, iq) = operand(qk.inputs[0], [b, h, sq, d], [0, 1, 2, 3]);
    // K arrives transposed, [.., D, Sk]: its key stride is the last, its dim stride the third.
    let (ks, ik) = operand(qk.inputs[1], [b, h, d, sk], [0, 1, 3, 2]);
    let (vs, iv) = operand(pv.inputs[1], [b, h, sk, dv], [0, 1, 2, 3]);
    let (ms, im) = match mask {
        Some(m) => operand(m, [b, h, sq, sk], [0, 1, 2, 3]),
        None => (Operand::default(), iq),
    };
    let out = group
        .outputs
        .first()
        .copied()
        .ok_or_else(|| Error::Internal("attention without an output".into()))?;
    let os = {
        // Stored as [B, H, Sq, Dv], or after the transpose as [B, Sq, H, Dv].
        let (c, [sb, sh, row, col]) = if transpose.is_some() {
            (Shape(vec![b, sq, h, dv]).strides(), [0, 2, 1, 3])
        } else {
            (Shape(vec![b, h, sq, dv]).strides(), [0, 1, 2, 3])
        };
        Operand {
            sb: c[sb] as u32,
            sh: c[sh] as u32,
            row: c[row] as u32,
            col: c[col] as u32,
            off: 0,
        }
    };
    // The params of the whole attention (`None`), or of batch `i` alone (every operand's
    // offset moved to that batch's rows).
    let params_of = |batch: Option<usize>| -> Result<Vec<u32>, Error> {
        let (nb, i) = batch.map_or((b, 0), |i| (1, i as u32));
        let mut fill = ATTENTION_PARAMS
            .fill()
            .set("b", nb as u32)
            .set("h", h as u32)
            .set("sq", sq as u32)
            .set("sk", sk as u32)
            .set("d", d as u32)
            .set("dv", dv as u32)
            .set("scale", scale.to_bits())
            .set("has_mask", mask.is_some() as u32)
            .set("rows", (nb * h * sq) as u32);
        for (o, mut block) in [('q', qs), ('k', ks), ('v', vs), ('m', ms), ('o', os)] {
            block.off += i * block.sb;
            fill = block.set(fill, o);
        }
        fill.finish()
    };
    let params = params_of(None)?;
    // Head-dim rows contiguous and 16-byte aligned: vec4 loads.
    let aligned = |s: Operand| {
        s.col == 1
            && [s.sb, s.sh, s.row, s.off]
                .iter()
                .all(|x| x.is_multiple_of(4))
    };
    let vec4 =
        d.is_multiple_of(4) && dv.is_multiple_of(4) && aligned(qs) && aligned(ks) && aligned(vs);
    // (The strided loaders' element loop is written out: rendered before it is spliced in.)
    let loaders = if vec4 {
        ATTENTION_VEC4.to_string()
    } else {
        crate::template::render("attention_strided", ATTENTION_STRIDED, &[])?
    };
    let rows = b * h * sq;
    // Few query rows (the plan fuses them only over many keys): split the keys instead.
    if rows < sfumato_core::plan::MIN_ATTENTION_ROWS {
        let numel = |i: usize| g.shape(inputs[i]).numel();
        let side = opts.target.max_texture_side;
        let staged = (opts.target.texture_weights
            && decode::stages(numel(ik), side)
            && decode::stages(numel(iv), side))
        .then(|| (numel(ik), numel(iv)));
        let k = decode::decode_kernel(decode::Decode {
            params,
            rows,
            sk,
            d,
            dv,
            vec4,
            storage_loaders: &loaders,
            iq,
            ik,
            iv,
            im,
            staged,
            layout: ATTENTION_PARAMS.wgsl(),
            max_workgroups: opts.target.max_workgroups_per_dim as usize,
        })?;
        return Ok((vec![k], inputs, out));
    }
    let (r, wg) = attention_blocking(rows, sq, d, dv);
    let lim = opts.target.max_workgroups_per_dim as usize;
    let grid = [sq.div_ceil(wg * r), h, b];
    if grid.iter().any(|&x| x > lim) {
        return Err(Error::Limit(format!(
            "attention over {b} x {h} heads x {sq} queries needs {grid:?} workgroups, over {lim} per dimension"
        )));
    }
    // Targets that read operands well through uniform blocks (CPU adapters): K and V from
    // uniform bindings where they fit, one kernel per batch (a batch's keys are its own
    // blocks; the kernels share one shader, only their bindings' offsets differ).
    if opts.target.uniform_block_operands && vec4 {
        let (r, wg) = attention_blocking(h * sq, sq, d, dv);
        let mut per_batch = Vec::with_capacity(b);
        for i in 0..b {
            let p = if b == 1 {
                params.clone()
            } else {
                params_of(Some(i))?
            };
            let Some(layout) = kv_layout(
                h,
                sk,
                (d, Strides::from(Operand::read(&p, 'k')?)),
                (dv, Strides::from(Operand::read(&p, 'v')?)),
                opts.target.max_uniform_blocks as usize,
            ) else {
                break;
            };
            let k = attention_ubo_kernel(&AttentionUbo {
                params: &p,
                heads: h,
                sq,
                sk,
                d,
                dv,
                r,
                wg,
                has_mask: mask.is_some(),
                iq,
                ik,
                iv,
                im,
                layout: &layout,
            })?;
            // (More loop ends a key than the storage kernel: that one may still fit.)
            if !crate::loops::fits(k.loop_trips, opts.target.loop_budget) {
                break;
            }
            per_batch.push(k);
        }
        if per_batch.len() == b && b > 0 {
            return Ok((per_batch, inputs, out));
        }
    }
    let vals = [
        ("loaders", loaders),
        ("r", r.to_string()),
        ("wg", wg.to_string()),
        ("d", d.max(1).to_string()),
        ("dv", dv.max(1).to_string()),
        ("d4", d.div_ceil(4).max(1).to_string()),
        ("dv4", dv.div_ceil(4).max(1).to_string()),
        ("layout", ATTENTION_PARAMS.wgsl()),
    ];
    let wgsl = module("attention", &[ATTENTION], &vals)?;
    // The key loop (its body written out), then the store loops over rows and values.
    let loop_trips = lp(sk as u64) + lp(r as u64) + r as u64 * lp(dv as u64);
    let workgroups = if rows == 0 || sk == 0 || d == 0 || dv == 0 {
        [0, 0, 0]
    } else {
        grid.map(|x| x as u32)
    };
    let k = Kernel {
        name: "attention".into(),
        wgsl,
        bindings: vec![
            Buf::In(iq),
            Buf::In(ik),
            Buf::In(iv),
            Buf::In(im),
            Buf::Out(0),
        ],
        params,
        workgroups,
        loop_trips,
    };
    Ok((vec![k], inputs, out))
}
