//! Each request's log line (target [`TARGET`], level INFO): a tracing event for whatever
//! subscriber is installed or, once the `portcullis` binary asks for it with
//! [`write_directly_to`], its text written straight to the binary's log writer.
//!
//! As an event, the line went through tracing's dispatch, the fmt layer's buffer, a visitor
//! call per field and `core::fmt` for each `%` field: about 7,000 instructions of the
//! gateway's ~116,000 per request. Written directly it is the same bytes, assembled in a
//! reused buffer and handed to the writer in one piece.
//!
//! The text is what the binary's text layer writes for the event, without colours:
//! tracing-subscriber's full format without the target, the time as
//! [`write_utc_micros`] writes it, the level, and the fields as `DefaultFields` writes them
//! (strings as their `Debug`, `%` fields as their `Display`, integers in decimal). The
//! binary also formats its other events' fields and times with the pieces here
//! ([`write_utc_micros`], [`write_debug_str`], [`write_decimal`]), so both paths read the same.
//!
//! A line logged while a span is current stays an event: the text layer would write the
//! span's name and fields before the line's own.
//!
//! ```
//! use std::time::Duration;
//! use portcullis_gateway::server::request_log::RequestLine;
//!
//! let line = RequestLine {
//!     peer: "127.0.0.1:57784".parse().unwrap(),
//!     method: &http::Method::POST,
//!     path: "/v1/chat/completions",
//!     status: http::StatusCode::OK,
//!     elapsed: Duration::from_micros(170),
//!     trace_id: "618a",
//!     provider: "upstream",
//!     target: None,
//!     attempts: None,
//! };
//! let mut text = String::new();
//! assert!(line.write_text(Duration::from_secs(1_700_000_000), &mut text));
//! assert_eq!(
//!     text,
//!     "2023-11-14T22:13:20.000000Z  INFO peer=127.0.0.1:57784 method=POST \
//!      path=\"/v1/chat/completions\" status=200 ms=0.170 trace_id=\"618a\" \
//!      provider=\"upstream\" target= attempts=\n",
//! );
//! ```

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use portcullis_core::attempts::Attempts;
use portcullis_core::context::TargetPath;

use crate::log_writer::BatchWriter;

/// The target of the request log line.
pub const TARGET: &str = "portcullis::request";

/// Where request lines go as text, once the binary has asked for it.
static DIRECT: OnceLock<BatchWriter> = OnceLock::new();

/// Whether request lines are logged, once the process has said so ([`shown`]).
static SHOWN: OnceLock<bool> = OnceLock::new();

/// Tells the server, once, whether request lines are logged at all, so that it does not ask
/// the subscriber per request. Asking is a `tracing::enabled!` probe, and with per-layer
/// filters a probe a filter refuses leaves that refusal in tracing-subscriber's thread-local
/// state, where it drops the next event of a callsite that skips the check
/// (tokio-rs/tracing#2519). Without this call every request asks. The first call wins.
pub fn shown(logged: bool) {
    let _ = SHOWN.set(logged);
}

/// Whether this request's line is logged: as the process said ([`shown`]), else as the
/// subscriber answers for [`TARGET`] at INFO.
pub(crate) fn enabled() -> bool {
    match SHOWN.get() {
        Some(&logged) => logged,
        None => tracing::enabled!(target: TARGET, tracing::Level::INFO),
    }
}

/// A buffer kept past this after a line is given back: one odd, huge path should not hold
/// its memory for the thread's lifetime.
const KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// Each thread's line under assembly, reused from one request to the next.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// From now on, writes each request's log line to `writer` as [`RequestLine::write_text`]
/// writes it (with the time it is logged), instead of as a tracing event, unless a span is
/// current then.
///
/// Whether a line is logged at all is still the subscriber's call: a request logs one only
/// when [`TARGET`] is enabled at INFO. So this is for a process whose subscriber writes those
/// events, and no other one, to `writer` in that text, and does nothing else with them: the
/// `portcullis` binary writing text without colours, with a filter that lets its text layer
/// write the line (other layers, such as OTLP's, take only events inside a span). Everywhere
/// else (JSON, colours, a library's or a test's own subscriber) the line stays an event.
///
/// The first call wins: a later one hands its writer back.
pub fn write_directly_to(writer: BatchWriter) -> Result<(), BatchWriter> {
    DIRECT.set(writer)
}

/// One request's log line: who asked what, and what came of it.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The request's method.
    pub method: &'a Method,
    /// The request's path.
    pub path: &'a str,
    /// The response's status.
    pub status: StatusCode,
    /// The time from the request to its response head.
    pub elapsed: Duration,
    /// The request's trace id (empty when the response has none).
    pub trace_id: &'a str,
    /// The provider that answered (empty when none did).
    pub provider: &'a str,
    /// The path of the target that answered.
    pub target: Option<TargetPath>,
    /// The upstream attempts of the request, for a request that could make some.
    pub attempts: Option<&'a Attempts>,
}

