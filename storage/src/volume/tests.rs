//! Volumes against a real RocksDB in a temporary directory: appends, crashes mid-append,
//! damaged bytes and migration of data dirs written before volumes.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rocksdb::WriteBatch;

use crate::db::{Cf, Store};
use crate::keys;
use crate::object::{ObjectMeta, Sha256};
use crate::volume::{IndexChange, HEADER_LEN};

const GROUP: u32 = 3;

fn meta(size: usize) -> ObjectMeta {
    ObjectMeta {
        size: size as u64,
        content_type: "image/png".into(),
        width: 1,
        height: 1,
        refcount: 0,
        created_ms: 5,
    }
}

/// A store with default volumes in a new temporary directory (which it must not outlive).
fn empty_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn body(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

/// Stores `bytes` the way the state machine does: stage, write (which syncs the volume), then
/// publish the new location in memory.
fn put(store: &Store, bytes: &[u8]) -> Sha256 {
    let sha = Sha256::of(bytes);
    let mut batch = WriteBatch::default();
    let (outcome, stored) = store
        .stage_put_object(&mut batch, GROUP, &sha, &meta(bytes.len()), bytes)
        .unwrap();
    store.write_state(GROUP, batch, false).unwrap();
    if let Some(at) = stored {
        store
            .volumes(GROUP)
            .unwrap()
            .memory()
            .publish(&IndexChange::Stored {
                sha,
                at,
                content_type: outcome.meta.content_type,
            });
    }
    sha
}

/// Stores `count` distinct bodies, body `i` of `len(i)` bytes; returns each hash with its bytes.
fn put_bodies(store: &Store, count: u32, len: impl Fn(u32) -> usize) -> Vec<(Sha256, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let b = body(i, len(i));
            (put(store, &b), b)
        })
        .collect()
}

/// Drops one reference the way the state machine does.
fn unref(store: &Store, sha: &Sha256) {
    let mut batch = WriteBatch::default();
    let after = store
        .stage_reference(&mut batch, GROUP, sha, false)
        .unwrap();
    store.write_state(GROUP, batch, false).unwrap();
    if after.map(|m| m.refcount) == Some(0) {
        store
            .volumes(GROUP)
            .unwrap()
            .memory()
            .publish(&IndexChange::Deleted(*sha));
    }
}

/// The bytes the index in memory points to for `sha`, read through its file handle.
fn resident_bytes(store: &Store, sha: &Sha256) -> Option<Vec<u8>> {
    let found = store.resident_object(GROUP, sha)?;
    assert_eq!(found.content_type, "image/png");
    assert_eq!(found.size, found.slice.len);
    let mut read = vec![0u8; found.slice.len as usize];
    found
        .slice
        .file
        .read_exact_at(&mut read, found.slice.offset)
        .unwrap();
    Some(read)
}

fn volume_file(dir: &Path, id: u32) -> std::path::PathBuf {
    dir.join("volumes")
        .join(format!("g{GROUP}"))
        .join(format!("{id:08}.vol"))
}

#[test]
fn appended_objects_read_back_whole_and_as_file_slices() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_volume_size(dir.path(), 64 << 10).unwrap();
    let shas = put_bodies(&store, 20, |i| 10_000 + i as usize);
    // 64 KiB volumes: the twenty objects rolled over several files.
    assert!(volume_file(dir.path(), 3).exists());
    for (sha, b) in &shas {
        assert_eq!(store.object_bytes(GROUP, sha).unwrap().unwrap(), b[..]);
        let (m, slice) = store.object_slice(GROUP, sha).unwrap().unwrap();
        assert_eq!(m.size, b.len() as u64);
        let mut read = vec![0u8; slice.len as usize];
        slice.file.read_exact_at(&mut read, slice.offset).unwrap();
        assert_eq!(&read, b);
    }
    drop(store);
    let store = Store::open_with_volume_size(dir.path(), 64 << 10).unwrap();
    for (sha, b) in &shas {
        assert_eq!(store.object_bytes(GROUP, sha).unwrap().unwrap(), b[..]);
    }
}

