//! Bearer tokens and presigned object URLs, both authenticated with HMAC-SHA256 under the
//! cluster key (replicated in the catalogue), so any node checks them in about a microsecond
//! without a Raft read.
//!
//! A token is `t1.<hex(JSON claims)>.<hex(mac)>`. It names its user by id (never reused, so a
//! token cannot act as a later user of the same name) and its session (the family of tokens one
//! sign-in mints). Revocation and user changes are checked against the node's catalogue view: a
//! revoked token or session, a deleted or disabled user, or a user whose epoch moved on
//! (password, role or status changed by an admin) is refused — and a node whose view was not
//! confirmed current recently (`TokenFacts::current`) re-confirms before accepting.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tessera_domain::catalog::{Role, Standing, TokenFacts};
use tessera_domain::directory::Directory;

type HmacSha256 = Hmac<Sha256>;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Short-lived, sent with every request.
    Access,
    /// Exchanged at the token endpoint for new access tokens.
    Refresh,
    /// Long-lived, for scripts.
    Api,
}

/// The signed content of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Random id, the handle for revocation.
    pub id: String,
    pub sub: String,
    /// The user's id. Absent only in tokens issued before user ids existed, which are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u64>,
    /// The session (token family) the token belongs to, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Refresh tokens: their number in the session's rotation.
    #[serde(default)]
    pub seq: u32,
    pub role: Role,
    pub kind: Kind,
    /// Expiry, milliseconds since the Unix epoch.
    pub exp: u64,
    /// The user's epoch when the token was issued.
    pub epoch: u64,
}

fn id16(hex_id: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(id)
}

impl Claims {
    pub fn id_bytes(&self) -> Option<[u8; 16]> {
        id16(&self.id)
    }

    pub fn session_bytes(&self) -> Option<[u8; 16]> {
        id16(self.sid.as_deref()?)
    }
}

/// Why a token was refused (all answered with 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    Forged,
    #[error("token expired")]
    Expired,
    #[error("token revoked: {0}")]
    Revoked(&'static str),
    /// Issued before tokens named their user by id.
    #[error("this token is from an earlier version of Tessera; sign in again")]
    Outdated,
    #[error("the cluster has no signing key yet")]
    NoKey,
    /// The token may be newer than this node's view of the catalogue (the key, the user or the
    /// user's epoch has not reached it yet): worth checking again after a catalogue barrier.
    #[error("this node has not caught up with the user records")]
    Behind,
    /// This node's view of the users was not confirmed current recently (it was paused or cut
    /// off from the catalogue leader): confirm it before accepting anything.
    #[error("this node could not confirm that its user records are current")]
    Stale,
}

/// The reason given for a token whose user was deleted (whether or not the name was reused).
const DELETED: &str = "the user was deleted";

