use tessera_storage::StorageError;

/// Why a cluster operation failed. `Unavailable` is transient (no leader yet, peer down) and is
/// retried internally until a deadline; the API maps it to 503.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A forwarded request got no answer in time. Unlike `Unavailable`, a write may still have
    /// been applied, so writes are not retried on it.
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal: {0}")]
    Internal(String),
}

impl ClusterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unavailable(_))
    }

    /// Interprets a status returned by a peer.
    pub fn from_status(status: &tonic::Status) -> ClusterError {
        match status.code() {
            tonic::Code::Unavailable => ClusterError::Unavailable(status.message().to_string()),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ClusterError::Timeout(status.message().to_string())
            }
            _ => ClusterError::Internal(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        match self {
            ClusterError::Unavailable(m) => tonic::Status::unavailable(m.clone()),
            ClusterError::Timeout(m) => tonic::Status::deadline_exceeded(m.clone()),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
