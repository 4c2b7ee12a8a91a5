//! Exponential backoff with full jitter, and the wait future the policy returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// Picks the wait before a retry inside its backoff window.
///
/// The window of retry `k` (1, 2, …) is `min(cap, base × 2^(k-1))`; full jitter picks
/// uniformly in `[0, window]`, so retries from many clients spread out instead of arriving in
/// waves. The default draws whole milliseconds from a thread-local generator;
/// [`RetryPolicyBuilder::jitter_seed`](crate::RetryPolicyBuilder::jitter_seed) makes the draws
/// repeatable, and any `Fn(Duration) -> Duration` is a jitter (a test can pin the wait to the
/// whole window with `|window| window`). A pick longer than the window is cut to the window.
pub trait Jitter: Send + Sync + 'static {
    /// The wait before a retry whose backoff window is `window`.
    fn pick(&self, window: Duration) -> Duration;
}

impl<F> Jitter for F
where
    F: Fn(Duration) -> Duration + Send + Sync + 'static,
{
    fn pick(&self, window: Duration) -> Duration {
        self(window)
    }
}

/// Full jitter from the thread-local generator, in whole milliseconds.
pub(crate) struct RandomJitter;

impl Jitter for RandomJitter {
    fn pick(&self, window: Duration) -> Duration {
        Duration::from_millis(fastrand::u64(0..=window_millis(window)))
    }
}

/// Full jitter from one seeded generator shared by every request, so a run is repeatable.
pub(crate) struct SeededJitter(Mutex<fastrand::Rng>);

impl SeededJitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }
}

impl Jitter for SeededJitter {
    fn pick(&self, window: Duration) -> Duration {
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(rng.u64(0..=window_millis(window)))
    }
}

fn window_millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// The backoff window of retry `k` (1 for the first retry): `min(cap, base × 2^(k-1))`.
pub(crate) fn window(base: Duration, cap: Duration, k: u32) -> Duration {
    let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |w| w.min(cap))
}

pin_project! {
    /// The wait before a retry: the `Future` of
    /// [`RetryPolicy`](crate::RetryPolicy)'s [`Policy`](tower::retry::Policy) impl.
    ///
    /// A zero wait is ready at once without touching the timer; any other wait is a
    /// [`tokio::time::Sleep`], so it needs a tokio runtime with time enabled and follows
    /// `tokio::time::pause` in tests.
    pub struct Backoff {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Backoff {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            sleep: (!wait.is_zero()).then(|| tokio::time::sleep(wait)),
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("deadline", &self.sleep.as_ref().map(|s| s.deadline()))
            .finish()
    }
}

impl Future for Backoff {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap() {
        let ms = Duration::from_millis;
        let windows: Vec<_> = (1..=7).map(|k| window(ms(500), ms(8000), k)).collect();
        assert_eq!(
            windows,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(8000),
                ms(8000)
            ]
        );
        assert_eq!(window(ms(500), ms(8000), 40), ms(8000), "no overflow");
        assert_eq!(window(Duration::MAX, ms(8000), 3), ms(8000), "no overflow");
    }

    #[test]
    fn jitter_stays_in_the_window() {
        let seeded = SeededJitter::new(3);
        for _ in 0..1000 {
            let w = Duration::from_millis(250);
            assert!(RandomJitter.pick(w) <= w);
            assert!(seeded.pick(w) <= w);
        }
        assert_eq!(RandomJitter.pick(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn seeded_jitter_repeats() {
        let draws = |seed| {
            let j = SeededJitter::new(seed);
            (0..8)
                .map(|_| j.pick(Duration::from_secs(8)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(11), draws(11));
        assert_ne!(draws(11), draws(12));
    }
}
