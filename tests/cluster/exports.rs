//! Exports: every format, checked by the tools people load them with (datumaro, pycocotools,
//! an Ultralytics-layout reader; see tests/formats/check_export.py), downloads with ranges and
//! from any node, options, cancellation, and an export whose node is killed.

use std::path::Path;

use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{eventually, png, Options, TestCluster, DEADLINE};

use crate::support::{
    add_images, create_annotation_set, create_user, dataset_of, error_message, new_dataset, python,
    script, send_json, started_task, upload,
};

const LABELS: &str = r##"[
  {"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon", "polyline", "rotated_rectangle"],
   "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"]}]},
  {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": ["head", "hand"], "skeleton": [[0, 1]]},
  {"name": "sunny", "color": "#ffff00", "kinds": ["tag"]}
]"##;

/// The shapes drawn on image `i` (images are 64 x 48).
fn shapes(i: usize) -> Value {
    let d = i as f64;
    json!([
        {"label": "car", "kind": "rectangle", "points": [[2.5 + d, 3.0], [30.25, 20.5 + d]], "attributes": {"colour": "red"}},
        {"label": "car", "kind": "polygon", "points": [[10.0, 10.0], [40.0 + d, 12.0], [25.0, 40.0]]},
        {"label": "car", "kind": "polyline", "points": [[1.0, 1.0], [20.0, 30.0 + d], [60.0, 5.0]]},
        {"label": "car", "kind": "rotated_rectangle", "points": [[20.0, 15.0], [40.0, 25.0]], "angle": 30.0 + d},
        {"label": "person", "kind": "points", "points": [[12.0 + d, 8.0], [14.0, 30.0]]},
        {"label": "sunny", "kind": "tag"}
    ])
}

/// Every export format the API offers.
const FORMATS: [&str; 9] = [
    "coco",
    "voc",
    "yolo",
    "yolo-segment",
    "yolo-pose",
    "yolo-darknet",
    "cvat",
    "labelme",
    "csv",
];

/// A small annotated set: `n` images named `img-00i.png`, annotated in one task by `ann`,
/// submitted and accepted. Returns `(manager, set id, [(name stem, sha)])`.
async fn accepted_set(cluster: &TestCluster, n: usize) -> (Client, u64, Vec<(String, String)>) {
    let admin = cluster.node(1).client();
    let manager = create_user(&admin, "mgr", "manager").await;
    let ann = create_user(&admin, "ann", "annotator").await;
    let dataset = new_dataset(&manager, "exp").await;
    let mut images = Vec::new();
    for i in 0..n {
        let sha = upload(&manager, &png(64, 48, 9000 + i as u64)).await;
        images.push((format!("img-{i:03}"), sha));
    }
    let list: Vec<Value> = images
        .iter()
        .map(|(stem, sha)| json!({"sha256": sha, "name": format!("{stem}.png")}))
        .collect();
    let added = add_images(&manager, dataset, json!(list)).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let labels: Value = serde_json::from_str(LABELS).expect("labels");
    let shas: Vec<String> = images.iter().map(|(_, sha)| sha.clone()).collect();
    let shapes: Vec<Value> = (0..n).map(shapes).collect();
    let ann_named = (&ann, "ann");
    let (set, task) = annotated_set(
        &manager, ann_named, dataset, "vehicles", labels, &shas, &shapes,
    )
    .await;
    let act = |client: &Client, action: &str| {
        let (client, path) = (client.clone(), format!("/api/v1/tasks/{task}/{action}"));
        async move { send_json(&client, Method::POST, &path, json!({})).await }
    };
    assert_eq!(act(&ann, "submit").await.status, 200);
    assert_eq!(act(&manager, "review").await.status, 200);
    assert_eq!(act(&manager, "accept").await.status, 200);
    (manager, set, images)
}

/// Exports `set` as `options` say and asserts the job succeeded; returns the job.
pub(crate) async fn exported(client: &Client, set: u64, options: Value) -> Value {
    let job = export(client, set, options.clone()).await;
    assert_eq!(job["state"], "succeeded", "{options}: {job}");
    job
}

