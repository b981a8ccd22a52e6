//! The built-in models, built with the graph builder from deterministic random weights.
//!
//! Every model is a function of [`ModelOptions`] that returns the graph and seeded random inputs
//! in the order of [`Graph::inputs`]. Weights are seeded random constants scaled like a real
//! initialisation (linear weights uniform in ±0.05, conv weights uniform in ±1/√fan_in, norm
//! scales near 1 and shifts near 0, batch-norm variances in [0.5, 1.5]), so activations keep
//! realistic magnitudes and every output is finite.
//!
//! The transformer blocks have exactly the op structure PyTorch exports to ONNX (a linear layer
//! is `MatMul` then `Add`, heads are split by `Reshape` then `Transpose`, the attention scale is
//! a `Mul` by a scalar constant), because the fusion planner pattern-matches that structure: do
//! not "simplify" them into `Gemm` or fold the scale into a weight.

use crate::nn::named;
use sfumato_core::op::{BinaryOp, Conv2d, Gemm, UnaryOp};
use sfumato_core::{DType, Error, Graph, Op, Result, Shape, Tensor, ValueId};

/// The names [`by_name`] knows, in the order of [`REGISTRY`].
pub const MODELS: &[&str] = &[
    "mlp",
    "bert-base",
    "resnet-bottleneck",
    "gpt2-decode",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "bert-large",
    "vit-b16",
    "yolov5n",
    "yolov5s",
    "efficientnet-lite0",
];

/// A built model: the graph and its seeded random inputs, in the order of [`Graph::inputs`].
pub type GraphAndInputs = (Graph, Vec<Tensor>);

/// A built-in model: its name, what it is, how to build it and how much work one forward is.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// The graph and seeded random inputs (in the order of [`Graph::inputs`]).
    pub build: fn(&ModelOptions) -> Result<GraphAndInputs>,
    /// Approximate FLOPs of one forward (see [`flops`]); assumes valid options.
    pub flops: fn(&ModelOptions) -> f64,
    /// The model has one block and rejects [`ModelOptions::layers`] other than 1.
    pub single_block: bool,
    /// The options a model runs with where the command line gives none (whole models: their
    /// standard sizes and layer counts).
    pub defaults: ModelOptions,
}

/// Batch 1, one layer, sequence 128, 56x56: the blocks' benchmark shapes.
const BLOCK_DEFAULTS: ModelOptions = ModelOptions {
    batch: 1,
    layers: 1,
    seq: 128,
    size: 56,
};

/// A whole model's defaults: `layers` layers (1 for the CNNs), sequence 128, `size` pixels.
const fn whole(layers: usize, size: usize) -> ModelOptions {
    ModelOptions {
        batch: 1,
        layers,
        seq: 128,
        size,
    }
}

