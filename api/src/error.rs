use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_domain::outcome::{Refusal, Refused};
use tessera_raft::ClusterError;

/// An error answered to a client: an HTTP status and a JSON body naming the problem.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The JSON body of every error answer: `{"error": {"code", "message"}}`. Typed so that the
/// OpenAPI document publishes the schema of what is sent (`components/schemas/Error`).
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`not_found`, `invalid_field`, `bad_json`, ...).
    pub code: String,
    /// For people; an invalid field's message starts with its path.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        // Every 503 is transient (no leader yet, a peer down, an indeterminate forward): say
        // when to try again (RFC 9110 §10.2.3).
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        // A full disk: space comes back when an operator frees it, not within a second.
        if self.status == StatusCode::INSUFFICIENT_STORAGE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("30"),
            );
        }
        response
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        if e.is_transient() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        } else if let ClusterError::DiskFull(m) = &e {
            let message = format!("disk full: {m}; reads are still served");
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
        } else if let ClusterError::Timeout(m) = &e {
            let message = format!("{m}; the write may or may not have been applied, retry it");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", message)
        } else {
            tracing::error!(error = %e, "request failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

/// Every refusal of the domain, answered the same way whichever op it came from.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match r.kind {
            Refused::NotFound => StatusCode::NOT_FOUND,
            Refused::Forbidden => StatusCode::FORBIDDEN,
            Refused::Conflict => StatusCode::CONFLICT,
            Refused::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, r.code, r.message)
    }
}

/// 500 for an outcome the op cannot have (the proposer and the state machine disagree about
/// an op's family or answers): a bug, logged, never a client's fault.
pub fn unexpected(outcome: impl std::fmt::Debug) -> ApiError {
    tracing::error!(?outcome, "an op answered an outcome it cannot have");
    internal(format!("unexpected outcome {outcome:?}"))
}

/// Parses a JSON request body, naming the problem (field, line, column) in a 400 otherwise.
/// Used instead of axum's `Json` extractor so that the role check runs before the body is
/// looked at and errors keep Tessera's JSON shape.
/// Bodies nested deeper than `json_depth::MAX_DEPTH` are refused (400 `too_deep`) unparsed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let max = crate::json_depth::MAX_DEPTH;
    if !crate::json_depth::within(body, max) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            format!("JSON nested deeper than {max} levels"),
        ));
    }
    serde_json::from_slice(body).or_else(|e| {
        // JSON Schema counts `50.0` as an integer (and so does every generated client that
        // writes numbers as doubles); serde does not. Only a body that failed is parsed again,
        // with its integral floats written as integers; if that fails too, the first error is
        // the one that names the problem.
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| bad_json(&e))?;
        integral_floats_as_integers(&mut value);
        serde_json::from_value(value).map_err(|_| bad_json(&e))
    })
}

fn bad_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string())
}

/// Writes every float with no fractional part that fits an `i64` or `u64` as that integer.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // The bounds are exact powers of two, so the casts below cannot saturate.
            if f.fract() == 0.0 && (-(2f64.powi(63))..2f64.powi(64)).contains(&f) {
                *value = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Turns the plain-text 4xx answers of axum's extractors (bad query strings, path parameters,
/// forms, oversized bodies) into Tessera's JSON errors, so every client error has one shape.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        _ => "bad_request",
    };
    ApiError::new(status, code, String::from_utf8_lossy(&text).into_owned()).into_response()
}

/// 422 for a field that does not satisfy its rules; the message starts with the field's path.
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
}

/// 500 for what should not happen (logged by the caller's error path).
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// A display name: 1-200 characters, no control characters.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 200
        && !name.chars().any(char::is_control);
    ok.then_some(())
        .ok_or_else(|| invalid("name: 1-200 characters, no control characters"))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Split {
        chunk_size: usize,
        share: f64,
        seed: Option<u64>,
    }

    #[test]
    fn integral_floats_parse_as_integers_as_json_schema_counts_them() {
        let parsed: Split =
            parse_json(br#"{"chunk_size": 50.0, "share": 2.0, "seed": 1e3}"#).expect("parses");
        let expected = Split {
            chunk_size: 50,
            share: 2.0,
            seed: Some(1000),
        };
        assert_eq!(parsed, expected);
    }

    #[test]
    fn a_fraction_is_still_refused_with_the_first_error() {
        let e = parse_json::<Split>(br#"{"chunk_size": 50.5, "share": 1}"#).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "bad_json"));
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        let e = parse_json::<Split>(br#"{"chunk_size": -1.0, "share": 1}"#).unwrap_err();
        assert_eq!(e.code, "bad_json");
    }
}