#[test]
fn a_crash_mid_append_leaves_a_tail_that_reopening_drops() {
    let (dir, store) = empty_store();
    let kept = body(1, 5000);
    let sha = put(&store, &kept);
    let recorded = store.volumes(GROUP).unwrap().head();
    // A second object appended but never indexed (the process died before its batch), then
    // half a needle: what kill -9 during an apply can leave.
    let lost = body(2, 7000);
    store
        .volumes(GROUP)
        .unwrap()
        .append(&Sha256::of(&lost), &lost)
        .unwrap();
    let path = volume_file(dir.path(), recorded.active);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    file.write_all_at(&[0xab; 100], len).unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.volumes(GROUP).unwrap().head(), recorded);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), recorded.end);
    assert_eq!(store.object_bytes(GROUP, &sha).unwrap().unwrap(), kept[..]);
    assert!(store
        .object_meta(GROUP, &Sha256::of(&lost))
        .unwrap()
        .is_none());
    // Appends continue right after the last recorded needle.
    let next = put(&store, &lost);
    assert_eq!(
        store.object_location(GROUP, &next).unwrap().unwrap().offset,
        recorded.end + HEADER_LEN
    );
    assert_eq!(store.object_bytes(GROUP, &next).unwrap().unwrap(), lost[..]);
}

#[test]
fn needles_cut_off_while_the_node_was_down_await_repair_as_soon_as_it_opens() {
    let (dir, store) = empty_store();
    let objects = put_bodies(&store, 8, |_| 6_000);
    let cut_at = store
        .object_location(GROUP, &objects[5].0)
        .unwrap()
        .unwrap();
    let head = store.volumes(GROUP).unwrap().head();
    drop(store);
    // Truncated in the middle of object 5's body, as a damaged disk or a bad copy leaves it.
    let path = volume_file(dir.path(), head.active);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(cut_at.offset + 1_000).unwrap();
    drop(file);

    let store = Store::open(dir.path()).unwrap();
    let volumes = store.volumes(GROUP).unwrap();
    let mut awaiting = volumes.awaiting_repair();
    awaiting.sort();
    let mut lost: Vec<Sha256> = objects[5..].iter().map(|(sha, _)| *sha).collect();
    lost.sort();
    // Known before anything reads them: the repair loop can fetch them at once.
    assert_eq!(awaiting, lost);
    assert_eq!(volumes.corrupt_count(), 3);
    for (i, (sha, b)) in objects.iter().enumerate() {
        if i < 5 {
            let read = store.object_bytes(GROUP, sha).unwrap();
            assert!(read.is_some_and(|read| read[..] == b[..]), "object {i}");
        } else {
            assert!(store.resident_object(GROUP, sha).is_none());
            assert!(store.object_slice(GROUP, sha).unwrap().is_none());
            assert!(store.object_bytes(GROUP, sha).unwrap().is_none());
        }
    }
    // Until repaired, every start finds the cut again (a node may be restarted before its
    // repair loop is done).
    drop(volumes);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let volumes = store.volumes(GROUP).unwrap();
    let mut again = volumes.awaiting_repair();
    again.sort();
    assert_eq!(again, lost);
    // The cut volume is sealed as it is: repairs go to a new one, its offsets are never reused.
    for (sha, b) in &objects[5..] {
        store.repair_object(GROUP, sha, b.as_slice()).unwrap();
        let at = store.object_location(GROUP, sha).unwrap().unwrap();
        assert!(at.volume > head.active, "{at:?}");
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        cut_at.offset + 1_000
    );
    assert_eq!(volumes.corrupt_count(), 0);
    for (i, (sha, b)) in objects.iter().enumerate() {
        let read = store.object_bytes(GROUP, sha).unwrap();
        assert!(read.is_some_and(|read| read[..] == b[..]), "object {i}");
    }
}

#[test]
fn damaged_bytes_are_detected_never_served_and_rewritten_by_the_next_put() {
    let (dir, store) = empty_store();
    let b = body(9, 20_000);
    let sha = put(&store, &b);
    let at = store.object_location(GROUP, &sha).unwrap().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(volume_file(dir.path(), at.volume))
        .unwrap();
    file.write_all_at(&[b[100] ^ 0xff], at.offset + 100)
        .unwrap();

    assert!(store.object_bytes(GROUP, &sha).unwrap().is_none());
    assert!(store.object_slice(GROUP, &sha).unwrap().is_none());
    assert_eq!(store.volumes(GROUP).unwrap().corrupt_count(), 1);
    // The record survives; a later upload of the same bytes stores them again.
    assert!(store.needs_bytes(GROUP, &sha).unwrap());
    assert_eq!(put(&store, &b), sha);
    assert_eq!(store.object_meta(GROUP, &sha).unwrap().unwrap().refcount, 2);
    assert_eq!(store.object_bytes(GROUP, &sha).unwrap().unwrap(), b[..]);
    assert!(store.object_slice(GROUP, &sha).unwrap().is_some());
}

