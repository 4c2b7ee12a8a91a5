//! Load balancing over LLM targets: weighted, sticky, least-in-flight and latency-aware.
//!
//! [`Balance`] is a tower service over named targets (any services taking
//! `http::Request<BufferedBody>` and answering `http::Response<Body>`; use [`BoxTarget`] /
//! [`Target::boxed`] to mix types). For each request it chooses one target by its
//! [`Strategy`] among the targets that can take the request now:
//!
//! | strategy | chooses | Portkey / LiteLLM |
//! |---|---|---|
//! | [`Strategy::Weighted`] (default) | at random, in proportion to the weights | `loadbalance`; LiteLLM `simple-shuffle` |
//! | [`Strategy::Sticky`] | the same target for the same key (`metadata._user`, a header, your own) while it is available | none |
//! | [`Strategy::LeastInFlight`] | the target with the fewest requests in flight, streams counting until they end | LiteLLM `least-busy` |
//! | [`Strategy::PeakEwma`] | the target with the lowest latency estimate × (in flight + 1) | LiteLLM `latency-based-routing` |
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis_balance::{Balance, Strategy, Sticky, Target};
//! use portcullis_core::context::Metadata;
//! use portcullis_core::facts::ResponseFacts;
//! use portcullis_core::{Body, BoxError, BufferedBody};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Two providers, 70/30; a closure stands in for each here.
//! let provider = |name: &'static str| {
//!     service_fn(move |_req: http::Request<BufferedBody>| async move {
//!         Ok::<_, BoxError>(http::Response::new(Body::from(name)))
//!     })
//! };
//! let balance = Balance::builder()
//!     .target(Target::boxed("openai", provider("openai")).weight(0.7))
//!     .target(Target::boxed("azure", provider("azure")).weight(0.3))
//!     .strategy(Strategy::Sticky(Sticky::metadata("_user")))
//!     .build()
//!     .unwrap();
//!
//! // A user's requests stay on one target while it is available.
//! let request = || {
//!     let mut req = http::Request::post("/v1/chat/completions")
//!         .body(BufferedBody::new(r#"{"model":"gpt-4o-mini"}"#))
//!         .unwrap();
//!     req.extensions_mut()
//!         .insert(Metadata::new([("_user".to_owned(), "alice".to_owned())].into()));
//!     req
//! };
//! let first = balance.clone().oneshot(request()).await.unwrap();
//! let target = ResponseFacts::get(&first).unwrap().target.unwrap();
//! let answered = first.into_body().collect().await.unwrap().to_bytes();
//! for _ in 0..10 {
//!     let again = balance.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(ResponseFacts::get(&again).unwrap().target, Some(target));
//!     assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), answered);
//! }
//!
//! // Configuration errors name the field.
//! let err = Balance::builder()
//!     .target(Target::boxed("a", provider("a")))
//!     .target(Target::boxed("b", provider("b")).weight(-1.0))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "targets[1].weight: must be >= 0");
//! # }
//! ```
//!
//! # Defaults
//!
//! Strategy [`Strategy::Weighted`]; weight 1 per target; a random seed per balancer (set one
//! with [`BalanceBuilder::seed`] for reproducible choices); for [`PeakEwma`], a decay of 10 s
//! and a failure penalty of 5 s.
//!
//! # Weights
//!
//! Weights are relative: 0.7 and 0.3 split like 7 and 3. The default is 1; a weight of 0
//! means never chosen (a target kept in the config but drained). A negative, NaN or
//! infinite weight, every weight 0, no target, or two targets of one name fail
//! [`BalanceBuilder::build`] with a [`BuildError`] naming the field
//! (`targets[1].weight: must be >= 0`). The weight table is built once; a weighted draw is
//! one random number and a binary search.
//!
//! # Availability
//!
//! A target is *unavailable right now* when its `poll_ready` is `Pending` or its call
//! answers [`Unavailable`](portcullis_core::error::Unavailable) at once (an open circuit
//! breaker). The balancer then draws again among the others, weights renormalised, and never
//! waits on such a target while another is ready. Only when every candidate is pending does
//! the request wait, for the first of them to become ready. A target whose `poll_ready`
//! fails is out for that request. When no target can take the request, the answer is
//! `Unavailable` (503) with the earliest `Retry-After` any target gave.
//!
//! [`Balance`]'s own `poll_ready` is always ready: which target to ready depends on the
//! request (a sticky key, the loads at that moment), so the response future drives the
//! chosen target's clone ready, then calls that clone and no other. It never calls a clone
//! it has not readied.
//!
//! # Facts
//!
//! The chosen index is pushed onto the request's
//! [`TargetPath`](portcullis_core::context::TargetPath) extension before the call (so a
//! nested layer sees `targets[1]`), and onto the front of the response's
//! [`ResponseFacts::target`](portcullis_core::facts::ResponseFacts) on the way out (so
//! `FactHeaders` reports `x-portkey-last-used-option-index: config.targets[1].targets[0]` for
//! a balancer nested in another multi-target layer).
//!
//! # Sticky keys
//!
//! [`Sticky`] maps a key to a target by weighted rendezvous hashing: a key keeps its target
//! while it is available, moves to its next-best target while it is not, and returns when it
//! is back; keys spread in proportion to the weights; changing the target list moves only the
//! keys that must move. Keys are hashed with a stable hash, so every gateway replica agrees.
//! A request without a key gets a weighted random choice. [`Sticky::metadata`] reads the
//! [`Metadata`](portcullis_core::context::Metadata) extension, which the layer that reads
//! `x-portkey-metadata` inserts: put that layer outside the balancer.
//!
//! # Loads
//!
//! [`Strategy::LeastInFlight`] and [`Strategy::PeakEwma`] count the requests in flight per
//! target with atomics, from the call until the response body ends, fails or is dropped:
//! a stream counts for as long as it streams. [`PeakEwma`] times each call to its response
//! headers (`tokio::time`, so paused time works in tests). Ties go to a weighted draw, so
//! idle targets share light traffic by weight.
//!
//! # How it differs from Portkey
//!
//! Portkey's `loadbalance` makes one weighted draw per request and sends it there, ready or
//! not. Portcullis matches the weights (relative, default 1, 0 = never) and does better:
//! unready and unavailable targets are skipped with the weights renormalised, configs are
//! checked when built, and sticky, least-in-flight and latency-aware choices are available.
//!
//! # Order with other layers
//!
//! - **Retry inside each target** (`Balance` over `Retry<provider>`), Portkey's order:
//!   retries stay on the chosen target. **Retry outside** (`Retry<Balance>`): each retry draws
//!   again, so it may land elsewhere (a sticky key lands on the same target while it is
//!   available).
//! - **A circuit breaker inside each target**: an open breaker answers `Unavailable` at once
//!   and the balancer draws another target at no cost. Outside, one breaker guards the whole
//!   balancer.
//! - **Fallback**: a `Fallback` over balancers falls back when a whole pool fails; a
//!   balancer over fallbacks spreads load over chains. Paths nest either way.
//! - **Cache above**: hits never reach the balancer, so they count neither in flight nor in
//!   latency. Guards on the output below the balancer add their time to the latency figure.
//!
//! This is a service built over several inner services, not a [`Layer`](tower::Layer) over
//! one: like tower's own `Balance` and `Steer`, it is made by [`Balance::builder`].

#![forbid(unsafe_code)]

mod body;
mod error;
mod future;
mod pick;
mod service;
mod strategy;

pub use self::error::BuildError;
pub use self::future::ResponseFuture;
pub use self::service::{Balance, BalanceBuilder, Target};
pub use self::strategy::{HeaderKey, Key, KeyExtractor, MetadataKey, PeakEwma, Sticky, Strategy};
pub use portcullis_core::BoxTarget;
