//! Uploading, deduplicating and serving objects from every node, and refusing bad input.

use bytes::Bytes;
use tessera_client::{Client, Method, Reply};
use tessera_cluster_tests::{Options, TestCluster};

use crate::support::{
    assert_refused, assert_serves, counter, error_message, image, leader_of, object_record,
    sha_hex, upload, voters_of,
};

/// Four nodes with replication 3: every shard has a node without a replica, whose reads are
/// forwarded over the internal RPC.
async fn cluster_with_a_node_outside_every_shard() -> TestCluster {
    TestCluster::start(Options {
        nodes: 4,
        ..Options::default()
    })
    .await
}

/// `GET path` with one extra request header.
async fn get_with(client: &Client, path: &str, header: (&str, &str)) -> Reply {
    client
        .send(Method::GET, path, &[header], Bytes::new())
        .await
        .expect("GET")
}

/// Test 1: reads on the node without a replica are forwarded over the internal RPC.
#[tokio::test]
async fn any_node_serves_objects_uploaded_through_any_other() {
    let cluster = cluster_with_a_node_outside_every_shard().await;
    let status = cluster.status().await;
    let mut forwarded = 0;
    for seed in 0..12u64 {
        let bytes = image(seed);
        let via = &cluster.nodes[(seed % 4) as usize];
        let sha = upload(&via.client(), &bytes).await;
        let voters = voters_of(&status, &sha);
        assert_eq!(voters.len(), 3);
        for node in &cluster.nodes {
            assert_serves(&node.client(), &sha, &bytes).await;
            forwarded += usize::from(!voters.contains(&node.id));
        }
        let meta = object_record(&via.client(), &sha).await;
        assert_eq!(meta["size"], bytes.len());
        assert_eq!(meta["content_type"], "image/png");
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(100), Some(100))
        );
    }
    assert_eq!(
        forwarded, 12,
        "each object has exactly one node without a replica"
    );
}

/// Test 2: the same bytes twice are stored once, with two references.
#[tokio::test]
async fn identical_uploads_are_stored_once() {
    let cluster = TestCluster::start(Options::default()).await;
    let bytes = image(42);
    let sha = sha_hex(&bytes);
    // Through node 1, then through node 2, which finds the bytes stored already.
    for (node, status, deduplicated, refcount) in [(1, 201, false, 1), (2, 200, true, 2)] {
        let client = cluster.node(node).client();
        let reply = client.put_object(Bytes::from(bytes.clone())).await.unwrap();
        assert_eq!(reply.status, status, "{:?}", reply.json());
        assert_eq!(reply.json()["deduplicated"], deduplicated);
        assert_eq!(reply.json()["refcount"], refcount);
        assert_eq!(
            reply.header("location"),
            Some(format!("/objects/{sha}").as_str())
        );
    }
    let meta = object_record(&cluster.node(3).client(), &sha).await;
    assert_eq!(meta["refcount"], 2);
}

/// HTTP semantics of `/objects/<sha>`: HEAD, ETag and If-None-Match, single ranges.
#[tokio::test]
async fn object_responses_follow_http_caching_and_ranges() {
    let cluster = TestCluster::start(Options::single_node()).await;
    let client = cluster.node(1).client();
    let bytes = image(7);
    let sha = upload(&client, &bytes).await;
    let path = format!("/objects/{sha}");

    let get = client.get(&path).await.unwrap();
    assert_eq!(get.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(
        get.header("cache-control"),
        Some("private, max-age=31536000, immutable")
    );
    assert_eq!(get.header("content-type"), Some("image/png"));

    let head = client
        .send(Method::HEAD, &path, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    let etag = format!("\"{sha}\"");
    let cached = get_with(&client, &path, ("if-none-match", &etag)).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    let part = get_with(&client, &path, ("range", "bytes=10-19")).await;
    assert_eq!(part.status, 206);
    assert_eq!(&part.body[..], &bytes[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{}", bytes.len()).as_str())
    );

    let tail = get_with(&client, &path, ("range", "bytes=-4")).await;
    assert_eq!(&tail.body[..], &bytes[bytes.len() - 4..]);

    let beyond = format!("bytes={}-", bytes.len());
    let bad = get_with(&client, &path, ("range", &beyond)).await;
    assert_eq!(bad.status, 416);
    assert_eq!(
        bad.header("content-range"),
        Some(format!("bytes */{}", bytes.len()).as_str())
    );
}

/// Test 3: bad input gets the right 4xx with a JSON error, stores nothing, and the node keeps
/// serving.
#[tokio::test]
async fn bad_input_is_refused_with_json_errors() {
    let cluster = TestCluster::start(Options {
        max_object_mb: 1,
        ..Options::default()
    })
    .await;
    let client = cluster.node(2).client();

    let text = b"this is plain text, not an image".to_vec();
    let mut truncated_png = image(1);
    truncated_png.truncate(12);
    let oversize = tessera_cluster_tests::png(620, 620, 3); // ~1.15 MB > 1 MiB
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        ("text", text, 415, "not_an_image"),
        ("truncated header", truncated_png, 400, "corrupt_image"),
        ("empty body", Vec::new(), 400, "empty_body"),
        ("oversize", oversize, 413, "too_large"),
    ];
    for (what, body, status, code) in cases {
        let sha = sha_hex(&body);
        let reply = client.put_object(Bytes::from(body)).await.unwrap();
        assert_refused(&reply, status, code);
        assert!(!error_message(&reply).is_empty());
        let stored = client.get(&format!("/api/v1/objects/{sha}")).await.unwrap();
        assert_eq!(stored.status, 404, "{what} must not be stored");
    }

    let malformed = client.get("/objects/not-a-hash").await.unwrap();
    assert_refused(&malformed, 400, "bad_hash");
    let short = client
        .get(&format!("/objects/{}", "a".repeat(63)))
        .await
        .unwrap();
    assert_eq!(short.status, 400);
    let unknown = client
        .get(&format!("/objects/{}", "0".repeat(64)))
        .await
        .unwrap();
    assert_refused(&unknown, 404, "no_such_object");
    let no_route = client.get("/no/such/route").await.unwrap();
    assert_eq!(no_route.status, 404);
    assert!(no_route.json()["error"]["code"].is_string());

    // Still serving.
    assert_eq!(client.get("/healthz").await.unwrap().status, 200);
    let bytes = image(99);
    let sha = upload(&client, &bytes).await;
    assert_serves(&cluster.node(3).client(), &sha, &bytes).await;
}

/// The OpenAPI document lists exactly what the server answers: every documented method and path
/// reaches a handler (never the router's fallback or a 405), and an undocumented path does not.
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let cluster = TestCluster::start(Options::single_node()).await;
    let client = cluster.node(1).client();
    let doc = client
        .anonymous()
        .get("/api/v1/openapi.json")
        .await
        .unwrap()
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "only {} paths documented", paths.len());
    for (path, ops) in paths {
        let concrete = path
            .replace("{sha}", &"0".repeat(64))
            .replace("{name}", "nobody")
            .replace("{id}", "999999")
            .replace("{action}", "start");
        for method in ops.as_object().expect("operations").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Asked by an admin, the restart route would restart the node under test: without
            // a token its 401 shows it is routed just as well.
            let caller = if path.as_str() == "/api/v1/cluster/restart" {
                client.anonymous()
            } else {
                client.clone()
            };
            let reply = caller.send(m, &concrete, &[], Bytes::new()).await.unwrap();
            assert_ne!(reply.status, 405, "{method} {path}");
            assert_ne!(
                reply.json()["error"]["code"],
                "no_such_route",
                "{method} {path} is documented but not routed"
            );
        }
    }
    let stray = client.get("/api/v1/not-a-route").await.unwrap();
    assert_eq!(stray.json()["error"]["code"], "no_such_route");
}