/// Starts an export and waits for its job to end; returns the job.
pub(crate) async fn export(client: &Client, set: u64, options: Value) -> Value {
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    let started = send_json(client, Method::POST, &path, options).await;
    assert_eq!(started.status, 202, "{:?}", started.json());
    let id = started.json()["id"].as_u64().expect("job id");
    finished(client, id).await
}

async fn finished(client: &Client, id: u64) -> Value {
    eventually("the job to end", DEADLINE * 2, || async {
        let job = client.get(&format!("/api/v1/jobs/{id}")).await.ok()?.json();
        (job["state"] != "running").then_some(job)
    })
    .await
}

/// Downloads a finished export through its presigned URL (no token), following the redirect
/// to the node that holds it.
pub(crate) async fn download(any: &Client, cluster: &TestCluster, job: &Value) -> Vec<u8> {
    let url = job["result"]["url"].as_str().expect("download url");
    let reply = any.anonymous().get(url).await.expect("download");
    let reply = if reply.status == 307 {
        let location = reply.header("location").expect("location").to_string();
        let node = cluster
            .nodes
            .iter()
            .find(|n| location.contains(&n.http))
            .expect("redirect to a node");
        let path = &location[location.find("/api/").expect("path")..];
        node.client().anonymous().get(path).await.expect("download")
    } else {
        reply
    };
    assert_eq!(reply.status, 200, "download {url}");
    assert_eq!(
        reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(reply.body.len())
    );
    reply.body.to_vec()
}

/// Unpacks `zip` into a fresh directory.
/// How many times `needle` occurs in the files under `dir`.
fn occurrences(dir: &Path, needle: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| match p.is_dir() {
            true => occurrences(&p, needle),
            false => String::from_utf8_lossy(&std::fs::read(&p).expect("read"))
                .matches(needle)
                .count(),
        })
        .sum()
}

fn unpack(zip: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("export.zip");
    std::fs::write(&file, zip).expect("write zip");
    let out = dir.path().join("x");
    let status = std::process::Command::new(python())
        .args(["-m", "zipfile", "-e"])
        .arg(&file)
        .arg(&out)
        .status()
        .expect("python");
    assert!(status.success(), "the export is not a valid zip");
    std::fs::remove_file(&file).expect("remove zip");
    dir
}

/// Runs the consumer check for `format` on an unpacked export.
fn check(format: &str, dir: &Path, expected: &Value, with_images: bool) {
    let expected_file = dir.join("expected.json");
    std::fs::write(&expected_file, expected.to_string()).expect("expected.json");
    let output = std::process::Command::new(python())
        .arg(script("check_export.py"))
        .args(["--format", format, "--dir"])
        .arg(dir.join("x"))
        .arg("--expected")
        .arg(&expected_file)
        .arg(if with_images {
            "--with-images"
        } else {
            "--no-images"
        })
        .output()
        .expect("check_export.py");
    assert!(
        output.status.success(),
        "{format} export failed the consumer check:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn expected(images: &[(String, String)]) -> Value {
    let labels: Value = serde_json::from_str(LABELS).expect("labels");
    let labels: Vec<Value> = labels
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| json!({"name": l["name"], "keypoints": l.get("keypoints").cloned().unwrap_or(json!([]))}))
        .collect();
    let images: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, (stem, _))| json!({"file": stem, "width": 64, "height": 48, "shapes": shapes(i)}))
        .collect();
    json!({"labels": labels, "images": images})
}

