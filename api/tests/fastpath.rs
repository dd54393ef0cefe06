//! The node's HTTP listener on a real single-node cluster: object requests answered by the fast
//! path exactly as the router answers them, connection handling (pipelining, HTTP/1.0, closes,
//! bad and slow heads), hand-off of everything else, and auth failures alike on both paths.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{eventually, png, request, Conn, Node, Raw, DEADLINE};
use tessera_api::fastpath;
use tessera_api::token::{self, Claims, Kind};
use tessera_client::Method;
use tessera_domain::catalog::Role;

/// Method, path and extra headers of one request.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// A named request: what, method, path, extra headers.
type Named<'a> = (&'a str, &'a str, String, Vec<(&'a str, String)>);

/// Status, headers but `date`, and body: what must be equal between the two paths.
fn comparable(raw: &Raw) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = raw
        .headers
        .iter()
        .filter(|(n, _)| n != "date")
        .cloned()
        .collect();
    headers.sort();
    (raw.status, headers, raw.body.clone())
}

/// Bodies sent with `sendfile(2)` from the volume file (no object cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_answers_from_volume_files_match_the_router_header_for_header() {
    answers_match_the_router(0).await;
}

/// Bodies written from the object cache (warmed by the router's read path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_answers_from_the_cache_match_the_router_header_for_header() {
    answers_match_the_router(16 << 20).await;
}

