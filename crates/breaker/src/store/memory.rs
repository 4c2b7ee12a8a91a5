use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Admission, BreakerStore, Permit, State, Transition};
use crate::{BreakerPolicy, Outcome};

/// How many buckets the failure-rate window is cut into.
const BUCKETS: usize = 30;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// The in-memory store: one circuit, in this process.
///
/// The closed state takes no lock. The state and its epoch share one atomic word; failures in
/// a row are an atomic counter; the failure-rate window is a ring of 30 atomic buckets (one
/// second each for the default 30 s window), each packing its period, calls and failures into
/// one word, so that a call is counted with one compare-and-swap and old periods age out a
/// bucket at a time. A bucket counts at most 65 535 calls; calls beyond that in one bucket
/// period are left out of the rate (the share among the first ones stands for them).
///
/// Transitions, and every step of an open or half-open circuit that cannot be answered from
/// the atomics alone, take a short mutex.
pub struct MemoryStore {
    origin: Instant,
    /// Read on every call; written only by transitions.
    hot: Padded<Hot>,
    /// Written by every failure, and by the first success after failures.
    consecutive: Padded<AtomicU32>,
    /// Written by every call.
    buckets: Padded<[AtomicU64; BUCKETS]>,
    /// Probes out while half-open; the lock serialises transitions.
    probes: Mutex<u32>,
}

struct Hot {
    /// `epoch << STATE_BITS | state`.
    word: AtomicU64,
    /// While open: the end of the cooldown, in nanoseconds since `origin`.
    open_until: AtomicU64,
}

