//! ViT (Hugging Face `ViTForImageClassification`) for image classification: patches by a
//! strided convolution, a CLS token and learned position embeddings, pre-LN encoder blocks with
//! exact GELU, a final LayerNorm, and a linear classifier on the CLS row.
//!
//! Weights use Hugging Face's names: `vit.embeddings.{cls_token, position_embeddings,
//! patch_embeddings.projection}`, `vit.encoder.layer.{i}.{attention.attention.{query,key,value},
//! attention.output.dense, intermediate.dense, output.dense, layernorm_before,
//! layernorm_after}`, `vit.layernorm`, `classifier`; PyTorch `Linear` weights are `[out, in]` and
//! are transposed once at load. A `vit.pooler.*` (from `ViTModel` checkpoints) is ignored.
//!
//! Attention is built in the op structure PyTorch exports to ONNX ([`nn::Heads`]), which the
//! fusion planner recognises.
//!
//! Input: `pixels` f32 `[batch, num_channels, image_size, image_size]`. Outputs: `logits` f32
//! `[batch, num_labels]`, then with [`ViTOutputs::LogitsAndHidden`] `last_hidden_state` f32
//! `[batch, 1 + patches, hidden_size]` (after the final LayerNorm, as `ViTModel` returns it).

use crate::error::{parse_json_config, ConfigCheck, Result, ZooError};
use crate::nn::{self, Heads};
use crate::params::{Init, Params};
use serde::Deserialize;
use sfumato_core::op::{BinaryOp, Conv2d, UnaryOp};
use sfumato_core::{DType, Graph, Op, Tensor};
use std::collections::BTreeMap;

/// A ViT configuration, with Hugging Face's `config.json` keys (others in that file are
/// ignored). Without `num_labels` the label count is `id2label`'s length, else 2 (Hugging
/// Face's default).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "RawViTConfig")]
pub struct ViTConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f32,
    pub num_labels: usize,
    pub hidden_act: String,
    /// Whether query, key and value have biases (Hugging Face's `qkv_bias`, true by default).
    pub qkv_bias: bool,
}

#[derive(Deserialize)]
struct RawViTConfig {
    #[serde(default = "d224")]
    image_size: usize,
    #[serde(default = "d16")]
    patch_size: usize,
    #[serde(default = "d3")]
    num_channels: usize,
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    #[serde(default = "d12")]
    num_attention_heads: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "eps12")]
    layer_norm_eps: f32,
    num_labels: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "yes")]
    qkv_bias: bool,
}

impl From<RawViTConfig> for ViTConfig {
    fn from(r: RawViTConfig) -> Self {
        ViTConfig {
            image_size: r.image_size,
            patch_size: r.patch_size,
            num_channels: r.num_channels,
            hidden_size: r.hidden_size,
            num_hidden_layers: r.num_hidden_layers,
            num_attention_heads: r.num_attention_heads,
            intermediate_size: r.intermediate_size,
            layer_norm_eps: r.layer_norm_eps,
            num_labels: r.num_labels.or(r.id2label.map(|m| m.len())).unwrap_or(2),
            hidden_act: r.hidden_act,
            qkv_bias: r.qkv_bias,
        }
    }
}

fn d3() -> usize {
    3
}
fn d12() -> usize {
    12
}
fn d16() -> usize {
    16
}
fn d224() -> usize {
    224
}
fn d768() -> usize {
    768
}
fn d3072() -> usize {
    3072
}
fn eps12() -> f32 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}
fn yes() -> bool {
    true
}

/// ViT-B/16 (`google/vit-base-patch16-224`): 224x224, 16x16 patches, hidden 768, 12 layers of
/// 12 heads, FFN 3072, 1000 labels.
pub fn vit_b16() -> ViTConfig {
    ViTConfig {
        image_size: 224,
        patch_size: 16,
        num_channels: 3,
        hidden_size: 768,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        intermediate_size: 3072,
        layer_norm_eps: 1e-12,
        num_labels: 1000,
        hidden_act: "gelu".into(),
        qkv_bias: true,
    }
}