async fn answers_match_the_router(cache_bytes: usize) {
    let node = Node::start(fastpath::Config::default(), cache_bytes).await;
    let bytes = png(120, 120, 1);
    let sha = node.upload(&bytes).await;
    let path = format!("/objects/{sha}");
    let bearer = format!("Bearer {}", node.admin);
    let etag = format!("\"{sha}\"");
    let beyond = format!("bytes={}-", bytes.len());
    let unknown = format!("/objects/{}", "0".repeat(64));
    // The router's read path fills the object cache (when there is one).
    let warm = request(node.slow, "GET", &path, &[("Authorization", &bearer)]).await;
    assert_eq!(warm.status, 200);
    let cases: Vec<Case> = vec![
        ("GET", &path, vec![]),
        ("HEAD", &path, vec![]),
        ("GET", &path, vec![("If-None-Match", &etag)]),
        ("GET", &path, vec![("If-None-Match", "\"other\", W/\"x\"")]),
        ("GET", &path, vec![("Range", "bytes=10-19")]),
        ("HEAD", &path, vec![("Range", "bytes=-4")]),
        ("GET", &path, vec![("Range", "bytes=5-")]),
        ("GET", &path, vec![("Range", &beyond)]),
        ("GET", &path, vec![("Range", "bytes=0-1,4-5")]),
        ("GET", &unknown, vec![]),
        ("HEAD", &unknown, vec![]),
    ];
    for (method, path, mut headers) in cases {
        headers.push(("Authorization", &bearer));
        let fast = request(node.fast, method, path, &headers).await;
        let slow = request(node.slow, method, path, &headers).await;
        assert_eq!(comparable(&fast), comparable(&slow), "{method} {headers:?}");
        assert!(fast.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }
    let full = request(node.fast, "GET", &path, &[("Authorization", &bearer)]).await;
    assert_eq!(full.status, 200);
    assert!(full.body == bytes);
    let part = request(
        node.fast,
        "GET",
        &path,
        &[("Authorization", &bearer), ("Range", "bytes=10-19")],
    )
    .await;
    assert_eq!((part.status, &part.body[..]), (206, &bytes[10..20]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_then_handed_on() {
    let node = Node::start(fastpath::Config::default(), 0).await;
    let bytes = png(150, 150, 2);
    let sha = node.upload(&bytes).await;
    let other = png(40, 40, 3);
    let auth = format!("Authorization: Bearer {}\r\n", node.admin);
    // Three object requests and an upload with its body, in one write.
    let mut batch = format!(
        "GET /objects/{sha} HTTP/1.1\r\n{auth}\r\n\
         HEAD /objects/{sha} HTTP/1.1\r\n{auth}\r\n\
         GET /objects/{sha} HTTP/1.1\r\n{auth}Range: bytes=0-9\r\n\r\n\
         POST /api/v1/objects HTTP/1.1\r\n{auth}Content-Length: {}\r\n\r\n",
        other.len()
    )
    .into_bytes();
    batch.extend_from_slice(&other);
    let mut conn = Conn::open(node.fast).await;
    conn.send(&batch).await;
    let get = conn.response(false).await.expect("GET");
    assert_eq!(get.status, 200);
    assert!(get.body == bytes);
    let head = conn.response(true).await.expect("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(&*bytes.len().to_string())
    );
    let range = conn.response(false).await.expect("range");
    assert_eq!((range.status, &range.body[..]), (206, &bytes[..10]));
    let upload = conn.response(false).await.expect("upload");
    assert_eq!(upload.status, 201, "{:?}", upload.json());
    // The connection is hyper's now, and still serves objects.
    let new_sha = upload.json()["sha256"].as_str().unwrap().to_owned();
    conn.send(format!("GET /objects/{new_sha} HTTP/1.1\r\n{auth}\r\n").as_bytes())
        .await;
    let again = conn.response(false).await.expect("GET after hand-off");
    assert!(again.status == 200 && again.body == other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_in_the_same_segment_as_its_head_reaches_the_router_intact() {
    let node = Node::start(fastpath::Config::default(), 0).await;
    let bytes = png(64, 64, 4);
    let mut post = format!(
        "POST /api/v1/objects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n",
        node.admin,
        bytes.len()
    )
    .into_bytes();
    post.extend_from_slice(&bytes);
    let mut conn = Conn::open(node.fast).await;
    conn.send(&post).await;
    let reply = conn.response(false).await.expect("upload");
    assert_eq!(reply.status, 201, "{:?}", reply.json());
    assert_eq!(reply.json()["size"], bytes.len());
    let sha = reply.json()["sha256"].as_str().unwrap().to_owned();
    let stored = node.client().get(&format!("/objects/{sha}")).await.unwrap();
    assert!(stored.body == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_follows_the_version_and_connection_header() {
    let node = Node::start(fastpath::Config::default(), 0).await;
    let sha = node.upload(&png(30, 30, 5)).await;
    let auth = format!("Authorization: Bearer {}\r\n", node.admin);
    let get = |version: &str, extra: &str| {
        format!("GET /objects/{sha} HTTP/{version}\r\n{auth}{extra}\r\n").into_bytes()
    };

    // HTTP/1.0 without keep-alive: one response, then the server closes.
    let mut conn = Conn::open(node.fast).await;
    conn.send(&get("1.0", "")).await;
    let reply = conn.response(false).await.expect("1.0 response");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(conn.closed().await);

    // HTTP/1.0 asking for keep-alive: confirmed, and a second request is answered.
    let mut conn = Conn::open(node.fast).await;
    conn.send(&get("1.0", "Connection: Keep-Alive\r\n")).await;
    let reply = conn.response(false).await.expect("1.0 keep-alive");
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    conn.send(&get("1.0", "Connection: keep-alive\r\n")).await;
    assert_eq!(conn.response(false).await.expect("second").status, 200);

    // HTTP/1.1 keeps alive by default and closes on `Connection: close`.
    let mut conn = Conn::open(node.fast).await;
    conn.send(&get("1.1", "")).await;
    let reply = conn.response(false).await.expect("1.1");
    assert_eq!(reply.header("connection"), None);
    conn.send(&get("1.1", "Connection: close\r\n")).await;
    let reply = conn.response(false).await.expect("close");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(conn.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_slow_heads_are_refused_and_closed() {
    let node = Node::start(
        fastpath::Config {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(2),
            max_head: 4 << 10,
            ..fastpath::Config::default()
        },
        0,
    )
    .await;
    let sha = node.upload(&png(30, 30, 6)).await;

    let mut conn = Conn::open(node.fast).await;
    conn.send(b"NOT HTTP AT ALL\r\n\r\n").await;
    let reply = conn.response(false).await.expect("400");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "bad_request");
    assert!(conn.closed().await);

    let pad = "x".repeat(5000);
    let mut conn = Conn::open(node.fast).await;
    conn.send(format!("GET /objects/{sha} HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n").as_bytes())
        .await;
    let reply = conn.response(false).await.expect("431");
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["error"]["code"], "headers_too_large");
    assert!(conn.closed().await);

    // Slowloris: a head that never completes is cut off with 408 at the header timeout.
    let mut conn = Conn::open(node.fast).await;
    conn.send(format!("GET /objects/{sha} HTTP/1.1\r\nX-Slow: ").as_bytes())
        .await;
    let reply = conn.response(false).await.expect("408");
    assert_eq!(reply.status, 408);
    assert_eq!(reply.json()["error"]["code"], "request_timeout");
    assert!(conn.closed().await);

    // After a hand-off to the router, a kept-alive connection may idle longer than a head may
    // take (waiting out the head timeout three times over)...
    let mut conn = Conn::open(node.fast).await;
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(conn.response(false).await.expect("healthz").status, 200);
    tokio::time::sleep(Duration::from_millis(900)).await;
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        conn.response(false)
            .await
            .expect("healthz after idling")
            .status,
        200
    );
    // ...but hyper cuts a head that never completes, within the idle timeout.
    conn.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
    let mut rest = [0u8; 1024];
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut conn.stream, &mut rest),
    )
    .await;
    assert!(
        matches!(ended, Ok(Ok(_)) | Ok(Err(_))),
        "a handed-off connection kept a head that never completed open"
    );

    // The node still serves.
    let ok = node.client().get(&format!("/objects/{sha}")).await.unwrap();
    assert_eq!(ok.status, 200);
}

/// Every way an object read can be refused gets the same status and JSON body from the fast
/// path as from the router's handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_answered_alike_by_both_paths() {
    let node = Node::start(fastpath::Config::default(), 0).await;
    let sha = node.upload(&png(50, 50, 7)).await;
    let other_sha = node.upload(&png(50, 50, 8)).await;
    let admin = node.client();
    let key = node.state.cluster.directory().key().expect("cluster key");
    let now = token::now_ms();

    for (name, role) in [("ann", "annotator"), ("max", "manager")] {
        let body = json!({"username": name, "password": format!("{name}-password"), "role": role});
        let reply = admin
            .send(
                Method::POST,
                "/api/v1/users",
                &[("content-type", "application/json")],
                body.to_string().into(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{:?}", reply.json());
    }
    let grant = |name: &'static str| {
        let anon = admin.anonymous();
        async move {
            let form = format!("grant_type=password&username={name}&password={name}-password");
            let reply = anon
                .send(
                    Method::POST,
                    "/oauth/token",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    form.into(),
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{:?}", reply.json());
            reply.json()
        }
    };
    let annotator = grant("ann").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let manager = grant("max").await;
    let refresh = manager["refresh_token"].as_str().unwrap().to_owned();
    let manager = manager["access_token"].as_str().unwrap().to_owned();
    let revoked = grant("max").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = admin
        .anonymous()
        .send(
            Method::POST,
            "/oauth/revoke",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={revoked}").into(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let claims = |exp: u64| Claims {
        id: "0123456789abcdef0123456789abcdef".into(),
        sub: "max".into(),
        uid: Some(2),
        sid: Some("00112233445566778899aabbccddeeff".into()),
        seq: 0,
        role: Role::Admin,
        kind: Kind::Access,
        exp,
        epoch: 0,
    };
    let expired = token::issue(&key, &claims(now - 1000));
    let forged = token::issue(&[9u8; 32], &claims(now + 60_000));
    let presigned = token::presign(&key, &sha, now + 60_000);
    let presigned_expired = token::presign(&key, &sha, now - 1);
    let presigned_other = token::presign(&key, &other_sha, now + 60_000);
    let bearer = |t: &str| format!("Bearer {t}");
    let cookie = |t: &str| format!("a=1; tessera_token={t}");
    let path = format!("/objects/{sha}");
    let unknown = format!("/objects/{}", "0".repeat(64));

    let cases: Vec<Named> = vec![
        ("no token", "GET", path.clone(), vec![]),
        ("no token, unknown object", "GET", unknown.clone(), vec![]),
        (
            "malformed",
            "GET",
            path.clone(),
            vec![("Authorization", bearer("garbage"))],
        ),
        (
            "not bearer",
            "GET",
            path.clone(),
            vec![("Authorization", format!("Basic {manager}"))],
        ),
        (
            "forged",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&forged))],
        ),
        (
            "expired",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&expired))],
        ),
        (
            "revoked",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&revoked))],
        ),
        (
            "refresh token",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&refresh))],
        ),
        (
            "annotator",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&annotator))],
        ),
        (
            "annotator HEAD",
            "HEAD",
            path.clone(),
            vec![("Authorization", bearer(&annotator))],
        ),
        (
            "annotator cookie",
            "GET",
            path.clone(),
            vec![("Cookie", cookie(&annotator))],
        ),
        (
            "bad cookie",
            "GET",
            path.clone(),
            vec![("Cookie", cookie("garbage"))],
        ),
        (
            "manager",
            "GET",
            path.clone(),
            vec![("Authorization", bearer(&manager))],
        ),
        (
            "lowercase scheme",
            "GET",
            path.clone(),
            vec![("Authorization", format!("bearer {manager}"))],
        ),
        (
            "manager cookie",
            "GET",
            path.clone(),
            vec![("Cookie", cookie(&manager))],
        ),
        (
            "manager cookie HEAD",
            "HEAD",
            path.clone(),
            vec![("Cookie", cookie(&manager))],
        ),
        (
            "manager, unknown object",
            "GET",
            unknown.clone(),
            vec![("Authorization", bearer(&manager))],
        ),
        ("presigned", "GET", format!("{path}?{presigned}"), vec![]),
        (
            "presigned HEAD",
            "HEAD",
            format!("{path}?{presigned}"),
            vec![],
        ),
        (
            "presigned, expired",
            "GET",
            format!("{path}?{presigned_expired}"),
            vec![],
        ),
        (
            "presigned for another object",
            "GET",
            format!("{path}?{presigned_other}"),
            vec![],
        ),
        (
            "bad signature",
            "GET",
            format!("{path}?exp={}&sig=00ff", now + 60_000),
            vec![],
        ),
        (
            "signature not hex",
            "GET",
            format!("{path}?exp={}&sig=zz", now + 60_000),
            vec![],
        ),
        (
            "bad presign beats a good token",
            "GET",
            format!("{path}?exp=1&sig=00"),
            vec![("Authorization", bearer(&manager))],
        ),
        (
            "exp without sig: token needed",
            "GET",
            format!("{path}?exp=1"),
            vec![],
        ),
        (
            "other query, token",
            "GET",
            format!("{path}?x=1"),
            vec![("Authorization", bearer(&manager))],
        ),
    ];
    let mut refused = 0;
    for (what, method, path, headers) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let fast = request(node.fast, method, path, &headers).await;
        let slow = request(node.slow, method, path, &headers).await;
        assert_eq!(
            (fast.status, fast.json()),
            (slow.status, slow.json()),
            "{what}"
        );
        if fast.status >= 400 && *method == "GET" {
            refused += 1;
            assert!(fast.json()["error"]["code"].is_string(), "{what}");
        }
    }
    assert_eq!(refused, 18, "the cases cover this many refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_with_503_and_the_node_serves_on() {
    let node = Node::start(
        fastpath::Config {
            max_connections: 2,
            ..fastpath::Config::default()
        },
        0,
    )
    .await;
    // Idle keep-alive connections fill the cap (the start-up's own client connections may
    // still be closing: then fewer fit, and the round is tried again).
    let (mut held, mut refused, reply) =
        eventually("two idle connections to fill the cap", DEADLINE, || async {
            let mut held = Vec::new();
            loop {
                let mut conn = Conn::open(node.fast).await;
                conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
                let reply = conn.response(false).await?;
                if reply.status == 503 {
                    return (held.len() == 2).then_some((held, conn, reply));
                }
                assert!(
                    held.len() < 2,
                    "a third connection was served: the cap is 2"
                );
                assert_eq!(reply.status, 200);
                held.push(conn);
            }
        })
        .await;
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"]["code"], "too_many_connections");
    assert!(refused.closed().await);
    // A connection closing makes room again.
    drop(held.pop());
    eventually("room for a connection", DEADLINE, || async {
        let reply = request(node.fast, "GET", "/healthz", &[]).await;
        (reply.status == 200).then_some(())
    })
    .await;
}
