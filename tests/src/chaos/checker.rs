//! After the last heal: what the cluster holds against what the load was told.
//!
//! Safety (any of these fails the run): an acknowledged object missing or with other bytes on
//! any node, or a read during the run that answered other bytes or 404; an acknowledged save
//! missing from its key's history or with other shapes; two acknowledged saves from one
//! `If-Match` version; a save that was answered as refused in the history; replicas whose
//! histories differ; a key whose operations admit no linearisation; a task claimed while held.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_client::Client;

use super::history::{Action, Op, Outcome};
use super::linearizable::{self, Call, Entry, State, Verdict};
use super::load::World;

/// Steps the linearisability search may take per key before it gives up ("unknown").
const SEARCH_BUDGET: u64 = 2_000_000;

#[derive(Default)]
pub struct Findings {
    /// Safety violations.
    pub violations: Vec<String>,
    /// Keys whose search ran out of budget.
    pub unknown: Vec<String>,
    /// Nodes left stopped because they crash-loop: not checked.
    pub broken: Vec<u64>,
    /// Nodes that could not answer after the last heal (liveness, not safety): what they said.
    pub unavailable: BTreeMap<u64, (usize, String)>,
    pub objects_checked: usize,
    pub keys_checked: usize,
    pub versions_checked: usize,
    pub tasks_checked: usize,
}

impl Findings {
    fn unavailable_on(&mut self, node: u64, what: String) {
        let entry = self.unavailable.entry(node).or_insert((0, what));
        entry.0 += 1;
    }
}

async fn get_json(client: &Client, path: &str) -> Result<Value, String> {
    match client.get(path).await {
        Ok(r) if r.status == 200 => Ok(r.json()),
        Ok(r) => Err(format!("{} {}", r.status, String::from_utf8_lossy(&r.body))),
        Err(e) => Err(e.to_string()),
    }
}

/// Every acknowledged object from every node, with its hash checked.
async fn objects(world: &World, ops: &[Op], out: &mut Findings) {
    for op in ops {
        if let Action::Read {
            sha,
            wrong,
            missing,
        } = &op.action
        {
            if *wrong {
                out.violations.push(format!(
                    "op {}: node {} answered other bytes for {sha}",
                    op.id, op.node
                ));
            }
            if *missing {
                out.violations.push(format!(
                    "op {}: node {} answered 404 for acknowledged {sha}",
                    op.id, op.node
                ));
            }
        }
    }
    let acked = world
        .acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    out.objects_checked = acked.len();
    for (node, http) in world.nodes.iter().filter(|(n, _)| !out.broken.contains(n)) {
        let client = world.admin.with_base(http);
        for chunk in acked.chunks(16) {
            let reads = chunk.iter().map(|sha| {
                let client = client.clone();
                async move { (sha, client.get(&format!("/objects/{sha}")).await) }
            });
            for (sha, reply) in futures_util::future::join_all(reads).await {
                use sha2::Digest;
                let problem = match reply {
                    Ok(r)
                        if r.status == 200
                            && hex::encode(sha2::Sha256::digest(&r.body)) == *sha =>
                    {
                        continue
                    }
                    Ok(r) if r.status == 200 => "other bytes".to_string(),
                    Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    Err(e) => e.to_string(),
                };
                out.violations.push(format!(
                    "acknowledged object {sha} on node {node}: {problem}"
                ));
            }
        }
    }
}

