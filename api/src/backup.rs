//! The admin routes `tessera backup` and `tessera restore` use (see "Backup and restore" in
//! `docs/architecture.md`): a catalogue dump streamed from one snapshot, pages of a shard's
//! object records, and writes that put objects (with their recorded metadata and reference
//! count) and catalogue records back into a new cluster.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use tessera_raft::backup::{take_frames, ObjectEntry, MAX_RECORD, RESTORE_DONE, RESTORE_MARKER};
use tessera_raft::storage::{ObjectMeta, Sha256};
use tessera_raft::ReadSpec;

use crate::error::{internal, invalid};
use crate::objects::read_raw_body;
use crate::{paging, ApiError, AppState};

/// The header of a catalogue dump naming the catalogue log index it reflects.
pub const CATALOG_INDEX_HEADER: &str = "x-tessera-catalog-index";

/// The largest catalogue chunk a restore sends in one request (one Raft entry): the CLI's
/// batch of about 4 MiB, plus one record of up to `MAX_RECORD`.
const MAX_CATALOG_CHUNK: u64 = (4 << 20) + MAX_RECORD as u64;

/// `GET /api/v1/backup/catalog`: every catalogue record but the cluster's own (placement,
/// signing key), as of one point after a catalogue barrier, streamed as frames (see
/// `tessera_raft::backup`).
pub async fn dump_catalog(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (index, chunks) = state.cluster.dump_catalog().await?;
    let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CATALOG_INDEX_HEADER, HeaderValue::from(index));
    Ok(response)
}

/// The query of [`list_objects`].
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectsQuery {
    /// The shard (0 to shards − 1).
    pub shard: u32,
    pub limit: Option<usize>,
    /// The SHA-256 the previous page ended at.
    pub cursor: Option<String>,
}

/// An object record as a backup lists it.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "BackupObject")]
pub struct BackupObject {
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub refcount: u64,
    pub created_ms: u64,
}

/// `GET /api/v1/backup/objects?shard=S`: a page of shard S's object records in hash order,
/// from this node's replica once it has applied everything the shard had committed; 409 when
/// this node holds no replica of the shard (`GET /api/v1/cluster` says which nodes do).
pub async fn list_objects(
    State(state): State<AppState>,
    Query(query): Query<ObjectsQuery>,
) -> Result<Json<Value>, ApiError> {
    let shards = state.cluster.spec().shards;
    if query.shard >= shards {
        return Err(invalid(format!(
            "shard: 0 to {}, not {}",
            shards.saturating_sub(1),
            query.shard
        )));
    }
    let group = query.shard + 1;
    if !state
        .cluster
        .placement()
        .replicas(group)
        .contains(&state.cluster.me())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_replica",
            format!(
                "node {} holds no replica of shard {}",
                state.cluster.me(),
                query.shard
            ),
        ));
    }
    let after = match query.cursor.as_deref() {
        Some(text) => Some(
            Sha256::parse_hex(text)
                .ok_or_else(|| invalid("cursor: not a SHA-256 (64 hex digits)"))?,
        ),
        None => None,
    };
    let limit = paging::limit(query.limit);
    let entries = state.cluster.list_objects(group, after, limit).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.sha.to_string()))
        .flatten();
    let items: Vec<BackupObject> = entries.iter().map(listed).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

fn listed(entry: &ObjectEntry) -> BackupObject {
    BackupObject {
        sha256: entry.sha.to_string(),
        size: entry.meta.size,
        content_type: entry.meta.content_type.clone(),
        width: entry.meta.width,
        height: entry.meta.height,
        refcount: entry.meta.refcount,
        created_ms: entry.meta.created_ms,
    }
}

/// The query of [`restore_object`]: the object's record as the backup holds it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreObjectQuery {
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    /// At least 1.
    pub refcount: u64,
    pub created_ms: u64,
}

