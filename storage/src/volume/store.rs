//! The store's side of volumes: opening a group's volumes at its recorded head, the index next
//! to the records, and reads of object bytes (as a file range for `sendfile`, or into memory).

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;
use crate::object::{ObjectMeta, Sha256};
use crate::volume::memory_index::Loaded;
use crate::volume::{check_needle, read_needle, GroupVolumes, Location, Resident, VolumeHead};

/// `sm_meta` key of a group's [`VolumeHead`].
const HEAD: &str = "volumes";
/// `sm_meta` key of a group's stub marks (see [`GroupVolumes::note_stub`]).
const STUBS: &str = "volume-stubs";
/// A reader that finds its volume compacted away looks the object up again this many times.
const LOOKUPS: usize = 3;

/// An object's body as a byte range of a volume file: what `sendfile(2)` needs. The file handle
/// stays valid even if compaction deletes the file meanwhile.
#[derive(Clone, Debug)]
pub struct ObjectSlice {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

impl Store {
    /// `group`'s volumes, opened (and recovered to the recorded head) on first use.
    pub fn volumes(&self, group: u32) -> Result<Arc<GroupVolumes>, StorageError> {
        let mut groups = self.volume_set().groups();
        if let Some(found) = groups.get(&group) {
            return Ok(found.clone());
        }
        let head = match self.get(Cf::SmMeta, &keys::named(group, HEAD))? {
            Some(raw) => bincode::deserialize(&raw)?,
            None => VolumeHead::default(),
        };
        let stubs = match self.get(Cf::SmMeta, &keys::named(group, STUBS))? {
            Some(raw) => bincode::deserialize(&raw)?,
            None => Default::default(),
        };
        let dir = self.volume_set().dir(group);
        let opened = Arc::new(GroupVolumes::open(
            dir,
            group,
            head,
            stubs,
            self.volume_set().max_bytes(),
        )?);
        self.load_memory_index(&opened)?;
        groups.insert(group, opened.clone());
        self.volume_set()
            .publish_memory(group, opened.memory().clone());
        Ok(opened)
    }

    /// Fills `volumes`' index in memory from the durable one: every `needles` entry whose
    /// object has a record, with the record's content type (one merged pass over both column
    /// families, both in hash order). Needles without a record (a group reset at start-up)
    /// are left out; records without a needle (or pre-volume blob) are the objects this
    /// replica has no bytes of, and needles past the end of their volume file lost theirs:
    /// both are remembered for the repair loop. Called when a group is opened
    /// (before anyone else has it) and after a snapshot install or migration (under the
    /// writer lock), so no apply publishes meanwhile.
    pub(crate) fn load_memory_index(&self, volumes: &GroupVolumes) -> Result<(), StorageError> {
        let group = volumes.group();
        let mut loaded = Loaded::default();
        let mut missing = HashSet::new();
        let lengths = volumes.file_lengths()?;
        let mut cut = Vec::new();
        let mut needles = self.scan_group_objects(Cf::Needles, group, None, false);
        let mut needle = needles.next().transpose()?;
        for item in self.scan_group_objects(Cf::Objects, group, None, false) {
            let (sha, value) = item?;
            while needle.as_ref().is_some_and(|(next, _)| *next < sha) {
                needle = needles.next().transpose()?;
            }
            match &needle {
                Some((next, raw)) if *next == sha => {
                    let at = Location::decode(raw)?;
                    let end = at.offset.saturating_add(at.len);
                    if lengths.get(&at.volume).is_some_and(|len| end <= *len) {
                        let meta: ObjectMeta = bincode::deserialize(&value)?;
                        loaded.add(&sha, &at, &meta.content_type);
                    } else {
                        cut.push((sha, at));
                    }
                }
                _ => {
                    if self.get(Cf::Blobs, &keys::object(group, &sha.0))?.is_none() {
                        missing.insert(sha);
                    }
                }
            }
        }
        volumes.memory().replace(loaded);
        volumes.set_missing(missing);
        volumes.mark_truncated(cut);
        Ok(())
    }

