//! Who is calling: the `Principal` extractor and role checks.
//!
//! A request authenticates with `Authorization: Bearer <token>`, or, for `GET`/`HEAD` from a
//! browser, the `tessera_token` cookie (never for state-changing methods, so a cross-site form
//! cannot act with the cookie). Roles are ordered annotator < reviewer < manager < admin.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use tessera_domain::catalog::{Account, Role};

use crate::error::ApiError;
use crate::token::{self, Kind, TokenError};
use crate::AppState;

/// The cookie the web UI keeps its access token in.
pub const COOKIE: &str = "tessera_token";

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub username: String,
    pub user_id: u64,
    pub role: Role,
    /// The session the token belongs to.
    pub session: [u8; 16],
}

impl Principal {
    /// The caller's account in this node's directory: the same user, not a namesake created
    /// after theirs was deleted (ids are never reused), else 401.
    pub fn account(&self, state: &AppState) -> Result<Account, ApiError> {
        state
            .cluster
            .directory()
            .user(&self.username)
            .filter(|a| a.id == self.user_id)
            .ok_or_else(|| unauthorized("the user no longer exists"))
    }

    /// Refuses (403) callers whose role is below `least`.
    pub fn require(&self, least: Role) -> Result<(), ApiError> {
        if self.role >= least {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {} role or higher; you are {}",
                least.as_str(),
                self.role.as_str()
            ),
        ))
    }
}

pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The token a request carries, if any.
pub fn request_token<'a>(method: &Method, headers: &'a HeaderMap) -> Option<&'a str> {
    bearer(headers).or_else(|| match *method {
        Method::GET | Method::HEAD => cookie(headers),
        _ => None,
    })
}

/// Checks a token; if this node's catalogue view may be behind the token (a key, user or epoch
/// it has not applied yet) or was not confirmed current recently, waits for the catalogue once
/// and checks again. Tokens that are simply bad never cost a barrier.
pub async fn checked(state: &AppState, token: &str) -> Result<token::Claims, ApiError> {
    match token::check(state.cluster.directory(), token) {
        Err(TokenError::Behind | TokenError::NoKey | TokenError::Stale) => {
            state.cluster.catalog_barrier().await?;
            after_barrier(token::check(state.cluster.directory(), token))
        }
        other => other.map_err(|e| unauthorized(e.to_string())),
    }
}

/// The answer to a token checked again after a catalogue barrier. A view still behind or
/// unconfirmed then says nothing about the token — the barrier's retries outlasted the trust
/// window during a fault, or the key has not arrived — so the client hears 503 and retries,
/// never a 401 that tells it to throw a good token away.
fn after_barrier(result: Result<token::Claims, TokenError>) -> Result<token::Claims, ApiError> {
    match result {
        Err(e @ (TokenError::Behind | TokenError::NoKey | TokenError::Stale)) => {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; retry"),
            ))
        }
        other => other.map_err(|e| unauthorized(e.to_string())),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Checked already by the route's access check (`crate::access::enforce`).
        if let Some(checked) = parts.extensions.get::<Principal>() {
            return Ok(checked.clone());
        }
        let token = request_token(&parts.method, &parts.headers)
            .ok_or_else(|| unauthorized("send a bearer token (POST /oauth/token issues one)"))?;
        let claims = checked(state, token).await?;
        if claims.kind == Kind::Refresh {
            return Err(unauthorized(
                "refresh tokens are only accepted by /oauth/token",
            ));
        }
        let (Some(user_id), Some(session)) = (claims.uid, claims.session_bytes()) else {
            return Err(unauthorized(TokenError::Outdated.to_string()));
        };
        Ok(Principal {
            username: claims.sub,
            user_id,
            role: claims.role,
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn an_unconfirmed_view_after_the_barrier_is_a_503_and_a_bad_token_a_401() {
        for e in [TokenError::Stale, TokenError::Behind, TokenError::NoKey] {
            let refused = after_barrier(Err(e)).expect_err("refused");
            assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        for e in [
            TokenError::Forged,
            TokenError::Expired,
            TokenError::Revoked("gone"),
        ] {
            let refused = after_barrier(Err(e)).expect_err("refused");
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn finds_bearer_tokens_and_cookies_only_for_reads() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(request_token(&Method::POST, &h), Some("abc"));
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tessera_token=xyz; b=2"),
        );
        assert_eq!(request_token(&Method::GET, &c), Some("xyz"));
        assert_eq!(request_token(&Method::POST, &c), None);
        assert_eq!(request_token(&Method::GET, &HeaderMap::new()), None);
    }
}
