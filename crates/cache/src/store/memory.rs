//! The in-process store: a byte-weighted cache (quick_cache: CLOCK-Pro eviction in shards,
//! each behind its own lock) with a TTL per entry.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::Weighter;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use tokio::time::Instant;

use super::{CacheStore, Candidate, StoreFuture};
use crate::entry::Entry;
use crate::key::{Key, KeyState};

/// Entries in this process's memory, bounded in bytes: when a new one would not fit, the
/// coldest go (CLOCK-Pro: an entry read since it came in is kept over one that was not, and a
/// key evicted and asked for again comes back hot); an entry past its TTL is a miss and goes
/// when it is read, or when eviction reaches it.
///
/// The bound is split among up to 16 shards, each with its own lock: as many as still hold
/// four of the largest entry the store is made for (1 MiB, the cache's default
/// `max_entry_bytes`, unless [`with_largest_entry`](Self::with_largest_entry) says otherwise),
/// one for a smaller bound. An entry larger than a shard ([`shard_bytes`](Self::shard_bytes))
/// is not kept.
///
/// Cheap to clone: clones share the entries.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    entries: Arc<Shards<Arc<Entry>>>,
    partitions: Arc<Shards<Arc<[Candidate]>>>,
    shard_bytes: u64,
}

/// The most shards a store is split into: enough that workers seldom wait on one another's
/// lock (an entry is read and written in well under a microsecond).
const MAX_SHARDS: u64 = 16;

/// What one entry costs this store beside its bytes: its slot in a shard (key, value, links),
/// the shard's table and the shared entry. Measured at the bound (200,000 answers put into
/// 64 MiB, mimalloc, quick_cache 0.7): 962 resident bytes per entry of a 515-byte answer,
/// 2,525 of a 1,900-byte one; the rest of the difference is the allocator rounding a body up
/// to its size class (classes are at most an eighth apart: a sixteenth on average), which
/// [`weight`] adds. So weighed, the same runs held 63.9 and 65.8 MiB: the bound is the memory
/// held, within 3%. (With moka 0.12 an entry cost 640 bytes more than its body.)
const ENTRY_OVERHEAD: usize = 448;

/// What an entry of `body` bytes is weighed at: the memory it holds.
fn weight(body: usize) -> u64 {
    let body = body as u64;
    body.saturating_add(body / 16)
        .saturating_add(ENTRY_OVERHEAD as u64)
}

/// The entries (or candidate lists) and their locks.
type Shards<V> = Cache<Key, Stored<V>, Weigh, KeyState>;

/// A value and when it stops being served.
#[derive(Clone, Debug)]
struct Stored<V> {
    value: V,
    expires: Instant,
}

/// Weighs entries at the memory they hold ([`weight`]), candidate lists at their bytes.
#[derive(Clone, Copy, Debug)]
struct Weigh;

impl Weighter<Key, Stored<Arc<Entry>>> for Weigh {
    fn weight(&self, _key: &Key, stored: &Stored<Arc<Entry>>) -> u64 {
        weight(stored.value.weight())
    }
}

impl Weighter<Key, Stored<Arc<[Candidate]>>> for Weigh {
    fn weight(&self, _key: &Key, stored: &Stored<Arc<[Candidate]>>) -> u64 {
        stored.value.iter().map(|c| c.weight() as u64).sum()
    }
}

/// A cache of `bytes`, in as many shards (a power of two, at most [`MAX_SHARDS`]) as keep
/// each at least `shard_min` bytes; and the bytes of one shard.
fn cache<V: Clone>(bytes: u64, shard_min: u64) -> (Shards<V>, u64)
where
    Weigh: Weighter<Key, Stored<V>>,
{
    let bytes = bytes.max(1);
    let mut shards = 1;
    while shards < MAX_SHARDS && bytes / (shards * 2) >= shard_min {
        shards *= 2;
    }
    let options = quick_cache::OptionsBuilder::new()
        .shards(shards as usize)
        // About how many entries of a short answer the bound holds: it sizes the record of
        // keys evicted lately (the tables themselves grow as entries come).
        .estimated_items_capacity((bytes / 1024).clamp(32 * shards, 1 << 20) as usize)
        .weight_capacity(bytes)
        .build()
        .expect("a weight capacity and an item estimate are set");
    let cache = Cache::with_options(options, Weigh, KeyState::new(), Default::default());
    (cache, bytes / shards)
}

