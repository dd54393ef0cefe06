//! Reclaiming the space of needles nothing points to any more (objects whose last reference
//! was dropped, copies replaced by a repair, tails of re-applied entries).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use rocksdb::WriteBatch;

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;
use crate::object::Sha256;
use crate::volume::needle::encode_header;
use crate::volume::{read_needle, GroupVolumes, Location, HEADER_LEN};

/// A sealed volume is rewritten once more than this share of its bytes is garbage.
pub const GARBAGE_RATIO: f64 = 0.5;

/// What one compaction pass over a group did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    pub volumes: u64,
    pub reclaimed_bytes: u64,
}

type Live = BTreeMap<u32, Vec<(Sha256, Location)>>;

impl Store {
    /// Rewrites every sealed volume of `group` whose garbage share exceeds `ratio`: live
    /// needles are copied (checksums verified) to a new volume, which is fdatasynced; one
    /// fsynced batch then moves their index entries; only after that is the old file deleted.
    /// A crash before the batch leaves an unrecorded file that the next open deletes; after it,
    /// an old file that nothing points to and the next pass deletes. The active volume is never
    /// compacted. Runs beside applies: they only touch the active volume, and the swap happens
    /// under the volumes' writer lock, re-checking each entry.
    ///
    /// Volumes that log stubs newer than `purged` (the group's last purged log index) point
    /// into are left alone until the log is purged past them.
    pub fn compact_volumes(
        &self,
        group: u32,
        ratio: f64,
        purged: u64,
    ) -> Result<Compaction, StorageError> {
        let volumes = self.volumes(group)?;
        let active = volumes.head().active;
        let live = self.live_needles(group)?;
        let mut done = Compaction::default();
        for (id, file) in volumes.files() {
            if id == active || !volumes.movable(id, purged) {
                continue;
            }
            let needles = live.get(&id).cloned().unwrap_or_default();
            let size = file.metadata()?.len();
            let used: u64 = needles.iter().map(|(_, at)| HEADER_LEN + at.len).sum();
            let garbage = size.saturating_sub(used);
            if !needles.is_empty() && (garbage as f64) <= ratio * size as f64 {
                continue;
            }
            if let Some(written) = self.rewrite_volume(&volumes, id, &file, needles)? {
                done.volumes += 1;
                done.reclaimed_bytes += size.saturating_sub(written);
            }
        }
        Ok(done)
    }

    /// The group's index, by volume.
    fn live_needles(&self, group: u32) -> Result<Live, StorageError> {
        let mut live = Live::new();
        for item in self.scan_group_objects(Cf::Needles, group, None, false) {
            let (sha, value) = item?;
            let at = Location::decode(&value)?;
            live.entry(at.volume).or_default().push((sha, at));
        }
        Ok(live)
    }

    /// Copies `needles` out of volume `id` and retires it; the bytes written, or `None` if the
    /// volume could not be compacted now (a damaged needle waits for its repair).
    fn rewrite_volume(
        &self,
        volumes: &GroupVolumes,
        id: u32,
        old: &File,
        mut needles: Vec<(Sha256, Location)>,
    ) -> Result<Option<u64>, StorageError> {
        if needles.is_empty() {
            volumes.delete(id)?;
            tracing::info!(
                group = volumes.group(),
                volume = id,
                "deleted a volume of garbage"
            );
            return Ok(Some(0));
        }
        needles.sort_by_key(|(_, at)| at.offset);
        let (new_id, new) = volumes.create_sealed()?;
        let mut moved = Vec::with_capacity(needles.len());
        let mut end = 0u64;
        for (sha, at) in needles {
            let body = match read_needle(old, &at, &sha)? {
                Ok(body) => body,
                Err(fault) => {
                    volumes.mark_corrupt(&sha, at, fault);
                    drop(new);
                    volumes.delete(new_id)?;
                    return Ok(None);
                }
            };
            new.write_all_at(&encode_header(&sha, &body), end)?;
            new.write_all_at(&body, end + HEADER_LEN)?;
            let to = Location {
                volume: new_id,
                offset: end + HEADER_LEN,
                len: at.len,
            };
            end += HEADER_LEN + at.len;
            // Read through its checksum just now, and written by this process.
            volumes.note_verified(&to);
            moved.push((sha, at, to));
        }
        new.sync_data()?;
        {
            let _writer = volumes.writer();
            if volumes.file(id).is_none() {
                // A snapshot install replaced the group's volumes meanwhile.
                drop(new);
                volumes.delete(new_id)?;
                return Ok(None);
            }
            let mut batch = WriteBatch::default();
            let mut repointed = Vec::with_capacity(moved.len());
            for (sha, from, to) in &moved {
                if self.object_location(volumes.group(), sha)? == Some(*from) {
                    batch.put_cf(
                        self.cf(Cf::Needles),
                        keys::object(volumes.group(), &sha.0),
                        to.encode(),
                    );
                    repointed.push((*sha, *from, *to));
                }
            }
            self.stage_volume_head(&mut batch, volumes)?;
            self.write(batch, true)?;
            volumes.swap(new_id, new, id, &repointed);
        }
        volumes.delete(id)?;
        tracing::info!(
            group = volumes.group(),
            volume = id,
            into = new_id,
            live = moved.len(),
            "compacted a volume"
        );
        Ok(Some(end))
    }
}