/// Every built-in model, in the order of [`MODELS`].
pub const REGISTRY: &[ModelSpec] = &[
    ModelSpec {
        name: "mlp",
        summary: "MNIST-shaped MLP: 784 -> 256 (LayerNorm, Relu) -> 128 (Relu) -> 10 -> Softmax",
        build: mlp_with,
        flops: mlp_flops,
        single_block: true,
        defaults: BLOCK_DEFAULTS,
    },
    ModelSpec {
        name: "bert-base",
        summary: "post-LN BERT-base encoder, `layers` layers of hidden 768, 12 heads, FFN 3072",
        build: bert_base,
        flops: bert_base_flops,
        single_block: false,
        defaults: BLOCK_DEFAULTS,
    },
    ModelSpec {
        name: "resnet-bottleneck",
        summary: "ResNet-50 stage-1 bottleneck (256 -> 64 -> 64 -> 256, identity shortcut)",
        build: resnet_bottleneck,
        flops: resnet_bottleneck_flops,
        single_block: false,
        defaults: BLOCK_DEFAULTS,
    },
    ModelSpec {
        name: "gpt2-decode",
        summary: "one GPT-2 small block at one decode step over a `seq`-token KV cache",
        build: gpt2_decode,
        flops: gpt2_decode_flops,
        single_block: true,
        defaults: BLOCK_DEFAULTS,
    },
    ModelSpec {
        name: "resnet18",
        summary: "ResNet-18 (torchvision), random weights: `size` x `size` images, 1000 classes",
        build: |o| family_build(o, crate::resnet::resnet18, true),
        flops: |o| family_flops(o, crate::resnet::resnet18),
        single_block: true,
        defaults: whole(1, 224),
    },
    ModelSpec {
        name: "resnet34",
        summary: "ResNet-34 (torchvision), random weights",
        build: |o| family_build(o, crate::resnet::resnet34, true),
        flops: |o| family_flops(o, crate::resnet::resnet34),
        single_block: true,
        defaults: whole(1, 224),
    },
    ModelSpec {
        name: "resnet50",
        summary: "ResNet-50 v1.5 (torchvision), random weights",
        build: |o| family_build(o, crate::resnet::resnet50, true),
        flops: |o| family_flops(o, crate::resnet::resnet50),
        single_block: true,
        defaults: whole(1, 224),
    },
    ModelSpec {
        name: "resnet101",
        summary: "ResNet-101 v1.5 (torchvision), random weights",
        build: |o| family_build(o, crate::resnet::resnet101, true),
        flops: |o| family_flops(o, crate::resnet::resnet101),
        single_block: true,
        defaults: whole(1, 224),
    },
    ModelSpec {
        name: "bert-large",
        summary: "BERT-large with the SQuAD span head from token ids, random weights: `layers` of 24, `seq` tokens",
        build: bert_large,
        flops: |o| {
            let mut c = crate::bert::BertConfig::large();
            c.num_hidden_layers = o.layers;
            c.flops(o.batch, o.seq)
        },
        single_block: false,
        defaults: whole(24, 224),
    },
    ModelSpec {
        name: "vit-b16",
        summary: "ViT-B/16 (Hugging Face), random weights: `layers` of 12, `size` x `size` images",
        build: vit_b16,
        flops: |o| {
            let mut c = crate::vit::vit_b16();
            c.num_hidden_layers = o.layers;
            c.image_size = o.size;
            c.flops(o.batch)
        },
        single_block: false,
        defaults: whole(12, 224),
    },
    ModelSpec {
        name: "yolov5n",
        summary: "YOLOv5n (Ultralytics v6) with the Detect head's decoding, random weights, 80 classes",
        build: |o| family_build(o, crate::yolov5::yolov5n, false),
        flops: |o| family_flops(o, crate::yolov5::yolov5n),
        single_block: true,
        defaults: whole(1, 640),
    },
    ModelSpec {
        name: "yolov5s",
        summary: "YOLOv5s (Ultralytics v6) with the Detect head's decoding, random weights, 80 classes",
        build: |o| family_build(o, crate::yolov5::yolov5s, false),
        flops: |o| family_flops(o, crate::yolov5::yolov5s),
        single_block: true,
        defaults: whole(1, 640),
    },
    ModelSpec {
        name: "efficientnet-lite0",
        summary: "EfficientNet-Lite0, random weights (`sfumato classify` loads the trained ones)",
        build: efficientnet_lite0,
        flops: |o| graph_flops_of(efficientnet_lite0(o)),
        single_block: true,
        defaults: whole(1, 224),
    },
];

/// A family's error as the registry's.
fn core_err(e: crate::error::ZooError) -> Error {
    match e {
        crate::error::ZooError::Graph(e) => e,
        other => Error::Graph(other.to_string()),
    }
}

/// A config with a square image size.
trait Sized2 {
    fn set_size(&mut self, size: usize);
    fn build(&self, p: &mut crate::params::Params, batch: usize) -> crate::error::Result<Graph>;
    fn count(&self, batch: usize) -> f64;
}

impl Sized2 for crate::resnet::ResNetConfig {
    fn set_size(&mut self, size: usize) {
        self.image_size = size;
    }
    fn build(&self, p: &mut crate::params::Params, batch: usize) -> crate::error::Result<Graph> {
        crate::resnet::resnet(self, p, batch)
    }
    fn count(&self, batch: usize) -> f64 {
        self.flops(batch)
    }
}

impl Sized2 for crate::yolov5::YoloV5Config {
    fn set_size(&mut self, size: usize) {
        self.image_size = size;
    }
    fn build(&self, p: &mut crate::params::Params, batch: usize) -> crate::error::Result<Graph> {
        crate::yolov5::yolov5(self, p, batch)
    }
    fn count(&self, batch: usize) -> f64 {
        self.flops(batch)
    }
}

