//! Per-request context kept in request extensions: who is calling, with what metadata, under
//! which trace, along which target path, on which attempt.
//!
//! ```
//! use portcullis_core::context::{TargetPath, TraceId};
//!
//! let mut path = TargetPath::root();
//! path.push(1);
//! path.push(0);
//! assert_eq!(path.to_string(), "targets[1].targets[0]");
//! assert_eq!(TraceId::generate().as_str().len(), 32);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;

use crate::attempts::{AttemptRecord, Attempts};

/// The trace id of a request: from `x-portkey-trace-id` or `traceparent`, else generated.
///
/// Its text is kept in shared bytes, so that the response header naming it (see
/// [`header_value`](Self::header_value)) shares them instead of copying them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceId(Bytes);

/// The longest trace id accepted from a client.
pub const MAX_TRACE_ID_LEN: usize = 128;

impl TraceId {
    /// A trace id from a client-supplied value: 1 to 128 visible ASCII characters, else `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= MAX_TRACE_ID_LEN
            && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(Bytes::copy_from_slice(value.as_bytes())))
    }

    /// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not
    /// all zero), read strictly: anything else is `None`.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = hex(version, 2)
            && version != "ff"
            // Version 00 has exactly four fields; later versions may append more.
            && (version != "00" || parts.next().is_none())
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(span, 16)
            && span.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        ok.then(|| {
            // 32 digits, in the one allocation their shared bytes need (see `generate`).
            let mut id = [0u8; 32];
            id.copy_from_slice(trace.as_bytes());
            Self(Bytes::from_owner(id))
        })
    }

    /// A fresh random id: 32 lowercase hex digits (a W3C trace id).
    pub fn generate() -> Self {
        // A zero trace id is invalid in W3C trace context.
        let id = fastrand::u128(1..);
        // The digits written directly: `format!` costs a formatter and a `String` per request.
        let mut hex = [0u8; 32];
        for (i, digit) in hex.iter_mut().enumerate() {
            let nibble = (id >> (4 * (31 - i))) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        // The digits in the one allocation the shared bytes need (a copy would make two:
        // the digits, then the count shared by their clones).
        Self(Bytes::from_owner(hex))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Visible ASCII, checked when it was made.
        std::str::from_utf8(&self.0).expect("a trace id is ASCII")
    }

    /// The id as a header value, sharing its bytes (no copy).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.0.clone()).expect("visible ASCII is a header value")
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request metadata (Portkey's `x-portkey-metadata`): string keys to string values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(Arc<BTreeMap<String, String>>);

impl Metadata {
    /// Metadata from a map.
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self(Arc::new(map))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A provider credential the client brought with its request (bring-your-own-key): used by a
/// provider that accepts client keys, for that call only. It never shows in `Debug`, logs or
/// spans.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(Arc<str>);

impl ClientKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one header that carries it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// The provider a request is on its way to: set by whoever knows it before the provider is
/// called (a gateway's leaf), for the layers in between (budgets scoped per provider).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProviderName(pub Arc<str>);

/// Who is calling, recorded once for every layer to use (budgets, cache namespaces, limits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The name of the gateway API key the request presented.
    pub api_key: Option<Arc<str>>,
    /// The virtual key (provider credential) the request named.
    pub virtual_key: Option<Arc<str>>,
    /// The end user (`metadata._user`, or the body's `user`).
    pub user: Option<Arc<str>>,
    /// The team, from metadata.
    pub team: Option<Arc<str>>,
}

/// The path through a tree of targets, e.g. `targets[1].targets[0]`.
///
/// Multi-target layers push the index they chose onto the request's path before calling the
/// target, and prepend it to the response's path on the way out. It is `Copy` and never
/// allocates; paths deeper than [`TargetPath::MAX_DEPTH`] keep their first levels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TargetPath {
    len: u8,
    indices: [u16; TargetPath::MAX_DEPTH],
}

impl TargetPath {
    /// How many levels a path records.
    pub const MAX_DEPTH: usize = 15;

    /// The empty path: the root of the tree.
    pub fn root() -> Self {
        Self::default()
    }

    /// Descends into target `index`.
    pub fn push(&mut self, index: u16) {
        if (self.len as usize) < Self::MAX_DEPTH {
            self.indices[self.len as usize] = index;
            self.len += 1;
        }
    }

    /// Records that this path was reached through target `index` of an outer level.
    pub fn push_front(&mut self, index: u16) {
        let len = (self.len as usize).min(Self::MAX_DEPTH - 1);
        self.indices.copy_within(0..len, 1);
        self.indices[0] = index;
        self.len = len as u8 + 1;
    }

    /// Records on `req` that it goes to target `index` of the current level: what every
    /// multi-target layer does before calling the target it chose.
    pub fn enter<B>(req: &mut http::Request<B>, index: usize) {
        req.extensions_mut()
            .get_or_insert_default::<TargetPath>()
            .push(u16::try_from(index).unwrap_or(u16::MAX));
    }

    /// Records on `response` that it came through target `index` of the current level
    /// (prepended to what inner levels recorded in its [`ResponseFacts`](crate::facts::ResponseFacts)).
    pub fn answered<B>(response: &mut http::Response<B>, index: usize) {
        crate::facts::ResponseFacts::get_mut(response)
            .target
            .get_or_insert_with(TargetPath::root)
            .push_front(u16::try_from(index).unwrap_or(u16::MAX));
    }

    /// The indices, outermost first.
    pub fn indices(&self) -> &[u16] {
        &self.indices[..self.len as usize]
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.len == 0
    }
}

/// Written in one piece from a buffer on the stack: a path is displayed in every request's
/// span, log line and attempt record, where a `write!` per level cost more than the rest of
/// the record.
impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl TargetPath {
    /// The longest text of a path: every level `targets[65535]`, with a dot between.
    const TEXT_MAX: usize = TargetPath::MAX_DEPTH * "targets[65535].".len();

    /// The path as text (`targets[1].targets[0]`; empty for the root), as [`Display`] writes
    /// it, on the stack: for writers that take a `&str` without a formatter.
    ///
    /// [`Display`]: fmt::Display
    pub fn text(&self) -> PathText {
        self.written("")
    }

    /// The path as Portkey's `x-portkey-last-used-option-index` header and the metrics name
    /// it: `config` for the root, else `config.` and the path.
    ///
    /// ```
    /// use portcullis_core::context::TargetPath;
    /// let mut path = TargetPath::root();
    /// assert_eq!(path.config_text().as_str(), "config");
    /// path.push(1);
    /// path.push(0);
    /// assert_eq!(path.config_text().as_str(), "config.targets[1].targets[0]");
    /// assert_eq!(path.text().as_str(), "targets[1].targets[0]");
    /// ```
    pub fn config_text(&self) -> PathText {
        if self.is_root() {
            let mut text = PathText(Ascii::new());
            text.0.push("config");
            return text;
        }
        self.written("config.")
    }

    fn written(&self, prefix: &str) -> PathText {
        /// The levels a tree most often has, written once: four of them per request (metrics,
        /// the response header, the log line, the attempts) were a decimal each.
        const SMALL: [&str; 10] = [
            "targets[0]",
            "targets[1]",
            "targets[2]",
            "targets[3]",
            "targets[4]",
            "targets[5]",
            "targets[6]",
            "targets[7]",
            "targets[8]",
            "targets[9]",
        ];
        let mut text = PathText(Ascii::new());
        text.0.push(prefix);
        for (i, &index) in self.indices().iter().enumerate() {
            if i > 0 {
                text.0.push(".");
            }
            match SMALL.get(usize::from(index)) {
                Some(level) => text.0.push(level),
                None => {
                    text.0.push("targets[");
                    text.0.push_u64(u64::from(index));
                    text.0.push("]");
                }
            }
        }
        text
    }
}

/// A [`TargetPath`] as text, held on the stack ([`TargetPath::text`],
/// [`TargetPath::config_text`]).
pub struct PathText(Ascii<{ "config.".len() + TargetPath::TEXT_MAX }>);

impl PathText {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for PathText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Short ASCII text assembled on the stack, to be written in one `write_str`.
pub(crate) struct Ascii<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Ascii<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `s`; the callers size `N` for the longest text they write.
    pub(crate) fn push(&mut self, s: &str) {
        let end = self.len + s.len();
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
    }

    /// Appends `n` in decimal.
    pub(crate) fn push_u64(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.push(crate::digits::decimal(n, &mut digits));
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s and ASCII digits are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Debug for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetPath({self})")
    }
}

/// Which attempt at the request this call is: 0 for the first try, 1 for the first retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(pub u32);

/// The upstream attempts a whole request may still make, across every retry and fallback, and
/// the record of those it made.
///
/// One budget is put in a request's extensions at the top of a stack (by
/// [`AttemptLimitLayer`](crate::attempts::AttemptLimitLayer)); the copies that retry and
/// fallback make of the request share it (it is an `Arc`), and every leaf spends one attempt
/// before it calls its provider (by [`SpendAttemptLayer`](crate::attempts::SpendAttemptLayer)).
/// So a tree of 330 fallback targets with 10 retries each makes at most `limit` upstream calls,
/// not 3,630.
///
/// The leaves also record each attempt they make (target path, provider, status or error,
/// time to the response head); [`AttemptBudget::attempts`] reads them, and the leaf puts them
/// in the [`ResponseFacts`](crate::facts::ResponseFacts) of its response.
///
/// ```
/// use portcullis_core::context::AttemptBudget;
///
/// let budget = AttemptBudget::new(2);
/// let shared = budget.clone();
/// assert!(budget.try_spend());
/// assert!(shared.try_spend());
/// assert!(!budget.try_spend());
/// assert_eq!((budget.remaining(), budget.limit()), (0, 2));
/// ```
#[derive(Clone)]
pub struct AttemptBudget {
    state: Arc<BudgetState>,
}

/// A budget's counter and its record, in one allocation per request.
pub(crate) struct BudgetState {
    left: AtomicU32,
    limit: u32,
    /// Uncontended: the attempts of one request run one after another, and a reader looks
    /// once they are done.
    pub(crate) log: Mutex<AttemptLog>,
}

/// The attempts of one request, inline for the usual few.
pub(crate) type AttemptLog = smallvec::SmallVec<[AttemptRecord; 4]>;

impl AttemptBudget {
    /// A budget of `limit` attempts.
    pub fn new(limit: u32) -> Self {
        Self {
            state: Arc::new(BudgetState {
                left: AtomicU32::new(limit),
                limit,
                log: Mutex::new(AttemptLog::new()),
            }),
        }
    }

    /// Takes one attempt; `false` when none is left (and nothing is taken).
    pub fn try_spend(&self) -> bool {
        self.state
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The attempts left.
    pub fn remaining(&self) -> u32 {
        self.state.left.load(Ordering::Acquire)
    }

    /// The attempts the request started with.
    pub fn limit(&self) -> u32 {
        self.state.limit
    }

    /// The attempts made so far, as the leaves recorded them (a handle: no copy is made).
    pub fn attempts(&self) -> Attempts {
        Attempts::of(self.state.clone())
    }

    /// Another reference to the shared counter and record, for an attempt in flight.
    pub(crate) fn share(&self) -> Arc<BudgetState> {
        self.state.clone()
    }
}

impl fmt::Debug for AttemptBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptBudget")
            .field("remaining", &self.remaining())
            .field("limit", &self.limit())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_never_show_in_debug() {
        let key = ClientKey::new("sk-secret-123");
        assert_eq!(format!("{key:?}"), "ClientKey(<redacted>)");
        assert_eq!(key.expose(), "sk-secret-123");
    }

    #[test]
    fn trace_id_accepts_visible_ascii_only() {
        assert_eq!(TraceId::parse("abc-123").unwrap().as_str(), "abc-123");
        assert!(TraceId::parse("").is_none());
        assert!(TraceId::parse("has space").is_none());
        assert!(TraceId::parse("caf\u{e9}").is_none());
        assert!(TraceId::parse(&"x".repeat(129)).is_none());
        assert!(TraceId::parse(&"x".repeat(128)).is_some());
    }

    #[test]
    fn traceparent_is_read_strictly() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceId::from_traceparent(tp).unwrap().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "garbage",
        ] {
            assert!(TraceId::from_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_the_random_number_in_32_hex_digits() {
        for seed in [1, 7, 1 << 40] {
            fastrand::seed(seed);
            let expected = format!("{:032x}", fastrand::u128(1..));
            fastrand::seed(seed);
            assert_eq!(TraceId::generate().as_str(), expected);
        }
    }

    #[test]
    fn generated_ids_are_hex_and_differ() {
        let a = TraceId::generate();
        let b = TraceId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_trace_id_header_value_shares_its_text() {
        let generated = TraceId::generate();
        let client = TraceId::parse("checkout-42_x.Y~").unwrap();
        let w3c =
            TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap();
        for id in [&generated, &client, &w3c] {
            let value = id.header_value();
            assert_eq!(value.to_str().unwrap(), id.as_str());
            // The same bytes, not a copy of them.
            assert_eq!(value.as_bytes().as_ptr(), id.as_str().as_ptr());
        }
        assert_eq!(format!("{client:?}"), "TraceId(\"checkout-42_x.Y~\")");
        assert_eq!(client.to_string(), "checkout-42_x.Y~");
        assert_eq!(client.clone(), client);
    }

    #[test]
    fn target_path_pushes_both_ways() {
        let mut p = TargetPath::root();
        assert!(p.is_root());
        assert_eq!(p.to_string(), "");
        p.push(2);
        p.push_front(1);
        assert_eq!(p.indices(), &[1, 2]);
        assert_eq!(p.to_string(), "targets[1].targets[2]");
    }

    #[test]
    fn layers_enter_and_answer_through_targets() {
        let mut req = http::Request::new(());
        TargetPath::enter(&mut req, 1);
        TargetPath::enter(&mut req, 0);
        assert_eq!(
            req.extensions().get::<TargetPath>().unwrap().indices(),
            &[1, 0]
        );
        let mut res = http::Response::new(());
        TargetPath::answered(&mut res, 0);
        TargetPath::answered(&mut res, 1);
        let facts = crate::facts::ResponseFacts::get(&res).unwrap();
        assert_eq!(facts.target.unwrap().to_string(), "targets[1].targets[0]");
    }

    #[test]
    fn target_path_keeps_the_first_levels_when_too_deep() {
        let mut p = TargetPath::root();
        for i in 0..20 {
            p.push(i);
        }
        assert_eq!(p.indices().len(), TargetPath::MAX_DEPTH);
        assert_eq!(p.indices()[14], 14);
        p.push_front(99);
        assert_eq!(p.indices()[0], 99);
        assert_eq!(p.indices()[14], 13);
    }

    #[test]
    fn target_path_text_is_what_write_gave_at_every_depth() {
        let reference = |p: &TargetPath| {
            let levels: Vec<String> = p
                .indices()
                .iter()
                .map(|i| format!("targets[{i}]"))
                .collect();
            levels.join(".")
        };
        let mut p = TargetPath::root();
        assert_eq!(p.to_string(), "");
        for (level, index) in [
            0u16, 7, 10, 99, 65535, 1234, 5, 100, 65535, 9, 10000, 1, 0, 42, 65535, 3,
        ]
        .into_iter()
        .enumerate()
        {
            p.push(index);
            assert_eq!(p.to_string(), reference(&p), "at level {level}");
        }
        assert_eq!(p.indices().len(), TargetPath::MAX_DEPTH);
        assert_eq!(format!("{p:?}"), format!("TargetPath({})", reference(&p)));
    }

    #[test]
    fn metadata_reads_back() {
        let m = Metadata::new([("plan".to_string(), "paid".to_string())].into());
        assert_eq!(m.get("plan"), Some("paid"));
        assert_eq!(m.len(), 1);
        assert_eq!(m.iter().next(), Some(("plan", "paid")));
    }
}
