//! Disk faults: every node's data dir is its own size-limited tmpfs (so the node can be run out
//! of space without touching the machine's disk), and data files are damaged while the node is
//! down. The harness copies the stopped node's whole data dir first, so it can put the node back
//! as it was if it does not recover by itself (recorded as a finding) and the campaign goes on.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::rng::Rng;
use super::sandbox::run;

/// Mounts a tmpfs of `mb` MiB, owned by `uid`, on `dir`.
pub fn mount_tmpfs(dir: &Path, mb: u64, uid: u32) -> io::Result<()> {
    let options = format!("size={mb}m,mode=0700,uid={uid},gid={uid}");
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &options,
            "tessera-chaos",
            &dir.display().to_string(),
        ],
    )
}

const BALLAST: &str = "chaos-ballast";

/// Fills the file system of `dir` until only `leave` bytes are free (a disk that fills up;
/// the node promises to stop writing before the last bytes, see `docs/reliability.md`), or
/// until writes fail with ENOSPC if others write meanwhile; returns the bytes written. Called
/// again, it tops the ballast up (a restart can free space: RocksDB's old WAL preallocation).
pub fn fill(dir: &Path, leave: u64) -> io::Result<u64> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(BALLAST))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let want = free_bytes(dir)?
            .saturating_sub(leave)
            .min(chunk.len() as u64) as usize;
        if want == 0 {
            return Ok(written);
        }
        match file.write(&chunk[..want]) {
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
            Err(e) => return Err(e),
        }
    }
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid C string and a plain struct the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Gives the space taken by [`fill`] back.
pub fn unfill(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(BALLAST)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Which files a disk fault damages.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Object bytes: `db/volumes/g*/*.vol`.
    Volume,
    /// RocksDB tables and blob files: `db/*.sst`, `db/*.blob`.
    Table,
    /// The RocksDB write-ahead log, which holds the Raft log's tail: `db/*.log`.
    Wal,
}

/// How a file is damaged.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    FlipBits,
    Truncate,
}

/// A damaged file and what was done to it.
pub struct Damaged {
    pub path: PathBuf,
    pub what: String,
}

/// Copies a stopped node's data dir aside (`<dir>.backup`, replacing an older copy).
pub fn backup(dir: &Path) -> io::Result<PathBuf> {
    let copy = dir.with_extension("backup");
    if copy.exists() {
        fs::remove_dir_all(&copy)?;
    }
    fs::create_dir_all(&copy)?;
    run(
        "cp",
        &[
            "-a",
            &format!("{}/.", dir.display()),
            &copy.display().to_string(),
        ],
    )?;
    Ok(copy)
}

/// Puts a stopped node's data dir back as [`backup`] found it.
pub fn restore(dir: &Path, copy: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    run(
        "cp",
        &[
            "-a",
            &format!("{}/.", copy.display()),
            &dir.display().to_string(),
        ],
    )
}

fn files(dir: &Path, target: Target, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, target, out);
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let wanted = match target {
            Target::Volume => name.ends_with(".vol"),
            Target::Table => name.ends_with(".sst") || name.ends_with(".blob"),
            Target::Wal => name.ends_with(".log") && !name.starts_with("LOG"),
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if wanted && size > 64 {
            out.push(path);
        }
    }
}

/// Damages one file of `target` kind under `data` (a stopped node's data dir). The WAL is
/// damaged at its tail (the newest file, the last 4 KiB), as a torn write would; others
/// anywhere. `None` if the node has no such file yet.
pub fn damage(
    data: &Path,
    target: Target,
    how: Damage,
    rng: &mut Rng,
) -> io::Result<Option<Damaged>> {
    let mut candidates = Vec::new();
    files(&data.join("db"), target, &mut candidates);
    candidates.sort();
    let path = match target {
        Target::Wal => candidates.last().cloned(),
        _ if candidates.is_empty() => None,
        _ => Some(rng.pick(&candidates).clone()),
    };
    let Some(path) = path else {
        return Ok(None);
    };
    let original = fs::read(&path)?;
    let len = original.len() as u64;
    let from = match target {
        Target::Wal => len.saturating_sub(4096),
        _ => 0,
    };
    let what = match how {
        Damage::FlipBits => {
            let file = fs::OpenOptions::new().write(true).open(&path)?;
            let mut spots = Vec::new();
            for _ in 0..4 {
                let at = rng.between(from, len - 1);
                let bit = 1u8 << rng.below(8);
                file.write_all_at(&[original[at as usize] ^ bit], at)?;
                spots.push(at.to_string());
            }
            file.sync_all()?;
            format!("flipped bits at {}", spots.join(", "))
        }
        Damage::Truncate => {
            let keep = rng.between(from, len - 1);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(keep)?;
            format!("truncated {len} -> {keep} bytes")
        }
    };
    Ok(Some(Damaged { path, what }))
}
