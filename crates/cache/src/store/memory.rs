//! The in-process store: a byte-weighted LRU (moka, TinyLFU admission) with a TTL per entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::{CacheStore, Candidate, StoreFuture};
use crate::entry::Entry;
use crate::key::{Key, KeyState};

/// Entries in this process's memory, bounded in bytes: the least recently used (and least
/// often used: moka's TinyLFU) go first when a new one would not fit; each goes when its TTL
/// ends.
///
/// Cheap to clone: clones share the entries.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    entries: Cache<Key, (Arc<Entry>, Duration), KeyState>,
    partitions: Cache<Key, (Arc<[Candidate]>, Duration), KeyState>,
}

/// What one entry costs this store beside its bytes: moka's node, access and expiry records,
/// the key, the shared entry and the body's allocation. Measured: 100,000 entries of a
/// 515-byte answer took 1,153 bytes each of resident memory (mimalloc, moka 0.12); weighed at
/// 64 bytes over the body, the store's bound let it hold twice its bytes.
const ENTRY_OVERHEAD: usize = 640;

struct Ttl;

impl<V> Expiry<Key, (V, Duration)> for Ttl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &(V, Duration),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &(V, Duration),
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

impl MemoryStore {
    /// A store of at most `max_bytes` (entries weighed by their bytes and what each costs
    /// the store, `ENTRY_OVERHEAD`: 640 bytes, measured; so the bound is the memory held.
    /// Semantic candidates get an eighth of the bound on top).
    pub fn new(max_bytes: u64) -> Self {
        let weigh = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |_k, v: &(Arc<Entry>, Duration)| weigh(v.0.weight() + ENTRY_OVERHEAD))
                .expire_after(Ttl)
                .build_with_hasher(KeyState::new()),
            partitions: Cache::builder()
                .max_capacity((max_bytes / 8).max(1))
                .weigher(move |_k, v: &(Arc<[Candidate]>, Duration)| {
                    weigh(v.0.iter().map(Candidate::weight).sum())
                })
                .expire_after(Ttl)
                .build_with_hasher(KeyState::new()),
        }
    }

    /// Entries held now (moka applies evictions lazily; see [`run_pending`](Self::run_pending)).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the entries are weighed at.
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Applies pending evictions now (tests and metrics).
    pub fn run_pending(&self) {
        self.entries.run_pending_tasks();
        self.partitions.run_pending_tasks();
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>> {
        let found = self.entries.get(key).map(|(e, _)| e);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()> {
        self.entries.insert(*key, (entry, ttl));
        Box::pin(std::future::ready(Ok(())))
    }

    fn candidates(&self, partition: &Key) -> StoreFuture<'_, Vec<Candidate>> {
        let list = self
            .partitions
            .get(partition)
            .map(|(list, _)| list.to_vec())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn add_candidate(
        &self,
        partition: &Key,
        candidate: Candidate,
        keep: usize,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        // Copy on write under moka's per-key lock: concurrent additions to one partition
        // never lose each other.
        self.partitions.entry(*partition).and_upsert_with(|old| {
            let newest = candidate.key;
            let mut list = Vec::with_capacity(keep);
            list.push(candidate);
            if let Some(old) = old {
                let (old, _) = old.into_value();
                list.extend(
                    old.iter()
                        .filter(|c| c.key != newest)
                        .take(keep.saturating_sub(1))
                        .cloned(),
                );
            }
            (Arc::from(list), ttl)
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get_now(&self, key: &Key) -> Option<Result<Option<Arc<Entry>>, super::StoreError>> {
        Some(Ok(self.entries.get(key).map(|(e, _)| e)))
    }

    fn put_now(&self, key: &Key, entry: &Arc<Entry>, ttl: Duration) -> bool {
        self.entries.insert(*key, (entry.clone(), ttl));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize) -> Arc<Entry> {
        Arc::new(Entry::from_json(vec![b' '; size].into(), None, 0))
    }

    #[tokio::test]
    async fn bounded_in_bytes() {
        let store = MemoryStore::new(64 * 1024);
        for i in 0..200u8 {
            store
                .put(&Key([i; 32]), entry(1000), Duration::from_secs(60))
                .await
                .unwrap();
        }
        store.run_pending();
        assert!(
            store.weighted_bytes() <= 64 * 1024,
            "{}",
            store.weighted_bytes()
        );
        assert!(store.len() < 200);
    }

    #[tokio::test]
    async fn partitions_keep_the_newest() {
        let store = MemoryStore::new(1 << 20);
        let p = Key([9; 32]);
        for i in 0..5u8 {
            let c = Candidate {
                key: Key([i; 32]),
                embedder: "e".into(),
                text: format!("q{i}").into(),
                vector: vec![1.0].into(),
            };
            store
                .add_candidate(&p, c, 3, Duration::from_secs(60))
                .await
                .unwrap();
        }
        let list = store.candidates(&p).await.unwrap();
        let texts: Vec<&str> = list.iter().map(|c| &*c.text).collect();
        assert_eq!(texts, ["q4", "q3", "q2"]);
    }
}
