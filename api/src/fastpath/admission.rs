//! Which objects the fast path reads into the object cache when it misses there.
//!
//! A body sent from a volume file with `sendfile` costs no copy but a little more CPU per
//! request than a cached body sent with `writev`; reading an object into the cache costs a hop
//! to the blocking pool, two RocksDB reads, a copy — and the object it evicts. That trade pays
//! only for an object read more often than the one it would push out. So admission is
//! TinyLFU's rule: every read counts in a small frequency sketch, and a miss is read into the
//! cache when its object has been read more often, lately, than the object the cache would
//! evict first (or, while the cache has room, when it has been read before). Hot objects end
//! up in memory; a stream of uniformly random reads over a corpus larger than the cache admits
//! almost nothing, instead of churning the cache at the read path's cost on every request
//! (`bench/scale.sh` at 1 M objects: 0.41 of the 10 k figure with the previous second-miss
//! doorkeeper, which admitted nearly every object of such a stream).
//!
//! The sketch is a count-min sketch of 4-bit counters (one byte each here), four per object,
//! halved every ten reads per counter so that old popularity fades. Counters are updated with
//! relaxed loads and stores: two racing reads may count once, which only blurs an estimate.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use tessera_raft::storage::Sha256;

/// The largest count a counter holds (4 bits' worth, as in TinyLFU).
const MAX_COUNT: u8 = 15;

pub struct Admission {
    counters: Box<[AtomicU8]>,
    mask: usize,
    reads: AtomicU64,
    /// Reads between two halvings.
    period: u64,
}

impl Admission {
    /// A sketch of `slots` counters (rounded up to a power of two): about one per object the
    /// cache can hold is enough for estimates that tell hot from cold.
    pub fn new(slots: usize) -> Admission {
        let slots = slots.max(64).next_power_of_two();
        Admission {
            counters: (0..slots).map(|_| AtomicU8::new(0)).collect(),
            mask: slots - 1,
            reads: AtomicU64::new(0),
            period: 10 * slots as u64,
        }
    }

    /// The four counters of `sha`: SHA-256 output is uniform, so four disjoint 32-bit words
    /// of it are four independent hashes.
    fn slots(&self, sha: &Sha256) -> [usize; 4] {
        std::array::from_fn(|i| {
            let word = [
                sha.0[4 * i],
                sha.0[4 * i + 1],
                sha.0[4 * i + 2],
                sha.0[4 * i + 3],
            ];
            u32::from_le_bytes(word) as usize & self.mask
        })
    }

    /// Counts one read of `sha`.
    pub fn record(&self, sha: &Sha256) {
        for slot in self.slots(sha) {
            let counter = &self.counters[slot];
            let count = counter.load(Ordering::Relaxed);
            if count < MAX_COUNT {
                counter.store(count + 1, Ordering::Relaxed);
            }
        }
        if self.reads.fetch_add(1, Ordering::Relaxed) + 1 == self.period {
            self.reads.store(0, Ordering::Relaxed);
            for counter in self.counters.iter() {
                counter.store(counter.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
            }
        }
    }

    /// How often `sha` was read lately (an over-estimate, never an under-estimate, but for
    /// lost racing updates and halving).
    pub fn estimate(&self, sha: &Sha256) -> u8 {
        self.slots(sha)
            .iter()
            .map(|&slot| self.counters[slot].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether a missed object is worth reading into the cache: `victim` is what the cache
    /// would evict first to make room for it (`None` while it has room).
    pub fn admits(&self, sha: &Sha256, victim: Option<&Sha256>) -> bool {
        let wanted = self.estimate(sha);
        match victim {
            None => wanted >= 2,
            Some(victim) => wanted > self.estimate(victim),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_room_an_object_is_admitted_once_read_twice() {
        let sketch = Admission::new(1024);
        let a = Sha256::of(b"a");
        sketch.record(&a);
        assert!(!sketch.admits(&a, None));
        sketch.record(&a);
        assert!(sketch.admits(&a, None));
    }

    #[test]
    fn an_object_displaces_only_a_less_read_one() {
        let sketch = Admission::new(1024);
        let (hot, cold, new) = (Sha256::of(b"hot"), Sha256::of(b"cold"), Sha256::of(b"new"));
        for _ in 0..5 {
            sketch.record(&hot);
        }
        sketch.record(&cold);
        for _ in 0..3 {
            sketch.record(&new);
        }
        assert!(sketch.admits(&new, Some(&cold)));
        assert!(!sketch.admits(&new, Some(&hot)));
        // Equally read: keep what is cached (a uniform stream must not churn the cache).
        assert!(!sketch.admits(&cold, Some(&cold)));
    }

    #[test]
    fn popularity_fades() {
        let sketch = Admission::new(64);
        let old = Sha256::of(b"old");
        for _ in 0..MAX_COUNT {
            sketch.record(&old);
        }
        assert_eq!(sketch.estimate(&old), MAX_COUNT);
        for i in 0..sketch.period {
            sketch.record(&Sha256::of(&i.to_le_bytes()));
        }
        assert!(sketch.estimate(&old) < MAX_COUNT, "halved at least once");
    }
}
