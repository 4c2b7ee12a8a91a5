//! `server.cache`: where the cache keeps its entries, and its limits.
//!
//! ```json
//! "server": {
//!   "cache": {
//!     "store": "redis", "url": "${REDIS_URL}",
//!     "max_entry_bytes": 1048576, "timeout_ms": 100, "coalesce_wait_ms": 30000,
//!     "semantic_threshold": 0.9
//!   }
//! }
//! ```
//!
//! `embedder` is `"ngram"` (the default: hashed character n-grams, offline) or `{"bert":
//! "MODEL_DIR"}` (all-MiniLM-L6-v2 from local files, with the gateway's `bert` feature; it
//! runs on the blocking pool, and past `embed_timeout_ms` (100) a lookup is a miss).
//!
//! `store` is `"memory"` (the default; `max_bytes`, default 64 MiB) or `"redis"` (`url`,
//! required; `prefix`, default `portcullis:cache:`). Without a `server.cache`, a config's
//! `cache` uses a 64 MiB memory store.

use std::time::Duration;

use serde_json::Value;

use super::reader::{ConfigError, Obj, Result};
use super::{Env, substitute};

/// Where the cache keeps entries.
#[non_exhaustive]
#[derive(Clone, PartialEq)]
pub enum CacheStore {
    /// In this process, bounded in bytes.
    Memory {
        /// The bound (default 64 MiB).
        max_bytes: u64,
    },
    /// In Redis, shared by every replica.
    Redis {
        /// `redis://…` (may carry a password: never logged).
        url: String,
        /// The prefix of every key.
        prefix: String,
    },
}

impl std::fmt::Debug for CacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory { max_bytes } => f
                .debug_struct("Memory")
                .field("max_bytes", max_bytes)
                .finish(),
            Self::Redis { prefix, .. } => f
                .debug_struct("Redis")
                .field("url", &"<redacted>")
                .field("prefix", prefix)
                .finish(),
        }
    }
}

/// `server.cache`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct CacheServer {
    /// The store.
    pub store: CacheStore,
    /// The largest answer stored (default 1 MiB).
    pub max_entry_bytes: usize,
    /// How long a store operation may take before it counts as a miss (default 100 ms).
    pub timeout: Duration,
    /// The semantic threshold (default: the embedder's).
    pub semantic_threshold: Option<f32>,
    /// How long identical requests wait for the one fetching their answer (default 30 s).
    pub coalesce_wait: Duration,
    /// The semantic embedder: `None`, the hashed n-gram one; `Some(dir)`, the BERT one
    /// (all-MiniLM-L6-v2) read from `dir` (the `bert` feature).
    pub bert_dir: Option<String>,
    /// How long a BERT embedding may take before the lookup is a miss (default 100 ms).
    pub embed_timeout: Duration,
}

impl Default for CacheServer {
    fn default() -> Self {
        Self {
            store: CacheStore::Memory {
                max_bytes: 64 << 20,
            },
            max_entry_bytes: 1 << 20,
            timeout: Duration::from_millis(100),
            semantic_threshold: None,
            coalesce_wait: Duration::from_secs(30),
            bert_dir: None,
            embed_timeout: Duration::from_millis(100),
        }
    }
}

/// Reads `server.cache`.
pub(crate) fn parse_cache_server(v: &Value, path: &str, env: Env<'_>) -> Result<CacheServer> {
    let mut obj = Obj::new(v, path)?;
    let mut out = CacheServer::default();
    let store = obj.str("store")?;
    match store.as_ref().map(|(s, p)| (*s, p.as_str())) {
        None | Some(("memory", _)) => {
            let max = obj.u64_in("max_bytes", 1..=u64::MAX, |_| "must be > 0 (bytes)".into())?;
            out.store = CacheStore::Memory {
                max_bytes: max.unwrap_or(64 << 20),
            };
        }
        Some(("redis", _)) => {
            let (url, upath) = obj.str("url")?.ok_or_else(|| {
                ConfigError::new(super::join(path, "url"), "required for the redis store")
            })?;
            let url = substitute(url, &upath, env)?;
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                return Err(ConfigError::new(
                    upath,
                    "must start with redis:// (or redis+unix://)",
                ));
            }
            let prefix = obj
                .str("prefix")?
                .map_or_else(|| "portcullis:cache:".to_owned(), |(p, _)| p.to_owned());
            out.store = CacheStore::Redis { url, prefix };
        }
        Some((other, p)) => {
            return Err(ConfigError::new(
                p,
                format!("expected \"memory\" or \"redis\", got {other:?}"),
            ));
        }
    }
    if let Some(n) = obj.u64_in("max_entry_bytes", 1..=u64::MAX, |_| {
        "must be > 0 (bytes)".into()
    })? {
        out.max_entry_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(t) = obj.positive_ms("timeout_ms")? {
        out.timeout = t;
    }
    if let Some(t) = obj.positive_ms("coalesce_wait_ms")? {
        out.coalesce_wait = t;
    }
    match obj.get("embedder")? {
        None => {}
        Some((Value::String(s), _)) if s == "ngram" => {}
        Some((Value::Object(map), p)) if map.len() == 1 && map.contains_key("bert") => {
            let dir = map["bert"].as_str().ok_or_else(|| {
                ConfigError::new(
                    super::join(&p, "bert"),
                    "the directory of the model's files",
                )
            })?;
            if !cfg!(feature = "bert") {
                return Err(ConfigError::new(
                    p,
                    "this build has no BERT embedder: build the gateway with `--features bert`",
                ));
            }
            out.bert_dir = Some(substitute(dir, &super::join(&p, "bert"), env)?);
        }
        Some((_, p)) => {
            return Err(ConfigError::new(
                p,
                "expected \"ngram\" or {\"bert\": \"MODEL_DIR\"}",
            ));
        }
    }
    if let Some(t) = obj.positive_ms("embed_timeout_ms")? {
        out.embed_timeout = t;
    }
    if let Some((t, p)) = obj.f64("semantic_threshold")? {
        if !(t > 0.0 && t <= 1.0) {
            return Err(ConfigError::new(p, format!("must be in (0, 1], got {t}")));
        }
        out.semantic_threshold = Some(t as f32);
    }
    obj.finish(" (expected store, max_bytes, url, prefix, max_entry_bytes, timeout_ms, coalesce_wait_ms, semantic_threshold, embedder, embed_timeout_ms)")?;
    Ok(out)
}