/// A node without a replica passes a forwarded object on as its chunks arrive and keeps a copy
/// once the last one has gone by: read once, it serves the object with every replica down.
#[tokio::test]
async fn forwarded_objects_stream_through_and_stay_cached() {
    let mut cluster = cluster_with_a_node_outside_every_shard().await;
    let status = cluster.status().await;
    // Several 256 KiB chunks of the internal read stream.
    let bytes = tessera_cluster_tests::png(500, 500, 17);
    assert!(bytes.len() > 512 << 10, "{} bytes", bytes.len());
    let sha = upload(&cluster.node(1).client(), &bytes).await;
    let voters = voters_of(&status, &sha);
    let outsider = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| !voters.contains(id))
        .expect("a node without a replica");
    let client = cluster.node(outsider).client();
    let record = object_record(&client, &sha).await;
    // A presigned URL: checking it needs only the key, not the (soon unreachable) catalogue.
    let url = record["url"].as_str().expect("presigned url").to_owned();
    let anon = client.anonymous();
    let first = anon.get(&url).await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.json());
    assert!(first.body == bytes);
    for id in voters {
        cluster.kill(id);
    }
    let again = anon.get(&url).await.unwrap();
    assert_eq!(again.status, 200, "{:?}", again.json());
    assert!(again.body == bytes);
}

/// A shard leader remembers hashes it found absent (so repeated 404s skip the quorum round),
/// but an upload acknowledged through another node is never hidden by it: the record, which
/// the leader answers linearizably and so asks that memory first, is there at once.
#[tokio::test]
async fn a_remembered_404_never_hides_an_upload_through_another_node() {
    // Production Raft timing: the leader's lease is half the 6 s maximum election timeout.
    let cluster = TestCluster::start(Options::production()).await;
    let status = cluster.status().await;
    let shards = status["shards"].as_u64().expect("shards");
    for seed in [900u64, 901, 902] {
        let bytes = image(seed);
        let sha = sha_hex(&bytes);
        let prefix = u64::from_str_radix(&sha[..16], 16).expect("hex");
        let group = ((u128::from(prefix) * u128::from(shards)) >> 64) as usize + 1;
        let leader_id = leader_of(&cluster, group).await;
        let leader = cluster.node(leader_id).client();
        let record = format!("/api/v1/objects/{sha}");
        let before = counter(&leader, "tessera_negative_cache_hits_total").await;
        tessera_cluster_tests::eventually(
            "a 404 answered from the leader's memory",
            tessera_cluster_tests::DEADLINE,
            || async {
                let reply = leader.get(&record).await.expect("record");
                assert_eq!(reply.status, 404, "{sha} is not stored yet");
                (counter(&leader, "tessera_negative_cache_hits_total").await > before).then_some(())
            },
        )
        .await;
        let via = cluster
            .nodes
            .iter()
            .find(|n| n.id != leader_id)
            .expect("a follower");
        assert_eq!(upload(&via.client(), &bytes).await, sha);
        let reply = leader.get(&record).await.expect("record");
        assert_eq!(reply.status, 200, "the leader hid an acknowledged upload");
        for node in &cluster.nodes {
            assert_serves(&node.client(), &sha, &bytes).await;
        }
    }
}
