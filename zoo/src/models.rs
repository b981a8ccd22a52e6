//! The built-in models, built with the graph builder from deterministic random weights.

use sfumato_core::op::Gemm;
use sfumato_core::{DType, Error, Graph, Result, Shape, Tensor, ValueId};

/// The names [`by_name`] knows.
pub const MODELS: &[&str] = &["mlp"];

/// A model by name, with `batch` rows of seeded random input.
pub fn by_name(name: &str, batch: usize) -> Result<(Graph, Vec<Tensor>)> {
    match name {
        "mlp" => mlp(batch),
        _ => Err(Error::Graph(format!(
            "unknown model '{name}'; known models: {}",
            MODELS.join(", ")
        ))),
    }
}

/// A seeded uniform tensor in `[-scale, scale)`.
fn scaled_random(shape: &[usize], scale: f32, seed: u64) -> Result<Tensor> {
    let t = Tensor::random(DType::F32, Shape::from(shape), seed);
    let v: Vec<f32> = t.to_f32_vec().into_iter().map(|x| x * scale).collect();
    Tensor::from_f32(shape, v)
}

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

/// A small MNIST-shaped MLP: `x [batch, 784]` → Gemm 256 → LayerNorm → Relu → Gemm 128 → Relu
/// → Gemm 10 → Softmax. Returns the graph and one seeded random input.
pub fn mlp(batch: usize) -> Result<(Graph, Vec<Tensor>)> {
    if batch == 0 {
        return Err(Error::Graph("mlp: batch must be at least 1".into()));
    }
    const DIMS: [usize; 4] = [784, 256, 128, 10];
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
