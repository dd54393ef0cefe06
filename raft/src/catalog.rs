//! The catalogue's records: users, sessions, token revocations and the cluster key, replicated
//! by group 0.
//!
//! Every change is a [`CatalogOp`] proposed with a request id; applying the same id twice
//! returns the first outcome without changing anything, so a retried request never applies
//! twice. Each node keeps the records it needs on hot paths (users, revoked token and session
//! ids, the key) in a [`Directory`] in memory, updated as the catalogue applies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, StorageError, Store};

use crate::annotation_sets::{self, AnnotationSetOp, AnnotationSetOutcome};
use crate::annotations::{self, Import, ImportOutcome, Save, SaveOutcome};
use crate::comments::{self, CommentOp, CommentOutcome};
use crate::datasets::{self, DatasetOp, DatasetOutcome};
use crate::jobs::{self, JobOp, JobOutcome};
use crate::placement::META_GROUP;
use crate::sessions::{self, Refreshed, Session};
use crate::tasks::{self, TaskOp, TaskOutcome};

/// What a user may do. See docs/architecture.md for the rules per route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// Whether the view was confirmed current less than [`VIEW_LEASE`] ago.
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
    fn standing(&self) -> Standing {
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
}

/// The result of a [`CatalogOp`].
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
}

const KEY: &str = "cluster_key";
const NEXT_USER_ID: &str = "next-user-id";

/// `N` bytes from the kernel's CSPRNG (ids, salts, keys, generated passwords).
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read;
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

fn user_key(name: &str) -> Vec<u8> {
    keys::named(META_GROUP, &format!("user/{name}"))
}

fn user_id_key(name: &str) -> Vec<u8> {
    keys::named(META_GROUP, &format!("user-id/{name}"))
}

fn read_u64(store: &Store, key: &[u8]) -> Result<Option<u64>, StorageError> {
    match store.get(Cf::Catalog, key)? {
        Some(raw) => {
            let raw: [u8; 8] = raw
                .try_into()
                .map_err(|_| StorageError::Corrupt("a u64 catalogue record".into()))?;
            Ok(Some(u64::from_be_bytes(raw)))
        }
        None => Ok(None),
    }
}

/// The user named `name` with their id (0 for users from before ids, not yet assigned).
fn read_account(store: &Store, name: &str) -> Result<Option<Account>, StorageError> {
    let Some(raw) = store.get(Cf::Catalog, &user_key(name))? else {
        return Ok(None);
    };
    let user: User = bincode::deserialize(&raw)?;
    let id = read_u64(store, &user_id_key(name))?.unwrap_or(0);
    Ok(Some(Account { id, user }))
}

/// Takes the next user id (ids start at 1; 0 marks a user from before ids).
fn stage_next_user_id(store: &Store, batch: &mut WriteBatch) -> Result<u64, StorageError> {
    let key = keys::named(META_GROUP, NEXT_USER_ID);
    let id = read_u64(store, &key)?.unwrap_or(1);
    batch.put_cf(store.cf(Cf::Catalog), key, (id + 1).to_be_bytes());
    Ok(id)
}

fn revoked_key(id: &[u8; 16]) -> Vec<u8> {
    keys::named(META_GROUP, &format!("revoked/{}", hex::encode(id)))
}

