//! BERT (post-LN encoder) from a Hugging Face config, with three heads: the encoder's last
//! hidden state, the sentence-transformers sentence embedding (mean pooling under the attention
//! mask, then L2 normalisation) and the SQuAD span head (start and end logits).
//!
//! Weights use Hugging Face's names: `embeddings.*`, `encoder.layer.{i}.*` (with a `bert.`
//! prefix in task checkpoints such as `BertForQuestionAnswering`), `qa_outputs.*`; PyTorch
//! `Linear` weights are `[out, in]` and are transposed once at load.
//!
//! Inputs: `input_ids`, `attention_mask` and `token_type_ids`, i64 `[batch, seq]`.

use crate::error::{parse_json_config, ConfigCheck, Result, ZooError};
use crate::nn::{self, Heads};
use crate::params::{Init, Params};
use serde::Deserialize;
use sfumato_core::op::{BinaryOp, ReduceOp, UnaryOp};
use sfumato_core::{DType, Graph, Op, Tensor};

/// A BERT configuration, with Hugging Face's `config.json` keys (others in that file are
/// ignored).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "eps12")]
    pub layer_norm_eps: f32,
    #[serde(default = "gelu")]
    pub hidden_act: String,
}

fn two() -> usize {
    2
}
fn eps12() -> f32 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

impl BertConfig {
    /// BERT-base (uncased): 12 layers, hidden 768, 12 heads, FFN 3072.
    pub fn base() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
        }
    }

    /// BERT-large: 24 layers, hidden 1024, 16 heads, FFN 4096.
    pub fn large() -> Self {
        BertConfig {
            num_hidden_layers: 24,
            hidden_size: 1024,
            num_attention_heads: 16,
            intermediate_size: 4096,
            ..Self::base()
        }
    }

    /// all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536.
    pub fn minilm_l6() -> Self {
        BertConfig {
            num_hidden_layers: 6,
            hidden_size: 384,
            intermediate_size: 1536,
            ..Self::base()
        }
    }

    /// A config from Hugging Face's `config.json` text (`path` names it in errors).
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        parse_json_config(text, path, BertConfig::validate)
    }

    /// Sizes that fit together: heads divide the hidden size, nothing is zero, the activation is
    /// one BERT uses.
    pub fn validate(&self, path: &str) -> Result<()> {
        let check = ConfigCheck(path);
        let bad = |msg: String| check.fail(msg);
        check.positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
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

    /// Approximate FLOPs of one forward over `batch` sequences of `seq` tokens (matrix
    /// products only, two per multiply-add).
    pub fn flops(&self, batch: usize, seq: usize) -> f64 {
        let (h, f, s) = (
            self.hidden_size as f64,
            self.intermediate_size as f64,
            seq as f64,
        );
        let per_layer = 2.0 * s * (4.0 * h * h + 2.0 * h * f) + 4.0 * s * s * h;
        self.num_hidden_layers as f64 * batch as f64 * per_layer
    }
}

/// What the model ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BertHead {
    /// `last_hidden_state` f32 `[batch, seq, hidden]`.
    Encoder,
    /// `sentence_embedding` f32 `[batch, hidden]`: mean over the unmasked positions, then
    /// divided by its L2 norm (sentence-transformers' Pooling + Normalize).
    SentenceEmbedding,
    /// `start_logits` and `end_logits` f32 `[batch, seq]` (`qa_outputs`, a Linear hidden -> 2).
    Squad,
}

