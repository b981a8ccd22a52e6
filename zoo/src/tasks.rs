//! Tasks end to end, on any [`Device`]: text in, numbers out. Each task loads its model's
//! weights, builds the graph, runs it and post-processes the outputs; the CLI is a thin layer
//! over these functions.

use crate::bert::{self, BertConfig, BertHead};
use crate::error::{Result, ZooError};
use crate::gpt2::{self, Generated, Gpt2Config};
use crate::params::Params;
use crate::text::{Gpt2Tokenizer, TextTokenizer};
use sfumato_core::Device;
use std::path::Path;

/// Sentence embeddings from a sentence-transformers BERT folder (`config.json`,
/// `model.safetensors`, `tokenizer.json`, as `sfumato zoo fetch all-minilm-l6-v2` leaves it):
/// one L2-normalised row per sentence, in order.
pub fn embed(device: &mut dyn Device, dir: &Path, sentences: &[String]) -> Result<Vec<Vec<f32>>> {
    if sentences.is_empty() {
        return Err(ZooError::Input("embed: give at least one sentence".into()));
    }
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ZooError::io(&cfg_path, e))?;
    let cfg = BertConfig::from_json(&text, &cfg_path.display().to_string())?;
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let enc = tok.encode(sentences)?;
    let mut params =
        Params::from_safetensors("bert (sentence embedding)", &dir.join("model.safetensors"))?;
    let graph = bert::bert(
        &cfg,
        &mut params,
        sentences.len(),
        enc.seq(),
        BertHead::SentenceEmbedding,
    )?;
    params.finish()?;
    let out = device.run(&graph, &enc.inputs())?;
    let e = out
        .outputs
        .first()
        .ok_or_else(|| ZooError::Input("the model returned no output".into()))?;
    let h = cfg.hidden_size;
    Ok(e.to_f32_vec().chunks(h).map(|r| r.to_vec()).collect())
}

/// What [`generate_text`] produced.
#[derive(Clone, Debug)]
pub struct TextGeneration {
    /// The prompt's tokens.
    pub prompt_tokens: Vec<u32>,
    /// The new tokens, their logits and the steps' times.
    pub generated: Generated,
    /// The new tokens as text.
    pub text: String,
}

/// Greedy text generation with GPT-2: `prompt` tokenized with `tokenizer`, `max_new` tokens
/// from [`gpt2::generate`] (a KV-cache step graph on `device`), each token's text handed to
/// `on_text` as soon as it is complete (a character split over byte-level tokens waits for its
/// last byte). Weights come from `params`, checked with [`Params::finish`] before the first
/// step.
pub fn generate_text(
    device: &mut dyn Device,
    cfg: &Gpt2Config,
    mut params: Params,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    max_new: usize,
    mut on_text: impl FnMut(&str),
) -> Result<TextGeneration> {
    let prompt_tokens = tokenizer.encode(prompt)?;
    if prompt_tokens.is_empty() {
        return Err(ZooError::Input(
            "generate: the prompt encodes to no tokens".into(),
        ));
    }
    gpt2::check_prompt(cfg, &prompt_tokens, max_new)?;
    // Build the step graph and check the weights before the first step, so a wrong file fails
    // before any work.
    let cache_len = gpt2::cache_len_for(prompt_tokens.len() + max_new);
    let mut gen = gpt2::Generator::new(cfg, &mut params, cache_len)?;
    params.finish()?;
    let mut tokens = Vec::new();
    let mut shown = 0;
    let mut failed = None;
    let generated = gpt2::generate_with(device, &mut gen, &prompt_tokens, max_new, |t| {
        tokens.push(t);
        match tokenizer.decode(&tokens) {
            // A character whose bytes span tokens decodes to U+FFFD until its last byte comes.
            Ok(text) if !text.ends_with('\u{fffd}') => {
                if let Some(new) = text.get(shown..) {
                    on_text(new);
                }
                shown = text.len();
            }
            Ok(_) => {}
            Err(e) => failed = failed.take().or(Some(e)),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let text = tokenizer.decode(&generated.tokens)?;
    if let Some(rest) = text.get(shown..).filter(|r| !r.is_empty()) {
        on_text(rest);
    }
    Ok(TextGeneration {
        prompt_tokens,
        generated,
        text,
    })
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}
