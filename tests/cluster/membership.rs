//! Growing and shrinking a running cluster: nodes added, removed and decommissioned while
//! uploads, reads and annotation saves go on, as a load balancer sends them to the members.
//! Replicas move learner → caught up → voter → old replica removed; no client request fails,
//! only about 1/N of the replicas move, and every acknowledged object and annotation version
//! is there afterwards on every node.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{eventually, Options, TestCluster, DEADLINE};

use crate::support::{
    add_images, create_annotation_set, create_user, image, leader_of, new_dataset, run_ok,
    send_json, sha_hex, upload, upload_as_a_client_would,
};

/// The load balancer: the nodes load goes to, and the requests in flight to each.
struct Members {
    clients: Mutex<Vec<Client>>,
    in_flight: Mutex<BTreeMap<String, usize>>,
}

impl Members {
    /// The `n`-th member round robin, counted in flight until the returned guard drops.
    fn pick(self: &Arc<Self>, n: u64) -> (Client, InFlight) {
        let clients = self.clients.lock().expect("members");
        let client = clients[n as usize % clients.len()].clone();
        *self
            .in_flight
            .lock()
            .expect("in flight")
            .entry(client.base().to_string())
            .or_default() += 1;
        let guard = InFlight {
            members: self.clone(),
            base: client.base().to_string(),
        };
        (client, guard)
    }
}

/// A request in flight to one member.
struct InFlight {
    members: Arc<Members>,
    base: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self
            .members
            .in_flight
            .lock()
            .expect("in flight")
            .get_mut(&self.base)
        {
            *n -= 1;
        }
    }
}

/// An acknowledged upload: its hash and bytes.
type Stored = (String, Vec<u8>);

/// Per image: the versions acknowledged, with their shapes.
type Saved = BTreeMap<String, Vec<(u64, Value)>>;

/// Moves of a node set change can take a while on two cores: snapshots of every moving shard.
const SETTLE: Duration = Duration::from_secs(180);

/// The annotation task the save worker works in.
struct Job {
    task: u64,
    shas: Vec<String>,
    annotator: Client,
}

/// Continuous uploads, hash-checked reads and annotation saves through the nodes in `members`
/// (the load balancer's list), recording what was acknowledged and every failed request.
struct Load {
    stop: Arc<AtomicBool>,
    members: Arc<Members>,
    stored: Arc<Mutex<Vec<Stored>>>,
    saved: Arc<Mutex<Saved>>,
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(members: Vec<Client>, job: Job) -> Load {
        let mut load = Load {
            stop: Arc::default(),
            members: Arc::new(Members {
                clients: Mutex::new(members),
                in_flight: Mutex::new(BTreeMap::new()),
            }),
            stored: Arc::default(),
            saved: Arc::default(),
            failures: Arc::default(),
            requests: Arc::default(),
            workers: Vec::new(),
        };
        for worker in 0..2u64 {
            load.spawn_objects(worker);
        }
        load.spawn_saves(job);
        load
    }

