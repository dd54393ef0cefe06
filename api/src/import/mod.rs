//! Imports: an upload (an image, an archive, a video, a PDF or an office document) becomes
//! images of a dataset, in a background job.
//!
//! Three phases, so that memory stays bounded and hostile input stores nothing:
//! 1. the request body streams to a spool file on this node's disk (`bytes_received` grows);
//!    the response (202) is sent once it is complete;
//! 2. [`unpack`] expands it into image files in a staging directory, refusing or skipping what
//!    is hostile;
//! 3. each image is stored as a content-addressed object (deduplicated cluster-wide) and added
//!    to the dataset in batches, named by its path in the upload.
//!
//! If this node dies, the job's heartbeat stops and the catalogue leader fails it with a reason
//! (the spool was on this node); images stored before stay in the dataset, and importing the
//! same upload again adds only the rest.

mod gif_frame;
mod media;
pub(crate) mod unpack;

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tessera_domain::datasets::{self, DatasetImage};
use tessera_domain::jobs::{JobKind, JobResult};
use tessera_raft::storage::{probe_image, ObjectMeta, Sha256};
use tokio::io::AsyncWriteExt;

use crate::auth::Principal;
use crate::error::{invalid, ApiError};
use crate::jobs::{self, Runner, Stop};
use crate::token::now_ms;
use crate::AppState;

/// Images stored between two additions to the dataset.
const BATCH: usize = 100;
/// The most an upload may expand to on this node's disk.
const MAX_EXPANDED: u64 = 64 << 30;

/// What an import was asked for (kept as the job's params).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The upload's file name: the name of a single image, the prefix of frames and pages.
    #[serde(default = "default_filename")]
    #[schemars(regex(pattern = r"^[^/\\\x00-\x1F\x7F-\x9F]{1,255}$"))]
    pub filename: String,
    /// Frames taken per second of video.
    #[serde(default = "default_fps")]
    #[schemars(range(min = 0.01, max = 60.0))]
    pub video_fps: f64,
    /// Resolution PDF pages are rendered at.
    #[serde(default = "default_dpi")]
    #[schemars(range(min = 36, max = 600))]
    pub pdf_dpi: u32,
}

fn default_filename() -> String {
    "upload".into()
}

fn default_fps() -> f64 {
    1.0
}

fn default_dpi() -> u32 {
    150
}

impl Options {
    fn check(&self) -> Result<(), ApiError> {
        if self.filename.is_empty()
            || self.filename.chars().count() > 255
            || self.filename.contains(['/', '\\'])
            || self.filename.chars().any(char::is_control)
        {
            return Err(invalid(
                "filename: 1-255 characters, no slashes or control characters",
            ));
        }
        if !(self.video_fps.is_finite() && (0.01..=60.0).contains(&self.video_fps)) {
            return Err(invalid("video_fps: between 0.01 and 60"));
        }
        if !(36..=600).contains(&self.pdf_dpi) {
            return Err(invalid("pdf_dpi: between 36 and 600"));
        }
        Ok(())
    }
}

/// `POST /api/v1/datasets/{id}/imports?filename=&video_fps=&pdf_dpi=`: the body is the file.
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
    options: Result<Query<Options>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    // The role is checked before the query string, so that callers without it learn that first.
    let Query(options) = options.map_err(|e| invalid(e.body_text()))?;
    options.check()?;
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .read_catalog(move |s| datasets::dataset(s, id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_dataset",
                format!("no dataset {id}"),
            )
        })?;
    let params = serde_json::to_value(&options).map_err(crate::error::internal)?;
    let job = jobs::create(
        &state,
        JobKind::Import,
        Some(id),
        None,
        &principal.username,
        &params,
    )
    .await?;
    let runner = Runner::start(&state, job);
    accept_upload(
        state,
        runner,
        body,
        move |state, runner, spool| async move { process(&state, &runner, &spool, options).await },
    )
    .await
}

