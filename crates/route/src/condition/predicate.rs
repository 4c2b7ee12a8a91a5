//! [`Predicate`]: a routing decision written in Rust, for what the query language cannot say.
//!
//! A predicate becomes a [`Condition`] with [`Condition::predicate`] (a closure) or
//! [`Condition::custom`] (any type that implements the trait), and from there goes where any
//! condition goes: into a router, or into [`Condition::and`] / [`Condition::or`] beside
//! typed and JSON conditions.
//!
//! ```
//! use portcullis_route::{Condition, RouteInput};
//!
//! let admin = Condition::predicate(|input| {
//!     input.get_path().is_some_and(|path| path.starts_with("/admin/"))
//! });
//! let condition = Condition::or([admin, Condition::metadata("plan").eq("paid")]);
//! assert!(condition.matches(&RouteInput::new().path("/admin/v1/models")));
//! assert!(!condition.matches(&RouteInput::new().path("/v1/models")));
//! ```
//!
//! [`Condition`]: super::Condition
//! [`Condition::predicate`]: super::Condition::predicate
//! [`Condition::custom`]: super::Condition::custom
//! [`Condition::and`]: super::Condition::and
//! [`Condition::or`]: super::Condition::or

use std::fmt;
use std::sync::Arc;

use crate::RouteInput;

/// A test of a request written in Rust, used as a routing condition through
/// [`Condition::custom`](super::Condition::custom), or for a closure
/// [`Condition::predicate`](super::Condition::predicate).
///
/// Closures `Fn(&RouteInput<'_>) -> bool` implement it. A predicate is shared by every clone
/// of a router and called from many requests at once, hence `Send + Sync`; it should be quick
/// and must not block (it runs inside `Service::call`). It reads the request through
/// [`RouteInput`]'s getters: metadata, parsed body, path, headers and extensions.
///
/// A type of the caller's, here an allow-list read from a header:
///
/// ```
/// use http::HeaderMap;
/// use portcullis_route::condition::Predicate;
/// use portcullis_route::{Condition, RouteInput};
///
/// /// Callers on an allow-list, named by a header.
/// struct Beta(Vec<&'static str>);
///
/// impl Predicate for Beta {
///     fn matches(&self, input: &RouteInput<'_>) -> bool {
///         let caller = input.get_headers().and_then(|h| h.get("x-caller")?.to_str().ok());
///         caller.is_some_and(|caller| self.0.contains(&caller))
///     }
/// }
///
/// let beta = Condition::custom(Beta(vec!["acme"]));
/// let streaming = Condition::predicate(|input| input.get_view().is_some_and(|v| v.stream()));
/// let either = Condition::or([beta, streaming]);
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-caller", "acme".parse().unwrap());
/// assert!(either.matches(&RouteInput::new().headers(&headers)));
/// assert!(!either.matches(&RouteInput::new()));
/// ```
///
/// # Cost
///
/// Conditions from JSON or from the typed builder are evaluated by a `match` over the
/// compiled tree, with no dynamic dispatch. A predicate sits in that tree behind an
/// `Arc<dyn Predicate>`: one indirect call each time it is reached. That keeps one
/// [`Condition`](super::Condition) type, and so one router type, for every kind of
/// condition, and lets a predicate nest inside `and`/`or` beside the others; the price is a
/// virtual call only where Rust code is asked to decide.
pub trait Predicate: Send + Sync + 'static {
    /// Whether the predicate holds for `input`.
    fn matches(&self, input: &RouteInput<'_>) -> bool;
}

impl<F> Predicate for F
where
    F: Fn(&RouteInput<'_>) -> bool + Send + Sync + 'static,
{
    fn matches(&self, input: &RouteInput<'_>) -> bool {
        self(input)
    }
}

/// A predicate in a compiled condition tree.
#[derive(Clone)]
pub(super) struct Custom(Arc<dyn Predicate>);

impl Custom {
    pub(super) fn new(predicate: impl Predicate) -> Self {
        Self(Arc::new(predicate))
    }

    pub(super) fn matches(&self, input: &RouteInput<'_>) -> bool {
        self.0.matches(input)
    }
}

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Predicate(..)")
    }
}