/// Seeded pixels `[batch, 3, size, size]` in [0, 1] (`unit`) or [-1, 1].
fn pixels(batch: usize, size: usize, unit: bool) -> Result<Tensor> {
    let t = Tensor::random(DType::F32, [batch, 3, size, size], 1);
    if unit {
        return Ok(t);
    }
    let v = t
        .to_f32_vec()
        .into_iter()
        .map(|x| (x + 1.0) / 2.0)
        .collect();
    Tensor::from_f32([batch, 3, size, size], v)
}

/// A CNN family's graph (random weights) and seeded pixels.
fn family_build<C: Sized2>(
    o: &ModelOptions,
    cfg: fn() -> C,
    signed_pixels: bool,
) -> Result<GraphAndInputs> {
    check_options("model", o, true)?;
    let mut c = cfg();
    c.set_size(o.size);
    let mut p = crate::params::Params::random("model", 42);
    let g = c.build(&mut p, o.batch).map_err(core_err)?;
    Ok((g, vec![pixels(o.batch, o.size, signed_pixels)?]))
}

/// A CNN family's FLOPs at the options' batch and size.
fn family_flops<C: Sized2>(o: &ModelOptions, cfg: fn() -> C) -> f64 {
    let mut c = cfg();
    c.set_size(o.size);
    c.count(o.batch)
}

/// BERT-large with the span head, `opts.layers` layers, over `opts.seq` random tokens.
fn bert_large(o: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("bert-large", o, false)?;
    let mut c = crate::bert::BertConfig::large();
    c.num_hidden_layers = o.layers;
    let mut p = crate::params::Params::random("bert-large", 42);
    let g = crate::bert::bert(&c, &mut p, o.batch, o.seq, crate::bert::BertHead::Squad)
        .map_err(core_err)?;
    let inputs = crate::bert::random_inputs(&c, o.batch, o.seq).map_err(core_err)?;
    Ok((g, inputs))
}

/// ViT-B/16 with `opts.layers` layers over `opts.size` images.
fn vit_b16(o: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("vit-b16", o, false)?;
    let mut c = crate::vit::vit_b16();
    c.num_hidden_layers = o.layers;
    c.image_size = o.size;
    let mut p = crate::params::Params::random("vit-b16", 42);
    let g =
        crate::vit::vit(&c, &mut p, o.batch, crate::vit::ViTOutputs::Logits).map_err(core_err)?;
    Ok((g, vec![pixels(o.batch, o.size, true)?]))
}

/// EfficientNet-Lite0 over `opts.size` images.
fn efficientnet_lite0(o: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("efficientnet-lite0", o, true)?;
    let mut c = crate::efficientnet::efficientnet_lite0();
    c.image_size = o.size;
    let mut p = crate::params::Params::random("efficientnet-lite0", 42);
    let g = crate::efficientnet::efficientnet(&c, &mut p, o.batch).map_err(core_err)?;
    Ok((g, vec![pixels(o.batch, o.size, true)?]))
}

/// FLOPs counted from a built graph's matrix products and convolutions (0 when it does not
/// build).
fn graph_flops_of(built: Result<GraphAndInputs>) -> f64 {
    built.map(|(g, _)| graph_flops(&g)).unwrap_or(0.0)
}

/// Two FLOPs per multiply-add of every MatMul, Gemm and Conv2d in the graph, from its shapes.
pub fn graph_flops(g: &Graph) -> f64 {
    let mut total = 0.0;
    for n in g.nodes() {
        let out = match n.outputs.first() {
            Some(&o) => g.shape(o).numel() as f64,
            None => continue,
        };
        match &n.op {
            Op::MatMul | Op::Gemm(_) => {
                let a = g.shape(n.inputs[0]);
                let k = match &n.op {
                    Op::Gemm(gm) if gm.trans_a => a.0.first().copied().unwrap_or(1),
                    _ => a.0.last().copied().unwrap_or(1),
                };
                total += 2.0 * out * k as f64;
            }
            Op::Conv2d(_) => {
                // Each output element is a dot product over one group's C/groups x kh x kw.
                let w = g.shape(n.inputs[1]);
                let per = w.0.iter().skip(1).product::<usize>() as f64;
                total += 2.0 * out * per;
            }
            _ => {}
        }
    }
    total
}

/// What to build: sizes shared by the models. Each model reads the fields it has a use for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// Batch size (every model).
    pub batch: usize,
    /// Repeated blocks: encoder layers of bert-base, bottleneck blocks of resnet-bottleneck.
    /// mlp and gpt2-decode have exactly one and reject any other value.
    pub layers: usize,
    /// Sequence length of bert-base; KV-cache length (tokens already seen) of gpt2-decode.
    pub seq: usize,
    /// Height and width of resnet-bottleneck's input.
    pub size: usize,
}