/// `sendfile` never looks at the bytes: a slice is offered only for a needle checked since
/// the store was opened, so damage made while the node was down is caught on the first read
/// (checked 1 MiB at a time: the damage here is past the first chunk).
#[test]
fn a_file_slice_is_offered_only_for_a_needle_found_intact_since_opening() {
    let (dir, store) = empty_store();
    let damaged = body(3, 3 << 20);
    let intact = body(4, 3 << 20);
    let (bad_sha, good_sha) = (put(&store, &damaged), put(&store, &intact));
    drop(store);
    let at = {
        let store = Store::open(dir.path()).unwrap();
        store.object_location(GROUP, &bad_sha).unwrap().unwrap()
    };
    let file = OpenOptions::new()
        .write(true)
        .open(volume_file(dir.path(), at.volume))
        .unwrap();
    let spot = (2 << 20) + 17;
    file.write_all_at(&[damaged[spot] ^ 0x01], at.offset + spot as u64)
        .unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert!(store.object_slice(GROUP, &bad_sha).unwrap().is_none());
    assert_eq!(store.volumes(GROUP).unwrap().corrupt_count(), 1);
    let (_, slice) = store.object_slice(GROUP, &good_sha).unwrap().unwrap();
    let mut read = vec![0u8; slice.len as usize];
    slice.file.read_exact_at(&mut read, slice.offset).unwrap();
    assert_eq!(read, intact);
}

#[test]
fn dropping_the_last_reference_deletes_the_object() {
    let (_dir, store) = empty_store();
    let sha = put(&store, &body(4, 3000));
    let mut batch = WriteBatch::default();
    let after = store
        .stage_reference(&mut batch, GROUP, &sha, false)
        .unwrap();
    store.write_state(GROUP, batch, false).unwrap();
    assert_eq!(after.map(|m| m.refcount), Some(0));
    assert!(store.object_meta(GROUP, &sha).unwrap().is_none());
    assert!(store.object_location(GROUP, &sha).unwrap().is_none());
}

#[test]
fn a_data_dir_written_with_blobs_migrates_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let objects: Vec<Vec<u8>> = (0..30).map(|i| body(i, 3_000_000)).collect();
    {
        // Today's data dir: records in `objects`, bytes in `blobs` (BlobDB).
        let store = Store::open(dir.path()).unwrap();
        let mut batch = WriteBatch::default();
        for b in &objects {
            let key = keys::object(GROUP, &Sha256::of(b).0);
            batch.put_cf(store.cf(Cf::Blobs), key, b);
            let m = ObjectMeta {
                refcount: 1,
                ..meta(b.len())
            };
            batch.put_cf(store.cf(Cf::Objects), key, bincode::serialize(&m).unwrap());
        }
        store.write(batch, true).unwrap();
        // Readable before migration, through the old column family.
        let first = Sha256::of(&objects[0]);
        assert_eq!(
            store.object_bytes(GROUP, &first).unwrap().unwrap(),
            objects[0]
        );
    }
    {
        // An interrupted migration: one step (64 MiB) done, then the process stops.
        let store = Store::open(dir.path()).unwrap();
        let volumes = store.volumes(GROUP).unwrap();
        let partial = super::migrate::migrate_steps(&store, &volumes, 1).unwrap();
        assert!(partial > 0 && partial < objects.len() as u64, "{partial}");
    }
    let store = Store::open(dir.path()).unwrap();
    let moved = store.migrate_blobs(GROUP).unwrap();
    assert!(moved > 0 && moved < objects.len() as u64, "{moved}");
    assert_eq!(store.migrate_blobs(GROUP).unwrap(), 0);
    for b in &objects {
        let sha = Sha256::of(b);
        assert!(store
            .get(Cf::Blobs, &keys::object(GROUP, &sha.0))
            .unwrap()
            .is_none());
        assert!(store.object_location(GROUP, &sha).unwrap().is_some());
        assert_eq!(store.object_bytes(GROUP, &sha).unwrap().unwrap(), b[..]);
        assert!(resident_bytes(&store, &sha).as_ref() == Some(b));
    }
}

