//! Where limits live: the [`LimitStore`] trait, the in-memory [`MemoryStore`] and, with the
//! `redis` feature, the shared `RedisStore`.
//!
//! A store does two steps, each atomic on its own and neither a read-then-write:
//!
//! - [`reserve`](LimitStore::reserve): for every [`Charge`] of a [`Reservation`] (one per
//!   limit in every scope that applies), check that it fits and, only if **all** fit, take
//!   them all. A refusal takes nothing anywhere.
//! - [`settle`](LimitStore::settle): give the reservation back and charge what was really
//!   used, charge by charge.
//!
//! The layer does the calendar arithmetic and the estimates; a store only adds and compares
//! integers (micro-USD, tokens, microseconds), so a store is small and a script can do each
//! step in one round trip.
//!
//! ```
//! use portcullis_budget::store::{Charge, LimitStore, MemoryStore, Reserve, Reservation, Rule, ScopeKey, Verdict, Window};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let store = MemoryStore::new();
//! let budget = |amount| Charge {
//!     key: ScopeKey::new("team", 0, "api_key=research"),
//!     rule: Rule::Budget { limit: Some(100), alert: None, window: Window::Never },
//!     amount,
//! };
//! let reserve = |amount| Arc::new(Reservation::new(1_000_000, Duration::from_secs(60), vec![budget(amount)]));
//!
//! let first = reserve(80);
//! let Reserve::Ready(Ok(Verdict::Admitted(standing))) = store.reserve(&first) else { panic!() };
//! assert_eq!(standing[0].remaining, 20);
//! // 80 reserved: 30 more does not fit, and takes nothing.
//! let Reserve::Ready(Ok(Verdict::Refused { index: 0, .. })) = store.reserve(&reserve(30)) else { panic!() };
//! // The first request used 25: settle gives back the rest.
//! store.settle(&first, &[25]);
//! let Reserve::Ready(Ok(Verdict::Admitted(standing))) = store.reserve(&reserve(30)) else { panic!() };
//! assert_eq!((standing[0].used, standing[0].reserved, standing[0].remaining), (25, 30, 45));
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use self::memory::{DEFAULT_MAX_SCOPES, MemoryStore};
#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_DEADLINE, RedisStore, RedisStoreBuilder};

/// A boxed future, for the calls that are not on the hot path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The identity of one limit in one scope: policy name, the limit's index in the policy (0
/// for the budget, 1.. for rate rules in order) and the scope's values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    /// The policy's name.
    pub policy: Arc<str>,
    /// The limit's index within the policy.
    pub limit: u16,
    /// The scope's values, `dimension=value` joined with `,` (empty for a global policy).
    pub scope: Arc<str>,
}

impl ScopeKey {
    /// A key.
    pub fn new(policy: impl Into<Arc<str>>, limit: u16, scope: impl Into<Arc<str>>) -> Self {
        Self {
            policy: policy.into(),
            limit,
            scope: scope.into(),
        }
    }
}

/// The window a budget counts in, resolved by the layer for the time of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// A calendar window `[start, end)` in unix seconds: a day, a week or a month in UTC.
    Calendar {
        /// Its first second.
        start: u64,
        /// The first second of the next window.
        end: u64,
    },
    /// A rolling window of `buckets` buckets of `bucket_secs`; `bucket` is the current one
    /// (unix seconds / `bucket_secs`). Spend counts until its whole bucket leaves the window.
    Rolling {
        /// The current bucket.
        bucket: u64,
        /// Buckets in the window.
        buckets: u32,
        /// Seconds per bucket.
        bucket_secs: u64,
    },
    /// No window: the budget never resets.
    Never,
}

impl Window {
    /// When this window resets, in unix seconds: the calendar end, or for a rolling window
    /// when its oldest bucket leaves.
    pub fn resets_at(&self) -> Option<u64> {
        match *self {
            Window::Calendar { end, .. } => Some(end),
            Window::Rolling {
                bucket,
                bucket_secs,
                ..
            } => Some((bucket + 1) * bucket_secs),
            Window::Never => None,
        }
    }

    /// The oldest bucket still counted, for rolling windows.
    pub fn oldest_bucket(&self) -> u64 {
        match *self {
            Window::Rolling {
                bucket, buckets, ..
            } => bucket.saturating_sub(u64::from(buckets) - 1),
            _ => 0,
        }
    }
}

/// What a limit checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A budget: spent plus reserved plus this charge must stay within `limit`.
    Budget {
        /// The hard limit; `None` to only count (and alert).
        limit: Option<u64>,
        /// The soft limit.
        alert: Option<u64>,
        /// The window.
        window: Window,
    },
    /// A rate: at most `value` units per `period_secs`, refilled evenly (GCRA, kept as a
    /// bucket level).
    Rate {
        /// Units per period (0 refuses everything).
        value: u64,
        /// The period.
        period_secs: u64,
    },
}