impl RequestLine<'_> {
    /// Logs the line: as text to the writer given to [`write_directly_to`], or as an event.
    pub(crate) fn log(&self) {
        self.log_to(DIRECT.get());
    }

    /// Logs the line as text to `direct`, if given and no span is current, else as an event.
    fn log_to(&self, direct: Option<&BatchWriter>) {
        if let Some(writer) = direct
            && !in_span()
            && self.write_to(writer)
        {
            return;
        }
        self.event();
    }

    /// The line as a tracing event, target [`TARGET`], level INFO.
    pub fn event(&self) {
        tracing::info!(
            target: TARGET,
            peer = %self.peer,
            method = %self.method,
            path = self.path,
            status = self.status.as_u16(),
            ms = %Millis(self.elapsed),
            trace_id = self.trace_id,
            provider = self.provider,
            target = %OrEmpty(self.target),
            attempts = %OrEmpty(self.attempts),
        );
    }

    /// Appends the line as the `portcullis` binary's text layer writes its event (without
    /// colours), logged `since_epoch` after the Unix epoch, and answers `true`; or appends
    /// nothing and answers `false` for a time past the year 9999, which that layer writes
    /// otherwise.
    pub fn write_text(&self, since_epoch: Duration, out: &mut String) -> bool {
        let Some(time) = write_utc_micros(out, since_epoch) else {
            return false;
        };
        // A `String` takes every write: nothing here can fail.
        let _ = time.and_then(|()| self.write_fields(out));
        true
    }

    /// Everything after the time: the layer's space after it, the level right-aligned in
    /// five columns and a space, then the fields as `DefaultFields` writes them.
    fn write_fields(&self, out: &mut String) -> fmt::Result {
        out.push_str("  INFO peer=");
        write_peer(out, self.peer)?;
        out.push_str(" method=");
        out.push_str(self.method.as_str());
        out.push_str(" path=");
        write_debug_str(out, self.path)?;
        // A status is three digits (100 to 999): its text is its decimal.
        out.push_str(" status=");
        out.push_str(self.status.as_str());
        out.push_str(" ms=");
        write_millis(out, self.elapsed)?;
        out.push_str(" trace_id=");
        write_debug_str(out, self.trace_id)?;
        out.push_str(" provider=");
        write_debug_str(out, self.provider)?;
        out.push_str(" target=");
        if let Some(target) = self.target {
            out.push_str(target.text().as_str());
        }
        out.push_str(" attempts=");
        if let Some(attempts) = self.attempts {
            write!(out, "{attempts}")?;
        }
        out.push('\n');
        Ok(())
    }

    /// Writes the line, with the time now, to `writer`; `false` (and nothing written) when
    /// the time cannot be written as the text layer would write it, or the thread's buffer
    /// is in use.
    fn write_to(&self, writer: &BatchWriter) -> bool {
        // Before 1970 the text layer's timer writes the time its own way: leave it to it.
        let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        LINE.with(|line| {
            // Only a line logged while this one is assembled (from a `Display` of its
            // fields) would find the buffer taken; it goes as an event instead.
            let Ok(mut line) = line.try_borrow_mut() else {
                return false;
            };
            line.clear();
            let written = self.write_text(since_epoch, &mut line);
            if written {
                // The batch writer takes every line (it waits for room rather than failing).
                let mut writer = writer;
                let _ = writer.write_all(line.as_bytes());
            }
            if line.capacity() > KEPT_CAPACITY {
                *line = String::new();
            }
            written
        })
    }
}

/// Whether the current subscriber is inside a span on this thread.
fn in_span() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.current_span().id().is_some())
}

/// The peer as its `Display` writes it; an IPv4 address (the usual one) without `core::fmt`.
fn write_peer(out: &mut String, peer: SocketAddr) -> fmt::Result {
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                write_decimal(out, u64::from(octet))?;
            }
            out.push(':');
            write_decimal(out, u64::from(v4.port()))
        }
        SocketAddr::V6(_) => write!(out, "{peer}"),
    }
}