impl Default for ModelOptions {
    /// Batch 1, one layer, sequence (or KV cache) 128, 56x56 images: the shapes of the benchmarks.
    fn default() -> Self {
        ModelOptions {
            batch: 1,
            layers: 1,
            seq: 128,
            size: 56,
        }
    }
}

/// A model's default options (its standard sizes and layer counts).
pub fn default_options(name: &str) -> Result<ModelOptions> {
    Ok(spec(name)?.defaults)
}

/// The spec of a built-in model, or an error listing the known names.
pub fn spec(name: &str) -> Result<&'static ModelSpec> {
    REGISTRY.iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Graph(format!(
            "unknown model '{name}'; known models: {}",
            MODELS.join(", ")
        ))
    })
}

/// A model by name with its default options and `batch` rows of seeded random input.
pub fn by_name(name: &str, batch: usize) -> Result<GraphAndInputs> {
    by_name_with(
        name,
        &ModelOptions {
            batch,
            ..spec(name)?.defaults
        },
    )
}

/// A model by name with the given options: the graph and its seeded random inputs.
pub fn by_name_with(name: &str, opts: &ModelOptions) -> Result<GraphAndInputs> {
    (spec(name)?.build)(opts)
}

/// Approximate FLOPs of one forward of a model, for GFLOP/s reports: the multiply-adds of its
/// matrix products and convolutions, two FLOPs each. Elementwise ops, norms and softmax are left
/// out (they are memory-bound and a few percent of the total).
pub fn flops(name: &str, opts: &ModelOptions) -> Result<f64> {
    let s = spec(name)?;
    check_options(s.name, opts, s.single_block)?;
    Ok((s.flops)(opts))
}

/// Options every model needs: positive sizes, and `layers` 1 for a model of `one_block`.
fn check_options(model: &str, o: &ModelOptions, one_block: bool) -> Result<()> {
    for (field, v) in [
        ("batch", o.batch),
        ("layers", o.layers),
        ("seq", o.seq),
        ("size", o.size),
    ] {
        if v == 0 {
            return Err(Error::Graph(format!("{model}: {field} must be at least 1")));
        }
    }
    if one_block && o.layers != 1 {
        return Err(Error::Graph(format!(
            "{model}: has exactly one block, got layers = {}",
            o.layers
        )));
    }
    Ok(())
}

// ---- weights ----

/// A seeded uniform tensor in `[-scale, scale)`.
fn scaled_random(shape: &[usize], scale: f32, seed: u64) -> Result<Tensor> {
    around(shape, 0.0, scale, seed)
}

/// A seeded uniform tensor in `[center - spread, center + spread)`.
fn around(shape: &[usize], center: f32, spread: f32, seed: u64) -> Result<Tensor> {
    let t = Tensor::random(DType::F32, Shape::from(shape), seed);
    let v: Vec<f32> = t
        .to_f32_vec()
        .into_iter()
        .map(|x| center + x * spread)
        .collect();
    Tensor::from_f32(shape, v)
}

/// Hands out weight constants, each from its own seed, so a model's weights depend only on the
/// base seed and the order they are made in.
struct Weights {
    seed: u64,
}

impl Weights {
    fn new(base_seed: u64) -> Self {
        Weights { seed: base_seed }
    }

    /// A constant uniform in `[center - spread, center + spread)`.
    fn constant(
        &mut self,
        g: &mut Graph,
        shape: &[usize],
        center: f32,
        spread: f32,
    ) -> Result<ValueId> {
        self.seed += 1;
        g.constant(around(shape, center, spread, self.seed)?)
    }

    /// `x @ W + b` as PyTorch exports a linear layer: `MatMul(x, W[fan_in, fan_out])` then
    /// `Add(·, b[fan_out])`, weights uniform in ±0.05 and biases in ±0.02.
    fn linear(
        &mut self,
        g: &mut Graph,
        x: ValueId,
        fan_in: usize,
        fan_out: usize,
    ) -> Result<ValueId> {
        let w = self.constant(g, &[fan_in, fan_out], 0.0, 0.05)?;
        let b = self.constant(g, &[fan_out], 0.0, 0.02)?;
        let y = g.matmul(x, w)?;
        g.add_(y, b)
    }