    fn fail(&self) -> impl Fn(String) + Send + Sync + 'static {
        let failures = self.failures.clone();
        move |what| failures.lock().expect("failures").push(what)
    }

    fn spawn_objects(&mut self, worker: u64) {
        let (stop, members, stored) =
            (self.stop.clone(), self.members.clone(), self.stored.clone());
        let (fail, requests) = (self.fail(), self.requests.clone());
        self.workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (client, _in_flight) = members.pick(n + worker);
                let bytes = image(50_000 + worker * 1_000_000 + n);
                requests.fetch_add(2, Ordering::Relaxed);
                match upload_as_a_client_would(&client, &bytes).await {
                    Ok(r) if r.status.is_success() => {
                        stored
                            .lock()
                            .expect("stored")
                            .push((sha_hex(&bytes), bytes));
                    }
                    Ok(r) => fail(format!(
                        "upload via {}: {} {:?}",
                        client.base(),
                        r.status,
                        r.json()
                    )),
                    Err(e) => fail(format!("upload via {}: {e}", client.base())),
                }
                let earlier = {
                    let all = stored.lock().expect("stored");
                    all.get((n as usize * 7) % all.len().max(1)).cloned()
                };
                let Some((sha, _)) = earlier else { continue };
                match client.get(&format!("/objects/{sha}")).await {
                    Ok(r) if r.status == 200 && sha_hex(&r.body) == sha => {}
                    Ok(r) => fail(format!("read {sha} via {}: {}", client.base(), r.status)),
                    Err(e) => fail(format!("read {sha} via {}: {e}", client.base())),
                }
            }
        }));
    }

    /// Saves a new version of each image in turn, through the members in turn, as the UI does:
    /// `If-Match` with the version it edited and an `Idempotency-Key`, retried on a 503 that
    /// carries `Retry-After` (a retry with the key gets the first outcome, never a second
    /// version).
    fn spawn_saves(&mut self, job: Job) {
        let (stop, members, saved) = (self.stop.clone(), self.members.clone(), self.saved.clone());
        let (fail, requests) = (self.fail(), self.requests.clone());
        self.workers.push(tokio::spawn(async move {
            let mut versions: BTreeMap<String, u64> = BTreeMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sha = &job.shas[n as usize % job.shas.len()];
                let version = versions.get(sha).copied().unwrap_or(0);
                let x = (n % 50) as f64;
                let shapes = json!([{"label": "car", "kind": "rectangle", "points": [[x, 1.0], [x + 9.0, 8.0]]}]);
                let (node, _in_flight) = members.pick(n);
                let client = job.annotator.with_base(node.base());
                let path = format!("/api/v1/tasks/{}/images/{sha}/annotations", job.task);
                let (if_match, key) = (format!("\"{version}\""), format!("save-{sha}-{version}"));
                let headers = [
                    ("content-type", "application/json"),
                    ("if-match", if_match.as_str()),
                    ("idempotency-key", key.as_str()),
                ];
                let body = Bytes::from(json!({ "shapes": shapes }).to_string());
                let mut tries = 0;
                requests.fetch_add(1, Ordering::Relaxed);
                let reply = loop {
                    let reply = client.send(Method::PUT, &path, &headers, body.clone()).await;
                    let retry = reply.as_ref().ok().and_then(|r| {
                        (r.status == 503).then(|| r.header("retry-after")?.parse::<u64>().ok())?
                    });
                    match retry {
                        Some(seconds) if tries < 3 => {
                            tries += 1;
                            // The server's back-off, honoured as a client does.
                            tokio::time::sleep(Duration::from_secs(seconds)).await;
                        }
                        _ => break reply,
                    }
                };
                match reply {
                    Ok(r) if r.status == 200 => {
                        versions.insert(sha.clone(), version + 1);
                        saved
                            .lock()
                            .expect("saved")
                            .entry(sha.clone())
                            .or_default()
                            .push((version + 1, shapes));
                    }
                    Ok(r) => fail(format!("save {sha} v{version} via {}: {} {:?}", client.base(), r.status, r.json())),
                    Err(e) => fail(format!("save {sha} v{version} via {}: {e}", client.base())),
                }
            }
        }));
    }

    /// Sends load to `client` from now on (a node that joined and is ready).
    fn admit(&self, client: Client) {
        self.members.clients.lock().expect("members").push(client);
    }

    /// Stops sending to the node at `base` and waits until its requests in flight are answered,
    /// as a load balancer drains a node before it is taken down.
    async fn withdraw(&self, base: &str) {
        self.members
            .clients
            .lock()
            .expect("members")
            .retain(|c| c.base() != base);
        eventually("the node's requests to finish", DEADLINE, || async {
            let in_flight = self.members.in_flight.lock().expect("in flight");
            (in_flight.get(base).copied().unwrap_or(0) == 0).then_some(())
        })
        .await;
    }

    /// Stops the load; returns the failed requests and how many requests were made.
    async fn finish(self) -> (Vec<String>, u64, Vec<Stored>, Saved) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        let failures = self.failures.lock().expect("failures").clone();
        let stored = self.stored.lock().expect("stored").clone();
        let saved = self.saved.lock().expect("saved").clone();
        (
            failures,
            self.requests.load(Ordering::Relaxed),
            stored,
            saved,
        )
    }
}

