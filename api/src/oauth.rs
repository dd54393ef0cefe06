//! The OAuth 2.0 token endpoint (RFC 6749: password and refresh_token grants, refresh tokens
//! rotated with reuse detection as RFC 9700 §4.14 asks), revocation (RFC 7009) and long-lived
//! API tokens for scripts. Every grant belongs to a session (`tessera_domain::sessions`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tessera_domain::catalog::{Account, CatalogOp, CatalogOutcome};
use tessera_domain::sessions::{Refreshed, Session, SessionKind};
use tessera_raft::random;

use crate::auth::Principal;
use crate::error::{unexpected, ApiError};
use crate::password;
use crate::sessions::ClientInfo;
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
    /// Seconds to wait before trying again (429, 503).
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// 429: too many failed sign-ins for this name or from this address (see
    /// `login_throttle`); `Retry-After` and `retry_after` say when to try again.
    fn throttled(wait: std::time::Duration) -> OAuthError {
        let seconds = crate::login_throttle::retry_after_secs(wait);
        OAuthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_attempts",
            description: format!(
                "too many failed sign-ins for this user or from this address; try again in {seconds} s"
            ),
            retry_after: Some(seconds),
        }
    }
}

/// The JSON body of an [`OAuthError`] (RFC 6749 §5.2), published in the OpenAPI document as
/// `components/schemas/OAuthError`.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "OAuthError")]
pub struct OAuthErrorBody {
    pub error: String,
    pub error_description: String,
    /// Seconds to wait before trying again (429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody {
            error: self.code.to_string(),
            error_description: self.description,
            retry_after: self.retry_after,
        };
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response();
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> OAuthError {
        OAuthError {
            status: e.status,
            code: "server_error",
            description: e.message,
            retry_after: None,
        }
    }
}

/// The password grant needs `username` and `password`, the refresh grant `refresh_token`
/// (RFC 6749 §4.3.2, §6); the schema says so, the handler answers 400 `invalid_request`.
#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(extend("oneOf" = [
    {"properties": {"grant_type": {"const": "password"}}, "required": ["grant_type", "username", "password"]},
    {"properties": {"grant_type": {"const": "refresh_token"}}, "required": ["grant_type", "refresh_token"]}
]))]
pub struct TokenRequest {
    #[schemars(extend("enum" = ["password", "refresh_token"]))]
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

/// Signs a token of `kind` for `account` in `session`; refresh tokens carry their number `seq`.
fn sign(
    state: &AppState,
    account: &Account,
    session: &Session,
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
        sub: account.user.username.clone(),
        uid: Some(account.id),
        sid: Some(hex::encode(session.id)),
        seq: if kind == Kind::Refresh {
            session.refresh_seq
        } else {
            0
        },
        role: account.user.role,
        kind,
        exp: token::now_ms() + ttl,
        epoch: account.user.epoch,
    };
    Ok((token::issue(&key, &claims), claims))
}

/// The account named `name` with its id, giving ids to users from before ids first (the
/// catalogue leader does that within seconds of an upgrade; a sign-in in between does it now).
async fn account(state: &AppState, name: &str) -> Result<Option<Account>, ApiError> {
    let found = state.cluster.directory().user(name);
    if found.as_ref().is_some_and(|a| a.id == 0) {
        state.cluster.catalog(CatalogOp::AssignUserIds).await?;
        state.cluster.catalog_barrier().await?;
        return Ok(state.cluster.directory().user(name));
    }
    Ok(found)
}

/// Opens a session of `kind` for `account`, valid for `ttl` ms from now.
pub(crate) async fn open_session(
    state: &AppState,
    account: &Account,
    kind: SessionKind,
    ttl: u64,
    client: ClientInfo,
) -> Result<Session, ApiError> {
    let now = token::now_ms();
    let session = Session {
        id: random().map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?,
        user_id: account.id,
        username: account.user.username.clone(),
        kind,
        epoch: account.user.epoch,
        created_ms: now,
        expires_ms: now + ttl,
        last_used_ms: now,
        refresh_seq: 0,
        client: client.agent,
        address: client.address,
        revoked: None,
    };
    match crate::idempotency::catalog(state, CatalogOp::OpenSession(session)).await? {
        CatalogOutcome::Session(session) => Ok(session),
        CatalogOutcome::Conflict(m) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", m)),
        other => Err(unexpected(other)),
    }
}

