//! A node whose database is damaged rebuilds it from its peers instead of crash-looping.
//!
//! When the node's RocksDB cannot be opened, or a group cannot be loaded from it, because bytes
//! on disk fail their checksums (a corrupt table, a bad log record), the database directory —
//! volumes included — and the snapshots are moved aside (`<data>/db.damaged-<unix ms>`, the
//! newest kept for the operator until the disk runs low, `tessera_storage::space`) and the node
//! starts over with an empty one. Every replica then catches up from its group's
//! leader like a new one (a snapshot, then the log).
//!
//! An emptied replica must not vote until it has caught up: it has forgotten entries it helped
//! commit, and its vote could elect a leader that lacks one (entry committed on {1, 3}; 3
//! forgets it; 2, without it, asks 3 for a vote and wins, then overwrites 1). It has also
//! forgotten whom it voted for, so it could vote twice in a term. So while rejoining a replica
//! refuses every vote request (which is always safe: a node that is down does the same) until
//! both (1) it has applied everything its group's leader had committed when it first heard
//! from it — every entry committed before the damage is in that prefix — and (2) two maximum
//! election timeouts have passed since it started, so no election it took part in before the
//! damage is still collecting votes. A group that needs this replica's vote to elect a leader
//! waits (with a healthy majority it does not).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a rejoining node remembers per group: the commit index of the first leader it heard.
pub(crate) struct Rejoin {
    since: Instant,
    wait: Duration,
    targets: Mutex<HashMap<u32, u64>>,
}

impl Rejoin {
    /// A node that started rejoining now; votes stay refused for at least `wait`.
    pub(crate) fn new(wait: Duration) -> Rejoin {
        Rejoin {
            since: Instant::now(),
            wait,
            targets: Mutex::new(HashMap::new()),
        }
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u64>> {
        self.targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A leader of `group` sent entries with its commit index: the first one sets how far this
    /// replica must apply before it votes.
    pub(crate) fn heard(&self, group: u32, leader_commit: u64) {
        self.targets().entry(group).or_insert(leader_commit);
    }

    /// Whether this replica of `group`, which has applied up to `applied`, still refuses votes.
    pub(crate) fn refuses(&self, group: u32, applied: Option<u64>) -> bool {
        if self.since.elapsed() < self.wait {
            return true;
        }
        match self.targets().get(&group) {
            None => true,
            Some(target) => applied.is_none_or(|a| a < *target),
        }
    }
}

/// Present from the moment a database is emptied until every replica has caught up: a node
/// restarted in between still refuses votes (it has not caught up either).
pub(crate) const REJOIN_MARKER: &str = "rejoining";

/// The file that asks the next start to rebuild the database: written when a group's Raft
/// stopped on a checksum failure while the node ran (a damaged block read long after start-up).
pub(crate) const REBUILD_MARKER: &str = "db-damaged";

/// Records `why` in `<data>/db-damaged` (fsynced): the node's next start quarantines its database
/// whatever it can still read of it.
pub(crate) fn ask_rebuild(data: &Path, why: &str) -> std::io::Result<()> {
    use std::io::Write;
    let path = data.join(REBUILD_MARKER);
    let mut file = std::fs::File::create(&path)?;
    file.write_all(why.as_bytes())?;
    file.sync_all()?;
    std::fs::File::open(data)?.sync_all()
}

/// Moves the damaged database `<data>/db` (volumes included) aside, with the snapshots of
/// `<data>/snapshots` (they describe state the empty database no longer has: openraft would
/// find a snapshot beyond its committed index); returns where they went. Copies kept from
/// earlier quarantines are deleted first: the rebuild needs the room (one copy is kept).
pub(crate) fn quarantine(data: &Path) -> std::io::Result<PathBuf> {
    for older in tessera_storage::space::quarantined(data) {
        std::fs::remove_dir_all(&older)?;
        tracing::warn!(path = %older.display(), "deleted an older damaged database kept aside");
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let aside = data.join(format!(
        "{}{stamp}",
        tessera_storage::space::QUARANTINE_PREFIX
    ));
    std::fs::rename(data.join("db"), &aside)?;
    let snapshots = data.join("snapshots");
    if snapshots.exists() {
        std::fs::rename(&snapshots, aside.join("snapshots"))?;
    }
    let marker = data.join(REBUILD_MARKER);
    if marker.exists() {
        std::fs::rename(&marker, aside.join(REBUILD_MARKER))?;
    }
    std::fs::File::create(data.join(REJOIN_MARKER))?.sync_all()?;
    std::fs::File::open(data)?.sync_all()?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_refused_until_caught_up_and_after_the_wait() {
        let rejoin = Rejoin::new(Duration::ZERO);
        assert!(rejoin.refuses(3, Some(100)), "no leader heard yet");
        rejoin.heard(3, 40);
        rejoin.heard(3, 90);
        assert!(rejoin.refuses(3, None));
        assert!(rejoin.refuses(3, Some(39)));
        assert!(
            !rejoin.refuses(3, Some(40)),
            "the first commit index heard counts"
        );
        assert!(rejoin.refuses(4, Some(1000)), "per group");
        let waiting = Rejoin::new(Duration::from_secs(60));
        waiting.heard(3, 1);
        assert!(waiting.refuses(3, Some(5)), "not before the wait is over");
    }

    #[test]
    fn a_quarantine_keeps_only_the_newest_damaged_copy() {
        let data = tempfile::tempdir().expect("temp dir");
        let damage = |what: &str| {
            std::fs::create_dir_all(data.path().join("db")).expect("db");
            std::fs::write(data.path().join("db/table.sst"), what).expect("table");
            std::fs::create_dir_all(data.path().join("snapshots")).expect("snapshots");
            quarantine(data.path()).expect("quarantine")
        };
        let first = damage("first");
        assert!(first.join("snapshots").is_dir(), "snapshots go aside too");
        let second = damage("second");
        assert!(data.path().join(REJOIN_MARKER).exists());
        assert_eq!(
            tessera_storage::space::quarantined(data.path()),
            vec![second.clone()]
        );
        let kept = std::fs::read_to_string(second.join("table.sst")).expect("kept table");
        assert_eq!(kept, "second");
        assert!(!data.path().join("db").exists() && !data.path().join("snapshots").exists());
    }
}