/// A manager's dataset of `images` images with an annotation set of one label, split into one
/// task assigned to an annotator who has started it.
async fn annotation_job(admin: &Client, images: u64) -> Job {
    let manager = create_user(admin, "mgr", "manager").await;
    let annotator = create_user(admin, "ann", "annotator").await;
    let mut shas = Vec::new();
    for seed in 0..images {
        shas.push(upload(admin, &image(900_000 + seed)).await);
    }
    let dataset = new_dataset(&manager, "grow").await;
    let listed: Vec<Value> = shas.iter().map(|s| json!({ "sha256": s })).collect();
    let added = add_images(&manager, dataset, json!(listed)).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}]);
    let set = create_annotation_set(&manager, dataset, "s", &labels)
        .await
        .json()["id"]
        .as_u64()
        .expect("set id");
    let split = send_json(
        &manager,
        Method::POST,
        &format!("/api/v1/annotation-sets/{set}/tasks/split"),
        json!({"chunk_size": images, "assignees": ["ann"]}),
    )
    .await;
    assert_eq!(split.status, 201, "{:?}", split.json());
    let task = split.json()["tasks"][0].as_u64().expect("task id");
    let started = send_json(
        &annotator,
        Method::POST,
        &format!("/api/v1/tasks/{task}/start"),
        json!({}),
    )
    .await;
    assert_eq!(started.status, 200, "{:?}", started.json());
    Job {
        task,
        shas,
        annotator,
    }
}

/// The voters of every group, from the cluster status.
async fn holders(cluster: &TestCluster) -> Vec<BTreeSet<u64>> {
    cluster.status().await["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            g["voters"]
                .as_array()
                .expect("voters")
                .iter()
                .filter_map(Value::as_u64)
                .collect()
        })
        .collect()
}

