//! Upload, serving and metadata of content-addressed objects.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use futures_util::StreamExt;
use sha2::Digest;
use tessera_domain::catalog::Role;
use tessera_raft::storage::{probe_image, ObjectMeta, ProbeError, Sha256};
use tessera_raft::{ByteRange, ObjectBody, ObjectRead, RangeOutcome, ReadSpec};

use crate::auth::{self, Principal};
use crate::error::{internal, ApiError};
use crate::token;
use crate::AppState;

pub(crate) const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";
/// Object bytes are untrusted uploads: opened directly in a browser they run nothing and reach
/// nothing of the origin (an SVG or HTML polyglot in an image's clothes stays inert).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "sandbox";

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
        format!("bodies here are limited to {limit} bytes"),
    )
}

/// Reads a raw body of at most `limit` bytes into one buffer, passing each chunk to `on_chunk`
/// as it arrives (to hash while reading). A body over the limit — declared or found — is
/// answered 413 after the rest is read and dropped (bounded by [`crate::access::discard`]), so
/// the client can read the answer.
pub(crate) async fn read_raw_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    mut on_chunk: impl FnMut(&[u8]),
) -> Result<BytesMut, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = crate::access::expects_continue(headers);
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit) {
        if !expects_continue {
            crate::access::discard(&mut stream).await;
        }
        return Err(too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the body failed: {e}"),
            )
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            crate::access::discard(&mut stream).await;
            return Err(too_large(limit));
        }
        on_chunk(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `POST /api/v1/objects`: the body is the raw image. The body is streamed into one buffer
/// bounded by the size limit while it is hashed; the image type is decided from the bytes.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut hasher = sha2::Sha256::new();
    let buf = read_raw_body(&headers, body, state.limits.max_object_bytes, |chunk| {
        hasher.update(chunk)
    })
    .await?;
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
    let mut body = view(&sha, &outcome.meta);
    body.deduplicated = Some(outcome.deduplicated);
    let location = HeaderValue::from_str(&format!("/objects/{sha}"))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// An object's record as the API answers it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Object")]
pub struct ObjectView {
    sha256: String,
    size: u64,
    content_type: String,
    width: u32,
    height: u32,
    /// How many uploads and references hold the object.
    refcount: u64,
    created_ms: u64,
    /// On an upload: whether the bytes were already stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    deduplicated: Option<bool>,
    /// On `GET /api/v1/objects/{sha}`: a presigned URL of the bytes (once the cluster has a
    /// signing key).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

fn view(sha: &Sha256, meta: &ObjectMeta) -> ObjectView {
    ObjectView {
        sha256: sha.to_string(),
        size: meta.size,
        content_type: meta.content_type.clone(),
        width: meta.width,
        height: meta.height,
        refcount: meta.refcount,
        created_ms: meta.created_ms,
        deduplicated: None,
        url: None,
    }
}

/// `GET /api/v1/objects/{sha}`: the metadata, read from the shard leader so that the
/// reference count is current.
pub async fn metadata(
    State(state): State<AppState>,
    Path(sha): Path<String>,
) -> Result<Json<ObjectView>, ApiError> {
    let sha = parse_sha(&sha)?;
    let read = state
        .cluster
        .read_object(sha, ReadSpec::record(true), 0)
        .await?
        .ok_or_else(no_such_object)?;
    let mut body = view(&sha, &read.head.meta);
    if let Some(key) = state.cluster.directory().key() {
        let query = token::presign(&key, &sha.to_string(), token::now_ms() + PRESIGN_TTL_MS);
        body.url = Some(format!("/objects/{sha}?{query}"));
    }
    Ok(Json(body))
}

/// How long the presigned URLs handed out by the API stay valid.
const PRESIGN_TTL_MS: u64 = 60 * 60 * 1000;

/// Who may read object bytes: a presigned URL (`?exp=&sig=`), or a manager's or admin's token
/// (header or, for the browser, the session cookie). Annotators and reviewers read through the
/// presigned URLs their task APIs hand out.
///
/// The one check of both HTTP paths (the axum handler and `crate::fastpath`), so that they
/// refuse with the same status and body. A presigned URL is checked first and alone: its HMAC
/// costs less than a token check, and a valid one needs no token. `parts` carries the method
/// and the request's headers (the fast path puts only `Authorization` and `Cookie` in).
pub(crate) async fn authorize_read(
    state: &AppState,
    sha: &Sha256,
    query: Option<&str>,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    let mut hex = [0u8; 64];
    if let Some(checked) = presigned_query(state, sha_hex(sha, &mut hex), query) {
        return checked;
    }
    Principal::from_request_parts(parts, state)
        .await?
        .require(Role::Manager)
}

/// The lowercase hex form of `sha` written into `out`, without a heap allocation.
pub(crate) fn sha_hex<'a>(sha: &Sha256, out: &'a mut [u8; 64]) -> &'a str {
    // Encoding into a buffer of exactly twice the input's length cannot fail.
    let _ = hex::encode_to_slice(sha.0, out);
    std::str::from_utf8(out).unwrap_or_default()
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

pub(crate) fn no_such_object() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_object",
        "no object with this hash",
    )
}

