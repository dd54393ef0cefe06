//! Health, readiness, cluster status and initialisation.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tessera_raft::catalog::{random, CatalogOp, Role};
use tessera_raft::GroupStatus;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::users;
use crate::AppState;

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: every group hosted here has a leader.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.cluster.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "node": state.cluster.me() })),
    )
}

/// `POST /api/v1/cluster/init`: initialises a new cluster — Raft groups, placement, signing
/// key and the `admin` user — and is a no-op on an initialised one. It needs no token (there is
/// no user before it runs); a generated admin password is only written to this node's data dir,
/// never sent over the network.
pub async fn init(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let fresh = state.cluster.init_cluster().await?;
    let key = random()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    state
        .cluster
        .catalog(CatalogOp::InitClusterKey { key })
        .await?;
    let admin_created = users::bootstrap_admin(&state).await?;
    let file = state.data_dir.join("initial-admin-password");
    Ok(Json(json!({
        "initialized_groups": fresh,
        "admin_created": admin_created,
        "admin_password_file": (admin_created && file.exists()).then(|| file.display().to_string()),
    })))
}

/// `GET /api/v1/cluster`: nodes (up or not), and per group its replicas, leader, term and the
/// applied index of every replica, gathered from all nodes at once.
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Admin)?;
    let cluster = &state.cluster;
    let spec = cluster.spec();
    let reports =
        futures_util::future::join_all(spec.nodes.iter().map(|n| cluster.node_status(n.id))).await;
    let mut by_group: BTreeMap<u32, Vec<GroupStatus>> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (node, report) in spec.nodes.iter().zip(reports) {
        let up = report.is_ok();
        for g in report.unwrap_or_default() {
            by_group.entry(g.group).or_default().push(g);
        }
        nodes.push(json!({ "id": node.id, "http": node.http, "rpc": node.rpc, "up": up }));
    }
    let placement = cluster.placement();
    let groups: Vec<Value> = (0..placement.groups.len() as u32)
        .map(|group| {
            let reports = by_group.remove(&group).unwrap_or_default();
            // The leader's own report is authoritative; otherwise the newest term's view.
            let view = reports
                .iter()
                .find(|r| r.state == "leader")
                .or_else(|| reports.iter().max_by_key(|r| r.term));
            let replicas: BTreeMap<String, Value> = reports
                .iter()
                .map(|r| {
                    let v = json!({ "state": r.state, "applied": r.applied, "last_log": r.last_log, "snapshot": r.snapshot, "damaged": r.damaged });
                    (r.reporter.to_string(), v)
                })
                .collect();
            json!({
                "group": group,
                "shard": group.checked_sub(1),
                "voters": placement.replicas(group),
                "leader": view.and_then(|v| v.leader),
                "term": view.map(|v| v.term),
                "replicas": replicas,
            })
        })
        .collect();
    Ok(Json(json!({
        "node": cluster.me(),
        "shards": spec.shards,
        "replication": spec.replication,
        "placement_version": placement.version,
        "nodes": nodes,
        "groups": groups,
    })))
}