/// Writes the instant `since_epoch` after the Unix epoch as tracing-subscriber's default timer
/// writes it (RFC 3339, UTC, microseconds: `2026-12-07T04:13:58.710201Z`), its digits put
/// in place directly rather than as eight padded integer formats. Writes nothing and answers
/// `None` past the year 9999, which that timer writes in a layout of its own (`+10000-…`).
pub fn write_utc_micros<W: fmt::Write + ?Sized>(
    out: &mut W,
    since_epoch: Duration,
) -> Option<fmt::Result> {
    let secs = since_epoch.as_secs();
    let (days, time) = (secs / 86_400, secs % 86_400);
    // Days since the epoch fit an `i64` for every `Duration`; the date is never before 1970.
    let (year, month, day) = portcullis_core::clock::civil_from_days(days as i64);
    let (year, month, day) = (year as u64, u64::from(month), u64::from(day));
    if year > 9999 {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, time / 3600);
    put(14, 2, time % 3600 / 60);
    put(17, 2, time % 60);
    put(20, 6, u64::from(since_epoch.subsec_micros()));
    Some(out.write_str(std::str::from_utf8(&text).expect("digits and separators")))
}

/// Writes `value` as `str`'s `Debug` writes it (quoted, escaped), as `DefaultFields` writes a
/// string field: printable ASCII in runs between the `"` and `\` it escapes, anything else
/// through `Debug` itself.
pub fn write_debug_str<W: fmt::Write + ?Sized>(out: &mut W, value: &str) -> fmt::Result {
    match classify(value.as_bytes()) {
        (true, false) => {
            out.write_char('"')?;
            out.write_str(value)?;
            out.write_char('"')
        }
        (true, true) => {
            out.write_char('"')?;
            let mut run = 0;
            for (at, byte) in value.bytes().enumerate() {
                if byte == b'"' || byte == b'\\' {
                    out.write_str(&value[run..at])?;
                    out.write_char('\\')?;
                    // The escaped character opens the next run.
                    run = at;
                }
            }
            out.write_str(&value[run..])?;
            out.write_char('"')
        }
        (false, _) => write!(out, "{value:?}"),
    }
}

/// Whether `bytes` are all printable ASCII, and whether any is a `"` or `\\` (which `Debug`
/// escapes): one pass, eight bytes at a time (a log line's strings are mostly trace ids, paths
/// and names, where a byte at a time was most of the cost of writing them).
fn classify(bytes: &[u8]) -> (bool, bool) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Some byte of `v` is zero (exact as a whole: a borrow only flags bytes above a zero one).
    fn has_zero(v: u64) -> bool {
        v.wrapping_sub(ONES) & !v & HIGHS != 0
    }
    let splat = |b: u8| u64::from_ne_bytes([b; 8]);
    let (mut unprintable, mut escapes) = (false, false);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // Past 0x7f, below 0x20 (for bytes under 0x80 only: the others are flagged already),
        // or DEL.
        unprintable |= w & HIGHS != 0
            || w.wrapping_sub(splat(0x20)) & !w & HIGHS != 0
            || has_zero(w ^ splat(0x7f));
        escapes |= has_zero(w ^ splat(b'"')) || has_zero(w ^ splat(b'\\'));
    }
    for &b in words.remainder() {
        unprintable |= !(0x20..0x7f).contains(&b);
        escapes |= b == b'"' || b == b'\\';
    }
    (!unprintable, escapes)
}

/// Writes `value` in decimal, as its `Debug` and `Display` write it, without a formatter.
pub fn write_decimal<W: fmt::Write + ?Sized>(out: &mut W, value: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    out.write_str(portcullis_core::digits::decimal(value, &mut digits))
}

/// Writes a duration in milliseconds with three decimals (`12.345`), as `{:.3}` of the float
/// would show it, digit by digit from whole microseconds: the float's formatting was the
/// dearest field of the line.
fn write_millis<W: fmt::Write + ?Sized>(out: &mut W, elapsed: Duration) -> fmt::Result {
    // Rounded to the nearest microsecond, as the float's formatting rounds.
    let micros = u64::try_from((elapsed.as_nanos() + 500) / 1000).unwrap_or(u64::MAX);
    // Written from the last digit back: three decimals, the dot, the whole milliseconds.
    let mut text = [0u8; 24];
    let mut at = text.len();
    let mut rest = micros;
    for place in 0.. {
        if place == 3 {
            at -= 1;
            text[at] = b'.';
        }
        at -= 1;
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 && place >= 3 {
            break;
        }
    }
    out.write_str(std::str::from_utf8(&text[at..]).expect("digits and a dot"))
}

/// A duration as [`write_millis`] writes it, for the event.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_millis(f, self.0)
    }
}

