//! Review comments: pinned to a point of an image in a task, threaded, resolvable.

use serde::{Deserialize, Serialize};

use crate::catalog::Role;
use crate::records::{next_id, scan};
use crate::{key, DomainError, Records, Sha256, Tx};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub task: u64,
    pub sha: Sha256,
    pub x: f64,
    pub y: f64,
    pub text: String,
    pub by: String,
    pub at_ms: u64,
    /// The comment this one answers (its thread's first comment).
    pub parent: Option<u64>,
    pub resolved_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CommentOp {
    /// `sha`, `x` and `y` are taken from the parent for replies.
    Add {
        task: u64,
        sha: Option<Sha256>,
        x: f64,
        y: f64,
        text: String,
        parent: Option<u64>,
        by: String,
        role: Role,
        at_ms: u64,
    },
    Resolve {
        id: u64,
        by: String,
        role: Role,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommentOutcome {
    Comment(Box<Comment>),
    NotFound(String),
    Forbidden(String),
    Invalid(String),
}

const NEXT_ID: &str = "comment-next-id";

fn comment_key(id: u64) -> Vec<u8> {
    key(&format!("comment/{id:016x}"))
}

fn get(r: &dyn Records, id: u64) -> Result<Option<Comment>, DomainError> {
    crate::records::get(r, &comment_key(id))
}

/// A task's comments, oldest first.
pub fn of_task(r: &dyn Records, task: u64) -> Result<Vec<Comment>, DomainError> {
    let mut out = Vec::new();
    for c in scan::<Comment>(r, &key("comment/"), None) {
        let c = c?;
        if c.task == task {
            out.push(c);
        }
    }
    Ok(out)
}

pub fn stage(tx: &mut Tx, op: &CommentOp) -> Result<CommentOutcome, DomainError> {
    match op {
        CommentOp::Add {
            task,
            sha,
            x,
            y,
            text,
            parent,
            by,
            role,
            at_ms,
        } => {
            let Some(t) = crate::tasks::task(tx, *task)? else {
                return Ok(CommentOutcome::NotFound(format!("no task {task}")));
            };
            let reviewer = crate::annotation_sets::reviews(tx, t.set_id, by, *role)?;
            if t.assignee.as_deref() != Some(by.as_str()) && !reviewer {
                return Ok(CommentOutcome::Forbidden(format!(
                    "task {task} is not yours to comment on"
                )));
            }
            let (sha, x, y) = match parent {
                Some(p) => match get(tx, *p)? {
                    Some(parent) if parent.task == *task && parent.parent.is_none() => {
                        (parent.sha, parent.x, parent.y)
                    }
                    _ => {
                        return Ok(CommentOutcome::Invalid(format!(
                            "parent: no thread {p} in task {task}"
                        )))
                    }
                },
                None => {
                    let Some(sha) = sha else {
                        return Ok(CommentOutcome::Invalid(
                            "sha256: required for a new thread".into(),
                        ));
                    };
                    if !t.images.contains(sha) {
                        return Ok(CommentOutcome::Invalid(format!(
                            "sha256: image {sha} is not in task {task}"
                        )));
                    }
                    let set = crate::annotation_sets::annotation_set(tx, t.set_id)?;
                    let image = match set {
                        Some(s) => crate::datasets::image(tx, s.dataset_id, sha)?,
                        None => None,
                    };
                    let (w, h) = image
                        .map(|i| (f64::from(i.width), f64::from(i.height)))
                        .unwrap_or((0.0, 0.0));
                    if !(0.0..=w).contains(x) || !(0.0..=h).contains(y) {
                        return Ok(CommentOutcome::Invalid(format!(
                            "x, y: ({x}, {y}) is outside the {w}x{h} image"
                        )));
                    }
                    (*sha, *x, *y)
                }
            };
            let id = next_id(tx, NEXT_ID)?;
            let comment = Comment {
                id,
                task: *task,
                sha,
                x,
                y,
                text: text.clone(),
                by: by.clone(),
                at_ms: *at_ms,
                parent: *parent,
                resolved_by: None,
            };
            tx.put_record(comment_key(id), &comment)?;
            Ok(CommentOutcome::Comment(Box::new(comment)))
        }
        CommentOp::Resolve { id, by, role } => {
            let Some(mut c) = get(tx, *id)? else {
                return Ok(CommentOutcome::NotFound(format!("no comment {id}")));
            };
            let set = crate::tasks::task(tx, c.task)?.map(|t| t.set_id);
            let reviewer = match set {
                Some(set) => crate::annotation_sets::reviews(tx, set, by, *role)?,
                None => *role >= Role::Manager,
            };
            if !reviewer {
                return Ok(CommentOutcome::Forbidden(
                    "resolving needs a reviewer of the task's annotation set".into(),
                ));
            }
            if c.parent.is_some() {
                return Ok(CommentOutcome::Invalid(format!(
                    "comment {id} is a reply; resolve its thread"
                )));
            }
            c.resolved_by = Some(by.clone());
            tx.put_record(comment_key(*id), &c)?;
            Ok(CommentOutcome::Comment(Box::new(c)))
        }
    }
}
