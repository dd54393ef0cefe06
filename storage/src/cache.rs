//! A bounded in-memory cache of whole objects for the read hot path.
//!
//! Objects are immutable, so a cached copy never goes stale and needs no invalidation (deleting
//! objects, when it arrives, will remove them here too). Eviction is CLOCK (second chance) per
//! shard: a hit sets a bit instead of reordering a list, so hits only take a short lock on one
//! of sixteen shards and clone a `Bytes` (a reference count, no copy).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::object::{ObjectMeta, Sha256};

const SHARDS: usize = 16;

/// A cached object: its record and its bytes.
#[derive(Clone, Debug)]
pub struct Cached {
    pub meta: ObjectMeta,
    pub bytes: Bytes,
}

struct Slot {
    value: Cached,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Sha256, Slot>,
    clock: VecDeque<Sha256>,
    bytes: usize,
}

/// See the module documentation.
pub struct ObjectCache {
    shards: Vec<Mutex<Shard>>,
    shard_capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ObjectCache {
    /// A cache holding at most about `capacity` bytes of objects (0 disables it).
    pub fn new(capacity: usize) -> ObjectCache {
        ObjectCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity / SHARDS,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, sha: &Sha256) -> &Mutex<Shard> {
        // The hash is uniformly distributed already; its last byte picks the shard.
        &self.shards[usize::from(sha.0[31]) % SHARDS]
    }

    pub fn get(&self, sha: &Sha256) -> Option<Cached> {
        let found = self.shard(sha).lock().ok().and_then(|mut shard| {
            let slot = shard.map.get_mut(sha)?;
            slot.referenced = true;
            Some(slot.value.clone())
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `value` unless it is larger than a shard can hold.
    /// Whether an object of `size` bytes is cached at all: at most an eighth of a shard, so
    /// one large object never flushes a shard of hot small ones (large objects are sent from
    /// their volume files instead).
    pub fn admits(&self, size: u64) -> bool {
        size <= (self.shard_capacity / 8) as u64
    }

    /// The object that caching `size` more bytes in `sha`'s shard would evict first — the
    /// first entry past the CLOCK hand without its second chance — or `None` while the shard
    /// has room. Looks at most a few entries ahead: past them, the hand's own entry stands in.
    pub fn first_victim(&self, sha: &Sha256, size: u64) -> Option<Sha256> {
        const LOOK_AHEAD: usize = 8;
        let shard = self.shard(sha).lock().ok()?;
        if shard.bytes + size as usize <= self.shard_capacity {
            return None;
        }
        let unreferenced = shard.clock.iter().take(LOOK_AHEAD).find(|candidate| {
            shard
                .map
                .get(*candidate)
                .is_some_and(|slot| !slot.referenced)
        });
        unreferenced.or(shard.clock.front()).copied()
    }

    pub fn insert(&self, sha: Sha256, value: Cached) {
        let size = value.bytes.len();
        if !self.admits(size as u64) {
            return;
        }
        let Ok(mut shard) = self.shard(&sha).lock() else {
            return;
        };
        if shard.map.contains_key(&sha) {
            return;
        }
        while shard.bytes + size > self.shard_capacity {
            let Some(victim) = shard.clock.pop_front() else {
                break;
            };
            let second_chance = match shard.map.get_mut(&victim) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    true
                }
                _ => false,
            };
            if second_chance {
                shard.clock.push_back(victim);
            } else if let Some(slot) = shard.map.remove(&victim) {
                shard.bytes -= slot.value.bytes.len();
            }
        }
        shard.bytes += size;
        shard.clock.push_back(sha);
        shard.map.insert(
            sha,
            Slot {
                value,
                referenced: false,
            },
        );
    }

    /// Hits and misses since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes currently cached.
    pub fn size(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.bytes))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(seed: u8, size: usize) -> (Sha256, Cached) {
        let bytes = Bytes::from(vec![seed; size]);
        let meta = ObjectMeta {
            size: size as u64,
            content_type: "image/png".into(),
            width: 1,
            height: 1,
            refcount: 1,
            created_ms: 0,
        };
        let mut sha = Sha256::of(&bytes);
        sha.0[31] = 0; // all in one shard, to exercise eviction
        (sha, Cached { meta, bytes })
    }

    #[test]
    fn evicts_unreferenced_objects_first_and_counts_hits() {
        // Shards of 800 bytes take objects of up to 100.
        let cache = ObjectCache::new(SHARDS * 800);
        let objects: Vec<(Sha256, Cached)> = (1..=9).map(|i| object(i, 100)).collect();
        for (sha, value) in &objects[..8] {
            cache.insert(*sha, value.clone());
        }
        assert!(cache.get(&objects[0].0).is_some()); // the first gets a second chance
        cache.insert(objects[8].0, objects[8].1.clone()); // evicts the second, the oldest unreferenced
        assert!(cache.get(&objects[1].0).is_none());
        for (sha, _) in objects.iter().filter(|(sha, _)| *sha != objects[1].0) {
            assert!(cache.get(sha).is_some());
        }
        assert_eq!(cache.size(), 800);
        assert_eq!(cache.stats(), (9, 1));
    }

    #[test]
    fn names_the_object_an_insert_would_evict() {
        let cache = ObjectCache::new(SHARDS * 800);
        let objects: Vec<(Sha256, Cached)> = (1..=9).map(|i| object(i, 100)).collect();
        for (sha, value) in &objects[..7] {
            cache.insert(*sha, value.clone());
        }
        assert_eq!(
            cache.first_victim(&objects[8].0, 100),
            None,
            "room for one more"
        );
        cache.insert(objects[7].0, objects[7].1.clone());
        assert_eq!(cache.first_victim(&objects[8].0, 100), Some(objects[0].0));
        cache.get(&objects[0].0); // a second chance: the next one goes first
        assert_eq!(cache.first_victim(&objects[8].0, 100), Some(objects[1].0));
        cache.insert(objects[8].0, objects[8].1.clone());
        assert!(cache.get(&objects[1].0).is_none(), "the named victim went");
    }

    #[test]
    fn refuses_objects_larger_than_an_eighth_of_a_shard() {
        let cache = ObjectCache::new(SHARDS * 800);
        assert!(cache.admits(100) && !cache.admits(101));
        let (a, va) = object(1, 101);
        cache.insert(a, va);
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.size(), 0);
    }
}
