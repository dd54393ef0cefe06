//! `/api/v1/annotation-sets`: label schemas on datasets.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::annotation_sets::{
    self, control_character_problem, schema_problem, AnnotationSetOp, AnnotationSetOutcome, Label,
};
use tessera_domain::catalog::Role;

use crate::auth::Principal;
use crate::error::{check_name, internal, invalid, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::paging;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

pub(crate) fn not_found(what: &'static str, id: u64) -> ApiError {
    let code = if what == "dataset" {
        "no_such_dataset"
    } else {
        "no_such_annotation_set"
    };
    ApiError::new(StatusCode::NOT_FOUND, code, format!("no {what} {id}"))
}

/// An annotation set read after a catalogue barrier (read-your-writes), or a 404.
pub(crate) async fn load(
    state: &AppState,
    id: u64,
) -> Result<annotation_sets::AnnotationSet, ApiError> {
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .read_catalog(move |s| annotation_sets::annotation_set(s, id))
        .await?
        .ok_or_else(|| not_found("annotation set", id))
}

/// Checks a schema before proposing it; the state machine checks it again when applying.
fn labels_json(labels: &Value) -> Result<String, ApiError> {
    let parsed: Vec<Label> =
        serde_json::from_value(labels.clone()).map_err(|e| invalid(format!("labels: {e}")))?;
    if let Some(problem) = schema_problem(&parsed).or_else(|| control_character_problem(&parsed)) {
        return Err(invalid(problem));
    }
    serde_json::to_string(&parsed)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn apply(state: &AppState, op: AnnotationSetOp) -> Result<Option<Value>, ApiError> {
    match propose(state, op).await? {
        AnnotationSetOutcome::Set(text) => serde_json::from_str(&text).map(Some).map_err(internal),
        AnnotationSetOutcome::Deleted => Ok(None),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSet {
    #[schemars(length(min = 1, max = 200))]
    name: String,
    #[schemars(with = "Vec<tessera_domain::annotation_sets::Label>", length(min = 1))]
    labels: Value,
    /// Users (reviewer role or higher) who review this set's tasks.
    #[serde(default)]
    reviewers: Vec<String>,
}

/// Checks that every listed reviewer is a user with the reviewer role or higher.
fn check_reviewers(state: &AppState, reviewers: &[String]) -> Result<(), ApiError> {
    for (i, name) in reviewers.iter().enumerate() {
        match state.cluster.directory().standing(name) {
            None => return Err(invalid(format!("reviewers[{i}]: no user {name:?}"))),
            Some(s) if s.role < Role::Reviewer => {
                return Err(invalid(format!(
                    "reviewers[{i}]: {name} is {}; reviewers need the reviewer role",
                    s.role.as_str()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// 403 unless the caller reviews annotation set `id` (managers review every set; reviewers
/// the sets that list them), 404 if there is no such set.
pub(crate) async fn require_reviewer_of(
    state: &AppState,
    principal: &Principal,
    id: u64,
) -> Result<(), ApiError> {
    principal.require(Role::Reviewer)?;
    if principal.role >= Role::Manager {
        return Ok(());
    }
    if load(state, id)
        .await?
        .reviewed_by(&principal.username, principal.role)
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("you are not a reviewer of annotation set {id}; a manager can add you"),
    ))
}

/// `POST /api/v1/datasets/{id}/annotation-sets`: `{"name": ..., "labels": [...]}`.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(dataset_id): Path<u64>,
    JsonBody(NewSet {
        name,
        labels,
        reviewers,
    }): JsonBody<NewSet>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    check_reviewers(&state, &reviewers)?;
    let op = AnnotationSetOp::Create {
        dataset_id,
        name,
        labels_json: labels_json(&labels)?,
        created_by: principal.username,
        created_ms: now_ms(),
    };
    let mut set = apply(&state, op).await?;
    if let (false, Some(id)) = (
        reviewers.is_empty(),
        set.as_ref().and_then(|s| s["id"].as_u64()),
    ) {
        set = apply(&state, AnnotationSetOp::SetReviewers { id, reviewers }).await?;
    }
    Ok((StatusCode::CREATED, Json(set.unwrap_or(Value::Null))).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Page {
    dataset: Option<u64>,
    limit: Option<usize>,
    cursor: Option<u64>,
}

/// `GET /api/v1/annotation-sets?dataset=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = paging::limit(page.limit);
    state.cluster.catalog_barrier().await?;
    let (dataset, after) = (page.dataset, page.cursor);
    let found = state
        .cluster
        .read_catalog(move |s| annotation_sets::annotation_sets(s, dataset, after, limit + 1))
        .await?;
    Ok(Json(paging::page(&found, limit, |s| s.id, |s| json!(s))))
}

/// `GET /api/v1/annotation-sets/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(load(&state, id).await?)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AnnotationSetChange")]
pub struct Change {
    #[schemars(length(min = 1, max = 200))]
    name: Option<String>,
    #[schemars(
        with = "Option<Vec<tessera_domain::annotation_sets::Label>>",
        length(min = 1)
    )]
    labels: Option<Value>,
    reviewers: Option<Vec<String>>,
}

/// `PATCH /api/v1/annotation-sets/{id}`: name, labels and/or reviewers.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(Change {
        name,
        labels,
        reviewers,
    }): JsonBody<Change>,
) -> Result<Json<Value>, ApiError> {
    if let Some(n) = &name {
        check_name(n)?;
    }
    if let Some(r) = &reviewers {
        check_reviewers(&state, r)?;
    }
    let labels_json = labels.as_ref().map(labels_json).transpose()?;
    let mut set = apply(
        &state,
        AnnotationSetOp::Update {
            id,
            name,
            labels_json,
        },
    )
    .await?;
    if let Some(reviewers) = reviewers {
        set = apply(&state, AnnotationSetOp::SetReviewers { id, reviewers }).await?;
    }
    Ok(Json(set.unwrap_or(Value::Null)))
}

/// `DELETE /api/v1/annotation-sets/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    apply(&state, AnnotationSetOp::Delete { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/annotation-sets/{id}/stats`: tasks by state, images annotated of the total,
/// shapes per label and kind, per annotator (images, shapes, saves, active time) and per day.
/// Maintained by the state machine as changes apply; reading it scans nothing.
pub async fn stats(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<StatsView>, ApiError> {
    require_reviewer_of(&state, &principal, id).await?;
    let found = state
        .cluster
        .read_catalog(move |s| {
            let Some(set) = annotation_sets::annotation_set(s, id)? else {
                return Ok(None);
            };
            let total = tessera_domain::datasets::dataset(s, set.dataset_id)?
                .map(|d| d.image_count)
                .unwrap_or(0);
            Ok(Some((tessera_domain::stats::load(s, id)?, total)))
        })
        .await?;
    let (stats, total) = found.ok_or_else(|| not_found("annotation set", id))?;
    let days = stats
        .days
        .into_iter()
        .map(|(day, d)| (tessera_domain::stats::date(day), d))
        .collect();
    let by_label = stats
        .shapes
        .into_iter()
        .map(|(label, by_kind)| {
            let total = by_kind.values().sum();
            (label, LabelCount { total, by_kind })
        })
        .collect::<BTreeMap<_, _>>();
    Ok(Json(StatsView {
        tasks: stats.tasks,
        images: ImageCount {
            total,
            annotated: stats.annotated,
        },
        shapes: ShapeCount {
            total: by_label.values().map(|l| l.total).sum(),
            by_label,
        },
        annotators: stats.annotators,
        days,
    }))
}

/// An annotation set's statistics (`GET /api/v1/annotation-sets/{id}/stats`).
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "AnnotationSetStats")]
pub struct StatsView {
    /// Tasks per state.
    tasks: BTreeMap<String, u64>,
    images: ImageCount,
    shapes: ShapeCount,
    /// Per annotator's name.
    annotators: BTreeMap<String, tessera_domain::stats::Annotator>,
    /// Per day (`YYYY-MM-DD`, UTC).
    days: BTreeMap<String, tessera_domain::stats::Day>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ImageCount {
    /// The dataset's images.
    total: u64,
    /// (task, image) pairs whose current annotations hold at least one shape.
    annotated: u64,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ShapeCount {
    total: u64,
    by_label: BTreeMap<String, LabelCount>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct LabelCount {
    total: u64,
    /// Per shape kind.
    by_kind: BTreeMap<String, u64>,
}

/// The JSON Schema of a review-stats answer ([`tessera_domain::review_stats::ReviewStats`]);
/// the OpenAPI document publishes it and a unit test checks a serialized answer against it.
pub fn review_stats_schema() -> Value {
    let count = json!({ "type": "integer" });
    let ms = |what: &str| json!({ "type": ["integer", "null"], "description": format!("{what}, ms; null without samples") });
    json!({
        "type": "object",
        "required": ["tasks", "archived_tasks", "annotators", "reviewers"],
        "properties": {
            "tasks": { "type": "integer", "description": "tasks of the set, archived included" },
            "archived_tasks": count,
            "annotators": { "type": "array", "items": {
                "type": "object",
                "required": ["annotator", "tasks_submitted", "submissions", "accepted", "rejected", "rejection_rate", "awaiting_review", "reworks", "rework_median_ms", "rework_total_ms", "first_submission_median_ms"],
                "properties": {
                    "annotator": { "type": "string" },
                    "tasks_submitted": count,
                    "submissions": count,
                    "accepted": { "type": "integer", "description": "decisions on this annotator's submissions" },
                    "rejected": count,
                    "rejection_rate": { "type": ["number", "null"], "description": "rejected / (accepted + rejected); null before any decision" },
                    "awaiting_review": count,
                    "reworks": { "type": "integer", "description": "submissions after a rejection" },
                    "rework_median_ms": ms("rejection to the next submission, median"),
                    "rework_total_ms": { "type": "integer" },
                    "first_submission_median_ms": ms("creation, claim or reassignment to the first submission, median"),
                }
            } },
            "reviewers": { "type": "array", "items": {
                "type": "object",
                "required": ["reviewer", "tasks_reviewed", "accepted", "rejected", "in_review", "review_median_ms"],
                "properties": {
                    "reviewer": { "type": "string" },
                    "tasks_reviewed": count,
                    "accepted": count,
                    "rejected": count,
                    "in_review": count,
                    "review_median_ms": ms("review start to decision, median"),
                }
            } }
        }
    })
}

/// `GET /api/v1/annotation-sets/{id}/review-stats`: per annotator (submissions, accepted,
/// rejected, rejection rate, reworks and rework time, time to first submission) and per reviewer
/// (decisions, review time), durations in ms. Derived from the set's task histories on request
/// (`tessera_domain::review_stats`, where the attribution rules are), so it reads every task of
/// the set: the dashboard asks for it only when the set's statistics changed. Same access as
/// `…/stats`.
pub async fn review_stats(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<tessera_domain::review_stats::ReviewStats>, ApiError> {
    require_reviewer_of(&state, &principal, id).await?;
    let found = state
        .cluster
        .read_catalog(move |s| {
            if annotation_sets::annotation_set(s, id)?.is_none() {
                return Ok(None);
            }
            use tessera_domain::tasks::{tasks, TaskIndex};
            let all = tasks(s, TaskIndex::Set(id), None, usize::MAX, |_| true)?;
            Ok(Some(tessera_domain::review_stats::review_stats(&all)))
        })
        .await?;
    found
        .map(Json)
        .ok_or_else(|| not_found("annotation set", id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::tests::conforms;
    use tessera_domain::review_stats::{AnnotatorReview, ReviewStats, ReviewerReview};

    #[test]
    fn review_stats_match_their_published_schema() {
        let stats = ReviewStats {
            tasks: 2,
            archived_tasks: 1,
            annotators: vec![
                AnnotatorReview {
                    annotator: "ann".into(),
                    tasks_submitted: 1,
                    submissions: 2,
                    accepted: 1,
                    rejected: 1,
                    rejection_rate: Some(0.5),
                    reworks: 1,
                    rework_median_ms: Some(10),
                    rework_total_ms: 10,
                    first_submission_median_ms: Some(5),
                    awaiting_review: 0,
                },
                AnnotatorReview {
                    annotator: "bob".into(),
                    ..AnnotatorReview::default()
                },
            ],
            reviewers: vec![ReviewerReview {
                reviewer: "rev".into(),
                review_median_ms: None,
                ..ReviewerReview::default()
            }],
        };
        let value = serde_json::to_value(&stats).expect("json");
        conforms(&value, &review_stats_schema()).expect("conforms");
        let mut broken = value.clone();
        broken["annotators"][0]["rejection_rate"] = json!("half");
        assert!(conforms(&broken, &review_stats_schema()).is_err());
    }
}
