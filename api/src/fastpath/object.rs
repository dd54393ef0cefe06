//! Answering one `GET`/`HEAD /objects/<sha>` on the fast path: the same auth
//! (`objects::authorize_read`), lookup and answer (`objects::read`) as the axum handler, written
//! straight to the socket.

use std::io;
use std::time::Instant;

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use tessera_raft::RangeOutcome;

use super::admission::Admission;
use super::body::{self, BodySource};
use super::head::Head;
use super::metrics;
use super::request::ObjectRequest;
use super::socket::Socket;
use super::{Config, Shared};
use crate::error::ApiError;
use crate::objects::{self, Answer, ObjectQuery, CACHE_CONTROL};
use crate::AppState;

/// What a connection reuses from one request to the next.
pub struct Scratch {
    pub head: Head,
    /// Method and the credential headers, for the same `Principal` extractor the router runs.
    parts: Parts,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            head: Head::default(),
            parts: Request::new(()).into_parts().0,
        }
    }

    /// Loads the request's method and credentials into `parts`, as hyper would have parsed
    /// them. Only `Authorization` and `Cookie` are put in: they are all the extractor reads.
    fn load(&mut self, req: &ObjectRequest<'_>) -> Result<(), ApiError> {
        self.parts.method = if req.head { Method::HEAD } else { Method::GET };
        self.parts.headers.clear();
        for (name, value) in [
            (header::AUTHORIZATION, req.authorization),
            (header::COOKIE, req.cookie),
        ] {
            if let Some(value) = value {
                let value = HeaderValue::from_bytes(value).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("invalid {name} header"),
                    )
                })?;
                self.parts.headers.insert(name, value);
            }
        }
        Ok(())
    }
}

/// Answers `req` on `socket`. An error means the connection is no longer usable.
pub async fn answer(
    shared: &Shared,
    scratch: &mut Scratch,
    socket: &mut Socket,
    req: &ObjectRequest<'_>,
) -> io::Result<()> {
    let (state, config) = (&shared.state, &shared.config);
    let started = Instant::now();
    let (mut quoted, mut hex) = ([b'"'; 66], [0u8; 64]);
    quoted[1..65].copy_from_slice(objects::sha_hex(&req.sha, &mut hex).as_bytes());
    let etag = std::str::from_utf8(&quoted).unwrap_or_default();
    let result = async {
        scratch.load(req)?;
        objects::authorize_read(state, &req.sha, req.query, &mut scratch.parts).await?;
        let query = ObjectQuery {
            sha: req.sha,
            head: req.head,
            not_modified: req
                .if_none_match
                .is_some_and(|v| objects::if_none_match(v, etag)),
            range: req.range.and_then(objects::range_value),
        };
        lookup(state, &shared.admission, &query).await
    }
    .await;
    let status = match result {
        Ok(answer) => {
            let status = answer.status();
            let head = &mut scratch.head;
            head.start(status)
                .header("etag", etag.as_bytes())
                .header("cache-control", CACHE_CONTROL.as_bytes())
                .header(
                    "content-security-policy",
                    objects::CONTENT_SECURITY_POLICY.as_bytes(),
                )
                .header("accept-ranges", b"bytes");
            let (body, length) = match answer {
                Answer::NotModified => (None, 0),
                Answer::Unsatisfiable { size } => {
                    head.content_range(None, size).number("content-length", 0);
                    (None, 0)
                }
                Answer::Content {
                    content_type,
                    length,
                    part,
                    body,
                } => {
                    head.header("content-type", content_type.as_bytes())
                        .number("content-length", length);
                    if let Some(p) = part {
                        head.content_range(Some((p.offset, p.length)), p.size);
                    }
                    (body, length)
                }
            };
            let head = head.finish(req.keep_alive, req.http10);
            body::send(socket, head, body, length, config.write_timeout).await?;
            status
        }
        Err(e) => {
            let status = e.status;
            error(
                scratch,
                socket,
                config,
                e,
                req.head,
                req.keep_alive,
                req.http10,
            )
            .await?;
            status
        }
    };
    metrics::record(req.head, status, started.elapsed());
    Ok(())
}

