//! `/api/v1/tasks/{id}/images/{sha}/annotations`: the versioned shapes of one image in one task.
//!
//! `GET` returns the current version with `ETag: "<version>"`; `PUT` must send
//! `If-Match: "<version>"` (`"0"` for an image without annotations yet). A stale version gets
//! `412` with the current one, so concurrent editors never overwrite each other silently.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::annotations::{self, Save, SaveOutcome, Version};
use tessera_raft::storage::Sha256;

use crate::auth::Principal;
use crate::error::{unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

pub(crate) fn parse_sha(text: &str) -> Result<Sha256, ApiError> {
    Sha256::parse_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hash",
            "images are named by 64 hex digits (SHA-256)",
        )
    })
}

/// A saved version of an image's shapes in a task (version 0: nothing saved yet, perhaps
/// pre-annotations from an import).
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "AnnotationVersion")]
pub struct VersionView {
    version: u64,
    /// Validated when saved or imported.
    #[schemars(with = "Vec<tessera_domain::shape::Shape>")]
    shapes: Value,
    saved_by: Option<String>,
    saved_ms: Option<u64>,
    /// The import that pre-annotated the image, on version 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    imported_from: Option<String>,
}

/// The shapes of a saved version, as the client sent them (validated then).
fn shapes_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!([]))
}

fn view(v: &Version) -> VersionView {
    VersionView {
        version: v.version,
        shapes: shapes_of(&v.shapes),
        saved_by: Some(v.saved_by.clone()),
        saved_ms: Some(v.saved_ms),
        imported_from: None,
    }
}

/// Reading needs the task's assignee or a reviewer and up.
async fn may_read(
    state: &AppState,
    principal: &Principal,
    task: u64,
    sha: Sha256,
) -> Result<(), ApiError> {
    let task = crate::tasks::load(state, task).await?;
    if !task.images.contains(&sha) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_in_task",
            format!("image {sha} is not in task {}", task.id),
        ));
    }
    if task.assignee.as_deref() != Some(principal.username.as_str()) {
        crate::annotation_sets::require_reviewer_of(state, principal, task.set_id).await?;
    }
    Ok(())
}

/// `GET …/annotations`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((task, sha)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    let sha = parse_sha(&sha)?;
    may_read(&state, &principal, task, sha).await?;
    // Before the first save, the image starts from shapes imported from another tool, if any.
    let (current, imported) = state
        .cluster
        .read_catalog(move |s| {
            let current = annotations::current(s, task, &sha)?;
            let imported = match (&current, tessera_domain::tasks::task(s, task)?) {
                (None, Some(t)) => annotations::imported(s, t.set_id, &sha)?,
                _ => None,
            };
            Ok((current, imported))
        })
        .await?;
    let body = match (&current, imported) {
        (Some(v), _) => view(v),
        (None, Some(i)) => VersionView {
            version: 0,
            shapes: shapes_of(&i.shapes),
            saved_by: None,
            saved_ms: None,
            imported_from: Some(i.source),
        },
        (None, None) => VersionView {
            version: 0,
            shapes: json!([]),
            saved_by: None,
            saved_ms: None,
            imported_from: None,
        },
    };
    let version = current.map(|v| v.version).unwrap_or(0);
    Ok(([(header::ETAG, format!("\"{version}\""))], Json(body)).into_response())
}

/// `GET …/annotations/history`: every version, oldest first.
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path((task, sha)): Path<(u64, String)>,
) -> Result<Json<crate::paging::Items<VersionView>>, ApiError> {
    let sha = parse_sha(&sha)?;
    may_read(&state, &principal, task, sha).await?;
    let versions = state
        .cluster
        .read_catalog(move |s| annotations::history(s, task, &sha))
        .await?;
    Ok(Json(crate::paging::Items {
        items: versions.iter().map(view).collect(),
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Annotations")]
pub struct Body {
    #[schemars(with = "Vec<tessera_domain::shape::Shape>")]
    shapes: Value,
}

/// The version named by `If-Match` (the one the client edited).
fn if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "send If-Match with the version you edited (\"0\" for none)",
            )
        })
}

/// The 412 of a save made on version `base` while `current` is the current one.
fn stale(base: u64, current: u64) -> Response {
    let body = json!({
        "error": { "code": "stale_version", "message": format!("you edited version {base}; the current one is {current}") },
        "current_version": current,
    });
    (
        StatusCode::PRECONDITION_FAILED,
        [(header::ETAG, format!("\"{current}\""))],
        Json(body),
    )
        .into_response()
}

/// Saves `shapes` (JSON text) as the version after `base`, or answers 412 when `base` is no
/// longer the current version.
async fn commit(
    state: &AppState,
    principal: Principal,
    (task, sha): (u64, Sha256),
    base: u64,
    shapes: String,
) -> Result<Response, ApiError> {
    let save = Save {
        task,
        sha,
        base,
        shapes,
        user: principal.username,
        role: principal.role,
        at_ms: now_ms(),
    };
    // Under the request's idempotency id: a save retried with its `Idempotency-Key` gets its
    // first answer back instead of a conflict with itself.
    let outcome = propose(state, save).await?;
    match outcome {
        SaveOutcome::Saved(version) => Ok((
            [(header::ETAG, format!("\"{version}\""))],
            Json(json!({ "version": version })),
        )
            .into_response()),
        SaveOutcome::Stale(current) => Ok(stale(base, current)),
        other => Err(unexpected(other)),
    }
}

/// `PUT …/annotations` with `If-Match`.
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path((task, sha)): Path<(u64, String)>,
    headers: HeaderMap,
    JsonBody(Body { shapes }): JsonBody<Body>,
) -> Result<Response, ApiError> {
    let sha = parse_sha(&sha)?;
    let base = if_match(&headers)?;
    commit(&state, principal, (task, sha), base, shapes.to_string()).await
}

/// The body of `PATCH …/annotations`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// How many shapes the edited version has: a check that the splices were made on it.
    base_len: usize,
    /// `[at, remove, [shape, …]]`, by position in the edited version, in order.
    #[schemars(with = "Vec<(usize, usize, Vec<tessera_domain::shape::Shape>)>")]
    splices: Vec<annotations::Splice>,
}

/// `PATCH …/annotations` with `If-Match`: what changed since the edited version (shapes
/// replaced, inserted and removed by position), applied to that version here and saved as a
/// whole, under the same version check and validation as `PUT`. An editor of thousands of
/// shapes sends the few it changed instead of megabytes; positions need no per-shape ids
/// because `If-Match` pins the list they index. A version this node has not applied yet is
/// waited for (a barrier) before the patch is called stale.
pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((task, sha)): Path<(u64, String)>,
    headers: HeaderMap,
    JsonBody(PatchBody { base_len, splices }): JsonBody<PatchBody>,
) -> Result<Response, ApiError> {
    let sha = parse_sha(&sha)?;
    let base = if_match(&headers)?;
    may_read(&state, &principal, task, sha).await?;
    let read = || {
        state
            .cluster
            .read_catalog(move |s| annotations::current(s, task, &sha))
    };
    let mut current = read().await?;
    if current.as_ref().map(|v| v.version) != Some(base) {
        state.cluster.catalog_barrier().await?;
        current = read().await?;
    }
    let edited = match current {
        Some(v) if v.version == base => v,
        other => return Ok(stale(base, other.map(|v| v.version).unwrap_or(0))),
    };
    let shapes = annotations::splice(&edited.shapes, base_len, splices)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_patch", e))?;
    commit(&state, principal, (task, sha), base, shapes).await
}
