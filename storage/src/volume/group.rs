//! One group's volume files: the append point, the open files readers share, and crash
//! recovery of the tail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::object::Sha256;
use crate::volume::location::Location;
use crate::volume::memory_index::MemoryIndex;
use crate::volume::needle::{self, NeedleFault, HEADER_LEN};

/// The durable description of a group's volumes, written in every batch that records new
/// needles — the log append that wrote an upload's needle, a state batch that indexes one —
/// and so recovered as a prefix together with the log and the index after a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeHead {
    /// Volume ids below this were created by recorded writes; files at or above it are leftovers
    /// of writes that never reached the index and are deleted when the group is opened.
    pub next_id: u32,
    /// The volume new needles are appended to (0: none yet).
    pub active: u32,
    /// Bytes of `active` covered by recorded writes: anything after it is a torn or unindexed
    /// tail and is truncated when the group is opened.
    pub end: u64,
}

/// A group's volume files. Appends come from the group's log store (uploads, as their entries
/// are appended) and its state machine (snapshot installs, repairs, entries logged before
/// uploads were written at append), one at a time under [`GroupVolumes::writer`]; readers take
/// `Arc<File>` handles, which stay valid even after compaction deletes a file.
pub struct GroupVolumes {
    group: u32,
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
    /// Held while a batch that records the head is staged and written (log append, apply,
    /// compaction's swap) and while a snapshot takes its view, so the recorded head only moves
    /// forward and never covers needles not yet synced.
    writer: Mutex<()>,
    /// Objects whose local bytes at a location failed their checksum: never served from there.
    /// A rewrite gives the object a new location, which is trusted again.
    corrupt: Mutex<HashMap<Sha256, Location>>,
    /// Objects recorded here without any local bytes (an upload replicated from a leader that
    /// had lost its copy, an object left out of a received snapshot): read from other
    /// replicas, and fetched from them by the repair loop.
    missing: Mutex<HashSet<Sha256>>,
    /// The index in memory, for readers on async threads (see `memory_index.rs`). Its files
    /// follow `Inner::files`; its entries are published by whoever writes the index batch.
    memory: Arc<MemoryIndex>,
    /// Needles whose checksum this process has checked (`volume << 32 | offset`; a volume
    /// never reaches 4 GiB): only those are sent with `sendfile`, which does not look at the
    /// bytes, so damage from before a restart is never served. 8 bytes and a control byte per
    /// object read since start-up.
    verified: Mutex<HashSet<u64>>,
}

/// Turns the kernel's readahead off for `file`: a volume is read one needle at a time in no
/// order (a GET, a scrub walking the index by hash), so reading ahead only fetches pages no one
/// asked for — with 1 M small objects the readahead of the fast path's header reads issued
/// disk reads for 3 % of the node's CPU (`bench/scale.sh`, perf). `sendfile` and `pread`
/// still read the whole range they are asked for at once. Advice only: a failure changes
/// nothing but speed.
fn random_access(file: File) -> File {
    // SAFETY: posix_fadvise(2) only reads its arguments; `file` is an open descriptor.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    file
}

fn verified_key(at: &Location) -> u64 {
    (u64::from(at.volume) << 32) | (at.offset & 0xffff_ffff)
}

