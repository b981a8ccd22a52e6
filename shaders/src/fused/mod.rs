//! The generator: one WGSL module per fused group.
//!
//! An elementwise chain becomes straight-line code over one flat index; an anchor (matmul, conv,
//! softmax, layer norm) gets its chain spliced into its template's `epilogue` (and `load_x`)
//! functions; attention has its own template. Every external input is read through a strided,
//! broadcast view described in `params` (`ev_off`), with direct indexing where the view is the
//! output's own layout and a modulo where it is a broadcast of a trailing block (a bias).

pub mod reads;

use crate::emit::{kernel, SpliceFn};
use crate::lower::lower;
use crate::matmul::{
    conv1x1_problem, matmul_int_kernel_spliced, matmul_kernel_spliced, matmul_problem_views,
    no_matmul_variant, variant_order, MatmulProblem,
};
use crate::ops::conv::{conv2d_gemm_kernel, conv2d_int_kernel, conv2d_kernel};
use crate::ops::reduce::{layernorm_kernel, reduce_kernel, softmax_kernel};
use crate::ops::tensor::read_view;
use crate::options::LowerOptions;
use crate::params::{one, Layout};
use crate::views::{node_io, view_of};
use crate::Lowered;
use crate::{Buf, Elem, Error, Kernel};
use reads::{anchor_splice, Reads};
use sfumato_core::plan::{Group, GroupKind, Plan, View};
use sfumato_core::{DType, Graph, Op, ValueId};
use std::collections::HashMap;
use std::fmt::Write;

const FUSED_ELEMENTWISE: &str = include_str!("../templates/fused_elementwise.wgsl");

/// A fused elementwise kernel's own params; its view block ([`reads::EV_BLOCK`]) follows at `EV`.
pub const FUSED_ELEMENTWISE_PARAMS: Layout = Layout::new("fused_elementwise", "FE", &[one("n")]);

/// A group lowered for the device: `Buf::In(i)` binds `inputs[i]`, `Buf::Out(j)` `outputs[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupKernels {
    pub lowered: Lowered,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The member ops joined by `+`, e.g. `MatMul+Add+Gelu`.
    pub label: String,
    /// Output 0 is written over this value's buffer (read in the kernel through output 0).
    pub inplace: Option<ValueId>,
}