    /// Gamma and beta of a layer norm over `dim` features: gamma in 1 ± 0.05, beta in ±0.02.
    fn norm_params(&mut self, g: &mut Graph, dim: usize) -> Result<(ValueId, ValueId)> {
        let gamma = self.constant(g, &[dim], 1.0, 0.05)?;
        let beta = self.constant(g, &[dim], 0.0, 0.02)?;
        Ok((gamma, beta))
    }

    /// A layer norm over the last axis (of `dim` features).
    fn layer_norm(&mut self, g: &mut Graph, x: ValueId, dim: usize, eps: f32) -> Result<ValueId> {
        let (gamma, beta) = self.norm_params(g, dim)?;
        g.layer_norm(x, gamma, Some(beta), -1, eps)
    }

    /// Bias-free `k`x`k` convolution (stride 1, "same" padding) then inference batch norm:
    /// conv weights uniform in ±1/√fan_in (PyTorch's default), BN gamma in 1 ± 0.1, beta and
    /// mean in ±0.05, variance in [0.5, 1.5].
    fn conv_bn(
        &mut self,
        g: &mut Graph,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: usize,
    ) -> Result<ValueId> {
        let bound = 1.0 / ((cin * k * k) as f32).sqrt();
        let w = self.constant(g, &[cout, cin, k, k], 0.0, bound)?;
        let y = g.conv2d(x, w, None, Conv2d::padded(k / 2, 1))?;
        let gamma = self.constant(g, &[cout], 1.0, 0.1)?;
        let beta = self.constant(g, &[cout], 0.0, 0.05)?;
        let mean = self.constant(g, &[cout], 0.0, 0.05)?;
        let var = self.constant(g, &[cout], 1.0, 0.5)?;
        g.batch_norm(y, gamma, beta, mean, var, 1e-5)
    }
}

/// Split `[b, s, heads * head_dim]` into heads: Reshape to `[b, s, heads, head_dim]`, then
/// Transpose by `perm`.
fn split_heads(g: &mut Graph, x: ValueId, b: usize, s: usize, perm: &[usize]) -> Result<ValueId> {
    let x = g.reshape(x, &[b as i64, s as i64, HEADS as i64, HEAD_DIM as i64])?;
    g.transpose(x, perm)
}

/// Merge heads back: `[b, heads, s, head_dim]` -> Transpose `[0, 2, 1, 3]` -> Reshape
/// `[b, s, heads * head_dim]`.
fn merge_heads(g: &mut Graph, x: ValueId, b: usize, s: usize) -> Result<ValueId> {
    let x = g.transpose(x, &[0, 2, 1, 3])?;
    g.reshape(x, &[b as i64, s as i64, HIDDEN as i64])
}

/// `softmax(q @ kT * 0.125 [+ mask]) @ v` for `q [b, h, sq, 64]`, `kT [b, h, 64, sk]`,
/// `v [b, h, sk, 64]`.
fn attention(
    g: &mut Graph,
    q: ValueId,
    kt: ValueId,
    v: ValueId,
    mask: Option<ValueId>,
) -> Result<ValueId> {
    let scores = g.matmul(q, kt)?;
    let scale = g.constant(Tensor::scalar_f32(1.0 / (HEAD_DIM as f32).sqrt()))?;
    let mut scores = g.mul(scores, scale)?;
    if let Some(m) = mask {
        scores = g.add_(scores, m)?;
    }
    let probs = g.softmax(scores, -1)?;
    g.matmul(probs, v)
}

// ---- mlp ----

/// A fully connected layer `x @ W + b` with weights scaled to about `1/sqrt(fan_in)`.
fn dense(g: &mut Graph, x: ValueId, fan_in: usize, fan_out: usize, seed: u64) -> Result<ValueId> {
    let w = g.constant(scaled_random(
        &[fan_in, fan_out],
        1.0 / (fan_in as f32).sqrt(),
        seed,
    )?)?;
    let b = g.constant(scaled_random(&[fan_out], 0.1, seed + 1)?)?;
    g.gemm(x, w, Some(b), Gemm::default())
}

const MLP_DIMS: [usize; 4] = [784, 256, 128, 10];

