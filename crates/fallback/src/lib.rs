//! Ordered fallback across LLM targets: when one fails, the next one answers.
//!
//! A [`Fallback`] holds targets in order (any [`Service`](tower_service::Service) taking
//! `http::Request<BufferedBody>` and returning `http::Response<Body>`; targets of different
//! types are boxed as [`BoxTarget`]). Each request goes to the first target; when that one fails,
//! the same request (re-sent with [`clone_request`](portcullis_core::clone_request)) goes to
//! the next, and so on. The answer says which target gave it. When it moves on is a
//! [`Trigger`]: [`Triggers`] (Portkey's status list) by default, or a rule of your own.
//!
//! The fallback needs the core types: it reads a stream's first event and a 400's body in
//! the core [`Body`](portcullis_core::Body), and replays the
//! [`BufferedBody`](portcullis_core::BufferedBody). Put [`Edge`](portcullis_core::Edge) in
//! front (it buffers any request body and answers any error as a response), and adapt a
//! target of your own with `map_request` and `map_response` (`Body::new` takes any body).
//!
//! ```
//! use http_body_util::Full;
//! use portcullis_core::facts::ResponseFacts;
//! use portcullis_core::EdgeLayer;
//! use portcullis_fallback::Fallback;
//! use portcullis_provider::Mock;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let primary = Mock::builder().name("primary").status(503).build();
//! let secondary = Mock::builder().name("secondary").build();
//! let fallback = Fallback::builder()
//!     .target(primary)
//!     .target(secondary)
//!     .context_window_fallback(true)
//!     .build()
//!     .unwrap();
//!
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(br#"{"model":"m","messages":[]}"#)))
//!     .unwrap();
//! let res = EdgeLayer::new().layer(fallback).oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let facts = ResponseFacts::get(&res).unwrap();
//! assert_eq!(facts.target.unwrap().to_string(), "targets[1]");
//! assert_eq!(facts.provider.as_deref(), Some("secondary"));
//! # }
//! ```
//!
//! Targets of different types, and nested fallbacks, are boxed; the path of the answer
//! then names every level:
//!
//! ```
//! use portcullis_core::{BufferedBody, facts::ResponseFacts};
//! use portcullis_fallback::{BoxTarget, Fallback};
//! use portcullis_provider::Mock;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let regional = Fallback::builder()
//!     .boxed(Mock::builder().status(429).build())
//!     .boxed(Mock::builder().name("eu").build())
//!     .build()
//!     .unwrap();
//! let fallback: Fallback<BoxTarget> = Fallback::builder()
//!     .boxed(Mock::builder().status(500).build())
//!     .boxed(regional)
//!     .build()
//!     .unwrap();
//!
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(BufferedBody::new(r#"{"model":"m","messages":[]}"#))
//!     .unwrap();
//! let res = fallback.oneshot(req).await.unwrap();
//! let path = ResponseFacts::get(&res).unwrap().target.unwrap();
//! assert_eq!(path.to_string(), "targets[1].targets[1]");
//! # }
//! ```
//!
//! # When it moves on
//!
//! By default, the [`Triggers`] (a [`Trigger`] of your own replaces them, see
//! [`FallbackBuilder::trigger`]):
//!
//! - **Errors** always move on: a transport failure, a timeout, an
//!   [`Unavailable`](portcullis_core::error::Unavailable) target (an open circuit breaker), an
//!   error from a target's `poll_ready`. An error that is a *refusal* with an HTTP status of
//!   its own (a guardrail's 446, a budget's 402, a rate limit's 429, an `HttpError`) is judged
//!   by its status, like a response.
//! - **Statuses**: by default 408, 409, 429 and every 5xx.
//!   [`on_status_codes`](FallbackBuilder::on_status_codes) replaces that list (Portkey's
//!   `strategy.on_status_codes`): then only the listed statuses move on, and anything else is
//!   answered at once. Final refusals (446 guardrail denied, 402 budget exceeded) never move
//!   on unless listed. A 2xx never moves on.
//! - **Context window** (off by default, [`context_window_fallback`]): a 400 whose error
//!   code is `context_length_exceeded`, or whose message contains `maximum context length`,
//!   moves on, so a target with a larger window can answer. The 400 body is read (it is
//!   small JSON; at most 64 KiB is looked at) and, when it is answered after all, the
//!   response is rebuilt from the bytes read, unchanged.
//! - **Streams**: when a target answers 2xx to a `stream: true` request (or with
//!   `text/event-stream`) but its stream breaks before its first event with content, nothing
//!   has reached the client yet and the next target is tried (see
//!   [`observe::started`](portcullis_core::observe::started)). A chat stream's opening role
//!   event (`"delta":{"role":"assistant","content":""}`) carries nothing: it is held back
//!   until content follows (text, a tool call, a refusal, reasoning: see
//!   [`observe::event_carries_content`](portcullis_core::observe::event_carries_content)), so
//!   a stream that breaks right after it still falls back. Once
//!   content has come, the held events are sent first and nothing is lost; a stream that
//!   breaks later ends with an SSE error event (the observer writes it) and never hangs. The
//!   last target's stream is answered at once: there is nothing to fall back to.
//!
//! **When every target failed**, the client gets the last target's answer: its response,
//! with the response facts naming the last target, or its error. When the last target is
//! unavailable the answer is `Unavailable` (503), with the soonest `Retry-After` any target
//! gave.
//!
//! **When the request's attempt budget is spent**, the fallback does not move on either. A
//! request may carry an [`AttemptBudget`](portcullis_core::context::AttemptBudget) (given by
//! [`AttemptLimitLayer`](portcullis_core::AttemptLimitLayer)) that caps its upstream attempts
//! across every retry and fallback; once it has no attempt left, the next target could only
//! refuse, so the target that just answered is treated as the last one and its answer (a
//! 500, a 429 with its body, an error) goes to the client as it is. Checking costs one atomic
//! load per turn; a request without a budget is not limited.
//!
//! ## How it differs from Portkey
//!
//! - Portkey moves on after *any* non-2xx when no `on_status_codes` is given. The default
//!   here is narrower on purpose: a 400 for a malformed request, a 404 for an unknown model
//!   or a 422 would fail the same way on every target, and a 446/402 is a decision that a
//!   new target must not overturn. List statuses to widen it, e.g. 401 and 403 when the
//!   targets hold different credentials and one of them may be wrong.
//! - Better: a stream that breaks before its first event falls back (Portkey cannot), and
//!   one that breaks later ends with an error event (Portkey ends it silently).
//! - Better: a target that is not ready, or whose circuit breaker is open, is skipped at no
//!   cost (no upstream call), and the context-window fallback is opt-in.
//!
//! # Readiness
//!
//! A fallback's own `poll_ready` is always ready at once: the targets are readied inside the
//! response future, each in its turn. For each call, the future clones the target whose turn
//! it is, drives *that clone* ready, then calls it (never a clone it has not readied).
//!
//! - A target whose `poll_ready` is `Pending` when its turn comes is **unavailable** and
//!   skipped: the fallback never holds a client on a saturated target while the next one
//!   could answer. When it is the last target, the answer is
//!   [`Unavailable`](portcullis_core::error::Unavailable) (503), not a wait.
//! - A target whose `poll_ready` fails counts as failed, like a transport error.
//!
//! # Facts and the target path
//!
//! Before calling target `i`, the fallback pushes `i` onto the request's
//! [`TargetPath`](portcullis_core::context::TargetPath) extension (created as the root when
//! absent), so inner layers know where they sit in the tree. On the way out it prepends `i`
//! to the response's [`ResponseFacts::target`](portcullis_core::facts::ResponseFacts), so a
//! fallback nested as target 1 of another, answered by its target 0, gives
//! `targets[1].targets[0]` (the `x-portkey-last-used-option-index` header).
//!
//! # Why there is no `FallbackLayer`
//!
//! A layer wraps *one* inner service; a fallback chooses among *peers*, each with its own
//! stack (retries, timeouts, a breaker per target). Like tower's own multi-service types
//! (`Steer`, `Balance`), it is a service built over its targets: `Fallback<S>` over a
//! `Vec<S>`. It still composes with layers on either side: put layers around it with
//! `ServiceBuilder::service(fallback)`, and inside each target.
//!
//! # Order with other layers
//!
//! - **Retry inside each target** (`Fallback::new([retry(a), retry(b)])`): a target retries
//!   before the fallback moves on, as Portkey does. A retry *around* the fallback re-runs the
//!   whole chain from the first target.
//! - **Timeout inside each target** moves on from a slow target (the timeout is an error); a
//!   timeout around the fallback bounds the whole chain instead.
//! - **Circuit breaker inside each target**: an open breaker answers `Unavailable` without an
//!   upstream call and the fallback moves on at no cost.
//! - **Guard, budget and cache outside**: a denial (446) or an exhausted budget (402) is
//!   final; a cache hit skips every target. An output guard *inside* a target makes its 446
//!   final too, unless 446 is listed.
//! - **Route or balance** may sit at any level; every multi-target layer adds its index to
//!   the same path.
//!
//! # Cost
//!
//! On the success path (the first target answers) a call costs one `Arc` clone, one clone of
//! the first target, one copy of the request when there is a next target (the last target
//! takes the client's own), and one `TargetPath` in each of the request and the response;
//! the future is hand-written, nothing is boxed. Streams with a next target wait for their
//! first event with content before the response is answered. `benches/fallback.rs` measured,
//! against the bare service (about 0.25 us with a 1 KB request, on a shared 2-core machine):
//! +0.1 us with one target, +0.4 us when the first of two answers, +0.8 us for a stream
//! (most of it reading the first event).
//!
//! [`context_window_fallback`]: FallbackBuilder::context_window_fallback

#![forbid(unsafe_code)]

mod body;
mod future;
mod policy;
mod service;

pub use self::future::ResponseFuture;
pub use self::policy::{Trigger, Triggers};
pub use self::service::{Fallback, FallbackBuilder, box_target};
pub use portcullis_core::{BoxTarget, BuildError};
