//! `/api/v1/me/sessions`, `/api/v1/users/{name}/sessions` and `/api/v1/me/password`: the
//! sessions a user is signed in with (each sign-in and each API token), where and when each was
//! opened and last refreshed, and ending them — one, all ("sign out everywhere"), or all but the
//! current one when the user changes their password.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tessera_domain::catalog::{Account, CatalogOp, CatalogOutcome, Role};
use tessera_domain::sessions::{self, Session, SessionKind};

use crate::auth::Principal;
use crate::error::{internal, unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::{password, token, AppState};

/// Where a request comes from, as a session records it: the `User-Agent` and the peer address.
pub struct ClientInfo {
    pub agent: String,
    pub address: String,
}

/// Longest `User-Agent` kept with a session.
const AGENT_MAX: usize = 200;

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let agent: String = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(AGENT_MAX)
            .collect();
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip().to_string())
            .unwrap_or_default();
        Ok(ClientInfo { agent, address })
    }
}

/// A session as the API shows it.
#[derive(Serialize)]
pub struct SessionView {
    id: String,
    kind: SessionKind,
    created_ms: u64,
    last_used_ms: u64,
    expires_ms: u64,
    client: String,
    address: String,
    /// Whether the request was made with a token of this session.
    current: bool,
}

/// The JSON Schema of [`SessionView`] (the OpenAPI document publishes it; a unit test checks
/// that a serialized view conforms).
pub fn session_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "kind", "created_ms", "last_used_ms", "expires_ms", "client", "address", "current"],
        "properties": {
            "id": { "type": "string", "description": "32 hex digits" },
            "kind": { "type": "string", "enum": ["sign_in", "api_token"] },
            "created_ms": { "type": "integer", "description": "ms since the Unix epoch" },
            "last_used_ms": { "type": "integer", "description": "opening or last refresh grant" },
            "expires_ms": { "type": "integer" },
            "client": { "type": "string", "description": "User-Agent when opened" },
            "address": { "type": "string", "description": "peer address when opened" },
            "current": { "type": "boolean", "description": "the session of the calling token" }
        }
    })
}

/// The schema of a session list.
pub fn session_list_schema() -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "properties": { "items": { "type": "array", "items": session_schema() } }
    })
}

fn view(session: &Session, current: &[u8; 16]) -> SessionView {
    SessionView {
        id: hex::encode(session.id),
        kind: session.kind,
        created_ms: session.created_ms,
        last_used_ms: session.last_used_ms,
        expires_ms: session.expires_ms,
        client: session.client.clone(),
        address: session.address.clone(),
        current: &session.id == current,
    }
}

fn no_such_user(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_user",
        format!("no user {name}"),
    )
}

fn no_such_session() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_session",
        "no such session of this user",
    )
}

fn parse_id(text: &str) -> Result<[u8; 16], ApiError> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_session_id",
            "session ids are 32 hex digits",
        )
    })?;
    Ok(id)
}

/// The user named `name` as this node knows them after a catalogue barrier.
async fn account(state: &AppState, name: &str) -> Result<Account, ApiError> {
    state.cluster.catalog_barrier().await?;
    state
        .cluster
        .directory()
        .user(name)
        .ok_or_else(|| no_such_user(name))
}

/// The live sessions of `account`, newest first.
async fn live(state: &AppState, account: &Account, current: &[u8; 16]) -> Result<Value, ApiError> {
    let (id, epoch) = (account.id, account.user.epoch);
    let mut all = state
        .cluster
        .read_catalog(move |store| sessions::of_user(store, id))
        .await?;
    let now = token::now_ms();
    all.retain(|s| s.is_live(id, epoch, now));
    all.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
    let items: Vec<SessionView> = all.iter().map(|s| view(s, current)).collect();
    Ok(json!({ "items": items }))
}

