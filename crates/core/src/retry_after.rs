//! [`retry_after`]: how long an upstream asks us to wait before the next call.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use portcullis_core::retry_after;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", "2".parse().unwrap());
//! assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_secs(2)));
//! headers.insert("retry-after-ms", "250".parse().unwrap());
//! assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(250)));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// OpenAI's millisecond header.
const RETRY_AFTER_MS: &str = "retry-after-ms";
/// Azure OpenAI's millisecond header.
const X_MS_RETRY_AFTER_MS: &str = "x-ms-retry-after-ms";

/// The wait the response headers ask for, or `None` when none of them can be read.
///
/// Precedence, Portkey's (the millisecond headers are the more precise readings, and a
/// server that sends one sends `retry-after` only as its rounded-up copy):
///
/// 1. `retry-after-ms` (OpenAI), milliseconds;
/// 2. `x-ms-retry-after-ms` (Azure OpenAI), milliseconds;
/// 3. `retry-after`, seconds or an HTTP date (IMF-fixdate) counted from `now`.
///
/// The first header that reads as a plain non-negative number (digits with an optional
/// fraction: no sign, exponent, `inf` or `NaN`) or a valid date wins; one that cannot be read
/// is skipped. A date in the past asks for no wait (`Duration::ZERO`); a wait too large for a
/// [`Duration`] is unreadable. `now` is a parameter so that callers (and tests) choose the
/// clock.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    text(RETRY_AFTER_MS)
        .and_then(millis)
        .or_else(|| text(X_MS_RETRY_AFTER_MS).and_then(millis))
        .or_else(|| {
            let value = text(http::header::RETRY_AFTER.as_str())?;
            seconds(value).or_else(|| {
                let date = http_date(value.trim())?;
                Some(date.duration_since(now).unwrap_or(Duration::ZERO))
            })
        })
}

fn millis(value: &str) -> Option<Duration> {
    non_negative(value).and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
}

fn seconds(value: &str) -> Option<Duration> {
    non_negative(value).and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// A plain non-negative number: digits with an optional fraction (no sign, exponent, `inf`).
fn non_negative(value: &str) -> Option<f64> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && digits(fraction) {
        value.parse().ok()
    } else {
        None
    }
}

/// Parses an IMF-fixdate, the HTTP date format: `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// The day name must be one of the seven but is not checked against the date, as most HTTP
/// implementations do; dates before 1970 become the epoch (long past either way).
fn http_date(value: &str) -> Option<SystemTime> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = value.as_bytes();
    if b.len() != 29
        || !DAYS.contains(&&b[0..3])
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || &b[25..29] != b" GMT"
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &b[range];
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &b[8..11])? as u32 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    // 60 is a leap second.
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    // Months counted from March, so that the leap day ends the year.
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn parses_imf_fixdate() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(at(0)));
        assert_eq!(
            http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(at(951_868_799))
        );
        assert_eq!(
            http_date("Sat, 01 Mar 2100 00:00:00 GMT"),
            Some(at(4_107_542_400))
        );
        assert_eq!(http_date("Wed, 31 Dec 1969 23:59:59 GMT"), Some(at(0)));
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Mon, 29 Feb 2100 00:00:00 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 0a Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_headers_in_portkey_order() {
        let now = at(784_111_770);
        let wait = |pairs| retry_after(&headers(pairs), now);
        assert_eq!(wait(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            wait(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            wait(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        assert_eq!(
            wait(&[("retry-after", "3"), ("x-ms-retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            wait(&[
                ("retry-after", "3"),
                ("x-ms-retry-after-ms", "250"),
                ("retry-after-ms", "120")
            ]),
            Some(Duration::from_millis(120))
        );
        assert_eq!(
            wait(&[("retry-after-ms", "soon"), ("retry-after", "2")]),
            Some(Duration::from_secs(2)),
            "an unreadable header is skipped"
        );
        for bad in ["-1", "inf", "NaN", "1e3", "", "+2", "soon"] {
            assert_eq!(
                retry_after(
                    &[(http::header::RETRY_AFTER, bad.parse().unwrap())]
                        .into_iter()
                        .collect(),
                    now
                ),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(wait(&[]), None);
    }

    #[test]
    fn millisecond_headers() {
        let ms = Duration::from_millis;
        let cases: [(&[(&'static str, &'static str)], Duration); 6] = [
            (&[("retry-after-ms", "250")], ms(250)),
            (&[("retry-after-ms", "0.5")], Duration::from_micros(500)),
            (&[("retry-after-ms", "0")], Duration::ZERO),
            // Surrounding white space is allowed.
            (&[("retry-after-ms", " 30 ")], ms(30)),
            (&[("x-ms-retry-after-ms", "1500")], ms(1500)),
            // An unreadable retry-after-ms gives way to x-ms-retry-after-ms.
            (
                &[("x-ms-retry-after-ms", "40"), ("retry-after-ms", "-5")],
                ms(40),
            ),
        ];
        for (pairs, wait) in cases {
            assert_eq!(
                retry_after(&headers(pairs), at(1_000_000)),
                Some(wait),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn garbage_is_no_reading() {
        let now = at(1_000_000);
        for bad in [
            "", " ", "soon", "-1", "+1", "1e3", "inf", "NaN", "1.", ".5", "1,5", "0x10", "1 2",
        ] {
            for name in ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"] {
                let h: HeaderMap = [(
                    name.parse::<http::HeaderName>().unwrap(),
                    bad.parse().unwrap(),
                )]
                .into_iter()
                .collect();
                assert_eq!(retry_after(&h, now), None, "{name}: {bad:?}");
            }
        }
        // Too large for a Duration: unreadable, not a panic.
        let huge = "9".repeat(40);
        let h: HeaderMap = [(http::header::RETRY_AFTER, huge.parse().unwrap())]
            .into_iter()
            .collect();
        assert_eq!(retry_after(&h, now), None);
        // Bytes that are not text.
        let h: HeaderMap = [(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_bytes(b"\xff3").unwrap(),
        )]
        .into_iter()
        .collect();
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn dates_count_from_now() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let h = headers(&[("retry-after", date)]);
        let then = at(784_111_777);
        assert_eq!(
            retry_after(&h, then - Duration::from_secs(90)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(retry_after(&h, then), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&h, then + Duration::from_secs(3600)),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 UTC")]),
                then
            ),
            None,
            "only IMF-fixdate is read"
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", date), ("retry-after-ms", "100")]),
                then - Duration::from_secs(90)
            ),
            Some(Duration::from_millis(100)),
            "the millisecond header comes first"
        );
    }
}