struct Inner {
    files: BTreeMap<u32, Arc<File>>,
    head: VolumeHead,
    /// Per volume, the highest Raft log index whose entry was rewritten as a stub pointing into
    /// it (see [`GroupVolumes::note_stub`]): the volume must keep its needles in place until the
    /// log is purged past that index.
    stubs: BTreeMap<u32, u64>,
    /// Whether the active volume has appends not yet fdatasynced.
    unsynced: bool,
    /// Needles appended ahead of the batch that will index them (see `append_pending`).
    pending: HashMap<Sha256, Location>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn file_name(id: u32) -> String {
    format!("{id:08}.vol")
}

fn parse_name(name: &str) -> Option<u32> {
    name.strip_suffix(".vol")?.parse().ok()
}

/// fsyncs a directory so that file creations and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl GroupVolumes {
    /// Opens `dir` as recorded by `head`: deletes volumes newer than the head, truncates the
    /// active volume to the recorded end (dropping a torn tail) — or, found shorter than that,
    /// seals it as it is — and opens the rest.
    pub fn open(
        dir: PathBuf,
        group: u32,
        mut head: VolumeHead,
        mut stubs: BTreeMap<u32, u64>,
        max_bytes: u64,
    ) -> Result<GroupVolumes, StorageError> {
        std::fs::create_dir_all(&dir)?;
        let mut files = BTreeMap::new();
        let mut changed = false;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            if id >= head.next_id.max(1) {
                tracing::warn!(
                    group,
                    volume = id,
                    "deleting a volume no recorded write uses"
                );
                std::fs::remove_file(entry.path())?;
                changed = true;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())?;
            files.insert(id, Arc::new(random_access(file)));
        }
        if head.active != 0 {
            let file = match files.get(&head.active) {
                Some(file) => file.clone(),
                None => {
                    tracing::warn!(group, volume = head.active, "active volume missing");
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(dir.join(file_name(head.active)))?;
                    changed = true;
                    let file = Arc::new(random_access(file));
                    files.insert(head.active, file.clone());
                    file
                }
            };
            let len = file.metadata()?.len();
            if len < head.end {
                // Recorded needles are gone. The file stays as it is, sealed, and new needles
                // go to a new volume: their offsets are never reused, and every later opening
                // still finds the cut (`file_lengths`) until the repair loop has rewritten
                // what it held elsewhere. (Extending it back with zeros, as first written, hid
                // the cut from the next restart: seed 309 lost two objects when a node was
                // restarted twice before its repair of 1 183 cut needles had finished.)
                tracing::warn!(
                    group,
                    volume = head.active,
                    len,
                    end = head.end,
                    "active volume shorter than recorded: sealed, new needles go to a new volume"
                );
                head.active = 0;
                head.end = 0;
            } else if len > head.end {
                tracing::info!(
                    group,
                    volume = head.active,
                    dropped = len - head.end,
                    "dropping an unrecorded volume tail"
                );
                file.set_len(head.end)?;
                file.sync_all()?;
            }
        }
        if changed {
            sync_dir(&dir)?;
        }
        stubs.retain(|id, _| files.contains_key(id));
        let memory = Arc::new(MemoryIndex::default());
        for (id, file) in &files {
            memory.add_file(*id, file.clone());
        }
        Ok(GroupVolumes {
            group,
            dir,
            max_bytes,
            inner: Mutex::new(Inner {
                files,
                head,
                stubs,
                unsynced: false,
                pending: HashMap::new(),
            }),
            writer: Mutex::new(()),
            corrupt: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashSet::new()),
            memory,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Per open volume, its length: a needle recorded past it lost its bytes while the node
    /// was down (see [`GroupVolumes::mark_truncated`]).
    pub(crate) fn file_lengths(&self) -> Result<HashMap<u32, u64>, StorageError> {
        self.files()
            .into_iter()
            .map(|(id, file)| Ok((id, file.metadata()?.len())))
            .collect()
    }

    /// Marks needles whose bytes were cut off (found when the index is loaded) as damaged, so
    /// that the repair loop fetches them from other replicas within seconds instead of the
    /// next read or the daily scrub finding them one by one. A campaign lost an acknowledged
    /// object that way: three replicas' volumes truncated minutes apart, each cut unnoticed
    /// until the next one (seed 306). Logged once per group, counted per needle.
    pub(crate) fn mark_truncated(&self, cut: Vec<(Sha256, Location)>) {
        if cut.is_empty() {
            return;
        }
        tracing::warn!(
            group = self.group,
            objects = cut.len(),
            "volume shorter than its index: objects past its end are fetched from other replicas"
        );
        metrics::counter!("tessera_scrub_corrupt_total").increment(cut.len() as u64);
        let mut corrupt = lock(&self.corrupt);
        for (sha, at) in cut {
            corrupt.insert(sha, at);
        }
    }

    /// The group's index in memory.
    pub fn memory(&self) -> &Arc<MemoryIndex> {
        &self.memory
    }

    pub fn group(&self) -> u32 {
        self.group
    }

    /// Serialises writers of the recorded head (see the field's doc).
    pub fn writer(&self) -> MutexGuard<'_, ()> {
        lock(&self.writer)
    }

