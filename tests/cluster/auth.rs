//! Users, OAuth2 tokens and the role × route authorisation matrix, on a real cluster.

use bytes::Bytes;
use serde_json::json;
use tessera_client::{Client, Method, Reply};
use tessera_cluster_tests::{Options, TestCluster, ADMIN_PASSWORD};

use crate::support::{
    api_token, create_user, delete, error_message, form, image, me, new_dataset, next_page,
    refused_token, reset_password, send_json, send_json_text, upload,
};

/// Creates a manager, a reviewer and an annotator, and signs everybody in through `anon`:
/// `(name, access level, token)` for admin (4), mgr (3), rev (2) and ann (1).
async fn signed_in_callers(admin: &Client, anon: &Client) -> Vec<(&'static str, u8, String)> {
    let login = anon.login("admin", ADMIN_PASSWORD).await;
    let mut callers = vec![("admin", 4, login.expect("admin login"))];
    for (name, level, role) in [
        ("mgr", 3, "manager"),
        ("rev", 2, "reviewer"),
        ("ann", 1, "annotator"),
    ] {
        create_user(admin, name, role).await;
        let token = anon.login(name, &format!("{name}-password")).await;
        callers.push((name, level, token.expect("login")));
    }
    callers
}

/// `method path` with a JSON `body`, as `anon` signed in with `token` (if any).
async fn call(
    anon: &Client,
    token: &Option<String>,
    method: &Method,
    path: &str,
    body: Bytes,
) -> Reply {
    let client = match token {
        Some(t) => anon.with_token(t.clone()),
        None => anon.clone(),
    };
    send_json_text(&client, method.clone(), path, body).await
}

/// Asserts a caller was let through (whatever the handler then answered).
fn assert_allowed(reply: &Reply, who: &str, method: &str, path: &str) {
    let status = reply.status.as_u16();
    assert!(
        status != 401 && status != 403,
        "{who} {method} {path}: {status} {:?}",
        reply.json()
    );
}

