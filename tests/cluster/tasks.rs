//! Splitting an annotation set into tasks, the pool, and the review workflow with rework.

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method, Reply};
use tessera_cluster_tests::{Options, TestCluster};

use crate::support::{
    add_images, create_annotation_set, create_user, dataset_of, error_message, image, new_dataset,
    send_json, upload,
};

/// Uploads the test images of `seeds` (as `admin`), puts them in a new dataset and creates an
/// annotation set with `labels` on it (as `manager`). Returns the images' hashes and the set.
pub(crate) async fn annotated_dataset(
    admin: &Client,
    manager: &Client,
    seeds: std::ops::Range<u64>,
    labels: Value,
) -> (Vec<String>, u64) {
    let mut shas = Vec::new();
    for seed in seeds {
        shas.push(upload(admin, &image(seed)).await);
    }
    let dataset = new_dataset(manager, "d").await;
    let images: Vec<Value> = shas.iter().map(|s| json!({"sha256": s})).collect();
    let added = add_images(manager, dataset, json!(images)).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let set = create_annotation_set(manager, dataset, "s", &labels).await;
    (shas, set.json()["id"].as_u64().expect("annotation set id"))
}

/// The label schema of one label, `car`, drawn as rectangles.
pub(crate) fn car() -> Value {
    json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}])
}

/// The label schema of one tag, `night`.
fn night() -> Value {
    json!([{"name": "night", "color": "#000000", "kinds": ["tag"]}])
}

/// The admin signed in through node `via`, the manager `mgr` and `users` (name and role),
/// created by the admin (passwords `<name>-password`).
pub(crate) async fn team<const N: usize>(
    cluster: &TestCluster,
    via: u64,
    users: [(&str, &str); N],
) -> (Client, Client, [Client; N]) {
    let admin = cluster.node(via).client();
    let manager = create_user(&admin, "mgr", "manager").await;
    let mut clients = Vec::with_capacity(N);
    for (name, role) in users {
        clients.push(create_user(&admin, name, role).await);
    }
    let clients = clients.try_into().unwrap_or_else(|_| unreachable!());
    (admin, manager, clients)
}

pub(crate) async fn act(client: &Client, task: u64, action: &str, body: Value) -> Reply {
    send_json(
        client,
        Method::POST,
        &format!("/api/v1/tasks/{task}/{action}"),
        body,
    )
    .await
}

