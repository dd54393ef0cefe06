//! The catalogue's records: users, sessions, token revocations and the cluster key, replicated
//! by group 0.
//!
//! Every change is a [`CatalogOp`] proposed with a request id; applying the same id twice
//! returns the first outcome without changing anything, so a retried request never applies
//! twice. Each node keeps the records it needs on hot paths (users, revoked token and session
//! ids, the key) in a [`Directory`] in memory, updated as the catalogue applies.

use serde::{Deserialize, Serialize};

use crate::annotation_sets::{self, AnnotationSetOp, AnnotationSetOutcome};
use crate::annotations::{self, Import, ImportOutcome, Save, SaveOutcome};
use crate::comments::{self, CommentOp, CommentOutcome};
use crate::datasets::{self, DatasetOp, DatasetOutcome};
use crate::jobs::{self, JobOp, JobOutcome};
use crate::quality_op::{self, QualityOp, QualityOutcome};
use crate::requests;
use crate::sessions::{self, Refreshed, Session};
use crate::tasks::{self, Task, TaskOp, TaskOutcome};
use crate::webhooks::{self, WebhookOp, WebhookOutcome};
use crate::{key, DomainError, Records, Tx};

/// What a user may do. See docs/architecture.md for the rules per route.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Annotator,
    Reviewer,
    Manager,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "reviewer" => Some(Role::Reviewer),
            "annotator" => Some(Role::Annotator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Reviewer => "reviewer",
            Role::Annotator => "annotator",
        }
    }
}

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: u64,
    /// Bumped whenever the password, role or status changes: tokens carry the epoch they were
    /// issued under and are refused once it moved on.
    pub epoch: u64,
}

/// A user with the id the catalogue gave them when they were created.
///
/// The id is never reused: a user deleted and created again under the same name gets a new one.
/// Tokens carry it, so a token can never act as a later user of the same name. (The id is kept
/// beside the [`User`] record, whose layout is fixed by logs written before ids existed; users
/// from then have id 0 until the catalogue leader assigns theirs with [`CatalogOp::AssignUserIds`].)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    pub user: User,
}

/// Everything a token check needs, read under one lock (token checks run on every request).
#[derive(Clone, Copy, Debug)]
pub struct TokenFacts {
    pub token_revoked: bool,
    pub session_revoked: bool,
    /// The user holding the token's user name, if any.
    pub user: Option<Standing>,
    /// The id the next created user will get.
    pub next_user_id: u64,
    /// Whether the view was confirmed current less than [`VIEW_LEASE`](crate::directory::VIEW_LEASE) ago.
    pub current: bool,
}

/// What a token check needs to know of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub id: u64,
    pub role: Role,
    pub epoch: u64,
    pub disabled: bool,
}

impl Account {
    pub(crate) fn standing(&self) -> Standing {
        Standing {
            id: self.id,
            role: self.user.role,
            epoch: self.user.epoch,
            disabled: self.user.disabled,
        }
    }
}

