//! The snapshot file: one group's replicated state as a flat stream of records.
//!
//! Snapshots are built from a [`GroupView`] (a RocksDB snapshot, a consistent point-in-time view,
//! plus the volume files open at that instant) and written to a file; they are shipped in chunks
//! and installed by streaming the file back into the database and fresh volumes. At no point is
//! more than one object held in memory.
//!
//! Layout: `MAGIC`, then the group's objects as needle records `[0xfe][sha256 32][len u64][body]`
//! (their checksums verified while reading the volume), then records
//! `[cf: u8][key_len: u32][value_len: u32][key][value]` of [`Cf::STATE`], then the end marker
//! `0xff` and the record count (`u64`), so a truncated file is detected. Bytes come first: while
//! a snapshot is being installed, a reader that finds a record also finds its bytes. Files of
//! the previous format (`MAGIC_V1`, bytes as `blobs` records) are still installed, their bytes
//! going to volumes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions, Snapshot, WriteBatch};

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;
use crate::object::Sha256;
use crate::volume::{read_needle, Location};

const MAGIC: &[u8; 8] = b"TSNAP\x00\x00\x02";
const MAGIC_V1: &[u8; 8] = b"TSNAP\x00\x00\x01";
const NEEDLE: u8 = 0xfe;
const END: u8 = 0xff;
/// Installing flushes a write batch every this many bytes.
const INSTALL_BATCH_BYTES: usize = 16 << 20;
/// No object is larger than this; a needle record claiming more is a damaged file.
const MAX_OBJECT: u64 = 1 << 32;

/// A group's state frozen for a snapshot: a RocksDB snapshot and the volumes it points into.
pub struct GroupView<'a> {
    group: u32,
    snap: Snapshot<'a>,
    files: BTreeMap<u32, Arc<File>>,
}

impl Store {
    /// Freezes `group`'s state. Taken under the volumes' writer lock, so no compaction swaps
    /// files between the RocksDB snapshot and the file list; the handles keep deleted files
    /// readable until the view is dropped.
    pub fn group_view(&self, group: u32) -> Result<GroupView<'_>, StorageError> {
        let volumes = self.volumes(group)?;
        let _writer = volumes.writer();
        Ok(GroupView {
            group,
            snap: self.db().snapshot(),
            files: volumes.files(),
        })
    }
}

/// A key and its value as RocksDB's iterators return them.
type KeyValue = (Box<[u8]>, Box<[u8]>);

fn group_iter<'a>(
    store: &'a Store,
    snap: &'a Snapshot<'_>,
    cf: Cf,
    group: u32,
) -> impl Iterator<Item = Result<KeyValue, rocksdb::Error>> + 'a {
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(keys::group_end(group));
    opts.fill_cache(false);
    let start = keys::group_start(group);
    snap.iterator_cf_opt(
        store.cf(cf),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    )
}

/// Writes the state of `view` to `out`. Returns the number of records.
pub fn export_group(
    store: &Store,
    view: &GroupView<'_>,
    out: impl Write,
) -> Result<u64, StorageError> {
    let group = view.group;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    out.write_all(MAGIC)?;
    let mut count = 0u64;
    for item in group_iter(store, &view.snap, Cf::Needles, group) {
        let (key, value) = item?;
        let sha = sha_of_key(&key)?;
        let at = Location::decode(&value)?;
        let Some(file) = view.files.get(&at.volume) else {
            tracing::warn!(group, %sha, volume = at.volume, "snapshot: volume missing; object left out");
            continue;
        };
        let body = match read_needle(file, &at, &sha)? {
            Ok(body) => body,
            Err(fault) => {
                // The receiver repairs it like any damaged object instead of copying bad bytes.
                tracing::warn!(group, %sha, %fault, "snapshot: damaged object left out");
                continue;
            }
        };
        out.write_all(&[NEEDLE])?;
        out.write_all(&sha.0)?;
        out.write_all(&(body.len() as u64).to_le_bytes())?;
        out.write_all(&body)?;
        count += 1;
    }
    for (tag, cf) in Cf::STATE.iter().enumerate() {
        for item in group_iter(store, &view.snap, *cf, group) {
            let (key, value) = item?;
            let key_len = u32::try_from(key.len()).map_err(|_| corrupt("key too long"))?;
            let value_len = u32::try_from(value.len()).map_err(|_| corrupt("value too long"))?;
            out.write_all(&[tag as u8])?;
            out.write_all(&key_len.to_le_bytes())?;
            out.write_all(&value_len.to_le_bytes())?;
            out.write_all(&key)?;
            out.write_all(&value)?;
            count += 1;
        }
    }
    out.write_all(&[END])?;
    out.write_all(&count.to_le_bytes())?;
    out.flush()?;
    Ok(count)
}

