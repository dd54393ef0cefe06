//! Helpers shared by the cluster tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::Digest;
use tessera_client::{form_encode, Client, Method, Reply};
use tessera_cluster_tests::{png, Options, TestCluster};

pub fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A distinct test image for `seed` (about 30 KB).
pub fn image(seed: u64) -> Vec<u8> {
    png(100, 100, seed)
}

/// Uploads and asserts the upload was accepted; returns the reported hash.
pub async fn upload(client: &Client, bytes: &[u8]) -> String {
    let reply = client
        .put_object(Bytes::copy_from_slice(bytes))
        .await
        .expect("upload request");
    assert!(
        reply.status.is_success(),
        "upload failed: {} {:?}",
        reply.status,
        reply.json()
    );
    let sha = reply.json()["sha256"]
        .as_str()
        .expect("sha256 in reply")
        .to_string();
    assert_eq!(sha, sha_hex(bytes));
    sha
}

/// Reads `/objects/<sha>` and asserts the bytes are exactly `expected`.
pub async fn assert_serves(client: &Client, sha: &str, expected: &[u8]) {
    let reply = client
        .get(&format!("/objects/{sha}"))
        .await
        .expect("read request");
    assert_eq!(
        reply.status,
        200,
        "GET {sha} from {}: {:?}",
        client.base(),
        reply.json()
    );
    assert_eq!(
        sha_hex(&reply.body),
        sha,
        "wrong bytes from {}",
        client.base()
    );
    assert_eq!(&reply.body[..], expected);
}

/// The record of object `sha` (`/api/v1/objects/<sha>`), asserting it exists.
pub async fn object_record(client: &Client, sha: &str) -> Value {
    let reply = client
        .get(&format!("/api/v1/objects/{sha}"))
        .await
        .expect("object record");
    assert_eq!(reply.status, 200, "record of {sha}: {:?}", reply.json());
    reply.json()
}

/// The voters of the group that holds `sha`, from the cluster status.
pub fn voters_of(status: &Value, sha: &str) -> Vec<u64> {
    let shards = status["shards"].as_u64().expect("shards");
    let prefix = u64::from_str_radix(&sha[..16], 16).expect("hex");
    let shard = ((u128::from(prefix) * u128::from(shards)) >> 64) as usize;
    status["groups"][shard + 1]["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

/// Waits until every group's replicas on running nodes have applied as far as its leader.
pub async fn wait_caught_up(cluster: &TestCluster) {
    tessera_cluster_tests::eventually(
        "replicas to catch up",
        tessera_cluster_tests::DEADLINE,
        || async {
            let status = cluster.status().await;
            let groups = status["groups"].as_array()?.clone();
            let running: Vec<String> = cluster
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(|n| n.id.to_string())
                .collect();
            for g in groups {
                let replicas = g["replicas"].as_object()?;
                let leader = g["leader"].as_u64()?.to_string();
                let target = replicas.get(&leader)?["applied"].as_u64()?;
                for id in g["voters"].as_array()?.iter().map(|v| v.to_string()) {
                    if running.contains(&id) && replicas.get(&id)?["applied"].as_u64()? < target {
                        return None;
                    }
                }
            }
            Some(())
        },
    )
    .await
}

/// `count` distinct images whose objects fall into `shard` of `shards`, from seeds at `from`.
pub fn images_in_shard(shard: u64, shards: u64, count: usize, from: u64) -> Vec<Vec<u8>> {
    (from..)
        .map(image)
        .filter(|bytes| {
            let sha = sha_hex(bytes);
            let prefix = u64::from_str_radix(&sha[..16], 16).expect("hex");
            ((u128::from(prefix) * u128::from(shards)) >> 64) as u64 == shard
        })
        .take(count)
        .collect()
}

/// The leader of Raft group `group` (shard + 1), waiting until it has one.
pub async fn leader_of(cluster: &TestCluster, group: usize) -> u64 {
    tessera_cluster_tests::eventually("a leader", tessera_cluster_tests::DEADLINE, || async {
        cluster.status().await["groups"][group]["leader"].as_u64()
    })
    .await
}

/// The leader of Raft group `group` once it is another node than `old`.
pub async fn new_leader_of(cluster: &TestCluster, group: usize, old: u64) -> u64 {
    tessera_cluster_tests::eventually("a new leader", tessera_cluster_tests::DEADLINE, || async {
        let status = cluster.status().await;
        status["groups"][group]["leader"]
            .as_u64()
            .filter(|l| *l != old)
    })
    .await
}

/// A cluster started with `opts`, the node leading its catalogue, and an admin client of
/// another node: tests that kill the catalogue's leader mid-way work through that one.
pub async fn cluster_beside_catalogue_leader(opts: Options) -> (TestCluster, u64, Client) {
    let cluster = TestCluster::start(opts).await;
    let leader = leader_of(&cluster, 0).await;
    let admin = cluster.node(node_but(&cluster, leader)).client();
    (cluster, leader, admin)
}

/// The ids of every node of `cluster` but `but`.
pub fn nodes_but(cluster: &TestCluster, but: u64) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != but)
        .collect()
}

