//! A shard leader's memory of hashes it found absent, so that repeated 404s for unknown hashes
//! cost no quorum round each. It must never hide an acknowledged upload; the argument (see
//! docs/architecture.md, "The negative cache"):
//!
//! * Only the group's leader answers from it, and only for the term it is leader in: every
//!   upload acknowledged in that term was applied here first, and each apply of an upload drops
//!   its hash ([`Absent::stored`]) before the leader answers the client.
//! * Uploads acknowledged by an earlier leader were applied here before the read that recorded
//!   the hash absent (that read confirmed leadership with a quorum and waited for the apply).
//! * No later leader can exist while the lease holds: the lease starts when the last
//!   quorum-confirmed read started, so every follower of that quorum acknowledged a heartbeat
//!   sent after it and refuses votes for `election_timeout_max` after receiving it (openraft
//!   0.9's `handle_vote_req`; a restarted follower refuses for that long after its start). The
//!   lease used here is half of that, for clock-rate differences.
//! * The leader itself grants a higher-term vote once `election_timeout_max` has passed since
//!   its election; so every answer first asks RaftCore whether this node is still leader in the
//!   same term (`Raft::with_raft_state`, ordered with vote handling), not the metrics.
//! * A read that started before an upload applied and recorded its miss after would be stale:
//!   a generation counter, bumped by every apply of an upload, makes such a read record nothing.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tessera_storage::Sha256;

/// Hashes remembered per group; the set starts over when it is full.
const MAX_HASHES: usize = 1 << 16;

/// See the module documentation.
pub struct Absent {
    lease: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The leader term the entries and `confirmed` belong to.
    term: u64,
    /// Start of the latest read whose leadership check a quorum confirmed in `term`.
    confirmed: Option<Instant>,
    generation: u64,
    hashes: HashSet<Sha256>,
}

/// Taken before a read confirms leadership: when it started, and what had been applied.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    started: Instant,
    generation: u64,
}

impl Absent {
    /// `lease`: how long after a quorum-confirmed read started no other leader can exist,
    /// with a margin for clock-rate differences.
    pub fn new(lease: Duration) -> Absent {
        Absent {
            lease,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `sha` is known absent, for the leader of `term`, at `now`.
    pub fn knows_absent(&self, sha: &Sha256, term: u64, now: Instant) -> bool {
        let inner = self.lock();
        inner.term == term
            && inner.confirmed.is_some_and(|from| now < from + self.lease)
            && inner.hashes.contains(sha)
    }

    /// Call before the read's leadership check.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            started: Instant::now(),
            generation: self.lock().generation,
        }
    }

    /// A quorum confirmed this node's leadership in `term` for the read of `ticket`, and the
    /// read found `absent` (or nothing to record).
    pub fn confirmed(&self, ticket: &Ticket, term: u64, absent: Option<&Sha256>) {
        let mut inner = self.lock();
        if inner.term != term {
            inner.term = term;
            inner.confirmed = None;
            inner.hashes.clear();
        }
        if inner.confirmed.is_none_or(|from| from < ticket.started) {
            inner.confirmed = Some(ticket.started);
        }
        if let Some(sha) = absent {
            if inner.generation == ticket.generation {
                if inner.hashes.len() >= MAX_HASHES {
                    inner.hashes.clear();
                }
                inner.hashes.insert(*sha);
            }
        }
    }

    /// An upload of `sha` was applied here (call before its response is returned).
    pub fn stored(&self, sha: &Sha256) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.hashes.remove(sha);
    }

    /// The group's state was replaced (a snapshot install): forget everything.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.hashes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    #[test]
    fn a_recorded_miss_holds_for_its_term_and_lease_only() {
        let absent = Absent::new(LEASE);
        let sha = Sha256::of(b"unknown");
        let ticket = absent.ticket();
        absent.confirmed(&ticket, 4, Some(&sha));
        let now = Instant::now();
        assert!(absent.knows_absent(&sha, 4, now));
        assert!(!absent.knows_absent(&sha, 5, now));
        assert!(!absent.knows_absent(&sha, 4, ticket.started + LEASE));
        assert!(!absent.knows_absent(&Sha256::of(b"other"), 4, now));
        // A new term forgets the old one's entries.
        absent.confirmed(&absent.ticket(), 5, None);
        assert!(!absent.knows_absent(&sha, 5, Instant::now()));
        assert!(!absent.knows_absent(&sha, 4, Instant::now()));
    }

    #[test]
    fn an_upload_applied_during_the_read_keeps_its_miss_out() {
        let absent = Absent::new(LEASE);
        let sha = Sha256::of(b"racing");
        let ticket = absent.ticket();
        // The upload applies between the leadership check and the read's record.
        absent.stored(&sha);
        absent.confirmed(&ticket, 2, Some(&sha));
        assert!(!absent.knows_absent(&sha, 2, Instant::now()));
        // Recorded by a later read, dropped by the next apply.
        absent.confirmed(&absent.ticket(), 2, Some(&sha));
        assert!(absent.knows_absent(&sha, 2, Instant::now()));
        absent.stored(&sha);
        assert!(!absent.knows_absent(&sha, 2, Instant::now()));
    }
}
