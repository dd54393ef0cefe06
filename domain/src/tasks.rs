//! Tasks: chunks of an annotation set's images given to annotators, and their review workflow.
//!
//! Every transition is decided by the state machine, so two users racing for the same pool task
//! or the same transition are ordered by the Raft log: exactly one wins, the other gets a
//! conflict naming the state it found.

use serde::{Deserialize, Serialize};

use crate::catalog::Role;
use crate::records::get;
use crate::{key, stats, DomainError, Records, Sha256, Tx};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    New,
    InProgress,
    Submitted,
    InReview,
    Accepted,
    Rejected,
    /// Taken out of the workflow by a manager: nobody works on it any more, its saved
    /// annotations and history stay, and its images may be split into a new task.
    Archived,
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
    /// A manager takes the task out of the workflow (see [`TaskState::Archived`]).
    Archive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    key(&format!("task/{id:016x}"))
}

pub fn task(r: &dyn Records, id: u64) -> Result<Option<Task>, DomainError> {
    get(r, &task_key(id))
}

/// Which tasks a listing walks. Every variant but `All` is an index the state machine keeps
/// in the same batch as the task record (`task-by-*/…/<id>` keys with empty values), so lists,
/// "my tasks", the pool, the review queue and claim checks never scan every task.
#[derive(Clone, Debug)]
pub enum TaskIndex {
    All,
    Set(u64),
    Assignee(String),
    Pool,
    State(TaskState),
    Chunk(u64),
}

fn state_name(state: TaskState) -> String {
    format!("{state:?}").to_lowercase()
}

impl TaskIndex {
    fn prefix(&self) -> Vec<u8> {
        let name = match self {
            TaskIndex::All => "task/".to_string(),
            TaskIndex::Set(set) => format!("task-by-set/{set:016x}/"),
            TaskIndex::Assignee(user) => format!("task-by-user/{}/", hex::encode(user)),
            TaskIndex::Pool => "task-pool/".to_string(),
            TaskIndex::State(state) => format!("task-by-state/{}/", state_name(*state)),
            TaskIndex::Chunk(chunk) => format!("task-by-chunk/{chunk:016x}/"),
        };
        key(&name)
    }
}

/// The index entries of a task. An archived task is in nobody's list and not in the pool.
fn index_keys(t: &Task) -> Vec<Vec<u8>> {
    let holder = match &t.assignee {
        _ if t.state == TaskState::Archived => None,
        Some(user) => Some(TaskIndex::Assignee(user.clone())),
        None => Some(TaskIndex::Pool),
    };
    [
        Some(TaskIndex::Set(t.set_id)),
        holder,
        Some(TaskIndex::State(t.state)),
        Some(TaskIndex::Chunk(t.chunk)),
    ]
    .iter()
    .flatten()
    .map(|index| {
        let mut k = index.prefix();
        k.extend_from_slice(format!("{:016x}", t.id).as_bytes());
        k
    })
    .collect()
}

/// Stages a task record and moves its index entries from `before` to it.
fn save(tx: &mut Tx, before: Option<&Task>, t: &Task) -> Result<(), DomainError> {
    for k in before.map(index_keys).unwrap_or_default() {
        tx.delete(k);
    }
    for k in index_keys(t) {
        tx.put(k, Vec::new());
    }
    tx.put_record(task_key(t.id), t)?;
    Ok(())
}

const INDEXED: &str = "task-indexes-v1";

/// Stages the index entries of tasks recorded before indexes existed (once; nothing after).
/// Every replica derives the same entries from the same records, so replicas stay identical.
pub fn backfill_indexes(tx: &mut Tx) -> Result<(), DomainError> {
    let marker = key(INDEXED);
    if tx.get(&marker)?.is_some() {
        return Ok(());
    }
    for t in tasks(tx, TaskIndex::All, None, usize::MAX, |_| true)? {
        for k in index_keys(&t) {
            tx.put(k, Vec::new());
        }
    }
    tx.put(marker, Vec::new());
    Ok(())
}

