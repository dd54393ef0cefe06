//! `/api/v1/jobs`: imports and exports that outlive their request.
//!
//! A job's record lives in the catalogue (see `tessera_domain::jobs`); the work runs on the node
//! that took the request. While it runs, a [`Runner`] reports progress every second, which is
//! also the job's heartbeat. The catalogue leader's [`watchdog`] notices a job whose heartbeat
//! stopped (its node died or lost the cluster): exports are restarted on the leader (they are a
//! pure function of replicated state), imports are failed with a reason (their upload lived on
//! the dead node's disk). So a job never stays "running" after its node is gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tessera_domain::catalog::Role;
use tessera_domain::jobs::{
    self, Job, JobFilter, JobKind, JobOp, JobOutcome, JobResult, JobState, Progress, Skip,
};
use tessera_raft::{ByteRange, RangeOutcome};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::Principal;
use crate::error::{internal, invalid, unexpected, ApiError};
use crate::propose::propose;
use crate::token::{self, now_ms};
use crate::{paging, AppState};

/// How often a runner reports; also its heartbeat.
const BEAT: Duration = Duration::from_secs(1);
/// A running job whose heartbeat the leader has not seen move for this long is presumed dead.
pub const SILENCE: Duration = Duration::from_secs(15);
/// A runner that cannot report for this long stops (the leader will have taken the job over).
const GIVE_UP: Duration = Duration::from_secs(30);
/// Download links handed out in job results.
const URL_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Where a node keeps job files (import spools, export archives).
pub fn dir(state: &AppState, what: &str) -> PathBuf {
    state.data_dir.join("jobs").join(what)
}

/// The archive an export attempt writes.
pub fn export_path(state: &AppState, job: &Job) -> PathBuf {
    dir(state, "exports").join(format!("{}-{}.zip", job.id, job.attempt))
}

fn no_such_job(id: u64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_job", format!("no job {id}"))
}

/// Records a new job run by this node.
pub async fn create(
    state: &AppState,
    kind: JobKind,
    dataset: Option<u64>,
    annotation_set: Option<u64>,
    created_by: &str,
    params: &Value,
) -> Result<Job, ApiError> {
    let op = JobOp::Create {
        kind,
        dataset,
        annotation_set,
        created_by: created_by.to_string(),
        at_ms: now_ms(),
        node: state.cluster.me(),
        params: params.to_string(),
    };
    match propose(state, op).await? {
        JobOutcome::Job(job) => Ok(*job),
        other => Err(unexpected(other)),
    }
}

/// Why a job ended without a result.
#[derive(Debug)]
pub enum Stop {
    /// Cancelled, or taken over by another node: nothing more to record.
    Stopped,
    Failed(String),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Stop {
        Stop::Failed(e.message)
    }
}

#[derive(Default)]
struct Shared {
    progress: Progress,
    skipped: Vec<Skip>,
}

/// The running side of a job: counters the work updates, reported by a heartbeat task.
#[derive(Clone)]
pub struct Runner {
    pub job: Arc<Job>,
    cluster: Arc<tessera_raft::Cluster>,
    shared: Arc<Mutex<Shared>>,
    stopped: Arc<AtomicBool>,
}

impl Runner {
    /// Starts the heartbeat of `job` (which this node runs).
    pub fn start(state: &AppState, job: Job) -> Runner {
        let runner = Runner {
            job: Arc::new(job),
            cluster: state.cluster.clone(),
            shared: Arc::default(),
            stopped: Arc::default(),
        };
        let beat = runner.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let mut last_ok = Instant::now();
            while !beat.stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(BEAT).await;
                if beat.stopped.load(Ordering::Relaxed) {
                    break;
                }
                match beat.report(&state).await {
                    Ok(()) => last_ok = Instant::now(),
                    Err(e) if last_ok.elapsed() > GIVE_UP => {
                        tracing::warn!(job = beat.job.id, error = %e.message, "cannot report; stopping");
                        beat.stopped.store(true, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        });
        runner
    }

    /// Proposes the counters as they are now.
    async fn report(&self, state: &AppState) -> Result<(), ApiError> {
        let (progress, skipped) = {
            let mut shared = self.shared.lock().map_err(|_| internal("poisoned"))?;
            (shared.progress.clone(), std::mem::take(&mut shared.skipped))
        };
        let op = JobOp::Progress {
            id: self.job.id,
            node: self.job.node,
            attempt: self.job.attempt,
            progress,
            skipped,
            at_ms: now_ms(),
        };
        if let JobOutcome::NotYours(_) = propose(state, op).await? {
            self.stopped.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Changes the counters.
    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut shared) = self.shared.lock() {
            f(&mut shared.progress);
        }
    }

    /// Records a file passed over.
    pub fn skip(&self, name: impl Into<String>, reason: impl Into<String>) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.progress.skipped += 1;
            if shared.skipped.len() < jobs::MAX_SKIPPED {
                shared.skipped.push(Skip {
                    name: name.into(),
                    reason: reason.into(),
                });
            }
        }
    }

    pub fn progress(&self) -> Progress {
        self.shared
            .lock()
            .map(|s| s.progress.clone())
            .unwrap_or_default()
    }

    /// `Err(Stop::Stopped)` once the job was cancelled or handed to another node: the work
    /// checks this between files and gives up.
    pub fn check(&self) -> Result<(), Stop> {
        if self.stopped.load(Ordering::Relaxed)
            || self.cluster.directory().is_cancelled(self.job.id)
        {
            return Err(Stop::Stopped);
        }
        Ok(())
    }

    /// Records how the job ended (after a last progress report) and stops the heartbeat.
    pub async fn finish(self, state: &AppState, outcome: Result<JobResult, Stop>) {
        self.stopped.store(true, Ordering::Relaxed);
        let (job_state, error, result) = match outcome {
            Ok(result) => (JobState::Succeeded, None, Some(result)),
            Err(Stop::Failed(message)) => (JobState::Failed, Some(message), None),
            Err(Stop::Stopped) => return,
        };
        if let Err(e) = self.report(state).await {
            tracing::warn!(job = self.job.id, error = %e.message, "last progress report failed");
        }
        let op = JobOp::Finish {
            id: self.job.id,
            node: self.job.node,
            attempt: self.job.attempt,
            state: job_state,
            error,
            result,
            at_ms: now_ms(),
        };
        if let Err(e) = propose(state, op).await {
            tracing::warn!(job = self.job.id, error = %e.message, "recording the end failed");
        }
    }
}

