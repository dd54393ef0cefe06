//! `tessera run`: one node in the foreground.

use std::net::SocketAddr;

use anyhow::Context;
use tessera_api::{AppState, Limits};
use tessera_raft::Cluster;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::config::Config;

pub async fn run(config: Config, id: u64) -> anyhow::Result<()> {
    let node = config
        .spec
        .node(id)
        .with_context(|| format!("node {id} is not in the config"))?
        .clone();
    let data_dir = config.data_dir(id)?.to_path_buf();
    let http_addr: SocketAddr = node
        .http
        .parse()
        .with_context(|| format!("http address {}", node.http))?;
    let rpc_addr: SocketAddr = node
        .rpc
        .parse()
        .with_context(|| format!("rpc address {}", node.rpc))?;
    let metrics = tessera_api::install_recorder()?;
    crate::stall::spawn();
    tessera_api::cluster_routes::ensure_init_token(&data_dir)
        .with_context(|| format!("writing the init token in {}", data_dir.display()))?;

    let rpc_tls =
        tessera_raft::RpcTls::load(&data_dir).context("loading the internal RPC's TLS files")?;
    let cluster = Cluster::start(
        id,
        config.spec.clone(),
        &data_dir,
        &config.tuning,
        config.cache_bytes,
        rpc_tls,
    )
    .await?;
    tracing::info!(node = id, groups = cluster.local_status().len(), data = %data_dir.display(), "node started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let rpc = tokio::spawn(tessera_raft::serve_internal(
        cluster.clone(),
        rpc_addr,
        stopped(stop_rx.clone()),
    ));

    tessera_api::spawn_gauges(cluster.clone(), metrics.clone());
    let state = AppState {
        cluster: cluster.clone(),
        limits: Limits {
            max_object_bytes: config.max_object_bytes,
            access_token_ttl_ms: config.access_token_ttl_ms,
        },
        metrics,
        data_dir: data_dir.clone(),
        login_throttle: Default::default(),
        derived: Default::default(),
        restart: Default::default(),
        started_ms: tessera_api::token::now_ms(),
    };
    tessera_api::jobs::start_background(&state).await;
    tokio::spawn(tessera_api::oauth::prune_catalogue(state.clone()));
    tokio::spawn(tessera_api::quality::recompute(state.clone()));
    tokio::spawn(tessera_api::webhooks::deliver(state.clone()));
    let tls = match config.https(id) {
        Some((cert, key)) => Some(
            tessera_api::fastpath::https::load(cert, key)
                .with_context(|| format!("the HTTPS certificate {}", cert.display()))?,
        ),
        None => None,
    };
    let restart = state.restart.clone();
    let listener = listen(http_addr).with_context(|| format!("binding {http_addr}"))?;
    tracing::info!(http = %http_addr, rpc = %rpc_addr, https = tls.is_some(), "serving");
    // Object reads are answered by the fast path; every other request goes to the axum router
    // (see `tessera_api::fastpath`). TCP_NODELAY is set on every accepted connection there.
    let http = tessera_api::fastpath::serve(
        listener,
        state,
        tessera_api::fastpath::Config {
            max_connections: config.max_connections,
            tls,
            ..tessera_api::fastpath::Config::default()
        },
        stopped(stop_rx),
    );

    let draining = cluster.clone();
    let (reexec_tx, reexec_rx) = tokio::sync::oneshot::channel::<bool>();
    tokio::spawn(async move {
        let again = tokio::select! {
            () = crate::shutdown::signal() => false,
            () = restart.notified() => true,
            // The next start rebuilds the database from the peers (`tessera_raft` rejoin.rs).
            () = draining.database_damaged() => true,
        };
        let _ = reexec_tx.send(again);
        // Not ready from now on; the groups this node leads get a caught-up successor while
        // it still serves, so a rolling restart leaves no group waiting for an election.
        tracing::info!("stopping: handing off leaderships");
        let kept = draining.hand_off(HAND_OFF).await;
        if !kept.is_empty() {
            tracing::warn!(groups = ?kept, "still leading at stop; these groups elect anew");
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let mut rpc = rpc;
    let result = tokio::select! {
        () = http => Ok(()),
        r = &mut rpc => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("rpc server on {rpc_addr}"))),
            Err(e) => Err(anyhow::Error::new(e).context("rpc task")),
        },
    };
    cluster.shutdown().await;
    drop(cluster);
    if result.is_ok() && reexec_rx.await.unwrap_or(false) {
        return Err(reexec());
    }
    result
}

/// Starts this node again in this process: the same arguments, the binary at the path it was
/// started from (a binary replaced there since is the upgrade; `/proc/self/exe` would name the
/// old, deleted one). Returns only if `execve` failed.
fn reexec() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let started_as = args.next().map(std::path::PathBuf::from);
    let program = match started_as {
        Some(path) if path.components().count() > 1 => path,
        _ => match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => return anyhow::Error::new(e).context("finding this binary to restart"),
        },
    };
    tracing::info!(program = %program.display(), "restarting");
    let error = std::process::Command::new(&program).args(args).exec();
    anyhow::Error::new(error).context(format!("restarting {}", program.display()))
}

/// How long a stopping node tries to hand off its leaderships (`tessera_raft` `handoff.rs`).
const HAND_OFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds the HTTP listener with a deep accept backlog: `ab -c 10000` opens ten thousand
/// connections at once, and a short queue turns that burst into SYN retransmits (1 s stalls).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}