/// Tasks of `index` matching `keep`, in id order after `after`.
pub fn tasks(
    r: &dyn Records,
    index: TaskIndex,
    after: Option<u64>,
    limit: usize,
    keep: impl Fn(&Task) -> bool,
) -> Result<Vec<Task>, DomainError> {
    let prefix = index.prefix();
    let mut start = prefix.clone();
    if let Some(a) = after {
        // No id comes after u64::MAX (a client's cursor, not necessarily one we handed out).
        let Some(next) = a.checked_add(1) else {
            return Ok(Vec::new());
        };
        start.extend_from_slice(format!("{next:016x}").as_bytes());
    }
    let iter = r.scan(&prefix, Some(&start));
    let mut out = Vec::new();
    for item in iter {
        let (k, v) = item?;
        let t: Task = match index {
            TaskIndex::All => bincode::deserialize(&v)?,
            _ => {
                let id = std::str::from_utf8(&k[prefix.len()..])
                    .ok()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| DomainError::Corrupt("task index key".into()))?;
                match task(r, id)? {
                    Some(t) => t,
                    None => continue,
                }
            }
        };
        if keep(&t) {
            out.push(t);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The images of annotation set `set_id` that a task holds (archived tasks hold none; a
/// honeypot is not held, it is lent to every task): a split takes only the others, so no image
/// is ever worked on in two tasks of one set unless a split asked for overlap.
pub fn tasked_images(
    r: &dyn Records,
    set_id: u64,
) -> Result<std::collections::HashSet<Sha256>, DomainError> {
    let mut held = std::collections::HashSet::new();
    for t in tasks(r, TaskIndex::Set(set_id), None, usize::MAX, |t| {
        t.state != TaskState::Archived
    })? {
        let lent = honeypots(r, t.id)?;
        held.extend(t.images.into_iter().filter(|s| !lent.contains(s)));
    }
    Ok(held)
}

fn honeypot_key(task: u64) -> Vec<u8> {
    key(&format!("task-honeypots/{task:016x}"))
}

/// The ground-truth images mixed into task `id` when it was made (empty for most tasks). Kept
/// beside the task record, never in it, so that nothing that shows a task to its annotator can
/// reveal them.
pub fn honeypots(r: &dyn Records, id: u64) -> Result<Vec<Sha256>, DomainError> {
    Ok(get(r, &honeypot_key(id))?.unwrap_or_default())
}

/// The most live copies of one chunk among the tasks of set `set_id` (its overlap; 0 without
/// tasks).
pub fn overlap(r: &dyn Records, set_id: u64) -> Result<u32, DomainError> {
    let mut copies: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    for t in tasks(r, TaskIndex::Set(set_id), None, usize::MAX, |t| {
        t.state != TaskState::Archived
    })? {
        *copies.entry(t.chunk).or_default() += 1;
    }
    Ok(copies.into_values().max().unwrap_or(0))
}

/// How many honeypots a task of `regular` images gets so that they are `fraction` of it: at
/// least one whenever the fraction is above 0 (small tasks would otherwise never get one), never
/// more than the references there are.
pub fn honeypot_count(regular: usize, fraction: f64, available: usize) -> usize {
    if fraction <= 0.0 || available == 0 || regular == 0 {
        return 0;
    }
    let wanted = (regular as f64 * fraction / (1.0 - fraction)).round() as usize;
    wanted.max(1).min(available)
}

/// Mixes `count` of `references` into `images` at positions that look like any other: both
/// the choice and the places come from hashing the chunk's id with each image, so every replica
/// makes the same task and neighbouring tasks get different honeypots.
fn mix_in(
    images: &mut Vec<Sha256>,
    references: &[Sha256],
    count: usize,
    chunk: u64,
) -> Vec<Sha256> {
    let draw = |sha: &Sha256, salt: &[u8]| {
        let mut bytes = chunk.to_be_bytes().to_vec();
        bytes.extend_from_slice(salt);
        bytes.extend_from_slice(&sha.0);
        Sha256::of(&bytes).prefix_u64()
    };
    let mut order: Vec<&Sha256> = references.iter().collect();
    order.sort_by_key(|s| draw(s, b"pick"));
    let chosen: Vec<Sha256> = order.into_iter().take(count).copied().collect();
    for sha in &chosen {
        let at = (draw(sha, b"place") % (images.len() as u64 + 1)) as usize;
        images.insert(at, *sha);
    }
    chosen
}

/// An action the task's state does not allow, with what to do next.
fn conflict(task: &Task, action: Action) -> TaskOutcome {
    let next = match (task.state, action) {
        (TaskState::Submitted, Action::Accept | Action::Reject) => {
            "; review it first (POST /api/v1/tasks/{id}/review), then accept or reject"
        }
        (TaskState::New | TaskState::Rejected, Action::Submit) => {
            "; start it first (POST /api/v1/tasks/{id}/start)"
        }
        (TaskState::New | TaskState::InProgress | TaskState::Rejected, Action::Review) => {
            "; its assignee submits it first"
        }
        (
            TaskState::New | TaskState::InProgress | TaskState::Rejected,
            Action::Accept | Action::Reject,
        ) => "; its assignee submits it, then a reviewer reviews it",
        (TaskState::InReview, Action::Review) => "; it is already in review",
        _ => "",
    };
    let head = format!(
        "task {} is {:?}: cannot {:?} it",
        task.id, task.state, action
    )
    .to_lowercase();
    TaskOutcome::Conflict(format!(
        "{head}{}",
        next.replace("{id}", &task.id.to_string())
    ))
}

/// Decides an action on a task; `Ok` carries the new state.
fn decide(
    task: &mut Task,
    action: Action,
    user: &str,
    role: Role,
    r: &dyn Records,
) -> Result<Result<(), TaskOutcome>, DomainError> {
    let is_assignee = task.assignee.as_deref() == Some(user);
    let can_review = matches!(action, Action::Review | Action::Accept | Action::Reject)
        && crate::annotation_sets::reviews(r, task.set_id, user, role)?;
    let outcome = match action {
        Action::Claim => {
            if task.assignee.is_some() || task.state != TaskState::New {
                return Ok(Err(TaskOutcome::Conflict(format!(
                    "task {} is not in the pool",
                    task.id
                ))));
            }
            let holds_chunk = !tasks(r, TaskIndex::Chunk(task.chunk), None, 1, |t| {
                t.assignee.as_deref() == Some(user)
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
        Action::Review | Action::Accept | Action::Reject if !can_review => {
            Err(TaskOutcome::Forbidden(format!(
                "reviewing needs the reviewer role and a place among the reviewers of annotation \
                 set {0} (managers review every set): a manager adds you with PATCH \
                 /api/v1/annotation-sets/{0} {{\"reviewers\": [\"{user}\", ...]}}",
                task.set_id
            )))
        }
        Action::Review => match task.state {
            TaskState::Submitted => {
                task.state = TaskState::InReview;
                task.reviewer = Some(user.to_string());
                Ok(())
            }
            _ => Err(conflict(task, action)),
        },
        Action::Archive if role < Role::Manager => Err(TaskOutcome::Forbidden(
            "archiving a task needs the manager role".into(),
        )),
        Action::Archive => match task.state {
            TaskState::Archived => Err(conflict(task, action)),
            _ => {
                task.state = TaskState::Archived;
                Ok(())
            }
        },
        Action::Accept | Action::Reject => match task.state {
            TaskState::InReview
                if task.reviewer.as_deref() == Some(user) || role >= Role::Manager =>
            {
                task.state = match action {
                    Action::Accept => TaskState::Accepted,
                    // A rejected pool task goes back to the pool for anyone to redo.
                    _ if task.assignee.is_none() => TaskState::New,
                    _ => TaskState::Rejected,
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

pub fn stage(tx: &mut Tx, op: &TaskOp) -> Result<TaskOutcome, DomainError> {
    match op {
        TaskOp::Split {
            set_id,
            chunks,
            overlap,
            assignees,
            by,
            at_ms,
        } => {
            // Decided here, in log order, not by the caller's earlier read: of two splits racing
            // for the same images exactly one gets them.
            let held = tasked_images(tx, *set_id)?;
            let taken = chunks.iter().flatten().filter(|s| held.contains(s)).count();
            if taken > 0 {
                return Ok(TaskOutcome::Conflict(format!(
                    "{taken} of these images already have a task in annotation set {set_id}: \
                     split again to take only the others"
                )));
            }
            let policy = crate::annotation_sets::annotation_set(tx, *set_id)?
                .map(|s| s.quality)
                .unwrap_or_default();
            if let Some(q) = policy.quorum.filter(|&q| *overlap >= 2 && q > *overlap) {
                return Ok(TaskOutcome::Conflict(format!(
                    "the set's consensus quorum is {q} annotators, more than this split's overlap \
                     of {overlap}: split with an overlap of at least {q} or lower the quorum"
                )));
            }
            // With honeypots on, ground-truth images are lent to every task instead of being
            // split like the others.
            let references = if policy.honeypot_fraction > 0.0 {
                crate::ground_truth::images(tx, *set_id)?
            } else {
                Vec::new()
            };
            let chunks: Vec<Vec<Sha256>> = chunks
                .iter()
                .map(|c| {
                    c.iter()
                        .filter(|s| !references.contains(s))
                        .copied()
                        .collect()
                })
                .filter(|c: &Vec<Sha256>| !c.is_empty())
                .collect();
            let mut next = get::<u64>(tx, &key(NEXT_ID))?.unwrap_or(1);
            let first_chunk = next;
            let mut created = Vec::new();
            for (c, regular) in chunks.iter().enumerate() {
                let chunk = first_chunk + c as u64;
                let mut images = regular.clone();
                let count =
                    honeypot_count(regular.len(), policy.honeypot_fraction, references.len());
                let lent = mix_in(&mut images, &references, count, chunk);
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
                        chunk,
                        images: images.clone(),
                        assignee,
                        reviewer: None,
                        state: TaskState::New,
                        history: vec![event],
                    };
                    save(tx, None, &task)?;
                    if !lent.is_empty() {
                        tx.put_record(honeypot_key(next), &lent)?;
                    }
                    created.push(next);
                    next += 1;
                }
            }
            tx.put_record(key(NEXT_ID), &next)?;
            stats::tasks_created(tx, *set_id, created.len() as u64)?;
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
            let Some(mut t) = task(tx, *id)? else {
                return Ok(TaskOutcome::NoSuchTask(*id));
            };
            if *action == Action::Reject && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Ok(TaskOutcome::Conflict("a rejection needs a reason".into()));
            }
            let before = t.clone();
            if let Err(refusal) = decide(&mut t, *action, user, *role, tx)? {
                return Ok(refusal);
            }
            stats::task_moved(tx, t.set_id, before.state, t.state)?;
            let name = format!("{action:?}").to_lowercase();
            t.history.push(TaskEvent {
                by: user.clone(),
                action: name,
                at_ms: *at_ms,
                reason: reason.clone(),
            });
            save(tx, Some(&before), &t)?;
            // A submitted task's images count as its final word (an image left empty says
            // "nothing here"); an archived task leaves its chunk's consensus.
            if matches!(t.state, TaskState::Submitted | TaskState::Archived) {
                crate::image_quality::mark_task(tx, &t)?;
            }
            let event = match action {
                Action::Submit => Some(crate::webhooks::Event::TaskSubmitted),
                Action::Accept => Some(crate::webhooks::Event::TaskAccepted),
                Action::Reject => Some(crate::webhooks::Event::TaskRejected),
                _ => None,
            };
            if let Some(event) = event {
                let data = serde_json::json!({
                    "task": t.id,
                    "annotation_set": t.set_id,
                    "state": t.state,
                    "assignee": t.assignee,
                    "by": user,
                    "reason": reason,
                    "at_ms": at_ms,
                });
                crate::webhooks::stage_event(tx, Some(t.set_id), event, &data, *at_ms)?;
            }
            Ok(TaskOutcome::Task(Box::new(t)))
        }
        TaskOp::Reassign {
            id,
            assignee,
            by,
            at_ms,
        } => {
            let Some(mut t) = task(tx, *id)? else {
                return Ok(TaskOutcome::NoSuchTask(*id));
            };
            if matches!(t.state, TaskState::Accepted | TaskState::Archived) {
                let state = state_name(t.state);
                return Ok(TaskOutcome::Conflict(format!("task {id} is {state}")));
            }
            let before = t.clone();
            t.assignee = assignee.clone();
            // Work nobody holds goes back to the pool's start, or nobody could ever take it
            // (claims take new tasks; only an assignee starts or submits).
            if t.assignee.is_none()
                && matches!(t.state, TaskState::InProgress | TaskState::Rejected)
            {
                t.state = TaskState::New;
            }
            stats::task_moved(tx, t.set_id, before.state, t.state)?;
            let reason = Some(format!("to {}", assignee.as_deref().unwrap_or("the pool")));
            t.history.push(TaskEvent {
                by: by.clone(),
                action: "reassign".into(),
                at_ms: *at_ms,
                reason,
            });
            save(tx, Some(&before), &t)?;
            Ok(TaskOutcome::Task(Box::new(t)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MemRecords;

    fn apply(store: &mut MemRecords, op: TaskOp) -> TaskOutcome {
        let mut tx = Tx::new(store);
        let outcome = stage(&mut tx, &op).expect("stage");
        let writes = tx.into_writes();
        store.commit(writes);
        outcome
    }

    fn ids(r: &dyn Records, index: TaskIndex) -> Vec<u64> {
        tasks(r, index, None, 100, |_| true)
            .expect("list")
            .iter()
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn indexes_follow_every_change_and_backfill_old_records() {
        let mut store = MemRecords::default();
        let split = TaskOp::Split {
            set_id: 7,
            chunks: vec![vec![Sha256([1; 32])], vec![Sha256([2; 32])]],
            overlap: 1,
            assignees: vec!["ann".into()],
            by: "mgr".into(),
            at_ms: 0,
        };
        assert_eq!(apply(&mut store, split), TaskOutcome::Created(vec![1, 2]));
        assert_eq!(ids(&store, TaskIndex::Set(7)), vec![1, 2]);
        assert_eq!(ids(&store, TaskIndex::Assignee("ann".into())), vec![1, 2]);
        let act = |id, action| TaskOp::Act {
            id,
            action,
            user: "ann".into(),
            role: Role::Annotator,
            reason: None,
            at_ms: 1,
        };
        apply(&mut store, act(1, Action::Start));
        apply(&mut store, act(1, Action::Submit));
        assert_eq!(ids(&store, TaskIndex::State(TaskState::Submitted)), vec![1]);
        assert_eq!(ids(&store, TaskIndex::State(TaskState::New)), vec![2]);
        let to_pool = TaskOp::Reassign {
            id: 2,
            assignee: None,
            by: "mgr".into(),
            at_ms: 2,
        };
        apply(&mut store, to_pool);
        assert_eq!(ids(&store, TaskIndex::Pool), vec![2]);
        assert_eq!(ids(&store, TaskIndex::Assignee("ann".into())), vec![1]);
        assert_eq!(
            tasks(&store, TaskIndex::Set(7), Some(1), 10, |_| true).expect("page")[0].id,
            2
        );
        // A cursor past every id (not one the API handed out) is an empty page, not an overflow.
        for index in [TaskIndex::All, TaskIndex::Set(7), TaskIndex::Pool] {
            let page = tasks(&store, index, Some(u64::MAX), 10, |_| true).expect("page");
            assert!(page.is_empty());
        }

        // A record from before the indexes: found once backfilled.
        let old = Task {
            id: 9,
            set_id: 8,
            chunk: 9,
            images: Vec::new(),
            assignee: Some("bob".into()),
            reviewer: None,
            state: TaskState::New,
            history: Vec::new(),
        };
        store
            .0
            .insert(task_key(9), bincode::serialize(&old).expect("encode"));
        assert!(ids(&store, TaskIndex::Set(8)).is_empty());
        let mut tx = Tx::new(&store);
        backfill_indexes(&mut tx).expect("backfill");
        let writes = tx.into_writes();
        store.commit(writes);
        assert_eq!(ids(&store, TaskIndex::Set(8)), vec![9]);
        assert_eq!(ids(&store, TaskIndex::Assignee("bob".into())), vec![9]);
    }

    #[test]
    fn a_split_takes_only_images_without_a_task_and_archiving_releases_them() {
        let mut store = MemRecords::default();
        let img = |n: u8| Sha256([n; 32]);
        let split = |set_id, chunks: Vec<Vec<Sha256>>| TaskOp::Split {
            set_id,
            chunks,
            overlap: 1,
            assignees: Vec::new(),
            by: "mgr".into(),
            at_ms: 0,
        };
        let act = |id, action, user: &str, role| TaskOp::Act {
            id,
            action,
            user: user.into(),
            role,
            reason: None,
            at_ms: 1,
        };
        let created = apply(&mut store, split(7, vec![vec![img(1), img(2)]]));
        assert_eq!(created, TaskOutcome::Created(vec![1]));
        let held = tasked_images(&store, 7).expect("held");
        assert_eq!(held, [img(1), img(2)].into_iter().collect());

        // One image already tasked: the whole split is refused and creates nothing.
        let again = apply(&mut store, split(7, vec![vec![img(2)], vec![img(3)]]));
        let TaskOutcome::Conflict(message) = again else {
            panic!("a split over a tasked image: {again:?}");
        };
        assert!(message.contains("1 of these images"), "{message}");
        assert_eq!(ids(&store, TaskIndex::Set(7)), vec![1]);
        // Other sets are not concerned; new images are taken.
        let other = apply(&mut store, split(8, vec![vec![img(1)]]));
        assert_eq!(other, TaskOutcome::Created(vec![2]));
        let new = apply(&mut store, split(7, vec![vec![img(3)]]));
        assert_eq!(new, TaskOutcome::Created(vec![3]));

        // Only managers archive; an archived task leaves the pool and frees its images.
        let refused = apply(&mut store, act(1, Action::Archive, "ann", Role::Annotator));
        assert!(matches!(refused, TaskOutcome::Forbidden(_)), "{refused:?}");
        let archived = apply(&mut store, act(1, Action::Archive, "mgr", Role::Manager));
        let TaskOutcome::Task(t) = archived else {
            panic!("archive: {archived:?}");
        };
        assert_eq!(t.state, TaskState::Archived);
        assert_eq!(
            t.images,
            vec![img(1), img(2)],
            "an archived task keeps its images"
        );
        assert_eq!(ids(&store, TaskIndex::Pool), vec![2, 3]);
        assert_eq!(ids(&store, TaskIndex::State(TaskState::Archived)), vec![1]);
        assert_eq!(
            tasked_images(&store, 7).expect("held"),
            [img(3)].into_iter().collect()
        );
        let resplit = apply(&mut store, split(7, vec![vec![img(1), img(2)]]));
        assert_eq!(resplit, TaskOutcome::Created(vec![4]));

        // Nothing more happens to an archived task.
        let twice = apply(&mut store, act(1, Action::Archive, "mgr", Role::Manager));
        assert!(matches!(twice, TaskOutcome::Conflict(_)), "{twice:?}");
        let claim = apply(&mut store, act(1, Action::Claim, "ann", Role::Annotator));
        assert!(matches!(claim, TaskOutcome::Conflict(_)), "{claim:?}");
        let reassign = TaskOp::Reassign {
            id: 1,
            assignee: Some("ann".into()),
            by: "mgr".into(),
            at_ms: 2,
        };
        let reassigned = apply(&mut store, reassign);
        assert!(
            matches!(reassigned, TaskOutcome::Conflict(_)),
            "{reassigned:?}"
        );
    }
}
