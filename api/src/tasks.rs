//! Tasks: splitting an annotation set into chunks, assignment and the pool, the
//! annotate → submit → review → accept/reject workflow.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::catalog::Role;
use tessera_domain::tasks::{self, Action, Task, TaskIndex, TaskOp, TaskOutcome, TaskState};
use tessera_domain::{annotation_sets, datasets};

use crate::auth::Principal;
use crate::error::{invalid, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::paging;
use crate::propose::propose;
use crate::token::{self, now_ms};
use crate::AppState;

const URL_TTL_MS: u64 = 4 * 60 * 60 * 1000;

/// A task in a list; a rejected one carries the reviewer's reason, which its assignee reads
/// on their list before opening it.
/// Lists of the caller's, the pool's and the review queue's tasks add each one's `set_name`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct TaskSummary {
    id: u64,
    annotation_set: u64,
    /// Tasks made from the same chunk of images (overlap) share it.
    chunk: u64,
    state: TaskState,
    assignee: Option<String>,
    reviewer: Option<String>,
    image_count: usize,
    /// The reviewer's reason, on a rejected task.
    reason: Option<String>,
}

fn summary(t: &Task) -> TaskSummary {
    let reason = (t.state == TaskState::Rejected)
        .then(|| t.history.iter().rev().find_map(|e| e.reason.clone()))
        .flatten();
    TaskSummary {
        id: t.id,
        annotation_set: t.set_id,
        chunk: t.chunk,
        state: t.state,
        assignee: t.assignee.clone(),
        reviewer: t.reviewer.clone(),
        image_count: t.images.len(),
        reason,
    }
}

/// A task in full (`GET /api/v1/tasks/{id}` and the answers to its actions).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    summary: TaskSummary,
    /// Null if the annotation set is gone.
    set_name: Option<String>,
    labels: Option<Vec<tessera_domain::annotation_sets::Label>>,
    images: Vec<TaskImage>,
    history: Vec<tessera_domain::tasks::TaskEvent>,
}

/// An image of a task: name and size from its dataset (null if it left the dataset), and a
/// presigned URL of its bytes.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct TaskImage {
    sha256: String,
    name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    /// Null until the cluster has a signing key.
    url: Option<String>,
}

/// A task in full, with its images' names and presigned URLs and its annotation set's name and
/// label schema (what an annotator's page loads: annotators may not read annotation sets).
async fn detail(state: &AppState, t: &Task) -> Result<TaskDetail, ApiError> {
    let (set_id, shas) = (t.set_id, t.images.clone());
    // The images' names and sizes too: annotators cannot read the dataset.
    let (set, images) = state
        .cluster
        .read_catalog(move |s| {
            let set = annotation_sets::annotation_set(s, set_id)?;
            let mut images = Vec::with_capacity(shas.len());
            for sha in &shas {
                let image = match &set {
                    Some(set) => datasets::image(s, set.dataset_id, sha)?,
                    None => None,
                };
                images.push(image);
            }
            Ok((set, images))
        })
        .await?;
    let key = state.cluster.directory().key();
    let expires = now_ms() + URL_TTL_MS;
    let images = t
        .images
        .iter()
        .zip(images)
        .map(|(sha, image)| {
            let sha = sha.to_string();
            let url = key.map(|k| format!("/objects/{sha}?{}", token::presign(&k, &sha, expires)));
            let (name, width, height) = match image {
                Some(i) => (Some(i.name), Some(i.width), Some(i.height)),
                None => (None, None, None),
            };
            TaskImage {
                sha256: sha,
                name,
                width,
                height,
                url,
            }
        })
        .collect();
    Ok(TaskDetail {
        summary: summary(t),
        set_name: set.as_ref().map(|s| s.name.clone()),
        labels: set.map(|s| s.labels),
        images,
        history: t.history.clone(),
    })
}

pub(crate) fn no_such_task(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_task",
        format!("no task {id}"),
    )
}

/// A task read after a catalogue barrier (read-your-writes), or a 404.
pub(crate) async fn load(state: &AppState, id: u64) -> Result<Task, ApiError> {
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .read_catalog(move |s| tasks::task(s, id))
        .await?
        .ok_or_else(|| no_such_task(id))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBody {
    #[schemars(range(min = 1, max = 10_000))]
    chunk_size: usize,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 16))]
    overlap: u32,
    #[serde(default)]
    assignees: Vec<String>,
}

fn one() -> u32 {
    1
}

