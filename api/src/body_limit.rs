//! Oversized JSON bodies answered so the client can read the answer.
//!
//! A JSON route reads at most [`crate::JSON_BODY_LIMIT`] bytes. Answering 413 with the rest of
//! a large body unread makes the kernel reset the connection when the server closes it, and a
//! client still sending then sees a broken connection instead of the 413. A body that declares
//! a length over the limit is therefore refused before the handler runs, after the rest is read
//! and dropped (bounded by [`crate::access::discard`]).

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware for routes that take JSON.
pub async fn refuse_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n <= crate::JSON_BODY_LIMIT as u64) {
        return next.run(request).await;
    }
    if !crate::access::expects_continue(request.headers()) {
        crate::access::discard(&mut request.into_body().into_data_stream()).await;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "JSON bodies are limited to {} bytes",
            crate::JSON_BODY_LIMIT
        ),
    )
    .into_response()
}