fn sha_of_key(key: &[u8]) -> Result<Sha256, StorageError> {
    let raw: [u8; 32] = key
        .get(keys::GROUP_LEN..)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| corrupt("object key length"))?;
    Ok(Sha256(raw))
}

/// Replaces `group`'s state and volumes with what `input` holds. The caller writes the applied
/// log id afterwards; `finish` is added to the last batch so it lands atomically with the final
/// records and is fsynced (after the new volumes are).
pub fn import_group(
    store: &Store,
    group: u32,
    input: impl Read,
    finish: impl FnOnce(&mut WriteBatch) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC && &magic != MAGIC_V1 {
        return Err(corrupt("bad snapshot magic"));
    }
    let volumes = store.volumes(group)?;
    let _writer = volumes.writer();
    volumes.reset()?;
    let mut batch = WriteBatch::default();
    for cf in Cf::STATE.into_iter().chain([Cf::Needles]) {
        batch.delete_range_cf(
            store.cf(cf),
            keys::group_start(group),
            keys::group_end(group),
        );
    }
    let mut count = 0u64;
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == END {
            let mut expected = [0u8; 8];
            input.read_exact(&mut expected)?;
            if u64::from_le_bytes(expected) != count {
                return Err(corrupt("snapshot record count mismatch"));
            }
            break;
        }
        count += 1;
        let (sha, body) = if tag[0] == NEEDLE {
            let mut head = [0u8; 40];
            input.read_exact(&mut head)?;
            let sha = sha_of_key(&[&group.to_be_bytes()[..], &head[..32]].concat())?;
            let mut len = [0u8; 8];
            len.copy_from_slice(&head[32..]);
            let len = u64::from_le_bytes(len);
            if len > MAX_OBJECT {
                return Err(corrupt("needle record too long"));
            }
            let mut body = vec![0u8; len as usize];
            input.read_exact(&mut body)?;
            (sha, body)
        } else {
            let cf = *Cf::STATE
                .get(usize::from(tag[0]))
                .ok_or_else(|| corrupt("unknown column family tag"))?;
            let mut lens = [0u8; 8];
            input.read_exact(&mut lens)?;
            let key_len = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
            let value_len = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
            let mut key = vec![0u8; key_len];
            input.read_exact(&mut key)?;
            if !key.starts_with(&keys::group_start(group)) {
                return Err(corrupt("snapshot record of another group"));
            }
            let mut value = vec![0u8; value_len];
            input.read_exact(&mut value)?;
            if cf != Cf::Blobs {
                batch.put_cf(store.cf(cf), key, value);
                continue;
            }
            (sha_of_key(&key)?, value)
        };
        if Sha256::of(&body) != sha {
            return Err(corrupt("snapshot object does not match its hash"));
        }
        let at = volumes.append(&sha, &body)?;
        store.stage_location(&mut batch, &volumes, &sha, &at)?;
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            store.write_state(group, std::mem::take(&mut batch), false)?;
        }
    }
    store.stage_volume_head(&mut batch, &volumes)?;
    finish(&mut batch)?;
    store.write_state(group, batch, true)?;
    store.load_memory_index(&volumes)?;
    Ok(count)
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectMeta, Sha256};

    #[test]
    fn export_then_import_restores_exactly_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let meta = ObjectMeta {
            size: 5000,
            content_type: "image/jpeg".into(),
            width: 2,
            height: 2,
            refcount: 0,
            created_ms: 1,
        };
        let mut batch = WriteBatch::default();
        for i in 0..50u32 {
            let bytes = vec![i as u8; 5000];
            let group = i % 2;
            store
                .stage_put_object(&mut batch, group, &Sha256::of(&bytes), &meta, &bytes)
                .unwrap();
        }
        store.volumes(1).unwrap().sync().unwrap();
        store.write_state(0, batch, false).unwrap();

        let mut file = Vec::new();
        let view = store.group_view(1).unwrap();
        // 25 needles and 25 records.
        assert_eq!(export_group(&store, &view, &mut file).unwrap(), 50);
        drop(view);

        let other = Store::open(&dir.path().join("other")).unwrap();
        let n = import_group(&other, 1, &file[..], |_| Ok(())).unwrap();
        assert_eq!(n, 50);
        assert!(other.volume_set().dir(1).join("00000001.vol").exists());
        for i in 0..50u32 {
            let bytes = vec![i as u8; 5000];
            let found = other.object_bytes(1, &Sha256::of(&bytes)).unwrap();
            assert_eq!(found.is_some(), i % 2 == 1, "object {i}");
            // The installed group's index in memory is loaded with it.
            let resident = other.resident_object(1, &Sha256::of(&bytes));
            assert_eq!(resident.is_some(), i % 2 == 1, "object {i}");
        }
        let truncated = &file[..file.len() - 3];
        assert!(import_group(&other, 1, truncated, |_| Ok(())).is_err());
    }
}