/// A change to the catalogue. The Raft log stores these with bincode, which numbers variants
/// by position: new variants go at the end, or logs written before would decode wrongly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CatalogOp {
    /// Sets the cluster's signing key unless one exists (first start).
    InitClusterKey {
        key: [u8; 32],
    },
    CreateUser(User),
    UpdateUser {
        username: String,
        password_hash: Option<String>,
        role: Option<Role>,
        disabled: Option<bool>,
    },
    DeleteUser {
        username: String,
    },
    /// Refuses a token from now on; remembered until it would have expired anyway.
    RevokeToken {
        id: [u8; 16],
        expires_ms: u64,
    },
    Dataset(DatasetOp),
    AnnotationSet(AnnotationSetOp),
    Task(TaskOp),
    SaveAnnotation(Save),
    Comment(CommentOp),
    Job(JobOp),
    ImportAnnotations(Import),
    /// Forgets revocations of tokens that expired before `before_ms` (they are refused as
    /// expired anyway). Proposed now and then by the catalogue leader with its clock.
    PruneRevoked {
        before_ms: u64,
    },
    /// Gives every user created before user ids existed an id, in name order.
    AssignUserIds,
    /// Opens a session (sign-in or API token) for its user, if the user still has the id and
    /// epoch the session names.
    OpenSession(Session),
    /// A refresh grant presenting refresh token number `seq` of session `id`.
    RefreshSession {
        id: [u8; 16],
        seq: u32,
        now_ms: u64,
        expires_ms: u64,
    },
    /// Ends one session; with `user_id`, only if it is that user's.
    RevokeSession {
        id: [u8; 16],
        user_id: Option<u64>,
        at_ms: u64,
        reason: String,
    },
    /// Ends every session of a user but `except`.
    RevokeUserSessions {
        user_id: u64,
        except: Option<[u8; 16]>,
        at_ms: u64,
        reason: String,
    },
    /// A user's own password change: sets the hash and ends every other session of theirs
    /// (the session making the change stays signed in; an admin's reset is `UpdateUser`).
    SetOwnPassword {
        user_id: u64,
        username: String,
        password_hash: String,
        keep_session: [u8; 16],
        at_ms: u64,
    },
    /// Forgets the outcomes of requests made before `before_ms` (see [`crate::requests`]).
    /// Proposed now and then by the catalogue leader with its clock.
    PruneRequests {
        before_ms: u64,
    },
    /// Ground truth and image quality records (`crate::quality_op`).
    Quality(crate::quality_op::QualityOp),
    /// Webhooks and their deliveries (`crate::webhooks`).
    Webhook(crate::webhooks::WebhookOp),
}

/// A [`CatalogOp`] as logs show it: its kind and the names it concerns, never password hashes,
/// session secrets or shapes.
pub struct Summary<'a>(&'a CatalogOp);

impl CatalogOp {
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            CatalogOp::InitClusterKey { .. } => f.write_str("InitClusterKey"),
            CatalogOp::CreateUser(u) => write!(f, "CreateUser {}", u.username),
            CatalogOp::UpdateUser { username, .. } => write!(f, "UpdateUser {username}"),
            CatalogOp::DeleteUser { username } => write!(f, "DeleteUser {username}"),
            CatalogOp::RevokeToken { .. } => f.write_str("RevokeToken"),
            CatalogOp::PruneRevoked { before_ms } => write!(f, "PruneRevoked before {before_ms}"),
            CatalogOp::Dataset(op) => write!(f, "{op:?}"),
            CatalogOp::AnnotationSet(op) => write!(f, "{op:?}"),
            CatalogOp::Task(TaskOp::Split { set_id, chunks, .. }) => {
                write!(f, "Split {set_id}: {} chunks", chunks.len())
            }
            CatalogOp::Task(op) => write!(f, "{op:?}"),
            CatalogOp::Comment(op) => write!(f, "{op:?}"),
            CatalogOp::Job(op) => write!(f, "{op:?}"),
            CatalogOp::ImportAnnotations(i) => write!(
                f,
                "ImportAnnotations set {}: {} images",
                i.set,
                i.images.len()
            ),
            // Shapes can be large: name the image only.
            CatalogOp::SaveAnnotation(s) => write!(f, "SaveAnnotation task {} {}", s.task, s.sha),
            CatalogOp::AssignUserIds => f.write_str("AssignUserIds"),
            // Sessions name users and clients: the kind and user only.
            CatalogOp::OpenSession(s) => write!(f, "OpenSession {}", s.username),
            CatalogOp::RefreshSession { .. } => f.write_str("RefreshSession"),
            CatalogOp::RevokeSession { .. } => f.write_str("RevokeSession"),
            CatalogOp::RevokeUserSessions { user_id, .. } => {
                write!(f, "RevokeUserSessions user {user_id}")
            }
            CatalogOp::SetOwnPassword { username, .. } => write!(f, "SetOwnPassword {username}"),
            CatalogOp::PruneRequests { before_ms } => write!(f, "PruneRequests before {before_ms}"),
            // Shapes can be large: the kind and set only.
            CatalogOp::Quality(op) => match op {
                QualityOp::SetGroundTruth { set, .. } => write!(f, "SetGroundTruth set {set}"),
                QualityOp::ClearGroundTruth { set, sha } => {
                    write!(f, "ClearGroundTruth set {set} {sha}")
                }
                QualityOp::Record { records, .. } => {
                    write!(f, "RecordQuality {} images", records.len())
                }
                QualityOp::PinConsensus { set, sha, pin, .. } => {
                    write!(f, "PinConsensus set {set} {sha} {}", pin.is_some())
                }
            },
            // Webhook secrets stay out of logs.
            CatalogOp::Webhook(op) => match op {
                WebhookOp::Create { set, .. } => write!(f, "CreateWebhook set {set:?}"),
                WebhookOp::Delete { id } => write!(f, "DeleteWebhook {id}"),
                WebhookOp::Claim { id, seq, node, .. } => {
                    write!(f, "ClaimDelivery {id}/{seq} node {node}")
                }
                WebhookOp::Attempted {
                    id, seq, status, ..
                } => {
                    write!(f, "DeliveryAttempted {id}/{seq} {status:?}")
                }
                WebhookOp::FlushBatches { .. } => f.write_str("FlushBatches"),
            },
        }
    }
}

