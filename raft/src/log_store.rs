use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{EntryPayload, ErrorVerb, LogState, OptionalSend, RaftLogReader, Vote};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use tessera_storage::volume::{GroupVolumes, Location};
use tessera_storage::{keys, Cf, StorageError, Store};

use crate::blocking::{blocking, storage_error};
use crate::command::Command;
use crate::state_machine::applied_floor;
use crate::types::{LogId, NodeId, RaftStorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// One group's Raft log, vote and committed index, in the `log` and `raft_meta` column families.
///
/// An upload's bytes are written once per replica, when its entry is appended: to a needle in
/// the group's active volume, and the entry in the log becomes a stub (`Command::StoredObject`)
/// that says where. Applying the stub indexes that needle; nothing copies the bytes again
/// (bench/README.md, "Write amplification").
///
/// Durability: `append` writes the needles, fdatasyncs the volume, then writes the stubs and the
/// volume head that covers the needles in one RocksDB batch with `sync = true` (RocksDB fsyncs
/// its WAL before the call returns), and only then is openraft told the entries are flushed.
/// `save_vote` and `truncate` are fsynced the same way. Raft's safety rests on exactly these
/// points: a vote must never be forgotten, and an entry acknowledged to a leader must survive a
/// crash — with its bytes, which is why the volume is synced before the batch that records it
/// (a crash in between leaves an unrecorded tail, which opening the volumes truncates). The
/// committed index and purge marker are written without fsync: losing them only costs
/// re-applying or re-purging.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    group: u32,
    /// Whether reads turn stubs back into uploads with their bytes. Replication needs the
    /// bytes and reads through [`RaftLogStorage::get_log_reader`]; the group's own apply reads
    /// through the store openraft was given, gets the stubs, and indexes the needles they
    /// point to instead of writing the bytes again.
    with_bytes: bool,
}

impl LogStore {
    pub fn new(store: Arc<Store>, group: u32) -> LogStore {
        LogStore {
            store,
            group,
            with_bytes: false,
        }
    }

