//! Checking every needle of a group against its checksum, a slice at a time, and rewriting
//! objects whose local copy is damaged with intact bytes fetched elsewhere.

use rocksdb::WriteBatch;

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::object::Sha256;
use crate::volume::{read_needle, IndexChange, Location};

/// One slice of a scrub pass.
#[derive(Debug, Default)]
pub struct ScrubSlice {
    /// Objects whose needle failed its check (now marked damaged: never served from there).
    pub damaged: Vec<Sha256>,
    /// Needle bytes read.
    pub bytes: u64,
    /// Where the next slice starts; `None` once the pass reached the end of the group.
    pub next: Option<Sha256>,
}

impl Store {
    /// Verifies `group`'s needles in index order from `from`, stopping after about `budget`
    /// bytes, so that the caller can pace the pass (rate limit) between slices.
    pub fn scrub_slice(
        &self,
        group: u32,
        from: Option<Sha256>,
        budget: u64,
    ) -> Result<ScrubSlice, StorageError> {
        let volumes = self.volumes(group)?;
        let mut slice = ScrubSlice::default();
        // A scrub reads everything once: kept out of the block cache.
        for item in self.scan_group_objects(Cf::Needles, group, from.as_ref(), false) {
            let (sha, value) = item?;
            if slice.bytes >= budget {
                slice.next = Some(sha);
                break;
            }
            let at = Location::decode(&value)?;
            slice.bytes += at.len;
            let fault = match volumes.file(at.volume) {
                // Compacted away since the lookup: the new copy is checked by a later pass.
                None => continue,
                Some(file) => match read_needle(&file, &at, &sha)? {
                    Ok(_) => {
                        volumes.note_verified(&at);
                        continue;
                    }
                    Err(fault) => fault,
                },
            };
            volumes.mark_corrupt(&sha, at, fault);
            slice.damaged.push(sha);
        }
        Ok(slice)
    }

    /// Rewrites `sha`'s bytes in `group` from an intact copy (checked against the hash by this
    /// call) if the object still exists and its local copy is still the damaged one. Returns
    /// whether it did. Like an apply: fdatasync, then the index batch, under the writer lock.
    pub fn repair_object(
        &self,
        group: u32,
        sha: &Sha256,
        body: &[u8],
    ) -> Result<bool, StorageError> {
        if Sha256::of(body) != *sha {
            return Err(StorageError::Corrupt(format!(
                "repair copy of {sha} does not match its hash"
            )));
        }
        let volumes = self.volumes(group)?;
        let _writer = volumes.writer();
        let Some(meta) = self.object_meta(group, sha)? else {
            return Ok(false);
        };
        if let Some(at) = self.object_location(group, sha)? {
            if !volumes.is_corrupt(sha, &at) {
                return Ok(false);
            }
        }
        let at = volumes.append(sha, body)?;
        let mut batch = WriteBatch::default();
        self.stage_location(&mut batch, &volumes, sha, &at)?;
        self.write_state(group, batch, false)?;
        volumes.memory().publish(&IndexChange::Stored {
            sha: *sha,
            at,
            content_type: meta.content_type,
        });
        volumes.repaired(sha);
        tracing::info!(group, %sha, "repaired damaged object bytes from another replica");
        metrics::counter!("tessera_scrub_repaired_total").increment(1);
        Ok(true)
    }
}
