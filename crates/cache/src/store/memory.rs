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
/// one for a smaller bound. An entry weighed past what a shard admits
/// ([`shard_bytes`](Self::shard_bytes): 97% of the shard) is not kept; with a
/// bound of at least four of the largest entry, every entry the store is made for is admitted.
///
/// Cheap to clone: clones share the entries.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    entries: Arc<Shards<Arc<Entry>>>,
    partitions: Arc<Shards<Arc<[Candidate]>>>,
}

/// The most shards a store is split into: enough that workers seldom wait on one another's
/// lock (an entry is read and written in well under a microsecond).
const MAX_SHARDS: u64 = 16;

/// The share of a shard that entries read again may hold (quick_cache's default, set here so
/// [`MemoryStore::shard_bytes`] can say it): also the largest entry a shard admits.
const HOT_SHARE: f64 = 0.97;

/// The smallest shard of semantic candidate lists (4 MiB): a full list (256 questions with
/// their vectors) is well under a megabyte.
const PARTITION_SHARD_MIN: u64 = 4 << 20;

/// Past this a TTL is taken as forever (a century), where adding it to now could overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What one entry costs this store beside its bytes: its slot in a shard (key, value, links),
/// the shard's table and the shared entry; [`weight`] adds a sixteenth of the body for the
/// allocator rounding it up to its size class (classes are at most an eighth apart). Measured
/// at the bound with this weighing (200,000 answers put into 64 MiB, mimalloc, quick_cache
/// 0.7): 67,440 answers of 515 bytes held 63.9 MiB (993 bytes each), 27,208 of 1,900 bytes
/// held 65.8 MiB (2,536 each): the bound is the memory held, within 3%. (moka 0.12 held
/// 1,121 bytes for a 515-byte answer, 2,623 for a 1,900-byte one.)
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
/// each at least `shard_min` bytes.
fn cache<V: Clone>(bytes: u64, shard_min: u64) -> Shards<V>
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
        .hot_allocation(HOT_SHARE)
        // About how many entries of a short answer the bound holds: it sizes the record of
        // keys evicted lately (the tables themselves grow as entries come).
        .estimated_items_capacity((bytes / 1024).clamp(32 * shards, 1 << 20) as usize)
        .weight_capacity(bytes)
        .build()
        .expect("a weight capacity and an item estimate are set");
    Cache::with_options(options, Weigh, KeyState::new(), Default::default())
}

