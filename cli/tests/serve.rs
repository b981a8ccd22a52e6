//! `sfumato serve` as its users run it: the real binary on loopback, called by Triton's and
//! KServe's own Python clients (cli/tests/serve_clients.py, in a venv .ci/run makes from
//! scripts/serve-clients-requirements.txt), and stopped by SIGTERM with a request in flight.
//!
//! Without the venv (`SFUMATO_SERVE_PYTHON` unset and no target/serve-venv) the client test
//! says so loudly and skips; with `SFUMATO_REQUIRE_SERVE_CLIENTS=1` (CI) it fails instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sfumato() -> &'static str {
    env!("CARGO_BIN_EXE_sfumato")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running server and the addresses it printed.
struct Served {
    child: Child,
    http: String,
    grpc: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(repo: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(sfumato());
    cmd.args(["serve", "--model-repository"])
        .arg(repo)
        .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start sfumato serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let (mut http, mut grpc) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("a line of output");
        eprintln!("serve: {line}");
        if let Some(a) = line.strip_prefix("serving http on ") {
            http = a.trim().to_string();
        }
        if let Some(a) = line.strip_prefix("serving grpc on ") {
            grpc = a.trim().to_string();
        }
        if line.starts_with("models loaded") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let served = Served { child, http, grpc };
    assert!(
        !served.http.is_empty(),
        "the server printed no HTTP address"
    );
    served
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn copy_mlp(repo: &Path, device: &str) {
    let src = workspace().join("examples/model-repository/mlp");
    let text = std::fs::read_to_string(src.join("config.pbtxt"))
        .expect("the example config")
        .replace("KIND_GPU", device)
        // Long enough that requests a Python client sends together land in one batch.
        .replace(
            "max_queue_delay_microseconds: 1000",
            "max_queue_delay_microseconds: 50000",
        );
    write(&repo.join("mlp/config.pbtxt"), &text);
    std::fs::create_dir_all(repo.join("mlp/1")).expect("mkdir");
    std::fs::copy(src.join("1/model.onnx"), repo.join("mlp/1/model.onnx")).expect("copy the model");
}

fn bert(repo: &Path, name: &str, kind: &str) {
    write(
        &repo.join(name).join("config.pbtxt"),
        &format!(
            r#"name: "{name}" platform: "sfumato_zoo" max_batch_size: 4
               dynamic_batching {{ preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 2000 }}
               instance_group [ {{ kind: {kind} }} ]
               parameters {{ key: "model" value: {{ string_value: "bert-base" }} }}
               parameters {{ key: "layers" value: {{ string_value: "1" }} }}
               parameters {{ key: "seq" value: {{ string_value: "16" }} }}"#
        ),
    );
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SFUMATO_SERVE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = workspace().join("target/serve-venv/bin/python");
    venv.is_file().then_some(venv)
}

#[test]
fn triton_and_kserve_clients_over_http_and_grpc() {
    let Some(py) = python() else {
        let msg = "SKIPPED: no Python with tritonclient and kserve (set SFUMATO_SERVE_PYTHON, or \
                   `python3 -m venv target/serve-venv && target/serve-venv/bin/pip install -r \
                   scripts/serve-clients-requirements.txt`)";
        if std::env::var("SFUMATO_REQUIRE_SERVE_CLIENTS").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("\n*** {msg} ***\n");
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let repo = dir.path().join("repo");
    copy_mlp(&repo, "KIND_GPU");
    bert(&repo, "bert-gpu", "KIND_GPU");
    bert(&repo, "bert-cpu", "KIND_CPU");
    write(
        &repo.join("broken/config.pbtxt"),
        "name: \"broken\" platform: \"tensorrt_plan\"",
    );
    let token_repo = dir.path().join("token-repo");
    copy_mlp(&token_repo, "KIND_CPU");
    let main = serve(
        &repo,
        &["--max-tensor-mib", "1", "--max-body-mib", "2"],
        &[],
    );
    let token = "s3cret-token";
    let guarded = serve(&token_repo, &[], &[("SFUMATO_SERVE_TOKEN", token)]);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let status = Command::new(py)
        .arg(workspace().join("cli/tests/serve_clients.py"))
        .arg(sfumato())
        .arg(&repo)
        .arg(format!("http://{}", main.http))
        .arg(&main.grpc)
        .arg(format!("http://{}", guarded.http))
        .arg(&guarded.grpc)
        .arg(token)
        .arg(&work)
        .status()
        .expect("run the Python clients");
    assert!(status.success(), "the client checks failed: {status}");
}

/// An HTTP/1.1 request by hand; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

#[test]
fn sigterm_drains_the_request_in_flight_then_exits_cleanly() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let repo = dir.path().join("repo");
    // No batching (one warm-up run at load), on the CPU reference, sequence 64: a request takes
    // long enough to still be running when the signal comes.
    write(
        &repo.join("bert/config.pbtxt"),
        r#"platform: "sfumato_zoo" instance_group [ { kind: KIND_CPU } ]
           parameters { key: "model" value: { string_value: "bert-base" } }
           parameters { key: "layers" value: { string_value: "1" } }
           parameters { key: "seq" value: { string_value: "64" } }"#,
    );
    let mut s = serve(&repo, &["--no-grpc"], &[]);
    let (code, body) = http(&s.http, "GET", "/v2/models/bert", b"");
    assert_eq!(code, 200, "{body}");
    let n = 64 * 768;
    let req = format!(
        r#"{{"inputs": [{{"name": "hidden", "shape": [1, 64, 768], "datatype": "FP32", "data": [{}]}},
                       {{"name": "mask", "shape": [1, 1, 1, 64], "datatype": "FP32", "data": [{}]}}]}}"#,
        vec!["0.5"; n].join(","),
        vec!["0"; 64].join(",")
    );
    let addr = s.http.clone();
    let in_flight =
        std::thread::spawn(move || http(&addr, "POST", "/v2/models/bert/infer", req.as_bytes()));
    std::thread::sleep(Duration::from_millis(100));
    let pid = s.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (code, body) = in_flight.join().expect("the request's thread");
    assert_eq!(code, 200, "the request in flight was dropped: {body}");
    assert!(body.contains("last_hidden_state"), "{body}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the server exited with {status}");
    assert!(
        TcpStream::connect(&s.http).is_err(),
        "the server still accepts connections"
    );
}

