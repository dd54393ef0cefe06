//! The serving benchmark: ingest a corpus into a fresh cluster, then the paper's `ab` table and
//! random-corpus `wrk` runs against Tessera and nginx alternately, with server CPU per request.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tessera_cluster_tests::{Options, TestCluster};

use crate::corpus::{self, Image};
use crate::disk;
use crate::load::{self, Measurement};
use crate::nginx::Nginx;
use crate::procstat;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub images: usize,
    pub seed: u64,
    /// `ab -n max(10c, 10000) -c c` for each of these (`ab_requests`).
    pub concurrencies: Vec<u64>,
    /// `wrk` connection counts for the random-corpus runs.
    pub wrk_connections: Vec<u64>,
    pub wrk_seconds: u64,
    pub nodes: usize,
    pub shards: u32,
    pub replication: usize,
    pub ingest_concurrency: usize,
    /// Images uploaded to the 4-node cluster that measures forwarded reads (0 skips it).
    pub forwarding_images: usize,
    /// MiB `dd` writes to measure the disk's flushed sequential bandwidth.
    pub dd_mib: u64,
}

impl Params {
    pub fn full() -> Params {
        Params {
            images: 2000,
            seed: 1,
            concurrencies: vec![1, 10, 100, 1000, 10_000],
            wrk_connections: vec![100, 1000],
            wrk_seconds: 10,
            nodes: 3,
            shards: 64,
            replication: 3,
            ingest_concurrency: 16,
            forwarding_images: 400,
            dd_mib: 512,
        }
    }

    pub fn quick() -> Params {
        Params {
            concurrencies: vec![1, 10, 100, 1000],
            wrk_seconds: 4,
            ..Params::full()
        }
    }
}

/// Requests of one ab cell: ten per connection, as the paper's table runs (100 000 at
/// c = 10 000), but at least [`MIN_AB_REQUESTS`]: ten requests at c = 1 last about 2 ms, and
/// ratios of such runs swung between 0.4 and 4.8 from one run to the next.
fn ab_requests(c: u64) -> u64 {
    (10 * c).max(MIN_AB_REQUESTS)
}

const MIN_AB_REQUESTS: u64 = 10_000;

/// Tessera's and nginx's figures for one load, and their ratio.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub mode: String,
    pub concurrency: u64,
    pub tessera: Measurement,
    pub nginx: Measurement,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Ingest {
    pub images: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub mb_per_s: f64,
    pub replication: usize,
    pub failed: usize,
    /// Bytes the nodes wrote to storage per byte uploaded (all replicas together), counted over
    /// the whole run.
    pub write_amplification: f64,
    /// The same, per replica.
    pub write_amplification_per_replica: f64,
    /// Size of the data directories per byte uploaded, all replicas together.
    pub disk_bytes_per_uploaded_byte: f64,
    /// The disk's sequential write bandwidth with fdatasync (`dd … conv=fdatasync` into the
    /// data directories' filesystem, right after the ingest), MB/s.
    pub disk_mb_per_s: f64,
    /// What the ingest made the disk write (MB/s × replication × write amplification per
    /// replica) as a share of that bandwidth.
    pub disk_share: f64,
}

/// Reads through a node without a replica (forwarded over the internal RPC) against reads of
/// local objects on the same node, in a 4-node cluster with replication 3.
#[derive(Clone, Debug, Serialize)]
pub struct Forwarding {
    pub connections: u64,
    pub local: Measurement,
    pub forwarded: Measurement,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub params: Params,
    pub object_bytes: usize,
    pub ingest: Ingest,
    pub rows: Vec<Row>,
    pub peak_rss_mib: Vec<f64>,
    /// CPU the nodes use with no load at all (Raft heartbeats of every group), in ms per second.
    pub idle_cpu_ms_per_s: f64,
    /// Object cache hits and misses of the serving node over the whole run.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub forwarding: Option<Forwarding>,
}

/// One side of a comparison: where to send requests and whose CPU to count.
struct Target {
    base: String,
    pids: Vec<u32>,
    /// Bearer token sent with every request (Tessera), or none (nginx).
    bearer: Option<String>,
}

