//! The catalogue's records: users, token revocations and the cluster key, replicated by group 0.
//!
//! Every change is a [`CatalogOp`] proposed with a request id; applying the same id twice
//! returns the first outcome without changing anything, so a retried request never applies
//! twice. Each node keeps the records it needs on hot paths (users, revoked token ids, the key)
//! in a [`Directory`] in memory, updated as the catalogue applies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, StorageError, Store};

use crate::annotation_sets::{self, AnnotationSetOp, AnnotationSetOutcome};
use crate::annotations::{self, Import, ImportOutcome, Save, SaveOutcome};
use crate::comments::{self, CommentOp, CommentOutcome};
use crate::datasets::{self, DatasetOp, DatasetOutcome};
use crate::jobs::{self, JobOp, JobOutcome};
use crate::placement::META_GROUP;
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
}

const KEY: &str = "cluster_key";

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

fn revoked_key(id: &[u8; 16]) -> Vec<u8> {
    keys::named(META_GROUP, &format!("revoked/{}", hex::encode(id)))
}

/// The expiry stored with a revocation (0, pruned first, if unreadable).
fn expiry(raw: &[u8]) -> u64 {
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
    let read_user = |name: &str| -> Result<Option<User>, StorageError> {
        match store.get(Cf::Catalog, &user_key(name))? {
            Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
            None => Ok(None),
        }
    };
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
        CatalogOp::CreateUser(user) => match read_user(&user.username)? {
            Some(_) => CatalogOutcome::Conflict(format!("user {} exists", user.username)),
            None => {
                batch.put_cf(cf, user_key(&user.username), bincode::serialize(user)?);
                CatalogOutcome::User(user.clone())
            }
        },
        CatalogOp::UpdateUser {
            username,
            password_hash,
            role,
            disabled,
        } => match read_user(username)? {
            None => CatalogOutcome::NotFound(format!("no user {username}")),
            Some(mut user) => {
                let before = user.clone();
                if let Some(hash) = password_hash {
                    user.password_hash = hash.clone();
                }
                user.role = role.unwrap_or(user.role);
                user.disabled = disabled.unwrap_or(user.disabled);
                if user != before {
                    user.epoch += 1;
                }
                batch.put_cf(cf, user_key(username), bincode::serialize(&user)?);
                CatalogOutcome::User(user)
            }
        },
        CatalogOp::DeleteUser { username } => match read_user(username)? {
            None => CatalogOutcome::NotFound(format!("no user {username}")),
            Some(_) => {
                batch.delete_cf(cf, user_key(username));
                CatalogOutcome::Done
            }
        },
        CatalogOp::RevokeToken { id, expires_ms } => {
            batch.put_cf(cf, revoked_key(id), expires_ms.to_be_bytes());
            CatalogOutcome::Done
        }
        CatalogOp::PruneRevoked { before_ms } => {
            let prefix = keys::named(META_GROUP, "revoked/");
            let mut upper = prefix.clone();
            if let Some(last) = upper.last_mut() {
                *last += 1;
            }
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper);
            let iter = store.db().iterator_cf_opt(
                cf,
                opts,
                IteratorMode::From(&prefix, Direction::Forward),
            );
            for item in iter {
                let (k, v) = item?;
                if expiry(&v) < *before_ms {
                    batch.delete_cf(cf, k);
                }
            }
            CatalogOutcome::Done
        }
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

#[derive(Default)]
struct View {
    users: BTreeMap<String, User>,
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
        for item in iter {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[keys::GROUP_LEN..]).into_owned();
            if name.starts_with("user/") {
                let user: User = bincode::deserialize(&v)?;
                view.users.insert(user.username.clone(), user);
            } else if let Some(id) = name.strip_prefix("revoked/") {
                let mut raw = [0u8; 16];
                if hex::decode_to_slice(id, &mut raw).is_ok() {
                    view.revoked.insert(raw, expiry(&v));
                }
            } else if name == KEY {
                view.key = v.as_ref().try_into().ok();
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
            (_, CatalogOutcome::User(user)) => {
                view.users.insert(user.username.clone(), user.clone());
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

    pub fn user(&self, name: &str) -> Option<User> {
        self.view.read().ok()?.users.get(name).cloned()
    }

    /// Users in name order after `after`, at most `limit`.
    pub fn users(&self, after: Option<&str>, limit: usize) -> Vec<User> {
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

    pub fn is_revoked(&self, id: &[u8; 16]) -> bool {
        self.view
            .read()
            .map(|v| v.revoked.contains_key(id))
            .unwrap_or(true)
    }

    /// What token checks need of a user, without cloning the record.
    pub fn standing(&self, name: &str) -> Option<(Role, u64, bool)> {
        let view = self.view.read().ok()?;
        view.users.get(name).map(|u| (u.role, u.epoch, u.disabled))
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
        assert!(directory.is_revoked(&old) && directory.is_revoked(&young));
        apply(
            &store,
            &directory,
            CatalogOp::PruneRevoked { before_ms: 200 },
        );
        assert!(!directory.is_revoked(&old) && directory.is_revoked(&young));
        // What is on disk agrees: a node starting now loads only the young one.
        let fresh = Directory::default();
        fresh.reload(&store).expect("reload");
        assert_eq!(fresh.revoked_count(), 1);
        assert!(fresh.is_revoked(&young));
    }
}
