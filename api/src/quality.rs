//! `/api/v1/annotation-sets/{id}/quality` and `/ground-truth`: a set's quality policy, its
//! ground truth, the quality report, and the worker that keeps per-image quality current.
//!
//! The rules (matching, merging, scores) are `tessera_domain::quality`; the records and why
//! they are computed off the save path are `tessera_domain::image_quality`.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::catalog::CatalogOp;
use tessera_domain::ground_truth::{self, Source};
use tessera_domain::image_quality::{self, ImageQuality};
use tessera_domain::quality::Policy;
use tessera_domain::quality_op::{QualityOp, QualityOutcome};
use tessera_domain::quality_report::{self, Report};
use tessera_domain::{annotation_sets::AnnotationSetOp, Sha256};

use crate::annotation_sets::{load, not_found, require_reviewer_of};
use crate::annotations::parse_sha;
use crate::auth::Principal;
use crate::error::{internal, invalid, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

/// Refuses callers who do not review set `id`, then waits for the catalogue (read-your-writes:
/// a pin or a reference just made through any node is what the handler reads).
async fn readable(state: &AppState, principal: &Principal, id: u64) -> Result<(), ApiError> {
    require_reviewer_of(state, principal, id).await?;
    state.cluster.catalog_barrier().await?;
    Ok(())
}

/// `PUT /api/v1/annotation-sets/{id}/quality`: replaces the set's policy (managers).
pub async fn set_policy(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(policy): JsonBody<Policy>,
) -> Result<Json<Value>, ApiError> {
    if let Some(p) = policy.problem() {
        return Err(invalid(p));
    }
    match propose(&state, AnnotationSetOp::SetQuality { id, policy }).await? {
        tessera_domain::annotation_sets::AnnotationSetOutcome::Set(text) => {
            serde_json::from_str(&text).map(Json).map_err(internal)
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/annotation-sets/{id}/quality`: honeypot scores and consensus agreement per
/// annotator and per task, the least agreed images, and how many images wait for a recompute
/// (reviewers of the set and up).
pub async fn report(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<Report>, ApiError> {
    readable(&state, &principal, id).await?;
    state
        .cluster
        .read_catalog(move |s| quality_report::report(s, id))
        .await?
        .map(Json)
        .ok_or_else(|| not_found("annotation set", id))
}

/// How long the image URL of `…/quality/images/{sha}` stays valid.
const URL_TTL_MS: u64 = 60 * 60 * 1000;

/// `GET /api/v1/annotation-sets/{id}/quality/images/{sha}`: every chunk's record of the image
/// (each version's figures, the agreement and the consensus shapes), and its reference when it
/// has one — what a reviewer overlays.
pub async fn image(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(u64, String)>,
) -> Result<Json<Value>, ApiError> {
    readable(&state, &principal, id).await?;
    let sha = parse_sha(&sha)?;
    let records = state
        .cluster
        .read_catalog(move |s| {
            let chunks: std::collections::BTreeSet<u64> = tessera_domain::tasks::tasks(
                s,
                tessera_domain::tasks::TaskIndex::Set(id),
                None,
                usize::MAX,
                |t| t.images.contains(&sha),
            )?
            .into_iter()
            .map(|t| t.chunk)
            .collect();
            let mut records = Vec::new();
            for chunk in chunks {
                if let Some(q) = image_quality::record(s, id, chunk, &sha)? {
                    records.push((q, image_quality::pin(s, id, chunk, &sha)?));
                }
            }
            let set = tessera_domain::annotation_sets::annotation_set(s, id)?;
            let image = match &set {
                Some(set) => tessera_domain::datasets::image(s, set.dataset_id, &sha)?,
                None => None,
            };
            Ok((records, ground_truth::reference(s, id, &sha)?, image))
        })
        .await?;
    let (records, reference, image) = (records.0, records.1, records.2);
    let chunks: Vec<Value> = records
        .into_iter()
        .map(|(q, pin): (ImageQuality, Option<image_quality::Pin>)| {
            let mut v = serde_json::to_value(&q).unwrap_or(Value::Null);
            v["pinned"] = match pin {
                Some(p) => json!({
                    "shapes": serde_json::from_str::<Value>(&p.shapes).unwrap_or(Value::Null),
                    "source": p.source,
                    "by": p.by,
                    "at_ms": p.at_ms,
                }),
                None => Value::Null,
            };
            v
        })
        .collect();
    // A presigned URL, so a reviewer's page can show the image under the versions.
    let key = state.cluster.directory().key();
    let url = key.map(|k| {
        let text = sha.to_string();
        format!(
            "/objects/{text}?{}",
            crate::token::presign(&k, &text, now_ms() + URL_TTL_MS)
        )
    });
    Ok(Json(json!({
        "image": sha.to_string(),
        "url": url,
        "width": image.as_ref().map(|i| i.width),
        "height": image.as_ref().map(|i| i.height),
        "name": image.map(|i| i.name),
        "chunks": chunks,
        "reference": reference.map(|g| reference_view(&sha, &g, true)),
    })))
}

/// What `PUT …/quality/images/{sha}/consensus` takes: the chunk, and either shapes (edited by
/// the reviewer) or the task whose current version becomes the consensus.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    chunk: u64,
    #[schemars(with = "Option<Vec<tessera_domain::shape::Shape>>")]
    shapes: Option<Value>,
    task: Option<u64>,
}

/// `PUT /api/v1/annotation-sets/{id}/quality/images/{sha}/consensus` (reviewers of the set and
/// up): pins the consensus of an image in a chunk — one annotator's version (`task`) or shapes
/// the reviewer edited. Exports use it instead of the computed consensus until it is removed.
pub async fn pin(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(u64, String)>,
    JsonBody(body): JsonBody<PinBody>,
) -> Result<StatusCode, ApiError> {
    readable(&state, &principal, id).await?;
    let sha = parse_sha(&sha)?;
    let (shapes, source) = match (body.shapes, body.task) {
        (Some(shapes), None) => (shapes.to_string(), "edited".to_string()),
        (None, Some(task)) => {
            let found = state
                .cluster
                .read_catalog(move |s| {
                    let t = tessera_domain::tasks::task(s, task)?;
                    let v = tessera_domain::annotations::current(s, task, &sha)?;
                    Ok((t, v))
                })
                .await?;
            match found {
                (Some(t), Some(v)) if t.set_id == id && t.chunk == body.chunk => {
                    (v.shapes, format!("{}'s version (task {task})", v.saved_by))
                }
                _ => {
                    return Err(invalid(format!(
                        "task: task {task} has no version of image {sha} in chunk {} of this set",
                        body.chunk
                    )))
                }
            }
        }
        _ => {
            return Err(invalid(
                "give exactly one of shapes (edited) or task (a version to take)",
            ))
        }
    };
    let pin = image_quality::Pin {
        shapes,
        source,
        by: principal.username.clone(),
        at_ms: now_ms(),
    };
    let op = QualityOp::PinConsensus {
        set: id,
        chunk: body.chunk,
        sha,
        pin: Some(pin),
    };
    match propose(&state, op).await? {
        QualityOutcome::Pinned => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkQuery {
    chunk: u64,
}

/// `DELETE /api/v1/annotation-sets/{id}/quality/images/{sha}/consensus?chunk=` (reviewers of
/// the set and up): back to the computed consensus.
pub async fn unpin(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(u64, String)>,
    axum::extract::Query(q): axum::extract::Query<ChunkQuery>,
) -> Result<StatusCode, ApiError> {
    readable(&state, &principal, id).await?;
    let sha = parse_sha(&sha)?;
    let op = QualityOp::PinConsensus {
        set: id,
        chunk: q.chunk,
        sha,
        pin: None,
    };
    match propose(&state, op).await? {
        QualityOutcome::Pinned => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

fn reference_view(sha: &Sha256, g: &ground_truth::Reference, with_shapes: bool) -> Value {
    let shapes: Value = serde_json::from_str(&g.shapes).unwrap_or(Value::Null);
    let mut view = json!({
        "image": sha.to_string(),
        "shape_count": shapes.as_array().map_or(0, Vec::len),
        "source": g.source,
        "set_by": g.set_by,
        "set_ms": g.set_ms,
    });
    if with_shapes {
        view["shapes"] = shapes;
    }
    view
}

/// `GET /api/v1/annotation-sets/{id}/ground-truth`: the set's references without their shapes
/// (reviewers of the set and up; annotators never see which images are references).
pub async fn list_references(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    readable(&state, &principal, id).await?;
    let found = state
        .cluster
        .read_catalog(move |s| ground_truth::references(s, id))
        .await?;
    let items: Vec<Value> = found
        .iter()
        .map(|(sha, g)| reference_view(sha, g, false))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/annotation-sets/{id}/ground-truth/{sha}`: one reference with its shapes.
pub async fn get_reference(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(u64, String)>,
) -> Result<Json<Value>, ApiError> {
    readable(&state, &principal, id).await?;
    let sha = parse_sha(&sha)?;
    let found = state
        .cluster
        .read_catalog(move |s| ground_truth::reference(s, id, &sha))
        .await?;
    let g = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("image {sha} has no ground truth in annotation set {id}"),
        )
    })?;
    Ok(Json(reference_view(&sha, &g, true)))
}

/// What `POST …/ground-truth` takes: exactly one source.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReferences {
    /// Shapes per image, as a manager drew them.
    images: Option<Vec<DrawnReference>>,
    /// An accepted task whose versions become the references of its images.
    task: Option<u64>,
    /// Images whose imported annotations become their references.
    import: Option<Vec<Sha256Text>>,
}

