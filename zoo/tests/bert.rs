//! BERT from the builder against the independent numpy reference's fixture
//! (zoo/tests/data/fixtures/bert.safetensors: a 2-layer, 32-wide BertForQuestionAnswering with
//! Hugging Face's names): the encoder's last hidden state, the SQuAD start and end logits and
//! the sentence embedding, on the CPU reference and on wgpu fused and unfused; and a weights
//! file of another model is one error listing every problem.

mod common;

use sfumato_core::{CpuDevice, Device, Tensor};
use sfumato_zoo::bert::{bert, BertConfig, BertHead};
use sfumato_zoo::params::Params;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    let dir = std::env::var_os("SFUMATO_ZOO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures"));
    dir.join("bert.safetensors")
}

fn load() -> (BertConfig, BTreeMap<String, Tensor>) {
    let path = fixture();
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cfg = meta.metadata().as_ref().unwrap()["config"].clone();
    let cfg = BertConfig::from_json(&cfg, "fixture").unwrap();
    let all = sfumato_zoo::weights::load_safetensors(&path).unwrap();
    (cfg, all)
}

fn weights(all: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    all.iter()
        .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max);
    eprintln!("{what}: worst |diff|/(1+|want|) = {worst:.2e}");
    assert!(worst <= 1e-4, "{what}: {worst}");
}

fn check(dev: &mut dyn Device) {
    let (cfg, all) = load();
    let inputs = vec![
        all["input.input_ids"].clone(),
        all["input.attention_mask"].clone(),
        all["input.token_type_ids"].clone(),
    ];
    let [b, s] = [inputs[0].dims()[0], inputs[0].dims()[1]];
    for (head, outs) in [
        (BertHead::Encoder, vec!["output.last_hidden_state"]),
        (
            BertHead::Squad,
            vec!["output.start_logits", "output.end_logits"],
        ),
        (
            BertHead::SentenceEmbedding,
            vec!["output.sentence_embedding"],
        ),
    ] {
        let mut p = Params::from_tensors("bert fixture", &fixture(), weights(&all));
        if head != BertHead::Squad {
            p.ignore("qa_outputs.");
        }
        let g = bert(&cfg, &mut p, b, s, head).unwrap();
        p.finish().unwrap();
        let got = dev.run(&g, &inputs).unwrap().outputs;
        for (o, name) in got.iter().zip(&outs) {
            close(o, &all[*name], &format!("{} {name}", dev.name()));
        }
    }
}

#[test]
fn bert_matches_the_numpy_fixture_on_the_cpu_reference() {
    check(&mut CpuDevice);
}

#[test]
fn bert_matches_the_numpy_fixture_on_wgpu_fused_and_unfused() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    check(&mut dev);
    dev.set_optimization(sfumato_core::Optimization::AsBuilt);
    check(&mut dev);
}

/// A checkpoint of another shape: every missing tensor, wrong shape and unexpected name in one
/// error.
#[test]
fn another_models_weights_are_one_error_listing_every_problem() {
    let (_, all) = load();
    let mut p = Params::from_tensors("bert-base", &fixture(), weights(&all));
    let _ = bert(&BertConfig::base(), &mut p, 1, 8, BertHead::Encoder).unwrap();
    let e = p.finish().unwrap_err().to_string();
    assert!(e.contains("bert.safetensors does not fit bert-base"), "{e}");
    assert!(
        e.contains(
            "'bert.embeddings.word_embeddings.weight' is [100, 32], the model needs [30522, 768]"
        ),
        "{e}"
    );
    assert!(
        e.contains("missing 'bert.encoder.layer.11.output.dense.weight'"),
        "{e}"
    );
    assert!(e.contains("unexpected 'qa_outputs.weight'"), "{e}");
}
