//! `tessera backup` and `tessera restore` as an operator runs them: an online backup of a
//! three-node cluster under upload and annotation load, restored into a cluster of another size
//! and shard count, compared object by object and version by version; an incremental second
//! backup; refusals (a cluster with data, a damaged backup).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{binary, eventually, Options, TestCluster, ADMIN_PASSWORD, DEADLINE};

use crate::support::{image, images_in_shard, new_dataset, sha_hex, upload};
use crate::tasks::{act, annotated_dataset, assign, car, team};

/// Runs `tessera <args> --config <config>` as the admin, on the blocking pool (the cluster
/// keeps serving meanwhile).
async fn tessera(config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("TESSERA_PASSWORD", ADMIN_PASSWORD);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run tessera")
}

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The number before `label` in a backup's summary line (`… (3 new, 7 reused, …`).
fn figure(summary: &str, label: &str) -> u64 {
    let at = summary
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {summary:?}"));
    summary[..at]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {label:?} in {summary:?}"))
}

/// Saves `shapes` as the version after `version` of `sha` in `task`; the new version.
async fn save(client: &Client, task: u64, sha: &str, version: u64, shapes: Value) -> u64 {
    let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");
    let etag = format!("\"{version}\"");
    let headers = [
        ("content-type", "application/json"),
        ("if-match", etag.as_str()),
    ];
    let body = Bytes::from(json!({ "shapes": shapes }).to_string());
    let reply = client
        .send(Method::PUT, &path, &headers, body)
        .await
        .expect("save");
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    reply.json()["version"].as_u64().expect("version")
}

/// A box whose place tells saves apart (images are 100 × 100).
fn boxes(n: u64) -> Value {
    let (x, y) = (n % 90, n / 90 % 90);
    json!([{"label": "car", "kind": "rectangle", "points": [[x, y], [x + 5, y + 9]]}])
}

