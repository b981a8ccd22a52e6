//! Where a model's parameters come from: a checkpoint's tensors under their usual names (one
//! mapping per model family, written in the family's module as the names it asks for), or a
//! seeded random initialisation when there are no weights, so every model runs for benchmarking.
//!
//! A model asks for each tensor by its checkpoint name and the shape the checkpoint stores it
//! in. With weights, a missing tensor or a wrong shape is recorded (and zeros stand in, so the
//! build can go on and find every problem); [`Params::finish`] then reports all of them in one
//! error, together with every tensor of the file the model never asked for.

use crate::weights::{self, WeightsError};
use sfumato_core::{DType, Graph, Shape, Tensor, ValueId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How a tensor is initialised when there are no weights: every init keeps activations near
/// unit scale, so a random model's outputs are finite and not degenerate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in ±1/√fan_in (PyTorch's default for linear and conv weights).
    FanIn(usize),
    /// Uniform in `[center - spread, center + spread)`.
    Uniform { center: f32, spread: f32 },
}

impl Init {
    /// Norm scales: 1 ± 0.1.
    pub const SCALE: Init = Init::Uniform {
        center: 1.0,
        spread: 0.1,
    };
    /// Biases and shifts: ±0.05.
    pub const BIAS: Init = Init::Uniform {
        center: 0.0,
        spread: 0.05,
    };
    /// Batch-norm running variances: [0.5, 1.5).
    pub const VAR: Init = Init::Uniform {
        center: 1.0,
        spread: 0.5,
    };
    /// Embedding tables: ±0.5.
    pub const EMBED: Init = Init::Uniform {
        center: 0.0,
        spread: 0.5,
    };
}

enum Source {
    Random {
        seed: u64,
    },
    Weights {
        path: PathBuf,
        tensors: BTreeMap<String, Tensor>,
    },
}

/// A model's parameter source; see the module docs.
pub struct Params {
    source: Source,
    model: String,
    /// Every tensor the model asked for, with its element count.
    used: BTreeMap<String, usize>,
    /// Asked-for tensors that are buffers (running statistics, anchors), not learned parameters.
    buffers: BTreeSet<String>,
    ignored: Vec<String>,
    problems: Vec<String>,
}

impl Params {
    /// Seeded random parameters: each tensor's values depend on the seed and its name only.
    pub fn random(model: &str, seed: u64) -> Self {
        Params {
            source: Source::Random { seed },
            model: model.into(),
            used: BTreeMap::new(),
            buffers: BTreeSet::new(),
            ignored: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Parameters from a checkpoint's tensors (read from `path`, named in errors).
    pub fn from_tensors(model: &str, path: &Path, tensors: BTreeMap<String, Tensor>) -> Self {
        Params {
            source: Source::Weights {
                path: path.into(),
                tensors,
            },
            ..Params::random(model, 0)
        }
    }

    /// Parameters from a safetensors file.
    pub fn from_safetensors(model: &str, path: &Path) -> Result<Self, WeightsError> {
        Ok(Params::from_tensors(
            model,
            path,
            weights::load_safetensors(path)?,
        ))
    }

    /// Whether these are a checkpoint's tensors (not a random init).
    pub fn has_weights(&self) -> bool {
        matches!(self.source, Source::Weights { .. })
    }

    /// Whether the checkpoint has a tensor of this name (false for a random init).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Weights { tensors, .. } => tensors.contains_key(name),
            Source::Random { .. } => false,
        }
    }

    /// The checkpoint's names (empty for a random init).
    pub fn names(&self) -> Vec<String> {
        match &self.source {
            Source::Weights { tensors, .. } => tensors.keys().cloned().collect(),
            Source::Random { .. } => Vec::new(),
        }
    }

    /// The parameter count of what the model asked for so far: the elements of each distinct
    /// tensor name, at the shape asked for (a tied weight read twice counts once).
    pub fn requested_elements(&self) -> usize {
        self.used.values().sum()
    }

    /// Tensors whose names start with `prefix` are in the file but deliberately unused (a
    /// pooler the model does not run, batch-norm counters): not reported as unexpected.
    pub fn ignore(&mut self, prefix: &str) {
        self.ignored.push(prefix.into());
    }

    /// The tensor `name` as the checkpoint stores it (`shape`), as f32. A missing tensor or a
    /// wrong shape is recorded for [`Self::finish`] and zeros stand in.
    pub fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Tensor {
        self.used.insert(name.into(), shape.iter().product());
        match &self.source {
            Source::Random { seed } => random(shape, init, *seed ^ fnv(name)),
            Source::Weights { tensors, .. } => match tensors.get(name) {
                None => {
                    self.problems.push(format!("missing '{name}' {shape:?}"));
                    Tensor::zeros(DType::F32, shape.to_vec())
                }
                Some(t) if t.dims() != shape => {
                    self.problems.push(format!(
                        "'{name}' is {:?}, the model needs {shape:?}",
                        t.dims()
                    ));
                    Tensor::zeros(DType::F32, shape.to_vec())
                }
                Some(t) if t.dtype() == DType::F32 => t.clone(),
                Some(t) if t.dtype().is_float() => {
                    Tensor::from_f32(t.dims().to_vec(), t.to_f32_vec())
                        .unwrap_or_else(|_| Tensor::zeros(DType::F32, shape.to_vec()))
                }
                Some(t) => {
                    self.problems
                        .push(format!("'{name}' is {}, the model needs f32", t.dtype()));
                    Tensor::zeros(DType::F32, shape.to_vec())
                }
            },
        }
    }

