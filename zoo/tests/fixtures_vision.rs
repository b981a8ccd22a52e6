//! The vision families against the independent numpy reference (tests/data/fixtures, written by
//! scripts/make-zoo-fixtures.py): ResNet-50 and -18 (torchvision structure), ViT (Hugging Face
//! `ViTForImageClassification`) and YOLOv5 (Ultralytics v6, boxes decoded in the graph) load
//! their fixture's checkpoint under its standard names with nothing missing or left over, and
//! reproduce its outputs on the CPU reference and on the WebGPU device, fused and as built,
//! within |diff| <= tol * (1 + |want|) (1e-4 for ViT, 1e-3 for the conv nets, as the fixture
//! README sets them).
//!
//! The standard configs build from a seeded random init with torchvision's and Ultralytics'
//! parameter counts, run to finite outputs of the right shape, and a checkpoint of the wrong
//! model is one error that lists every missing and unexpected tensor.

use sfumato_core::{CpuDevice, Device, Graph, Optimization, Tensor};
use sfumato_zoo::params::Params;
use sfumato_zoo::resnet::{self, ResNetConfig};
use sfumato_zoo::vit::{self, ViTConfig, ViTOutputs};
use sfumato_zoo::yolov5::{self, YoloV5Config};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(format!("{name}.safetensors"))
}

/// A fixture: its parameters (the `input.*` and `output.*` tensors set aside), its JSON config
/// (the safetensors metadata's `config`), its inputs and its expected outputs by name.
struct Fixture {
    params: Params,
    config: String,
    inputs: BTreeMap<String, Tensor>,
    outputs: BTreeMap<String, Tensor>,
}

fn fixture(name: &str, model: &str) -> Fixture {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let config = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .unwrap_or_else(|| panic!("{name}: no config in the metadata"))
        .clone();
    let all = sfumato_zoo::weights::load_safetensors(&path).unwrap();
    let pick = |prefix: &str| -> BTreeMap<String, Tensor> {
        all.iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
            .collect()
    };
    let (inputs, outputs) = (pick("input."), pick("output."));
    let mut params = Params::from_safetensors(model, &path).unwrap();
    params.ignore("input.");
    params.ignore("output.");
    Fixture {
        params,
        config,
        inputs,
        outputs,
    }
}

/// The largest |got - want| / (1 + |want|) over the outputs named `names` (in the graph's
/// output order), after checking each is within `tol`.
fn compare(
    what: &str,
    got: &[Tensor],
    want: &BTreeMap<String, Tensor>,
    names: &[&str],
    tol: f64,
) -> f64 {
    assert_eq!(got.len(), names.len(), "{what}: output count");
    let mut worst = 0.0f64;
    for (g, name) in got.iter().zip(names) {
        let w = &want[*name];
        assert_eq!(g.dims(), w.dims(), "{what}: {name} shape");
        let (gv, wv) = (g.to_f64_vec(), w.to_f64_vec());
        let mut at = (0usize, 0.0f64);
        for (i, (a, b)) in gv.iter().zip(&wv).enumerate() {
            let d = (a - b).abs() / (1.0 + b.abs());
            if d > at.1 || d.is_nan() {
                at = (i, if d.is_nan() { f64::INFINITY } else { d });
            }
        }
        assert!(
            at.1 <= tol,
            "{what}: {name}[{}] is {}, want {} (|diff| / (1 + |want|) = {:e} > {tol:e})",
            at.0,
            gv[at.0],
            wv[at.0],
            at.1
        );
        eprintln!("{what}: {name} max |diff| / (1 + |want|) = {:e}", at.1);
        worst = worst.max(at.1);
    }
    worst
}

/// A fixture model: its graph, its inputs in graph order, the names of its outputs, and the
/// tolerance.
struct Case {
    name: &'static str,
    graph: Graph,
    inputs: Vec<Tensor>,
    outputs: BTreeMap<String, Tensor>,
    names: Vec<&'static str>,
    tol: f64,
}

fn resnet_case(file: &'static str) -> Case {
    let mut f = fixture(file, file);
    let cfg = ResNetConfig::from_json(&f.config, file).unwrap();
    let batch = f.inputs["pixels"].dims()[0];
    let graph = resnet::resnet(&cfg, &mut f.params, batch).unwrap();
    f.params.finish().unwrap();
    Case {
        name: file,
        graph,
        inputs: vec![f.inputs.remove("pixels").unwrap()],
        outputs: f.outputs,
        names: vec!["logits"],
        tol: 1e-3,
    }
}