/// The ops of a group joined by `+`.
pub fn group_label(g: &Graph, group: &Group) -> String {
    group
        .nodes
        .iter()
        .map(|&n| g.node(n).op.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// The matmul problem of a Matmul group (for the device's autotuner), with its operand views:
/// for a conv, the matmul of a staged conv ([`crate::ops::conv::staged_conv_problem`]) on
/// targets that stage it, else a pointwise conv's.
pub fn group_matmul_problem(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Option<MatmulProblem> {
    let anchor = g.node(*group.nodes.first()?);
    if let Op::Conv2d(c) = &anchor.op {
        let (x, w) = (
            g.shape(anchor.inputs[0]).dims(),
            g.shape(anchor.inputs[1]).dims(),
        );
        let has_bias = anchor.inputs.len() == 3;
        let out = g.shape(anchor.outputs[0]);
        return crate::ops::conv::staged_conv_problem(c, x, w, out, has_bias, opts)
            .or_else(|| conv1x1_problem(c, x, w, has_bias));
    }
    if !matches!(anchor.op, Op::MatMul | Op::Gemm(_)) {
        return None;
    }
    if group.kind == GroupKind::Attention {
        return None;
    }
    let (ins, outs) = node_io(g, anchor);
    let views: Vec<View> = anchor
        .inputs
        .iter()
        .map(|&i| view_of(g, plan, i).1)
        .collect();
    let mut p = matmul_problem_views(&anchor.op, &ins, &views, &outs)?;
    // B read whole, as stored, from a constant: the device may hold it as a texture (an f16
    // one as rgba16float, exact).
    let (b_base, _) = view_of(g, plan, anchor.inputs[1]);
    p.b_const = matches!(g.dtype(b_base), DType::F32 | DType::F16)
        && g.shape(b_base).numel() == p.k * p.n
        && g.value(b_base)
            .producer
            .is_some_and(|n| matches!(g.node(n).op, Op::Constant(_)));
    Some(p)
}

/// Lower one group of a plan. No kernel it returns passes more loop ends per invocation than
/// `opts.target.loop_budget` allows ([`crate::loops`]): a group that cannot be kept under it is an
/// [`Error::LoopBudget`].
pub fn generate(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let mut gk = generate_group(g, plan, group, opts)?;
    crate::loops::check_all(&gk.lowered, opts.target.loop_budget)?;
    crate::uniform_params::apply(&mut gk.lowered);
    Ok(gk)
}

fn generate_group(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let label = group_label(g, group);
    let first = g.node(group.nodes[0]);
    let single = |lowered: Lowered| GroupKernels {
        lowered,
        inputs: first.inputs.clone(),
        outputs: first.outputs.clone(),
        label: label.clone(),
        inplace: None,
    };
    match group.kind {
        GroupKind::Constant | GroupKind::Single => {
            let (ins, outs) = node_io(g, first);
            Ok(single(lower(&first.op, &ins, &outs, opts)?))
        }
        GroupKind::View => {
            let out = first.outputs[0];
            let (base, view) = plan
                .view_of
                .get(&out)
                .cloned()
                .ok_or_else(|| Error::Internal("a view group without a view".into()))?;
            let shape = g.shape(out);
            let lowered = if view.offset == 0
                && view.is_contiguous(shape)
                && g.shape(base).numel() == shape.numel()
            {
                Lowered::Alias
            } else {
                Lowered::Kernels(vec![read_view(shape, view, g.dtype(out), opts)?])
            };
            Ok(GroupKernels {
                lowered,
                inputs: vec![base],
                outputs: vec![out],
                label,
                inplace: None,
            })
        }
        GroupKind::Elementwise => elementwise(g, plan, group, opts, label),
        GroupKind::Matmul if first.op == Op::MatMulInteger => {
            // The integer product's operands are i32 values, never textures or uniform blocks.
            let (ins, outs) = node_io(g, first);
            let views: Vec<View> = first
                .inputs
                .iter()
                .map(|&i| view_of(g, plan, i).1)
                .collect();
            let p = matmul_problem_views(&Op::MatMul, &ins, &views, &outs)
                .ok_or_else(|| Error::Internal("integer matmul shapes".into()))?;
            let inputs: Vec<ValueId> = first
                .inputs
                .iter()
                .map(|&i| view_of(g, plan, i).0)
                .collect();
            let out = *group
                .outputs
                .first()
                .ok_or_else(|| Error::Internal("an integer matmul group without output".into()))?;
            let elem = Elem::of(g.dtype(out));
            spliced(g, plan, group, label, inputs, 3, None, |sp| {
                matmul_int_kernel_spliced(&p, elem, opts, sp).map(|k| vec![k])
            })
        }
        GroupKind::Matmul => {
            let p = group_matmul_problem(g, plan, group, opts)
                .ok_or_else(|| Error::Internal("matmul shapes".into()))?;
            let inputs: Vec<ValueId> = first
                .inputs
                .iter()
                .map(|&i| view_of(g, plan, i).0)
                .collect();
            matmul_group(g, plan, group, label, inputs, &p, opts)
        }
        GroupKind::Conv if matches!(first.op, Op::ConvInteger(_)) => {
            let Op::ConvInteger(c) = &first.op else {
                unreachable!("matched above")
            };
            let x = g.shape(first.inputs[0]).dims();
            let w = g.shape(first.inputs[1]).dims();
            let out_shape = g.shape(first.outputs[0]);
            let has_bias = first.inputs.len() == 3;
            let out = *group
                .outputs
                .first()
                .ok_or_else(|| Error::Internal("an integer conv group without output".into()))?;
            let elem = Elem::of(g.dtype(out));
            // Pointwise without a bias: the integer matmul (A = weight, B = image), whose sums
            // land in the conv's NCHW order.
            if let Some(p) = conv1x1_problem(c, x, w, false).filter(|_| !has_bias) {
                let inputs = vec![first.inputs[1], first.inputs[0]];
                return spliced(g, plan, group, label, inputs, 3, None, |sp| {
                    matmul_int_kernel_spliced(&p, elem, opts, sp).map(|k| vec![k])
                });
            }
            spliced(g, plan, group, label, first.inputs.clone(), 4, None, |sp| {
                conv2d_int_kernel(c, x, w, has_bias, out_shape, elem, opts, sp)
            })
        }
        GroupKind::Conv => {
            let Op::Conv2d(c) = &first.op else {
                return Err(Error::Internal("conv group without a conv".into()));
            };
            let x = g.shape(first.inputs[0]).dims();
            let w = g.shape(first.inputs[1]).dims();
            let out_shape = g.shape(first.outputs[0]);
            // A staged conv (its problem says so) runs `conv2d_staged` below.
            if let Some(p) = group_matmul_problem(g, plan, group, opts).filter(|p| !p.staged_conv) {
                // Pointwise: a batched matmul (A = weight, B = image) with the same epilogue.
                let mut inputs = vec![first.inputs[1], first.inputs[0]];
                inputs.extend(first.inputs.get(2));
                return matmul_group(g, plan, group, label, inputs, &p, opts);
            }
            let bias = Buf::In(if first.inputs.len() == 3 { 2 } else { 1 });
            let conv = if c.groups == 1 {
                conv2d_gemm_kernel
            } else {
                conv2d_kernel
            };
            let has_bias = first.inputs.len() == 3;
            spliced(g, plan, group, label, first.inputs.clone(), 4, None, |sp| {
                conv(c, x, w, bias, has_bias, out_shape, opts, sp)
            })
        }
        GroupKind::Softmax | GroupKind::LayerNorm | GroupKind::Reduce => {
            let ai = group
                .nodes
                .iter()
                .position(|&n| {
                    matches!(
                        g.node(n).op,
                        Op::Softmax { .. } | Op::LayerNorm { .. } | Op::Reduce { .. }
                    )
                })
                .ok_or_else(|| Error::Internal("row reduction group without its op".into()))?;
            let anchor = g.node(group.nodes[ai]);
            let x = anchor.inputs[0];
            let shape = g.shape(anchor.outputs[0]);
            match &anchor.op {
                Op::Softmax { axis } => {
                    spliced(g, plan, group, label, Vec::new(), 2, Some(ai), |sp| {
                        softmax_kernel(*axis, shape, opts, sp).map(|k| vec![k])
                    })
                }
                Op::LayerNorm { axis, epsilon } => {
                    let has_bias = anchor.inputs.len() == 3;
                    let sb = [Buf::In(0), Buf::In(if has_bias { 1 } else { 0 })];
                    let inputs = anchor.inputs[1..].to_vec();
                    spliced(g, plan, group, label, inputs, 4, Some(ai), |sp| {
                        layernorm_kernel(*axis, *epsilon, sb, has_bias, shape, opts, sp)
                            .map(|k| vec![k])
                    })
                }
                Op::Reduce { op, axes, .. } => {
                    spliced(g, plan, group, label, Vec::new(), 2, Some(ai), |sp| {
                        reduce_kernel(*op, g.dtype(x), g.shape(x).dims(), axes, opts, sp)
                            .map(|k| vec![k])
                    })
                }
                _ => unreachable!("checked above"),
            }
        }
        GroupKind::Attention => {
            let (ks, inputs, out) = crate::attention::attention(g, plan, group, opts)?;
            Ok(GroupKernels {
                lowered: Lowered::Kernels(ks),
                inputs,
                outputs: vec![out],
                label,
                inplace: None,
            })
        }
    }
}

/// A matmul group's kernels: the chosen variant, or where its epilogue takes it over the loop
/// budget, the first other candidate that stays under it.
fn matmul_group(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    label: String,
    inputs: Vec<ValueId>,
    p: &MatmulProblem,
    opts: &LowerOptions,
) -> Result<GroupKernels, Error> {
    let mut over = None;
    for v in variant_order(p, opts) {
        let r = spliced(
            g,
            plan,
            group,
            label.clone(),
            inputs.clone(),
            4,
            None,
            |sp| matmul_kernel_spliced(p, v, opts, sp),
        );
        match r {
            Err(e @ Error::LoopBudget(_)) => {
                over.get_or_insert(e);
            }
            r => return r,
        }
    }
    Err(over.unwrap_or_else(|| no_matmul_variant(p, opts.target.loop_budget)))
}

/// An anchor group's kernel: `build` makes it with the group's splice (`anchor_splice`, generated
/// once, when the builder knows where its params end); the group binds `inputs` (the anchor's
/// fixed operands) plus whatever the splice reads.
#[allow(clippy::too_many_arguments)]
fn spliced(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    label: String,
    inputs: Vec<ValueId>,
    first_slot: u32,
    anchor: Option<usize>,
    build: impl FnOnce(SpliceFn) -> Result<Vec<Kernel>, Error>,
) -> Result<GroupKernels, Error> {
    let bound = std::cell::RefCell::new(None);
    let ks = build(&|ev| {
        let mut ins = inputs.clone();
        let sp = anchor_splice(g, plan, group, &mut ins, ev, first_slot, anchor)?;
        *bound.borrow_mut() = Some(ins);
        Ok(sp)
    })?;
    let inputs = bound
        .into_inner()
        .ok_or_else(|| Error::Internal(format!("{label}: the kernel took no splice")))?;
    Ok(GroupKernels {
        lowered: Lowered::Kernels(ks),
        inputs,
        outputs: group.outputs.clone(),
        label,
        inplace: group.inplace,
    })
}

fn elementwise(
    g: &Graph,
    plan: &Plan,
    group: &Group,
    opts: &LowerOptions,
    label: String,
) -> Result<GroupKernels, Error> {
    let shape = g.shape(g.node(group.nodes[0]).outputs[0]).clone();
    let mut inputs = Vec::new();
    let mut r = Reads::new(g, plan, shape.clone(), &mut inputs, 0, Vec::new())?;
    r.inplace = group.inplace;
    let mut known = HashMap::new();
    let mut body = String::new();
    r.chain(&group.nodes, &mut known, "i", &mut body)?;
    let mut decls = String::new();
    let mut bindings: Vec<Buf> = {
        let mut b = r.bindings.clone();
        b.sort_by_key(|x| x.0);
        b.into_iter().map(|x| x.1).collect()
    };
    for (j, &o) in group.outputs.iter().enumerate() {
        let slot = bindings.len();
        let _ = writeln!(
            decls,
            "@group(0) @binding({slot}) var<storage, read_write> out{j}: array<{}>;",
            Elem::of(g.dtype(o)).wgsl()
        );
        let v = known
            .get(&o)
            .cloned()
            .ok_or_else(|| Error::Internal("a group output not computed by it".into()))?;
        let _ = writeln!(body, "    out{j}[i] = {v};");
        bindings.push(Buf::Out(j));
    }
    let _ = writeln!(
        decls,
        "@group(0) @binding({}) var<storage, read> params: array<u32>;",
        bindings.len()
    );
    let mut params = FUSED_ELEMENTWISE_PARAMS
        .fill()
        .set("n", shape.numel() as u32)
        .finish()?;
    let ev = params.len();
    params.extend(&r.block);
    let all = decls + &r.finish(ev);
    let vals = [
        ("decls", all),
        ("body", body.trim_end().to_string()),
        ("layout", FUSED_ELEMENTWISE_PARAMS.wgsl()),
    ];
    let name = "fused_elementwise";
    let k = kernel(
        name,
        FUSED_ELEMENTWISE,
        &vals,
        bindings,
        params,
        shape.numel(),
        r.trips,
        &opts.target,
    )?;
    Ok(GroupKernels {
        lowered: Lowered::Kernels(vec![k]),
        inputs,
        outputs: group.outputs.clone(),
        label,
        inplace: group.inplace,
    })
}
