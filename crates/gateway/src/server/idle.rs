//! Closing connections that carry no request: one that sends no request at all within the
//! header timeout, one idle between requests past the idle timeout. The requests of a
//! connection mark their start and end here; the connection's task watches.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// `idle_since` before the first request.
const NEVER: u64 = u64::MAX;

/// The requests in flight on one connection, and since when there have been none.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last request, or [`NEVER`].
    idle_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(NEVER),
        }
    }

    /// A request's head arrived.
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A request ended: its response body was delivered or dropped.
    pub(crate) fn end(&self) {
        // The time first: a watcher that sees no request in flight sees when that began.
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.idle_since.store(ms, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// When the connection is due to close if nothing starts before; `None` while a request
    /// is in flight.
    fn deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(match self.idle_since.load(Ordering::SeqCst) {
            NEVER => self.opened + first_request,
            ms => self.opened + Duration::from_millis(ms) + idle,
        })
    }

    /// Resolves once the connection has carried no request for too long: none at all within
    /// `first_request` of opening, or none in flight for `idle`.
    pub(crate) async fn idle(&self, first_request: Duration, idle: Duration) {
        loop {
            let now = Instant::now();
            // A request that ends from now on sets a deadline no sooner than `now + idle`: no
            // need to look before then, nor to sleep past it.
            let look_again = now + idle;
            match self.deadline(first_request, idle) {
                Some(deadline) if deadline <= now => return,
                Some(deadline) => tokio::time::sleep_until(deadline.min(look_again)).await,
                None => tokio::time::sleep_until(look_again).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_at_the_first_request_deadline() {
        let activity = Activity::new();
        let start = Instant::now();
        activity.idle(FIRST, IDLE).await;
        assert_eq!(start.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_time_counts_from_the_first_request_end_not_the_first_request_deadline() {
        let activity = std::sync::Arc::new(Activity::new());
        let start = Instant::now();
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle(IDLE * 2, IDLE).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        activity.start();
        activity.end();
        watcher.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1) + IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_then_the_idle_time_counts() {
        let activity = std::sync::Arc::new(Activity::new());
        let start = Instant::now();
        activity.start();
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle(FIRST, IDLE).await }
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!watcher.is_finished(), "busy for 100 s, still open");
        activity.end();
        watcher.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(100) + IDLE);
    }
}
