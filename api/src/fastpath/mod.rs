//! The HTTP listener of a node, with a lean path for its hottest request.
//!
//! `GET`/`HEAD /objects/<sha>` is most of what a node serves. Each connection reads request
//! heads into one reusable buffer and parses them with `httparse`; object requests (with
//! `If-None-Match`, a single `Range`, `HEAD`, keep-alive and pipelining) are answered right
//! there, through the same auth and lookup as the router's handler, with bodies written by
//! `writev` from memory or `sendfile(2)` from a file. The first request that is anything else
//! hands the connection — with the bytes already read — to hyper and the axum router for good.
//! So every route keeps working on the one port, and object reads skip hyper's per-request
//! machinery (header maps, boxed bodies, middleware) and its per-connection state.

mod admission;
pub mod body;
mod connection;
mod eager;
mod handoff;
mod head;
pub mod https;
mod metrics;
mod object;
mod request;
mod sendfile;
mod socket;

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::AppState;

/// Limits of the listener.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time for a request head to arrive once its first byte has (slowloris): 408 and close.
    pub header_timeout: Duration,
    /// Time a connection may wait for the next request without sending anything.
    pub idle_timeout: Duration,
    /// Time a response may make no progress because the client does not read.
    pub write_timeout: Duration,
    /// Largest head of an object request (431 beyond). Other requests are hyper's to limit.
    pub max_head: usize,
    /// How long shutdown waits for responses in flight.
    pub shutdown_grace: Duration,
    /// Connections open at once; a connection beyond is answered 503 (with `Retry-After`) and
    /// closed, so a flood of clients cannot take the file descriptors RocksDB, volumes and
    /// peers need. Never more than the process's open-file limit less a reserve.
    pub max_connections: usize,
    /// HTTPS (see [`https`]); `None` serves plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            max_head: 16 << 10,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 16_384,
            tls: None,
        }
    }
}

/// File descriptors kept for everything but client connections (RocksDB files, volume files,
/// peer connections, export and import files).
const FD_RESERVE: u64 = 1024;

/// `wanted`, lowered to the open-file limit less [`FD_RESERVE`] (at least 64). The soft limit
/// is first raised to the hard one, as servers do: a default soft limit of 1024 would
/// otherwise cap a node at a few hundred clients.
fn connection_cap(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known {
        return wanted;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return wanted;
    }
    let room = limit.rlim_cur.saturating_sub(FD_RESERVE).max(64);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The whole answer to a connection over the cap.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nx-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: 93\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this node has too many open connections\"}}";

/// Tells a connection over the cap so (if it reads within a second) and closes it.
async fn refuse(mut socket: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(OVER_CAP)).await;
}

/// Counts an open connection until dropped.
struct OpenConnection(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What every connection shares.
struct Shared {
    state: AppState,
    router: Router,
    config: Config,
    admission: admission::Admission,
}

/// Counters of the cache admission's frequency sketch (one byte each, 1 MiB): sixteen per 2 KiB
/// object of the default 128 MiB object cache, halved every 131,072 reads (`admission.rs`).
const ADMISSION_SLOTS: usize = 1 << 20;

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting, lets responses
/// in flight finish (idle connections are closed at once) for up to `config.shutdown_grace`,
/// and returns. Accepted sockets get `TCP_NODELAY`: without it Nagle's algorithm holds back the
/// tail of a response until the client ACKs, ~1 ms per request on a keep-alive connection.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: Config,
    shutdown: impl Future<Output = ()>,
) {
    // SAFETY: the `AsyncFd` owns the listener, so its descriptor stays open and the same for
    // as long as it is registered.
    let watched = |listener| unsafe { AsyncFd::register(listener) }.map_err(io::Error::from);
    let listener = match listener.into_std().and_then(watched) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the HTTP listener");
            return;
        }
    };
    let shared = Arc::new(Shared {
        router: crate::router(state.clone()),
        state,
        config,
        admission: admission::Admission::new(ADMISSION_SLOTS),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let cap = connection_cap(shared.config.max_connections);
    let open_now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = ::metrics::counter!("tessera_http_connections_refused_total");
    loop {
        let socket = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(socket) => socket,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if open_now.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= cap {
            open_now.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            refused.increment(1);
            if let Ok(socket) = socket.into_tokio() {
                tokio::spawn(refuse(socket));
            }
            continue;
        }
        let counted = OpenConnection(open_now.clone());
        if let Err(e) = socket.set_nodelay() {
            tracing::debug!(error = %e, "set TCP_NODELAY");
        }
        let (shared, stop, open) = (shared.clone(), stop_rx.clone(), open_rx.clone());
        tokio::spawn(async move {
            match shared.config.tls.clone() {
                Some(tls) => {
                    if let Ok((stream, peer)) = socket.into_tokio_with_peer() {
                        https::serve(stream, peer, shared, tls, stop).await;
                    }
                }
                None => connection::run(socket, shared, stop).await,
            }
            drop((open, counted));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    if tokio::time::timeout(shared.config.shutdown_grace, open_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}

/// The next connection on `listener`, accepted non-blocking and not registered with tokio
/// (see [`socket::Socket`]): one `accept4(2)` while connections are waiting, a wait for the
/// listener's readiness only when none is.
async fn accept(listener: &AsyncFd<std::net::TcpListener>) -> io::Result<socket::Socket> {
    loop {
        let mut ready = listener.readable().await?;
        let accepted = ready.try_io(|listener| {
            // SAFETY: accept4(2) with null address pointers writes no memory of this process;
            // the descriptor it returns is new and owned by nothing else.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a connected TCP socket this call just created and nothing owns.
            Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
        });
        if let Ok(accepted) = accepted {
            return accepted.map(socket::Socket::new);
        }
    }
}

/// Failed accepts: a connection reset before it was accepted is the client's business; running
/// out of file descriptors is waited out rather than spun on.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
