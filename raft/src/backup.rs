//! What `tessera backup` and `tessera restore` need from a node: a catalogue dump taken from one
//! RocksDB snapshot after a catalogue barrier, pages of a shard group's object records read
//! after a barrier on that group, and the catalogue records written back by a replicated
//! [`Command::RestoreCatalog`] that refuses a catalogue already holding domain data.
//!
//! The dump is a stream of frames `u32 key length, key, u32 value length, value` (big-endian
//! lengths), keys without the group prefix, in key order.

use bytes::{BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, ObjectMeta, Sha256, StorageError, Store};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::command::{Command, Response};
use crate::error::ClusterError;
use crate::placement::META_GROUP;

/// The catalogue record naming the backup a restore is writing (or wrote) into this cluster:
/// it lets an interrupted restore of that same backup run again while refusing any other.
pub const RESTORE_MARKER: &str = "restore/backup";

/// The catalogue record naming the backup a finished restore wrote: from then on the cluster
/// serves and its records change, so no restore may write over them again.
pub const RESTORE_DONE: &str = "restore/done";

/// Catalogue records that describe this cluster rather than its users' data: the placement
/// and the node set (its nodes and shards), the token signing key (tokens of one cluster must
/// not open another) and the restore marks. A dump leaves them out and a restore never writes
/// them.
const CLUSTER_LOCAL: [&str; 4] = ["placement", "members", "cluster_key", "restore/"];

/// Record prefixes a newly initialised cluster holds (`init`, the admin user, its sign-ins, the
/// request records of those ops, and the mark that the task indexes are written). A catalogue with anything else — or more than one user —
/// holds domain data, and a restore into it is refused.
const AFTER_INIT: [&str; 12] = [
    "placement",
    "members",
    "cluster_key",
    "restore/",
    "request/",
    "request-at/",
    "user/",
    "user-id/",
    "next-user-id",
    "session/",
    "session-by-user/",
    "task-indexes-v1",
];

/// Frames of a dump are sent in chunks of about this size.
const CHUNK: usize = 256 << 10;

/// One object record of a shard group, as a backup lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub sha: Sha256,
    pub meta: ObjectMeta,
}

/// Whether a catalogue key is one a dump leaves out.
pub fn cluster_local(key: &[u8]) -> bool {
    CLUSTER_LOCAL.iter().any(|p| key.starts_with(p.as_bytes()))
}

/// Appends one dump frame to `out`.
pub fn put_frame(out: &mut BytesMut, key: &[u8], value: &[u8]) {
    out.put_u32(key.len() as u32);
    out.put_slice(key);
    out.put_u32(value.len() as u32);
    out.put_slice(value);
}

/// Splits the complete frames at the front of `buf` off it; a partial frame stays for the
/// next call. `Err` names a frame whose length cannot be right.
pub fn take_frames(buf: &mut BytesMut, max_len: usize) -> Result<Vec<(Bytes, Bytes)>, String> {
    let mut out = Vec::new();
    loop {
        let Some(klen) = read_len(buf, 0) else {
            return Ok(out);
        };
        if klen > max_len {
            return Err(format!("a record key of {klen} bytes"));
        }
        let Some(vlen) = read_len(buf, 4 + klen) else {
            return Ok(out);
        };
        if vlen > max_len {
            return Err(format!("a record value of {vlen} bytes"));
        }
        if buf.len() < 8 + klen + vlen {
            return Ok(out);
        }
        let mut frame = buf.split_to(8 + klen + vlen).freeze();
        let _ = frame.split_to(4);
        let key = frame.split_to(klen);
        let _ = frame.split_to(4);
        out.push((key, frame));
    }
}

fn read_len(buf: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(raw) as usize)
}

/// The largest record a dump or restore accepts (a key or a value).
pub const MAX_RECORD: usize = 64 << 20;

impl Cluster {
    /// Waits until this node's replica of `group` has applied everything its leader had
    /// committed when the call started.
    pub async fn group_barrier(&self, group: u32) -> Result<(), ClusterError> {
        let raft = self.group(group).ok_or_else(|| {
            ClusterError::Unavailable(format!("group {group} is not hosted on this node"))
        })?;
        let index = self.read_index(&raft, group).await?;
        raft.wait(Some(std::time::Duration::from_secs(15)))
            .applied_index_at_least(Some(index), "backup barrier")
            .await
            .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
        Ok(())
    }

