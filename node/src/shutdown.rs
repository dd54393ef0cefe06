//! The signals that stop a node or the supervisor: Ctrl-C (SIGINT) from a terminal, SIGTERM
//! from systemd, `kill` or a container runtime. Both must stop `tessera up` the same way, or its
//! node processes outlive it as orphans.

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
