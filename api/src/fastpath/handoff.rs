//! Requests the fast path does not answer go to hyper and the router, with the bytes already
//! read from the connection replayed first. The connection stays with hyper from then on.

use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::{Buf, BytesMut};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// A connection whose first bytes were already read: reads return them before reading the
/// socket again; writes go straight to the socket. `S` is a TCP stream, or a TLS stream on an
/// HTTPS listener.
pub struct Replay<S> {
    read: BytesMut,
    socket: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.socket).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// Serves the rest of the connection with hyper's HTTP/1 server and the router, starting with
/// the bytes in `read`. Handlers see the client's address as `ConnectInfo<SocketAddr>`, as
/// with `axum::serve`. `idle_timeout` bounds both an idle kept-alive connection and a request
/// head that never completes (slowloris): hyper starts its head timer as soon as a connection
/// waits for a request, so a shorter one would close idle keep-alive connections early, and a
/// client reusing one just then would see its request fail. (nginx allows 60 s for a head.)
/// On `stop`, hyper finishes the request in flight and closes.
pub async fn serve<S>(
    socket: S,
    peer: SocketAddr,
    read: BytesMut,
    router: Router,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Replay { read, socket });
    let make = TowerToHyperService::new(router.into_make_service_with_connect_info::<SocketAddr>());
    let Ok(service) = hyper::service::Service::call(&make, peer).await;
    let service = TowerToHyperService::new(service);
    let mut conn = pin!(hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .serve_connection(io, service));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http connection ended");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