#[tokio::test]
async fn oauth_password_refresh_revoke_and_user_changes() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    create_user(&admin, "mia", "manager").await;
    // Read-your-writes: the new user logs in through another node at once.
    let other = cluster.node(3).client().anonymous();
    let login = form(
        &other,
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "mia"),
            ("password", "mia-password"),
        ],
    )
    .await;
    assert_eq!(login.status, 200, "{:?}", login.json());
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let grant = login.json();
    assert_eq!(grant["token_type"], "Bearer");
    let access = grant["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let refresh = grant["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let mine = me(&other, &access).await;
    assert_eq!(
        (mine.status.as_u16(), mine.json()["role"].clone()),
        (200, json!("manager"))
    );

    for (fields, code) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", "mia"),
                ("password", "wrong"),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "nobody"),
                ("password", "x"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "password"), ("username", "mia")],
            "invalid_request",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", access.as_str()),
            ],
            "invalid_grant",
        ),
    ] {
        let reply = form(&other, "/oauth/token", &fields).await;
        assert_eq!(reply.status, 400, "{fields:?}");
        assert_eq!(reply.json()["error"], code, "{fields:?}");
    }
    // A refresh token is refused as a bearer token, and exchanged for a new access token.
    assert_eq!(me(&other, &refresh).await.status, 401);
    let renewed = form(
        &other,
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(renewed.status, 200);
    let second = renewed.json()["access_token"]
        .as_str()
        .expect("renewed")
        .to_string();

    // Revocation holds on every node.
    assert_eq!(
        form(&other, "/oauth/revoke", &[("token", &access)])
            .await
            .status,
        200
    );
    for node in &cluster.nodes {
        refused_token(&node.client(), &access, "revocation to reach every node").await;
    }
    assert_eq!(me(&other, &second).await.status, 200);

    // An API token works until revoked.
    let api = api_token(&other.with_token(second.clone())).await;
    let api_token = api["token"].as_str().expect("api token").to_string();
    assert_eq!(me(&other, &api_token).await.status, 200);

    // Changing the password ends every token issued before; the new password works.
    reset_password(&admin, "mia", "new-mia-password").await;
    for token in [&second, &api_token] {
        refused_token(&other, token, "old tokens to be refused").await;
    }
    assert!(other.login("mia", "new-mia-password").await.is_ok());

    // Bad user input and conflicts.
    let dup = send_json(
        &admin,
        Method::POST,
        "/api/v1/users",
        json!({"username": "mia", "password": "whatever1", "role": "annotator"}),
    )
    .await;
    assert_eq!(dup.status, 409);
    for bad in [
        json!({"username": "Bad Name", "password": "whatever1", "role": "annotator"}),
        json!({"username": "ok", "password": "short", "role": "annotator"}),
        json!({"username": "ok", "password": "whatever1", "role": "emperor"}),
    ] {
        let reply = send_json(&admin, Method::POST, "/api/v1/users", bad.clone()).await;
        assert_eq!(reply.status, 422, "{bad}");
        assert_eq!(reply.json()["error"]["code"], "invalid_field");
    }
    let malformed = send_json_text(&admin, Method::POST, "/api/v1/users", "{not json").await;
    assert!(malformed.status.is_client_error());

    // Listing pages through every user.
    let first = admin.get("/api/v1/users?limit=1").await.unwrap().json();
    assert_eq!(first["items"].as_array().map(Vec::len), Some(1));
    let rest = next_page(&admin, "/api/v1/users?limit=10", &first).await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
    assert!(rest["next_cursor"].is_null());

    // Deleting a user ends their logins.
    assert_eq!(delete(&admin, "/api/v1/users/mia").await.status, 204);
    assert!(other.login("mia", "new-mia-password").await.is_err());
    assert_eq!(delete(&admin, "/api/v1/users/admin").await.status, 409);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let cluster = TestCluster::start(Options {
        access_token_ttl_s: 1,
        ..Options::default()
    })
    .await;
    let client = cluster.node(2).client();
    let token = client
        .anonymous()
        .login("admin", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(me(&client, &token).await.status, 200);
    let expired = refused_token(&client, &token, "the token to expire").await;
    assert!(error_message(&expired).contains("expired"));
}

/// Every route × every kind of caller: allowed (not 401/403) or refused with the right status.
#[tokio::test]
async fn role_route_matrix() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let anon = cluster.node(2).client().anonymous();
    let mut callers: Vec<(&str, Option<String>)> = vec![("none", None)];
    for (name, _, token) in signed_in_callers(&admin, &anon).await {
        callers.push((name, Some(token)));
    }
    let revoked = anon.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(
        form(&anon, "/oauth/revoke", &[("token", &revoked)])
            .await
            .status,
        200
    );
    callers.push(("revoked", Some(revoked)));
    let admin_token = callers[1].1.clone().unwrap();
    let (body, sig) = admin_token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    callers.push(("forged", Some(format!("{body}.{flipped}{}", &sig[1..]))));

    let sha = upload(&admin, &image(5)).await;
    let object = format!("/objects/{sha}");
    let meta = format!("/api/v1/objects/{sha}");
    // (method, path, body, callers allowed)
    let png = Bytes::from(image(6));
    let routes: Vec<(Method, String, Bytes, &[&str])> = vec![
        (Method::GET, object.clone(), Bytes::new(), &["admin", "mgr"]),
        (
            Method::HEAD,
            object.clone(),
            Bytes::new(),
            &["admin", "mgr"],
        ),
        (
            Method::POST,
            "/api/v1/objects".into(),
            png,
            &["admin", "mgr"],
        ),
        (Method::GET, meta.clone(), Bytes::new(), &["admin", "mgr"]),
        (
            Method::GET,
            "/api/v1/cluster".into(),
            Bytes::new(),
            &["admin"],
        ),
        (
            Method::GET,
            "/api/v1/users".into(),
            Bytes::new(),
            &["admin"],
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            Bytes::from(json!({"username": "x", "password": "y"}).to_string()),
            &["admin"],
        ),
        (
            Method::GET,
            "/api/v1/users/ann".into(),
            Bytes::new(),
            &["admin", "ann"],
        ),
        (
            Method::PATCH,
            "/api/v1/users/rev".into(),
            Bytes::from_static(b"{}"),
            &["admin"],
        ),
        (
            Method::DELETE,
            "/api/v1/users/nobody".into(),
            Bytes::new(),
            &["admin"],
        ),
        (
            Method::GET,
            "/api/v1/me".into(),
            Bytes::new(),
            &["admin", "mgr", "rev", "ann"],
        ),
        (
            Method::POST,
            "/api/v1/me/tokens".into(),
            Bytes::new(),
            &["admin", "mgr", "rev", "ann"],
        ),
    ];
    for (method, path, body, allowed) in &routes {
        for (who, token) in &callers {
            let reply = call(&anon, token, method, path, body.clone()).await;
            let status = reply.status.as_u16();
            if allowed.contains(who) {
                assert_allowed(&reply, who, method.as_str(), path);
            } else {
                let expected = if token.is_none() || ["revoked", "forged"].contains(who) {
                    401
                } else {
                    403
                };
                assert_eq!(status, expected, "{who} {method} {path}");
                if *method != Method::HEAD {
                    assert!(
                        reply.json()["error"]["code"].is_string(),
                        "{who} {method} {path}: JSON error"
                    );
                }
            }
        }
    }
    // Public routes need no token.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(anon.get(path).await.unwrap().status, 200, "{path}");
    }
    // Presigned URLs from the metadata API work without a token; a tampered one does not.
    let url = admin.get(&meta).await.unwrap().json()["url"]
        .as_str()
        .expect("presigned url")
        .to_string();
    assert_eq!(anon.get(&url).await.unwrap().status, 200);
    let tampered = url.replace("sig=", "sig=00");
    assert_eq!(anon.get(&tampered).await.unwrap().status, 401);
    // The session cookie is accepted for reads only.
    let cookie = format!("tessera_token={admin_token}");
    let read = anon
        .send(Method::GET, &object, &[("cookie", &cookie)], Bytes::new())
        .await
        .unwrap();
    assert_eq!(read.status, 200);
    let write = anon
        .send(
            Method::POST,
            "/api/v1/objects",
            &[("cookie", &cookie)],
            Bytes::from(image(7)),
        )
        .await
        .unwrap();
    assert_eq!(write.status, 401);
}

