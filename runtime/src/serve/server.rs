//! Startup of `mio serve`: loads the model on the worker, binds (loopback by default),
//! and serves the router with the API key check, the body limit and optional CORS.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use mio_models::engine::Request;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::handlers;
use super::queue::Queue;
use crate::cli::Common;
use crate::engine_backend::EngineWorker;

/// Flags of `mio serve` (besides the model's).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind.
    pub host: String,
    /// Port (0: any free port; the address is printed).
    pub port: u16,
    /// Required bearer key, if any.
    pub api_key: Option<String>,
    /// Requests that may wait behind the running one; more answer 429.
    pub queue: usize,
    /// Largest request body in MB.
    pub max_body_mb: usize,
    /// Allowed CORS origin (`*` for any); none: no CORS headers.
    pub cors_origin: Option<String>,
    /// Cap on new tokens per answer (clients' `max_tokens` above it are lowered).
    pub max_tokens: Option<usize>,
}

/// What the handlers share.
pub struct AppState {
    pub(super) queue: Queue,
    pub(super) model_id: String,
    pub(super) created: u64,
    pub(super) max_body_mb: usize,
    pub(super) max_tokens: Option<usize>,
    api_key: Option<String>,
}

impl AppState {
    /// Applies `--max-tokens` to a chat request.
    pub(super) fn cap_tokens(&self, request: &mut Request) {
        if let (Request::Chat { params, .. }, Some(cap)) = (request, self.max_tokens) {
            params.max_new_tokens = Some(params.max_new_tokens.map_or(cap, |n| n.min(cap)));
        }
    }
}

/// Runs `mio serve` until Ctrl-C: the model on a worker of its own, served by [`Server`].
pub fn run(common: &Common, opts: &ServeOptions) -> Result<()> {
    bind_address(opts)?;
    let (worker, _) = crate::commands::start(common, false)?;
    let model_id = common
        .model
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "mio".into());
    let server = Server::start(Arc::new(worker), &model_id, opts)?;
    println!("mio serve: listening on http://{}/v1", server.addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    rt.block_on(tokio::signal::ctrl_c())
        .context("cannot wait for Ctrl-C")?;
    server.stop();
    Ok(())
}

/// The address `opts` asks for, checked (a warning when it is reachable without a key).
fn bind_address(opts: &ServeOptions) -> Result<SocketAddr> {
    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", opts.host, opts.port).parse())
        .with_context(|| format!("{} is not an IP address to bind", opts.host))?;
    if !addr.ip().is_loopback() && opts.api_key.is_none() {
        eprintln!(
            "warning: serving on {} without --api-key: anyone on the network can use the model",
            addr.ip()
        );
    }
    if opts.max_body_mb == 0 {
        bail!("--max-body-mb must be at least 1");
    }
    Ok(addr)
}

fn state(worker: Arc<EngineWorker>, model_id: String, opts: &ServeOptions) -> Arc<AppState> {
    Arc::new(AppState {
        queue: Queue::new(worker, opts.queue),
        model_id,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        max_body_mb: opts.max_body_mb,
        max_tokens: opts.max_tokens,
        api_key: opts.api_key.clone(),
    })
}

/// A server running on its own thread over a worker someone else owns (the desktop app's,
/// with a model already loaded); it stops when [`Server::stop`] is called or it is dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `opts`' address (port 0: any free one) and serves `worker` as `model_id`.
    /// Binding errors (port in use, bad address) come back here, not later. Safe to call
    /// from async code: nothing here blocks on a runtime.
    pub fn start(worker: Arc<EngineWorker>, model_id: &str, opts: &ServeOptions) -> Result<Self> {
        let addr = bind_address(opts)?;
        let app = router(state(worker, model_id.to_string(), opts), opts)?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("mio-serve-main".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("mio-serve")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(
                            "cannot start the server's async runtime: {e}"
                        )));
                        return;
                    }
                };
                let served = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let _ = ready_tx.send(Ok(()));
                    let stopping = Arc::new(tokio::sync::Notify::new());
                    let notify = stopping.clone();
                    let serve = std::future::IntoFuture::into_future(
                        axum::serve(listener, app).with_graceful_shutdown(async move {
                            let _ = rx.await;
                            notify.notify_one();
                        }),
                    );
                    // Answers in flight get a few seconds to finish; then they are dropped
                    // (which cancels them on the worker).
                    tokio::select! {
                        r = serve => r,
                        _ = async {
                            stopping.notified().await;
                            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        } => Ok(()),
                    }
                });
                if let Err(e) = served {
                    eprintln!("mio serve: the server stopped: {e}");
                }
                // Streams still open are dropped here, which cancels their requests.
                rt.shutdown_timeout(std::time::Duration::from_secs(2));
            })
            .context("cannot start the server thread")?;
        let mut server = Self {
            addr: local,
            stop: Some(tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => {
                server.shutdown();
                Err(e)
            }
            Err(_) => {
                server.shutdown();
                bail!("the server thread ended before it listened")
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends open streams and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn router(state: Arc<AppState>, opts: &ServeOptions) -> Result<Router> {
    let mut app = Router::new()
        .route("/v1/models", get(handlers::models))
        .route("/v1/models/{id}", get(handlers::model))
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/audio/transcriptions", post(handlers::transcribe))
        .route("/v1/audio/speech", post(handlers::speech))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(opts.max_body_mb * 1024 * 1024))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    if let Some(origin) = &opts.cors_origin {
        let allow = if origin == "*" {
            AllowOrigin::any()
        } else {
            let value = HeaderValue::from_str(origin)
                .with_context(|| format!("--cors-origin {origin} is not a valid origin"))?;
            AllowOrigin::exact(value)
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    Ok(app)
}

/// Refuses requests without the bearer key when one is configured.
async fn auth(State(state): State<Arc<AppState>>, req: HttpRequest, next: Next) -> HttpResponse {
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
