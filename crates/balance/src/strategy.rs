//! How a balancer chooses: [`Strategy`], sticky keys and the peak-EWMA settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Request};
use portcullis_core::BufferedBody;
use portcullis_core::context::Metadata;

/// How a [`Balance`](crate::Balance) chooses among its targets.
///
/// Every strategy chooses only among targets that are ready and not unavailable, never
/// chooses a target of weight 0, and draws again (without the target it gave up on) when a
/// choice turns out not ready or answers [`Unavailable`](portcullis_core::error::Unavailable).
///
/// ```
/// use portcullis_balance::{PeakEwma, Sticky, Strategy};
/// use std::time::Duration;
///
/// let _ = Strategy::Weighted;
/// let _ = Strategy::Sticky(Sticky::metadata("_user"));
/// let _ = Strategy::LeastInFlight;
/// let _ = Strategy::PeakEwma(PeakEwma::new().decay(Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// A weighted random choice per request (Portkey's `loadbalance`). The default.
    #[default]
    Weighted,
    /// The same target for the same key while it is available (weighted rendezvous hashing);
    /// requests without a key get a weighted random choice.
    Sticky(Sticky),
    /// The target with the fewest requests in flight (a stream counts until its body ends);
    /// ties get a weighted random choice.
    LeastInFlight,
    /// The target with the lowest latency estimate (peak EWMA of the time to the response
    /// headers) times its requests in flight plus one; ties get a weighted random choice.
    PeakEwma(PeakEwma),
}

impl Strategy {
    /// Whether the strategy counts requests in flight.
    pub(crate) fn counts_in_flight(&self) -> bool {
        matches!(self, Strategy::LeastInFlight | Strategy::PeakEwma(_))
    }
}

/// The hash of a sticky key, as [`KeyExtractor`]s return it.
///
/// The hash is stable across processes, platforms and releases (FNV-1a, then a 64-bit
/// finaliser), so every replica of a gateway sends a key to the same target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(u64);

impl Key {
    /// The key for `bytes`.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(mix(fnv1a(bytes.as_ref())))
    }

    pub(crate) fn hash(self) -> u64 {
        self.0
    }
}

/// Finds the sticky key of a request.
///
/// Implement it for a key the built-in extractors do not read; for a one-off, a closure
/// through [`Sticky::from_fn`] is enough.
///
/// ```
/// use portcullis_balance::{Key, KeyExtractor, Sticky};
/// use portcullis_core::BufferedBody;
///
/// /// The conversation id of a query string, `?conversation=…`.
/// struct Conversation;
///
/// impl KeyExtractor for Conversation {
///     fn key(&self, req: &http::Request<BufferedBody>) -> Option<Key> {
///         req.uri().query()?
///             .split('&')
///             .find_map(|pair| pair.strip_prefix("conversation="))
///             .map(Key::new)
///     }
/// }
///
/// let _ = Sticky::new(Conversation);
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `req`, or `None` when it has none (it then gets a weighted random choice).
    fn key(&self, req: &Request<BufferedBody>) -> Option<Key>;
}

/// Reads the sticky key from the request's [`Metadata`] extension (Portkey's
/// `x-portkey-metadata`), e.g. `_user`.
#[derive(Clone, Debug)]
pub struct MetadataKey {
    field: Arc<str>,
}

impl MetadataKey {
    /// Reads metadata field `field`.
    pub fn new(field: impl Into<Arc<str>>) -> Self {
        Self {
            field: field.into(),
        }
    }
}

impl KeyExtractor for MetadataKey {
    fn key(&self, req: &Request<BufferedBody>) -> Option<Key> {
        let value = req.extensions().get::<Metadata>()?.get(&self.field)?;
        (!value.is_empty()).then(|| Key::new(value))
    }
}

/// Reads the sticky key from a request header (its first value).
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Reads header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl KeyExtractor for HeaderKey {
    fn key(&self, req: &Request<BufferedBody>) -> Option<Key> {
        let value = req.headers().get(&self.name)?;
        (!value.is_empty()).then(|| Key::new(value.as_bytes()))
    }
}

struct FnKey<F>(F);

impl<F, K> KeyExtractor for FnKey<F>
where
    F: Fn(&Request<BufferedBody>) -> Option<K> + Send + Sync + 'static,
    K: AsRef<[u8]>,
{
    fn key(&self, req: &Request<BufferedBody>) -> Option<Key> {
        (self.0)(req).map(Key::new)
    }
}

/// The sticky strategy's key extractor (see [`Strategy::Sticky`]).
///
/// A key is mapped to a target by weighted rendezvous hashing: each target scores the key
/// `-ln(u) / weight`, with `u` in (0, 1) from a hash of the key and the target's name, and
/// the lowest score among the available targets wins. So a key stays on its target while it
/// is available, moves to its next-best target while it is not, and comes back when it
/// returns; keys spread over targets in proportion to their weights; and adding, removing
/// or reordering targets moves only the keys that must move.
#[derive(Clone)]
pub struct Sticky {
    extractor: Arc<dyn KeyExtractor>,
    label: Arc<str>,
}

