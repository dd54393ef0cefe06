use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The SHA-256 of an object's bytes: its name everywhere in Tessera.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// Parses the 64-character lowercase or uppercase hex form; `None` for anything else.
    pub fn parse_hex(text: &str) -> Option<Sha256> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Sha256(out))
    }

    /// The first eight bytes as a big-endian integer: the input of shard routing.
    pub fn prefix_u64(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(head)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// Serde as 64 hex digits, for records read by people and by the API's clients
/// (`#[serde(with = "crate::sha::hex_text")]`); bincode records keep the 32 bytes.
pub mod hex_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use super::Sha256;

    pub fn serialize<S: Serializer>(sha: &Sha256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&sha.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256, D::Error> {
        let text = String::deserialize(d)?;
        Sha256::parse_hex(&text).ok_or_else(|| D::Error::custom("64 hex digits"))
    }
}
