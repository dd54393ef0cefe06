//! A group's needle index in memory, so that a read that misses the object cache finds an
//! object's bytes without leaving the async thread (no blocking-pool hop, no RocksDB read).
//!
//! It mirrors the `needles` column family joined with each object's content type, and is
//! changed only after the RocksDB batch it mirrors has been written (apply, compaction,
//! migration, repair, snapshot install, deletion): so it never names bytes the durable index
//! does not, and those bytes were fdatasynced before that batch (see [`super::GroupVolumes::sync`]).
//! It may lag the durable index by one batch; that is the same window a RocksDB reader has.
//!
//! Size: an entry is keyed by the first 8 bytes of the SHA-256 and holds volume, offset, length
//! and a content-type code (24 bytes, 25 with hashbrown's control byte), so ~30–57 bytes per
//! object depending on where the table is between two doublings: 1 M objects ≈ 30–57 MiB.
//! Because the key is only a prefix, a lookup confirms it found the object asked for by
//! reading the needle's header (56 bytes, next to the body in the same page-cache pages; a
//! small object's whole needle, see [`INLINE_MAX`]) and comparing the full hash and the
//! length; a prefix shared by two objects so costs one of them the fallback (the RocksDB
//! path), never a wrong answer. The same check makes a stale location harmless: volume files
//! are append-only and a needle is never overwritten in place.
//!
//! Readers also take the volume's open file from here: a reader that holds an `Arc<File>`
//! keeps the bytes readable even if compaction unlinks the file meanwhile, and a reader that
//! finds its volume gone from the table gets `None` (and the caller's fallback looks again).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Buf, Bytes};

use crate::object::Sha256;
use crate::probe::CONTENT_TYPES;
use crate::volume::needle::{decode_header, verify, HEADER_LEN};
use crate::volume::{Location, ObjectSlice};

/// Where one object's body is, packed: volume id, body offset and length (volumes and objects
/// are far below 4 GiB; anything larger is simply not kept here) and the index of its content
/// type in [`CONTENT_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    volume: u32,
    offset: u32,
    len: u32,
    kind: u8,
}

impl Slot {
    fn new(at: &Location, content_type: &str) -> Option<Slot> {
        Some(Slot {
            volume: at.volume,
            offset: u32::try_from(at.offset).ok()?,
            len: u32::try_from(at.len).ok()?,
            kind: CONTENT_TYPES
                .iter()
                .position(|t| *t == content_type)
                .and_then(|i| u8::try_from(i).ok())?,
        })
    }

    fn at(&self) -> Location {
        Location {
            volume: self.volume,
            offset: u64::from(self.offset),
            len: u64::from(self.len),
        }
    }
}

/// An object found in memory: what the fast path needs to answer without the record.
#[derive(Clone, Debug)]
pub struct Resident {
    /// Where the needle's body is (for the check that it is intact, `GroupVolumes::is_verified`).
    pub at: Location,
    pub size: u64,
    pub content_type: &'static str,
    pub slice: ObjectSlice,
    /// The body read and checked with the header, for an object of at most [`INLINE_MAX`]
    /// bytes.
    pub body: Option<Bytes>,
}

/// Objects up to this size are read whole, header and body in one `pread`, and their checksum
/// is checked on every read (CRC-32 of 16 KiB: about a microsecond). For a small object that
/// one call and a copy into the response's `writev` cost less than a header read followed by
/// `sendfile`, whose page-splicing overhead does not pay for a few pages; and bytes checked on
/// every read need no earlier check (`GroupVolumes::is_verified`) before they are served.
/// `bench/scale.sh` reads 2 KB objects; bench/README.md has the figures.
pub const INLINE_MAX: u64 = 16 << 10;

/// A change of a group's index, to publish in memory once the batch that makes it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexChange {
    /// An upload (or a repair) put `sha`'s bytes at `at`.
    Stored {
        sha: Sha256,
        at: Location,
        content_type: String,
    },
    /// `sha`'s last reference was dropped: record and index entry deleted.
    Deleted(Sha256),
}

#[derive(Default)]
struct Inner {
    slots: HashMap<u64, Slot>,
    files: HashMap<u32, Arc<File>>,
}

/// Entries gathered while a group's index is read from RocksDB, published at once.
#[derive(Default)]
pub(crate) struct Loaded {
    slots: HashMap<u64, Slot>,
}

impl Loaded {
    pub(crate) fn add(&mut self, sha: &Sha256, at: &Location, content_type: &str) {
        if let Some(slot) = Slot::new(at, content_type) {
            self.slots.insert(sha.prefix_u64(), slot);
        }
    }
}

