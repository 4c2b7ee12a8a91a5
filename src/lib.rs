//! # Portcullis
//!
//! Tower middleware for LLM traffic: retries, fallbacks, circuit breaking, weighted load
//! balancing, conditional routing, metadata tagging, caching (exact and semantic),
//! guardrails, and budgets and rate limits, in front of LLM providers, in any hyper or axum
//! server.
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
//! | `cache` | `portcullis-cache` | response cache: exact and semantic, in memory (or Redis with `redis`), per tenant |
//! | `budget` | `portcullis-budget` | cost and token budgets and rate limits: reserve before, settle after, never overspend; in memory (or Redis with `redis`) |
//! | `guard` | `portcullis-guard` | Portkey's guardrail hooks and checks, PII detection and redaction, a guard that watches streams |
//!
//! Integrations turn on a part of a layer that is on, never a layer by themselves:
//!
//! | feature | with | what |
//! |---|---|---|
//! | `rustls` (default) | `provider` | TLS for `https://` providers: rustls, ring, webpki roots. Without it an `https://` base URL is a build error |
//! | `prometheus` | `tag` | `tag::Prometheus`: a `metrics` recorder rendered for `GET /metrics` |
//! | `otlp` | `tag` | `tag::otlp`: request spans exported over OTLP/HTTP |
//! | `redis` | `cache`, `budget` | the Redis stores: one cache, one ledger for every replica |
//!
//! `default` is `provider` and `rustls`; `full` turns every layer on, with `rustls`,
//! `prometheus` and `redis` (not `otlp`). Without TLS: `default-features = false, features =
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
//!
//! # One route of an axum app
//!
//! [`llm_route`] puts the edge in front of a stack so it can serve a route: the body read
//! once and parsed once, every error of the stack answered as an OpenAI-style error response
//! (so its error type is `Infallible`), trace ids in and `x-portkey-*` facts out. What it
//! returns is a tower `Service<Request<B>>` for any request body `B`, answering
//! `Response<`[`LlmBody`]`>`, which axum's `Router::route_service` (and hyper, through
//! `hyper_util::service::TowerToHyperService`) takes as it is. The umbrella crate does not
//! depend on axum.
//!
//! ```
//! use axum::routing::get;
//! use portcullis::llm_route;
//! use portcullis::provider::{Endpoint, Mock};
//!
//! // A provider pinned to chat completions serves a route of any name.
//! let provider = Mock::builder().endpoint(Endpoint::Chat).build();
//! let app: axum::Router = axum::Router::new()
//!     .route_service("/chat", llm_route(provider))
//!     .route("/health", get(|| async { "ok" }));
//! # let _ = app;
//! ```
//!
//! [`llm_route_with`] takes an [`EdgeLayer`] with its own body limit. The same by hand, with
//! room for layers of your own between the two:
//! `ServiceBuilder::new().layer(FactHeadersLayer::new()).layer(EdgeLayer::new()).service(stack)`.
//! The tag layer, when a route has one, is the outermost layer of `stack`
//! (`llm_route(TagLayer::new().layer(router))`): it then sees the parsed body, and the trace
//! id that the fact headers chose.
//!
//! What the stack below must be: a `Service<Request<`[`BufferedBody`]`>>` answering
//! `Response<`[`LlmBody`]`>` with an error that converts into [`BoxError`], and `Clone`. Every
//! Portcullis provider and multi-target layer is one; retry and the circuit breaker pass the
//! request and response types of the service they wrap through. A service of your own over other types (a
//! `service_fn` over `Request<Full<Bytes>>` answering `Response<Incoming>`) fits with two
//! maps in front, the only adapter it needs:
//!
//! ```
//! # use bytes::Bytes;
//! # use http::{Request, Response};
//! # use http_body_util::Full;
//! # use portcullis::{BoxError, BufferedBody, LlmBody, llm_route};
//! # use tower::{ServiceBuilder, service_fn};
//! let yours = service_fn(|req: Request<Full<Bytes>>| async move {
//!     Ok::<_, BoxError>(Response::new(req.into_body())) // an echo, for the example
//! });
//! let route = llm_route(
//!     ServiceBuilder::new()
//!         // The bytes the edge read, shared, not copied.
//!         .map_request(|req: Request<BufferedBody>| req.map(|body| Full::new(body.into_bytes())))
//!         .map_response(|res: Response<Full<Bytes>>| res.map(LlmBody::new))
//!         .service(yours),
//! );
//! # let _ = route;
//! ```
//!
//! `examples/axum_per_route.rs` puts retry and a circuit breaker between the adapter and such
//! a service, over the service's own types.
//!
//! # Names beside axum
//!
//! A module that imports from both axum and Portcullis meets two names in each:
//!
//! - **`Body`**: [`portcullis::Body`](Body) (a response body of the stack) and
//!   `axum::body::Body` are different types. Import ours as [`LlmBody`], the same type under
//!   a name that does not clash.
//! - **`BoxError`**: `portcullis::BoxError` and `axum::BoxError` are the same type
//!   (`Box<dyn Error + Send + Sync>`); import either one.
//!
//! Conditional routing is [`route::ConditionalRouter`], never a `Router`, so it sits beside
//! `axum::Router` without a rename.

