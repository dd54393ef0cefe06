//! The client commands: `status`, `put`, `get`, `init` (and the connection `import` uses).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use tessera_client::{Client, Method, Reply};

use crate::config::Config;

/// A client for the first node of the config that answers (or `--node`), without a token.
async fn reach(config: &Config, node: Option<&str>) -> anyhow::Result<Client> {
    if let Some(addr) = node {
        return Ok(Client::new(addr));
    }
    for n in &config.spec.nodes {
        let client = Client::new(&n.http).with_timeout(Duration::from_secs(2));
        if client.get("/healthz").await.is_ok() {
            return Ok(Client::new(&n.http));
        }
    }
    bail!(
        "no node of {} answers; is the cluster running (tessera up)?",
        config.path.display()
    )
}

/// The credentials of the CLI: `TESSERA_TOKEN`, or `TESSERA_USER` (default `admin`) with
/// `TESSERA_PASSWORD`, or — for the admin of a cluster started here — the password `tessera up`
/// saved in the first node's data dir.
pub async fn connect(config: &Config, node: Option<&str>) -> anyhow::Result<Client> {
    let client = reach(config, node).await?;
    if let Ok(token) = std::env::var("TESSERA_TOKEN") {
        return Ok(client.with_token(token));
    }
    let user = std::env::var("TESSERA_USER").unwrap_or_else(|_| "admin".into());
    let password = match std::env::var("TESSERA_PASSWORD")
        .or_else(|_| std::env::var("TESSERA_ADMIN_PASSWORD"))
    {
        Ok(p) => p,
        Err(_) => {
            let first = config
                .spec
                .nodes
                .first()
                .context("no nodes in the config")?;
            let file = config.data_dir(first.id)?.join("initial-admin-password");
            std::fs::read_to_string(&file)
                .map(|p| p.trim().to_string())
                .with_context(|| {
                    format!(
                        "set TESSERA_TOKEN or TESSERA_PASSWORD (no readable {})",
                        file.display()
                    )
                })?
        }
    };
    let token = client.login(&user, &password).await.context("logging in")?;
    Ok(client.with_token(token))
}

/// Turns an error reply into an error naming the server's message.
pub fn check(reply: &Reply) -> anyhow::Result<()> {
    if reply.status.is_success() {
        return Ok(());
    }
    let err = reply.json();
    let message = err["error"]["message"].as_str().map(str::to_owned);
    bail!(
        "{}: {}",
        reply.status,
        message.unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned())
    )
}

/// The init token a node keeps in its data dir (see `tessera_api::cluster_routes`).
pub fn init_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(tessera_api::cluster_routes::INIT_TOKEN_FILE);
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the init token {}", path.display()))?;
    Ok(token.trim().to_string())
}

/// `tessera init`: with `TESSERA_INIT_TOKEN`, through any node (or `--node`); otherwise through
/// a node of this machine whose data dir holds its init token.
pub async fn init(config: &Config, node: Option<&str>) -> anyhow::Result<()> {
    let (client, token) = match std::env::var("TESSERA_INIT_TOKEN") {
        Ok(token) => (reach(config, node).await?, token),
        Err(_) => {
            let local = config
                .spec
                .nodes
                .iter()
                .filter(|n| node.is_none_or(|addr| addr.trim_start_matches("http://") == n.http))
                .find_map(|n| Some((n, init_token(config.data_dir(n.id).ok()?).ok()?)));
            let Some((n, token)) = local else {
                bail!("no init token here: run on a node's machine or set TESSERA_INIT_TOKEN (the file init-token in a node's data dir)");
            };
            (Client::new(&n.http), token)
        }
    };
    let client = client.with_timeout(Duration::from_secs(120));
    let reply = client
        .send(
            hyper::Method::POST,
            "/api/v1/cluster/init",
            &[("authorization", &format!("Bearer {token}"))],
            Bytes::new(),
        )
        .await?;
    check(&reply)?;
    println!(
        "initialised {} raft groups",
        reply.json()["initialized_groups"]
    );
    Ok(())
}

