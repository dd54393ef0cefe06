//! File bytes to a socket with `sendfile(2)`: the kernel moves page-cache pages to the socket,
//! and the body never passes through user space.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::eager;
use super::socket::Socket;

/// Most bytes one call sends. The socket is non-blocking, so a call returns as soon as its send
/// buffer is full; this bounds how long one call may spend reading pages that are not cached
/// (the one part of `sendfile` that can wait for the disk on an async thread).
const CHUNK: u64 = 1 << 20;

/// Writes a response head with `MSG_MORE`, so that the kernel holds it back until the body
/// that [`send`] appends next joins it: head and body leave in full segments, and the client
/// wakes once per response instead of once for the head and again for the body.
pub async fn send_head(socket: &mut Socket, mut head: &[u8], idle: Duration) -> io::Result<()> {
    let fd = socket.fd();
    while !head.is_empty() {
        let sent = eager::write(socket, idle, || {
            // SAFETY: `head` is valid for `head.len()` bytes for the duration of the call.
            let n = unsafe {
                libc::send(
                    fd,
                    head.as_ptr().cast(),
                    head.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        })
        .await?;
        if sent == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        head = &head[sent..];
    }
    Ok(())
}

/// Sends `len` bytes of `file` starting at `offset`. Each call is tried at once and the socket
/// awaited only when it is full ([`eager::write`]: no timer is armed for a body that fits the
/// send buffer, and a new socket need not wait for tokio to learn that it is writable).
/// Fails with `TimedOut` when the socket accepts nothing for `idle`, and with `UnexpectedEof`
/// when the file ends first.
pub async fn send(
    socket: &mut Socket,
    file: &File,
    offset: u64,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    let end = offset
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
    let mut at = offset;
    let fd = socket.fd();
    while at < end {
        let count = (end - at).min(CHUNK) as usize;
        let sent = eager::write(socket, idle, || {
            sendfile(fd, file.as_raw_fd(), &mut at, count)
        })
        .await?;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before the body",
            ));
        }
    }
    Ok(())
}

fn sendfile(socket: RawFd, file: RawFd, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
    // SAFETY: both descriptors are borrowed from live `Socket` and `File` values for the
    // duration of the call, and `off` is a valid, exclusively borrowed off_t. sendfile(2) reads
    // from the file and writes to the socket; it touches no memory of this process besides
    // `off`.
    let sent = unsafe { libc::sendfile(socket, file, &mut off, count) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A file larger than a socket buffer, sent from an offset to a real socket whose reader
    /// starts late (so that sends are partial and wait for writability).
    #[tokio::test]
    async fn sends_a_file_slice_to_a_socket() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (offset, len) = (1234u64, 2_500_000u64);
        let reader = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            sock.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut socket = Socket::from_tokio(TcpStream::connect(addr).await.unwrap()).unwrap();
        send(&mut socket, &file, offset, len, Duration::from_secs(30))
            .await
            .unwrap();
        drop(socket);
        let got = reader.await.unwrap();
        assert_eq!(got.len() as u64, len);
        assert!(got == data[offset as usize..(offset + len) as usize]);
    }

    #[tokio::test]
    async fn a_short_file_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"only ten b").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut socket = Socket::from_tokio(stream).unwrap();
        let err = send(&mut socket, &file, 5, 100, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