/// When an entry put now with `ttl` stops being served.
fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl.min(FOREVER)).unwrap_or(now)
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
    /// A store of at most `max_bytes`, made for answers of up to 1 MiB. Entries are weighed
    /// at the memory they hold (measured), so the bound is the memory held; semantic
    /// candidates get an eighth of the bound on top.
    pub fn new(max_bytes: u64) -> Self {
        Self::with_largest_entry(max_bytes, 1 << 20)
    }

    /// A store of at most `max_bytes` made for answers of up to `largest` bytes (the cache's
    /// `max_entry_bytes`): its shards hold four such answers each at least, so one of them
    /// evicts no more than a quarter of a shard.
    pub fn with_largest_entry(max_bytes: u64, largest: usize) -> Self {
        let shard_min = weight(largest).saturating_mul(4);
        Self {
            entries: Arc::new(cache(max_bytes, shard_min)),
            partitions: Arc::new(cache(max_bytes / 8, PARTITION_SHARD_MIN)),
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

    /// The largest entry, as weighed (its bytes and what it costs the store), that a shard
    /// admits: 97% of the shard (the share entries read again may hold).
    pub fn shard_bytes(&self) -> u64 {
        // As quick_cache computes what it admits.
        (self.entries.shard_capacity() as f64 * HOT_SHARE) as u64
    }

    /// Keeps `entry` under `key` for `ttl`.
    fn insert(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) {
        let stored = Stored {
            value: entry,
            expires: deadline(ttl),
        };
        self.entries.insert(*key, stored);
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>> {
        Box::pin(std::future::ready(Ok(fresh(&self.entries, key))))
    }

    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()> {
        self.insert(key, entry, ttl);
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
        // The list is replaced through quick_cache's placeholder: an addition to a partition
        // being added to waits for the other (its thread blocks for the copy of one list), so
        // none is lost, and a reader meanwhile finds no list (a semantic miss). Inserted
        // through the placeholder, the new list is admitted and evicts as any entry: lists
        // stay within the bound, and one weighed past what a shard admits is dropped. A list
        // past its TTL is started afresh.
        let now = Instant::now();
        let expires = deadline(ttl);
        let newest = move |old: Option<&[Candidate]>| -> Stored<Arc<[Candidate]>> {
            let key = candidate.key;
            let mut list = Vec::with_capacity(keep);
            list.push(candidate);
            if let Some(old) = old {
                let older = old.iter().filter(|c| c.key != key);
                list.extend(older.take(keep.saturating_sub(1)).cloned());
            }
            Stored {
                value: Arc::from(list),
                expires,
            }
        };
        let replace =
            |_: &Key, _: &mut Stored<Arc<[Candidate]>>| EntryAction::<()>::ReplaceWithGuard;
        match self.partitions.entry(partition, None, replace) {
            EntryResult::Replaced(slot, old) => {
                let _ = slot.insert(newest((old.expires > now).then_some(&*old.value)));
            }
            EntryResult::Vacant(slot) => {
                let _ = slot.insert(newest(None));
            }
            // The callback only replaces, and without a timeout there is none.
            EntryResult::Retained(()) | EntryResult::Removed(..) | EntryResult::Timeout => {}
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
        self.insert(key, entry.clone(), ttl);
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
        let admits = |shard: u64| (shard as f64 * HOT_SHARE) as u64;
        // 64 MiB for 1 MiB answers: 8 shards of 8 MiB (at 16, a shard of 4 MiB would hold
        // fewer than four with what each entry costs the store).
        assert_eq!(MemoryStore::new(64 << 20).shard_bytes(), admits(8 << 20));
        assert_eq!(
            MemoryStore::with_largest_entry(64 << 20, 4096).shard_bytes(),
            admits(4 << 20)
        );
        assert_eq!(MemoryStore::new(1 << 20).shard_bytes(), admits(1 << 20));
        let store = MemoryStore::with_largest_entry(1 << 30, 1 << 20);
        assert_eq!(store.shard_bytes(), admits((1 << 30) / 16));
        // A store too small for four: one shard, the whole bound.
        let store = MemoryStore::with_largest_entry(3 << 20, 1 << 20);
        assert_eq!(store.shard_bytes(), admits(3 << 20));
        // Nothing overflows at the extremes.
        assert_eq!(
            MemoryStore::with_largest_entry(0, usize::MAX).shard_bytes(),
            0
        );
        assert!(MemoryStore::with_largest_entry(u64::MAX, usize::MAX).shard_bytes() > 0);

        let store = MemoryStore::with_largest_entry(8 << 20, 1 << 20);
        let admitted = store.shard_bytes();
        assert_eq!(admitted, admits(8 << 20));
        let (fits, too_big) = (Key([1; 32]), Key([2; 32]));
        let ttl = Duration::from_secs(60);
        // The largest the store is made for is admitted; one weighed a byte past what a shard
        // admits is not.
        store.put(&fits, entry(1 << 20), ttl).await.unwrap();
        let past = (0..admitted as usize)
            .rev()
            .find(|&n| weight(n) <= admitted)
            .unwrap()
            + 1;
        store.put(&too_big, entry(past), ttl).await.unwrap();
        assert!(store.get(&fits).await.unwrap().is_some());
        assert!(store.get(&too_big).await.unwrap().is_none());
        store.put(&too_big, entry(past - 1), ttl).await.unwrap();
        assert!(store.get(&too_big).await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_too_long_to_add_to_now_is_forever() {
        let store = MemoryStore::new(1 << 20);
        let key = Key([3; 32]);
        store.put(&key, entry(10), Duration::MAX).await.unwrap();
        tokio::time::advance(Duration::from_secs(10 * 365 * 86_400)).await;
        assert!(store.get(&key).await.unwrap().is_some());
        let p = Key([4; 32]);
        let c = Candidate {
            key,
            embedder: "e".into(),
            text: "q".into(),
            vector: vec![1.0].into(),
        };
        store.add_candidate(&p, c, 3, Duration::MAX).await.unwrap();
        assert_eq!(store.candidates(&p).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_growing_candidate_list_stays_within_the_bound() {
        // Candidates get an eighth of 64 KiB: one shard of 8 KiB. Each candidate weighs
        // about 100 bytes, and the list may keep 1,000 of them.
        let store = MemoryStore::new(64 * 1024);
        let p = Key([5; 32]);
        let mut longest = 0;
        for i in 0..500u16 {
            let mut k = [0; 32];
            k[..2].copy_from_slice(&i.to_le_bytes());
            let c = Candidate {
                key: Key(k),
                embedder: "e".into(),
                text: format!("question {i:>24}").into(),
                vector: vec![1.0; 8].into(),
            };
            store
                .add_candidate(&p, c, 1000, Duration::from_secs(60))
                .await
                .unwrap();
            let list = store.candidates(&p).await.unwrap();
            let weighed: usize = list.iter().map(Candidate::weight).sum();
            assert!(weighed <= 8 * 1024, "{weighed} bytes after {i}");
            longest = longest.max(list.len());
        }
        // It did grow (and, past the shard, started again).
        assert!(longest > 50, "{longest}");
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
        let store = MemoryStore::new(16 << 20);
        let p = Key([7; 32]);
        let (threads, each) = (8u16, 100u16);
        let start = std::sync::Barrier::new(threads.into());
        std::thread::scope(|s| {
            for t in 0..threads {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..each {
                        let mut k = [0; 32];
                        k[..2].copy_from_slice(&(t * each + i).to_le_bytes());
                        let c = Candidate {
                            key: Key(k),
                            embedder: "e".into(),
                            text: format!("q{t}-{i}").into(),
                            vector: vec![1.0].into(),
                        };
                        // The store's future is ready: the addition is done when it returns.
                        drop(store.add_candidate(&p, c, 10_000, Duration::from_secs(60)));
                    }
                });
            }
        });
        let list = store.candidates(&p).await.unwrap();
        assert_eq!(list.len(), usize::from(threads * each));
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