    pub fn head(&self) -> VolumeHead {
        lock(&self.inner).head
    }

    /// Records that log entry `index` now points to a needle in `volume` instead of carrying its
    /// bytes. Stage [`GroupVolumes::stubs`] in the same batch as the stub.
    pub fn note_stub(&self, volume: u32, index: u64) {
        let mut inner = lock(&self.inner);
        let highest = inner.stubs.entry(volume).or_insert(0);
        *highest = (*highest).max(index);
    }

    /// Per volume, the highest log index of a stub pointing into it.
    pub fn stubs(&self) -> BTreeMap<u32, u64> {
        lock(&self.inner).stubs.clone()
    }

    /// Whether log entries up to `purged` are all that point into volume `id`, so that its
    /// needles may move.
    pub fn movable(&self, id: u32, purged: u64) -> bool {
        lock(&self.inner)
            .stubs
            .get(&id)
            .is_none_or(|highest| *highest <= purged)
    }

    /// Appends a needle to the active volume, rolling to a new volume when it is full. Not
    /// synced: call [`GroupVolumes::sync`] before writing the batch that indexes it.
    pub fn append(&self, sha: &Sha256, body: &[u8]) -> Result<Location, StorageError> {
        let mut inner = lock(&self.inner);
        let size = HEADER_LEN + body.len() as u64;
        if inner.head.active == 0 || (inner.head.end > 0 && inner.head.end + size > self.max_bytes)
        {
            self.roll(&mut inner)?;
        }
        let id = inner.head.active;
        let start = inner.head.end;
        let file = inner
            .files
            .get(&id)
            .cloned()
            .ok_or_else(|| StorageError::Corrupt(format!("active volume {id} not open")))?;
        file.write_all_at(&needle::encode_header(sha, body), start)?;
        file.write_all_at(body, start + HEADER_LEN)?;
        inner.head.end = start + size;
        inner.unsynced = true;
        drop(inner);
        let at = Location {
            volume: id,
            offset: start + HEADER_LEN,
            len: body.len() as u64,
        };
        // Bytes this process wrote count as checked (see `verified`); damage after this is the
        // scrub's to find.
        self.note_verified(&at);
        Ok(at)
    }

    /// Appends `body` now for a batch staged later in the same apply call, so that one fdatasync
    /// covers every needle of the call. [`GroupVolumes::take_pending`] hands the location over.
    pub fn append_pending(&self, sha: &Sha256, body: &[u8]) -> Result<(), StorageError> {
        if lock(&self.inner).pending.contains_key(sha) {
            return Ok(());
        }
        let location = self.append(sha, body)?;
        lock(&self.inner).pending.insert(*sha, location);
        Ok(())
    }

    pub fn take_pending(&self, sha: &Sha256) -> Option<Location> {
        lock(&self.inner).pending.remove(sha)
    }

    fn roll(&self, inner: &mut Inner) -> Result<(), StorageError> {
        if inner.unsynced {
            if let Some(file) = inner.files.get(&inner.head.active) {
                file.sync_data()?;
            }
            inner.unsynced = false;
        }
        let id = inner.head.next_id.max(1);
        let file = Arc::new(self.create(id)?);
        self.memory.add_file(id, file.clone());
        inner.files.insert(id, file);
        inner.head = VolumeHead {
            next_id: id + 1,
            active: id,
            end: 0,
        };
        Ok(())
    }