#[tokio::test]
async fn every_format_loads_unchanged_in_the_consumers_tools() {
    let cluster = TestCluster::start(Options::default()).await;
    let (manager, set, images) = accepted_set(&cluster, 3).await;
    let expected = expected(&images);
    for (i, format) in FORMATS.iter().enumerate() {
        // Exports start on different nodes; downloads go through node 1 (redirected).
        let client = manager.with_base(&cluster.node(1 + (i as u64 % 3)).http);
        let job = exported(
            &client,
            set,
            json!({"format": format, "only_accepted": true}),
        )
        .await;
        assert_eq!(job["progress"]["images_exported"], 3, "{format}: {job}");
        assert_eq!(job["progress"]["shapes_exported"], 18, "{format}: {job}");
        let zip = download(&manager.with_base(&cluster.node(1).http), &cluster, &job).await;
        let dir = unpack(&zip);
        check(format, dir.path(), &expected, true);
        let report = job["result"]["report"].as_array().expect("report").clone();
        if *format == "coco" {
            let text = json!(report).to_string();
            assert!(text.contains("polylines left out of COCO"), "{text}");
            assert!(text.contains("image tags left out of COCO"), "{text}");
        }
    }
}

#[tokio::test]
async fn export_options_downloads_and_bad_requests() {
    let cluster = TestCluster::start(Options::default()).await;
    let (manager, set, images) = accepted_set(&cluster, 4).await;

    // Without images: annotation files only; COCO keeps an images/ directory.
    let job = exported(
        &manager,
        set,
        json!({"format": "coco", "include_images": false}),
    )
    .await;
    let zip = download(&manager, &cluster, &job).await;
    let dir = unpack(&zip);
    check("coco", dir.path(), &expected(&images), false);

    // Splits by ratio with a seed: deterministic, every image in exactly one subset.
    let options = json!({"format": "yolo", "splits": {"train": 0.5, "val": 0.5}, "seed": 7});
    let first = export(&manager, set, options.clone()).await;
    let second = export(&manager, set, options).await;
    let listing = |zip: &[u8]| {
        let dir = unpack(zip);
        let mut files: Vec<String> = ["train", "val"]
            .iter()
            .flat_map(|split| {
                let path = dir.path().join("x/labels").join(split);
                std::fs::read_dir(path)
                    .map(|d| {
                        d.flatten()
                            .map(|e| format!("{split}/{}", e.file_name().to_string_lossy()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        files.sort();
        files
    };
    let a = listing(&download(&manager, &cluster, &first).await);
    let b = listing(&download(&manager, &cluster, &second).await);
    assert_eq!(a, b, "the same seed gives the same splits");
    assert_eq!(a.len(), 4, "{a:?}");
    // Exact counts whatever the seed: 4 images at 0.8/0.2 are 3 + 1, never 4 + 0 (a val
    // subset asked for is never empty, and data.yaml never points val at the training images).
    for seed in [1, 2, 3, 4, 5] {
        let options = json!({"format": "yolo", "splits": {"train": 0.8, "val": 0.2}, "seed": seed});
        let job = export(&manager, set, options).await;
        let zip = download(&manager, &cluster, &job).await;
        let files = listing(&zip);
        let val = files.iter().filter(|f| f.starts_with("val/")).count();
        assert_eq!((files.len() - val, val), (3, 1), "seed {seed}: {files:?}");
        let dir = unpack(&zip);
        let yaml = std::fs::read_to_string(dir.path().join("x/data.yaml")).expect("data.yaml");
        assert!(yaml.contains("val: images/val"), "seed {seed}: {yaml}");
        let report = std::fs::read_to_string(dir.path().join("x/REPORT.txt")).unwrap_or_default();
        assert!(report.contains("train 3, val 1"), "seed {seed}: {report}");
    }

    // Ranges resume a download; the presigned URL works without a token, a forged one not.
    let url = first["result"]["url"].as_str().expect("url").to_string();
    let runner = cluster.node(first["node"].as_u64().expect("node"));
    let anon = runner.client().anonymous();
    let whole = anon.get(&url).await.expect("get");
    assert_eq!(whole.status, 200);
    let part = anon
        .send(
            Method::GET,
            &url,
            &[("range", "bytes=10-")],
            bytes::Bytes::new(),
        )
        .await
        .expect("range");
    assert_eq!(part.status, 206);
    assert_eq!(&part.body[..], &whole.body[10..]);
    let forged = url.replace("sig=", "sig=00");
    assert_eq!(anon.get(&forged).await.expect("forged").status, 401);

    // Bad requests are named and start nothing.
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    for (body, status, needle) in [
        (json!({"format": "pdf"}), 422, "format"),
        (
            json!({"format": "voc", "splits": {"train_a": 1}}),
            422,
            "splits.train_a",
        ),
        (
            json!({"format": "voc", "splits": {"train": 0}}),
            422,
            "splits.train",
        ),
        (json!({"format": "voc", "colour": 1}), 400, "unknown field"),
        (json!({"format": "voc", "seed": "x"}), 400, "expected u64"),
    ] {
        let reply = send_json(&manager, Method::POST, &path, body).await;
        assert_eq!(reply.status, status, "{:?}", reply.json());
        let message = error_message(&reply);
        assert!(message.contains(needle), "{message}");
    }
    let missing = send_json(
        &manager,
        Method::POST,
        "/api/v1/annotation-sets/999/exports",
        json!({"format": "coco"}),
    )
    .await;
    assert_eq!(missing.status, 404);
    let jobs = manager
        .get(&format!("/api/v1/jobs?annotation_set={set}"))
        .await
        .expect("jobs");
    // The COCO export, two seeded YOLO exports and five split checks.
    assert_eq!(
        jobs.json()["items"].as_array().map(Vec::len),
        Some(8),
        "{:?}",
        jobs.json()
    );
}

#[tokio::test]
async fn an_export_whose_node_dies_is_finished_by_another() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let (manager, set, _) = accepted_set(&cluster, 3).await;
    // Enough bytes that the export is still running when its node is killed.
    let admin = cluster.node(1).client();
    let dataset = dataset_of(&manager, set).await;
    let mut list = Vec::new();
    for seed in 0..80u64 {
        let sha = upload(&admin, &png(400, 300, 50_000 + seed)).await;
        list.push(json!({"sha256": sha, "name": format!("big-{seed}.png")}));
    }
    let path = format!("/api/v1/datasets/{dataset}/images");
    assert_eq!(
        send_json(&manager, Method::POST, &path, json!({"images": list}))
            .await
            .status,
        200
    );

    let leader = crate::support::leader_of(&cluster, 0).await;
    let victim = (1..=3).find(|n| *n != leader).expect("a follower");
    let at_victim = manager.with_base(&cluster.node(victim).http);
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    let started = send_json(&at_victim, Method::POST, &path, json!({"format": "coco"})).await;
    assert_eq!(started.status, 202);
    let id = started.json()["id"].as_u64().expect("id");
    // Killed as soon as the job exists: the export (tens of milliseconds of work) cannot have
    // finished, so the leader must notice the silence and run it itself.
    cluster.kill(victim);
    let at_leader = manager.with_base(&cluster.node(leader).http);
    let job = finished(&at_leader, id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2, "{job}");
    assert_ne!(job["node"], victim, "{job}");
    assert_eq!(job["progress"]["images_exported"], 83, "{job}");
    let zip = download(&at_leader, &cluster, &job).await;
    assert!(zip.len() > 80 * 100_000, "{} bytes", zip.len());

    // Cancelling a running export stops it.
    let started = send_json(&at_leader, Method::POST, &path, json!({"format": "cvat"})).await;
    let id = started.json()["id"].as_u64().expect("id");
    let cancel = send_json(
        &at_leader,
        Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(cancel.status, 200);
    let job = finished(&at_leader, id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["result"].is_null(), "{job}");
}

/// Starts an annotation import of `body` into `set` and waits for its job.
pub(crate) async fn import_annotations(
    client: &Client,
    set: u64,
    query: &str,
    body: Vec<u8>,
) -> Value {
    let path = format!("/api/v1/annotation-sets/{set}/annotation-imports?{query}");
    let reply = client
        .send(Method::POST, &path, &[], bytes::Bytes::from(body))
        .await
        .expect("annotation import");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    finished(client, reply.json()["id"].as_u64().expect("job id")).await
}

/// Imports `zip` (an export in `format`) into a new annotation set `name` with `labels` on
/// `dataset`, creating the labels the file has and the set lacks; asserts the import succeeded
/// and returns the new set and the import's job.
async fn import_into_new_set(
    manager: &Client,
    dataset: u64,
    (name, labels): (&str, Value),
    format: &str,
    zip: Vec<u8>,
) -> (u64, Value) {
    let fresh = create_annotation_set(manager, dataset, name, &labels)
        .await
        .json()["id"]
        .as_u64()
        .expect("fresh set");
    let query = format!("format={format}&create_labels=true");
    let job = import_annotations(manager, fresh, &query, zip).await;
    assert_eq!(job["state"], "succeeded", "{format}: {job}");
    (fresh, job)
}

#[tokio::test]
async fn exports_import_back_as_pre_annotations_and_export_the_same() {
    let cluster = TestCluster::start(Options::default()).await;
    let (manager, set, images) = accepted_set(&cluster, 3).await;
    let expected = expected(&images);
    let dataset = dataset_of(&manager, set).await;
    for (i, (format, with_images)) in [
        ("coco", true),
        ("cvat", false),
        ("voc", false),
        ("yolo", true),
    ]
    .into_iter()
    .enumerate()
    {
        let first = export(
            &manager,
            set,
            json!({"format": format, "include_images": with_images}),
        )
        .await;
        let zip = download(&manager, &cluster, &first).await;
        // A fresh set with only one label: the others come from the import.
        let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"],
            "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"]}]}]);
        let name = format!("round-trip-{i}");
        let (fresh, job) =
            import_into_new_set(&manager, dataset, (&name, labels), format, zip).await;
        let report = job["result"]["report"].to_string();
        assert!(report.contains("3 images matched"), "{format}: {report}");
        let second = exported(
            &manager,
            fresh,
            json!({"format": format, "include_images": true}),
        )
        .await;
        let dir = unpack(&download(&manager, &cluster, &second).await);
        check(format, dir.path(), &expected, true);
    }

    // Annotators start from the imported shapes (version 0), and the report names what was
    // not imported: an unknown image and, without create_labels, an unknown label.
    let coco = json!({
        "images": [{"id": 1, "file_name": "img-000.png", "width": 64, "height": 48},
                   {"id": 2, "file_name": "missing.png", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "segmentation": [], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 5, 5], "segmentation": [], "area": 25, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": [], "area": 1, "iscrowd": 0}
        ]
    });
    let labels: Value = serde_json::from_str(LABELS).expect("labels");
    let pre = send_json(
        &manager,
        Method::POST,
        &format!("/api/v1/datasets/{dataset}/annotation-sets"),
        json!({"name": "pre", "labels": labels}),
    )
    .await
    .json()["id"]
        .as_u64()
        .expect("set");
    let job = import_annotations(&manager, pre, "format=coco", coco.to_string().into_bytes()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let report = job["result"]["report"].to_string();
    assert!(
        report.contains("missing.png") && report.contains("boat"),
        "{report}"
    );
    let admin = cluster.node(1).client();
    let ann = create_user(&admin, "ann2", "annotator").await;
    let split = send_json(
        &manager,
        Method::POST,
        &format!("/api/v1/annotation-sets/{pre}/tasks/split"),
        json!({"chunk_size": 10, "assignees": ["ann2"]}),
    )
    .await;
    let task = split.json()["tasks"][0].as_u64().expect("task");
    let sha = &images[0].1;
    let got = ann
        .get(&format!("/api/v1/tasks/{task}/images/{sha}/annotations"))
        .await
        .expect("annotations")
        .json();
    assert_eq!(got["version"], 0, "{got}");
    assert_eq!(
        got["shapes"],
        json!([{"label": "car", "kind": "rectangle", "points": [[1.0, 2.0], [11.0, 22.0]]}]),
        "{got}"
    );
    assert!(
        got["imported_from"]
            .as_str()
            .unwrap_or("")
            .contains("coco import"),
        "{got}"
    );

    // Bad requests: unknown format, not an annotation file. (A missing format:
    // tasks::answers_say_what_to_do_next.)
    let path = format!("/api/v1/annotation-sets/{pre}/annotation-imports?format=kitti");
    let reply = manager
        .send(Method::POST, &path, &[], bytes::Bytes::from_static(b"{}"))
        .await
        .expect("post");
    assert_eq!(reply.status, 422, "{:?}", reply.json());
    let job = import_annotations(&manager, pre, "format=voc", b"not a zip".to_vec()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or("")
            .contains("no voc annotations"),
        "{job}"
    );
}

/// Labels with characters some formats reserve (`:` for VOC's labelmap, quotes and XML
/// specials, non-ASCII) and a keypoint label that gains a keypoint after the first saves.
fn odd_labels(vehicle: &str, keypoints: &[&str]) -> Value {
    json!([
        {"name": vehicle, "color": "#4080ff", "kinds": ["rectangle", "polyline", "rotated_rectangle"]},
        {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": keypoints, "skeleton": [[0, 1]]},
        {"name": "say \"hi\" <&> Straße", "color": "#ffff00", "kinds": ["rectangle", "tag"]}
    ])
}

/// What training code trips on, drawn on an image of at least 30 x 24 (displayed): an occluded
/// rectangle, a 0-height polyline, rotated rectangles at 0° and 30°, keypoints with one not
/// labelled and one occluded, and labels with reserved characters.
fn odd_shapes(vehicle: &str, person: Value) -> Value {
    json!([
        {"label": vehicle, "kind": "rectangle", "points": [[20, 15], [2, 3]], "occluded": true},
        {"label": vehicle, "kind": "polyline", "points": [[4, 10], [18, 10]]},
        {"label": vehicle, "kind": "rotated_rectangle", "points": [[5, 5], [15, 12]], "angle": 0},
        {"label": vehicle, "kind": "rotated_rectangle", "points": [[6, 14], [16, 20]], "angle": 30},
        person,
        {"label": "say \"hi\" <&> Straße", "kind": "rectangle", "points": [[1, 1], [9, 7]]},
        {"label": "say \"hi\" <&> Straße", "kind": "tag"}
    ])
}

/// An image made by tests/formats/make_image.py.
fn made_image(args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("image");
    let status = std::process::Command::new(python())
        .arg(script("make_image.py"))
        .arg(&out)
        .args(args)
        .status()
        .expect("make_image.py");
    assert!(status.success(), "make_image.py {args:?}");
    std::fs::read(&out).expect("made image")
}

/// Creates annotation set `name` on `dataset`, one task of every image for `ann`, started, and
/// saves `shapes[i]` on image `i`. Returns `(set, task)`.
async fn annotated_set(
    manager: &Client,
    (ann, ann_name): (&Client, &str),
    dataset: u64,
    name: &str,
    labels: Value,
    images: &[String],
    shapes: &[Value],
) -> (u64, u64) {
    let path = format!("/api/v1/datasets/{dataset}/annotation-sets");
    let created = send_json(
        manager,
        Method::POST,
        &path,
        json!({"name": name, "labels": labels}),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let set = created.json()["id"].as_u64().expect("set id");
    let task = started_task(manager, (ann, ann_name), set, images.len()).await;
    for (sha, shapes) in images.iter().zip(shapes) {
        save(ann, task, sha, "\"0\"", shapes).await;
    }
    (set, task)
}

async fn save(ann: &Client, task: u64, sha: &str, version: &str, shapes: &Value) {
    let reply = ann
        .send(
            Method::PUT,
            &format!("/api/v1/tasks/{task}/images/{sha}/annotations"),
            &[("content-type", "application/json"), ("if-match", version)],
            bytes::Bytes::from(json!({"shapes": shapes}).to_string()),
        )
        .await
        .expect("save");
    assert_eq!(reply.status, 200, "{shapes}: {:?}", reply.json());
}

#[tokio::test]
async fn exports_carry_what_training_code_needs_in_every_format() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let manager = create_user(&admin, "mgr", "manager").await;
    let ann = create_user(&admin, "ann", "annotator").await;
    let dataset = new_dataset(&manager, "odd").await;
    // Stored 40x30 with EXIF orientation 6 (displayed 30x40), greyscale, RGBA, plain RGB.
    let files = [
        (
            "turned",
            made_image(&["--size", "40x30", "--format", "jpeg", "--orientation", "6"]),
            (30, 40),
            6,
        ),
        (
            "grey",
            made_image(&["--size", "32x24", "--mode", "L"]),
            (32, 24),
            1,
        ),
        (
            "alpha",
            made_image(&["--size", "32x24", "--mode", "RGBA"]),
            (32, 24),
            1,
        ),
        ("plain", png(64, 48, 77), (64, 48), 1),
    ];
    let mut shas = Vec::new();
    let mut list = Vec::new();
    for (name, bytes, _, _) in &files {
        let sha = upload(&manager, bytes).await;
        let ext = if name == &"turned" { "jpg" } else { "png" };
        list.push(json!({"sha256": sha, "name": format!("{name}.{ext}")}));
        shas.push(sha);
    }
    let added = add_images(&manager, dataset, json!(list)).await;
    assert_eq!(added.status, 200, "{:?}", added.json());

    // Sets of two keypoints saved first (one not labelled, one occluded) ...
    let early = [
        json!({"label": "person", "kind": "points", "points": [[0, 0], [10, 8]], "visibility": [0, 2]}),
        json!({"label": "person", "kind": "points", "points": [[12, 6], [14, 9]], "visibility": [2, 1]}),
        json!({"label": "person", "kind": "points", "points": [[3, 4], [7, 20]]}),
        json!({"label": "person", "kind": "points", "points": [[12, 8], [20, 30]]}),
    ];
    let mut shapes: Vec<Value> = early
        .iter()
        .map(|p| odd_shapes("vehicle:truck", p.clone()))
        .collect();
    let (set, task) = annotated_set(
        &manager,
        (&ann, "ann"),
        dataset,
        "odd",
        odd_labels("vehicle:truck", &["head", "hand"]),
        &shas,
        &shapes,
    )
    .await;
    // ... then the label gains a third keypoint: the old sets have fewer points than the
    // category declares (COCO needs 3 x K values), and a new set names all three.
    let patched = send_json(
        &manager,
        Method::PATCH,
        &format!("/api/v1/annotation-sets/{set}"),
        json!({"labels": odd_labels("vehicle:truck", &["head", "hand", "foot"])}),
    )
    .await;
    assert_eq!(patched.status, 200, "{:?}", patched.json());
    let three = json!({"label": "person", "kind": "points", "points": [[12, 8], [0, 0], [20, 30]], "visibility": [2, 0, 1]});
    shapes[3] = odd_shapes("vehicle:truck", three);
    save(&ann, task, &shas[3], "\"1\"", &shapes[3]).await;

    let expected_for = |vehicle: &str, shapes: &[Value]| {
        let images: Vec<Value> = files
            .iter()
            .zip(shapes)
            .map(|((name, _, (w, h), orientation), s)| {
                json!({"file": name, "width": w, "height": h, "orientation": orientation, "shapes": s})
            })
            .collect();
        let labels: Vec<Value> = odd_labels(vehicle, &["head", "hand", "foot"])
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| json!({"name": l["name"], "keypoints": l.get("keypoints").cloned().unwrap_or(json!([]))}))
            .collect();
        json!({"labels": labels, "images": images})
    };
    let expected = expected_for("vehicle:truck", &shapes);
    // Every format but VOC, which cannot hold the ':' in this label's name (see below).
    for format in FORMATS.into_iter().filter(|f| *f != "voc") {
        let job = exported(&manager, set, json!({"format": format})).await;
        let dir = unpack(&download(&manager, &cluster, &job).await);
        check(format, dir.path(), &expected, true);
        let report = job["result"]["report"].to_string();
        assert!(report.contains("EXIF orientation 6"), "{format}: {report}");
        if ["coco", "yolo", "yolo-darknet"].contains(&format) {
            assert!(report.contains("widened to 1 px"), "{format}: {report}");
        }
    }

    // VOC cannot hold a ':' in a label name: refused up front, naming the label and what to do.
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    let refused = send_json(&manager, Method::POST, &path, json!({"format": "voc"})).await;
    assert_eq!(refused.status, 422, "{:?}", refused.json());
    let message = error_message(&refused);
    assert!(
        message.contains("vehicle:truck") && message.contains("rename"),
        "{message}"
    );
    // The same work under a name VOC holds: depth per image, boxes at least 1 px, stored frame.
    let voc_shapes: Vec<Value> = shapes
        .iter()
        .map(|s| {
            serde_json::from_str(&s.to_string().replace("vehicle:truck", "vehicle truck"))
                .expect("shapes")
        })
        .collect();
    let ann2 = create_user(&admin, "ann2", "annotator").await;
    let (voc_set, _) = annotated_set(
        &manager,
        (&ann2, "ann2"),
        dataset,
        "odd",
        odd_labels("vehicle truck", &["head", "hand", "foot"]),
        &shas,
        &voc_shapes
            .iter()
            .map(|s| {
                // Sets saved before the third keypoint existed are saved with it, not labelled.
                let mut s = s.clone();
                for shape in s.as_array_mut().expect("list") {
                    if shape["kind"] == "points"
                        && shape["points"].as_array().map(Vec::len) == Some(2)
                    {
                        shape["points"]
                            .as_array_mut()
                            .expect("points")
                            .push(json!([0, 0]));
                        let mut flags = shape["visibility"]
                            .as_array()
                            .cloned()
                            .unwrap_or(vec![json!(2), json!(2)]);
                        flags.push(json!(0));
                        shape["visibility"] = json!(flags);
                    }
                }
                s
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let job = exported(&manager, voc_set, json!({"format": "voc"})).await;
    let dir = unpack(&download(&manager, &cluster, &job).await);
    check(
        "voc",
        dir.path(),
        &expected_for("vehicle truck", &voc_shapes),
        true,
    );

    // Round trips: exported, imported into a fresh set (labels created), exported again, the
    // same shapes come back: rotated rectangles at 0° stay rotated, visibility survives, the
    // turned image's shapes come back in the frame the annotator drew them.
    for (i, format) in ["cvat", "coco"].into_iter().enumerate() {
        let first = export(&manager, set, json!({"format": format})).await;
        let zip = download(&manager, &cluster, &first).await;
        let labels = json!([{"name": "other", "color": "#ff0000", "kinds": ["rectangle"]}]);
        let name = format!("again-{i}");
        let (fresh, job) =
            import_into_new_set(&manager, dataset, (&name, labels), format, zip).await;
        let report = job["result"]["report"].to_string();
        let carried = if format == "coco" { 20 } else { 28 };
        let head = format!("4 images matched, {carried} shapes imported");
        assert!(report.contains(&head), "{format}: {report}");
        let second = export(&manager, fresh, json!({"format": format})).await;
        let dir = unpack(&download(&manager, &cluster, &second).await);
        // The occluded rectangle of each image came back occluded, and nothing else did.
        let flag = if format == "coco" {
            "\"occluded\":true"
        } else {
            "occluded=\"1\""
        };
        assert_eq!(occurrences(dir.path(), flag), 4, "{format}: {flag}");
        let mut expected = expected.clone();
        if format == "coco" {
            // COCO has no polylines or tags: they are not in the fresh set either.
            for image in expected["images"].as_array_mut().expect("images") {
                let kept: Vec<Value> = image["shapes"]
                    .as_array()
                    .expect("shapes")
                    .iter()
                    .filter(|s| s["kind"] != "polyline" && s["kind"] != "tag")
                    .cloned()
                    .collect();
                image["shapes"] = json!(kept);
            }
        }
        check(format, dir.path(), &expected, true);
    }
}
