//! The compiled `x-portkey-config` trees kept for reuse: bounded in bytes, least recently used
//! out first, one entry at a time.
//!
//! An entry is keyed by the *canonical form* of its tree: the tree as read (both spellings of a
//! key, key order, whitespace and number forms all read the same), so configs that mean the
//! same share one entry. The raw header values that led to an entry are kept as aliases (a
//! few per entry, counted in its size), so a client that resends the same bytes skips the JSON
//! read too.
//!
//! Sizes are estimates: the key, the aliases, a fixed cost per node of the tree, and per
//! `$regex` the most its compiled program and lazy DFA may hold
//! ([`RegexLimits`](portcullis_route::RegexLimits)). An entry larger than the whole bound is
//! not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::build::Stack;
use crate::config::{Node, NodeKind};

/// The estimated cost of one node of a compiled tree (its boxed services, policy, path).
const NODE_BYTES: usize = 2 * 1024;

/// The estimated fixed cost of an entry (maps, order, stack handle).
const ENTRY_BYTES: usize = 256;

/// The most raw header values remembered for one entry.
const MAX_ALIASES: usize = 4;

/// Compiled header configs by canonical form, within a byte budget.
pub(crate) struct HeaderConfigCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    aliases: HashMap<Box<str>, Arc<str>>,
    /// Last use -> key: the first is the least recently used.
    order: BTreeMap<u64, Arc<str>>,
    clock: u64,
    bytes: usize,
}

struct Entry {
    stack: Stack,
    bytes: usize,
    last_used: u64,
    aliases: Vec<Box<str>>,
}

/// The canonical form of a tree, which keys the cache.
pub(crate) fn canonical(node: &Node) -> String {
    // Every field of a read tree is a normalised value (one spelling per key, maps ordered by
    // key, numbers as numbers), so its debug form is equal exactly when the trees are.
    format!("{node:?}")
}

/// The estimated bytes a compiled tree holds, besides its key and aliases; `regex_bytes` is
/// the most one compiled `$regex` may hold.
pub(crate) fn tree_bytes(node: &Node, regex_bytes: usize) -> usize {
    fn regexes(v: &Value) -> usize {
        match v {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| usize::from(k == "$regex") + regexes(v))
                .sum(),
            Value::Array(items) => items.iter().map(regexes).sum(),
            _ => 0,
        }
    }
    let own = match &node.kind {
        NodeKind::Leaf { .. } => 0,
        NodeKind::Group {
            conditions,
            targets,
            ..
        } => {
            let patterns: usize = conditions.iter().map(regexes).sum();
            patterns.saturating_mul(regex_bytes)
                + targets
                    .iter()
                    .map(|t| tree_bytes(t, regex_bytes))
                    .sum::<usize>()
        }
    };
    NODE_BYTES + own
}

impl HeaderConfigCache {
    /// A cache that holds at most `capacity` estimated bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stack a raw header value led to before.
    pub(crate) fn get_raw(&self, raw: &str) -> Option<Stack> {
        let mut inner = self.lock();
        let key = inner.aliases.get(raw)?.clone();
        inner.touch(&key)
    }

    /// The stack of the tree whose canonical form is `key`; `raw` is remembered as one of its
    /// aliases.
    pub(crate) fn get(&self, key: &str, raw: &str) -> Option<Stack> {
        let mut inner = self.lock();
        let (key, _) = inner.entries.get_key_value(key)?;
        let key = key.clone();
        let stack = inner.touch(&key)?;
        inner.alias(&key, raw);
        inner.evict_to(self.capacity, Some(&key));
        Some(stack)
    }

    /// Keeps `stack`, the compiled tree of canonical form `key` that weighs `tree_bytes`
    /// besides its key and alias, evicting the least recently used entries one at a time
    /// until it fits. An entry larger than the whole capacity is not kept.
    pub(crate) fn insert(&self, key: String, raw: &str, stack: Stack, tree_bytes: usize) {
        let bytes = ENTRY_BYTES
            .saturating_add(key.len())
            .saturating_add(raw.len())
            .saturating_add(tree_bytes);
        if bytes > self.capacity {
            return;
        }
        let mut inner = self.lock();
        let key: Arc<str> = key.into();
        if inner.entries.contains_key(&key) {
            // Compiled twice at once: keep the first.
            inner.alias(&key, raw);
            inner.evict_to(self.capacity, Some(&key));
            return;
        }
        inner.evict_to(self.capacity - bytes, None);
        inner.clock += 1;
        let now = inner.clock;
        inner.order.insert(now, key.clone());
        inner.bytes += bytes;
        let raw: Box<str> = raw.into();
        inner.aliases.insert(raw.clone(), key.clone());
        inner.entries.insert(
            key,
            Entry {
                stack,
                bytes,
                last_used: now,
                aliases: vec![raw],
            },
        );
    }

