use std::time::{Duration, Instant};

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
    let queued = Instant::now();
    let work = move || {
        note_queue_wait(queued.elapsed());
        f()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(storage_error(verb, &e)),
        Err(join) => Err(storage_error(verb, &join)),
    }
}

/// A wait for a blocking thread longer than this is logged: the pool (64 threads, `node`'s
/// runtime) is saturated, and every Raft group's log append and vote waits in the same queue.
const SLOW_QUEUE: Duration = Duration::from_millis(500);

/// Records how long a task waited for a blocking thread (`tessera_blocking_queue_seconds`).
fn note_queue_wait(waited: Duration) {
    metrics::histogram!("tessera_blocking_queue_seconds").record(waited.as_secs_f64());
    if waited >= SLOW_QUEUE {
        tracing::warn!(
            waited_ms = waited.as_millis() as u64,
            "the blocking pool is saturated: storage work waited for a thread"
        );
    }
}

/// Wraps any error as openraft's storage error.
pub fn storage_error(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> RaftStorageError {
    StorageIOError::<NodeId>::new(ErrorSubject::Store, verb, AnyError::new(e)).into()
}
