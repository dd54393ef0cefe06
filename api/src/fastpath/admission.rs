//! Which objects the fast path reads into the object cache when it misses there.
//!
//! A body sent from a volume file with `sendfile` costs no copy but a little more CPU per
//! request than a cached body sent with `writev`; reading an object into the cache costs a hop
//! to the blocking pool, two RocksDB reads, a copy — and the object it evicts. That trade pays
//! only for an object read more often than the one it would push out. So admission is
//! TinyLFU's rule: every read counts in a small frequency sketch, and a miss is read into the
//! cache when its object has been read more often, lately, than the object the cache would
//! evict first (or, while the cache has room, when it has been read a few times). Hot
//! objects end up in memory; a stream of uniformly random reads over a corpus larger than the
//! cache admits almost nothing, instead of churning the cache at the read path's cost on
//! every request (`bench/scale.sh` at 1 M objects: 0.41 of the 10 k figure with the previous
//! second-miss doorkeeper, which admitted nearly every object of such a stream).
//!
//! The sketch is a count-min sketch of 4-bit counters (one byte each here, eight to a 64-bit
//! word), four per object, all halved every `slots / 8` reads so that old popularity fades.
//! That period is what keeps estimates honest on a stream of distinct objects: it adds at most
//! half a count per counter on average between halvings, so an object read once is estimated
//! at 1 (not admitted) unless all four of its counters were hit by others, which happens for a
//! few percent of such reads at the end of a period — with a period ten times the table, as
//! first written, every counter saturated and every object looked hot. Counters are raised with
//! relaxed atomic adds; a halving racing with reads may lose a count, which only blurs an
//! estimate.

use std::sync::atomic::{AtomicU64, Ordering};

use tessera_raft::storage::Sha256;

/// The largest count a counter holds (4 bits' worth, as in TinyLFU).
const MAX_COUNT: u8 = 15;

/// Reads lately that a missed object needs before it may enter the cache. `bench/scale.sh`
/// reads each of 200 000 objects about twice, uniformly, while the victims' counts are halved:
/// with a build that cached small bodies from the fast path, a threshold of two admitted most
/// of those reads and the fills cost 5 µs per read (54 k → 44 k req/s), three cost 3 µs
/// (48 k). An object read a few times a second still enters the cache within a second.
const MIN_READS: u8 = 3;

/// Every byte of a word halved at once: shifted right, each byte's top bit cleared of what the
/// byte above shifted into it.
const HALF: u64 = 0x7f7f_7f7f_7f7f_7f7f;

pub struct Admission {
    words: Box<[AtomicU64]>,
    mask: usize,
    reads: AtomicU64,
    /// Reads between two halvings.
    period: u64,
}

impl Admission {
    /// A sketch of `slots` counters (rounded up to a power of two, at least 64). Halving walks
    /// `slots / 8` words: about 60 µs for a million counters.
    pub fn new(slots: usize) -> Admission {
        let slots = slots.max(64).next_power_of_two();
        Admission {
            words: (0..slots / 8).map(|_| AtomicU64::new(0)).collect(),
            mask: slots - 1,
            reads: AtomicU64::new(0),
            period: slots as u64 / 8,
        }
    }

    /// The four counters of `sha` as (word, bit shift): SHA-256 output is uniform, so four
    /// disjoint 32-bit words of it are four independent hashes.
    fn slots(&self, sha: &Sha256) -> [(usize, u32); 4] {
        std::array::from_fn(|i| {
            let word = [
                sha.0[4 * i],
                sha.0[4 * i + 1],
                sha.0[4 * i + 2],
                sha.0[4 * i + 3],
            ];
            let slot = u32::from_le_bytes(word) as usize & self.mask;
            (slot / 8, (slot % 8) as u32 * 8)
        })
    }

    fn count(&self, (word, shift): (usize, u32)) -> u8 {
        (self.words[word].load(Ordering::Relaxed) >> shift) as u8
    }

    /// Counts one read of `sha`.
    pub fn record(&self, sha: &Sha256) {
        for slot in self.slots(sha) {
            if self.count(slot) < MAX_COUNT {
                self.words[slot.0].fetch_add(1 << slot.1, Ordering::Relaxed);
            }
        }
        if self.reads.fetch_add(1, Ordering::Relaxed) + 1 == self.period {
            self.reads.store(0, Ordering::Relaxed);
            for word in self.words.iter() {
                word.store(
                    (word.load(Ordering::Relaxed) >> 1) & HALF,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// How often `sha` was read lately (an over-estimate, never an under-estimate, but for
    /// lost racing updates and halving).
    pub fn estimate(&self, sha: &Sha256) -> u8 {
        self.slots(sha)
            .into_iter()
            .map(|slot| self.count(slot))
            .min()
            .unwrap_or(0)
    }

    /// Whether a missed object is worth reading into the cache: `victim` is what the cache
    /// would evict first to make room for it (`None` while it has room).
    ///
    /// Read at least [`MIN_READS`] times lately in either case: a victim read once, a halving
    /// ago, is estimated at 0, so "more than the victim" alone admitted nearly every object of
    /// a uniform stream once the cache was full.
    pub fn admits(&self, sha: &Sha256, victim: Option<&Sha256>) -> bool {
        let wanted = self.estimate(sha);
        wanted >= MIN_READS && victim.is_none_or(|victim| wanted > self.estimate(victim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_room_an_object_is_admitted_once_read_thrice() {
        let sketch = Admission::new(1024);
        let a = Sha256::of(b"a");
        for _ in 1..MIN_READS {
            sketch.record(&a);
            assert!(!sketch.admits(&a, None));
        }
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
    fn a_stream_of_distinct_objects_is_not_admitted() {
        let sketch = Admission::new(1 << 16);
        let mut admitted = 0;
        let reads = 1_000_000u32;
        for i in 0..reads {
            let sha = Sha256::of(&i.to_le_bytes());
            sketch.record(&sha);
            admitted += usize::from(sketch.admits(&sha, None));
        }
        // A few percent at most (the end of each halving period), not the whole stream.
        assert!(
            admitted < reads as usize / 20,
            "{admitted} of {reads} one-read objects admitted"
        );
    }

    #[test]
    fn a_stream_of_distinct_objects_does_not_displace_faded_ones() {
        let sketch = Admission::new(1 << 16);
        // What the full cache would evict: read once, long enough ago to have faded to 0.
        let victim = Sha256::of(b"cached long ago");
        sketch.record(&victim);
        for i in 0..sketch.period {
            sketch.record(&Sha256::of(&i.to_le_bytes()));
        }
        assert_eq!(sketch.estimate(&victim), 0);
        let mut admitted = 0;
        let reads = 1_000_000u32;
        for i in 0..reads {
            let sha = Sha256::of(&(u32::MAX - i).to_le_bytes());
            sketch.record(&sha);
            admitted += usize::from(sketch.admits(&sha, Some(&victim)));
        }
        assert!(
            admitted < reads as usize / 20,
            "{admitted} of {reads} one-read objects displaced a cached one"
        );
    }

    #[test]
    fn popularity_fades() {
        let sketch = Admission::new(1024);
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
