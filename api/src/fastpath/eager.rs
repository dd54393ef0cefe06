//! Socket calls made before tokio has reported the socket ready. Tokio learns a new socket's
//! readiness from the event loop's next turn, so a connection that only goes through tokio
//! waits one turn to read its request (already in the receive buffer when it is accepted, as a
//! rule) and possibly one more to write its answer (the send buffer of a new socket is empty).
//! Trying the call first and asking tokio only after `WouldBlock` lets a one-request connection
//! be read, answered and closed in one poll of its task (and never registered with the event
//! loop at all: see [`Socket`]).

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::Interest;

use super::socket::Socket;

/// Reads what socket `fd` has already received into `buf`'s spare capacity, without waiting:
/// the bytes read (0 at end of stream), or `WouldBlock` when nothing has arrived yet.
pub fn read_now(fd: RawFd, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(1024);
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`; recv(2) writes
    // at most that many bytes into it and touches nothing else of this process.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity.
    unsafe { buf.advance_mut(n) };
    Ok(n)
}

/// Runs the non-blocking write `call` at once and, only when the socket's send buffer is full,
/// waits for the socket to be writable (failing with `TimedOut` when the client accepts
/// nothing for `idle`). The wait goes through [`Socket::when_ready`], which clears the readiness
/// tokio holds after a `WouldBlock`, so a stale "writable" cannot make this loop spin.
pub async fn write<R>(
    socket: &mut Socket,
    idle: Duration,
    mut call: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            done => return done,
        }
    }
    tokio::time::timeout(idle, socket.when_ready(Interest::WRITABLE, call))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))?
}

/// One `writev(2)` of `slices` to socket `fd`: the bytes written.
pub fn writev(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = libc::c_int::try_from(slices.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and every slice is valid for
    // reading for the duration of the call; writev(2) only reads them.
    let n = unsafe { libc::writev(fd, slices.as_ptr().cast(), count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, Socket) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, Socket::from_tokio(server).unwrap())
    }

    /// Reads what has arrived, says `WouldBlock` when nothing has, and 0 at the end.
    #[tokio::test]
    async fn read_now_takes_what_has_arrived_without_waiting() {
        let (mut client, server) = pair().await;
        let mut buf = BytesMut::with_capacity(16);
        let err = read_now(server.fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while buf.len() < 18 {
            match read_now(server.fd(), &mut buf) {
                Ok(n) => assert!(n > 0, "no end of stream before the client closes"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the request never arrived");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match read_now(server.fd(), &mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the close never arrived");
                    tokio::task::yield_now().await;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A client that reads late gets every byte; one that never reads makes the write time out
    /// after `idle` — having waited for writability, not retried the call in a loop.
    #[tokio::test]
    async fn write_waits_for_room_and_gives_up_on_a_client_that_never_reads() {
        let (mut client, mut server) = pair().await;
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut at = 0;
        while at < data.len() {
            let slices = [IoSlice::new(&data[at..])];
            let fd = server.fd();
            at += write(&mut server, Duration::from_secs(30), || writev(fd, &slices))
                .await
                .unwrap();
        }
        drop(server);
        assert!(reader.await.unwrap() == data);

        let (_client, mut server) = pair().await;
        let fd = server.fd();
        let chunk = vec![7u8; 1 << 20];
        let mut calls = 0u32;
        let started = Instant::now();
        let err = loop {
            let written = write(&mut server, Duration::from_millis(300), || {
                calls += 1;
                if calls > 1000 {
                    return Err(io::Error::other("spun"));
                }
                writev(fd, &[IoSlice::new(&chunk)])
            })
            .await;
            if let Err(e) = written {
                break e;
            }
        };
        assert_eq!(
            err.kind(),
            io::ErrorKind::TimedOut,
            "{err} after {calls} calls"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            calls < 100,
            "{calls} calls: the write spun instead of waiting"
        );
    }
}
