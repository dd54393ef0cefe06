//! The web UI in a real browser: a 3-node cluster serving the embedded UI, and the whole
//! crowdsourced workflow (`tests/ui/workflow.mjs`) driven in headless Debian chromium through
//! playwright-core — users, upload and import, label schema, split, drawing with real mouse
//! events, the edit-conflict dialog, review with comments, dashboard and COCO export.
//!
//! Needs `node`/`npm` and `/usr/bin/chromium` (Debian's `chromium` package); playwright-core and
//! axe-core (accessibility checks of every page) are installed into `tests/ui/node_modules` from
//! the lock file on first use. Screenshots of every
//! step go to `$TESSERA_ARTEFACTS` (default `target/ui-artefacts`). `TESSERA_UI_SKIP=import` or
//! `=export` (comma separated) leaves those steps out while working on a node without them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{png, Options, TestCluster, ADMIN_PASSWORD};

use crate::support::{create_user, send_json, start_task, upload};

/// The whole browser workflow takes well under a minute on loopback; this is the hang guard.
const WORKFLOW_DEADLINE: Duration = Duration::from_secs(300);

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.is_file(),
        "{} is missing: install Debian's chromium (scripts/setup.sh chromium)",
        path.display()
    );
    path
}

/// `npm ci` from the lock file when playwright-core or axe-core is not installed yet.
fn playwright() {
    let dir = ui_dir();
    let installed = ["playwright-core", "axe-core"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if installed {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm (node's package manager) is required for the UI tests");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test]
async fn the_whole_workflow_works_in_a_real_browser() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let images = tempfile::tempdir().expect("temp dir");
    for seed in 0..6u64 {
        let path = images.path().join(format!("street-{seed}.png"));
        std::fs::write(path, png(640, 480, 700 + seed)).expect("write image");
    }
    let url2 = format!("http://{}", cluster.node(2).http);
    let images_dir = images.path().display().to_string();
    run_script(
        &mut cluster,
        "workflow.mjs",
        &[
            ("TESSERA_URL2", url2.as_str()),
            ("TESSERA_IMAGES_DIR", images_dir.as_str()),
        ],
    )
    .await;
}

/// Bug 1 of issue 13: saves that fail while the annotator's node is down (killed for real) are
/// kept in IndexedDB, counted in the bar, block submitting, survive a reload and are sent when
/// the node is back; the server then has every shape.
#[tokio::test]
async fn unsaved_edits_survive_a_dead_node_and_a_reload() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let task = one_task(&admin, "saver", 4).await;
    let task = task.to_string();
    let url2 = format!("http://{}", cluster.node(2).http);
    let env = [
        ("TESSERA_TASK", task.as_str()),
        ("TESSERA_URL2", url2.as_str()),
    ];
    run_script(&mut cluster, "saves.mjs", &env).await;
}

/// Issue 15: the cluster page shows the node set and the moves, refuses an add with the reason,
/// adds a running node (the page follows its replicas moving in) and removes it again.
#[tokio::test]
async fn nodes_are_added_and_removed_from_the_cluster_page() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let id = cluster.start_new_node().await;
    let node = cluster.node(id);
    let new_node = format!("{id} {} {}", node.http, node.rpc);
    run_script(
        &mut cluster,
        "nodes.mjs",
        &[("TESSERA_NEW_NODE", new_node.as_str())],
    )
    .await;
}

/// Bug 2 of issue 13: a second split takes only images without a task, a third has nothing to
/// take, and archiving a task keeps its annotations and frees its images.
#[tokio::test]
async fn splits_take_only_untasked_images_and_archiving_keeps_work() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    create_user(&admin, "ann1", "annotator").await;
    let (_, dataset, set, shas) = fixture(&admin, 6, 4, street_labels()).await;
    let (dataset, set) = (dataset.to_string(), set.to_string());
    let later = shas[4..].join(",");
    let env = [
        ("TESSERA_SET", set.as_str()),
        ("TESSERA_DATASET", dataset.as_str()),
        ("TESSERA_LATER", later.as_str()),
    ];
    run_script(&mut cluster, "splits.mjs", &env).await;
}