/// The result of a [`CatalogOp`]. Kept in request records and sent between nodes with bincode:
/// new variants go at the end (the `encoding` tests hold the order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CatalogOutcome {
    Done,
    User(User),
    /// The key in force (the new one, or the one that already existed).
    Key([u8; 32]),
    Conflict(String),
    NotFound(String),
    Dataset(DatasetOutcome),
    AnnotationSet(AnnotationSetOutcome),
    Task(TaskOutcome),
    Annotation(SaveOutcome),
    Comment(CommentOutcome),
    Job(JobOutcome),
    Imported(ImportOutcome),
    /// A user created or changed.
    Account(Account),
    /// Ids given by `AssignUserIds`.
    UserIds(Vec<(String, u64)>),
    Session(Session),
    Refreshed(Refreshed),
    /// The sessions an op ended.
    SessionsEnded(Vec<Session>),
    PasswordSet {
        account: Account,
        ended: Vec<Session>,
    },
    /// How many request records a `PruneRequests` dropped.
    Forgotten(u64),
    Quality(QualityOutcome),
    Webhook(WebhookOutcome),
}

pub(crate) const KEY: &str = "cluster_key";
pub(crate) const NEXT_USER_ID: &str = "next-user-id";

fn user_key(name: &str) -> Vec<u8> {
    key(&format!("user/{name}"))
}

fn user_id_key(name: &str) -> Vec<u8> {
    key(&format!("user-id/{name}"))
}

fn read_u64(r: &dyn Records, key: &[u8]) -> Result<Option<u64>, DomainError> {
    match r.get(key)? {
        Some(raw) => {
            let raw: [u8; 8] = raw
                .try_into()
                .map_err(|_| DomainError::Corrupt("a u64 catalogue record".into()))?;
            Ok(Some(u64::from_be_bytes(raw)))
        }
        None => Ok(None),
    }
}

/// The user named `name` with their id (0 for users from before ids, not yet assigned).
fn read_account(r: &dyn Records, name: &str) -> Result<Option<Account>, DomainError> {
    let Some(raw) = r.get(&user_key(name))? else {
        return Ok(None);
    };
    let user: User = bincode::deserialize(&raw)?;
    let id = read_u64(r, &user_id_key(name))?.unwrap_or(0);
    Ok(Some(Account { id, user }))
}

/// Takes the next user id (ids start at 1; 0 marks a user from before ids). Stored big-endian,
/// unlike the other counters, since user ids came later and are read by the directory.
fn stage_next_user_id(tx: &mut Tx) -> Result<u64, DomainError> {
    let key = key(NEXT_USER_ID);
    let id = read_u64(tx, &key)?.unwrap_or(1);
    tx.put(key, id.saturating_add(1).to_be_bytes().to_vec());
    Ok(id)
}

