//! This node's in-memory copy of the catalogue records that token checks read on every
//! request: users, revoked tokens and sessions, the signing key, cancelled jobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::catalog::{
    be_u64, Account, CatalogOp, CatalogOutcome, Standing, TokenFacts, User, KEY, NEXT_USER_ID,
};
use crate::jobs::{self, JobOp, JobOutcome};
use crate::records::scan;
use crate::sessions::{self, Refreshed};
use crate::{key, DomainError, Records};

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
/// that must see a write just made go through `Cluster::catalog_barrier` (tessera-raft) first.
#[derive(Default)]
pub struct Directory {
    view: RwLock<View>,
}

impl Directory {
    /// Reloads the records it keeps from the catalogue (start-up, snapshot install): only
    /// their prefixes are read, never the catalogue's other records.
    pub fn reload(&self, r: &dyn Records) -> Result<(), DomainError> {
        let mut view = View::default();
        let mut ids = HashMap::new();
        for item in r.scan(&key("user-id/"), None) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k["user-id/".len()..]).into_owned();
            ids.insert(name, be_u64(&v));
        }
        for user in scan::<User>(r, &key("user/"), None) {
            let user = user?;
            let id = ids.get(&user.username).copied().unwrap_or(0);
            view.users
                .insert(user.username.clone(), Account { id, user });
        }
        view.next_user_id = r.get(&key(NEXT_USER_ID))?.map_or(0, |v| be_u64(&v));
        for item in r.scan(&key("revoked/"), None) {
            let (k, v) = item?;
            let mut raw = [0u8; 16];
            if hex::decode_to_slice(&k["revoked/".len()..], &mut raw).is_ok() {
                view.revoked.insert(raw, be_u64(&v));
            }
        }
        view.key = r.get(&key(KEY))?.and_then(|v| v.as_slice().try_into().ok());
        for (id, expires_ms) in sessions::revoked(r)? {
            view.revoked_sessions.insert(id, expires_ms);
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
