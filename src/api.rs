//! The node's HTTP API (axum): status, peers, blocks, manual sync and
//! Prometheus metrics, for operators and `concord status`.
//!
//! Owns the routes, their JSON shapes and the HTTP error mapping. It talks to
//! the node only through [`Client`], [`SyncHandle`], [`Store`] and the metrics
//! [`Registry`]; it must not reach into the sync engine, the swarm or sled,
//! and it holds no state of its own.
//!
//! Routes (every error is a 4xx/5xx with a JSON body `{"error": "..."}`):
//! - `GET /status`: [`StatusBody`]
//! - `GET /peers`: `{"peers": [`[`PeerBody`]`]}`
//! - `GET /blocks/{height}`: [`BlockBody`], 404 when the store has no block there
//! - `POST /sync`: asks the sync engine to poll peers and fetch what is missing (202)
//! - `POST /sync/reset`: drops in-flight sync work and re-checks our tip with
//!   the peers; out of a halt, allows the refused reorg once (202)
//! - `GET /metrics`: Prometheus/OpenMetrics text

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::net::Client;
use crate::store::Store;
use crate::sync::SyncHandle;

/// Default address of the API: loopback only.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7080";

/// Content type of `/metrics` (prometheus-client writes OpenMetrics text,
/// which Prometheus scrapes and which is valid Prometheus text format).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers use to reach the node.
#[derive(Clone)]
pub struct ApiContext {
    pub client: Client,
    pub sync: SyncHandle,
    pub store: Store,
    pub registry: Arc<Registry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot bind the API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("API server failed: {0}")]
    Serve(std::io::Error),
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// `GET /status`. Hashes are hex; `target` is `null` until a peer reported a height.
#[derive(Serialize, Debug)]
pub struct StatusBody {
    pub peer_id: String,
    pub genesis: String,
    pub height: u64,
    pub tip: String,
    pub target: Option<u64>,
    pub best: Option<u64>,
    pub syncing: bool,
    /// Connected peers on our genesis.
    pub peers: usize,
    pub pending_blocks: u64,
    pub batches_in_flight: usize,
    /// `normal`, `searching`, `rolling_back`, `halted` or `split`.
    pub mode: String,
    pub stalled: Option<String>,
    /// The lowest height at which a stored block was found damaged (it is
    /// not served; `concord check --repair` rolls back below it), or null.
    pub store_damaged_at: Option<u64>,
    /// Imports fail for lack of disk space: downloads are paused and retried
    /// with backoff (the reason is in `stalled`).
    pub disk_full: bool,
    /// Listen addresses with `/p2p/<peer id>`, ready for another node's `--bootstrap`.
    pub listen_addrs: Vec<String>,
}

/// One entry of `GET /peers`.
#[derive(Serialize, Debug)]
pub struct PeerBody {
    pub id: String,
    /// Remote addresses of the established connections (empty if none).
    pub addresses: Vec<String>,
    pub height: Option<u64>,
    pub latency_ms: Option<f64>,
    pub score: i32,
    /// `verified`, `checking`, `wrong_genesis`, or `connected` (not in the sync peer book).
    pub state: String,
    pub in_flight: u32,
    /// The height from which it is known to hold another chain than ours
    /// (it is on another fork: not synced from above it), or null.
    pub fork_at: Option<u64>,
    /// Where it came from: `bootstrap`, `mdns`, `kademlia`, `address_book`
    /// or `inbound` (null if it is no longer connected).
    pub source: Option<String>,
}

/// `GET /blocks/{height}`.
#[derive(Serialize, Debug)]
pub struct BlockBody {
    pub height: u64,
    pub hash: String,
    pub parent: String,
    pub timestamp_ms: u64,
    pub body_hash: String,
    pub producer: String,
    pub signature: String,
    pub body_size: usize,
}

/// The API's routes.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/blocks/{height}", get(block))
        .route("/sync", post(sync_now))
        .route("/sync/reset", post(sync_reset))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ctx)
}

/// Binds `addr`; the returned listener's `local_addr` is the real port (for port 0).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    if let Ok(addr) = listener.local_addr() {
        info!(address = %format!("http://{addr}"), "API listening");
    }
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ApiError::Serve)
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed() -> HttpError {
    HttpError::MethodNotAllowed
}

