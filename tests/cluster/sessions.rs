//! Tokens bound to who a user is: deleted and re-created users, refresh-token rotation and reuse
//! detection, sessions and their ends — every check asked of every node of a real cluster.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method, Reply};
use tessera_cluster_tests::{Options, TestCluster};

use crate::support::{
    api_token, assert_refused, cluster_with_user, create_user, delete, error_message, form, me,
    refused_token, reset_password, send_json,
};

/// Why the tokens of a session that was ended are refused.
const SIGNED_OUT: &str = "token revoked: the session was signed out";

/// A sign-in: the access and refresh tokens of one session.
struct Grant {
    access: String,
    refresh: String,
    session: String,
}

fn grant(reply: &Reply) -> Grant {
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    let j = reply.json();
    let field = |k: &str| {
        j[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {j}"))
            .to_string()
    };
    Grant {
        access: field("access_token"),
        refresh: field("refresh_token"),
        session: field("session"),
    }
}

async fn sign_in(client: &Client, user: &str, password: &str) -> Grant {
    let fields = [
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
    ];
    grant(&form(&client.anonymous(), "/oauth/token", &fields).await)
}

async fn refresh(client: &Client, token: &str) -> Reply {
    let fields = [("grant_type", "refresh_token"), ("refresh_token", token)];
    form(&client.anonymous(), "/oauth/token", &fields).await
}

/// Every node refuses each of `tokens` with 401 and a message starting with `why` (polled: a
/// node applies a change a moment after the node that made it answered).
async fn refused_everywhere(cluster: &TestCluster, tokens: &[&str], why: &str) {
    for token in tokens {
        for node in &cluster.nodes {
            let what = format!("node {} to refuse the token ({why})", node.id);
            let reply = refused_token(&node.client(), token, &what).await;
            assert!(
                error_message(&reply).starts_with(why),
                "node {}: {}",
                node.id,
                error_message(&reply)
            );
        }
    }
}

#[tokio::test]
async fn a_deleted_users_tokens_never_act_as_the_next_user_of_that_name() {
    let (cluster, zed) = cluster_with_user(Options::default(), "zed", "annotator").await;
    let admin = cluster.node(1).client();
    let old = sign_in(&admin, "zed", "zed-password").await;
    let api = api_token(&zed).await["token"]
        .as_str()
        .expect("api token")
        .to_string();
    let first_id = me(&admin, &old.access).await.json()["id"].clone();

    assert_eq!(delete(&admin, "/api/v1/users/zed").await.status, 204);
    refused_everywhere(
        &cluster,
        &[&old.access, &api],
        "token revoked: the user was deleted",
    )
    .await;

    // The name again, now a manager: the annotator's tokens stay refused on every node, and the
    // refresh token mints nothing.
    let again = create_user(&admin, "zed", "manager").await;
    let mine = again.get("/api/v1/me").await.expect("me").json();
    assert_eq!(mine["role"], "manager");
    assert_ne!(mine["id"], first_id, "user ids are never reused");
    for node in &cluster.nodes {
        let client = node.client();
        for token in [&old.access, &api] {
            let reply = me(&client, token).await;
            assert_eq!(reply.status, 401, "node {}", node.id);
            assert!(
                error_message(&reply).starts_with("token revoked"),
                "{}",
                error_message(&reply)
            );
        }
        let reply = refresh(&client, &old.refresh).await;
        assert_eq!(reply.status, 400, "node {}: {:?}", node.id, reply.json());
        assert_eq!(reply.json()["error"], "invalid_grant");
        let datasets = client
            .with_token(old.access.clone())
            .get("/api/v1/datasets")
            .await
            .expect("datasets");
        assert_eq!(datasets.status, 401);
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_signs_the_session_out_everywhere() {
    let (cluster, _) = cluster_with_user(Options::default(), "ana", "annotator").await;
    let [n1, n2, n3] = [1, 2, 3].map(|id| cluster.node(id).client());

    let first = sign_in(&n1, "ana", "ana-password").await;
    let second = grant(&refresh(&n1, &first.refresh).await);
    assert_ne!(
        second.refresh, first.refresh,
        "a new refresh token each time"
    );
    assert_eq!(second.session, first.session);
    let third = grant(&refresh(&n2, &second.refresh).await);
    assert_eq!(me(&n2, &third.access).await.status, 200);

    // The first refresh token again, on another node: somebody kept a copy.
    let reused = refresh(&n3, &first.refresh).await;
    assert_eq!(reused.status, 400);
    assert_eq!(reused.json()["error"], "invalid_grant");
    let description = reused.json()["error_description"].to_string();
    assert!(description.contains("already used"), "{description}");
    // The whole family is gone, on node 2 as everywhere: the newest refresh token and every
    // access token of the session.
    let latest = refresh(&n2, &third.refresh).await;
    assert_eq!(latest.status, 400, "{:?}", latest.json());
    refused_everywhere(
        &cluster,
        &[&first.access, &second.access, &third.access],
        SIGNED_OUT,
    )
    .await;
    let metrics = n3.get("/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("tessera_refresh_token_reuse_total") && l.ends_with(" 1")),
        "reuse counted on the node that saw it"
    );

    // RFC 7009 on a refresh token ends the access tokens minted from it, on every node.
    let other = sign_in(&n1, "ana", "ana-password").await;
    let renewed = grant(&refresh(&n3, &other.refresh).await);
    assert_eq!(me(&n1, &renewed.access).await.status, 200);
    let revoked = form(
        &n2.anonymous(),
        "/oauth/revoke",
        &[("token", &renewed.refresh)],
    )
    .await;
    assert_eq!(revoked.status, 200);
    refused_everywhere(&cluster, &[&other.access, &renewed.access], SIGNED_OUT).await;
    assert_eq!(refresh(&n1, &renewed.refresh).await.status, 400);
}

/// A user changes their own password.
async fn change_password(user: &Client, current: &str, new: &str) -> Reply {
    let body = json!({"current_password": current, "new_password": new});
    send_json(user, Method::PUT, "/api/v1/me/password", body).await
}

fn sessions(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    reply.json()["items"].as_array().cloned().expect("items")
}

#[tokio::test]
async fn sessions_are_listed_ended_and_cut_by_password_changes() {
    let (cluster, _) = cluster_with_user(Options::default(), "lee", "reviewer").await;
    let admin = cluster.node(1).client();
    let outsider = create_user(&admin, "kim", "annotator").await;
    let [n1, n2, n3] = [1, 2, 3].map(|id| cluster.node(id).client());
    let browser = n1
        .anonymous()
        .send(
            Method::POST,
            "/oauth/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("user-agent", "Firefox/140 (lee's laptop)"),
            ],
            Bytes::from("grant_type=password&username=lee&password=lee-password"),
        )
        .await
        .expect("sign in");
    let a = grant(&browser);
    let b = sign_in(&n2, "lee", "lee-password").await;
    let lee = n3.with_token(a.access.clone());
    let api = api_token(&lee).await;
    let (api_token, api_session) = (
        api["token"].as_str().expect("token").to_string(),
        api["session"].as_str().expect("session").to_string(),
    );

    let listed = sessions(&lee.get("/api/v1/me/sessions").await.expect("list"));
    // create_user signed in once too.
    assert_eq!(listed.len(), 4, "{listed:?}");
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], a.session.as_str());
    assert_eq!(current[0]["client"], "Firefox/140 (lee's laptop)");
    assert_eq!(current[0]["address"], "127.0.0.1");
    assert_eq!(current[0]["kind"], "sign_in");
    assert!(listed
        .iter()
        .any(|s| s["id"] == api_session.as_str() && s["kind"] == "api_token"));

    // One session ends: its tokens everywhere, nothing else.
    assert_eq!(
        delete(&lee, &format!("/api/v1/me/sessions/{}", b.session))
            .await
            .status,
        204
    );
    refused_everywhere(&cluster, &[&b.access], SIGNED_OUT).await;
    assert_eq!(refresh(&n1, &b.refresh).await.status, 400);
    assert_eq!(me(&n2, &a.access).await.status, 200);
    let missing = delete(&lee, &format!("/api/v1/me/sessions/{}", "0".repeat(32))).await;
    assert_refused(&missing, 404, "no_such_session");
    let bad = delete(&lee, "/api/v1/me/sessions/not-hex").await;
    assert_refused(&bad, 400, "bad_session_id");
    // Nobody ends another user's session through their own list.
    let theirs = delete(&outsider, &format!("/api/v1/me/sessions/{}", a.session)).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(
        outsider
            .get("/api/v1/users/lee/sessions")
            .await
            .expect("list")
            .status,
        403
    );

    // Changing one's own password ends every other session (create_user's and the API
    // token's), keeps this one.
    let wrong = change_password(&lee, "nope-nope", "lee-second-password").await;
    assert_refused(&wrong, 403, "wrong_password");
    let short = change_password(&lee, "lee-password", "short").await;
    assert_eq!(short.status, 422);
    let changed = change_password(&lee, "lee-password", "lee-second-password").await;
    assert_eq!(changed.status, 200, "{:?}", changed.json());
    assert_eq!(changed.json()["ended_sessions"], 2);
    refused_everywhere(&cluster, &[&api_token], SIGNED_OUT).await;
    for node in [&n1, &n2, &n3] {
        assert_eq!(me(node, &a.access).await.status, 200);
    }
    assert!(n2.anonymous().login("lee", "lee-password").await.is_err());
    let c = sign_in(&n2, "lee", "lee-second-password").await;

    // An admin sees and ends them.
    let seen = sessions(&admin.get("/api/v1/users/lee/sessions").await.expect("list"));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s["current"] == false));
    let ended = delete(&admin, "/api/v1/users/lee/sessions").await;
    assert_eq!(
        (ended.status.as_u16(), ended.json()["ended"].clone()),
        (200, json!(2))
    );
    refused_everywhere(&cluster, &[&a.access, &c.access], SIGNED_OUT).await;

    // "Sign out everywhere" by the user; then an admin's reset ends what is left.
    let d = sign_in(&n1, "lee", "lee-second-password").await;
    let e = sign_in(&n3, "lee", "lee-second-password").await;
    let out = delete(&n1.with_token(d.access.clone()), "/api/v1/me/sessions").await;
    assert_eq!(
        (out.status.as_u16(), out.json()["ended"].clone()),
        (200, json!(2))
    );
    refused_everywhere(&cluster, &[&d.access, &e.access], "token revoked").await;
    let f = sign_in(&n1, "lee", "lee-second-password").await;
    reset_password(&admin, "lee", "lee-third-password").await;
    refused_everywhere(&cluster, &[&f.access], "token revoked: the user's password").await;
    assert_eq!(refresh(&n2, &f.refresh).await.status, 400);
}

#[tokio::test]
async fn a_node_paused_while_a_user_is_deleted_never_accepts_their_token() {
    let (cluster, _) = cluster_with_user(Options::default(), "pat", "manager").await;
    let admin = cluster.node(1).client();
    let pat = sign_in(&admin, "pat", "pat-password").await;
    let lagging = cluster.node(3).client();
    assert_eq!(me(&lagging, &pat.access).await.status, 200);

    cluster.pause(3);
    // Through node 2: node 1 may have to wait for a new catalogue leader if node 3 led it.
    let deleted = delete(&cluster.node(2).client(), "/api/v1/users/pat").await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.json());
    // The fault lasts longer than a node trusts an unconfirmed view of the users (3 s), so the
    // node must re-confirm before it accepts anything. (A duration of the fault, not a wait for
    // something to happen.)
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.resume(3);
    let reply = me(&lagging, &pat.access).await;
    assert_eq!(reply.status, 401, "{:?}", reply.json());
    assert!(
        error_message(&reply).starts_with("token revoked: the user was deleted"),
        "{}",
        error_message(&reply)
    );
}