/// BERT over `batch` x `seq` tokens, ending in `head`. Weights come from `p`; a checkpoint's
/// `bert.` prefix (task models) is found by itself.
pub fn bert(
    cfg: &BertConfig,
    p: &mut Params,
    batch: usize,
    seq: usize,
    head: BertHead,
) -> Result<Graph> {
    cfg.validate("BertConfig")?;
    if batch == 0 || seq == 0 {
        return Err(ZooError::Input(
            "bert: batch and seq must be at least 1".into(),
        ));
    }
    if seq > cfg.max_position_embeddings {
        return Err(ZooError::Input(format!(
            "bert: {seq} tokens is longer than the model's {} positions",
            cfg.max_position_embeddings
        )));
    }
    let pre = if p.contains("bert.embeddings.word_embeddings.weight")
        || (!p.has_weights() && head == BertHead::Squad)
    {
        "bert."
    } else {
        ""
    };
    p.ignore(&format!("{pre}embeddings.position_ids"));
    p.ignore(&format!("{pre}pooler."));
    let (h, b, s) = (cfg.hidden_size, batch, seq);
    let act = cfg.activation().unwrap_or(UnaryOp::Gelu);
    let eps = cfg.layer_norm_eps;
    let mut g = Graph::new();
    let ids = g.input("input_ids", DType::I64, [b, s]);
    let mask = g.input("attention_mask", DType::I64, [b, s]);
    let types = g.input("token_type_ids", DType::I64, [b, s]);

    // Embeddings: word + position + token type, then LayerNorm.
    let e = format!("{pre}embeddings");
    let word = p.constant(
        &mut g,
        &format!("{e}.word_embeddings.weight"),
        &[cfg.vocab_size, h],
        Init::EMBED,
    )?;
    let pos_table = p.tensor(
        &format!("{e}.position_embeddings.weight"),
        &[cfg.max_position_embeddings, h],
        Init::EMBED,
    );
    let pos_rows = Tensor::from_f32([s, h], pos_table.to_f32_vec()[..s * h].to_vec())?;
    let pos = g.constant(pos_rows)?;
    let type_table = p.constant(
        &mut g,
        &format!("{e}.token_type_embeddings.weight"),
        &[cfg.type_vocab_size, h],
        Init::EMBED,
    )?;
    let x = g.gather(word, ids, 0)?;
    let x = g.add_(x, pos)?;
    let t = g.gather(type_table, types, 0)?;
    let x = g.add_(x, t)?;
    let mut x = nn::layer_norm(&mut g, p, x, &format!("{e}.LayerNorm"), h, eps)?;

    // The additive mask: 0 where attended, f32::MIN at padding, [b, 1, 1, s].
    let maskf = g.cast(mask, DType::F32)?;
    let one = nn::scalar(&mut g, 1.0)?;
    let inv = nn::sub(&mut g, one, maskf)?;
    let big = nn::scalar(&mut g, f32::MIN)?;
    let add_mask = g.mul(inv, big)?;
    let add_mask = g.reshape(add_mask, &[b as i64, 1, 1, s as i64])?;

    let heads = Heads {
        batch: b,
        seq: s,
        heads: cfg.num_attention_heads,
        head_dim: h / cfg.num_attention_heads,
    };
    for i in 0..cfg.num_hidden_layers {
        let l = format!("{pre}encoder.layer.{i}");
        let q = nn::linear(&mut g, p, x, &format!("{l}.attention.self.query"), h, h)?;
        let k = nn::linear(&mut g, p, x, &format!("{l}.attention.self.key"), h, h)?;
        let v = nn::linear(&mut g, p, x, &format!("{l}.attention.self.value"), h, h)?;
        let q = heads.split(&mut g, q, &[0, 2, 1, 3])?;
        let kt = heads.split(&mut g, k, &[0, 2, 3, 1])?;
        let v = heads.split(&mut g, v, &[0, 2, 1, 3])?;
        let ctx = heads.attend(&mut g, q, kt, v, Some(add_mask))?;
        let ctx = heads.merge(&mut g, ctx)?;
        let a = nn::linear(&mut g, p, ctx, &format!("{l}.attention.output.dense"), h, h)?;
        let a = g.add_(a, x)?;
        let a = nn::layer_norm(
            &mut g,
            p,
            a,
            &format!("{l}.attention.output.LayerNorm"),
            h,
            eps,
        )?;
        let f = nn::linear(
            &mut g,
            p,
            a,
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
        let y = g.add_(f, a)?;
        let ln = format!("{l}.output.LayerNorm");
        x = if i + 1 == cfg.num_hidden_layers && head == BertHead::Encoder {
            nn::layer_norm_as(&mut g, p, y, &ln, h, eps, "last_hidden_state")?
        } else {
            nn::layer_norm(&mut g, p, y, &ln, h, eps)?
        };
    }

    match head {
        BertHead::Encoder => {
            g.set_outputs(&[x])?;
        }
        BertHead::SentenceEmbedding => {
            let m = g.reshape(maskf, &[b as i64, s as i64, 1])?;
            let masked = g.mul(x, m)?;
            let sum = g.reduce(ReduceOp::Sum, masked, &[1], false)?;
            let count = g.reduce(ReduceOp::Sum, m, &[1], false)?;
            let floor = nn::scalar(&mut g, 1e-9)?;
            let count = g.binary(BinaryOp::Max, count, floor)?;
            let mean = nn::div(&mut g, sum, count)?;
            let sq = g.mul(mean, mean)?;
            let ss = g.reduce(ReduceOp::Sum, sq, &[1], true)?;
            let norm = g.unary(UnaryOp::Sqrt, ss)?;
            let floor = nn::scalar(&mut g, 1e-12)?;
            let norm = g.binary(BinaryOp::Max, norm, floor)?;
            let out = nn::named(
                &mut g,
                "sentence_embedding",
                Op::Binary(BinaryOp::Div),
                &[mean, norm],
            )?;
            g.set_outputs(&[out])?;
        }
        BertHead::Squad => {
            let logits = nn::linear(&mut g, p, x, "qa_outputs", h, 2)?;
            let parts = g.split(logits, -1, &[1, 1])?;
            let start = nn::named(
                &mut g,
                "start_logits",
                Op::Reshape { shape: vec![b, s] },
                &[parts[0]],
            )?;
            let end = nn::named(
                &mut g,
                "end_logits",
                Op::Reshape { shape: vec![b, s] },
                &[parts[1]],
            )?;
            g.set_outputs(&[start, end])?;
        }
    }
    Ok(g)
}

/// Random `input_ids`, an `attention_mask` that pads the end of every other row, and zero
/// `token_type_ids`, for benchmarks.
pub fn random_inputs(cfg: &BertConfig, batch: usize, seq: usize) -> Result<Vec<Tensor>> {
    let ids: Vec<i64> = Tensor::random(DType::F64, [batch, seq], 11)
        .to_f64_vec()
        .into_iter()
        .map(|u| (((u + 1.0) / 2.0) * (cfg.vocab_size - 1) as f64) as i64)
        .collect();
    let mut mask = vec![1i64; batch * seq];
    for (r, row) in mask.chunks_mut(seq).enumerate() {
        if r % 2 == 1 {
            let pad = (seq / 4).min(seq - 1);
            row[seq - pad..].fill(0);
        }
    }
    Ok(vec![
        Tensor::from_i64([batch, seq], ids)?,
        Tensor::from_i64([batch, seq], mask)?,
        Tensor::zeros(DType::I64, [batch, seq]),
    ])
}
