//! `tessera node add|remove|decommission`: changing the node set of a running cluster, and the
//! node-set part of `tessera status`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};

use crate::commands::{check, connect};
use crate::config::Config;

/// How often `--wait` reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to do to node `id`.
pub enum Change {
    Add,
    Remove,
    Decommission,
}

/// Asks a member of the cluster other than `id` (a node being added cannot answer for the
/// cluster yet; one being removed may be gone) to make `change`, prints the node set, and with
/// `wait` follows the moves until none is left.
pub async fn change(config: &Config, id: u64, change: Change, wait: bool) -> anyhow::Result<()> {
    let client = connect_other(config, id).await?;
    let reply = match change {
        Change::Add => {
            let node = config.spec.node(id).with_context(|| {
                format!(
                    "node {id} is not in {}: add its [[node]] entry (id, http, rpc, data) first",
                    config.path.display()
                )
            })?;
            let body = json!({ "id": id, "http": node.http, "rpc": node.rpc });
            client
                .send(
                    Method::POST,
                    "/api/v1/cluster/nodes",
                    &[("content-type", "application/json")],
                    Bytes::from(body.to_string()),
                )
                .await?
        }
        Change::Remove | Change::Decommission => {
            let query = if matches!(change, Change::Decommission) {
                "?decommission=true"
            } else {
                ""
            };
            client
                .send(
                    Method::DELETE,
                    &format!("/api/v1/cluster/nodes/{id}{query}"),
                    &[],
                    Bytes::new(),
                )
                .await?
        }
    };
    check(&reply)?;
    print!("{}", render(&reply.json())?);
    if !wait {
        return Ok(());
    }
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let reply = client.get("/api/v1/cluster/nodes").await?;
        check(&reply)?;
        let nodes = reply.json();
        let to_go = nodes["moves"]["to_go"].as_array().map_or(0, Vec::len);
        let leaving = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["state"] == "leaving");
        if to_go == 0 && !leaving {
            println!("done: every replica is where the node set says");
            return Ok(());
        }
        let eta = nodes["moves"]["eta_s"]
            .as_u64()
            .map(|s| format!(", about {s} s to go"))
            .unwrap_or_default();
        println!(
            "{to_go} group(s) to move, {} moving now{eta}",
            nodes["moves"]["running"].as_array().map_or(0, Vec::len)
        );
    }
}

/// A client, with the CLI's credentials, of the first member of the config other than `id`
/// that answers.
async fn connect_other(config: &Config, id: u64) -> anyhow::Result<Client> {
    for n in config.spec.nodes.iter().filter(|n| n.id != id) {
        let probe = Client::new(&n.http).with_timeout(Duration::from_secs(2));
        if probe.get("/healthz").await.is_ok() {
            return connect(config, Some(&n.http)).await;
        }
    }
    bail!(
        "no node of {} other than node {id} answers; is the cluster running?",
        config.path.display()
    )
}

/// The node set and the moves as `tessera status` prints them.
pub fn render(nodes: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "node set v{}, placement v{}",
        nodes["members_version"], nodes["placement_version"]
    )?;
    writeln!(out, "node  state    up    groups (now → target)")?;
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:>4}  {:<8} {:<5} {} → {}",
            n["id"],
            n["state"].as_str().unwrap_or(""),
            if n["up"] == true { "up" } else { "DOWN" },
            n["holds"],
            n["target"]
        )?;
    }
    let moves = &nodes["moves"];
    let to_go = moves["to_go"].as_array().map_or(0, Vec::len);
    if to_go > 0 {
        writeln!(
            out,
            "moves: {to_go} group(s) to go, {} running (limit {}), {} done{}",
            moves["running"].as_array().map_or(0, Vec::len),
            moves["limit"],
            moves["done"],
            moves["eta_s"]
                .as_u64()
                .map(|s| format!(", ETA {s} s"))
                .unwrap_or_default()
        )?;
        for m in moves["running"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  group {:>4}: {} → {} for {:.1} s ({} retries)",
                m["group"],
                m["from"],
                m["to"],
                m["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                m["retries"]
            )?;
        }
    } else {
        writeln!(out, "moves: none to go")?;
    }
    Ok(out)
}
