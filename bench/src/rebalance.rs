//! Adding a node to a loaded cluster: a 3-node cluster holding the corpus (≥ 2 GB by default)
//! gets a 4th node while a reader GETs random objects at a fixed rate (open loop: requests are
//! sent on schedule whether or not earlier ones have answered, so a stall shows as latency
//! instead of as fewer requests). Reports the bytes that moved, the time until every move was
//! done, GET p50/p99 before, during and after, and failed requests — per snapshot rate limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tessera_client::{Client, Method};
use tessera_cluster_tests::{Options, TestCluster};

use crate::corpus::Image;
use crate::procstat;

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `[raft] snapshot_bytes_per_s` of the run.
    pub snapshot_mib_per_s: u64,
    pub stored_bytes: u64,
    /// Bytes of objects on the new node once every move was done.
    pub moved_bytes: u64,
    /// Shard groups whose replicas changed: one replica moved in each when a node is added.
    pub groups_moved: usize,
    /// Shard groups (replicas: three per group).
    pub groups: usize,
    /// From the add until the node set reported no move to go.
    pub converge_s: f64,
    pub before: Phase,
    pub during: Phase,
    pub after: Phase,
}

/// GET latencies of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phase {
    pub requests: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One GET: when it was scheduled, how long it took from then, and whether it succeeded.
struct Sample {
    at: Instant,
    latency: Duration,
    ok: bool,
}

/// Parameters of the benchmark.
pub struct Params {
    /// GETs per second, over the three original nodes.
    pub rate: u64,
    /// Seconds measured before the add and after the moves.
    pub settle_s: u64,
    /// Snapshot rate limits to compare, in MiB/s.
    pub limits: Vec<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rate: 200,
            settle_s: 15,
            limits: vec![64, 16],
        }
    }
}

/// Runs the scenario once per snapshot rate limit, each on a fresh cluster.
pub async fn run(images: &[Image], params: &Params) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &limit in &params.limits {
        runs.push(once(images, params, limit).await?);
    }
    Ok(runs)
}

async fn once(images: &[Image], params: &Params, limit_mib: u64) -> anyhow::Result<Run> {
    let mut cluster = TestCluster::start(Options {
        shards: 32,
        // Short logs: a new replica gets its shard by snapshot (paced), as it does once a
        // shard has outgrown its log; catching up from the log is not paced.
        snapshot_logs: 100,
        keep_logs: 20,
        snapshot_bytes_per_s: Some(limit_mib << 20),
        ..Options::production()
    })
    .await;
    let stored_bytes = upload(&cluster, images).await?;
    let shas: Arc<Vec<String>> = Arc::new(images.iter().map(|i| i.sha256.clone()).collect());
    let clients: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn(read_at_rate(
        clients,
        shas,
        params.rate,
        samples.clone(),
        stop.clone(),
    ));
    let settle = Duration::from_secs(params.settle_s);
    tokio::time::sleep(settle).await;

    let before = holders(&cluster).await?;
    let admin = cluster.node(1).client();
    let four = cluster.start_new_node().await;
    let node = cluster.node(four);
    let body = json!({"id": four, "http": node.http, "rpc": node.rpc}).to_string();
    let added_at = Instant::now();
    let reply = admin
        .send(
            Method::POST,
            "/api/v1/cluster/nodes",
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await?;
    if reply.status != 202 {
        bail!("adding node {four}: {} {:?}", reply.status, reply.json());
    }
    let deadline = added_at + Duration::from_secs(3600);
    loop {
        let nodes = admin.get("/api/v1/cluster/nodes").await?.json();
        if nodes["moves"]["to_go"]
            .as_array()
            .is_some_and(|to_go| to_go.is_empty())
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the moves did not finish within an hour: {nodes}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged_at = Instant::now();
    tokio::time::sleep(settle).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.await?;
    let after = holders(&cluster).await?;
    let groups_moved = before
        .iter()
        .zip(&after)
        .skip(1)
        .filter(|(old, new)| old != new)
        .count();
    let moved_bytes = procstat::dir_bytes(&cluster.data_dir(four).join("db/volumes"));
    let samples = samples.lock().map_err(|_| anyhow::anyhow!("samples"))?;
    let phase = |from: Option<Instant>, to: Option<Instant>| {
        summarise(
            samples
                .iter()
                .filter(|s| from.is_none_or(|f| s.at >= f) && to.is_none_or(|t| s.at < t)),
        )
    };
    Ok(Run {
        snapshot_mib_per_s: limit_mib,
        stored_bytes,
        moved_bytes,
        groups_moved,
        groups: before.len() - 1,
        converge_s: (converged_at - added_at).as_secs_f64(),
        before: phase(None, Some(added_at)),
        during: phase(Some(added_at), Some(converged_at)),
        after: phase(Some(converged_at), None),
    })
}

/// Uploads the corpus with four uploads in flight; returns the bytes stored.
async fn upload(cluster: &TestCluster, images: &[Image]) -> anyhow::Result<u64> {
    let clients: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let paths: Vec<std::path::PathBuf> = images.iter().map(|i| i.path.clone()).collect();
    let chunks: Vec<Vec<std::path::PathBuf>> = paths
        .chunks(paths.len().div_ceil(4).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let client = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0u64;
            for path in chunk {
                let bytes = tokio::fs::read(&path).await?;
                total += bytes.len() as u64;
                let reply = client.put_object(Bytes::from(bytes)).await?;
                if !reply.status.is_success() {
                    bail!("upload of {} failed: {}", path.display(), reply.status);
                }
            }
            Ok::<_, anyhow::Error>(total)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total)
}

/// GETs a random object every `1/rate` s through the clients in turn until `stop`, each from
/// its scheduled time (open loop), recording every answer.
async fn read_at_rate(
    clients: Vec<Client>,
    shas: Arc<Vec<String>>,
    rate: u64,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let scheduled = tick.tick().await.into_std();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let sha = shas[(state % shas.len() as u64) as usize].clone();
        let client = clients[n % clients.len()].clone();
        n += 1;
        let samples = samples.clone();
        tokio::spawn(async move {
            let ok = match client.get(&format!("/objects/{sha}")).await {
                Ok(reply) => reply.status == 200,
                Err(_) => false,
            };
            if let Ok(mut samples) = samples.lock() {
                samples.push(Sample {
                    at: scheduled,
                    latency: scheduled.elapsed(),
                    ok,
                });
            }
        });
    }
}

fn summarise<'a>(samples: impl Iterator<Item = &'a Sample>) -> Phase {
    let mut latencies = Vec::new();
    let mut failed = 0;
    for s in samples {
        latencies.push(s.latency.as_secs_f64() * 1000.0);
        failed += usize::from(!s.ok);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Phase {
        requests: latencies.len(),
        failed,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

/// The voters of every group, from the cluster status.
async fn holders(cluster: &TestCluster) -> anyhow::Result<Vec<Vec<u64>>> {
    let status = cluster.status().await;
    let groups = status["groups"].as_array().context("groups")?;
    Ok(groups
        .iter()
        .map(|g| {
            let mut voters: Vec<u64> = g["voters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            voters.sort_unstable();
            voters
        })
        .collect())
}
