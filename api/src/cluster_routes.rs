//! Health, readiness, cluster status and initialisation.

use std::collections::BTreeMap;

use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use tessera_domain::catalog::{CatalogOp, Role};
use tessera_raft::random;
use tessera_raft::GroupStatus;

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
        Json(json!({
            "ready": ready,
            "node": state.cluster.me(),
            "draining": state.cluster.is_draining(),
            "started_ms": state.started_ms,
        })),
    )
}

/// `POST /api/v1/cluster/restart` (admins): this node stops as it does on SIGTERM — not ready,
/// leaderships handed to caught-up voters, requests in flight finished — and starts again in
/// the same process from the same binary path, so a replaced binary is an upgrade. `tessera
/// node restart --id N` asks node N and waits until it is back.
pub async fn restart(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    tracing::info!("restart asked for");
    state.restart.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "node": state.cluster.me(), "restarting": true })),
    )
}

/// The file in a node's data dir holding its init token.
pub const INIT_TOKEN_FILE: &str = "init-token";

/// Creates the node's init token (32 random bytes, hex, mode 0600) unless it exists: the
/// credential for `POST /api/v1/cluster/init` before any user exists. Only someone who can
/// read the node's data dir (the operator, `tessera up`) has it.
pub fn ensure_init_token(data_dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(INIT_TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir)?;
    let token = hex::encode(random::<32>()?);
    let staged = data_dir.join(format!("{INIT_TOKEN_FILE}.new"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staged)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(staged, path)
}

/// Whether the request carries this node's init token, or an admin's token.
async fn may_init(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        crate::auth::unauthorized(format!(
            "initialising needs the node's init token (the file {INIT_TOKEN_FILE} in its data \
             dir) or an admin's token, as a bearer token"
        ))
    };
    let presented = crate::auth::request_token(&Method::POST, headers).ok_or_else(refused)?;
    let path = state.data_dir.join(INIT_TOKEN_FILE);
    let expected = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(crate::error::internal)?
        .map_err(crate::error::internal)?;
    let (a, b) = (expected.trim().as_bytes(), presented.as_bytes());
    // Constant time over the token's length: no early exit on the first differing byte.
    if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
        return Ok(());
    }
    match crate::auth::checked(state, presented).await {
        Ok(claims) if claims.role == Role::Admin => Ok(()),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "initialising needs the admin role or the node's init token",
        )),
        Err(_) => Err(refused()),
    }
}

/// `POST /api/v1/cluster/init`: initialises a new cluster — Raft groups, placement, signing
/// key and the `admin` user — and is a no-op on an initialised one. Before any user exists the
/// credential is the node's init token; a generated admin password is only written to this
/// node's data dir, never sent over the network. On a cluster that has its key (set last by
/// the first init, after every group) it initialises nothing and logs nothing.
pub async fn init(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    may_init(&state, &headers).await?;
    let fresh = if state.cluster.directory().key().is_some() {
        0
    } else {
        let fresh = state.cluster.init_cluster().await?;
        let key = random().map_err(crate::error::internal)?;
        state
            .cluster
            .catalog(CatalogOp::InitClusterKey { key })
            .await?;
        fresh
    };
    let admin_created = users::bootstrap_admin(&state).await?;
    let file = state.data_dir.join("initial-admin-password");
    Ok(Json(json!({
        "initialized_groups": fresh,
        "admin_created": admin_created,
        "admin_password_file": (admin_created && file.exists()).then(|| file.display().to_string()),
    })))
}

/// The JSON Schema of [`init`]'s answer, for the OpenAPI document.
pub fn init_schema() -> Value {
    json!({
        "type": "object",
        "required": ["initialized_groups", "admin_created", "admin_password_file"],
        "properties": {
            "initialized_groups": { "type": "integer", "minimum": 0, "description": "0 on an initialised cluster" },
            "admin_created": { "type": "boolean" },
            "admin_password_file": { "type": ["string", "null"], "description": "where this node wrote a generated admin password" },
        },
    })
}

/// The JSON Schema of [`status`]'s answer, for the OpenAPI document.
pub fn status_schema() -> Value {
    let id = json!({ "type": "integer", "minimum": 0 });
    let maybe_index = json!({ "type": ["integer", "null"], "minimum": 0 });
    let replica = json!({
        "type": "object",
        "required": ["state", "term", "leader", "applied", "last_log", "snapshot", "damaged"],
        "properties": {
            "state": { "type": "string", "description": "leader, follower, candidate, learner or shutdown" },
            "term": id,
            "leader": maybe_index,
            "applied": maybe_index,
            "last_log": maybe_index,
            "snapshot": maybe_index,
            "damaged": { "type": "integer", "minimum": 0, "description": "objects whose local bytes failed their checksum, not repaired yet" },
        },
    });
    let node = json!({
        "type": "object",
        "required": ["id", "http", "rpc", "up"],
        "properties": { "id": id, "http": { "type": "string" }, "rpc": { "type": "string" }, "up": { "type": "boolean" } },
    });
    let group = json!({
        "type": "object",
        "required": ["group", "shard", "voters", "leader", "term", "replicas"],
        "properties": {
            "group": id,
            "shard": { "type": ["integer", "null"], "description": "null for the catalogue group (0)" },
            "voters": { "type": "array", "items": id },
            "leader": maybe_index,
            "term": maybe_index,
            "replicas": { "type": "object", "description": "per reporting node id", "additionalProperties": replica },
        },
    });
    json!({
        "type": "object",
        "required": ["node", "shards", "replication", "placement_version", "nodes", "groups"],
        "properties": {
            "node": id,
            "shards": id,
            "replication": id,
            "placement_version": id,
            "nodes": { "type": "array", "items": node },
            "groups": { "type": "array", "items": group },
        },
    })
}

/// `GET /api/v1/cluster`: nodes (up or not), and per group its replicas, leader, term and each
/// replica's own view (state, term, the leader it knows, applied index), gathered from all
/// nodes at once: a replica whose term is ahead of its leader's shows an election under way.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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
                    let v = json!({ "state": r.state, "term": r.term, "leader": r.leader, "applied": r.applied, "last_log": r.last_log, "snapshot": r.snapshot, "damaged": r.damaged });
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
