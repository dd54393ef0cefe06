use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tessera_storage::{ObjectMeta, PutOutcome, Sha256};

use tessera_domain::catalog::{CatalogOp, CatalogOutcome};

use crate::members::Members;
use crate::placement::Placement;

/// A replicated write: the payload of a Raft log entry. Every field the state machine stores is
/// decided here, by the proposer, so that every replica applies it identically.
#[derive(Clone, Serialize, Deserialize)]
pub enum Command {
    /// Store `bytes` under `sha` (or add a reference if they are already stored).
    PutObject {
        sha: Sha256,
        meta: ObjectMeta,
        bytes: Bytes,
    },
    /// What a `PutObject` entry becomes in a replica's log: the place of the needle its bytes
    /// went to in this replica's volumes when the entry was appended (or, in logs written
    /// before that, when it was applied: `state_machine::stage_stub`), instead of the bytes.
    /// Volume 0 (`Location::NOWHERE`) means this replica got the entry without bytes. The
    /// state machine applies it by indexing that needle; reads for replication turn it back
    /// into `PutObject` (`log_store::rehydrate`), and a leader that has lost the bytes sends
    /// it as it is, which the receiver stores as pointing nowhere. Never proposed.
    StoredObject {
        sha: Sha256,
        meta: ObjectMeta,
        volume: u32,
        offset: u64,
        len: u64,
    },
    /// Record a new version of the placement (catalogue group only).
    SetPlacement(Placement),
    /// Change a catalogue record (catalogue group only). The request id makes retries
    /// idempotent.
    Catalog { request_id: [u8; 16], op: CatalogOp },
    /// Add (or, with `add` false, drop) a reference to a stored object. The request id makes
    /// retries idempotent.
    Reference {
        request_id: [u8; 16],
        sha: Sha256,
        add: bool,
    },
    /// `Catalog` with the proposer's clock, which dates the request's record so the catalogue
    /// can forget it after `tessera_domain::requests::RETENTION_MS`. What every node proposes
    /// now; `Catalog` stays for log entries written before.
    CatalogAt {
        request_id: [u8; 16],
        at_ms: u64,
        op: CatalogOp,
    },
    /// Records that `derived` is `original` in form `size` (a thumbnail or preview, see
    /// `tessera_api::derived`), unless a derived object is recorded for that pair already: the
    /// first recorded wins, so every node serves the same bytes. Proposed to the original's shard
    /// group, so that the record routes, replicates and snapshots with the original.
    SetDerived {
        original: Sha256,
        size: String,
        derived: Sha256,
    },
    /// Record a new version of the live node set (catalogue group only); an older or equal
    /// version than the stored one is ignored, so a retried or raced proposal never rolls the
    /// node set back.
    SetMembers(Members),
    /// Writes catalogue records from a backup (`tessera restore`), refused unless the catalogue
    /// holds nothing beyond what `init` creates or is being restored from the same `backup`
    /// (see `backup::stage_restore`). With `done`, the directory is reloaded from the records.
    RestoreCatalog {
        backup: String,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        done: bool,
    },
}

/// The key, in the original's shard group's catalogue column family, of the derived object
/// recorded for (`original`, `size`).
pub fn derived_key(group: u32, original: &Sha256, size: &str) -> Vec<u8> {
    tessera_storage::keys::named(group, &format!("derived/{original}/{size}"))
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never dump image bytes into logs.
            Command::PutObject { sha, meta, .. } => write!(f, "PutObject({sha}, {} B)", meta.size),
            Command::StoredObject { sha, meta, .. } => {
                write!(f, "StoredObject({sha}, {} B)", meta.size)
            }
            Command::SetPlacement(p) => write!(f, "SetPlacement(v{})", p.version),
            Command::Reference { sha, add, .. } => write!(f, "Reference({sha}, add: {add})"),
            Command::Catalog { op, .. } | Command::CatalogAt { op, .. } => {
                write!(f, "Catalog({})", op.summary())
            }
            Command::SetDerived { original, size, .. } => {
                write!(f, "SetDerived({original}, {size})")
            }
            Command::SetMembers(m) => write!(f, "SetMembers(v{})", m.version),
            Command::RestoreCatalog {
                backup,
                records,
                done,
            } => write!(
                f,
                "RestoreCatalog({backup}, {} records, done: {done})",
                records.len()
            ),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying a [`Command`] produced, returned to the proposer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    None,
    Object(PutOutcome),
    Placement {
        version: u64,
    },
    Catalog(CatalogOutcome),
    /// The reference count after a `Reference` command; `None` if the object does not exist.
    References(Option<u64>),
    /// The derived object recorded after a `SetDerived` command (the earlier one if there was).
    Derived(Sha256),
    /// The records a `RestoreCatalog` wrote, or why it was refused.
    Restored(Result<u64, String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs written by earlier versions decode by these numbers: a variant inserted in the
    /// middle would turn old entries into other commands.
    #[test]
    fn encoding_keeps_variant_numbers() {
        let op = CatalogOp::PruneRevoked { before_ms: 7 };
        let cases = [
            (
                Command::Catalog {
                    request_id: [1; 16],
                    op: op.clone(),
                },
                3,
            ),
            (
                Command::Reference {
                    request_id: [1; 16],
                    sha: Sha256([2; 32]),
                    add: true,
                },
                4,
            ),
            (
                Command::CatalogAt {
                    request_id: [1; 16],
                    at_ms: 9,
                    op,
                },
                5,
            ),
            (
                Command::SetDerived {
                    original: Sha256([3; 32]),
                    size: "thumb".into(),
                    derived: Sha256([4; 32]),
                },
                6,
            ),
            (
                Command::SetMembers(Members {
                    version: 2,
                    nodes: Vec::new(),
                    leaving: Default::default(),
                }),
                7,
            ),
            (
                Command::RestoreCatalog {
                    backup: "b".into(),
                    records: vec![(b"k".to_vec(), b"v".to_vec())],
                    done: true,
                },
                8,
            ),
        ];
        for (command, index) in cases {
            let raw = bincode::serialize(&command).expect("encode");
            assert_eq!(raw[..4], (index as u32).to_le_bytes(), "{command}");
            let back: Command = bincode::deserialize(&raw).expect("decode");
            assert_eq!(back.to_string(), command.to_string());
        }
    }
}
