//! The protocol's HTTP/REST API (axum), with the binary tensor data extension: a body may be
//! the JSON header (its length in `Inference-Header-Content-Length`) followed by the inputs'
//! raw bytes, and outputs asked for as binary come back the same way.
//!
//! | route | |
//! |---|---|
//! | `GET /v2/health/live`, `/v2/health/ready` | probes (no token needed) |
//! | `GET /v2` | server metadata |
//! | `GET /v2/models/{m}[/versions/{v}]` | model metadata |
//! | `GET /v2/models/{m}[/versions/{v}]/ready` | model readiness |
//! | `GET /v2/models/{m}[/versions/{v}]/config` | the model's config (Triton's extension) |
//! | `POST /v2/models/{m}[/versions/{v}]/infer` | inference |
//! | `POST /v2/repository/index` | every model and its state |
//! | `POST /v2/repository/models/{m}/load`, `/unload` | (re)load, unload |
//! | `GET /metrics` | Prometheus metrics |
//!
//! Errors answer with the protocol's body, `{"error": "..."}`, and its status: 400 for a bad
//! request, 404 for an unknown model, 503 for a model not ready or a full queue, 413 for a body
//! or tensor over the limits, 401 for a missing or wrong token, 504 for a timeout.

use crate::config::{config_instance_kind_name, config_type_name};
use crate::protocol::{self, InferRequest, InputTensor, RequestedOutput};
use crate::{ServeError, Server};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

/// The binary tensor data extension's header.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

type Params = HashMap<String, String>;

fn model_of(p: &Params) -> (String, Option<String>) {
    (
        p.get("name").cloned().unwrap_or_default(),
        p.get("version").cloned(),
    )
}

/// The router: every route of the protocol, behind the token check where a token is set.
pub fn router(server: Arc<Server>) -> Router {
    let model_routes = |prefix: &str| {
        Router::new()
            .route(prefix, get(model_metadata))
            .route(&format!("{prefix}/ready"), get(model_ready))
            .route(&format!("{prefix}/config"), get(model_config))
            .route(&format!("{prefix}/stats"), get(model_stats))
            .route(&format!("{prefix}/infer"), post(infer))
    };
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .merge(model_routes("/v2/models/{name}"))
        .merge(model_routes("/v2/models/{name}/versions/{version}"))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload))
        .route("/metrics", get(metrics))
        .fallback(|| async { ServeError::not_found("no such route in the protocol") })
        .layer(middleware::from_fn_with_state(server.clone(), auth))
        .with_state(server)
}

async fn auth(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/v2/health/live" || path == "/v2/health/ready" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.authorized(given) {
        return ServeError::unauthorized(
            "a valid 'Authorization: Bearer <token>' header is required",
        )
        .into_response();
    }
    next.run(req).await
}

/// A health answer: the protocol's JSON body (`{"live": true}`), and a status that probes
/// and Triton's client read (200, or 503 when false).
fn health(key: &str, ok: bool) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ key: ok }))).into_response()
}

async fn live(State(s): State<Arc<Server>>) -> Response {
    health("live", s.live())
}

async fn ready(State(s): State<Arc<Server>>) -> Response {
    health("ready", s.ready())
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "sfumato",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": crate::EXTENSIONS,
    }))
    .into_response()
}

fn tensor_meta(t: &crate::model::TensorMeta) -> Value {
    json!({ "name": t.name, "datatype": t.datatype(), "shape": t.shape })
}