/// Also checks that the index in memory follows puts, deletes, compaction and reopening.
#[test]
fn compaction_reclaims_dropped_objects_and_keeps_reads_correct() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_volume_size(dir.path(), 256 << 10).unwrap();
    let objects = put_bodies(&store, 40, |_| 20_000);
    let volume_bytes = |store: &Store| -> u64 {
        store
            .volumes(GROUP)
            .unwrap()
            .files()
            .values()
            .map(|f| f.metadata().unwrap().len())
            .sum()
    };
    let before = volume_bytes(&store);
    for (sha, b) in &objects {
        assert!(resident_bytes(&store, sha).as_ref() == Some(b));
        // A hash sharing the in-memory key (its first 8 bytes) is not taken for the object.
        let mut sibling = *sha;
        sibling.0[31] ^= 1;
        assert!(store.resident_object(GROUP, &sibling).is_none());
    }
    // Drop three objects of every four.
    for (i, (sha, _)) in objects.iter().enumerate() {
        if i % 4 != 0 {
            unref(&store, sha);
        }
    }
    // A reader holding a slice from before keeps reading the old file after it is deleted.
    let (_, held) = store.object_slice(GROUP, &objects[0].0).unwrap().unwrap();
    let resident = store.resident_object(GROUP, &objects[0].0).unwrap();
    let done = store
        .compact_volumes(GROUP, super::GARBAGE_RATIO, u64::MAX)
        .unwrap();
    assert!(done.volumes >= 2, "{done:?}");
    let after = volume_bytes(&store);
    assert!(after < before / 2, "{before} -> {after}");
    assert_eq!(before - after, done.reclaimed_bytes);
    for slice in [held, resident.slice] {
        let mut read = vec![0u8; slice.len as usize];
        slice.file.read_exact_at(&mut read, slice.offset).unwrap();
        assert!(read == objects[0].1);
    }
    let in_memory = |store: &Store| {
        for (i, (sha, b)) in objects.iter().enumerate() {
            let found = resident_bytes(store, sha);
            assert!(
                found.as_ref() == Some(b).filter(|_| i % 4 == 0),
                "object {i}"
            );
        }
        assert_eq!(store.volumes(GROUP).unwrap().memory().len(), 10);
    };
    in_memory(&store);
    for (i, (sha, b)) in objects.iter().enumerate() {
        let found = store.object_bytes(GROUP, sha).unwrap();
        if i % 4 == 0 {
            assert_eq!(found.unwrap(), b[..]);
        } else {
            assert!(found.is_none());
        }
    }
    // Nothing left to do; the compacted state survives a reopen.
    assert_eq!(
        store
            .compact_volumes(GROUP, super::GARBAGE_RATIO, u64::MAX)
            .unwrap()
            .volumes,
        0
    );
    drop(store);
    let store = Store::open_with_volume_size(dir.path(), 256 << 10).unwrap();
    // The index in memory is loaded from RocksDB when the group's volumes are opened (the
    // state machine opens them at start-up).
    assert!(store.resident_object(GROUP, &objects[0].0).is_none());
    for (sha, b) in objects.iter().step_by(4) {
        assert_eq!(store.object_bytes(GROUP, sha).unwrap().unwrap(), b[..]);
    }
    in_memory(&store);
}

#[test]
fn scrub_finds_damaged_and_truncated_needles_and_repair_rewrites_them() {
    let (dir, store) = empty_store();
    let objects = put_bodies(&store, 10, |_| 8_000);
    let (flipped, _) = &objects[3];
    let at = store.object_location(GROUP, flipped).unwrap().unwrap();
    let path = volume_file(dir.path(), at.volume);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 3], at.offset + 10).unwrap();
    // The last object loses its tail, as if the file were truncated.
    let (cut, _) = &objects[9];
    let last = store.object_location(GROUP, cut).unwrap().unwrap();
    file.set_len(last.offset + 100).unwrap();

    let mut damaged = Vec::new();
    let mut from = None;
    let mut slices = 0;
    loop {
        let slice = store.scrub_slice(GROUP, from, 20_000).unwrap();
        damaged.extend(slice.damaged);
        slices += 1;
        match slice.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert!(slices >= 3, "{slices}");
    damaged.sort();
    let mut expected = vec![*flipped, *cut];
    expected.sort();
    assert_eq!(damaged, expected);
    for (sha, b) in &objects {
        let served = store.object_bytes(GROUP, sha).unwrap();
        assert_eq!(served.is_some(), !expected.contains(sha));
        if expected.contains(sha) {
            assert!(store.object_slice(GROUP, sha).unwrap().is_none());
            assert!(store.repair_object(GROUP, sha, b.as_slice()).is_ok());
        }
    }
    assert!(store
        .repair_object(GROUP, &objects[0].0, b"not it")
        .is_err());
    for (sha, b) in &objects {
        assert_eq!(store.object_bytes(GROUP, sha).unwrap().unwrap(), b[..]);
    }
    assert_eq!(store.volumes(GROUP).unwrap().corrupt_count(), 0);
    let clean = store.scrub_slice(GROUP, None, u64::MAX).unwrap();
    assert!(clean.damaged.is_empty());
}

