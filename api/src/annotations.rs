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

fn parse_sha(text: &str) -> Result<Sha256, ApiError> {
    Sha256::parse_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hash",
            "images are named by 64 hex digits (SHA-256)",
        )
    })
}

fn view(v: &Version) -> Value {
    let shapes: Value = serde_json::from_str(&v.shapes).unwrap_or(Value::Null);
    json!({ "version": v.version, "shapes": shapes, "saved_by": v.saved_by, "saved_ms": v.saved_ms })
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
        (None, Some(i)) => {
            let shapes: Value = serde_json::from_str(&i.shapes).unwrap_or(json!([]));
            json!({ "version": 0, "shapes": shapes, "saved_by": null, "saved_ms": null, "imported_from": i.source })
        }
        (None, None) => json!({ "version": 0, "shapes": [], "saved_by": null, "saved_ms": null }),
    };
    let version = current.map(|v| v.version).unwrap_or(0);
    Ok(([(header::ETAG, format!("\"{version}\""))], Json(body)).into_response())
}

/// `GET …/annotations/history`: every version, oldest first.
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path((task, sha)): Path<(u64, String)>,
) -> Result<Json<Value>, ApiError> {
    let sha = parse_sha(&sha)?;
    may_read(&state, &principal, task, sha).await?;
    let versions = state
        .cluster
        .read_catalog(move |s| annotations::history(s, task, &sha))
        .await?;
    Ok(Json(
        json!({ "items": versions.iter().map(view).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Annotations")]
pub struct Body {
    #[schemars(with = "Vec<tessera_domain::shape::Shape>")]
    shapes: Value,
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
    let base = headers
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
        })?;
    let save = Save {
        task,
        sha,
        base,
        shapes: shapes.to_string(),
        user: principal.username,
        role: principal.role,
        at_ms: now_ms(),
    };
    // Under the request's idempotency id: a save retried with its `Idempotency-Key` gets its
    // first answer back instead of a conflict with itself.
    let outcome = propose(&state, save).await?;
    match outcome {
        SaveOutcome::Saved(version) => Ok((
            [(header::ETAG, format!("\"{version}\""))],
            Json(json!({ "version": version })),
        )
            .into_response()),
        SaveOutcome::Stale(current) => {
            let body = json!({
                "error": { "code": "stale_version", "message": format!("you edited version {base}; the current one is {current}") },
                "current_version": current,
            });
            Ok((
                StatusCode::PRECONDITION_FAILED,
                [(header::ETAG, format!("\"{current}\""))],
                Json(body),
            )
                .into_response())
        }
        other => Err(unexpected(other)),
    }
}
