//! Tasks end to end, on any [`Device`]: text in, numbers out. Each task loads its model's
//! weights, builds the graph, runs it and post-processes the outputs; the CLI is a thin layer
//! over these functions.

use crate::bert::{self, BertConfig, BertHead};
use crate::error::{Result, ZooError};
use crate::gpt2::{self, Generated, Gpt2Config};
use crate::params::Params;
use crate::text::{Gpt2Tokenizer, TextTokenizer};
use sfumato_core::Device;
use std::path::Path;

/// Sentence embeddings from a sentence-transformers BERT folder (`config.json`,
/// `model.safetensors`, `tokenizer.json`, as `sfumato zoo fetch all-minilm-l6-v2` leaves it):
/// one L2-normalised row per sentence, in order.
pub fn embed(device: &mut dyn Device, dir: &Path, sentences: &[String]) -> Result<Vec<Vec<f32>>> {
    if sentences.is_empty() {
        return Err(ZooError::Input("embed: give at least one sentence".into()));
    }
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ZooError::io(&cfg_path, e))?;
    let cfg = BertConfig::from_json(&text, &cfg_path.display().to_string())?;
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let enc = tok.encode(sentences)?;
    let mut params =
        Params::from_safetensors("bert (sentence embedding)", &dir.join("model.safetensors"))?;
    let graph = bert::bert(
        &cfg,
        &mut params,
        sentences.len(),
        enc.seq(),
        BertHead::SentenceEmbedding,
    )?;
    params.finish()?;
    let out = device.run(&graph, &enc.inputs())?;
    let e = out
        .outputs
        .first()
        .ok_or_else(|| ZooError::Input("the model returned no output".into()))?;
    let h = cfg.hidden_size;
    Ok(e.to_f32_vec().chunks(h).map(|r| r.to_vec()).collect())
}

/// What [`generate_text`] produced.
#[derive(Clone, Debug)]
pub struct TextGeneration {
    /// The prompt's tokens.
    pub prompt_tokens: Vec<u32>,
    /// The new tokens, their logits and the steps' times.
    pub generated: Generated,
    /// The new tokens as text.
    pub text: String,
}

/// Greedy text generation with GPT-2: `prompt` tokenized with `tokenizer`, `max_new` tokens
/// from [`gpt2::generate`] (a KV-cache step graph on `device`), each token's text handed to
/// `on_text` as soon as it is complete (a character split over byte-level tokens waits for its
/// last byte). Weights come from `params`, checked with [`Params::finish`] before the first
/// step.
pub fn generate_text(
    device: &mut dyn Device,
    cfg: &Gpt2Config,
    mut params: Params,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    max_new: usize,
    mut on_text: impl FnMut(&str),
) -> Result<TextGeneration> {
    let prompt_tokens = tokenizer.encode(prompt)?;
    if prompt_tokens.is_empty() {
        return Err(ZooError::Input(
            "generate: the prompt encodes to no tokens".into(),
        ));
    }
    gpt2::check_prompt(cfg, &prompt_tokens, max_new)?;
    // Build the step graph and check the weights before the first step, so a wrong file fails
    // before any work.
    let cache_len = gpt2::cache_len_for(prompt_tokens.len() + max_new);
    let mut gen = gpt2::Generator::new(cfg, &mut params, cache_len)?;
    params.finish()?;
    let mut tokens = Vec::new();
    let mut shown = 0;
    let mut failed = None;
    let generated = gpt2::generate_with(device, &mut gen, &prompt_tokens, max_new, |t| {
        tokens.push(t);
        match tokenizer.decode(&tokens) {
            // A character whose bytes span tokens decodes to U+FFFD until its last byte comes.
            Ok(text) if !text.ends_with('\u{fffd}') => {
                if let Some(new) = text.get(shown..) {
                    on_text(new);
                }
                shown = text.len();
            }
            Ok(_) => {}
            Err(e) => failed = failed.take().or(Some(e)),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let text = tokenizer.decode(&generated.tokens)?;
    if let Some(rest) = text.get(shown..).filter(|r| !r.is_empty()) {
        on_text(rest);
    }
    Ok(TextGeneration {
        prompt_tokens,
        generated,
        text,
    })
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// The 1,000 ImageNet-1k class names, in class order (`zoo/data/imagenet-classes.txt`; each
/// line is the full entry, synonyms after commas).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("../data/imagenet-classes.txt")
        .lines()
        .collect()
}

/// One class of a classification: index, name (the text before the first comma), probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    pub index: usize,
    pub name: String,
    pub probability: f32,
}

/// The `k` most probable classes of a row of logits (softmax over the row).
pub fn top_k(logits: &[f32], names: &[&str], k: usize) -> Vec<Class> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Class {
            index: i,
            name: names
                .get(i)
                .map(|n| n.split(',').next().unwrap_or(n).trim().to_string())
                .unwrap_or_else(|| format!("class {i}")),
            probability: (exp[i] / sum) as f32,
        })
        .collect()
}

