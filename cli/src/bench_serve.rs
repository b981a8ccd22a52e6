//! `sfumato bench serve`: a bounded load test of `sfumato serve` on loopback, as perf_analyzer
//! reports one (concurrency, throughput, p50/p90/p99 latency), with dynamic batching and
//! without it, and optionally a soak with the server's memory at the start and the end.

use anyhow::{bail, Context, Result};
use clap::Args;
use sfumato_server::loadgen::{self, LoadResult, LoadSpec};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub(crate) struct BenchServeArgs {
    /// The model repository to serve: started here as `sfumato serve` on a free loopback port.
    #[arg(long)]
    pub(crate) model_repository: PathBuf,
    /// The model to send requests to (batch-1 requests of its inputs).
    #[arg(long)]
    pub(crate) model: String,
    /// Concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub(crate) concurrency: Vec<usize>,
    /// Requests each client sends per run (after a warm-up of two each).
    #[arg(long, default_value_t = 16)]
    pub(crate) requests: usize,
    /// Only the configured batching, not the comparison without it.
    #[arg(long)]
    pub(crate) no_compare: bool,
    /// A soak after the runs: the highest concurrency for this many seconds, with the
    /// server's resident memory sampled each second.
    #[arg(long)]
    pub(crate) soak_s: Option<u64>,
    /// Also write the tables to this Markdown file.
    #[arg(long)]
    pub(crate) markdown: Option<PathBuf>,
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(a: &BenchServeArgs, batching: bool) -> Result<ServerProcess> {
    let exe = std::env::current_exe().context("finding the sfumato binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--model-repository"])
        .arg(&a.model_repository)
        .args(["--http", "127.0.0.1:0", "--no-grpc"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !batching {
        cmd.arg("--no-batching");
    }
    let mut child = cmd.spawn().context("starting sfumato serve")?;
    let out = child.stdout.take().context("the server's output")?;
    let mut lines = BufReader::new(out).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.context("reading the server's output")?;
        if let Some(addr) = line.strip_prefix("serving http on ") {
            url = Some(format!("http://{}", addr.trim()));
        }
        if line.starts_with("models loaded") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = url.context("the server printed no address (did it fail to start?)")?;
    Ok(ServerProcess { child, url })
}

/// The server's resident memory in MiB (Linux: /proc/PID/status).
fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Row {
    r: LoadResult,
    executions: f64,
    inferences: f64,
}

async fn one_mode(a: &BenchServeArgs, s: &ServerProcess) -> Result<Vec<Row>> {
    let (status, _) = loadgen::get(&format!("{}/v2/models/{}/ready", s.url, a.model), None)
        .await
        .map_err(anyhow::Error::msg)?;
    if status != 200 {
        let (_, index) = loadgen::get(&format!("{}/v2/repository/index", s.url), None)
            .await
            .unwrap_or_default();
        bail!(
            "model '{}' is not ready ({status}); the repository: {index}",
            a.model
        );
    }
    let (body, header_len) = loadgen::request_body(&s.url, &a.model, None)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut rows = vec![];
    for &c in &a.concurrency {
        let spec = |n| LoadSpec {
            url: s.url.clone(),
            model: a.model.clone(),
            concurrency: c,
            requests_per_client: n,
            duration: None,
            token: None,
        };
        loadgen::run(&spec(2), body.clone(), header_len)
            .await
            .map_err(anyhow::Error::msg)?;
        let before = loadgen::get(&format!("{}/metrics", s.url), None)
            .await
            .map_err(anyhow::Error::msg)?
            .1;
        let r = loadgen::run(&spec(a.requests), body.clone(), header_len)
            .await
            .map_err(anyhow::Error::msg)?;
        let after = loadgen::get(&format!("{}/metrics", s.url), None)
            .await
            .map_err(anyhow::Error::msg)?
            .1;
        let d = |name| {
            loadgen::metric(&after, name, &a.model) - loadgen::metric(&before, name, &a.model)
        };
        if let Some(f) = &r.first_failure {
            eprintln!(
                "warning: {} of {} requests failed at concurrency {c}; the first: {f}",
                r.failed,
                r.failed + r.ok
            );
        }
        rows.push(Row {
            executions: d("nv_inference_exec_count"),
            inferences: d("nv_inference_count"),
            r,
        });
    }
    Ok(rows)
}

fn table(title: &str, rows: &[Row]) -> String {
    let mut t = format!(
        "{title}\n\n| Concurrency | Inferences/s | p50 latency (ms) | p90 latency (ms) | p99 latency (ms) | Requests | Failed | Executions |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let r = &row.r;
        t += &format!(
            "| {} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {} | {:.0} ({:.2} rows each) |\n",
            r.concurrency,
            r.throughput(),
            r.percentile(50.0),
            r.percentile(90.0),
            r.percentile(99.0),
            r.ok,
            r.failed,
            row.executions,
            row.inferences / row.executions.max(1.0)
        );
    }
    t
}

pub(crate) fn bench_serve(a: &BenchServeArgs) -> Result<()> {
    if a.concurrency.contains(&0) || a.requests == 0 {
        bail!("--concurrency and --requests must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = format!(
        "model '{}' from {}, batch-1 requests over HTTP (binary tensors), {} requests per client after 2 of warm-up\n\n",
        a.model,
        a.model_repository.display(),
        a.requests
    );
    println!("{out}");
    let modes: &[bool] = if a.no_compare {
        &[true]
    } else {
        &[true, false]
    };
    let mut results = vec![];
    for &batching in modes {
        let s = start_server(a, batching)?;
        let rows = rt.block_on(one_mode(a, &s))?;
        let t = table(
            if batching {
                "With dynamic batching (as configured):"
            } else {
                "Without batching (`--no-batching`):"
            },
            &rows,
        );
        println!("{t}");
        out += &t;
        out += "\n";
        results.push(rows);
        if batching {
            if let Some(secs) = a.soak_s {
                let c = a.concurrency.iter().copied().max().unwrap_or(1);
                let soak = rt.block_on(soak(a, &s, c, secs))?;
                println!("{soak}");
                out += &soak;
            }
        }
    }
    if results.len() == 2 {
        let mut t = String::from(
            "Throughput, batched over unbatched:\n\n| Concurrency | Ratio |\n|---:|---:|\n",
        );
        for (b, u) in results[0].iter().zip(&results[1]) {
            t += &format!(
                "| {} | {:.2}x |\n",
                b.r.concurrency,
                b.r.throughput() / u.r.throughput().max(1e-9)
            );
        }
        println!("{t}");
        out += &t;
    }
    if let Some(p) = &a.markdown {
        std::fs::write(p, &out).with_context(|| format!("writing {}", p.display()))?;
        println!("written to {}", p.display());
    }
    Ok(())
}

async fn soak(a: &BenchServeArgs, s: &ServerProcess, c: usize, secs: u64) -> Result<String> {
    let pid = s.child.id();
    let (body, header_len) = loadgen::request_body(&s.url, &a.model, None)
        .await
        .map_err(anyhow::Error::msg)?;
    let start = rss_mib(pid).context("reading the server's memory (/proc)")?;
    let spec = LoadSpec {
        url: s.url.clone(),
        model: a.model.clone(),
        concurrency: c,
        requests_per_client: 0,
        duration: Some(Duration::from_secs(secs)),
        token: None,
    };
    let sampler = tokio::spawn(async move {
        let mut samples = vec![];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(m) = rss_mib(pid) {
                samples.push(m);
            }
        }
        samples
    });
    let r = loadgen::run(&spec, body, header_len)
        .await
        .map_err(anyhow::Error::msg)?;
    let samples = sampler.await.unwrap_or_default();
    let end = rss_mib(pid).unwrap_or(f64::NAN);
    let peak = samples.iter().copied().fold(start, f64::max);
    // The second half's mean against the first half's: growth shows as a rising trend.
    let half = samples.len() / 2;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (first, second) = (mean(&samples[..half]), mean(&samples[half..]));
    Ok(format!(
        "Soak: {secs} s at concurrency {c}: {} requests ({} failed), {:.2} inferences/s, p99 {:.1} ms\n\n\
         | Server memory (RSS) | MiB |\n|---|---:|\n| start (after warm-up) | {start:.1} |\n| end | {end:.1} |\n| peak | {peak:.1} |\n\
         | mean, first half | {first:.1} |\n| mean, second half | {second:.1} |\n| end - start | {:+.1} ({:+.1}%) |\n",
        r.ok,
        r.failed,
        r.throughput(),
        r.percentile(99.0),
        end - start,
        (end - start) / start * 100.0
    ))
}
