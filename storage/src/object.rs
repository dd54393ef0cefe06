use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;
use crate::volume::Location;

pub use tessera_domain::Sha256;

/// What the cluster knows about a stored object. Replicated: every field is decided by the
/// proposer (leader) so that every replica stores identical records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    /// How many uploads and references hold this object; it may only be deleted at zero.
    pub refcount: u64,
    /// Milliseconds since the Unix epoch when the bytes were first stored.
    pub created_ms: u64,
}

impl ObjectMeta {
    /// The record proposed for newly uploaded bytes (the state machine sets the reference
    /// count when it stores them).
    pub fn for_upload(size: u64, image: &crate::ImageInfo, created_ms: u64) -> ObjectMeta {
        ObjectMeta {
            size,
            content_type: image.content_type.to_string(),
            width: image.width,
            height: image.height,
            refcount: 0,
            created_ms,
        }
    }
}

/// The result of storing an object: its record after the write and whether the bytes were
/// already there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    pub meta: ObjectMeta,
    pub deduplicated: bool,
}

/// Where the bytes of an upload being applied are.
enum Body<'a> {
    /// In the log entry: written to a needle at apply.
    Bytes(&'a [u8]),
    /// Already in an intact needle of this replica, written when the entry was appended.
    Logged(Location),
    /// Not on this replica.
    Absent,
}

impl Store {
    /// The records of `group` in a column family keyed group ++ SHA-256 (`objects`, `needles`,
    /// `blobs`), in hash order from `from` (or the first). `cached: false` keeps a full pass
    /// (scrub, compaction, migration) out of the block cache.
    pub fn scan_group_objects(
        &self,
        cf: Cf,
        group: u32,
        from: Option<&Sha256>,
        cached: bool,
    ) -> impl Iterator<Item = Result<(Sha256, Box<[u8]>), StorageError>> + '_ {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::group_end(group));
        opts.fill_cache(cached);
        let start = match from {
            Some(sha) => keys::object(group, &sha.0).to_vec(),
            None => keys::group_start(group).to_vec(),
        };
        self.db()
            .iterator_cf_opt(
                self.cf(cf),
                opts,
                IteratorMode::From(&start, Direction::Forward),
            )
            .map(move |item| {
                let (key, value) = item?;
                let raw: [u8; 32] = key
                    .get(keys::GROUP_LEN..)
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| StorageError::Corrupt(format!("{} key length", cf.name())))?;
                Ok((Sha256(raw), value))
            })
    }

    pub fn object_meta(
        &self,
        group: u32,
        sha: &Sha256,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        match self.get(Cf::Objects, &keys::object(group, &sha.0))? {
            Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
            None => Ok(None),
        }
    }

    /// Stages in `batch` the writes that store `bytes` under `sha` in `group`: the first time
    /// a needle in the group's volumes, its index entry and a record with reference count 1;
    /// afterwards a reference count increment (and the bytes again if this replica lacks them
    /// or found them damaged: the log entry carries a good copy). `fresh` carries the
    /// proposer's metadata for a new object. Write `batch` with [`Store::write_state`]. Also
    /// returns where the bytes were appended, if they were.
    pub fn stage_put_object(
        &self,
        batch: &mut WriteBatch,
        group: u32,
        sha: &Sha256,
        fresh: &ObjectMeta,
        bytes: &[u8],
    ) -> Result<(PutOutcome, Option<Location>), StorageError> {
        self.stage_put(batch, group, sha, fresh, Body::Bytes(bytes))
    }

    /// Stages an upload whose bytes the log store already wrote to a needle of this replica
    /// when it appended the entry (`logged`; see `tessera_raft::log_store`): as
    /// [`Store::stage_put_object`], except that the needle is indexed where it is instead of
    /// written again. A needle that is gone or fails its checksum (the volume was damaged, or
    /// replaced by a snapshot install, between append and apply) is not indexed: the upload
    /// is staged as one without bytes, which the repair loop then fetches from another replica.
    /// Also returns the location it indexed, if it did.
    pub fn stage_put_logged(
        &self,
        batch: &mut WriteBatch,
        group: u32,
        sha: &Sha256,
        fresh: &ObjectMeta,
        logged: Option<Location>,
    ) -> Result<(PutOutcome, Option<Location>), StorageError> {
        let body = match logged {
            Some(at) if self.volumes(group)?.holds(sha, &at)? => Body::Logged(at),
            _ => Body::Absent,
        };
        self.stage_put(batch, group, sha, fresh, body)
    }

    fn stage_put(
        &self,
        batch: &mut WriteBatch,
        group: u32,
        sha: &Sha256,
        fresh: &ObjectMeta,
        body: Body<'_>,
    ) -> Result<(PutOutcome, Option<Location>), StorageError> {
        let key = keys::object(group, &sha.0);
        let volumes = self.volumes(group)?;
        let (outcome, store_bytes) = match self.object_meta(group, sha)? {
            Some(mut meta) => {
                meta.refcount += 1;
                let intact = match self.object_location(group, sha)? {
                    Some(at) => !volumes.is_corrupt(sha, &at),
                    None => self.get(Cf::Blobs, &key)?.is_some(),
                };
                let outcome = PutOutcome {
                    meta,
                    deduplicated: true,
                };
                (outcome, !intact)
            }
            None => {
                let meta = ObjectMeta {
                    refcount: 1,
                    ..fresh.clone()
                };
                let outcome = PutOutcome {
                    meta,
                    deduplicated: false,
                };
                (outcome, true)
            }
        };
        let stored = match body {
            _ if !store_bytes => None,
            Body::Bytes(bytes) => Some(match volumes.take_pending(sha) {
                Some(at) => at,
                None => volumes.append(sha, bytes)?,
            }),
            Body::Logged(at) => Some(at),
            Body::Absent => {
                // Damaged bytes are already awaiting repair; an object without any gets in line.
                if self.object_location(group, sha)?.is_none() {
                    volumes.mark_missing(sha);
                }
                None
            }
        };
        if let Some(at) = &stored {
            self.stage_location(batch, &volumes, sha, at)?;
            volumes.repaired(sha);
        }
        batch.put_cf(
            self.cf(Cf::Objects),
            key,
            bincode::serialize(&outcome.meta)?,
        );
        Ok((outcome, stored))
    }

    /// Whether applying a `PutObject` of `sha` will append its bytes (see
    /// [`Store::stage_put_object`]), so the caller can append them early and sync once.
    pub fn needs_bytes(&self, group: u32, sha: &Sha256) -> Result<bool, StorageError> {
        if self.object_meta(group, sha)?.is_none() {
            return Ok(true);
        }
        Ok(match self.object_location(group, sha)? {
            Some(at) => self.volumes(group)?.is_corrupt(sha, &at),
            None => self.get(Cf::Blobs, &keys::object(group, &sha.0))?.is_none(),
        })
    }
}

