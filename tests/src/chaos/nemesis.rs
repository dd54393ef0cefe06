//! The nemesis: one fault per cycle, chosen with the seeded generator (the kinds, targets drawn
//! by index and durations repeat for a seed; which node *is* a leader at that moment depends on
//! the run), then healed, then the time until the cluster has recovered is measured.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::disk::{self, Damage, Target};
use super::history::History;
use super::net::Firewall;
use super::rng::Rng;
use crate::TestCluster;

/// What a `disk-full` fault leaves free: under a node's 128 MiB write threshold, over its
/// 80 MiB floor for Raft entries.
const LEAVE: u64 = 104 << 20;

/// How long the cluster may take to recover after a heal before it counts as not recovering.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Fault {
    KillNode,
    KillShardLeader,
    KillCatalogueLeader,
    Pause,
    Isolate,
    Split,
    Bridge,
    FlipVolume,
    TruncateVolume,
    FlipTable,
    TornWal,
    DiskFull,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::KillNode,
        Fault::KillShardLeader,
        Fault::KillCatalogueLeader,
        Fault::Pause,
        Fault::Isolate,
        Fault::Split,
        Fault::Bridge,
        Fault::FlipVolume,
        Fault::TruncateVolume,
        Fault::FlipTable,
        Fault::TornWal,
        Fault::DiskFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillNode => "kill-node",
            Fault::KillShardLeader => "kill-shard-leader",
            Fault::KillCatalogueLeader => "kill-catalogue-leader",
            Fault::Pause => "pause",
            Fault::Isolate => "isolate",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
            Fault::FlipVolume => "flip-volume",
            Fault::TruncateVolume => "truncate-volume",
            Fault::FlipTable => "flip-table",
            Fault::TornWal => "torn-wal",
            Fault::DiskFull => "disk-full",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    fn is_partition(self) -> bool {
        matches!(self, Fault::Isolate | Fault::Split | Fault::Bridge)
    }
}

/// One cycle: the fault, what it hit, and how long recovery took after the heal.
#[derive(Clone, Debug, Serialize)]
pub struct Cycle {
    pub number: usize,
    pub fault: Fault,
    pub what: String,
    /// Milliseconds from the heal until every group had a leader (`None`: not within the limit).
    pub led_ms: Option<u64>,
    /// Milliseconds from the heal until every node answered `/readyz` with 200.
    pub ready_ms: Option<u64>,
    /// Problems seen in this cycle: a node that exited, did not come back, an answer to a probe.
    pub findings: Vec<String>,
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut TestCluster,
    pub firewall: Firewall,
    pub history: &'a History,
    pub rng: Rng,
    pub hold_ms: (u64, u64),
    /// Nodes that crash-loop (exited three times in one cycle): left stopped, no longer
    /// targeted or waited for, and reported.
    pub broken: BTreeSet<u64>,
    /// Exits per node in the current cycle.
    exits: HashMap<u64, usize>,
}

