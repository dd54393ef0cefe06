//! One client connection on the fast path: read heads into a buffer the connection reuses,
//! answer object requests in order (pipelined ones too), and hand everything else to hyper.

use std::io;
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::{Buf, BytesMut};
use tokio::sync::watch;
use tokio::time::Instant;

use super::object::{self, Scratch};
use super::request::{self, Parsed};
use super::socket::Socket;
use super::{eager, handoff, Shared};
use crate::error::ApiError;

/// Read buffer per connection to start with; it grows up to the head limit.
const INITIAL_BUFFER: usize = 4 << 10;

/// What to do after looking at the buffer.
enum Step {
    Read,
    Answered { len: usize, keep_alive: bool },
    HandOff,
    Refuse(ApiError),
}

/// Serves `socket` until the client closes it, a timeout, an error, or shutdown.
pub async fn run(mut socket: Socket, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.config;
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let mut scratch = Scratch::new();
    // When the first byte of the request being read arrived (the slowloris clock).
    let mut started: Option<Instant> = None;
    // The first request is usually in the receive buffer by the time the connection is
    // accepted: read it now rather than after the event loop's next turn (see `eager`).
    match eager::read_now(socket.fd(), &mut buf) {
        Ok(0) => return,
        Ok(_) => started = Some(Instant::now()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => return,
    }
    loop {
        let step = match request::parse(&buf, config.max_head) {
            Parsed::Partial => Step::Read,
            Parsed::Object(req) => {
                let answered = object::answer(&shared, &mut scratch, &mut socket, &req).await;
                if let Err(e) = answered {
                    tracing::debug!(error = %e, "object response failed");
                    return;
                }
                Step::Answered {
                    len: req.len,
                    keep_alive: req.keep_alive,
                }
            }
            Parsed::Other => Step::HandOff,
            Parsed::Malformed => Step::Refuse(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "malformed HTTP request",
            )),
            Parsed::TooLarge => Step::Refuse(ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!("request heads are limited to {} bytes", config.max_head),
            )),
        };
        match step {
            Step::Answered { len, keep_alive } => {
                buf.advance(len);
                if !keep_alive || *stop.borrow() {
                    // Lingering only pays when the client has sent more than it got answers
                    // for; a client done with its one request just gets our FIN, which closing
                    // the socket (dropping it) sends.
                    if buf.is_empty() {
                        return;
                    }
                    return close(socket).await;
                }
                started = (!buf.is_empty()).then(Instant::now);
            }
            Step::HandOff => {
                let router = shared.router.clone();
                let timeout = config.idle_timeout;
                let Ok((stream, peer)) = socket.into_tokio_with_peer() else {
                    return;
                };
                return handoff::serve(stream, peer, buf, router, timeout, stop).await;
            }
            Step::Refuse(e) => {
                let _ =
                    object::error(&mut scratch, &mut socket, config, e, false, false, false).await;
                return close(socket).await;
            }
            Step::Read => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(INITIAL_BUFFER);
                }
                let deadline = match started {
                    Some(at) => at + config.header_timeout,
                    None => Instant::now() + config.idle_timeout,
                };
                let idle = buf.is_empty();
                let read = tokio::select! {
                    read = tokio::time::timeout_at(deadline, socket.read(&mut buf)) => read,
                    _ = stop.wait_for(|s| *s), if idle => return,
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {
                        started.get_or_insert_with(Instant::now);
                    }
                    Err(_) if idle => return,
                    Err(_) => {
                        let e = ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "request_timeout",
                            format!(
                                "the request head did not arrive within {} ms",
                                config.header_timeout.as_millis()
                            ),
                        );
                        let _ = object::error(
                            &mut scratch,
                            &mut socket,
                            config,
                            e,
                            false,
                            false,
                            false,
                        )
                        .await;
                        return close(socket).await;
                    }
                }
            }
        }
    }
}

/// Closes after a final response when the client may still be sending: our side first (FIN),
/// then whatever the client still sends is read and dropped for a moment, so that unread
/// bytes do not make the kernel answer with a reset that could destroy the response before
/// the client reads it.
async fn close(mut socket: Socket) {
    if socket.shutdown_write().is_err() {
        return;
    }
    let drain = async {
        let mut sink = BytesMut::with_capacity(4096);
        let mut left = 256usize << 10;
        while left > 0 {
            sink.clear();
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return Ok::<_, io::Error>(()),
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}