/// Classify an image with EfficientNet-Lite0's trained weights (the `.pth` that
/// `sfumato zoo fetch efficientnet-lite0` caches): the top `k` ImageNet classes.
pub fn classify(
    device: &mut dyn Device,
    weights: &Path,
    image: &Path,
    k: usize,
) -> Result<Vec<Class>> {
    let cfg = crate::efficientnet::efficientnet_lite0();
    let (w, h, rgb) = crate::vision::load_rgb(image)?;
    let x = crate::vision::center_crop_tensor(
        w,
        h,
        &rgb,
        cfg.image_size,
        crate::vision::Normalize::SIGNED,
    )?;
    let tensors = crate::pth::load_pth(weights, None)?;
    let mut params = Params::from_tensors("efficientnet-lite0", weights, tensors);
    let graph = crate::efficientnet::efficientnet(&cfg, &mut params, 1)?;
    params.finish()?;
    let out = device.run(&graph, &[x])?;
    let logits = out
        .outputs
        .first()
        .ok_or_else(|| ZooError::Input("the model returned no output".into()))?
        .to_f32_vec();
    Ok(top_k(&logits, &imagenet_classes(), k))
}

/// A detection with its class name, in the original image's pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub label: String,
    pub detection: crate::detect::Detection,
}

/// What [`detect`] found, and the image with the boxes and labels drawn.
#[derive(Clone, Debug)]
pub struct Detections {
    pub found: Vec<Labelled>,
    pub width: usize,
    pub height: usize,
    /// RGB8 with the boxes and labels drawn.
    pub drawn: Vec<u8>,
}

/// Detection thresholds: Ultralytics' defaults for prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectOptions {
    /// Input size (the letterboxed square).
    pub size: usize,
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            size: 320,
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 300,
        }
    }
}

/// Class names from an Ultralytics ONNX export's `names` metadata (a Python dict literal,
/// `{0: 'person', 1: 'bicycle', ...}`), in index order.
pub fn ultralytics_names(metadata: &[(String, String)]) -> Vec<String> {
    let Some((_, text)) = metadata.iter().find(|(k, _)| k == "names") else {
        return Vec::new();
    };
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut rest = text.as_str();
    while let Some(colon) = rest.find(':') {
        let key = rest[..colon].trim_matches(|c: char| c == '{' || c == ',' || c.is_whitespace());
        rest = &rest[colon + 1..];
        let Some(open) = rest.find(['\'', '"']) else {
            break;
        };
        let quote = rest[open..].chars().next().unwrap_or('\'');
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            break;
        };
        if let Ok(i) = key.parse::<usize>() {
            names.push((i, after[..close].to_string()));
        }
        rest = &after[close + 1..];
    }
    names.sort_by_key(|(i, _)| *i);
    names.into_iter().map(|(_, n)| n).collect()
}

