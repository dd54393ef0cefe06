use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use rocksdb::WriteBatch;
use tessera_domain::directory::Directory;
use tessera_domain::{catalog, tasks, Tx};
use tessera_storage::space::{Guarded, FLOOR_BYTES, LOW_BYTES};
use tessera_storage::volume::{GroupVolumes, IndexChange, Location};
use tessera_storage::{
    export_group, import_group, keys, Cf, ObjectMeta, PutOutcome, Sha256, StorageError, Store,
};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::absent::Absent;
use crate::blocking::{blocking, storage_error};
use crate::command::{Command, Response};
use crate::members::Members;
use crate::placement::{Placement, META_GROUP};
use crate::snapshot_store::{sync_dir, SnapshotStore};
use crate::types::{LogId, RaftStorageError, SnapshotMeta, StoredMembership, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

pub(crate) const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
/// Present while a snapshot install is replacing the state: the snapshot's metadata.
const INSTALLING: &str = "installing";
/// Catalogue key of the current placement.
pub const PLACEMENT_KEY: &str = "placement";
/// Catalogue key of the live node set.
pub const MEMBERS_KEY: &str = "members";

/// The version of the record stored at `key` in the catalogue, if there is one.
fn stored_version<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &[u8],
    version: impl Fn(&T) -> u64,
) -> Result<Option<u64>, StorageError> {
    match store.get(Cf::Catalog, key)? {
        Some(raw) => Ok(Some(version(&bincode::deserialize::<T>(&raw)?))),
        None => Ok(None),
    }
}

/// Stages `value` at `key` if its `version` is newer than the `stored` one (or nothing is
/// stored) and returns the version stored afterwards. Versioned records only move forward: a
/// retried or raced proposal of an older version is a no-op on every replica alike.
fn newer_version<T: serde::Serialize>(
    store: &Store,
    batch: &mut WriteBatch,
    key: Vec<u8>,
    stored: Option<u64>,
    value: &T,
    version: u64,
) -> Result<u64, StorageError> {
    match stored {
        Some(old) if old >= version => Ok(old),
        _ => {
            batch.put_cf(store.cf(Cf::Catalog), key, bincode::serialize(value)?);
            Ok(version)
        }
    }
}

/// One group's replicated state: objects (shard groups) or the catalogue (group 0).
///
/// Each entry is applied in one RocksDB write batch together with the new applied log id, so the
/// state and the applied index never disagree. These writes are not fsynced: the entry is already
/// durable in the Raft log, and RocksDB's WAL is recovered as a prefix, so after a crash the
/// applied index is simply older and openraft re-applies the missing entries.
pub struct StateMachine {
    store: Arc<Store>,
    group: u32,
    snapshots: SnapshotStore,
    applied: Option<LogId>,
    membership: StoredMembership,
    receiving: Option<PathBuf>,
    /// The in-memory view of the catalogue records (catalogue group only).
    directory: Option<Arc<Directory>>,
    /// The leader's negative cache of this group: every applied upload leaves it.
    absent: Arc<Absent>,
}

impl StateMachine {
    pub async fn open(
        store: Arc<Store>,
        group: u32,
        snapshot_dir: &Path,
        directory: Option<Arc<Directory>>,
        absent: Arc<Absent>,
    ) -> Result<StateMachine, RaftStorageError> {
        let snapshots = SnapshotStore::open(snapshot_dir, group).await?;
        let (s, dir) = (store.clone(), snapshots.clone());
        let finished = blocking(ErrorVerb::Write, move || {
            let Some(raw) = s.get(Cf::SmMeta, &keys::named(group, INSTALLING))? else {
                return Ok::<_, StorageError>(None);
            };
            let meta: SnapshotMeta = bincode::deserialize(&raw)?;
            tracing::warn!(group, "finishing a snapshot install interrupted by a crash");
            load_snapshot(&s, group, &dir.data_path(&meta.snapshot_id), &meta)?;
            Ok(Some(meta))
        })
        .await?;
        if let Some(meta) = finished {
            snapshots.set_current(&meta).await?;
        }
        let s = store.clone();
        blocking(ErrorVerb::Write, move || {
            // Opening a shard group's volumes recovers their tail and loads the index in
            // memory, so the first reads after a restart are served without RocksDB.
            if group != META_GROUP {
                s.volumes(group)?;
            }
            s.migrate_blobs(group)
        })
        .await?;
        let s = store.clone();
        let (applied, membership) = blocking(ErrorVerb::Read, move || {
            let applied = match s.get(Cf::SmMeta, &keys::named(group, APPLIED))? {
                Some(raw) => bincode::deserialize(&raw)?,
                None => None,
            };
            let membership = match s.get(Cf::SmMeta, &keys::named(group, MEMBERSHIP))? {
                Some(raw) => bincode::deserialize(&raw)?,
                None => StoredMembership::default(),
            };
            Ok::<_, StorageError>((applied, membership))
        })
        .await?;
        if let Some(directory) = &directory {
            let s = store.clone();
            blocking(ErrorVerb::Write, move || backfill_task_indexes(&s, group)).await?;
            let (d, s) = (directory.clone(), store.clone());
            blocking(ErrorVerb::Read, move || d.reload(&s.records(group))).await?;
        }
        Ok(StateMachine {
            store,
            group,
            snapshots,
            applied,
            membership,
            receiving: None,
            directory,
            absent,
        })
    }
}