/// `PUT /api/v1/backup/objects/{sha}`: stores the body (which must hash to `sha`) with the
/// backed-up record, then adds references until the count is the backed-up one. Safe to repeat:
/// the k-th reference of an object has a request id derived from (sha, k), so a retried or
/// re-run restore never counts one twice, and an object already at its count is left alone.
pub async fn restore_object(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    Query(query): Query<RestoreObjectQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let sha = Sha256::parse_hex(&sha).ok_or_else(|| invalid("sha: not a SHA-256"))?;
    if query.refcount == 0 {
        return Err(invalid("refcount: at least 1"));
    }
    restoring(&state).await?;
    let mut hasher = sha2::Sha256::new();
    let bytes = read_raw_body(&headers, body, state.limits.max_object_bytes, |chunk| {
        hasher.update(chunk)
    })
    .await?
    .freeze();
    let got = Sha256(hasher.finalize().into());
    if got != sha {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash_mismatch",
            format!("the body hashes to {got}, not {sha}"),
        ));
    }
    let current = state
        .cluster
        .read_object(sha, ReadSpec::record(true), 0)
        .await?
        .map(|read| read.head.meta.refcount);
    let mut refcount = match current {
        Some(count) => count,
        None => {
            let meta = ObjectMeta {
                size: bytes.len() as u64,
                content_type: query.content_type,
                width: query.width,
                height: query.height,
                refcount: 0,
                created_ms: query.created_ms,
            };
            state
                .cluster
                .put_object(sha, meta, bytes)
                .await?
                .meta
                .refcount
        }
    };
    let created = current.is_none();
    while refcount < query.refcount {
        let id = reference_id(&sha, refcount + 1);
        refcount = state
            .cluster
            .reference(id, sha, true)
            .await?
            .ok_or_else(|| internal(format!("object {sha} vanished during its restore")))?;
    }
    Ok(Json(
        json!({ "sha256": sha.to_string(), "refcount": refcount, "created": created }),
    ))
}

/// Objects with chosen reference counts are written only into a cluster a restore has claimed
/// (see [`restore_catalog`]) and not finished: on any other they would bypass the datasets that
/// own references.
async fn restoring(state: &AppState) -> Result<(), ApiError> {
    state.cluster.catalog_barrier().await?;
    let (claimed, done) = state
        .cluster
        .read_catalog(|r| {
            Ok((
                r.get(RESTORE_MARKER.as_bytes())?,
                r.get(RESTORE_DONE.as_bytes())?,
            ))
        })
        .await?;
    if claimed.is_none() || done.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_restoring",
            "objects are restored only into a cluster a restore has claimed (POST /api/v1/backup/catalog) and not finished",
        ));
    }
    Ok(())
}

/// The request id of the reference that brings a restored object's count to `k`.
fn reference_id(sha: &Sha256, k: u64) -> [u8; 16] {
    let digest = sha2::Sha256::new()
        .chain_update(b"tessera-restore-reference")
        .chain_update(sha.0)
        .chain_update(k.to_be_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// The query of [`restore_catalog`].
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreCatalogQuery {
    /// The backup's id (its manifest's `id`): a cluster takes records from one backup only.
    #[schemars(length(min = 1, max = 200))]
    pub backup: String,
    /// The last chunk: every node reloads its users and sessions from the restored records.
    #[serde(default)]
    pub done: bool,
}

/// `POST /api/v1/backup/catalog?backup=ID`: writes a chunk of catalogue records (frames as the
/// dump sends them). 409 when the catalogue already holds domain data (datasets, tasks, more
/// than the initial admin, ...) and is not being restored from this same backup.
pub async fn restore_catalog(
    State(state): State<AppState>,
    Query(query): Query<RestoreCatalogQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    if query.backup.is_empty() || query.backup.len() > 200 {
        return Err(invalid("backup: 1 to 200 characters"));
    }
    let raw = read_raw_body(&headers, body, MAX_CATALOG_CHUNK, |_| {}).await?;
    let mut buf = BytesMut::from(&raw[..]);
    let frames = take_frames(&mut buf, MAX_RECORD).map_err(invalid)?;
    if !buf.is_empty() {
        return Err(invalid("the body ends inside a record"));
    }
    let records = frames
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    match state
        .cluster
        .restore_catalog(query.backup, records, query.done)
        .await?
    {
        Ok(written) => Ok(Json(json!({ "written": written }))),
        Err(reason) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_new_cluster",
            reason,
        )),
    }
}

/// The schema of [`restore_object`]'s answer.
pub fn restored_object_schema() -> Value {
    json!({
        "type": "object",
        "required": ["sha256", "refcount", "created"],
        "properties": {
            "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
            "refcount": { "type": "integer", "minimum": 1 },
            "created": { "type": "boolean", "description": "false: the object was there already (a re-run)" },
        },
    })
}

/// The schema of [`restore_catalog`]'s answer.
pub fn restored_catalog_schema() -> Value {
    json!({
        "type": "object",
        "required": ["written"],
        "properties": { "written": { "type": "integer", "minimum": 0 } },
    })
}
