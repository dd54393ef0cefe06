use std::path::Path;

use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use crate::error::StorageError;
use crate::space::DiskSpace;

/// A key and its value, as a scan yields them.
pub type Record = (Box<[u8]>, Box<[u8]>);

/// The first key after every key that starts with `prefix`; `None` when there is none (a
/// prefix of `0xff` bytes only).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
use crate::volume::{Volumes, DEFAULT_VOLUME_BYTES};

/// The column families of a node's database.
///
/// Raft bookkeeping (`log`, `raft_meta`, `sm_meta`) is kept apart from the replicated state
/// (`objects`, `blobs`) so that snapshots scan only the latter, and so that each can be tuned:
/// `blobs` and `log` carry image bytes and use integrated BlobDB, so large values are written to
/// blob files once and never rewritten by compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Raft log entries: group ++ index -> entry.
    Log,
    /// Per-group vote, committed log id and last purged log id.
    RaftMeta,
    /// Per-group applied log id and membership, written atomically with each apply.
    SmMeta,
    /// Object metadata: group ++ sha256 -> [`crate::ObjectMeta`].
    Objects,
    /// Object bytes: group ++ sha256 -> raw image bytes.
    Blobs,
    /// Named records of the catalogue group (placement, and the annotation domain to come).
    Catalog,
    /// Where object bytes are: group ++ sha256 -> [`crate::volume::Location`] in a volume file.
    Needles,
}

impl Cf {
    pub const ALL: [Cf; 7] = [
        Cf::Log,
        Cf::RaftMeta,
        Cf::SmMeta,
        Cf::Objects,
        Cf::Blobs,
        Cf::Catalog,
        Cf::Needles,
    ];

    /// The column families of a group's state that snapshots carry as records, in snapshot
    /// order (the position is the record's tag). `blobs` only holds bytes of data dirs not yet
    /// migrated to volumes; snapshot files carry needles before these records, so while a
    /// snapshot is being installed a reader that finds a record also finds its bytes.
    pub const STATE: [Cf; 3] = [Cf::Blobs, Cf::Objects, Cf::Catalog];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Log => "log",
            Cf::RaftMeta => "raft_meta",
            Cf::SmMeta => "sm_meta",
            Cf::Objects => "objects",
            Cf::Blobs => "blobs",
            Cf::Catalog => "catalog",
            Cf::Needles => "needles",
        }
    }

    fn options(self, cache: &Cache) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        match self {
            Cf::Log | Cf::Blobs => {
                // Image bytes go to blob files: the LSM tree then only holds small pointers, so
                // compaction does not rewrite megabytes of JPEG over and over.
                opts.set_enable_blob_files(true);
                opts.set_min_blob_size(4096);
                opts.set_blob_file_size(256 << 20);
                opts.set_blob_compression_type(DBCompressionType::None);
                opts.set_enable_blob_gc(true);
                opts.set_compression_type(DBCompressionType::None);
            }
            Cf::RaftMeta | Cf::SmMeta | Cf::Objects | Cf::Catalog | Cf::Needles => {
                opts.set_compression_type(DBCompressionType::Lz4);
            }
        }
        opts
    }
}

/// The most a new WAL file takes from the disk at once (see [`Store::open`]); also the memory
/// all memtables together may hold before the largest is flushed.
pub const WAL_PREALLOCATION_BYTES: u64 = 32 << 20;

/// A node's RocksDB database. Shared behind an `Arc` by every Raft group on the node.
///
/// Every method here blocks on disk; async callers run them on the blocking pool.
pub struct Store {
    db: DB,
    volumes: Volumes,
    space: DiskSpace,
    /// Whether opening found a damaged write-ahead log and recovered only up to its last
    /// intact record (see [`Store::lost_wal_tail`]).
    lost_wal_tail: bool,
}

impl Store {
    /// Opens (or creates) the database at `path`, with the groups' volume files under
    /// `path/volumes`.
    pub fn open(path: &Path) -> Result<Store, StorageError> {
        Store::open_with_volume_size(path, DEFAULT_VOLUME_BYTES)
    }

