//! Tasks end to end, on any [`Device`]: text in, numbers out. Each task loads its model's
//! weights, builds the graph, runs it and post-processes the outputs; the CLI is a thin layer
//! over these functions.

use crate::bert::{self, BertConfig, BertHead};
use crate::error::{Result, ZooError};
use crate::params::Params;
use crate::text::TextTokenizer;
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