/// Splits `set` as `body` asks (as `manager`); returns the new task ids.
async fn split(manager: &Client, set: u64, body: Value) -> Vec<u64> {
    let path = format!("/api/v1/annotation-sets/{set}/tasks/split");
    let reply = send_json(manager, Method::POST, &path, body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    ids(&reply)
}

/// Splits `set` into tasks of `chunk_size` images, every one assigned to `assignee`.
pub(crate) async fn assign(
    manager: &Client,
    set: u64,
    chunk_size: u64,
    assignee: &str,
) -> Vec<u64> {
    let body = json!({"chunk_size": chunk_size, "assignees": [assignee]});
    split(manager, set, body).await
}

/// Runs `steps` on `task` in order: each an action (with an empty body) by a client, the status
/// it must answer and the task's state after it (none for a refusal).
async fn walk(task: u64, steps: &[(&Client, &str, u16, &str)]) {
    for (i, &(client, action, status, state)) in steps.iter().enumerate() {
        let reply = act(client, task, action, json!({})).await;
        let got = reply.json()["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            (reply.status.as_u16(), got.as_str()),
            (status, state),
            "step {i} ({action}): {:?}",
            reply.json()
        );
    }
}

/// Comments on `task` as `client`: `body` pins a thread to a point (`sha256`, `x`, `y`) or
/// answers one (`parent`), with its `text`.
async fn comment(client: &Client, task: u64, body: Value) -> Reply {
    let path = format!("/api/v1/tasks/{task}/comments");
    send_json(client, Method::POST, &path, body).await
}

/// Changes annotation set `set` as `body` says (as `manager`); returns the reply.
async fn patch_set(manager: &Client, set: u64, body: Value) -> Reply {
    let path = format!("/api/v1/annotation-sets/{set}");
    send_json(manager, Method::PATCH, &path, body).await
}

fn ids(reply: &Reply) -> Vec<u64> {
    reply.json()["tasks"]
        .as_array()
        .expect("task ids")
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

#[tokio::test]
async fn tasks_flow_from_split_through_review_and_rework() {
    let cluster = TestCluster::start(Options::default()).await;
    let users = [
        ("ann1", "annotator"),
        ("ann2", "annotator"),
        ("rev", "reviewer"),
    ];
    let (admin, manager, [ann1, ann2, reviewer]) = team(&cluster, 1, users).await;

    let (_, set) = annotated_dataset(&admin, &manager, 100..105, car()).await;
    let split_path = format!("/api/v1/annotation-sets/{set}/tasks/split");

    // Overlap 2 over two annotators: every chunk once to each of them.
    let bad = send_json(
        &manager,
        Method::POST,
        &split_path,
        json!({"chunk_size": 2, "overlap": 2, "assignees": ["ann1"]}),
    )
    .await;
    assert_eq!(bad.status, 422);
    let split_reply = send_json(
        &manager,
        Method::POST,
        &split_path,
        json!({"chunk_size": 2, "overlap": 2, "assignees": ["ann1", "ann2"]}),
    )
    .await;
    assert_eq!(split_reply.status, 201, "{:?}", split_reply.json());
    assert_eq!(ids(&split_reply).len(), 6);
    let mine = ann1.get("/api/v1/me/tasks").await.unwrap().json();
    let mine: Vec<Value> = mine["items"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 3);
    let chunks: std::collections::HashSet<u64> =
        mine.iter().filter_map(|t| t["chunk"].as_u64()).collect();
    assert_eq!(chunks.len(), 3, "ann1 holds one copy of each chunk");
    let task = mine[0]["id"].as_u64().unwrap();

    // The task page carries presigned URLs an <img> can load without a token.
    let detail = ann1
        .get(&format!("/api/v1/tasks/{task}"))
        .await
        .unwrap()
        .json();
    let url = detail["images"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(ann1.anonymous().get(&url).await.unwrap().status, 200);
    // An annotator cannot read images outside their tasks directly.
    let sha = detail["images"][0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        ann1.get(&format!("/objects/{sha}")).await.unwrap().status,
        403
    );

    // Transitions are enforced.
    let steps = [
        (&ann1, "submit", 409, ""), // submit before start
        (&ann2, "start", 403, ""),  // not ann2's task
        (&ann1, "start", 200, "in_progress"),
        (&ann1, "review", 403, ""), // annotators do not review
        (&ann1, "submit", 200, "submitted"),
        // A reviewer reviews only the sets that list them.
        (&reviewer, "review", 403, ""),
    ];
    walk(task, &steps).await;
    let assigned = patch_set(&manager, set, json!({"reviewers": ["rev"]})).await;
    assert_eq!(
        assigned.json()["reviewers"],
        json!(["rev"]),
        "{:?}",
        assigned.json()
    );
    let steps = [
        (&reviewer, "review", 200, "in_review"),
        (&reviewer, "reject", 409, ""), // rejection needs a reason
    ];
    walk(task, &steps).await;
    let rejected = act(
        &reviewer,
        task,
        "reject",
        json!({"reason": "box on car 2 is loose"}),
    )
    .await;
    assert_eq!(rejected.json()["state"], "rejected");
    // Review comments pinned to a point, answered, resolved.
    let pin = json!({"sha256": sha, "x": 10, "y": 20, "text": "box is loose"});
    let pin = comment(&reviewer, task, pin).await;
    assert_eq!(pin.status, 201, "{:?}", pin.json());
    let thread = pin.json()["id"].as_u64().unwrap();
    let outside = json!({"sha256": sha, "x": 500, "y": 20, "text": "?"});
    assert_eq!(comment(&reviewer, task, outside).await.status, 422);
    let reply = comment(&ann1, task, json!({"parent": thread, "text": "fixing"})).await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()["x"].clone()),
        (201, json!(10.0))
    );
    let outsider = comment(&ann2, task, json!({"parent": thread, "text": "hi"})).await;
    assert_eq!(outsider.status, 403);
    let comments = format!("/api/v1/tasks/{task}/comments");
    assert_eq!(
        ann1.get(&comments).await.unwrap().json()["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let resolve = format!("/api/v1/comments/{thread}/resolve");
    assert_eq!(
        send_json(&ann1, Method::POST, &resolve, json!({}))
            .await
            .status,
        403
    );
    assert_eq!(
        send_json(&reviewer, Method::POST, &resolve, json!({}))
            .await
            .json()["resolved_by"],
        "rev"
    );

    // Rework.
    let steps = [
        (&ann1, "start", 200, "in_progress"),
        (&ann1, "submit", 200, "submitted"),
        (&reviewer, "review", 200, "in_review"),
    ];
    walk(task, &steps).await;
    let accepted = act(&reviewer, task, "accept", json!({})).await.json();
    assert_eq!(accepted["state"], "accepted");
    let actions: Vec<&str> = accepted["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["created", "start", "submit", "review", "reject", "start", "submit", "review", "accept"]
    );
    assert_eq!(
        send_json(
            &manager,
            Method::POST,
            &format!("/api/v1/tasks/{task}/reassign"),
            json!({"assignee": "ann2"})
        )
        .await
        .status,
        409
    );
    assert_eq!(act(&ann1, task, "dance", json!({})).await.status, 404);

    // Every image has a task now: a second split of the set has nothing to take.
    let again = send_json(
        &manager,
        Method::POST,
        &split_path,
        json!({"chunk_size": 5}),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.json());
    assert_eq!(again.json()["error"]["code"], "nothing_to_split");

    // The pool (a second set on the same images): concurrent claims of one task, exactly one
    // wins.
    let dataset = dataset_of(&manager, set).await;
    let pool_set = create_annotation_set(&manager, dataset, "pool", &car())
        .await
        .json()["id"]
        .as_u64()
        .expect("pool set id");
    let pooled = split(&manager, pool_set, json!({"chunk_size": 5, "overlap": 2})).await;
    assert_eq!(pooled.len(), 2);
    let (a, b) = tokio::join!(
        act(&ann1, pooled[0], "claim", json!({})),
        act(&ann2, pooled[0], "claim", json!({}))
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "each task is claimed once");
    // Whoever won cannot take the other copy of the same images; the other one can.
    let (winner, other) = if a.status == 200 {
        (&ann1, &ann2)
    } else {
        (&ann2, &ann1)
    };
    assert_eq!(act(winner, pooled[1], "claim", json!({})).await.status, 409);
    assert_eq!(act(other, pooled[1], "claim", json!({})).await.status, 200);
    let listed = reviewer
        .get(&format!(
            "/api/v1/annotation-sets/{set}/tasks?state=accepted"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let stats = reviewer
        .get(&format!("/api/v1/annotation-sets/{set}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(
        stats["tasks"],
        json!({"accepted": 1, "new": 5, "in_progress": 0, "in_review": 0, "rejected": 0, "submitted": 0})
    );
    assert_eq!(stats["images"]["total"], 5);
}

/// `PATCH …/annotations`: splices by position in the version named by If-Match, applied there
/// and saved as a whole version under the same rules as `PUT` (issue 13's save of what changed),
/// on any node; `occluded` is kept.
#[tokio::test]
async fn annotations_patch_saves_what_changed_on_the_edited_version() {
    let cluster = TestCluster::start(Options::default()).await;
    let users = [("ann1", "annotator"), ("ann2", "annotator")];
    let (admin, manager, [ann1, ann2]) = team(&cluster, 1, users).await;
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}]);
    let (shas, set) = annotated_dataset(&admin, &manager, 300..301, labels).await;
    let task = assign(&manager, set, 10, "ann1").await[0];
    act(&ann1, task, "start", json!({})).await;
    let path = format!("/api/v1/tasks/{}/images/{}/annotations", task, shas[0]);
    let car = |x: u32| json!({"label": "car", "kind": "rectangle", "points": [[x, 1], [x + 5, 9]]});
    let send = |client: &Client, method: Method, version: &str, body: Value| {
        let (client, path, version) = (client.clone(), path.clone(), version.to_string());
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("if-match", version.as_str()),
            ];
            client
                .send(method, &path, &headers, Bytes::from(body.to_string()))
                .await
                .expect("send")
        }
    };
    let first = send(
        &ann1,
        Method::PUT,
        "\"0\"",
        json!({"shapes": [car(1), car(2), car(3)]}),
    )
    .await;
    assert_eq!(first.status, 200);

    // The second shape occluded, one added in front and the last removed; through another node.
    let mut occluded = car(2);
    occluded["occluded"] = json!(true);
    let patch =
        json!({"base_len": 3, "splices": [[0, 0, [car(9)]], [1, 1, [occluded]], [2, 1, []]]});
    let elsewhere = ann1.with_base(cluster.node(2).client().base());
    let saved = send(&elsewhere, Method::PATCH, "\"1\"", patch.clone()).await;
    assert_eq!(
        (saved.status.as_u16(), saved.json()["version"].clone()),
        (200, json!(2))
    );
    let current = ann1.get(&path).await.unwrap().json();
    assert_eq!(current["shapes"], json!([car(9), car(1), occluded]));

    // The same patch again is stale; one made on another list, out of order or of invalid
    // shapes is refused; only the assignee patches.
    let stale = send(&ann1, Method::PATCH, "\"1\"", patch).await;
    assert_eq!(
        (
            stale.status.as_u16(),
            stale.json()["current_version"].clone()
        ),
        (412, json!(2))
    );
    for (body, needle) in [
        (json!({"base_len": 2, "splices": []}), "base_len"),
        (
            json!({"base_len": 3, "splices": [[2, 1, []], [0, 1, []]]}),
            "splices[1]",
        ),
        (
            json!({"base_len": 3, "splices": [[0, 1, [{"label": "bus", "kind": "rectangle"}]]]}),
            "shapes[0].label",
        ),
    ] {
        let refused = send(&ann1, Method::PATCH, "\"2\"", body.clone()).await;
        assert_eq!(refused.status, 422, "{body}");
        assert!(
            error_message(&refused).contains(needle),
            "{body}: {}",
            error_message(&refused)
        );
    }
    let theirs = send(
        &ann2,
        Method::PATCH,
        "\"2\"",
        json!({"base_len": 3, "splices": []}),
    )
    .await;
    assert_eq!(theirs.status, 403);
    assert_eq!(ann1.get(&path).await.unwrap().json()["version"], 2);
}

#[tokio::test]
async fn annotations_are_versioned_validated_and_never_overwritten() {
    let cluster = TestCluster::start(Options::default()).await;
    let users = [("ann1", "annotator"), ("ann2", "annotator")];
    let (admin, manager, [ann1, ann2]) = team(&cluster, 1, users).await;
    let labels = json!([
        {"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"],
         "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"], "required": true}]},
        {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": ["head", "foot"], "skeleton": [[0, 1]]},
        {"name": "night", "color": "#000000", "kinds": ["tag"]},
        {"name": "crate", "color": "#0000ff", "kinds": ["rotated_rectangle"]}
    ]);
    let (shas, set) = annotated_dataset(&admin, &manager, 300..301, labels.clone()).await;
    let sha = shas[0].clone(); // 100 x 100
    let task = assign(&manager, set, 10, "ann1").await[0];
    act(&ann1, task, "start", json!({})).await;
    let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");

    let empty = ann1.get(&path).await.unwrap();
    assert_eq!(
        (empty.json()["version"].as_u64(), empty.header("etag")),
        (Some(0), Some("\"0\""))
    );
    let good = json!({"shapes": [
        {"label": "car", "kind": "rectangle", "points": [[10, 10], [50, 40]], "attributes": {"colour": "red"}},
        {"label": "person", "kind": "points", "points": [[20, 5], [20, 90]]},
        {"label": "night", "kind": "tag"},
        {"label": "crate", "kind": "rotated_rectangle", "points": [[60, 60], [90, 80]], "angle": 30}
    ]});
    let put = |client: &Client, version: &str, body: Value| {
        let (client, path, version) = (client.clone(), path.clone(), version.to_string());
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if !version.is_empty() {
                headers.push(("if-match", version.as_str()));
            }
            client
                .send(Method::PUT, &path, &headers, Bytes::from(body.to_string()))
                .await
                .expect("put")
        }
    };
    assert_eq!(put(&ann1, "", good.clone()).await.status, 428);
    let first = put(&ann1, "\"0\"", good.clone()).await;
    assert_eq!(
        (first.status.as_u16(), first.json()["version"].clone()),
        (200, json!(1))
    );

    // Two saves from version 1 at once: exactly one wins, the other learns the current version.
    let (a, b) = tokio::join!(
        put(&ann1, "\"1\"", good.clone()),
        put(&ann1, "\"1\"", good.clone())
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412]);
    let loser = if a.status == 412 { &a } else { &b };
    assert_eq!(loser.json()["current_version"], 2);

    for (shape, expect) in [
        (
            json!({"label": "bus", "kind": "rectangle", "points": [[1, 1], [2, 2]]}),
            "shapes[0].label",
        ),
        (
            json!({"label": "car", "kind": "polyline", "points": [[1, 1], [2, 2]], "attributes": {"colour": "red"}}),
            "shapes[0].kind",
        ),
        (
            json!({"label": "car", "kind": "rectangle", "points": [[1, 1], [150, 2]], "attributes": {"colour": "red"}}),
            "shapes[0].points[1]",
        ),
        (
            json!({"label": "car", "kind": "polygon", "points": [[1, 1], [2, 2], [1, 1]], "attributes": {"colour": "red"}}),
            "three distinct",
        ),
        (
            json!({"label": "car", "kind": "rectangle", "points": [[1, 1], [2, 2]]}),
            "shapes[0].attributes.colour: required",
        ),
        (
            json!({"label": "car", "kind": "rectangle", "points": [[1, 1], [2, 2]], "attributes": {"colour": "green"}}),
            "shapes[0].attributes.colour",
        ),
        (
            json!({"label": "crate", "kind": "rotated_rectangle", "points": [[1, 1], [2, 2]]}),
            "shapes[0].angle",
        ),
        (
            json!({"label": "person", "kind": "points", "points": [[1, 1]]}),
            "named keypoint",
        ),
        (
            json!({"label": "night", "kind": "tag", "colour": "x"}),
            "unknown field",
        ),
    ] {
        let reply = put(&ann1, "\"2\"", json!({"shapes": [shape]})).await;
        assert_eq!(reply.status, 422, "{shape}");
        let message = error_message(&reply);
        assert!(message.contains(expect), "{shape}: {message}");
    }
    let malformed = ann1
        .send(
            Method::PUT,
            &path,
            &[("if-match", "\"2\"")],
            Bytes::from_static(b"{\"shapes\": ["),
        )
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);

    // A save retried with its Idempotency-Key (its answer was lost to a timeout) gets its
    // first answer back, on any node, not a conflict with itself; another key is a new save.
    let keyed = |client: &Client, key: &'static str| {
        let (client, path, body) = (client.clone(), path.clone(), good.to_string());
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("if-match", "\"2\""),
                ("idempotency-key", key),
            ];
            client
                .send(Method::PUT, &path, &headers, Bytes::from(body))
                .await
                .expect("put")
        }
    };
    let ann1_elsewhere = ann1.with_base(cluster.node(2).client().base());
    let saved = keyed(&ann1, "save-3").await;
    let retried = keyed(&ann1_elsewhere, "save-3").await;
    assert_eq!((saved.status.as_u16(), retried.status.as_u16()), (200, 200));
    assert_eq!(saved.json()["version"], 3);
    assert_eq!(retried.json()["version"], 3);
    assert_eq!(keyed(&ann1, "save-other").await.status, 412);

    // Only the assignee edits, and only while the task is in progress.
    assert_eq!(put(&ann2, "\"2\"", good.clone()).await.status, 403);
    assert_eq!(ann2.get(&path).await.unwrap().status, 403);
    act(&ann1, task, "submit", json!({})).await;
    assert_eq!(put(&ann1, "\"2\"", good.clone()).await.status, 403);

    let history = ann1.get(&format!("{path}/history")).await.unwrap().json();
    let versions: Vec<u64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(history["items"][0]["saved_by"], "ann1");
    let current = manager.get(&path).await.unwrap().json();
    assert_eq!(current["shapes"], good["shapes"]);
    let stats = manager
        .get(&format!("/api/v1/annotation-sets/{set}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["images"], json!({"total": 1, "annotated": 1}));
    assert_eq!(
        stats["shapes"]["total"], 4,
        "the current version counts, not every save"
    );
    assert_eq!(
        stats["shapes"]["by_label"]["car"]["by_kind"]["rectangle"],
        1
    );
    assert_eq!(stats["annotators"]["ann1"]["saves"], 3);
    assert_eq!(stats["annotators"]["ann1"]["shapes"], 4);
    assert_eq!(stats["tasks"]["submitted"], 1);
    let days = stats["days"].as_object().expect("days");
    assert_eq!(days.len(), 1);
    assert_eq!(days.values().next().unwrap()["saves"], 3);

    // Schema changes that would orphan annotations are refused; harmless ones go through.
    let mut without_crate = labels.as_array().unwrap().clone();
    without_crate.retain(|l| l["name"] != "crate");
    let orphaning = patch_set(&manager, set, json!({"labels": without_crate})).await;
    assert_eq!(orphaning.status, 409);
    assert_eq!(orphaning.json()["error"]["code"], "would_orphan");
    assert!(error_message(&orphaning).contains("crate"));
    let mut narrower = labels.as_array().unwrap().clone();
    narrower[0]["kinds"] = json!(["rectangle"]);
    let narrowed = patch_set(&manager, set, json!({"labels": narrower})).await;
    assert_eq!(narrowed.status, 200, "{:?}", narrowed.json());
}

/// The catalogue's leader is killed while an annotator saves: every acknowledged save is there
/// afterwards, with its version, read through any surviving node.
#[tokio::test]
async fn acknowledged_saves_survive_the_catalogue_leader_dying() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let leader = crate::support::leader_of(&cluster, 0).await;
    let via = crate::support::node_but(&cluster, leader);
    let (admin, manager, [ann]) = team(&cluster, via, [("ann", "annotator")]).await;
    let (images, set) = annotated_dataset(&admin, &manager, 400..420, night()).await;
    let task = assign(&manager, set, 20, "ann").await[0];
    act(&ann, task, "start", json!({})).await;

    let body = json!({"shapes": [{"label": "night", "kind": "tag"}]}).to_string();
    let mut acknowledged = Vec::new();
    for (i, sha) in images.iter().enumerate() {
        if i == 8 {
            cluster.kill(leader);
        }
        let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");
        let reply = ann
            .send(
                Method::PUT,
                &path,
                &[("content-type", "application/json"), ("if-match", "\"0\"")],
                Bytes::from(body.clone()),
            )
            .await;
        match reply {
            Ok(r) if r.status == 200 => acknowledged.push(sha.clone()),
            // Only saves racing the kill may fail, and they must say so.
            Ok(r) => assert!(
                i >= 8,
                "save {i} failed before the kill: {} {:?}",
                r.status,
                r.json()
            ),
            Err(e) => assert!(i >= 8, "save {i} failed before the kill: {e}"),
        }
    }
    assert!(
        acknowledged.len() >= 16,
        "only {} of 20 saves were acknowledged",
        acknowledged.len()
    );
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let reader = ann.with_base(&node.http);
        for sha in &acknowledged {
            let current = reader
                .get(&format!("/api/v1/tasks/{task}/images/{sha}/annotations"))
                .await
                .unwrap();
            assert_eq!(current.status, 200, "node {}", node.id);
            assert_eq!(current.json()["version"], 1, "node {} image {sha}", node.id);
        }
    }
    // The statistics match a recount of what is stored.
    let mut annotated = 0;
    for sha in &images {
        let current = ann
            .get(&format!("/api/v1/tasks/{task}/images/{sha}/annotations"))
            .await
            .unwrap()
            .json();
        annotated += u64::from(current["version"].as_u64() == Some(1));
    }
    let stats = manager
        .get(&format!("/api/v1/annotation-sets/{set}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["images"]["annotated"], annotated);
    assert_eq!(stats["shapes"]["total"], annotated);
}

/// Many annotators claim from the pool at once: every task ends up with exactly one assignee,
/// and nobody holds two copies of the same images.
#[tokio::test]
async fn pool_claims_under_contention_give_each_task_once() {
    let cluster = TestCluster::start(Options::default()).await;
    let (admin, manager, []) = team(&cluster, 1, []).await;
    let mut annotators = Vec::new();
    for i in 0..5 {
        let client = create_user(&admin, &format!("ann{i}"), "annotator").await;
        // Spread the annotators over the nodes.
        annotators.push(client.with_base(&cluster.nodes[i % 3].http));
    }
    let (_, set) = annotated_dataset(&admin, &manager, 500..505, night()).await;
    let pooled = split(&manager, set, json!({"chunk_size": 1, "overlap": 2})).await;
    assert_eq!(pooled.len(), 10);

    // Everyone tries to claim every task at once.
    let mut attempts = Vec::new();
    for client in &annotators {
        for &task in &pooled {
            let client = client.clone();
            attempts.push(tokio::spawn(async move {
                (
                    task,
                    act(&client, task, "claim", json!({})).await.status.as_u16(),
                )
            }));
        }
    }
    let mut wins = std::collections::HashMap::new();
    for attempt in attempts {
        let (task, status) = attempt.await.expect("claim task");
        assert!(status == 200 || status == 409, "claim of {task}: {status}");
        if status == 200 {
            *wins.entry(task).or_insert(0) += 1;
        }
    }
    for task in &pooled {
        assert_eq!(
            wins.get(task),
            Some(&1),
            "task {task} claimed {:?} times",
            wins.get(task)
        );
    }
    let listed = manager
        .get(&format!("/api/v1/annotation-sets/{set}/tasks?limit=100"))
        .await
        .unwrap()
        .json();
    let mut holders = std::collections::HashSet::new();
    for t in listed["items"].as_array().unwrap() {
        let holder = (
            t["assignee"].as_str().expect("assigned").to_string(),
            t["chunk"].as_u64().unwrap(),
        );
        assert!(
            holders.insert(holder.clone()),
            "{holder:?} holds two copies of one chunk"
        );
    }
}

#[tokio::test]
async fn reviewers_review_their_sets_from_a_queue_and_annotators_get_the_schema() {
    let cluster = TestCluster::start(Options::default()).await;
    let users = [("ann", "annotator"), ("rev", "reviewer")];
    let (admin, manager, [ann, rev]) = team(&cluster, 1, users).await;
    let (_, set) = annotated_dataset(&admin, &manager, 400..404, car()).await;
    let tasks = assign(&manager, set, 2, "ann").await;
    // The annotator's task carries the label schema (annotators may not read sets).
    let task = ann
        .get(&format!("/api/v1/tasks/{}", tasks[0]))
        .await
        .unwrap()
        .json();
    assert_eq!(task["labels"][0]["name"], "car", "{task}");
    assert_eq!(task["set_name"], "s", "{task}");
    let queue = |client: &Client| {
        let client = client.clone();
        async move {
            let reply = client.get("/api/v1/review/tasks").await.expect("queue");
            assert_eq!(reply.status, 200, "{:?}", reply.json());
            let items = reply.json()["items"].as_array().expect("items").clone();
            items
                .iter()
                .filter_map(|t| t["id"].as_u64())
                .collect::<Vec<_>>()
        }
    };
    assert!(queue(&rev).await.is_empty());
    for t in &tasks {
        act(&ann, *t, "start", json!({})).await;
        act(&ann, *t, "submit", json!({})).await;
    }
    // Not among the set's reviewers yet: nothing to review, and no access to the set's tasks.
    assert!(queue(&rev).await.is_empty());
    let set_tasks = format!("/api/v1/annotation-sets/{set}/tasks");
    assert_eq!(rev.get(&set_tasks).await.unwrap().status, 403);
    let not_a_reviewer = patch_set(&manager, set, json!({"reviewers": ["ann"]})).await;
    assert_eq!(not_a_reviewer.status, 422, "{:?}", not_a_reviewer.json());
    let assigned = patch_set(&manager, set, json!({"reviewers": ["rev"]})).await;
    assert_eq!(assigned.status, 200, "{:?}", assigned.json());
    assert_eq!(rev.get(&set_tasks).await.unwrap().status, 200);
    assert_eq!(queue(&rev).await, tasks);
    // Taken for review by the manager: gone from the reviewer's queue, still in the manager's.
    assert_eq!(
        act(&manager, tasks[0], "review", json!({})).await.status,
        200
    );
    assert_eq!(queue(&rev).await, tasks[1..].to_vec());
    assert_eq!(queue(&manager).await, tasks);
    let denied = ann.get("/api/v1/review/tasks").await.unwrap();
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn dataset_images_filter_by_what_a_set_saved() {
    let cluster = TestCluster::start(Options::default()).await;
    let (admin, manager, [ann]) = team(&cluster, 1, [("ann", "annotator")]).await;
    let labels = json!([
        {"name": "car", "color": "#ff0000", "kinds": ["rectangle"]},
        {"name": "night", "color": "#000000", "kinds": ["tag"]}
    ]);
    let (shas, set) = annotated_dataset(&admin, &manager, 500..505, labels).await;
    let task = assign(&manager, set, 5, "ann").await[0];
    act(&ann, task, "start", json!({})).await;
    let save = |sha: &str, shapes: Value| {
        let (ann, path) = (
            ann.clone(),
            format!("/api/v1/tasks/{task}/images/{sha}/annotations"),
        );
        async move {
            let headers = [("content-type", "application/json"), ("if-match", "\"0\"")];
            let body = Bytes::from(json!({ "shapes": shapes }).to_string());
            let reply = ann.send(Method::PUT, &path, &headers, body).await.unwrap();
            assert_eq!(reply.status, 200, "{:?}", reply.json());
        }
    };
    save(
        &shas[0],
        json!([{"label": "car", "kind": "rectangle", "points": [[1, 1], [9, 9]]}]),
    )
    .await;
    save(&shas[1], json!([{"label": "night", "kind": "tag"}])).await;
    save(&shas[2], json!([])).await;
    let dataset = dataset_of(&manager, set).await;
    let listed = |query: &str| {
        let query = query.to_string();
        let (manager, path) = (
            manager.clone(),
            format!("/api/v1/datasets/{dataset}/images?{query}"),
        );
        async move {
            let reply = manager.get(&path).await.unwrap();
            assert_eq!(reply.status, 200, "{query}: {:?}", reply.json());
            let mut got: Vec<String> = reply.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["sha256"].as_str().unwrap().to_string())
                .collect();
            got.sort();
            got
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let q = format!("annotation_set={set}");
    assert_eq!(
        listed(&format!("{q}&annotated=true")).await,
        sorted(vec![shas[0].clone(), shas[1].clone()])
    );
    assert_eq!(
        listed(&format!("{q}&annotated=false")).await,
        sorted(shas[2..].to_vec())
    );
    assert_eq!(
        listed(&format!("{q}&label=night")).await,
        vec![shas[1].clone()]
    );
    // Paging through a filter: one image per page, every match once.
    let first = manager
        .get(&format!(
            "/api/v1/datasets/{dataset}/images?{q}&annotated=false&limit=1"
        ))
        .await
        .unwrap()
        .json();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let rest = listed(&format!("{q}&annotated=false&limit=10&cursor={cursor}")).await;
    assert_eq!(rest.len(), 2, "{rest:?}");
    for (query, status) in [
        ("annotated=true", 422),
        ("annotation_set=999&annotated=true", 422),
        ("annotated=maybe&annotation_set=1", 400),
    ] {
        let reply = manager
            .get(&format!("/api/v1/datasets/{dataset}/images?{query}"))
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{query}: {:?}", reply.json());
    }
}

/// Errors and empty answers say what to do next: a reviewer outside the set gets a hint and a
/// 403 naming the fix, `accept` before `review` says "review it first", task images carry
/// their names, and an annotation import without `format` answers 422 after reading the upload.
#[tokio::test]
async fn answers_say_what_to_do_next() {
    let cluster = TestCluster::start(Options::default()).await;
    let users = [("ann", "annotator"), ("rev", "reviewer")];
    let (admin, manager, [ann, rev]) = team(&cluster, 1, users).await;
    let (shas, set) = annotated_dataset(&admin, &manager, 0..2, car()).await;
    let task = assign(&manager, set, 2, "ann").await[0];

    let detail = ann
        .get(&format!("/api/v1/tasks/{task}"))
        .await
        .expect("task")
        .json();
    for image in detail["images"].as_array().expect("images") {
        assert!(image["name"].is_string(), "{detail}");
        assert!(
            image["width"].is_u64() && image["url"].is_string(),
            "{detail}"
        );
    }
    assert!(shas.iter().all(|s| detail.to_string().contains(s.as_str())));

    let submit = act(&ann, task, "submit", json!({})).await;
    assert_eq!(submit.status, 409);
    assert!(
        submit.json().to_string().contains("start it first"),
        "{:?}",
        submit.json()
    );
    let steps = [
        (&ann, "start", 200, "in_progress"),
        (&ann, "submit", 200, "submitted"),
    ];
    walk(task, &steps).await;

    let queue = rev.get("/api/v1/review/tasks").await.expect("queue").json();
    assert_eq!(queue["items"], json!([]), "{queue}");
    assert!(
        queue["hint"].as_str().unwrap_or("").contains("reviewers"),
        "{queue}"
    );
    let refused = act(&rev, task, "review", json!({})).await;
    assert_eq!(refused.status, 403);
    let message = error_message(&refused);
    assert!(
        message.contains("PATCH /api/v1/annotation-sets/") && message.contains("rev"),
        "{message}"
    );

    let early = act(&manager, task, "accept", json!({})).await;
    assert_eq!(early.status, 409);
    let message = error_message(&early);
    assert!(message.contains("review it first"), "{message}");

    // 40 MB without ?format=: the whole upload is read, then a 422 naming the parameter (a
    // server that answers first leaves the client writing into a closed connection).
    let path = format!("/api/v1/annotation-sets/{set}/annotation-imports");
    let body = Bytes::from(vec![b'x'; 40_000_000]);
    for _ in 0..3 {
        let reply = manager
            .send(Method::POST, &path, &[], body.clone())
            .await
            .expect("the 422, not a broken pipe");
        assert_eq!(reply.status, 422, "{:?}", reply.json());
        let message = error_message(&reply);
        assert!(
            message.contains("format") && message.contains("?format=coco"),
            "{message}"
        );
    }
}

/// Reads a set's review statistics as `client` until `done` holds (the read may be served before
/// the last transition is applied on that node), failing after a deadline.
async fn review_stats_until(client: &Client, set: u64, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/annotation-sets/{set}/review-stats");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = client.get(&path).await.expect("review-stats");
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        let stats = reply.json();
        if done(&stats) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "review stats never matched: {stats}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn review_stats_count_a_rejection_the_rework_and_the_acceptance() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let manager = create_user(&admin, "mgr", "manager").await;
    let ann = create_user(&admin, "ann", "annotator").await;
    let reviewer = create_user(&admin, "rev", "reviewer").await;
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}]);
    let (_, set) = annotated_dataset(&admin, &manager, 300..302, labels).await;
    let path = format!("/api/v1/annotation-sets/{set}");
    let assigned = send_json(
        &manager,
        Method::PATCH,
        &path,
        json!({"reviewers": ["rev"]}),
    )
    .await;
    assert_eq!(assigned.status, 200, "{:?}", assigned.json());

    // Nothing yet: no annotators, no reviewers.
    let empty = review_stats_until(&manager, set, |_| true).await;
    assert_eq!(empty["annotators"], json!([]));
    assert_eq!(empty["reviewers"], json!([]));

    let task = split(
        &manager,
        set,
        json!({"chunk_size": 2, "assignees": ["ann"]}),
    )
    .await[0];
    let steps: [(&Client, &str, Value); 7] = [
        (&ann, "start", json!({})),
        (&ann, "submit", json!({})),
        (&reviewer, "review", json!({})),
        (&reviewer, "reject", json!({"reason": "the car is missed"})),
        (&ann, "start", json!({})),
        (&ann, "submit", json!({})),
        (&reviewer, "review", json!({})),
    ];
    for (client, action, body) in steps {
        let reply = act(client, task, action, body).await;
        assert_eq!(reply.status, 200, "{action}: {:?}", reply.json());
    }
    // In review: the resubmission waits, nothing of it decided.
    let pending = review_stats_until(&manager, set, |s| s["reviewers"][0]["in_review"] == 1).await;
    assert_eq!(pending["annotators"][0]["awaiting_review"], 1);
    assert_eq!(pending["annotators"][0]["rejection_rate"], 1.0);

    let accepted = act(&reviewer, task, "accept", json!({})).await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json());
    let stats = review_stats_until(&manager, set, |s| s["reviewers"][0]["accepted"] == 1).await;
    assert_eq!(
        (stats["tasks"].clone(), stats["archived_tasks"].clone()),
        (json!(1), json!(0))
    );
    let a = &stats["annotators"][0];
    assert_eq!(a["annotator"], "ann", "{stats}");
    assert_eq!(a["tasks_submitted"], 1);
    assert_eq!(a["submissions"], 2);
    assert_eq!(
        (a["accepted"].clone(), a["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(a["rejection_rate"], 0.5);
    assert_eq!(a["awaiting_review"], 0);
    assert_eq!(a["reworks"], 1);
    let rework = a["rework_total_ms"].as_u64().expect("rework_total_ms");
    assert_eq!(a["rework_median_ms"].as_u64(), Some(rework), "one rework");
    assert!(a["first_submission_median_ms"].is_u64(), "{a}");
    assert_eq!(stats["annotators"].as_array().map(Vec::len), Some(1));
    let r = &stats["reviewers"][0];
    assert_eq!(r["reviewer"], "rev", "{stats}");
    assert_eq!(r["tasks_reviewed"], 1);
    assert_eq!(
        (r["accepted"].clone(), r["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(r["in_review"], 0);
    assert!(r["review_median_ms"].is_u64(), "{r}");

    // The set's reviewer may read them (as `…/stats`); an annotator may not.
    let path = format!("/api/v1/annotation-sets/{set}/review-stats");
    assert_eq!(reviewer.get(&path).await.unwrap().status, 200);
    assert_eq!(ann.get(&path).await.unwrap().status, 403);
    let missing = manager
        .get("/api/v1/annotation-sets/999999/review-stats")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
}
