//! `/api/v1/webhooks`: managers' endpoints for task, save, job and quality events, and the
//! worker that delivers them.
//!
//! What is queued, claimed and logged, and why delivery is at least once with one node at a
//! time, is `tessera_domain::webhooks`. Here: the routes, and the sender. The sender runs on
//! the catalogue's leader, never on a request path: a receiver that hangs, fails or redirects
//! costs its hook's queue and nothing else. Each POST is signed:
//!
//! ```text
//! Tessera-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! Tessera-Event: task.submitted
//! Tessera-Delivery: <hook>-<seq>          (the same on every attempt: drop repeats)
//! ```
//!
//! Redirects are not followed (a 3xx is a failed attempt: a hook's URL is where its
//! deliveries go); the receiver's body is ignored beyond the status line.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tessera_domain::catalog::{CatalogOp, CatalogOutcome};
use tessera_domain::webhooks::{self, Delivery, Event, Hook, WebhookOp, WebhookOutcome};

use crate::auth::Principal;
use crate::error::{internal, invalid, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

/// What `POST /api/v1/webhooks` takes.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHook {
    url: String,
    events: Vec<Event>,
    /// Only this annotation set's events; every set's (and dataset imports') without.
    #[serde(default)]
    annotation_set: Option<u64>,
}

fn view(h: &Hook) -> Value {
    json!({
        "id": h.id,
        "url": h.url,
        "events": h.events,
        "annotation_set": h.set,
        "created_by": h.created_by,
        "created_ms": h.created_ms,
        "queued": h.queued,
        "dropped": h.dropped,
    })
}

/// The host and port a URL names (default ports by scheme).
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(port) => (h, port),
            Err(_) if authority.starts_with('[') && authority.ends_with(']') => {
                (authority, default)
            }
            Err(_) => return None,
        },
        _ => (authority, default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "::1" | "0.0.0.0" | "::") || host.starts_with("127.")
}

/// Refuses a URL that reaches one of the cluster's internal RPC ports: deliveries would be
/// nonsense to it at best, and a webhook must not become a way to poke at the cluster's
/// insides.
fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    let (host, port) = host_port(url).ok_or_else(|| invalid("url: a host and a valid port"))?;
    for node in &state.cluster.spec().nodes {
        let Some((rpc_host, rpc_port)) = host_port(&format!("http://{}", node.rpc)) else {
            continue;
        };
        let same_host = host == rpc_host || (loopback(&host) && loopback(&rpc_host));
        if port == rpc_port && (same_host || loopback(&host)) {
            return Err(invalid(format!(
                "url: {host}:{port} is the internal RPC port of node {}; webhooks go to \
                 receivers outside the cluster",
                node.id
            )));
        }
    }
    Ok(())
}

fn secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(internal)?;
    Ok(hex::encode(bytes))
}

