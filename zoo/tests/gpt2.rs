//! GPT-2 against the independent numpy fixture (`tests/data/fixtures/gpt2.safetensors`, see its
//! README): the full-sequence logits, and the KV-cache generator's 12 greedy tokens and their
//! logits, on the CPU reference and on the WebGPU device; the tokenizer from the gpt2-vocab
//! package; the parameter counts of GPT-2 small and medium; and the errors a user can cause.

mod common;

use sfumato_core::{CpuDevice, Device, Tensor};
use sfumato_zoo::gpt2::{
    cache_len_for, generate, generate_with, gpt2_forward, gpt2_step, Generator, Gpt2Config,
};
use sfumato_zoo::params::Params;
use sfumato_zoo::text::Gpt2Tokenizer;
use sfumato_zoo::weights::{load_safetensors, safetensors_metadata};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures/gpt2.safetensors")
}

/// The fixture's config, weights (as `Params`), inputs and expected outputs.
struct Fixture {
    cfg: Gpt2Config,
    weights: BTreeMap<String, Tensor>,
    io: BTreeMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Self {
        let path = fixture_path();
        let meta = safetensors_metadata(&path).unwrap();
        let cfg = Gpt2Config::from_json(&meta["config"], "gpt2.safetensors").unwrap();
        let (io, weights) = load_safetensors(&path)
            .unwrap()
            .into_iter()
            .partition(|(k, _)| k.starts_with("input.") || k.starts_with("output."));
        Fixture { cfg, weights, io }
    }

    fn params(&self) -> Params {
        Params::from_tensors("gpt2 (fixture)", &fixture_path(), self.weights.clone())
    }

    fn prompt(&self) -> Vec<u32> {
        self.io["input.prompt"]
            .to_i64_vec()
            .iter()
            .map(|&t| t as u32)
            .collect()
    }
}

/// Largest `|got - want| / (1 + |want|)`; fails above 1e-4.
fn check_close(what: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs() / (1.0 + (w as f64).abs()))
        .fold(0.0, f64::max);
    assert!(worst <= 1e-4, "{what}: relative difference {worst:e}");
    worst
}

fn forward_matches(dev: &mut dyn Device) {
    let f = Fixture::load();
    let prompt = f.prompt();
    let mut p = f.params();
    let g = gpt2_forward(&f.cfg, &mut p, 1, prompt.len()).unwrap();
    p.finish().unwrap();
    let ids = Tensor::from_i64(
        [1, prompt.len()],
        prompt.iter().map(|&t| t as i64).collect(),
    )
    .unwrap();
    let out = dev.run(&g, &[ids]).unwrap();
    let want = &f.io["output.logits"];
    assert_eq!(out.outputs[0].dims(), &[1, prompt.len(), f.cfg.vocab_size]);
    let d = check_close("logits", &out.outputs[0].to_f32_vec(), &want.to_f32_vec());
    eprintln!("{}: full-sequence logits within {d:e}", dev.name());
}

fn generation_matches(dev: &mut dyn Device) {
    let f = Fixture::load();
    let want: Vec<u32> = f.io["output.generated"]
        .to_i64_vec()
        .iter()
        .map(|&t| t as u32)
        .collect();
    let mut p = f.params();
    let mut streamed = Vec::new();
    let prompt = f.prompt();
    let slots = cache_len_for(prompt.len() + want.len());
    let mut gen = Generator::new(&f.cfg, &mut p, slots).unwrap();
    let out = generate_with(dev, &mut gen, &prompt, want.len(), |t| streamed.push(t)).unwrap();
    p.finish().unwrap();
    // The device kept the cache: every fed position's keys and values were written back (no
    // zero rows), the slots after them were not (all zeros).
    let fed = gen.position();
    let hd = f.cfg.head_dim();
    for layer in [0, f.cfg.n_layer - 1] {
        for value in [false, true] {
            let c = gen.cached(dev, layer, value).unwrap().to_f32_vec();
            for (r, row) in c.chunks(hd).enumerate() {
                let zero = row.iter().all(|&x| x == 0.0);
                assert_eq!(zero, r % slots >= fed, "layer {layer} slot {}", r % slots);
            }
        }
    }
    assert!(gen.fill_cache(dev, slots + 1, 0).is_err());
    assert_eq!(out.tokens, want, "greedy tokens");
    assert_eq!(streamed, want, "streamed tokens");
    let want_logits = f.io["output.generated_logits"].to_f32_vec();
    let v = f.cfg.vocab_size;
    let mut worst = 0.0f64;
    for (j, l) in out.logits.iter().enumerate() {
        worst = worst.max(check_close(
            &format!("generated_logits[{j}]"),
            l,
            &want_logits[j * v..(j + 1) * v],
        ));
    }
    assert_eq!(out.steps.len(), f.prompt().len() + want.len() - 1);
    eprintln!(
        "{}: 12 tokens as the fixture, their logits within {worst:e}",
        dev.name()
    );
}

