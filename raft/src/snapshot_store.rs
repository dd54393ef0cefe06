use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ErrorVerb;

use crate::blocking::{blocking, storage_error};
use crate::types::{RaftStorageError, SnapshotMeta};

/// The snapshot files of one group in the node's `snapshots/` directory.
///
/// `g<group>-<id>.snap` holds the data (see `tessera_storage::export_group`), and
/// `g<group>.current` the bincode `SnapshotMeta` of the snapshot to serve. The pointer is
/// replaced by an fsynced write and an atomic rename, so a crash leaves either the old or the
/// new snapshot current, never a half-written one.
#[derive(Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    group: u32,
}

impl SnapshotStore {
    /// Opens the store and removes receive buffers left by an interrupted transfer.
    pub async fn open(dir: &Path, group: u32) -> Result<SnapshotStore, RaftStorageError> {
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            group,
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

    /// The metadata of the current snapshot, if any.
    pub async fn current(&self) -> Result<Option<SnapshotMeta>, RaftStorageError> {
        let path = self.pointer_path();
        blocking(ErrorVerb::Read, move || match std::fs::read(&path) {
            Ok(raw) => bincode::deserialize(&raw).map(Some).map_err(|e| *e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(bincode::ErrorKind::Io(e)),
        })
        .await
    }

    /// Makes the snapshot whose data is at `self.data_path(meta.snapshot_id)` current and
    /// deletes the group's older snapshot files.
    pub async fn set_current(&self, meta: &SnapshotMeta) -> Result<(), RaftStorageError> {
        let raw = bincode::serialize(meta).map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        let this = self.clone();
        let keep = self.data_path(&meta.snapshot_id);
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
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let stale = name.is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".snap"));
                if stale && path != keep {
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
