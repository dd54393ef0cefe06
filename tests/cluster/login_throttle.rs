//! Brute-forcing the password grant: failed sign-ins back off exponentially per user name and
//! per client address (`api/src/login_throttle.rs`). Requests come from chosen loopback source
//! addresses (127.0.0.x) over raw sockets, so one test plays several clients.

use serde_json::Value;
use tessera_client::{form_encode, Method};
use tessera_cluster_tests::{eventually, Options, TestCluster, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::{create_user, send_json};

/// A password grant's answer: status, `Retry-After`, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

/// `POST /oauth/token` (password grant) to `node` from the address `source`.
async fn sign_in(source: &str, node: &str, user: &str, password: &str) -> Answer {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source address"))
        .expect("bind the source address");
    let mut stream = socket
        .connect(node.parse().expect("node address"))
        .await
        .expect("connect");
    let form = format!(
        "grant_type=password&username={}&password={}",
        form_encode(user),
        form_encode(password)
    );
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {node}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let retry_after = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    });
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A 429 says how long to wait, in the header and the JSON body alike.
fn assert_throttled(answer: &Answer) {
    assert_eq!(answer.status, 429, "{}", answer.body);
    let wait = answer.retry_after.expect("Retry-After");
    assert!(wait >= 1, "Retry-After {wait}");
    assert_eq!(answer.body["error"], "too_many_attempts", "{}", answer.body);
    assert_eq!(answer.body["retry_after"], wait, "{}", answer.body);
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_user_and_per_address() {
    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    create_user(&admin, "mia", "annotator").await;
    create_user(&admin, "ben", "annotator").await;
    let node = cluster.node(1).http.clone();

    // A burst of 30 guesses at mia's password, all at once: each is charged before its check,
    // so the burst gets the few free tries and then 429s, not 30 argon2 checks.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(
                async move { sign_in("127.0.0.2", &node, "mia", &format!("guess-{i}")).await },
            )
        })
        .collect();
    let mut burst = Vec::new();
    for task in tasks {
        burst.push(task.await.expect("sign-in task"));
    }
    let checked = burst.iter().filter(|a| a.status == 400).count();
    let refused: Vec<&Answer> = burst.iter().filter(|a| a.status == 429).collect();
    assert_eq!(checked + refused.len(), burst.len(), "only 400 and 429");
    assert!(
        !refused.is_empty(),
        "a burst of 30 wrong passwords was never throttled"
    );
    refused.iter().for_each(|a| assert_throttled(a));

    // More guesses, one at a time, until the wait has doubled to at least 4 s (a refused guess
    // is not counted; each one let through after a wait doubles it).
    eventually("a wait of 4 s", DEADLINE, || async {
        let answer = sign_in("127.0.0.2", &node, "mia", "another-guess").await;
        match answer.status {
            400 => None,
            _ => {
                assert_throttled(&answer);
                (answer.retry_after >= Some(4)).then_some(())
            }
        }
    })
    .await;
    // During the wait even the right password is refused unchecked.
    assert_throttled(&sign_in("127.0.0.2", &node, "mia", "mia-password").await);
    // Another user from the same address is not held up by mia's wait.
    let ben = sign_in("127.0.0.2", &node, "ben", "ben-password").await;
    assert_eq!(ben.status, 200, "{}", ben.body);

    // After the wait, the right password works, and mia's failures are forgotten: the next
    // wrong password is checked (400), not refused.
    eventually("mia's wait to end", DEADLINE, || async {
        let answer = sign_in("127.0.0.2", &node, "mia", "mia-password").await;
        if answer.status == 429 {
            return None;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        Some(())
    })
    .await;
    let wrong = sign_in("127.0.0.2", &node, "mia", "wrong").await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert_eq!(wrong.body["error"], "invalid_grant");

    // Per address: one guess at each of many names from 127.0.0.3 (names that do not exist get
    // the same answer as wrong passwords) until the address has to wait.
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            tries <= 60,
            "guessing many names from one address was never throttled"
        );
        let answer = sign_in("127.0.0.3", &node, &format!("name-{tries}"), "guess").await;
        if answer.status == 429 {
            assert_throttled(&answer);
            break;
        }
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(
            answer.body["error_description"],
            "unknown user or wrong password"
        );
    }
    // Everyone at that address waits, even with the right password; other addresses do not.
    assert_throttled(&sign_in("127.0.0.3", &node, "ben", "ben-password").await);
    let elsewhere = sign_in("127.0.0.4", &node, "ben", "ben-password").await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);

    // A stolen access token does not turn the password change into a guessing oracle: wrong
    // current passwords back off like sign-ins, and then even the right one waits.
    let token = elsewhere.body["access_token"].as_str().expect("token");
    let ben = admin.with_token(token);
    let change = |current: &str| serde_json::json!({"current_password": current, "new_password": "ben-new-password"});
    // Guesses until the wait has doubled to at least 4 s, as for sign-ins above.
    eventually("a password-change wait of 4 s", DEADLINE, || async {
        let reply = send_json(&ben, Method::PUT, "/api/v1/me/password", change("guess")).await;
        if reply.status == 403 {
            return None;
        }
        assert_eq!(reply.status, 429, "{:?}", reply.json());
        assert_eq!(reply.json()["error"]["code"], "too_many_attempts");
        let wait: u64 = reply
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .expect("Retry-After");
        (wait >= 4).then_some(())
    })
    .await;
    let right = send_json(
        &ben,
        Method::PUT,
        "/api/v1/me/password",
        change("ben-password"),
    )
    .await;
    assert_eq!(right.status, 429, "{:?}", right.json());
    cluster.wait_ready().await;
}