    /// `sha`'s body in a volume of this node's replica of `group`, found in memory without
    /// blocking (see `memory_index.rs`); `None` sends the caller to [`Store::object_slice`].
    /// Only needles this process has checked are offered: `sendfile` does not look at the
    /// bytes, so a needle damaged while the node was down goes first through `object_slice`,
    /// which checks it (and marks it damaged, or checked). A small object's body comes read
    /// and checked with it (`Resident::body`).
    pub fn resident_object(&self, group: u32, sha: &Sha256) -> Option<Resident> {
        let resident = self.volume_set().memory(group)?.get(sha)?;
        if resident.body.is_some() {
            // Checked against its checksum just now.
            return Some(resident);
        }
        let volumes = self.volume_set().groups().get(&group).cloned()?;
        volumes.is_verified(&resident.at).then_some(resident)
    }

    /// The objects of `group` whose local bytes are damaged or missing, awaiting repair.
    pub fn awaiting_repair(&self, group: u32) -> Vec<Sha256> {
        let opened = self.volume_set().groups().get(&group).cloned();
        opened.map(|v| v.awaiting_repair()).unwrap_or_default()
    }

    /// How many of `group`'s objects have damaged or missing local bytes awaiting repair.
    pub fn damaged_objects(&self, group: u32) -> usize {
        let opened = self.volume_set().groups().get(&group).cloned();
        opened.map(|v| v.corrupt_count()).unwrap_or(0)
    }

