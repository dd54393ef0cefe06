//! What a catalogue op answers, split into a success or a [`Refusal`].
//!
//! Every op family (datasets, annotation sets, tasks, saves, comments, jobs, imports, users and
//! sessions) has its own outcome enum, and the catalogue wraps them all in [`CatalogOutcome`]
//! for the log and the request records (whose bincode encoding must not change). Callers
//! want neither the wrapping nor a refusal mixed into their successes: [`Outcome`] unwraps a
//! family's outcome and names its refusals, and this file is the one table of them — the API
//! maps a [`Refusal`] to HTTP in one place and handlers only see what an op made.

use std::fmt::Debug;

use crate::annotation_sets::{AnnotationSetOp, AnnotationSetOutcome};
use crate::annotations::{Import, ImportOutcome, Save, SaveOutcome};
use crate::catalog::{CatalogOp, CatalogOutcome};
use crate::comments::{CommentOp, CommentOutcome};
use crate::datasets::{DatasetOp, DatasetOutcome};
use crate::ground_truth;
use crate::jobs::{JobOp, JobOutcome};
use crate::quality_op::{QualityOp, QualityOutcome};
use crate::tasks::{TaskOp, TaskOutcome};
use crate::webhooks::{WebhookOp, WebhookOutcome};

/// Why the domain refused an op a client sent: decided identically on every replica and
/// stored as the op's outcome, never an error of the replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Refused,
    /// A stable, machine-readable reason (`no_such_task`, `invalid_transition`, …) that
    /// clients may branch on; the API sends it as the error's `code`.
    pub code: &'static str,
    /// What went wrong and, where the caller can act on it, what to do next.
    pub message: String,
}

/// The kinds of refusal, each with one meaning for every op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A record the op names does not exist.
    NotFound,
    /// The caller's role or assignment does not allow the op.
    Forbidden,
    /// The op does not fit the current state (a name taken, a transition not allowed now).
    Conflict,
    /// The op itself breaks a rule (a field, a shape, a schema).
    Invalid,
}

impl Refusal {
    fn new(kind: Refused, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            code,
            message: message.into(),
        }
    }

    fn not_found(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::new(Refused::NotFound, code, message)
    }

    fn no_such(what: &str, code: &'static str, id: u64) -> Refusal {
        Refusal::not_found(code, format!("no {what} {id}"))
    }

    fn forbidden(message: &str) -> Refusal {
        Refusal::new(Refused::Forbidden, "forbidden", message)
    }
}

/// An op family and the outcome type its ops answer, so a proposer gets that type back
/// without naming it.
pub trait Op: Into<CatalogOp> {
    type Outcome: Outcome;
}

/// Ties an op family to its variant of [`CatalogOp`] and its outcome to its variant of
/// [`CatalogOutcome`].
macro_rules! op_family {
    ($($op:ty => $op_variant:ident, $outcome:ty => $outcome_variant:ident;)*) => {$(
        impl From<$op> for CatalogOp {
            fn from(op: $op) -> CatalogOp {
                CatalogOp::$op_variant(op)
            }
        }

        impl Op for $op {
            type Outcome = $outcome;
        }

        impl Outcome for $outcome {
            fn from_catalog(outcome: CatalogOutcome) -> Result<Self, Box<CatalogOutcome>> {
                match outcome {
                    CatalogOutcome::$outcome_variant(o) => Ok(o),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

op_family! {
    DatasetOp => Dataset, DatasetOutcome => Dataset;
    AnnotationSetOp => AnnotationSet, AnnotationSetOutcome => AnnotationSet;
    TaskOp => Task, TaskOutcome => Task;
    Save => SaveAnnotation, SaveOutcome => Annotation;
    CommentOp => Comment, CommentOutcome => Comment;
    JobOp => Job, JobOutcome => Job;
    Import => ImportAnnotations, ImportOutcome => Imported;
    QualityOp => Quality, QualityOutcome => Quality;
    WebhookOp => Webhook, WebhookOutcome => Webhook;
}

/// The users' and sessions' ops answer the catalogue's own outcome.
impl Op for CatalogOp {
    type Outcome = CatalogOutcome;
}

/// One family's outcome inside [`CatalogOutcome`].
pub trait Outcome: Refusals + Sized + Debug {
    /// This family's outcome, or the catalogue's outcome back unchanged when another family
    /// answered (a proposer bug: the op and the outcome type do not belong together).
    fn from_catalog(outcome: CatalogOutcome) -> Result<Self, Box<CatalogOutcome>>;
}

/// The outcomes of a family that are refusals.
pub trait Refusals {
    /// The refusal this outcome is, if it is one.
    fn refusal(&self) -> Option<Refusal>;
}

impl Outcome for CatalogOutcome {
    fn from_catalog(outcome: CatalogOutcome) -> Result<Self, Box<CatalogOutcome>> {
        Ok(outcome)
    }
}

impl Refusals for CatalogOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            CatalogOutcome::Conflict(m) => Some(Refusal::new(Refused::Conflict, "conflict", m)),
            CatalogOutcome::NotFound(m) => Some(Refusal::not_found("not_found", m)),
            _ => None,
        }
    }
}

impl Refusals for QualityOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            QualityOutcome::GroundTruth(ground_truth::Outcome::NoSuchSet(id)) => Some(
                Refusal::no_such("annotation set", "no_such_annotation_set", *id),
            ),
            QualityOutcome::GroundTruth(ground_truth::Outcome::NotFound(m)) => {
                Some(Refusal::not_found("not_found", m))
            }
            QualityOutcome::GroundTruth(ground_truth::Outcome::Invalid(m)) => {
                Some(Refusal::new(Refused::Invalid, "invalid_field", m))
            }
            QualityOutcome::Invalid(m) => Some(Refusal::new(Refused::Invalid, "invalid_field", m)),
            QualityOutcome::GroundTruth(ground_truth::Outcome::Done(_))
            | QualityOutcome::Recorded { .. }
            | QualityOutcome::Pinned => None,
        }
    }
}

