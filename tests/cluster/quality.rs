//! Quality control end to end: ground truth, honeypots mixed into tasks, the consensus of three
//! annotators, the report singling out a careless one and the review queue putting their tasks
//! first — with the catalogue's leader killed while the quality worker has images queued.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method, Reply};
use tessera_cluster_tests::Options;

use crate::exports::{download, exported};
use crate::support::{
    add_images, assert_refused, car_set, cluster_beside_catalogue_leader, create_user,
    error_message, image, new_dataset, send_json, upload,
};

/// The box every careful annotator draws on image `i`, moved right by `dx` (images are
/// 100 × 100).
fn boxes(i: usize, dx: f64) -> Value {
    let x = 10.0 + i as f64 + dx;
    json!([{"label": "car", "kind": "rectangle", "points": [[x, 10.0], [x + 30.0, 40.0]]}])
}

async fn save(client: &Client, task: u64, sha: &str, shapes: &Value) {
    let reply = client
        .send(
            Method::PUT,
            &format!("/api/v1/tasks/{task}/images/{sha}/annotations"),
            &[("content-type", "application/json"), ("if-match", "\"0\"")],
            Bytes::from(json!({"shapes": shapes}).to_string()),
        )
        .await
        .expect("save");
    assert_eq!(reply.status, 200, "{shapes}: {:?}", reply.json());
}

async fn act(client: &Client, task: u64, action: &str) -> Reply {
    send_json(
        client,
        Method::POST,
        &format!("/api/v1/tasks/{task}/{action}"),
        json!({}),
    )
    .await
}