/// Stages the applied log id and membership next to the state they describe.
fn stage_applied(
    store: &Store,
    batch: &mut WriteBatch,
    group: u32,
    applied: &Option<LogId>,
    membership: &StoredMembership,
) -> Result<(), StorageError> {
    let cf = store.cf(Cf::SmMeta);
    batch.put_cf(
        cf,
        keys::named(group, APPLIED),
        bincode::serialize(applied)?,
    );
    batch.put_cf(
        cf,
        keys::named(group, MEMBERSHIP),
        bincode::serialize(membership)?,
    );
    Ok(())
}

/// Loads a snapshot file into `group`'s state; the final, fsynced batch records the snapshot's
/// applied id and membership and clears the install marker.
fn load_snapshot(
    store: &Store,
    group: u32,
    path: &Path,
    meta: &SnapshotMeta,
) -> Result<(), StorageError> {
    let file = std::fs::File::open(path)?;
    let records = import_group(store, group, file, |batch| {
        batch.delete_cf(store.cf(Cf::SmMeta), keys::named(group, INSTALLING));
        stage_applied(
            store,
            batch,
            group,
            &meta.last_log_id,
            &meta.last_membership,
        )
    })?;
    tracing::info!(group, records, "installed snapshot");
    Ok(())
}

/// The highest log index whose effects are (or, after an interrupted install, will be) in the
/// state machine. A durable purge beyond it means a crash interrupted a snapshot install (see
/// `log_store::repair_purged_past_applied`).
pub(crate) fn applied_floor(store: &Store, group: u32) -> Result<u64, StorageError> {
    let mut floor = 0;
    if let Some(raw) = store.get(Cf::SmMeta, &keys::named(group, APPLIED))? {
        let applied: Option<LogId> = bincode::deserialize(&raw)?;
        floor = applied.map(|l| l.index).unwrap_or(0);
    }
    if let Some(raw) = store.get(Cf::SmMeta, &keys::named(group, INSTALLING))? {
        let meta: SnapshotMeta = bincode::deserialize(&raw)?;
        floor = floor.max(meta.last_log_id.map(|l| l.index).unwrap_or(0));
    }
    Ok(floor)
}

/// Rewrites the applied log entry `log_id` as a stub pointing to the needle its bytes went to,
/// in the batch that indexes that needle (so after the volume's fdatasync). The entry's bytes
/// were written once to the WAL; the apply follows the append within milliseconds, so the stub
/// nearly always lands in the same memtable as the full entry, whose flush then keeps only the
/// stub: the bytes never reach a blob file, and each uploaded byte is written twice per replica
/// (WAL, volume) instead of three times. The log store rebuilds the full entry from the needle
/// whenever openraft reads it, and compaction leaves volumes that unpurged stubs point into in
/// place (`GroupVolumes::movable`).
fn stage_stub(
    store: &Store,
    batch: &mut WriteBatch,
    volumes: &GroupVolumes,
    log_id: LogId,
    sha: Sha256,
    meta: ObjectMeta,
    at: Location,
) -> Result<(), StorageError> {
    let stub = Entry {
        log_id,
        payload: EntryPayload::Normal(Command::StoredObject {
            sha,
            meta,
            volume: at.volume,
            offset: at.offset,
            len: at.len,
        }),
    };
    batch.put_cf(
        store.cf(Cf::Log),
        keys::log(volumes.group(), log_id.index),
        bincode::serialize(&stub)?,
    );
    volumes.note_stub(at.volume, log_id.index);
    store.stage_volume_head(batch, volumes)
}