/// Bug 3 of issue 13: the canvas stays exactly where it is while a polygon is drawn, at three
/// desktop sizes.
#[tokio::test]
async fn the_canvas_never_moves_while_drawing() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let task = one_task(&admin, "drawer", 2).await.to_string();
    run_script(
        &mut cluster,
        "layout.mjs",
        &[("TESSERA_TASK", task.as_str())],
    )
    .await;
}

/// The editing tools of issue 13: greyed-out tools, brightness, vertices added and removed,
/// lock, copy and paste onto the next image, z-order, the occluded flag (Q and the panel
/// button, drawn dashed, `occluded: true` in the API after a reload), the object filter,
/// comment marks in the strip, and the question before submitting an image left empty.
#[tokio::test]
async fn editing_tools_work_with_mouse_and_keyboard() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let task = one_task(&admin, "tooler", 3).await.to_string();
    run_script(
        &mut cluster,
        "tools.mjs",
        &[("TESSERA_TASK", task.as_str())],
    )
    .await;
}

/// Keypoint visibility of issues 12 and 13: a set placed with one keypoint occluded (O) and one
/// skipped (N), one toggled afterwards (click + O) and one through the Keypoints panel, placing a
/// skipped one later and undoing it, copy and paste; after a reload the API has exactly that
/// `visibility` and the canvas draws the occluded keypoint hollow and the skipped one not at all.
#[tokio::test]
async fn keypoint_visibility_is_set_with_mouse_and_keyboard() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let labels = json!([
        {"name": "person", "color": "#00ff00", "kinds": ["points"],
         "keypoints": ["head", "left hand", "right hand", "left foot"],
         "skeleton": [[0, 1], [0, 2], [0, 3]]},
    ]);
    let task = one_task_with(&admin, "poser", 1, labels).await.to_string();
    run_script(
        &mut cluster,
        "keypoints.mjs",
        &[("TESSERA_TASK", task.as_str())],
    )
    .await;
}

/// An image with 5000 shapes opens and is edited correctly, undo and redo restore it exactly
/// (order and every field), and the save sends only what changed (a PATCH); `bench-shapes.mjs`
/// prints how long opening and each edit took (figures, not assertions: see docs/ui.md).
#[tokio::test]
async fn five_thousand_shapes_open_and_edit() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let task = one_task(&admin, "bencher", 1).await.to_string();
    run_script(
        &mut cluster,
        "bench-shapes.mjs",
        &[("TESSERA_TASK", task.as_str())],
    )
    .await;
}

/// Issue 13, thumbnails: the dataset grid and the workspace strip load `?size=thumb`, the
/// workspace draws `?size=preview` and fetches a large original only once zoomed past it. Prints
/// the bytes a page of thumbnails costs next to its originals.
#[tokio::test]
async fn the_grid_and_workspace_load_thumbnails_and_previews() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    create_user(&admin, "viewer", "annotator").await;
    let (manager, dataset, set, _) = fixture(&admin, 24, 24, street_labels()).await;
    let big = upload(&admin, &png(2000, 1500, 77)).await;
    let path = format!("/api/v1/datasets/{dataset}/images");
    let body = json!({"images": [{"sha256": big, "name": "big.png"}]});
    let added = send_json(&manager, Method::POST, &path, body).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let path = format!("/api/v1/annotation-sets/{set}/tasks/split");
    let body = json!({"chunk_size": 100, "assignees": ["viewer"]});
    let split = send_json(&manager, Method::POST, &path, body).await;
    assert_eq!(split.status, 201, "{:?}", split.json());
    let task = split.json()["tasks"][0]
        .as_u64()
        .expect("task id")
        .to_string();
    let dataset = dataset.to_string();
    let env = [
        ("TESSERA_DATASET", dataset.as_str()),
        ("TESSERA_TASK", task.as_str()),
        ("TESSERA_BIG", big.as_str()),
    ];
    run_script(&mut cluster, "thumbs.mjs", &env).await;
}

