//! Background jobs (imports and exports), kept in the catalogue so that every node can report
//! them and a job never outlives its runner unnoticed.
//!
//! A job is run by one node (its `node`), which proposes [`JobOp::Progress`] at least every few
//! seconds. Each progress op bumps `beats`; the catalogue leader watches `beats` on its own
//! monotonic clock and, when a running job stops beating, takes it over or fails it (see
//! `tessera_api::jobs`), so no job stays "running" after its node died. A runner learns that it
//! was cancelled or replaced from the outcome of its next progress op and stops.

use serde::{Deserialize, Serialize};

use crate::records::{get, next_id, page};
use crate::{key, DomainError, Records, Tx};

/// Skipped files remembered per job; further ones are only counted.
pub const MAX_SKIPPED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Media into a dataset.
    Import,
    /// An annotation set to a dataset format.
    Export,
    /// Existing annotations into an annotation set.
    AnnotationImport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// Counters a job reports; which ones move depends on the kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub bytes_received: u64,
    pub files_seen: u64,
    pub images_added: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub images_exported: u64,
    pub shapes_exported: u64,
    pub shapes_imported: u64,
}

/// A file an import passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skip {
    pub name: String,
    pub reason: String,
}

/// What a finished export (or annotation import) produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The download's file name, for exports.
    pub file_name: Option<String>,
    pub size: u64,
    /// Lines for the user: what a format could not carry, unknown labels, unmatched images.
    pub report: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    pub state: JobState,
    pub dataset: Option<u64>,
    pub annotation_set: Option<u64>,
    pub created_by: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The node running it.
    pub node: u64,
    /// How many times a runner took it on (exports are restarted when their node dies).
    pub attempt: u32,
    /// Bumped by every progress report: the liveness signal.
    pub beats: u64,
    /// The options it was started with, as JSON text.
    pub params: String,
    pub progress: Progress,
    pub skipped: Vec<Skip>,
    pub error: Option<String>,
    pub result: Option<JobResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JobOp {
    Create {
        kind: JobKind,
        dataset: Option<u64>,
        annotation_set: Option<u64>,
        created_by: String,
        at_ms: u64,
        node: u64,
        params: String,
    },
    /// From the runner `node`: the counters now, and files skipped since the last report.
    Progress {
        id: u64,
        node: u64,
        attempt: u32,
        progress: Progress,
        skipped: Vec<Skip>,
        at_ms: u64,
    },
    Finish {
        id: u64,
        node: u64,
        attempt: u32,
        state: JobState,
        error: Option<String>,
        result: Option<JobResult>,
        at_ms: u64,
    },
    Cancel {
        id: u64,
        at_ms: u64,
    },
    /// The leader hands a job whose runner went silent to `node` (`attempt` is the one it
    /// saw, so two takeovers of the same silence apply once).
    Takeover {
        id: u64,
        attempt: u32,
        node: u64,
        at_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    Job(Box<Job>),
    /// The runner no longer owns the job (finished, cancelled or taken over): it must stop.
    NotYours(Box<Job>),
    NoSuchJob(u64),
}

const NEXT_ID: &str = "job-next-id";

fn job_key(id: u64) -> Vec<u8> {
    key(&format!("job/{id:016x}"))
}

fn running_key(id: u64) -> Vec<u8> {
    key(&format!("job-running/{id:016x}"))
}

fn owner_prefix(kind: &str, owner: u64) -> Vec<u8> {
    key(&format!("job-by-{kind}/{owner:016x}/"))
}

fn owner_key(kind: &str, owner: u64, id: u64) -> Vec<u8> {
    let mut k = owner_prefix(kind, owner);
    k.extend_from_slice(format!("{id:016x}").as_bytes());
    k
}

/// Stages a job op.
pub fn stage(tx: &mut Tx, op: &JobOp) -> Result<JobOutcome, DomainError> {
    let id = match op {
        JobOp::Create {
            kind,
            dataset,
            annotation_set,
            created_by,
            at_ms,
            node,
            params,
        } => {
            let id = next_id(tx, NEXT_ID)?;
            let job = Job {
                id,
                kind: *kind,
                state: JobState::Running,
                dataset: *dataset,
                annotation_set: *annotation_set,
                created_by: created_by.clone(),
                created_ms: *at_ms,
                updated_ms: *at_ms,
                node: *node,
                attempt: 1,
                beats: 0,
                params: params.clone(),
                progress: Progress::default(),
                skipped: Vec::new(),
                error: None,
                result: None,
            };
            // Index entries hold the job record's key (see `by_index`).
            let record = job_key(id);
            if let Some(d) = dataset {
                tx.put_record(owner_key("dataset", *d, id), &record)?;
            }
            if let Some(s) = annotation_set {
                tx.put_record(owner_key("set", *s, id), &record)?;
            }
            tx.put_record(running_key(id), &record)?;
            tx.put_record(job_key(id), &job)?;
            return Ok(JobOutcome::Job(Box::new(job)));
        }
        JobOp::Progress { id, .. }
        | JobOp::Finish { id, .. }
        | JobOp::Cancel { id, .. }
        | JobOp::Takeover { id, .. } => *id,
    };
    let Some(mut job) = get::<Job>(tx, &job_key(id))? else {
        return Ok(JobOutcome::NoSuchJob(id));
    };
    let owns = |node: u64, attempt: u32, job: &Job| {
        job.state == JobState::Running && job.node == node && job.attempt == attempt
    };
    match op {
        JobOp::Progress {
            node,
            attempt,
            progress,
            skipped,
            at_ms,
            ..
        } => {
            if !owns(*node, *attempt, &job) {
                return Ok(JobOutcome::NotYours(Box::new(job)));
            }
            job.progress = progress.clone();
            let room = MAX_SKIPPED.saturating_sub(job.skipped.len());
            job.skipped.extend(skipped.iter().take(room).cloned());
            job.beats = job.beats.wrapping_add(1);
            job.updated_ms = *at_ms;
        }
        JobOp::Finish {
            node,
            attempt,
            state,
            error,
            result,
            at_ms,
            ..
        } => {
            if !owns(*node, *attempt, &job) {
                return Ok(JobOutcome::NotYours(Box::new(job)));
            }
            job.state = *state;
            job.error = error.clone();
            job.result = result.clone();
            job.updated_ms = *at_ms;
            let event = match state {
                JobState::Succeeded => Some(crate::webhooks::Event::JobFinished),
                JobState::Failed => Some(crate::webhooks::Event::JobFailed),
                _ => None,
            };
            if let Some(event) = event {
                let data = serde_json::json!({
                    "job": job.id,
                    "kind": job.kind,
                    "state": job.state,
                    "dataset": job.dataset,
                    "annotation_set": job.annotation_set,
                    "error": job.error,
                    "at_ms": at_ms,
                });
                crate::webhooks::stage_event(tx, job.annotation_set, event, &data, *at_ms)?;
            }
        }
        JobOp::Cancel { at_ms, .. } => {
            if job.state == JobState::Running {
                job.state = JobState::Cancelled;
                job.updated_ms = *at_ms;
            }
        }
        JobOp::Takeover {
            attempt,
            node,
            at_ms,
            ..
        } => {
            if job.state != JobState::Running || job.attempt != *attempt {
                return Ok(JobOutcome::NotYours(Box::new(job)));
            }
            job.node = *node;
            job.attempt = job.attempt.saturating_add(1);
            job.beats = job.beats.wrapping_add(1);
            job.updated_ms = *at_ms;
        }
        // Taken care of above; answered rather than asserted, so no op can panic an apply.
        JobOp::Create { .. } => return Ok(JobOutcome::NoSuchJob(id)),
    }
    if job.state != JobState::Running {
        tx.delete(running_key(id));
    }
    tx.put_record(job_key(id), &job)?;
    Ok(JobOutcome::Job(Box::new(job)))
}

/// One job from this node's catalogue replica.
pub fn job(r: &dyn Records, id: u64) -> Result<Option<Job>, DomainError> {
    get(r, &job_key(id))
}

/// Which jobs to list.
#[derive(Clone, Copy, Debug)]
pub enum JobFilter {
    All,
    Dataset(u64),
    AnnotationSet(u64),
}

/// Jobs in id order after `after`.
pub fn jobs(
    r: &dyn Records,
    filter: JobFilter,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<Job>, DomainError> {
    let prefix = match filter {
        JobFilter::All => {
            let after = after.map(|a| format!("{a:016x}"));
            let after = after.as_deref().map(str::as_bytes);
            return page(r, &key("job/"), after, limit);
        }
        JobFilter::Dataset(d) => owner_prefix("dataset", d),
        JobFilter::AnnotationSet(s) => owner_prefix("set", s),
    };
    by_index(r, &prefix, after, limit)
}

/// Jobs whose record keys are the values of the index under `prefix`.
fn by_index(
    r: &dyn Records,
    prefix: &[u8],
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<Job>, DomainError> {
    let after = after.map(|a| format!("{a:016x}"));
    let after = after.as_deref().map(str::as_bytes);
    let record_keys: Vec<Vec<u8>> = page(r, prefix, after, limit)?;
    let mut out = Vec::with_capacity(record_keys.len());
    for record in record_keys {
        // Entries written before the domain crate hold the key with the catalogue group's
        // prefix in front: the id at the end is what both forms share.
        let id = record
            .len()
            .checked_sub(16)
            .and_then(|at| std::str::from_utf8(&record[at..]).ok())
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| DomainError::Corrupt("job index entry".into()))?;
        if let Some(job) = get::<Job>(r, &job_key(id))? {
            out.push(job);
        }
    }
    Ok(out)
}

/// Running jobs (for the leader's liveness watch), from their own index.
pub fn running(r: &dyn Records) -> Result<Vec<Job>, DomainError> {
    by_index(r, &key("job-running/"), None, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogOp, CatalogOutcome, TestReplica};

    fn create(r: &TestReplica, dataset: Option<u64>) -> Job {
        let op = CatalogOp::Job(JobOp::Create {
            kind: JobKind::Import,
            dataset,
            annotation_set: None,
            created_by: "mgr".into(),
            at_ms: 1,
            node: 1,
            params: String::new(),
        });
        match r.apply(op) {
            CatalogOutcome::Job(JobOutcome::Job(job)) => *job,
            other => panic!("create: {other:?}"),
        }
    }

    fn progress(id: u64, node: u64, attempt: u32, skipped: usize) -> CatalogOp {
        let skip = Skip {
            name: "x".into(),
            reason: "y".into(),
        };
        CatalogOp::Job(JobOp::Progress {
            id,
            node,
            attempt,
            progress: Progress::default(),
            skipped: vec![skip; skipped],
            at_ms: 2,
        })
    }

    #[test]
    fn only_the_current_runner_reports_and_a_takeover_fences_the_old_one() {
        let r = TestReplica::new();
        let job = create(&r, Some(4));
        assert!(matches!(
            r.apply(progress(job.id, 2, 1, 0)),
            CatalogOutcome::Job(JobOutcome::NotYours(_))
        ));
        let takeover = CatalogOp::Job(JobOp::Takeover {
            id: job.id,
            attempt: 1,
            node: 2,
            at_ms: 3,
        });
        let CatalogOutcome::Job(JobOutcome::Job(taken)) = r.apply(takeover.clone()) else {
            panic!("taken over");
        };
        assert_eq!((taken.node, taken.attempt), (2, 2));
        // The same takeover again (another watcher) finds the attempt moved on.
        assert!(matches!(
            r.apply(takeover),
            CatalogOutcome::Job(JobOutcome::NotYours(_))
        ));
        assert!(matches!(
            r.apply(progress(job.id, 1, 1, 0)),
            CatalogOutcome::Job(JobOutcome::NotYours(_))
        ));
        assert!(matches!(
            r.apply(progress(job.id, 2, 2, 0)),
            CatalogOutcome::Job(JobOutcome::Job(_))
        ));
    }

    #[test]
    fn skipped_files_are_capped_and_finished_jobs_leave_the_running_index() {
        let r = TestReplica::new();
        let job = create(&r, None);
        for _ in 0..3 {
            r.apply(progress(job.id, 1, 1, MAX_SKIPPED / 2));
        }
        let stored = super::job(&*r.store.borrow(), job.id)
            .expect("read")
            .expect("job");
        assert_eq!(stored.skipped.len(), MAX_SKIPPED);
        assert_eq!(running(&*r.store.borrow()).expect("running").len(), 1);
        r.apply(CatalogOp::Job(JobOp::Cancel {
            id: job.id,
            at_ms: 4,
        }));
        assert!(running(&*r.store.borrow()).expect("running").is_empty());
        assert!(r.directory.is_cancelled(job.id));
        assert!(matches!(
            r.apply(progress(job.id, 1, 1, 0)),
            CatalogOutcome::Job(JobOutcome::NotYours(_))
        ));
    }

    #[test]
    fn index_entries_written_before_the_domain_crate_still_lead_to_their_jobs() {
        let r = TestReplica::new();
        let job = create(&r, Some(4));
        // Entries used to hold the record's key with the catalogue group's prefix in front.
        let mut old = vec![0, 0, 0, 0];
        old.extend_from_slice(&job_key(job.id));
        let raw = bincode::serialize(&old).expect("encode");
        r.store
            .borrow_mut()
            .0
            .insert(owner_key("dataset", 4, job.id), raw.clone());
        r.store.borrow_mut().0.insert(running_key(job.id), raw);
        let by_dataset = jobs(&*r.store.borrow(), JobFilter::Dataset(4), None, 10).expect("list");
        assert_eq!(
            by_dataset.iter().map(|j| j.id).collect::<Vec<_>>(),
            [job.id]
        );
        assert_eq!(running(&*r.store.borrow()).expect("running").len(), 1);
    }
}