/// One key's history once every node that answers agrees on it; a node that does not answer
/// is noted as unavailable, two that answer differently after 30 s are a violation.
async fn key_history(world: &World, path: &str, out: &mut Findings) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut answers = Vec::new();
        let mut silent = Vec::new();
        for (node, http) in world.nodes.iter().filter(|(n, _)| !out.broken.contains(n)) {
            match get_json(&world.manager.with_base(http), &format!("{path}/history")).await {
                Ok(v) => answers.push((*node, v["items"].as_array().cloned().unwrap_or_default())),
                Err(e) => silent.push((*node, e)),
            }
        }
        let agree = answers.windows(2).all(|w| w[0].1 == w[1].1);
        if (agree && silent.is_empty()) || Instant::now() > deadline {
            for (node, e) in silent {
                out.unavailable_on(node, e);
            }
            let Some((_, first)) = answers.first() else {
                return Err("no node could read the history".into());
            };
            if !agree {
                let views: Vec<String> = answers
                    .iter()
                    .map(|(n, h)| format!("node {n}: {} versions", h.len()))
                    .collect();
                return Err(format!("the nodes' histories differ after 30 s: {views:?}"));
            }
            return Ok(first.clone());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn marker_of(version: &Value) -> Option<String> {
    version["shapes"][0]["attributes"]["op"]
        .as_str()
        .map(str::to_string)
}

async fn annotations(world: &World, ops: &[Op], end_us: u64, out: &mut Findings) {
    for (index, key) in world.keys.iter().enumerate() {
        out.keys_checked += 1;
        let saves: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(&o.action, Action::AnnSave { key, .. } if *key == index))
            .collect();
        let mut by_marker: HashMap<String, &Op> = HashMap::new();
        let mut winners: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for op in &saves {
            if let Action::AnnSave {
                marker, if_match, ..
            } = &op.action
            {
                by_marker.insert(marker.clone(), op);
                if op.outcome == Outcome::Ok {
                    winners.entry(*if_match).or_default().push(op.id);
                }
            }
        }
        for (version, ids) in &winners {
            if ids.len() > 1 {
                out.violations.push(format!(
                    "key {index}: saves {ids:?} were all acknowledged from version {version}"
                ));
            }
        }
        let history = match key_history(world, &key.path(), out).await {
            Ok(h) => h,
            Err(e) => {
                out.violations.push(format!("key {index}: {e}"));
                continue;
            }
        };
        out.versions_checked += history.len();
        let mut stored: HashMap<u64, Option<String>> = HashMap::new();
        for (i, v) in history.iter().enumerate() {
            let version = v["version"].as_u64().unwrap_or(0);
            if version != i as u64 + 1 {
                out.violations.push(format!(
                    "key {index}: history position {i} holds version {version}"
                ));
            }
            let marker = marker_of(v);
            match marker.as_ref().and_then(|m| by_marker.get(m)) {
                Some(op) => {
                    if let Action::AnnSave { if_match, .. } = &op.action {
                        if op.outcome == Outcome::Fail {
                            out.violations.push(format!(
                                "key {index}: save op {} was refused ({}) but is version {version}",
                                op.id, op.detail
                            ));
                        }
                        if *if_match + 1 != version {
                            out.violations.push(format!("key {index}: save op {} from version {if_match} became version {version}", op.id));
                        }
                    }
                }
                None => out.violations.push(format!(
                    "key {index}: version {version} has shapes no save wrote: {marker:?}"
                )),
            }
            stored.insert(version, marker);
        }
        for op in &saves {
            if let Action::AnnSave {
                version: Some(v),
                marker,
                ..
            } = &op.action
            {
                if op.outcome == Outcome::Ok && stored.get(v) != Some(&Some(marker.clone())) {
                    out.violations.push(format!(
                        "key {index}: acknowledged save op {} (version {v}) is not in the history",
                        op.id
                    ));
                }
            }
        }
        let final_state = history
            .last()
            .map(|v| (v["version"].as_u64().unwrap_or(0), marker_of(v)));
        let (version, marker) = final_state.unwrap_or((0, None));
        match check_key(ops, index, (version, marker), end_us) {
            Verdict::Linearizable => {}
            Verdict::Unknown => out.unknown.push(format!("key {index}")),
            Verdict::Violation { stuck_at, deepest } => {
                let op = ops.iter().find(|o| o.id == stuck_at);
                out.violations.push(format!(
                    "key {index}: not linearizable; no order places op {stuck_at} ({op:?}) after {deepest} operations"
                ));
            }
        }
    }
}

