//! Tessera's HTTP API: object upload and serving, cluster status and metrics.
//!
//! Every node serves the whole API: handlers talk to [`tessera_raft::Cluster`], which answers
//! from a local replica or forwards to the node that can. Errors are JSON
//! (`{"error": {"code": ..., "message": ...}}`, see [`ApiError`]).

pub mod auth;
pub mod client;
mod cluster_routes;
mod datasets;
mod error;
mod metrics;
mod oauth;
mod objects;
mod password;
pub mod token;
mod users;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
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

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub cluster: Arc<Cluster>,
    pub limits: Limits,
    pub metrics: PrometheusHandle,
    /// This node's data directory (where a generated admin password is written).
    pub data_dir: PathBuf,
}

/// The complete HTTP router of a node.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/objects/{sha}", get(objects::serve))
        .route("/api/v1/objects", post(objects::upload))
        .route("/api/v1/objects/{sha}", get(objects::metadata))
        .route("/api/v1/cluster", get(cluster_routes::status))
        .route("/api/v1/cluster/init", post(cluster_routes::init))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route(
            "/api/v1/users/{name}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route(
            "/api/v1/datasets",
            get(datasets::list).post(datasets::create),
        )
        .route(
            "/api/v1/datasets/{id}",
            get(datasets::get)
                .patch(datasets::rename)
                .delete(datasets::delete),
        )
        .route(
            "/api/v1/datasets/{id}/images",
            get(datasets::images).post(datasets::add_images),
        )
        .route(
            "/api/v1/datasets/{id}/images/remove",
            post(datasets::remove),
        )
        .route("/api/v1/me", get(users::me))
        .route("/api/v1/me/tokens", post(oauth::api_token))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/healthz", get(cluster_routes::healthz))
        .route("/readyz", get(cluster_routes::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(error::not_found)
        // Uploads enforce their own limit while streaming (see `objects::upload`).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}
