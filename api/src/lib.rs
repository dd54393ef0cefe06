//! Tessera's HTTP API: object upload and serving, cluster status and metrics.
//!
//! Every node serves the whole API: handlers talk to [`tessera_raft::Cluster`], which answers
//! from a local replica or forwards to the node that can. Errors are JSON
//! (`{"error": {"code": ..., "message": ...}}`, see [`ApiError`]).

mod access;
mod annotation_import;
mod annotation_sets;
mod annotations;
pub mod auth;
pub mod backup;
mod body_limit;
mod body_timeout;
pub mod cluster_routes;
mod comments;
mod datasets;
pub mod derived;
mod error;
mod export;
pub mod fastpath;
mod idempotency;
mod import;
pub mod jobs;
mod json_body;
mod json_depth;
pub mod login_throttle;
mod long_work;
mod metrics;
mod nodes;
pub mod oauth;
mod objects;
mod paging;
mod password;
mod propose;
pub mod quality;
pub mod routes;
pub mod security_headers;
mod sessions;
mod tasks;
pub mod token;
mod ui;
mod users;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_raft::Cluster;

pub use error::ApiError;
pub use metrics::{install_recorder, spawn_gauges};

/// Limits applied to client requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted upload, in bytes.
    pub max_object_bytes: u64,
    /// Lifetime of access tokens, in milliseconds.
    pub access_token_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: 64 << 20,
            access_token_ttl_ms: 60 * 60 * 1000,
        }
    }
}

/// Largest JSON request body (a few thousand shapes fit easily).
pub const JSON_BODY_LIMIT: usize = 8 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub cluster: Arc<Cluster>,
    pub limits: Limits,
    pub metrics: PrometheusHandle,
    /// This node's data directory (where a generated admin password is written).
    pub data_dir: PathBuf,
    /// Back-off on failed sign-ins at this node.
    pub login_throttle: Arc<login_throttle::LoginThrottle>,
    /// Thumbnail and preview generations in flight at this node.
    pub derived: Arc<derived::Derived>,
    /// Notified by `POST /api/v1/cluster/restart`: the node stops as on SIGTERM (leaderships
    /// handed off, requests drained) and starts again in the same process (`tessera run`).
    pub restart: Arc<tokio::sync::Notify>,
    /// When this node process started (ms since the epoch), so that a client can tell a
    /// restarted node from the one before.
    pub started_ms: u64,
}

/// The complete HTTP router of a node.
pub fn router(state: AppState) -> Router {
    routes::mount(Router::new(), &state)
        .fallback(ui::serve)
        // JSON bodies are capped; uploads stream through a raw body, which this does not
        // limit, and enforce their own limit (see `objects::upload`).
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(body_timeout::layer))
        .layer(axum::middleware::from_fn(idempotency::layer))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::map_response(security_headers::add))
        .with_state(state)
}
