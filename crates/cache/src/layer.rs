//! The cache's shared engine (store, coalescing, clock, matcher) and the layer.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::BuildError;
use tower_layer::Layer;

use crate::entry::Entry;
use crate::key::Key;
use crate::record::Inflight;
use crate::semantic::{Embedder, Matcher, NgramEmbedder};
use crate::service::Cache;
use crate::settings::CacheSettings;
use crate::store::{CacheStore, Candidate, MemoryStore};

/// What every cache layer of a process shares: the store, the misses in flight (so identical
/// misses coalesce across layers), the clock and the semantic matcher, and the limits.
///
/// Build one with [`CacheEngine::builder`]; make layers from it with [`CacheEngine::layer`].
#[derive(Debug)]
pub struct CacheEngine {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) inflight: Inflight,
    pub(crate) clock: portcullis_core::clock::Clock,
    pub(crate) matcher: Matcher,
    pub(crate) max_entry_bytes: usize,
    pub(crate) store_timeout: Duration,
    pub(crate) coalesce_wait: Duration,
    pub(crate) partition_size: usize,
    /// For an embedder that takes milliseconds (BERT): the blocking pool's permits and the
    /// deadline past which a lookup is a miss. `None`: embed on the request's task.
    pub(crate) embed_pool: Option<(Arc<tokio::sync::Semaphore>, Duration)>,
}

impl CacheEngine {
    /// A builder with the defaults: a 64 MiB memory store, 1 MiB entries, a 100 ms store
    /// deadline, followers of a miss waiting up to 30 s, the n-gram embedder at its default
    /// threshold, 256 questions kept per semantic partition.
    pub fn builder() -> CacheEngineBuilder {
        CacheEngineBuilder::default()
    }

    /// A layer caching with `settings` (`None`: off unless a request turns it on with
    /// `x-portkey-cache`) for the target named `target` (its identity in the key: a provider
    /// name).
    pub fn layer(self: &Arc<Self>, settings: Option<CacheSettings>, target: &str) -> CacheLayer {
        CacheLayer {
            engine: self.clone(),
            settings,
            target: Arc::from(target),
        }
    }

    /// The vector of a question: at once, or off the async threads within the deadline for a
    /// blocking embedder (`None`: past it, a miss).
    pub(crate) async fn embed(&self, text: &str) -> Option<Vec<f32>> {
        match &self.embed_pool {
            None => Some(self.matcher.embed(text)),
            Some((pool, deadline)) => {
                let embedder = self.matcher.embedder().clone();
                let vector = crate::semantic::embed_with_deadline(
                    embedder,
                    text.to_owned(),
                    pool,
                    *deadline,
                )
                .await;
                if vector.is_none() {
                    metrics::counter!("portcullis_cache_embed_timeouts_total").increment(1);
                }
                vector
            }
        }
    }

    /// The store's kind (`memory`, `redis`).
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Misses being fetched now (each with its waiting followers).
    pub fn misses_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The store's entry under `key`, `None` on a miss or a failure (counted).
    pub(crate) async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        if let Some(now) = self.get_now(key) {
            return now;
        }
        match tokio::time::timeout(self.store_timeout, self.store.get(key)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => self.failed("get", &e),
            Err(_) => self.failed("get", &"timed out"),
        }
    }

    /// [`get`](Self::get) without waiting, for a store that answers in place (memory);
    /// `None` from a store that must be waited for (Redis).
    pub(crate) fn get_now(&self, key: &Key) -> Option<Option<Arc<Entry>>> {
        let now = self.store.get_now(key)?;
        Some(now.unwrap_or_else(|e| self.failed("get", &e)))
    }

    pub(crate) async fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) {
        if self.store.put_now(key, &entry, ttl) {
            return;
        }
        match tokio::time::timeout(self.store_timeout, self.store.put(key, entry, ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed::<()>("put", &e).unwrap_or(()),
            Err(_) => self.failed::<()>("put", &"timed out").unwrap_or(()),
        }
    }

    pub(crate) async fn candidates(&self, partition: &Key) -> Vec<Candidate> {
        match tokio::time::timeout(self.store_timeout, self.store.candidates(partition)).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => self.failed("candidates", &e).unwrap_or_default(),
            Err(_) => self.failed("candidates", &"timed out").unwrap_or_default(),
        }
    }

    pub(crate) async fn add_candidate(&self, partition: &Key, candidate: Candidate, ttl: Duration) {
        let add = self
            .store
            .add_candidate(partition, candidate, self.partition_size, ttl);
        match tokio::time::timeout(self.store_timeout, add).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed::<()>("add_candidate", &e).unwrap_or(()),
            Err(_) => self
                .failed::<()>("add_candidate", &"timed out")
                .unwrap_or(()),
        }
    }

    /// A store failure: counted and logged, and a miss for the request.
    fn failed<T>(&self, op: &'static str, why: &dyn std::fmt::Display) -> Option<T> {
        metrics::counter!(
            "portcullis_cache_store_errors_total",
            "store" => self.store.kind(),
            "op" => op,
        )
        .increment(1);
        tracing::warn!(store = self.store.kind(), op, error = %why, "cache store failed; treated as a miss");
        None
    }
}