/// Displays the value, or nothing.
struct OrEmpty<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrEmpty<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::log_writer;

    #[test]
    fn millis_read_as_the_float_with_three_decimals_did() {
        for nanos in [
            0u64,
            1,
            499,
            500_001,
            999_499,
            999_501,
            1_168_400,
            12_345_678,
            1_000_000_000,
            3_600_000_123_456,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(
                Millis(d).to_string(),
                format!("{:.3}", d.as_secs_f64() * 1000.0),
                "{nanos} ns"
            );
        }
    }

    #[test]
    fn peers_read_as_their_display() {
        for peer in [
            "127.0.0.1:57784",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.200.9:80",
            "[::1]:8080",
            "[fe80::1%7]:443",
            "[::ffff:1.2.3.4]:1",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut out = String::new();
            write_peer(&mut out, peer).unwrap();
            assert_eq!(out, peer.to_string());
        }
    }

    #[test]
    fn strings_and_integers_read_as_their_debug() {
        for value in [
            "",
            "plain",
            "/v1/chat/completions",
            "say \"hi\"",
            r"back\slash",
            "\"",
            "\\\"\\",
            "café ✓",
            "tab\there",
            "line\nbreak\r",
            "nul\0",
            "\u{7f}",
            "\u{1b}[31m",
            "zero\u{200b}width",
            "e\u{301}",
            "\u{10ffff}",
        ] {
            let mut out = String::new();
            write_debug_str(&mut out, value).unwrap();
            assert_eq!(out, format!("{value:?}"));
        }
        for value in [0, 7, 10, 999, 1_000, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            write_decimal(&mut out, value).unwrap();
            assert_eq!(out, format!("{value:?}"));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]

        /// Eight bytes at a time, strings are judged as a byte at a time judges them, and
        /// written as `Debug` writes them.
        #[test]
        fn strings_are_classified_as_byte_by_byte(
            chars in proptest::collection::vec(proptest::sample::select(vec![
                'a', 'Z', '0', ' ', '~', '"', '\\', '\n', '\0', '\u{1f}', '\u{7f}', '\u{80}',
                'é', '✓', '\u{10ffff}', '\u{200b}', '/', '-',
            ]), 0..40)
        ) {
            let value: String = chars.into_iter().collect();
            let slow = (
                value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                value.bytes().any(|b| b == b'"' || b == b'\\'),
            );
            proptest::prop_assert_eq!(classify(value.as_bytes()), slow);
            let mut out = String::new();
            write_debug_str(&mut out, &value).unwrap();
            proptest::prop_assert_eq!(out, format!("{value:?}"));
        }
    }

    /// The line of a `GET /health` from `peer`, answered at once.
    fn health(peer: &str) -> RequestLine<'static> {
        RequestLine {
            peer: peer.parse().unwrap(),
            method: &Method::GET,
            path: "/health",
            status: StatusCode::OK,
            elapsed: Duration::ZERO,
            trace_id: "",
            provider: "",
            target: None,
            attempts: None,
        }
    }

    #[test]
    fn times_past_the_year_9999_are_not_written() {
        let mut out = String::new();
        assert!(write_utc_micros(&mut out, Duration::from_secs(253_402_300_800)).is_none());
        let line = health("127.0.0.1:1");
        assert!(!line.write_text(Duration::from_secs(253_402_300_800), &mut out));
        assert_eq!(out, "");
    }

    /// An output the test can read.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs `line` with `direct` as the direct writer's output, under a subscriber that
    /// writes events to `events`, inside a span or not; answers what each output received.
    fn logged(line: &RequestLine<'_>, in_a_span: bool) -> (String, String) {
        let (direct, events) = (Capture::default(), Capture::default());
        let (writer, flusher) =
            log_writer::batched_with(direct.clone(), Duration::ZERO, log_writer::LIMIT);
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer({
                let events = events.clone();
                move || events.clone()
            });
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("outer", n = 1);
            let _entered = in_a_span.then(|| span.enter());
            line.log_to(Some(&writer));
        });
        // Dropping the flusher writes out what the writer holds.
        drop(flusher);
        (direct.text(), events.text())
    }

    #[test]
    fn a_line_goes_to_the_direct_writer_and_not_through_the_subscriber() {
        let line = RequestLine {
            peer: "127.0.0.1:57784".parse().unwrap(),
            method: &Method::POST,
            path: "/v1/chat/completions",
            status: StatusCode::OK,
            elapsed: Duration::from_micros(170),
            trace_id: "t-1",
            provider: "upstream",
            target: None,
            attempts: None,
        };
        let (direct, events) = logged(&line, false);
        assert_eq!(events, "");
        let (time, rest) = direct.split_at(27);
        assert!(time.ends_with('Z'), "{direct:?}");
        assert_eq!(
            rest,
            "  INFO peer=127.0.0.1:57784 method=POST path=\"/v1/chat/completions\" status=200 \
             ms=0.170 trace_id=\"t-1\" provider=\"upstream\" target= attempts=\n"
        );
    }

    #[test]
    fn a_line_inside_a_span_stays_an_event() {
        let line = health("127.0.0.1:57784");
        let (direct, events) = logged(&line, true);
        assert_eq!(direct, "");
        assert!(
            events.starts_with(" INFO outer{n=1}: portcullis::request: peer=127.0.0.1:57784"),
            "{events:?}"
        );
    }
}