/// See the module documentation. Writers hold the lock only for a map operation (never for
/// I/O), so async readers never wait behind a disk.
#[derive(Default)]
pub struct MemoryIndex {
    inner: RwLock<Inner>,
}

impl MemoryIndex {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `sha`'s body, if this table knows it and the needle there names `sha`. Costs one
    /// positioned read, from the page cache as a rule (like the `sendfile` that follows it):
    /// of the needle header, or of the whole needle for an object of at most [`INLINE_MAX`]
    /// bytes, whose body is then checked against its checksum and returned in memory.
    pub fn get(&self, sha: &Sha256) -> Option<Resident> {
        let (slot, file) = {
            let inner = self.read();
            let slot = *inner.slots.get(&sha.prefix_u64())?;
            (slot, inner.files.get(&slot.volume)?.clone())
        };
        let at = slot.at();
        let start = at.offset.checked_sub(HEADER_LEN)?;
        let body = if at.len <= INLINE_MAX {
            let mut needle = vec![0u8; (HEADER_LEN + at.len) as usize];
            file.read_exact_at(&mut needle, start).ok()?;
            verify(&needle, sha, at.len).ok()?;
            let mut body = Bytes::from(needle);
            body.advance(HEADER_LEN as usize);
            Some(body)
        } else {
            let mut head = [0u8; HEADER_LEN as usize];
            file.read_exact_at(&mut head, start).ok()?;
            let header = decode_header(&head).ok()?;
            if header.sha != *sha || header.len != at.len {
                return None;
            }
            None
        };
        Some(Resident {
            at,
            size: at.len,
            content_type: CONTENT_TYPES.get(usize::from(slot.kind))?,
            slice: ObjectSlice {
                file,
                offset: at.offset,
                len: at.len,
            },
            body,
        })
    }

    /// Publishes `change`; call only after the batch that makes it is written.
    pub fn publish(&self, change: &IndexChange) {
        match change {
            IndexChange::Stored {
                sha,
                at,
                content_type,
            } => self.insert(sha, at, content_type),
            IndexChange::Deleted(sha) => self.remove(sha),
        }
    }

    /// Records that `sha`'s bytes are at `at`. An object this table cannot hold is dropped
    /// from it instead.
    fn insert(&self, sha: &Sha256, at: &Location, content_type: &str) {
        let mut inner = self.write();
        match Slot::new(at, content_type) {
            Some(slot) => inner.slots.insert(sha.prefix_u64(), slot),
            None => inner.slots.remove(&sha.prefix_u64()),
        };
    }

    /// Compaction moved `sha`'s needle from `from` to `to`.
    pub(crate) fn moved(&self, sha: &Sha256, from: &Location, to: &Location) {
        let mut inner = self.write();
        if let Some(slot) = inner.slots.get_mut(&sha.prefix_u64()) {
            if slot.at() == *from {
                match Slot::new(to, CONTENT_TYPES[usize::from(slot.kind)]) {
                    Some(moved) => *slot = moved,
                    None => {
                        inner.slots.remove(&sha.prefix_u64());
                    }
                }
            }
        }
    }

    fn remove(&self, sha: &Sha256) {
        self.write().slots.remove(&sha.prefix_u64());
    }

    /// The bytes at `at` are damaged: never offered from here again.
    pub(crate) fn remove_at(&self, sha: &Sha256, at: &Location) {
        let mut inner = self.write();
        if inner
            .slots
            .get(&sha.prefix_u64())
            .is_some_and(|slot| slot.at() == *at)
        {
            inner.slots.remove(&sha.prefix_u64());
        }
    }

    /// A volume file readers may now be sent to.
    pub(crate) fn add_file(&self, id: u32, file: Arc<File>) {
        self.write().files.insert(id, file);
    }

    /// A volume file that is about to be unlinked: readers that find a slot in it fall back.
    pub(crate) fn remove_file(&self, id: u32) {
        self.write().files.remove(&id);
    }

    /// Forgets everything (a snapshot install replaces the group's state and volumes).
    pub(crate) fn clear(&self) {
        let mut inner = self.write();
        inner.slots = HashMap::new();
        inner.files.clear();
    }

    /// Replaces every object entry with `loaded` (loading a group), keeping the files.
    pub(crate) fn replace(&self, mut loaded: Loaded) {
        loaded.slots.shrink_to_fit();
        self.write().slots = loaded.slots;
    }

    /// How many objects the table holds.
    pub fn len(&self) -> usize {
        self.read().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_24_bytes_with_its_key() {
        assert_eq!(std::mem::size_of::<(u64, Slot)>(), 24);
    }
}
