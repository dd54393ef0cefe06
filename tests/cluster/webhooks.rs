//! Webhooks end to end: a receiver in this process that answers 500, hangs, or takes the
//! delivery; signed deliveries of saves and submits; the delivering node killed mid-attempt;
//! bad URLs refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tessera_client::{Client, Method};
use tessera_cluster_tests::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    add_images, assert_refused, car_set, cluster_beside_catalogue_leader, create_user,
    error_message, image, new_dataset, send_json, started_task, upload,
};

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Fail,
    Hang,
    Take,
}

#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

type Shared = Arc<Mutex<(Mode, Vec<Received>)>>;

/// A plain HTTP/1.1 receiver: records every request, then answers as the mode says.
async fn receiver() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let shared: Shared = Arc::new(Mutex::new((Mode::Fail, Vec::new())));
    let state = shared.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
                let mode = {
                    let mut s = state.lock().expect("receiver state");
                    s.1.push(Received { headers, body });
                    s.0
                };
                let answer: &[u8] = match mode {
                    Mode::Fail => {
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
                    }
                    Mode::Take => b"HTTP/1.1 204 No Content\r\n\r\n",
                    Mode::Hang => {
                        // Hold the connection open, answering nothing, until the sender gives up.
                        let _ = socket.read(&mut chunk).await;
                        return;
                    }
                };
                let _ = socket.write_all(answer).await;
            });
        }
    });
    (url, shared)
}

fn set_mode(shared: &Shared, mode: Mode) {
    shared.lock().expect("receiver state").0 = mode;
}

fn received(shared: &Shared) -> Vec<Received> {
    shared.lock().expect("receiver state").1.clone()
}

/// HMAC-SHA256 written out from its definition (RFC 2104), independently of the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn assert_signed(r: &Received, secret: &str) {
    let header = r.header("tessera-signature");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    let key = hex::decode(secret).expect("hex secret");
    let expected = hmac_sha256(&key, format!("{t}.{}", r.body).as_bytes());
    assert_eq!(v1, hex::encode(expected), "signature of {}", r.body);
}

