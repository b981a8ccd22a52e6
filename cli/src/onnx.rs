//! `sfumato run model.onnx`, `sfumato inspect` and `sfumato conformance`.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sfumato_core::{Device, Tensor};
use sfumato_onnx::conformance::{self, Status, Totals};
use sfumato_onnx::{self as onnx, ImportOptions};
use sfumato_zoo::npy;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `NAME=VALUE` pairs.
fn pairs(v: &[String], what: &str) -> Result<Vec<(String, String)>> {
    v.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("{what} '{s}' is not NAME=VALUE"))
        })
        .collect()
}

/// Import options from `--dim NAME=N` pairs; unbound symbolic dims (batch, sequence) are 1.
pub(crate) fn import_options(dims: &[String]) -> Result<ImportOptions> {
    let mut opts = ImportOptions::default();
    for (k, v) in pairs(dims, "--dim")? {
        let n: usize = v
            .parse()
            .with_context(|| format!("--dim {k}={v}: not a size"))?;
        opts.dims.insert(k, n);
    }
    if opts.dims.is_empty() {
        opts.default_dim = Some(1);
    }
    opts.recurrence = match std::env::var("SFUMATO_RECURRENCE").as_deref() {
        Ok("loop") => onnx::RecurrentForm::Loop,
        Ok("unrolled") => onnx::RecurrentForm::Unrolled,
        Ok("auto") | Err(_) => onnx::RecurrentForm::Auto,
        Ok(other) => bail!("SFUMATO_RECURRENCE={other}: expected loop, unrolled or auto"),
    };
    Ok(opts)
}

/// Import an ONNX file, with a spinner while its weights load.
pub(crate) fn load(path: &Path, opts: &ImportOptions) -> Result<onnx::OnnxModel> {
    use sfumato_core::Progress;
    let bars = crate::progress::Bars::default();
    let mib = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    bars.stage(&format!("loading {} ({mib:.1} MiB)", path.display()), 0);
    let m = onnx::load(path, opts).with_context(|| format!("importing {}", path.display()));
    bars.done();
    m
}

/// Run an ONNX model: given or seeded random inputs, output summaries, the timing table and
/// optionally the outputs as .npy files. With `warm_up`, a run first ([`crate::run::warm_up`]):
/// the returned run is a warm one (a model run in stages runs once).
#[allow(clippy::too_many_arguments)]
pub fn run(
    path: &Path,
    dev: &mut dyn Device,
    inputs: &[String],
    dims: &[String],
    output: Option<&Path>,
    save_run: Option<&Path>,
    precision: sfumato_core::precision::Precision,
    warm_up: bool,
) -> Result<sfumato_core::RunOutput> {
    let mut opts = import_options(dims)?;
    let mut given: HashMap<String, Tensor> = HashMap::new();
    for (k, f) in pairs(inputs, "--input")? {
        let t = if f.ends_with(".pb") {
            // A serialized TensorProto, as ONNX's test data sets hold them.
            onnx::read_tensor_pb(Path::new(&f)).with_context(|| format!("reading {f}"))?
        } else {
            let b = std::fs::read(&f).with_context(|| format!("reading {f}"))?;
            npy::read(&b)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("reading {f}"))?
        };
        opts.input_shapes.insert(k.clone(), t.dims().to_vec());
        given.insert(k, t);
    }
    let m = match load(path, &opts) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.downcast_ref::<onnx::Error>(),
                Some(onnx::Error::RunTime(_))
            ) =>
        {
            if save_run.is_some() {
                bail!("{e:#}\n--save-run records one graph; this model runs in stages");
            }
            if precision != sfumato_core::precision::Precision::F32 {
                bail!("{e:#}\n--precision f16 rewrites one graph; this model runs in stages");
            }
            return run_staged(path, dev, opts, given, output);
        }
        Err(e) => return Err(e),
    };
    let mut m = m;
    m.graph = precision
        .apply(&m.graph)
        .with_context(|| format!("{} at {precision:?}", path.display()))?;
    let mut feed = Vec::new();
    for (i, name) in m.inputs.iter().enumerate() {
        let v = m.graph.inputs()[i];
        let (dt, shape) = (m.graph.dtype(v), m.graph.shape(v).clone());
        match given.remove(name) {
            Some(t) => {
                if t.dtype() != dt {
                    bail!("--input {name}: {} where the model takes {dt}", t.dtype());
                }
                feed.push(t)
            }
            None => {
                println!("input '{name}': seeded random {dt} {shape}");
                feed.push(Tensor::random(dt, shape, 1 + i as u64));
            }
        }
    }
    if let Some(k) = given.keys().next() {
        bail!(
            "--input {k}: the model has no such input (inputs: {})",
            m.inputs.join(", ")
        );
    }
    if warm_up {
        crate::run::warm_up(dev, &m.graph, &feed, &path.display().to_string())?;
    }
    let out = dev
        .run(&m.graph, &feed)
        .with_context(|| format!("running {} on {}", path.display(), dev.name()))?;
    if let Some(to) = save_run {
        let model = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        crate::run::save_run(dev, &model, &m.graph, &out, to)?;
    }
    if let Some(dir) = output {
        write_outputs(dir, &m.outputs, &out.outputs)?;
    }
    println!(
        "model:  {} (opset {}, {})",
        path.display(),
        m.opset,
        m.producer
    );
    for (name, t) in m.outputs.iter().zip(&out.outputs) {
        println!("output '{name}': {}", t.summary());
    }
    Ok(out)
}

