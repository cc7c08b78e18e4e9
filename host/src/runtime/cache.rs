//! Cranelift's incremental compilation cache, in memory and bounded.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Compiled functions keyed by what they were compiled from. When full, the oldest entries
/// go first: they belong to the versions least likely to come back.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    capacity: usize,
    inner: Mutex<CachedFunctions>,
}

#[derive(Debug, Default)]
struct CachedFunctions {
    map: HashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl FunctionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedFunctions> {
        // CachedFunctions stay consistent across a panic (each update completes before the next).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.lock().map.get(key).map(|value| Cow::Owned(value.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let size = key.len() + value.len();
        if size > self.capacity {
            return false;
        }
        let mut entries = self.lock();
        while entries.bytes + size > self.capacity {
            let Some(oldest) = entries.order.pop_front() else { break };
            if let Some(evicted) = entries.map.remove(&oldest) {
                entries.bytes -= oldest.len() + evicted.len();
            }
        }
        if let Some(replaced) = entries.map.insert(key.to_vec(), value) {
            entries.bytes -= key.len() + replaced.len();
        } else {
            entries.order.push_back(key.to_vec());
        }
        entries.bytes += size;
        true
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::CacheStore;

    use super::*;

    #[test]
    fn stays_within_its_capacity_dropping_the_oldest_first() {
        let cache = FunctionCache::new(10);
        assert!(cache.insert(b"a", vec![0; 4]));
        assert!(cache.insert(b"b", vec![0; 4]));
        assert!(cache.get(b"a").is_some());
        assert!(cache.insert(b"c", vec![0; 4]), "room is made for it");
        assert!(cache.get(b"a").is_none(), "the oldest went");
        assert!(cache.get(b"b").is_some() && cache.get(b"c").is_some());
        assert!(!cache.insert(b"huge", vec![0; 20]), "larger than the whole cache");
        assert!(cache.lock().bytes <= 10);
    }
}