/// A group has a leader when one replica leads in the highest term any replica reports and a
/// majority of its voters follow it: a stale leader cut off meanwhile, or a replica campaigning
/// in a newer term, does not count.
fn has_leader(group: &Value) -> bool {
    let Some(replicas) = group["replicas"].as_object() else {
        return false;
    };
    let voters: Vec<String> = group["voters"]
        .as_array()
        .map(|v| v.iter().map(|id| id.to_string()).collect())
        .unwrap_or_default();
    let top = replicas.values().filter_map(|r| r["term"].as_u64()).max();
    let Some((id, _)) = replicas
        .iter()
        .find(|(_, r)| r["state"] == "leader" && r["term"].as_u64() == top)
    else {
        return false;
    };
    let leader = id.parse::<u64>().ok();
    let following = replicas
        .iter()
        .filter(|(id, r)| {
            voters.contains(id) && r["leader"].as_u64() == leader && r["term"].as_u64() == top
        })
        .count();
    following > voters.len() / 2
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut TestCluster,
        firewall: Firewall,
        history: &'a History,
        rng: Rng,
        hold_ms: (u64, u64),
    ) -> Nemesis<'a> {
        Nemesis {
            cluster,
            firewall,
            history,
            rng,
            hold_ms,
            broken: BTreeSet::new(),
            exits: HashMap::new(),
        }
    }

    /// The nodes the nemesis works with: all but the broken ones.
    fn ids(&self) -> Vec<u64> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !self.broken.contains(id))
            .collect()
    }

    async fn status(&self) -> Option<Value> {
        for node in self.cluster.nodes.iter().filter(|n| n.is_running()) {
            let client = node.client().with_timeout(Duration::from_secs(3));
            if let Ok(reply) = client.get("/api/v1/cluster").await {
                if reply.status == 200 {
                    return Some(reply.json());
                }
            }
        }
        None
    }

    /// The current leader of `group`, or a random node if none is known.
    async fn leader_or_any(&mut self, group: Option<usize>) -> u64 {
        let status = self.status().await;
        let groups = status
            .as_ref()
            .and_then(|s| s["groups"].as_array().cloned())
            .unwrap_or_default();
        let group = match group {
            Some(g) => g,
            None if groups.len() > 1 => 1 + self.rng.below(groups.len() as u64 - 1) as usize,
            None => 0,
        };
        let ids = self.ids();
        groups
            .get(group)
            .and_then(|g| g["leader"].as_u64())
            .unwrap_or_else(|| *self.rng.pick(&ids))
    }

    async fn hold(&mut self) {
        let ms = self.rng.between(self.hold_ms.0, self.hold_ms.1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Runs one cycle of `fault`.
    pub async fn cycle(&mut self, number: usize, fault: Fault) -> Cycle {
        self.exits.clear();
        let ids = self.ids();
        let mut findings = Vec::new();
        let what = match fault {
            Fault::KillNode | Fault::KillShardLeader | Fault::KillCatalogueLeader => {
                let target = match fault {
                    Fault::KillNode => *self.rng.pick(&ids),
                    Fault::KillShardLeader => self.leader_or_any(None).await,
                    _ => self.leader_or_any(Some(0)).await,
                };
                self.cluster.kill(target);
                self.history
                    .event(format!("cycle {number}: {} node {target}", fault.name()));
                self.hold().await;
                self.cluster.start_node(target);
                format!("node {target}")
            }
            Fault::Pause => {
                let target = *self.rng.pick(&ids);
                self.cluster.pause(target);
                self.history
                    .event(format!("cycle {number}: pause node {target}"));
                self.hold().await;
                self.cluster.resume(target);
                format!("node {target}")
            }
            _ if fault.is_partition() => {
                let mut order = ids.clone();
                self.rng.shuffle(&mut order);
                let (left, right): (Vec<u64>, Vec<u64>) = match fault {
                    Fault::Isolate => (order[..1].to_vec(), order[1..].to_vec()),
                    Fault::Split => {
                        let half = order.len() / 2;
                        (order[..half].to_vec(), order[half..].to_vec())
                    }
                    // Two halves that cannot talk, and one node in the middle that talks to both.
                    _ => {
                        let half = order.len() / 2;
                        (order[..half].to_vec(), order[half + 1..].to_vec())
                    }
                };
                let what = format!("{left:?} | {right:?}");
                if let Err(e) = self.firewall.cut(&left, &right) {
                    findings.push(format!("could not cut the network: {e}"));
                }
                self.history
                    .event(format!("cycle {number}: {} {what}", fault.name()));
                self.hold().await;
                if let Err(e) = self.firewall.heal() {
                    findings.push(format!("could not heal the network: {e}"));
                }
                what
            }
            Fault::DiskFull => self.disk_full(number, &mut findings).await,
            _ => self.damage(number, fault, &mut findings).await,
        };
        self.history.event(format!("cycle {number}: healed"));
        let (led, ready) = self.recovery(fault, &mut findings).await;
        self.serving(number, fault, &mut findings).await;
        for f in &findings {
            self.history.event(format!("cycle {number}: FINDING {f}"));
        }
        self.history.event(format!(
            "cycle {number}: recovered: leaders after {led:?} ms, ready after {ready:?} ms"
        ));
        Cycle {
            number,
            fault,
            what,
            led_ms: led,
            ready_ms: ready,
            findings,
        }
    }

    /// Damages a data file of one stopped node; if it does not recover by itself, the finding
    /// is recorded and the original bytes are put back so the campaign goes on.
    async fn damage(&mut self, number: usize, fault: Fault, findings: &mut Vec<String>) -> String {
        let ids = self.ids();
        let target = *self.rng.pick(&ids);
        let (kind, how) = match fault {
            Fault::FlipVolume => (Target::Volume, Damage::FlipBits),
            Fault::TruncateVolume => (Target::Volume, Damage::Truncate),
            Fault::FlipTable => (Target::Table, Damage::FlipBits),
            _ => (Target::Wal, Damage::Truncate),
        };
        self.cluster.kill(target);
        let data = self.cluster.data_dir(target);
        let copy = match disk::backup(&data) {
            Ok(copy) => Some(copy),
            Err(e) => {
                findings.push(format!("could not copy the data dir: {e}"));
                None
            }
        };
        let damaged = match disk::damage(&self.cluster.data_dir(target), kind, how, &mut self.rng) {
            Ok(d) => d,
            Err(e) => {
                findings.push(format!("could not damage a file: {e}"));
                None
            }
        };
        let what = match &damaged {
            Some(d) => format!("node {target}: {} {}", d.path.display(), d.what),
            None => format!("node {target}: no {kind:?} file yet"),
        };
        self.history
            .event(format!("cycle {number}: {} {what}", fault.name()));
        self.cluster.start_node(target);
        if !self.ready_within(target, Duration::from_secs(30)).await {
            findings.push(format!(
                "node {target} did not come back within 30 s after {what}; its log ends:\n{}",
                tail(&self.cluster.log(target), 15)
            ));
            if self.cluster.node(target).is_running() {
                self.cluster.kill(target);
            }
            if let Some(copy) = &copy {
                if let Err(e) = disk::restore(&data, copy) {
                    findings.push(format!("could not restore the data dir: {e}"));
                }
            }
            self.history.event(format!(
                "cycle {number}: restored node {target}'s data dir as it was before the damage"
            ));
            self.cluster.start_node(target);
        }
        if !self.in_sync_within(Duration::from_secs(60)).await {
            findings.push(format!(
                "node {target}'s replicas did not catch up with their leaders within 60 s after {what}"
            ));
        }
        what
    }

    /// Waits until every voting replica of every group holds its leader's log as it was when
    /// the wait began. Damage to a disk loses what a node had acknowledged, which Raft
    /// tolerates on a minority only: before the campaign goes on, the damaged node must hold
    /// a copy again. Without this wait two damage cycles seconds apart (a torn log tail on
    /// one node, then on another before the first had caught up) destroyed acknowledged
    /// entries on two of three replicas — a majority, beyond what any Raft store survives —
    /// and the checker reported the lost writes (seed 305).
    async fn in_sync_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut targets: Option<Vec<(usize, u64)>> = None;
        while Instant::now() < deadline {
            if let Some(status) = self.status().await {
                let groups = status["groups"].as_array().cloned().unwrap_or_default();
                let wanted = targets.get_or_insert_with(|| {
                    groups
                        .iter()
                        .enumerate()
                        .filter_map(|(i, g)| {
                            let leader = g["leader"].as_u64()?.to_string();
                            Some((i, g["replicas"][&leader]["last_log"].as_u64()?))
                        })
                        .collect()
                });
                let synced = wanted.iter().all(|&(i, last)| {
                    let Some(g) = groups.get(i) else {
                        return false;
                    };
                    g["voters"].as_array().is_some_and(|voters| {
                        voters.iter().all(|v| {
                            let id = v.to_string();
                            g["replicas"][&id]["last_log"]
                                .as_u64()
                                .is_some_and(|l| l >= last)
                        })
                    })
                });
                if synced {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Fills one running node's disk and checks what the node promises (`docs/reliability.md`):
    /// writes through it are refused with 507 `disk_full` and `Retry-After`, reads through it
    /// are served, it restarts and becomes ready with the disk still full, and once the
    /// space is freed it takes writes again by itself. Each broken promise is a finding.
    async fn disk_full(&mut self, number: usize, findings: &mut Vec<String>) -> String {
        let ids = self.ids();
        let target = *self.rng.pick(&ids);
        let dir = self.cluster.data_dir(target);
        // An object to read back through the full node, uploaded through another one.
        let other = ids
            .iter()
            .copied()
            .find(|id| *id != target)
            .unwrap_or(target);
        let probe = crate::png(20, 20, 7_000_000_000 + 2 * number as u64);
        let stored = self
            .upload_until(other, &probe, Duration::from_secs(20))
            .await;
        if let Err(answer) = &stored {
            findings.push(format!(
                "could not store the probe through node {other}: {answer}"
            ));
        }
        let filled = match disk::fill(&dir, LEAVE) {
            Ok(bytes) => bytes,
            Err(e) => {
                findings.push(format!("could not fill the disk: {e}"));
                0
            }
        };
        self.history.event(format!(
            "cycle {number}: disk-full node {target} ({} MiB of ballast)",
            filled >> 20
        ));
        let refused = self.refuses_when_full(&dir, target, number, findings).await;
        if let Err(answer) = &refused {
            findings.push(format!("node {target} with a full disk: {answer}"));
        }
        if stored.is_ok() && !self.serves(target, &probe).await {
            findings.push(format!(
                "node {target} with a full disk did not serve a read"
            ));
        }
        // A restart with the disk still full.
        self.cluster.kill(target);
        self.cluster.start_node(target);
        if !self.ready_within(target, Duration::from_secs(30)).await {
            findings.push(format!(
                "node {target} did not become ready within 30 s of a restart with a full disk; its log ends:\n{}",
                tail(&self.cluster.log(target), 15)
            ));
        } else {
            // The restart may have freed space too (the killed process's WAL preallocation).
            let refused = self.refuses_when_full(&dir, target, number, findings).await;
            if stored.is_ok() && !self.serves(target, &probe).await {
                findings.push(format!(
                    "node {target} restarted with a full disk did not serve a read"
                ));
            }
            if let Err(answer) = refused {
                findings.push(format!(
                    "node {target} restarted with a full disk: {answer}"
                ));
            }
        }
        self.hold().await;
        if let Err(e) = disk::unfill(&dir) {
            findings.push(format!("could not free the disk: {e}"));
        }
        let after = crate::png(20, 20, 7_000_000_001 + 2 * number as u64);
        if let Err(answer) = self
            .upload_until(target, &after, Duration::from_secs(30))
            .await
        {
            findings.push(format!(
                "node {target} took no write within 30 s of its disk being freed: {answer}"
            ));
        }
        format!(
            "node {target}; writes during the fault: {}",
            match refused {
                Ok(answer) | Err(answer) => answer.chars().take(160).collect::<String>(),
            }
        )
    }

    /// Uploads `bytes` through `node` until it is acknowledged (retrying 503s and 507s) or
    /// `limit` passes; the last answer otherwise.
    async fn upload_until(&self, node: u64, bytes: &[u8], limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let client = self
                .cluster
                .node(node)
                .client()
                .with_timeout(Duration::from_secs(10));
            let last = match client
                .put_object(bytes::Bytes::copy_from_slice(bytes))
                .await
            {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether `node`, its disk filled to leave `LEAVE`, refuses writes. A node may free room
    /// meanwhile (a node low on space deletes the damaged databases it kept aside, once: 170
    /// MiB in seed 312 cycle 158, 225 MiB in seed 314 cycle 155), and a node with room rightly
    /// takes writes: what was freed is filled again, and the check made once more.
    async fn refuses_when_full(
        &self,
        dir: &std::path::Path,
        node: u64,
        number: usize,
        findings: &mut Vec<String>,
    ) -> Result<String, String> {
        let mut refused = Err(String::new());
        for _ in 0..2 {
            if let Err(e) = disk::fill(dir, LEAVE) {
                findings.push(format!("could not fill the disk: {e}"));
            }
            refused = self.refuses_writes(node, number).await;
            if refused.is_ok() {
                break;
            }
        }
        refused
    }

    /// Whether uploads through `node` get 507 `disk_full` with `Retry-After` within 5 s (the
    /// node notices a full disk within 250 ms); the answer either way.
    async fn refuses_writes(&self, node: u64, number: usize) -> Result<String, String> {
        let client = self
            .cluster
            .node(node)
            .client()
            .with_timeout(Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seed = 7_100_000_000 + 1000 * number as u64;
        loop {
            seed += 1;
            let reply = client
                .put_object(bytes::Bytes::from(crate::png(20, 20, seed)))
                .await;
            let answer = match &reply {
                Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => e.to_string(),
            };
            match &reply {
                Ok(r) if r.status == 507 => {
                    let code = r.json()["error"]["code"].as_str().map(str::to_owned);
                    return match (code.as_deref(), r.header("retry-after")) {
                        (Some("disk_full"), Some(_)) => Ok(answer),
                        _ => Err(format!(
                            "a 507 without code disk_full or Retry-After: {answer}"
                        )),
                    };
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("an upload was not refused with 507: {answer}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Whether `node` answers a read of `bytes` with exactly those bytes within 20 s.
    async fn serves(&self, node: u64, bytes: &[u8]) -> bool {
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let client = self
            .cluster
            .node(node)
            .client()
            .with_timeout(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(&format!("/objects/{sha}")).await {
                if r.status == 200 {
                    return &r.body[..] == bytes;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Whether `node` answers `/readyz` 200 within `limit`.
    async fn ready_within(&mut self, node: u64, limit: Duration) -> bool {
        let client = self
            .cluster
            .node(node)
            .client()
            .with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if matches!(client.get("/readyz").await, Ok(r) if r.status == 200) {
                return true;
            }
            if self.cluster.exited(node).is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// A node that exited by itself is a finding; it is started again, unless it exits a third
    /// time in the cycle: then it crash-loops and is left stopped.
    fn restart_exited(&mut self, fault: Fault, findings: &mut Vec<String>) {
        for id in self.ids() {
            let Some(status) = self.cluster.exited(id) else {
                continue;
            };
            let exits = self.exits.entry(id).or_default();
            *exits += 1;
            if *exits == 1 {
                findings.push(format!(
                    "node {id} exited ({status}) during {}; its log ends:\n{}",
                    fault.name(),
                    tail(&self.cluster.log(id), 15)
                ));
            }
            if *exits >= 3 {
                findings.push(format!(
                    "node {id} crash-loops after {}: left stopped for the rest of the campaign",
                    fault.name()
                ));
                self.broken.insert(id);
            } else {
                self.cluster.start_node(id);
            }
        }
    }

    /// Every node must also *serve* (a token check confirms the catalogue through it) within
    /// 20 s: a node that says it is ready but cannot is a finding, and is restarted as an
    /// operator would, so later cycles start from a working cluster.
    async fn serving(&mut self, number: usize, fault: Fault, findings: &mut Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for id in self.ids() {
            let client = self
                .cluster
                .node(id)
                .client()
                .with_timeout(Duration::from_secs(3));
            let mut last;
            loop {
                match client.get("/api/v1/me").await {
                    Ok(r) if r.status == 200 => break,
                    Ok(r) => last = format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    Err(e) => last = e.to_string(),
                }
                if Instant::now() > deadline {
                    findings.push(format!(
                        "node {id} did not serve 20 s after the heal of {}: {last}; restarted",
                        fault.name()
                    ));
                    if self.cluster.node(id).is_running() {
                        self.cluster.kill(id);
                    }
                    self.history.event(format!(
                        "cycle {number}: restart node {id}, which does not serve"
                    ));
                    self.cluster.start_node(id);
                    self.recovery(fault, findings).await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Milliseconds until every group has a leader and until every node is ready.
    async fn recovery(
        &mut self,
        fault: Fault,
        findings: &mut Vec<String>,
    ) -> (Option<u64>, Option<u64>) {
        let start = Instant::now();
        let (mut led, mut ready) = (None, None);
        while start.elapsed() < RECOVERY_LIMIT && (led.is_none() || ready.is_none()) {
            self.restart_exited(fault, findings);
            if led.is_none() {
                let all_led = self.status().await.is_some_and(|s| {
                    s["groups"]
                        .as_array()
                        .is_some_and(|g| g.iter().all(has_leader))
                });
                if all_led {
                    led = Some(start.elapsed().as_millis() as u64);
                }
            }
            if ready.is_none() {
                let mut all = true;
                for id in self.ids() {
                    let client = self
                        .cluster
                        .node(id)
                        .client()
                        .with_timeout(Duration::from_secs(2));
                    all &= matches!(client.get("/readyz").await, Ok(r) if r.status == 200);
                }
                if all {
                    ready = Some(start.elapsed().as_millis() as u64);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (led, ready)
    }
}
