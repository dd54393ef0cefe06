//! A request body must keep coming: at least [`MIN_PROGRESS`] bytes within every [`IDLE`] spent
//! waiting for it, or the request is answered 408 and the connection closed. A client that
//! sends a head and then stops, or trickles a byte now and then (slowloris on the body), so
//! holds a connection and a handler for seconds, not forever. The head has its own timeout
//! (the listener's `header_timeout`).
//!
//! The clock runs only while the handler waits for bytes that have not arrived: a handler that
//! pauses between reads (writing to disk) does not count against the client.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Longest wait for [`MIN_PROGRESS`] more bytes of a body.
pub const IDLE: Duration = Duration::from_secs(10);
/// Bytes a body must bring within each [`IDLE`] (unless it ends).
pub const MIN_PROGRESS: usize = 1024;

/// A body that fails once it stalls, and says so in `stalled`.
struct Watched {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    /// Whether `deadline` is running: from the first wait after the last [`MIN_PROGRESS`].
    armed: bool,
    /// Bytes since the last [`MIN_PROGRESS`].
    got: usize,
    stalled: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.got += frame.data_ref().map_or(0, Bytes::len);
                if this.got >= MIN_PROGRESS {
                    this.got = 0;
                    this.armed = false;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if !this.armed {
                    this.deadline.as_mut().reset(Instant::now() + IDLE);
                    this.armed = true;
                }
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.stalled.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body stalled",
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: watches every request body; a request whose body stalled is answered 408
/// `body_timeout` (whatever the handler made of the failed read) with `Connection: close`.
pub async fn layer(request: Request, next: Next) -> Response {
    let stalled = Arc::new(AtomicBool::new(false));
    let (parts, inner) = request.into_parts();
    let body = Body::new(Watched {
        inner,
        deadline: Box::pin(tokio::time::sleep(IDLE)),
        armed: false,
        got: 0,
        stalled: stalled.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if !stalled.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body stalled: less than {MIN_PROGRESS} bytes arrived in {} s",
            IDLE.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