/// Polls `check` until it gives a value or `seconds` pass.
async fn until<T>(what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhook_view(client: &Client, id: u64) -> Value {
    let reply = client
        .get(&format!("/api/v1/webhooks/{id}"))
        .await
        .expect("webhook");
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    reply.json()
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_survive_the_delivering_node() {
    let (mut cluster, deliverer, admin) = cluster_beside_catalogue_leader(Options::default()).await;
    let manager = create_user(&admin, "mgr", "manager").await;
    let ann = create_user(&admin, "ann", "annotator").await;
    let sha = upload(&admin, &image(900)).await;
    let dataset = new_dataset(&manager, "w").await;
    assert_eq!(
        add_images(&manager, dataset, json!([{"sha256": sha}]))
            .await
            .status,
        200
    );
    let set = car_set(&manager, dataset).await;

    // Bad input.
    let events = json!(["task.submitted", "annotation.saved"]);
    let reply = send_json(
        &manager,
        Method::POST,
        "/api/v1/webhooks",
        json!({"url": "ftp://x.example/h", "events": events}),
    )
    .await;
    assert_refused(&reply, 422, "invalid_field");
    let rpc = &cluster.node(deliverer).rpc;
    let reply = send_json(
        &manager,
        Method::POST,
        "/api/v1/webhooks",
        json!({"url": format!("http://{rpc}/x"), "events": events}),
    )
    .await;
    assert_refused(&reply, 422, "invalid_field");
    assert!(
        error_message(&reply).contains("internal RPC"),
        "{:?}",
        reply.json()
    );
    let reply = send_json(
        &manager,
        Method::POST,
        "/api/v1/webhooks",
        json!({"url": "http://x.example/h", "events": ["task.exploded"]}),
    )
    .await;
    assert_refused(&reply, 400, "bad_json");
    assert!(error_message(&reply).contains("task.exploded"));
    let reply = send_json(
        &manager,
        Method::POST,
        "/api/v1/webhooks",
        json!({"url": "http://x.example/h", "events": events, "annotation_set": 999}),
    )
    .await;
    assert_refused(&reply, 404, "no_such_annotation_set");
    let reply = ann.get("/api/v1/webhooks").await.expect("list");
    assert_eq!(reply.status, 403);

    let (url, inbox) = receiver().await;
    let body = json!({"url": url, "events": ["task.submitted", "annotation.saved"], "annotation_set": set});
    let reply = send_json(&manager, Method::POST, "/api/v1/webhooks", body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    let hook = reply.json()["id"].as_u64().expect("hook id");
    let secret = reply.json()["secret"].as_str().expect("secret").to_string();
    let listed = manager.get("/api/v1/webhooks").await.expect("list").json();
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once only"
    );

    // A save while the receiver fails: the batch is delivered, refused with 500, retried.
    let task = started_task(&manager, (&ann, "ann"), set, 1).await;
    let shapes =
        json!({"shapes": [{"label": "car", "kind": "rectangle", "points": [[1, 1], [20, 20]]}]});
    let saved = ann
        .send(
            Method::PUT,
            &format!("/api/v1/tasks/{task}/images/{sha}/annotations"),
            &[("content-type", "application/json"), ("if-match", "\"0\"")],
            Bytes::from(shapes.to_string()),
        )
        .await
        .expect("save");
    assert_eq!(saved.status, 200, "{:?}", saved.json());
    until("a failed attempt", 20, || {
        (received(&inbox).len() >= 2).then_some(())
    })
    .await;
    let view = webhook_view(&manager, hook).await;
    let retrying = view["log"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["outcome"] == "retrying" && l["status"] == 500);
    assert!(retrying, "{view}");
    // The receiver records a request and reads its mode under one lock, so every request
    // recorded after the switch was answered 204.
    let failed = {
        let mut s = inbox.lock().expect("receiver state");
        s.0 = Mode::Take;
        s.1.len()
    };
    let first = until("the saves delivered", 20, || {
        received(&inbox).get(failed).cloned()
    })
    .await;
    assert_eq!(first.header("tessera-event"), "annotation.saved");
    assert_signed(&first, &secret);
    let data = first.json();
    assert_eq!(data["data"]["annotation_set"], set);
    assert_eq!(data["data"]["saves"][0]["image"], sha.as_str());
    assert_eq!(data["data"]["saves"][0]["by"], "ann");
    let delivery_id = first.header("tessera-delivery").to_string();
    assert!(
        received(&inbox)
            .iter()
            .all(|r| r.header("tessera-delivery") == delivery_id),
        "one delivery, retried under one id"
    );

    // The receiver hangs; the node delivering the submit is killed mid-attempt; the next
    // leader sends it again once the dead node's claim expires.
    set_mode(&inbox, Mode::Hang);
    let before = received(&inbox).len();
    let reply = send_json(
        &ann,
        Method::POST,
        &format!("/api/v1/tasks/{task}/submit"),
        json!({}),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    until("the submit reaching the hanging receiver", 20, || {
        received(&inbox)[before..]
            .iter()
            .any(|r| r.header("tessera-event") == "task.submitted")
            .then_some(())
    })
    .await;
    cluster.kill(deliverer);
    set_mode(&inbox, Mode::Take);
    let submitted: Vec<Received> = until("the submit delivered by another node", 60, || {
        let all: Vec<Received> = received(&inbox)
            .into_iter()
            .filter(|r| r.header("tessera-event") == "task.submitted")
            .collect();
        (all.len() >= 2).then_some(all)
    })
    .await;
    for r in &submitted {
        assert_signed(r, &secret);
        assert_eq!(r.json()["data"]["task"], task);
        assert_eq!(
            r.header("tessera-delivery"),
            submitted[0].header("tessera-delivery")
        );
    }
    let view = until_delivered(&manager, hook).await;
    let log = view["log"].as_array().expect("log");
    assert!(
        log.iter()
            .any(|l| l["outcome"] == "delivered" && l["node"] != deliverer),
        "{view}"
    );
    assert_eq!(view["queued"], 0, "{view}");
}

/// The hook's view once nothing is waiting.
async fn until_delivered(client: &Client, hook: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = client.get(&format!("/api/v1/webhooks/{hook}")).await {
            let v = reply.json();
            if reply.status == 200 && v["queued"] == 0 {
                return v;
            }
            assert!(Instant::now() < deadline, "deliveries still waiting: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