    async fn read_meta<T>(&self, name: &'static str) -> Result<Option<T>, RaftStorageError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let (store, key) = (self.store.clone(), keys::named(self.group, name));
        blocking(ErrorVerb::Read, move || {
            match store.get(Cf::RaftMeta, &key)? {
                Some(raw) => Ok::<_, StorageError>(Some(bincode::deserialize(&raw)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        name: &'static str,
        value: &T,
        sync: bool,
    ) -> Result<(), RaftStorageError> {
        let raw = bincode::serialize(value).map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        let (store, key) = (self.store.clone(), keys::named(self.group, name));
        blocking(ErrorVerb::Write, move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(Cf::RaftMeta), key, raw);
            store.write(batch, sync)
        })
        .await
    }
}

/// `group`'s vote as saved, committed flag and all (see `LogStore::read_vote` for the one a
/// group starts with).
pub(crate) fn saved_vote(store: &Store, group: u32) -> Result<Option<Vote<NodeId>>, StorageError> {
    match store.get(Cf::RaftMeta, &keys::named(group, VOTE))? {
        Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
        None => Ok(None),
    }
}

/// The vote a group starts with (see `read_vote`): as saved, but never committed when the
/// node's WAL lost its tail.
fn vote_at_start(saved: Option<Vote<NodeId>>, lost_wal_tail: bool) -> Option<Vote<NodeId>> {
    saved.map(|vote| Vote {
        committed: vote.committed && !lost_wal_tail,
        ..vote
    })
}

/// Turns a stub (an upload whose bytes are in a volume, see [`log_form`]) back into the
/// `PutObject` entry it was: what replication sends.
///
/// When no intact local copy is left (the volume was damaged or truncated), the stub itself is
/// returned: failing the read would be fatal, since openraft stops a leader's group on any read
/// error while replicating (and reads entries this way when it re-applies at start-up). A stub
/// is safe to hand out: a follower stores one it receives as pointing nowhere, and its state
/// machine records the object as missing and fetches the bytes from another replica — the
/// entry was acknowledged only once a majority had appended it, each replica with its own
/// needle. A re-apply at start-up handed the stub indexes nothing either. The damaged local
/// copy is marked by the failed read and repaired the same way.
fn rehydrate(store: &Store, group: u32, entry: Entry) -> Result<Entry, StorageError> {
    let EntryPayload::Normal(Command::StoredObject {
        sha,
        meta,
        volume,
        offset,
        len,
    }) = &entry.payload
    else {
        return Ok(entry);
    };
    let at = Location {
        volume: *volume,
        offset: *offset,
        len: *len,
    };
    let Some(bytes) = store.stub_bytes(group, sha, &at)? else {
        tracing::warn!(
            group,
            index = entry.log_id.index,
            %sha,
            "no intact local copy of an applied upload still in the log; handing out its stub"
        );
        metrics::counter!("tessera_log_stub_without_bytes_total").increment(1);
        return Ok(entry);
    };
    Ok(Entry {
        log_id: entry.log_id,
        payload: EntryPayload::Normal(Command::PutObject {
            sha: *sha,
            meta: meta.clone(),
            bytes: bytes.into(),
        }),
    })
}

/// Writes appended entries durably (see [`LogStore`]): the uploads' needles, their fdatasync,
/// then one WAL-fsynced batch of the entries as [`log_form`] stores them and the volume head.
/// Blocking.
fn write_entries(store: &Store, group: u32, entries: &[Entry]) -> Result<(), StorageError> {
    let volumes = match entries.iter().any(carries_bytes) {
        true => Some(store.volumes(group)?),
        false => None,
    };
    // Held until the batch recording the new volume head is written, so that an apply or a
    // compaction never records a head covering needles not yet synced.
    let _writer = volumes.as_ref().map(|v| v.writer());
    let mut batch = WriteBatch::default();
    let cf = store.cf(Cf::Log);
    for entry in entries {
        let key = keys::log(group, entry.log_id.index);
        match log_form(store, volumes.as_deref(), entry)? {
            Some(stub) => batch.put_cf(cf, key, bincode::serialize(&stub)?),
            None => batch.put_cf(cf, key, bincode::serialize(entry)?),
        }
    }
    if let Some(volumes) = &volumes {
        volumes.sync()?;
        store.stage_volume_head(&mut batch, volumes)?;
    }
    store.write(batch, true)
}

/// Whether appending `entry` writes a needle (a stub from the leader writes none).
fn carries_bytes(entry: &Entry) -> bool {
    matches!(
        entry.payload,
        EntryPayload::Normal(Command::PutObject { .. })
    )
}

/// What an appended entry is stored as, if not as it came: an upload's bytes go to a new needle
/// (not synced yet) and the entry becomes a stub pointing to it; a stub that came from the
/// leader (which had lost its copy, see [`rehydrate`]) points into the leader's volumes, so it
/// is stored as one without a local needle (volume 0), which the apply records as missing.
///
/// The needle is written even when the object is stored here already: whether it is can
/// change before the entry is applied (a delete in between), and the bytes are then needed.
/// The needle of a duplicate, like that of an entry a new leader truncates, is garbage that
/// compaction reclaims once the log is purged past it (`GroupVolumes::movable`).
fn log_form(
    store: &Store,
    volumes: Option<&GroupVolumes>,
    entry: &Entry,
) -> Result<Option<Entry>, StorageError> {
    let (sha, meta, at) = match (&entry.payload, volumes) {
        (EntryPayload::Normal(Command::PutObject { sha, meta, bytes }), Some(volumes)) => {
            // Safe to repeat: a failed append records nothing (see `DiskSpace::retry`).
            let at = store.space().retry(|| volumes.append(sha, bytes))?;
            volumes.note_stub(at.volume, entry.log_id.index);
            (sha, meta, at)
        }
        (EntryPayload::Normal(Command::StoredObject { sha, meta, .. }), _) => {
            (sha, meta, Location::NOWHERE)
        }
        _ => return Ok(None),
    };
    Ok(Some(Entry {
        log_id: entry.log_id,
        payload: EntryPayload::Normal(Command::StoredObject {
            sha: *sha,
            meta: meta.clone(),
            volume: at.volume,
            offset: at.offset,
            len: at.len,
        }),
    }))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => keys::log(self.group, i.saturating_add(1)).to_vec(),
            Bound::Excluded(i) => keys::log(self.group, *i).to_vec(),
            Bound::Unbounded => keys::group_end(self.group).to_vec(),
        };
        let (store, group, with_bytes) = (self.store.clone(), self.group, self.with_bytes);
        blocking(ErrorVerb::Read, move || {
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(end);
            let from = keys::log(group, start);
            let iter = store.db().iterator_cf_opt(
                store.cf(Cf::Log),
                opts,
                IteratorMode::From(&from, Direction::Forward),
            );
            let mut entries = Vec::new();
            for item in iter {
                let (_, value) = item?;
                let entry = bincode::deserialize(&value)?;
                entries.push(match with_bytes {
                    true => rehydrate(&store, group, entry)?,
                    false => entry,
                });
            }
            Ok::<_, StorageError>(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED).await?;
        let (store, group) = (self.store.clone(), self.group);
        let last = blocking(ErrorVerb::Read, move || {
            let end = keys::group_end(group);
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(keys::group_start(group));
            let mut iter = store.db().iterator_cf_opt(
                store.cf(Cf::Log),
                opts,
                IteratorMode::From(&end, Direction::Reverse),
            );
            match iter.next() {
                Some(item) => {
                    let (_, value) = item?;
                    Ok::<_, StorageError>(Some(bincode::deserialize::<Entry>(&value)?.log_id))
                }
                None => Ok(None),
            }
        })
        .await?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogStore {
            with_bytes: true,
            ..self.clone()
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        // fsync: a node must never vote twice in one term, even across a crash.
        let started = Instant::now();
        let saved = self.write_meta(VOTE, vote, true).await;
        note_write_time(self.group, started.elapsed());
        saved
    }

    /// The vote as saved — unless this node's WAL lost its tail, when a *committed* vote is
    /// read back uncommitted. openraft 0.9 reads the vote once, at start-up, and a node finding
    /// its own committed vote resumes leading that term at once (`Engine::startup`), with
    /// whatever log it recovered. That is what Raft intends after a crash (the log is durable,
    /// and a leader back within an election timeout saves its group an election), but after a
    /// disk lost the tail of the log that leader has fewer entries than followers that
    /// acknowledged them, in the same term: it writes new entries at indexes where they hold
    /// others of that term, and acknowledged writes are lost (chaos seeds 305 and 306: uploads
    /// answered 404, two saves acknowledged from one version). Read back uncommitted, the node
    /// keeps the term and whom it voted for (it still never votes twice in a term), but starts
    /// as a follower: leading again takes an election, which a shorter log loses.
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        let saved = self.read_meta(VOTE).await?;
        Ok(vote_at_start(saved, self.store.lost_wal_tail()))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // No fsync: the committed index is a hint that lets a restarted node re-apply sooner.
        self.write_meta(COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (store, group) = (self.store.clone(), self.group);
        let started = Instant::now();
        // On the blocking pool, and fsynced before it returns: only then do we report the
        // entries flushed, which is what lets the leader count this node towards a majority.
        let result = blocking(ErrorVerb::Write, move || {
            write_entries(&store, group, &entries)
        })
        .await;
        note_write_time(group, started.elapsed());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let (store, group) = (self.store.clone(), self.group);
        blocking(ErrorVerb::Delete, move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                store.cf(Cf::Log),
                &keys::log(group, log_id.index)[..],
                &keys::group_end(group)[..],
            );
            // fsync: a conflicting suffix removed here must not reappear after a crash.
            store.write(batch, true)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let raw = bincode::serialize(&log_id).map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        let (store, group) = (self.store.clone(), self.group);
        blocking(ErrorVerb::Delete, move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(Cf::RaftMeta), keys::named(group, PURGED), raw);
            batch.delete_range_cf(
                store.cf(Cf::Log),
                keys::log(group, 0),
                keys::log(group, log_id.index + 1),
            );
            store.write(batch, false)
        })
        .await
    }
}

/// An append slower than this is logged: openraft awaits `append` in the group's event loop, so
/// while it lasts the group sends no heartbeats and answers no votes.
const SLOW_WRITE: Duration = Duration::from_millis(500);

/// Records how long an append or a vote took, from the call to the fsynced write, queueing for the
/// blocking pool included (`tessera_raft_log_write_seconds`); warns when it was slow.
fn note_write_time(group: u32, took: Duration) {
    metrics::histogram!("tessera_raft_log_write_seconds").record(took.as_secs_f64());
    if took >= SLOW_WRITE {
        tracing::warn!(
            group,
            took_ms = took.as_millis() as u64,
            "slow Raft log write: this group's event loop waited for it"
        );
    }
}

/// Repairs a group whose log was purged past what its state machine holds.
///
/// openraft purges the log right after handing a received snapshot to the state machine, without
/// waiting for the install. If the node crashes in between, the purge may be durable while the
/// install is not: the node has neither the entries nor their effects, and openraft cannot
/// re-apply them. Such a group is reset to an empty log and state (its vote is kept), so that it
/// rejoins like a new replica and the leader sends it a snapshot. Returns whether it reset.
pub(crate) fn repair_purged_past_applied(store: &Store, group: u32) -> Result<bool, StorageError> {
    let Some(raw) = store.get(Cf::RaftMeta, &keys::named(group, PURGED))? else {
        return Ok(false);
    };
    let purged: LogId = bincode::deserialize(&raw)?;
    if purged.index <= applied_floor(store, group)? {
        return Ok(false);
    }
    let mut batch = WriteBatch::default();
    let (start, end) = (keys::group_start(group), keys::group_end(group));
    batch.delete_cf(store.cf(Cf::RaftMeta), keys::named(group, PURGED));
    batch.delete_cf(store.cf(Cf::RaftMeta), keys::named(group, COMMITTED));
    for cf in [Cf::Log, Cf::SmMeta].into_iter().chain(Cf::STATE) {
        batch.delete_range_cf(store.cf(cf), start, end);
    }
    store.write(batch, true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, LogId};
    use rocksdb::WriteBatch;
    use tessera_storage::volume::HEADER_LEN;
    use tessera_storage::{ObjectMeta, PutOutcome, Sha256};

    use super::*;
    use crate::absent::Absent;
    use crate::command::Response;
    use crate::state_machine::StateMachine;

    #[tokio::test]
    async fn a_leader_resumes_its_term_after_a_crash_but_not_after_losing_its_wal_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut log = LogStore::new(store.clone(), 3);
        let mut leading = Vote::new(7, 2);
        leading.commit();
        log.save_vote(&leading).await.unwrap();
        // An intact log (`Store::lost_wal_tail` false: the store's own test tears a WAL).
        let mut log = LogStore::new(store, 3);
        assert_eq!(log.read_vote().await.unwrap(), Some(leading));
        // A damaged one: the same term and candidate, not a leadership to resume.
        let read = vote_at_start(Some(leading), true).unwrap();
        assert_eq!(read, Vote::new(7, 2));
        assert!(!read.is_committed());
        assert_eq!(
            vote_at_start(Some(Vote::new(5, 1)), true),
            Some(Vote::new(5, 1))
        );
        assert_eq!(vote_at_start(None, true), None);
    }

    const GROUP: u32 = 5;

    fn meta_of(bytes: &[u8]) -> ObjectMeta {
        ObjectMeta {
            size: bytes.len() as u64,
            content_type: "image/png".into(),
            width: 1,
            height: 1,
            refcount: 1,
            created_ms: 1,
        }
    }

    fn upload(index: u64, bytes: &[u8]) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::PutObject {
                sha: Sha256::of(bytes),
                meta: meta_of(bytes),
                bytes: bytes.to_vec().into(),
            }),
        }
    }

    fn varied(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    async fn state_machine(store: &Arc<Store>, dir: &std::path::Path) -> StateMachine {
        StateMachine::open(
            store.clone(),
            GROUP,
            &dir.join("snapshots"),
            None,
            Arc::new(Absent::new(Duration::from_secs(1))),
        )
        .await
        .unwrap()
    }

    async fn apply_one(sm: &mut StateMachine, entry: Entry) -> PutOutcome {
        match sm.apply([entry]).await.unwrap().pop() {
            Some(Response::Object(outcome)) => outcome,
            other => panic!("not an upload's response: {other:?}"),
        }
    }

    fn stub_location(entry: &Entry) -> Location {
        match entry.payload {
            EntryPayload::Normal(Command::StoredObject {
                volume,
                offset,
                len,
                ..
            }) => Location {
                volume,
                offset,
                len,
            },
            _ => panic!("not a stub: {entry:?}"),
        }
    }

    #[tokio::test]
    async fn an_upload_is_written_once_at_append_and_indexed_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let bytes = varied(200_000, 7);
        let sha = Sha256::of(&bytes);
        let entry = upload(1, &bytes);
        {
            let store = Arc::new(Store::open(&db).unwrap());
            write_entries(&store, GROUP, std::slice::from_ref(&entry)).unwrap();
            // The needle is the only copy of the bytes: the log keeps a stub.
            assert_eq!(store.volume_bytes(GROUP), HEADER_LEN + bytes.len() as u64);
            let raw = store.get(Cf::Log, &keys::log(GROUP, 1)).unwrap().unwrap();
            assert!(raw.len() < 1000, "log entry of {} bytes", raw.len());
        }
        // Acknowledged, then the node crashed before applying: the needle is still there.
        let store = Arc::new(Store::open(&db).unwrap());
        let mut log = LogStore::new(store.clone(), GROUP);
        let applied_form = log.try_get_log_entries(1..2).await.unwrap();
        assert_ne!(stub_location(&applied_form[0]).volume, 0);
        let sent = log.get_log_reader().await.try_get_log_entries(1..2).await;
        match &sent.unwrap()[0].payload {
            EntryPayload::Normal(Command::PutObject {
                sha: s, bytes: b, ..
            }) => {
                assert_eq!((s, &b[..]), (&sha, &bytes[..]))
            }
            other => panic!("not rebuilt: {other:?}"),
        }
        let mut sm = state_machine(&store, dir.path()).await;
        let outcome = apply_one(&mut sm, applied_form[0].clone()).await;
        assert!(!outcome.deduplicated);
        // Indexed where it is, not written again.
        assert_eq!(store.volume_bytes(GROUP), HEADER_LEN + bytes.len() as u64);
        assert_eq!(
            store.object_location(GROUP, &sha).unwrap(),
            Some(stub_location(&applied_form[0]))
        );
        assert_eq!(
            &store.object_bytes(GROUP, &sha).unwrap().unwrap()[..],
            bytes
        );
        assert!(store.resident_object(GROUP, &sha).is_some());
        // The same bytes again: a second needle at append (garbage once applied), one record.
        write_entries(&store, GROUP, &[upload(2, &bytes)]).unwrap();
        let second = log.try_get_log_entries(2..3).await.unwrap().remove(0);
        let outcome = apply_one(&mut sm, second).await;
        assert!(outcome.deduplicated);
        assert_eq!(outcome.meta.refcount, 2);
        assert_eq!(
            store.object_location(GROUP, &sha).unwrap(),
            Some(stub_location(&applied_form[0]))
        );
    }

    #[tokio::test]
    async fn an_upload_without_an_intact_local_needle_is_applied_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let mut log = LogStore::new(store.clone(), GROUP);
        let mut sm = state_machine(&store, dir.path()).await;
        // A stub from a leader that had lost its copy names a place in the leader's volumes.
        let lost = varied(5_000, 1);
        let from_leader = match upload(1, &lost).payload {
            EntryPayload::Normal(Command::PutObject { sha, meta, .. }) => Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Normal(Command::StoredObject {
                    sha,
                    meta,
                    volume: 1,
                    offset: HEADER_LEN,
                    len: 5_000,
                }),
            },
            _ => unreachable!(),
        };
        // Here, an upload whose needle is damaged between append and apply.
        let damaged = varied(9_000, 2);
        write_entries(&store, GROUP, &[from_leader, upload(2, &damaged)]).unwrap();
        let entries = log.try_get_log_entries(1..3).await.unwrap();
        assert_eq!(stub_location(&entries[0]), Location::NOWHERE);
        let at = stub_location(&entries[1]);
        let file = store.volumes(GROUP).unwrap().file(at.volume).unwrap();
        file.write_all_at(b"X", at.offset + 100).unwrap();
        for entry in entries {
            let outcome = apply_one(&mut sm, entry).await;
            assert_eq!(outcome.meta.refcount, 1);
        }
        let (lost, damaged) = (Sha256::of(&lost), Sha256::of(&damaged));
        for sha in [lost, damaged] {
            assert!(store.object_meta(GROUP, &sha).unwrap().is_some());
            assert_eq!(store.object_location(GROUP, &sha).unwrap(), None);
            assert!(store.awaiting_repair(GROUP).contains(&sha), "{sha}");
        }
        // Replication hands the stub on as it is rather than failing or sending other bytes.
        let sent = log.get_log_reader().await.try_get_log_entries(2..3).await;
        assert_eq!(stub_location(&sent.unwrap()[0]), at);
    }

    #[test]
    fn stubs_read_back_as_the_upload_they_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = vec![42u8; 9000];
        let sha = Sha256::of(&bytes);
        let meta = meta_of(&bytes);
        let mut batch = WriteBatch::default();
        let (_, stored) = store
            .stage_put_object(&mut batch, 5, &sha, &meta, &bytes)
            .unwrap();
        store.write_state(5, batch, false).unwrap();
        let at = stored.unwrap();
        let stub = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 7),
            payload: EntryPayload::Normal(Command::StoredObject {
                sha,
                meta: meta.clone(),
                volume: at.volume,
                offset: at.offset,
                len: at.len,
            }),
        };
        let full = rehydrate(&store, 5, stub.clone()).unwrap();
        assert_eq!(full.log_id, stub.log_id);
        match full.payload {
            EntryPayload::Normal(Command::PutObject {
                sha: s,
                bytes: b,
                meta: m,
            }) => {
                assert_eq!((s, &b[..], m), (sha, &bytes[..], meta));
            }
            other => panic!("not rebuilt: {other:?}"),
        }
        // The needle it points to is gone (deleted and compacted): the stub is handed out as
        // it is, never an error (openraft would stop the group) nor other bytes.
        let mut batch = WriteBatch::default();
        store.stage_reference(&mut batch, 5, &sha, false).unwrap();
        store.write_state(5, batch, false).unwrap();
        store.volumes(5).unwrap().delete(at.volume).unwrap();
        let kept = rehydrate(&store, 5, stub.clone()).unwrap();
        assert_eq!(format!("{kept:?}"), format!("{stub:?}"));
    }
}