impl ViTConfig {
    /// A config from Hugging Face's `config.json` text (`path` names it in errors).
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        parse_json_config(text, path, ViTConfig::validate)
    }

    /// Sizes that fit together: no zero, patches tile the image, heads divide the hidden size,
    /// an activation ViT uses.
    pub fn validate(&self, path: &str) -> Result<()> {
        let check = ConfigCheck(path);
        let bad = |msg: String| check.fail(msg);
        check.positive(&[
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_labels", self.num_labels),
        ])?;
        check.divides(
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
        )?;
        check.divides(
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
        )?;
        if self.activation().is_none() {
            return bad(format!(
                "hidden_act '{}' is not one of gelu, gelu_new, relu",
                self.hidden_act
            ));
        }
        Ok(())
    }

    fn activation(&self) -> Option<UnaryOp> {
        match self.hidden_act.as_str() {
            "gelu" => Some(UnaryOp::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(UnaryOp::GeluTanh),
            "relu" => Some(UnaryOp::Relu),
            _ => None,
        }
    }

    /// Patches per image (the sequence is one longer: the CLS token).
    pub fn patches(&self) -> usize {
        let side = self.image_size / self.patch_size.max(1);
        side * side
    }

    /// FLOPs of one forward over `batch` images: two per multiply-add of the patch convolution,
    /// every linear layer, the attention products and the classifier.
    pub fn flops(&self, batch: usize) -> f64 {
        let (h, f, s) = (
            self.hidden_size as f64,
            self.intermediate_size as f64,
            (self.patches() + 1) as f64,
        );
        let patch = self.patches() as f64
            * h
            * (self.num_channels * self.patch_size * self.patch_size) as f64;
        let per_layer = s * (4.0 * h * h + 2.0 * h * f) + 2.0 * s * s * h;
        let head = h * self.num_labels as f64;
        2.0 * batch as f64 * (patch + self.num_hidden_layers as f64 * per_layer + head)
    }
}

/// Which outputs the graph has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViTOutputs {
    /// `logits` alone.
    Logits,
    /// `logits`, then `last_hidden_state`.
    LogitsAndHidden,
}