/// A model one graph cannot hold (a value it needs is known only at run time), run in stages:
/// device stages with host steps between them, each listed.
fn run_staged(
    path: &Path,
    dev: &mut dyn Device,
    opts: ImportOptions,
    mut given: HashMap<String, Tensor>,
    output: Option<&Path>,
) -> Result<sfumato_core::RunOutput> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model = onnx::decode(&bytes)?;
    let mut opts = opts;
    opts.base_dir = path.parent().map(Path::to_path_buf);
    let mut inputs = HashMap::new();
    let types = onnx::input_types(&model, &opts)?;
    for (i, (name, dt, dims)) in types.iter().enumerate() {
        let t = match given.remove(name) {
            Some(t) if t.dtype() != *dt => {
                bail!("--input {name}: {} where the model takes {dt}", t.dtype())
            }
            Some(t) => t,
            None => {
                println!("input '{name}': seeded random {dt} {dims:?}");
                Tensor::random(*dt, dims.clone(), 1 + i as u64)
            }
        };
        inputs.insert(name.clone(), t);
    }
    if let Some(k) = given.keys().next() {
        bail!("--input {k}: the model has no such input");
    }
    let r = onnx::staged::run(&model, &opts, &inputs, dev)
        .with_context(|| format!("running {} in stages on {}", path.display(), dev.name()))?;
    println!(
        "model:  {} (opset {}), run in {} stages (a value it needs is known only at run time):",
        path.display(),
        onnx::opset_of(&model),
        r.stages.len()
    );
    for s in &r.stages {
        println!(
            "  {:<6} {:>9.3} ms  {}",
            if s.on_device { "device" } else { "host" },
            s.wall_ns as f64 / 1e6,
            s.what
        );
    }
    if let Some(dir) = output {
        write_outputs(dir, &r.names, &r.outputs)?;
    }
    for (name, t) in r.names.iter().zip(&r.outputs) {
        println!("output '{name}': {}", t.summary());
    }
    Ok(sfumato_core::RunOutput {
        outputs: r.outputs,
        profile: r.profile,
    })
}

