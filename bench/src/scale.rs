//! Random reads against the number of stored objects: the same wrk load over a node holding a
//! small store and then, after more uploads, a large one. A read path whose cost grows with the
//! store (an index that spills out of memory, lookups that walk more levels) shows up as a
//! ratio below 1.

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::Digest;
use tessera_cluster_tests::{Options, TestCluster};

use crate::load::{self, Measurement};
use crate::procstat;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Stored objects at each measurement, ascending.
    pub steps: Vec<usize>,
    /// Paths wrk chooses from at random, at most (a uniform sample of every stored object).
    pub sample: usize,
    pub connections: u64,
    pub seconds: u64,
    pub shards: u32,
    pub upload_concurrency: usize,
    /// The node's object cache in MiB (`None`: the node's default). 0 serves every read from
    /// the volume files, which separates the store's scaling from the cache's hit rate.
    pub cache_mb: Option<u64>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            steps: vec![10_000, 1_000_000],
            sample: 200_000,
            connections: 100,
            seconds: 10,
            shards: 16,
            upload_concurrency: 64,
            cache_mb: None,
        }
    }
}

/// One measurement: how many objects were stored, how the ingest up to them went, the reads.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub stored: usize,
    pub ingest_seconds: f64,
    pub ingest_per_s: f64,
    pub reads: Measurement,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    pub data_dir_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub params: Params,
    pub object_bytes: usize,
    pub steps: Vec<Step>,
}

/// Bytes of one stored object.
const OBJECT_BYTES: usize = 2048;

/// A small, valid PNG that differs from every other index: a header the upload path's probe
/// accepts (the image type and dimensions come from it), then deterministic noise.
pub fn object(index: u64) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        // The probe reads only the header; the CRC is not checked anywhere on the way.
        out.extend_from_slice(&[0; 4]);
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&64u32.to_be_bytes());
    ihdr.extend_from_slice(&32u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let noise: Vec<u8> = (0..OBJECT_BYTES - 57)
        .map(|_| {
            // xorshift64: cheap, deterministic per index.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &noise);
    chunk(&mut out, b"IEND", &[]);
    out
}

pub async fn run(params: Params) -> anyhow::Result<Report> {
    procstat::raise_nofile();
    let cluster = TestCluster::start(Options {
        nodes: 1,
        shards: params.shards,
        replication: 1,
        access_token_ttl_s: 24 * 3600,
        // A snapshot copies the whole group (every needle) into one file: with the default of
        // one per 2000 entries, storing 1 M objects would rewrite each group ~30 times over
        // (tens of GB). That is a cost of its own, outside what this benchmark reads.
        snapshot_logs: 10_000_000,
        cache_mb: params.cache_mb,
        ..Options::production()
    })
    .await;
    let pid = cluster.pid(1).context("node 1 is not running")?;
    let client = cluster.node(1).client();
    let base = format!("http://{}", cluster.node(1).http);
    let bearer = cluster.node(1).token().map(str::to_owned);
    let lists = tempfile::tempdir()?;
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    let mut steps = Vec::new();
    for &target in &params.steps {
        let started = Instant::now();
        let from = hashes.len() as u64;
        let uploaded: Vec<anyhow::Result<[u8; 32]>> =
            futures_util::stream::iter(from..target as u64)
                .map(|i| {
                    let client = client.clone();
                    async move {
                        let bytes = object(i);
                        let sha: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                        let reply = client.put_object(Bytes::from(bytes)).await?;
                        if !reply.status.is_success() {
                            bail!("upload {i} failed: {}", reply.status);
                        }
                        Ok(sha)
                    }
                })
                .buffer_unordered(params.upload_concurrency)
                .collect()
                .await;
        for sha in uploaded {
            hashes.push(sha?);
        }
        let ingest_seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "scale: {} objects stored ({:.0} uploads/s)",
            hashes.len(),
            (target as u64 - from) as f64 / ingest_seconds
        );
        let paths = lists.path().join(format!("paths-{target}.txt"));
        std::fs::write(&paths, sample_paths(&hashes, params.sample))?;
        let before = procstat::cpu_seconds(&[pid]);
        let mut reads = load::wrk(
            &base,
            bearer.as_deref(),
            &paths,
            params.connections,
            params.seconds,
        )?;
        let cpu = procstat::cpu_seconds(&[pid]) - before;
        reads.cpu_us_per_req = cpu * 1e6 / reads.requests.max(1) as f64;
        eprintln!(
            "scale: {} objects: {:.0} req/s, p99 {:.1} ms, {:.0} µs CPU/req",
            hashes.len(),
            reads.req_per_s,
            reads.p99_ms,
            reads.cpu_us_per_req
        );
        steps.push(Step {
            stored: hashes.len(),
            ingest_seconds,
            ingest_per_s: (target as u64 - from) as f64 / ingest_seconds,
            reads,
            rss_mib: procstat::rss_mib(pid),
            peak_rss_mib: procstat::peak_rss_mib(pid),
            data_dir_mib: procstat::dir_bytes(&cluster.data_dir(1)) as f64 / (1 << 20) as f64,
        });
    }
    Ok(Report {
        params,
        object_bytes: OBJECT_BYTES,
        steps,
    })
}

/// Up to `sample` object paths chosen uniformly from `hashes` (every one if there are fewer),
/// one per line: wrk's Lua script loads the list into memory in each of its threads. Index `i`
/// takes hash `i · p mod n` with `p` a prime above any store size: a permutation of the store,
/// so a sample never repeats a path and spreads over all of it.
fn sample_paths(hashes: &[[u8; 32]], sample: usize) -> String {
    const P: usize = 2_654_435_761;
    let n = hashes.len().max(1);
    (0..hashes.len().min(sample))
        .map(|i| format!("/objects/{}\n", hex::encode(hashes[i.wrapping_mul(P) % n])))
        .collect()
}

/// The report as a table; ratio = each step's req/s over the first's.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "| stored objects ({} B each) | uploads/s | wrk c = {} req/s | ratio | p99 ms | CPU µs/req | RSS MiB (peak) | data dir MiB |\n|---|---|---|---|---|---|---|---|\n",
        report.object_bytes, report.params.connections
    );
    let first = report.steps.first().map(|s| s.reads.req_per_s);
    for s in &report.steps {
        let ratio = first
            .filter(|f| *f > 0.0)
            .map(|f| format!("{:.2}", s.reads.req_per_s / f))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} | {:.1} | {:.0} | {:.0} ({:.0}) | {:.0} |\n",
            s.stored,
            s.ingest_per_s,
            s.reads.req_per_s,
            ratio,
            s.reads.p99_ms,
            s.reads.cpu_us_per_req,
            s.rss_mib,
            s.peak_rss_mib,
            s.data_dir_mib
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_distinct_and_of_the_announced_size() {
        let (a, b) = (object(1), object(2));
        assert_ne!(a, b);
        assert_eq!(a.len(), OBJECT_BYTES);
        assert!(a.starts_with(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"));
    }

    #[test]
    fn the_sample_covers_the_store_without_repeats_when_it_fits() {
        let hashes: Vec<[u8; 32]> = (0..1000u32)
            .map(|i| sha2::Sha256::digest(i.to_le_bytes()).into())
            .collect();
        let all = sample_paths(&hashes, 5000);
        let mut lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 1000);
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 1000);
        assert_eq!(sample_paths(&hashes, 100).lines().count(), 100);
    }
}