/// The WGL search over one key's reads and saves, ending with the final state read back.
fn check_key(ops: &[Op], index: usize, last: (u64, Option<String>), end_us: u64) -> Verdict {
    let mut writers: HashMap<String, u32> = HashMap::new();
    let mut writer = |m: &str| {
        let next = writers.len() as u32;
        *writers.entry(m.to_string()).or_insert(next)
    };
    let mut entries = Vec::new();
    for op in ops {
        let call = match &op.action {
            Action::AnnRead {
                key,
                version,
                marker,
            } if *key == index && op.outcome == Outcome::Ok => Call::Read(State {
                version: *version,
                writer: marker.as_deref().map(&mut writer),
            }),
            Action::AnnSave {
                key,
                if_match,
                marker,
                ..
            } if *key == index => {
                let applied = match (op.outcome, op.status) {
                    (Outcome::Ok, _) => Some(true),
                    (Outcome::Fail, Some(412)) => Some(false),
                    // Refused for another reason (403, an unavailable 503): never applied and
                    // says nothing about the version.
                    (Outcome::Fail, _) => continue,
                    (Outcome::Info, _) => None,
                };
                Call::Save {
                    if_match: *if_match,
                    writer: writer(marker),
                    applied,
                }
            }
            _ => continue,
        };
        let open = matches!(call, Call::Save { applied: None, .. });
        entries.push(Entry {
            call_us: op.start_us,
            ret_us: if open { u64::MAX } else { op.end_us },
            call,
            required: !open,
            op: op.id,
        });
    }
    let (version, marker) = last;
    entries.push(Entry {
        call_us: end_us,
        ret_us: end_us + 1,
        call: Call::Read(State {
            version,
            writer: marker.as_deref().map(&mut writer),
        }),
        required: true,
        op: 0,
    });
    linearizable::check(entries, SEARCH_BUDGET)
}

/// Claims: at most one acknowledged per round, and a task's own history never shows a claim
/// while it is held.
async fn tasks(world: &World, ops: &[Op], out: &mut Findings) {
    let mut wins: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for op in ops {
        if let (Action::Claim { task, user, round }, Outcome::Ok) = (&op.action, op.outcome) {
            wins.entry((*task, *round)).or_default().push(user.clone());
        }
    }
    for ((task, round), users) in &wins {
        if users.len() > 1 {
            out.violations.push(format!(
                "task {task} round {round}: claims by {users:?} were all acknowledged"
            ));
        }
    }
    for task in &world.pool {
        out.tasks_checked += 1;
        let detail = match get_json(&world.manager, &format!("/api/v1/tasks/{task}")).await {
            Ok(d) => d,
            Err(e) => {
                out.violations
                    .push(format!("task {task}: could not be read after healing: {e}"));
                continue;
            }
        };
        let mut holder: Option<String> = None;
        for event in detail["history"].as_array().cloned().unwrap_or_default() {
            let by = event["by"].as_str().unwrap_or_default().to_string();
            match event["action"].as_str() {
                Some("claim") => {
                    if let Some(h) = &holder {
                        out.violations
                            .push(format!("task {task}: claimed by {by} while {h} held it"));
                    }
                    holder = Some(by);
                }
                Some("reassign") if event["reason"] == "to the pool" => holder = None,
                _ => {}
            }
        }
    }
}

/// Runs every check against the healed cluster, on every node but the `broken` ones (which
/// crash-loop and are left stopped: reported as such).
pub async fn check(world: &World, ops: &[Op], end_us: u64, broken: &BTreeSet<u64>) -> Findings {
    let mut out = Findings {
        broken: broken.iter().copied().collect(),
        ..Findings::default()
    };
    objects(world, ops, &mut out).await;
    annotations(world, ops, end_us, &mut out).await;
    tasks(world, ops, &mut out).await;
    out
}