impl Target {
    fn measure(
        &self,
        run: impl FnOnce() -> anyhow::Result<Measurement>,
    ) -> anyhow::Result<Measurement> {
        let before = procstat::cpu_seconds(&self.pids);
        let mut m = run()?;
        let cpu = procstat::cpu_seconds(&self.pids) - before;
        m.cpu_us_per_req = if m.requests > 0 {
            cpu * 1e6 / m.requests as f64
        } else {
            0.0
        };
        Ok(m)
    }
}

pub async fn run(params: Params) -> anyhow::Result<Report> {
    let nofile = procstat::raise_nofile();
    let max_c = params
        .concurrencies
        .iter()
        .chain(&params.wrk_connections)
        .copied()
        .max()
        .unwrap_or(1);
    if nofile < max_c + 100 {
        bail!("open-file limit {nofile} is too low for {max_c} connections");
    }
    let corpus_dir = std::env::temp_dir().join(format!("tessera-bench-corpus-{}", params.seed));
    let started = Instant::now();
    let images = {
        let (dir, count, seed) = (corpus_dir.clone(), params.images, params.seed);
        tokio::task::spawn_blocking(move || corpus::generate(&dir, count, seed)).await??
    };
    eprintln!(
        "corpus: {} JPEGs, {:.1} MB in {} ({:.1}s)",
        images.len(),
        images.iter().map(|i| i.size).sum::<usize>() as f64 / 1e6,
        corpus_dir.display(),
        started.elapsed().as_secs_f64()
    );

    let cluster = TestCluster::start(Options {
        nodes: params.nodes,
        shards: params.shards,
        replication: params.replication,
        ..Options::production()
    })
    .await;
    let node_ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let node_pids: Vec<u32> = node_ids.iter().filter_map(|id| cluster.pid(*id)).collect();
    let written_before = procstat::bytes_written(&node_pids);
    let mut ingest = ingest(&cluster, &images, &params).await?;
    eprintln!(
        "ingest: {:.0} images/s, {:.1} MB/s (replication {})",
        ingest.images_per_s, ingest.mb_per_s, ingest.replication
    );
    if ingest.failed > 0 {
        bail!("{} uploads failed", ingest.failed);
    }
    let data_fs = cluster.data_dir(1);
    ingest.disk_mb_per_s = {
        let (dir, mib) = (
            data_fs.parent().unwrap_or(&data_fs).to_path_buf(),
            params.dd_mib,
        );
        tokio::task::spawn_blocking(move || disk::fdatasync_mb_per_s(&dir, mib)).await??
    };
    eprintln!(
        "disk: {:.0} MB/s sequential with fdatasync (dd)",
        ingest.disk_mb_per_s
    );

    let nginx = Nginx::start(&corpus_dir)?;
    let idle_cpu_ms_per_s = idle_cpu(&node_pids).await;
    // CPU is counted for the node that serves the requests: the other replicas take no part in
    // a local read (their idle cost is reported separately).
    let serving: Vec<u32> = cluster.pid(1).into_iter().collect();
    let tessera = Target {
        base: format!("http://{}", cluster.node(1).http),
        pids: serving,
        bearer: cluster.node(1).token().map(str::to_owned),
    };
    let reference = Target {
        base: format!("http://127.0.0.1:{}", nginx.port),
        pids: nginx.pids(),
        bearer: None,
    };
    let median = corpus::median(&images);
    let tessera_url = format!("{}/objects/{}", tessera.base, median.sha256);
    let nginx_url = format!("{}/{}", reference.base, median.name);

    let mut rows = Vec::new();
    for keep_alive in [false, true] {
        let mode = if keep_alive { "ab -k" } else { "ab" };
        for (i, &c) in params.concurrencies.iter().enumerate() {
            let n = ab_requests(c);
            let run_t = || {
                tessera
                    .measure(|| load::ab(&tessera_url, tessera.bearer.as_deref(), n, c, keep_alive))
            };
            let run_n = || reference.measure(|| load::ab(&nginx_url, None, n, c, keep_alive));
            let (t, g) = alternate(i, run_t, run_n)?;
            eprintln!(
                "{mode:>6} c={c:<6} tessera {:>8.0} req/s  nginx {:>8.0} req/s",
                t.req_per_s, g.req_per_s
            );
            rows.push(Row {
                mode: mode.into(),
                concurrency: c,
                tessera: t,
                nginx: g,
            });
        }
    }

    let lists = tempfile::tempdir()?;
    let tessera_paths = lists.path().join("tessera.txt");
    let nginx_paths = lists.path().join("nginx.txt");
    std::fs::write(
        &tessera_paths,
        path_list(&images, |i| format!("/objects/{}", i.sha256)),
    )?;
    std::fs::write(&nginx_paths, path_list(&images, |i| format!("/{}", i.name)))?;
    for (i, &c) in params.wrk_connections.iter().enumerate() {
        let secs = params.wrk_seconds;
        let run_t = || {
            tessera.measure(|| {
                load::wrk(
                    &tessera.base,
                    tessera.bearer.as_deref(),
                    &tessera_paths,
                    c,
                    secs,
                )
            })
        };
        let run_n =
            || reference.measure(|| load::wrk(&reference.base, None, &nginx_paths, c, secs));
        let (t, g) = alternate(i, run_t, run_n)?;
        eprintln!(
            "   wrk c={c:<6} tessera {:>8.0} req/s  nginx {:>8.0} req/s",
            t.req_per_s, g.req_per_s
        );
        rows.push(Row {
            mode: "wrk random".into(),
            concurrency: c,
            tessera: t,
            nginx: g,
        });
    }
    let peak_rss_mib = node_pids
        .iter()
        .map(|p| procstat::peak_rss_mib(*p))
        .collect();
    let (cache_hits, cache_misses) = cache_stats(&cluster.node(1).client()).await;
    // Counted at the end, so that memtable flushes and compactions caused by the ingest are in.
    let written = procstat::bytes_written(&node_pids) - written_before;
    ingest.write_amplification = written as f64 / ingest.bytes.max(1) as f64;
    ingest.write_amplification_per_replica = ingest.write_amplification / ingest.replication as f64;
    ingest.disk_share =
        ingest.mb_per_s * ingest.write_amplification / ingest.disk_mb_per_s.max(1e-9);
    drop(nginx);
    drop(cluster);
    let forwarding = match params.forwarding_images {
        0 => None,
        n => Some(forwarding(&images[..n.min(images.len())], &params).await?),
    };
    Ok(Report {
        params,
        object_bytes: median.size,
        ingest,
        rows,
        peak_rss_mib,
        idle_cpu_ms_per_s,
        cache_hits,
        cache_misses,
        forwarding,
    })
}

