//! Layers the model families share, built with the graph builder from a [`Params`] source, in
//! the op structure PyTorch exports to ONNX (a linear layer is `MatMul` then `Add`, heads are
//! split by `Reshape` then `Transpose`, the attention scale is a `Mul` by a scalar), because the
//! fusion planner pattern-matches that structure.

use crate::params::{Init, Params};
use sfumato_core::op::{BinaryOp, Conv2d, UnaryOp};
use sfumato_core::{Graph, Op, Result, Tensor, ValueId};

/// `x @ W + b` for a PyTorch `Linear` stored as `{name}.weight` `[out, in]` and `{name}.bias`.
pub fn linear(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    fan_in: usize,
    fan_out: usize,
) -> Result<ValueId> {
    let w = p.linear_weight(g, &format!("{name}.weight"), fan_in, fan_out)?;
    let b = p.constant(g, &format!("{name}.bias"), &[fan_out], Init::BIAS)?;
    let y = g.matmul(x, w)?;
    g.add_(y, b)
}

/// `x @ W + b` for a GPT-2 `Conv1D`, whose weight is stored `[in, out]` already.
pub fn conv1d(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    fan_in: usize,
    fan_out: usize,
) -> Result<ValueId> {
    let w = p.constant(
        g,
        &format!("{name}.weight"),
        &[fan_in, fan_out],
        Init::FanIn(fan_in),
    )?;
    let b = p.constant(g, &format!("{name}.bias"), &[fan_out], Init::BIAS)?;
    let y = g.matmul(x, w)?;
    g.add_(y, b)
}

/// A layer norm over the last axis, `{name}.weight` and `{name}.bias`.
pub fn layer_norm(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    dim: usize,
    eps: f32,
) -> Result<ValueId> {
    let gamma = p.constant(g, &format!("{name}.weight"), &[dim], Init::SCALE)?;
    let beta = p.constant(g, &format!("{name}.bias"), &[dim], Init::BIAS)?;
    g.layer_norm(x, gamma, Some(beta), -1, eps)
}

/// [`layer_norm`] whose node is named `out` (a model's output).
pub fn layer_norm_as(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    dim: usize,
    eps: f32,
    out: &str,
) -> Result<ValueId> {
    let gamma = p.constant(g, &format!("{name}.weight"), &[dim], Init::SCALE)?;
    let beta = p.constant(g, &format!("{name}.bias"), &[dim], Init::BIAS)?;
    let axis = g.shape(x).rank().saturating_sub(1);
    named(
        g,
        out,
        Op::LayerNorm { axis, epsilon: eps },
        &[x, gamma, beta],
    )
}

/// Inference batch norm from `{name}.weight`, `.bias`, `.running_mean`, `.running_var`
/// (`.num_batches_tracked` is ignored; the running statistics are buffers, not parameters).
pub fn batch_norm(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    c: usize,
    eps: f32,
) -> Result<ValueId> {
    let gamma = p.constant(g, &format!("{name}.weight"), &[c], Init::SCALE)?;
    let beta = p.constant(g, &format!("{name}.bias"), &[c], Init::BIAS)?;
    let (mean_name, var_name) = (
        format!("{name}.running_mean"),
        format!("{name}.running_var"),
    );
    let mean = p.constant(g, &mean_name, &[c], Init::BIAS)?;
    let var = p.constant(g, &var_name, &[c], Init::VAR)?;
    p.buffer(&mean_name);
    p.buffer(&var_name);
    p.ignore(&format!("{name}.num_batches_tracked"));
    g.batch_norm(x, gamma, beta, mean, var, eps)
}

/// A convolution `{name}.weight` `[cout, cin/groups, k, k]` (and `{name}.bias` with `bias`).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    cin: usize,
    cout: usize,
    k: usize,
    attrs: Conv2d,
    bias: bool,
) -> Result<ValueId> {
    let per_group = cin / attrs.groups.max(1);
    let w = p.constant(
        g,
        &format!("{name}.weight"),
        &[cout, per_group, k, k],
        Init::FanIn(per_group * k * k),
    )?;
    let b = if bias {
        Some(p.constant(g, &format!("{name}.bias"), &[cout], Init::BIAS)?)
    } else {
        None
    };
    g.conv2d(x, w, b, attrs)
}

/// Multi-head attention's shapes.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Split `[b, s, h * d]` into heads: Reshape `[b, s, h, d]`, then Transpose by `perm`
    /// (`[0, 2, 1, 3]` for q and v, `[0, 2, 3, 1]` for k transposed).
    pub fn split(&self, g: &mut Graph, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        let x = g.reshape(
            x,
            &[
                self.batch as i64,
                self.seq as i64,
                self.heads as i64,
                self.head_dim as i64,
            ],
        )?;
        g.transpose(x, perm)
    }

    /// Merge heads back: `[b, h, s, d]` -> Transpose `[0, 2, 1, 3]` -> Reshape `[b, s, h * d]`.
    pub fn merge(&self, g: &mut Graph, x: ValueId) -> Result<ValueId> {
        let x = g.transpose(x, &[0, 2, 1, 3])?;
        g.reshape(
            x,
            &[
                self.batch as i64,
                self.seq as i64,
                (self.heads * self.head_dim) as i64,
            ],
        )
    }

    /// `softmax(q @ kT / √d [+ mask]) @ v`.
    pub fn attend(
        &self,
        g: &mut Graph,
        q: ValueId,
        kt: ValueId,
        v: ValueId,
        mask: Option<ValueId>,
    ) -> Result<ValueId> {
        let scores = g.matmul(q, kt)?;
        let scale = g.constant(Tensor::scalar_f32(1.0 / (self.head_dim as f32).sqrt()))?;
        let mut scores = g.mul(scores, scale)?;
        if let Some(m) = mask {
            scores = g.add_(scores, m)?;
        }
        let probs = g.softmax(scores, -1)?;
        g.matmul(probs, v)
    }
}

/// A scalar f32 constant.
pub fn scalar(g: &mut Graph, v: f32) -> Result<ValueId> {
    g.constant(Tensor::scalar_f32(v))
}

/// Add a node with an explicit name (a model's outputs get readable names).
pub fn named(g: &mut Graph, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
    Ok(g.add_named(name, op, inputs)?[0])
}

/// `x * sigmoid(x)`.
pub fn silu(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    g.unary(UnaryOp::Silu, x)
}

/// `a - b`.
pub fn sub(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId> {
    g.binary(BinaryOp::Sub, a, b)
}

/// `a / b`.
pub fn div(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId> {
    g.binary(BinaryOp::Div, a, b)
}