async fn end_one(
    state: &AppState,
    account: &Account,
    id: [u8; 16],
    reason: &str,
) -> Result<Response, ApiError> {
    let op = CatalogOp::RevokeSession {
        id,
        user_id: Some(account.id),
        at_ms: token::now_ms(),
        reason: reason.into(),
    };
    match crate::idempotency::catalog(state, op).await? {
        CatalogOutcome::SessionsEnded(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        CatalogOutcome::NotFound(_) => Err(no_such_session()),
        other => Err(unexpected(other)),
    }
}

async fn end_all(state: &AppState, account: &Account, reason: &str) -> Result<Response, ApiError> {
    let op = CatalogOp::RevokeUserSessions {
        user_id: account.id,
        except: None,
        at_ms: token::now_ms(),
        reason: reason.into(),
    };
    match crate::idempotency::catalog(state, op).await? {
        CatalogOutcome::SessionsEnded(ended) => {
            Ok(Json(json!({ "ended": ended.len() })).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// The caller's own account (the token was checked, so the id matches).
async fn me(state: &AppState, principal: &Principal) -> Result<Account, ApiError> {
    let account = account(state, &principal.username).await?;
    if account.id != principal.user_id {
        return Err(crate::auth::unauthorized("the user no longer exists"));
    }
    Ok(account)
}

/// An admin's view of `name`, or the user's own.
async fn managed(state: &AppState, principal: &Principal, name: &str) -> Result<Account, ApiError> {
    if principal.username == name {
        return me(state, principal).await;
    }
    principal.require(Role::Admin)?;
    account(state, name).await
}

/// `GET /api/v1/me/sessions`.
pub async fn list_mine(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let account = me(&state, &principal).await?;
    Ok(Json(live(&state, &account, &principal.session).await?))
}

/// `DELETE /api/v1/me/sessions/{id}`: signs one of the caller's sessions out.
pub async fn end_mine(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let account = me(&state, &principal).await?;
    end_one(&state, &account, id, "signed out by the user").await
}

/// `DELETE /api/v1/me/sessions`: signs out everywhere, this session included.
pub async fn end_all_mine(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let account = me(&state, &principal).await?;
    end_all(&state, &account, "signed out everywhere by the user").await
}

/// `GET /api/v1/users/{name}/sessions` (admins, or the user themself).
pub async fn list_of(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = managed(&state, &principal, &name).await?;
    Ok(Json(live(&state, &account, &principal.session).await?))
}

/// `DELETE /api/v1/users/{name}/sessions/{id}` (admins, or the user themself).
pub async fn end_of(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let account = managed(&state, &principal, &name).await?;
    let id = parse_id(&id)?;
    end_one(&state, &account, id, "signed out by an admin").await
}

/// `DELETE /api/v1/users/{name}/sessions` (admins, or the user themself).
pub async fn end_all_of(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let account = managed(&state, &principal, &name).await?;
    end_all(&state, &account, "signed out everywhere by an admin").await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    #[schemars(length(min = 8, max = 1024))]
    new_password: String,
}

/// `PUT /api/v1/me/password`: the caller changes their own password, proving the current one.
/// Every other session of theirs ends; this one stays signed in. Wrong current passwords count
/// towards the same back-off as sign-ins (`login_throttle`): a stolen access token must not
/// become a way to guess the password it does not reveal.
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    crate::users::check_password(&change.new_password)?;
    let account = me(&state, &principal).await?;
    let name = account.user.username.clone();
    let throttle = &state.login_throttle;
    if let Err(wait) = throttle.admit(&name, &client.address, std::time::Instant::now()) {
        return Ok(crate::login_throttle::refusal(wait));
    }
    let stored = account.user.password_hash.clone();
    let PasswordChange {
        current_password,
        new_password,
    } = change;
    let hashed = tokio::task::spawn_blocking(move || {
        password::verify(&current_password, &stored).then(|| password::hash(&new_password))
    })
    .await
    .map_err(internal)?;
    let hash = match hashed {
        None => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "current_password: does not match",
            ))
        }
        Some(Err(e)) => return Err(internal(e)),
        Some(Ok(hash)) => hash,
    };
    throttle.succeeded(&name, &client.address);
    let op = CatalogOp::SetOwnPassword {
        user_id: account.id,
        username: account.user.username.clone(),
        password_hash: hash,
        keep_session: principal.session,
        at_ms: token::now_ms(),
    };
    match crate::idempotency::catalog(&state, op).await? {
        CatalogOutcome::PasswordSet { ended, .. } => {
            Ok(Json(json!({ "ended_sessions": ended.len() })).into_response())
        }
        CatalogOutcome::NotFound(m) => Err(crate::auth::unauthorized(m)),
        other => Err(unexpected(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks `value` against the subset of JSON Schema (2020-12, OpenAPI 3.1's) the written
    /// response schemas use (also by `annotation_sets`' review-stats test).
    pub(crate) fn conforms(value: &Value, schema: &Value) -> Result<(), String> {
        // `"type": ["integer", "null"]`: null, or the other type.
        let ty = match schema["type"].as_array() {
            Some(types) if value.is_null() && types.contains(&json!("null")) => return Ok(()),
            Some(types) => types.iter().find(|t| *t != "null").and_then(Value::as_str),
            None => schema["type"].as_str(),
        }
        .unwrap_or("");
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => return Err(format!("schema type {ty} not handled")),
        };
        if !ok {
            return Err(format!("{value} is not {ty}"));
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return Err(format!("{value} not in {allowed:?}"));
            }
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or("");
            if value.get(key).is_none() {
                return Err(format!("{key} missing"));
            }
        }
        if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
            for (key, v) in obj {
                let sub = props.get(key).ok_or(format!("{key} not in the schema"))?;
                conforms(v, sub).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for v in arr {
                conforms(v, items)?;
            }
        }
        Ok(())
    }

    #[test]
    fn session_views_match_their_published_schema() {
        let session = Session {
            id: [4; 16],
            user_id: 7,
            username: "zed".into(),
            kind: SessionKind::ApiToken,
            epoch: 0,
            created_ms: 1,
            expires_ms: 3,
            last_used_ms: 2,
            refresh_seq: 0,
            client: "curl/8".into(),
            address: "127.0.0.1".into(),
            revoked: None,
        };
        let list = json!({ "items": [view(&session, &[4; 16]), view(&session, &[0; 16])] });
        conforms(&list, &session_list_schema()).expect("conforms");
        // The checker is not vacuous: a missing field and a wrong type are caught.
        let mut broken = serde_json::to_value(view(&session, &[0; 16])).expect("json");
        broken["current"] = json!("yes");
        assert!(conforms(&broken, &session_schema()).is_err());
        broken.as_object_mut().expect("object").remove("current");
        assert!(conforms(&broken, &session_schema()).is_err());
    }
}