/// Receives the body of a job's upload into the job's spool directory, then answers 202 and
/// runs `work` on it in the background; the spool is removed when the work ends. A body that
/// breaks off fails the job and the request.
pub(crate) async fn accept_upload<F, Fut>(
    state: AppState,
    runner: Runner,
    body: Body,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(AppState, Runner, PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<JobResult, Stop>> + Send,
{
    let spool = jobs::dir(&state, "imports").join(runner.job.id.to_string());
    if let Err(stop) = receive(&runner, body, &spool).await {
        let _ = tokio::fs::remove_dir_all(&spool).await;
        let message = match &stop {
            Stop::Failed(m) => m.clone(),
            Stop::Stopped => "cancelled".into(),
        };
        runner.finish(&state, Err(stop)).await;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "upload_failed",
            message,
        ));
    }
    let view = jobs::view(&state, &runner.job);
    let location = format!("/api/v1/jobs/{}", runner.job.id);
    tokio::spawn(async move {
        let outcome = work(state.clone(), runner.clone(), spool.clone()).await;
        if let Err(e) = tokio::fs::remove_dir_all(&spool).await {
            tracing::warn!(error = %e, "removing an upload spool failed");
        }
        if let Err(Stop::Failed(e)) = &outcome {
            tracing::warn!(job = runner.job.id, error = %e, "job failed");
        }
        runner.finish(&state, outcome).await;
    });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// Streams the body to `spool/upload`, counting bytes.
pub(crate) async fn receive(
    runner: &Runner,
    body: Body,
    spool: &std::path::Path,
) -> Result<(), Stop> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Stop::Failed(format!("{what}: {e}"));
    tokio::fs::create_dir_all(spool)
        .await
        .map_err(|e| fail("creating the spool", &e))?;
    let mut file = tokio::fs::File::create(spool.join("upload"))
        .await
        .map_err(|e| fail("creating the spool", &e))?;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| fail(&format!("the upload broke off after {received} bytes"), &e))?;
        received += chunk.len() as u64;
        if received > MAX_EXPANDED {
            return Err(Stop::Failed(format!(
                "uploads are limited to {MAX_EXPANDED} bytes"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| fail("writing the spool", &e))?;
        runner.update(|p| p.bytes_received = received);
        runner.check()?;
    }
    if received == 0 {
        return Err(Stop::Failed("the body is empty; send the file".into()));
    }
    file.sync_all()
        .await
        .map_err(|e| fail("writing the spool", &e))?;
    Ok(())
}

async fn process(
    state: &AppState,
    runner: &Runner,
    spool: &std::path::Path,
    options: Options,
) -> Result<JobResult, Stop> {
    let limits = unpack::Limits {
        max_depth: 3,
        max_total: MAX_EXPANDED,
        max_ratio: 100,
        max_image: state.limits.max_object_bytes,
        video_fps: options.video_fps,
        pdf_dpi: options.pdf_dpi,
    };
    let upload = spool.join("upload");
    let staging = spool.join("staging");
    let walker = runner.clone();
    let staged = crate::long_work::run(move || -> Result<Vec<unpack::Staged>, Stop> {
        std::fs::create_dir_all(&staging)
            .map_err(|e| Stop::Failed(format!("creating the staging directory: {e}")))?;
        let mut unpacker = unpack::Unpacker::new(limits, staging, &walker);
        unpacker.walk(&upload, &options.filename)?;
        Ok(unpacker.staged)
    })
    .await
    .map_err(|e| Stop::Failed(e.to_string()))??;
    let dataset = runner
        .job
        .dataset
        .ok_or_else(|| Stop::Failed("the job names no dataset".into()))?;
    let mut batch = Vec::with_capacity(BATCH);
    for image in staged {
        runner.check()?;
        if let Some(record) = store(state, runner, &image.path, &image.name).await? {
            batch.push(record);
        }
        if batch.len() == BATCH {
            add(state, runner, dataset, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        add(state, runner, dataset, batch).await?;
    }
    let p = runner.progress();
    Ok(JobResult {
        file_name: None,
        size: p.bytes_received,
        report: vec![format!(
            "{} images added, {} already in the dataset, {} files skipped",
            p.images_added, p.duplicates, p.skipped
        )],
    })
}

/// Stores one staged image as an object (taking the reference its dataset membership will
/// hold); `None` when it is skipped.
async fn store(
    state: &AppState,
    runner: &Runner,
    path: &std::path::Path,
    name: &str,
) -> Result<Option<DatasetImage>, Stop> {
    let mut bytes = tokio::fs::read(path)
        .await
        .map_err(|e| Stop::Failed(format!("reading a staged file: {e}")))?;
    if bytes.starts_with(b"GIF8") {
        let gif = bytes.clone();
        let converted = crate::long_work::run(move || gif_frame::first_frame_png(&gif))
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        match converted {
            Ok(Some(png)) => bytes = png,
            Ok(None) => {}
            Err(why) => {
                runner.skip(name, why);
                return Ok(None);
            }
        }
    }
    let info = match probe_image(&bytes) {
        Ok(info) => info,
        Err(e) => {
            runner.skip(name, e.to_string());
            return Ok(None);
        }
    };
    let sha = Sha256(sha2::Sha256::digest(&bytes).into());
    let meta = ObjectMeta::for_upload(bytes.len() as u64, &info, now_ms());
    state
        .cluster
        .put_object(sha, meta, bytes.into())
        .await
        .map_err(|e| Stop::Failed(format!("storing {name}: {e}")))?;
    Ok(Some(DatasetImage {
        sha,
        name: name.chars().take(1024).collect(),
        width: info.width,
        height: info.height,
        added_ms: now_ms(),
    }))
}

async fn add(
    state: &AppState,
    runner: &Runner,
    dataset: u64,
    batch: Vec<DatasetImage>,
) -> Result<(), Stop> {
    let (added, already) = crate::datasets::add_records(state, dataset, batch, true).await?;
    runner.update(|p| {
        p.images_added += added.len() as u64;
        p.duplicates += already as u64;
    });
    Ok(())
}
