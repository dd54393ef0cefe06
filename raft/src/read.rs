//! Object reads as they travel between nodes: what was asked for, and what comes back.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tessera_storage::ObjectMeta;

use crate::error::ClusterError;

/// One `bytes=` range of an HTTP `Range` header, before it is checked against the object size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByteRange {
    /// `a-`: from `a` to the end.
    From(u64),
    /// `a-b`: inclusive bounds.
    Inclusive(u64, u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The `(offset, length)` this range selects from an object of `size` bytes, or `None` when
    /// it selects nothing (HTTP 416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        let (start, end_incl) = match self {
            ByteRange::From(a) => (a, size.checked_sub(1)?),
            ByteRange::Inclusive(a, b) => (a, b.min(size.checked_sub(1)?)),
            ByteRange::Suffix(0) => return None,
            ByteRange::Suffix(n) => (size.saturating_sub(n), size.checked_sub(1)?),
        };
        (start <= end_incl).then(|| (start, end_incl - start + 1))
    }
}

/// What a read asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSpec {
    /// Only part of the body.
    pub range: Option<ByteRange>,
    /// Only the record, no body (HEAD, metadata, `If-None-Match`).
    pub meta_only: bool,
    /// Answer from the shard leader after confirming its leadership, so that the mutable part
    /// of the record (the reference count) is current. Bytes never need this: they are immutable.
    pub linearizable: bool,
}

impl ReadSpec {
    /// Only the record of an object, no body; from the shard leader if `linearizable`.
    pub fn record(linearizable: bool) -> ReadSpec {
        ReadSpec {
            meta_only: true,
            linearizable,
            range: None,
        }
    }
}

/// Which part of the body a read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeOutcome {
    Full,
    Partial { offset: u64, length: u64 },
    Unsatisfiable,
}

impl RangeOutcome {
    pub fn of(range: Option<ByteRange>, size: u64) -> RangeOutcome {
        match range {
            None => RangeOutcome::Full,
            Some(r) => match r.resolve(size) {
                Some((offset, length)) => RangeOutcome::Partial { offset, length },
                None => RangeOutcome::Unsatisfiable,
            },
        }
    }
}

/// The first message of a read: the object's metadata and the part of the body that follows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadHead {
    pub meta: ObjectMeta,
    pub range: RangeOutcome,
}

/// A streamed body coming from another node.
pub type RemoteBody = Pin<Box<dyn Stream<Item = Result<Bytes, ClusterError>> + Send>>;

/// The body of a read: in memory when this node holds a replica, streamed when it was forwarded.
pub enum ObjectBody {
    Local(Bytes),
    Remote(RemoteBody),
}

/// A successful read.
pub struct ObjectRead {
    pub head: ReadHead,
    /// `None` for metadata-only reads and unsatisfiable ranges.
    pub body: Option<ObjectBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(ByteRange::Inclusive(0, 9).resolve(100), Some((0, 10)));
        assert_eq!(ByteRange::Inclusive(90, 500).resolve(100), Some((90, 10)));
        assert_eq!(ByteRange::From(99).resolve(100), Some((99, 1)));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some((90, 10)));
        assert_eq!(ByteRange::Suffix(1000).resolve(100), Some((0, 100)));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(ByteRange::Inclusive(5, 4).resolve(100), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
    }
}