    /// Streams the catalogue's records (frames, see the module doc) as of one point: after a
    /// catalogue barrier, from one RocksDB snapshot of this node's replica, so the dump holds
    /// every change acknowledged before the call and none half-applied. Returns the log index
    /// the snapshot reflects; the frames arrive on the returned channel in chunks, read on the
    /// blocking pool, and the sender stops early if the receiver goes away.
    pub async fn dump_catalog(
        &self,
    ) -> Result<(u64, mpsc::Receiver<Result<Bytes, ClusterError>>), ClusterError> {
        self.catalog_barrier().await?;
        let store = self.store().clone();
        let (taken_tx, taken_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let result = dump_from_snapshot(&store, taken_tx, &tx);
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        let applied = taken_rx
            .await
            .map_err(|_| ClusterError::Internal("the catalogue dump stopped".into()))??;
        Ok((applied, rx))
    }

    /// Up to `limit` object records of shard group `group` after `after`, in hash order, from
    /// this node's replica once it has applied everything its leader had committed.
    pub async fn list_objects(
        &self,
        group: u32,
        after: Option<Sha256>,
        limit: usize,
    ) -> Result<Vec<ObjectEntry>, ClusterError> {
        if group == META_GROUP {
            return Err(ClusterError::Internal("group 0 holds no objects".into()));
        }
        self.group_barrier(group).await?;
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(limit.min(1024));
            for item in store.scan_group_objects(Cf::Objects, group, after.as_ref(), false) {
                let (sha, raw) = item?;
                if Some(sha) == after {
                    continue;
                }
                if out.len() == limit {
                    break;
                }
                out.push(ObjectEntry {
                    sha,
                    meta: bincode::deserialize(&raw).map_err(StorageError::from)?,
                });
            }
            Ok::<_, StorageError>(out)
        })
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))?
        .map_err(ClusterError::from)
    }

    /// Writes catalogue records of backup `backup` through the catalogue group. The first call
    /// of a restore (any call, really) is refused with `Err(reason)` unless the catalogue holds
    /// nothing beyond what `init` creates or is already being restored from the same backup;
    /// with `done`, every node reloads its directory (users, keys) from the restored records.
    pub async fn restore_catalog(
        &self,
        backup: String,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        done: bool,
    ) -> Result<Result<u64, String>, ClusterError> {
        let command = Command::RestoreCatalog {
            backup,
            records,
            done,
        };
        match self.propose(META_GROUP, command, 0).await? {
            Response::Restored(outcome) => Ok(outcome),
            other => Err(ClusterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }
}

fn dump_from_snapshot(
    store: &Store,
    taken: oneshot::Sender<Result<u64, ClusterError>>,
    tx: &mpsc::Sender<Result<Bytes, ClusterError>>,
) -> Result<(), StorageError> {
    let snap = store.db().snapshot();
    let applied: Option<crate::types::LogId> = match snap.get_cf(
        store.cf(Cf::SmMeta),
        keys::named(META_GROUP, crate::state_machine::APPLIED),
    )? {
        Some(raw) => bincode::deserialize(&raw)?,
        None => None,
    };
    if taken.send(Ok(applied.map_or(0, |l| l.index))).is_err() {
        return Ok(());
    }
    let mut opts = ReadOptions::default();
    opts.set_snapshot(&snap);
    opts.set_iterate_upper_bound(keys::group_end(META_GROUP));
    opts.fill_cache(false);
    let start = keys::group_start(META_GROUP);
    let mut chunk = BytesMut::with_capacity(CHUNK + 4096);
    for item in store.db().iterator_cf_opt(
        store.cf(Cf::Catalog),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    ) {
        let (key, value) = item?;
        let name = &key[keys::GROUP_LEN..];
        if cluster_local(name) {
            continue;
        }
        put_frame(&mut chunk, name, &value);
        if chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut chunk, BytesMut::with_capacity(CHUNK + 4096));
            if tx.blocking_send(Ok(full.freeze())).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk.freeze()));
    }
    Ok(())
}

/// Stages a [`Command::RestoreCatalog`] in `batch`: `Err(reason)` (and nothing staged) when the
/// catalogue holds domain data and is not being restored from `backup`, or a restore finished;
/// `finish` (the last chunk) marks the restore finished.
pub(crate) fn stage_restore(
    store: &Store,
    batch: &mut WriteBatch,
    group: u32,
    backup: &str,
    records: &[(Vec<u8>, Vec<u8>)],
    finish: bool,
) -> Result<Result<u64, String>, StorageError> {
    if let Some(done) = store.get(Cf::Catalog, &keys::named(group, RESTORE_DONE))? {
        // The last chunk again (its answer was lost): it was applied, and nothing since may be
        // written over.
        if finish && done == backup.as_bytes() {
            return Ok(Ok(0));
        }
        return Ok(Err(format!(
            "this cluster was restored from backup {} and has served since; restore only into a new cluster",
            String::from_utf8_lossy(&done)
        )));
    }
    let marker = keys::named(group, RESTORE_MARKER);
    let claimed = store.get(Cf::Catalog, &marker)?;
    if claimed.as_deref() != Some(backup.as_bytes()) {
        if let Some(other) = &claimed {
            return Ok(Err(format!(
                "this cluster is being restored from backup {}, not {backup}",
                String::from_utf8_lossy(other)
            )));
        }
        if let Some(reason) = holds_domain_data(store, group)? {
            return Ok(Err(reason));
        }
        batch.put_cf(store.cf(Cf::Catalog), &marker, backup.as_bytes());
    }
    let cf = store.cf(Cf::Catalog);
    let mut written = 0;
    for (key, value) in records {
        if cluster_local(key) {
            continue;
        }
        batch.put_cf(cf, keys::named_bytes(group, key), value);
        written += 1;
    }
    if finish {
        batch.put_cf(cf, keys::named(group, RESTORE_DONE), backup.as_bytes());
    }
    Ok(Ok(written))
}

