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
use crate::load::{self, Measurement};
use crate::nginx::Nginx;
use crate::procstat;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub images: usize,
    pub seed: u64,
    /// `ab -n 10c -c c` for each of these.
    pub concurrencies: Vec<u64>,
    /// `wrk` connection counts for the random-corpus runs.
    pub wrk_connections: Vec<u64>,
    pub wrk_seconds: u64,
    pub nodes: usize,
    pub shards: u32,
    pub replication: usize,
    pub ingest_concurrency: usize,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub params: Params,
    pub object_bytes: usize,
    pub ingest: Ingest,
    pub rows: Vec<Row>,
    pub peak_rss_mib: Vec<f64>,
}

/// One side of a comparison: where to send requests and whose CPU to count.
struct Target {
    base: String,
    pids: Vec<u32>,
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
        fast_failover: false,
        ..Options::default()
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

    let nginx = Nginx::start(&corpus_dir)?;
    let tessera = Target {
        base: format!("http://{}", cluster.node(1).http),
        pids: node_pids.clone(),
    };
    let reference = Target {
        base: format!("http://127.0.0.1:{}", nginx.port),
        pids: nginx.pids(),
    };
    let median = corpus::median(&images);
    let tessera_url = format!("{}/objects/{}", tessera.base, median.sha256);
    let nginx_url = format!("{}/{}", reference.base, median.name);

    let mut rows = Vec::new();
    for keep_alive in [false, true] {
        let mode = if keep_alive { "ab -k" } else { "ab" };
        for (i, &c) in params.concurrencies.iter().enumerate() {
            let n = 10 * c;
            let run_t = || tessera.measure(|| load::ab(&tessera_url, n, c, keep_alive));
            let run_n = || reference.measure(|| load::ab(&nginx_url, n, c, keep_alive));
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
        let run_t = || tessera.measure(|| load::wrk(&tessera.base, &tessera_paths, c, secs));
        let run_n = || reference.measure(|| load::wrk(&reference.base, &nginx_paths, c, secs));
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
    // Counted at the end, so that memtable flushes and compactions caused by the ingest are in.
    let written = procstat::bytes_written(&node_pids) - written_before;
    ingest.write_amplification = written as f64 / ingest.bytes.max(1) as f64;
    ingest.write_amplification_per_replica = ingest.write_amplification / ingest.replication as f64;
    Ok(Report {
        params,
        object_bytes: median.size,
        ingest,
        rows,
        peak_rss_mib,
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

fn path_list(images: &[Image], path: impl Fn(&Image) -> String) -> String {
    images.iter().map(|i| path(i) + "\n").collect()
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
    })
}