impl Store {
    /// Stages a reference count change of an existing object; `None` if there is no such
    /// object in `group`. An object whose count drops to zero is deleted (record and index) on
    /// every replica alike; its needle becomes garbage for compaction.
    pub fn stage_reference(
        &self,
        batch: &mut WriteBatch,
        group: u32,
        sha: &Sha256,
        add: bool,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let Some(mut meta) = self.object_meta(group, sha)? else {
            return Ok(None);
        };
        let key = keys::object(group, &sha.0);
        if add {
            meta.refcount += 1;
        } else if meta.refcount <= 1 {
            meta.refcount = 0;
            batch.delete_cf(self.cf(Cf::Objects), key);
            batch.delete_cf(self.cf(Cf::Needles), key);
            batch.delete_cf(self.cf(Cf::Blobs), key);
            return Ok(Some(meta));
        } else {
            meta.refcount -= 1;
        }
        batch.put_cf(self.cf(Cf::Objects), key, bincode::serialize(&meta)?);
        Ok(Some(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let sha = Sha256::of(b"tessera");
        assert_eq!(Sha256::parse_hex(&sha.to_string()), Some(sha));
        assert_eq!(
            Sha256::parse_hex(&sha.to_string().to_uppercase()),
            Some(sha)
        );
        assert_eq!(Sha256::parse_hex("abc"), None);
        assert_eq!(Sha256::parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn second_put_deduplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = vec![7u8; 10_000];
        let sha = Sha256::of(&bytes);
        let fresh = ObjectMeta {
            size: bytes.len() as u64,
            content_type: "image/png".into(),
            width: 1,
            height: 1,
            refcount: 0,
            created_ms: 5,
        };
        for expected in [(false, 1), (true, 2)] {
            let mut batch = WriteBatch::default();
            let (out, _) = store
                .stage_put_object(&mut batch, 3, &sha, &fresh, &bytes)
                .unwrap();
            store.write_state(3, batch, false).unwrap();
            assert_eq!((out.deduplicated, out.meta.refcount), expected);
        }
        assert_eq!(store.object_bytes(3, &sha).unwrap().unwrap(), bytes);
        assert_eq!(store.object_meta(3, &sha).unwrap().unwrap().refcount, 2);
        assert!(store.object_meta(4, &sha).unwrap().is_none());
    }
}
