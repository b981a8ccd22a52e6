//! `sfumato tune`: measure a model's matmul shape classes on this adapter and cache the winners,
//! so later runs (which never measure) take them instead of the cost model's pick.

use crate::open::open_wgpu_with;
use crate::run::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_wgpu::{TunedShape, DEFAULT_TUNE_CANDIDATES};

#[derive(Args, Debug)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// ONNX models: a symbolic dim's size, NAME=N (repeatable; unbound ones are 1).
    #[arg(long)]
    pub(crate) dim: Vec<String>,
    /// Variants measured per shape class, the cost model's first; `all` measures every one.
    #[arg(long, default_value_t = DEFAULT_TUNE_CANDIDATES.to_string())]
    pub(crate) candidates: String,
    /// Measure shape classes whose winner is cached already, too.
    #[arg(long)]
    pub(crate) force: bool,
    /// Tune the unfused plan (one kernel per op), as `run --no-fusion` runs it.
    #[arg(long)]
    pub(crate) no_fusion: bool,
    /// Print JSON: [{"class", "m", "n", "k", "batches", "b_texture", "guess", "times_ms",
    /// "winner"}, ...].
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn tune(a: &TuneArgs) -> Result<()> {
    let candidates = match a.candidates.as_str() {
        "all" => usize::MAX,
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => bail!("--candidates {n}: a positive count or `all`"),
        },
    };
    let graph = if a.model.model.ends_with(".onnx") {
        let opts = crate::onnx::import_options(&a.dim)?;
        let path = std::path::Path::new(&a.model.model);
        crate::onnx::load(path, &opts)?.graph
    } else {
        a.model.build()?.0
    };
    let mut dev = open_wgpu_with("", sfumato_core::Optimization::fused(!a.no_fusion))?;
    let t = std::time::Instant::now();
    let shapes = dev
        .tune(&graph, candidates, a.force)
        .with_context(|| format!("tuning '{}'", a.model.model))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&shapes)?);
        return Ok(());
    }
    println!("device: {}", dev.adapter().name);
    print!("{}", table(&shapes));
    let measured = shapes.iter().filter(|s| !s.times_ms.is_empty()).count();
    let faster = shapes.iter().filter(|s| s.winner != s.guess).count();
    println!(
        "{} matmul shape classes: {measured} measured in {:.1} s, {} cached before; {faster} \
         run faster than the cost model's pick",
        shapes.len(),
        t.elapsed().as_secs_f64(),
        shapes.len() - measured,
    );
    if let Some(dir) = sfumato_wgpu::default_cache_dir() {
        println!(
            "winners cached in {}: later runs on this adapter use them",
            dir.join("autotune.json").display()
        );
    }
    Ok(())
}

/// One row per shape class: the problem, the guess and the winner with their times.
fn table(shapes: &[TunedShape]) -> String {
    let ms = |s: &TunedShape, v: &str| {
        s.times_ms
            .iter()
            .find(|(n, _)| n == v)
            .map(|(_, t)| format!("{t:.3} ms"))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<22} {:<18} {:<26} {:>11} {:<26} {:>11} {:>7}\n",
        "class", "M x N x K (batch)", "cost model's pick", "time", "winner", "time", "gain"
    );
    for s in shapes {
        let problem = format!("{}x{}x{} ({})", s.m, s.n, s.k, s.batches);
        let gain = if s.times_ms.is_empty() {
            "cached".to_string()
        } else {
            format!("{:.2}x", s.speedup())
        };
        out += &format!(
            "{:<22} {:<18} {:<26} {:>11} {:<26} {:>11} {:>7}\n",
            s.class,
            problem,
            s.guess,
            ms(s, &s.guess),
            s.winner,
            ms(s, &s.winner),
            gain
        );
    }
    out
}