/// `POST /api/v1/annotation-sets/{id}/tasks/split`: `{"chunk_size": 50, "overlap": 1,
/// "assignees": ["ann1", "ann2"]}`; without assignees the tasks go to the pool. Only images
/// that no task of the set holds are split (so a second split takes what was added since), in
/// file-name order; the reply says how many were left out.
pub async fn split(
    State(state): State<AppState>,
    principal: Principal,
    Path(set_id): Path<u64>,
    JsonBody(SplitBody {
        chunk_size,
        overlap,
        assignees,
    }): JsonBody<SplitBody>,
) -> Result<Response, ApiError> {
    if !(1..=10_000).contains(&chunk_size) {
        return Err(invalid("chunk_size: 1 to 10000"));
    }
    if overlap == 0 || overlap > 16 {
        return Err(invalid("overlap: 1 to 16"));
    }
    state.cluster.catalog_barrier().await?;
    for (i, name) in assignees.iter().enumerate() {
        let user = state.cluster.directory().user(name);
        if user.is_none_or(|a| a.user.disabled) {
            return Err(invalid(format!("assignees[{i}]: no active user {name}")));
        }
    }
    if !assignees.is_empty() && (assignees.len() as u32) < overlap {
        return Err(invalid(format!("overlap {overlap} needs at least {overlap} assignees, so copies go to different people")));
    }
    let set = state
        .cluster
        .read_catalog(move |s| annotation_sets::annotation_set(s, set_id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_annotation_set",
                format!("no annotation set {set_id}"),
            )
        })?;
    let dataset = set.dataset_id;
    let mut images = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .cluster
            .read_catalog(move |s| datasets::images(s, dataset, after.as_ref(), 5000))
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.sha);
        images.extend(page);
    }
    // The dataset's order (file name, then when it was added), not the hash order records are
    // kept in: consecutive video frames and PDF pages go to one task, in order.
    images.sort_by(|a, b| (&a.name, a.added_ms, a.sha).cmp(&(&b.name, b.added_ms, b.sha)));
    let mut shas: Vec<_> = images.into_iter().map(|i| i.sha).collect();
    if shas.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "empty_dataset",
            "the dataset has no images to split",
        ));
    }
    let held = state
        .cluster
        .read_catalog(move |s| tasks::tasked_images(s, set_id))
        .await?;
    let before = shas.len();
    shas.retain(|sha| !held.contains(sha));
    let already_tasked = before - shas.len();
    if shas.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_split",
            format!(
                "all {before} images of the dataset already have a task in this annotation set; \
                 archive a task to split its images again"
            ),
        ));
    }
    let images = shas.len();
    let chunks: Vec<_> = shas.chunks(chunk_size).map(<[_]>::to_vec).collect();
    let op = TaskOp::Split {
        set_id,
        chunks,
        overlap,
        assignees,
        by: principal.username,
        at_ms: now_ms(),
    };
    match propose(&state, op).await? {
        TaskOutcome::Created(ids) => {
            let reply = json!({ "tasks": ids, "images": images, "already_tasked": already_tasked });
            Ok((StatusCode::CREATED, Json(reply)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Page {
    limit: Option<usize>,
    cursor: Option<u64>,
    state: Option<String>,
}

/// The review queue's query: a page, or with `order=agreement` its least agreed tasks first
/// (after those to review first by their honeypot score).
#[derive(Deserialize, schemars::JsonSchema)]
pub struct ReviewPage {
    limit: Option<usize>,
    cursor: Option<u64>,
    state: Option<String>,
    /// `id` (the default) or `agreement`.
    #[schemars(regex(pattern = r"^(id|agreement)$"))]
    order: Option<String>,
}

/// A page of the tasks in `indexes` (merged in id order) that `keep` accepts.
async fn page_of(
    state: &AppState,
    page: Page,
    indexes: Vec<TaskIndex>,
    keep: impl Fn(&Task) -> bool + Send + Sync + 'static,
) -> Result<Json<Value>, ApiError> {
    let limit = paging::limit(page.limit);
    let wanted = page.state;
    state.cluster.catalog_barrier().await?;
    let found = state
        .cluster
        .read_catalog(move |s| {
            let mut found = Vec::new();
            for index in indexes {
                found.extend(tasks::tasks(s, index, page.cursor, limit + 1, |t| {
                    keep(t) && wanted.as_deref().is_none_or(|w| json!(t.state) == json!(w))
                })?);
            }
            found.sort_by_key(|t| t.id);
            found.truncate(limit + 1);
            Ok(found)
        })
        .await?;
    Ok(Json(paging::page(&found, limit, |t| t.id, summary)))
}

/// `GET /api/v1/annotation-sets/{id}/tasks?state=&limit=&cursor=` (reviewers and up).
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(set_id): Path<u64>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    crate::annotation_sets::require_reviewer_of(&state, &principal, set_id).await?;
    page_of(&state, page, vec![TaskIndex::Set(set_id)], |_| true).await
}

/// `GET /api/v1/me/tasks?state=`: the caller's tasks, each with its set's name.
pub async fn mine(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let Json(listed) = page_of(
        &state,
        page,
        vec![TaskIndex::Assignee(principal.username)],
        |_| true,
    )
    .await?;
    with_set_names(&state, listed).await
}

/// A page of task summaries with `set_name` added to each (people know sets by name).
async fn with_set_names(state: &AppState, mut listed: Value) -> Result<Json<Value>, ApiError> {
    let ids: Vec<u64> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["annotation_set"].as_u64())
        .collect();
    let names = state
        .cluster
        .read_catalog(move |s| {
            let mut names = std::collections::HashMap::new();
            for id in ids {
                if let Some(set) = annotation_sets::annotation_set(s, id)? {
                    names.insert(id, set.name);
                }
            }
            Ok(names)
        })
        .await?;
    for item in listed["items"].as_array_mut().into_iter().flatten() {
        let name = item["annotation_set"]
            .as_u64()
            .and_then(|id| names.get(&id));
        item["set_name"] = json!(name);
    }
    Ok(Json(listed))
}

/// `GET /api/v1/review/tasks?state=`: the review queue — submitted tasks, and tasks in review
/// by the caller (managers see every task in review). Each carries its set's name.
pub async fn review_queue(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ReviewPage>,
) -> Result<Json<Value>, ApiError> {
    let by_agreement = match query.order.as_deref() {
        None | Some("id") => false,
        Some("agreement") => true,
        Some(other) => {
            return Err(crate::error::invalid(format!(
                "order: id or agreement, not {other:?}"
            )))
        }
    };
    let wanted = paging::limit(query.limit);
    // Ordered by agreement, the queue is read whole (up to a page's maximum) and sorted.
    let page = Page {
        limit: if by_agreement {
            Some(paging::MAX_PAGE)
        } else {
            query.limit
        },
        cursor: if by_agreement { None } else { query.cursor },
        state: query.state,
    };
    let everyone = principal.role >= Role::Manager;
    // The sets a reviewer reviews (a short scan of set records; managers see every set).
    let (who, role) = (principal.username.clone(), principal.role);
    let mine: std::collections::HashSet<u64> = if everyone {
        Default::default()
    } else {
        state.cluster.catalog_barrier().await?;
        state
            .cluster
            .read_catalog(move |s| {
                Ok(annotation_sets::annotation_sets(s, None, None, usize::MAX)?
                    .into_iter()
                    .filter(|set| set.reviewed_by(&who, role))
                    .map(|set| set.id)
                    .collect())
            })
            .await?
    };
    let me = principal.username;
    let hint = (!everyone && mine.is_empty()).then(|| {
        format!(
            "you review no annotation set yet, so this queue stays empty: a manager adds you \
             with PATCH /api/v1/annotation-sets/{{id}} {{\"reviewers\": [\"{me}\", ...]}}"
        )
    });
    let indexes = vec![
        TaskIndex::State(TaskState::Submitted),
        TaskIndex::State(TaskState::InReview),
    ];
    let Json(listed) = page_of(&state, page, indexes, move |t| {
        let reviews = everyone || mine.contains(&t.set_id);
        match t.state {
            TaskState::Submitted => reviews,
            TaskState::InReview => everyone || t.reviewer.as_deref() == Some(me.as_str()),
            _ => false,
        }
    })
    .await?;
    let Json(listed) = with_set_names(&state, listed).await?;
    let mut listed = with_quality(&state, listed).await?;
    if by_agreement {
        if let Some(items) = listed["items"].as_array_mut() {
            // Tasks to review first, then the least agreed; tasks without an agreement last.
            let key = |item: &Value| {
                let q = &item["quality"];
                let agreement = q["agreement"].as_f64().unwrap_or(f64::INFINITY);
                (q["review_first"] != json!(true), agreement)
            };
            items.sort_by(|a, b| {
                let (ka, kb) = (key(a), key(b));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
            });
            items.truncate(wanted);
        }
        listed["next_cursor"] = Value::Null;
    }
    if let Some(hint) = hint {
        listed["hint"] = json!(hint);
    }
    Ok(Json(listed))
}

/// Adds each listed task's quality figures (honeypot score, agreement with the consensus) and
/// moves the tasks whose honeypot score is below their set's `review_below` to the front of the
/// page, so reviewers meet the likeliest rejections first.
async fn with_quality(state: &AppState, mut listed: Value) -> Result<Value, ApiError> {
    let ids: Vec<u64> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["id"].as_u64())
        .collect();
    let figures = state
        .cluster
        .read_catalog(move |s| {
            let mut out = std::collections::HashMap::new();
            for id in ids {
                let Some(t) = tasks::task(s, id)? else {
                    continue;
                };
                let policy = annotation_sets::annotation_set(s, t.set_id)?
                    .map(|set| set.quality)
                    .unwrap_or_default();
                out.insert(id, tessera_domain::quality_report::of_task(s, &t, &policy)?);
            }
            Ok(out)
        })
        .await?;
    if let Some(items) = listed["items"].as_array_mut() {
        for item in items.iter_mut() {
            let found = item["id"].as_u64().and_then(|id| figures.get(&id));
            if let Some(q) = found {
                item["quality"] = json!({
                    "honeypots": q.honeypots,
                    "agreement": q.agreement,
                    "review_first": q.review_first,
                });
            }
        }
        items.sort_by_key(|item| item["quality"]["review_first"] != json!(true));
    }
    Ok(listed)
}

/// `GET /api/v1/pool/tasks`: unassigned tasks annotators can claim.
pub async fn pool(
    State(state): State<AppState>,
    _principal: Principal,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let Json(listed) = page_of(&state, page, vec![TaskIndex::Pool], |_| true).await?;
    with_set_names(&state, listed).await
}

/// `GET /api/v1/tasks/{id}`: its assignee, reviewers and managers.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<TaskDetail>, ApiError> {
    let task = load(&state, id).await?;
    let pooled = task.assignee.is_none();
    if task.assignee.as_deref() != Some(principal.username.as_str()) && !pooled {
        crate::annotation_sets::require_reviewer_of(&state, &principal, task.set_id).await?;
    }
    Ok(Json(detail(&state, &task).await?))
}

