//! EfficientNet-Lite0 (Google's EfficientNet-Lite: EfficientNet-B0's MBConv stages without
//! squeeze-and-excitation, ReLU6 instead of Swish, a fixed 32-wide stem and 1280-wide head),
//! with the key names of the efficientnet_pytorch project (`_conv_stem`, `_bn0`,
//! `_blocks.{i}._expand_conv`, `._depthwise_conv`, `._project_conv`, `._bn{0,1,2}`,
//! `_conv_head`, `_bn1`, `_fc`).
//!
//! The trained weights were converted from TensorFlow, and the model must compute as TensorFlow
//! did: "same" padding (asymmetric at stride 2: the extra row and column go after), batch-norm
//! eps 1e-3, ReLU6, and inputs scaled to [-1, 1].

use crate::error::{Result, ZooError};
use crate::nn;
use crate::params::{Init, Params};
use sfumato_core::op::{Conv2d, UnaryOp};
use sfumato_core::{DType, Graph, Op, ValueId};

/// One MBConv stage: expansion ratio, kernel, stride of its first block, output channels,
/// repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    pub expand: usize,
    pub kernel: usize,
    pub stride: usize,
    pub channels: usize,
    pub repeats: usize,
}

/// An EfficientNet-Lite configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct EfficientNetConfig {
    pub stem: usize,
    pub stages: Vec<Stage>,
    pub head: usize,
    pub num_classes: usize,
    pub image_size: usize,
    pub bn_eps: f32,
}

/// EfficientNet-Lite0: 224x224, 16 MBConv blocks, 4.69M numbers (weights and batch-norm statistics).
pub fn efficientnet_lite0() -> EfficientNetConfig {
    let s = |expand, kernel, stride, channels, repeats| Stage {
        expand,
        kernel,
        stride,
        channels,
        repeats,
    };
    EfficientNetConfig {
        stem: 32,
        stages: vec![
            s(1, 3, 1, 16, 1),
            s(6, 3, 2, 24, 2),
            s(6, 5, 2, 40, 2),
            s(6, 3, 2, 80, 3),
            s(6, 5, 1, 112, 3),
            s(6, 5, 2, 192, 4),
            s(6, 3, 1, 320, 1),
        ],
        head: 1280,
        num_classes: 1000,
        image_size: 224,
        bn_eps: 1e-3,
    }
}

/// TensorFlow's "same" padding of one axis: `[before, after]`, the odd pixel after.
fn same_pad(size: usize, k: usize, s: usize) -> [usize; 2] {
    let out = size.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(size);
    [total / 2, total - total / 2]
}

/// A bias-free conv with TF "same" padding on `x` (its spatial size read from the graph), then
/// batch norm, then ReLU6 where `act`.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    conv: &str,
    bn: &str,
    cout: usize,
    k: usize,
    stride: usize,
    depthwise: bool,
    act: bool,
    eps: f32,
) -> Result<ValueId> {
    let dims = g.shape(x).0.clone();
    let (cin, h, w) = (dims[1], dims[2], dims[3]);
    let [t, b] = same_pad(h, k, stride);
    let [l, r] = same_pad(w, k, stride);
    let attrs = Conv2d {
        stride: [stride, stride],
        padding: [t, l, b, r],
        groups: if depthwise { cin } else { 1 },
        ..Default::default()
    };
    let y = nn::conv(g, p, x, conv, cin, cout, k, attrs, false)?;
    let y = nn::batch_norm(g, p, y, bn, cout, eps)?;
    if act {
        Ok(g.unary(UnaryOp::Clip { min: 0.0, max: 6.0 }, y)?)
    } else {
        Ok(y)
    }
}

