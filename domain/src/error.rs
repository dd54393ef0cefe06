/// Why a domain read or transition could not run. Outcomes a client caused (a conflict, a
/// missing record, a bad request) are never errors: they are the `Outcome` of the op, decided
/// identically on every replica. An error here means the records themselves could not be read,
/// which the state machine treats as fatal for the replica, not for the cluster.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The backing store failed (I/O, RocksDB).
    #[error("storage: {0}")]
    Storage(String),
    /// A stored record this version cannot decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<bincode::Error> for DomainError {
    fn from(e: bincode::Error) -> Self {
        DomainError::Corrupt(e.to_string())
    }
}
