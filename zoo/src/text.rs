//! Text in and out: Hugging Face tokenizers (the `tokenizers` crate) for BERT-family models from
//! their `tokenizer.json`, and GPT-2's byte-level BPE from its `encoder.json` and `vocab.bpe`.

use crate::error::{Result, ZooError};
use sfumato_core::Tensor;
use std::path::Path;
use tokenizers::Tokenizer;

/// A batch of encoded sentences, `[batch, seq]` each: the model's three integer inputs.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    /// Tokens in each row that are not padding.
    pub lengths: Vec<usize>,
}

impl Encoded {
    /// The three tensors in the order of a BERT graph's inputs.
    pub fn inputs(&self) -> Vec<Tensor> {
        vec![
            self.input_ids.clone(),
            self.attention_mask.clone(),
            self.token_type_ids.clone(),
        ]
    }

    /// Sequence length (with padding).
    pub fn seq(&self) -> usize {
        self.input_ids.dims()[1]
    }
}

fn tok_err(path: &Path, msg: impl std::fmt::Display) -> ZooError {
    ZooError::Tokenizer {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// A Hugging Face `tokenizer.json` (WordPiece for BERT), with the padding and truncation it
/// declares: all-MiniLM-L6-v2's pads every sentence to 128 tokens, so the attention mask is what
/// tells the model (and the pooling) where a sentence ends.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: std::path::PathBuf,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        Ok(TextTokenizer {
            inner,
            path: path.into(),
        })
    }

    /// Encode sentences (with [CLS] and [SEP]), or sentence pairs (question, context) when
    /// `pairs` is given. Rows are padded to one length: the tokenizer's own padding where it
    /// declares one, else the longest row.
    pub fn encode(&self, texts: &[String]) -> Result<Encoded> {
        self.encode_inputs(texts.iter().map(|t| t.as_str().into()).collect())
    }

    /// Encode (question, context) pairs for a span head: type id 0 for the question, 1 for the
    /// context.
    pub fn encode_pairs(&self, pairs: &[(String, String)]) -> Result<Encoded> {
        self.encode_inputs(
            pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()).into())
                .collect(),
        )
    }

    fn encode_inputs(&self, inputs: Vec<tokenizers::EncodeInput>) -> Result<Encoded> {
        if inputs.is_empty() {
            return Err(ZooError::Input("no text to encode".into()));
        }
        let encs = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| tok_err(&self.path, e))?;
        let seq = encs.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        if seq == 0 {
            return Err(ZooError::Input("the text encodes to no tokens".into()));
        }
        let b = encs.len();
        let (mut ids, mut mask, mut types) = (
            vec![0i64; b * seq],
            vec![0i64; b * seq],
            vec![0i64; b * seq],
        );
        let mut lengths = Vec::with_capacity(b);
        for (r, e) in encs.iter().enumerate() {
            let row = r * seq;
            for (j, ((&id, &m), &t)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                ids[row + j] = id as i64;
                mask[row + j] = m as i64;
                types[row + j] = t as i64;
            }
            lengths.push(e.get_attention_mask().iter().filter(|&&m| m == 1).count());
        }
        Ok(Encoded {
            input_ids: Tensor::from_i64([b, seq], ids)?,
            attention_mask: Tensor::from_i64([b, seq], mask)?,
            token_type_ids: Tensor::from_i64([b, seq], types)?,
            lengths,
        })
    }

    /// The tokens of one encoded row, for showing a span.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(&self.path, e))
    }

    /// The character offsets of each token of `context` in a (question, context) encoding, for
    /// mapping a predicted span back to the text: `(token index, (start, end))` for the tokens
    /// of the second sequence.
    pub fn context_offsets(
        &self,
        question: &str,
        context: &str,
    ) -> Result<Vec<(usize, (usize, usize))>> {
        let e = self
            .inner
            .encode((question, context), true)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(e.get_sequence_ids()
            .iter()
            .zip(e.get_offsets())
            .enumerate()
            .filter(|(_, (s, _))| **s == Some(1))
            .map(|(i, (_, &o))| (i, o))
            .collect())
    }
}

/// GPT-2's tokenizer: byte-level BPE over `encoder.json` (50,257 tokens) and `vocab.bpe` (the
/// merges), as OpenAI published them.
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    path: std::path::PathBuf,
}

impl Gpt2Tokenizer {
    /// From the folder holding `encoder.json` and `vocab.bpe` (`sfumato zoo fetch gpt2-vocab`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        use tokenizers::decoders::byte_level::ByteLevel;
        use tokenizers::models::bpe::BPE;
        let vocab = dir.join("encoder.json");
        let merges = dir.join("vocab.bpe");
        for f in [&vocab, &merges] {
            if !f.is_file() {
                return Err(tok_err(
                    f,
                    "not found (fetch it with `sfumato zoo fetch gpt2-vocab`)",
                ));
            }
        }
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| tok_err(&vocab, e))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::new(false, true, true)));
        Ok(Gpt2Tokenizer {
            inner,
            path: dir.into(),
        })
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(e.get_ids().to_vec())
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err(&self.path, e))
    }

    /// Vocabulary size (50,257 for GPT-2).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
