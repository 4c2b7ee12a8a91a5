//! [`MemoryStore`]: limits in this process, in short critical sections.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use smallvec::SmallVec;

use super::{
    BoxFuture, Charge, Entry, EntryState, LimitStore, Reservation, Reserve, Rule, ScopeKey,
    Standing, StoreError, StoreErrorKind, Verdict, Window, budget_standing, drain, fits,
    rate_refusal, rate_standing,
};
use crate::clock::DAY;
use crate::policy::ROLLING_BUCKETS;

const SHARDS: usize = 16;
const MICROS: u64 = 1_000_000;

/// The default cap on scopes held (see [`MemoryStore::with_max_scopes`]).
pub const DEFAULT_MAX_SCOPES: usize = 1_000_000;

/// Limits kept in this process: zero set-up, exact, and per process.
///
/// Each limit in each scope is a small slot behind its own mutex, found through a sharded
/// map. A reservation locks the slots of its charges in one global order (by address, so two
/// requests never wait on each other in a cycle), checks them all, takes them all or none,
/// and unlocks: a few dozen nanoseconds held, no I/O, no allocation after a scope's first
/// request. Clones share the slots.
///
/// Reservations need no lease here: the layer's settle guard gives a reservation back when
/// its request ends in any way (answer, error, cancel, panic), and a crash takes the whole
/// store with it. Scopes that are idle (window over, nothing reserved, bucket full) are
/// swept when the store grows past its cap; if it is still full, a reservation fails with
/// [`StoreErrorKind::Full`] and the layer's failure policy answers.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<RwLock<Shard>>,
    hasher: RandomState,
    scopes: AtomicUsize,
    max_scopes: usize,
}

/// The scopes of one shard by the hash of their key, so that a lookup hashes the key once
/// (with the store's keyed hasher: scope values come from clients), not once for the shard
/// and again in the map. Keys with the same hash share a bucket, in practice of one.
type Shard = HashMap<u64, Bucket, BuildHasherDefault<Prehashed>>;

type Bucket = SmallVec<[(ScopeKey, Arc<Mutex<Slot>>); 1]>;

/// Hands a map the hash its `u64` key already is.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("a shard is keyed by u64 hashes");
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

fn in_bucket<'a>(bucket: &'a Bucket, key: &ScopeKey) -> Option<&'a Arc<Mutex<Slot>>> {
    bucket.iter().find(|(k, _)| k == key).map(|(_, slot)| slot)
}

#[derive(Debug)]
enum Slot {
    Budget(BudgetSlot),
    Rolling(Box<RollingSlot>),
    Rate { level: f64, at: u64 },
}

#[derive(Debug)]
struct BudgetSlot {
    /// The calendar start of the window counted (0: never resets).
    window: u64,
    /// When the window ends, unix seconds (u64::MAX: never).
    end: u64,
    used: u64,
    reserved: u64,
}

#[derive(Debug)]
struct RollingSlot {
    ring: [(u64, u64); ROLLING_BUCKETS as usize],
    reserved: u64,
    bucket_secs: u64,
}

impl RollingSlot {
    fn used(&self, window: &Window) -> u64 {
        let (oldest, current) = (window.oldest_bucket(), bucket_of(window));
        self.ring
            .iter()
            .filter(|(b, _)| *b >= oldest && *b <= current)
            .map(|(_, v)| *v)
            .sum()
    }

    fn add(&mut self, bucket: u64, amount: u64) {
        let cell = &mut self.ring[(bucket % u64::from(ROLLING_BUCKETS)) as usize];
        if cell.0 == bucket {
            cell.1 = cell.1.saturating_add(amount);
        } else if cell.0 < bucket {
            *cell = (bucket, amount);
        }
        // A newer bucket holds the cell: the charge's bucket has left the window.
    }
}

fn bucket_of(window: &Window) -> u64 {
    match *window {
        Window::Rolling { bucket, .. } => bucket,
        _ => 0,
    }
}

fn calendar(window: &Window) -> (u64, u64) {
    match *window {
        Window::Calendar { start, end } => (start, end),
        _ => (0, u64::MAX),
    }
}