fn revoked_key(id: &[u8; 16]) -> Vec<u8> {
    key(&format!("revoked/{}", hex::encode(id)))
}

/// A big-endian u64 record: a revocation's expiry, a user id (0, pruned first or "no id", if
/// unreadable).
pub(crate) fn be_u64(raw: &[u8]) -> u64 {
    raw.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Stages `op` in `tx` and returns its outcome; the same `request_id` staged again (within
/// [`requests::RETENTION_MS`]) returns the first outcome and changes nothing. `at_ms` is the
/// proposer's clock when it proposed the op (`None` in log entries from before it was sent).
pub fn stage(
    tx: &mut Tx,
    request_id: &[u8; 16],
    at_ms: Option<u64>,
    op: &CatalogOp,
) -> Result<CatalogOutcome, DomainError> {
    if let Some(first) = requests::first_outcome(tx, request_id)? {
        return retried(tx, first);
    }
    let outcome = match op {
        CatalogOp::InitClusterKey { key: new } => match tx.get(&key(KEY))? {
            Some(existing) => CatalogOutcome::Key(
                existing
                    .try_into()
                    .map_err(|_| DomainError::Corrupt("cluster key".into()))?,
            ),
            None => {
                tx.put(key(KEY), new.to_vec());
                CatalogOutcome::Key(*new)
            }
        },
        CatalogOp::CreateUser(user) => match read_account(tx, &user.username)? {
            Some(_) => CatalogOutcome::Conflict(format!("user {} exists", user.username)),
            None => {
                let id = stage_next_user_id(tx)?;
                tx.put_record(user_key(&user.username), user)?;
                tx.put(user_id_key(&user.username), id.to_be_bytes().to_vec());
                CatalogOutcome::Account(Account {
                    id,
                    user: user.clone(),
                })
            }
        },
        CatalogOp::UpdateUser {
            username,
            password_hash,
            role,
            disabled,
        } => match read_account(tx, username)? {
            None => CatalogOutcome::NotFound(format!("no user {username}")),
            Some(mut account) => {
                let user = &mut account.user;
                let before = user.clone();
                if let Some(hash) = password_hash {
                    user.password_hash = hash.clone();
                }
                user.role = role.unwrap_or(user.role);
                user.disabled = disabled.unwrap_or(user.disabled);
                if *user != before {
                    user.epoch += 1;
                }
                tx.put_record(user_key(username), &user)?;
                CatalogOutcome::Account(account)
            }
        },
        CatalogOp::DeleteUser { username } => match read_account(tx, username)? {
            None => CatalogOutcome::NotFound(format!("no user {username}")),
            Some(account) => {
                tx.delete(user_key(username));
                tx.delete(user_id_key(username));
                sessions::stage_delete_all(tx, account.id)?;
                CatalogOutcome::Done
            }
        },
        CatalogOp::RevokeToken { id, expires_ms } => {
            tx.put(revoked_key(id), expires_ms.to_be_bytes().to_vec());
            CatalogOutcome::Done
        }
        CatalogOp::PruneRevoked { before_ms } => {
            let expired: Vec<Vec<u8>> = tx
                .scan(&key("revoked/"), None)
                .filter(|item| !matches!(item, Ok((_, v)) if be_u64(v) >= *before_ms))
                .map(|item| item.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            for k in expired {
                tx.delete(k);
            }
            sessions::stage_prune(tx, *before_ms)?;
            CatalogOutcome::Done
        }
        CatalogOp::AssignUserIds => CatalogOutcome::UserIds(stage_assign_ids(tx)?),
        CatalogOp::PruneRequests { before_ms } => {
            CatalogOutcome::Forgotten(requests::prune(tx, *before_ms)?)
        }
        CatalogOp::Quality(op) => CatalogOutcome::Quality(quality_op::stage(tx, op)?),
        CatalogOp::Webhook(op) => CatalogOutcome::Webhook(webhooks::stage(tx, op)?),
        CatalogOp::OpenSession(session) => {
            let current = read_account(tx, &session.username)?;
            match current {
                Some(a)
                    if a.id == session.user_id
                        && a.user.epoch == session.epoch
                        && !a.user.disabled =>
                {
                    sessions::stage_open(tx, session)?;
                    CatalogOutcome::Session(session.clone())
                }
                _ => CatalogOutcome::Conflict(format!(
                    "user {} changed while signing in; sign in again",
                    session.username
                )),
            }
        }
        CatalogOp::RefreshSession {
            id,
            seq,
            now_ms,
            expires_ms,
        } => {
            let user = match sessions::read(tx, id)? {
                Some(s) => {
                    read_account(tx, &s.username)?.map(|a| (a.id, a.user.epoch, a.user.disabled))
                }
                None => None,
            };
            CatalogOutcome::Refreshed(sessions::stage_refresh(
                tx,
                id,
                *seq,
                user,
                *now_ms,
                *expires_ms,
            )?)
        }
        CatalogOp::RevokeSession {
            id,
            user_id,
            at_ms,
            reason,
        } => match sessions::stage_revoke_one(tx, id, *user_id, *at_ms, reason)? {
            Some(session) => CatalogOutcome::SessionsEnded(vec![session]),
            None => CatalogOutcome::NotFound("no such session".into()),
        },
        CatalogOp::RevokeUserSessions {
            user_id,
            except,
            at_ms,
            reason,
        } => CatalogOutcome::SessionsEnded(sessions::stage_revoke_all(
            tx,
            *user_id,
            except.as_ref(),
            *at_ms,
            reason,
        )?),
        CatalogOp::SetOwnPassword {
            user_id,
            username,
            password_hash,
            keep_session,
            at_ms,
        } => match read_account(tx, username)? {
            Some(mut account) if account.id == *user_id => {
                account.user.password_hash = password_hash.clone();
                tx.put_record(user_key(username), &account.user)?;
                let ended = sessions::stage_revoke_all(
                    tx,
                    *user_id,
                    Some(keep_session),
                    *at_ms,
                    "the password was changed",
                )?;
                CatalogOutcome::PasswordSet { account, ended }
            }
            _ => CatalogOutcome::NotFound(format!("no user {username}")),
        },
        CatalogOp::Dataset(op) => CatalogOutcome::Dataset(datasets::stage(tx, op)?),
        CatalogOp::AnnotationSet(op) => {
            CatalogOutcome::AnnotationSet(annotation_sets::stage(tx, op)?)
        }
        CatalogOp::Task(op) => CatalogOutcome::Task(tasks::stage(tx, op)?),
        CatalogOp::SaveAnnotation(save) => {
            CatalogOutcome::Annotation(annotations::stage(tx, save)?)
        }
        CatalogOp::Comment(op) => CatalogOutcome::Comment(comments::stage(tx, op)?),
        CatalogOp::Job(op) => CatalogOutcome::Job(jobs::stage(tx, op)?),
        CatalogOp::ImportAnnotations(import) => {
            CatalogOutcome::Imported(annotations::stage_import(tx, import)?)
        }
    };
    if requests::remembers(op) {
        let compact = remembered(&outcome);
        requests::remember(tx, request_id, at_ms, compact.as_ref().unwrap_or(&outcome))?;
    }
    Ok(outcome)
}

/// What the request memory keeps of an outcome that can be large, if it keeps less than the
/// whole: a task without its images and history. Those grow with the task (a history entry per
/// claim, release and review), and the memory holds a day of outcomes; whole tasks made a chaos
/// campaign's catalogue 96 MB of request records after six minutes, which every node catching
/// up by snapshot had to receive and install.
fn remembered(outcome: &CatalogOutcome) -> Option<CatalogOutcome> {
    match outcome {
        CatalogOutcome::Task(TaskOutcome::Task(task)) => {
            Some(CatalogOutcome::Task(TaskOutcome::Task(Box::new(Task {
                images: Vec::new(),
                history: Vec::new(),
                ..(**task).clone()
            }))))
        }
        _ => None,
    }
}

/// The answer to a retried request from what [`remembered`] kept: a task is read again (as
/// it is now: the first outcome's task plus whatever happened to it since), or answered as
/// kept if it is gone.
fn retried(tx: &Tx, first: CatalogOutcome) -> Result<CatalogOutcome, DomainError> {
    if let CatalogOutcome::Task(TaskOutcome::Task(kept)) = &first {
        if let Some(now) = tasks::task(tx, kept.id)? {
            return Ok(CatalogOutcome::Task(TaskOutcome::Task(Box::new(now))));
        }
    }
    Ok(first)
}

/// Gives an id to every user that has none, in name order; returns the ids given.
fn stage_assign_ids(tx: &mut Tx) -> Result<Vec<(String, u64)>, DomainError> {
    let prefix = key("user/");
    let mut names = Vec::new();
    for item in tx.scan(&prefix, None) {
        let (k, _) = item?;
        names.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
    }
    let mut without = Vec::new();
    for name in names {
        if read_u64(tx, &user_id_key(&name))?.is_none() {
            without.push(name);
        }
    }
    let names = without;
    let key = key(NEXT_USER_ID);
    let mut next = read_u64(tx, &key)?.unwrap_or(1);
    let mut given = Vec::with_capacity(names.len());
    for name in names {
        tx.put(user_id_key(&name), next.to_be_bytes().to_vec());
        given.push((name, next));
        next = next.saturating_add(1);
    }
    tx.put(key, next.to_be_bytes().to_vec());
    Ok(given)
}

/// Applies ops to an in-memory replica the way the state machine does (one transaction per
/// op, then its writes), with fresh request ids; shared by the domain's unit tests.
#[cfg(test)]
pub(crate) struct TestReplica {
    pub store: std::cell::RefCell<crate::records::MemRecords>,
    pub directory: crate::directory::Directory,
    next_request: std::cell::Cell<u64>,
    /// The proposer's clock, as ops are stamped with it.
    pub now_ms: std::cell::Cell<u64>,
}

#[cfg(test)]
impl TestReplica {
    pub fn new() -> TestReplica {
        TestReplica {
            store: Default::default(),
            directory: Default::default(),
            next_request: std::cell::Cell::new(1),
            now_ms: std::cell::Cell::new(1_000),
        }
    }

    pub fn apply(&self, op: CatalogOp) -> CatalogOutcome {
        let n = self.next_request.get();
        self.next_request.set(n + 1);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        self.apply_with_id(id, op)
    }

    pub fn apply_with_id(&self, id: [u8; 16], op: CatalogOp) -> CatalogOutcome {
        let mut store = self.store.borrow_mut();
        let mut tx = Tx::new(&*store);
        let outcome = stage(&mut tx, &id, Some(self.now_ms.get()), &op).expect("stage");
        let writes = tx.into_writes();
        store.commit(writes);
        self.directory.applied(&op, &outcome);
        outcome
    }

    /// A directory loaded from the records, as a node starting now would.
    pub fn reloaded(&self) -> crate::directory::Directory {
        let fresh = crate::directory::Directory::default();
        fresh.reload(&*self.store.borrow()).expect("reload");
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Directory;

    #[test]
    fn expired_revocations_are_forgotten_on_disk_and_in_memory() {
        let r = TestReplica::new();
        let (old, young) = ([1u8; 16], [2u8; 16]);
        for (id, expires_ms) in [(old, 100), (young, 300)] {
            r.apply(CatalogOp::RevokeToken { id, expires_ms });
        }
        let revoked = |d: &Directory, id: &[u8; 16]| {
            d.token_facts(id, &[0; 16], "")
                .is_some_and(|f| f.token_revoked)
        };
        assert!(revoked(&r.directory, &old) && revoked(&r.directory, &young));
        r.apply(CatalogOp::PruneRevoked { before_ms: 200 });
        assert!(!revoked(&r.directory, &old) && revoked(&r.directory, &young));
        // What is stored agrees: a node starting now loads only the young one.
        let fresh = r.reloaded();
        assert_eq!(fresh.revoked_count(), 1);
        assert!(revoked(&fresh, &young));
    }

    /// The bincode variant index a value is stored with.
    fn variant<T: Serialize>(value: &T) -> u32 {
        let raw = bincode::serialize(value).expect("encode");
        u32::from_le_bytes(raw[..4].try_into().expect("index"))
    }

    /// Logs and request records written by earlier versions decode by these numbers: a new
    /// variant in the middle would silently turn old entries into other ops.
    #[test]
    fn encoding_keeps_variant_numbers() {
        let ops = [
            (CatalogOp::InitClusterKey { key: [0; 32] }, 0),
            (
                CatalogOp::DeleteUser {
                    username: "a".into(),
                },
                3,
            ),
            (
                CatalogOp::RevokeToken {
                    id: [0; 16],
                    expires_ms: 0,
                },
                4,
            ),
            (CatalogOp::Dataset(DatasetOp::Delete { id: 1 }), 5),
            (CatalogOp::PruneRevoked { before_ms: 0 }, 12),
            (CatalogOp::AssignUserIds, 13),
            (
                CatalogOp::RevokeUserSessions {
                    user_id: 1,
                    except: None,
                    at_ms: 0,
                    reason: String::new(),
                },
                17,
            ),
            (CatalogOp::PruneRequests { before_ms: 0 }, 19),
        ];
        for (op, index) in ops {
            assert_eq!(variant(&op), index, "{}", op.summary());
        }
        let outcomes = [
            (CatalogOutcome::Done, 0),
            (CatalogOutcome::Key([0; 32]), 2),
            (CatalogOutcome::Conflict(String::new()), 3),
            (CatalogOutcome::NotFound(String::new()), 4),
            (CatalogOutcome::UserIds(Vec::new()), 13),
            (CatalogOutcome::SessionsEnded(Vec::new()), 16),
            (CatalogOutcome::Forgotten(0), 18),
        ];
        for (outcome, index) in outcomes {
            assert_eq!(variant(&outcome), index, "{outcome:?}");
        }
    }

    #[test]
    fn a_retried_task_action_is_remembered_without_the_task_s_images_and_history() {
        use crate::tasks::Action;
        use crate::Sha256;
        let r = TestReplica::new();
        r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 7,
            chunks: vec![vec![Sha256([1; 32]), Sha256([2; 32])]],
            overlap: 1,
            assignees: Vec::new(),
            by: "mgr".into(),
            at_ms: 0,
        }));
        let claim = || {
            CatalogOp::Task(TaskOp::Act {
                id: 1,
                action: Action::Claim,
                user: "ann".into(),
                role: Role::Annotator,
                reason: None,
                at_ms: 1,
            })
        };
        let first = r.apply_with_id([3; 16], claim());
        let CatalogOutcome::Task(TaskOutcome::Task(task)) = &first else {
            panic!("claim: {first:?}");
        };
        assert_eq!(task.images.len(), 2);
        assert!(!task.history.is_empty());
        // Kept without what grows with the task...
        let kept = requests::first_outcome(&*r.store.borrow(), &[3; 16]).expect("read");
        let Some(CatalogOutcome::Task(TaskOutcome::Task(kept))) = kept else {
            panic!("kept: {kept:?}");
        };
        assert!(
            kept.images.is_empty() && kept.history.is_empty(),
            "{kept:?}"
        );
        // ...and a retry answers with the whole task, changing nothing.
        let again = r.apply_with_id([3; 16], claim());
        assert_eq!(first, again);
    }

    #[test]
    fn a_retried_request_returns_its_first_outcome_and_changes_nothing() {
        let r = TestReplica::new();
        let create = |name: &str| {
            CatalogOp::Dataset(DatasetOp::Create {
                name: name.into(),
                created_by: "mgr".into(),
                created_ms: 1,
            })
        };
        let first = r.apply_with_id([7; 16], create("cars"));
        let again = r.apply_with_id([7; 16], create("bikes"));
        assert_eq!(first, again);
        assert_eq!(
            datasets::datasets(&*r.store.borrow(), None, 10)
                .expect("list")
                .len(),
            1
        );
    }
}
