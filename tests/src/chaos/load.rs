//! The workload: unique uploads, reads checked against their hash, annotation saves with
//! `If-Match` (single and in concurrent pairs from the same version), and rounds of task
//! claims — each request sent to a node picked at random and recorded in the [`History`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::Digest;
use tessera_client::{Client, ClientError, Method, Reply};

use super::history::{Action, History, Op, Outcome};
use super::rng::Rng;
use crate::{png, TestCluster};

/// How long one request may take before it counts as indeterminate.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const ANNOTATORS: usize = 4;
const POOL_TASKS: usize = 4;

/// One annotation key: an image in a task, edited by that task's annotator.
#[derive(Clone, Debug)]
pub struct Key {
    pub task: u64,
    pub sha: String,
    pub annotator: usize,
}

impl Key {
    pub fn path(&self) -> String {
        format!(
            "/api/v1/tasks/{}/images/{}/annotations",
            self.task, self.sha
        )
    }
}

/// What the load works on, made once before the first fault.
pub struct World {
    /// `(node id, HTTP address)`.
    pub nodes: Vec<(u64, String)>,
    pub admin: Client,
    pub manager: Client,
    pub annotators: Vec<(String, Client)>,
    pub keys: Vec<Key>,
    pub pool: Vec<u64>,
    /// Objects whose upload was acknowledged.
    pub acked: Mutex<Vec<String>>,
}

