//! Snapshot catch-up at scale: a replica that was down while a few hundred MB went into its shard
//! (long enough for the leader to compact its log) rejoins while uploads continue, and must
//! catch up through a streamed snapshot.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use tessera_cluster_tests::{Options, TestCluster};

use crate::corpus::Image;
use crate::procstat;

#[derive(Clone, Debug, Serialize)]
pub struct CatchUp {
    /// Bytes uploaded while the replica was down (one shard holds them all).
    pub bytes_while_down: u64,
    /// Bytes uploaded while it caught up.
    pub bytes_during_catch_up: u64,
    /// From restart until its applied index matched the leader's.
    pub seconds: f64,
    /// The snapshot index the replica reported afterwards.
    pub snapshot_index: u64,
    pub peak_rss_mib: f64,
}

fn applied_of(status: &serde_json::Value, node: &str) -> Option<(u64, u64)> {
    let group = &status["groups"][1];
    let leader = group["leader"].as_u64()?.to_string();
    let target = group["replicas"][leader.as_str()]["applied"].as_u64()?;
    let mine = group["replicas"][node]["applied"].as_u64()?;
    Some((mine, target))
}

/// Runs the scenario with one shard, so every upload lands in the group being caught up.
pub async fn run(images: &[Image], during: usize) -> anyhow::Result<CatchUp> {
    if images.len() <= during {
        bail!("need more images than the {during} uploaded during catch-up");
    }
    let mut cluster = TestCluster::start(Options {
        shards: 1,
        snapshot_logs: 200,
        keep_logs: 50,
        ..Options::production()
    })
    .await;
    let lagging = 3;
    cluster.kill(lagging);
    let client = cluster.node(1).client();
    let (down, rest) = images.split_at(images.len() - during);
    let mut bytes_while_down = 0;
    for image in down {
        let bytes = tokio::fs::read(&image.path).await?;
        bytes_while_down += bytes.len() as u64;
        let reply = client.put_object(Bytes::from(bytes)).await?;
        if !reply.status.is_success() {
            bail!("upload failed: {}", reply.status);
        }
    }
    let writer_client = cluster.node(2).client();
    let late: Vec<std::path::PathBuf> = rest.iter().map(|i| i.path.clone()).collect();
    let writer = tokio::spawn(async move {
        let mut total = 0u64;
        for path in late {
            let bytes = tokio::fs::read(&path).await?;
            total += bytes.len() as u64;
            let reply = writer_client.put_object(Bytes::from(bytes)).await?;
            if !reply.status.is_success() {
                bail!("upload during catch-up failed: {}", reply.status);
            }
        }
        Ok::<_, anyhow::Error>(total)
    });
    let started = Instant::now();
    cluster.restart(lagging).await;
    let bytes_during_catch_up = writer.await??;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = cluster.status().await;
        if let Some((mine, target)) = applied_of(&status, &lagging.to_string()) {
            if mine >= target {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("node {lagging} did not catch up in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = cluster.status().await;
    let snapshot_index = status["groups"][1]["replicas"][lagging.to_string().as_str()]["snapshot"]
        .as_u64()
        .context("the caught-up node reports no snapshot: it did not catch up through one")?;
    let peak_rss_mib = cluster
        .pid(lagging)
        .map(procstat::peak_rss_mib)
        .unwrap_or(0.0);
    Ok(CatchUp {
        bytes_while_down,
        bytes_during_catch_up,
        seconds,
        snapshot_index,
        peak_rss_mib,
    })
}
