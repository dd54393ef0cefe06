//! A Jepsen-style fault campaign against a real cluster: separate `tessera run` processes (each
//! under its own uid, its data dir on its own small tmpfs) in a private network namespace, a
//! mixed concurrent load recorded op by op, a seeded nemesis (kills, pauses, partitions, damaged
//! files, a full disk), and a checker run after the last heal. `tests/src/bin/chaos.rs` is the
//! command; `docs/reliability.md` says how to run it and what it found.

pub mod checker;
pub mod disk;
pub mod history;
pub mod linearizable;
pub mod load;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod rng;
pub mod sandbox;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use history::History;
use nemesis::{Cycle, Fault, Nemesis};
use rng::Rng;

use crate::{Options, TestCluster};

/// Node `id` runs as uid and gid `UID_BASE + id`.
const UID_BASE: u32 = 61_000;

pub struct Config {
    pub seed: u64,
    pub nodes: usize,
    pub replication: usize,
    pub shards: u32,
    pub cycles: usize,
    pub faults: Vec<Fault>,
    /// How long a fault lasts, in milliseconds (drawn per cycle).
    pub hold_ms: (u64, u64),
    /// The quiet time between a recovery and the next fault.
    pub quiet_ms: u64,
    pub disk_mb: u64,
    /// The harness's short Raft timing instead of the production defaults.
    pub fast_failover: bool,
    /// Where the report and the history (JSON lines) are written.
    pub out: PathBuf,
}

/// What a campaign found; `violations` decide the exit code (and, when asked, `findings`).
pub struct Outcome {
    pub report: String,
    pub violations: usize,
    /// Cycles with at least one finding (a promise not kept that is not a safety violation).
    pub cycles_with_findings: usize,
}

/// Runs one campaign. The caller must have entered the sandbox ([`sandbox::enter`]).
pub async fn run(config: Config) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut cluster = TestCluster::create(&Options {
        nodes: config.nodes,
        shards: config.shards,
        replication: config.replication,
        snapshot_logs: 500,
        keep_logs: 100,
        fast_failover: config.fast_failover,
        uid_base: Some(UID_BASE),
        // The load's and the checker's tokens must outlive the campaign: a 200-cycle run and
        // its checker take over an hour, and seed 306's checker met "token expired" on 139 930
        // reads (each counted as a violation) after its first 4 512.
        access_token_ttl_s: 24 * 3600,
        ..Options::default()
    });
    let root = cluster
        .data_dir(1)
        .parent()
        .map(PathBuf::from)
        .ok_or("data dir")?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    for node in &cluster.nodes {
        disk::mount_tmpfs(
            &cluster.data_dir(node.id),
            config.disk_mb,
            UID_BASE + node.id as u32,
        )
        .map_err(|e| e.to_string())?;
    }
    cluster.boot().await;
    let ports = cluster
        .nodes
        .iter()
        .map(|n| {
            Ok((
                n.id,
                n.rpc
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("rpc port")?,
            ))
        })
        .collect::<Result<Vec<(u64, u16)>, &str>>()?;
    let firewall = net::Firewall::new(UID_BASE, ports).map_err(|e| e.to_string())?;
    let world = Arc::new(load::setup(&cluster).await?);
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load::start(world.clone(), history.clone(), stop.clone(), &mut rng);
    history.event(format!(
        "seed {}: load started, {} cycles of {:?}",
        config.seed,
        config.cycles,
        config.faults.iter().map(|f| f.name()).collect::<Vec<_>>()
    ));

    let mut nemesis = Nemesis::new(&mut cluster, firewall, &history, rng.fork(), config.hold_ms);
    let mut cycles: Vec<Cycle> = Vec::new();
    for number in 1..=config.cycles {
        let fault = *nemesis.rng.pick(&config.faults);
        cycles.push(nemesis.cycle(number, fault).await);
        tokio::time::sleep(Duration::from_millis(config.quiet_ms)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let broken = std::mem::take(&mut nemesis.broken);
    drop(nemesis);
    history.event("load stopped; checking".into());
    cluster.wait_ready().await;
    let ops = history.ops();
    let end_us = history.now_us();
    // The history first: a checker that finds something can be read against it.
    save(&config.out, "(checking)", &ops, &history, &cycles, &cluster)
        .map_err(|e| e.to_string())?;
    let findings = checker::check(&world, &ops, end_us, &broken).await;
    let header = format!(
        "Seed {}, {} nodes, RF {}, {} shards, {} cycles, faults held {}–{} ms, {} Raft timing, {:.0} s in all.",
        config.seed,
        config.nodes,
        config.replication,
        config.shards,
        cycles.len(),
        config.hold_ms.0,
        config.hold_ms.1,
        if config.fast_failover { "short (harness)" } else { "production" },
        started.elapsed().as_secs_f64()
    );
    let report = report::render(&header, &cycles, &ops, &findings);
    save(&config.out, &report, &ops, &history, &cycles, &cluster).map_err(|e| e.to_string())?;
    // Stop the nodes and unmount their disks, so the temporary directory can be removed.
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    for id in ids {
        if cluster.node(id).is_running() {
            cluster.kill(id);
        }
        let _ = sandbox::run("umount", &[&cluster.data_dir(id).display().to_string()]);
    }
    Ok(Outcome {
        report,
        violations: findings.violations.len(),
        cycles_with_findings: cycles.iter().filter(|c| !c.findings.is_empty()).count(),
    })
}

/// Writes the report, the history and the events as JSON lines, the cycles and the nodes' logs.
fn save(
    out: &std::path::Path,
    report: &str,
    ops: &[history::Op],
    history: &History,
    cycles: &[Cycle],
    cluster: &TestCluster,
) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.md"), report)?;
    std::fs::write(out.join("history.jsonl"), json_lines(ops))?;
    std::fs::write(out.join("events.jsonl"), json_lines(&history.events()))?;
    std::fs::write(out.join("cycles.jsonl"), json_lines(cycles))?;
    for node in &cluster.nodes {
        std::fs::write(
            out.join(format!("node-{}.log", node.id)),
            cluster.log(node.id),
        )?;
    }
    Ok(())
}

fn json_lines<T: serde::Serialize>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap_or_default() + "\n")
        .collect()
}
