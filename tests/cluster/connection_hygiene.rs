//! Connections that hold a node without sending a request body, and JSON built to hurt the
//! parser: each is answered with a 4xx naming the problem, and the node keeps serving.

use std::time::Duration;

use serde_json::Value;
use tessera_client::Method;
use tessera_cluster_tests::{Options, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{new_dataset, send_json_text};

/// Hang guard for a server that never answers (the body timeout is 10 s).
const HANG: Duration = Duration::from_secs(60);

/// Sends a `POST` head for a body of `length` bytes and `first` bytes of it, then, every
/// `every` (if any), one more byte until the server answers; returns the status line and the
/// JSON body of the answer.
async fn stalled_post(
    node: &str,
    path: &str,
    token: &str,
    length: usize,
    first: &'static [u8],
    every: Option<Duration>,
) -> (String, Value) {
    let stream = TcpStream::connect(node).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {node}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.expect("head");
    write.write_all(first).await.expect("first bytes");
    let trickle = tokio::spawn(async move {
        if let Some(every) = every {
            let mut tick = tokio::time::interval(every);
            while write.write_all(b" ").await.is_ok() {
                tick.tick().await;
            }
        }
        // Keep the connection open (a stalled client does not close it).
        std::future::pending::<()>().await;
    });
    let mut raw = Vec::new();
    tokio::time::timeout(HANG, read.read_to_end(&mut raw))
        .await
        .expect("the node never cut off the stalled body")
        .expect("read");
    trickle.abort();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn stalled_bodies_and_hostile_json_are_refused_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(Options::default()).await;
    let node = cluster.node(2);
    let token = node.token().expect("admin token").to_string();

    // A head and then nothing, and a body trickled a byte every 100 ms, at once.
    let stopped = stalled_post(
        &node.http,
        "/api/v1/datasets",
        &token,
        100,
        b"{\"name\": \"st",
        None,
    );
    let trickled = stalled_post(
        &node.http,
        "/api/v1/datasets",
        &token,
        100_000,
        b"{\"name\": \"",
        Some(Duration::from_millis(100)),
    );
    let (stopped, trickled) = tokio::join!(stopped, trickled);
    for (what, (status, body)) in [("stopped", stopped), ("trickled", trickled)] {
        assert!(status.contains(" 408 "), "{what}: {status} {body}");
        assert_eq!(body["error"]["code"], "body_timeout", "{what}: {body}");
    }

    // 10 MB of JSON, and JSON nested 10,000 deep, on every kind of JSON route.
    let admin = node.client();
    let id = new_dataset(&admin, "target").await;
    let images = format!("/api/v1/datasets/{id}/images");
    let sets = format!("/api/v1/datasets/{id}/annotation-sets");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(10_000_000));
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let deep_object = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    for (method, path) in [
        (Method::POST, "/api/v1/datasets"),
        (Method::POST, "/api/v1/users"),
        (Method::PUT, "/api/v1/me/password"),
        (Method::POST, images.as_str()),
        (Method::POST, sets.as_str()),
    ] {
        for (body, status, code) in [
            (&big, 413, "too_large"),
            (&deep, 400, "too_deep"),
            (&deep_object, 400, "too_deep"),
        ] {
            // A fresh client each time: the node closes a connection whose oversized body it
            // did not read.
            let reply = send_json_text(&node.client(), method.clone(), path, body.clone()).await;
            assert_eq!(reply.status, status, "{method} {path}: {:?}", reply.json());
            assert_eq!(reply.json()["error"]["code"], code, "{method} {path}");
        }
    }

    // The node serves on, and none of it was applied.
    cluster.wait_ready().await;
    new_dataset(&admin, "after").await;
    let list = admin.get("/api/v1/datasets").await.expect("list").json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
}
