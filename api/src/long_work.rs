//! A small pool of threads for long, CPU-heavy job work: unpacking imports, ffmpeg and pdftoppm,
//! parsing annotation imports, writing export archives.
//!
//! Tokio's blocking pool also runs every Raft log append, fsync and apply of the node. Long job
//! work there competes with them for threads and for the CPU: a big export could delay log
//! appends and with them every write of the cluster. Here it runs on at most [`THREADS`]
//! threads of its own that ask the kernel for a lower priority (nice 10, inherited by ffmpeg and
//! pdftoppm, which they start), so consensus and serving always come first, and a queue of
//! jobs waits its turn instead of taking more threads. Thumbnails and previews have a [`Pool`]
//! of their own (`crate::derived`), so that they never wait behind an export.

use std::future::Future;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

/// Threads of the pool: enough for two jobs at once on the small machines Tessera runs on;
/// more jobs queue.
pub const THREADS: usize = 2;

/// The nice value of the pool's threads (0 is normal, 19 the lowest priority).
const NICENESS: libc::c_int = 10;

type Work = Box<dyn FnOnce() + Send>;

/// Why long work did not return: the closure panicked (its thread carries on with the next).
#[derive(Debug, thiserror::Error)]
#[error("long-running work panicked")]
pub struct Panicked;

/// A set of low-priority threads with their queue, started on first use.
pub struct Pool {
    name: &'static str,
    threads: usize,
    queue: OnceLock<Sender<Work>>,
}

/// Job work: imports, exports, annotation imports.
static JOBS: Pool = Pool::new("tessera-long", THREADS);

impl Pool {
    /// A pool of `threads` threads named `name-<n>`. Separate pools keep one kind of work from
    /// queueing behind another (a thumbnail behind an hour-long export).
    pub const fn new(name: &'static str, threads: usize) -> Pool {
        Pool {
            name,
            threads,
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> &Sender<Work> {
        self.queue.get_or_init(|| {
            let (tx, rx) = channel::<Work>();
            let rx = Arc::new(Mutex::new(rx));
            for n in 0..self.threads {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-{n}", self.name))
                    .spawn(move || worker(&rx));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, pool = self.name, "cannot start a low-priority thread");
                }
            }
            tx
        })
    }

    /// Queues `f` on this pool at once (like `spawn_blocking`, it starts without being
    /// awaited); the future gives its result without blocking the runtime.
    pub fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, Panicked>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let work: Work = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The waiter may be gone (the job was cancelled); the result is then dropped.
            let _ = done.send(outcome.map_err(|_| Panicked));
        });
        let queued = self.queue().send(work).is_ok();
        async move {
            if !queued {
                return Err(Panicked);
            }
            result.await.map_err(|_| Panicked)?
        }
    }
}

fn worker(rx: &Mutex<Receiver<Work>>) {
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the calling thread on
    // Linux (threads are scheduled entities of their own); it touches no memory of ours.
    let lowered = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) };
    if lowered != 0 {
        tracing::warn!("cannot lower the priority of a long-work thread");
    }
    loop {
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(work) = next else {
            return;
        };
        work();
    }
}

/// Queues `f` on the job pool (see [`Pool::run`]).
pub fn run<T, F>(f: F) -> impl Future<Output = Result<T, Panicked>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    JOBS.run(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_low_priority_and_a_panic_is_an_error_not_a_lost_thread() {
        // SAFETY: getpriority reads the calling thread's nice value; no memory is touched.
        let nice = run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
            .await
            .expect("ran");
        assert_eq!(nice, NICENESS);
        assert!(run(|| panic!("boom")).await.is_err());
        // Every thread survives a panic: more work than threads still all completes.
        let results: Vec<_> =
            futures_util::future::join_all((0..THREADS * 3).map(|i| run(move || i * 2))).await;
        let doubled: Vec<usize> = results.into_iter().map(|r| r.expect("ran")).collect();
        assert_eq!(doubled, (0..THREADS * 3).map(|i| i * 2).collect::<Vec<_>>());
    }
}
