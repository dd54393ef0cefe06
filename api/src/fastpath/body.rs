//! Where a response body comes from, and writing head and body to the socket without copying
//! the body in user space.

use std::fs::File;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tessera_raft::storage::ObjectSlice;
use tessera_raft::{ObjectBody, RemoteBody};

use super::socket::Socket;
use super::{eager, sendfile};

/// The bytes of an object body, by where they are.
pub enum BodySource {
    /// In memory (the object cache, or a small object just read): written with the head in one
    /// `writev`.
    Bytes(Bytes),
    /// A slice of a volume file: sent with `sendfile(2)` straight from the page cache.
    File(FileSlice),
    /// Streamed from another node: each chunk is written as it arrives.
    Stream(RemoteBody),
}

/// `len` bytes of `file` from `offset`: an object's needle body in a volume file.
pub struct FileSlice {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

impl From<ObjectSlice> for FileSlice {
    fn from(slice: ObjectSlice) -> FileSlice {
        FileSlice {
            file: slice.file,
            offset: slice.offset,
            len: slice.len,
        }
    }
}

impl BodySource {
    /// The `length` bytes from `offset` of a whole object's body (a byte range). A stream is
    /// already cut by the node that sends it and is returned as it is.
    pub fn part(self, offset: u64, length: u64) -> BodySource {
        match self {
            BodySource::Bytes(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(length as usize).min(bytes.len());
                BodySource::Bytes(bytes.slice(start..end))
            }
            BodySource::File(f) => BodySource::File(FileSlice {
                offset: f.offset + offset,
                len: length.min(f.len.saturating_sub(offset)),
                file: f.file,
            }),
            stream @ BodySource::Stream(_) => stream,
        }
    }
}

impl From<ObjectBody> for BodySource {
    fn from(body: ObjectBody) -> BodySource {
        match body {
            ObjectBody::Local(bytes) => BodySource::Bytes(bytes),
            ObjectBody::Remote(stream) => BodySource::Stream(stream),
        }
    }
}

/// Writes `head` and then the body. The body must hold exactly the `Content-Length` announced
/// in the head (`length`); a stream that ends early or fails is an error, and the caller closes
/// the connection, which is how the client learns the body is incomplete.
pub async fn send(
    socket: &mut Socket,
    head: &[u8],
    body: Option<BodySource>,
    length: u64,
    idle: Duration,
) -> io::Result<()> {
    match body {
        // `send_head` holds the head back for the body: never without one.
        None => write_all(socket, &mut [IoSlice::new(head)], idle).await,
        Some(BodySource::File(slice)) if slice.len == 0 => {
            write_all(socket, &mut [IoSlice::new(head)], idle).await
        }
        Some(BodySource::Bytes(bytes)) => {
            write_all(
                socket,
                &mut [IoSlice::new(head), IoSlice::new(&bytes)],
                idle,
            )
            .await
        }
        Some(BodySource::File(slice)) => {
            sendfile::send_head(socket, head, idle).await?;
            sendfile::send(socket, &slice.file, slice.offset, slice.len, idle).await
        }
        Some(BodySource::Stream(mut stream)) => {
            write_all(socket, &mut [IoSlice::new(head)], idle).await?;
            let mut sent = 0u64;
            while let Some(chunk) = tokio::time::timeout(idle, stream.next())
                .await
                .map_err(|_| timed_out("the forwarded read stalled"))?
            {
                let chunk = chunk.map_err(io::Error::other)?;
                sent += chunk.len() as u64;
                write_all(socket, &mut [IoSlice::new(&chunk)], idle).await?;
            }
            if sent != length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the forwarded body ended early",
                ));
            }
            Ok(())
        }
    }
}

/// Writes every slice with as few `writev` calls as the socket allows, each tried at once
/// ([`eager::write`]); fails with `TimedOut` when the client accepts nothing for `idle`.
pub async fn write_all(
    socket: &mut Socket,
    mut slices: &mut [IoSlice<'_>],
    idle: Duration,
) -> io::Result<()> {
    while !slices.is_empty() {
        let fd = socket.fd();
        let n = eager::write(socket, idle, || eager::writev(fd, slices)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}
