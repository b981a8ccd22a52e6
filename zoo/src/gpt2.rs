//! GPT-2 (`GPT2LMHeadModel`) from a Hugging Face config: a full-sequence forward (logits at
//! every position) and a decode step with a KV cache, driven by a greedy [`Generator`] that
//! streams each token as it comes.
//!
//! Weights use Hugging Face's names, with or without the `transformer.` prefix (the hub's
//! `gpt2` checkpoint has none, a `GPT2LMHeadModel` state dict has it): `wte`, `wpe`,
//! `h.{i}.ln_1`, `h.{i}.attn.c_attn`, `h.{i}.attn.c_proj`, `h.{i}.ln_2`, `h.{i}.mlp.c_fc`,
//! `h.{i}.mlp.c_proj`, `ln_f`. GPT-2's `Conv1D` weights are stored `[in, out]` and are used as
//! they are. The LM head is tied to `wte`: a stored `lm_head.weight` equal to it is ignored (an
//! unequal one is used as an untied head), and so are the `attn.bias` / `attn.masked_bias`
//! causal-mask buffers of older checkpoints.
//!
//! The embedding table is over WebGPU's 128 MiB storage-binding limit (GPT-2 small's 50,257 x
//! 768 f32 is 154 MB, medium's 206 MB) and is read by both the token Gather and the LM-head
//! MatMul; the compile pipeline splits both into blocks that fit
//! ([`sfumato_core::legalize`]), so the graphs here use the table whole.
//!
//! **The decode step** ([`gpt2_step`]) is one graph, with the same shapes at every step, so a
//! device compiles it once and reuses its pipelines and buffers:
//! - inputs `input_ids` and `position_ids` i64 `[B, 1]`; `attention_mask` f32 `[B, 1, 1, T+1]`,
//!   additive (0 where attended, `f32::MIN` elsewhere) over the `T` cache slots and the new
//!   token (last); then `past.{i}.key` and `past.{i}.value` f32 `[B, heads, T, head_dim]` for
//!   each layer `i`;
//! - outputs `logits` f32 `[B, vocab]`, then `present.{i}.key` and `present.{i}.value` f32
//!   `[B, heads, 1, head_dim]`: the new token's keys and values, which the [`Generator`] has the
//!   device write into its cache at the token's position.
//!
//! The [`Generator`]'s cache is kept on the device ([`Device::keep`]): each step reads it in
//! place and the device writes the step's new keys and values into it after the step's kernels
//! ([`WriteBack`]), so the cache, 100 MB for GPT-2 medium at 1,024 positions, never goes through
//! the host; only the token, its position, the mask and the logits do.
//!
//! The op structure is PyTorch's export (MatMul + Add, Reshape + Transpose, Mul by the scale),
//! so the fusion planner recognises it.

use crate::error::{parse_json_config, ConfigCheck, Result, ZooError};
use crate::nn::{self, Heads};
use crate::params::{transpose2, Init, Params};
use serde::Deserialize;
use sfumato_core::op::UnaryOp;
use sfumato_core::{DType, Device, Feed, Graph, Kept, Op, Tensor, ValueId, WriteBack};
use std::time::{Duration, Instant};

/// A GPT-2 configuration, with Hugging Face's `config.json` keys (others are ignored).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default = "eps5")]
    pub layer_norm_epsilon: f32,
}

fn eps5() -> f32 {
    1e-5
}