/// Parses a single `bytes=` range. Anything else (several ranges, other units, bad syntax) is
/// ignored, which RFC 9110 allows: the whole object is sent.
pub(crate) fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    range_value(headers.get(header::RANGE)?.as_bytes())
}

/// [`parse_range`] on the raw value of a `Range` header.
pub(crate) fn range_value(value: &[u8]) -> Option<ByteRange> {
    let spec = header_text(value)?.strip_prefix("bytes=")?;
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
        .is_some_and(|v| if_none_match(v.as_bytes(), etag))
}

/// Whether an `If-None-Match` value names `etag` (quoted, weak or not) or is `*`.
pub(crate) fn if_none_match(value: &[u8], etag: &str) -> bool {
    header_text(value).is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
    })
}

/// A header value as text when it is visible ASCII or tabs, the rule of `HeaderValue::to_str`,
/// so that raw values from the fast path are read exactly as the axum handler reads them.
fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| (32..127).contains(&b) || b == b'\t')
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// What a `GET`/`HEAD /objects/{sha}` asks for once its headers are read, on either HTTP path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ObjectQuery {
    pub sha: Sha256,
    pub head: bool,
    /// `If-None-Match` names the object's ETag.
    pub not_modified: bool,
    pub range: Option<ByteRange>,
}

/// How an object request is answered, decided once for both HTTP paths; each writes it in its
/// own way. Every answer also carries `ETag`, `Cache-Control` and `Accept-Ranges`.
pub(crate) enum Answer<B> {
    /// 304, no body and no `Content-Type`.
    NotModified,
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable { size: u64 },
    /// 200, or 206 with `Content-Range` when `part` is set; `body` is `None` for `HEAD`.
    Content {
        content_type: String,
        length: u64,
        part: Option<Part>,
        body: Option<B>,
    },
}

/// The `Content-Range` of a 206: `bytes offset-(offset+length-1)/size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub offset: u64,
    pub length: u64,
    pub size: u64,
}

