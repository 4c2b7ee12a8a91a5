//! The shared vocabulary of Portcullis.
//!
//! Every Portcullis layer is a [`tower`](https://docs.rs/tower) layer over `http` types. This
//! crate holds what they share, so that no layer depends on another:
//!
//! - [`BufferedBody`]: a request body read once, cheap to clone, replayed by every clone;
//!   [`Body`]: the response body every layer returns.
//! - [`Edge`]: the edge step that reads the body once (413 past a limit), parses it once into
//!   a [`RequestView`] kept in extensions behind an `Arc` (400 when malformed), and answers
//!   every error of the stack as an OpenAI-style error response.
//! - [`context`]: per-request facts in request extensions (trace id, metadata, caller, target
//!   path, attempt); [`facts`]: per-response facts in response extensions (target used,
//!   retries, cache status, provider, guard verdicts; usage and cost types).
//! - [`RequestView`]: the request parsed once; its fields, `override_params` splices, and
//!   values computed once per parsed body ([`RequestView::memo`]) for every layer above and
//!   below an override.
//! - [`observe`]: the body observer that lets chunks through as they arrive, reads usage and
//!   assembles streamed text, and reports once at the end or on cancellation; its strict
//!   one-pass JSON reader ([`observe::json`]) serves every layer that reads a few values of a
//!   body without building a tree (the cache key, the budget's estimate, the guard's text).
//! - [`clock`] (time that moves with tokio's, calendar arithmetic) and [`digits`] (decimal
//!   digits without a formatter): the one copy each writer of a date or a number shares.
//! - [`error`]: the OpenAI error body and the typed errors, with their statuses.
//! - [`FactHeaders`]: trace ids in, response facts out as Portkey's headers.
//! - [`OverrideParams`]: a target's `override_params` merged into the request body.
//! - [`attempts`]: a whole request's cap on upstream attempts across retries and fallbacks.
//! - What the layers share: [`StatusSet`] (the statuses a policy acts on), [`retry_after()`]
//!   (the wait an upstream asks for), [`ErrorClass`](error::ErrorClass) (which errors are
//!   Portcullis's own refusals), [`BuildError`] (a builder's error, with a path) and
//!   [`BoxTarget`] (a boxed target of fallback, balance and route).
//!
//! A typical stack, outside in: `FactHeaders` → `Edge` → layers → a provider.
//!
//! ```
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
//! use tower::{ServiceBuilder, service_fn};
//!
//! let stack = ServiceBuilder::new()
//!     .layer(FactHeadersLayer::new())
//!     .layer(EdgeLayer::new())
//!     .service(service_fn(|_req: http::Request<BufferedBody>| async {
//!         Ok::<_, BoxError>(http::Response::new(Body::from("{}")))
//!     }));
//! # let _ = stack;
//! ```

#![forbid(unsafe_code)]

pub mod attempts;
pub mod body;
pub mod build;
pub mod clock;
pub mod context;
pub mod digits;
pub mod edge;
pub mod error;
pub mod facts;
pub mod headers;
pub mod observe;
pub mod params;
pub mod retry_after;
pub mod status;
mod util;
pub mod view;

pub use self::attempts::{AttemptLimitLayer, SpendAttemptLayer};
pub use self::body::{Body, BufferedBody, clone_request};
pub use self::build::BuildError;
pub use self::edge::{Edge, EdgeLayer};
pub use self::headers::{FactHeaders, FactHeadersLayer};
pub use self::params::{OverrideParams, OverrideParamsLayer};
pub use self::retry_after::retry_after;
pub use self::status::{InvalidStatusCode, StatusSet};
pub use self::view::RequestView;

/// The error type that flows through a stack: any error, boxed, that callers can downcast.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A target of any type, boxed so that targets of different types mix in one fallback,
/// balancer or router: cloneable, `Sync` (the targets are shared by every call without a
/// lock), over `Request<BufferedBody>`, answering `Response<Body>` or a [`BoxError`].
pub type BoxTarget =
    tower::util::BoxCloneSyncService<http::Request<BufferedBody>, http::Response<Body>, BoxError>;