impl Gpt2Config {
    /// GPT-2 small (124M): vocab 50,257, 1,024 positions, width 768, 12 layers, 12 heads.
    pub fn gpt2_small() -> Self {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// GPT-2 medium (345M; 354.8M counted): width 1,024, 24 layers, 16 heads.
    pub fn gpt2_medium() -> Self {
        Gpt2Config {
            n_embd: 1024,
            n_layer: 24,
            n_head: 16,
            ..Self::gpt2_small()
        }
    }

    /// A config by the name the CLI takes: `gpt2` or `gpt2-medium`.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "gpt2" => Ok(Self::gpt2_small()),
            "gpt2-medium" => Ok(Self::gpt2_medium()),
            _ => Err(ZooError::Input(format!(
                "unknown GPT-2 model '{name}'; known: gpt2, gpt2-medium"
            ))),
        }
    }

    /// A config from Hugging Face's `config.json` text (`path` names it in errors).
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        parse_json_config(text, path, Gpt2Config::validate)
    }

    /// Sizes that fit together: nothing is zero and the heads divide the width.
    pub fn validate(&self, path: &str) -> Result<()> {
        let check = ConfigCheck(path);
        check.positive(&[
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ])?;
        check.divides(("n_embd", self.n_embd), ("n_head", self.n_head))?;
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// The names' prefix (`transformer.` where the checkpoint has it or there is none, else
/// nothing), with the causal-mask buffers of older checkpoints ignored.
fn prefix(cfg: &Gpt2Config, p: &mut Params) -> String {
    let pre = if p.contains("wte.weight") {
        ""
    } else {
        "transformer."
    };
    for i in 0..cfg.n_layer {
        p.ignore(&format!("{pre}h.{i}.attn.bias"));
        p.ignore(&format!("{pre}h.{i}.attn.masked_bias"));
    }
    pre.to_string()
}

/// The embedding table `wte` `[vocab, n_embd]`, and the LM head's `[n_embd, vocab]`: the
/// transpose of `wte` (tied), or of a stored `lm_head.weight` that differs from it (untied).
fn embeddings(cfg: &Gpt2Config, p: &mut Params, pre: &str) -> Result<(Tensor, Tensor)> {
    let (v, h) = (cfg.vocab_size, cfg.n_embd);
    let wte = p.tensor(&format!("{pre}wte.weight"), &[v, h], Init::EMBED);
    let untied = if p.contains("lm_head.weight") {
        let lm = p.tensor("lm_head.weight", &[v, h], Init::EMBED);
        (lm != wte).then_some(lm)
    } else {
        None
    };
    let head = transpose2(untied.as_ref().unwrap_or(&wte))?;
    Ok((wte, head))
}

/// One pre-LN block: `x + attn(ln_1(x))`, then `+ mlp(ln_2(x))`. With `past`, the attention
/// reads the cached keys and values before the new ones. Returns the block's output and the
/// new keys and values `[b, heads, s, head_dim]`.
#[allow(clippy::too_many_arguments)]
fn block(
    g: &mut Graph,
    p: &mut Params,
    cfg: &Gpt2Config,
    l: &str,
    x: ValueId,
    heads: &Heads,
    mask: ValueId,
    past: Option<(ValueId, ValueId)>,
) -> Result<(ValueId, ValueId, ValueId)> {
    let (h, eps) = (cfg.n_embd, cfg.layer_norm_epsilon);
    let a = nn::layer_norm(g, p, x, &format!("{l}.ln_1"), h, eps)?;
    let qkv = nn::conv1d(g, p, a, &format!("{l}.attn.c_attn"), h, 3 * h)?;
    let parts = g.split(qkv, -1, &[h, h, h])?;
    let q = heads.split(g, parts[0], &[0, 2, 1, 3])?;
    let k = heads.split(g, parts[1], &[0, 2, 1, 3])?;
    let v = heads.split(g, parts[2], &[0, 2, 1, 3])?;
    let (k_all, v_all) = match past {
        Some((pk, pv)) => (g.concat(&[pk, k], 2)?, g.concat(&[pv, v], 2)?),
        None => (k, v),
    };
    let kt = g.transpose(k_all, &[0, 1, 3, 2])?;
    let ctx = heads.attend(g, q, kt, v_all, Some(mask))?;
    let ctx = heads.merge(g, ctx)?;
    let a = nn::conv1d(g, p, ctx, &format!("{l}.attn.c_proj"), h, h)?;
    let x = g.add_(a, x)?;
    let m = nn::layer_norm(g, p, x, &format!("{l}.ln_2"), h, eps)?;
    let m = nn::conv1d(g, p, m, &format!("{l}.mlp.c_fc"), h, 4 * h)?;
    let m = g.unary(UnaryOp::GeluTanh, m)?;
    let m = nn::conv1d(g, p, m, &format!("{l}.mlp.c_proj"), 4 * h, h)?;
    Ok((g.add_(m, x)?, k, v))
}

fn check_sizes(cfg: &Gpt2Config, batch: usize, seq: usize) -> Result<()> {
    cfg.validate("Gpt2Config")?;
    if batch == 0 || seq == 0 {
        return Err(ZooError::Input(
            "gpt2: batch and sequence length must be at least 1".into(),
        ));
    }
    if seq > cfg.n_positions {
        return Err(ZooError::Input(format!(
            "gpt2: {seq} tokens is longer than the model's {} positions",
            cfg.n_positions
        )));
    }
    Ok(())
}

/// The full-sequence forward: input `input_ids` i64 `[batch, seq]` (positions 0..seq, causal
/// attention), output `logits` f32 `[batch, seq, vocab]`.
pub fn gpt2_forward(cfg: &Gpt2Config, p: &mut Params, batch: usize, seq: usize) -> Result<Graph> {
    check_sizes(cfg, batch, seq)?;
    let pre = prefix(cfg, p);
    let (b, s, h) = (batch, seq, cfg.n_embd);
    let mut g = Graph::new();
    let ids = g.input("input_ids", DType::I64, [b, s]);
    let (wte, head) = embeddings(cfg, p, &pre)?;
    let wte = g.constant(wte)?;
    let wpe = p.tensor(
        &format!("{pre}wpe.weight"),
        &[cfg.n_positions, h],
        Init::EMBED,
    );
    let pos = g.constant(Tensor::from_f32(
        [s, h],
        wpe.to_f32_vec()[..s * h].to_vec(),
    )?)?;
    let x = g.gather(wte, ids, 0)?;
    let mut x = g.add_(x, pos)?;
    // Causal: query i attends to keys 0..=i.
    let causal: Vec<f32> = (0..s * s)
        .map(|k| if k % s <= k / s { 0.0 } else { f32::MIN })
        .collect();
    let mask = g.constant(Tensor::from_f32([1, 1, s, s], causal)?)?;
    let heads = Heads {
        batch: b,
        seq: s,
        heads: cfg.n_head,
        head_dim: cfg.head_dim(),
    };
    for i in 0..cfg.n_layer {
        (x, _, _) = block(
            &mut g,
            p,
            cfg,
            &format!("{pre}h.{i}"),
            x,
            &heads,
            mask,
            None,
        )?;
    }
    let x = nn::layer_norm(
        &mut g,
        p,
        x,
        &format!("{pre}ln_f"),
        h,
        cfg.layer_norm_epsilon,
    )?;
    let head = g.constant(head)?;
    let logits = nn::named(&mut g, "logits", Op::MatMul, &[x, head])?;
    g.set_outputs(&[logits])?;
    Ok(g)
}

/// The decode step over a KV cache of `cache_len` slots (see the module docs for its inputs
/// and outputs).
pub fn gpt2_step(
    cfg: &Gpt2Config,
    p: &mut Params,
    batch: usize,
    cache_len: usize,
) -> Result<Graph> {
    check_sizes(cfg, batch, 1)?;
    if cache_len == 0 {
        return Err(ZooError::Input(
            "gpt2: the KV cache needs at least one slot".into(),
        ));
    }
    let pre = prefix(cfg, p);
    let (b, t, h) = (batch, cache_len, cfg.n_embd);
    let (nh, hd) = (cfg.n_head, cfg.head_dim());
    let mut g = Graph::new();
    let ids = g.input("input_ids", DType::I64, [b, 1]);
    let pos_ids = g.input("position_ids", DType::I64, [b, 1]);
    let mask = g.input("attention_mask", DType::F32, [b, 1, 1, t + 1]);
    let mut past = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let k = g.input(&format!("past.{i}.key"), DType::F32, [b, nh, t, hd]);
        let v = g.input(&format!("past.{i}.value"), DType::F32, [b, nh, t, hd]);
        past.push((k, v));
    }
    let (wte, head) = embeddings(cfg, p, &pre)?;
    let wte = g.constant(wte)?;
    let wpe = p.constant(
        &mut g,
        &format!("{pre}wpe.weight"),
        &[cfg.n_positions, h],
        Init::EMBED,
    )?;
    let x = g.gather(wte, ids, 0)?;
    let pe = g.gather(wpe, pos_ids, 0)?;
    let mut x = g.add_(x, pe)?;
    let heads = Heads {
        batch: b,
        seq: 1,
        heads: nh,
        head_dim: hd,
    };
    let mut present = Vec::with_capacity(2 * cfg.n_layer);
    for (i, &kv) in past.iter().enumerate() {
        let (y, k, v) = block(
            &mut g,
            p,
            cfg,
            &format!("{pre}h.{i}"),
            x,
            &heads,
            mask,
            Some(kv),
        )?;
        x = y;
        present.push(nn::named(
            &mut g,
            &format!("present.{i}.key"),
            Op::Reshape {
                shape: vec![b, nh, 1, hd],
            },
            &[k],
        )?);
        present.push(nn::named(
            &mut g,
            &format!("present.{i}.value"),
            Op::Reshape {
                shape: vec![b, nh, 1, hd],
            },
            &[v],
        )?);
    }
    let x = nn::layer_norm(
        &mut g,
        p,
        x,
        &format!("{pre}ln_f"),
        h,
        cfg.layer_norm_epsilon,
    )?;
    let x = g.reshape(x, &[b as i64, h as i64])?;
    let head = g.constant(head)?;
    let logits = nn::named(&mut g, "logits", Op::MatMul, &[x, head])?;
    let mut outputs = vec![logits];
    outputs.extend(present);
    g.set_outputs(&outputs)?;
    Ok(g)
}

