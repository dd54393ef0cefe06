use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tessera_storage::{ObjectMeta, PutOutcome, Sha256};

use crate::catalog::{CatalogOp, CatalogOutcome};
use crate::placement::Placement;
use crate::tasks::TaskOp;

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
    /// What an applied `PutObject` entry becomes in the log of a replica that holds its bytes
    /// in a volume: the needle's place instead of the bytes (see `state_machine::stage_stub`).
    /// The log store turns it back into `PutObject` when the entry is read, so it is never
    /// proposed, sent or applied.
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
            // Ops carry password hashes: name the kind only.
            Command::Catalog { op, .. } => match op {
                CatalogOp::InitClusterKey { .. } => f.write_str("Catalog(InitClusterKey)"),
                CatalogOp::CreateUser(u) => write!(f, "Catalog(CreateUser {})", u.username),
                CatalogOp::UpdateUser { username, .. } => {
                    write!(f, "Catalog(UpdateUser {username})")
                }
                CatalogOp::DeleteUser { username } => write!(f, "Catalog(DeleteUser {username})"),
                CatalogOp::RevokeToken { .. } => f.write_str("Catalog(RevokeToken)"),
                CatalogOp::PruneRevoked { before_ms } => {
                    write!(f, "Catalog(PruneRevoked before {before_ms})")
                }
                CatalogOp::Dataset(op) => write!(f, "Catalog({op:?})"),
                CatalogOp::AnnotationSet(op) => write!(f, "Catalog({op:?})"),
                CatalogOp::Task(TaskOp::Split { set_id, chunks, .. }) => {
                    write!(f, "Catalog(Split {set_id}: {} chunks)", chunks.len())
                }
                CatalogOp::Task(op) => write!(f, "Catalog({op:?})"),
                CatalogOp::Comment(op) => write!(f, "Catalog({op:?})"),
                CatalogOp::Job(op) => write!(f, "Catalog({op:?})"),
                CatalogOp::ImportAnnotations(i) => write!(
                    f,
                    "Catalog(ImportAnnotations set {}: {} images)",
                    i.set,
                    i.images.len()
                ),
                // Shapes can be large: name the image only.
                CatalogOp::SaveAnnotation(s) => {
                    write!(f, "Catalog(SaveAnnotation task {} {})", s.task, s.sha)
                }
                CatalogOp::AssignUserIds => f.write_str("Catalog(AssignUserIds)"),
                // Sessions name users and clients: the kind and user only.
                CatalogOp::OpenSession(s) => write!(f, "Catalog(OpenSession {})", s.username),
                CatalogOp::RefreshSession { .. } => f.write_str("Catalog(RefreshSession)"),
                CatalogOp::RevokeSession { .. } => f.write_str("Catalog(RevokeSession)"),
                CatalogOp::RevokeUserSessions { user_id, .. } => {
                    write!(f, "Catalog(RevokeUserSessions user {user_id})")
                }
                CatalogOp::SetOwnPassword { username, .. } => {
                    write!(f, "Catalog(SetOwnPassword {username})")
                }
            },
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
}
