//! Retries for LLM calls: a status-aware [`tower::retry::Policy`], exponential backoff with
//! full jitter, `Retry-After`, a retry budget, per-attempt timeouts, and streams that are
//! retried only while nothing has reached the client.
//!
//! [`Retry`] wraps any `Clone` service over `http::Request<B>` whose body `B` is `Clone`
//! (a replayable request: [`BufferedBody`](portcullis_core::BufferedBody), or your own
//! `Full<Bytes>`), and answers that service's own `Response<R>`, whatever `R`: a provider, a
//! Portcullis stack, or a `service_fn` of yours. [`RetryPolicy`] says what to retry and how
//! long to wait; `Retry<S, P = RetryPolicy>` takes any [`tower::retry::Policy`] instead
//! ([`Retry::with_policy`], [`RetryLayer::with_policy`]).
//!
//! ```
//! use std::time::Duration;
//! use portcullis_core::facts::{ResponseFacts, Retries};
//! use portcullis_core::{Body, BoxError, BufferedBody};
//! use portcullis_retry::{RetryLayer, RetryPolicy};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // An upstream that is overloaded twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |_req: http::Request<BufferedBody>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let status = if n < 2 { 503 } else { 200 };
//!             Ok::<_, BoxError>(http::Response::builder().status(status).body(Body::empty())?)
//!         }
//!     }
//! });
//!
//! let policy = RetryPolicy::builder(3)
//!     .backoff(Duration::from_millis(100), Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! let svc = RetryLayer::new(policy).layer(upstream);
//!
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(BufferedBody::new(r#"{"model":"gpt-4o-mini"}"#))
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(ResponseFacts::get(&res).unwrap().retries, Some(Retries::Made(2)));
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! # What it does
//!
//! - **`attempts`** retries after the first try: 0 turns retries off, at most
//!   [`MAX_ATTEMPTS`] (10); more fails [`RetryPolicyBuilder::build`].
//! - **What is retried**: responses whose status is in `on_status_codes` (default 429, 500,
//!   502, 503, 504; a given list replaces it), transport errors (any error from the inner
//!   service except [`Unavailable`](portcullis_core::error::Unavailable), which an open
//!   circuit breaker answers without calling the upstream), and attempts that ran out of
//!   their `attempt_timeout` ([`RequestTimeout`](portcullis_core::error::RequestTimeout),
//!   408 `timeout_error`). Errors that carry an HTTP answer of their own (a guardrail's 446,
//!   a budget's 402, a rate limit's 429, any `HttpError`) count as their status. Everything
//!   else passes through at once: no 4xx is retried unless listed.
//! - **Backoff**: retry `k` waits a random time in `[0, min(cap, base × 2^(k-1))]` (full
//!   jitter; defaults 0.5 s and 8 s), drawn in whole milliseconds. The [`Jitter`] source can
//!   be seeded or replaced.
//! - **`Retry-After`**: with `use_retry_after_header(true)`, a 429 or 503 that says how long
//!   to wait (`retry-after-ms`, `x-ms-retry-after-ms`, or `retry-after` in seconds or as an
//!   HTTP date) gets exactly that wait instead of the backoff.
//! - **A cap on the total wait** of one request (default 60 s, backoff and requested waits
//!   alike): when the next wait would pass it, the layer stops and returns the last answer.
//! - **A retry budget** ([`TpsBudget`](tower::retry::budget::TpsBudget); default: retries may
//!   add 20% to the first tries of the last 10 s, and 10 per second are always allowed), so a
//!   failing upstream cannot multiply its load. When it is spent, the last answer is returned
//!   without waiting.
//! - **The request's attempt budget**: a request that carries an
//!   [`AttemptBudget`](portcullis_core::context::AttemptBudget) (given by
//!   [`AttemptLimitLayer`](portcullis_core::AttemptLimitLayer) and shared by every retry and
//!   fallback of the request) is not retried once that budget has no attempt left: the last
//!   answer is returned at once, as when the layer's own attempts are used, so the client
//!   gets the upstream's real status rather than `attempts_exhausted`. A request without one
//!   is bounded by the layer's own limits only.
//! - **Streams**: a `stream: true` request (per the
//!   [`RequestView`](portcullis_core::RequestView)) whose 2xx response breaks before its
//!   first event is retried; once an event has arrived the response is final, so nothing
//!   that reached the client is ever sent twice. A stream that breaks later ends with an SSE
//!   error event from the stream observer.
//! - **Facts**: every response gets
//!   [`ResponseFacts::retries`](portcullis_core::facts::ResponseFacts): `Made(n)` for `n`
//!   retries then a final answer, `Exhausted` when the layer gave up on an answer that was
//!   still a retryable failure (attempts used, the request's attempt budget spent, total wait
//!   capped, or retry budget spent). Each attempt carries
//!   [`Attempt(k)`](portcullis_core::context::Attempt) in its request extensions (0 for the
//!   first try; with nested retry layers, the innermost one's count).
//!   When the last attempt ends in an error, that error is returned (the edge answers it).
//!
//! # Compared with Portkey
//!
//! Same meaning for `attempts`, `on_status_codes` (and its default), retried network errors,
//! `use_retry_after_header` (off by default) with its 60 s cumulative cap, and the
//! `x-portkey-retry-attempt-count` header (0, n, or -1 when exhausted, written from the fact
//! by [`FactHeaders`](portcullis_core::FactHeaders)). Better: full jitter and a cap instead
//! of a fixed 1, 2, 4, 8, 16 s; a retry budget; `Retry-After` as an HTTP date and on 503 as
//! well as 429; `request_timeout` bounds each attempt up to a stream's first event, not only
//! its headers; streams that broke before their first event are retried. The config loader
//! should accept `use_retry_after_headers` as well as `use_retry_after_header`.
//!
//! # Order with other layers
//!
//! The canonical place is just outside the provider (and an output guard): `… → fallback /
//! balance → retry → guard (output) → provider`, so each target retries before its parent
//! falls back, as in Portkey. Outside a fallback, one retry would replay the whole fallback
//! chain. Inside a circuit breaker, its `Unavailable` is never retried; outside it, the
//! breaker counts every attempt. Put it outside an output guard only if a 446 is listed, to
//! ask the model again. A cache or budget layer outside it sees one request and the final
//! answer; inside, every attempt. Put [`Edge`](portcullis_core::Edge) in front so that
//! requests arrive buffered and parsed (without the parsed view, no request is treated as a
//! stream).
//!
//! # Around a service of your own
//!
//! What retry needs, and what to put in front when a service does not have it:
//!
//! - **A replayable request**: `B: Clone`, where a clone of an unsent body holds the whole
//!   body. `BufferedBody`, `Full<Bytes>` and `String` are; a streaming body
//!   (`axum::body::Body`, hyper's `Incoming`) is not, and fails to compile with "`Clone` is
//!   not implemented for …, required for `RetryPolicy` to implement `Policy<…>`". Put
//!   [`Edge`](portcullis_core::Edge) in front (it reads the body once into a
//!   `BufferedBody`, and parses the view streams are recognised by), then, if your service
//!   takes `Full<Bytes>`, `map_request(|req| req.map(|b: BufferedBody| Full::new(b.into_bytes())))`
//!   (the bytes are shared, not copied).
//! - **Errors** that convert `Into<BoxError>`; the layer's error is [`BoxError`](portcullis_core::BoxError).
//! - **Nothing of the response body**: it passes through as its own type. Only a stream in
//!   the core [`Body`](portcullis_core::Body) (a `stream: true` request, as the edge's view
//!   says) is held until its first event, so that one that breaks before it is retried;
//!   other bodies are judged by status alone.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use portcullis_retry::{RetryLayer, RetryPolicy};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let own = service_fn(|req: http::Request<Full<Bytes>>| async move {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
//! });
//! let retry = RetryLayer::new(RetryPolicy::builder(2).build().unwrap()).layer(own);
//! let req = http::Request::new(Full::new(Bytes::from_static(b"hi")));
//! let res: http::Response<Full<Bytes>> = retry.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

#![forbid(unsafe_code)]

mod attempt;
mod backoff;
mod future;
mod layer;
mod policy;
mod service;

pub use self::backoff::{Backoff, Jitter};
pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;
pub use self::policy::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_BUDGET_MIN_PER_SEC, DEFAULT_BUDGET_RATIO,
    DEFAULT_BUDGET_TTL, DEFAULT_MAX_TOTAL_WAIT, DEFAULT_STATUS_CODES, MAX_ATTEMPTS, RetryPolicy,
    RetryPolicyBuilder,
};
pub use self::service::Retry;
pub use portcullis_core::BuildError;
