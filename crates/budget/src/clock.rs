//! [`Clock`]: unix time for calendar windows, moved by tokio's clock; and the UTC calendar
//! arithmetic the windows need (day, ISO week, month), written out with no date library.
//!
//! ```
//! use portcullis_budget::clock::{self, Clock};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // 2025-03-15T12:00:00Z, a Saturday.
//! let clock = Clock::starting_at(Duration::from_secs(1_742_040_000));
//! tokio::time::advance(Duration::from_secs(60)).await;
//! let now = clock.now().as_secs();
//! assert_eq!(now, 1_742_040_060);
//! assert_eq!(clock::format_utc(clock::day_start(now)), "2025-03-15T00:00:00Z");
//! assert_eq!(clock::format_utc(clock::week_start(now, clock::Weekday::Monday)), "2025-03-10T00:00:00Z");
//! assert_eq!(clock::format_utc(clock::month_start(now)), "2025-03-01T00:00:00Z");
//! assert_eq!(clock::format_utc(clock::next_month_start(now)), "2025-04-01T00:00:00Z");
//! # }
//! ```

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// Unix time moved by tokio's clock: the one [`portcullis_core::clock::Clock`] every layer
/// that keeps time in a store uses.
pub use portcullis_core::clock::Clock;

/// The day a week starts on, for weekly windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// ISO 8601: weeks start on Monday 00:00 UTC (the default).
    #[default]
    Monday,
    /// Weeks start on Sunday 00:00 UTC (what Portkey's docs describe).
    Sunday,
}

pub use portcullis_core::clock::{civil_from_days, days_from_civil};

/// The start of the UTC day holding `secs` (unix seconds).
pub fn day_start(secs: u64) -> u64 {
    secs - secs % DAY
}

/// The start of the week holding `secs`, weeks starting on `first`.
pub fn week_start(secs: u64, first: Weekday) -> u64 {
    let days = secs / DAY;
    // 1970-01-01 was a Thursday: Monday-based weekday 3, Sunday-based 4.
    let offset = match first {
        Weekday::Monday => 3,
        Weekday::Sunday => 4,
    };
    let since_first = (days + offset) % 7;
    (days.saturating_sub(since_first)) * DAY
}

/// The start of the UTC calendar month holding `secs`.
pub fn month_start(secs: u64) -> u64 {
    let (y, m, _) = civil_from_days((secs / DAY) as i64);
    days_from_civil(y, m, 1).max(0) as u64 * DAY
}

/// The start of the UTC calendar month after the one holding `secs`.
pub fn next_month_start(secs: u64) -> u64 {
    let (y, m, _) = civil_from_days((secs / DAY) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1).max(0) as u64 * DAY
}

/// `secs` as an RFC 3339 UTC timestamp, e.g. `2025-03-01T00:00:00Z`.
pub fn format_utc(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / DAY) as i64);
    let rest = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(y: i64, m: u32, d: u32, h: u64) -> u64 {
        days_from_civil(y, m, d) as u64 * DAY + h * 3600
    }

    #[test]
    fn civil_round_trips_over_four_centuries() {
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(format_utc(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn days_weeks_and_months_start_where_the_calendar_says() {
        let t = at(2024, 2, 29, 13) + 59; // a Thursday in a leap February
        assert_eq!(day_start(t), at(2024, 2, 29, 0));
        assert_eq!(week_start(t, Weekday::Monday), at(2024, 2, 26, 0));
        assert_eq!(week_start(t, Weekday::Sunday), at(2024, 2, 25, 0));
        assert_eq!(month_start(t), at(2024, 2, 1, 0));
        assert_eq!(next_month_start(t), at(2024, 3, 1, 0));
        // December rolls into January of the next year.
        let dec = at(2024, 12, 31, 23);
        assert_eq!(month_start(dec), at(2024, 12, 1, 0));
        assert_eq!(next_month_start(dec), at(2025, 1, 1, 0));
        // A Monday is its own week start; a Sunday belongs to the week before (ISO).
        assert_eq!(
            week_start(at(2025, 3, 10, 0), Weekday::Monday),
            at(2025, 3, 10, 0)
        );
        assert_eq!(
            week_start(at(2025, 3, 16, 23), Weekday::Monday),
            at(2025, 3, 10, 0)
        );
        assert_eq!(
            week_start(at(2025, 3, 16, 23), Weekday::Sunday),
            at(2025, 3, 16, 0)
        );
    }

    #[test]
    fn every_day_of_a_year_lands_in_its_week_and_month() {
        let start = days_from_civil(2023, 1, 1);
        for day in start..start + 800 {
            let t = day as u64 * DAY + 12_345;
            let (y, m, d) = civil_from_days(day);
            let ws = week_start(t, Weekday::Monday);
            assert!(ws <= t && t - ws < 7 * DAY);
            // The week start is a Monday (1970-01-05 was one).
            assert_eq!((ws / DAY + 3) % 7, 0);
            assert_eq!(month_start(t), days_from_civil(y, m, 1) as u64 * DAY);
            assert!(next_month_start(t) > t);
            assert_eq!(civil_from_days((next_month_start(t) / DAY) as i64).2, 1);
            assert_eq!(format_utc(t)[..10], format!("{y:04}-{m:02}-{d:02}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_clock() {
        let clock = Clock::starting_at(Duration::from_secs(at(2025, 1, 31, 23)));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now().as_secs(), at(2025, 2, 1, 0));
    }
}
