//! [`MemoryStore`]: limits in this process, in short critical sections.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

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
    shards: Vec<RwLock<HashMap<ScopeKey, Arc<Mutex<Slot>>>>>,
    hasher: RandomState,
    scopes: AtomicUsize,
    max_scopes: usize,
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

    fn shard(&self, key: &ScopeKey) -> &RwLock<HashMap<ScopeKey, Arc<Mutex<Slot>>>> {
        let hash = self.inner.hasher.hash_one(key) as usize;
        &self.inner.shards[hash % SHARDS]
    }

    fn find(&self, key: &ScopeKey) -> Option<Arc<Mutex<Slot>>> {
        self.shard(key)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
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
        let mut shard = self
            .shard(&charge.key)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let slot = shard.entry(charge.key.clone()).or_insert_with(|| {
            self.inner.scopes.fetch_add(1, Ordering::Relaxed);
            Arc::new(Mutex::new(Slot::new(&charge.rule)))
        });
        Ok(slot.clone())
    }

    /// Drops the scopes nobody holds whose window is over, with nothing reserved.
    fn sweep(&self, now_secs: u64) {
        for shard in &self.inner.shards {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, slot| Arc::strong_count(slot) > 1 || !lock(slot).idle(now_secs));
            self.inner
                .scopes
                .fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
    }

    fn reserve_now(&self, reservation: &Reservation) -> Result<Verdict, StoreError> {
        let now = reservation.now_micros;
        let slots = reservation
            .charges
            .iter()
            .map(|c| self.slot(c, now / MICROS))
            .collect::<Result<Vec<_>, _>>()?;
        // One global lock order, by address: no two reservations wait on each other.
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by_key(|&i| Arc::as_ptr(&slots[i]) as usize);
        let mut locked: Vec<(usize, MutexGuard<'_, Slot>)> =
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
            entries.extend(shard.iter().map(|(key, slot)| lock(slot).entry(key)));
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
