//! Where entries live: one trait, an in-process store and a Redis store.
//!
//! A store keeps encoded answers under their exact [`Key`] with a time to live, and, for
//! semantic mode, a bounded list of candidates per partition (the question's text, its
//! vector and the key of its answer). Stores never decide freshness or shape: the layer does.
//! A store that fails returns an error; the layer counts it and treats it as a miss.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis_cache::entry::Entry;
//! use portcullis_cache::key::Key;
//! use portcullis_cache::store::{CacheStore, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryStore::new(1 << 20);
//! let entry = Arc::new(Entry::from_json("{}".into(), None, 0));
//! store.put(&Key([1; 32]), entry.clone(), Duration::from_secs(60)).await.unwrap();
//! assert_eq!(store.get(&Key([1; 32])).await.unwrap(), Some(entry));
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;

use crate::entry::Entry;
use crate::key::Key;

/// A store operation in flight.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failed (unreachable, timed out, answered garbage).
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A question cached in semantic mode: its text, its vector and the key of its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The exact key of the answer.
    pub key: Key,
    /// The id of the embedder that made `vector` (vectors of other embedders never compare).
    pub embedder: Arc<str>,
    /// The question's text (the last user turn).
    pub text: Arc<str>,
    /// Its vector.
    pub vector: Arc<[f32]>,
}

impl Candidate {
    /// The size it is weighed at.
    pub fn weight(&self) -> usize {
        self.text.len() + self.embedder.len() + self.vector.len() * 4 + 64
    }

    /// Encoded for stores outside the process.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight());
        out.extend_from_slice(&self.key.0);
        for s in [&*self.embedder, &*self.text] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&(self.vector.len() as u32).to_le_bytes());
        for x in self.vector.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Decodes what [`encode`](Self::encode) wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if rest.len() < n {
                return None;
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Some(head)
        }
        fn len(rest: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(rest, 4)?.try_into().ok()?) as usize)
        }
        fn string(rest: &mut &[u8]) -> Option<Arc<str>> {
            let n = len(rest)?;
            Some(Arc::from(std::str::from_utf8(take(rest, n)?).ok()?))
        }
        let mut rest = bytes;
        let key = Key(take(&mut rest, 32)?.try_into().ok()?);
        let embedder = string(&mut rest)?;
        let text = string(&mut rest)?;
        let n = len(&mut rest)?;
        let raw = take(&mut rest, n.checked_mul(4)?)?;
        if !rest.is_empty() {
            return None;
        }
        let vector = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Some(Self {
            key,
            embedder,
            text,
            vector,
        })
    }
}

/// Where cache entries live.
pub trait CacheStore: Send + Sync + fmt::Debug + 'static {
    /// The entry under `key`, if any (expired entries may be returned: the layer checks age).
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>>;

    /// Stores `entry` under `key` for `ttl`.
    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()>;

    /// The candidates of a semantic partition, newest first.
    fn candidates(&self, partition: &Key) -> StoreFuture<'_, Vec<Candidate>>;

    /// Adds a candidate to a partition, keeping at most `keep` (the oldest go first); the
    /// partition lives `ttl` past its last addition.
    fn add_candidate(
        &self,
        partition: &Key,
        candidate: Candidate,
        keep: usize,
        ttl: Duration,
    ) -> StoreFuture<'_, ()>;

    /// A short name for logs and metrics (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// [`get`](Self::get) answered at once, without a future, by a store that can (one in
    /// this process); `None` for a store that must do I/O.
    fn get_now(&self, key: &Key) -> Option<Result<Option<Arc<Entry>>, StoreError>> {
        let _ = key;
        None
    }

    /// [`put`](Self::put) done at once by a store that can; `false` for one that must do I/O
    /// (then `put` is called).
    fn put_now(&self, key: &Key, entry: &Arc<Entry>, ttl: Duration) -> bool {
        let _ = (key, entry, ttl);
        false
    }
}

impl<T: CacheStore + ?Sized> CacheStore for Arc<T> {
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>> {
        (**self).get(key)
    }
    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()> {
        (**self).put(key, entry, ttl)
    }
    fn candidates(&self, partition: &Key) -> StoreFuture<'_, Vec<Candidate>> {
        (**self).candidates(partition)
    }
    fn add_candidate(
        &self,
        partition: &Key,
        candidate: Candidate,
        keep: usize,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        (**self).add_candidate(partition, candidate, keep, ttl)
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn get_now(&self, key: &Key) -> Option<Result<Option<Arc<Entry>>, StoreError>> {
        (**self).get_now(key)
    }
    fn put_now(&self, key: &Key, entry: &Arc<Entry>, ttl: Duration) -> bool {
        (**self).put_now(key, entry, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_round_trip_and_refuse_garbage() {
        let c = Candidate {
            key: Key([7; 32]),
            embedder: "ngram-v1".into(),
            text: "What is 2+2?".into(),
            vector: vec![0.5, -0.25, 1.0].into(),
        };
        assert_eq!(Candidate::decode(&c.encode()), Some(c.clone()));
        let bytes = c.encode();
        assert_eq!(Candidate::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Candidate::decode(&bytes[..20]), None);
    }
}