/// Waits until no replica has to move any more and no node is leaving; returns the node set.
/// On a timeout it says where every group stands.
async fn settled(cluster: &TestCluster, admin: &Client) -> Value {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        if let Ok(reply) = admin.get("/api/v1/cluster/nodes").await {
            let nodes = reply.json();
            let done = reply.status == 200
                && nodes["moves"]["to_go"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                && nodes["nodes"]
                    .as_array()
                    .is_some_and(|all| all.iter().all(|n| n["state"] == "active"));
            if done {
                return nodes;
            }
            if std::time::Instant::now() > deadline {
                let status = cluster.status().await;
                panic!(
                    "the replica moves did not finish: {nodes}\ngroups: {}",
                    status["groups"]
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicas that moved onto other nodes between two placements, over the shard groups.
fn moved(before: &[BTreeSet<u64>], after: &[BTreeSet<u64>]) -> (usize, usize) {
    let mut moved = 0;
    let mut total = 0;
    for (old, new) in before.iter().zip(after).skip(1) {
        moved += new.difference(old).count();
        total += new.len();
    }
    (moved, total)
}

/// Waits until every group is hosted only by its voters: removed replicas deleted themselves.
async fn only_voters_host(cluster: &TestCluster) {
    eventually("removed replicas to be deleted", SETTLE, || async {
        let status = cluster.status().await;
        let clean = status["groups"].as_array()?.iter().skip(1).all(|g| {
            let voters: BTreeSet<String> = g["voters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.to_string())
                .collect();
            let hosting: BTreeSet<String> = g["replicas"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, _)| id.clone())
                .collect();
            voters == hosting
        });
        clean.then_some(())
    })
    .await;
}

/// After the load: no failed request, every acknowledged object served with its bytes by every
/// listed node, and every image's annotation history holding every acknowledged version.
async fn check_everything(
    cluster: &TestCluster,
    nodes: &[u64],
    load: Load,
    job_task: u64,
    annotator: &Client,
) {
    let (failures, requests, stored, saved) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        stored.len() > 20,
        "the load hardly ran: {} uploads",
        stored.len()
    );
    eprintln!("{requests} requests, 0 failed; {} uploads", stored.len());
    for id in nodes {
        let client = cluster.node(*id).client();
        for (sha, bytes) in &stored {
            let reply = client.get(&format!("/objects/{sha}")).await.expect("read");
            assert_eq!(reply.status, 200, "{sha} via node {id}");
            assert_eq!(&reply.body[..], &bytes[..], "{sha} via node {id}");
        }
        for (sha, versions) in &saved {
            let client = annotator.with_base(cluster.node(*id).client().base());
            let path =
                format!("/api/v1/tasks/{job_task}/images/{sha}/annotations/history?limit=1000");
            let reply = client.get(&path).await.expect("history");
            assert_eq!(reply.status, 200, "{:?}", reply.json());
            let history = reply.json();
            let items = history["items"].as_array().expect("items");
            for (version, shapes) in versions {
                let found = items
                    .iter()
                    .find(|v| v["version"].as_u64() == Some(*version))
                    .unwrap_or_else(|| panic!("{sha} v{version} missing via node {id}"));
                assert_eq!(
                    found["shapes"][0]["points"], shapes[0]["points"],
                    "{sha} v{version}"
                );
            }
        }
    }
}

#[tokio::test]
async fn adding_two_nodes_under_load_moves_about_one_nth_and_fails_no_request() {
    let mut cluster = TestCluster::start(Options {
        shards: 12,
        // Short logs: new replicas catch up from snapshots, not only from the log.
        snapshot_logs: 40,
        keep_logs: 10,
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 6).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    for seed in 0..40 {
        upload(&admin, &image(700_000 + seed)).await;
    }
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let load = Load::start(members, job);
    let before = holders(&cluster).await;

    // Node 4 with the CLI, as an operator adds one.
    let four = cluster.start_new_node().await;
    let token = cluster.node(1).token().expect("admin token").to_string();
    let added = run_ok(
        Command::new(tessera_cluster_tests::binary())
            .args([
                "node",
                "add",
                "--id",
                &four.to_string(),
                "--wait",
                "--config",
            ])
            .arg(cluster.config_path())
            .env("TESSERA_TOKEN", &token),
    );
    let said = String::from_utf8_lossy(&added.stdout).to_string();
    assert!(said.contains("done"), "tessera node add said: {said}");
    cluster.node(four).wait_ready().await;
    load.admit(cluster.node(four).client());
    let nodes = settled(&cluster, &admin).await;
    let after_four = holders(&cluster).await;
    let (moved4, total) = moved(&before, &after_four);
    eprintln!("adding node 4 moved {moved4} of {total} shard replicas");
    assert!(moved4 > 0, "node 4 received nothing: {nodes}");
    assert!(
        moved4 as f64 <= (0.25 + 0.10) * total as f64,
        "{moved4} of {total} replicas moved for a 4th node"
    );
    assert!(after_four.iter().skip(1).all(|g| g.len() == 3));
    assert!(
        after_four[0].contains(&four),
        "node 4 is not a catalogue voter"
    );

    // Node 5 through the API.
    let five = cluster.start_new_node().await;
    let node = cluster.node(five);
    let reply = send_json(
        &admin,
        Method::POST,
        "/api/v1/cluster/nodes",
        json!({"id": five, "http": node.http, "rpc": node.rpc}),
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    cluster.node(five).wait_ready().await;
    load.admit(cluster.node(five).client());
    settled(&cluster, &admin).await;
    let after_five = holders(&cluster).await;
    let (moved5, total) = moved(&after_four, &after_five);
    eprintln!("adding node 5 moved {moved5} of {total} shard replicas");
    assert!(
        moved5 > 0 && moved5 as f64 <= (0.20 + 0.10) * total as f64,
        "{moved5} of {total}"
    );
    assert_eq!(after_five[0].len(), 5, "the catalogue has five voters");
    only_voters_host(&cluster).await;
    check_everything(&cluster, &[1, 2, 3, 4, 5], load, task, &annotator).await;
}

#[tokio::test]
async fn removing_a_node_and_decommissioning_a_dead_one_keep_every_object() {
    let mut cluster = TestCluster::start(Options {
        nodes: 5,
        shards: 8,
        snapshot_logs: 40,
        keep_logs: 10,
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 4).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let load = Load::start(members, job);
    for seed in 0..30 {
        upload(&admin, &image(600_000 + seed)).await;
    }

    // Node 2 drained: it keeps serving while its replicas move, then leaves.
    let reply = admin
        .send(Method::DELETE, "/api/v1/cluster/nodes/2", &[], Bytes::new())
        .await
        .expect("remove");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    let nodes = settled(&cluster, &admin).await;
    load.withdraw(cluster.node(2).client().base()).await;
    let ids: Vec<u64> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![1, 3, 4, 5], "{nodes}");
    assert!(holders(&cluster).await.iter().all(|g| !g.contains(&2)));

    // Node 3 dies; it is decommissioned and its replicas rebuilt from the survivors.
    load.withdraw(cluster.node(3).client().base()).await;
    cluster.kill(3);
    let refused = admin
        .send(Method::DELETE, "/api/v1/cluster/nodes/3", &[], Bytes::new())
        .await
        .expect("remove");
    assert_eq!(
        refused.status,
        409,
        "removing a dead node must say to decommission it: {:?}",
        refused.json()
    );
    assert!(refused.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("decommission"));
    let reply = admin
        .send(
            Method::DELETE,
            "/api/v1/cluster/nodes/3?decommission=true",
            &[],
            Bytes::new(),
        )
        .await
        .expect("decommission");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    settled(&cluster, &admin).await;
    let after = holders(&cluster).await;
    assert!(
        after.iter().all(|g| !g.contains(&3) && !g.contains(&2)),
        "{after:?}"
    );
    assert!(after.iter().skip(1).all(|g| g.len() == 3), "{after:?}");
    // Three nodes left for three replicas: one more removal is refused.
    let refused = admin
        .send(
            Method::DELETE,
            "/api/v1/cluster/nodes/4?decommission=true",
            &[],
            Bytes::new(),
        )
        .await
        .expect("remove");
    assert_eq!(refused.status, 409, "{:?}", refused.json());
    check_everything(&cluster, &[1, 4, 5], load, task, &annotator).await;
    // The drained node deleted its replicas' data (only its catalogue replica is left).
    eventually("node 2 to hold no shard replica", SETTLE, || async {
        let status = cluster.status().await;
        let hosting = status["groups"]
            .as_array()?
            .iter()
            .skip(1)
            .any(|g| g["replicas"].get("2").is_some());
        (!hosting).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_move_survives_its_leader_and_the_new_node_being_killed() {
    let mut cluster = TestCluster::start(Options {
        shards: 6,
        snapshot_logs: 20,
        keep_logs: 5,
        // Slow snapshots, so that the kills land while replicas are on their way.
        snapshot_bytes_per_s: Some(256 << 10),
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 3).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    // 40 objects of 190 KB: each shard's snapshot takes seconds at 256 KiB/s.
    for seed in 0..40 {
        upload(
            &admin,
            &tessera_cluster_tests::png(256, 256, 800_000 + seed),
        )
        .await;
    }
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let load = Load::start(members, job);
    let four = cluster.start_new_node().await;
    let node = cluster.node(four);
    let reply = send_json(
        &admin,
        Method::POST,
        "/api/v1/cluster/nodes",
        json!({"id": four, "http": node.http, "rpc": node.rpc}),
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    // A move under way: kill -9 the leader of its group (the planner's too, if it leads the
    // catalogue as well), then the new node, mid-snapshot.
    let moving = eventually("a move to start", DEADLINE, || async {
        let nodes = admin.get("/api/v1/cluster/nodes").await.ok()?.json();
        nodes["moves"]["running"]
            .as_array()?
            .iter()
            .find_map(|m| m["group"].as_u64().filter(|g| *g > 0))
    })
    .await;
    let leader = leader_of(&cluster, moving as usize).await;
    load.withdraw(cluster.node(leader).client().base()).await;
    cluster.kill(leader);
    let admin = cluster.node(if leader == 1 { 2 } else { 1 }).client();
    eventually("node 4 to receive a snapshot", DEADLINE, || async {
        cluster
            .log(four)
            .contains("receiving a snapshot")
            .then_some(())
    })
    .await;
    cluster.kill(four);
    cluster.start_node(four);
    cluster.restart(leader).await;
    load.admit(cluster.node(leader).client());
    settled(&cluster, &admin).await;
    cluster.node(four).wait_ready().await;
    let after = holders(&cluster).await;
    assert!(after.iter().skip(1).all(|g| g.len() == 3), "{after:?}");
    assert!(
        after.iter().any(|g| g.contains(&four)),
        "node 4 holds nothing: {after:?}"
    );
    only_voters_host(&cluster).await;
    check_everything(&cluster, &[1, 2, 3, 4], load, task, &annotator).await;
}