/// Why the catalogue of `group` counts as holding domain data, if it does (see [`AFTER_INIT`]).
fn holds_domain_data(store: &Store, group: u32) -> Result<Option<String>, StorageError> {
    let mut users = 0;
    for item in store.scan_prefix(Cf::Catalog, &keys::group_start(group), None) {
        let (key, _) = item?;
        let name = &key[keys::GROUP_LEN..];
        if name.starts_with(b"user/") {
            users += 1;
            if users > 1 {
                return Ok(Some(
                    "the cluster has more than one user; restore only into a new cluster".into(),
                ));
            }
        }
        if !AFTER_INIT.iter().any(|p| name.starts_with(p.as_bytes())) {
            let shown: String = String::from_utf8_lossy(name).chars().take(60).collect();
            return Ok(Some(format!(
                "the cluster's catalogue already holds data ({shown:?}); restore only into a new cluster"
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_where_they_end() {
        let mut out = BytesMut::new();
        put_frame(&mut out, b"dataset/1", b"one");
        put_frame(&mut out, b"k", b"");
        let whole = out.freeze();
        let mut buf = BytesMut::from(&whole[..10]);
        assert!(take_frames(&mut buf, MAX_RECORD)
            .expect("frames")
            .is_empty());
        buf.extend_from_slice(&whole[10..]);
        let frames = take_frames(&mut buf, MAX_RECORD).expect("frames");
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0].0[..], b"dataset/1");
        assert_eq!(&frames[0].1[..], b"one");
        assert_eq!(&frames[1].0[..], b"k");
        assert!(buf.is_empty());
        let mut bad = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(take_frames(&mut bad, MAX_RECORD).is_err());
    }

    #[test]
    fn restore_refuses_domain_data_and_other_backups() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let put = |key: &str| {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(Cf::Catalog), keys::named(0, key), b"x");
            store.write(batch, false).expect("write");
        };
        put("placement");
        put("user/admin");
        let records = vec![(b"dataset/1".to_vec(), b"d".to_vec())];
        let mut batch = WriteBatch::default();
        let outcome = stage_restore(&store, &mut batch, 0, "b1", &records, false).expect("stage");
        assert_eq!(outcome, Ok(1));
        store.write(batch, false).expect("write");
        // The same backup again: allowed although the catalogue now holds a dataset.
        let mut batch = WriteBatch::default();
        let again = stage_restore(&store, &mut batch, 0, "b1", &records, true).expect("stage");
        assert_eq!(again, Ok(1));
        let mut batch = WriteBatch::default();
        let other = stage_restore(&store, &mut batch, 0, "b2", &records, false).expect("stage");
        assert!(other.is_err());
        // Once finished, not even the same backup writes again.
        store
            .write(again_batch(&store, &records), false)
            .expect("write");
        let mut batch = WriteBatch::default();
        let after = stage_restore(&store, &mut batch, 0, "b1", &records, false).expect("stage");
        assert!(after.expect_err("refused").contains("has served since"));
        // Only the last chunk may come again (a lost answer), and it writes nothing.
        let mut batch = WriteBatch::default();
        let last = stage_restore(&store, &mut batch, 0, "b1", &records, true).expect("stage");
        assert_eq!((last, batch.len()), (Ok(0), 0));
        let fresh = tempfile::tempdir().expect("temp dir");
        let store = Store::open(fresh.path()).expect("open");
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf(Cf::Catalog), keys::named(0, "task/1"), b"t");
        store.write(batch, false).expect("write");
        let mut batch = WriteBatch::default();
        let refused = stage_restore(&store, &mut batch, 0, "b1", &records, false).expect("stage");
        assert!(refused.expect_err("refused").contains("task/1"));
    }

    /// The batch of the last chunk of a restore of "b1".
    fn again_batch(store: &Store, records: &[(Vec<u8>, Vec<u8>)]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        let outcome = stage_restore(store, &mut batch, 0, "b1", records, true).expect("stage");
        assert_eq!(outcome, Ok(1));
        batch
    }
}
