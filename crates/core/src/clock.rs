//! [`Clock`]: unix time that moves with tokio's clock, for the layers that keep time in a
//! store (cache entries' ages, budget windows); and the calendar arithmetic
//! ([`civil_from_days`], [`days_from_civil`]) that every writer of a UTC date shares (budget
//! windows, the log's timestamps, guard results, the console).
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

/// Days since 1970-01-01 of the civil date `y-m-d` (proleptic Gregorian calendar).
///
/// The era arithmetic: years are counted from March, so the leap day ends a year; a
/// 400-year era has exactly 146,097 days.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