    /// The estimated bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The entries held.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn touch(&mut self, key: &Arc<str>) -> Option<Stack> {
        self.clock += 1;
        let now = self.clock;
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.last_used);
        entry.last_used = now;
        self.order.insert(now, key.clone());
        Some(entry.stack.clone())
    }

    fn alias(&mut self, key: &Arc<str>, raw: &str) {
        if self.aliases.contains_key(raw) {
            return;
        }
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.aliases.len() >= MAX_ALIASES {
            return;
        }
        let raw: Box<str> = raw.into();
        entry.bytes += raw.len();
        self.bytes += raw.len();
        entry.aliases.push(raw.clone());
        self.aliases.insert(raw, key.clone());
    }

    /// Evicts the least recently used entries, one at a time, until at most `limit` bytes are
    /// held; `keep` is never evicted.
    fn evict_to(&mut self, limit: usize, keep: Option<&Arc<str>>) {
        while self.bytes > limit {
            let Some(victim) = self.order.values().find(|k| Some(*k) != keep).cloned() else {
                return;
            };
            self.remove(&victim);
        }
    }

    fn remove(&mut self, key: &Arc<str>) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.last_used);
            self.bytes -= entry.bytes;
            for raw in &entry.aliases {
                self.aliases.remove(raw);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use portcullis_core::{Body, BoxError, BufferedBody};
    use tower::util::BoxCloneSyncService;

    use super::*;

    fn stack() -> Stack {
        BoxCloneSyncService::new(tower::service_fn(|_req: Request<BufferedBody>| async {
            Ok::<_, BoxError>(Response::new(Body::from("{}")))
        }))
    }

    fn weight(key: &str, raw: &str, tree: usize) -> usize {
        ENTRY_BYTES + key.len() + raw.len() + tree
    }

    #[test]
    fn stays_within_its_bytes_and_evicts_the_least_recently_used_one_at_a_time() {
        let one = weight("k0", "r0", 100);
        let cache = HeaderConfigCache::new(3 * one);
        for i in 0..3 {
            cache.insert(format!("k{i}"), &format!("r{i}"), stack(), 100);
        }
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * one));
        // k0 is used, so k1 is now the least recently used.
        assert!(cache.get_raw("r0").is_some());
        cache.insert("k3".into(), "r3", stack(), 100);
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * one));
        assert!(
            cache.get_raw("r1").is_none(),
            "only the least recently used went"
        );
        for raw in ["r0", "r2", "r3"] {
            assert!(cache.get_raw(raw).is_some(), "{raw}");
        }
    }

    #[test]
    fn equal_trees_share_an_entry_under_several_aliases() {
        let cache = HeaderConfigCache::new(1 << 20);
        cache.insert("k".into(), "raw-a", stack(), 10);
        assert!(cache.get("k", "raw-b").is_some());
        assert!(cache.get_raw("raw-b").is_some());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), weight("k", "raw-a", 10) + "raw-b".len());
        // A second compile of the same tree keeps the first.
        cache.insert("k".into(), "raw-c", stack(), 10);
        assert_eq!(cache.len(), 1);
        // Aliases are bounded.
        for i in 0..10 {
            cache.get("k", &format!("alias-{i}"));
        }
        assert_eq!(cache.lock().entries["k"].aliases.len(), MAX_ALIASES);
    }

    #[test]
    fn an_entry_larger_than_the_whole_cache_is_not_kept() {
        let cache = HeaderConfigCache::new(1024);
        cache.insert("k".into(), "r", stack(), 4096);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        let off = HeaderConfigCache::new(0);
        off.insert("k".into(), "r", stack(), 0);
        assert_eq!(off.len(), 0);
    }
}