#![forbid(unsafe_code)]

pub use portcullis_core::*;

/// The response body of every Portcullis stack: [`portcullis::Body`](Body) under a name that
/// does not clash with `axum::body::Body` or `hyper::body::Body`.
pub use portcullis_core::Body as LlmBody;

/// A stack made ready to serve a route by [`llm_route`]: [`FactHeaders`] outside an [`Edge`].
pub type LlmRoute<S> = FactHeaders<Edge<S>>;

/// Makes `stack` the service of one route: fact headers, then the edge with the default body
/// limit, then `stack` (see [the crate docs](crate#one-route-of-an-axum-app)).
///
/// The result is `Clone`, its error is `Infallible` and it answers `Response<`[`LlmBody`]`>`
/// for any request body, so axum's `Router::route_service` takes it. Failures of the stack
/// are answered as OpenAI-style error responses (a 413 past the limit, a 400 for a body that
/// is not a JSON object, a 502 for an upstream that could not be reached, a 503 with
/// `Retry-After` for an open circuit).
///
/// ```
/// use http_body_util::BodyExt;
/// use portcullis::llm_route;
/// use portcullis::provider::{Endpoint, Mock};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), portcullis::BoxError> {
/// let route = llm_route(Mock::builder().endpoint(Endpoint::Chat).content("Hi").build());
/// let req = http::Request::post("/chat")
///     .header("x-portkey-trace-id", "t-1")
///     .body(r#"{"model":"m","messages":[]}"#.to_owned())?;
/// let res = route.clone().oneshot(req).await?; // the error type is `Infallible`
/// assert_eq!(res.headers()["x-portkey-trace-id"], "t-1");
/// let json: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
/// assert_eq!(json["choices"][0]["message"]["content"], "Hi");
///
/// // Not JSON: answered by the edge, the provider is not called.
/// let res = route.oneshot(http::Request::post("/chat").body("hello".to_owned())?).await?;
/// assert_eq!(res.status(), 400);
/// # Ok(()) }
/// ```
pub fn llm_route<S>(stack: S) -> LlmRoute<S>
where
    S: tower_service::Service<http::Request<BufferedBody>, Response = http::Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    llm_route_with(EdgeLayer::new(), stack)
}

/// [`llm_route`] with an edge of your own: a body limit other than the default, or
/// [`EdgeLayer::json_only`] off.
///
/// ```
/// use portcullis::provider::Mock;
/// use portcullis::{EdgeLayer, llm_route_with};
///
/// // Chat requests are small: 1 MiB, 413 beyond it.
/// let route = llm_route_with(EdgeLayer::new().limit(1 << 20), Mock::default());
/// # let _ = route;
/// ```
pub fn llm_route_with<S>(edge: EdgeLayer, stack: S) -> LlmRoute<S>
where
    S: tower_service::Service<http::Request<BufferedBody>, Response = http::Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    FactHeaders::new(tower_layer::Layer::layer(&edge, stack))
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "provider"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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

/// Budgets and rate limits ([`portcullis-budget`](portcullis_budget)).
#[cfg(feature = "budget")]
pub mod budget {
    pub use portcullis_budget::*;
}

/// Guardrails ([`portcullis-guard`](portcullis_guard)).
#[cfg(feature = "guard")]
pub mod guard {
    pub use portcullis_guard::*;
}

/// The response cache, exact and semantic ([`portcullis-cache`](portcullis_cache)).
#[cfg(feature = "cache")]
pub mod cache {
    pub use portcullis_cache::*;
}
