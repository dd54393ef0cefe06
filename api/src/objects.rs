//! Upload, serving and metadata of content-addressed objects.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;
use sha2::Digest;
use tessera_raft::catalog::Role;
use tessera_raft::storage::{probe_image, ObjectMeta, ProbeError, Sha256};
use tessera_raft::{ByteRange, ObjectBody, RangeOutcome, ReadSpec};

use crate::auth::{self, Principal};
use crate::error::{internal, ApiError};
use crate::token;
use crate::AppState;

const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

fn parse_sha(text: &str) -> Result<Sha256, ApiError> {
    Sha256::parse_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hash",
            "object names are 64 hex digits (SHA-256)",
        )
    })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("objects are limited to {limit} bytes"),
    )
}

/// `POST /api/v1/objects`: the body is the raw image. The body is streamed into one buffer
/// bounded by the size limit while it is hashed; the image type is decided from the bytes.
pub async fn upload(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.limits.max_object_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut stream = body.into_data_stream();
    // Refused callers still have their body drained, so that they read the 401/403 instead of
    // a reset connection.
    if let Err(refusal) = principal.and_then(|p| p.require(Role::Manager)) {
        if !expects_continue {
            discard(&mut stream).await;
        }
        return Err(refusal);
    }
    if declared.is_some_and(|n| n > limit) {
        if !expects_continue {
            discard(&mut stream).await;
        }
        return Err(too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the body failed: {e}"),
            )
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            discard(&mut stream).await;
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body is empty; send the image bytes",
        ));
    }
    let info = probe_image(&buf).map_err(|e| match e {
        ProbeError::NotAnImage => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_an_image",
            e.to_string(),
        ),
        ProbeError::Corrupt(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "corrupt_image", e.to_string())
        }
        ProbeError::TooLarge { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_too_large",
            e.to_string(),
        ),
    })?;
    let sha = Sha256(hasher.finalize().into());
    let bytes = buf.freeze();
    let meta = ObjectMeta::for_upload(bytes.len() as u64, &info, token::now_ms());
    let outcome = state.cluster.put_object(sha, meta, bytes).await?;
    metrics::counter!("tessera_upload_bytes_total").increment(outcome.meta.size);
    let status = if outcome.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut body = meta_json(&sha, &outcome.meta);
    body["deduplicated"] = json!(outcome.deduplicated);
    let location = HeaderValue::from_str(&format!("/objects/{sha}"))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// Reads and drops what is left of a refused body (up to a bound), so that a client that sends
/// its whole body before reading the response still gets the error instead of a reset
/// connection. Clients that sent `Expect: 100-continue` are answered without this.
async fn discard(stream: &mut axum::body::BodyDataStream) {
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

fn meta_json(sha: &Sha256, meta: &ObjectMeta) -> serde_json::Value {
    json!({
        "sha256": sha.to_string(),
        "size": meta.size,
        "content_type": meta.content_type,
        "width": meta.width,
        "height": meta.height,
        "refcount": meta.refcount,
        "created_ms": meta.created_ms,
    })
}

/// `GET /api/v1/objects/{sha}`: the metadata, read from the shard leader so that the
/// reference count is current.
pub async fn metadata(
    State(state): State<AppState>,
    principal: Principal,
    Path(sha): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Role::Manager)?;
    let sha = parse_sha(&sha)?;
    let read = state
        .cluster
        .read_object(
            sha,
            ReadSpec {
                meta_only: true,
                linearizable: true,
                range: None,
            },
            0,
        )
        .await?
        .ok_or_else(no_such_object)?;
    let mut body = meta_json(&sha, &read.head.meta);
    if let Some(key) = state.cluster.directory().key() {
        let query = token::presign(&key, &sha.to_string(), token::now_ms() + PRESIGN_TTL_MS);
        body["url"] = json!(format!("/objects/{sha}?{query}"));
    }
    Ok(Json(body))
}

/// How long the presigned URLs handed out by the API stay valid.
const PRESIGN_TTL_MS: u64 = 60 * 60 * 1000;