/// Runs both sides, Tessera first on even cells and nginx first on odd ones, so that drift on a
/// shared machine does not always favour the same side.
fn alternate(
    cell: usize,
    tessera: impl FnOnce() -> anyhow::Result<Measurement>,
    nginx: impl FnOnce() -> anyhow::Result<Measurement>,
) -> anyhow::Result<(Measurement, Measurement)> {
    if cell.is_multiple_of(2) {
        let t = tessera()?;
        Ok((t, nginx()?))
    } else {
        let n = nginx()?;
        Ok((tessera()?, n))
    }
}

/// CPU of `pids` over two quiet seconds, in ms per second.
async fn idle_cpu(pids: &[u32]) -> f64 {
    let before = procstat::cpu_seconds(pids);
    let window = std::time::Duration::from_secs(2);
    tokio::time::sleep(window).await;
    (procstat::cpu_seconds(pids) - before) * 1000.0 / window.as_secs_f64()
}

/// The serving node's object cache counters, from its metrics.
async fn cache_stats(client: &tessera_client::Client) -> (u64, u64) {
    let text = match client.get("/metrics").await {
        Ok(reply) => String::from_utf8_lossy(&reply.body).into_owned(),
        Err(_) => return (0, 0),
    };
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (value("tessera_cache_hits "), value("tessera_cache_misses "))
}

