//! `/api/v1/datasets`: named sets of uploaded images.
//!
//! Adding an image takes a reference on the object (in its shard group) before the membership
//! is recorded (in the catalogue), and removing drops the reference after: a crash in between
//! can leave an object with a reference too many, never one too few.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::datasets::{self, Dataset, DatasetImage, DatasetOp, DatasetOutcome};
use tessera_raft::storage::Sha256;
use tessera_raft::ReadSpec;

use crate::auth::Principal;
use crate::error::{check_name, invalid, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::paging;
use crate::propose::propose;
use crate::token::{self, now_ms};
use crate::AppState;

/// Images added or removed by one request.
const MAX_BATCH: usize = 1000;
const URL_TTL_MS: u64 = 60 * 60 * 1000;

/// A dataset as the API answers it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Dataset")]
pub struct DatasetView {
    id: u64,
    name: String,
    created_by: String,
    /// Unix milliseconds.
    created_ms: u64,
    image_count: u64,
}

fn view(d: &Dataset) -> DatasetView {
    DatasetView {
        id: d.id,
        name: d.name.clone(),
        created_by: d.created_by.clone(),
        created_ms: d.created_ms,
        image_count: d.image_count,
    }
}

fn no_such_dataset(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_dataset",
        format!("no dataset {id}"),
    )
}

async fn load(state: &AppState, id: u64) -> Result<Dataset, ApiError> {
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .read_catalog(move |s| datasets::dataset(s, id))
        .await?
        .ok_or_else(|| no_such_dataset(id))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    #[schemars(length(min = 1, max = 200))]
    name: String,
}

/// `POST /api/v1/datasets`.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(NameBody { name }): JsonBody<NameBody>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let op = DatasetOp::Create {
        name,
        created_by: principal.username,
        created_ms: now_ms(),
    };
    match propose(&state, op).await? {
        DatasetOutcome::Dataset(d) => Ok((StatusCode::CREATED, Json(view(&d))).into_response()),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/datasets?limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<paging::Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = paging::limit(page.limit);
    let after = paging::id_cursor(page.cursor.as_deref())?;
    state.cluster.catalog_barrier().await?;
    let found = state
        .cluster
        .read_catalog(move |s| datasets::datasets(s, after, limit + 1))
        .await?;
    Ok(Json(paging::page(
        &found,
        limit,
        |d| d.id.to_string(),
        view,
    )))
}

/// `GET /api/v1/datasets/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(view(&load(&state, id).await?)))
}

