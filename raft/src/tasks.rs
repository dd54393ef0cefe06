//! Tasks: chunks of an annotation set's images given to annotators, and their review workflow.
//!
//! Every transition is decided by the state machine, so two users racing for the same pool task
//! or the same transition are ordered by the Raft log: exactly one wins, the other gets a
//! conflict naming the state it found.

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, Sha256, StorageError, Store};

use crate::catalog::Role;
use crate::placement::META_GROUP;
use crate::stats;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    New,
    InProgress,
    Submitted,
    InReview,
    Accepted,
    Rejected,
}

/// What a user asks of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Take a task from the pool.
    Claim,
    /// Begin (or resume after a rejection).
    Start,
    Submit,
    /// A reviewer takes a submitted task.
    Review,
    Accept,
    Reject,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub by: String,
    pub action: String,
    pub at_ms: u64,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub set_id: u64,
    /// Tasks made from the same chunk of images (overlap) share it; one user never holds two.
    pub chunk: u64,
    pub images: Vec<Sha256>,
    pub assignee: Option<String>,
    pub reviewer: Option<String>,
    pub state: TaskState,
    pub history: Vec<TaskEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskOp {
    /// Creates `overlap` tasks per chunk; with assignees, round-robin so that the copies of one
    /// chunk go to different people; without, into the pool.
    Split {
        set_id: u64,
        chunks: Vec<Vec<Sha256>>,
        overlap: u32,
        assignees: Vec<String>,
        by: String,
        at_ms: u64,
    },
    Act {
        id: u64,
        action: Action,
        user: String,
        role: Role,
        reason: Option<String>,
        at_ms: u64,
    },
    Reassign {
        id: u64,
        assignee: Option<String>,
        by: String,
        at_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutcome {
    Created(Vec<u64>),
    Task(Box<Task>),
    NoSuchTask(u64),
    Forbidden(String),
    Conflict(String),
}

const NEXT_ID: &str = "task-next-id";

fn task_key(id: u64) -> Vec<u8> {
    keys::named(META_GROUP, &format!("task/{id:016x}"))
}

pub fn task(store: &Store, id: u64) -> Result<Option<Task>, StorageError> {
    match store.get(Cf::Catalog, &task_key(id))? {
        Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
        None => Ok(None),
    }
}

/// Tasks matching `keep`, in id order after `after`.
pub fn tasks(
    store: &Store,
    after: Option<u64>,
    limit: usize,
    keep: impl Fn(&Task) -> bool,
) -> Result<Vec<Task>, StorageError> {
    let prefix = keys::named(META_GROUP, "task/");
    let mut upper = prefix.clone();
    if let Some(last) = upper.last_mut() {
        *last += 1;
    }
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(upper);
    let start = after.map(|a| task_key(a + 1)).unwrap_or(prefix);
    let iter = store.db().iterator_cf_opt(
        store.cf(Cf::Catalog),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    );
    let mut out = Vec::new();
    for item in iter {
        let (_, v) = item?;
        let t: Task = bincode::deserialize(&v)?;
        if keep(&t) {
            out.push(t);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

fn conflict(task: &Task, action: Action) -> TaskOutcome {
    TaskOutcome::Conflict(
        format!(
            "task {} is {:?}: cannot {:?} it",
            task.id, task.state, action
        )
        .to_lowercase(),
    )
}

/// Decides an action on a task; `Ok` carries the new state.
fn decide(
    task: &mut Task,
    action: Action,
    user: &str,
    role: Role,
    store: &Store,
) -> Result<Result<(), TaskOutcome>, StorageError> {
    let is_assignee = task.assignee.as_deref() == Some(user);
    let can_review = role >= Role::Reviewer;
    let outcome = match action {
        Action::Claim => {
            if task.assignee.is_some() || task.state != TaskState::New {
                return Ok(Err(TaskOutcome::Conflict(format!(
                    "task {} is not in the pool",
                    task.id
                ))));
            }
            let holds_chunk = !tasks(store, None, 1, |t| {
                t.set_id == task.set_id
                    && t.chunk == task.chunk
                    && t.assignee.as_deref() == Some(user)
            })?
            .is_empty();
            if holds_chunk {
                return Ok(Err(TaskOutcome::Conflict(
                    "you already hold a copy of these images".into(),
                )));
            }
            task.assignee = Some(user.to_string());
            Ok(())
        }
        Action::Start | Action::Submit if !is_assignee => Err(TaskOutcome::Forbidden(format!(
            "task {} is not assigned to you",
            task.id
        ))),
        Action::Start => match task.state {
            TaskState::New | TaskState::Rejected => {
                task.state = TaskState::InProgress;
                Ok(())
            }
            _ => Err(conflict(task, action)),
        },
        Action::Submit => match task.state {
            TaskState::InProgress => {
                task.state = TaskState::Submitted;
                Ok(())
            }
            _ => Err(conflict(task, action)),
        },
        Action::Review | Action::Accept | Action::Reject if !can_review => Err(
            TaskOutcome::Forbidden("reviewing needs the reviewer role or higher".into()),
        ),
        Action::Review => match task.state {
            TaskState::Submitted => {
                task.state = TaskState::InReview;
                task.reviewer = Some(user.to_string());
                Ok(())
            }
            _ => Err(conflict(task, action)),
        },
        Action::Accept | Action::Reject => match task.state {
            TaskState::InReview
                if task.reviewer.as_deref() == Some(user) || role >= Role::Manager =>
            {
                task.state = if action == Action::Accept {
                    TaskState::Accepted
                } else {
                    TaskState::Rejected
                };
                Ok(())
            }
            TaskState::InReview => Err(TaskOutcome::Forbidden(format!(
                "task {} is reviewed by someone else",
                task.id
            ))),
            _ => Err(conflict(task, action)),
        },
    };
    Ok(outcome)
}

pub fn stage(
    store: &Store,
    batch: &mut WriteBatch,
    op: &TaskOp,
) -> Result<TaskOutcome, StorageError> {
    let cf = store.cf(Cf::Catalog);
    let save = |batch: &mut WriteBatch, t: &Task| -> Result<(), StorageError> {
        batch.put_cf(cf, task_key(t.id), bincode::serialize(t)?);
        Ok(())
    };
    match op {
        TaskOp::Split {
            set_id,
            chunks,
            overlap,
            assignees,
            by,
            at_ms,
        } => {
            let mut next = match store.get(Cf::Catalog, &keys::named(META_GROUP, NEXT_ID))? {
                Some(raw) => bincode::deserialize(&raw)?,
                None => 1u64,
            };
            let first_chunk = next;
            let mut created = Vec::new();
            for (c, images) in chunks.iter().enumerate() {
                for k in 0..u64::from(*overlap) {
                    let slot = c as u64 * u64::from(*overlap) + k;
                    let assignee = (!assignees.is_empty())
                        .then(|| assignees[(slot % assignees.len() as u64) as usize].clone());
                    let event = TaskEvent {
                        by: by.clone(),
                        action: "created".into(),
                        at_ms: *at_ms,
                        reason: None,
                    };
                    let task = Task {
                        id: next,
                        set_id: *set_id,
                        chunk: first_chunk + c as u64,
                        images: images.clone(),
                        assignee,
                        reviewer: None,
                        state: TaskState::New,
                        history: vec![event],
                    };
                    save(batch, &task)?;
                    created.push(next);
                    next += 1;
                }
            }
            batch.put_cf(
                cf,
                keys::named(META_GROUP, NEXT_ID),
                bincode::serialize(&next)?,
            );
            stats::tasks_created(store, batch, *set_id, created.len() as u64)?;
            Ok(TaskOutcome::Created(created))
        }
        TaskOp::Act {
            id,
            action,
            user,
            role,
            reason,
            at_ms,
        } => {
            let Some(mut t) = task(store, *id)? else {
                return Ok(TaskOutcome::NoSuchTask(*id));
            };
            if *action == Action::Reject && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Ok(TaskOutcome::Conflict("a rejection needs a reason".into()));
            }
            let before = t.state;
            if let Err(refusal) = decide(&mut t, *action, user, *role, store)? {
                return Ok(refusal);
            }
            stats::task_moved(store, batch, t.set_id, before, t.state)?;
            let name = format!("{action:?}").to_lowercase();
            t.history.push(TaskEvent {
                by: user.clone(),
                action: name,
                at_ms: *at_ms,
                reason: reason.clone(),
            });
            save(batch, &t)?;
            Ok(TaskOutcome::Task(Box::new(t)))
        }
        TaskOp::Reassign {
            id,
            assignee,
            by,
            at_ms,
        } => {
            let Some(mut t) = task(store, *id)? else {
                return Ok(TaskOutcome::NoSuchTask(*id));
            };
            if matches!(t.state, TaskState::Accepted) {
                return Ok(TaskOutcome::Conflict(format!("task {id} is accepted")));
            }
            t.assignee = assignee.clone();
            let reason = Some(format!("to {}", assignee.as_deref().unwrap_or("the pool")));
            t.history.push(TaskEvent {
                by: by.clone(),
                action: "reassign".into(),
                at_ms: *at_ms,
                reason,
            });
            save(batch, &t)?;
            Ok(TaskOutcome::Task(Box::new(t)))
        }
    }
}
