//! The one way a handler takes a JSON request body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{parse_json, ApiError};

/// A request body parsed as `T`, or a client error in Tessera's JSON shape naming the field,
/// line and column (400), a nesting too deep (400) or a body too large (413).
///
/// Handlers take it as their last argument. Axum runs extractors in order and the route
/// table's access check (`access::enforce`) runs before any of them, so a body is parsed only
/// for a caller allowed on the route, and a malformed body never hides the 401, 403 or 404
/// that an earlier check would answer.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                let message = rejection.body_text();
                let code = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "bad_body"
                };
                ApiError::new(status, code, message)
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}