async fn status(State(ctx): State<ApiContext>) -> Json<StatusBody> {
    let peer_id = ctx.client.local_peer_id();
    let listen_addrs = ctx
        .client
        .listen_addrs()
        .await
        .into_iter()
        .map(|a| format!("{a}/p2p/{peer_id}"))
        .collect();
    let tip = ctx.store.tip();
    let mut body = StatusBody {
        peer_id: peer_id.to_string(),
        genesis: ctx.store.genesis_hash().to_string(),
        height: tip.height,
        tip: tip.hash.to_string(),
        target: None,
        best: None,
        syncing: false,
        peers: 0,
        pending_blocks: 0,
        batches_in_flight: 0,
        mode: "normal".into(),
        stalled: None,
        store_damaged_at: ctx.store.damaged_height(),
        disk_full: false,
        listen_addrs,
    };
    // Before the driver's first step there is no snapshot: report the store.
    if let Some(snap) = ctx.sync.status() {
        let s = snap.status;
        body.height = s.height;
        body.tip = s.tip.to_string();
        body.target = s.target;
        body.best = s.best;
        body.syncing = s.syncing;
        body.peers = s.peers;
        body.pending_blocks = s.pending_blocks;
        body.batches_in_flight = s.batches_in_flight;
        body.mode = s.mode.name().into();
        body.disk_full = s.disk_full;
        if let crate::sync::engine::Mode::Halted(reason) = &s.mode {
            body.stalled = Some(reason.clone());
        }
        if s.stalled.is_some() {
            body.stalled = s.stalled;
        }
    }
    Json(body)
}

#[derive(Serialize)]
struct PeersBody {
    peers: Vec<PeerBody>,
}

async fn peers(State(ctx): State<ApiContext>) -> Json<PeersBody> {
    let mut addrs: HashMap<_, _> = ctx.client.peer_addresses().await;
    let sources = ctx.client.peer_sources().await;
    let source = |p: &libp2p::PeerId| sources.get(p).map(|s| s.name().to_string());
    let to_strings = |v: Vec<libp2p::Multiaddr>| v.iter().map(|a| a.to_string()).collect();
    let mut peers: Vec<PeerBody> = Vec::new();
    if let Some(snap) = ctx.sync.status() {
        for p in snap.peers {
            peers.push(PeerBody {
                id: p.peer.to_string(),
                addresses: to_strings(addrs.remove(&p.peer).unwrap_or_default()),
                height: p.height,
                latency_ms: p.latency_ms,
                score: p.score,
                state: p.state.into(),
                in_flight: p.in_flight,
                fork_at: p.forked_at,
                source: source(&p.peer),
            });
        }
    }
    // Connected, but not (yet) in the sync engine's peer book.
    for (peer, list) in addrs {
        peers.push(PeerBody {
            id: peer.to_string(),
            addresses: to_strings(list),
            height: None,
            latency_ms: None,
            score: 0,
            state: "connected".into(),
            in_flight: 0,
            fork_at: None,
            source: source(&peer),
        });
    }
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    Json(PeersBody { peers })
}

async fn block(
    State(ctx): State<ApiContext>,
    Path(height): Path<String>,
) -> Result<Json<BlockBody>, HttpError> {
    let height: u64 = height.parse().map_err(|_| {
        HttpError::BadRequest(format!(
            "invalid height {height:?}: expected a non-negative integer"
        ))
    })?;
    let store = ctx.store.clone();
    let block = tokio::task::spawn_blocking(move || store.block(height))
        .await
        .map_err(|e| HttpError::Internal(format!("store read task failed: {e}")))?
        .map_err(|e| {
            warn!(height, error = %e, "API: store read failed");
            HttpError::Internal(format!("store read failed: {e}"))
        })?
        .ok_or_else(|| HttpError::NotFound(format!("no block at height {height}")))?;
    let h = &block.header;
    Ok(Json(BlockBody {
        height: h.height,
        hash: block.hash().to_string(),
        parent: h.parent.to_string(),
        timestamp_ms: h.timestamp_ms,
        body_hash: h.body_hash.to_string(),
        producer: h.producer.to_string(),
        signature: h.signature.to_hex(),
        body_size: block.body.len(),
    }))
}

#[derive(Serialize)]
struct SyncBody {
    status: &'static str,
}

async fn sync_now(State(ctx): State<ApiContext>) -> (StatusCode, Json<SyncBody>) {
    ctx.sync.sync_now().await;
    (
        StatusCode::ACCEPTED,
        Json(SyncBody {
            status: "sync requested",
        }),
    )
}

async fn sync_reset(State(ctx): State<ApiContext>) -> (StatusCode, Json<SyncBody>) {
    ctx.sync.reset().await;
    (
        StatusCode::ACCEPTED,
        Json(SyncBody {
            status: "sync reset",
        }),
    )
}

async fn metrics(State(ctx): State<ApiContext>) -> Result<Response, HttpError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ctx.registry)
        .map_err(|e| HttpError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}
