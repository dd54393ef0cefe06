//! Object bytes in append-only volume files, one directory of volumes per Raft group.
//!
//! Each object's bytes are one needle (`needle.rs`) appended by the group's state machine when
//! it applies the upload; RocksDB keeps the index (`needles` column family, sha256 → volume,
//! offset, length) and the record (`objects`). A body is a contiguous range of a plain file, so
//! a reader can hand it to `sendfile(2)` and the page cache is the only byte cache.
//!
//! Durability (see also docs/architecture.md): the Raft log is the durability point. A volume
//! is fdatasynced before the state batch that indexes its new needles is written
//! ([`GroupVolumes::sync`]), so a durable index entry always points to durable bytes; a crash
//! before that batch leaves an unindexed tail that [`GroupVolumes::open`] truncates, and openraft
//! re-applies the entries from the log. Snapshots are built only from applied (hence synced)
//! state, and the log is purged only behind a snapshot, so no acknowledged object ever exists
//! only in unsynced volume bytes.

mod compact;
mod group;
mod location;
mod memory_index;
mod migrate;
mod needle;
mod scrub;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub use compact::{Compaction, GARBAGE_RATIO};
pub use group::{check_needle, read_needle, sync_dir, GroupVolumes, VolumeHead};
pub use location::Location;
pub use memory_index::{IndexChange, MemoryIndex, Resident};
pub use needle::{NeedleFault, HEADER_LEN};
pub use scrub::ScrubSlice;
pub use store::ObjectSlice;

/// Volumes roll over at this size: large enough that a node has few files, small enough that
/// compacting one does not take long.
pub const DEFAULT_VOLUME_BYTES: u64 = 1 << 30;

/// The volumes of every group on a node, opened on first use.
pub struct Volumes {
    root: PathBuf,
    max_bytes: u64,
    groups: Mutex<HashMap<u32, Arc<GroupVolumes>>>,
    /// Each opened group's index in memory, apart from `groups`: opening a group holds that
    /// lock across disk reads, and async readers must never wait behind them.
    memory: RwLock<HashMap<u32, Arc<MemoryIndex>>>,
}

impl Volumes {
    pub fn new(root: PathBuf, max_bytes: u64) -> Volumes {
        Volumes {
            root,
            max_bytes,
            groups: Mutex::new(HashMap::new()),
            memory: RwLock::new(HashMap::new()),
        }
    }

    /// The directory holding `group`'s volume files.
    pub fn dir(&self, group: u32) -> PathBuf {
        self.root.join(format!("g{group}"))
    }

    pub(crate) fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<GroupVolumes>>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `group`'s index in memory, once the group's volumes are open and it is loaded.
    pub fn memory(&self, group: u32) -> Option<Arc<MemoryIndex>> {
        self.memory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&group)
            .cloned()
    }

    pub(crate) fn publish_memory(&self, group: u32, index: Arc<MemoryIndex>) {
        self.memory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(group, index);
    }

    pub(crate) fn forget_memory(&self, group: u32) {
        self.memory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&group);
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}