/// The index of the largest value, the first one on ties (0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// A KV-cache length for `tokens` positions: rounded up to a multiple of 16, so prompts of
/// nearby lengths share one compiled step graph.
pub fn cache_len_for(tokens: usize) -> usize {
    tokens.max(1).div_ceil(16) * 16
}

/// Greedy decoding with a KV cache, batch 1: one step graph ([`gpt2_step`]) fed one token at a
/// time, the prompt's tokens first, each step's keys and values written into the cache, which
/// the device keeps (made at the first step, on that step's device).
pub struct Generator {
    cfg: Gpt2Config,
    graph: Graph,
    cache_len: usize,
    /// Per layer, keys then values: `[1, heads, cache_len, head_dim]` each, kept by the device.
    cache: Vec<Kept>,
    pos: usize,
}

impl Generator {
    /// Build the step graph over a cache of `cache_len` slots (weights from `p`; call
    /// [`Params::finish`] after to check a checkpoint).
    pub fn new(cfg: &Gpt2Config, p: &mut Params, cache_len: usize) -> Result<Self> {
        let graph = gpt2_step(cfg, p, 1, cache_len)?;
        Ok(Generator {
            cfg: cfg.clone(),
            graph,
            cache_len,
            cache: Vec::new(),
            pos: 0,
        })
    }