/// One limit to take an amount from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Which limit, in which scope.
    pub key: ScopeKey,
    /// How it checks.
    pub rule: Rule,
    /// How much to reserve (micro-USD, tokens or requests).
    pub amount: u64,
}

/// All the charges of one request, reserved together and settled together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// A process-unique id (random start, then counted), naming the lease in a shared store.
    pub id: u64,
    /// The time of the reservation, in unix microseconds (the layer's clock).
    pub now_micros: u64,
    /// How long a shared store keeps the reservation if it is never settled (a crash).
    pub lease: Duration,
    /// The charges.
    pub charges: Vec<Charge>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    // A random start per process, so two gateways sharing a store never reuse an id.
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| RandomState::new().hash_one(std::process::id()) >> 1);
    start.wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

impl Reservation {
    /// A reservation at `now_micros` with a fresh id.
    pub fn new(now_micros: u64, lease: Duration, charges: Vec<Charge>) -> Self {
        Self {
            id: next_id(),
            now_micros,
            lease,
            charges,
        }
    }
}

/// Where a limit stands after a step, computed from the store's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Budgets: settled spend in the window. Rates: units in use (`value - remaining`).
    pub used: u64,
    /// Budgets: reserved by requests in flight (this one included when admitted).
    pub reserved: u64,
    /// What is left (`u64::MAX` without a hard limit).
    pub remaining: u64,
    /// Until the window resets (budgets) or the bucket is full again (rates).
    pub reset_after: Option<Duration>,
    /// For a refusal: how long until the request could fit (the reset for a budget).
    pub retry_after: Option<Duration>,
    /// Budgets: this reservation took the window over the alert threshold.
    pub crossed_alert: bool,
    /// Budgets: the window is at or over the alert threshold.
    pub over_alert: bool,
}

/// The answer of [`LimitStore::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every charge was taken; where each limit stands, in the order of the charges.
    Admitted(Vec<Standing>),
    /// Nothing was taken: the charge at `index` does not fit.
    Refused {
        /// The charge that did not fit.
        index: usize,
        /// Where its limit stands.
        standing: Standing,
    },
}

/// What went wrong in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store did not answer in time.
    Timeout,
    /// The store could not be reached or failed.
    Unavailable,
    /// The in-memory store holds its maximum of scopes.
    Full,
}

/// A store that could not do a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// Details, for logs.
    pub message: String,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Timeout => "the limit store did not answer in time",
            StoreErrorKind::Unavailable => "the limit store is unavailable",
            StoreErrorKind::Full => "the limit store is full",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// A reservation's answer: at once (in memory) or after I/O.
#[derive(Debug)]
pub enum Reserve<F> {
    /// The answer, already known.
    Ready(Result<Verdict, StoreError>),
    /// A future of the answer.
    Pending(F),
}

/// One limit in one scope as the store holds it, for snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Which limit, in which scope.
    pub key: ScopeKey,
    /// Its counters.
    pub state: EntryState,
}

/// The counters of an [`Entry`].
#[derive(Clone, Debug, PartialEq)]
pub enum EntryState {
    /// A calendar or lifetime budget: `window` is the calendar start (0 for never).
    Budget {
        /// The window start.
        window: u64,
        /// Settled spend.
        used: u64,
        /// Reserved by requests in flight.
        reserved: u64,
    },
    /// A rolling budget: spend by bucket.
    Rolling {
        /// `(bucket, spend)` pairs.
        buckets: Vec<(u64, u64)>,
        /// Reserved by requests in flight.
        reserved: u64,
    },
    /// A rate bucket.
    Rate {
        /// Units in use at `at` (drained evenly since).
        level: f64,
        /// The last update, unix microseconds.
        at: u64,
    },
}

/// The state behind the limits, in two atomic steps (see the [module docs](self)).
pub trait LimitStore: Send + Sync + 'static {
    /// The future of a reservation that needs I/O.
    type Future: Future<Output = Result<Verdict, StoreError>> + Send + Unpin + 'static;

    /// Takes every charge of `reservation`, or none of them.
    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Self::Future>;

    /// Gives `reservation` back and charges `actual[i]` for its charge `i` (budgets: spend;
    /// rates: the amount really used, the difference refilled or taken). Fire and forget:
    /// a shared store sends it in the background and counts its failures.
    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]);

    /// Every limit the store holds, for snapshots.
    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>>;

    /// Whether several processes share this store (false: limits hold per process).
    fn is_shared(&self) -> bool {
        false
    }
}

impl<T: LimitStore> LimitStore for Arc<T> {
    type Future = T::Future;

    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Self::Future> {
        (**self).reserve(reservation)
    }

    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]) {
        (**self).settle(reservation, actual);
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        (**self).entries()
    }

    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
}

const MICROS: u64 = 1_000_000;

/// Lets float noise in a refill never refuse a charge that fits exactly.
const EPSILON: f64 = 1e-9;

fn micros(us: u64) -> Duration {
    Duration::from_micros(us)
}

