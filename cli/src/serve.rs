//! `sfumato serve`: the model repository over the Open Inference Protocol (KServe v2), HTTP and
//! gRPC, until Ctrl-C or SIGTERM, then a graceful drain.

use anyhow::{Context, Result};
use clap::Args;
use sfumato_server::{Limits, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The model repository: a folder per model with its config.pbtxt (Triton's layout; see
    /// examples/model-repository).
    #[arg(long)]
    pub(crate) model_repository: PathBuf,
    /// The HTTP/REST address (loopback only unless you say otherwise).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) http: SocketAddr,
    /// The gRPC address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub(crate) grpc: SocketAddr,
    /// Serve no HTTP.
    #[arg(long)]
    pub(crate) no_http: bool,
    /// Serve no gRPC.
    #[arg(long)]
    pub(crate) no_grpc: bool,
    /// A file holding the bearer token every request but the health probes must carry
    /// (`Authorization: Bearer <token>`); also read from SFUMATO_SERVE_TOKEN.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// The largest request body (MiB).
    #[arg(long, default_value_t = 64)]
    pub(crate) max_body_mib: usize,
    /// The largest tensor in a request (MiB).
    #[arg(long, default_value_t = 32)]
    pub(crate) max_tensor_mib: usize,
    /// A request's longest time from arrival to answer, where its model's config sets none
    /// (seconds).
    #[arg(long, default_value_t = 60.0)]
    pub(crate) timeout_s: f64,
    /// Run every request alone, ignoring the models' dynamic_batching (to compare).
    #[arg(long)]
    pub(crate) no_batching: bool,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub(crate) fn serve(a: &ServeArgs) -> Result<()> {
    let token = match &a.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("SFUMATO_SERVE_TOKEN").ok(),
    }
    .filter(|t| !t.is_empty());
    if !(a.timeout_s > 0.0 && a.timeout_s.is_finite()) {
        anyhow::bail!("--timeout-s must be a positive number of seconds");
    }
    let opts = ServeOptions {
        model_repository: a.model_repository.clone(),
        http: (!a.no_http).then_some(a.http),
        grpc: (!a.no_grpc).then_some(a.grpc),
        token,
        limits: Limits {
            max_body_bytes: a.max_body_mib.saturating_mul(1 << 20),
            max_tensor_bytes: a.max_tensor_mib.saturating_mul(1 << 20),
        },
        request_timeout: Duration::from_secs_f64(a.timeout_s),
        batching: !a.no_batching,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(sfumato_server::serve(opts, shutdown_signal(), |bound| {
        for (proto, addr) in bound {
            println!("serving {proto} on {addr}");
        }
        println!("models loaded (GET /v2/repository/index for their states); Ctrl-C stops");
    }))
    .context("sfumato serve")
}