    fn cache_shape(&self) -> [usize; 4] {
        [1, self.cfg.n_head, self.cache_len, self.cfg.head_dim()]
    }

    /// Keep a cache on `device` whose first `positions` slots hold random keys and values (from
    /// `seed`), and go on from position `positions`: how a benchmark times the decode step at a
    /// long context without decoding its way there.
    pub fn fill_cache(
        &mut self,
        device: &mut dyn Device,
        positions: usize,
        seed: u64,
    ) -> Result<()> {
        if positions > self.cache_len {
            return Err(ZooError::Input(format!(
                "gpt2: {positions} positions do not fit the KV cache's {} slots",
                self.cache_len
            )));
        }
        let shape = self.cache_shape();
        self.cache = (0..2 * self.cfg.n_layer)
            .map(|i| device.keep(Tensor::random(DType::F32, shape, seed + i as u64)))
            .collect::<std::result::Result<_, _>>()?;
        self.pos = positions;
        Ok(())
    }

    /// The cache's keys (`value` false) or values of `layer`, `[1, heads, cache_len,
    /// head_dim]`, read back from the device (for tests and inspection).
    pub fn cached(&self, device: &mut dyn Device, layer: usize, value: bool) -> Result<Tensor> {
        let k = self.cache.get(2 * layer + value as usize).ok_or_else(|| {
            ZooError::Input(format!(
                "gpt2: no cached layer {layer} (the cache is made at the first step)"
            ))
        })?;
        Ok(device.read_kept(k)?)
    }