/// The answer to `query` with its body as a [`BodySource`], without leaving this thread when
/// this node has the object: found in the group's index in memory
/// (`Cluster::resident_object`: no blocking-pool hop, no RocksDB read), which also answers
/// `HEAD` and 304, the body goes out of its volume file with `sendfile(2)` (a small one read
/// whole with its header, checked, and written from memory). Such bodies are not served from
/// the object cache even when it holds them: `writev` from the cache copies every body into the
/// socket, which cost a node 51–66 µs of CPU per keep-alive GET at 1 000 connections against
/// 35–48 with `sendfile` (`bench/cpu_ab.sh`, bench/README.md), and no less at 20. Objects the
/// index in memory does not hold (damaged bytes, a migration in progress, bytes not checked
/// since start) are looked up in the cache, then in RocksDB on the blocking pool; a miss read
/// more often lately than what the cache would evict for it is read into the cache (see
/// [`Admission`]). Objects this node holds no intact replica of, and anything not yet applied
/// here, take the router's read path, whose reads the cache serves.
async fn lookup(
    state: &AppState,
    admission: &Admission,
    query: &ObjectQuery,
) -> Result<Answer<BodySource>, ApiError> {
    if let Some(found) = state.cluster.resident_object(&query.sha) {
        let body = match found.body {
            Some(bytes) => BodySource::Bytes(bytes),
            None => BodySource::File(found.slice.into()),
        };
        return local(found.size, found.content_type.to_owned(), body, query);
    }
    let wants_body = !query.head && !query.not_modified;
    if wants_body {
        admission.record(&query.sha);
        if let Some((meta, bytes)) = state.cluster.cached_object(&query.sha) {
            let body = BodySource::Bytes(bytes);
            return local(meta.size, meta.content_type, body, query);
        }
        // A miss worth caching (see `Admission`) goes to the read path below, which copies it
        // into the cache. Objects too large for the cache always go out with sendfile, so a
        // slow reader never holds a copy.
        let admit = |size| {
            state.cluster.cache_admits(size)
                && admission.admits(
                    &query.sha,
                    state.cluster.cache_victim(&query.sha, size).as_ref(),
                )
        };
        match state.cluster.local_object_file(&query.sha).await? {
            Some((meta, slice)) if !admit(meta.size) => {
                let body = BodySource::File(slice.into());
                return local(meta.size, meta.content_type, body, query);
            }
            _ => {}
        }
    }
    Ok(objects::read(state, query)
        .await?
        .map_body(BodySource::from))
}

/// The answer from a body this node holds whole: cut to the requested range.
fn local(
    size: u64,
    content_type: String,
    body: BodySource,
    query: &ObjectQuery,
) -> Result<Answer<BodySource>, ApiError> {
    let range = RangeOutcome::of(query.range, size);
    let body = match range {
        RangeOutcome::Partial { offset, length } => body.part(offset, length),
        _ => body,
    };
    objects::decide(size, content_type, range, Some(body), query)
}

/// Writes an error exactly as the router would answer it: its status and its JSON body.
pub async fn error(
    scratch: &mut Scratch,
    socket: &mut Socket,
    config: &Config,
    e: ApiError,
    head_only: bool,
    keep_alive: bool,
    http10: bool,
) -> io::Result<()> {
    let status = e.status;
    let response = e.into_response();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let text = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let head = scratch.head.start(status);
    if let Some(t) = &content_type {
        head.header("content-type", t.as_bytes());
    }
    // A 503 says when to try again here too (found by the chaos campaign: the fast path's
    // 503s lacked it while the router's had it).
    if let Some(r) = &retry_after {
        head.header("retry-after", r.as_bytes());
    }
    head.number("content-length", text.len() as u64).header(
        "content-security-policy",
        crate::security_headers::CONTENT_SECURITY_POLICY.as_bytes(),
    );
    let head = head.finish(keep_alive, http10);
    let body = (!head_only).then_some(BodySource::Bytes(text));
    body::send(socket, head, body, 0, config.write_timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn errors_are_written_as_the_router_writes_them_retry_after_included() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let mut text = String::new();
            stream.read_to_string(&mut text).await.expect("read");
            text
        });
        let (socket, _) = listener.accept().await.expect("accept");
        let mut socket = Socket::from_tokio(socket).expect("socket");
        let unavailable = ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no leader yet",
        );
        let mut scratch = Scratch::new();
        error(
            &mut scratch,
            &mut socket,
            &Config::default(),
            unavailable,
            false,
            false,
            false,
        )
        .await
        .expect("write");
        drop(socket);
        let text = client.await.expect("client").to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 503"), "{text}");
        assert!(text.contains("retry-after: 1\r\n"), "{text}");
        assert!(text.contains("\"code\":\"unavailable\""), "{text}");
    }
}
