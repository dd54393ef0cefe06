//! `tessera up`: starts every local node of the config as a child process, initialises a new
//! cluster, waits until it is ready and supervises the children until Ctrl-C, restarting a node
//! that exits (a crash, an OOM kill) with back-off.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tessera_client::Client;
use tokio::process::{Child, Command};

use crate::config::Config;

/// Whether `addr` belongs to this machine: binding to it succeeds only on a local interface.
pub(crate) fn is_local(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .map(|a| UdpSocket::bind(SocketAddr::new(a.ip(), 0)).is_ok())
        .unwrap_or(false)
}

/// A supervised `tessera run` child.
struct NodeProcess {
    id: u64,
    child: Child,
    /// How to start it again.
    exe: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    started: Instant,
    /// Restarts in a row that ended within [`STABLE`] (the back-off grows with them).
    quick_exits: u32,
}

/// A node that ran this long before exiting is restarted at once, with the back-off reset.
const STABLE: Duration = Duration::from_secs(60);
/// The longest wait between restarts of a node that keeps exiting.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl NodeProcess {
    fn start(
        id: u64,
        exe: &Path,
        config_path: &Path,
        log_path: &Path,
    ) -> anyhow::Result<NodeProcess> {
        let mut node = NodeProcess {
            id,
            child: spawn(id, exe, config_path, log_path)?,
            exe: exe.to_path_buf(),
            config_path: config_path.to_path_buf(),
            log_path: log_path.to_path_buf(),
            started: Instant::now(),
            quick_exits: 0,
        };
        node.report("started");
        Ok(node)
    }

    fn report(&mut self, what: &str) {
        println!(
            "node {} {what} (pid {}), log: {}",
            self.id,
            self.child.id().unwrap_or(0),
            self.log_path.display()
        );
    }

    /// How long to wait before restarting after an exit now: nothing after a long run, then 1,
    /// 2, 4 ... seconds up to [`MAX_BACKOFF`] for a node that keeps exiting (a crash loop must
    /// not spin).
    fn backoff(&mut self) -> Duration {
        if self.started.elapsed() >= STABLE {
            self.quick_exits = 0;
        }
        let wait = match self.quick_exits {
            0 => Duration::ZERO,
            n => Duration::from_secs(1 << (n - 1).min(5)).min(MAX_BACKOFF),
        };
        self.quick_exits += 1;
        wait
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(self.id, &self.exe, &self.config_path, &self.log_path)?;
        self.started = Instant::now();
        self.report("restarted");
        Ok(())
    }
}

fn spawn(id: u64, exe: &Path, config_path: &Path, log_path: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    Command::new(exe)
        .arg("run")
        .arg("--id")
        .arg(id.to_string())
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {id}"))
}

pub async fn up(config: Config, config_path: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the tessera binary")?;
    // Certificates for the internal RPC's mutual TLS (and the CA, on a new cluster).
    crate::ca::provision(&config, None, false)?;
    let mut nodes = Vec::new();
    for node in config.spec.nodes.iter().filter(|n| is_local(&n.http)) {
        let data = config.data_dir(node.id)?;
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let log_path = data.join("tessera.log");
        nodes.push(NodeProcess::start(node.id, &exe, config_path, &log_path)?);
    }
    if nodes.is_empty() {
        bail!("no node of {} has a local address", config_path.display());
    }

    // Initialised through the first local node, with the init token it keeps in its data dir.
    let first_id = nodes[0].id;
    let first_http = config
        .spec
        .node(first_id)
        .map(|n| n.http.clone())
        .context("the first local node")?;
    let first = Client::new(&first_http).with_timeout(Duration::from_secs(60));
    wait_for(&config, "/healthz", Duration::from_secs(60)).await?;
    let token = crate::commands::init_token(config.data_dir(first_id)?)?;
    let init = first
        .send(
            hyper::Method::POST,
            "/api/v1/cluster/init",
            &[("authorization", &format!("Bearer {token}"))],
            bytes::Bytes::new(),
        )
        .await?;
    if !init.status.is_success() {
        bail!(
            "initialising the cluster failed: {} {}",
            init.status,
            String::from_utf8_lossy(&init.body)
        );
    }
    let reply = init.json();
    let fresh = reply["initialized_groups"].as_u64().unwrap_or(0);
    if fresh > 0 {
        println!("initialised a new cluster ({fresh} raft groups)");
    }
    if reply["admin_created"].as_bool() == Some(true) {
        match reply["admin_password_file"].as_str() {
            Some(file) => {
                let password = std::fs::read_to_string(file).unwrap_or_default();
                println!(
                    "created user admin with password {} (saved in {file})",
                    password.trim()
                );
            }
            None => println!("created user admin with the password in TESSERA_ADMIN_PASSWORD"),
        }
    }
    wait_for(&config, "/readyz", Duration::from_secs(60)).await?;
    println!("\nTessera is ready. Every node serves the web UI and the whole API:");
    let url = |id: u64, http: &str| {
        let scheme = if config.https(id).is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{http}/")
    };
    for node in &config.spec.nodes {
        println!("  node {}: {}", node.id, url(node.id, &node.http));
    }
    let first = url(config.spec.nodes[0].id, &config.spec.nodes[0].http);
    println!("Open {first} in a browser and sign in as admin.");
    println!(
        "API description: {first}api/v1/openapi.json (log in with POST /oauth/token; see README)"
    );
    println!("CLI on this machine: tessera status | put FILE... | get SHA256 | import --dataset NAME PATH...");
    println!("Press Ctrl-C to stop the cluster.");

    supervise(nodes).await
}

/// Polls `path` on every local node until all answer 2xx, or fails at the deadline.
async fn wait_for(config: &Config, path: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for node in config.spec.nodes.iter().filter(|n| is_local(&n.http)) {
        let client = Client::new(&node.http).with_timeout(Duration::from_secs(2));
        loop {
            if matches!(client.get(path).await, Ok(r) if r.status.is_success()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {} did not answer {path} within {limit:?}", node.id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM; a child that exits meanwhile is reported and restarted with
/// back-off, while the others keep running. Either signal stops every node before returning.
async fn supervise(mut nodes: Vec<NodeProcess>) -> anyhow::Result<()> {
    let stop = crate::shutdown::signal();
    tokio::pin!(stop);
    loop {
        let exited = async {
            loop {
                for (i, n) in nodes.iter_mut().enumerate() {
                    if let Ok(Some(status)) = n.child.try_wait() {
                        return (i, status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let (i, status) = tokio::select! {
            _ = &mut stop => break,
            exit = exited => exit,
        };
        let node = &mut nodes[i];
        let wait = node.backoff();
        eprintln!(
            "node {} exited ({status}); restarting it in {} s (the other nodes keep running)",
            node.id,
            wait.as_secs()
        );
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = node.restart() {
            eprintln!("node {}: {e:#}", node.id);
        }
    }
    println!("\nstopping {} nodes", nodes.len());
    for n in &nodes {
        if let Some(pid) = n.child.id() {
            // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for n in &mut nodes {
        match tokio::time::timeout(Duration::from_secs(20), n.child.wait()).await {
            Ok(_) => println!("node {} stopped", n.id),
            Err(_) => {
                eprintln!("node {} did not stop in time; killing it", n.id);
                let _ = n.child.kill().await;
            }
        }
    }
    Ok(())
}