#[test]
fn volumes_that_unpurged_log_stubs_point_into_stay_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_volume_size(dir.path(), 64 << 10).unwrap();
    let objects: Vec<Sha256> = (0..12).map(|i| put(&store, &body(i, 20_000))).collect();
    let first = store.object_location(GROUP, &objects[0]).unwrap().unwrap();
    let volumes = store.volumes(GROUP).unwrap();
    // Log entry 40 was rewritten as a stub pointing into the first volume.
    volumes.note_stub(first.volume, 40);
    let mut batch = WriteBatch::default();
    store.stage_volume_head(&mut batch, &volumes).unwrap();
    store.write_state(GROUP, batch, false).unwrap();
    for sha in &objects {
        let mut batch = WriteBatch::default();
        store
            .stage_reference(&mut batch, GROUP, sha, false)
            .unwrap();
        store.write_state(GROUP, batch, false).unwrap();
    }
    drop((volumes, store));
    // The mark survives a restart.
    let store = Store::open_with_volume_size(dir.path(), 64 << 10).unwrap();
    store
        .compact_volumes(GROUP, super::GARBAGE_RATIO, 39)
        .unwrap();
    assert!(store.volumes(GROUP).unwrap().file(first.volume).is_some());
    store
        .compact_volumes(GROUP, super::GARBAGE_RATIO, 40)
        .unwrap();
    assert!(store.volumes(GROUP).unwrap().file(first.volume).is_none());
}

#[test]
fn damaged_bytes_leave_the_index_in_memory_until_repaired() {
    let (dir, store) = empty_store();
    let b = body(11, 9_000);
    let sha = put(&store, &b);
    assert!(store.resident_object(GROUP, &sha).is_some());
    let at = store.object_location(GROUP, &sha).unwrap().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(volume_file(dir.path(), at.volume))
        .unwrap();
    file.write_all_at(&[b[10] ^ 0xff], at.offset + 10).unwrap();
    let slice = store.scrub_slice(GROUP, None, u64::MAX).unwrap();
    assert_eq!(slice.damaged, vec![sha]);
    assert!(store.resident_object(GROUP, &sha).is_none());
    assert!(store.repair_object(GROUP, &sha, &b).unwrap());
    assert!(resident_bytes(&store, &sha) == Some(b));
}

/// A small object comes from memory with its body, checked on every read: bytes damaged after
/// an earlier read are not served (the caller falls back to the path that marks them). A large
/// one comes as a file slice for `sendfile`.
#[test]
fn small_objects_are_read_whole_and_checked_on_every_read() {
    use crate::volume::memory_index::INLINE_MAX;
    let (dir, store) = empty_store();
    let small = body(21, 2_048);
    let large = body(22, INLINE_MAX as usize + 1);
    let (small_sha, large_sha) = (put(&store, &small), put(&store, &large));
    let found = store.resident_object(GROUP, &small_sha).unwrap();
    assert_eq!(found.body.as_deref(), Some(&small[..]));
    let found = store.resident_object(GROUP, &large_sha).unwrap();
    assert!(found.body.is_none());
    assert_eq!(found.slice.len, large.len() as u64);

    let at = store.object_location(GROUP, &small_sha).unwrap().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(volume_file(dir.path(), at.volume))
        .unwrap();
    file.write_all_at(&[small[100] ^ 0x01], at.offset + 100)
        .unwrap();
    assert!(store.resident_object(GROUP, &small_sha).is_none());
    assert!(store.object_bytes(GROUP, &small_sha).unwrap().is_none());
}