fn vit_case() -> Case {
    let mut f = fixture("vit", "vit");
    let cfg = ViTConfig::from_json(&f.config, "vit").unwrap();
    let batch = f.inputs["pixels"].dims()[0];
    let graph = vit::vit(&cfg, &mut f.params, batch, ViTOutputs::LogitsAndHidden).unwrap();
    f.params.finish().unwrap();
    Case {
        name: "vit",
        graph,
        inputs: vec![f.inputs.remove("pixels").unwrap()],
        outputs: f.outputs,
        names: vec!["logits", "last_hidden_state"],
        tol: 1e-4,
    }
}

fn yolov5_case() -> Case {
    let mut f = fixture("yolov5", "yolov5");
    let cfg = YoloV5Config::from_json(&f.config, "yolov5").unwrap();
    let batch = f.inputs["pixels"].dims()[0];
    let graph = yolov5::yolov5(&cfg, &mut f.params, batch).unwrap();
    f.params.finish().unwrap();
    Case {
        name: "yolov5",
        graph,
        inputs: vec![f.inputs.remove("pixels").unwrap()],
        outputs: f.outputs,
        names: vec!["predictions"],
        tol: 1e-3,
    }
}

fn cases() -> Vec<Case> {
    vec![
        resnet_case("resnet"),
        resnet_case("resnet18"),
        vit_case(),
        yolov5_case(),
    ]
}

fn check_cpu(c: Case) {
    let out = CpuDevice.run(&c.graph, &c.inputs).unwrap();
    compare(
        &format!("{} cpu", c.name),
        &out.outputs,
        &c.outputs,
        &c.names,
        c.tol,
    );
}

#[test]
fn resnet50_fixture_matches_on_the_cpu_reference() {
    check_cpu(resnet_case("resnet"));
}

#[test]
fn resnet18_fixture_matches_on_the_cpu_reference() {
    check_cpu(resnet_case("resnet18"));
}

#[test]
fn vit_fixture_matches_on_the_cpu_reference() {
    check_cpu(vit_case());
}

#[test]
fn yolov5_fixture_matches_on_the_cpu_reference() {
    check_cpu(yolov5_case());
}

/// Every fixture on one WebGPU device, fused (passes and fusion) and as built (one kernel per
/// op); every failure is collected so one run shows them all.
#[test]
fn vision_fixtures_match_on_wgpu_fused_and_as_built() {
    let Some(mut dev) = sfumato_wgpu::test_device() else {
        return;
    };
    let mut failures = Vec::new();
    for c in cases() {
        let mut dispatches = Vec::new();
        for opt in [Optimization::PassesAndFusion, Optimization::AsBuilt] {
            dev.set_optimization(opt);
            let what = format!("{} wgpu {opt:?}", c.name);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let out = dev
                    .run(&c.graph, &c.inputs)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                dispatches.push(out.profile.entries.len());
                compare(&what, &out.outputs, &c.outputs, &c.names, c.tol)
            }));
            if let Err(e) = result {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{what}: {msg}"));
            }
        }
        eprintln!("{}: {dispatches:?} dispatches (fused, as built)", c.name);
        if let [fused, built] = dispatches[..] {
            if fused >= built {
                failures.push(format!(
                    "{}: fusion did not cut the dispatches ({fused} fused, {built} as built)",
                    c.name
                ));
            }
        }
        dev.trim();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn yolov5_layers_are_the_fixtures_parse_model_rows() {
    let f = fixture("yolov5", "yolov5");
    let cfg = YoloV5Config::from_json(&f.config, "yolov5").unwrap();
    let want: serde_json::Value = serde_json::from_str(&f.config).unwrap();
    let want = want["layers"].as_array().unwrap();
    let got = yolov5::layers(&cfg);
    assert_eq!(got.len(), want.len());
    for (i, (l, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(&l.to_json(&cfg.anchors), w, "layer {i}");
    }
}

#[test]
fn yolov5_anchors_in_the_checkpoint_must_agree_with_the_config() {
    let mut f = fixture("yolov5", "yolov5");
    let mut cfg = YoloV5Config::from_json(&f.config, "yolov5").unwrap();
    cfg.anchors[1][0] = 31.0;
    let e = yolov5::yolov5(&cfg, &mut f.params, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.24.anchors") && e.contains("level 1 anchor 0"),
        "{e}"
    );
}

#[test]
fn a_checkpoint_of_the_other_resnet_is_one_error_listing_everything() {
    let small = |c: ResNetConfig| ResNetConfig {
        width: 8,
        num_classes: 10,
        image_size: 32,
        ..c
    };
    // ResNet-18's tensors into ResNet-50: every name of ResNet-18 is one ResNet-50 has too, so
    // the error lists what is missing (33 conv + BN groups of 5 tensors) and the wrong shapes.
    let mut f = fixture("resnet18", "resnet50");
    resnet::resnet(&small(sfumato_zoo::resnet50()), &mut f.params, 2).unwrap();
    let e = f.params.finish().unwrap_err().to_string();
    for part in [
        "does not fit resnet50",
        "missing 'layer1.0.conv3.weight'",
        "missing 'layer1.0.downsample.0.weight'",
        "missing 'layer3.5.bn3.running_var'",
        "'layer1.0.conv1.weight' is [8, 8, 3, 3], the model needs [8, 8, 1, 1]",
        "'fc.weight' is [10, 64], the model needs [10, 256]",
    ] {
        assert!(e.contains(part), "no {part:?} in: {e}");
    }
    assert_eq!(e.matches("missing '").count(), 33 * 5, "{e}");
    assert_eq!(e.matches("unexpected '").count(), 0, "{e}");

    // ResNet-50's into ResNet-18: the 33 groups ResNet-18 has no use for are unexpected (with
    // their num_batches_tracked), nothing is missing.
    let mut f = fixture("resnet", "resnet18");
    resnet::resnet(&small(sfumato_zoo::resnet18()), &mut f.params, 2).unwrap();
    let e = f.params.finish().unwrap_err().to_string();
    for part in [
        "does not fit resnet18",
        "unexpected 'layer1.0.conv3.weight'",
        "unexpected 'layer3.5.bn1.num_batches_tracked'",
        "'layer1.0.conv1.weight' is [8, 8, 1, 1], the model needs [8, 8, 3, 3]",
    ] {
        assert!(e.contains(part), "no {part:?} in: {e}");
    }
    assert_eq!(e.matches("unexpected '").count(), 33 * 6, "{e}");
    assert_eq!(e.matches("missing '").count(), 0, "{e}");
}

/// A random init of `build`, its parameter count, and a run on the CPU reference where `run`.
fn random_model(
    what: &str,
    build: impl FnOnce(&mut Params) -> sfumato_zoo::ZooResult<Graph>,
) -> (usize, Graph) {
    let mut p = Params::random(what, 7);
    let g = build(&mut p).unwrap_or_else(|e| panic!("{what}: {e}"));
    let n = p.parameter_count();
    p.finish().unwrap();
    eprintln!("{what}: {n} parameters");
    (n, g)
}

fn run_finite(what: &str, g: &Graph, want: &[usize]) {
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| Tensor::random(g.dtype(v), g.shape(v).clone(), 100 + i as u64))
        .collect();
    let out = CpuDevice.run(g, &inputs).unwrap();
    let y = &out.outputs[0];
    assert_eq!(y.dims(), want, "{what}");
    let v = y.to_f64_vec();
    assert!(v.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    let spread =
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.0, "{what}: constant output");
}

