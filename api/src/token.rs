//! Bearer tokens and presigned object URLs, both authenticated with HMAC-SHA256 under the
//! cluster key (replicated in the catalogue), so any node checks them in about a microsecond
//! without a Raft read.
//!
//! A token is `t1.<hex(JSON claims)>.<hex(mac)>`. Revocation and user changes are checked
//! against the node's catalogue view: a revoked token id, a disabled user or a user whose epoch
//! moved on (password, role or status changed) is refused.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tessera_raft::catalog::{Directory, Role};

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
    pub role: Role,
    pub kind: Kind,
    /// Expiry, milliseconds since the Unix epoch.
    pub exp: u64,
    /// The user's epoch when the token was issued.
    pub epoch: u64,
}

impl Claims {
    pub fn id_bytes(&self) -> Option<[u8; 16]> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(&self.id, &mut id).ok()?;
        Some(id)
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
    #[error("token revoked")]
    Revoked,
    #[error("the cluster has no signing key yet")]
    NoKey,
    /// The token may be newer than this node's view of the catalogue (the key, the user or the
    /// user's epoch has not reached it yet): worth checking again after a catalogue barrier.
    #[error("this node has not caught up with the user records")]
    Behind,
}

fn mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
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

/// Verifies a token and checks it against the catalogue: not revoked, user still enabled, with
/// the same epoch. Returns the claims with the user's current role.
pub fn check(directory: &Directory, token: &str) -> Result<Claims, TokenError> {
    let key = directory.key().ok_or(TokenError::NoKey)?;
    let mut claims = verify(&key, token, now_ms())?;
    let id = claims.id_bytes().ok_or(TokenError::Malformed)?;
    if directory.is_revoked(&id) {
        return Err(TokenError::Revoked);
    }
    match directory.standing(&claims.sub) {
        Some((role, epoch, false)) if epoch == claims.epoch => {
            claims.role = role;
            Ok(claims)
        }
        Some((_, epoch, _)) if epoch < claims.epoch => Err(TokenError::Behind),
        None => Err(TokenError::Behind),
        Some(_) => Err(TokenError::Revoked),
    }
}

fn presign_mac(key: &[u8; 32], sha: &str, exp: u64) -> HmacSha256 {
    let mut m = mac(key);
    m.update(format!("object:{sha}:{exp}").as_bytes());
    m
}

/// The query string that lets anyone holding it read one object until `exp` (ms).
pub fn presign(key: &[u8; 32], sha: &str, exp: u64) -> String {
    let sig = presign_mac(key, sha, exp).finalize().into_bytes();
    format!("exp={exp}&sig={}", hex::encode(sig))
}

/// Whether `sig` (hex) presigns `sha` until `exp`, and `exp` is still ahead.
pub fn presigned(key: &[u8; 32], sha: &str, exp: u64, sig: &str, now: u64) -> bool {
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    exp > now && presign_mac(key, sha, exp).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            id: hex::encode([7u8; 16]),
            sub: "alice".into(),
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
    }
}