impl Refusals for WebhookOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            WebhookOutcome::NoSuchHook(id) => {
                Some(Refusal::no_such("webhook", "no_such_webhook", *id))
            }
            WebhookOutcome::NoSuchSet(id) => Some(Refusal::no_such(
                "annotation set",
                "no_such_annotation_set",
                *id,
            )),
            WebhookOutcome::Invalid(m) => Some(Refusal::new(Refused::Invalid, "invalid_field", m)),
            WebhookOutcome::Hook(_)
            | WebhookOutcome::Deleted
            | WebhookOutcome::Claimed(_)
            | WebhookOutcome::NotClaimed
            | WebhookOutcome::Recorded => None,
        }
    }
}

impl Refusals for DatasetOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            DatasetOutcome::NoSuchDataset(id) => {
                Some(Refusal::no_such("dataset", "no_such_dataset", *id))
            }
            DatasetOutcome::NameTaken(name) => Some(Refusal::new(
                Refused::Conflict,
                "conflict",
                format!("a dataset named {name:?} exists; choose another name"),
            )),
            DatasetOutcome::NotEmpty(n) => Some(Refusal::new(
                Refused::Conflict,
                "conflict",
                format!("{n} images were added while deleting; try again"),
            )),
            DatasetOutcome::Dataset(_) | DatasetOutcome::Images(_) | DatasetOutcome::Deleted => {
                None
            }
        }
    }
}

impl Refusals for AnnotationSetOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            AnnotationSetOutcome::NoSuchDataset(id) => {
                Some(Refusal::no_such("dataset", "no_such_dataset", *id))
            }
            AnnotationSetOutcome::NoSuchSet(id) => Some(Refusal::no_such(
                "annotation set",
                "no_such_annotation_set",
                *id,
            )),
            AnnotationSetOutcome::Invalid(m) => {
                Some(Refusal::new(Refused::Invalid, "invalid_field", m))
            }
            AnnotationSetOutcome::WouldOrphan(m) => {
                Some(Refusal::new(Refused::Conflict, "would_orphan", m))
            }
            AnnotationSetOutcome::Set(_) | AnnotationSetOutcome::Deleted => None,
        }
    }
}

impl Refusals for TaskOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            TaskOutcome::NoSuchTask(id) => Some(Refusal::no_such("task", "no_such_task", *id)),
            TaskOutcome::Forbidden(m) => Some(Refusal::forbidden(m)),
            TaskOutcome::Conflict(m) => {
                Some(Refusal::new(Refused::Conflict, "invalid_transition", m))
            }
            TaskOutcome::Created(_) | TaskOutcome::Task(_) => None,
        }
    }
}

/// A stale save is not a refusal: it is answered with the current version (412 and its ETag),
/// which the client needs to merge and retry.
impl Refusals for SaveOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            SaveOutcome::NoSuchTask(id) => Some(Refusal::no_such("task", "no_such_task", *id)),
            SaveOutcome::NotInTask => Some(Refusal::not_found(
                "not_in_task",
                "the image is not in this task",
            )),
            SaveOutcome::Forbidden(m) => Some(Refusal::forbidden(m)),
            SaveOutcome::Invalid(m) => Some(Refusal::new(Refused::Invalid, "invalid_shape", m)),
            SaveOutcome::Saved(_) | SaveOutcome::Stale(_) => None,
        }
    }
}

impl Refusals for CommentOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            CommentOutcome::NotFound(m) => Some(Refusal::not_found("not_found", m)),
            CommentOutcome::Forbidden(m) => Some(Refusal::forbidden(m)),
            CommentOutcome::Invalid(m) => Some(Refusal::new(Refused::Invalid, "invalid_field", m)),
            CommentOutcome::Comment(_) => None,
        }
    }
}

/// `NotYours` is not a refusal: it tells a job's runner to stop, and a user's cancel of a job
/// that already ended answers the job as it is.
impl Refusals for JobOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            JobOutcome::NoSuchJob(id) => Some(Refusal::no_such("job", "no_such_job", *id)),
            JobOutcome::Job(_) | JobOutcome::NotYours(_) => None,
        }
    }
}

impl Refusals for ImportOutcome {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            ImportOutcome::NoSuchSet(id) => Some(Refusal::no_such(
                "annotation set",
                "no_such_annotation_set",
                *id,
            )),
            ImportOutcome::Invalid(m) => Some(Refusal::new(Refused::Invalid, "invalid_shape", m)),
            ImportOutcome::Imported(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_are_not_refusals_and_refusals_keep_their_codes() {
        assert_eq!(DatasetOutcome::Deleted.refusal(), None);
        assert_eq!(SaveOutcome::Stale(3).refusal(), None);
        let refused = TaskOutcome::Conflict("submit it first".into())
            .refusal()
            .map(|r| (r.kind, r.code));
        assert_eq!(refused, Some((Refused::Conflict, "invalid_transition")));
        let missing = DatasetOutcome::NoSuchDataset(7).refusal();
        assert_eq!(missing.map(|r| r.message), Some("no dataset 7".to_string()));
    }

    #[test]
    fn a_family_unwraps_only_its_own_outcomes() {
        let wrapped = CatalogOutcome::Task(TaskOutcome::NoSuchTask(1));
        assert_eq!(
            TaskOutcome::from_catalog(wrapped.clone()),
            Ok(TaskOutcome::NoSuchTask(1))
        );
        assert_eq!(
            DatasetOutcome::from_catalog(wrapped.clone()),
            Err(Box::new(wrapped))
        );
    }
}