    /// The step graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Tokens fed so far (the next token's position).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Feed `token` at the next position; returns the logits for the token after it.
    pub fn step(&mut self, device: &mut dyn Device, token: u32) -> Result<Vec<f32>> {
        let (t, pos) = (self.cache_len, self.pos);
        if pos >= t || pos >= self.cfg.n_positions {
            return Err(ZooError::Input(format!(
                "gpt2: position {pos} is past the KV cache ({t} slots) or the model's {} \
                 positions",
                self.cfg.n_positions
            )));
        }
        if token as usize >= self.cfg.vocab_size {
            return Err(ZooError::Input(format!(
                "gpt2: token {token} is not in the vocabulary of {} tokens",
                self.cfg.vocab_size
            )));
        }
        if self.cache.is_empty() {
            let shape = self.cache_shape();
            self.cache = (0..2 * self.cfg.n_layer)
                .map(|_| device.keep(Tensor::zeros(DType::F32, shape)))
                .collect::<std::result::Result<_, _>>()?;
        }
        let mask: Vec<f32> = (0..=t)
            .map(|j| if j < pos || j == t { 0.0 } else { f32::MIN })
            .collect();
        let small = [
            Tensor::from_i64([1, 1], vec![token as i64])?,
            Tensor::from_i64([1, 1], vec![pos as i64])?,
            Tensor::from_f32([1, 1, 1, t + 1], mask)?,
        ];
        let feeds: Vec<Feed<'_>> = small
            .iter()
            .map(Feed::Tensor)
            .chain(self.cache.iter().map(Feed::Kept))
            .collect();
        // Output 1 + i is cache i's new row: written at this position, along the slots' axis.
        let writes: Vec<WriteBack<'_>> = self
            .cache
            .iter()
            .enumerate()
            .map(|(i, into)| WriteBack {
                output: 1 + i,
                into,
                axis: 2,
                at: pos,
            })
            .collect();
        let out = device.run_fed(&self.graph, &feeds, &writes)?;
        self.pos += 1;
        Ok(out.outputs[0].to_f32_vec())
    }
}

/// What [`generate`] produced.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The new tokens, in order.
    pub tokens: Vec<u32>,
    /// The logits each new token is the argmax of.
    pub logits: Vec<Vec<f32>>,
    /// Each step's wall time, prompt tokens first (the first step includes compiling the step
    /// graph on the device).
    pub steps: Vec<Duration>,
}

impl Generated {
    /// Mean wall time of a generating step after the first, in milliseconds (the first
    /// compiles): the steady decode rate. `None` with fewer than two steps.
    pub fn ms_per_token(&self) -> Option<f64> {
        let rest = self.steps.get(1..).filter(|r| !r.is_empty())?;
        Some(rest.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / rest.len() as f64)
    }
}