impl Slot {
    fn new(rule: &Rule) -> Self {
        match rule {
            Rule::Budget {
                window: Window::Rolling { bucket_secs, .. },
                ..
            } => Slot::Rolling(Box::new(RollingSlot {
                ring: [(0, 0); ROLLING_BUCKETS as usize],
                reserved: 0,
                bucket_secs: *bucket_secs,
            })),
            Rule::Budget { window, .. } => {
                let (window, end) = calendar(window);
                Slot::Budget(BudgetSlot {
                    window,
                    end,
                    used: 0,
                    reserved: 0,
                })
            }
            Rule::Rate { .. } => Slot::Rate { level: 0.0, at: 0 },
        }
    }

    fn fits(&self, rule: &Rule) -> bool {
        matches!(
            (self, rule),
            (Slot::Rate { .. }, Rule::Rate { .. })
                | (
                    Slot::Rolling(_),
                    Rule::Budget {
                        window: Window::Rolling { .. },
                        ..
                    }
                )
                | (
                    Slot::Budget(_),
                    Rule::Budget {
                        window: Window::Calendar { .. } | Window::Never,
                        ..
                    }
                )
        )
    }

    /// Moves a calendar slot into the charge's window when that one is newer: spend of a
    /// window never carries into the next, and reservations made in the old window settle
    /// there (they are forgotten here).
    fn roll(&mut self, rule: &Rule) {
        if !self.fits(rule) {
            *self = Slot::new(rule);
            return;
        }
        if let (Slot::Budget(slot), Rule::Budget { window, .. }) = (self, rule) {
            let (start, end) = calendar(window);
            if start > slot.window {
                *slot = BudgetSlot {
                    window: start,
                    end,
                    used: 0,
                    reserved: 0,
                };
            }
        }
    }

    /// Checks one charge; `Ok` with the state to apply, or the refusal.
    fn check(&self, charge: &Charge, now: u64) -> Result<Standing, Standing> {
        match (self, &charge.rule) {
            (
                Slot::Budget(slot),
                Rule::Budget {
                    limit,
                    alert,
                    window,
                },
            ) => budget_check(
                *limit,
                *alert,
                window,
                slot.used,
                slot.reserved,
                charge.amount,
                now,
            ),
            (
                Slot::Rolling(slot),
                Rule::Budget {
                    limit,
                    alert,
                    window,
                },
            ) => budget_check(
                *limit,
                *alert,
                window,
                slot.used(window),
                slot.reserved,
                charge.amount,
                now,
            ),
            (Slot::Rate { level, at }, Rule::Rate { value, period_secs }) => {
                let level = drain(*level, *at, now, *value, *period_secs);
                if fits(level, charge.amount, *value) {
                    Ok(rate_standing(
                        *value,
                        *period_secs,
                        level + charge.amount as f64,
                    ))
                } else {
                    Err(rate_refusal(*value, *period_secs, level, charge.amount))
                }
            }
            // `roll` made the slot fit the rule.
            _ => Err(Standing::default()),
        }
    }

    fn take(&mut self, charge: &Charge, now: u64) {
        match (self, &charge.rule) {
            (Slot::Budget(slot), _) => slot.reserved = slot.reserved.saturating_add(charge.amount),
            (Slot::Rolling(slot), _) => slot.reserved = slot.reserved.saturating_add(charge.amount),
            (Slot::Rate { level, at }, Rule::Rate { value, period_secs }) => {
                *level = drain(*level, *at, now, *value, *period_secs) + charge.amount as f64;
                *at = (*at).max(now);
            }
            (Slot::Rate { .. }, Rule::Budget { .. }) => {}
        }
    }

    fn settle(&mut self, charge: &Charge, actual: u64) {
        match (self, &charge.rule) {
            // A reservation of a window that has ended was forgotten with it.
            (Slot::Budget(slot), Rule::Budget { window, .. })
                if calendar(window).0 == slot.window =>
            {
                slot.reserved = slot.reserved.saturating_sub(charge.amount);
                slot.used = slot.used.saturating_add(actual);
            }
            (Slot::Rolling(slot), Rule::Budget { window, .. }) => {
                slot.reserved = slot.reserved.saturating_sub(charge.amount);
                slot.add(bucket_of(window), actual);
            }
            (Slot::Rate { level, .. }, Rule::Rate { .. }) => {
                *level = (*level + actual as f64 - charge.amount as f64).max(0.0);
            }
            _ => {}
        }
    }