/// A node of `cluster` other than `but`.
pub fn node_but(cluster: &TestCluster, but: u64) -> u64 {
    nodes_but(cluster, but)[0]
}

/// Posts form fields (`application/x-www-form-urlencoded`), as OAuth2 clients do.
pub async fn form(client: &Client, path: &str, fields: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
    client
        .send(
            Method::POST,
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(body.join("&")),
        )
        .await
        .expect("form request")
}

/// Sends `body` as JSON and returns the reply.
pub async fn send_json(client: &Client, method: Method, path: &str, body: Value) -> Reply {
    send_json_text(client, method, path, body.to_string()).await
}

/// Sends `text` labelled as JSON, whether or not it is (for malformed and hostile bodies).
pub async fn send_json_text(
    client: &Client,
    method: Method,
    path: &str,
    text: impl Into<Bytes>,
) -> Reply {
    let headers = [("content-type", "application/json")];
    client
        .send(method, path, &headers, text.into())
        .await
        .expect("json request")
}

/// `DELETE path`.
pub async fn delete(client: &Client, path: &str) -> Reply {
    client
        .send(Method::DELETE, path, &[], Bytes::new())
        .await
        .expect("DELETE")
}

/// `GET /api/v1/me` with `token`.
pub async fn me(client: &Client, token: &str) -> Reply {
    client
        .with_token(token.to_string())
        .get("/api/v1/me")
        .await
        .expect("GET /api/v1/me")
}

/// Polls `GET /api/v1/me` with `token` until it is refused with 401; returns that reply (a
/// node applies a revocation a moment after the node that made it answered).
pub async fn refused_token(client: &Client, token: &str, what: &str) -> Reply {
    tessera_cluster_tests::eventually(what, tessera_cluster_tests::DEADLINE, || async {
        let reply = me(client, token).await;
        (reply.status == 401).then_some(reply)
    })
    .await
}

/// Asserts `reply` is a refusal with `status` and the JSON error `code`.
pub fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.json());
    assert_eq!(reply.json()["error"]["code"], code, "{:?}", reply.json());
}

/// The page after `page` of the listing at `path` (which has a query, such as its limit).
pub async fn next_page(client: &Client, path: &str, page: &Value) -> Value {
    let cursor = page["next_cursor"].as_str().expect("a next page");
    client
        .get(&format!("{path}&cursor={cursor}"))
        .await
        .expect("next page")
        .json()
}

/// Asks to create a dataset described by `body`; returns the reply, whatever it is.
pub async fn create_dataset(client: &Client, body: Value) -> Reply {
    send_json(client, Method::POST, "/api/v1/datasets", body).await
}

/// Adds `images` (`[{"sha256", "name"?}]`) to dataset `dataset`.
pub async fn add_images(client: &Client, dataset: u64, images: Value) -> Reply {
    let path = format!("/api/v1/datasets/{dataset}/images");
    send_json(client, Method::POST, &path, json!({ "images": images })).await
}

/// Asks to create annotation set `name` with `labels` in `dataset`; returns the reply.
pub async fn create_annotation_set(
    client: &Client,
    dataset: u64,
    name: &str,
    labels: &Value,
) -> Reply {
    let path = format!("/api/v1/datasets/{dataset}/annotation-sets");
    let body = json!({"name": name, "labels": labels});
    send_json(client, Method::POST, &path, body).await
}

/// Annotation set "s" on `dataset` with one label, `car` (rectangles): its id.
pub async fn car_set(manager: &Client, dataset: u64) -> u64 {
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}]);
    let created = create_annotation_set(manager, dataset, "s", &labels).await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    created.json()["id"].as_u64().expect("set id")
}

/// Splits `set` into tasks of `chunk_size` images for the annotator named `name` (the client
/// `annotator`), who starts the first: its id.
pub async fn started_task(
    manager: &Client,
    (annotator, name): (&Client, &str),
    set: u64,
    chunk_size: usize,
) -> u64 {
    let split = send_json(
        manager,
        Method::POST,
        &format!("/api/v1/annotation-sets/{set}/tasks/split"),
        json!({"chunk_size": chunk_size, "assignees": [name]}),
    )
    .await;
    assert_eq!(split.status, 201, "{:?}", split.json());
    let task = split.json()["tasks"][0].as_u64().expect("task id");
    start_task(annotator, task).await;
    task
}

