//! Headers every response of the router carries, so a browser treats Tessera's pages and data
//! as what they are and nothing more.
//!
//! * `Content-Security-Policy`: the web UI is plain ES modules and CSS files from this origin,
//!   with no inline scripts, inline styles or event-handler attributes (styles are set through
//!   the CSSOM, which the policy allows), so the policy can forbid everything else: an injected
//!   `<script>` or `onerror=` never runs, and data can only be sent back to this origin
//!   (`connect-src 'self'`). Images are this origin's (objects, presigned) and the empty
//!   `data:` favicon. A handler that sets its own policy keeps it (objects: `sandbox`).
//! * `frame-ancestors 'none'` and `X-Frame-Options: DENY` (for browsers without CSP 2): no other
//!   site can frame the UI to trick clicks (clickjacking).
//! * `Referrer-Policy: no-referrer`: URLs, which may carry presigned signatures, never leak to
//!   other sites in `Referer`.
//! * `X-Content-Type-Options: nosniff`: a browser never runs an upload or an export as a script
//!   or a page because its bytes look like one.
//!
//! The API sets no cookies; see `auth` for the one it reads.

use axum::http::{header, HeaderValue};
use axum::response::Response;

/// The UI's policy (see the module documentation).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
manifest-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; \
frame-ancestors 'none'";

/// Adds the headers to a response of the router.
pub async fn add(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
