//! [`Clock`]: unix time that moves with tokio's clock, for the layers that keep time in a
//! store (cache entries' ages, budget windows).
//!
//! ```
//! use portcullis_core::clock::Clock;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let clock = Clock::starting_at(Duration::from_secs(1_742_040_000));
//! tokio::time::advance(Duration::from_secs(60)).await;
//! assert_eq!(clock.now().as_secs(), 1_742_040_060);
//! assert_eq!(clock.now_millis(), 1_742_040_060_000);
//! # }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Unix time, read from a wall-clock reading taken once and tokio's monotonic clock since.
///
/// A layer never reads `std::time::Instant` or the system clock per request: it adds the
/// [`tokio::time::Instant`] elapsed since the anchor to the anchor's unix time. So a test
/// that pauses tokio's clock moves it with `tokio::time::advance`, and a system clock
/// stepped backwards by NTP never moves it back. Copies share the anchor.
#[derive(Clone, Copy)]
pub struct Clock {
    anchor: Duration,
    start: Instant,
}

impl Clock {
    /// A clock anchored at the system's unix time now.
    pub fn system() -> Self {
        let anchor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::starting_at(anchor)
    }

    /// A clock that reads `unix` (time since 1970-01-01T00:00:00Z) now, and moves with
    /// tokio's clock from here on: for tests and for replaying a day.
    pub fn starting_at(unix: Duration) -> Self {
        Self {
            anchor: unix,
            start: Instant::now(),
        }
    }

    /// Time since the unix epoch.
    pub fn now(&self) -> Duration {
        self.anchor + self.start.elapsed()
    }

    /// Milliseconds since the unix epoch.
    pub fn now_millis(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Microseconds since the unix epoch.
    pub fn now_micros(&self) -> u64 {
        u64::try_from(self.now().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}
