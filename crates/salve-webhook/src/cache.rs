//! A bounded memory of recently persisted keys (incident names, resolved marks).
//!
//! A hit means "the API server already has this", so the request costs no API call. Entries
//! expire after a TTL (a deleted Incident is recreated by the next delivery after that) and the
//! oldest are evicted past the capacity, so memory stays bounded whatever Alertmanager sends.
//! A miss is always safe: the store falls back to a 409-tolerant create.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Insertion-ordered, capacity- and TTL-bounded set of strings.
#[derive(Debug)]
pub struct RecentCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    /// key → when it was inserted.
    map: HashMap<String, Instant>,
    /// Insertion order; an entry whose instant differs from the map's is stale and skipped.
    order: VecDeque<(String, Instant)>,
}

impl RecentCache {
    /// A cache of at most `capacity` keys, each trusted for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> RecentCache {
        RecentCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of a cache; the data is
        // still a valid (if slightly stale) cache, and a miss is always safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` was inserted less than the TTL ago (at `now`).
    pub fn contains_at(&self, key: &str, now: Instant) -> bool {
        self.lock()
            .map
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.ttl)
    }

    /// Whether `key` is remembered now.
    pub fn contains(&self, key: &str) -> bool {
        self.contains_at(key, Instant::now())
    }

    /// Remembers `key` (at `now`), evicting expired and then the oldest entries.
    pub fn insert_at(&self, key: &str, now: Instant) {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner
            .map
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.ttl)
        {
            return;
        }
        inner.map.insert(key.to_owned(), now);
        inner.order.push_back((key.to_owned(), now));
        while let Some((k, t)) = inner.order.front() {
            let current = inner.map.get(k).copied();
            let stale = current != Some(*t);
            let expired = now.saturating_duration_since(*t) >= self.ttl;
            let over = inner.map.len() > self.capacity;
            if !(stale || expired || over) {
                break;
            }
            if let Some((k, _)) = inner.order.pop_front()
                && !stale
            {
                inner.map.remove(&k);
            }
        }
    }

    /// Remembers `key` now.
    pub fn insert(&self, key: &str) {
        self.insert_at(key, Instant::now());
    }

    /// How many keys are remembered (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_key_is_found_until_its_ttl_passes() {
        let c = RecentCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        c.insert_at("a", t0);
        assert!(c.contains_at("a", t0 + Duration::from_secs(59)));
        assert!(!c.contains_at("a", t0 + Duration::from_secs(60)));
        assert!(!c.contains_at("b", t0));
    }

    #[test]
    fn the_oldest_keys_are_evicted_past_the_capacity() {
        let c = RecentCache::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert_at(k, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(c.len(), 3);
        let t = t0 + Duration::from_millis(10);
        assert!(!c.contains_at("a", t));
        assert!(c.contains_at("b", t) && c.contains_at("c", t) && c.contains_at("d", t));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_and_repeated_keys() {
        let c = RecentCache::new(100, Duration::from_millis(5));
        let t0 = Instant::now();
        for i in 0..100_000u64 {
            let k = format!("k{}", i % 250);
            c.insert_at(&k, t0 + Duration::from_micros(i * 3));
        }
        assert!(c.len() <= 100);
        assert!(c.lock().order.len() <= 200, "{}", c.lock().order.len());
    }
}