pub async fn status(config: &Config, node: Option<&str>) -> anyhow::Result<()> {
    let client = connect(config, node).await?;
    let reply = client.get("/api/v1/cluster").await?;
    check(&reply)?;
    let s = reply.json();
    let mut out = String::new();
    use std::fmt::Write as _;
    writeln!(
        out,
        "shards {}  replication {}  placement v{}",
        s["shards"], s["replication"], s["placement_version"]
    )?;
    writeln!(out, "\nnode  {:<22} {:<22} state", "http", "rpc")?;
    for n in s["nodes"].as_array().into_iter().flatten() {
        let up = if n["up"].as_bool() == Some(true) {
            "up"
        } else {
            "DOWN"
        };
        writeln!(
            out,
            "{:>4}  {:<22} {:<22} {}",
            n["id"],
            n["http"].as_str().unwrap_or(""),
            n["rpc"].as_str().unwrap_or(""),
            up
        )?;
    }
    writeln!(
        out,
        "\ngroup shard  {:<12} leader  term  replicas (applied index, lag)",
        "voters"
    )?;
    for g in s["groups"].as_array().into_iter().flatten() {
        let voters: Vec<String> = g["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.to_string())
            .collect();
        let replicas = g["replicas"].as_object();
        let max_applied = replicas
            .into_iter()
            .flatten()
            .filter_map(|(_, r)| r["applied"].as_u64())
            .max()
            .unwrap_or(0);
        let detail: Vec<String> = replicas
            .into_iter()
            .flatten()
            .map(|(id, r)| {
                let applied = match r["applied"].as_u64() {
                    Some(a) => format!("{id}:{a} (-{})", max_applied - a),
                    None => format!("{id}:-"),
                };
                match r["damaged"].as_u64() {
                    Some(n) if n > 0 => format!("{applied} [{n} damaged]"),
                    _ => applied,
                }
            })
            .collect();
        let shard = g["shard"]
            .as_u64()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "meta".into());
        writeln!(
            out,
            "{:>5} {:>5}  {:<12} {:>6} {:>5}  {}",
            g["group"],
            shard,
            voters.join(","),
            g["leader"]
                .as_u64()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            g["term"],
            detail.join("  ")
        )?;
    }
    let nodes = client.get("/api/v1/cluster/nodes").await?;
    if check(&nodes).is_ok() {
        out.push('\n');
        out.push_str(&crate::members::render(&nodes.json())?);
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

pub async fn put(config: &Config, node: Option<&str>, files: &[PathBuf]) -> anyhow::Result<()> {
    if files.is_empty() {
        bail!("usage: tessera put FILE...");
    }
    let client = connect(config, node).await?;
    let show_progress = files.len() > 1;
    for (i, file) in files.iter().enumerate() {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let reply = client.put_object(Bytes::from(bytes)).await?;
        check(&reply).with_context(|| format!("uploading {}", file.display()))?;
        if show_progress {
            let width = 30;
            let done = (i + 1) * width / files.len();
            eprint!(
                "\r[{}{}] {}/{}",
                "=".repeat(done),
                " ".repeat(width - done),
                i + 1,
                files.len()
            );
        }
        let sha = reply.json()["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if show_progress {
            eprint!("\r");
        }
        println!("{sha}  {}", file.display());
    }
    Ok(())
}

pub async fn get(config: &Config, node: Option<&str>, sha: &str) -> anyhow::Result<()> {
    let client = connect(config, node).await?;
    let reply = client.get(&format!("/objects/{sha}")).await?;
    check(&reply)?;
    std::io::stdout().write_all(&reply.body)?;
    Ok(())
}

/// How long `tessera node restart` waits for the node to be back.
const RESTART_DEADLINE: Duration = Duration::from_secs(120);

/// `tessera node restart --id N`: asks node N to restart gracefully (it hands off its
/// leaderships and drains its requests first, then starts again in the same process) and waits
/// until it answers ready as a new process. Restarting every node in turn this way is a rolling
/// restart; with a new binary in place, a rolling upgrade.
pub async fn restart_node(config: &Config, id: u64) -> anyhow::Result<()> {
    let node = config
        .spec
        .node(id)
        .with_context(|| format!("node {id} is not in {}", config.path.display()))?;
    let client = connect(config, Some(&node.http)).await?;
    let before = readiness(&client).await?;
    let started = std::time::Instant::now();
    let reply = client
        .send(Method::POST, "/api/v1/cluster/restart", &[], Bytes::new())
        .await
        .with_context(|| format!("asking node {id} to restart"))?;
    check(&reply)?;
    let probe = Client::new(&node.http).with_timeout(Duration::from_secs(2));
    loop {
        // A node that answers ready with another start time is the restarted process.
        if let Ok(now) = readiness(&probe).await {
            if now.0 && now.1 != before.1 {
                println!(
                    "node {id} restarted and ready in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        }
        if started.elapsed() > RESTART_DEADLINE {
            bail!(
                "node {id} was not back within {} s",
                RESTART_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/readyz` of a node: whether it is ready, and when its process started.
async fn readiness(client: &Client) -> anyhow::Result<(bool, u64)> {
    let reply = client.get("/readyz").await?;
    let body = reply.json();
    Ok((
        body["ready"] == true,
        body["started_ms"].as_u64().unwrap_or(0),
    ))
}
