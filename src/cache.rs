//! In-process caches in front of the store, bounded and short-lived.
//!
//! API keys and accounts are read on every request; caching them saves a Redis round trip per
//! call. Entries live at most `ttl` (keys are never revoked faster than that in the current API,
//! and a revocation endpoint will invalidate explicitly), and the map is cleared rather than
//! allowed to grow past its bound. Only positive answers are cached: a flood of wrong keys must
//! not fill the cache, and is limited per IP instead.

use std::hash::Hash;
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;

pub struct TtlCache<K, V> {
    entries: DashMap<K, (V, u64), RandomState>,
    ttl_ms: u64,
    max_entries: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            entries: DashMap::with_hasher(RandomState::default()),
            ttl_ms: ttl.as_millis() as u64,
            max_entries,
        }
    }

    /// The value if it was cached less than `ttl` ago; expiry is checked on every hit.
    pub fn get(&self, key: &K, now_ms: u64) -> Option<V> {
        let entry = self.entries.get(key)?;
        let (value, cached_at) = &*entry;
        (now_ms < cached_at + self.ttl_ms).then(|| value.clone())
    }

    pub fn insert(&self, key: K, value: V, now_ms: u64) {
        if self.entries.len() >= self.max_entries {
            self.entries.clear();
        }
        self.entries.insert(key, (value, now_ms));
    }

    /// Forgets everything, for when what was read before may no longer hold.
    pub fn clear(&self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = TtlCache::new(Duration::from_secs(10), 10);
        cache.insert("k", 1, 1_000);
        assert_eq!(cache.get(&"k", 10_999), Some(1));
        assert_eq!(cache.get(&"k", 11_000), None);
    }

    #[test]
    fn the_cache_never_grows_past_its_bound() {
        let cache = TtlCache::new(Duration::from_secs(10), 3);
        for n in 0..10 {
            cache.insert(n, n, 0);
            assert!(cache.len() <= 3);
        }
    }
}