/// Detect objects with an Ultralytics YOLOv8 ONNX export (output `[1, 4 + classes, anchors]`):
/// letterbox to `opts.size`, run, decode, non-maximum suppression per class, map the boxes back
/// to the image and draw them with their labels.
pub fn detect(
    device: &mut dyn Device,
    model: &Path,
    image: &Path,
    opts: &DetectOptions,
) -> Result<Detections> {
    use crate::detect as d;
    check_detect_size(opts.size)?;
    let (w, h, rgb) = crate::vision::load_rgb(image)?;
    let (x, lb) = d::letterbox(&rgb, w, h, opts.size);
    let onnx_err = |e: sfumato_onnx::Error| ZooError::Input(format!("{}: {e}", model.display()));
    let bytes = std::fs::read(model).map_err(|e| ZooError::io(model, e))?;
    let proto = sfumato_onnx::decode(&bytes).map_err(onnx_err)?;
    // The image input: the first graph input that is not an initializer.
    let input_name = proto
        .graph
        .as_ref()
        .and_then(|g| {
            g.input
                .iter()
                .map(|i| i.name.clone())
                .find(|n| !g.initializer.iter().any(|t| &t.name == n))
        })
        .unwrap_or_else(|| "images".into());
    let mut io = sfumato_onnx::ImportOptions {
        base_dir: model.parent().map(Path::to_path_buf),
        ..Default::default()
    };
    io.input_shapes
        .insert(input_name, vec![1, 3, opts.size, opts.size]);
    let m = sfumato_onnx::import(&bytes, &io).map_err(onnx_err)?;
    let names = ultralytics_names(&m.metadata);
    let x = sfumato_core::Tensor::from_f32([1, 3, opts.size, opts.size], x)?;
    let out = device.run(&m.graph, &[x])?;
    let pred = out
        .outputs
        .first()
        .ok_or_else(|| ZooError::Input("the model returned no output".into()))?;
    let (rows, anchors) = match pred.dims() {
        [1, r, n] if *r > 4 => (*r, *n),
        dims => {
            return Err(ZooError::Input(format!(
                "{}: output is {dims:?}, not a YOLOv8 [1, 4 + classes, anchors]",
                model.display()
            )))
        }
    };
    let dets = d::decode_yolov8(&pred.to_f32_vec(), rows, anchors, opts.score_threshold);
    let dets = d::nms(dets, opts.iou_threshold, true, opts.max_detections);
    Ok(labelled(dets, &lb, &names, w, h, rgb))
}

/// The size check of both detectors: a multiple of YOLO's largest stride.
fn check_detect_size(size: usize) -> Result<()> {
    if size < 32 || !size.is_multiple_of(32) {
        return Err(ZooError::Input(format!(
            "detect: the input size must be a multiple of 32 (YOLO's largest stride), got {size}"
        )));
    }
    Ok(())
}

/// Detections after NMS, mapped back to the image, named and drawn on it.
fn labelled(
    dets: Vec<crate::detect::Detection>,
    lb: &crate::detect::Letterbox,
    names: &[String],
    w: usize,
    h: usize,
    mut rgb: Vec<u8>,
) -> Detections {
    use crate::detect as d;
    let mut found = Vec::new();
    for det in dets {
        let bbox = lb.to_original(det.bbox);
        let label = names
            .get(det.class)
            .cloned()
            .unwrap_or_else(|| format!("class {}", det.class));
        let color = d::palette(det.class);
        d::draw_box(&mut rgb, w, h, bbox, color, 2);
        let text = format!("{label} {:.2}", det.score);
        let style = d::LabelStyle {
            fg: d::contrast_text(color),
            bg: color,
            scale: 2,
        };
        d::draw_label(&mut rgb, w, h, bbox[0], bbox[1], &text, style);
        found.push(Labelled {
            label,
            detection: d::Detection { bbox, ..det },
        });
    }
    Detections {
        found,
        width: w,
        height: h,
        drawn: rgb,
    }
}

/// The 80 COCO class names in YOLO's order (`zoo/data/coco-classes.txt`).
pub fn coco_classes() -> Vec<String> {
    include_str!("../data/coco-classes.txt")
        .lines()
        .map(String::from)
        .collect()
}

