//! Sign-in sessions: the families of tokens a sign-in (or an API token) mints.
//!
//! Every access and refresh token names its session; the session record holds which refresh
//! token of the family is current (`refresh_seq`). A refresh grant rotates it; presenting an
//! older refresh token again means it leaked (RFC 9700 §4.14), so the whole family is revoked.
//! Revoking a session refuses every token that names it, on every node, as soon as the node
//! applies the op — the same path as revoking one token.
//!
//! Records: `session/<id hex>` -> [`Session`], and `session-by-user/<user id>/<id hex>` -> empty,
//! so a user's sessions are one prefix scan (listing, "sign out everywhere", deletion).

use serde::{Deserialize, Serialize};

use crate::records::{get, scan};
use crate::{key, DomainError, Entry, Records, Tx};

/// How a session was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The password grant: an access token and a rotating refresh token.
    SignIn,
    /// `POST /api/v1/me/tokens`: one long-lived token for scripts.
    ApiToken,
}

/// Why and when a session ended early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at_ms: u64,
    pub reason: String,
}

/// One token family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: [u8; 16],
    pub user_id: u64,
    pub username: String,
    pub kind: SessionKind,
    /// The user's credential generation when the session opened: an admin's password reset,
    /// role change or disabling moves it on and so ends the session.
    pub epoch: u64,
    pub created_ms: u64,
    /// When the newest token of the family expires; the record is pruned after.
    pub expires_ms: u64,
    /// Opening or the last refresh grant.
    pub last_used_ms: u64,
    /// The sequence number of the only refresh token of the family that is still accepted.
    pub refresh_seq: u32,
    /// The client's `User-Agent`, shortened.
    pub client: String,
    /// The address the session was opened from.
    pub address: String,
    pub revoked: Option<Revocation>,
}

impl Session {
    /// Whether tokens of this session are still accepted for a user whose current id and
    /// epoch are given, at `now_ms`.
    pub fn is_live(&self, user_id: u64, epoch: u64, now_ms: u64) -> bool {
        self.revoked.is_none()
            && self.user_id == user_id
            && self.epoch == epoch
            && self.expires_ms > now_ms
    }
}

/// What a refresh grant found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refreshed {
    /// Rotated: mint the refresh token with the session's new `refresh_seq`.
    Rotated(Session),
    /// An already rotated refresh token came back: the session is now revoked.
    Reused(Session),
    /// The session is gone, revoked, expired or belongs to a user that changed: the reason.
    Refused(String),
}

pub(crate) fn session_key(id: &[u8; 16]) -> Vec<u8> {
    key(&format!("session/{}", hex::encode(id)))
}

fn by_user_prefix(user_id: u64) -> Vec<u8> {
    key(&format!("session-by-user/{user_id:020}/"))
}

fn by_user_key(user_id: u64, id: &[u8; 16]) -> Vec<u8> {
    let mut k = by_user_prefix(user_id);
    k.extend_from_slice(hex::encode(id).as_bytes());
    k
}

pub fn read(r: &dyn Records, id: &[u8; 16]) -> Result<Option<Session>, DomainError> {
    get(r, &session_key(id))
}

fn write(tx: &mut Tx, session: &Session) -> Result<(), DomainError> {
    tx.put_record(session_key(&session.id), session)?;
    Ok(())
}

/// Every session of a user, in id order, revoked and expired ones included.
pub fn of_user(r: &dyn Records, user_id: u64) -> Result<Vec<Session>, DomainError> {
    let prefix = by_user_prefix(user_id);
    let mut out = Vec::new();
    for (key, _) in entries(r, &prefix)? {
        let mut id = [0u8; 16];
        if hex::decode_to_slice(&key[prefix.len()..], &mut id).is_err() {
            return Err(DomainError::Corrupt("session index key".into()));
        }
        if let Some(session) = read(r, &id)? {
            out.push(session);
        }
    }
    Ok(out)
}

/// Every record under `prefix`, read before the caller writes.
fn entries(r: &dyn Records, prefix: &[u8]) -> Result<Vec<Entry>, DomainError> {
    r.scan(prefix, None).collect()
}

/// Stages a new session.
pub fn stage_open(tx: &mut Tx, session: &Session) -> Result<(), DomainError> {
    write(tx, session)?;
    tx.put(by_user_key(session.user_id, &session.id), Vec::new());
    Ok(())
}

/// Marks `session` revoked (unless it already is) and returns it as stored.
fn stage_revoke(
    tx: &mut Tx,
    mut session: Session,
    at_ms: u64,
    reason: &str,
) -> Result<Session, DomainError> {
    if session.revoked.is_none() {
        session.revoked = Some(Revocation {
            at_ms,
            reason: reason.to_string(),
        });
        write(tx, &session)?;
    }
    Ok(session)
}

