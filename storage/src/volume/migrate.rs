//! Moving the bytes of data dirs written before volumes (the `blobs` column family, BlobDB)
//! into volumes, at start-up.

use rocksdb::WriteBatch;

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;
use crate::volume::GroupVolumes;

/// `sm_meta` marker: the group's `blobs` range has been moved to volumes.
const MIGRATED: &str = "volumes-migrated";
/// Objects move in steps of about this many bytes: one fdatasync and one batch per step.
const STEP_BYTES: u64 = 64 << 20;

impl Store {
    /// Moves `group`'s object bytes from `blobs` into its volumes; returns how many moved. Each
    /// step appends a run of objects, fdatasyncs them, then writes one fsynced batch that
    /// indexes them and deletes their blobs, so an interrupted migration resumes with what is
    /// still in `blobs`, and no object is ever without bytes. A per-group marker records the
    /// end, so later starts cost one read.
    pub fn migrate_blobs(&self, group: u32) -> Result<u64, StorageError> {
        let marker = keys::named(group, MIGRATED);
        if self.get(Cf::SmMeta, &marker)?.is_some() {
            return Ok(0);
        }
        let volumes = self.volumes(group)?;
        let moved = migrate_steps(self, &volumes, usize::MAX)?;
        if moved > 0 {
            tracing::info!(group, moved, "moved object bytes from blobs to volumes");
        }
        Ok(moved)
    }
}

/// Runs at most `steps` migration steps; returns how many objects moved. Sets the marker when
/// `blobs` is empty.
pub(crate) fn migrate_steps(
    store: &Store,
    volumes: &GroupVolumes,
    steps: usize,
) -> Result<u64, StorageError> {
    let group = volumes.group();
    let marker = keys::named(group, MIGRATED);
    let _writer = volumes.writer();
    let mut moved = 0u64;
    for _ in 0..steps {
        let mut batch = WriteBatch::default();
        let mut step = 0u64;
        for item in store.scan_group_objects(Cf::Blobs, group, None, false) {
            let (sha, body) = item?;
            let at = volumes.append(&sha, &body)?;
            store.stage_location(&mut batch, volumes, &sha, &at)?;
            batch.delete_cf(store.cf(Cf::Blobs), keys::object(group, &sha.0));
            moved += 1;
            step += body.len() as u64;
            if step >= STEP_BYTES {
                break;
            }
        }
        let finished = step < STEP_BYTES;
        if finished {
            batch.put_cf(store.cf(Cf::SmMeta), &marker, []);
        }
        store.write_state(group, batch, true)?;
        if finished {
            break;
        }
    }
    // The moved objects become visible to readers in memory at once, at the end.
    if moved > 0 {
        store.load_memory_index(volumes)?;
    }
    Ok(moved)
}