/// The `{action}`s of `POST /api/v1/tasks/{id}/{action}`.
pub const ACTIONS: [&str; 7] = [
    "claim", "start", "submit", "review", "accept", "reject", "archive",
];

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    reason: Option<String>,
}

/// `POST /api/v1/tasks/{id}/{action}`: claim, start, submit, review, accept, reject
/// (`{"reason": ...}`), archive (managers: out of the workflow, its annotations kept).
pub async fn act(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(u64, String)>,
    body: Bytes,
) -> Result<Json<TaskDetail>, ApiError> {
    let action = match action.as_str() {
        "claim" => Action::Claim,
        "start" => Action::Start,
        "submit" => Action::Submit,
        "review" => Action::Review,
        "accept" => Action::Accept,
        "reject" => Action::Reject,
        "archive" => Action::Archive,
        other => {
            let known = ACTIONS.join(", ");
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_action",
                format!("no task action {other}; one of {known}"),
            ));
        }
    };
    let ActBody { reason } = if body.is_empty() {
        ActBody::default()
    } else {
        crate::error::parse_json(&body)?
    };
    let op = TaskOp::Act {
        id,
        action,
        user: principal.username,
        role: principal.role,
        reason,
        at_ms: now_ms(),
    };
    match propose(&state, op).await? {
        TaskOutcome::Task(t) => Ok(Json(detail(&state, &t).await?)),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignBody {
    assignee: Option<String>,
}

/// `POST /api/v1/tasks/{id}/reassign`: `{"assignee": "ann2"}` or `{"assignee": null}` (pool).
pub async fn reassign(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
    JsonBody(ReassignBody { assignee }): JsonBody<ReassignBody>,
) -> Result<Json<TaskDetail>, ApiError> {
    if let Some(name) = &assignee {
        state.cluster.catalog_barrier().await?;
        if state
            .cluster
            .directory()
            .user(name)
            .is_none_or(|a| a.user.disabled)
        {
            return Err(invalid(format!("assignee: no active user {name}")));
        }
    }
    let op = TaskOp::Reassign {
        id,
        assignee,
        by: principal.username,
        at_ms: now_ms(),
    };
    match propose(&state, op).await? {
        TaskOutcome::Task(t) => Ok(Json(detail(&state, &t).await?)),
        other => Err(unexpected(other)),
    }
}