impl Sticky {
    /// Keys from any extractor.
    pub fn new(extractor: impl KeyExtractor) -> Self {
        Self {
            extractor: Arc::new(extractor),
            label: "custom".into(),
        }
    }

    /// Keys from metadata field `field`, e.g. `_user` (see [`MetadataKey`]).
    pub fn metadata(field: &str) -> Self {
        Self {
            extractor: Arc::new(MetadataKey::new(field)),
            label: format!("metadata.{field}").into(),
        }
    }

    /// Keys from header `name`, e.g. `x-session-id` (see [`HeaderKey`]).
    pub fn header(name: HeaderName) -> Self {
        Self {
            label: format!("header {name}").into(),
            extractor: Arc::new(HeaderKey::new(name)),
        }
    }

    /// Keys from a closure returning the key's bytes (a `String`, `&'static str`, `Vec<u8>`…).
    ///
    /// ```
    /// use portcullis_balance::Sticky;
    /// use portcullis_core::context::Caller;
    ///
    /// let by_team = Sticky::from_fn(|req: &http::Request<_>| {
    ///     req.extensions().get::<Caller>()?.team.as_deref().map(str::to_owned)
    /// });
    /// # let _ = by_team;
    /// ```
    pub fn from_fn<F, K>(f: F) -> Self
    where
        F: Fn(&Request<BufferedBody>) -> Option<K> + Send + Sync + 'static,
        K: AsRef<[u8]>,
    {
        Self::new(FnKey(f))
    }

    pub(crate) fn key(&self, req: &Request<BufferedBody>) -> Option<Key> {
        self.extractor.key(req)
    }
}

impl fmt::Debug for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sticky").field(&self.label).finish()
    }
}

/// Settings of the latency-aware strategy ([`Strategy::PeakEwma`]).
///
/// Each target keeps an estimate of its time to response headers: a new time above the
/// estimate replaces it at once (the peak), one below pulls it down by an exponentially
/// weighted average whose weight decays over [`decay`](PeakEwma::decay). While a target
/// gets no traffic its estimate decays toward zero, so a target that was slow is tried again
/// after a while. A target never tried has an estimate of zero, so it is explored first. A
/// failure (an error, a 429 or a 5xx) counts as at least the
/// [`failure_penalty`](PeakEwma::failure_penalty), so a target that fails fast does not
/// look fast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    pub(crate) decay: Duration,
    pub(crate) failure_penalty: Duration,
}

impl PeakEwma {
    /// The default decay: 10 s.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
    /// The default failure penalty: 5 s.
    pub const DEFAULT_FAILURE_PENALTY: Duration = Duration::from_secs(5);

    /// The default settings.
    pub fn new() -> Self {
        Self {
            decay: Self::DEFAULT_DECAY,
            failure_penalty: Self::DEFAULT_FAILURE_PENALTY,
        }
    }

    /// How fast old observations lose weight (the time constant of the decay; > 0).
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// The least time a failed request counts as.
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.failure_penalty = penalty;
        self
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a, 64 bits: stable everywhere, unlike `std`'s hasher.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A 64-bit finaliser (splitmix64's): every input bit flips about half the output bits,
/// which FNV alone does not give.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_values() {
        // Pinned: replicas and releases must agree on where a key goes.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Key::new("user-1"), Key::new(String::from("user-1")));
        assert_ne!(Key::new("user-1"), Key::new("user-2"));
    }

    #[test]
    fn extractors_read_metadata_and_headers() {
        let mut req = Request::new(BufferedBody::empty());
        req.headers_mut()
            .insert("x-session-id", "s-1".parse().unwrap());
        req.extensions_mut().insert(Metadata::new(
            [("_user".to_owned(), "u-1".to_owned())].into(),
        ));
        assert_eq!(Sticky::metadata("_user").key(&req), Some(Key::new("u-1")));
        assert_eq!(Sticky::metadata("team").key(&req), None);
        assert_eq!(
            Sticky::header(HeaderName::from_static("x-session-id")).key(&req),
            Some(Key::new("s-1"))
        );
        assert_eq!(
            Sticky::header(HeaderName::from_static("x-other")).key(&req),
            None
        );
        let custom = Sticky::from_fn(|r: &Request<BufferedBody>| Some(r.uri().path().to_owned()));
        assert_eq!(custom.key(&req), Some(Key::new("/")));
        assert_eq!(
            format!("{:?}", Sticky::metadata("_user")),
            r#"Sticky("metadata._user")"#
        );
    }
}
