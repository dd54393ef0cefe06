//! Who may call a route, enforced from the route table: every route of [`crate::routes`] runs
//! behind [`enforce`] with its table entry's level, so the access the OpenAPI document
//! publishes is the access the server applies, and a handler cannot forget its check.

use axum::extract::{FromRequestParts, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tessera_domain::catalog::Role;

use crate::auth::Principal;
use crate::AppState;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Anyone,
    /// Any signed-in user.
    SignedIn,
    Reviewer,
    Manager,
    Admin,
    /// Admins, and any user for their own record.
    AdminOrSelf,
    /// A manager's or admin's token, or a presigned URL.
    ManagerOrPresigned,
    /// The node's init token (from its data dir) or an admin's token.
    InitToken,
}

impl Access {
    /// A machine-readable name, published as `x-tessera-access` in the OpenAPI document.
    pub fn key(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::SignedIn => "signed_in",
            Access::Reviewer => "reviewer",
            Access::Manager => "manager",
            Access::Admin | Access::AdminOrSelf => "admin",
            Access::ManagerOrPresigned => "manager",
            Access::InitToken => "init",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Access::Anyone => "no token needed",
            Access::SignedIn => "any signed-in user",
            Access::Reviewer => "reviewer, manager or admin",
            Access::Manager => "manager or admin",
            Access::Admin => "admin",
            Access::AdminOrSelf => "admin, or the user themself",
            Access::ManagerOrPresigned => "manager or admin, or a presigned URL (?exp=&sig=)",
            Access::InitToken => {
                "the node's init token (the file init-token in its data dir) or an admin's token"
            }
        }
    }
}

impl Access {
    /// The least role a signed-in caller needs, for the levels that are a role and nothing
    /// else; `None` for the levels the handler decides itself (who the user is, a presigned
    /// URL, the init token) and for `Anyone`.
    fn least_role(self) -> Option<Role> {
        match self {
            Access::SignedIn => Some(Role::Annotator),
            Access::Reviewer => Some(Role::Reviewer),
            Access::Manager => Some(Role::Manager),
            Access::Admin => Some(Role::Admin),
            Access::Anyone
            | Access::AdminOrSelf
            | Access::ManagerOrPresigned
            | Access::InitToken => None,
        }
    }
}

/// Reads and drops what is left of a refused body (up to a bound), so that a client that sends
/// its whole body before reading the response still gets the error instead of a reset
/// connection. Clients that sent `Expect: 100-continue` are answered without this.
pub(crate) async fn discard(stream: &mut axum::body::BodyDataStream) {
    const CAP: usize = 256 << 20;
    let mut seen = 0;
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > CAP {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// Whether the client asked to hear the answer before sending its body (`Expect: 100-continue`):
/// a refusal then needs no draining.
pub(crate) fn expects_continue(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Middleware: authenticates the caller and refuses (401/403, JSON) one below `level` before
/// the handler runs or the body is read. The checked [`Principal`] goes into the request's
/// extensions, where the handler's own `Principal` extractor finds it without checking the
/// token a second time.
pub async fn enforce(state: AppState, level: Access, request: Request, next: Next) -> Response {
    let Some(least) = level.least_role() else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let checked = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(p) => p.require(least).map(|()| p),
        Err(refusal) => Err(refusal),
    };
    match checked {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refusal) => {
            // A refused upload is drained first, so the client reads the 401/403 instead of a
            // reset connection (unless it asked to hear first with `Expect: 100-continue`).
            if !expects_continue(&parts.headers) {
                discard(&mut body.into_data_stream()).await;
            }
            refusal.into_response()
        }
    }
}