/// The quality report once `done` holds (the worker recomputes in the background).
async fn report_until(client: &Client, set: u64, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/annotation-sets/{set}/quality");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A node that just lost its peer may answer 503 for a moment.
        if let Ok(reply) = client.get(&path).await {
            if reply.status == 200 && done(&reply.json()) {
                return reply.json();
            }
            assert!(
                Instant::now() < deadline,
                "the quality report never matched: {:?}",
                reply.json()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn honeypots_and_consensus_single_out_a_careless_annotator_across_a_leader_kill() {
    // Everyone works through a node that does not lead the catalogue, which is killed later.
    let (mut cluster, catalogue_leader, admin) =
        cluster_beside_catalogue_leader(Options::default()).await;
    let manager = create_user(&admin, "mgr", "manager").await;
    let names = ["ann", "bob", "eve"];
    let mut annotators = Vec::new();
    for name in names {
        annotators.push(create_user(&admin, name, "annotator").await);
    }
    let mut shas = Vec::new();
    for seed in 700..720 {
        shas.push(upload(&admin, &image(seed)).await);
    }
    let index_of = |sha: &str| shas.iter().position(|s| s == sha).expect("one of ours");
    let dataset = new_dataset(&manager, "q").await;
    let listed: Vec<Value> = shas
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"sha256": s, "name": format!("img{i:02}.png")}))
        .collect();
    assert_eq!(
        add_images(&manager, dataset, json!(listed)).await.status,
        200
    );
    let set = car_set(&manager, dataset).await;
    let base = format!("/api/v1/annotation-sets/{set}");

    // Bad input: a clear 422 naming the problem.
    let quality = format!("{base}/quality");
    let reply = send_json(
        &manager,
        Method::PUT,
        &quality,
        json!({"honeypot_fraction": 0.7}),
    )
    .await;
    assert_refused(&reply, 422, "invalid_field");
    assert!(
        error_message(&reply).contains("honeypot_fraction"),
        "{:?}",
        reply.json()
    );
    let truth = format!("{base}/ground-truth");
    let bus = json!([{"label": "bus", "kind": "rectangle", "points": [[1, 1], [5, 5]]}]);
    let reply = send_json(
        &manager,
        Method::POST,
        &truth,
        json!({"images": [{"image": shas[0], "shapes": bus}]}),
    )
    .await;
    assert_refused(&reply, 422, "invalid_field");
    assert!(error_message(&reply).contains("bus"), "{:?}", reply.json());
    let reply = send_json(
        &manager,
        Method::POST,
        &truth,
        json!({"task": 1, "import": []}),
    )
    .await;
    assert_eq!(reply.status, 422, "{:?}", reply.json());

    // Images 18 and 19 are ground truth; 10 % of every task is honeypots; review below 0.5 first.
    let references = json!({"images": [
        {"image": shas[18], "shapes": boxes(18, 0.0)},
        {"image": shas[19], "shapes": boxes(19, 0.0)},
    ]});
    let reply = send_json(&manager, Method::POST, &truth, references).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    let policy = json!({"honeypot_fraction": 0.1, "review_below": 0.5});
    let reply = send_json(&manager, Method::PUT, &quality, policy).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());

    // One chunk: the 18 regular images, and 2 honeypots make 10 % of a task of 20.
    let split = json!({"chunk_size": 20, "overlap": 3, "assignees": names});
    let reply = send_json(
        &manager,
        Method::POST,
        &format!("{base}/tasks/split"),
        split,
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    let reply = send_json(&manager, Method::PUT, &quality, json!({"quorum": 4})).await;
    assert_refused(&reply, 422, "invalid_field");

    // Every annotator works through their tasks; nothing in a task tells a honeypot apart.
    let mut tasks_of: Vec<(usize, u64)> = Vec::new();
    for (who, client) in annotators.iter().enumerate() {
        let mine = client
            .get("/api/v1/me/tasks")
            .await
            .expect("my tasks")
            .json();
        for item in mine["items"].as_array().expect("items") {
            let task = item["id"].as_u64().expect("task id");
            let detail = client
                .get(&format!("/api/v1/tasks/{task}"))
                .await
                .expect("task");
            assert_eq!(detail.status, 200);
            let text = detail.json().to_string();
            assert!(
                !text.contains("honeypot") && !text.contains("ground"),
                "{text}"
            );
            let images: Vec<String> = detail.json()["images"]
                .as_array()
                .expect("images")
                .iter()
                .map(|i| {
                    i["sha256"]
                        .as_str()
                        .or(i.as_str())
                        .expect("sha")
                        .to_string()
                })
                .collect();
            assert_eq!(images.len(), 20, "18 images and 2 honeypots: {text}");
            assert_eq!(images.iter().filter(|s| index_of(s) >= 18).count(), 2);
            assert_eq!(act(client, task, "start").await.status, 200);
            // ann draws exactly, bob a pixel off, eve 25 pixels off (IoU 0.09).
            let dx = [0.0, 1.0, 25.0][who];
            for sha in &images {
                save(client, task, sha, &boxes(index_of(sha), dx)).await;
            }
            assert_eq!(act(client, task, "submit").await.status, 200);
            tasks_of.push((who, task));
        }
    }
    assert_eq!(tasks_of.len(), 3);
    // An annotator may not read the references.
    let reply = annotators[0].get(&truth).await.expect("ground truth");
    assert_eq!(reply.status, 403, "{:?}", reply.json());

    // The catalogue's leader dies right after the last submit marked its task's 20 images (the
    // worker may not have got to them); whichever node leads next finishes the work.
    cluster.kill(catalogue_leader);
    let report = report_until(&manager, set, |r| {
        r["pending"] == 0 && r["consensus_images"] == 20
    })
    .await;
    let annotator = |name: &str| {
        report["annotators"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["annotator"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    let (ann, bob, eve) = (annotator("ann"), annotator("bob"), annotator("eve"));
    assert_eq!(ann["honeypots"]["score"], 1.0, "{report}");
    assert!(bob["honeypots"]["score"].as_f64() > Some(0.9), "{report}");
    assert_eq!(
        (
            eve["honeypots"]["score"].clone(),
            eve["honeypots"]["images"].clone()
        ),
        (json!(0.0), json!(2))
    );
    assert!(
        ann["agreement"].as_f64() > Some(0.95) && bob["agreement"].as_f64() > Some(0.95),
        "{report}"
    );
    assert_eq!(eve["agreement"], 0.0, "{report}");
    for t in report["tasks"].as_array().expect("tasks") {
        assert_eq!(t["review_first"] == true, t["annotator"] == "eve", "{t}");
    }

    // The consensus of a regular image is the mean of ann's and bob's boxes; eve's is left out.
    let q = manager
        .get(&format!("{base}/quality/images/{}", shas[3]))
        .await
        .expect("image");
    assert_eq!(q.status, 200, "{:?}", q.json());
    let consensus = &q.json()["chunks"][0]["consensus"];
    assert_eq!(consensus.as_array().map(Vec::len), Some(1), "{consensus}");
    assert_eq!(
        consensus[0]["shape"]["points"],
        json!([[13.5, 10.0], [43.5, 40.0]])
    );
    // A honeypot's record names its reference.
    let q = manager
        .get(&format!("{base}/quality/images/{}", shas[18]))
        .await
        .expect("image");
    assert_eq!(q.json()["reference"]["shape_count"], 1, "{:?}", q.json());

    // The review queue puts eve's tasks first.
    let queue = manager
        .get("/api/v1/review/tasks")
        .await
        .expect("queue")
        .json();
    let items = queue["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{queue}");
    let eves = tasks_of.iter().find(|(w, _)| *w == 2).map(|(_, t)| *t);
    assert_eq!(items[0]["id"].as_u64(), eves, "{queue}");
    assert_eq!(items[0]["quality"]["review_first"], true, "{queue}");
    assert_eq!(items[1]["quality"]["review_first"], false, "{queue}");

    // Ordered by agreement: eve's task (review first, agreement 0) leads; a bad order is a 422.
    let ordered = manager
        .get("/api/v1/review/tasks?order=agreement&limit=2")
        .await
        .expect("queue")
        .json();
    let items = ordered["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{ordered}");
    assert_eq!(items[0]["id"].as_u64(), eves, "{ordered}");
    let reply = manager
        .get("/api/v1/review/tasks?order=shoe-size")
        .await
        .expect("queue");
    assert_refused(&reply, 422, "invalid_field");

    // Exports take the ground truth, else the consensus by default; one annotator on request.
    let job = exported(
        &manager,
        set,
        json!({"format": "csv", "include_images": false, "include_agreement": true}),
    )
    .await;
    let zip = download(&manager, &cluster, &job).await;
    let (rows, quality_csv) = (
        file_in(&zip, "annotations.csv"),
        file_in(&zip, "quality.csv"),
    );
    // One row per image, with the expected box.
    let only_row = |rows: &str, image: &str, points: &str| {
        let found: Vec<&str> = rows
            .lines()
            .filter(|l| l.starts_with(&format!("{image}.png,")))
            .collect();
        let want = format!("{image}.png,100,100,car,rectangle,,\"{points}\",");
        assert_eq!(found.len(), 1, "{rows}");
        assert!(found[0].starts_with(&want), "{want} in {rows}");
    };
    only_row(&rows, "img03", "[[13.5,10],[43.5,40]]");
    only_row(&rows, "img18", "[[28,10],[58,40]]");
    let line = quality_csv
        .lines()
        .find(|l| l.starts_with("img03.png,"))
        .expect("img03 in quality.csv");
    assert!(line.contains(",consensus,3,"), "{quality_csv}");
    let job = exported(&manager, set, json!({"format": "csv", "include_images": false, "source": "annotator", "annotator": "eve"})).await;
    let rows = file_in(&download(&manager, &cluster, &job).await, "annotations.csv");
    assert!(
        rows.contains("img03.png,100,100,car,rectangle,,\"[[38,10],[68,40]]\""),
        "eve's box: {rows}"
    );
    let path = format!("{base}/exports");
    let reply = send_json(
        &manager,
        Method::POST,
        &path,
        json!({"format": "csv", "source": "annotator"}),
    )
    .await;
    assert_refused(&reply, 422, "invalid_field");
}

/// The text of `name` in a zip.
fn file_in(zip: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name(name).expect(name), &mut text)
        .expect("utf-8");
    text
}
