//! Mixed client load for cluster tests that stop, add or remove nodes: uploads, hash-checked
//! reads and annotation saves sent as a load balancer sends them (to the members it lists,
//! drained before a node goes), recording every acknowledged write and every failed request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{eventually, TestCluster, DEADLINE};

use crate::support::{
    add_images, car_set, create_user, image, new_dataset, sha_hex, started_task, upload,
    upload_as_a_client_would,
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

/// The annotation task the save worker works in.
pub struct Job {
    pub task: u64,
    shas: Vec<String>,
    pub annotator: Client,
}

/// Continuous uploads, hash-checked reads and annotation saves through the nodes in `members`
/// (the load balancer's list), recording what was acknowledged and every failed request.
pub struct Load {
    stop: Arc<AtomicBool>,
    members: Arc<Members>,
    stored: Arc<Mutex<Vec<Stored>>>,
    saved: Arc<Mutex<Saved>>,
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(members: Vec<Client>, job: Job) -> Load {
        Load::with_uploads_every(members, job, None)
    }

    /// As [`Load::start`], but each upload worker starts an upload at most once per `every`:
    /// for a test whose moves must converge, as a group written faster than snapshots are
    /// paced is never caught up (each snapshot is stale on arrival).
    pub fn paced(members: Vec<Client>, job: Job, every: Duration) -> Load {
        Load::with_uploads_every(members, job, Some(every))
    }

    fn with_uploads_every(members: Vec<Client>, job: Job, every: Option<Duration>) -> Load {
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
            load.spawn_objects(worker, every);
        }
        load.spawn_saves(job);
        load
    }

    fn fail(&self) -> impl Fn(String) + Send + Sync + 'static {
        let failures = self.failures.clone();
        move |what| failures.lock().expect("failures").push(what)
    }

    fn spawn_objects(&mut self, worker: u64, every: Option<Duration>) {
        let (stop, members, stored) =
            (self.stop.clone(), self.members.clone(), self.stored.clone());
        let (fail, requests) = (self.fail(), self.requests.clone());
        self.workers.push(tokio::spawn(async move {
            let mut pace = every.map(|every| {
                let mut pace = tokio::time::interval(every);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                pace
            });
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
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
    pub fn admit(&self, client: Client) {
        self.members.clients.lock().expect("members").push(client);
    }

    /// Stops sending to the node at `base` and waits until its requests in flight are answered,
    /// as a load balancer drains a node before it is taken down.
    pub async fn withdraw(&self, base: &str) {
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
pub async fn annotation_job(admin: &Client, images: u64) -> Job {
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
    let set = car_set(&manager, dataset).await;
    let task = started_task(&manager, (&annotator, "ann"), set, shas.len()).await;
    Job {
        task,
        shas,
        annotator,
    }
}

/// After the load: no failed request, every acknowledged object served with its bytes by every
/// listed node, and every image's annotation history holding every acknowledged version.
pub async fn check_everything(
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