#[test]
fn fixture_logits_on_the_cpu_reference() {
    forward_matches(&mut CpuDevice);
}

#[test]
fn fixture_logits_on_wgpu() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    forward_matches(&mut dev);
}

#[test]
fn kv_cache_generation_reproduces_the_fixture_on_the_cpu_reference() {
    generation_matches(&mut CpuDevice);
}

#[test]
fn kv_cache_generation_reproduces_the_fixture_on_wgpu() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    generation_matches(&mut dev);
}

/// The hub checkpoint's names: no `transformer.` prefix, the causal-mask buffers, and a stored
/// `lm_head.weight` equal to `wte`: all accepted, nothing reported.
#[test]
fn hub_names_buffers_and_a_tied_lm_head_are_accepted() {
    let f = Fixture::load();
    let mut w: BTreeMap<String, Tensor> = f
        .weights
        .iter()
        .map(|(k, t)| (k.trim_start_matches("transformer.").to_string(), t.clone()))
        .collect();
    for i in 0..f.cfg.n_layer {
        w.insert(
            format!("h.{i}.attn.bias"),
            Tensor::from_f32([1], vec![1.0]).unwrap(),
        );
        w.insert(
            format!("h.{i}.attn.masked_bias"),
            Tensor::from_f32([1], vec![-1e4]).unwrap(),
        );
    }
    w.insert("lm_head.weight".into(), w["wte.weight"].clone());
    let mut p = Params::from_tensors("gpt2", &fixture_path(), w);
    gpt2_step(&f.cfg, &mut p, 1, 16).unwrap();
    p.finish().unwrap();

    // A file missing a tensor and with a wrong shape: both in one error.
    let mut w = f.weights.clone();
    w.remove("transformer.ln_f.bias");
    w.insert(
        "transformer.h.1.mlp.c_fc.weight".into(),
        Tensor::from_f32([2], vec![0.0; 2]).unwrap(),
    );
    let mut p = Params::from_tensors("gpt2", &fixture_path(), w);
    gpt2_forward(&f.cfg, &mut p, 1, 4).unwrap();
    let e = p.finish().unwrap_err().to_string();
    assert!(e.contains("missing 'transformer.ln_f.bias'"), "{e}");
    assert!(
        e.contains("'transformer.h.1.mlp.c_fc.weight' is [2]"),
        "{e}"
    );
}