/// Issue 18 in the browser: quality rules, ground truth from an accepted task, the figures, the
/// consensus overlay and pick, the review queue's order, and a webhook's signed delivery.
#[tokio::test]
async fn quality_and_webhooks_are_managed_in_the_browser() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let (manager, _, set, _) = fixture(&admin, 4, 4, street_labels()).await;
    create_user(&admin, "rev", "reviewer").await;
    let path = format!("/api/v1/annotation-sets/{set}");
    let reviewers = send_json(
        &manager,
        Method::PATCH,
        &path,
        json!({"reviewers": ["rev"]}),
    )
    .await;
    assert_eq!(reviewers.status, 200, "{:?}", reviewers.json());
    let mut annotators = Vec::new();
    for name in ["ann", "bob", "eve"] {
        annotators.push(create_user(&admin, name, "annotator").await);
    }
    let path = format!("/api/v1/annotation-sets/{set}/tasks/split");
    let body = json!({"chunk_size": 4, "overlap": 3, "assignees": ["ann", "bob", "eve"]});
    let split = send_json(&manager, Method::POST, &path, body).await;
    assert_eq!(split.status, 201, "{:?}", split.json());
    let mut tasks = Vec::new();
    // ann and bob box the same car a pixel apart; eve boxes another place.
    for (client, dx) in annotators.iter().zip([0.0, 1.0, 300.0]) {
        let mine = client
            .get("/api/v1/me/tasks")
            .await
            .expect("my tasks")
            .json();
        let task = mine["items"][0]["id"].as_u64().expect("task");
        start_task(client, task).await;
        let detail = client
            .get(&format!("/api/v1/tasks/{task}"))
            .await
            .expect("task")
            .json();
        for image in detail["images"].as_array().expect("images") {
            let sha = image["sha256"].as_str().expect("sha");
            let shapes = json!({"shapes": [{"label": "car", "kind": "rectangle", "points": [[100.0 + dx, 100.0], [300.0 + dx, 250.0]]}]});
            let saved = client
                .send(
                    Method::PUT,
                    &format!("/api/v1/tasks/{task}/images/{sha}/annotations"),
                    &[("content-type", "application/json"), ("if-match", "\"0\"")],
                    bytes::Bytes::from(shapes.to_string()),
                )
                .await
                .expect("save");
            assert_eq!(saved.status, 200, "{:?}", saved.json());
        }
        let submit = send_json(
            client,
            Method::POST,
            &format!("/api/v1/tasks/{task}/submit"),
            json!({}),
        )
        .await;
        assert_eq!(submit.status, 200, "{:?}", submit.json());
        tasks.push(task.to_string());
    }
    for action in ["review", "accept"] {
        let reply = send_json(
            &manager,
            Method::POST,
            &format!("/api/v1/tasks/{}/{action}", tasks[0]),
            json!({}),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.json());
    }
    let set = set.to_string();
    let env = [
        ("TESSERA_SET", set.as_str()),
        ("TESSERA_ANN_TASK", tasks[0].as_str()),
        ("TESSERA_BOB_TASK", tasks[1].as_str()),
        ("TESSERA_EVE_TASK", tasks[2].as_str()),
    ];
    run_script(&mut cluster, "quality.mjs", &env).await;
}

/// An annotator and one task of `images` 640×480 images (labels of [`street_labels`]) assigned
/// to them; the task's id.
async fn one_task(admin: &Client, annotator: &str, images: usize) -> u64 {
    one_task_with(admin, annotator, images, street_labels()).await
}

/// [`one_task`] with the annotation set's `labels`.
async fn one_task_with(admin: &Client, annotator: &str, images: usize, labels: Value) -> u64 {
    create_user(admin, annotator, "annotator").await;
    let (manager, _, set, _) = fixture(admin, images, images, labels).await;
    let path = format!("/api/v1/annotation-sets/{set}/tasks/split");
    let body = json!({"chunk_size": 100, "assignees": [annotator]});
    let split = send_json(&manager, Method::POST, &path, body).await;
    assert_eq!(split.status, 201, "{:?}", split.json());
    split.json()["tasks"][0].as_u64().expect("task id")
}

