//! A bounded load generator for the REST API (`sfumato bench serve`): N clients, each sending
//! M requests one after another (or for a fixed time), on loopback. Each request is the model's
//! inputs at batch 1 (or its own shape where it does not batch), as binary tensors; latencies
//! are measured per request, as perf_analyzer does.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

/// What to send, and how hard.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// `http://host:port`; must be a loopback address.
    pub url: String,
    pub model: String,
    pub concurrency: usize,
    /// Requests each client sends (ignored where `duration` is set).
    pub requests_per_client: usize,
    /// Send for this long instead of a fixed count.
    pub duration: Option<Duration>,
    pub token: Option<String>,
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub concurrency: usize,
    pub ok: usize,
    pub failed: usize,
    /// The first failure's status and message, if any.
    pub first_failure: Option<String>,
    pub wall: Duration,
    /// Successful requests' latencies in ms, sorted.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (0 < p <= 100), in ms.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * self.latencies_ms.len() as f64).ceil() as usize;
        self.latencies_ms[i.clamp(1, self.latencies_ms.len()) - 1]
    }
}

/// Only loopback addresses: the load generator never reaches off the machine.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    if host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.starts_with("127.") {
        Ok(())
    } else {
        Err(format!(
            "{url}: the load generator only targets loopback addresses"
        ))
    }
}

async fn send(
    c: &HttpClient,
    method: &str,
    url: &str,
    body: Bytes,
    headers: &[(&str, String)],
) -> Result<(u16, Bytes), String> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// GET a URL: its status and body as text.
pub async fn get(url: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let auth: Vec<(&str, String)> = token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let (s, b) = send(&client(), "GET", url, Bytes::new(), &auth).await?;
    Ok((s, String::from_utf8_lossy(&b).into_owned()))
}

/// One request's body for `model`, from its metadata: every input at batch 1 as binary data
/// (seeded values in [-1, 1) for floats, zeros otherwise); every output asked for as binary.
/// Returns the body and the JSON header's length.
pub async fn request_body(
    url: &str,
    model: &str,
    token: Option<&str>,
) -> Result<(Bytes, usize), String> {
    let (status, text) = get(&format!("{url}/v2/models/{model}"), token).await?;
    if status != 200 {
        return Err(format!("model metadata of '{model}': {status} {text}"));
    }
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut inputs = vec![];
    let mut data = Vec::new();
    let mut seed: u32 = 0x9e37_79b9;
    for i in meta["inputs"].as_array().into_iter().flatten() {
        let shape: Vec<i64> = i["shape"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d.as_i64().unwrap_or(1).max(1))
            .collect();
        let dt = i["datatype"].as_str().unwrap_or("FP32");
        let n: usize = shape.iter().map(|&d| d as usize).product();
        let size = crate::config::dtype_from_protocol(dt)
            .map(|d| d.size_bytes())
            .ok_or_else(|| format!("input datatype {dt}"))?;
        let start = data.len();
        if dt == "FP32" {
            for _ in 0..n {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let x = (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
                data.extend(x.to_le_bytes());
            }
        } else {
            data.resize(start + n * size, 0);
        }
        inputs.push(serde_json::json!({
            "name": i["name"], "shape": shape, "datatype": dt,
            "parameters": { "binary_data_size": data.len() - start },
        }));
    }
    let outputs: Vec<_> = meta["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| serde_json::json!({ "name": o["name"], "parameters": { "binary_data": true } }))
        .collect();
    let head = serde_json::to_vec(&serde_json::json!({ "inputs": inputs, "outputs": outputs }))
        .map_err(|e| e.to_string())?;
    let len = head.len();
    let mut body = head;
    body.extend(data);
    Ok((Bytes::from(body), len))
}

/// Run the load: `concurrency` clients, each sending requests back to back.
pub async fn run(spec: &LoadSpec, body: Bytes, header_len: usize) -> Result<LoadResult, String> {
    check_loopback(&spec.url)?;
    let c = client();
    let url = format!("{}/v2/models/{}/infer", spec.url, spec.model);
    let mut headers = vec![
        (crate::http::HEADER_LENGTH, header_len.to_string()),
        ("content-type", "application/octet-stream".to_string()),
    ];
    if let Some(t) = &spec.token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let t0 = Instant::now();
    let until = spec.duration.map(|d| t0 + d);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let (c, url, body, headers) = (c.clone(), url.clone(), body.clone(), headers.clone());
        let count = spec.requests_per_client;
        tasks.spawn(async move {
            let (mut lat, mut failed, mut first) = (vec![], 0usize, None);
            let mut sent = 0;
            loop {
                match until {
                    Some(u) if Instant::now() >= u => break,
                    None if sent >= count => break,
                    _ => {}
                }
                sent += 1;
                let t = Instant::now();
                match send(&c, "POST", &url, body.clone(), &headers).await {
                    Ok((200, _)) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                    Ok((s, b)) => {
                        failed += 1;
                        first
                            .get_or_insert_with(|| format!("{s}: {}", String::from_utf8_lossy(&b)));
                    }
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e);
                    }
                }
            }
            (lat, failed, first)
        });
    }
    let mut r = LoadResult {
        concurrency: spec.concurrency.max(1),
        ok: 0,
        failed: 0,
        first_failure: None,
        wall: Duration::ZERO,
        latencies_ms: vec![],
    };
    while let Some(done) = tasks.join_next().await {
        let (lat, failed, first) = done.map_err(|e| e.to_string())?;
        r.ok += lat.len();
        r.latencies_ms.extend(lat);
        r.failed += failed;
        if r.first_failure.is_none() {
            r.first_failure = first;
        }
    }
    r.wall = t0.elapsed();
    r.latencies_ms.sort_by(f64::total_cmp);
    Ok(r)
}

/// A metric's value summed over the series whose labels include `model="..."`.
pub fn metric(text: &str, name: &str, model: &str) -> f64 {
    let label = format!("model=\"{model}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(check_loopback("http://127.0.0.1:8000").is_ok());
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:8000").is_err());
        assert!(check_loopback("http://example.com").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
    }

    #[test]
    fn percentiles_and_metrics() {
        let r = LoadResult {
            concurrency: 1,
            ok: 100,
            failed: 0,
            first_failure: None,
            wall: Duration::from_secs(2),
            latencies_ms: (1..=100).map(f64::from).collect(),
        };
        assert_eq!(r.throughput(), 50.0);
        assert_eq!(
            (r.percentile(50.0), r.percentile(99.0), r.percentile(100.0)),
            (50.0, 99.0, 100.0)
        );
        let text = "nv_inference_count{model=\"a\",version=\"1\"} 7\nnv_inference_count{model=\"b\",version=\"1\"} 3\n";
        assert_eq!(metric(text, "nv_inference_count", "a"), 7.0);
    }
}