    /// Bytes of `group`'s volume files on this node (live needles and garbage not compacted
    /// yet), if its volumes are open: about what a snapshot of the group sends. One `fstat`
    /// per file.
    pub fn volume_bytes(&self, group: u32) -> u64 {
        let opened = self.volume_set().groups().get(&group).cloned();
        opened.map_or(0, |v| {
            v.files()
                .values()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
    }

    /// Writes a batch of `group`'s state. New needles it indexes are fdatasynced first, so a
    /// durable index entry never points to bytes that a crash could lose.
    pub fn write_state(
        &self,
        group: u32,
        batch: WriteBatch,
        sync: bool,
    ) -> Result<(), StorageError> {
        let opened = self.volume_set().groups().get(&group).cloned();
        if let Some(volumes) = opened {
            volumes.sync()?;
        }
        self.write(batch, sync)
    }

    /// Stages `sha`'s index entry and the volume head that covers it.
    pub fn stage_location(
        &self,
        batch: &mut WriteBatch,
        volumes: &GroupVolumes,
        sha: &Sha256,
        at: &Location,
    ) -> Result<(), StorageError> {
        let group = volumes.group();
        batch.put_cf(
            self.cf(Cf::Needles),
            keys::object(group, &sha.0),
            at.encode(),
        );
        self.stage_volume_head(batch, volumes)
    }

    /// Stages the current head of `volumes` and its stub marks.
    pub fn stage_volume_head(
        &self,
        batch: &mut WriteBatch,
        volumes: &GroupVolumes,
    ) -> Result<(), StorageError> {
        let cf = self.cf(Cf::SmMeta);
        let group = volumes.group();
        batch.put_cf(
            cf,
            keys::named(group, HEAD),
            bincode::serialize(&volumes.head())?,
        );
        batch.put_cf(
            cf,
            keys::named(group, STUBS),
            bincode::serialize(&volumes.stubs())?,
        );
        Ok(())
    }

    /// The bytes of the needle a log stub points to (checked against `sha`), or — if that copy
    /// was damaged and repaired since — the object's current copy.
    pub fn stub_bytes(
        &self,
        group: u32,
        sha: &Sha256,
        at: &Location,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let volumes = self.volumes(group)?;
        if let Some(file) = volumes.file(at.volume) {
            if let Ok(body) = read_needle(&file, at, sha)? {
                return Ok(Some(body));
            }
        }
        Ok(self.object_bytes(group, sha)?.map(|b| b.to_vec()))
    }

    pub fn object_location(
        &self,
        group: u32,
        sha: &Sha256,
    ) -> Result<Option<Location>, StorageError> {
        match self.get(Cf::Needles, &keys::object(group, &sha.0))? {
            Some(raw) => Ok(Some(Location::decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// The location of `sha`'s bytes and the open file holding them, unless they are missing or
    /// known damaged.
    fn located(
        &self,
        group: u32,
        sha: &Sha256,
    ) -> Result<Option<(Location, Arc<File>)>, StorageError> {
        let volumes = self.volumes(group)?;
        for _ in 0..LOOKUPS {
            let Some(at) = self.object_location(group, sha)? else {
                return Ok(None);
            };
            if volumes.is_corrupt(sha, &at) {
                return Ok(None);
            }
            // `None`: compaction moved the needle between the two reads; look again.
            if let Some(file) = volumes.file(at.volume) {
                return Ok(Some((at, file)));
            }
        }
        Ok(None)
    }

    /// The record and body position of a locally stored object, for `sendfile(2)`. `None` when
    /// this replica has no intact bytes for it (absent, damaged, or not migrated yet); the
    /// caller then falls back to a full read, which looks elsewhere.
    pub fn object_slice(
        &self,
        group: u32,
        sha: &Sha256,
    ) -> Result<Option<(ObjectMeta, ObjectSlice)>, StorageError> {
        let Some(meta) = self.object_meta(group, sha)? else {
            return Ok(None);
        };
        let Some((at, file)) = self.located(group, sha)? else {
            return Ok(None);
        };
        // `sendfile` does not look at the bytes: a needle goes out that way only once this
        // process has checked it (damage made while the node was down is found here, before
        // the first byte is sent, not by the next scrub).
        let volumes = self.volumes(group)?;
        if !volumes.is_verified(&at) {
            if let Err(fault) = check_needle(&file, &at, sha)? {
                volumes.mark_corrupt(sha, at, fault);
                return Ok(None);
            }
            volumes.note_verified(&at);
        }
        Ok(Some((
            meta,
            ObjectSlice {
                file,
                offset: at.offset,
                len: at.len,
            },
        )))
    }

    /// An object's bytes read whole (positioned read) and checked against their checksum.
    /// Damaged bytes are reported, remembered and never returned: `None`, like missing bytes.
    pub fn object_bytes(&self, group: u32, sha: &Sha256) -> Result<Option<Bytes>, StorageError> {
        let Some((at, file)) = self.located(group, sha)? else {
            // Bytes of a data dir written before volumes, until it is migrated.
            return self.get_bytes(Cf::Blobs, &keys::object(group, &sha.0));
        };
        match read_needle(&file, &at, sha)? {
            Ok(body) => {
                self.volumes(group)?.note_verified(&at);
                Ok(Some(Bytes::from(body)))
            }
            Err(fault) => {
                self.volumes(group)?.mark_corrupt(sha, at, fault);
                Ok(None)
            }
        }
    }
}

impl Store {
    /// Deletes everything this node holds of `group` — its Raft log, vote and metadata, its
    /// state, its needle index and its volume files — after its replica left the group (its
    /// leader removed it). The group's Raft must be stopped first. One fsynced batch, then the
    /// files: a crash in between leaves volume files without an index, which a later replica
    /// of the group starts over from (ids keep growing, see [`GroupVolumes::reset`]).
    pub fn forget_group(&self, group: u32) -> Result<(), StorageError> {
        let volumes = self.volumes(group)?;
        let _writer = volumes.writer();
        let mut batch = WriteBatch::default();
        for cf in Cf::ALL {
            batch.delete_range_cf(
                self.cf(cf),
                keys::group_start(group),
                keys::group_end(group),
            );
        }
        self.write(batch, true)?;
        volumes.reset()?;
        self.volume_set().groups().remove(&group);
        self.volume_set().forget_memory(group);
        Ok(())
    }
}
