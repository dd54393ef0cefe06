//! Datasets: create, list, rename, add and remove images with correct reference counts, delete.

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{Options, TestCluster};

use crate::support::{
    add_images, assert_refused, create_annotation_set, create_dataset, create_user, error_message,
    image, new_dataset, next_page, object_record, send_json, send_json_text, upload,
};

async fn refcount(client: &Client, sha: &str) -> u64 {
    object_record(client, sha).await["refcount"]
        .as_u64()
        .expect("refcount")
}

#[tokio::test]
async fn datasets_hold_references_to_their_images() {
    let cluster = TestCluster::start(Options::default()).await;
    let (a, b) = (cluster.node(1).client(), cluster.node(2).client());
    let shas = [
        upload(&a, &image(11)).await,
        upload(&a, &image(12)).await,
        upload(&a, &image(13)).await,
    ];

    let id = new_dataset(&a, "street scenes").await;
    let base = format!("/api/v1/datasets/{id}");
    assert_eq!(
        create_dataset(&b, json!({"name": "street scenes"}))
            .await
            .status,
        409
    );
    assert_eq!(create_dataset(&b, json!({"name": ""})).await.status, 422);
    let bad_json = b
        .send(
            Method::POST,
            "/api/v1/datasets",
            &[],
            Bytes::from_static(b"{\"name\":"),
        )
        .await
        .unwrap();
    assert_refused(&bad_json, 400, "bad_json");

    // Add through another node; every image takes one reference.
    let images: Vec<Value> = shas
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"sha256": s, "name": format!("cam/{i}.png")}))
        .collect();
    let images = Value::from(images);
    let added = add_images(&b, id, images.clone()).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    assert_eq!(added.json()["added"].as_array().map(Vec::len), Some(3));
    for sha in &shas {
        assert_eq!(refcount(&a, sha).await, 2, "upload + dataset");
    }
    // Adding again changes nothing, counts included.
    let again = add_images(&a, id, images).await;
    assert_eq!(again.json()["already_present"], 3);
    for sha in &shas {
        assert_eq!(refcount(&b, sha).await, 2);
    }
    // Unknown or malformed objects are refused, naming the entry, and nothing changes.
    let unknown = add_images(
        &a,
        id,
        json!([{"sha256": shas[0]}, {"sha256": "0".repeat(64)}]),
    )
    .await;
    assert_eq!(unknown.status, 422);
    assert!(error_message(&unknown).contains("images[1]"));
    let malformed = add_images(&a, id, json!([{"sha256": "xyz"}])).await;
    assert_eq!(malformed.status, 422);
    assert_eq!(a.get(&base).await.unwrap().json()["image_count"], 3);

    // Pages of images with dimensions and presigned URLs that work without a token.
    let listing = format!("{base}/images?limit=2");
    let first = a.get(&listing).await.unwrap().json();
    let items = first["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["width"].as_u64(), items[0]["height"].as_u64()),
        (Some(100), Some(100))
    );
    let url = items[0]["url"].as_str().expect("url");
    assert_eq!(a.anonymous().get(url).await.unwrap().status, 200);
    let rest = next_page(&a, &listing, &first).await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
    assert!(rest["next_cursor"].is_null());

    // Rename and list.
    let renamed = send_json(&b, Method::PATCH, &base, json!({"name": "streets"})).await;
    assert_eq!(renamed.json()["name"], "streets");
    let listed = a.get("/api/v1/datasets").await.unwrap().json();
    assert_eq!(listed["items"][0]["name"], "streets");

    // Removing gives the reference back.
    let removed = send_json(
        &a,
        Method::POST,
        &format!("{base}/images/remove"),
        json!({"images": [shas[0]]}),
    )
    .await;
    assert_eq!(removed.json()["removed"].as_array().map(Vec::len), Some(1));
    assert_eq!(refcount(&a, &shas[0]).await, 1);
    assert_eq!(b.get(&base).await.unwrap().json()["image_count"], 2);

    // Deleting the dataset releases the rest.
    assert_eq!(
        b.send(Method::DELETE, &base, &[], Bytes::new())
            .await
            .unwrap()
            .status,
        204
    );
    for sha in &shas {
        assert_eq!(refcount(&a, sha).await, 1);
    }
    assert_eq!(a.get(&base).await.unwrap().status, 404);

    // Annotators do not manage datasets.
    let ann = create_user(&a, "ann", "annotator").await;
    let refused = create_dataset(&ann, json!({"name": "mine"})).await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn annotation_sets_hold_checked_label_schemas() {
    let cluster = TestCluster::start(Options::default()).await;
    let (a, b) = (cluster.node(1).client(), cluster.node(3).client());
    let dataset = new_dataset(&a, "people").await;
    let labels = json!([
        {"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"],
         "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"], "required": true, "default": "red"},
                        {"name": "occluded", "type": "checkbox"}]},
        {"name": "person", "color": "#00ff00", "kinds": ["points"],
         "keypoints": ["head", "left hand", "right hand"], "skeleton": [[0, 1], [0, 2]]},
        {"name": "night", "color": "#000000", "kinds": ["tag"]}
    ]);
    let created = create_annotation_set(&a, dataset, "v1", &labels).await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let id = created.json()["id"].as_u64().expect("id");
    assert_eq!(
        created.json()["labels"][1]["skeleton"],
        json!([[0, 1], [0, 2]])
    );

    for (bad, expect) in [
        (
            json!([{"name": "car", "color": "red", "kinds": ["rectangle"]}]),
            "labels[car].color",
        ),
        (
            json!([{"name": "car", "color": "#ff0000", "kinds": ["circle"]}]),
            "labels",
        ),
        (
            json!([{"name": "p", "color": "#ff0000", "kinds": ["points"], "keypoints": ["a"], "skeleton": [[0, 3]]}]),
            "skeleton",
        ),
        (
            json!([{"name": "c", "color": "#ff0000", "kinds": ["tag"]}, {"name": "c", "color": "#ff0000", "kinds": ["tag"]}]),
            "twice",
        ),
        (json!([]), "at least one label"),
    ] {
        let reply = create_annotation_set(&b, dataset, "bad", &bad).await;
        assert_eq!(reply.status, 422, "{bad}");
        let message = error_message(&reply);
        assert!(message.contains(expect), "{bad}: {message}");
    }
    let missing = create_annotation_set(&b, 999, "x", &labels).await;
    assert_eq!(missing.status, 404);

    let listed = b
        .get(&format!("/api/v1/annotation-sets?dataset={dataset}"))
        .await
        .unwrap()
        .json();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let renamed = send_json(
        &b,
        Method::PATCH,
        &format!("/api/v1/annotation-sets/{id}"),
        json!({"name": "v2"}),
    )
    .await;
    assert_eq!(
        (renamed.status.as_u16(), renamed.json()["name"].clone()),
        (200, json!("v2"))
    );
    assert_eq!(
        a.get(&format!("/api/v1/annotation-sets/{id}"))
            .await
            .unwrap()
            .json()["labels"][0]["name"],
        "car"
    );
    let deleted = b
        .send(
            Method::DELETE,
            &format!("/api/v1/annotation-sets/{id}"),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(
        a.get(&format!("/api/v1/annotation-sets/{id}"))
            .await
            .unwrap()
            .status,
        404
    );
}