/// Keeps what different calls write off each other's cache lines.
#[repr(align(128))]
struct Padded<T>(T);

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A closed circuit.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            hot: Padded(Hot {
                word: AtomicU64::new(CLOSED),
                open_until: AtomicU64::new(0),
            }),
            consecutive: Padded(AtomicU32::new(0)),
            buckets: Padded(std::array::from_fn(|_| AtomicU64::new(0))),
            probes: Mutex::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u32> {
        self.probes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The rest of the cooldown, if it is not over.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = self.hot.0.open_until.load(Ordering::Acquire);
        let at = self.nanos(now);
        (at < until).then(|| Duration::from_nanos(until - at))
    }

    fn publish(&self, epoch: u64, state: u64) {
        self.hot
            .0
            .word
            .store(epoch << STATE_BITS | state, Ordering::Release);
    }

    /// The bucket period `now` falls in.
    fn period(&self, policy: &BreakerPolicy, now: Instant) -> u32 {
        let window = u64::try_from(policy.get_window().as_nanos()).unwrap_or(u64::MAX);
        let width = (window / BUCKETS as u64).max(1);
        // Periods wrap after 2^32 widths (136 years for a 30 s window); buckets are compared
        // by wrapping distance, so only a bucket untouched for exactly that long could alias.
        (self.nanos(now) / width) as u32
    }

    fn count(&self, period: u32, failure: bool) {
        let slot = &self.buckets.0[period as usize % BUCKETS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (at, failures, calls) = unpack(current);
            let next = if at == period {
                if calls == u16::MAX {
                    return;
                }
                pack(at, failures + u16::from(failure), calls + 1)
            } else if (at.wrapping_sub(period) as i32) > 0 {
                // A later period already took the slot: this call is too old to count.
                return;
            } else {
                pack(period, u16::from(failure), 1)
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Failures and calls in the window that ends in `period`.
    fn window(&self, period: u32) -> (u64, u64) {
        self.buckets.0.iter().fold((0, 0), |(f, c), slot| {
            let (at, failures, calls) = unpack(slot.load(Ordering::Relaxed));
            if period.wrapping_sub(at) < BUCKETS as u32 {
                (f + u64::from(failures), c + u64::from(calls))
            } else {
                (f, c)
            }
        })
    }

    /// Opens the circuit if it is still in `from` at `epoch`. Called with the lock held.
    fn open(
        &self,
        probes: &mut u32,
        policy: &BreakerPolicy,
        now: Instant,
        epoch: u64,
        from: u64,
        retry_after: Option<Duration>,
    ) -> Option<Transition> {
        if self.hot.0.word.load(Ordering::Acquire) != epoch << STATE_BITS | from {
            return None;
        }
        let cooldown = policy.cooldown_for(retry_after);
        let until = self
            .nanos(now)
            .saturating_add(u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX));
        self.hot.0.open_until.store(until, Ordering::Release);
        *probes = 0;
        self.publish(epoch + 1, OPEN);
        Some(Transition {
            from: state_of(from),
            to: State::Open,
            cooldown: Some(cooldown),
        })
    }

    fn check_locked(
        &self,
        policy: &BreakerPolicy,
        now: Instant,
    ) -> (Admission, Option<Transition>) {
        let mut probes = self.lock();
        let word = self.hot.0.word.load(Ordering::Acquire);
        let epoch = word >> STATE_BITS;
        match word & STATE_MASK {
            CLOSED => (
                Admission::Allowed(Permit {
                    epoch,
                    probe: false,
                }),
                None,
            ),
            OPEN => {
                if let Some(wait) = self.remaining(now) {
                    return (
                        Admission::Rejected {
                            retry_after: Some(wait),
                        },
                        None,
                    );
                }
                *probes = 1;
                self.publish(epoch + 1, HALF_OPEN);
                let permit = Permit {
                    epoch: epoch + 1,
                    probe: true,
                };
                let transition = Transition {
                    from: State::Open,
                    to: State::HalfOpen,
                    cooldown: None,
                };
                (Admission::Allowed(permit), Some(transition))
            }
            _ => {
                if *probes < policy.get_probes() {
                    *probes += 1;
                    (Admission::Allowed(Permit { epoch, probe: true }), None)
                } else {
                    (Admission::Rejected { retry_after: None }, None)
                }
            }
        }
    }

    fn record_probe(
        &self,
        policy: &BreakerPolicy,
        now: Instant,
        epoch: u64,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> Option<Transition> {
        let mut probes = self.lock();
        if self.hot.0.word.load(Ordering::Acquire) != epoch << STATE_BITS | HALF_OPEN {
            return None;
        }
        match outcome {
            Outcome::Ignored => {
                *probes = probes.saturating_sub(1);
                None
            }
            Outcome::Failure => self.open(&mut probes, policy, now, epoch, HALF_OPEN, retry_after),
            Outcome::Success => {
                // A fresh start: nothing from before the circuit opened counts any more.
                for slot in &self.buckets.0 {
                    slot.store(0, Ordering::Relaxed);
                }
                self.consecutive.0.store(0, Ordering::Relaxed);
                *probes = 0;
                self.publish(epoch + 1, CLOSED);
                Some(Transition {
                    from: State::HalfOpen,
                    to: State::Closed,
                    cooldown: None,
                })
            }
        }
    }
}

impl BreakerStore for MemoryStore {
    fn check(&self, policy: &BreakerPolicy, now: Instant) -> (Admission, Option<Transition>) {
        let word = self.hot.0.word.load(Ordering::Acquire);
        match word & STATE_MASK {
            CLOSED => {
                let permit = Permit {
                    epoch: word >> STATE_BITS,
                    probe: false,
                };
                return (Admission::Allowed(permit), None);
            }
            OPEN => {
                if let Some(wait) = self.remaining(now) {
                    let rejected = Admission::Rejected {
                        retry_after: Some(wait),
                    };
                    return (rejected, None);
                }
            }
            _ => {}
        }
        self.check_locked(policy, now)
    }

    fn record(
        &self,
        policy: &BreakerPolicy,
        now: Instant,
        permit: Permit,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> Option<Transition> {
        let word = self.hot.0.word.load(Ordering::Acquire);
        if word >> STATE_BITS != permit.epoch {
            return None;
        }
        if permit.probe {
            return self.record_probe(policy, now, permit.epoch, outcome, retry_after);
        }
        match outcome {
            Outcome::Ignored => None,
            Outcome::Success => {
                // Read first: a run of successes never writes the shared counter.
                if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                    self.consecutive.0.store(0, Ordering::Relaxed);
                }
                self.count(self.period(policy, now), false);
                None
            }
            Outcome::Failure => {
                let run = self
                    .consecutive
                    .0
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let period = self.period(policy, now);
                self.count(period, true);
                let trips = policy.consecutive_trips(run) || {
                    let (failures, calls) = self.window(period);
                    policy.rate_trips(failures, calls)
                };
                if !trips {
                    return None;
                }
                let mut probes = self.lock();
                self.open(&mut probes, policy, now, permit.epoch, CLOSED, retry_after)
            }
        }
    }

    fn state(&self) -> State {
        state_of(self.hot.0.word.load(Ordering::Acquire) & STATE_MASK)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.hot.0.word.load(Ordering::Relaxed);
        f.debug_struct("MemoryStore")
            .field("state", &state_of(word & STATE_MASK))
            .field("epoch", &(word >> STATE_BITS))
            .field(
                "consecutive_failures",
                &self.consecutive.0.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

fn state_of(bits: u64) -> State {
    match bits {
        CLOSED => State::Closed,
        OPEN => State::Open,
        _ => State::HalfOpen,
    }
}

/// A bucket: its period in the high half, failures and calls in the low half.
fn pack(period: u32, failures: u16, calls: u16) -> u64 {
    u64::from(period) << 32 | u64::from(failures) << 16 | u64::from(calls)
}

fn unpack(bucket: u64) -> (u32, u16, u16) {
    ((bucket >> 32) as u32, (bucket >> 16) as u16, bucket as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(store: &MemoryStore, policy: &BreakerPolicy) -> Permit {
        match store.check(policy, Instant::now()).0 {
            Admission::Allowed(p) => p,
            other => panic!("expected a permit, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn late_answers_from_an_old_epoch_change_nothing() {
        let policy = BreakerPolicy::new().consecutive_failures(1);
        let store = MemoryStore::new();
        let slow = allowed(&store, &policy);
        let fast = allowed(&store, &policy);
        let opened = store.record(&policy, Instant::now(), fast, Outcome::Failure, None);
        assert_eq!(opened.unwrap().to, State::Open);
        // The slow call, admitted while closed, answers after the circuit opened.
        assert_eq!(
            store.record(&policy, Instant::now(), slow, Outcome::Failure, None),
            None
        );
        assert_eq!(store.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_stops_counting() {
        let policy = BreakerPolicy::new().consecutive_failures(0);
        let store = MemoryStore::new();
        let period = store.period(&policy, Instant::now());
        for _ in 0..u16::MAX {
            store.count(period, false);
        }
        store.count(period, true);
        assert_eq!(store.window(period), (0, u64::from(u16::MAX)));
    }

    #[test]
    fn racing_threads_open_once_and_share_the_probes() {
        let policy = BreakerPolicy::new().consecutive_failures(10).probes(3);
        let store = MemoryStore::new();
        let opened = std::sync::atomic::AtomicUsize::new(0);
        let probes = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if let (Admission::Allowed(p), _) = store.check(&policy, Instant::now()) {
                            assert!(!p.probe);
                            let t =
                                store.record(&policy, Instant::now(), p, Outcome::Failure, None);
                            if t.is_some() {
                                opened.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(opened.into_inner(), 1);
        assert_eq!(store.state(), State::Open);

        // The cooldown is over: of many racing calls, exactly three become probes.
        let later = Instant::now() + Duration::from_secs(60);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let (Admission::Allowed(p), _) = store.check(&policy, later) {
                            assert!(p.probe);
                            probes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(probes.into_inner(), 3);
        assert_eq!(store.state(), State::HalfOpen);
    }

    #[test]
    fn buckets_round_trip() {
        assert_eq!(unpack(pack(u32::MAX, 7, 9)), (u32::MAX, 7, 9));
    }
}
