//! Review comments: `GET/POST /api/v1/tasks/{id}/comments`, `POST /api/v1/comments/{id}/resolve`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tessera_domain::comments::{self, Comment, CommentOp, CommentOutcome};
use tessera_raft::storage::Sha256;

use crate::auth::Principal;
use crate::error::{unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

/// A comment as the API answers it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Comment")]
pub struct CommentView {
    id: u64,
    task: u64,
    sha256: String,
    /// The point of the image it is about (pixels).
    x: f64,
    y: f64,
    text: String,
    by: String,
    at_ms: u64,
    /// The comment this one answers (its thread's first comment).
    parent: Option<u64>,
    resolved_by: Option<String>,
}

fn view(c: &Comment) -> CommentView {
    CommentView {
        id: c.id,
        task: c.task,
        sha256: c.sha.to_string(),
        x: c.x,
        y: c.y,
        text: c.text.clone(),
        by: c.by.clone(),
        at_ms: c.at_ms,
        parent: c.parent,
        resolved_by: c.resolved_by.clone(),
    }
}

async fn apply(state: &AppState, op: CommentOp) -> Result<Comment, ApiError> {
    match propose(state, op).await? {
        CommentOutcome::Comment(c) => Ok(*c),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/tasks/{id}/comments`: the task's threads, oldest first (assignee, reviewers and up).
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(task): Path<u64>,
) -> Result<Json<crate::paging::Items<CommentView>>, ApiError> {
    let t = crate::tasks::load(&state, task).await?;
    if t.assignee.as_deref() != Some(principal.username.as_str()) {
        crate::annotation_sets::require_reviewer_of(&state, &principal, t.set_id).await?;
    }
    let all = state
        .cluster
        .read_catalog(move |s| comments::of_task(s, task))
        .await?;
    Ok(Json(crate::paging::Items {
        items: all.iter().map(view).collect(),
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    sha256: Option<String>,
    #[serde(default)]
    x: f64,
    #[serde(default)]
    y: f64,
    #[schemars(length(min = 1, max = 5000))]
    text: String,
    parent: Option<u64>,
}

/// `POST /api/v1/tasks/{id}/comments`: `{"sha256", "x", "y", "text"}` starts a thread at a point
/// of an image; `{"parent", "text"}` answers one.
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    Path(task): Path<u64>,
    JsonBody(new): JsonBody<NewComment>,
) -> Result<Response, ApiError> {
    if new.text.trim().is_empty() || new.text.chars().count() > 5000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "text: 1-5000 characters",
        ));
    }
    let sha = match new.sha256.as_deref() {
        Some(text) => Some(Sha256::parse_hex(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "sha256: 64 hex digits",
            )
        })?),
        None => None,
    };
    let op = CommentOp::Add {
        task,
        sha,
        x: new.x,
        y: new.y,
        text: new.text,
        parent: new.parent,
        by: principal.username,
        role: principal.role,
        at_ms: now_ms(),
    };
    let comment = apply(&state, op).await?;
    Ok((StatusCode::CREATED, Json(view(&comment))).into_response())
}

/// `POST /api/v1/comments/{id}/resolve` (reviewers and up).
pub async fn resolve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<CommentView>, ApiError> {
    let comment = apply(
        &state,
        CommentOp::Resolve {
            id,
            by: principal.username,
            role: principal.role,
        },
    )
    .await?;
    Ok(Json(view(&comment)))
}