/// The labels most browser tests draw with: `car` (rectangle, polygon) and `sign` (tag).
fn street_labels() -> Value {
    json!([
        {"name": "car", "color": "#e6194b", "kinds": ["rectangle", "polygon"]},
        {"name": "sign", "color": "#3cb44b", "kinds": ["tag"]},
    ])
}

/// A manager `mgr`, `count` uploaded 640×480 images of which the first `in_dataset` are in a new
/// dataset, and an annotation set on it with `labels`: `(manager, dataset, set, hashes)`.
async fn fixture(
    admin: &Client,
    count: usize,
    in_dataset: usize,
    labels: Value,
) -> (Client, u64, u64, Vec<String>) {
    let manager = create_user(admin, "mgr", "manager").await;
    let mut shas = Vec::new();
    for seed in 900..900 + count as u64 {
        shas.push(upload(admin, &png(640, 480, seed)).await);
    }
    let dataset = send_json(
        &manager,
        Method::POST,
        "/api/v1/datasets",
        json!({"name": "street"}),
    )
    .await
    .json()["id"]
        .as_u64()
        .expect("dataset id");
    // Named against hash order (`frame-000.png` is the greatest hash), so a split in name order
    // is told apart from one in hash order.
    let mut by_hash: Vec<&String> = shas.iter().collect();
    by_hash.sort_by(|a, b| b.cmp(a));
    let images: Vec<Value> = shas[..in_dataset]
        .iter()
        .map(|s| {
            let rank = by_hash.iter().position(|h| *h == s).unwrap_or_default();
            json!({"sha256": s, "name": format!("frame-{rank:03}.png")})
        })
        .collect();
    let path = format!("/api/v1/datasets/{dataset}/images");
    let added = send_json(&manager, Method::POST, &path, json!({"images": images})).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let path = format!("/api/v1/datasets/{dataset}/annotation-sets");
    let set = send_json(
        &manager,
        Method::POST,
        &path,
        json!({"name": "v1", "labels": labels}),
    )
    .await
    .json()["id"]
        .as_u64()
        .expect("annotation set id");
    (manager, dataset, set, shas)
}

/// Runs `tests/ui/<script>` in node against `cluster` (node 1 as `TESSERA_URL`) and fails the test
/// when it fails. The script may ask for nodes to be killed or started: `@cluster kill <id>` or
/// `@cluster start <id>` on its stdout, answered with `ok` on its stdin once done (a started
/// node is ready); everything else it prints is passed through.
async fn run_script(cluster: &mut TestCluster, script: &str, env: &[(&str, &str)]) {
    let browser = chromium();
    playwright();
    let artefacts = std::env::var("TESSERA_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/ui-artefacts"));
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(ui_dir())
        .env("TESSERA_URL", format!("http://{}", cluster.node(1).http))
        .env("TESSERA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TESSERA_ARTEFACTS", &artefacts)
        .env("CHROMIUM", &browser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("node is required for the UI tests");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (asks, asked) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match line.strip_prefix("@cluster ") {
                Some(command) => {
                    if asks.send(command.to_string()).is_err() {
                        break;
                    }
                }
                None => println!("{line}"),
            }
        }
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if let Ok(ask) = asked.try_recv() {
            let answer = match ask.split_once(' ') {
                Some(("kill", id)) => id.parse().map(|id| cluster.kill(id)).is_ok(),
                Some(("start", id)) => match id.parse() {
                    Ok(id) => {
                        cluster.restart(id).await;
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            let reply = if answer {
                "ok\n".to_string()
            } else {
                format!("unknown: {ask}\n")
            };
            stdin
                .write_all(reply.as_bytes())
                .expect("answer the script");
            continue;
        }
        if started.elapsed() > WORKFLOW_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} did not finish in {WORKFLOW_DEADLINE:?}; screenshots in {}",
                artefacts.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{script} failed ({status}); its output is above, screenshots in {}\nerrors logged by node 1:\n{}",
        artefacts.display(),
        errors(&cluster.log(1))
    );
}

/// The last few ERROR lines of a node's log.
fn errors(log: &str) -> String {
    let found: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    found[found.len().saturating_sub(20)..].join("\n")
}