fn check(step: &str, reply: Result<Reply, ClientError>, want: u16) -> Result<Value, String> {
    match reply {
        Ok(r) if r.status.as_u16() == want => Ok(r.json()),
        Ok(r) => Err(format!(
            "{step}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        Err(e) => Err(format!("{step}: {e}")),
    }
}

async fn post(client: &Client, path: &str, body: Value) -> Result<Reply, ClientError> {
    let headers = [("content-type", "application/json")];
    client
        .send(Method::POST, path, &headers, Bytes::from(body.to_string()))
        .await
}

/// Users, a dataset of 100x100 images, an annotation set whose tasks each annotator starts, and
/// a second set whose tasks stay in the pool for claims.
pub async fn setup(cluster: &TestCluster) -> Result<World, String> {
    let admin = cluster.node(1).client().with_timeout(REQUEST_TIMEOUT);
    let mut users = Vec::new();
    for (name, role) in (0..ANNOTATORS)
        .map(|i| (format!("ann{i}"), "annotator"))
        .chain([("mgr".to_string(), "manager")])
    {
        let password = format!("{name}-password");
        let body = json!({"username": name, "password": password, "role": role});
        check(
            "create user",
            post(&admin, "/api/v1/users", body).await,
            201,
        )?;
        let token = admin
            .anonymous()
            .login(&name, &password)
            .await
            .map_err(|e| format!("login {name}: {e}"))?;
        users.push((name, admin.with_token(token)));
    }
    let (_, manager) = users.pop().expect("manager");
    let mut shas = Vec::new();
    for seed in 0..(ANNOTATORS * 2) as u64 {
        let reply = admin.put_object(Bytes::from(png(100, 100, seed))).await;
        let body = check("upload", reply, 201)?;
        shas.push(body["sha256"].as_str().unwrap_or_default().to_string());
    }
    let dataset = check(
        "dataset",
        post(&manager, "/api/v1/datasets", json!({"name": "chaos"})).await,
        201,
    )?;
    let dataset = dataset["id"].as_u64().ok_or("dataset id")?;
    let images: Vec<Value> = shas.iter().map(|s| json!({"sha256": s})).collect();
    let path = format!("/api/v1/datasets/{dataset}/images");
    check(
        "add images",
        post(&manager, &path, json!({"images": images})).await,
        200,
    )?;
    let labels = json!([{"name": "box", "color": "#ff0000", "kinds": ["rectangle"],
        "attributes": [{"name": "op", "type": "text"}]}]);
    let sets = format!("/api/v1/datasets/{dataset}/annotation-sets");
    let mut set_ids = Vec::new();
    for name in ["edits", "claims"] {
        let set = check(
            "annotation set",
            post(&manager, &sets, json!({"name": name, "labels": labels})).await,
            201,
        )?;
        set_ids.push(set["id"].as_u64().ok_or("set id")?);
    }
    let names: Vec<&String> = users.iter().map(|(n, _)| n).collect();
    let split = format!("/api/v1/annotation-sets/{}/tasks/split", set_ids[0]);
    let body = json!({"chunk_size": 2, "assignees": names});
    let tasks = check("split", post(&manager, &split, body).await, 201)?;
    let mut keys = Vec::new();
    for task in tasks["tasks"]
        .as_array()
        .ok_or("task ids")?
        .iter()
        .filter_map(Value::as_u64)
    {
        let detail = check(
            "task",
            manager.get(&format!("/api/v1/tasks/{task}")).await,
            200,
        )?;
        let assignee = detail["assignee"].as_str().unwrap_or_default();
        let annotator = users
            .iter()
            .position(|(n, _)| n == assignee)
            .ok_or("assignee")?;
        let start = format!("/api/v1/tasks/{task}/start");
        check(
            "start",
            post(&users[annotator].1, &start, json!({})).await,
            200,
        )?;
        for image in detail["images"].as_array().ok_or("images")? {
            let sha = image["sha256"].as_str().unwrap_or_default().to_string();
            keys.push(Key {
                task,
                sha,
                annotator,
            });
        }
    }
    let split = format!("/api/v1/annotation-sets/{}/tasks/split", set_ids[1]);
    let chunk = (shas.len() / POOL_TASKS).max(1);
    let pooled = check(
        "pool split",
        post(&manager, &split, json!({"chunk_size": chunk})).await,
        201,
    )?;
    let pool = pooled["tasks"]
        .as_array()
        .ok_or("pool ids")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    Ok(World {
        nodes: cluster
            .nodes
            .iter()
            .map(|n| (n.id, n.http.clone()))
            .collect(),
        admin,
        manager,
        annotators: users,
        keys,
        pool,
        acked: Mutex::new(Vec::new()),
    })
}

/// The outcome of a request: 2xx took effect; a refusal (4xx), an unavailable 503 or a
/// `disk_full` 507 (refused before proposing) certainly did not; a timeout, a broken
/// connection or any other answer may have.
fn classify(result: &Result<Reply, ClientError>) -> (Outcome, String, Option<u16>, bool) {
    match result {
        Ok(r) => {
            let status = r.status.as_u16();
            let code = r.json()["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let retry_after = r.header("retry-after").is_some();
            let outcome = match status {
                200..=299 => Outcome::Ok,
                400..=499 => Outcome::Fail,
                503 if code == "unavailable" => Outcome::Fail,
                507 if code == "disk_full" => Outcome::Fail,
                _ => Outcome::Info,
            };
            (
                outcome,
                format!("{status} {code}"),
                Some(status),
                retry_after,
            )
        }
        Err(ClientError::Refused(e)) => (Outcome::Fail, format!("refused: {e}"), None, false),
        // No connection, so the request was never sent.
        Err(ClientError::Transport(e)) if e.contains("(Connect)") => {
            (Outcome::Fail, format!("request failed: {e}"), None, false)
        }
        Err(e) => (Outcome::Info, e.to_string(), None, false),
    }
}

/// Sends one request to `node` and records it; `finish` turns the reply into the action to
/// record (what a read saw) and may override the outcome (a read with wrong bytes).
struct Worker {
    world: Arc<World>,
    history: Arc<History>,
    rng: Rng,
}

impl Worker {
    fn node(&mut self) -> (u64, String) {
        self.rng.pick(&self.world.nodes).clone()
    }

    /// Picks the node for the next request and opens its record: the node, its base URL, the
    /// operation id and the start time.
    fn begin(&mut self) -> (u64, String, u64, u64) {
        let (node, http) = self.node();
        (node, http, self.history.next_id(), self.history.now_us())
    }

    fn record(
        &self,
        id: u64,
        node: u64,
        start_us: u64,
        action: Action,
        result: &Result<Reply, ClientError>,
    ) -> Outcome {
        let (outcome, detail, status, retry_after) = classify(result);
        self.history.record(Op {
            id,
            node,
            start_us,
            end_us: self.history.now_us(),
            action,
            outcome,
            detail,
            status,
            retry_after,
        });
        outcome
    }

    async fn upload(&mut self, seed: u64) {
        let bytes = png(40, 40, seed);
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let (node, http, id, start) = self.begin();
        let admin = self.world.admin.with_base(&http);
        let result = admin.put_object(Bytes::from(bytes)).await;
        if self.record(
            id,
            node,
            start,
            Action::Upload { sha: sha.clone() },
            &result,
        ) == Outcome::Ok
        {
            self.world
                .acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sha);
        }
    }

    async fn read(&mut self) {
        let sha = {
            let acked = self.world.acked.lock().unwrap_or_else(|e| e.into_inner());
            if acked.is_empty() {
                return;
            }
            acked[self.rng.below(acked.len() as u64) as usize].clone()
        };
        let (node, http, id, start) = self.begin();
        let admin = self.world.admin.with_base(&http);
        let result = admin.get(&format!("/objects/{sha}")).await;
        let wrong = matches!(&result, Ok(r) if r.status == 200 && hex::encode(sha2::Sha256::digest(&r.body)) != sha);
        let missing = matches!(&result, Ok(r) if r.status == 404);
        self.record(
            id,
            node,
            start,
            Action::Read {
                sha,
                wrong,
                missing,
            },
            &result,
        );
    }

    async fn annotation_read(&mut self, key_index: usize) -> Option<u64> {
        let key = &self.world.keys[key_index];
        let client = self.world.annotators[key.annotator].1.clone();
        let path = key.path();
        let (node, http, id, start) = self.begin();
        let result = client.with_base(&http).get(&path).await;
        let (version, marker) = match &result {
            Ok(r) if r.status == 200 => {
                let body = r.json();
                let marker = body["shapes"][0]["attributes"]["op"]
                    .as_str()
                    .map(str::to_string);
                (body["version"].as_u64(), marker)
            }
            _ => (None, None),
        };
        let action = Action::AnnRead {
            key: key_index,
            version: version.unwrap_or(0),
            marker,
        };
        let ok = self.record(id, node, start, action, &result) == Outcome::Ok;
        version.filter(|_| ok)
    }

    fn annotation_save(
        &mut self,
        key_index: usize,
        if_match: u64,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let key = self.world.keys[key_index].clone();
        let client = self.world.annotators[key.annotator].1.clone();
        let (node, http) = self.node();
        let history = self.history.clone();
        let world = self.world.clone();
        let rng = self.rng.fork();
        async move {
            let id = history.next_id();
            let marker = format!("op{id}");
            let shapes = json!({"shapes": [{"label": "box", "kind": "rectangle",
                "points": [[1, 1], [2, 2]], "attributes": {"op": marker}}]});
            let tag = format!("\"{if_match}\"");
            let headers = [
                ("content-type", "application/json"),
                ("if-match", tag.as_str()),
            ];
            let start = history.now_us();
            let result = client
                .with_base(&http)
                .send(
                    Method::PUT,
                    &key.path(),
                    &headers,
                    Bytes::from(shapes.to_string()),
                )
                .await;
            let version = match &result {
                Ok(r) if r.status == 200 => r.json()["version"].as_u64(),
                _ => None,
            };
            let worker = Worker {
                world,
                history,
                rng,
            };
            let action = Action::AnnSave {
                key: key_index,
                if_match,
                marker,
                version,
            };
            worker.record(id, node, start, action, &result);
        }
    }

    async fn claim_round(&mut self, task: u64, round: u64) {
        let mut claims = Vec::new();
        for (user, client) in self.world.annotators.clone() {
            let (node, http) = self.node();
            let history = self.history.clone();
            claims.push(async move {
                let id = history.next_id();
                let start = history.now_us();
                let path = format!("/api/v1/tasks/{task}/claim");
                let result = post(&client.with_base(&http), &path, json!({})).await;
                (id, node, start, user, result)
            });
        }
        for (id, node, start, user, result) in futures_util::future::join_all(claims).await {
            self.record(
                id,
                node,
                start,
                Action::Claim { task, user, round },
                &result,
            );
        }
        // Back to the pool; a release that may not have happened is tried again, so the next
        // round starts from the pool or finds the task held (every claim then fails).
        for _ in 0..3 {
            let (node, http, id, start) = self.begin();
            let path = format!("/api/v1/tasks/{task}/reassign");
            let result = post(
                &self.world.manager.with_base(&http),
                &path,
                json!({"assignee": null}),
            )
            .await;
            if self.record(id, node, start, Action::Release { task, round }, &result) == Outcome::Ok
            {
                break;
            }
        }
    }
}

/// Starts the load's workers; they run until `stop` is set.
pub fn start(
    world: Arc<World>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    rng: &mut Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    let spawn_worker = |rng: &mut Rng| Worker {
        world: world.clone(),
        history: history.clone(),
        rng: rng.fork(),
    };
    for w in 0..2u64 {
        let (mut worker, stop) = (spawn_worker(rng), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut seed = 1_000_000 + w * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                worker.upload(seed).await;
            }
        }));
    }
    for _ in 0..2 {
        let (mut worker, stop) = (spawn_worker(rng), stop.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                worker.read().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // One editor per annotator: each alternates between its keys; a third of its saves are a
    // concurrent pair from the same version (two tabs), sent to two nodes.
    for annotator in 0..world.annotators.len() {
        let mine: Vec<usize> = (0..world.keys.len())
            .filter(|k| world.keys[*k].annotator == annotator)
            .collect();
        let (mut worker, stop) = (spawn_worker(rng), stop.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = *worker.rng.pick(&mine);
                let Some(version) = worker.annotation_read(key).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if worker.rng.below(3) == 0 {
                    let a = worker.annotation_save(key, version);
                    let b = worker.annotation_save(key, version);
                    tokio::join!(a, b);
                } else {
                    worker.annotation_save(key, version).await;
                }
            }
        }));
    }
    let (mut worker, stop) = (spawn_worker(rng), stop.clone());
    handles.push(tokio::spawn(async move {
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            let task = worker.world.pool[round as usize % worker.world.pool.len()];
            worker.claim_round(task, round).await;
            round += 1;
        }
    }));
    handles
}