/// The JSON form of a job; succeeded exports carry a presigned download URL.
/// A job as the API answers it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Job")]
pub struct JobView {
    id: u64,
    kind: JobKind,
    state: JobState,
    dataset: Option<u64>,
    annotation_set: Option<u64>,
    created_by: String,
    created_ms: u64,
    updated_ms: u64,
    /// The node running it.
    node: u64,
    /// How many times a runner took it on (exports restart when their node dies).
    attempt: u32,
    /// The options it was started with (the import's query or the export's body).
    params: Value,
    progress: tessera_domain::jobs::Progress,
    skipped: Vec<tessera_domain::jobs::Skip>,
    error: Option<String>,
    result: Option<JobResultView>,
}

/// What a finished job produced.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct JobResultView {
    /// A presigned download URL, for a succeeded export.
    url: Option<String>,
    size: u64,
    file_name: Option<String>,
    /// Lines for the user: what a format could not carry, unknown labels, unmatched images.
    report: Vec<String>,
}

pub fn view(state: &AppState, job: &Job) -> JobView {
    let params: Value = serde_json::from_str(&job.params).unwrap_or(Value::Null);
    let result = job.result.as_ref().map(|r| {
        let url = (job.kind == JobKind::Export)
            .then(|| state.cluster.directory().key())
            .flatten()
            .map(|key| {
                let exp = now_ms() + URL_TTL_MS;
                format!(
                    "/api/v1/jobs/{}/download?{}",
                    job.id,
                    token::presign(&key, &resource(job.id), exp)
                )
            });
        JobResultView {
            url,
            size: r.size,
            file_name: r.file_name.clone(),
            report: r.report.clone(),
        }
    });
    JobView {
        id: job.id,
        kind: job.kind,
        state: job.state,
        dataset: job.dataset,
        annotation_set: job.annotation_set,
        created_by: job.created_by.clone(),
        created_ms: job.created_ms,
        updated_ms: job.updated_ms,
        node: job.node,
        attempt: job.attempt,
        params,
        progress: job.progress.clone(),
        skipped: job.skipped.clone(),
        error: job.error.clone(),
        result,
    }
}

/// What a presigned download URL signs.
fn resource(id: u64) -> String {
    format!("job/{id}")
}