/// wrk over objects local to node 1 and over objects it must fetch from another node.
async fn forwarding(images: &[Image], params: &Params) -> anyhow::Result<Forwarding> {
    let cluster = TestCluster::start(Options {
        nodes: 4,
        shards: 16,
        ..Options::production()
    })
    .await;
    let client = cluster.node(1).client();
    for image in images {
        let bytes = tokio::fs::read(&image.path).await?;
        let reply = client.put_object(Bytes::from(bytes)).await?;
        if !reply.status.is_success() {
            bail!("upload to the forwarding cluster failed: {}", reply.status);
        }
    }
    let status = client.get("/api/v1/cluster").await?.json();
    let shards = u128::from(status["shards"].as_u64().context("shards")?);
    let on_node_1 = |sha: &str| -> bool {
        let prefix = u64::from_str_radix(&sha[..16], 16).unwrap_or(0);
        let group = ((u128::from(prefix) * shards) >> 64) as usize + 1;
        status["groups"][group]["voters"]
            .as_array()
            .is_some_and(|v| v.iter().any(|n| n.as_u64() == Some(1)))
    };
    let (local, remote): (Vec<&Image>, Vec<&Image>) =
        images.iter().partition(|i| on_node_1(&i.sha256));
    if local.is_empty() || remote.is_empty() {
        bail!(
            "forwarding needs objects on and off node 1 ({} / {})",
            local.len(),
            remote.len()
        );
    }
    let lists = tempfile::tempdir()?;
    let list = |name: &str, set: &[&Image]| -> anyhow::Result<PathBuf> {
        let path = lists.path().join(name);
        std::fs::write(
            &path,
            path_list(set.iter().copied(), |i| format!("/objects/{}", i.sha256)),
        )?;
        Ok(path)
    };
    let (local_list, remote_list) = (list("local.txt", &local)?, list("remote.txt", &remote)?);
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .filter_map(|n| cluster.pid(n.id))
        .collect();
    let target = Target {
        base: format!("http://{}", cluster.node(1).http),
        pids,
        bearer: cluster.node(1).token().map(str::to_owned),
    };
    let c = params.wrk_connections.first().copied().unwrap_or(100);
    let secs = params.wrk_seconds;
    let local = target
        .measure(|| load::wrk(&target.base, target.bearer.as_deref(), &local_list, c, secs))?;
    let forwarded = target.measure(|| {
        load::wrk(
            &target.base,
            target.bearer.as_deref(),
            &remote_list,
            c,
            secs,
        )
    })?;
    Ok(Forwarding {
        connections: c,
        local,
        forwarded,
    })
}

fn path_list<'a>(
    images: impl IntoIterator<Item = &'a Image>,
    path: impl Fn(&Image) -> String,
) -> String {
    images.into_iter().map(|i| path(i) + "\n").collect()
}

async fn ingest(
    cluster: &TestCluster,
    images: &[Image],
    params: &Params,
) -> anyhow::Result<Ingest> {
    let clients: Vec<_> = cluster.nodes.iter().map(|n| n.client()).collect();
    let disk_before: u64 = cluster
        .nodes
        .iter()
        .map(|n| procstat::dir_bytes(&cluster.data_dir(n.id)))
        .sum();
    let started = Instant::now();
    let results: Vec<anyhow::Result<u64>> = futures_util::stream::iter(images.iter().enumerate())
        .map(|(i, image)| {
            let client = clients[i % clients.len()].clone();
            let path: PathBuf = image.path.clone();
            async move {
                let bytes = tokio::fs::read(&path)
                    .await
                    .with_context(|| path.display().to_string())?;
                let len = bytes.len() as u64;
                let reply = client.put_object(Bytes::from(bytes)).await?;
                if !reply.status.is_success() {
                    bail!("upload of {} failed: {}", path.display(), reply.status);
                }
                Ok(len)
            }
        })
        .buffer_unordered(params.ingest_concurrency)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first upload failure: {e:#}");
    }
    let bytes: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();

    let disk_after: u64 = cluster
        .nodes
        .iter()
        .map(|n| procstat::dir_bytes(&cluster.data_dir(n.id)))
        .sum();
    let replicas = params.replication.min(params.nodes);
    let per_byte = |v: u64| {
        if bytes > 0 {
            v as f64 / bytes as f64
        } else {
            0.0
        }
    };
    Ok(Ingest {
        images: images.len() - failed,
        bytes,
        seconds,
        images_per_s: (images.len() - failed) as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        replication: replicas,
        failed,
        // Filled in at the end of the run.
        write_amplification: 0.0,
        write_amplification_per_replica: 0.0,
        disk_bytes_per_uploaded_byte: per_byte(disk_after.saturating_sub(disk_before)),
        disk_mb_per_s: 0.0,
        disk_share: 0.0,
    })
}