/// A request retried with the same `Idempotency-Key` applies once and answers the same.
#[tokio::test]
async fn idempotency_keys_make_retries_apply_once() {
    let cluster = TestCluster::start(Options::default()).await;
    let (a, b) = (cluster.node(1).client(), cluster.node(2).client());
    let keyed = |client: &Client, key: &'static str, path: String, body: Value| {
        let client = client.clone();
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ];
            client
                .send(Method::POST, &path, &headers, Bytes::from(body.to_string()))
                .await
                .expect("request")
        }
    };
    // The same request sent through two nodes, as a client retrying after a timeout would.
    let mut created = Vec::new();
    for client in [&a, &b] {
        let body = json!({"name": "once"});
        created.push(keyed(client, "create-1", "/api/v1/datasets".into(), body).await);
    }
    let (first, again) = (&created[0], &created[1]);
    assert_eq!((first.status.as_u16(), again.status.as_u16()), (201, 201));
    assert_eq!(first.json()["id"], again.json()["id"]);
    let unkeyed = create_dataset(&a, json!({"name": "once"})).await;
    assert_eq!(unkeyed.status, 409, "without a key it is a second request");

    // A multi-step request (references, then membership) retried: counts move once.
    let id = first.json()["id"].as_u64().unwrap();
    let sha = upload(&a, &image(77)).await;
    let body = json!({"images": [{"sha256": sha}]});
    for client in [&a, &b] {
        let reply = keyed(
            client,
            "add-1",
            format!("/api/v1/datasets/{id}/images"),
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["added"].as_array().map(Vec::len), Some(1));
    }
    assert_eq!(
        refcount(&a, &sha).await,
        2,
        "upload + one dataset membership"
    );
}

/// Bad JSON input of every kind gets a 4xx with a JSON error naming the problem, and changes
/// nothing.
#[tokio::test]
async fn bad_json_input_is_named_and_changes_nothing() {
    let cluster = TestCluster::start(Options::single_node()).await;
    let a = cluster.node(1).client();
    let wrong_type = create_dataset(&a, json!({"name": 5})).await;
    assert_refused(&wrong_type, 400, "bad_json");
    assert!(error_message(&wrong_type).contains("invalid type"));
    let unknown_field = create_dataset(&a, json!({"name": "x", "colour": "red"})).await;
    assert!(error_message(&unknown_field).contains("colour"));
    // Over the 8 MiB JSON limit: axum's own rejection, answered in the same JSON shape.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(9 << 20));
    let too_big = send_json_text(&a, Method::POST, "/api/v1/datasets", huge).await;
    assert_refused(&too_big, 413, "too_large");
    // Bad query strings too (on a fresh connection: the server closes the one whose oversized
    // body it did not read).
    let a = cluster.node(1).client();
    let bad_query = a.get("/api/v1/datasets?limit=many").await.unwrap();
    assert_eq!(bad_query.status, 400);
    assert!(error_message(&bad_query).contains("limit"));
    assert_eq!(
        a.get("/api/v1/datasets").await.unwrap().json()["items"],
        json!([]),
        "nothing was created"
    );
}