    fn create(&self, id: u32) -> Result<File, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(file_name(id)))?;
        sync_dir(&self.dir)?;
        Ok(random_access(file))
    }

    /// fdatasyncs the active volume if it has unsynced appends. Called before any batch that
    /// indexes new needles is written: an index entry must never become durable before the
    /// bytes it points to (RocksDB's WAL may be synced at any time by another group's log
    /// append, so ordering by `sync = false` alone is not enough).
    pub fn sync(&self) -> Result<(), StorageError> {
        let file = {
            let inner = lock(&self.inner);
            if !inner.unsynced {
                return Ok(());
            }
            inner.files.get(&inner.head.active).cloned()
        };
        if let Some(file) = file {
            file.sync_data()?;
        }
        lock(&self.inner).unsynced = false;
        Ok(())
    }

    /// The open file of volume `id`, if it still exists.
    pub fn file(&self, id: u32) -> Option<Arc<File>> {
        lock(&self.inner).files.get(&id).cloned()
    }

    /// Every open volume: a consistent view for a snapshot (take it under [`Self::writer`]).
    pub fn files(&self) -> BTreeMap<u32, Arc<File>> {
        lock(&self.inner).files.clone()
    }

    /// Reads and checks the needle at `at`; the body if intact.
    /// Marks `sha`'s bytes at `at` as damaged (logged and counted once per damaged needle).
    pub fn mark_corrupt(&self, sha: &Sha256, at: Location, fault: NeedleFault) {
        self.memory.remove_at(sha, &at);
        if lock(&self.corrupt).insert(*sha, at) != Some(at) {
            tracing::warn!(group = self.group, %sha, volume = at.volume, offset = at.offset, %fault, "object bytes failed their checksum; not serving them");
            metrics::counter!("tessera_scrub_corrupt_total").increment(1);
        }
    }

    pub fn is_corrupt(&self, sha: &Sha256, at: &Location) -> bool {
        lock(&self.corrupt).get(sha) == Some(at)
    }

    /// Whether this process has checked the needle at `at` and found it intact.
    pub fn is_verified(&self, at: &Location) -> bool {
        lock(&self.verified).contains(&verified_key(at))
    }

    /// Whether the needle at `at` holds `sha`'s bytes intact: read through and checked against
    /// its checksum (a needle damaged since it was written, or of another object, is not).
    pub fn holds(&self, sha: &Sha256, at: &Location) -> Result<bool, StorageError> {
        let Some(file) = self.file(at.volume) else {
            return Ok(false);
        };
        let intact = check_needle(&file, at, sha)?.is_ok();
        if intact {
            self.note_verified(at);
        }
        Ok(intact)
    }

    /// Records that the needle at `at` passed its checksum.
    pub fn note_verified(&self, at: &Location) {
        lock(&self.verified).insert(verified_key(at));
    }

    /// Forgets a damaged or missing needle once the object has been written again.
    pub fn repaired(&self, sha: &Sha256) {
        lock(&self.corrupt).remove(sha);
        lock(&self.missing).remove(sha);
    }

    /// Records that `sha` has a record here but no local bytes at all.
    pub fn mark_missing(&self, sha: &Sha256) {
        if lock(&self.missing).insert(*sha) {
            tracing::warn!(group = self.group, %sha, "object recorded without local bytes; fetching them from another replica");
        }
    }

    /// Replaces the set of objects without local bytes (found by a pass over the index).
    pub(crate) fn set_missing(&self, missing: HashSet<Sha256>) {
        *lock(&self.missing) = missing;
    }

    /// How many objects are currently known damaged or missing here.
    pub fn corrupt_count(&self) -> usize {
        lock(&self.corrupt).len() + lock(&self.missing).len()
    }

    /// The objects whose local bytes are damaged or missing: what the repair loop fetches.
    pub fn awaiting_repair(&self) -> Vec<Sha256> {
        let mut shas: Vec<Sha256> = lock(&self.corrupt).keys().copied().collect();
        shas.extend(lock(&self.missing).iter().copied());
        shas
    }

    /// Deletes every volume (a snapshot install replaces the group's state). Ids keep growing,
    /// so a file of the old state is never mistaken for a new one.
    pub fn reset(&self) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        self.memory.clear();
        for id in inner.files.keys() {
            std::fs::remove_file(self.dir.join(file_name(*id)))?;
        }
        sync_dir(&self.dir)?;
        inner.files.clear();
        inner.stubs.clear();
        inner.pending.clear();
        inner.unsynced = false;
        inner.head = VolumeHead {
            next_id: inner.head.next_id.max(1),
            active: 0,
            end: 0,
        };
        lock(&self.corrupt).clear();
        lock(&self.missing).clear();
        lock(&self.verified).clear();
        Ok(())
    }

    /// Reserves a fresh volume id for a compaction output and creates its file.
    pub fn create_sealed(&self) -> Result<(u32, File), StorageError> {
        let mut inner = lock(&self.inner);
        let id = inner.head.next_id.max(1);
        inner.head.next_id = id + 1;
        Ok((id, self.create(id)?))
    }

    /// Publishes a finished compaction output and forgets the volume it replaces; `moved` are
    /// the needles whose index entries the (written) batch re-pointed into it. The index in
    /// memory learns the new file before its entries point there, and forgets the old file
    /// only after they moved, so a reader finds one or the other.
    pub fn swap(
        &self,
        new_id: u32,
        new: File,
        old_id: u32,
        moved: &[(Sha256, Location, Location)],
    ) {
        let mut inner = lock(&self.inner);
        let new = Arc::new(new);
        self.memory.add_file(new_id, new.clone());
        for (sha, from, to) in moved {
            self.memory.moved(sha, from, to);
        }
        self.memory.remove_file(old_id);
        inner.files.insert(new_id, new);
        inner.files.remove(&old_id);
        inner.stubs.remove(&old_id);
    }

    /// Deletes a volume file nothing points to any more.
    pub fn delete(&self, id: u32) -> Result<(), StorageError> {
        {
            let mut inner = lock(&self.inner);
            self.memory.remove_file(id);
            inner.files.remove(&id);
            inner.stubs.remove(&id);
        }
        lock(&self.verified).retain(|key| key >> 32 != u64::from(id));
        match std::fs::remove_file(self.dir.join(file_name(id))) {
            // Already gone with the rest of the group's volumes (snapshot install).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
        sync_dir(&self.dir)?;
        Ok(())
    }
}