/// A small MNIST-shaped MLP: `x [batch, 784]` → Gemm 256 → LayerNorm → Relu → Gemm 128 → Relu
/// → Gemm 10 → Softmax. Returns the graph and one seeded random input.
pub fn mlp(batch: usize) -> Result<GraphAndInputs> {
    if batch == 0 {
        return Err(Error::Graph("mlp: batch must be at least 1".into()));
    }
    const DIMS: [usize; 4] = MLP_DIMS;
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [batch, DIMS[0]]);

    let h = dense(&mut g, x, DIMS[0], DIMS[1], 100)?;
    let gamma: Vec<f32> = scaled_random(&[DIMS[1]], 0.1, 200)?
        .to_f32_vec()
        .into_iter()
        .map(|s| 1.0 + s)
        .collect();
    let scale = g.constant(Tensor::from_f32([DIMS[1]], gamma)?)?;
    let shift = g.constant(scaled_random(&[DIMS[1]], 0.1, 201)?)?;
    let h = g.layer_norm(h, scale, Some(shift), -1, 1e-5)?;
    let h = g.relu(h)?;

    let h = dense(&mut g, h, DIMS[1], DIMS[2], 300)?;
    let h = g.relu(h)?;

    let logits = dense(&mut g, h, DIMS[2], DIMS[3], 400)?;
    let y = g.softmax(logits, -1)?;
    g.set_outputs(&[y])?;

    let inputs = vec![Tensor::random(DType::F32, [batch, DIMS[0]], 1)];
    Ok((g, inputs))
}

/// [`mlp`] through the options (only `batch` applies; `layers` must be 1).
fn mlp_with(opts: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("mlp", opts, true)?;
    mlp(opts.batch)
}

/// `2 * batch * (784*256 + 256*128 + 128*10)`.
pub fn mlp_flops(o: &ModelOptions) -> f64 {
    let d = MLP_DIMS;
    2.0 * o.batch as f64 * (d[0] * d[1] + d[1] * d[2] + d[2] * d[3]) as f64
}

// ---- transformers ----

/// Hidden size of BERT-base and GPT-2 small.
const HIDDEN: usize = 768;
/// Attention heads of BERT-base and GPT-2 small.
const HEADS: usize = 12;
/// `HIDDEN / HEADS`.
const HEAD_DIM: usize = 64;
/// Feed-forward width of BERT-base and GPT-2 small.
const FFN: usize = 3072;
/// What an additive attention mask adds at a masked position.
pub const MASKED: f32 = -10000.0;

/// A post-LN BERT-base encoder of `opts.layers` layers (hidden 768, 12 heads, FFN 3072) over
/// `opts.seq` tokens.
///
/// Inputs: `hidden` f32 `[B, S, 768]` (embeddings) and `mask` f32 `[B, 1, 1, S]`, additive:
/// 0 to attend, -10000 for padding (the random mask pads the last `S/8 + b % 4` positions of
/// row `b`, keeping at least one). Output: `last_hidden_state` f32 `[B, S, 768]`.
///
/// Each layer, as PyTorch exports it: q, k, v = MatMul + Add; q and v Reshape `[B, S, 12, 64]`
/// and Transpose `[0, 2, 1, 3]`, k Transpose `[0, 2, 3, 1]`; MatMul(q, kT), Mul 0.125, Add mask,
/// Softmax -1, MatMul v, Transpose `[0, 2, 1, 3]`, Reshape `[B, S, 768]`; MatMul + Add, Add
/// residual, LayerNorm (eps 1e-12); MatMul + Add, Gelu (erf), MatMul + Add, Add residual,
/// LayerNorm.
pub fn bert_base(opts: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("bert-base", opts, false)?;
    let (b, s) = (opts.batch, opts.seq);
    let mut g = Graph::new();
    let mut w = Weights::new(1000);
    let mut x = g.input("hidden", DType::F32, [b, s, HIDDEN]);
    let mask = g.input("mask", DType::F32, [b, 1, 1, s]);
    for layer in 0..opts.layers {
        let out_name = (layer + 1 == opts.layers).then_some("last_hidden_state");
        x = bert_layer(&mut g, &mut w, x, mask, b, s, out_name)?;
    }
    g.set_outputs(&[x])?;

    let hidden = Tensor::random(DType::F32, [b, s, HIDDEN], 1);
    let mut m = vec![0.0f32; b * s];
    for (row, r) in m.chunks_mut(s).enumerate() {
        let masked = (s / 8 + row % 4).min(s - 1);
        r[s - masked..].fill(MASKED);
    }
    let mask = Tensor::from_f32([b, 1, 1, s], m)?;
    Ok((g, vec![hidden, mask]))
}