/// `PATCH /api/v1/datasets/{id}`: rename.
pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(NameBody { name }): JsonBody<NameBody>,
) -> Result<Json<DatasetView>, ApiError> {
    check_name(&name)?;
    match propose(&state, DatasetOp::Rename { id, name }).await? {
        DatasetOutcome::Dataset(d) => Ok(Json(view(&d))),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/datasets/{id}`: removes its images (releasing their references), then the
/// dataset.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    load(&state, id).await?;
    loop {
        let page = state
            .cluster
            .read_catalog(move |s| datasets::images(s, id, None, MAX_BATCH))
            .await?;
        if page.is_empty() {
            break;
        }
        remove_images(&state, id, page.iter().map(|i| i.sha).collect()).await?;
    }
    match propose(&state, DatasetOp::Delete { id }).await? {
        DatasetOutcome::Deleted => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImage {
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    sha256: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    #[schemars(length(min = 1, max = 1000))]
    images: Vec<NewImage>,
}

fn batch_size(n: usize) -> Result<(), ApiError> {
    if n == 0 || n > MAX_BATCH {
        return Err(invalid(format!(
            "images: 1 to {MAX_BATCH} per request, not {n}"
        )));
    }
    Ok(())
}

fn parse_sha(i: usize, text: &str) -> Result<Sha256, ApiError> {
    Sha256::parse_hex(text)
        .ok_or_else(|| invalid(format!("images[{i}].sha256: not a SHA-256 (64 hex digits)")))
}

async fn reference(state: &AppState, sha: Sha256, add: bool) -> Result<Option<u64>, ApiError> {
    let request_id = crate::idempotency::next_request_id()?;
    Ok(state.cluster.reference(request_id, sha, add).await?)
}

/// `POST /api/v1/datasets/{id}/images`: `{"images": [{"sha256": "...", "name": "a.jpg"}]}`.
/// Every object must exist; nothing changes if one does not.
pub async fn add_images(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(AddBody { images }): JsonBody<AddBody>,
) -> Result<Json<Value>, ApiError> {
    batch_size(images.len())?;
    load(&state, id).await?;
    let mut records = Vec::with_capacity(images.len());
    for (i, image) in images.iter().enumerate() {
        let sha = parse_sha(i, &image.sha256)?;
        let read = state
            .cluster
            .read_object(sha, ReadSpec::record(false), 0)
            .await?;
        let meta = read
            .ok_or_else(|| {
                invalid(format!(
                    "images[{i}].sha256: no object {sha}; upload it first"
                ))
            })?
            .head
            .meta;
        let name = image.name.clone().unwrap_or_else(|| sha.to_string());
        if name.chars().count() > 1024 || name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "images[{i}].name: at most 1024 characters, no control characters"
            )));
        }
        records.push(DatasetImage {
            sha,
            name,
            width: meta.width,
            height: meta.height,
            added_ms: now_ms(),
        });
    }
    let (added, already) = add_records(&state, id, records, false).await?;
    let added: Vec<String> = added.iter().map(Sha256::to_string).collect();
    Ok(Json(json!({ "added": added, "already_present": already })))
}

/// Records `records` as images of dataset `id` and returns the ones added and how many were
/// already there. Each image holds one reference on its object: taken here, or, when
/// `referenced`, the one the caller's upload took (imports), which is given back for images
/// that were already in the dataset.
pub(crate) async fn add_records(
    state: &AppState,
    id: u64,
    records: Vec<DatasetImage>,
    referenced: bool,
) -> Result<(Vec<Sha256>, usize), ApiError> {
    if !referenced {
        for record in &records {
            reference(state, record.sha, true).await?;
        }
    }
    let shas: Vec<Sha256> = records.iter().map(|r| r.sha).collect();
    let added = match propose(
        state,
        DatasetOp::AddImages {
            id,
            images: records,
        },
    )
    .await
    {
        Ok(DatasetOutcome::Images(added)) => added,
        outcome => {
            // The membership was not recorded: give the references back.
            for sha in &shas {
                reference(state, *sha, false).await?;
            }
            return Err(unexpected(outcome?));
        }
    };
    // Images already in the dataset (or twice in this batch) hold a reference they do not need.
    let mut already = 0;
    let mut kept = std::collections::HashSet::new();
    for sha in &shas {
        if added.contains(sha) && kept.insert(*sha) {
            continue;
        }
        reference(state, *sha, false).await?;
        already += 1;
    }
    Ok((added, already))
}

async fn remove_images(
    state: &AppState,
    id: u64,
    shas: Vec<Sha256>,
) -> Result<Vec<Sha256>, ApiError> {
    let removed = match propose(state, DatasetOp::RemoveImages { id, shas }).await? {
        DatasetOutcome::Images(removed) => removed,
        other => return Err(unexpected(other)),
    };
    for sha in &removed {
        reference(state, *sha, false).await?;
    }
    Ok(removed)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    #[schemars(length(min = 1, max = 1000), inner(regex(pattern = r"^[0-9a-f]{64}$")))]
    images: Vec<String>,
}

/// `POST /api/v1/datasets/{id}/images/remove`: `{"images": ["<sha256>", ...]}`.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(RemoveBody { images }): JsonBody<RemoveBody>,
) -> Result<Json<Value>, ApiError> {
    batch_size(images.len())?;
    let shas = images
        .iter()
        .enumerate()
        .map(|(i, s)| parse_sha(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    load(&state, id).await?;
    let removed: Vec<String> = remove_images(&state, id, shas)
        .await?
        .iter()
        .map(Sha256::to_string)
        .collect();
    Ok(Json(json!({ "removed": removed })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    /// Filters by what was saved in this annotation set's tasks (with `annotated`, `label`).
    annotation_set: Option<u64>,
    annotated: Option<bool>,
    label: Option<String>,
}

/// An image of a dataset as the API answers it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "DatasetImage")]
pub struct ImageView {
    sha256: String,
    /// The name it was added under (its original path, for imports).
    name: String,
    width: u32,
    height: u32,
    added_ms: u64,
    /// A presigned URL of its bytes (null until the cluster has a signing key).
    url: Option<String>,
}

/// A filter on what an annotation set's tasks saved on each image.
struct SavedFilter {
    set: u64,
    annotated: Option<bool>,
    label: Option<String>,
}

impl SavedFilter {
    fn keeps(&self, labels: &std::collections::BTreeSet<String>) -> bool {
        self.annotated.is_none_or(|a| a != labels.is_empty())
            && self.label.as_ref().is_none_or(|l| labels.contains(l))
    }
}

/// Up to `limit` images of dataset `id` after `after` that `filter` keeps, walking the dataset
/// in hash order (a sparse filter reads far; each image costs a few key lookups). `None` when
/// the annotation set is not on this dataset.
fn filtered_images(
    s: &dyn tessera_domain::Records,
    id: u64,
    after: Option<Sha256>,
    limit: usize,
    filter: &SavedFilter,
) -> Result<Option<Vec<DatasetImage>>, tessera_domain::DomainError> {
    use tessera_domain::tasks::{self, TaskIndex};
    match tessera_domain::annotation_sets::annotation_set(s, filter.set)? {
        Some(set) if set.dataset_id == id => {}
        _ => return Ok(None),
    }
    let mut tasks_of: std::collections::HashMap<Sha256, Vec<u64>> = Default::default();
    for t in tasks::tasks(s, TaskIndex::Set(filter.set), None, usize::MAX, |_| true)? {
        for sha in t.images {
            tasks_of.entry(sha).or_default().push(t.id);
        }
    }
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = datasets::images(s, id, cursor.as_ref(), 1000)?;
        let Some(last) = page.last().map(|i| i.sha) else {
            return Ok(Some(out));
        };
        for image in page {
            let tasks = tasks_of.get(&image.sha).map(Vec::as_slice).unwrap_or(&[]);
            let labels = tessera_domain::annotations::saved_labels(s, tasks, &image.sha)?;
            if filter.keeps(&labels) {
                out.push(image);
                if out.len() == limit {
                    return Ok(Some(out));
                }
            }
        }
        cursor = Some(last);
    }
}

/// `GET /api/v1/datasets/{id}/images?limit=&cursor=`: with dimensions and presigned URLs;
/// `&annotation_set=&annotated=&label=` keeps the images that set's tasks annotated (or not),
/// or annotated with a label.
pub async fn images(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(query): Query<ImagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = paging::limit(query.limit);
    let after = match query.cursor.as_deref() {
        Some(c) => Some(
            Sha256::parse_hex(c).ok_or_else(|| invalid("cursor: not a cursor from this list"))?,
        ),
        None => None,
    };
    let filter = match (query.annotation_set, &query.annotated, &query.label) {
        (Some(set), annotated, label) => Some(SavedFilter {
            set,
            annotated: *annotated,
            label: label.clone(),
        }),
        (None, None, None) => None,
        (None, _, _) => return Err(invalid("annotated, label: need annotation_set")),
    };
    load(&state, id).await?;
    let found = state
        .cluster
        .read_catalog(move |s| match &filter {
            None => datasets::images(s, id, after.as_ref(), limit + 1).map(Some),
            Some(f) => filtered_images(s, id, after, limit + 1, f),
        })
        .await?
        .ok_or_else(|| {
            invalid(format!(
                "annotation_set: not an annotation set of dataset {id}"
            ))
        })?;
    let key = state.cluster.directory().key();
    let expires = now_ms() + URL_TTL_MS;
    let view = |i: &tessera_domain::datasets::DatasetImage| {
        let sha = i.sha.to_string();
        let url = key.map(|k| format!("/objects/{sha}?{}", token::presign(&k, &sha, expires)));
        ImageView {
            sha256: sha,
            name: i.name.clone(),
            width: i.width,
            height: i.height,
            added_ms: i.added_ms,
            url,
        }
    };
    Ok(Json(paging::page(
        &found,
        limit,
        |i| i.sha.to_string(),
        view,
    )))
}