/// Every route the OpenAPI document lists, for every kind of caller, against the access level
/// the document states: callers below it are refused (401 without a valid token, 403 with a
/// lower role); callers at or above it are not. New routes are covered as soon as they exist.
#[tokio::test]
async fn every_documented_route_enforces_its_access_level() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let anon = cluster.node(3).client().anonymous();
    let mut callers: Vec<(&str, u8, Option<String>)> = vec![("none", 0, None)];
    for (name, level, token) in signed_in_callers(&admin, &anon).await {
        callers.push((name, level, Some(token)));
    }
    let forged = callers[1].2.clone().unwrap().replace("t1.", "t1.00");
    callers.push(("forged", 0, Some(forged)));

    let doc = anon.get("/api/v1/openapi.json").await.unwrap().json();
    let mut checked = 0;
    let mut operations: Vec<(&String, &String, &serde_json::Value)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            let ops = ops.as_object().expect("operations");
            ops.iter().map(move |(method, op)| (path, method, op))
        })
        .collect();
    // "Sign out everywhere" ends the callers' sessions: it goes last.
    operations.sort_by_key(|(path, method, _)| {
        path.as_str() == "/api/v1/me/sessions" && method.as_str() == "delete"
    });
    for (path, method, op) in operations {
        // Ids that exist nowhere: handlers answer 404 after the access check, never 401/403.
        let concrete = path
            .replace("{sha}", &"0".repeat(64))
            .replace("{name}", "nobody")
            .replace("{id}", "999999")
            .replace("{action}", "accept");
        {
            let needed = match op["x-tessera-access"].as_str().expect("access") {
                // Tested with and without the init token in `cluster_init_needs_credentials`.
                "anyone" | "init" => continue,
                "signed_in" => 1,
                "reviewer" => 2,
                "manager" => 3,
                "admin" => 4,
                other => panic!("unknown access {other}"),
            };
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            for (who, level, token) in &callers {
                // An allowed restart restarts the node this test talks to (tested in
                // `cli::up_put_get_status_and_stop_on_ctrl_c_or_sigterm`); the refusals are
                // checked here.
                if path.as_str() == "/api/v1/cluster/restart" && *level >= needed {
                    continue;
                }
                let reply = call(&anon, token, &m, &concrete, Bytes::from_static(b"{}")).await;
                let status = reply.status.as_u16();
                if *level == 0 {
                    assert_eq!(status, 401, "{who} {method} {path}");
                } else if *level < needed {
                    assert_eq!(status, 403, "{who} {method} {path}: {:?}", reply.json());
                } else {
                    assert_allowed(&reply, who, method, path);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} route x caller checks");
}

/// With seven nodes the catalogue has five voters; the other two follow it as learners, so
/// they check tokens, see revocations and serve the domain (with read-your-writes) like the rest.
#[tokio::test]
async fn nodes_beyond_the_catalogue_voters_serve_everything() {
    let cluster = TestCluster::start(Options {
        nodes: 7,
        ..Options::default()
    })
    .await;
    let status = cluster.status().await;
    let voters: Vec<u64> = status["groups"][0]["voters"]
        .as_array()
        .expect("catalogue voters")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert_eq!(voters.len(), 5, "{status}");
    let outside: Vec<u64> = (1..=7).filter(|n| !voters.contains(n)).collect();
    let admin = cluster.node(1).client();
    let manager = create_user(&admin, "mgr", "manager").await;
    for &n in &outside {
        let here = manager.with_base(&cluster.node(n).http);
        // Login through this node, a write through it, and read-your-writes on it.
        let token = here
            .anonymous()
            .login("mgr", "mgr-password")
            .await
            .expect("login on a learner");
        let here = here.with_token(token.clone());
        let name = format!("made-on-{n}");
        new_dataset(&here, &name).await;
        let listed = here.get("/api/v1/datasets").await.expect("list").json();
        assert!(listed.to_string().contains(&name), "{listed}");
        // Revoked through node 1: refused here too.
        let revoked = form(&admin.anonymous(), "/oauth/revoke", &[("token", &token)]).await;
        assert_eq!(revoked.status, 200);
        refused_token(&here, &token, "the revocation to reach a learner").await;
    }
}