/// Each output as `DIR/NAME.npy` (characters other than letters, digits and `-_.` become `_`).
fn write_outputs(dir: &Path, names: &[String], outputs: &[Tensor]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, t) in names.iter().zip(outputs) {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let p = dir.join(format!("{safe}.npy"));
        std::fs::write(&p, npy::write(t)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The .onnx file.
    pub model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(a: &InspectArgs) -> Result<()> {
    let b = std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let i = onnx::inspect(&b).with_context(|| format!("reading {}", a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    println!("model:    {}", a.model.display());
    println!(
        "ir:       {}   opset: {}   producer: {}",
        i.ir_version, i.opset, i.producer
    );
    println!(
        "weights:  {} initializers, {:.1} MiB",
        i.initializers,
        i.initializer_bytes as f64 / 1048576.0
    );
    for (what, list) in [("input ", &i.inputs), ("output", &i.outputs)] {
        for v in list {
            println!("{what}    {}: {} [{}]", v.name, v.dtype, v.dims.join(", "));
        }
    }
    println!("ops:");
    for (op, n) in &i.ops {
        let mark = if i.unsupported.iter().any(|u| &u.op == op) {
            "  (unsupported)"
        } else {
            ""
        };
        println!("  {op:<24} {n:>5}{mark}");
    }
    if i.unsupported.is_empty() {
        println!("every op is supported");
    } else {
        println!("{} unsupported node(s):", i.unsupported.len());
        for u in &i.unsupported {
            println!("  {u}");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// The suite's folder (default: $SFUMATO_ONNX_TESTS, else ../shared/onnx-node-tests).
    pub dir: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_enum, default_value = "wgpu")]
    pub device: crate::open::DeviceKind,
    /// Only cases whose name matches this regular expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Write {"totals": {...}, "cases": [...]} to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print every case, not only fails and errors.
    #[arg(long)]
    pub verbose: bool,
}

pub fn conformance(a: &ConformanceArgs, dev: &mut dyn Device) -> Result<()> {
    let dir = a.dir.clone().unwrap_or_else(conformance::default_suite_dir);
    let re = a
        .filter
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--filter")?;
    let cases: Vec<PathBuf> = conformance::case_dirs(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .into_iter()
        .filter(|p| {
            re.as_ref()
                .is_none_or(|r| r.is_match(&p.file_name().unwrap_or_default().to_string_lossy()))
        })
        .collect();
    if cases.is_empty() {
        bail!("no cases under {} match", dir.display());
    }
    // On stderr, and hidden where stderr is not a terminal (piped output, tests); the case
    // lines go to stdout with the bar put aside.
    let bar = ProgressBar::with_draw_target(Some(cases.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Vec::with_capacity(cases.len());
    for c in &cases {
        let r = conformance::run_case(c, dev);
        bar.set_message(r.name.clone());
        bar.inc(1);
        if a.verbose || matches!(r.status, Status::Fail | Status::Error) {
            let status = match r.computed {
                Some(c) => format!("pass {}", c.name()),
                None => r.status.name().to_string(),
            };
            bar.suspend(|| println!("{status:<11} {}  {}", r.name, r.detail));
        }
        results.push(r);
    }
    bar.finish_and_clear();
    let t = Totals::of(&results);
    println!("\nper op type (cases using it): pass (of them host) / fail / unsupported / error");
    for (op, o) in conformance::per_op(&results) {
        println!(
            "  {op:<28} {:>4} ({:>3}) {:>4} {:>4} {:>4}",
            o.pass, o.pass_host, o.fail, o.unsupported, o.error
        );
    }
    println!(
        "\n{} cases on {}: {} pass (device {}, host {}), {} fail, {} unsupported, {} error",
        results.len(),
        dev.name(),
        t.pass,
        t.pass_device,
        t.pass_host,
        t.fail,
        t.unsupported,
        t.error
    );
    if let Some(p) = &a.json {
        let j = serde_json::json!({ "device": dev.name(), "totals": t, "cases": results });
        std::fs::write(p, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if t.fail + t.error > 0 {
        bail!(
            "{} case(s) failed and {} errored (listed above)",
            t.fail,
            t.error
        );
    }
    Ok(())
}