/// Back-pressure and timeouts on a model whose runs are slow (the CPU reference, a BERT layer
/// at sequence 64): with a queue of one, requests past it are answered 503 at once while the
/// others are served; a request whose `timeout` parameter passes while it waits is answered 504;
/// the server keeps serving after both.
#[test]
fn a_full_queue_answers_503_at_once_and_a_late_request_504() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let repo = dir.path().join("repo");
    write(
        &repo.join("bert/config.pbtxt"),
        r#"platform: "sfumato_zoo" max_batch_size: 1
           dynamic_batching { default_queue_policy { max_queue_size: 1 } }
           instance_group [ { kind: KIND_CPU } ]
           parameters { key: "model" value: { string_value: "bert-base" } }
           parameters { key: "layers" value: { string_value: "1" } }
           parameters { key: "seq" value: { string_value: "64" } }"#,
    );
    let s = serve(&repo, &["--no-grpc"], &[]);
    let body = |params: &str| {
        format!(
            r#"{{"parameters": {{{params}}}, "inputs": [
                {{"name": "hidden", "shape": [1, 64, 768], "datatype": "FP32", "data": [{}]}},
                {{"name": "mask", "shape": [1, 1, 1, 64], "datatype": "FP32", "data": [{}]}}]}}"#,
            vec!["0.25"; 64 * 768].join(","),
            vec!["0"; 64].join(",")
        )
    };
    let plain = body("");
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (addr, b) = (s.http.clone(), plain.clone());
            std::thread::spawn(move || http(&addr, "POST", "/v2/models/bert/infer", b.as_bytes()))
        })
        .collect();
    let answers: Vec<(u16, String)> = threads
        .into_iter()
        .map(|t| t.join().expect("a request"))
        .collect();
    let full = answers
        .iter()
        .filter(|(c, b)| *c == 503 && b.contains("queue is full"))
        .count();
    let served = answers
        .iter()
        .filter(|(c, b)| *c == 200 && b.contains("last_hidden_state"))
        .count();
    assert!(
        full >= 1 && served >= 1 && full + served == 6,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    // A request that waits behind a running one past its own 1 ms timeout.
    let (addr, b) = (s.http.clone(), plain.clone());
    let first =
        std::thread::spawn(move || http(&addr, "POST", "/v2/models/bert/infer", b.as_bytes()));
    // Sent once the first has left the queue (size 1) for the device: until then the queue is
    // full and answers 503 at once, which a busy machine can stretch past any fixed sleep.
    let late = body(r#""timeout": 1000"#);
    let (mut code, mut text) = (0, String::new());
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(25));
        (code, text) = http(&s.http, "POST", "/v2/models/bert/infer", late.as_bytes());
        if !(code == 503 && text.contains("queue is full")) {
            break;
        }
    }
    assert_eq!(code, 504, "{text}");
    assert!(
        text.contains("no answer within") || text.contains("timed out"),
        "{text}"
    );
    assert_eq!(first.join().expect("the first request").0, 200);
    let (code, text) = http(&s.http, "POST", "/v2/models/bert/infer", plain.as_bytes());
    assert_eq!(code, 200, "{text}");
}
