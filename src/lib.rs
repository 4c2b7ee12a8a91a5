//! # Portcullis
//!
//! Tower middleware for LLM traffic: retries, fallbacks, weighted load balancing, conditional
//! routing, caching, guardrails, metadata tagging and budgets, in front of LLM providers, in
//! any hyper or axum server.
//!
//! This umbrella crate re-exports the workspace's crates, one feature each:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | (always) | [`portcullis-core`](portcullis_core) | the shared vocabulary: edge, view, context, facts, observer, errors |
//! | `provider` | [`portcullis-provider`](provider) | the OpenAI-compatible provider and the mock |
//!
//! `full` turns every layer on.
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