/// Greedy generation: `max_new` tokens after `prompt` (argmax, the first maximum on ties), each
/// handed to `on_token` as soon as it is chosen. One step graph serves every step (see
/// [`Generator`]); its cache holds the prompt and the new tokens, rounded up
/// ([`cache_len_for`]). Errors: an empty prompt, a token outside the vocabulary, and a prompt
/// plus `max_new` longer than the model's `n_positions`.
pub fn generate(
    device: &mut dyn Device,
    cfg: &Gpt2Config,
    params: &mut Params,
    prompt: &[u32],
    max_new: usize,
    on_token: impl FnMut(u32),
) -> Result<Generated> {
    check_prompt(cfg, prompt, max_new)?;
    let mut gen = Generator::new(cfg, params, cache_len_for(prompt.len() + max_new))?;
    generate_with(device, &mut gen, prompt, max_new, on_token)
}

/// The checks of [`generate`]: a prompt with tokens, all in the vocabulary, that leaves room for
/// `max_new` more within the model's positions.
pub fn check_prompt(cfg: &Gpt2Config, prompt: &[u32], max_new: usize) -> Result<()> {
    cfg.validate("Gpt2Config")?;
    if prompt.is_empty() {
        return Err(ZooError::Input("gpt2: the prompt has no tokens".into()));
    }
    if prompt.len() + max_new > cfg.n_positions {
        return Err(ZooError::Input(format!(
            "gpt2: a prompt of {} tokens plus {max_new} new tokens is longer than the model's \
             {} positions",
            prompt.len(),
            cfg.n_positions
        )));
    }
    if let Some(t) = prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(ZooError::Input(format!(
            "gpt2: prompt token {t} is not in the vocabulary of {} tokens",
            cfg.vocab_size
        )));
    }
    Ok(())
}

/// [`generate`] with a [`Generator`] built by the caller (who may check its weights with
/// [`Params::finish`] first), fed from its current position.
pub fn generate_with(
    device: &mut dyn Device,
    gen: &mut Generator,
    prompt: &[u32],
    max_new: usize,
    mut on_token: impl FnMut(u32),
) -> Result<Generated> {
    check_prompt(&gen.cfg, prompt, max_new)?;
    let mut out = Generated {
        tokens: Vec::with_capacity(max_new),
        logits: Vec::with_capacity(max_new),
        steps: Vec::new(),
    };
    if max_new == 0 {
        return Ok(out);
    }
    let mut next = prompt[0];
    let mut fed = 0;
    loop {
        let t0 = Instant::now();
        let logits = gen.step(device, next)?;
        out.steps.push(t0.elapsed());
        fed += 1;
        if fed < prompt.len() {
            next = prompt[fed];
            continue;
        }
        next = argmax(&logits) as u32;
        on_token(next);
        out.tokens.push(next);
        out.logits.push(logits);
        if out.tokens.len() == max_new {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn cache_lengths_round_up_to_16() {
        assert_eq!(cache_len_for(1), 16);
        assert_eq!(cache_len_for(16), 16);
        assert_eq!(cache_len_for(19), 32);
    }

    #[test]
    fn configs_parse_and_validate() {
        let c = Gpt2Config::from_json(
            r#"{"vocab_size": 100, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4,
                "activation_function": "gelu_new"}"#,
            "c.json",
        )
        .unwrap();
        assert_eq!(c.layer_norm_epsilon, 1e-5);
        assert_eq!(c.head_dim(), 8);
        let e = Gpt2Config::from_json(
            r#"{"vocab_size": 100, "n_positions": 64, "n_embd": 30, "n_layer": 2, "n_head": 4}"#,
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a multiple"), "{e}");
        assert!(Gpt2Config::by_name("gpt3").is_err());
        assert_eq!(Gpt2Config::by_name("gpt2-medium").unwrap().n_layer, 24);
    }
}
