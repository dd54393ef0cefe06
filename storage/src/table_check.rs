//! Reading every RocksDB table once after start-up, so that damage done to them while the node
//! was down (a flipped bit, a bad sector) is found then, rather than whenever a read or a
//! compaction happens to touch the damaged block. The chaos campaign (seed 310) saw a table
//! flipped while its node was down go unnoticed for 50 s, until a compaction read it in the
//! middle of a network partition: the node then moved its database aside and rebuilt it, and
//! refused votes meanwhile, on top of the partition. Found at start-up, the same rebuild
//! happens while the node is rejoining anyway.

use rocksdb::{Direction, IteratorMode, ReadOptions};

use crate::db::{Cf, Store};
use crate::error::StorageError;

impl Store {
    /// Reads the records of `cf` in key order from `from` (or the start), stopping after about
    /// `budget` bytes of keys and values so that the caller can pace the pass between calls:
    /// the bytes read and the key to go on from (`None` once `cf` was read to its end).
    /// Every block read is checked against its checksum (values in blob files included), also
    /// blocks of records a range deletion covers (what a compaction would still read); a
    /// damaged one is an error for which [`StorageError::is_corruption`] holds. Nothing read
    /// goes into the block cache.
    pub fn check_tables(
        &self,
        cf: Cf,
        from: Option<&[u8]>,
        budget: u64,
    ) -> Result<(u64, Option<Vec<u8>>), StorageError> {
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        opts.set_verify_checksums(true);
        // Range deletions (the purged Raft log, a group's records replaced by a snapshot) let
        // an iterator skip the blocks they cover, which compactions still read: read them too.
        opts.set_ignore_range_deletions(true);
        let mode = match from {
            Some(key) => IteratorMode::From(key, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut read = 0u64;
        for item in self.db().iterator_cf_opt(self.cf(cf), opts, mode) {
            let (key, value) = item?;
            if read >= budget {
                return Ok((read, Some(key.into_vec())));
            }
            read += (key.len() + value.len()) as u64;
        }
        Ok((read, None))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use super::*;

    /// Reads `cf` whole, in small slices as the node does.
    fn check_all(store: &Store, cf: Cf) -> Result<u64, StorageError> {
        let (mut total, mut from) = (0, None);
        loop {
            let (read, next) = store.check_tables(cf, from.as_deref(), 64 << 10)?;
            total += read;
            match next {
                Some(key) => from = Some(key),
                None => return Ok(total),
            }
        }
    }

    /// A table damaged while the database was closed opens without complaint (RocksDB reads
    /// only a table's footer and index then) and is found by the check; an intact one is read
    /// whole, slice after slice.
    #[test]
    fn a_table_damaged_while_closed_is_found_by_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let records = 4000usize;
        {
            let store = Store::open(&path).unwrap();
            for i in 0..records {
                // Incompressible values, so that the data blocks fill most of the table.
                let value: Vec<u8> = (0..200u32)
                    .map(|j| {
                        ((i as u32).wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)) as u8
                    })
                    .collect();
                store
                    .db()
                    .put_cf(store.cf(Cf::Objects), format!("key-{i:06}"), value)
                    .unwrap();
            }
            store.db().flush_cf(store.cf(Cf::Objects)).unwrap();
            assert!(check_all(&store, Cf::Objects).unwrap() >= (records * 200) as u64);
            // Deleted as the Raft log is purged: a range tombstone in a newer table lets
            // readers skip the covered blocks, which a compaction still reads.
            let mut purge = rocksdb::WriteBatch::default();
            purge.delete_range_cf(store.cf(Cf::Objects), "key-", "key-~");
            store.write(purge, true).unwrap();
            store.db().flush_cf(store.cf(Cf::Objects)).unwrap();
            for cf in Cf::ALL {
                check_all(&store, cf).unwrap();
            }
        }
        // The first table flushed holds the records; the second only the tombstone.
        let table = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .max_by_key(|p| p.metadata().unwrap().len())
            .expect("the flushed table");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&table)
            .unwrap();
        let len = file.metadata().unwrap().len();
        // Data blocks come first in a table; its index and footer are at the end.
        for at in [len / 10, len / 4, len / 2] {
            let mut byte = [0u8; 1];
            file.seek(SeekFrom::Start(at)).unwrap();
            file.read_exact(&mut byte).unwrap();
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(&[byte[0] ^ 0x5a]).unwrap();
        }
        file.sync_all().unwrap();
        drop(file);

        let store = Store::open(&path).expect("a damaged data block does not stop the open");
        let err = check_all(&store, Cf::Objects).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }
}