/// Builds a [`CacheEngine`].
#[derive(Debug, Default)]
pub struct CacheEngineBuilder {
    store: Option<Arc<dyn CacheStore>>,
    max_entry_bytes: Option<usize>,
    store_timeout: Option<Duration>,
    coalesce_wait: Option<Duration>,
    embedder: Option<Arc<dyn Embedder>>,
    threshold: Option<f32>,
    partition_size: Option<usize>,
    embed_pool: Option<(usize, Duration)>,
}

impl CacheEngineBuilder {
    /// Where entries live (default: a 64 MiB [`MemoryStore`]).
    pub fn store(mut self, store: impl CacheStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The largest answer stored, in bytes (default 1 MiB); larger ones pass uncached.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = Some(bytes);
        self
    }

    /// How long a store operation may take before it counts as a miss (default 100 ms).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = Some(timeout);
        self
    }

    /// How long identical requests wait for the one fetching their answer before they fetch
    /// it themselves (default 30 s).
    pub fn coalesce_wait(mut self, wait: Duration) -> Self {
        self.coalesce_wait = Some(wait);
        self
    }

    /// The semantic embedder (default [`NgramEmbedder`]).
    pub fn embedder(mut self, embedder: impl Embedder) -> Self {
        self.embedder = Some(Arc::new(embedder));
        self
    }

    /// Embeds on the blocking pool, at most `permits` at once, giving up (a miss) after
    /// `deadline`: for an embedder that takes milliseconds, such as the BERT one.
    pub fn blocking_embedder(mut self, permits: usize, deadline: Duration) -> Self {
        self.embed_pool = Some((permits, deadline));
        self
    }

    /// The semantic threshold (default: the embedder's own).
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// Questions kept per semantic partition (default 256; a lookup compares against all).
    pub fn partition_size(mut self, n: usize) -> Self {
        self.partition_size = Some(n);
        self
    }

    /// The engine. Fails when a value is out of range (the error names it).
    pub fn build(self) -> Result<Arc<CacheEngine>, BuildError> {
        if self.max_entry_bytes == Some(0) {
            return Err(BuildError::at("max_entry_bytes", "must be > 0"));
        }
        if self.store_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::at("store_timeout", "must be > 0"));
        }
        if let Some(t) = self.threshold
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(BuildError::at(
                "threshold",
                format!("must be in (0, 1], got {t}"),
            ));
        }
        if self.partition_size == Some(0) {
            return Err(BuildError::at("partition_size", "must be > 0"));
        }
        if let Some((permits, deadline)) = self.embed_pool
            && (permits == 0 || deadline.is_zero())
        {
            return Err(BuildError::at(
                "blocking_embedder",
                "permits and deadline must be > 0",
            ));
        }
        let embedder = self
            .embedder
            .unwrap_or_else(|| Arc::new(NgramEmbedder::new()));
        let max_entry_bytes = self.max_entry_bytes.unwrap_or(1 << 20);
        Ok(Arc::new(CacheEngine {
            store: self.store.unwrap_or_else(|| {
                Arc::new(MemoryStore::with_largest_entry(64 << 20, max_entry_bytes))
            }),
            inflight: Inflight::default(),
            clock: portcullis_core::clock::Clock::system(),
            matcher: Matcher::new(embedder, self.threshold),
            max_entry_bytes,
            store_timeout: self.store_timeout.unwrap_or(Duration::from_millis(100)),
            coalesce_wait: self.coalesce_wait.unwrap_or(Duration::from_secs(30)),
            partition_size: self.partition_size.unwrap_or(256),
            embed_pool: self
                .embed_pool
                .map(|(n, d)| (Arc::new(tokio::sync::Semaphore::new(n)), d)),
        }))
    }
}

/// Caches the answers of the service it wraps (see the [crate docs](crate)).
#[derive(Clone, Debug)]
pub struct CacheLayer {
    pub(crate) engine: Arc<CacheEngine>,
    pub(crate) settings: Option<CacheSettings>,
    pub(crate) target: Arc<str>,
}

impl CacheLayer {
    /// A layer over a default engine (64 MiB in memory) with `settings`, for one target.
    pub fn new(settings: CacheSettings, target: &str) -> Self {
        CacheEngine::builder()
            .build()
            .expect("the defaults are valid")
            .layer(Some(settings), target)
    }

    /// The engine it shares.
    pub fn engine(&self) -> &Arc<CacheEngine> {
        &self.engine
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Cache<S> {
        Cache::new(inner, self.clone())
    }
}