    /// Mark the tensor `name` as a buffer (batch-norm running statistics, YOLO anchors): the
    /// model reads it, but it is not a learned parameter, so [`Self::parameter_count`] leaves
    /// it out, as PyTorch's `model.parameters()` does.
    pub fn buffer(&mut self, name: &str) {
        self.buffers.insert(name.into());
    }

    /// How many learned values the model asked for so far: the element counts of every tensor
    /// requested, less buffers. After a build it is the model's parameter count as PyTorch
    /// counts it (`sum(p.numel() for p in model.parameters())`), whether the values come from
    /// a checkpoint or a random init.
    pub fn parameter_count(&self) -> usize {
        self.used
            .iter()
            .filter(|(name, _)| !self.buffers.contains(*name))
            .map(|(_, n)| n)
            .sum()
    }

    /// [`Self::tensor`] as a graph constant.
    pub fn constant(
        &mut self,
        g: &mut Graph,
        name: &str,
        shape: &[usize],
        init: Init,
    ) -> sfumato_core::Result<ValueId> {
        let t = self.tensor(name, shape, init);
        g.constant(t)
    }

    /// A PyTorch `Linear` weight, stored `[out, in]`, as the `[in, out]` constant a MatMul takes.
    pub fn linear_weight(
        &mut self,
        g: &mut Graph,
        name: &str,
        fan_in: usize,
        fan_out: usize,
    ) -> sfumato_core::Result<ValueId> {
        let t = self.tensor(name, &[fan_out, fan_in], Init::FanIn(fan_in));
        g.constant(transpose2(&t)?)
    }

    /// Every problem found: missing tensors, wrong shapes or dtypes, and the file's tensors the
    /// model never asked for (unless ignored), in one error.
    pub fn finish(self) -> Result<(), WeightsError> {
        let Source::Weights { path, tensors } = self.source else {
            return Ok(());
        };
        let unused = tensors.keys().filter(|n| !self.used.contains_key(*n));
        weights::verdict(&path, &self.model, self.problems, unused, |n| {
            self.ignored.iter().any(|p| n.starts_with(p.as_str()))
        })
    }
}

/// A 2-D tensor transposed (f32).
pub fn transpose2(t: &Tensor) -> sfumato_core::Result<Tensor> {
    let (r, c) = match t.dims() {
        [r, c] => (*r, *c),
        d => {
            return Err(sfumato_core::Error::Tensor(format!(
                "transpose2 needs a matrix, got {d:?}"
            )))
        }
    };
    let v = t.to_f32_vec();
    let mut out = vec![0.0f32; r * c];
    for (i, row) in v.chunks_exact(c.max(1)).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            out[j * r + i] = x;
        }
    }
    Tensor::from_f32([c, r], out)
}

/// A seeded tensor of `shape` for `init`.
fn random(shape: &[usize], init: Init, seed: u64) -> Tensor {
    let (center, spread) = match init {
        Init::FanIn(n) => (0.0, 1.0 / (n.max(1) as f32).sqrt()),
        Init::Uniform { center, spread } => (center, spread),
    };
    let t = Tensor::random(DType::F32, Shape::from(shape.to_vec()), seed);
    let v = t
        .to_f32_vec()
        .into_iter()
        .map(|x| center + x * spread)
        .collect();
    Tensor::from_f32(shape.to_vec(), v)
        .unwrap_or_else(|_| Tensor::zeros(DType::F32, shape.to_vec()))
}

/// FNV-1a of a name: each tensor's seed, independent of the order tensors are asked for.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_params_depend_on_name_not_order() {
        let mut a = Params::random("m", 7);
        let x1 = a.tensor("x", &[3], Init::BIAS);
        let _ = a.tensor("y", &[3], Init::BIAS);
        let mut b = Params::random("m", 7);
        let _ = b.tensor("y", &[3], Init::BIAS);
        assert_eq!(b.tensor("x", &[3], Init::BIAS), x1);
        assert!(a.finish().is_ok());
    }

    #[test]
    fn parameter_count_sums_requests_once_and_skips_buffers() {
        let mut p = Params::random("m", 1);
        let _ = p.tensor("w", &[2, 3], Init::FanIn(3));
        let _ = p.tensor("w", &[2, 3], Init::FanIn(3));
        let _ = p.tensor("running_mean", &[4], Init::BIAS);
        p.buffer("running_mean");
        assert_eq!(p.parameter_count(), 6);
    }

    #[test]
    fn finish_lists_every_problem() {
        let mut w = BTreeMap::new();
        w.insert("a".to_string(), Tensor::zeros(DType::F32, vec![2]));
        w.insert("b".to_string(), Tensor::zeros(DType::F32, vec![3]));
        w.insert("extra".to_string(), Tensor::zeros(DType::F32, vec![1]));
        w.insert("pooler.w".to_string(), Tensor::zeros(DType::F32, vec![1]));
        let mut p = Params::from_tensors("m", Path::new("f.safetensors"), w);
        p.ignore("pooler.");
        let _ = p.tensor("a", &[2], Init::BIAS);
        let _ = p.tensor("b", &[4], Init::BIAS);
        let _ = p.tensor("c", &[1], Init::BIAS);
        let e = p.finish().unwrap_err().to_string();
        assert!(e.contains("missing 'c'"), "{e}");
        assert!(e.contains("'b' is [3], the model needs [4]"), "{e}");
        assert!(e.contains("unexpected 'extra'"), "{e}");
        assert!(!e.contains("pooler"), "{e}");
        assert!(!e.contains("'a'"), "{e}");
    }

    #[test]
    fn transpose2_moves_rows_to_columns() {
        let t = Tensor::from_f32([2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let u = transpose2(&t).unwrap();
        assert_eq!(u.dims(), &[3, 2]);
        assert_eq!(u.to_f32_vec(), vec![1., 4., 2., 5., 3., 6.]);
    }
}