#[test]
fn a_too_long_or_empty_prompt_is_an_error() {
    let f = Fixture::load();
    let mut p = f.params();
    let long = vec![1u32; 60];
    let e = generate(&mut CpuDevice, &f.cfg, &mut p, &long, 5, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("60 tokens plus 5 new tokens") && e.contains("64 positions"),
        "{e}"
    );
    let e = generate(&mut CpuDevice, &f.cfg, &mut p, &[], 5, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tokens"), "{e}");
    let e = generate(&mut CpuDevice, &f.cfg, &mut p, &[100], 1, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the vocabulary"), "{e}");
    let e = gpt2_forward(&f.cfg, &mut p, 1, 65).unwrap_err().to_string();
    assert!(e.contains("65 tokens is longer"), "{e}");
    // The generator refuses a step past its cache.
    let mut gen = Generator::new(&f.cfg, &mut f.params(), 1).unwrap();
    gen.step(&mut CpuDevice, 3).unwrap();
    assert!(gen.step(&mut CpuDevice, 3).is_err());
}

/// Parameter counts of the real models: the distinct tensors the builder asks for (the tied
/// head counted once with `wte`).
#[test]
fn gpt2_small_and_medium_parameter_counts() {
    for (cfg, want) in [
        (Gpt2Config::gpt2_small(), 124_439_808),
        (Gpt2Config::gpt2_medium(), 354_823_168),
    ] {
        let mut p = Params::random("gpt2", 0);
        let g = gpt2_step(&cfg, &mut p, 1, 16).unwrap();
        assert_eq!(p.requested_elements(), want, "{cfg:?}");
        drop(g);
    }
}

#[test]
fn the_gpt2_tokenizer_encodes_and_round_trips() {
    let Some(dir) = common::cached_weights("gpt2-vocab") else {
        return;
    };
    let tok = Gpt2Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.encode("Hello world").unwrap(), vec![15496, 995]);
    for text in ["Hello world", " The quick brown fox, 123 — naïve café!\n"] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

/// The step graph keeps PyTorch's export structure, which the fusion planner matches: per
/// layer LayerNorm, MatMul + Add, Split, Reshape + Transpose per head group, the cache
/// Concats, MatMul, Mul by the scale, Add of the mask, Softmax, MatMul, merge, and the MLP.
#[test]
fn the_step_graph_has_the_pytorch_export_structure() {
    let f = Fixture::load();
    let g = gpt2_step(&f.cfg, &mut f.params(), 1, 16).unwrap();
    let ops: Vec<&str> = g
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, sfumato_core::Op::Constant(_)))
        .map(|n| n.op.name())
        .collect();
    let layer = [
        "LayerNorm",
        "MatMul",
        "Add",
        "Split",
        "Reshape",
        "Transpose",
        "Reshape",
        "Transpose",
        "Reshape",
        "Transpose",
        "Concat",
        "Concat",
        "Transpose",
        "MatMul",
        "Mul",
        "Add",
        "Softmax",
        "MatMul",
        "Transpose",
        "Reshape",
        "MatMul",
        "Add",
        "Add",
        "LayerNorm",
        "MatMul",
        "Add",
        "GeluTanh",
        "MatMul",
        "Add",
        "Add",
        "Reshape",
        "Reshape",
    ];
    let mut want = vec!["Gather", "Gather", "Add"];
    for _ in 0..f.cfg.n_layer {
        want.extend(layer);
    }
    want.extend(["LayerNorm", "Reshape", "MatMul"]);
    assert_eq!(ops, want);
    let outs: Vec<&str> = g
        .outputs()
        .iter()
        .map(|&v| g.value(v).name.as_str())
        .collect();
    assert_eq!(
        outs,
        [
            "logits",
            "present.0.key",
            "present.0.value",
            "present.1.key",
            "present.1.value"
        ]
    );
}

/// On the WebGPU device the step graph's structure is fused: attention (scores, scale, mask,
/// softmax, context) and the projections' bias adds take far fewer dispatches than ops.
#[test]
fn the_step_graph_fuses_on_wgpu() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    let f = Fixture::load();
    let g = gpt2_step(&f.cfg, &mut f.params(), 1, 16).unwrap();
    let ops = g
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, sfumato_core::Op::Constant(_)))
        .count();
    let e = dev.explain(&g).unwrap();
    let fused = |label: &str| e.groups.iter().filter(|g| g.label == label).count();
    eprintln!("{ops} ops, {} dispatches", e.totals.dispatches);
    assert!(
        e.totals.dispatches < ops,
        "{} dispatches",
        e.totals.dispatches
    );
    // Per layer: scores with their scale and mask, the output projection with its residual,
    // the MLP's first projection with its GELU.
    assert_eq!(fused("MatMul+Mul+Add"), f.cfg.n_layer);
    assert_eq!(fused("MatMul+Add+Add"), 2 * f.cfg.n_layer);
    assert_eq!(fused("MatMul+Add+GeluTanh"), f.cfg.n_layer);
}

/// A stored `lm_head.weight` that differs from `wte` is used as the head: twice `wte` gives
/// twice the logits.
#[test]
fn an_untied_lm_head_is_used() {
    let f = Fixture::load();
    let mut w = f.weights.clone();
    let wte = &w["transformer.wte.weight"];
    let doubled: Vec<f32> = wte.to_f32_vec().iter().map(|x| 2.0 * x).collect();
    let lm = Tensor::from_f32(wte.dims().to_vec(), doubled).unwrap();
    w.insert("lm_head.weight".into(), lm);
    let mut p = Params::from_tensors("gpt2", &fixture_path(), w);
    let prompt = f.prompt();
    let g = gpt2_forward(&f.cfg, &mut p, 1, prompt.len()).unwrap();
    p.finish().unwrap();
    let ids = Tensor::from_i64(
        [1, prompt.len()],
        prompt.iter().map(|&t| t as i64).collect(),
    )
    .unwrap();
    let got = CpuDevice.run(&g, &[ids]).unwrap().outputs[0].to_f32_vec();
    let want: Vec<f32> = f.io["output.logits"]
        .to_f32_vec()
        .iter()
        .map(|x| 2.0 * x)
        .collect();
    check_close("untied logits", &got, &want);
}
