//! The node set of a running cluster (admins): list the nodes with the replicas they hold and
//! the moves under way, add a node, remove or decommission one. The moves themselves are the
//! catalogue leader's (`tessera_raft` `rebalance.rs`); these routes change the node set and
//! report on it.

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tessera_raft::membership::{ChangeError, MembershipReport};
use tessera_raft::{Members, NodeSpec};

use crate::error::{invalid, ApiError};
use crate::json_body::JsonBody;
use crate::AppState;

/// `POST /api/v1/cluster/nodes`: a node to add, already running with `tessera run`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    #[schemars(range(min = 1))]
    id: u64,
    /// Its HTTP address (host:port), as in its `cluster.toml` entry.
    http: String,
    /// Its internal RPC address (host:port).
    rpc: String,
}

/// `DELETE /api/v1/cluster/nodes/{id}`'s options.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// The node is gone for good: rebuild its replicas from the others without asking it.
    #[serde(default)]
    decommission: bool,
}

/// One node of the cluster.
#[derive(Serialize, schemars::JsonSchema)]
pub struct NodeView {
    id: u64,
    http: String,
    rpc: String,
    /// `active`, or `leaving` while its replicas move away.
    state: &'static str,
    /// Whether it answered just now.
    up: bool,
    /// Groups it holds a replica of now.
    holds: usize,
    /// Groups it holds once every move is done.
    target: usize,
}

/// A replica move under way.
#[derive(Serialize, schemars::JsonSchema)]
pub struct MoveView {
    group: u32,
    from: Vec<u64>,
    to: Vec<u64>,
    elapsed_ms: u64,
    retries: u32,
}

/// The moves: what is left, what runs, how long they take.
#[derive(Serialize, schemars::JsonSchema)]
pub struct MovesView {
    /// Groups whose replicas still have to move.
    to_go: Vec<u32>,
    running: Vec<MoveView>,
    /// Moves finished since the current catalogue leader took over.
    done: u64,
    mean_ms: Option<u64>,
    /// Moves the cluster runs at once.
    limit: Option<usize>,
    /// Seconds until every move is done, from the mean so far (none before one finished).
    eta_s: Option<u64>,
}

/// `GET /api/v1/cluster/nodes`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct NodesView {
    /// Bumped by every change of the node set.
    members_version: u64,
    /// Bumped by every finished move.
    placement_version: u64,
    nodes: Vec<NodeView>,
    moves: MovesView,
}

fn view(report: MembershipReport, up: &[bool]) -> NodesView {
    let MembershipReport {
        members,
        placement_version,
        to_go,
        held,
        moves,
    } = report;
    let nodes = members
        .nodes
        .iter()
        .zip(up.iter().chain(std::iter::repeat(&false)))
        .map(|(n, up)| {
            let (holds, target) = held.get(&n.id).copied().unwrap_or_default();
            NodeView {
                id: n.id,
                http: n.http.clone(),
                rpc: n.rpc.clone(),
                state: if members.leaving.contains(&n.id) {
                    "leaving"
                } else {
                    "active"
                },
                up: *up,
                holds,
                target,
            }
        })
        .collect();
    let moves = moves.unwrap_or_default();
    let eta_s = moves.mean_ms.map(|mean| {
        let waves = to_go.len().div_ceil(moves.limit.max(1)) as u64;
        waves * mean / 1000
    });
    NodesView {
        members_version: members.version,
        placement_version,
        nodes,
        moves: MovesView {
            to_go,
            running: moves
                .running
                .into_iter()
                .map(|m| MoveView {
                    group: m.group,
                    from: m.from,
                    to: m.to,
                    elapsed_ms: m.elapsed_ms,
                    retries: m.retries,
                })
                .collect(),
            done: moves.done,
            mean_ms: moves.mean_ms,
            limit: (moves.limit > 0).then_some(moves.limit),
            eta_s,
        },
    }
}

/// `GET /api/v1/cluster/nodes` (admins): the node set and the moves.
pub async fn list(State(state): State<AppState>) -> Result<Json<NodesView>, ApiError> {
    let cluster = &state.cluster;
    let report = cluster.membership_report().await?;
    let up = futures_util::future::join_all(
        report
            .members
            .nodes
            .iter()
            .map(|n| async move { cluster.node_status(n.id).await.is_ok() }),
    )
    .await;
    Ok(Json(view(report, &up)))
}

/// `POST /api/v1/cluster/nodes` (admins): adds a running node; its replicas arrive by moves.
pub async fn add(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewNode>,
) -> Result<(StatusCode, Json<NodesView>), ApiError> {
    for (field, address) in [("http", &new.http), ("rpc", &new.rpc)] {
        address.parse::<SocketAddr>().map_err(|_| {
            invalid(format!(
                "{field}: {address:?} is not an IP address and port (like 10.0.0.4:8080)"
            ))
        })?;
    }
    let node = NodeSpec {
        id: new.id,
        http: new.http,
        rpc: new.rpc,
    };
    state.cluster.add_node(node).await.map_err(change_error)?;
    Ok((StatusCode::ACCEPTED, list(State(state)).await?))
}

/// `DELETE /api/v1/cluster/nodes/{id}` (admins): the node's replicas move to the others, then
/// it leaves the cluster; `?decommission=true` for a node that is gone.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(options): Query<RemoveQuery>,
) -> Result<(StatusCode, Json<NodesView>), ApiError> {
    let _: Members = state
        .cluster
        .remove_node(id, options.decommission)
        .await
        .map_err(change_error)?;
    Ok((StatusCode::ACCEPTED, list(State(state)).await?))
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::Refused(refused) => ApiError::new(
            StatusCode::CONFLICT,
            "membership_refused",
            refused.to_string(),
        ),
        ChangeError::Cluster(e) => e.into(),
    }
}