/// `POST /oauth/token` (form-encoded): the password grant opens a session; the refresh grant
/// rotates the session's refresh token, and a refresh token presented a second time ends the
/// session (RFC 9700 §4.14: one of the two holders stole it).
pub async fn token(
    State(state): State<AppState>,
    client: ClientInfo,
    Form(req): Form<TokenRequest>,
) -> Result<Response, OAuthError> {
    let (account, session) = match req.grant_type.as_deref() {
        Some("password") => password_grant(&state, req, client).await?,
        Some("refresh_token") => refresh_grant(&state, req).await?,
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            ))
        }
        None => return Err(OAuthError::new("invalid_request", "grant_type is required")),
    };
    let ttl = state.limits.access_token_ttl_ms;
    let (access, _) = sign(&state, &account, &session, Kind::Access, ttl)?;
    let (refresh, _) = sign(&state, &account, &session, Kind::Refresh, REFRESH_TTL_MS)?;
    let body = TokenAnswer {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: ttl / 1000,
        refresh_token: refresh,
        role: account.user.role,
        session: hex::encode(session.id),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn password_grant(
    state: &AppState,
    req: TokenRequest,
    client: ClientInfo,
) -> Result<(Account, Session), OAuthError> {
    let (Some(username), Some(pass)) = (req.username, req.password) else {
        return Err(OAuthError::new(
            "invalid_request",
            "username and password are required",
        ));
    };
    // Before anything costs time: a throttled name or address is refused unchecked.
    let throttle = &state.login_throttle;
    throttle
        .admit(&username, &client.address, std::time::Instant::now())
        .map_err(|wait| {
            metrics::counter!("tessera_login_throttled_total").increment(1);
            OAuthError::throttled(wait)
        })?;
    // Read-your-writes: a user created a moment ago through another node logs in here.
    state
        .cluster
        .catalog_barrier()
        .await
        .map_err(ApiError::from)?;
    let bad = || OAuthError::new("invalid_grant", "unknown user or wrong password");
    let found = account(state, &username)
        .await?
        .filter(|a| !a.user.disabled);
    let stored = found.as_ref().map(|a| a.user.password_hash.clone());
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
    let account = match found {
        Some(account) if ok => account,
        _ => return Err(bad()),
    };
    throttle.succeeded(&username, &client.address);
    let session = open_session(state, &account, SessionKind::SignIn, REFRESH_TTL_MS, client)
        .await
        .map_err(|e| match e.status {
            StatusCode::CONFLICT => OAuthError::new("invalid_grant", e.message),
            _ => OAuthError::from(e),
        })?;
    Ok((account, session))
}

async fn refresh_grant(
    state: &AppState,
    req: TokenRequest,
) -> Result<(Account, Session), OAuthError> {
    let presented = req
        .refresh_token
        .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
    let claims = crate::auth::checked(state, &presented)
        .await
        .map_err(|e| OAuthError::new("invalid_grant", e.message))?;
    if claims.kind != Kind::Refresh {
        return Err(OAuthError::new("invalid_grant", "not a refresh token"));
    }
    let id = claims
        .session_bytes()
        .ok_or_else(|| OAuthError::new("invalid_grant", "not a refresh token"))?;
    let now_ms = token::now_ms();
    let op = CatalogOp::RefreshSession {
        id,
        seq: claims.seq,
        now_ms,
        expires_ms: now_ms + REFRESH_TTL_MS,
    };
    let session = match state.cluster.catalog(op).await.map_err(ApiError::from)? {
        CatalogOutcome::Refreshed(Refreshed::Rotated(session)) => session,
        CatalogOutcome::Refreshed(Refreshed::Reused(session)) => {
            metrics::counter!("tessera_refresh_token_reuse_total").increment(1);
            tracing::warn!(
                target: "tessera::audit",
                user = %session.username,
                session = %hex::encode(session.id),
                "a rotated refresh token was presented again: the session is revoked"
            );
            return Err(OAuthError::new(
                "invalid_grant",
                "this refresh token was already used, so it may have been stolen: its session is signed out; sign in again",
            ));
        }
        CatalogOutcome::Refreshed(Refreshed::Refused(reason)) => {
            return Err(OAuthError::new("invalid_grant", reason))
        }
        other => return Err(OAuthError::from(unexpected(other))),
    };
    // The rotation checked the user's id and epoch; the local view has applied it.
    let account = state
        .cluster
        .directory()
        .user(&session.username)
        .filter(|a| a.id == session.user_id)
        .ok_or_else(|| OAuthError::new("invalid_grant", "the user no longer exists"))?;
    Ok((account, session))
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct TokenAnswer {
    access_token: String,
    /// `Bearer`.
    token_type: String,
    /// Seconds the access token lives.
    expires_in: u64,
    refresh_token: String,
    role: tessera_domain::catalog::Role,
    /// The session's id (32 hex digits), as `/api/v1/me/sessions` lists it.
    session: String,
}

/// A new API token: shown once.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ApiTokenAnswer {
    token: String,
    /// The token's own id.
    id: String,
    /// Its session's id (32 hex digits).
    session: String,
    /// When it expires (Unix milliseconds).
    expires_ms: u64,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct RevokeRequest {
    /// Required (RFC 7009 §2.1); optional in the type so that its absence is answered 400
    /// `invalid_request` in RFC 6749 form.
    #[schemars(required)]
    token: Option<String>,
}

/// `POST /oauth/revoke` (RFC 7009): revokes the token across the cluster. A refresh or API
/// token ends its whole session, so the access tokens minted from it stop working too; an
/// access token is revoked alone. Answers 200 for tokens that are unknown or already invalid,
/// as the RFC asks.
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
    let Ok(claims) = token::verify(&key, &presented, token::now_ms()) else {
        return Ok(StatusCode::OK.into_response());
    };
    let op = match (claims.kind, claims.session_bytes(), claims.id_bytes()) {
        (Kind::Refresh | Kind::Api, Some(id), _) => CatalogOp::RevokeSession {
            id,
            user_id: None,
            at_ms: token::now_ms(),
            reason: "revoked by its holder".into(),
        },
        (_, _, Some(id)) => CatalogOp::RevokeToken {
            id,
            expires_ms: claims.exp,
        },
        _ => return Ok(StatusCode::OK.into_response()),
    };
    crate::idempotency::catalog(&state, op)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /api/v1/me/tokens`: a long-lived API token for scripts, in a session of its own (listed
/// with the user's sessions; revocable there or with /oauth/revoke).
pub async fn api_token(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
) -> Result<Response, ApiError> {
    let account = principal.account(&state)?;
    let session = open_session(&state, &account, SessionKind::ApiToken, API_TTL_MS, client).await?;
    let (token, claims) = sign(&state, &account, &session, Kind::Api, API_TTL_MS)?;
    let body = ApiTokenAnswer {
        token,
        id: claims.id,
        session: hex::encode(session.id),
        expires_ms: claims.exp,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// How often the catalogue leader forgets what has expired.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs on every node; while it leads the catalogue, proposes dropping revocations of tokens
/// that have expired (an expired token is refused as expired anyway), so the revocation list
/// every node keeps in memory stays as small as the tokens still alive, and the outcomes of
/// requests older than a retry could be (`tessera_domain::requests`), so the catalogue does
/// not grow with every request ever made.
pub async fn prune_catalogue(state: AppState) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        if !state.cluster.leads(tessera_raft::placement::META_GROUP) {
            continue;
        }
        // A minute of slack for clocks that disagree.
        let before_ms = token::now_ms().saturating_sub(60_000);
        let requests_before_ms = before_ms.saturating_sub(tessera_domain::requests::RETENTION_MS);
        for op in [
            CatalogOp::PruneRevoked { before_ms },
            CatalogOp::PruneRequests {
                before_ms: requests_before_ms,
            },
        ] {
            if let Err(e) = state.cluster.catalog(op).await {
                tracing::warn!(error = %e, "pruning the catalogue failed");
            }
        }
    }
}