    /// [`Store::open`] with volumes rolling over at `volume_bytes` (tests use small volumes).
    pub fn open_with_volume_size(path: &Path, volume_bytes: u64) -> Result<Store, StorageError> {
        std::fs::create_dir_all(path)?;
        // Before RocksDB opens: on a full disk this releases the reserve it needs for new files.
        let space = DiskSpace::open(path);
        // Only SST blocks (records and blob pointers) go here; image bytes live in blob files.
        let cache = Cache::new_lru_cache(32 << 20)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // Bound the WAL so memtables of quiet column families get flushed and old WAL files can
        // be deleted.
        opts.set_max_total_wal_size(256 << 20);
        // RocksDB preallocates every new WAL (`fallocate`) at 1.1 × the largest memtable, capped
        // by this budget for all memtables together: with the 64 MiB default a restart on a
        // nearly full disk took 70 MiB at once, the node fell under its floor for Raft entries
        // and its catalogue went stale (found by the chaos campaign, `disk-full`). The space
        // reserve covers this much (`space.rs`).
        opts.set_db_write_buffer_size(WAL_PREALLOCATION_BYTES as usize);
        opts.set_bytes_per_sync(4 << 20);
        let cfs = || {
            Cf::ALL
                .iter()
                .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf.options(&cache)))
        };
        // Every record of the WAL must read back: after a crash the log holds exactly what
        // was fsynced, so a damaged record means the disk lost data this node acknowledged.
        // Then it opens to the last intact record (what RocksDB's default, point-in-time
        // recovery does silently) and says so.
        opts.set_wal_recovery_mode(DBRecoveryMode::AbsoluteConsistency);
        let (db, lost_wal_tail) = match DB::open_cf_descriptors(&opts, path, cfs()) {
            Ok(db) => (db, false),
            // A damaged table fails this way too; it fails again below (and the node's start
            // moves the database aside, `rejoin.rs`).
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
                let db = DB::open_cf_descriptors(&opts, path, cfs())?;
                tracing::error!(error = %e, "the write-ahead log was damaged: recovered up to its last intact record (entries after it are lost here and come back from the other replicas)");
                metrics::counter!("tessera_wal_tail_lost_total").increment(1);
                (db, true)
            }
            Err(e) => return Err(e.into()),
        };
        let volumes = Volumes::new(path.join("volumes"), volume_bytes);
        Ok(Store {
            db,
            volumes,
            space,
            lost_wal_tail,
        })
    }

    /// Whether this node may have lost writes it had acknowledged (a damaged WAL, found when
    /// the database was opened). Raft assumes they survive; the log store then refuses to let
    /// a group resume leading from its saved vote.
    pub fn lost_wal_tail(&self) -> bool {
        self.lost_wal_tail
    }

    /// The free space of the database's disk (see `space.rs`).
    pub fn space(&self) -> &DiskSpace {
        &self.space
    }

    pub(crate) fn volume_set(&self) -> &Volumes {
        &self.volumes
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        // Every family in `Cf::ALL` is created by `open`, so the handle always exists.
        self.db
            .cf_handle(cf.name())
            .unwrap_or_else(|| panic!("column family {} missing", cf.name()))
    }

    /// Writes `batch`. With `sync`, the WAL is fsynced before this returns: used for Raft log
    /// appends and votes, the points where Raft's safety depends on durability.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// The records of `cf` whose keys start with `prefix`, in key order, from the first key at
    /// or after `from` (a key within the prefix: where a page continues) or from the start.
    pub fn scan_prefix<'a>(
        &'a self,
        cf: Cf,
        prefix: &[u8],
        from: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<Record, StorageError>> + 'a {
        let mut opts = ReadOptions::default();
        if let Some(upper) = prefix_end(prefix) {
            opts.set_iterate_upper_bound(upper);
        }
        let start = from.unwrap_or(prefix);
        self.db
            .iterator_cf_opt(
                self.cf(cf),
                opts,
                IteratorMode::From(start, Direction::Forward),
            )
            .map(|item| item.map_err(StorageError::from))
    }

    /// The groups that have at least one key in `cf`: one seek per group found.
    pub fn groups_with(&self, cf: Cf) -> Result<std::collections::BTreeSet<u32>, StorageError> {
        let mut groups = std::collections::BTreeSet::new();
        let mut from = crate::keys::group_start(0).to_vec();
        loop {
            let mut items = self
                .db
                .iterator_cf(self.cf(cf), IteratorMode::From(&from, Direction::Forward));
            let Some(item) = items.next() else {
                return Ok(groups);
            };
            let (key, _) = item?;
            let Some(head) = key.get(..crate::keys::GROUP_LEN) else {
                return Ok(groups);
            };
            let group = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            groups.insert(group);
            match group.checked_add(1) {
                Some(next) => from = crate::keys::group_start(next).to_vec(),
                None => return Ok(groups),
            }
        }
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Reads a value into a `Bytes` with a single copy out of RocksDB's pinned buffer.
    pub fn get_bytes(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let pinned = self.db.get_pinned_cf(self.cf(cf), key)?;
        Ok(pinned.map(|p| Bytes::copy_from_slice(&p)))
    }

    /// An integer RocksDB property of a column family (e.g. `rocksdb.total-blob-file-size`).
    pub fn property(&self, cf: Cf, name: &str) -> Option<u64> {
        self.db
            .property_int_value_cf(self.cf(cf), name)
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies the files of a database that is still open: what a disk holds after kill -9
    /// (every fsynced write, memtables not flushed).
    fn crash_image(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
            }
        }
    }

    #[test]
    fn a_crash_keeps_every_synced_write_and_a_damaged_wal_is_noticed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("live")).expect("open");
        let key = |i: u32| format!("vote/{i:04}").into_bytes();
        for i in 0..200 {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(Cf::RaftMeta), key(i), vec![7u8; 300]);
            store.write(batch, true).expect("write");
        }
        crash_image(&dir.path().join("live"), &dir.path().join("crashed"));
        crash_image(&dir.path().join("live"), &dir.path().join("torn"));
        drop(store);

        // A crash alone loses nothing, and is not taken for damage (the WAL's preallocated,
        // never written end included).
        let crashed = Store::open(&dir.path().join("crashed")).expect("open after a crash");
        assert!(!crashed.lost_wal_tail());
        for i in 0..200 {
            assert!(
                crashed.get(Cf::RaftMeta, &key(i)).expect("get").is_some(),
                "{i}"
            );
        }

        // The WAL cut inside its last records, as a damaged disk leaves it: opened up to the
        // last intact record, and said so.
        let torn = dir.path().join("torn");
        let wal = std::fs::read_dir(&torn)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a WAL file");
        // Cut 1 000 bytes before the end of what was written (about 300 bytes of value and
        // at most 64 of record framing per write), not of the file, whose length may include
        // preallocated space.
        let written = 200 * 300;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .expect("wal");
        let len = file.metadata().expect("len").len().min(written + 200 * 64);
        file.set_len(len - 1000).expect("truncate");
        drop(file);
        let recovered = Store::open(&torn).expect("open a damaged WAL");
        assert!(recovered.lost_wal_tail());
        assert!(recovered.get(Cf::RaftMeta, &key(0)).expect("get").is_some());
        assert!(recovered
            .get(Cf::RaftMeta, &key(199))
            .expect("get")
            .is_none());
    }

    #[test]
    fn prefix_scans_stop_at_the_prefix_and_resume_from_a_key() {
        assert_eq!(prefix_end(b"ab/"), Some(b"ab0".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let mut batch = WriteBatch::default();
        for key in ["a/1", "a/2", "a/3", "a0", "b/1", "a"] {
            batch.put_cf(store.cf(Cf::Catalog), key, key);
        }
        store.write(batch, false).expect("write");
        let keys = |from: Option<&[u8]>| -> Vec<String> {
            store
                .scan_prefix(Cf::Catalog, b"a/", from)
                .map(|r| String::from_utf8(r.expect("read").0.into_vec()).expect("utf-8"))
                .collect()
        };
        assert_eq!(keys(None), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(Some(b"a/2")), ["a/2", "a/3"]);
    }
}