/// A ViT classifier over `batch` images, its weights from `p` (call [`Params::finish`] after
/// to learn of every missing, unexpected or mis-shaped tensor at once).
pub fn vit(cfg: &ViTConfig, p: &mut Params, batch: usize, outputs: ViTOutputs) -> Result<Graph> {
    cfg.validate("ViTConfig")?;
    if batch == 0 {
        return Err(ZooError::Input("vit: batch must be at least 1".into()));
    }
    p.ignore("vit.pooler.");
    let (b, h, ps) = (batch, cfg.hidden_size, cfg.patch_size);
    let n = cfg.patches();
    let s = n + 1;
    let eps = cfg.layer_norm_eps;
    let act = cfg.activation().unwrap_or(UnaryOp::Gelu);
    let mut g = Graph::new();
    let pixels = g.input(
        "pixels",
        DType::F32,
        [b, cfg.num_channels, cfg.image_size, cfg.image_size],
    );

    // Patch embeddings: conv P x P stride P, [b, h, side, side] -> [b, n, h] (row-major
    // patches); the CLS row first, then the position embeddings.
    let e = "vit.embeddings";
    let x = nn::conv(
        &mut g,
        p,
        pixels,
        &format!("{e}.patch_embeddings.projection"),
        cfg.num_channels,
        h,
        ps,
        Conv2d::padded(0, ps),
        true,
    )?;
    let x = g.reshape(x, &[b as i64, h as i64, n as i64])?;
    let x = g.transpose(x, &[0, 2, 1])?;
    let cls = p.tensor(&format!("{e}.cls_token"), &[1, 1, h], Init::EMBED);
    let cls = g.constant(Tensor::from_f32([b, 1, h], cls.to_f32_vec().repeat(b))?)?;
    let x = g.concat(&[cls, x], 1)?;
    let pos = p.constant(
        &mut g,
        &format!("{e}.position_embeddings"),
        &[1, s, h],
        Init::EMBED,
    )?;
    let mut x = g.add_(x, pos)?;

    let heads = Heads {
        batch: b,
        seq: s,
        heads: cfg.num_attention_heads,
        head_dim: h / cfg.num_attention_heads,
    };
    for i in 0..cfg.num_hidden_layers {
        let l = format!("vit.encoder.layer.{i}");
        let y = nn::layer_norm(&mut g, p, x, &format!("{l}.layernorm_before"), h, eps)?;
        let qkv = |g: &mut Graph, p: &mut Params, which: &str| {
            let name = format!("{l}.attention.attention.{which}");
            if cfg.qkv_bias {
                nn::linear(g, p, y, &name, h, h)
            } else {
                let w = p.linear_weight(g, &format!("{name}.weight"), h, h)?;
                g.matmul(y, w)
            }
        };
        let q = qkv(&mut g, p, "query")?;
        let k = qkv(&mut g, p, "key")?;
        let v = qkv(&mut g, p, "value")?;
        let q = heads.split(&mut g, q, &[0, 2, 1, 3])?;
        let kt = heads.split(&mut g, k, &[0, 2, 3, 1])?;
        let v = heads.split(&mut g, v, &[0, 2, 1, 3])?;
        let ctx = heads.attend(&mut g, q, kt, v, None)?;
        let ctx = heads.merge(&mut g, ctx)?;
        let a = nn::linear(&mut g, p, ctx, &format!("{l}.attention.output.dense"), h, h)?;
        let x1 = g.add_(a, x)?;
        let y = nn::layer_norm(&mut g, p, x1, &format!("{l}.layernorm_after"), h, eps)?;
        let f = nn::linear(
            &mut g,
            p,
            y,
            &format!("{l}.intermediate.dense"),
            h,
            cfg.intermediate_size,
        )?;
        let f = g.unary(act, f)?;
        let f = nn::linear(
            &mut g,
            p,
            f,
            &format!("{l}.output.dense"),
            cfg.intermediate_size,
            h,
        )?;
        x = g.add_(f, x1)?;
    }
    let hidden = nn::layer_norm_as(&mut g, p, x, "vit.layernorm", h, eps, "last_hidden_state")?;

    // The classifier reads the CLS row.
    let cls = g.slice(hidden, &[1], &[0], &[1], &[1])?;
    let cls = g.reshape(cls, &[b as i64, h as i64])?;
    let w = p.linear_weight(&mut g, "classifier.weight", h, cfg.num_labels)?;
    let bias = p.constant(&mut g, "classifier.bias", &[cfg.num_labels], Init::BIAS)?;
    let y = g.matmul(cls, w)?;
    let logits = nn::named(&mut g, "logits", Op::Binary(BinaryOp::Add), &[y, bias])?;
    match outputs {
        ViTOutputs::Logits => g.set_outputs(&[logits])?,
        ViTOutputs::LogitsAndHidden => g.set_outputs(&[logits, hidden])?,
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_config_json_reads_with_defaults() {
        let text = r#"{"architectures": ["ViTForImageClassification"], "hidden_size": 768,
            "image_size": 224, "patch_size": 16, "num_attention_heads": 12,
            "num_hidden_layers": 12, "intermediate_size": 3072, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "id2label": {"0": "tench", "1": "goldfish"}}"#;
        let c = ViTConfig::from_json(text, "config.json").unwrap();
        assert_eq!(
            c,
            ViTConfig {
                num_labels: 2,
                ..vit_b16()
            }
        );
        assert_eq!(c.patches(), 196);
        let bad = text.replace("\"patch_size\": 16", "\"patch_size\": 15");
        let e = ViTConfig::from_json(&bad, "config.json").unwrap_err();
        assert!(e.to_string().contains("patch_size 15"), "{e}");
        let act = text.replace("\"gelu\"", "\"swish\"");
        assert!(ViTConfig::from_json(&act, "config.json").is_err());
    }

    #[test]
    fn vit_b16_flops_are_torchvisions() {
        // torchvision's published "GFLOPS" for vit_b_16 (multiply-adds): 17.56.
        let gmacs = vit_b16().flops(1) / 2e9;
        assert!((gmacs - 17.56).abs() < 0.02, "{gmacs}");
    }
}