#[test]
fn resnet_standard_configs_have_torchvisions_parameter_counts() {
    // The parameter count does not depend on the image size: build at 64x64 to run cheaply.
    let small = |c: ResNetConfig| ResNetConfig {
        image_size: 64,
        ..c
    };
    let (n, g) = random_model("resnet50", |p| {
        resnet::resnet(&small(sfumato_zoo::resnet50()), p, 1)
    });
    assert_eq!(n, 25_557_032);
    run_finite("resnet50", &g, &[1, 1000]);
    let (n, g) = random_model("resnet18", |p| {
        resnet::resnet(&small(sfumato_zoo::resnet18()), p, 1)
    });
    assert_eq!(n, 11_689_512);
    run_finite("resnet18", &g, &[1, 1000]);
}

#[test]
fn vit_b16_has_the_published_parameter_count() {
    let (n, _) = random_model("vit_b16", |p| {
        vit::vit(&sfumato_zoo::vit_b16(), p, 1, ViTOutputs::Logits)
    });
    assert_eq!(n, 86_567_656);
    // A run at ViT-B/16's widths with two layers on a 64x64 image (16 patches) stays cheap.
    let cfg = ViTConfig {
        num_hidden_layers: 2,
        image_size: 64,
        ..sfumato_zoo::vit_b16()
    };
    let (_, g) = random_model("vit_b16 (2 layers, 64x64)", |p| {
        vit::vit(&cfg, p, 2, ViTOutputs::LogitsAndHidden)
    });
    run_finite("vit_b16 (2 layers, 64x64)", &g, &[2, 1000]);
}

#[test]
fn yolov5_standard_configs_have_ultralytics_parameter_counts() {
    let small = |c: YoloV5Config| YoloV5Config {
        image_size: 128,
        ..c
    };
    let (n, g) = random_model("yolov5s", |p| {
        yolov5::yolov5(&small(sfumato_zoo::yolov5s()), p, 1)
    });
    assert_eq!(n, 7_235_389);
    // 3 anchors x (16² + 8² + 4²) cells at 128x128.
    run_finite("yolov5s", &g, &[1, 3 * (256 + 64 + 16), 85]);
    let (n, _) = random_model("yolov5n", |p| {
        yolov5::yolov5(&small(sfumato_zoo::yolov5n()), p, 1)
    });
    assert_eq!(n, 1_872_157);
}