#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrawnReference {
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    image: String,
    #[schemars(with = "Vec<tessera_domain::shape::Shape>")]
    shapes: Value,
}

/// An image's SHA-256 as 64 hex digits.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Sha256Text(#[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))] String);

/// Most images one request may set.
const MAX_REFERENCES: usize = 10_000;

/// `POST /api/v1/annotation-sets/{id}/ground-truth` (managers): `{"images": [{"image": sha,
/// "shapes": [...]}]}`, `{"task": id}` (an accepted task) or `{"import": [sha, ...]}`.
pub async fn set_references(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
    JsonBody(body): JsonBody<NewReferences>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let source = match (body.images, body.task, body.import) {
        (Some(images), None, None) => {
            if images.len() > MAX_REFERENCES {
                return Err(invalid(format!(
                    "images: at most {MAX_REFERENCES} per request"
                )));
            }
            let mut given = Vec::with_capacity(images.len());
            for (i, d) in images.into_iter().enumerate() {
                let sha = parse_sha(&d.image)
                    .map_err(|_| invalid(format!("images[{i}].image: 64 hex digits (SHA-256)")))?;
                given.push((sha, d.shapes.to_string()));
            }
            Source::Shapes(given)
        }
        (None, Some(task), None) => Source::Task(task),
        (None, None, Some(images)) => {
            if images.len() > MAX_REFERENCES {
                return Err(invalid(format!(
                    "import: at most {MAX_REFERENCES} per request"
                )));
            }
            let shas = images
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    parse_sha(&t.0)
                        .map_err(|_| invalid(format!("import[{i}]: 64 hex digits (SHA-256)")))
                })
                .collect::<Result<_, _>>()?;
            Source::Import(shas)
        }
        _ => {
            return Err(invalid(
                "give exactly one of images (shapes per image), task (an accepted task) or \
                 import (images with imported annotations)",
            ))
        }
    };
    let op = QualityOp::SetGroundTruth {
        set: id,
        source,
        by: principal.username.clone(),
        at_ms: now_ms(),
    };
    match propose(&state, op).await? {
        QualityOutcome::GroundTruth(ground_truth::Outcome::Done(images)) => {
            let images: Vec<String> = images.iter().map(Sha256::to_string).collect();
            Ok((StatusCode::CREATED, Json(json!({ "images": images }))))
        }
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/annotation-sets/{id}/ground-truth/{sha}` (managers).
pub async fn clear_reference(
    State(state): State<AppState>,
    Path((id, sha)): Path<(u64, String)>,
) -> Result<StatusCode, ApiError> {
    let sha = parse_sha(&sha)?;
    load(&state, id).await?;
    match propose(&state, QualityOp::ClearGroundTruth { set: id, sha }).await? {
        QualityOutcome::GroundTruth(ground_truth::Outcome::Done(_)) => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

/// Images assessed per proposal at most.
const BATCH: usize = 256;
/// Bytes of records per proposal at most (a record holds an image's consensus shapes).
const BATCH_BYTES: usize = 1 << 20;
/// How often an idle worker looks for marked images.
const IDLE: Duration = Duration::from_millis(500);

/// Runs on every node; while it leads the catalogue, assesses images whose quality a change
/// marked, on the blocking pool, and proposes their records in batches. A record is kept only
/// if the image is still as it was assessed, so the worker needs no lock against saves, and a
/// leader change mid-batch loses nothing (the marks are replicated).
pub async fn recompute(state: AppState) {
    let mut tick = tokio::time::interval(IDLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while state.cluster.leads(tessera_raft::placement::META_GROUP) {
            match round(&state).await {
                Ok(full) if full => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "recomputing image quality failed");
                    break;
                }
            }
        }
    }
}

/// One batch; whether it was full (more may be waiting).
async fn round(state: &AppState) -> Result<bool, tessera_raft::ClusterError> {
    let started = Instant::now();
    let (texts, full) = state
        .cluster
        .read_catalog(|s| image_quality::assess_marked(s, BATCH, BATCH_BYTES))
        .await?;
    if texts.is_empty() {
        return Ok(false);
    }
    let images = texts.len() as u64;
    let outcome = state
        .cluster
        .catalog(CatalogOp::Quality(QualityOp::Record {
            records: texts,
            at_ms: crate::token::now_ms(),
        }))
        .await?;
    if let tessera_domain::catalog::CatalogOutcome::Quality(QualityOutcome::Recorded {
        kept,
        stale,
    }) = outcome
    {
        metrics::counter!("tessera_quality_images_recorded_total").increment(kept);
        metrics::counter!("tessera_quality_images_stale_total").increment(stale);
    }
    metrics::histogram!("tessera_quality_batch_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(images, "image quality recomputed");
    Ok(full)
}