/// EfficientNet-Lite over `pixels` f32 `[batch, 3, size, size]` (scaled to [-1, 1]); output
/// `logits` f32 `[batch, num_classes]`.
pub fn efficientnet(cfg: &EfficientNetConfig, p: &mut Params, batch: usize) -> Result<Graph> {
    if batch == 0 || cfg.image_size < 32 {
        return Err(ZooError::Input(
            "efficientnet: batch must be at least 1 and the image at least 32 pixels".into(),
        ));
    }
    let eps = cfg.bn_eps;
    let mut g = Graph::new();
    let x = g.input(
        "pixels",
        DType::F32,
        [batch, 3, cfg.image_size, cfg.image_size],
    );
    let mut x = conv_bn(
        &mut g,
        p,
        x,
        "_conv_stem",
        "_bn0",
        cfg.stem,
        3,
        2,
        false,
        true,
        eps,
    )?;
    let mut cin = cfg.stem;
    let mut i = 0;
    for st in &cfg.stages {
        for r in 0..st.repeats {
            let stride = if r == 0 { st.stride } else { 1 };
            let blk = format!("_blocks.{i}");
            let mid = cin * st.expand;
            let mut h = x;
            if st.expand != 1 {
                h = conv_bn(
                    &mut g,
                    p,
                    h,
                    &format!("{blk}._expand_conv"),
                    &format!("{blk}._bn0"),
                    mid,
                    1,
                    1,
                    false,
                    true,
                    eps,
                )?;
            }
            h = conv_bn(
                &mut g,
                p,
                h,
                &format!("{blk}._depthwise_conv"),
                &format!("{blk}._bn1"),
                mid,
                st.kernel,
                stride,
                true,
                true,
                eps,
            )?;
            h = conv_bn(
                &mut g,
                p,
                h,
                &format!("{blk}._project_conv"),
                &format!("{blk}._bn2"),
                st.channels,
                1,
                1,
                false,
                false,
                eps,
            )?;
            if stride == 1 && cin == st.channels {
                h = g.add_(h, x)?;
            }
            x = h;
            cin = st.channels;
            i += 1;
        }
    }
    let x = conv_bn(
        &mut g,
        p,
        x,
        "_conv_head",
        "_bn1",
        cfg.head,
        1,
        1,
        false,
        true,
        eps,
    )?;
    let x = g.global_avg_pool(x)?;
    let x = g.reshape(x, &[batch as i64, cfg.head as i64])?;
    let w = p.linear_weight(&mut g, "_fc.weight", cfg.head, cfg.num_classes)?;
    let b = p.constant(&mut g, "_fc.bias", &[cfg.num_classes], Init::BIAS)?;
    let y = g.matmul(x, w)?;
    let logits = nn::named(
        &mut g,
        "logits",
        Op::Binary(sfumato_core::op::BinaryOp::Add),
        &[y, b],
    )?;
    g.set_outputs(&[logits])?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 -> 112 with a 3x3 at stride 2: one pixel of padding, after.
        assert_eq!(same_pad(224, 3, 2), [0, 1]);
        // 56 -> 28 with a 5x5 at stride 2: three pixels, one before and two after.
        assert_eq!(same_pad(56, 5, 2), [1, 2]);
        assert_eq!(same_pad(14, 5, 1), [2, 2]);
        assert_eq!(same_pad(7, 1, 1), [0, 0]);
    }

    #[test]
    fn lite0_has_16_blocks_and_4_7m_parameters() {
        let cfg = efficientnet_lite0();
        let mut p = Params::random("efficientnet-lite0", 1);
        let g = efficientnet(&cfg, &mut p, 1).unwrap();
        let params: usize = g
            .nodes()
            .iter()
            .filter_map(|n| match &n.op {
                Op::Constant(t) if !t.dims().is_empty() => Some(t.numel()),
                _ => None,
            })
            .sum();
        // 4,694,024 in the trained checkpoint (its tensors but the batch-norm counters).
        assert_eq!(params, 4_694_024);
        assert_eq!(g.shape(g.outputs()[0]).0, vec![1, 1000]);
    }
}
