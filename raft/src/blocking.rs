use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use crate::types::{NodeId, RaftStorageError};

/// Runs RocksDB or file work on tokio's blocking pool, so that the async runtime (and with it
/// every Raft group's event loop and the HTTP server) never waits on disk.
pub async fn blocking<T, E, F>(verb: ErrorVerb, f: F) -> Result<T, RaftStorageError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(storage_error(verb, &e)),
        Err(join) => Err(storage_error(verb, &join)),
    }
}

/// Wraps any error as openraft's storage error.
pub fn storage_error(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> RaftStorageError {
    StorageIOError::<NodeId>::new(ErrorSubject::Store, verb, AnyError::new(e)).into()
}