/// A big-endian u64 record: a revocation's expiry, a user id (0, pruned first or "no id", if
/// unreadable).
fn be_u64(raw: &[u8]) -> u64 {
    raw.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn request_key(id: &[u8; 16]) -> Vec<u8> {
    keys::named(META_GROUP, &format!("request/{}", hex::encode(id)))
}

/// Stages `op` in `batch` and returns its outcome. Reads see the database as of the previous
/// entry (each entry is applied in its own batch).
pub fn stage(
    store: &Store,
    batch: &mut WriteBatch,
    request_id: &[u8; 16],
    op: &CatalogOp,
) -> Result<CatalogOutcome, StorageError> {
    let cf = store.cf(Cf::Catalog);
    if let Some(raw) = store.get(Cf::Catalog, &request_key(request_id))? {
        return Ok(bincode::deserialize(&raw)?);
    }
    let outcome = match op {
        CatalogOp::InitClusterKey { key } => {
            match store.get(Cf::Catalog, &keys::named(META_GROUP, KEY))? {
                Some(existing) => CatalogOutcome::Key(
                    existing
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("cluster key".into()))?,
                ),
                None => {
                    batch.put_cf(cf, keys::named(META_GROUP, KEY), key);
                    CatalogOutcome::Key(*key)
                }
            }
        }
        CatalogOp::CreateUser(user) => match read_account(store, &user.username)? {
            Some(_) => CatalogOutcome::Conflict(format!("user {} exists", user.username)),
            None => {
                let id = stage_next_user_id(store, batch)?;
                batch.put_cf(cf, user_key(&user.username), bincode::serialize(user)?);
                batch.put_cf(cf, user_id_key(&user.username), id.to_be_bytes());
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
        } => match read_account(store, username)? {
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
                batch.put_cf(cf, user_key(username), bincode::serialize(&user)?);
                CatalogOutcome::Account(account)
            }
        },
        CatalogOp::DeleteUser { username } => match read_account(store, username)? {
            None => CatalogOutcome::NotFound(format!("no user {username}")),
            Some(account) => {
                batch.delete_cf(cf, user_key(username));
                batch.delete_cf(cf, user_id_key(username));
                sessions::stage_delete_all(store, batch, account.id)?;
                CatalogOutcome::Done
            }
        },
        CatalogOp::RevokeToken { id, expires_ms } => {
            batch.put_cf(cf, revoked_key(id), expires_ms.to_be_bytes());
            CatalogOutcome::Done
        }
        CatalogOp::PruneRevoked { before_ms } => {
            let prefix = keys::named(META_GROUP, "revoked/");
            for item in store.scan_prefix(Cf::Catalog, &prefix, None) {
                let (k, v) = item?;
                if be_u64(&v) < *before_ms {
                    batch.delete_cf(cf, k);
                }
            }
            sessions::stage_prune(store, batch, *before_ms)?;
            CatalogOutcome::Done
        }
        CatalogOp::AssignUserIds => CatalogOutcome::UserIds(stage_assign_ids(store, batch)?),
        CatalogOp::OpenSession(session) => {
            let current = read_account(store, &session.username)?;
            match current {
                Some(a)
                    if a.id == session.user_id
                        && a.user.epoch == session.epoch
                        && !a.user.disabled =>
                {
                    sessions::stage_open(store, batch, session)?;
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
            let user = match sessions::read(store, id)? {
                Some(s) => {
                    read_account(store, &s.username)?.map(|a| (a.id, a.user.epoch, a.user.disabled))
                }
                None => None,
            };
            CatalogOutcome::Refreshed(sessions::stage_refresh(
                store,
                batch,
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
        } => match sessions::stage_revoke_one(store, batch, id, *user_id, *at_ms, reason)? {
            Some(session) => CatalogOutcome::SessionsEnded(vec![session]),
            None => CatalogOutcome::NotFound("no such session".into()),
        },
        CatalogOp::RevokeUserSessions {
            user_id,
            except,
            at_ms,
            reason,
        } => CatalogOutcome::SessionsEnded(sessions::stage_revoke_all(
            store,
            batch,
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
        } => match read_account(store, username)? {
            Some(mut account) if account.id == *user_id => {
                account.user.password_hash = password_hash.clone();
                batch.put_cf(cf, user_key(username), bincode::serialize(&account.user)?);
                let ended = sessions::stage_revoke_all(
                    store,
                    batch,
                    *user_id,
                    Some(keep_session),
                    *at_ms,
                    "the password was changed",
                )?;
                CatalogOutcome::PasswordSet { account, ended }
            }
            _ => CatalogOutcome::NotFound(format!("no user {username}")),
        },
        CatalogOp::Dataset(op) => CatalogOutcome::Dataset(datasets::stage(store, batch, op)?),
        CatalogOp::AnnotationSet(op) => {
            CatalogOutcome::AnnotationSet(annotation_sets::stage(store, batch, op)?)
        }
        CatalogOp::Task(op) => CatalogOutcome::Task(tasks::stage(store, batch, op)?),
        CatalogOp::SaveAnnotation(save) => {
            CatalogOutcome::Annotation(annotations::stage(store, batch, save)?)
        }
        CatalogOp::Comment(op) => CatalogOutcome::Comment(comments::stage(store, batch, op)?),
        CatalogOp::Job(op) => CatalogOutcome::Job(jobs::stage(store, batch, op)?),
        CatalogOp::ImportAnnotations(import) => {
            CatalogOutcome::Imported(annotations::stage_import(store, batch, import)?)
        }
    };
    batch.put_cf(cf, request_key(request_id), bincode::serialize(&outcome)?);
    Ok(outcome)
}

/// Gives an id to every user that has none, in name order; returns the ids given.
fn stage_assign_ids(
    store: &Store,
    batch: &mut WriteBatch,
) -> Result<Vec<(String, u64)>, StorageError> {
    let prefix = keys::named(META_GROUP, "user/");
    let mut names = Vec::new();
    for item in store.scan_prefix(Cf::Catalog, &prefix, None) {
        let (k, _) = item?;
        let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        if read_u64(store, &user_id_key(&name))?.is_none() {
            names.push(name);
        }
    }
    let key = keys::named(META_GROUP, NEXT_USER_ID);
    let mut next = read_u64(store, &key)?.unwrap_or(1);
    let mut given = Vec::with_capacity(names.len());
    for name in names {
        batch.put_cf(
            store.cf(Cf::Catalog),
            user_id_key(&name),
            next.to_be_bytes(),
        );
        given.push((name, next));
        next += 1;
    }
    batch.put_cf(store.cf(Cf::Catalog), key, next.to_be_bytes());
    Ok(given)
}

/// How long a node trusts its view of the users after a catalogue barrier confirmed it current.
///
/// A node that has not heard from the catalogue leader for longer (paused, partitioned, or the
/// leader is gone) re-confirms before it accepts a token, so a token of a user deleted or
/// signed out while it was away is refused, never accepted from a stale view. Every node
/// renews it in the background (`Cluster`), twice a second; shorter than an election, so a
/// catalogue leader change does not make every check wait.
pub const VIEW_LEASE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct View {
    users: BTreeMap<String, Account>,
    /// The next id the catalogue will give a user: a token naming a smaller id whose user is
    /// not in `users` belongs to a deleted user.
    next_user_id: u64,
    /// Until when this view counts as current: see [`VIEW_LEASE`].
    current_until: Option<Instant>,
    /// Revoked sessions and when their last token expires.
    revoked_sessions: HashMap<[u8; 16], u64>,
    /// Revoked token ids and when those tokens expire.
    revoked: HashMap<[u8; 16], u64>,
    key: Option<[u8; 32]>,
    /// Jobs cancelled since this node started: their runners stop at once.
    cancelled: HashSet<u64>,
}

/// This node's in-memory copy of the catalogue records used on hot paths. It follows the local
/// catalogue replica, so it may trail the leader by the replication lag (milliseconds); reads
/// that must see a write just made go through [`crate::Cluster::catalog_barrier`] first.
#[derive(Default)]
pub struct Directory {
    view: RwLock<View>,
}

impl Directory {
    /// Reloads everything from the catalogue's records in `store` (start-up, snapshot install).
    pub fn reload(&self, store: &Store) -> Result<(), StorageError> {
        let mut view = View::default();
        let start = keys::group_start(META_GROUP);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::group_end(META_GROUP));
        let iter = store.db().iterator_cf_opt(
            store.cf(Cf::Catalog),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut ids = HashMap::new();
        for item in iter {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[keys::GROUP_LEN..]).into_owned();
            if name.starts_with("user/") {
                let user: User = bincode::deserialize(&v)?;
                let id = ids.get(&user.username).copied().unwrap_or(0);
                view.users
                    .insert(user.username.clone(), Account { id, user });
            } else if let Some(user) = name.strip_prefix("user-id/") {
                // "user-id/" sorts before "user/": ids are known when their users come.
                ids.insert(user.to_string(), be_u64(&v));
            } else if name == NEXT_USER_ID {
                view.next_user_id = be_u64(&v);
            } else if let Some(id) = name.strip_prefix("revoked/") {
                let mut raw = [0u8; 16];
                if hex::decode_to_slice(id, &mut raw).is_ok() {
                    view.revoked.insert(raw, be_u64(&v));
                }
            } else if name == KEY {
                view.key = v.as_ref().try_into().ok();
            } else if name.starts_with("session/") {
                let session: Session = bincode::deserialize(&v)?;
                if session.revoked.is_some() {
                    view.revoked_sessions.insert(session.id, session.expires_ms);
                }
            }
        }
        if let Ok(mut current) = self.view.write() {
            *current = view;
        }
        Ok(())
    }

    /// Records the effect of an applied op.
    pub fn applied(&self, op: &CatalogOp, outcome: &CatalogOutcome) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        match (op, outcome) {
            (_, CatalogOutcome::Account(account))
            | (_, CatalogOutcome::PasswordSet { account, .. }) => {
                view.next_user_id = view.next_user_id.max(account.id + 1);
                view.users
                    .insert(account.user.username.clone(), account.clone());
                if let CatalogOutcome::PasswordSet { ended, .. } = outcome {
                    for s in ended {
                        view.revoked_sessions.insert(s.id, s.expires_ms);
                    }
                }
            }
            (_, CatalogOutcome::UserIds(given)) => {
                for (name, id) in given {
                    view.next_user_id = view.next_user_id.max(id + 1);
                    if let Some(account) = view.users.get_mut(name) {
                        account.id = *id;
                    }
                }
            }
            (_, CatalogOutcome::SessionsEnded(ended)) => {
                for s in ended {
                    view.revoked_sessions.insert(s.id, s.expires_ms);
                }
            }
            (_, CatalogOutcome::Refreshed(Refreshed::Reused(s))) => {
                view.revoked_sessions.insert(s.id, s.expires_ms);
            }
            (_, CatalogOutcome::Key(key)) => view.key = Some(*key),
            (CatalogOp::DeleteUser { username }, CatalogOutcome::Done) => {
                view.users.remove(username);
            }
            (CatalogOp::RevokeToken { id, expires_ms }, CatalogOutcome::Done) => {
                view.revoked.insert(*id, *expires_ms);
            }
            (CatalogOp::PruneRevoked { before_ms }, CatalogOutcome::Done) => {
                view.revoked.retain(|_, expires| *expires >= *before_ms);
                view.revoked_sessions
                    .retain(|_, expires| *expires >= *before_ms);
            }
            (
                CatalogOp::Job(JobOp::Cancel { id, .. }),
                CatalogOutcome::Job(JobOutcome::Job(job)),
            ) if job.state == jobs::JobState::Cancelled => {
                view.cancelled.insert(*id);
            }
            _ => {}
        }
    }

    pub fn user(&self, name: &str) -> Option<Account> {
        self.view.read().ok()?.users.get(name).cloned()
    }

    /// Users in name order after `after`, at most `limit`.
    pub fn users(&self, after: Option<&str>, limit: usize) -> Vec<Account> {
        let Ok(view) = self.view.read() else {
            return Vec::new();
        };
        let from = after
            .map(|a| std::ops::Bound::Excluded(a.to_string()))
            .unwrap_or(std::ops::Bound::Unbounded);
        view.users
            .range((from, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect()
    }

    pub fn user_count(&self) -> usize {
        self.view.read().map(|v| v.users.len()).unwrap_or(0)
    }

    /// What a check of a token with id `token`, of session `session` and user `name` needs;
    /// `None` only if the view's lock was poisoned.
    pub fn token_facts(
        &self,
        token: &[u8; 16],
        session: &[u8; 16],
        name: &str,
    ) -> Option<TokenFacts> {
        let view = self.view.read().ok()?;
        Some(TokenFacts {
            token_revoked: view.revoked.contains_key(token),
            session_revoked: view.revoked_sessions.contains_key(session),
            user: view.users.get(name).map(Account::standing),
            next_user_id: view.next_user_id,
            current: view.current_until.is_some_and(|u| Instant::now() < u),
        })
    }

    /// What token checks need of a user, without cloning the record.
    pub fn standing(&self, name: &str) -> Option<Standing> {
        let view = self.view.read().ok()?;
        view.users.get(name).map(Account::standing)
    }

    /// Whether some user still waits for an id (a data dir from before user ids).
    pub fn has_users_without_ids(&self) -> bool {
        self.view
            .read()
            .map(|v| v.users.values().any(|a| a.id == 0))
            .unwrap_or(false)
    }

    /// Records that a catalogue barrier started at `since` has completed: the view holds every
    /// change committed before `since`, and counts as current for [`VIEW_LEASE`] from then.
    pub fn confirmed_current(&self, since: Instant) {
        if let Ok(mut view) = self.view.write() {
            let until = since + VIEW_LEASE;
            view.current_until = Some(view.current_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Whether job `id` was cancelled (as applied by this node).
    pub fn is_cancelled(&self, id: u64) -> bool {
        self.view
            .read()
            .map(|v| v.cancelled.contains(&id))
            .unwrap_or(false)
    }

    /// How many revocations this node remembers.
    pub fn revoked_count(&self) -> usize {
        self.view.read().map(|v| v.revoked.len()).unwrap_or(0)
    }

    pub fn key(&self) -> Option<[u8; 32]> {
        self.view.read().ok()?.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(store: &Store, directory: &Directory, op: CatalogOp) -> CatalogOutcome {
        let mut batch = WriteBatch::default();
        let id = random::<16>().expect("random");
        let outcome = stage(store, &mut batch, &id, &op).expect("stage");
        store.write(batch, false).expect("write");
        directory.applied(&op, &outcome);
        outcome
    }

    #[test]
    fn expired_revocations_are_forgotten_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        let directory = Directory::default();
        let (old, young) = ([1u8; 16], [2u8; 16]);
        for (id, expires_ms) in [(old, 100), (young, 300)] {
            apply(
                &store,
                &directory,
                CatalogOp::RevokeToken { id, expires_ms },
            );
        }
        let revoked = |d: &Directory, id: &[u8; 16]| {
            d.token_facts(id, &[0; 16], "")
                .is_some_and(|f| f.token_revoked)
        };
        assert!(revoked(&directory, &old) && revoked(&directory, &young));
        apply(
            &store,
            &directory,
            CatalogOp::PruneRevoked { before_ms: 200 },
        );
        assert!(!revoked(&directory, &old) && revoked(&directory, &young));
        // What is on disk agrees: a node starting now loads only the young one.
        let fresh = Directory::default();
        fresh.reload(&store).expect("reload");
        assert_eq!(fresh.revoked_count(), 1);
        assert!(revoked(&fresh, &young));
    }
}
