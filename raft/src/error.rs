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
    /// This node's disk is (almost) full: it refuses writes until space is back. Not retried
    /// internally; the API answers 507 with `Retry-After`.
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal: {0}")]
    Internal(String),
}

impl ClusterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unavailable(_))
    }

    /// Whether the local database failed a checksum (see `rejoin.rs`). openraft passes our
    /// storage errors on as text, hence the look at RocksDB's wording too.
    pub fn is_corruption(&self) -> bool {
        match self {
            ClusterError::Storage(e) => e.is_corruption(),
            ClusterError::Internal(m) => m.contains("Corruption:"),
            _ => false,
        }
    }

    /// Interprets a status returned by a peer.
    pub fn from_status(status: &tonic::Status) -> ClusterError {
        match status.code() {
            tonic::Code::Unavailable => ClusterError::Unavailable(status.message().to_string()),
            tonic::Code::FailedPrecondition => ClusterError::DiskFull(status.message().to_string()),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ClusterError::Timeout(status.message().to_string())
            }
            // The connection broke with the request in flight (the peer died or was cut off, or
            // its HTTP/2 server dropped the connection: `ResourceExhausted`): like a timeout,
            // the peer may or may not have acted on it.
            tonic::Code::Unknown | tonic::Code::ResourceExhausted => ClusterError::Timeout(
                format!("the connection to a peer broke ({})", status.message()),
            ),
            _ => ClusterError::Internal(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        match self {
            ClusterError::Unavailable(m) => tonic::Status::unavailable(m.clone()),
            ClusterError::Timeout(m) => tonic::Status::deadline_exceeded(m.clone()),
            ClusterError::DiskFull(m) => tonic::Status::failed_precondition(m.clone()),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterError;

    #[test]
    fn peer_failures_are_transient_or_indeterminate_never_internal() {
        let broken = tonic::Status::unknown("transport error");
        assert!(
            matches!(ClusterError::from_status(&broken), ClusterError::Timeout(m) if m.contains("transport error"))
        );
        let refused = tonic::Status::unavailable("tcp connect error");
        assert!(ClusterError::from_status(&refused).is_transient());
        // What a client sees when the peer's HTTP/2 server dropped the connection.
        let dropped = tonic::Status::resource_exhausted("h2 protocol error: http2 error");
        assert!(matches!(
            ClusterError::from_status(&dropped),
            ClusterError::Timeout(_)
        ));
        let late = tonic::Status::deadline_exceeded("late");
        assert!(matches!(
            ClusterError::from_status(&late),
            ClusterError::Timeout(_)
        ));
        let full = ClusterError::DiskFull("node 2: 3 MiB free".into()).to_status();
        assert!(matches!(
            ClusterError::from_status(&full),
            ClusterError::DiskFull(m) if m.contains("3 MiB free")
        ));
        let bug = tonic::Status::internal("bad message");
        assert!(matches!(
            ClusterError::from_status(&bug),
            ClusterError::Internal(_)
        ));
    }
}