/// Checks the needle whose body is at `at` against `sha` without keeping it: read and summed
/// 1 MiB at a time, so checking a large object costs no memory.
pub fn check_needle(
    file: &File,
    at: &Location,
    sha: &Sha256,
) -> Result<Result<(), NeedleFault>, StorageError> {
    let Some(start) = at.offset.checked_sub(HEADER_LEN) else {
        return Ok(Err(NeedleFault::Header));
    };
    let mut head = [0u8; HEADER_LEN as usize];
    let mut chunk = vec![0u8; (1 << 20).min(at.len) as usize];
    let read = |buf: &mut [u8], from: u64| match file.read_exact_at(buf, from) {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Err(NeedleFault::Truncated)),
        Err(e) => Err(StorageError::from(e)),
    };
    if let Err(fault) = read(&mut head, start)? {
        return Ok(Err(fault));
    }
    let mut sum = match needle::Checksum::start(&head, sha, at.len) {
        Ok(sum) => sum,
        Err(fault) => return Ok(Err(fault)),
    };
    let mut done = 0;
    while done < at.len {
        let n = chunk.len().min((at.len - done) as usize);
        if let Err(fault) = read(&mut chunk[..n], at.offset + done)? {
            return Ok(Err(fault));
        }
        sum.update(&chunk[..n]);
        done += n as u64;
    }
    Ok(sum.finish())
}

/// Reads the needle whose body is at `at` and checks it against `sha`.
pub fn read_needle(
    file: &File,
    at: &Location,
    sha: &Sha256,
) -> Result<Result<Vec<u8>, NeedleFault>, StorageError> {
    let Some(start) = at.offset.checked_sub(HEADER_LEN) else {
        return Ok(Err(NeedleFault::Header));
    };
    let mut buf = vec![0u8; (HEADER_LEN + at.len) as usize];
    match file.read_exact_at(&mut buf, start) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Err(NeedleFault::Truncated))
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(fault) = needle::verify(&buf, sha, at.len) {
        return Ok(Err(fault));
    }
    buf.drain(..HEADER_LEN as usize);
    Ok(Ok(buf))
}
