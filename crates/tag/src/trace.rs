//! Trace ids: W3C `traceparent`, parsed strictly, and the 128-bit id of any trace id.
//!
//! ```
//! use portcullis_tag::trace::Traceparent;
//!
//! let tp = Traceparent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(tp.trace_id().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(tp.parent_id(), 0x00f0_67aa_0ba9_02b7);
//! assert!(tp.sampled());
//!
//! // Upper-case hex, an all-zero id, a wrong length: refused.
//! assert!(Traceparent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
//! assert!(Traceparent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! assert!(Traceparent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1").is_none());
//! ```

use portcullis_core::context::TraceId;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed W3C `traceparent`: `version-traceid-parentid-flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Traceparent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

/// Lower-case hex only, as the W3C grammar says (`HEXDIGLC`).
fn hex(s: &[u8]) -> Option<u128> {
    let mut n: u128 = 0;
    for &b in s {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(digit);
    }
    Some(n)
}

impl Traceparent {
    /// Parses a `traceparent` value strictly: version `00` is exactly 55 characters; a later
    /// version (not `ff`) may append fields after a `-`; lower-case hex only; neither the
    /// trace id nor the parent id may be all zeros.
    pub fn parse(value: &str) -> Option<Self> {
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex(&b[0..2])?;
        match version {
            0xff => return None,
            0 if b.len() != 55 => return None,
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        let trace_id = hex(&b[3..35])?;
        let parent_id = u64::try_from(hex(&b[36..52])?).ok()?;
        let flags = u8::try_from(hex(&b[53..55])?).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id, as a [`TraceId`] of 32 lower-case hex digits.
    pub fn trace_id(&self) -> TraceId {
        TraceId::parse(&format!("{:032x}", self.trace_id)).expect("32 hex digits are a trace id")
    }

    /// The trace id as a number.
    pub fn trace_id_u128(&self) -> u128 {
        self.trace_id
    }

    /// The caller's span id, the parent of this request's span.
    pub fn parent_id(&self) -> u64 {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The 128-bit OpenTelemetry trace id of a [`TraceId`].
///
/// A W3C id (32 hex digits, any case) or a UUID (the same with dashes) is its own value; any
/// other text (`x-portkey-trace-id` may be any visible ASCII) is hashed to a stable non-zero
/// value, so one text always names one trace.
pub fn otel_trace_id(trace: &TraceId) -> u128 {
    let s = trace.as_str().as_bytes();
    let digits: Option<u128> = match s.len() {
        32 => parse_any_hex(s),
        36 if [8, 13, 18, 23].iter().all(|&i| s[i] == b'-') => {
            let compact: Vec<u8> = s.iter().copied().filter(|&c| c != b'-').collect();
            parse_any_hex(&compact)
        }
        _ => None,
    };
    match digits {
        Some(n) if n != 0 => n,
        _ => fnv1a_128(s).max(1),
    }
}

fn parse_any_hex(s: &[u8]) -> Option<u128> {
    (s.len() == 32).then_some(())?;
    let lower: Vec<u8> = s.iter().map(u8::to_ascii_lowercase).collect();
    hex(&lower)
}

/// FNV-1a, 128 bits: stable across builds and platforms.
fn fnv1a_128(s: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    s.iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = Traceparent::parse(GOOD).unwrap();
        assert_eq!(tp.trace_id_u128(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.flags(), 1);
        let unsampled = Traceparent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn refuses_malformed_values() {
        let bad = [
            "",
            &GOOD[..54],
            &format!("{GOOD}-extra"), // version 00 has no more fields
            &GOOD.replacen("00-", "ff-", 1),
            &GOOD.replacen("00-", "0x-", 1),
            &GOOD.replace('-', "_"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in bad {
            assert_eq!(Traceparent::parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn later_versions_may_append_fields() {
        let v1 = GOOD.replacen("00-", "01-", 1);
        assert!(Traceparent::parse(&v1).is_some());
        assert!(Traceparent::parse(&format!("{v1}-what-comes-next")).is_some());
        assert!(Traceparent::parse(&format!("{v1}x")).is_none());
    }

    #[test]
    fn otel_ids_keep_hex_and_uuids_and_hash_the_rest() {
        let hex = TraceId::parse("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(otel_trace_id(&hex), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        let uuid = TraceId::parse("4bf92f35-77b3-4da6-a3ce-929d0e0e4736").unwrap();
        assert_eq!(otel_trace_id(&uuid), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        let text = TraceId::parse("checkout-42").unwrap();
        assert_eq!(otel_trace_id(&text), otel_trace_id(&text.clone()));
        assert_ne!(otel_trace_id(&text), 0);
        let zero = TraceId::parse(&"0".repeat(32)).unwrap();
        assert_ne!(otel_trace_id(&zero), 0);
    }
}