/// The index change an applied upload that stored a needle publishes in memory.
fn stored_change(sha: Sha256, at: Location, outcome: &PutOutcome) -> IndexChange {
    IndexChange::Stored {
        sha,
        at,
        content_type: outcome.meta.content_type.clone(),
    }
}

/// Writes the task indexes of a catalogue from before they existed (see
/// `tessera_domain::tasks::backfill_indexes`), fsynced, before the group serves.
fn backfill_task_indexes(store: &Store, group: u32) -> Result<(), StorageError> {
    let records = store.records(group);
    let mut tx = Tx::new(&records);
    tasks::backfill_indexes(&mut tx)?;
    if tx.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    store.stage_writes(&mut batch, group, tx.into_writes());
    store.write(batch, true)
}

/// Stages a catalogue op's writes in `batch` through the domain's transaction.
fn stage_catalog(
    store: &Store,
    batch: &mut WriteBatch,
    group: u32,
    request_id: &[u8; 16],
    at_ms: Option<u64>,
    op: &catalog::CatalogOp,
) -> Result<catalog::CatalogOutcome, StorageError> {
    let records = store.records(group);
    let mut tx = Tx::new(&records);
    let outcome = catalog::stage(&mut tx, request_id, at_ms, op)?;
    store.stage_writes(batch, group, tx.into_writes());
    Ok(outcome)
}