async fn load(state: &AppState, id: u64) -> Result<Job, ApiError> {
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .read_catalog(move |s| jobs::job(s, id))
        .await?
        .ok_or_else(|| no_such_job(id))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(view(&state, &load(&state, id).await?)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    dataset: Option<u64>,
    annotation_set: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/jobs?dataset=&annotation_set=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = match (query.dataset, query.annotation_set) {
        (Some(_), Some(_)) => return Err(invalid("give dataset or annotation_set, not both")),
        (Some(d), None) => JobFilter::Dataset(d),
        (None, Some(s)) => JobFilter::AnnotationSet(s),
        (None, None) => JobFilter::All,
    };
    let limit = paging::limit(query.limit);
    let after = paging::id_cursor(query.cursor.as_deref())?;
    state.cluster.catalog_barrier().await?;
    let found = state
        .cluster
        .read_catalog(move |s| jobs::jobs(s, filter, after, limit + 1))
        .await?;
    Ok(Json(paging::page(
        &found,
        limit,
        |j| j.id.to_string(),
        |j| view(&state, j),
    )))
}

/// `POST /api/v1/jobs/{id}/cancel`: the runner stops at its next report (within a second or
/// two); what an import added before that stays added.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<JobView>, ApiError> {
    match propose(
        &state,
        JobOp::Cancel {
            id,
            at_ms: now_ms(),
        },
    )
    .await?
    {
        JobOutcome::Job(job) | JobOutcome::NotYours(job) => Ok(Json(view(&state, &job))),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/jobs/{id}/download`: a finished export's archive, with `Range` support. The
/// archive is on the node that ran the export; other nodes redirect there.
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    principal: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    match crate::objects::presigned_query(&state, &resource(id), query.as_deref()) {
        Some(checked) => checked?,
        None => principal?.require(Role::Manager)?,
    }
    let job = load(&state, id).await?;
    let (Some(result), JobKind::Export) = (&job.result, job.kind) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "job {id} has no archive to download (state {:?})",
                job.state
            ),
        ));
    };
    if job.node != state.cluster.me() {
        let spec = state.cluster.spec();
        let node = spec
            .node(job.node)
            .ok_or_else(|| internal(format!("node {} is not in the cluster", job.node)))?;
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let location = format!("http://{}/api/v1/jobs/{id}/download{query}", node.http);
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response());
    }
    let path = export_path(&state, &job);
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::GONE,
            "gone",
            format!(
                "the archive of job {id} is no longer on node {} ({e}); export again",
                job.node
            ),
        )
    })?;
    let size = result.size;
    let file_name = result
        .file_name
        .clone()
        .unwrap_or_else(|| format!("job-{id}.zip"));
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/zip")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        );
    let range: Option<ByteRange> = crate::objects::parse_range(&headers);
    let (builder, offset, length) = match RangeOutcome::of(range, size) {
        RangeOutcome::Full => (builder.status(StatusCode::OK), 0, size),
        RangeOutcome::Partial { offset, length } => (
            builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", offset, offset + length - 1, size),
            ),
            offset,
            length,
        ),
        RangeOutcome::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .map_err(internal);
        }
    };
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(internal)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(length), 256 << 10);
    builder
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(stream))
        .map_err(internal)
}

/// How long export archives stay downloadable.
const KEEP_EXPORTS: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// At start-up: drops import spools (no import runs here yet: those that ran before a restart
/// are failed by the watchdog), then starts the [`watchdog`] and the export clean-up.
pub async fn start_background(state: &AppState) {
    let spools = dir(state, "imports");
    if let Err(e) = tokio::fs::remove_dir_all(&spools).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %e, dir = %spools.display(), "cannot clear import spools");
        }
    }
    tokio::spawn(watchdog(state.clone()));
    let exports = dir(state, "exports");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let dir = exports.clone();
            let swept = tokio::task::spawn_blocking(move || sweep(&dir, KEEP_EXPORTS)).await;
            if let Ok(Err(e)) = swept {
                tracing::warn!(error = %e, "sweeping old exports failed");
            }
        }
    });
}

/// Deletes files in `dir` not modified for `keep`.
fn sweep(dir: &std::path::Path, keep: Duration) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if old {
            let path = entry.path();
            if path.is_dir() {
                // A spool directory left by an export interrupted by a crash.
                std::fs::remove_dir_all(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

/// While this node leads the catalogue: fails or restarts running jobs whose heartbeat stopped.
async fn watchdog(state: AppState) {
    let mut seen: HashMap<u64, (u64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if !state.cluster.leads(tessera_raft::placement::META_GROUP) {
            seen.clear();
            continue;
        }
        let running = match state.cluster.read_catalog(jobs::running).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "watchdog cannot read jobs");
                continue;
            }
        };
        seen.retain(|id, _| running.iter().any(|j| j.id == *id));
        for job in running {
            let entry = seen.entry(job.id).or_insert((job.beats, Instant::now()));
            if entry.0 != job.beats {
                *entry = (job.beats, Instant::now());
                continue;
            }
            if entry.1.elapsed() < SILENCE {
                continue;
            }
            seen.remove(&job.id);
            if let Err(e) = revive(&state, job).await {
                tracing::warn!(error = %e.message, "watchdog could not settle a silent job");
            }
        }
    }
}

/// Settles a job whose runner went silent: exports restart here, other jobs fail.
async fn revive(state: &AppState, job: Job) -> Result<(), ApiError> {
    tracing::warn!(job = job.id, node = job.node, "job runner went silent");
    if job.kind == JobKind::Export {
        let op = JobOp::Takeover {
            id: job.id,
            attempt: job.attempt,
            node: state.cluster.me(),
            at_ms: now_ms(),
        };
        if let JobOutcome::Job(job) = propose(state, op).await? {
            crate::export::spawn(state.clone(), *job);
        }
        return Ok(());
    }
    let op = JobOp::Finish {
        id: job.id,
        node: job.node,
        attempt: job.attempt,
        state: JobState::Failed,
        error: Some(format!(
            "node {} stopped reporting progress (it stopped or lost the cluster); what was \
             imported before stays imported: start the import again to add the rest",
            job.node
        )),
        result: None,
        at_ms: now_ms(),
    };
    propose(state, op).await.map(|_| ())
}
