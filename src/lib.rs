//! # Portcullis
//!
//! Tower middleware for LLM traffic: retries, fallbacks, circuit breaking, weighted load
//! balancing, conditional routing and metadata tagging, in front of LLM providers, in any
//! hyper or axum server. Caching, guardrails and budgets come next; they are not here yet.
//!
//! This umbrella crate re-exports the workspace's crates, one feature each:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | (always) | [`portcullis-core`](portcullis_core) | the shared vocabulary: edge, view, context, facts, observer, errors |
//! | `provider` | [`portcullis-provider`](provider) | the OpenAI-compatible provider and the mock (plain HTTP; `rustls` for `https://`) |
//! | `retry` | `portcullis-retry` | retries: full-jitter backoff, Retry-After, budget |
//! | `fallback` | `portcullis-fallback` | ordered fallback, streams included |
//! | `tag` | `portcullis-tag` | metadata, trace ids, caller identity, metrics through the `metrics` facade |
//! | `breaker` | `portcullis-breaker` | a per-target circuit breaker |
//! | `balance` | `portcullis-balance` | weighted, sticky, least-in-flight, peak-EWMA balancing |
//! | `route` | `portcullis-route` | conditional routing in Portkey's condition language |
//! | next | | caching (exact and semantic), guardrail hooks, cost and token budgets: not yet |
//!
//! Integrations turn on a part of a layer that is on, never a layer by themselves:
//!
//! | feature | with | what |
//! |---|---|---|
//! | `rustls` (default) | `provider` | TLS for `https://` providers: rustls, ring, webpki roots. Without it an `https://` base URL is a build error |
//! | `prometheus` | `tag` | `tag::Prometheus`: a `metrics` recorder rendered for `GET /metrics` |
//! | `otlp` | `tag` | `tag::otlp`: request spans exported over OTLP/HTTP |
//!
//! `default` is `provider` and `rustls`; `full` turns every layer on, with `rustls` and
//! `prometheus` (not `otlp`). Without TLS: `default-features = false, features =
//! ["provider", ...]`.
//!
//! ```
//! use portcullis::{EdgeLayer, FactHeadersLayer};
//! use portcullis::provider::Mock;
//! use tower::ServiceBuilder;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(FactHeadersLayer::new())
//!     .layer(EdgeLayer::new())
//!     .service(Mock::default());
//! # let _ = stack;
//! ```

#![forbid(unsafe_code)]

pub use portcullis_core::*;

/// Provider services: the OpenAI-compatible provider and the mock
/// ([`portcullis-provider`](portcullis_provider)).
#[cfg(feature = "provider")]
pub mod provider {
    pub use portcullis_provider::*;
}

/// Retries ([`portcullis-retry`](portcullis_retry)).
#[cfg(feature = "retry")]
pub mod retry {
    pub use portcullis_retry::*;
}

/// A per-target circuit breaker ([`portcullis-breaker`](portcullis_breaker)).
#[cfg(feature = "breaker")]
pub mod breaker {
    pub use portcullis_breaker::*;
}

/// Load balancing ([`portcullis-balance`](portcullis_balance)).
#[cfg(feature = "balance")]
pub mod balance {
    pub use portcullis_balance::*;
}

/// Conditional routing ([`portcullis-route`](portcullis_route)).
#[cfg(feature = "route")]
pub mod route {
    pub use portcullis_route::*;
}

/// Ordered fallback ([`portcullis-fallback`](portcullis_fallback)).
#[cfg(feature = "fallback")]
pub mod fallback {
    pub use portcullis_fallback::*;
}

/// Metadata tagging, trace ids and telemetry ([`portcullis-tag`](portcullis_tag)).
#[cfg(feature = "tag")]
pub mod tag {
    pub use portcullis_tag::*;
}