/// The value under `key` while its TTL lasts; past it, the entry is removed (unless a new one
/// took its place meanwhile) and `None`.
fn fresh<V: Clone>(cache: &Shards<V>, key: &Key) -> Option<V>
where
    Weigh: Weighter<Key, Stored<V>>,
{
    let stored = cache.get(key)?;
    let now = Instant::now();
    if now < stored.expires {
        return Some(stored.value);
    }
    cache.remove_if(key, |s| s.expires <= now);
    None
}

impl MemoryStore {
    /// A store of at most `max_bytes` (entries weighed by the memory they hold, measured, so
    /// the bound is the memory held.
    /// Semantic candidates get an eighth of the bound on top), made for answers of up to
    /// 1 MiB.
    pub fn new(max_bytes: u64) -> Self {
        Self::with_largest_entry(max_bytes, 1 << 20)
    }

    /// A store of at most `max_bytes` made for answers of up to `largest` bytes (the cache's
    /// `max_entry_bytes`): its shards hold four such answers each at least, so one of them
    /// evicts no more than a quarter of a shard.
    pub fn with_largest_entry(max_bytes: u64, largest: usize) -> Self {
        let shard_min = weight(largest).saturating_mul(4);
        let (entries, shard_bytes) = cache(max_bytes, shard_min);
        let (partitions, _) = cache(max_bytes / 8, shard_min / 8);
        Self {
            entries: Arc::new(entries),
            partitions: Arc::new(partitions),
            shard_bytes,
        }
    }

