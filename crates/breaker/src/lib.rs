//! A per-target circuit breaker for LLM targets.
//!
//! A [`CircuitBreaker`] wraps the service of one target (a provider, or a retry around one)
//! and watches what its calls tell about it. When the target keeps failing, the circuit
//! *opens*: for a cooldown, calls fail at once with
//! [`Unavailable`](portcullis_core::error::Unavailable) and never reach the target, so a
//! failing upstream is given room to recover and clients stop waiting on it. A fallback moves
//! on to its next target after that error, a balancer draws another, and a client with no
//! other target gets `503` with `Retry-After` (the edge maps the error).
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis_breaker::{CircuitBreaker, BreakerPolicy, State};
//! use portcullis_core::error::Unavailable;
//! use portcullis_core::{Body, BoxError, BufferedBody};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // A target that always answers 500, counting the calls that reach it.
//! let hits = Arc::new(AtomicUsize::new(0));
//! let seen = hits.clone();
//! let target = service_fn(move |_req: Request<BufferedBody>| {
//!     seen.fetch_add(1, Ordering::Relaxed);
//!     async {
//!         let mut res = Response::new(Body::empty());
//!         *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
//!         Ok::<_, BoxError>(res)
//!     }
//! });
//!
//! let layer = CircuitBreaker::builder()
//!     .name("openai")
//!     .policy(BreakerPolicy::new().consecutive_failures(3).cooldown(Duration::from_secs(30)))
//!     .build()
//!     .unwrap();
//! let breaker = layer.layer(target);
//! let request = || Request::post("/v1/chat/completions").body(BufferedBody::new("{}")).unwrap();
//!
//! for _ in 0..3 {
//!     let res = breaker.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(res.status(), 500);
//! }
//! assert_eq!(layer.circuit().state(), State::Open);
//!
//! // Open: the call fails fast and the target is not called.
//! let err = breaker.clone().oneshot(request()).await.unwrap_err();
//! let open = err.downcast_ref::<Unavailable>().unwrap();
//! assert_eq!(open.message, "circuit open for openai");
//! assert_eq!(open.retry_after, Some(Duration::from_secs(30)));
//! assert_eq!(hits.load(Ordering::Relaxed), 3);
//!
//! // After the cooldown one probe goes through; it fails, so the circuit opens again.
//! tokio::time::advance(Duration::from_secs(30)).await;
//! let res = breaker.clone().oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), 500);
//! assert_eq!(hits.load(Ordering::Relaxed), 4);
//! assert_eq!(layer.circuit().state(), State::Open);
//! assert_eq!(layer.circuit().transitions().opened, 2);
//! # }
//! ```
//!
//! # How it decides
//!
//! The [`BreakerPolicy`] of a circuit, with its defaults:
//!
//! | Rule | Default |
//! |---|---|
//! | opens after failures in a row | 5 |
//! | opens at a failure rate over a window, once the window holds a minimum of calls | ≥ 50 % of ≥ 20 calls in 30 s |
//! | stays open for | 30 s, or the failing response's `Retry-After` (capped at 10 min) |
//! | then lets probes through (half-open) | 1 |
//! | a probe's success / failure | closes / opens again for a fresh cooldown |
//!
//! Both opening rules are checked when a failure is recorded: a success never opens a
//! circuit. The window slides in steps of a thirtieth of its length. While half-open, calls
//! beyond the probes fail fast (`Unavailable` without `Retry-After`: the probes decide). A
//! probe dropped before its end (the client left) frees its place for the next call.
//!
//! What counts as a failure is a [`Classify`] implementation; the [`DefaultClassifier`] counts
//! transport errors and timeouts, `429` and every `5xx`. Other `4xx` answers are the client's
//! fault and count as successes; `Unavailable` from further in, and the refusals Portcullis
//! layers make before any upstream (guard, budget, rate limit, bad request), are not counted.
//! A `2xx` stream is judged by its status: the breaker never waits for a body. The wait an
//! upstream asks for is read by [`portcullis_core::retry_after()`] (`retry-after-ms`,
//! `x-ms-retry-after-ms`, or `retry-after` in seconds or as an HTTP date), only from the
//! failure that opens the circuit.
//!
//! # Around any service
//!
//! The breaker asks nothing of the request or the response body: it wraps any service over
//! `http::Request<B>` answering `http::Response<R>` (errors `Into<BoxError>`), and passes
//! both through as they are; the classifier judges a response by its status and headers.
//! A `service_fn` over `Request<Full<Bytes>>` needs nothing in front of it.
//!
//! # Availability and readiness
//!
//! An open circuit answers `call` with `Err(Unavailable { message: "circuit open for NAME",
//! retry_after: Some(rest of the cooldown) })` at once, without calling the inner service.
//! `poll_ready` is the inner service's own: an open circuit never makes the breaker pending,
//! which would hold a lone client until the cooldown ends. A refused call leaves the inner
//! service ready for the next one.
//!
//! # State
//!
//! The state lives behind [`BreakerStore`]; the default [`MemoryStore`] keeps it in this
//! process, with no lock on the closed path (atomics: one word for state and epoch, a counter
//! of failures in a row, a ring of 30 buckets for the rate). Each store step is atomic on its
//! own, so a shared store can do each as one script. Each layer is one circuit: services
//! made by the same [`CircuitBreakerLayer`], and their clones, share it; build one layer per
//! target. [`Circuit::state`], [`Circuit::transitions`] and
//! [`CircuitBreakerBuilder::on_transition`] let metrics watch it. Time is
//! [`tokio::time::Instant`].
//!
//! # Compared with Portkey
//!
//! Portkey's hosted gateway has a `cb_config` per strategy (`failure_threshold`,
//! `failure_threshold_percentage`, `minimum_requests`, `cooldown_interval` of at least 30 s,
//! `failure_status_codes`, default: statuses above 500); its open-source gateway has none.
//! This breaker differs:
//!
//! - after the cooldown it sends probes before closing, instead of closing outright and
//!   letting full traffic hit an upstream that may still be down;
//! - it honours the upstream's `Retry-After` for the cooldown, and has no 30 s minimum;
//! - `429` and `500` count as failures by default (Portkey: above 500 only); pass a closure
//!   classifier for Portkey's rule;
//! - when every target is open the client gets `503` with `Retry-After`, where Portkey
//!   ignores its breakers and tries all targets anyway.
//!
//! # Order with other layers
//!
//! Put it right around each target, inside fallback or balance (the breaker of a target that
//! fails fast makes them move on), as `fallback → breaker → retry → provider` or
//! `fallback → retry → breaker → provider`:
//!
//! - **retry inside the breaker**: the breaker sees one outcome per request after its
//!   retries, so a target whose retries save the day never opens.
//! - **retry outside the breaker**: every attempt counts, the circuit opens sooner, and once
//!   it is open the retry stops at once (retry never retries `Unavailable`).
//! - **outside a multi-target layer**, the breaker would judge the whole group as one target:
//!   a fallback that still answers would never open it.
//! - **cache and guard outside it**: a cache hit or a guard refusal never reaches the breaker,
//!   and says nothing about the target.

#![forbid(unsafe_code)]

mod circuit;
mod classify;
mod future;
mod layer;
mod policy;
mod service;
pub mod store;

pub use self::circuit::{Circuit, CircuitBreakerBuilder, Transitions};
pub use self::classify::{Classify, DefaultClassifier, Outcome};
pub use self::future::ResponseFuture;
pub use self::layer::CircuitBreakerLayer;
pub use self::policy::BreakerPolicy;
pub use self::service::CircuitBreaker;
pub use self::store::{BreakerStore, MemoryStore, State, Transition};