fn apply_entries(
    store: &Store,
    group: u32,
    entries: Vec<Entry>,
    mut membership: StoredMembership,
    directory: Option<&Directory>,
    absent: &Absent,
) -> Result<(Vec<Response>, StoredMembership), StorageError> {
    let mut responses = Vec::with_capacity(entries.len());
    // Shard groups: the bytes of every new object of the call are appended first, so that one
    // fdatasync (in the first `write_state`) covers them all; the writer lock keeps compaction
    // from recording an older volume head in between.
    let volumes = match group {
        META_GROUP => None,
        _ => Some(store.volumes(group)?),
    };
    let _writer = volumes.as_ref().map(|v| v.writer());
    if let Some(volumes) = &volumes {
        for entry in &entries {
            if let EntryPayload::Normal(Command::PutObject { sha, bytes, .. }) = &entry.payload {
                if store.needs_bytes(group, sha)? {
                    // Safe to repeat: a failed append records nothing (see `DiskSpace::retry`).
                    store.space().retry(|| volumes.append_pending(sha, bytes))?;
                }
            }
        }
    }
    for entry in entries {
        let mut batch = WriteBatch::default();
        let mut catalog_op = None;
        // Published in the group's index in memory only once `batch` is written.
        let mut change = None;
        let mut uploaded = None;
        let mut reload = false;
        let response = match entry.payload {
            EntryPayload::Blank => Response::None,
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m);
                Response::None
            }
            // An entry appended before uploads were written at append (or re-applied at start,
            // read with its bytes): the bytes go to a needle now and the entry becomes a stub.
            EntryPayload::Normal(Command::PutObject { sha, meta, bytes }) => {
                uploaded = Some(sha);
                let (outcome, stored) = store
                    .space()
                    .retry(|| store.stage_put_object(&mut batch, group, &sha, &meta, &bytes))?;
                if let (Some(at), Some(volumes)) = (stored, &volumes) {
                    change = Some(stored_change(sha, at, &outcome));
                    stage_stub(store, &mut batch, volumes, entry.log_id, sha, meta, at)?;
                }
                Response::Object(outcome)
            }
            // An upload as the log store keeps it: the needle it wrote at append is indexed
            // (or, without one, the object is recorded as missing here and fetched from
            // another replica). Same record on every replica either way.
            EntryPayload::Normal(Command::StoredObject {
                sha,
                meta,
                volume,
                offset,
                len,
            }) => {
                uploaded = Some(sha);
                let logged = Location::of_stub(volume, offset, len);
                let (outcome, stored) =
                    store.stage_put_logged(&mut batch, group, &sha, &meta, logged)?;
                change = stored.map(|at| stored_change(sha, at, &outcome));
                Response::Object(outcome)
            }
            EntryPayload::Normal(Command::SetPlacement(placement)) => {
                let key = keys::named(group, PLACEMENT_KEY);
                let stored = stored_version::<Placement>(store, &key, |p| p.version)?;
                Response::Placement {
                    version: newer_version(
                        store,
                        &mut batch,
                        key,
                        stored,
                        &placement,
                        placement.version,
                    )?,
                }
            }
            EntryPayload::Normal(Command::SetMembers(members)) => {
                let key = keys::named(group, MEMBERS_KEY);
                let stored = stored_version::<Members>(store, &key, |m| m.version)?;
                Response::Placement {
                    version: newer_version(
                        store,
                        &mut batch,
                        key,
                        stored,
                        &members,
                        members.version,
                    )?,
                }
            }
            EntryPayload::Normal(Command::Reference {
                request_id,
                sha,
                add,
            }) => {
                let key = keys::named(group, &format!("request/{}", hex::encode(request_id)));
                match store.get(Cf::Catalog, &key)? {
                    Some(raw) => Response::References(bincode::deserialize(&raw)?),
                    None => {
                        let count = store
                            .stage_reference(&mut batch, group, &sha, add)?
                            .map(|m| m.refcount);
                        if count == Some(0) {
                            change = Some(IndexChange::Deleted(sha));
                        }
                        batch.put_cf(store.cf(Cf::Catalog), key, bincode::serialize(&count)?);
                        Response::References(count)
                    }
                }
            }
            EntryPayload::Normal(Command::SetDerived {
                original,
                size,
                derived,
            }) => {
                let key = crate::command::derived_key(group, &original, &size);
                match store
                    .get(Cf::Catalog, &key)?
                    .and_then(|raw| raw.try_into().ok())
                {
                    Some(recorded) => Response::Derived(Sha256(recorded)),
                    None => {
                        batch.put_cf(store.cf(Cf::Catalog), key, derived.0);
                        Response::Derived(derived)
                    }
                }
            }
            EntryPayload::Normal(Command::RestoreCatalog {
                backup,
                records,
                done,
            }) => {
                let outcome = crate::backup::stage_restore(
                    store, &mut batch, group, &backup, &records, done,
                )?;
                reload = done && outcome.is_ok();
                Response::Restored(outcome)
            }
            EntryPayload::Normal(Command::Catalog { request_id, op }) => {
                let outcome = stage_catalog(store, &mut batch, group, &request_id, None, &op)?;
                catalog_op = Some(op);
                Response::Catalog(outcome)
            }
            EntryPayload::Normal(Command::CatalogAt {
                request_id,
                at_ms,
                op,
            }) => {
                let outcome =
                    stage_catalog(store, &mut batch, group, &request_id, Some(at_ms), &op)?;
                catalog_op = Some(op);
                Response::Catalog(outcome)
            }
        };
        stage_applied(store, &mut batch, group, &Some(entry.log_id), &membership)?;
        store.write_state(group, batch, false)?;
        if let (Some(change), Some(volumes)) = (&change, &volumes) {
            volumes.memory().publish(change);
        }
        // Before the response leaves: a leader never answers a cached 404 for an upload it
        // acknowledged.
        if let Some(sha) = &uploaded {
            absent.stored(sha);
        }
        if let (Some(directory), Some(op), Response::Catalog(outcome)) =
            (directory, &catalog_op, &response)
        {
            directory.applied(op, outcome);
        }
        // A restore wrote records beneath the directory: it reads them all again.
        if let (Some(directory), true) = (directory, reload) {
            directory.reload(&store.records(group))?;
        }
        responses.push(response);
    }
    Ok((responses, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let (store, group, membership) = (self.store.clone(), self.group, self.membership.clone());
        let (directory, absent) = (self.directory.clone(), self.absent.clone());
        let (responses, membership) = blocking(ErrorVerb::Write, move || {
            apply_entries(
                &store,
                group,
                entries,
                membership,
                directory.as_deref(),
                &absent,
            )
        })
        .await?;
        self.applied = Some(last);
        self.membership = membership;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(self.group, self.applied),
        };
        let path = self.snapshots.data_path(&meta.snapshot_id);
        let (taken_tx, taken_rx) = oneshot::channel();
        let (store, group) = (self.store.clone(), self.group);
        // The export runs on the blocking pool. We wait only until it has taken its RocksDB
        // snapshot: from then on it sees exactly the state at `meta.last_log_id`, and this
        // group may keep applying while the file is written.
        let done = tokio::task::spawn_blocking(move || {
            let view = store.group_view(group);
            let _ = taken_tx.send(());
            let view = view?;
            // A snapshot file is as large as the group (a catalogue of a long campaign: 100+
            // MB): it is written only while that leaves client writes' headroom above the
            // floor, and on a disk too full for it the build waits, its partial file deleted,
            // rather than failing (openraft stops the group on a failed build).
            let space = store.space();
            space.retry(|| {
                let written = std::fs::File::create(&path)
                    .map_err(StorageError::from)
                    .and_then(|file| {
                        export_group(
                            &store,
                            &view,
                            Guarded::new(space, LOW_BYTES - FLOOR_BYTES, &file),
                        )?;
                        file.sync_all()?;
                        Ok(())
                    });
                if written.is_err() {
                    let _ = std::fs::remove_file(&path);
                }
                written
            })
        });
        let _ = taken_rx.await;
        SnapshotBuilder {
            meta,
            snapshots: self.snapshots.clone(),
            done: Some(done),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, RaftStorageError> {
        let path = self.snapshots.receive_path();
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        self.receiving = Some(path);
        tracing::info!(group = self.group, "receiving a snapshot");
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), RaftStorageError> {
        let io = |e: std::io::Error| storage_error(ErrorVerb::Write, &e);
        snapshot.flush().await.map_err(io)?;
        snapshot.seek(SeekFrom::Start(0)).await.map_err(io)?;
        let mut source = snapshot.into_std().await;
        let received = self.receiving.take();
        let kept = self.snapshots.data_path(&meta.snapshot_id);
        let (store, group, m) = (self.store.clone(), self.group, meta.clone());
        blocking(ErrorVerb::Write, move || {
            // 1. The data becomes this node's own snapshot file, fsynced. It is copied from the
            //    handle openraft gives back, never taken by the path last received into: a new
            //    receive may have begun before this install runs, so that path can be another
            //    snapshot's (renaming it could install the wrong file). The copy is why the
            //    last chunk needs room for the snapshot twice.
            let mut file = std::fs::File::create(&kept)?;
            std::io::copy(&mut source, &mut file)?;
            file.sync_all()?;
            if let Some(dir) = kept.parent() {
                sync_dir(dir)?;
            }
            if let Some(path) = received {
                std::fs::remove_file(path)?;
            }
            // 2. An fsynced marker says an install is under way: if we crash while the old state
            //    is being replaced, `open` finishes the install from the kept file.
            let mut batch = WriteBatch::default();
            batch.put_cf(
                store.cf(Cf::SmMeta),
                keys::named(group, INSTALLING),
                bincode::serialize(&m)?,
            );
            store.write(batch, true)?;
            // 3. Replace the state; the last batch sets the applied id and clears the marker.
            load_snapshot(&store, group, &kept, &m)
        })
        .await?;
        self.snapshots.set_current(meta).await?;
        self.absent.reset();
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if let Some(directory) = &self.directory {
            let (d, s, group) = (directory.clone(), self.store.clone(), self.group);
            blocking(ErrorVerb::Read, move || d.reload(&s.records(group))).await?;
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let current = self.snapshots.open_current().await?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

fn snapshot_id(group: u32, applied: Option<LogId>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match applied {
        Some(id) => format!("{}-{}-{}-{nanos}", id.leader_id.term, id.index, group),
        None => format!("0-0-{group}-{nanos}"),
    }
}

/// Finishes a snapshot whose RocksDB view was taken by `get_snapshot_builder`.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    snapshots: SnapshotStore,
    done: Option<tokio::task::JoinHandle<Result<(), StorageError>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let done = self.done.take().ok_or_else(|| {
            storage_error(
                ErrorVerb::Write,
                &std::io::Error::other("snapshot already built"),
            )
        })?;
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(storage_error(ErrorVerb::Write, &e)),
            Err(e) => return Err(storage_error(ErrorVerb::Write, &e)),
        }
        self.snapshots.set_current(&self.meta).await?;
        // Usually the snapshot just built; a newer one if an install overtook this build.
        let (meta, file) = self.snapshots.open_current().await?.ok_or_else(|| {
            storage_error(
                ErrorVerb::Read,
                &std::io::Error::other("no current snapshot after build"),
            )
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}