async fn model_metadata(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
) -> Result<Response, ServeError> {
    let (name, version) = model_of(&p);
    let m = s.repo.get(&name, version.as_deref())?;
    let c = &m.core;
    Ok(axum::Json(json!({
        "name": c.config.name,
        "versions": [c.version],
        "platform": c.config.platform_name,
        "inputs": c.inputs.iter().map(tensor_meta).collect::<Vec<_>>(),
        "outputs": c.outputs.iter().map(tensor_meta).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn model_ready(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
) -> Result<StatusCode, ServeError> {
    let (name, version) = model_of(&p);
    s.repo
        .get(&name, version.as_deref())
        .map(|_| StatusCode::OK)
}

/// The statistics extension: `{"model_stats": [...]}` in Triton's schema ([`crate::stats`]).
fn stats_body(stats: Vec<crate::stats::ModelStats>) -> Response {
    axum::Json(json!({ "model_stats": stats })).into_response()
}

async fn model_stats(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
) -> Result<Response, ServeError> {
    let (name, version) = model_of(&p);
    Ok(stats_body(s.model_stats(Some(&name), version.as_deref())?))
}

async fn all_stats(State(s): State<Arc<Server>>) -> Result<Response, ServeError> {
    Ok(stats_body(s.model_stats(None, None)?))
}

async fn model_config(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
) -> Result<Response, ServeError> {
    let (name, version) = model_of(&p);
    let m = s.repo.get(&name, version.as_deref())?;
    Ok(axum::Json(config_json(&crate::grpc::config_of(&m))).into_response())
}

/// `GET …/config`'s JSON: the gRPC `ModelConfig` ([`crate::grpc::config_of`], where what a model's
/// configuration says is decided once) in Triton's JSON form, its enums by name.
fn config_json(c: &crate::grpc::pb::ModelConfig) -> Value {
    let tensor = |name: &str, ty: i32, dims: &[i64]| json!({ "name": name, "data_type": config_type_name(ty), "dims": dims });
    let mut v = json!({
        "name": c.name,
        "platform": c.platform,
        "default_model_filename": c.default_model_filename,
        "max_batch_size": c.max_batch_size,
        "input": c.input.iter().map(|t| tensor(&t.name, t.data_type, &t.dims)).collect::<Vec<_>>(),
        "output": c.output.iter().map(|t| tensor(&t.name, t.data_type, &t.dims)).collect::<Vec<_>>(),
        "instance_group": c.instance_group.iter().map(|g| json!({
            "name": g.name,
            "kind": config_instance_kind_name(g.kind),
            "count": g.count,
        })).collect::<Vec<_>>(),
        "parameters": c.parameters.iter().map(|(k, p)| (k.clone(), json!({"string_value": p.string_value}))).collect::<Map<_, _>>(),
    });
    if let Some(d) = &c.dynamic_batching {
        let q = d.default_queue_policy.clone().unwrap_or_default();
        v["dynamic_batching"] = json!({
            "preferred_batch_size": d.preferred_batch_size,
            "max_queue_delay_microseconds": d.max_queue_delay_microseconds,
            "default_queue_policy": {
                "max_queue_size": q.max_queue_size,
                "default_timeout_microseconds": q.default_timeout_microseconds,
            },
        });
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    id: Option<String>,
    /// KServe's client names the model in the body too; it must be the URL's.
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

fn bool_param(p: &Map<String, Value>, key: &str, what: &str) -> Result<Option<bool>, ServeError> {
    p.get(key)
        .map(|v| {
            v.as_bool().ok_or_else(|| {
                ServeError::bad_request(format!(
                    "{what}: parameter '{key}' must be true or false, got {v}"
                ))
            })
        })
        .transpose()
}

fn uint_param(p: &Map<String, Value>, key: &str, what: &str) -> Result<Option<u64>, ServeError> {
    p.get(key)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                ServeError::bad_request(format!(
                    "{what}: parameter '{key}' must be a non-negative integer, got {v}"
                ))
            })
        })
        .transpose()
}

/// Decode an infer request's body: the JSON header, then (with the binary extension) the
/// inputs' bytes in order. Every size is checked before a tensor is allocated.
pub fn decode_request(
    model: String,
    version: Option<String>,
    body: &[u8],
    header_len: Option<usize>,
    limits: &protocol::Limits,
) -> Result<InferRequest, ServeError> {
    let (head, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(ServeError::bad_request(format!(
                "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let req: JsonRequest = serde_json::from_slice(head)
        .map_err(|e| ServeError::bad_request(format!("the request's JSON is malformed: {e}")))?;
    if let Some(m) = req
        .model_name
        .as_ref()
        .filter(|m| !m.is_empty() && **m != model)
    {
        return Err(ServeError::bad_request(format!(
            "the body names model '{m}' but the URL model '{model}'"
        )));
    }
    if let (Some(v), Some(u)) = (
        req.model_version.as_ref().filter(|v| !v.is_empty()),
        &version,
    ) {
        if v != u {
            return Err(ServeError::bad_request(format!(
                "the body names version '{v}' but the URL version '{u}'"
            )));
        }
    }
    let version = version.or(req.model_version.filter(|v| !v.is_empty()));
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for i in req.inputs {
        let what = format!("input '{}'", i.name);
        let (dtype, dims, numel) = protocol::check_tensor(&i.name, &i.datatype, &i.shape, limits)?;
        let tensor = match (
            uint_param(&i.parameters, "binary_data_size", &what)?,
            &i.data,
        ) {
            (Some(_), Some(_)) => {
                return Err(ServeError::bad_request(format!(
                    "{what} has both binary_data_size and data"
                )))
            }
            (Some(n), None) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > binary.len() {
                    return Err(ServeError::bad_request(format!(
                        "{what}: binary_data_size is {n} but only {} bytes of binary data remain (a truncated body?)",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(n);
                binary = rest;
                protocol::tensor_from_bytes(&i.name, dtype, dims, mine)?
            }
            (None, Some(data)) => protocol::tensor_from_json(&i.name, dtype, dims, numel, data)?,
            (None, None) => return Err(ServeError::bad_request(format!("{what} has no data"))),
        };
        inputs.push(InputTensor {
            name: i.name,
            tensor,
        });
    }
    if !binary.is_empty() {
        return Err(ServeError::bad_request(format!(
            "{} bytes of binary data follow the inputs that no input claims",
            binary.len()
        )));
    }
    let binary_output =
        bool_param(&req.parameters, "binary_data_output", "the request")?.unwrap_or(false);
    let timeout = uint_param(&req.parameters, "timeout", "the request")?
        .map(std::time::Duration::from_micros);
    let outputs = req
        .outputs
        .map(|outs| {
            outs.into_iter()
                .map(|o| {
                    let what = format!("output '{}'", o.name);
                    if o.parameters.contains_key("classification") {
                        return Err(ServeError::bad_request(format!(
                            "{what}: the classification extension is not supported"
                        )));
                    }
                    Ok(RequestedOutput {
                        binary: bool_param(&o.parameters, "binary_data", &what)?
                            .unwrap_or(binary_output),
                        name: o.name,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(InferRequest {
        model,
        version,
        id: req.id.unwrap_or_default(),
        inputs,
        outputs,
        binary_output,
        timeout,
    })
}

/// Encode a response: JSON, or with binary outputs the JSON header followed by their bytes.
pub fn encode_response(r: &crate::InferResponse) -> Response {
    let mut binary: Vec<u8> = Vec::new();
    let outputs: Vec<Value> = r
        .outputs
        .iter()
        .map(|o| {
            let mut v = json!({
                "name": o.name,
                "datatype": protocol::datatype_of(&o.tensor),
                "shape": o.tensor.dims(),
            });
            if o.binary {
                let bytes = o.tensor.to_le_bytes();
                v["parameters"] = json!({ "binary_data_size": bytes.len() });
                binary.extend(bytes);
            } else {
                v["data"] = protocol::tensor_to_json(&o.tensor);
            }
            v
        })
        .collect();
    let mut head = json!({
        "model_name": r.model,
        "model_version": r.version,
        "outputs": outputs,
    });
    if !r.id.is_empty() {
        head["id"] = json!(r.id);
    }
    let head = serde_json::to_vec(&head).unwrap_or_default();
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let len = head.len();
    let mut body = head;
    body.extend(binary);
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_LENGTH, HeaderValue::from(len));
    resp
}

async fn infer(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    let (name, version) = model_of(&p);
    let limit = s.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ServeError::too_large(format!(
            "the body is {} bytes, over the server's limit of {limit}",
            declared.unwrap_or(0)
        )));
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v != "identity")
    {
        return Err(ServeError::bad_request(
            "compressed request bodies are not accepted",
        ));
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        ServeError::too_large(format!(
            "the body could not be read within the server's limit of {limit} bytes: {e}"
        ))
    })?;
    let header_len = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ServeError::bad_request(format!("{HEADER_LENGTH} is not a byte count"))
                })?,
        ),
    };
    let req = decode_request(name.clone(), version, &bytes, header_len, &s.limits)?;
    let span = tracing::info_span!("infer", protocol = "http", model = %name, id = %req.id);
    let resp = s.infer(req).instrument(span).await?;
    Ok(encode_response(&resp))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    repository_name: Option<String>,
}

async fn repository_index(
    State(s): State<Arc<Server>>,
    body: axum::body::Bytes,
) -> Result<Response, ServeError> {
    let req: IndexRequest = if body.is_empty() {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ServeError::bad_request(format!("the index request's JSON is malformed: {e}"))
        })?
    };
    let _ = req.repository_name;
    let rows: Vec<Value> = s
        .repo
        .index(req.ready)
        .into_iter()
        .map(|r| {
            let mut v = json!({ "name": r.name, "state": r.state });
            if !r.version.is_empty() {
                v["version"] = json!(r.version);
            }
            if !r.reason.is_empty() {
                v["reason"] = json!(r.reason);
            }
            v
        })
        .collect();
    Ok(axum::Json(rows).into_response())
}

async fn load(State(s): State<Arc<Server>>, Path(p): Path<Params>) -> Result<Response, ServeError> {
    let (name, _) = model_of(&p);
    s.repo.load(&name).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn unload(
    State(s): State<Arc<Server>>,
    Path(p): Path<Params>,
) -> Result<Response, ServeError> {
    let (name, _) = model_of(&p);
    s.repo.unload(&name)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn metrics(State(s): State<Arc<Server>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
