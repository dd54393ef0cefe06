//! Free space on the node's disk: writes are refused well before it runs out.
//!
//! openraft treats every storage error as fatal: a log append, vote or apply that fails with
//! ENOSPC stops the group's Raft for good, and RocksDB itself must not meet ENOSPC either
//! (Debian's librocksdb is built with assertions: a write after a failed one aborts the
//! process). So the node stays clear of a full disk, in two steps:
//!
//! * below [`LOW_BYTES`] free it refuses new writes from clients (`Cluster::propose`: 507
//!   `disk_full`), so nothing new is committed through it or led by it;
//! * below [`FLOOR_BYTES`] (plus the entries' size) it also refuses new Raft entries and
//!   snapshots from leaders (`take`, the internal RPC): the leader retries later. Between
//!   the two it keeps following what the others commit (the catalogue, so token checks and
//!   reads stay current).
//!
//! Our own files (volume appends) that meet ENOSPC anyway wait for space
//! ([`DiskSpace::retry`]) instead of failing the apply. A **reserve** file (`space-reserve`
//! in the database directory, [`RESERVE_BYTES`], allocated with `posix_fallocate`) holds
//! space back: it is deleted as soon as free space is low or an append meets ENOSPC, so that
//! something else filling the disk leaves the node room to finish what is under way and to
//! restart (RocksDB writes a new WAL, manifest and options file when it opens; a new WAL
//! takes up to [`crate::db::WAL_PREALLOCATION_BYTES`] at once), and allocated again once free
//! space is back above `LOW_BYTES + RESERVE_BYTES`, when writes resume.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::StorageError;

/// Below this much free space the node refuses writes from clients: room above the floor for
/// a new WAL's preallocation, so that following what the others commit does not cross it.
pub const LOW_BYTES: u64 = 128 << 20;
/// Below this much free space (after the entries) the node refuses Raft entries from leaders:
/// room for what RocksDB may still write at once, a new WAL's preallocation and a memtable
/// flush ([`crate::db::WAL_PREALLOCATION_BYTES`] each), with a margin.
pub const FLOOR_BYTES: u64 = 80 << 20;
/// The reserve held back for writes that must not fail: a new WAL's preallocation and the
/// files RocksDB writes when it opens, with room to spare above [`FLOOR_BYTES`].
pub const RESERVE_BYTES: u64 = 64 << 20;
/// How long a write that met a full disk waits before trying again.
const RETRY_EVERY: Duration = Duration::from_millis(250);
const RESERVE_FILE: &str = "space-reserve";
/// How a database moved aside because it was damaged is named, beside the database directory
/// (`<data>/db.damaged-<unix ms>`, `tessera_raft::rejoin`): kept for the operator, and the
/// first thing given back when space is low.
pub const QUARANTINE_PREFIX: &str = "db.damaged-";

/// The free space of the file system holding one node's database.
pub struct DiskSpace {
    dir: PathBuf,
    low: AtomicBool,
    free: AtomicU64,
    /// Bytes of Raft entries accepted since the last check, not yet seen by `statvfs`.
    taken: AtomicU64,
}

impl DiskSpace {
    /// Looks at the free space of `dir` (the database directory) once, releasing the reserve
    /// if it is low: called before RocksDB opens, which needs room for new files.
    pub fn open(dir: &Path) -> DiskSpace {
        let space = DiskSpace {
            dir: dir.to_path_buf(),
            low: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            taken: AtomicU64::new(0),
        };
        space.check();
        space
    }

    /// Whether writes are refused (free space below [`LOW_BYTES`], or not yet back above it
    /// with the reserve allocated again).
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of room if they leave [`FLOOR_BYTES`] plus `headroom` free, counting what
    /// was taken since the last check (a burst of entries between two checks must not cross
    /// the floor either).
    pub fn take(&self, bytes: u64, headroom: u64) -> bool {
        let free = self.free_bytes();
        let keep = FLOOR_BYTES.saturating_add(headroom);
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                let after = taken.saturating_add(bytes);
                (free >= keep.saturating_add(after)).then_some(after)
            })
            .is_ok()
    }

    /// Free bytes at the last check.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Measures free space (`statvfs`, one system call) and updates [`DiskSpace::is_low`],
    /// releasing or re-allocating the reserve. Blocking; called every 250 ms by the node.
    pub fn check(&self) {
        let Some(free) = free_bytes(&self.dir) else {
            return;
        };
        self.free.store(free, Ordering::Relaxed);
        self.taken.store(0, Ordering::Relaxed);
        let reserve = self.dir.join(RESERVE_FILE);
        let held = reserve.exists();
        let was_low = self.is_low();
        let low = if free < LOW_BYTES {
            if held {
                self.release_reserve();
            }
            // Once per low spell: copies are only made by a quarantine, before a new start.
            if !was_low {
                self.delete_quarantined();
            }
            true
        } else if !held {
            if free >= LOW_BYTES + RESERVE_BYTES {
                !allocate(&reserve)
            } else {
                true
            }
        } else {
            false
        };
        self.low.store(low, Ordering::Relaxed);
        match (was_low, low) {
            (false, true) => {
                tracing::warn!(free_mib = free >> 20, "disk almost full: refusing writes");
                metrics::gauge!("tessera_disk_full").set(1.0);
            }
            (true, false) => {
                tracing::info!(
                    free_mib = free >> 20,
                    "disk space is back: accepting writes"
                );
                metrics::gauge!("tessera_disk_full").set(0.0);
            }
            _ => {}
        }
    }

    /// Deletes the damaged databases kept aside beside this one: a node rebuilding its replicas
    /// after a quarantine needs the room more than the operator needs the old copy (a campaign
    /// saw three copies fill a disk, and the rebuild stall on refused snapshots).
    fn delete_quarantined(&self) {
        let Some(data) = self.dir.parent() else {
            return;
        };
        for aside in quarantined(data) {
            match std::fs::remove_dir_all(&aside) {
                Ok(()) => tracing::warn!(
                    path = %aside.display(),
                    "disk almost full: deleted a damaged database kept aside"
                ),
                Err(e) => tracing::warn!(
                    path = %aside.display(),
                    error = %e,
                    "could not delete a damaged database kept aside"
                ),
            }
        }
    }

    /// Deletes the reserve, giving its space to the writes that are under way.
    pub fn release_reserve(&self) {
        let reserve = self.dir.join(RESERVE_FILE);
        match std::fs::remove_file(&reserve) {
            Ok(()) => {
                self.low.store(true, Ordering::Relaxed);
                tracing::warn!("disk full: released the space reserve");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not release the space reserve"),
        }
    }

    /// Runs `op` until it does not fail for lack of space: on ENOSPC the reserve is released
    /// and `op` tried again every 250 ms. Only for operations on our own files that are safe
    /// to repeat after a failure (an append at a position not yet recorded), never for
    /// RocksDB writes (see the module doc). Blocking.
    pub fn retry<T>(
        &self,
        mut op: impl FnMut() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut waited = false;
        loop {
            match op() {
                Err(e) if e.is_no_space() => {
                    if !waited {
                        tracing::warn!(error = %e, "disk full: waiting for space to finish a write");
                        metrics::counter!("tessera_disk_full_waits_total").increment(1);
                        waited = true;
                    }
                    self.release_reserve();
                    std::thread::sleep(RETRY_EVERY);
                }
                other => return other,
            }
        }
    }
}

