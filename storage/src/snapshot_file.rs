//! The snapshot file: one group's replicated state as a flat stream of records.
//!
//! Snapshots are built from a RocksDB snapshot (a consistent, point-in-time view) by a range scan
//! and written to a file; they are shipped in chunks and installed by streaming the file back
//! into the database. At no point is a whole shard held in memory.
//!
//! Layout: `MAGIC`, then records `[cf: u8][key_len: u32][value_len: u32][key][value]`, then the
//! end marker `0xff` and the record count (`u64`), so a truncated file is detected.

use std::io::{BufReader, BufWriter, Read, Write};

use rocksdb::{Direction, IteratorMode, ReadOptions, Snapshot, WriteBatch};

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;

const MAGIC: &[u8; 8] = b"TSNAP\x00\x00\x01";
const END: u8 = 0xff;
/// Installing flushes a write batch every this many bytes.
const INSTALL_BATCH_BYTES: usize = 16 << 20;

/// Writes `group`'s state as seen by `snap` to `out`. Returns the number of records.
pub fn export_group(
    store: &Store,
    snap: &Snapshot<'_>,
    group: u32,
    out: impl Write,
) -> Result<u64, StorageError> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    out.write_all(MAGIC)?;
    let mut count = 0u64;
    for (tag, cf) in Cf::STATE.iter().enumerate() {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::group_end(group));
        opts.fill_cache(false);
        let start = keys::group_start(group);
        let iter = snap.iterator_cf_opt(
            store.cf(*cf),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
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

/// Replaces `group`'s state with the records read from `input`. The caller writes the applied
/// log id afterwards; `finish` is added to the last batch so it lands atomically with the final
/// records and is fsynced.
pub fn import_group(
    store: &Store,
    group: u32,
    input: impl Read,
    finish: impl FnOnce(&mut WriteBatch) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt("bad snapshot magic"));
    }
    let mut batch = WriteBatch::default();
    for cf in Cf::STATE {
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
        batch.put_cf(store.cf(cf), key, value);
        count += 1;
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            store.write(std::mem::take(&mut batch), false)?;
        }
    }
    finish(&mut batch)?;
    store.write(batch, true)?;
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
        store.write(batch, false).unwrap();

        let mut file = Vec::new();
        let snap = store.db().snapshot();
        assert_eq!(export_group(&store, &snap, 1, &mut file).unwrap(), 50);
        drop(snap);

        let other = Store::open(&dir.path().join("other")).unwrap();
        let n = import_group(&other, 1, &file[..], |_| Ok(())).unwrap();
        assert_eq!(n, 50);
        for i in 0..50u32 {
            let bytes = vec![i as u8; 5000];
            let found = other.object_bytes(1, &Sha256::of(&bytes)).unwrap();
            assert_eq!(found.is_some(), i % 2 == 1, "object {i}");
        }
        let truncated = &file[..file.len() - 3];
        assert!(import_group(&other, 1, truncated, |_| Ok(())).is_err());
    }
}
