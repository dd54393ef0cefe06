//! A client connection's socket, known to tokio's event loop only once a call on it would
//! block. Registering a socket with tokio costs an `epoll_ctl` to add it and another to remove
//! it; a connection that sends one request (`ab` without `-k`, most browsers' first image
//! fetches) finds its request already received when it is accepted and its answer fits the
//! send buffer, so it is read, answered and closed without ever waiting — and, on this path,
//! without ever entering epoll (the profile in bench/README.md: `epoll_ctl` was 4 % of the
//! node's CPU under `ab` without keep-alive, two calls per request where nginx makes one).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::eager;

/// See the module documentation.
pub struct Socket {
    /// The socket's registration, made on the first call that would block. Declared before
    /// `stream` so that it is dropped (and the descriptor removed from epoll) before the
    /// stream closes the descriptor.
    ready: Option<AsyncFd<RawFd>>,
    stream: std::net::TcpStream,
}

impl Socket {
    /// Wraps a non-blocking socket (accepted with `SOCK_NONBLOCK`).
    pub fn new(stream: std::net::TcpStream) -> Socket {
        Socket {
            ready: None,
            stream,
        }
    }

    /// A socket tokio already knows, for tests and callers that connected through tokio.
    pub fn from_tokio(stream: TcpStream) -> io::Result<Socket> {
        Ok(Socket::new(stream.into_std()?))
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        self.stream.set_nodelay(true)
    }

    /// Sends our FIN (`shutdown(2)` for writing).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Runs the non-blocking `call` once the socket is ready for `interest`, as often as it
    /// says `WouldBlock`, registering the socket on first use. A `WouldBlock` clears the
    /// readiness tokio holds, so a stale "ready" cannot make this loop spin.
    pub async fn when_ready<R>(
        &mut self,
        interest: Interest,
        mut call: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        let ready = match &mut self.ready {
            Some(ready) => ready,
            empty => {
                // SAFETY: the descriptor belongs to `self.stream`, which outlives the
                // registration: `ready` is dropped first (field order, and `into_tokio`), and
                // the stream is never replaced while it is registered.
                let registered = unsafe { AsyncFd::register(self.stream.as_raw_fd()) };
                empty.insert(registered?)
            }
        };
        loop {
            let mut guard = ready.ready(interest).await?;
            match guard.try_io(|_| call()) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(done) => return done,
                Err(_would_block) => {}
            }
        }
    }

    /// Reads into `buf`'s spare capacity: what has arrived at once, else whatever arrives
    /// first (0 at the end of the stream). Once registered, the socket is read only when tokio
    /// has seen it readable: a keep-alive connection waiting for its next request would
    /// otherwise pay a `recv` that fails before every one that succeeds.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let fd = self.fd();
        if self.ready.is_none() {
            match eager::read_now(fd, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
        }
        self.when_ready(Interest::READABLE, || eager::read_now(fd, buf))
            .await
    }

    /// The socket as a tokio stream, for hyper and TLS (which need `AsyncRead`/`AsyncWrite`).
    pub fn into_tokio(mut self) -> io::Result<TcpStream> {
        drop(self.ready.take());
        TcpStream::from_std(self.stream)
    }

    /// The socket as a tokio stream, with the client's address: asked of the kernel only here,
    /// so that a connection the fast path answers alone never pays for it.
    pub fn into_tokio_with_peer(self) -> io::Result<(TcpStream, SocketAddr)> {
        let peer = self.stream.peer_addr()?;
        Ok((self.into_tokio()?, peer))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A read that has to wait registers the socket and is woken by the bytes; the stream
    /// taken back out for hyper still reads what follows.
    #[tokio::test]
    async fn a_read_that_waits_is_woken_and_the_socket_can_be_handed_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let mut socket = Socket::from_tokio(server).expect("socket");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"first").await.expect("write");
            client
        });
        let mut buf = BytesMut::with_capacity(64);
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .expect("woken")
            .expect("read");
        assert_eq!(&buf[..n], b"first");
        let mut client = writer.await.expect("writer");
        let mut stream = socket.into_tokio().expect("into tokio");
        client.write_all(b"second").await.expect("write");
        drop(client);
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest)
            .await
            .expect("read");
        assert_eq!(rest, b"second");
    }
}