/// A writer for a large file of our own (a snapshot being built) that fails with ENOSPC before
/// a write would leave less than [`FLOOR_BYTES`] plus a headroom free, instead of filling the
/// disk: RocksDB, writing beside it, must never meet a full disk. Used with
/// [`DiskSpace::retry`], which waits until there is room and starts the file over.
pub struct Guarded<'a, W> {
    space: &'a DiskSpace,
    headroom: u64,
    inner: W,
}

impl<'a, W> Guarded<'a, W> {
    pub fn new(space: &'a DiskSpace, headroom: u64, inner: W) -> Guarded<'a, W> {
        Guarded {
            space,
            headroom,
            inner,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Guarded<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.space.take(buf.len() as u64, self.headroom) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Free bytes for unprivileged users on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid C string and `stat` a plain struct the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// The damaged databases kept aside in the data directory `data`.
pub fn quarantined(data: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .as_bytes()
                .starts_with(QUARANTINE_PREFIX.as_bytes())
        })
        .map(|e| e.path())
        .collect()
}

/// Allocates the reserve file; whether it now holds its space.
fn allocate(reserve: &Path) -> bool {
    let file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(reserve)
    {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(error = %e, "could not create the space reserve");
            return false;
        }
    };
    // SAFETY: a valid open file descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, RESERVE_BYTES as libc::off_t) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::from_raw_os_error(rc), "could not allocate the space reserve");
        let _ = std::fs::remove_file(reserve);
        return false;
    }
    true
}

impl StorageError {
    /// Whether this failure is the disk running out of space (ENOSPC from a file write, or
    /// RocksDB's `NoSpace` I/O error, also while it waits to recover from one).
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::Io(e) => e.raw_os_error() == Some(libc::ENOSPC),
            StorageError::Rocks(e) => e.to_string().contains("No space left on device"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_other_failures() {
        let full = StorageError::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.is_no_space());
        let other = StorageError::Io(std::io::Error::from_raw_os_error(libc::EIO));
        assert!(!other.is_no_space());
        assert!(!StorageError::Corrupt("x".into()).is_no_space());
    }

    #[test]
    fn a_guarded_write_that_would_eat_the_headroom_fails_as_a_full_disk_would() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::open(dir.path());
        let mut out = Vec::new();
        // Room to spare: written.
        Guarded::new(&space, 0, &mut out).write_all(b"abc").unwrap();
        assert_eq!(out, b"abc");
        // A headroom of everything free: nothing is written, and the error is ENOSPC (what
        // `DiskSpace::retry` waits out).
        let mut out = Vec::new();
        let refused = Guarded::new(&space, space.free_bytes(), &mut out).write_all(b"abc");
        let e = StorageError::Io(refused.unwrap_err());
        assert!(e.is_no_space());
        assert!(out.is_empty());
    }

    #[test]
    fn the_reserve_is_held_while_space_is_plentiful() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::open(dir.path());
        if space.free_bytes() < LOW_BYTES + RESERVE_BYTES {
            // This machine's temp dir is itself almost full: the node would refuse writes.
            assert!(space.is_low());
            return;
        }
        assert!(!space.is_low());
        assert!(space.take(1 << 20, 0) && !space.take(u64::MAX, 0));
        let room = space.free_bytes() - FLOOR_BYTES - (1 << 20);
        assert!(!space.take(room, 1), "the headroom is kept too");
        assert!(space.take(room, 0), "exactly down to the floor");
        assert!(!space.take(1, 0), "what was taken since the check counts");
        space.check();
        assert!(space.take(1, 0), "a check starts the count again");
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
        space.release_reserve();
        assert!(!reserve.exists());
        assert!(space.is_low(), "released: low until the reserve is back");
        space.check();
        assert!(reserve.exists() && !space.is_low());
    }
}
