//! Requests that either answer as expected or become a finding naming what was sent and got.

use bytes::Bytes;
use serde_json::Value;
use sha2::Digest;
use tessera_client::{form_encode, Client, Method, Reply};

/// A difference or failure, as the message the check exits with.
pub type Check<T> = Result<T, String>;

pub fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Sends one request; a transport failure is a finding.
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Check<Reply> {
    let what = format!("{method} {path} on {}", client.base());
    client
        .send(method, path, headers, body)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

/// `reply` had `status`, else a finding naming the request.
pub fn expect(reply: Reply, status: u16, what: &str) -> Check<Reply> {
    if reply.status.as_u16() == status {
        Ok(reply)
    } else {
        Err(format!(
            "{what}: expected {status}, got {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

/// Sends `body` as JSON and expects `status`; returns the reply's JSON.
pub async fn json(
    client: &Client,
    method: Method,
    path: &str,
    body: Value,
    status: u16,
) -> Check<Value> {
    let what = format!("{method} {path}");
    let reply = send(
        client,
        method,
        path,
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await?;
    Ok(expect(reply, status, &what)?.json())
}

/// `GET path`, expecting 200; returns the reply.
pub async fn get(client: &Client, path: &str) -> Check<Reply> {
    let reply = send(client, Method::GET, path, &[], Bytes::new()).await?;
    expect(reply, 200, &format!("GET {path} on {}", client.base()))
}

/// Posts form fields (`application/x-www-form-urlencoded`) and expects `status`.
pub async fn form(
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
    status: u16,
) -> Check<Value> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
    let reply = send(
        client,
        Method::POST,
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(body.join("&")),
    )
    .await?;
    Ok(expect(reply, status, &format!("POST {path}"))?.json())
}

/// The tokens of one password grant.
pub struct SignIn {
    pub access: String,
    pub refresh: String,
    pub session: String,
}

/// The OAuth2 password grant.
pub async fn sign_in(client: &Client, username: &str, password: &str) -> Check<SignIn> {
    let fields = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    let reply = form(&client.anonymous(), "/oauth/token", &fields, 200)
        .await
        .map_err(|e| format!("{username} signs in: {e}"))?;
    let field = |name: &str| {
        reply[name]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("{username} signs in: no {name} in {reply}"))
    };
    Ok(SignIn {
        access: field("access_token")?,
        refresh: field("refresh_token")?,
        session: field("session")?,
    })
}

/// A string field of a JSON reply, or a finding.
pub fn str_field(value: &Value, name: &str, what: &str) -> Check<String> {
    value[name]
        .as_str()
        .map(str::to_string)
        .ok_or(format!("{what}: no string {name} in {value}"))
}

/// A number field of a JSON reply, or a finding.
pub fn u64_field(value: &Value, name: &str, what: &str) -> Check<u64> {
    value[name]
        .as_u64()
        .ok_or(format!("{what}: no number {name} in {value}"))
}

/// `GET url` without a token, following the one redirect a node answers with when another
/// holds the resource (export downloads); returns the final reply.
pub async fn follow(client: &Client, nodes: &[String], url: &str) -> Check<Reply> {
    let anonymous = client.anonymous();
    let reply = send(&anonymous, Method::GET, url, &[], Bytes::new()).await?;
    if reply.status != 307 {
        return expect(reply, 200, &format!("GET {url}"));
    }
    let location = reply
        .header("location")
        .ok_or(format!("GET {url}: a redirect without Location"))?
        .to_string();
    let node = nodes
        .iter()
        .find(|n| location.contains(n.as_str()))
        .ok_or(format!("GET {url}: redirected to {location}, not a node"))?;
    let path = location
        .find("/api/")
        .map(|at| &location[at..])
        .ok_or(format!("GET {url}: redirected to {location}"))?;
    let reply = send(
        &anonymous.with_base(node),
        Method::GET,
        path,
        &[],
        Bytes::new(),
    )
    .await?;
    expect(reply, 200, &format!("GET {location}"))
}