/// One post-LN encoder layer; `out_name` names its last node.
fn bert_layer(
    g: &mut Graph,
    w: &mut Weights,
    x: ValueId,
    mask: ValueId,
    b: usize,
    s: usize,
    out_name: Option<&str>,
) -> Result<ValueId> {
    let q = w.linear(g, x, HIDDEN, HIDDEN)?;
    let k = w.linear(g, x, HIDDEN, HIDDEN)?;
    let v = w.linear(g, x, HIDDEN, HIDDEN)?;
    let q = split_heads(g, q, b, s, &[0, 2, 1, 3])?;
    let kt = split_heads(g, k, b, s, &[0, 2, 3, 1])?;
    let v = split_heads(g, v, b, s, &[0, 2, 1, 3])?;
    let ctx = attention(g, q, kt, v, Some(mask))?;
    let ctx = merge_heads(g, ctx, b, s)?;
    let attn = w.linear(g, ctx, HIDDEN, HIDDEN)?;
    let h = g.add_(attn, x)?;
    let h = w.layer_norm(g, h, HIDDEN, 1e-12)?;

    let f = w.linear(g, h, HIDDEN, FFN)?;
    let f = g.gelu(f)?;
    let f = w.linear(g, f, FFN, HIDDEN)?;
    let y = g.add_(f, h)?;
    match out_name {
        None => w.layer_norm(g, y, HIDDEN, 1e-12),
        Some(name) => {
            let (gamma, beta) = w.norm_params(g, HIDDEN)?;
            let axis = g.shape(y).rank() - 1;
            named(
                g,
                name,
                Op::LayerNorm {
                    axis,
                    epsilon: 1e-12,
                },
                &[y, gamma, beta],
            )
        }
    }
}

/// `layers * batch * (2*S*(4*768² + 2*768*3072) + 4*S²*768)`: the q, k, v, output and two FFN
/// projections, plus `q @ kT` and `probs @ v`.
pub fn bert_base_flops(o: &ModelOptions) -> f64 {
    let (h, f, s) = (HIDDEN as f64, FFN as f64, o.seq as f64);
    let per_row = 2.0 * s * (4.0 * h * h + 2.0 * h * f) + 4.0 * s * s * h;
    o.layers as f64 * o.batch as f64 * per_row
}

/// One GPT-2 small block (pre-LN, hidden 768, 12 heads, FFN 3072) decoding one token with a
/// KV cache of `opts.seq` tokens (`opts.layers` must be 1).
///
/// Inputs: `x` f32 `[B, 1, 768]`, `past_k` and `past_v` f32 `[B, 12, P, 64]` (P = `opts.seq`).
/// Outputs: `y` f32 `[B, 1, 768]`, and the caches with this token appended, `k_all` and `v_all`
/// f32 `[B, 12, P + 1, 64]`.
///
/// Structure: LayerNorm (eps 1e-5); MatMul `[768, 2304]` + Add; Split the last axis into 3x768;
/// q, k, v Reshape `[B, 1, 12, 64]` and Transpose `[0, 2, 1, 3]`; Concat the caches on axis 2;
/// MatMul(q, Transpose(k_all, `[0, 1, 3, 2]`)), Mul 0.125, Softmax -1, MatMul v_all, Transpose
/// `[0, 2, 1, 3]`, Reshape `[B, 1, 768]`; MatMul + Add, Add x; LayerNorm; MatMul + Add, GeluTanh,
/// MatMul + Add, Add residual.
pub fn gpt2_decode(opts: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("gpt2-decode", opts, true)?;
    let (b, p) = (opts.batch, opts.seq);
    let mut g = Graph::new();
    let mut w = Weights::new(3000);
    let x = g.input("x", DType::F32, [b, 1, HIDDEN]);
    let past_k = g.input("past_k", DType::F32, [b, HEADS, p, HEAD_DIM]);
    let past_v = g.input("past_v", DType::F32, [b, HEADS, p, HEAD_DIM]);

    let h = w.layer_norm(&mut g, x, HIDDEN, 1e-5)?;
    let qkv = w.linear(&mut g, h, HIDDEN, 3 * HIDDEN)?;
    let mut heads = Vec::with_capacity(3);
    for t in g.split(qkv, -1, &[HIDDEN; 3])? {
        heads.push(split_heads(&mut g, t, b, 1, &[0, 2, 1, 3])?);
    }
    let (q, k, v) = (heads[0], heads[1], heads[2]);
    let k_all = named(&mut g, "k_all", Op::Concat { axis: 2 }, &[past_k, k])?;
    let v_all = named(&mut g, "v_all", Op::Concat { axis: 2 }, &[past_v, v])?;
    let kt = g.transpose(k_all, &[0, 1, 3, 2])?;
    let ctx = attention(&mut g, q, kt, v_all, None)?;
    let ctx = merge_heads(&mut g, ctx, b, 1)?;
    let attn = w.linear(&mut g, ctx, HIDDEN, HIDDEN)?;
    let h1 = g.add_(attn, x)?;

    let h2 = w.layer_norm(&mut g, h1, HIDDEN, 1e-5)?;
    let f = w.linear(&mut g, h2, HIDDEN, FFN)?;
    let f = g.unary(UnaryOp::GeluTanh, f)?;
    let f = w.linear(&mut g, f, FFN, HIDDEN)?;
    let y = named(&mut g, "y", Op::Binary(BinaryOp::Add), &[f, h1])?;
    g.set_outputs(&[y, k_all, v_all])?;

    let inputs = vec![
        Tensor::random(DType::F32, [b, 1, HIDDEN], 1),
        Tensor::random(DType::F32, [b, HEADS, p, HEAD_DIM], 2),
        Tensor::random(DType::F32, [b, HEADS, p, HEAD_DIM], 3),
    ];
    Ok((g, inputs))
}

