//! Prometheus metrics: HTTP requests by route and status, Raft state per group, RocksDB sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tessera_raft::storage::Cf;
use tessera_raft::Cluster;

use crate::AppState;

/// Installs the process-wide metrics recorder. Call once, before serving.
pub fn install_recorder() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tessera_http_request_duration_seconds".into()),
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tessera_raft_log_write_seconds".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tessera_blocking_queue_seconds".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tessera_stall_seconds".into()),
            &[0.5, 1.0, 2.0, 5.0, 10.0],
        )?
        .install_recorder()
}

/// Records every request: count by route, method and status, and latency by route.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tessera_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Refreshes the gauges that are read from state rather than counted on events: Raft term,
/// leader and applied index per local group, and RocksDB sizes. Also runs the exporter's upkeep.
pub fn spawn_gauges(cluster: Arc<Cluster>, handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
            for g in cluster.local_status() {
                let group = g.group.to_string();
                metrics::gauge!("tessera_raft_term", "group" => group.clone()).set(g.term as f64);
                metrics::gauge!("tessera_raft_leader", "group" => group.clone())
                    .set(g.leader.map(|l| l as f64).unwrap_or(-1.0));
                metrics::gauge!("tessera_raft_is_leader", "group" => group.clone())
                    .set(f64::from(u8::from(g.state == "leader")));
                metrics::gauge!("tessera_raft_applied_index", "group" => group)
                    .set(g.applied.unwrap_or(0) as f64);
            }
            let (hits, misses, cached) = cluster.cache_stats();
            metrics::gauge!("tessera_cache_hits").set(hits as f64);
            metrics::gauge!("tessera_cache_misses").set(misses as f64);
            metrics::gauge!("tessera_cache_bytes").set(cached as f64);
            let store = cluster.store().clone();
            let sizes = tokio::task::spawn_blocking(move || {
                [Cf::Log, Cf::Objects, Cf::Blobs].map(|cf| {
                    let sst = store
                        .property(cf, "rocksdb.live-sst-files-size")
                        .unwrap_or(0);
                    let blob = store
                        .property(cf, "rocksdb.total-blob-file-size")
                        .unwrap_or(0);
                    (cf.name(), sst, blob)
                })
            })
            .await;
            for (cf, sst, blob) in sizes.into_iter().flatten() {
                metrics::gauge!("tessera_rocksdb_sst_bytes", "cf" => cf).set(sst as f64);
                metrics::gauge!("tessera_rocksdb_blob_bytes", "cf" => cf).set(blob as f64);
            }
        }
    });
}