fn micros_f(us: f64) -> Duration {
    Duration::from_micros(us.max(0.0).ceil() as u64)
}

/// Where a budget stands, from its counters; `before` is spent plus reserved before this
/// charge, `reserved` after it.
pub(crate) fn budget_standing(
    rule_limit: Option<u64>,
    alert: Option<u64>,
    window: &Window,
    used: u64,
    before: u64,
    reserved: u64,
    now_micros: u64,
) -> Standing {
    let total = used.saturating_add(reserved);
    let reset_after = window
        .resets_at()
        .map(|at| micros((at * MICROS).saturating_sub(now_micros)));
    Standing {
        used,
        reserved,
        remaining: rule_limit.map_or(u64::MAX, |l| l.saturating_sub(total)),
        reset_after,
        retry_after: reset_after,
        crossed_alert: alert.is_some_and(|a| before < a && total >= a),
        over_alert: alert.is_some_and(|a| total >= a),
    }
}

/// A rate bucket's level (units in use) at `now`, from its level at `at`: it drains
/// `value` units per period, evenly (the continuous form of GCRA).
pub(crate) fn drain(level: f64, at: u64, now: u64, value: u64, period_secs: u64) -> f64 {
    if now <= at || value == 0 {
        return level;
    }
    let drained = (now - at) as f64 * value as f64 / (period_secs * MICROS) as f64;
    (level - drained).max(0.0)
}

/// Whether `amount` more fits in a bucket at `level`.
pub(crate) fn fits(level: f64, amount: u64, value: u64) -> bool {
    value > 0 && level + amount as f64 <= value as f64 + EPSILON
}

/// Where a rate stands with its bucket at `level`.
pub(crate) fn rate_standing(value: u64, period_secs: u64, level: f64) -> Standing {
    let remaining = if value == 0 {
        0
    } else {
        ((value as f64 - level + EPSILON).floor().max(0.0) as u64).min(value)
    };
    let per_unit = if value == 0 {
        0.0
    } else {
        (period_secs * MICROS) as f64 / value as f64
    };
    Standing {
        used: value - remaining,
        reserved: 0,
        remaining,
        reset_after: Some(micros_f(level * per_unit)),
        retry_after: None,
        crossed_alert: false,
        over_alert: false,
    }
}

/// A refused rate: how long until `amount` fits in the bucket at `level`.
pub(crate) fn rate_refusal(value: u64, period_secs: u64, level: f64, amount: u64) -> Standing {
    let mut standing = rate_standing(value, period_secs, level);
    let wait = if value == 0 {
        micros(period_secs * MICROS)
    } else {
        micros_f(
            (level + amount as f64 - value as f64) * (period_secs * MICROS) as f64 / value as f64,
        )
    };
    standing.retry_after = Some(wait.max(Duration::from_millis(1)));
    standing
}

/// The memory store or the Redis store, chosen at run time (a gateway reading its config):
/// one type for every layer that shares it.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub enum AnyStore {
    /// In this process.
    Memory(MemoryStore),
    /// In Redis, shared by every replica.
    Redis(RedisStore),
}

#[cfg(feature = "redis")]
impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("AnyStore::Memory"),
            Self::Redis(_) => f.write_str("AnyStore::Redis"),
        }
    }
}

#[cfg(feature = "redis")]
impl LimitStore for AnyStore {
    type Future = BoxFuture<'static, Result<Verdict, StoreError>>;

    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Self::Future> {
        match self {
            Self::Memory(s) => match s.reserve(reservation) {
                Reserve::Ready(v) => Reserve::Ready(v),
                Reserve::Pending(f) => Reserve::Pending(Box::pin(f)),
            },
            Self::Redis(s) => s.reserve(reservation),
        }
    }

    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]) {
        match self {
            Self::Memory(s) => s.settle(reservation, actual),
            Self::Redis(s) => s.settle(reservation, actual),
        }
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        match self {
            Self::Memory(s) => s.entries(),
            Self::Redis(s) => s.entries(),
        }
    }

    fn is_shared(&self) -> bool {
        match self {
            Self::Memory(s) => s.is_shared(),
            Self::Redis(s) => s.is_shared(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_admit_exactly_their_burst_and_refill_evenly() {
        for value in [1u64, 3, 7, 60, 1000, 86_400, 999_983] {
            let (mut level, mut admitted) = (0.0, 0);
            while fits(level, 1, value) {
                level += 1.0;
                admitted += 1;
            }
            assert_eq!(admitted, value);
            // A sixtieth of a minute later, a sixtieth of the bucket is free again.
            let later = drain(level, 0, 1_000_000, value, 60);
            assert_eq!(rate_standing(value, 60, later).remaining, value / 60);
        }
        let standing = rate_refusal(100, 60, 100.0, 1);
        assert_eq!(standing.retry_after, Some(Duration::from_millis(600)));
        assert_eq!(
            rate_refusal(0, 60, 0.0, 1).retry_after,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn ids_are_unique() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
    }
}