impl<B> Answer<B> {
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Answer<C> {
        match self {
            Answer::NotModified => Answer::NotModified,
            Answer::Unsatisfiable { size } => Answer::Unsatisfiable { size },
            Answer::Content {
                content_type,
                length,
                part,
                body,
            } => Answer::Content {
                content_type,
                length,
                part,
                body: body.map(f),
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Answer::NotModified => StatusCode::NOT_MODIFIED,
            Answer::Unsatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Answer::Content { part: None, .. } => StatusCode::OK,
            Answer::Content { part: Some(_), .. } => StatusCode::PARTIAL_CONTENT,
        }
    }
}

/// Reads what `query` asks for (a local replica when there is one) and decides the answer.
pub(crate) async fn read(
    state: &AppState,
    query: &ObjectQuery,
) -> Result<Answer<ObjectBody>, ApiError> {
    let spec = ReadSpec {
        range: query.range,
        meta_only: query.head || query.not_modified,
        linearizable: false,
    };
    let read = state
        .cluster
        .read_object(query.sha, spec, 0)
        .await?
        .ok_or_else(no_such_object)?;
    answer(read, query)
}

fn answer(read: ObjectRead, query: &ObjectQuery) -> Result<Answer<ObjectBody>, ApiError> {
    let meta = read.head.meta;
    decide(
        meta.size,
        meta.content_type,
        read.head.range,
        read.body,
        query,
    )
}

/// The answer to `query` for an object of `size` bytes and `content_type` (from its record),
/// given which part of its body `range` selects and that part's bytes (`None` for
/// metadata-only reads). Generic over where the bytes are, so that every source of bodies is
/// answered alike.
pub(crate) fn decide<B>(
    size: u64,
    content_type: String,
    range: RangeOutcome,
    body: Option<B>,
    query: &ObjectQuery,
) -> Result<Answer<B>, ApiError> {
    if query.not_modified {
        return Ok(Answer::NotModified);
    }
    let (length, part) = match range {
        RangeOutcome::Full => (size, None),
        RangeOutcome::Partial { offset, length } => (
            length,
            Some(Part {
                offset,
                length,
                size,
            }),
        ),
        RangeOutcome::Unsatisfiable => return Ok(Answer::Unsatisfiable { size }),
    };
    let body = match body {
        _ if query.head => None,
        Some(body) => Some(body),
        None => return Err(internal("object read returned no body")),
    };
    metrics::counter!("tessera_served_bytes_total").increment(length);
    Ok(Answer::Content {
        content_type,
        length,
        part,
        body,
    })
}

/// The value of a `size=` parameter in an object URL's query, if there is one.
pub(crate) fn size_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("size")?.strip_prefix('='))
}

/// `GET` and `HEAD /objects/{sha}`: the bytes, from a local replica when there is one. Most of
/// these requests never get here: `crate::fastpath` answers them before hyper parses them.
/// This handler serves the rest (for example requests with a body) with the same answers, and
/// every `?size=` request: the thumbnail or preview (`crate::derived`) is served like an
/// object, with its own hash as the ETag. The access check is the original's, so a presigned
/// URL (whose signature covers the original's hash, not the query) reaches only the forms of
/// the image it was made for.
pub async fn serve(
    State(state): State<AppState>,
    Path(sha): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let sha = parse_sha(&sha)?;
    let (mut parts, _) = request.into_parts();
    let size = size_param(query.as_deref())
        .map(crate::derived::Size::parse)
        .transpose()?;
    authorize_read(&state, &sha, query.as_deref(), &mut parts).await?;
    let sha = match size {
        Some(size) => crate::derived::resolve(&state, sha, size).await?,
        None => sha,
    };
    let etag = format!("\"{sha}\"");
    let query = ObjectQuery {
        sha,
        head: parts.method == Method::HEAD,
        not_modified: etag_matches(&parts.headers, &etag),
        range: parse_range(&parts.headers),
    };
    let answer = read(&state, &query).await?;
    let builder = Response::builder()
        .status(answer.status())
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::ACCEPT_RANGES, "bytes");
    let response = match answer {
        Answer::NotModified => builder.body(Body::empty()),
        Answer::Unsatisfiable { size } => builder
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .body(Body::empty()),
        Answer::Content {
            content_type,
            length,
            part,
            body,
        } => {
            let mut builder = builder
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, length);
            if let Some(p) = part {
                builder = builder.header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", p.offset, p.offset + p.length - 1, p.size),
                );
            }
            builder.body(match body {
                None => Body::empty(),
                Some(ObjectBody::Local(bytes)) => Body::from(bytes),
                Some(ObjectBody::Remote(stream)) => Body::from_stream(stream),
            })
        }
    };
    response.map_err(internal)
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