    /// Entries held now (past their TTL included, until read or evicted).
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the entries are weighed at.
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// The bytes of one shard: the largest entry (its bytes and what an entry costs the
    /// store) that can be kept.
    pub fn shard_bytes(&self) -> u64 {
        self.shard_bytes
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>> {
        Box::pin(std::future::ready(Ok(fresh(&self.entries, key))))
    }

    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()> {
        let expires = Instant::now() + ttl;
        self.entries.insert(
            *key,
            Stored {
                value: entry,
                expires,
            },
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn candidates(&self, partition: &Key) -> StoreFuture<'_, Vec<Candidate>> {
        let list = fresh(&self.partitions, partition)
            .map(|list| list.to_vec())
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
        // Copy on write under the shard's lock: concurrent additions to one partition never
        // lose each other. A list past its TTL is started afresh.
        let now = Instant::now();
        let expires = now + ttl;
        let newest = |candidate: Candidate, old: Option<&[Candidate]>| -> Arc<[Candidate]> {
            let key = candidate.key;
            let mut list = Vec::with_capacity(keep);
            list.push(candidate);
            if let Some(old) = old {
                let older = old.iter().filter(|c| c.key != key);
                list.extend(older.take(keep.saturating_sub(1)).cloned());
            }
            Arc::from(list)
        };
        let mut candidate = Some(candidate);
        let found = self.partitions.entry(partition, None, |_, stored| {
            let Some(candidate) = candidate.take() else {
                return EntryAction::Retain(());
            };
            let old = (stored.expires > now).then_some(&*stored.value);
            *stored = Stored {
                value: newest(candidate, old),
                expires,
            };
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = found
            && let Some(candidate) = candidate.take()
        {
            // Refused only when the list outweighs a shard: it is not kept, as an entry
            // that size would not be.
            let _ = slot.insert(Stored {
                value: newest(candidate, None),
                expires,
            });
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get_now(&self, key: &Key) -> Option<Result<Option<Arc<Entry>>, super::StoreError>> {
        Some(Ok(fresh(&self.entries, key)))
    }

    fn put_now(&self, key: &Key, entry: &Arc<Entry>, ttl: Duration) -> bool {
        let stored = Stored {
            value: entry.clone(),
            expires: Instant::now() + ttl,
        };
        self.entries.insert(*key, stored);
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
        assert!(
            store.weighted_bytes() <= 64 * 1024,
            "{}",
            store.weighted_bytes()
        );
        assert!(store.len() < 200);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_past_its_ttl_is_a_miss_and_goes() {
        let store = MemoryStore::new(1 << 20);
        let key = Key([1; 32]);
        store
            .put(&key, entry(10), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(store.get(&key).await.unwrap().is_some());
        assert_eq!(store.len(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(store.get(&key).await.unwrap().is_none());
        assert!(store.get_now(&key).unwrap().unwrap().is_none());
        assert_eq!(store.len(), 0);
        assert_eq!(store.weighted_bytes(), 0);
        // A new entry under the key lives its own TTL.
        store
            .put(&key, entry(10), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(store.get(&key).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn shards_hold_four_of_the_largest_entry_and_a_larger_one_is_not_kept() {
        // 64 MiB for 1 MiB answers: 8 shards of 8 MiB (at 16, a shard of 4 MiB would hold
        // fewer than four with what each entry costs the store).
        assert_eq!(MemoryStore::new(64 << 20).shard_bytes(), 8 << 20);
        assert_eq!(
            MemoryStore::with_largest_entry(64 << 20, 4096).shard_bytes(),
            4 << 20
        );
        assert_eq!(MemoryStore::new(1 << 20).shard_bytes(), 1 << 20);
        let store = MemoryStore::with_largest_entry(1 << 30, 1 << 20);
        assert_eq!(store.shard_bytes(), (1 << 30) / 16);
        // A store too small for four: one shard, the whole bound.
        let store = MemoryStore::with_largest_entry(3 << 20, 1 << 20);
        assert_eq!(store.shard_bytes(), 3 << 20);

        let store = MemoryStore::with_largest_entry(8 << 20, 1 << 20);
        let shard = store.shard_bytes();
        assert_eq!(shard, 8 << 20);
        let fits = Key([1; 32]);
        let too_big = Key([2; 32]);
        store
            .put(&fits, entry((1 << 20) - 1), Duration::from_secs(60))
            .await
            .unwrap();
        store
            .put(
                &too_big,
                // Weighed past the shard: its bytes alone fill it.
                entry(shard as usize),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(store.get(&fits).await.unwrap().is_some());
        assert!(store.get(&too_big).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_entry_read_outlives_a_stream_of_entries_never_read() {
        // Room for about fifty 1 KB entries; one read often, five hundred that never are.
        let store = MemoryStore::with_largest_entry(64 * 1024, 1024);
        let kept = Key([0xff; 32]);
        store
            .put(&kept, entry(1000), Duration::from_secs(60))
            .await
            .unwrap();
        for i in 0..500u16 {
            let mut k = [0; 32];
            k[..2].copy_from_slice(&i.to_le_bytes());
            store
                .put(&Key(k), entry(1000), Duration::from_secs(60))
                .await
                .unwrap();
            assert!(
                store.get(&kept).await.unwrap().is_some(),
                "evicted after {i}"
            );
        }
        assert!(store.weighted_bytes() <= 64 * 1024);
    }

    #[tokio::test]
    async fn concurrent_additions_to_a_partition_lose_none() {
        let store = MemoryStore::new(1 << 20);
        let p = Key([7; 32]);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..25u8 {
                        let c = Candidate {
                            key: Key([t * 25 + i; 32]),
                            embedder: "e".into(),
                            text: format!("q{t}-{i}").into(),
                            vector: vec![1.0].into(),
                        };
                        let added = store.add_candidate(&p, c, 1000, Duration::from_secs(60));
                        drop(added);
                    }
                });
            }
        });
        assert_eq!(store.candidates(&p).await.unwrap().len(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_past_its_ttl_starts_afresh() {
        let store = MemoryStore::new(1 << 20);
        let p = Key([9; 32]);
        let candidate = |i: u8| Candidate {
            key: Key([i; 32]),
            embedder: "e".into(),
            text: format!("q{i}").into(),
            vector: vec![1.0].into(),
        };
        store
            .add_candidate(&p, candidate(1), 3, Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(store.candidates(&p).await.unwrap().is_empty());
        store
            .add_candidate(&p, candidate(1), 3, Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        store
            .add_candidate(&p, candidate(2), 3, Duration::from_secs(10))
            .await
            .unwrap();
        let texts: Vec<_> = store
            .candidates(&p)
            .await
            .unwrap()
            .iter()
            .map(|c| c.text.to_string())
            .collect();
        assert_eq!(texts, ["q2"]);
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