async fn history(client: &Client, task: u64, sha: &str) -> Vec<Value> {
    let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations/history");
    let reply = client.get(&path).await.expect("history");
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    reply.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The admin of a cluster, signed in again (a restore replaces the users).
async fn admin_of(cluster: &TestCluster) -> Client {
    let client = Client::new(&cluster.node(1).http);
    let token = client.login("admin", ADMIN_PASSWORD).await.expect("login");
    client.with_token(token)
}

/// The lines of the latest backup's `objects.jsonl` in `dir`, by hash.
fn backed_up_objects(dir: &Path) -> BTreeMap<String, Value> {
    let id = std::fs::read_to_string(dir.join("LATEST")).expect("LATEST");
    let raw = std::fs::read_to_string(dir.join("backups").join(id.trim()).join("objects.jsonl"))
        .expect("objects.jsonl");
    raw.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a record"))
        .map(|v| (v["sha256"].as_str().expect("sha").to_string(), v))
        .collect()
}

#[tokio::test]
async fn backup_under_load_restores_into_a_cluster_of_another_size() {
    let source = TestCluster::start(Options::default()).await;
    let (admin, manager, [ann1]) = team(&source, 1, [("ann1", "annotator")]).await;
    let (shas, set) = annotated_dataset(&admin, &manager, 0..6, car()).await;
    let task = assign(&manager, set, 10, "ann1").await[0];
    assert_eq!(act(&ann1, task, "start", json!({})).await.status, 200);
    let mut versions = BTreeMap::new();
    for (i, sha) in shas.iter().enumerate() {
        let mut version = 0;
        for n in 0..3 {
            version = save(&ann1, task, sha, version, boxes(i as u64 * 10 + n)).await;
        }
        versions.insert(sha.clone(), version);
    }
    // Objects in no dataset, one uploaded twice (reference count 2).
    let mut loose = Vec::new();
    for seed in 100..110 {
        loose.push(upload(&admin, &image(seed)).await);
    }
    upload(&admin, &image(100)).await;

    // A writer uploads and saves annotations until told to stop.
    // Its acknowledged uploads, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let uploaded = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (admin, ann1, stop, shas) = (admin.clone(), ann1.clone(), stop.clone(), shas.clone());
        let uploaded = uploaded.clone();
        let mut versions = versions.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sha = upload(&admin, &image(1000 + n)).await;
                uploaded.lock().expect("uploads").push(sha);
                let sha = &shas[n as usize % shas.len()];
                let version = versions.get_mut(sha).expect("an image of the task");
                *version = save(&ann1, task, sha, *version, boxes(500 + n)).await;
                n += 1;
            }
            n
        })
    };
    // Let it write before the backup starts, so the backup runs under load.
    tessera_cluster_tests::eventually(
        "the writer to have written",
        std::time::Duration::from_secs(30),
        || async {
            let h = history(&admin, task, &shas[0]).await;
            (h.len() > 3).then_some(())
        },
    )
    .await;
    // Everything acknowledged from here on was acknowledged before the backup started.
    let mut before: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for sha in &shas {
        before.insert(sha.clone(), history(&admin, task, sha).await);
    }
    let objects_before = {
        let mut all = loose.clone();
        all.extend(shas.iter().cloned());
        all.extend(uploaded.lock().expect("uploads").iter().cloned());
        all
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let to = dir.path().to_str().expect("utf-8 path").to_string();
    let first = stdout_of(
        &tessera(source.config_path(), &["backup", "--to", &to]).await,
        "backup",
    );
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(written > 0, "the writer wrote nothing");
    let first_objects = figure(&first, " (");
    assert_eq!(figure(&first, " reused"), 0, "{first}");
    let backed_up = backed_up_objects(dir.path());
    assert_eq!(backed_up.len() as u64, first_objects, "{first}");
    for sha in &objects_before {
        assert!(
            backed_up.contains_key(sha),
            "{sha} acknowledged before the backup is not in it"
        );
    }
    assert_eq!(backed_up[&loose[0]]["refcount"], 2);

    // Restore into two nodes with another shard count and replication, as if a first run had
    // been interrupted after claiming the cluster and restoring one object.
    let target = TestCluster::start(Options {
        nodes: 2,
        shards: 3,
        replication: 2,
        ..Options::default()
    })
    .await;
    let id = std::fs::read_to_string(dir.path().join("LATEST")).expect("LATEST");
    let (before_admin, id) = (target.node(1).client(), id.trim());
    let claim = format!("/api/v1/backup/catalog?backup={id}");
    let claimed = before_admin
        .send(Method::POST, &claim, &[], Bytes::new())
        .await
        .expect("claim");
    assert_eq!(claimed.status, 200, "{:?}", claimed.json());
    let one = &backed_up[&loose[0]];
    let put_one = |client: Client| {
        let bytes = std::fs::read(
            dir.path()
                .join("objects")
                .join(&loose[0][..2])
                .join(&loose[0]),
        )
        .expect("object file");
        let path = format!(
            "/api/v1/backup/objects/{}?content_type=image%2Fpng&width={}&height={}&refcount={}&created_ms={}",
            loose[0], one["width"], one["height"], one["refcount"], one["created_ms"]
        );
        async move {
            client
                .send(Method::PUT, &path, &[], Bytes::from(bytes))
                .await
                .expect("restore one object")
        }
    };
    let first_put = put_one(before_admin.clone()).await;
    assert_eq!(first_put.status, 200, "{:?}", first_put.json());
    assert_eq!(first_put.json()["refcount"], 2);
    // Outside a restore the route refuses: counts belong to the datasets there.
    let outside = put_one(admin.clone()).await;
    assert_eq!(outside.status, 409, "{:?}", outside.json());
    let restored = stdout_of(
        &tessera(target.config_path(), &["restore", "--from", &to]).await,
        "restore",
    );
    assert!(
        restored.contains(&format!("{} objects (1 already there)", backed_up.len())),
        "{restored}"
    );
    let target_admin = admin_of(&target).await;
    for (sha, record) in &backed_up {
        let bytes = target_admin
            .get(&format!("/objects/{sha}"))
            .await
            .expect("object");
        assert_eq!(bytes.status, 200, "{sha}");
        assert_eq!(&sha_hex(&bytes.body), sha, "the bytes of {sha}");
        let meta = target_admin
            .get(&format!("/api/v1/objects/{sha}"))
            .await
            .expect("record")
            .json();
        for field in [
            "size",
            "content_type",
            "width",
            "height",
            "refcount",
            "created_ms",
        ] {
            assert_eq!(meta[field], record[field], "{field} of {sha}");
        }
    }
    // Every version acknowledged before the backup is there, and nothing that was not saved:
    // what was restored is a prefix of the source's final history.
    let source_admin = admin_of(&source).await;
    for (sha, earlier) in &before {
        let now = history(&source_admin, task, sha).await;
        let got = history(&target_admin, task, sha).await;
        assert!(
            got.len() >= earlier.len(),
            "{sha}: {} < {}",
            got.len(),
            earlier.len()
        );
        assert_eq!(got[..], now[..got.len()], "history of {sha}");
    }

    // An incremental backup reuses every object it already has.
    let second = stdout_of(
        &tessera(source.config_path(), &["backup", "--to", &to]).await,
        "second backup",
    );
    assert_eq!(figure(&second, " reused"), first_objects, "{second}");
    assert_eq!(
        figure(&second, " new"),
        figure(&second, " (") - first_objects,
        "{second}"
    );

    // A cluster that holds data is refused, and so is one a restore finished (it serves).
    for (cluster, expected) in [
        (&source, "already holds data"),
        (&target, "has served since"),
    ] {
        let refused = tessera(cluster.config_path(), &["restore", "--from", &to]).await;
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn a_damaged_backup_restores_nothing_and_names_the_file() {
    let source = TestCluster::start(Options::single_node()).await;
    let admin = source.node(1).client();
    let (shas, _) = annotated_dataset(&admin, &admin, 0..3, car()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let to = dir.path().to_str().expect("utf-8 path").to_string();
    stdout_of(
        &tessera(source.config_path(), &["backup", "--to", &to]).await,
        "backup",
    );
    let damaged = dir
        .path()
        .join("objects")
        .join(&shas[1][..2])
        .join(&shas[1]);
    let mut bytes = std::fs::read(&damaged).expect("object file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&damaged, bytes).expect("damage");

    let target = TestCluster::start(Options::single_node()).await;
    let refused = tessera(target.config_path(), &["restore", "--from", &to]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&damaged.display().to_string()), "{stderr}");
    let target_admin = target.node(1).client();
    for sha in &shas {
        let reply = target_admin
            .get(&format!("/api/v1/objects/{sha}"))
            .await
            .expect("record");
        assert_eq!(
            reply.status, 404,
            "{sha} was restored from a damaged backup"
        );
    }
    let datasets = target_admin
        .get("/api/v1/datasets")
        .await
        .expect("datasets")
        .json();
    assert_eq!(datasets["items"], json!([]));
}

/// An image removed from its only dataset after the backup's consistency point is deleted (an
/// imported image's one reference is its dataset's). The backup is paused right after its
/// catalogue dump while that happens: it must then fail naming the object, never finish
/// without an object its catalogue holds.
#[tokio::test]
async fn an_object_deleted_after_the_consistency_point_fails_the_backup() {
    let shards = 4;
    let cluster = TestCluster::start(Options {
        shards,
        ..Options::single_node()
    })
    .await;
    let admin = cluster.node(1).client();
    let dataset = new_dataset(&admin, "d").await;
    // The victim is in the last shard listed; filler in the others gives the pause time to land.
    let victim = images_in_shard(u64::from(shards) - 1, shards.into(), 1, 5000).remove(0);
    let victim_sha = sha_hex(&victim);
    let path = format!("/api/v1/datasets/{dataset}/imports?filename=v.png");
    let started = admin
        .send(Method::POST, &path, &[], Bytes::from(victim))
        .await
        .expect("import");
    assert_eq!(started.status, 202, "{:?}", started.json());
    let record = format!("/api/v1/objects/{victim_sha}");
    eventually("the import to store the image", DEADLINE, || async {
        let reply = admin.get(&record).await.ok()?;
        (reply.status == 200 && reply.json()["refcount"] == 1).then_some(())
    })
    .await;
    futures_util::stream::iter(0..(shards - 1))
        .flat_map(|shard| {
            futures_util::stream::iter(images_in_shard(shard.into(), shards.into(), 40, 0))
        })
        .for_each_concurrent(8, |bytes| {
            let admin = admin.clone();
            async move {
                upload(&admin, &bytes).await;
            }
        })
        .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(binary())
        .args(["backup", "--to"])
        .arg(dir.path())
        .arg("--config")
        .arg(cluster.config_path())
        .env("TESSERA_PASSWORD", ADMIN_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tessera backup");
    let pid = child.id().to_string();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !seen.iter().any(|l: &String| l.contains("catalogue:")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no catalogue line ({e}): {seen:?}"),
        }
    }
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let removed = crate::support::send_json(
        &admin,
        Method::POST,
        &format!("/api/v1/datasets/{dataset}/images/remove"),
        json!({ "images": [victim_sha] }),
    )
    .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json());
    eventually("the removed image to be deleted", DEADLINE, || async {
        (admin.get(&record).await.ok()?.status == 404).then_some(())
    })
    .await;
    signal("-CONT");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    seen.extend(lines.try_iter());
    let stderr = seen.join("\n");
    // Listing the filler shards took long enough for the pause to land before the last shard.
    assert!(!status.success(), "the backup finished: {stderr}");
    assert!(
        stderr.contains(&victim_sha) && stderr.contains("deleted while the backup ran"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("LATEST").exists(),
        "a failed backup must not become the latest"
    );
}
