//! Weights from files in the layouts users have: Hugging Face safetensors (memory-mapped, the
//! `safetensors` crate), checked against what a model expects in one pass, so a wrong file is one
//! error that lists every missing and unexpected tensor and every shape mismatch.

use sfumato_core::{Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

/// Why weights could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{path}: tensor '{name}' is {dtype}, which Sfumato does not load")]
    Dtype {
        path: String,
        name: String,
        dtype: String,
    },
    #[error("{path} does not fit {model}: {}", .problems.join("; "))]
    Mismatch {
        path: String,
        model: String,
        problems: Vec<String>,
    },
}

/// A safetensors file's `__metadata__` (string keys and values; empty when it has none).
pub fn safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>, WeightsError> {
    let file_err = |msg: String| WeightsError::File {
        path: path.display().to_string(),
        msg,
    };
    let file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
    // SAFETY: as in `load_safetensors`: the map is only read while this function runs.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| file_err(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
    Ok(meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// A safetensors file's tensors by name, memory-mapped while read (f32, f16 and bf16 keep their
/// dtype; integer tensors become i64).
pub fn load_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let file_err = |msg: String| WeightsError::File {
        path: path.display().to_string(),
        msg,
    };
    let file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
    // SAFETY: the map is read only while this function runs, and a file changed under it gives
    // wrong bytes (checked below by safetensors' own header and length checks), not UB in safe
    // code paths we rely on.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| file_err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&map)
        .map_err(|e| file_err(format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<usize> = view.shape().to_vec();
        let bytes = view.data();
        let data = match view.dtype() {
            safetensors::Dtype::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            safetensors::Dtype::F16 => TensorData::F16(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            safetensors::Dtype::BF16 => TensorData::BF16(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            safetensors::Dtype::I64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            other => {
                return Err(WeightsError::Dtype {
                    path: path.display().to_string(),
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let t = Tensor::new(shape, data).map_err(|e| file_err(format!("tensor '{name}': {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Check loaded weights against what a model expects (name → shape): every missing tensor,
/// every shape mismatch and every unexpected tensor (not in `expected` nor `ignored`, prefixes of
/// names a model deliberately leaves out, such as a pooler it does not use), in one error.
pub fn check(
    weights: &BTreeMap<String, Tensor>,
    expected: &BTreeMap<String, Vec<usize>>,
    ignored: &[&str],
    path: &Path,
    model: &str,
) -> Result<(), WeightsError> {
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match weights.get(name) {
            None => problems.push(format!("missing '{name}' {shape:?}")),
            Some(t) if t.dims() != shape.as_slice() => problems.push(format!(
                "'{name}' is {:?}, the model needs {shape:?}",
                t.dims()
            )),
            Some(_) => {}
        }
    }
    let unused = weights.keys().filter(|n| !expected.contains_key(*n));
    verdict(path, model, problems, unused, |n| {
        ignored.iter().any(|p| n.starts_with(p))
    })
}

/// The one error for a checkpoint that does not fit a model: the `problems` found so far, then
/// each of the file's tensors the model has no use for (`unused`) unless `ignored`.
pub(crate) fn verdict<'a>(
    path: &Path,
    model: &str,
    mut problems: Vec<String>,
    unused: impl Iterator<Item = &'a String>,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), WeightsError> {
    problems.extend(
        unused
            .filter(|n| !ignored(n))
            .map(|n| format!("unexpected '{n}'")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(WeightsError::Mismatch {
            path: path.display().to_string(),
            model: model.into(),
            problems,
        })
    }
}