    fn idle(&self, now_secs: u64) -> bool {
        match self {
            Slot::Budget(slot) => slot.reserved == 0 && slot.end <= now_secs,
            Slot::Rolling(slot) => {
                let newest = slot.ring.iter().map(|(b, _)| *b).max().unwrap_or(0);
                slot.reserved == 0
                    && (newest + u64::from(ROLLING_BUCKETS)) * slot.bucket_secs <= now_secs
            }
            // Empty once a whole period has passed since the last update at the latest.
            Slot::Rate { level, at } => *level <= 0.0 || at / MICROS + DAY <= now_secs,
        }
    }

    fn entry(&self, key: &ScopeKey) -> Entry {
        let state = match self {
            Slot::Budget(slot) => EntryState::Budget {
                window: slot.window,
                used: slot.used,
                reserved: slot.reserved,
            },
            Slot::Rolling(slot) => EntryState::Rolling {
                buckets: slot.ring.iter().copied().filter(|(_, v)| *v > 0).collect(),
                reserved: slot.reserved,
            },
            Slot::Rate { level, at } => EntryState::Rate {
                level: *level,
                at: *at,
            },
        };
        Entry {
            key: key.clone(),
            state,
        }
    }
}

fn budget_check(
    limit: Option<u64>,
    alert: Option<u64>,
    window: &Window,
    used: u64,
    reserved: u64,
    amount: u64,
    now: u64,
) -> Result<Standing, Standing> {
    let before = used.saturating_add(reserved);
    let after = before.saturating_add(amount);
    if limit.is_some_and(|l| after > l) {
        return Err(budget_standing(
            limit, alert, window, used, before, reserved, now,
        ));
    }
    Ok(budget_standing(
        limit,
        alert,
        window,
        used,
        before,
        reserved.saturating_add(amount),
        now,
    ))
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// An empty store holding at most [`DEFAULT_MAX_SCOPES`] scopes.
    pub fn new() -> Self {
        Self::with_max_scopes(DEFAULT_MAX_SCOPES)
    }

    /// An empty store holding at most `max` scopes (a limit in a scope is one; per-user
    /// policies make one per user and window).
    pub fn with_max_scopes(max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
                hasher: RandomState::new(),
                scopes: AtomicUsize::new(0),
                max_scopes: max,
            }),
        }
    }

    /// How many scopes the store holds.
    pub fn scopes(&self) -> usize {
        self.inner.scopes.load(Ordering::Relaxed)
    }

    /// The key's hash and its shard. The map takes the hash's low bits for its index and its
    /// top seven as tags, so the shard takes bits from the middle: all of a shard's hashes
    /// sharing low bits would crowd its map.
    fn shard(&self, key: &ScopeKey) -> (u64, &RwLock<Shard>) {
        let hash = self.hash(key);
        (hash, &self.inner.shards[(hash >> 32) as usize % SHARDS])
    }

    /// The key's hash. SipHash pays for each write as well as for each byte, so a key that
    /// fits is copied into one buffer and hashed in one write: the policy, `0xff` (never in
    /// UTF-8, so where the policy ends is plain), the limit's two bytes, the scope.
    fn hash(&self, key: &ScopeKey) -> u64 {
        let (policy, scope) = (key.policy.as_bytes(), key.scope.as_bytes());
        let len = policy.len() + 3 + scope.len();
        let mut buf = [0u8; 128];
        let Some(parts) = buf.get_mut(..len) else {
            return self.inner.hasher.hash_one(key);
        };
        let (head, rest) = parts.split_at_mut(policy.len());
        head.copy_from_slice(policy);
        let (limit, tail) = rest.split_at_mut(3);
        limit[0] = 0xff;
        limit[1..].copy_from_slice(&key.limit.to_le_bytes());
        tail.copy_from_slice(scope);
        let mut hasher = self.inner.hasher.build_hasher();
        hasher.write(parts);
        hasher.finish()
    }

    fn find(&self, key: &ScopeKey) -> Option<Arc<Mutex<Slot>>> {
        let (hash, shard) = self.shard(key);
        let shard = shard.read().unwrap_or_else(|e| e.into_inner());
        in_bucket(shard.get(&hash)?, key).cloned()
    }

    fn slot(&self, charge: &Charge, now_secs: u64) -> Result<Arc<Mutex<Slot>>, StoreError> {
        if let Some(slot) = self.find(&charge.key) {
            return Ok(slot);
        }
        if self.inner.scopes.load(Ordering::Relaxed) >= self.inner.max_scopes {
            self.sweep(now_secs);
            if self.inner.scopes.load(Ordering::Relaxed) >= self.inner.max_scopes {
                return Err(StoreError::new(
                    StoreErrorKind::Full,
                    format!("{} scopes held", self.inner.max_scopes),
                ));
            }
        }
        let (hash, shard) = self.shard(&charge.key);
        let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
        let bucket = shard.entry(hash).or_default();
        // Another request may have added it since the read.
        if let Some(slot) = in_bucket(bucket, &charge.key) {
            return Ok(slot.clone());
        }
        self.inner.scopes.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Mutex::new(Slot::new(&charge.rule)));
        bucket.push((charge.key.clone(), slot.clone()));
        Ok(slot)
    }

    /// Drops the scopes nobody holds whose window is over, with nothing reserved.
    fn sweep(&self, now_secs: u64) {
        for shard in &self.inner.shards {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            let mut dropped = 0;
            shard.retain(|_, bucket| {
                let before = bucket.len();
                bucket
                    .retain(|(_, slot)| Arc::strong_count(slot) > 1 || !lock(slot).idle(now_secs));
                dropped += before - bucket.len();
                !bucket.is_empty()
            });
            self.inner.scopes.fetch_sub(dropped, Ordering::Relaxed);
        }
    }

    fn reserve_now(&self, reservation: &Reservation) -> Result<Verdict, StoreError> {
        let now = reservation.now_micros;
        // A request has a few charges: these lists stay on the stack.
        let slots = reservation
            .charges
            .iter()
            .map(|c| self.slot(c, now / MICROS))
            .collect::<Result<SmallVec<[_; 4]>, _>>()?;
        // One global lock order, by address: no two reservations wait on each other.
        let mut order: SmallVec<[usize; 4]> = (0..slots.len()).collect();
        order.sort_by_key(|&i| Arc::as_ptr(&slots[i]) as usize);
        let mut locked: SmallVec<[(usize, MutexGuard<'_, Slot>); 4]> =
            order.into_iter().map(|i| (i, lock(&slots[i]))).collect();
        locked.sort_by_key(|(i, _)| *i);

        let mut standings = Vec::with_capacity(locked.len());
        for ((_, slot), charge) in locked.iter_mut().zip(&reservation.charges) {
            slot.roll(&charge.rule);
            match slot.check(charge, now) {
                Ok(standing) => standings.push(standing),
                Err(standing) => {
                    let index = standings.len();
                    return Ok(Verdict::Refused { index, standing });
                }
            }
        }
        for ((_, slot), charge) in locked.iter_mut().zip(&reservation.charges) {
            slot.take(charge, now);
        }
        Ok(Verdict::Admitted(standings))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("scopes", &self.scopes())
            .field("max_scopes", &self.inner.max_scopes)
            .finish()
    }
}

impl LimitStore for MemoryStore {
    type Future = std::future::Ready<Result<Verdict, StoreError>>;

    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Self::Future> {
        Reserve::Ready(self.reserve_now(reservation))
    }

    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]) {
        for (charge, &actual) in reservation.charges.iter().zip(actual) {
            if let Some(slot) = self.find(&charge.key) {
                lock(&slot).settle(charge, actual);
            }
        }
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        let mut entries = Vec::new();
        for shard in &self.inner.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            entries.extend(
                shard
                    .values()
                    .flatten()
                    .map(|(key, slot)| lock(slot).entry(key)),
            );
        }
        Box::pin(std::future::ready(Ok(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(scope: &str, limit: u64, window: Window, amount: u64) -> Charge {
        Charge {
            key: ScopeKey::new("p", 0, scope),
            rule: Rule::Budget {
                limit: Some(limit),
                alert: None,
                window,
            },
            amount,
        }
    }

    fn reserve(
        store: &MemoryStore,
        now_secs: u64,
        charges: Vec<Charge>,
    ) -> (Arc<Reservation>, Verdict) {
        let r = Arc::new(Reservation::new(
            now_secs * MICROS,
            Duration::from_secs(60),
            charges,
        ));
        let Reserve::Ready(Ok(v)) = store.reserve(&r) else {
            panic!("memory answers at once")
        };
        (r, v)
    }

    #[test]
    fn all_or_nothing_across_scopes() {
        let store = MemoryStore::new();
        let (_, v) = reserve(&store, 10, vec![budget("a", 10, Window::Never, 8)]);
        assert!(matches!(v, Verdict::Admitted(_)));
        // "b" has room, "a" does not: nothing is taken from "b".
        let (_, v) = reserve(
            &store,
            10,
            vec![
                budget("b", 10, Window::Never, 5),
                budget("a", 10, Window::Never, 5),
            ],
        );
        assert!(matches!(v, Verdict::Refused { index: 1, .. }));
        let (_, v) = reserve(&store, 10, vec![budget("b", 10, Window::Never, 10)]);
        assert!(matches!(v, Verdict::Admitted(_)));
    }

    #[test]
    fn a_new_calendar_window_starts_empty_and_old_settles_are_forgotten() {
        let store = MemoryStore::new();
        let day1 = Window::Calendar {
            start: 0,
            end: 86_400,
        };
        let day2 = Window::Calendar {
            start: 86_400,
            end: 2 * 86_400,
        };
        let (old, _) = reserve(&store, 100, vec![budget("a", 10, day1, 10)]);
        let (_, v) = reserve(&store, 86_400, vec![budget("a", 10, day2, 10)]);
        let Verdict::Admitted(s) = v else { panic!() };
        assert_eq!((s[0].used, s[0].reserved), (0, 10));
        store.settle(&old, &[10]);
        let (_, v) = reserve(&store, 86_401, vec![budget("a", 10, day2, 1)]);
        assert!(
            matches!(v, Verdict::Refused { .. }),
            "only day 2's reservation counts"
        );
    }

    #[test]
    fn rolling_windows_forget_old_buckets() {
        let store = MemoryStore::new();
        let at = |bucket| Window::Rolling {
            bucket,
            buckets: ROLLING_BUCKETS,
            bucket_secs: 3600,
        };
        let (r, _) = reserve(&store, 0, vec![budget("a", 10, at(100), 10)]);
        store.settle(&r, &[10]);
        let (_, v) = reserve(&store, 0, vec![budget("a", 10, at(123), 1)]);
        assert!(
            matches!(v, Verdict::Refused { .. }),
            "bucket 100 still in the window"
        );
        let (_, v) = reserve(&store, 0, vec![budget("a", 10, at(124), 10)]);
        assert!(
            matches!(v, Verdict::Admitted(_)),
            "bucket 100 left the window"
        );
    }

    #[test]
    fn rates_refill_and_settle_tokens() {
        let store = MemoryStore::new();
        let rate = |amount| Charge {
            key: ScopeKey::new("p", 1, ""),
            rule: Rule::Rate {
                value: 100,
                period_secs: 60,
            },
            amount,
        };
        let (r, v) = reserve(&store, 1000, vec![rate(100)]);
        assert!(matches!(v, Verdict::Admitted(_)));
        let (_, v) = reserve(&store, 1000, vec![rate(1)]);
        let Verdict::Refused { standing, .. } = v else {
            panic!()
        };
        assert_eq!(standing.retry_after, Some(Duration::from_millis(600)));
        // Only 40 were used: 60 come back at once.
        store.settle(&r, &[40]);
        let (_, v) = reserve(&store, 1000, vec![rate(60)]);
        assert!(matches!(v, Verdict::Admitted(_)));
        // After the whole period, the bucket is full again.
        let (_, v) = reserve(&store, 1060, vec![rate(100)]);
        assert!(matches!(v, Verdict::Admitted(_)));
    }

    #[test]
    fn a_full_store_sweeps_idle_scopes_then_refuses() {
        let store = MemoryStore::with_max_scopes(2);
        let day = Window::Calendar { start: 0, end: 100 };
        for scope in ["a", "b"] {
            let (r, _) = reserve(&store, 10, vec![budget(scope, 10, day, 1)]);
            store.settle(&r, &[1]);
        }
        let r = Arc::new(Reservation::new(
            10 * MICROS,
            Duration::from_secs(1),
            vec![budget("c", 10, day, 1)],
        ));
        assert!(
            matches!(store.reserve(&r), Reserve::Ready(Err(e)) if e.kind == StoreErrorKind::Full)
        );
        // The day is over: "a" and "b" are idle and go.
        let (_, v) = reserve(
            &store,
            200,
            vec![budget(
                "c",
                10,
                Window::Calendar {
                    start: 100,
                    end: 200,
                },
                1,
            )],
        );
        assert!(matches!(v, Verdict::Admitted(_)));
        assert_eq!(store.scopes(), 1);
    }

    #[test]
    fn long_and_short_keys_find_their_slots() {
        let store = MemoryStore::new();
        let long = "x".repeat(200);
        for scope in ["", "a", &long[..120], &long[..124], &long[..125], &long] {
            let (r, v) = reserve(&store, 10, vec![budget(scope, 10, Window::Never, 4)]);
            assert!(matches!(v, Verdict::Admitted(_)), "{}", scope.len());
            store.settle(&r, &[3]);
            let (_, v) = reserve(&store, 10, vec![budget(scope, 10, Window::Never, 4)]);
            let Verdict::Admitted(s) = v else { panic!() };
            assert_eq!((s[0].used, s[0].reserved), (3, 4), "{}", scope.len());
        }
        assert_eq!(store.scopes(), 6);
        // The same policy and scope under another limit is another slot.
        let mut other = budget("a", 10, Window::Never, 1);
        other.key.limit = 1;
        let (_, v) = reserve(&store, 10, vec![other]);
        let Verdict::Admitted(s) = v else { panic!() };
        assert_eq!(s[0].used, 0);
        assert_eq!(store.scopes(), 7);
    }

    #[test]
    fn keys_that_share_a_hash_keep_their_own_slots() {
        let store = MemoryStore::new();
        let day = Window::Calendar { start: 0, end: 100 };
        let (a, b) = (budget("a", 10, day, 4), budget("b", 10, day, 7));
        // "b" filed under the hash of "a", as a collision of their hashes would file it.
        let (hash, shard) = store.shard(&a.key);
        let held = Arc::new(Mutex::new(Slot::new(&b.rule)));
        shard
            .write()
            .unwrap()
            .entry(hash)
            .or_default()
            .push((b.key.clone(), held.clone()));
        store.inner.scopes.fetch_add(1, Ordering::Relaxed);

        let (r, v) = reserve(&store, 10, vec![a.clone()]);
        let Verdict::Admitted(s) = v else { panic!() };
        assert_eq!((s[0].used, s[0].reserved), (0, 4), "a slot of its own");
        assert_eq!(shard.read().unwrap()[&hash].len(), 2);
        assert_eq!(store.scopes(), 2);
        store.settle(&r, &[3]);
        assert!(matches!(
            &lock(&held).entry(&b.key).state,
            EntryState::Budget { used: 0, .. }
        ));
        let mut entries = store
            .inner
            .shards
            .iter()
            .flat_map(|s| {
                let s = s.read().unwrap();
                s.values()
                    .flatten()
                    .map(|(k, _)| k.scope.to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        entries.sort();
        assert_eq!(entries, ["a", "b"]);

        // The day is over: "a" goes, "b" (still held) stays in the bucket.
        store.sweep(200);
        assert_eq!(store.scopes(), 1);
        assert_eq!(shard.read().unwrap()[&hash].len(), 1);
        assert!(store.find(&a.key).is_none());
        drop(held);
        store.sweep(200);
        assert_eq!(store.scopes(), 0);
        assert!(
            shard.read().unwrap().get(&hash).is_none(),
            "no empty bucket is left"
        );
    }

    #[test]
    fn racing_threads_never_overspend() {
        let store = MemoryStore::new();
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, admitted) = (&store, &admitted);
                s.spawn(move || {
                    for i in 0..500 {
                        let scope = if i % 2 == 0 { "x" } else { "y" };
                        let charges = vec![
                            budget("shared", 100, Window::Never, 1),
                            budget(scope, 1000, Window::Never, 1),
                        ];
                        let (r, v) = reserve(store, 1, charges);
                        if let Verdict::Admitted(_) = v {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            if (t + i) % 3 == 0 {
                                store.settle(&r, &[1, 1]);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 100);
    }
}
