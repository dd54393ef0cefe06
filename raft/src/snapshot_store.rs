use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ErrorVerb;
use tokio::sync::Mutex;

use crate::blocking::{blocking, storage_error};
use crate::types::{RaftStorageError, SnapshotMeta};

/// The snapshot files of one group in the node's `snapshots/` directory.
///
/// `g<group>-<id>.snap` holds the data (see `tessera_storage::export_group`), and
/// `g<group>.current` the bincode `SnapshotMeta` of the snapshot to serve. The pointer is
/// replaced by an fsynced write and an atomic rename, so a crash leaves either the old or the
/// new snapshot current, never a half-written one.
///
/// openraft builds snapshots in a task of their own while the state machine may install one, so
/// every pointer change and read happens under one lock, the pointer only moves forward, and only
/// files older than the current snapshot are deleted.
#[derive(Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    group: u32,
    lock: Arc<Mutex<()>>,
}

fn last_index(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.map(|l| l.index).unwrap_or(0)
}

/// Deletes every snapshot file of `group` in `dir` (its replica left the group).
pub(crate) fn forget_group(dir: &Path, group: u32) -> std::io::Result<()> {
    let prefix = format!("g{group}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl SnapshotStore {
    /// Opens the store and removes receive buffers left by an interrupted transfer.
    pub async fn open(dir: &Path, group: u32) -> Result<SnapshotStore, RaftStorageError> {
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            group,
            lock: Arc::new(Mutex::new(())),
        };
        let this = store.clone();
        blocking(ErrorVerb::Write, move || {
            std::fs::create_dir_all(&this.dir)?;
            let prefix = format!("g{}-recv-", this.group);
            for entry in std::fs::read_dir(&this.dir)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await?;
        Ok(store)
    }

    pub fn data_path(&self, snapshot_id: &str) -> PathBuf {
        self.dir
            .join(format!("g{}-{}.snap", self.group, snapshot_id))
    }

    /// A fresh path to receive a snapshot into.
    pub fn receive_path(&self) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.dir.join(format!("g{}-recv-{nanos}.tmp", self.group))
    }

    fn pointer_path(&self) -> PathBuf {
        self.dir.join(format!("g{}.current", self.group))
    }

    async fn read_pointer(&self) -> Result<Option<SnapshotMeta>, RaftStorageError> {
        let path = self.pointer_path();
        blocking(ErrorVerb::Read, move || match std::fs::read(&path) {
            Ok(raw) => bincode::deserialize(&raw).map(Some).map_err(|e| *e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(bincode::ErrorKind::Io(e)),
        })
        .await
    }

    /// The current snapshot, opened for reading.
    pub async fn open_current(
        &self,
    ) -> Result<Option<(SnapshotMeta, tokio::fs::File)>, RaftStorageError> {
        let _guard = self.lock.lock().await;
        let Some(meta) = self.read_pointer().await? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.data_path(&meta.snapshot_id))
            .await
            .map_err(|e| storage_error(ErrorVerb::Read, &e))?;
        Ok(Some((meta, file)))
    }

    /// Makes the snapshot whose data is at `self.data_path(meta.snapshot_id)` current, unless a
    /// newer one already is, and deletes the group's older snapshot files.
    pub async fn set_current(&self, meta: &SnapshotMeta) -> Result<(), RaftStorageError> {
        let _guard = self.lock.lock().await;
        if let Some(current) = self.read_pointer().await? {
            if current.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let raw = bincode::serialize(meta).map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        let this = self.clone();
        let (keep, keep_index) = (self.data_path(&meta.snapshot_id), last_index(meta));
        blocking(ErrorVerb::Write, move || {
            let tmp = this.pointer_path().with_extension("tmp");
            let file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut &file, &raw)?;
            file.sync_all()?;
            std::fs::rename(&tmp, this.pointer_path())?;
            sync_dir(&this.dir)?;
            let prefix = format!("g{}-", this.group);
            for entry in std::fs::read_dir(&this.dir)? {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Names are g<group>-<term>-<index>-<group>-<nanos>.snap.
                let index = name
                    .strip_prefix(&prefix)
                    .filter(|rest| rest.ends_with(".snap"))
                    .and_then(|rest| rest.split('-').nth(1)?.parse::<u64>().ok());
                if index.is_some_and(|i| i < keep_index) && path != keep {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await
    }
}

/// fsyncs a directory so that a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