/// `annotator` starts task `task`.
pub async fn start_task(annotator: &Client, task: u64) {
    let path = format!("/api/v1/tasks/{task}/start");
    let started = send_json(annotator, Method::POST, &path, json!({})).await;
    assert_eq!(started.status, 200, "{:?}", started.json());
}

/// The dataset annotation set `set` is on, as its record says.
pub async fn dataset_of(client: &Client, set: u64) -> u64 {
    let reply = client
        .get(&format!("/api/v1/annotation-sets/{set}"))
        .await
        .expect("annotation set");
    reply.json()["dataset_id"].as_u64().expect("dataset id")
}

/// The message of a JSON error reply (empty if there is none).
pub fn error_message(reply: &Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Creates dataset `name` and returns its id.
pub async fn new_dataset(manager: &Client, name: &str) -> u64 {
    let reply = create_dataset(manager, json!({ "name": name })).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    reply.json()["id"].as_u64().expect("dataset id")
}

/// Creates a user (password `<name>-password`) as `admin` and returns a client logged in as it.
pub async fn create_user(admin: &Client, name: &str, role: &str) -> Client {
    let password = format!("{name}-password");
    let body = json!({"username": name, "password": password, "role": role});
    let reply = send_json(admin, Method::POST, "/api/v1/users", body).await;
    assert_eq!(reply.status, 201, "create {name}: {:?}", reply.json());
    let token = admin
        .anonymous()
        .login(name, &password)
        .await
        .expect("login");
    admin.with_token(token)
}

/// An admin sets user `name`'s password (which ends every session of the user).
pub async fn reset_password(admin: &Client, name: &str, password: &str) {
    let path = format!("/api/v1/users/{name}");
    let reply = send_json(admin, Method::PATCH, &path, json!({"password": password})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());
}

/// Creates an API token as `client`'s user; returns the reply (`token` and `session`).
pub async fn api_token(client: &Client) -> Value {
    let reply = send_json(client, Method::POST, "/api/v1/me/tokens", json!({})).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    reply.json()
}

/// A cluster of `opts` and a client of its user `name` with `role` (password
/// `<name>-password`), created by the admin and signed in through node 1.
pub async fn cluster_with_user(opts: Options, name: &str, role: &str) -> (TestCluster, Client) {
    let cluster = TestCluster::start(opts).await;
    let user = create_user(&cluster.node(1).client(), name, role).await;
    (cluster, user)
}

/// A cluster of `opts` and a client of its manager `mgr`, signed in through node 1.
pub async fn cluster_with_manager(opts: Options) -> (TestCluster, Client) {
    cluster_with_user(opts, "mgr", "manager").await
}

/// Cancels job `id` (an import or an export).
pub async fn cancel_job(client: &Client, id: u64) {
    let path = format!("/api/v1/jobs/{id}/cancel");
    let reply = send_json(client, Method::POST, &path, json!({})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());
}

/// Runs `command` to its end and asserts it succeeded (saying what it printed if not).
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The Python of the venv with datumaro and pycocotools (made by scripts/test.sh).
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var("TESSERA_FORMATS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/formats-venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh creates it (python3 -m venv target/formats-venv && \
         target/formats-venv/bin/pip install -r tests/formats/requirements.txt)",
        path.display()
    );
    path
}

/// A script of tests/formats.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("formats")
        .join(name)
}

/// The value of an unlabelled counter in a node's `/metrics` (0 while never incremented).
pub async fn counter(client: &Client, name: &str) -> u64 {
    let reply = client.get("/metrics").await.expect("metrics");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// An upload as an HTTP client does it: a 503 that carries `Retry-After` (the cluster says the
/// write may not have happened and when to try again) is retried after that delay, up to three
/// times — uploads are idempotent (content-addressed). Reads are never retried.
pub async fn upload_as_a_client_would(
    client: &Client,
    bytes: &[u8],
) -> Result<tessera_client::Reply, tessera_client::ClientError> {
    let mut tries = 0;
    loop {
        let reply = client
            .put_object(bytes::Bytes::copy_from_slice(bytes))
            .await?;
        let retry_after = reply
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok());
        match retry_after {
            Some(seconds) if reply.status == 503 && tries < 3 => {
                tries += 1;
                // The server's own back-off, honoured as a client does; not synchronisation.
                tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            }
            _ => return Ok(reply),
        }
    }
}