/// Detect with YOLOv5 from the builder (Ultralytics state-dict names; `params` a checkpoint or a
/// seeded init): letterbox to `opts.size`, the graph decodes the boxes, then the same
/// post-processing as [`detect`] (score = objectness x class, per-class NMS), COCO names.
pub fn detect_yolov5(
    device: &mut dyn Device,
    cfg: &crate::yolov5::YoloV5Config,
    params: &mut Params,
    image: &Path,
    opts: &DetectOptions,
) -> Result<Detections> {
    check_detect_size(opts.size)?;
    let (w, h, rgb) = crate::vision::load_rgb(image)?;
    let (x, lb) = crate::detect::letterbox(&rgb, w, h, opts.size);
    let cfg = crate::yolov5::YoloV5Config {
        image_size: opts.size,
        ..cfg.clone()
    };
    let graph = crate::yolov5::yolov5(&cfg, params, 1)?;
    let x = sfumato_core::Tensor::from_f32([1, 3, opts.size, opts.size], x)?;
    let out = device.run(&graph, &[x])?;
    let pred = out
        .outputs
        .first()
        .ok_or_else(|| ZooError::Input("the model returned no output".into()))?;
    let (n, cols) = match pred.dims() {
        [1, n, c] if *c > 5 => (*n, *c),
        dims => {
            return Err(ZooError::Input(format!(
                "yolov5: output is {dims:?}, not [1, anchors, 5 + classes]"
            )))
        }
    };
    let dets = crate::detect::decode_yolov5(&pred.to_f32_vec(), n, cols, opts.score_threshold);
    let dets = crate::detect::nms(dets, opts.iou_threshold, true, opts.max_detections);
    let names = if cfg.nc == 80 {
        coco_classes()
    } else {
        Vec::new()
    };
    Ok(labelled(dets, &lb, &names, w, h, rgb))
}

/// Write RGB8 pixels as a PNG.
pub fn save_png(path: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<()> {
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
        .ok_or_else(|| ZooError::Input(format!("{w}x{h} RGB needs {} bytes", w * h * 3)))?;
    img.save(path).map_err(|e| ZooError::Image {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

/// A SQuAD answer: the span of the context, its character range and its score (start logit
/// plus end logit).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// The best span of at most `max_tokens` context tokens (start <= end) by start + end logit;
/// `context` lists `(token index, (char start, char end))` of the context's tokens.
pub fn best_span(
    start_logits: &[f32],
    end_logits: &[f32],
    context: &[(usize, (usize, usize))],
    max_tokens: usize,
) -> Option<(usize, usize, f32)> {
    let mut best: Option<(usize, usize, f32)> = None;
    for (a, &(ti, _)) in context.iter().enumerate() {
        for &(tj, _) in context.iter().skip(a).take(max_tokens.max(1)) {
            let (Some(s), Some(e)) = (start_logits.get(ti), end_logits.get(tj)) else {
                continue;
            };
            let score = s + e;
            if best.is_none_or(|b| score > b.2) {
                best = Some((ti, tj, score));
            }
        }
    }
    best
}

/// Extractive question answering (SQuAD v1.1 style) with a BERT span head: encode
/// (question, context), run, take the best span of at most 30 tokens inside the context.
pub fn qa(
    device: &mut dyn Device,
    cfg: &BertConfig,
    params: &mut Params,
    tok: &TextTokenizer,
    question: &str,
    context: &str,
) -> Result<Answer> {
    if question.trim().is_empty() || context.trim().is_empty() {
        return Err(ZooError::Input("qa: give a question and a context".into()));
    }
    let enc = tok.encode_pairs(&[(question.to_string(), context.to_string())])?;
    if enc.seq() > cfg.max_position_embeddings {
        return Err(ZooError::Input(format!(
            "qa: question and context are {} tokens, more than the model's {} positions",
            enc.seq(),
            cfg.max_position_embeddings
        )));
    }
    let graph = bert::bert(cfg, params, 1, enc.seq(), BertHead::Squad)?;
    let out = device.run(&graph, &enc.inputs())?;
    let (start, end) = match out.outputs.as_slice() {
        [s, e] => (s.to_f32_vec(), e.to_f32_vec()),
        _ => return Err(ZooError::Input("the span head returned no logits".into())),
    };
    let offsets = tok.context_offsets(question, context)?;
    let (i, j, score) = best_span(&start, &end, &offsets, 30)
        .ok_or_else(|| ZooError::Input("qa: the context encodes to no tokens".into()))?;
    let char_of = |t: usize| offsets.iter().find(|(k, _)| *k == t).map(|(_, o)| *o);
    let (a, b) = match (char_of(i), char_of(j)) {
        (Some((a, _)), Some((_, b))) => (a, b),
        _ => (0, 0),
    };
    let text = context.get(a..b).unwrap_or("").to_string();
    Ok(Answer {
        text,
        start: a,
        end: b,
        score,
    })
}
