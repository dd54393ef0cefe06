//! Which objects the fast path reads into the object cache when it misses there.
//!
//! A body sent from a volume file with `sendfile` costs no copy, but its lookup costs a hop to
//! the blocking pool and two RocksDB reads on every request; a cached body costs neither. So an
//! object is read into the cache (through the router's read path) on its second miss within a
//! while, and sent from its file on its first: hot objects end up in memory, and a stream of
//! one-off reads (a random corpus larger than the cache) does not evict them. The memory of
//! first misses is a fixed table of hash prefixes (a TinyLFU-style doorkeeper): a slot
//! overwritten by another object forgets the first, which only delays admission.

use std::sync::atomic::{AtomicU64, Ordering};

use tessera_raft::storage::Sha256;

pub struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

impl Doorkeeper {
    pub fn new(slots: usize) -> Doorkeeper {
        Doorkeeper {
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether `sha` missed recently (then it is worth caching now); otherwise remembers this
    /// miss.
    pub fn missed_before(&self, sha: &Sha256) -> bool {
        // Hash prefixes are uniform: the low bits pick the slot, the whole prefix (never 0)
        // is the tag.
        let tag = sha.prefix_u64() | 1;
        let slot = &self.slots[(tag >> 1) as usize % self.slots.len()];
        if slot.load(Ordering::Relaxed) == tag {
            slot.store(0, Ordering::Relaxed);
            return true;
        }
        slot.store(tag, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_miss_is_admitted_once() {
        let door = Doorkeeper::new(1024);
        let (a, b) = (Sha256::of(b"a"), Sha256::of(b"b"));
        assert!(!door.missed_before(&a));
        assert!(!door.missed_before(&b));
        assert!(door.missed_before(&a));
        // Admitted: the slot is free again, the next miss starts over.
        assert!(!door.missed_before(&a));
        assert!(door.missed_before(&b));
    }

    #[test]
    fn a_colliding_object_only_delays_admission() {
        let door = Doorkeeper::new(1);
        let (a, b) = (Sha256::of(b"a"), Sha256::of(b"b"));
        assert!(!door.missed_before(&a));
        assert!(!door.missed_before(&b));
        assert!(!door.missed_before(&a));
        assert!(door.missed_before(&a));
    }
}