/// `POST /api/v1/webhooks` (managers): answers the hook with its signing secret, shown only
/// here.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewHook>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if let Some(p) = webhooks::problem(&body.url, &body.events) {
        return Err(invalid(p));
    }
    check_target(&state, &body.url)?;
    let op = WebhookOp::Create {
        set: body.annotation_set,
        url: body.url,
        events: body.events,
        secret: secret()?,
        by: principal.username.clone(),
        at_ms: now_ms(),
    };
    match propose(&state, op).await? {
        WebhookOutcome::Hook(h) => {
            let mut v = view(&h);
            v["secret"] = json!(h.secret);
            Ok((StatusCode::CREATED, Json(v)))
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/webhooks` (managers).
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.cluster.catalog_barrier().await?;
    let hooks = state.cluster.read_catalog(webhooks::hooks).await?;
    let items: Vec<Value> = hooks.iter().map(view).collect();
    Ok(Json(json!({ "items": items })))
}

/// Log lines `GET /api/v1/webhooks/{id}` shows.
const LOG_SHOWN: usize = 100;

/// `GET /api/v1/webhooks/{id}` (managers): the hook, its delivery log (newest first) and the
/// deliveries waiting.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    state.cluster.catalog_barrier().await?;
    let found = state
        .cluster
        .read_catalog(move |s| {
            let Some(h) = webhooks::hook(s, id)? else {
                return Ok(None);
            };
            Ok(Some((
                h,
                webhooks::log(s, id, LOG_SHOWN)?,
                webhooks::queue(s, id, 20)?,
            )))
        })
        .await?;
    let (h, log, queue) = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_webhook",
            format!("no webhook {id}"),
        )
    })?;
    let waiting: Vec<Value> = queue
        .iter()
        .map(|d| {
            json!({
                "delivery": format!("{}-{}", d.hook, d.seq),
                "event": d.event,
                "created_ms": d.created_ms,
                "attempts": d.attempts,
                "next_ms": d.next_ms,
            })
        })
        .collect();
    let mut v = view(&h);
    v["log"] = json!(log);
    v["waiting"] = json!(waiting);
    Ok(Json(v))
}

/// `DELETE /api/v1/webhooks/{id}` (managers): the hook, its queue and its log.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    match propose(&state, WebhookOp::Delete { id }).await? {
        WebhookOutcome::Deleted => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(other)),
    }
}

/// How often the sender looks for due deliveries.
const TICK: Duration = Duration::from_millis(250);
/// Deliveries in flight at once per node.
const IN_FLIGHT: usize = 16;
/// A claim's life: an attempt's timeout and time to record it.
const CLAIM_MS: u64 = 15_000;
/// Connecting, sending and reading the status line, at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs on every node; while it leads the catalogue, turns gathered saves into deliveries and
/// sends due deliveries, at most [`IN_FLIGHT`] at once and one per hook (a hook's deliveries
/// go in order).
pub async fn deliver(state: AppState) {
    let busy: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let tls = Arc::new(tls_config());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !state.cluster.leads(tessera_raft::placement::META_GROUP) {
            continue;
        }
        let now = now_ms();
        let due = state
            .cluster
            .read_catalog(move |s| {
                let flush = webhooks::batches_due(s, now.saturating_sub(webhooks::BATCH_MS))?;
                let mut due = Vec::new();
                for h in webhooks::hooks(s)? {
                    let first = webhooks::queue(s, h.id, 1)?.into_iter().next();
                    if let Some(d) = first.filter(|d| {
                        d.next_ms <= now && d.claim.is_none_or(|(_, until)| until <= now)
                    }) {
                        due.push((h, d));
                    }
                }
                Ok((flush, due))
            })
            .await;
        let (flush, due) = match due {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "reading webhook deliveries failed");
                continue;
            }
        };
        if flush {
            let op = CatalogOp::Webhook(WebhookOp::FlushBatches { at_ms: now });
            if let Err(e) = state.cluster.catalog(op).await {
                tracing::warn!(error = %e, "flushing webhook batches failed");
            }
        }
        for (hook, delivery) in due {
            let fresh = busy.lock().map(|mut b| b.insert(hook.id)).unwrap_or(false);
            if !fresh {
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                if let Ok(mut b) = busy.lock() {
                    b.remove(&hook.id);
                }
                break;
            };
            let (state, busy, tls) = (state.clone(), busy.clone(), tls.clone());
            tokio::spawn(async move {
                let id = hook.id;
                attempt(&state, &tls, hook, delivery).await;
                if let Ok(mut b) = busy.lock() {
                    b.remove(&id);
                }
                drop(permit);
            });
        }
    }
}

/// Claims a delivery, sends it, records what happened.
async fn attempt(
    state: &AppState,
    tls: &tokio_rustls::rustls::ClientConfig,
    hook: Hook,
    delivery: Delivery,
) {
    let node = state.cluster.me();
    let at_ms = now_ms();
    let claim = WebhookOp::Claim {
        id: hook.id,
        seq: delivery.seq,
        node,
        at_ms,
        until_ms: at_ms + CLAIM_MS,
    };
    let claimed = match state.cluster.catalog(CatalogOp::Webhook(claim)).await {
        Ok(CatalogOutcome::Webhook(WebhookOutcome::Claimed(d))) => *d,
        Ok(_) => return,
        Err(e) => {
            tracing::debug!(error = %e, "claiming a webhook delivery failed");
            return;
        }
    };
    let started = Instant::now();
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, post(tls, &hook, &claimed)).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status, error) = match result {
        Ok(Ok(status)) if (300..400).contains(&status) => (
            Some(status),
            Some("redirect not followed: a webhook's URL is where it is delivered".to_string()),
        ),
        Ok(Ok(status)) => (Some(status), None),
        Ok(Err(e)) => (None, Some(e)),
        Err(_) => (
            None,
            Some(format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())),
        ),
    };
    metrics::counter!(
        "tessera_webhook_attempts_total",
        "outcome" => if status.is_some_and(|s| (200..300).contains(&s)) { "delivered" } else { "failed" }
    )
    .increment(1);
    let op = WebhookOp::Attempted {
        id: hook.id,
        seq: claimed.seq,
        node,
        at_ms: now_ms(),
        status,
        error,
        latency_ms,
    };
    if let Err(e) = state.cluster.catalog(CatalogOp::Webhook(op)).await {
        // The claim expires and the next attempt sends it again (at least once).
        tracing::warn!(error = %e, hook = hook.id, "recording a webhook attempt failed");
    }
}

/// The signature header's value for `body` sent at `t_ms` with `secret` (hex).
pub fn signature(secret: &str, t_ms: u64, body: &[u8]) -> Result<String, String> {
    let key = hex::decode(secret).map_err(|e| e.to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "t={t_ms},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Trust for HTTPS receivers: the system's CA bundle (Debian's `ca-certificates`); without
/// one, HTTPS deliveries fail with an error saying so in the hook's log.
fn tls_config() -> tokio_rustls::rustls::ClientConfig {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    if let Ok(pem) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
    }
    tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One POST of `delivery` to `hook`'s URL; the receiver's status.
async fn post(
    tls: &tokio_rustls::rustls::ClientConfig,
    hook: &Hook,
    delivery: &Delivery,
) -> Result<u16, String> {
    let data: Value = serde_json::from_str(&delivery.data).unwrap_or(Value::Null);
    let id = format!("{}-{}", delivery.hook, delivery.seq);
    let body = json!({
        "id": id,
        "event": delivery.event,
        "created_ms": delivery.created_ms,
        "data": data,
    })
    .to_string();
    let sent_ms = now_ms();
    let signed = signature(&hook.secret, sent_ms, body.as_bytes())?;
    let (host, port) = host_port(&hook.url).ok_or("the URL has no valid host and port")?;
    let uri: hyper::Uri = hook.url.parse().map_err(|e| format!("url: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "Tessera-Webhooks/1")
        .header("tessera-signature", signed)
        .header("tessera-event", delivery.event.name())
        .header("tessera-delivery", &id)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    if hook.url.starts_with("https://") {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()));
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        send(stream, request).await
    } else {
        send(tcp, request).await
    }
}

async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    // The body is not needed: the status is all a delivery records; the connection goes.
    let status = response.map(|r| r.status().as_u16());
    driver.abort();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_host_and_port() {
        assert_eq!(
            host_port("http://a.example/x"),
            Some(("a.example".into(), 80))
        );
        assert_eq!(
            host_port("https://A.example:8443/x?y"),
            Some(("a.example".into(), 8443))
        );
        assert_eq!(host_port("http://[::1]:9000/"), Some(("::1".into(), 9000)));
        assert_eq!(host_port("http://[::1]/"), Some(("::1".into(), 80)));
        assert_eq!(host_port("http://a.example:99999/"), None);
    }

    #[test]
    fn signatures_cover_the_time_and_the_body() {
        let secret = "00".repeat(32);
        let a = signature(&secret, 1, b"{}").expect("sign");
        assert!(a.starts_with("t=1,v1="));
        assert_ne!(a, signature(&secret, 2, b"{}").expect("sign"));
        assert_ne!(
            a.split(',').nth(1),
            signature(&secret, 1, b"{ }")
                .expect("sign")
                .split(',')
                .nth(1)
        );
    }
}