/// An HMAC keyed with `key`. Keying hashes the key's two pads (two SHA-256 blocks); the cluster
/// key never changes once set, so the keyed state is computed once per process and cloned for
/// every check (a copy of two hash states, no allocation).
fn mac(key: &[u8; 32]) -> HmacSha256 {
    static KEYED: std::sync::OnceLock<([u8; 32], HmacSha256)> = std::sync::OnceLock::new();
    let new = || {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        <HmacSha256 as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    };
    match KEYED.get_or_init(|| (*key, new())) {
        (cached, keyed) if cached == key => keyed.clone(),
        // Another key (unit tests with several keys in one process).
        _ => new(),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Signs `claims` into a token string.
pub fn issue(key: &[u8; 32], claims: &Claims) -> String {
    let body = format!(
        "t1.{}",
        hex::encode(serde_json::to_vec(claims).unwrap_or_default())
    );
    let mut m = mac(key);
    m.update(body.as_bytes());
    format!("{body}.{}", hex::encode(m.finalize().into_bytes()))
}

/// Checks signature and expiry (not revocation: see [`check`]).
pub fn verify(key: &[u8; 32], token: &str, now: u64) -> Result<Claims, TokenError> {
    let (body, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let payload = body.strip_prefix("t1.").ok_or(TokenError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
    let mut m = mac(key);
    m.update(body.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::Forged)?;
    let raw = hex::decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Verifies a token and checks it against the catalogue: not revoked, its session not ended,
/// its user still the same user (id), enabled, with the same epoch — from a view confirmed
/// current recently. Returns the claims with the user's current role.
pub fn check(directory: &Directory, token: &str) -> Result<Claims, TokenError> {
    let key = directory.key().ok_or(TokenError::NoKey)?;
    let mut claims = verify(&key, token, now_ms())?;
    let id = claims.id_bytes().ok_or(TokenError::Malformed)?;
    let (Some(uid), Some(sid)) = (claims.uid, claims.session_bytes()) else {
        return Err(TokenError::Outdated);
    };
    let facts = directory
        .token_facts(&id, &sid, &claims.sub)
        .ok_or(TokenError::Stale)?;
    if facts.token_revoked {
        return Err(TokenError::Revoked("the token was revoked"));
    }
    if facts.session_revoked {
        return Err(TokenError::Revoked("the session was signed out"));
    }
    let standing = standing(&facts, uid)?;
    if standing.disabled {
        return Err(TokenError::Revoked("the user is disabled"));
    }
    if standing.epoch < claims.epoch {
        return Err(TokenError::Behind);
    }
    if standing.epoch > claims.epoch {
        return Err(TokenError::Revoked(
            "the user's password, role or status changed",
        ));
    }
    // Everything above only ever refuses on an old view (the records only move forward);
    // accepting needs a view known to be recent.
    if !facts.current {
        return Err(TokenError::Stale);
    }
    claims.role = standing.role;
    Ok(claims)
}

/// The user a token names, if they are still the same user. User ids only grow, so a token
/// naming an id below the current holder of the name, or below the next id to be given when
/// nobody holds the name, belongs to a deleted user; a larger one to a user this node has not
/// heard of yet.
fn standing(facts: &TokenFacts, uid: u64) -> Result<Standing, TokenError> {
    match facts.user {
        Some(s) if s.id == uid => Ok(s),
        Some(s) if uid < s.id => Err(TokenError::Revoked(DELETED)),
        None if uid < facts.next_user_id => Err(TokenError::Revoked(DELETED)),
        _ => Err(TokenError::Behind),
    }
}

/// The MAC over `object:<sha>:<exp>`, fed in pieces: checking a presigned URL allocates nothing.
fn presign_mac(key: &[u8; 32], sha: &str, exp: u64) -> HmacSha256 {
    let mut m = mac(key);
    m.update(b"object:");
    m.update(sha.as_bytes());
    m.update(b":");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = exp;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    m.update(&digits[at..]);
    m
}

/// The query string that lets anyone holding it read one object until `exp` (ms).
pub fn presign(key: &[u8; 32], sha: &str, exp: u64) -> String {
    let sig = presign_mac(key, sha, exp).finalize().into_bytes();
    format!("exp={exp}&sig={}", hex::encode(sig))
}

/// Whether `sig` (hex) presigns `sha` until `exp`, and `exp` is still ahead.
pub fn presigned(key: &[u8; 32], sha: &str, exp: u64, sig: &str, now: u64) -> bool {
    let mut raw = [0u8; 32];
    if hex::decode_to_slice(sig, &mut raw).is_err() {
        return false;
    }
    exp > now && presign_mac(key, sha, exp).verify_slice(&raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_domain::catalog::{Account, CatalogOp, CatalogOutcome, User};

    fn claims(exp: u64) -> Claims {
        Claims {
            id: hex::encode([7u8; 16]),
            sub: "alice".into(),
            uid: Some(3),
            sid: Some(hex::encode([9u8; 16])),
            seq: 0,
            role: Role::Manager,
            kind: Kind::Access,
            exp,
            epoch: 0,
        }
    }

    #[test]
    fn tokens_verify_and_refuse_tampering() {
        let key = [1u8; 32];
        let token = issue(&key, &claims(2_000));
        assert_eq!(verify(&key, &token, 1_000), Ok(claims(2_000)));
        assert_eq!(verify(&key, &token, 2_000), Err(TokenError::Expired));
        assert_eq!(verify(&[2u8; 32], &token, 1_000), Err(TokenError::Forged));
        let forged = token.replacen("t1.7b", "t1.7c", 1);
        assert_eq!(verify(&key, &forged, 1_000), Err(TokenError::Forged));
        assert_eq!(verify(&key, "garbage", 1_000), Err(TokenError::Malformed));
    }

    /// A node's catalogue view on a real (temporary) RocksDB, changed through the same staging
    /// code the state machine runs.
    struct Node {
        _dir: tempfile::TempDir,
        store: tessera_raft::storage::Store,
        directory: Directory,
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = tessera_raft::storage::Store::open(&dir.path().join("db")).expect("open");
            let node = Node {
                _dir: dir,
                store,
                directory: Directory::default(),
            };
            node.apply(CatalogOp::InitClusterKey { key: [5; 32] });
            node.directory.confirmed_current(std::time::Instant::now());
            node
        }

        fn apply(&self, op: CatalogOp) -> CatalogOutcome {
            let id = tessera_raft::random::<16>().expect("random");
            let records = self.store.records(0);
            let mut tx = tessera_domain::Tx::new(&records);
            let outcome =
                tessera_domain::catalog::stage(&mut tx, &id, Some(now_ms()), &op).expect("stage");
            let mut batch = rocksdb_batch();
            self.store.stage_writes(&mut batch, 0, tx.into_writes());
            self.store.write(batch, false).expect("write");
            self.directory.applied(&op, &outcome);
            outcome
        }

        fn create(&self, name: &str, role: Role) -> Account {
            let user = User {
                username: name.into(),
                role,
                password_hash: String::new(),
                disabled: false,
                created_ms: 0,
                epoch: 0,
            };
            match self.apply(CatalogOp::CreateUser(user)) {
                CatalogOutcome::Account(a) => a,
                other => panic!("create: {other:?}"),
            }
        }

        /// A session and an access token of `kind` in it.
        fn token(&self, account: &Account, kind: Kind) -> (String, [u8; 16]) {
            let sid = tessera_raft::random::<16>().expect("random");
            let claims = Claims {
                id: hex::encode(tessera_raft::random::<16>().expect("random")),
                sub: account.user.username.clone(),
                uid: Some(account.id),
                sid: Some(hex::encode(sid)),
                seq: 0,
                role: account.user.role,
                kind,
                exp: now_ms() + 60_000,
                epoch: account.user.epoch,
            };
            (issue(&[5; 32], &claims), sid)
        }
    }

    fn rocksdb_batch() -> rocksdb::WriteBatch {
        rocksdb::WriteBatch::default()
    }

    #[test]
    fn a_deleted_users_tokens_never_act_as_a_new_user_of_the_same_name() {
        let node = Node::new();
        let zed = node.create("zed", Role::Annotator);
        let (old, _) = node.token(&zed, Kind::Access);
        assert_eq!(
            check(&node.directory, &old).map(|c| c.role),
            Ok(Role::Annotator)
        );
        node.apply(CatalogOp::DeleteUser {
            username: "zed".into(),
        });
        assert_eq!(
            check(&node.directory, &old),
            Err(TokenError::Revoked("the user was deleted"))
        );
        let again = node.create("zed", Role::Manager);
        assert!(again.id > zed.id, "ids are never reused");
        assert_eq!(
            check(&node.directory, &old),
            Err(TokenError::Revoked("the user was deleted"))
        );
        let (new, _) = node.token(&again, Kind::Access);
        assert_eq!(
            check(&node.directory, &new).map(|c| c.role),
            Ok(Role::Manager)
        );
    }

    #[test]
    fn ended_sessions_stale_views_and_old_tokens_are_refused() {
        let node = Node::new();
        let ann = node.create("ann", Role::Reviewer);
        let (token, sid) = node.token(&ann, Kind::Access);
        // A token naming a user this node has not heard of yet: check again after catching up.
        let later = Account {
            id: ann.id + 1,
            user: ann.user.clone(),
        };
        assert_eq!(
            check(&node.directory, &node.token(&later, Kind::Access).0),
            Err(TokenError::Behind)
        );
        node.apply(CatalogOp::OpenSession(tessera_domain::sessions::Session {
            id: sid,
            user_id: ann.id,
            username: "ann".into(),
            kind: tessera_domain::sessions::SessionKind::SignIn,
            epoch: 0,
            created_ms: 0,
            expires_ms: now_ms() + 60_000,
            last_used_ms: 0,
            refresh_seq: 0,
            client: String::new(),
            address: String::new(),
            revoked: None,
        }));
        assert!(check(&node.directory, &token).is_ok());
        node.apply(CatalogOp::RevokeSession {
            id: sid,
            user_id: None,
            at_ms: 1,
            reason: "test".into(),
        });
        assert_eq!(
            check(&node.directory, &token),
            Err(TokenError::Revoked("the session was signed out"))
        );
        // A view nobody confirmed recently refuses to accept, even a good token.
        let (good, _) = node.token(&ann, Kind::Access);
        let fresh = Directory::default();
        fresh.reload(&node.store.records(0)).expect("reload");
        assert_eq!(check(&fresh, &good), Err(TokenError::Stale));
        fresh.confirmed_current(std::time::Instant::now());
        assert!(check(&fresh, &good).is_ok());
        // Tokens from before user ids: refused with a reason to sign in again.
        let mut legacy = claims(now_ms() + 60_000);
        legacy.uid = None;
        assert_eq!(
            check(&node.directory, &issue(&[5; 32], &legacy)),
            Err(TokenError::Outdated)
        );
    }

    #[test]
    fn presigned_urls_bind_object_and_expiry() {
        let key = [3u8; 32];
        let query = presign(&key, "abc", 5_000);
        let sig = query.split("sig=").nth(1).unwrap();
        assert!(presigned(&key, "abc", 5_000, sig, 4_999));
        assert!(!presigned(&key, "abc", 5_000, sig, 5_000));
        assert!(!presigned(&key, "abd", 5_000, sig, 1));
        assert!(!presigned(&key, "abc", 5_001, sig, 1));
        assert!(!presigned(&key, "abc", 5_000, "zz", 1));
        // The MAC is over the decimal expiry exactly as the URL carries it.
        let mut m = mac(&key);
        m.update(b"object:abc:5000");
        assert_eq!(
            query,
            format!("exp=5000&sig={}", hex::encode(m.finalize().into_bytes()))
        );
        let zero = presign(&key, "abc", 0);
        assert!(zero.starts_with("exp=0&sig="));
        // Keyed state cached for one key never signs for another.
        assert_ne!(presign(&[4u8; 32], "abc", 5_000), query);
    }
}
