//! Where a circuit's state lives: the [`BreakerStore`] trait and its in-memory default,
//! [`MemoryStore`].
//!
//! A store does two steps, each of which must be atomic on its own: [`check`] (may this call
//! go ahead?) and [`record`] (what did a call that went ahead tell?). Neither reads a value in
//! one step and writes it back in another, so a shared store (Redis, later) can do each step
//! as one script. The [`BreakerPolicy`] is passed to every step, so a store needs no set-up of its
//! own and a script takes it as arguments.
//!
//! Every call that a check lets through carries a [`Permit`] naming the *epoch* of the
//! circuit: the count of transitions so far. A record whose epoch is no longer current (a
//! slow call admitted before the circuit opened, a probe after another probe decided) changes
//! nothing, so late answers never re-open or close a circuit that has moved on.
//!
//! ```
//! use portcullis_breaker::store::{Admission, BreakerStore, MemoryStore, State};
//! use portcullis_breaker::{Outcome, BreakerPolicy};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! let policy = BreakerPolicy::new().consecutive_failures(1);
//! let store = MemoryStore::new();
//! let (Admission::Allowed(permit), None) = store.check(&policy, Instant::now()) else {
//!     unreachable!("a new circuit is closed")
//! };
//! let wait = Some(Duration::from_secs(5)); // the upstream's Retry-After
//! let opened = store.record(&policy, Instant::now(), permit, Outcome::Failure, wait).unwrap();
//! assert_eq!((opened.to, opened.cooldown), (State::Open, wait));
//! let (refused, _) = store.check(&policy, Instant::now());
//! assert!(matches!(refused, Admission::Rejected { retry_after: Some(_) }));
//! ```
//!
//! [`check`]: BreakerStore::check
//! [`record`]: BreakerStore::record

mod memory;

use std::time::Duration;

use tokio::time::Instant;

pub use self::memory::MemoryStore;
use crate::{BreakerPolicy, Outcome};

/// The state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast with `Unavailable` until the cooldown is over.
    Open,
    /// The cooldown is over: a few probes go through, other calls fail fast.
    HalfOpen,
}

/// A change of state, reported by the store step that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// When the circuit opened: for how long.
    pub cooldown: Option<Duration>,
}

/// The go-ahead for one call, to hand back to [`BreakerStore::record`] with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    /// The epoch of the circuit when the call was let through.
    pub epoch: u64,
    /// Whether the call is a probe of a half-open circuit.
    pub probe: bool,
}

/// The answer of [`BreakerStore::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The call may go ahead.
    Allowed(Permit),
    /// The call must fail fast: the circuit is open, or half-open with every probe out.
    Rejected {
        /// How long until the circuit lets calls through again, when known (the rest of the
        /// cooldown; `None` while probes decide).
        retry_after: Option<Duration>,
    },
}

/// The state of circuits, behind the two atomic steps described in the [module docs](self).
///
/// `now` is the caller's clock ([`tokio::time::Instant`], so tests may pause it); a shared
/// store may use its own clock instead, since it hands back only relative durations.
pub trait BreakerStore: Send + Sync + 'static {
    /// Whether a call may go ahead now.
    ///
    /// An open circuit whose cooldown is over becomes half-open here, and the call that finds
    /// it so is its first probe; that change is returned with the admission.
    fn check(&self, policy: &BreakerPolicy, now: Instant) -> (Admission, Option<Transition>);

    /// Records what a call let through by [`check`](Self::check) told, and returns the change
    /// of state it caused, if any.
    ///
    /// `retry_after` is the wait the upstream asked for on a failure; a circuit it opens stays
    /// open that long ([`BreakerPolicy::cooldown_for`]).
    fn record(
        &self,
        policy: &BreakerPolicy,
        now: Instant,
        permit: Permit,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> Option<Transition>;

    /// The state as last stored. An open circuit whose cooldown is over still reads `Open`
    /// until the next call finds it and makes it half-open.
    fn state(&self) -> State;
}
