//! The OAuth 2.0 token endpoint (RFC 6749: password and refresh_token grants), revocation
//! (RFC 7009) and long-lived API tokens for scripts.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use tessera_raft::catalog::{random, CatalogOp, Role};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::password;
use crate::token::{self, Claims, Kind};
use crate::AppState;

const REFRESH_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
const API_TTL_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// A hash to verify against when the user does not exist (computed once).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| password::hash("tessera-dummy-password").unwrap_or_default())
}

/// An error in RFC 6749 §5.2 form.
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code, "error_description": self.description }));
        (self.status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> OAuthError {
        OAuthError {
            status: e.status,
            code: "server_error",
            description: e.message,
        }
    }
}

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

fn sign(
    state: &AppState,
    sub: &str,
    role: Role,
    epoch: u64,
    kind: Kind,
    ttl: u64,
) -> Result<(String, Claims), ApiError> {
    let key = state.cluster.directory().key().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_initialised",
            "the cluster has no signing key yet",
        )
    })?;
    let id: [u8; 16] = random()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let claims = Claims {
        id: hex::encode(id),
        sub: sub.to_string(),
        role,
        kind,
        exp: token::now_ms() + ttl,
        epoch,
    };
    Ok((token::issue(&key, &claims), claims))
}

/// `POST /oauth/token` (form-encoded).
pub async fn token(
    State(state): State<AppState>,
    Form(req): Form<TokenRequest>,
) -> Result<Response, OAuthError> {
    let (user, refresh) = match req.grant_type.as_deref() {
        Some("password") => {
            let (Some(username), Some(pass)) = (req.username, req.password) else {
                return Err(OAuthError::new(
                    "invalid_request",
                    "username and password are required",
                ));
            };
            // Read-your-writes: a user created a moment ago through another node logs in here.
            state
                .cluster
                .catalog_barrier()
                .await
                .map_err(ApiError::from)?;
            let bad = || OAuthError::new("invalid_grant", "unknown user or wrong password");
            let user = state
                .cluster
                .directory()
                .user(&username)
                .filter(|u| !u.disabled);
            let stored = user.as_ref().map(|u| u.password_hash.clone());
            let ok = tokio::task::spawn_blocking(move || match stored {
                Some(stored) => password::verify(&pass, &stored),
                // Unknown user: spend the same time, so timing does not reveal which names exist.
                None => {
                    password::verify(&pass, dummy_hash());
                    false
                }
            })
            .await
            .unwrap_or(false);
            match user {
                Some(user) if ok => (user, None),
                _ => return Err(bad()),
            }
        }
        Some("refresh_token") => {
            let presented = req
                .refresh_token
                .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
            let claims = crate::auth::checked(&state, &presented)
                .await
                .map_err(|e| OAuthError::new("invalid_grant", e.message))?;
            if claims.kind != Kind::Refresh {
                return Err(OAuthError::new("invalid_grant", "not a refresh token"));
            }
            let user = state
                .cluster
                .directory()
                .user(&claims.sub)
                .ok_or_else(|| OAuthError::new("invalid_grant", "the user no longer exists"))?;
            (user, Some(presented))
        }
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            ))
        }
        None => return Err(OAuthError::new("invalid_request", "grant_type is required")),
    };
    let (access, _) = sign(
        &state,
        &user.username,
        user.role,
        user.epoch,
        Kind::Access,
        state.limits.access_token_ttl_ms,
    )?;
    let refresh = match refresh {
        Some(existing) => existing,
        None => {
            sign(
                &state,
                &user.username,
                user.role,
                user.epoch,
                Kind::Refresh,
                REFRESH_TTL_MS,
            )?
            .0
        }
    };
    let body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": state.limits.access_token_ttl_ms / 1000,
        "refresh_token": refresh,
        "role": user.role,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[derive(Deserialize)]
pub struct RevokeRequest {
    token: Option<String>,
}

/// `POST /oauth/revoke` (RFC 7009): revokes the token across the cluster. Answers 200 for
/// tokens that are unknown or already invalid, as the RFC asks.
pub async fn revoke(
    State(state): State<AppState>,
    Form(req): Form<RevokeRequest>,
) -> Result<Response, OAuthError> {
    let presented = req
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    if state.cluster.directory().key().is_none() {
        state
            .cluster
            .catalog_barrier()
            .await
            .map_err(ApiError::from)?;
    }
    let Some(key) = state.cluster.directory().key() else {
        return Ok(StatusCode::OK.into_response());
    };
    if let Ok(claims) = token::verify(&key, &presented, token::now_ms()) {
        if let Some(id) = claims.id_bytes() {
            let op = CatalogOp::RevokeToken {
                id,
                expires_ms: claims.exp,
            };
            crate::idempotency::catalog(&state, op)
                .await
                .map_err(ApiError::from)?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /api/v1/me/tokens`: a long-lived API token for scripts, revocable with /oauth/revoke.
pub async fn api_token(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let user = state
        .cluster
        .directory()
        .user(&principal.username)
        .ok_or_else(|| crate::auth::unauthorized("the user no longer exists"))?;
    let (token, claims) = sign(
        &state,
        &user.username,
        user.role,
        user.epoch,
        Kind::Api,
        API_TTL_MS,
    )?;
    let body = json!({ "token": token, "id": claims.id, "expires_ms": claims.exp });
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// How often the catalogue leader forgets revocations of expired tokens.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs on every node; while it leads the catalogue, proposes dropping revocations of tokens
/// that have expired (an expired token is refused as expired anyway), so the revocation list
/// every node keeps in memory stays as small as the tokens still alive.
pub async fn prune_revocations(state: AppState) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        if !state.cluster.leads(tessera_raft::placement::META_GROUP) {
            continue;
        }
        // A minute of slack for clocks that disagree.
        let before_ms = token::now_ms().saturating_sub(60_000);
        if let Err(e) = state
            .cluster
            .catalog(CatalogOp::PruneRevoked { before_ms })
            .await
        {
            tracing::warn!(error = %e, "pruning expired revocations failed");
        }
    }
}