/// Who may read object bytes: a presigned URL (`?exp=&sig=`), or a manager's or admin's token
/// (header or, for the browser, the session cookie). Annotators and reviewers read through the
/// presigned URLs their task APIs hand out.
fn authorize_read(
    state: &AppState,
    sha: &Sha256,
    query: Option<&str>,
    principal: Result<Principal, ApiError>,
) -> Result<(), ApiError> {
    match presigned_query(state, &sha.to_string(), query) {
        Some(checked) => checked,
        None => principal?.require(Role::Manager),
    }
}

/// Checks the `?exp=&sig=` of a presigned URL for `resource`; `None` when the query has none.
pub(crate) fn presigned_query(
    state: &AppState,
    resource: &str,
    query: Option<&str>,
) -> Option<Result<(), ApiError>> {
    let query = query?;
    let key = state.cluster.directory().key()?;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let (exp, sig) = (param("exp")?.parse().ok()?, param("sig")?);
    Some(
        if token::presigned(&key, resource, exp, sig, token::now_ms()) {
            Ok(())
        } else {
            Err(auth::unauthorized(
                "the presigned URL is invalid or expired",
            ))
        },
    )
}

fn no_such_object() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_object",
        "no object with this hash",
    )
}

/// Parses a single `bytes=` range. Anything else (several ranges, other units, bad syntax) is
/// ignored, which RFC 9110 allows: the whole object is sent.
pub(crate) fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    match (a.is_empty(), b.is_empty()) {
        (true, false) => Some(ByteRange::Suffix(b.parse().ok()?)),
        (false, true) => Some(ByteRange::From(a.parse().ok()?)),
        (false, false) => Some(ByteRange::Inclusive(a.parse().ok()?, b.parse().ok()?)),
        (true, true) => None,
    }
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == etag
            })
        })
}

/// `GET` and `HEAD /objects/{sha}`: the bytes, from a local replica when there is one.
pub async fn serve(
    State(state): State<AppState>,
    method: Method,
    Path(sha): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    principal: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let sha = parse_sha(&sha)?;
    authorize_read(&state, &sha, query.as_deref(), principal)?;
    let etag = format!("\"{sha}\"");
    let not_modified = etag_matches(&headers, &etag);
    let range = parse_range(&headers);
    let meta_only = method == Method::HEAD || not_modified;
    let read = state
        .cluster
        .read_object(
            sha,
            ReadSpec {
                range,
                meta_only,
                linearizable: false,
            },
            0,
        )
        .await?
        .ok_or_else(no_such_object)?;
    let meta = &read.head.meta;
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::ACCEPT_RANGES, "bytes");
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(internal);
    }
    builder = builder.header(header::CONTENT_TYPE, &meta.content_type);
    let (status, length) = match read.head.range {
        RangeOutcome::Full => (StatusCode::OK, meta.size),
        RangeOutcome::Partial { offset, length } => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", offset, offset + length - 1, meta.size),
            );
            (StatusCode::PARTIAL_CONTENT, length)
        }
        RangeOutcome::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", meta.size))
                .body(Body::empty())
                .map_err(internal);
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, length);
    let body = match read.body {
        _ if method == Method::HEAD => Body::empty(),
        Some(ObjectBody::Local(bytes)) => Body::from(bytes),
        Some(ObjectBody::Remote(stream)) => Body::from_stream(stream),
        None => return Err(internal("object read returned no body")),
    };
    metrics::counter!("tessera_served_bytes_total").increment(length);
    builder.body(body).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn parses_single_byte_ranges_only() {
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=0-99")),
            Some(ByteRange::Inclusive(0, 99))
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=100-")),
            Some(ByteRange::From(100))
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=-5")),
            Some(ByteRange::Suffix(5))
        );
        assert_eq!(parse_range(&with(header::RANGE, "bytes=0-1,5-6")), None);
        assert_eq!(parse_range(&with(header::RANGE, "items=0-1")), None);
        assert_eq!(parse_range(&with(header::RANGE, "bytes=x-1")), None);
    }

    #[test]
    fn etag_matching_handles_lists_and_weak_tags() {
        let tag = "\"abc\"";
        assert!(etag_matches(
            &with(header::IF_NONE_MATCH, "\"x\", W/\"abc\""),
            tag
        ));
        assert!(etag_matches(&with(header::IF_NONE_MATCH, "*"), tag));
        assert!(!etag_matches(&with(header::IF_NONE_MATCH, "\"abd\""), tag));
        assert!(!etag_matches(&HeaderMap::new(), tag));
    }
}
