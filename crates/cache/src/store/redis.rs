//! The shared store: entries in Redis, so every replica's miss is every replica's hit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheStore, Candidate, StoreError, StoreFuture};
use crate::entry::{Entry, codec};
use crate::key::Key;

/// Entries in Redis: `SET {prefix}e:{key} <entry> PX <ttl>`; a semantic partition is a list
/// `{prefix}p:{partition}` trimmed to its bound and expiring with its newest addition (one
/// `MULTI` per addition: push, trim, expire).
///
/// One multiplexed connection per store (commands pipelined over it; redis-rs's
/// `ConnectionManager` reconnects after a failure). Created without connecting: a Redis that
/// is down at start-up, or goes away later, makes lookups fail (the layer answers them as
/// misses) until it is back. Values larger than `compress_above` bytes (default 1 KiB) are
/// LZ4-compressed.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    prefix: String,
    compress_above: usize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://[:password@]host:port[/db]`, `rediss://` needs TLS support
    /// in redis-rs, which this build leaves out); keys under `portcullis:cache:`.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::with_prefix(url, "portcullis:cache:")
    }

    /// A store whose keys start with `prefix` (so several caches can share one Redis).
    pub fn with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                conn: Mutex::new(None),
                prefix: prefix.to_owned(),
                compress_above: 1024,
            }),
        })
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = &*slot {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = self
            .shared
            .client
            .get_connection_manager_lazy(config)
            .map_err(|e| StoreError(e.to_string()))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn entry_key(&self, key: &Key) -> String {
        format!("{}e:{}", self.shared.prefix, key.to_hex())
    }

    fn partition_key(&self, key: &Key) -> String {
        format!("{}p:{}", self.shared.prefix, key.to_hex())
    }
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl CacheStore for RedisStore {
    fn get(&self, key: &Key) -> StoreFuture<'_, Option<Arc<Entry>>> {
        let name = self.entry_key(key);
        Box::pin(async move {
            let mut conn = self.conn()?;
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&name)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            match raw {
                None => Ok(None),
                Some(raw) => match codec::decode(&raw) {
                    Some(entry) => Ok(Some(Arc::new(entry))),
                    None => Err(StoreError(format!("{name}: not a cache entry"))),
                },
            }
        })
    }

    fn put(&self, key: &Key, entry: Arc<Entry>, ttl: Duration) -> StoreFuture<'_, ()> {
        let name = self.entry_key(key);
        Box::pin(async move {
            let mut conn = self.conn()?;
            let value = codec::encode(&entry, self.shared.compress_above);
            redis::cmd("SET")
                .arg(&name)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut conn)
                .await
                .map_err(err)
        })
    }

    fn candidates(&self, partition: &Key) -> StoreFuture<'_, Vec<Candidate>> {
        let name = self.partition_key(partition);
        Box::pin(async move {
            let mut conn = self.conn()?;
            let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&name)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            // A value that does not decode is skipped, never compared.
            Ok(raw.iter().filter_map(|r| Candidate::decode(r)).collect())
        })
    }

    fn add_candidate(
        &self,
        partition: &Key,
        candidate: Candidate,
        keep: usize,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        let name = self.partition_key(partition);
        Box::pin(async move {
            let mut conn = self.conn()?;
            let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
            redis::pipe()
                .atomic()
                .cmd("LPUSH")
                .arg(&name)
                .arg(candidate.encode())
                .ignore()
                .cmd("LTRIM")
                .arg(&name)
                .arg(0)
                .arg(keep - 1)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&name)
                .arg(millis(ttl))
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(err)
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