/// A refresh grant with the refresh token number `seq` of session `id`, checked against the
/// user's current id and epoch. `expires_ms` is the new refresh token's expiry.
pub fn stage_refresh(
    tx: &mut Tx,
    id: &[u8; 16],
    seq: u32,
    user: Option<(u64, u64, bool)>,
    now_ms: u64,
    expires_ms: u64,
) -> Result<Refreshed, DomainError> {
    let Some(mut session) = read(tx, id)? else {
        return Ok(Refreshed::Refused("the session has ended".into()));
    };
    if let Some(revoked) = &session.revoked {
        return Ok(Refreshed::Refused(format!(
            "the session was ended: {}",
            revoked.reason
        )));
    }
    match user {
        Some((user_id, epoch, disabled))
            if user_id == session.user_id && epoch == session.epoch && !disabled => {}
        _ => {
            return Ok(Refreshed::Refused(
                "the user was deleted, disabled or had their password or role changed".into(),
            ))
        }
    }
    if session.expires_ms <= now_ms {
        return Ok(Refreshed::Refused("the session has expired".into()));
    }
    if seq != session.refresh_seq {
        let session = stage_revoke(tx, session, now_ms, "a refresh token was used twice")?;
        return Ok(Refreshed::Reused(session));
    }
    session.refresh_seq = session.refresh_seq.wrapping_add(1);
    session.last_used_ms = now_ms;
    session.expires_ms = expires_ms;
    write(tx, &session)?;
    Ok(Refreshed::Rotated(session))
}

/// Revokes one session; `None` if there is no such session (or it belongs to another user
/// than `user_id`, when given).
pub fn stage_revoke_one(
    tx: &mut Tx,
    id: &[u8; 16],
    user_id: Option<u64>,
    at_ms: u64,
    reason: &str,
) -> Result<Option<Session>, DomainError> {
    match read(tx, id)? {
        Some(session) if user_id.is_none_or(|u| u == session.user_id) => {
            stage_revoke(tx, session, at_ms, reason).map(Some)
        }
        _ => Ok(None),
    }
}

/// Revokes every live session of a user but `except`; returns those it revoked.
pub fn stage_revoke_all(
    tx: &mut Tx,
    user_id: u64,
    except: Option<&[u8; 16]>,
    at_ms: u64,
    reason: &str,
) -> Result<Vec<Session>, DomainError> {
    let mut revoked = Vec::new();
    for session in of_user(tx, user_id)? {
        if session.revoked.is_some() || Some(&session.id) == except {
            continue;
        }
        revoked.push(stage_revoke(tx, session, at_ms, reason)?);
    }
    Ok(revoked)
}

/// Deletes every session record of a user (the user is being deleted).
pub fn stage_delete_all(tx: &mut Tx, user_id: u64) -> Result<(), DomainError> {
    for session in of_user(tx, user_id)? {
        tx.delete(session_key(&session.id));
        tx.delete(by_user_key(user_id, &session.id));
    }
    Ok(())
}

/// Deletes sessions whose every token expired before `before_ms`.
pub fn stage_prune(tx: &mut Tx, before_ms: u64) -> Result<(), DomainError> {
    for (key, raw) in entries(tx, &crate::key("session/"))? {
        let session: Session = bincode::deserialize(&raw)?;
        if session.expires_ms < before_ms {
            tx.delete(key);
            tx.delete(by_user_key(session.user_id, &session.id));
        }
    }
    Ok(())
}