/// `batch * (2*(768*2304 + 768² + 2*768*3072) + 4*(P+1)*768)`: the qkv, output and two FFN
/// projections of one token, plus `q @ kT` and `probs @ v` over the P + 1 cached tokens.
pub fn gpt2_decode_flops(o: &ModelOptions) -> f64 {
    let (h, f, t) = (HIDDEN as f64, FFN as f64, (o.seq + 1) as f64);
    o.batch as f64 * (2.0 * (3.0 * h * h + h * h + 2.0 * h * f) + 4.0 * t * h)
}

// ---- convolutional ----

/// Channels at a ResNet-50 stage-1 bottleneck's ends and in its middle.
const RESNET_WIDE: usize = 256;
const RESNET_NARROW: usize = 64;

/// `opts.layers` ResNet-50 stage-1 bottleneck blocks with identity shortcuts, on
/// `x` f32 `[B, 256, size, size]` (size = `opts.size`, 56 in ResNet-50).
///
/// Each block: Conv2d 1x1 256->64 (no bias), BatchNorm, Relu; Conv2d 3x3 64->64 pad 1,
/// BatchNorm, Relu; Conv2d 1x1 64->256, BatchNorm; Add x; Relu. Output: `y`, the input's shape.
pub fn resnet_bottleneck(opts: &ModelOptions) -> Result<GraphAndInputs> {
    check_options("resnet-bottleneck", opts, false)?;
    let (b, n) = (opts.batch, opts.size);
    let mut g = Graph::new();
    let mut w = Weights::new(2000);
    let mut x = g.input("x", DType::F32, [b, RESNET_WIDE, n, n]);
    for block in 0..opts.layers {
        let h = w.conv_bn(&mut g, x, RESNET_WIDE, RESNET_NARROW, 1)?;
        let h = g.relu(h)?;
        let h = w.conv_bn(&mut g, h, RESNET_NARROW, RESNET_NARROW, 3)?;
        let h = g.relu(h)?;
        let h = w.conv_bn(&mut g, h, RESNET_NARROW, RESNET_WIDE, 1)?;
        let h = g.add_(h, x)?;
        x = if block + 1 == opts.layers {
            named(&mut g, "y", Op::Unary(UnaryOp::Relu), &[h])?
        } else {
            g.relu(h)?
        };
    }
    g.set_outputs(&[x])?;
    let input = Tensor::random(DType::F32, [b, RESNET_WIDE, n, n], 1);
    Ok((g, vec![input]))
}

/// `layers * batch * 2 * size² * (256*64 + 9*64*64 + 64*256)`: the three convolutions.
pub fn resnet_bottleneck_flops(o: &ModelOptions) -> f64 {
    let (wide, narrow) = (RESNET_WIDE as f64, RESNET_NARROW as f64);
    let macs_per_pixel = wide * narrow + 9.0 * narrow * narrow + narrow * wide;
    let pixels = (o.size * o.size) as f64;
    o.layers as f64 * o.batch as f64 * 2.0 * pixels * macs_per_pixel
}