/// Every revoked session that still has unexpired tokens: what token checks must refuse.
pub fn revoked(r: &dyn Records) -> Result<Vec<([u8; 16], u64)>, DomainError> {
    let mut out = Vec::new();
    for session in scan::<Session>(r, &key("session/"), None) {
        let session = session?;
        if session.revoked.is_some() {
            out.push((session.id, session.expires_ms));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Account, CatalogOp, CatalogOutcome, Role, TestReplica, User};
    use crate::directory::Directory;

    fn session_revoked(directory: &Directory, id: u8) -> bool {
        directory
            .token_facts(&[0; 16], &[id; 16], "")
            .is_some_and(|f| f.session_revoked)
    }

    struct Replica(TestReplica);

    impl std::ops::Deref for Replica {
        type Target = TestReplica;
        fn deref(&self) -> &TestReplica {
            &self.0
        }
    }

    impl Replica {
        fn new() -> Replica {
            Replica(TestReplica::new())
        }

        fn user(&self, name: &str) -> Account {
            let user = User {
                username: name.into(),
                role: Role::Annotator,
                password_hash: "old".into(),
                disabled: false,
                created_ms: 0,
                epoch: 0,
            };
            match self.apply(CatalogOp::CreateUser(user)) {
                CatalogOutcome::Account(a) => a,
                other => panic!("create: {other:?}"),
            }
        }

        fn open(&self, account: &Account, id: u8) -> Session {
            let session = Session {
                id: [id; 16],
                user_id: account.id,
                username: account.user.username.clone(),
                kind: SessionKind::SignIn,
                epoch: account.user.epoch,
                created_ms: 10,
                expires_ms: 1_000,
                last_used_ms: 10,
                refresh_seq: 0,
                client: "test".into(),
                address: "127.0.0.1".into(),
                revoked: None,
            };
            match self.apply(CatalogOp::OpenSession(session)) {
                CatalogOutcome::Session(s) => s,
                other => panic!("open: {other:?}"),
            }
        }

        fn refresh(&self, id: u8, seq: u32) -> Refreshed {
            let op = CatalogOp::RefreshSession {
                id: [id; 16],
                seq,
                now_ms: 20,
                expires_ms: 2_000,
            };
            match self.apply(op) {
                CatalogOutcome::Refreshed(r) => r,
                other => panic!("refresh: {other:?}"),
            }
        }
    }

    #[test]
    fn refresh_tokens_rotate_and_a_reused_one_ends_the_family() {
        let r = Replica::new();
        let zed = r.user("zed");
        r.open(&zed, 1);
        let Refreshed::Rotated(s) = r.refresh(1, 0) else {
            panic!("first refresh rotates");
        };
        assert_eq!(
            (s.refresh_seq, s.last_used_ms, s.expires_ms),
            (1, 20, 2_000)
        );
        assert!(!session_revoked(&r.directory, 1));
        // Token 0 again: somebody kept a copy. The whole family ends, on disk and in memory.
        assert!(matches!(r.refresh(1, 0), Refreshed::Reused(_)));
        assert!(session_revoked(&r.directory, 1));
        assert!(matches!(r.refresh(1, 1), Refreshed::Refused(_)));
        assert!(session_revoked(&r.reloaded(), 1));
    }

    #[test]
    fn own_password_change_keeps_the_current_session_and_deletion_forgets_them_all() {
        let r = Replica::new();
        let zed = r.user("zed");
        for id in 1..=3 {
            r.open(&zed, id);
        }
        let op = CatalogOp::SetOwnPassword {
            user_id: zed.id,
            username: "zed".into(),
            password_hash: "new".into(),
            keep_session: [2; 16],
            at_ms: 30,
        };
        let CatalogOutcome::PasswordSet { account, ended } = r.apply(op) else {
            panic!("password set");
        };
        assert_eq!(account.user.password_hash, "new");
        assert_eq!(account.user.epoch, zed.user.epoch, "no epoch bump");
        let mut ended: Vec<[u8; 16]> = ended.iter().map(|s| s.id).collect();
        ended.sort();
        assert_eq!(ended, vec![[1; 16], [3; 16]]);
        assert!(!session_revoked(&r.directory, 2));
        assert!(matches!(r.refresh(2, 0), Refreshed::Rotated(_)));
        // An admin's change moves the epoch on: the kept session ends too.
        let op = CatalogOp::UpdateUser {
            username: "zed".into(),
            password_hash: Some("reset".into()),
            role: None,
            disabled: None,
        };
        r.apply(op);
        assert!(matches!(r.refresh(2, 1), Refreshed::Refused(_)));
        r.apply(CatalogOp::DeleteUser {
            username: "zed".into(),
        });
        assert!(of_user(&*r.store.borrow(), zed.id)
            .expect("scan")
            .is_empty());
        // The name again: a new id, and no session of the old user opens for it.
        let again = r.user("zed");
        assert!(again.id > zed.id);
        let stale = Session {
            id: [9; 16],
            ..r.open(&again, 8)
        };
        let old = Session {
            user_id: zed.id,
            ..stale
        };
        assert!(matches!(
            r.apply(CatalogOp::OpenSession(old)),
            CatalogOutcome::Conflict(_)
        ));
    }

    #[test]
    fn users_from_before_ids_get_ids_once_in_name_order() {
        let r = Replica::new();
        for name in ["bea", "al"] {
            let user = User {
                username: name.into(),
                role: Role::Manager,
                password_hash: String::new(),
                disabled: false,
                created_ms: 0,
                epoch: 0,
            };
            r.store.borrow_mut().0.insert(
                key(&format!("user/{name}")),
                bincode::serialize(&user).expect("encode"),
            );
        }
        r.directory.reload(&*r.store.borrow()).expect("reload");
        assert!(r.directory.has_users_without_ids());
        let CatalogOutcome::UserIds(given) = r.apply(CatalogOp::AssignUserIds) else {
            panic!("ids");
        };
        assert_eq!(given, vec![("al".to_string(), 1), ("bea".to_string(), 2)]);
        assert!(!r.directory.has_users_without_ids());
        assert_eq!(r.user("cy").id, 3);
        let reloaded = r.reloaded();
        assert_eq!(reloaded.user("bea").map(|a| a.id), Some(2));
        assert_eq!(
            reloaded
                .token_facts(&[0; 16], &[0; 16], "")
                .map(|f| f.next_user_id),
            Some(4)
        );
    }
}
