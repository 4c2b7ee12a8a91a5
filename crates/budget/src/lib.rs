//! Budgets and rate limits for LLM calls: reserve before the call, settle from the real
//! usage after it, never overspend; in memory or shared through Redis.
//!
//! A [`Budget`] wraps a service over `http::Request<BufferedBody>` answering
//! `http::Response<Body>` (a provider, or a stack of fallback, route and retry around
//! providers). For each request it finds every [`Policy`] that applies, reserves an estimate
//! in every scope at once (all or none), calls inside, and settles when the answer's body
//! ends.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use portcullis_budget::{BudgetLayer, Dimension, Policy, RateRule, Reset, UsageLimits};
//! use portcullis_core::context::Caller;
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // An upstream that answers every call with 1,000 prompt and 500 completion tokens.
//! let upstream = service_fn(|_req: Request<BufferedBody>| async {
//!     let body = r#"{"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
//!                   "usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}"#;
//!     Ok::<_, BoxError>(Response::builder().header("content-type", "application/json").body(Body::from(body)).unwrap())
//! });
//!
//! // Each gateway key: 3,000 tokens a day, 100 requests a minute.
//! let budget = BudgetLayer::builder()
//!     .policy(
//!         Policy::new("per-key")
//!             .per(Dimension::ApiKey)
//!             .usage(UsageLimits::tokens(3_000).reset(Reset::Daily))
//!             .rate(RateRule::requests_per_minute(100)),
//!     )
//!     .build()
//!     .unwrap();
//! let stack = ServiceBuilder::new().layer(EdgeLayer::new()).layer(budget.clone()).service(upstream);
//!
//! let request = || {
//!     let mut caller = Caller::default();
//!     caller.api_key = Some("team-a".into());
//!     let mut req = Request::post("/v1/chat/completions")
//!         .body(BufferedBody::new(r#"{"model":"gpt-4o-mini","max_tokens":500,"messages":[{"role":"user","content":"Hello"}]}"#))
//!         .unwrap();
//!     req.extensions_mut().insert(caller);
//!     req
//! };
//! for _ in 0..2 {
//!     let res = stack.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(res.status(), 200);
//!     assert_eq!(res.headers()["x-ratelimit-limit-requests"], "100");
//!     res.into_body().collect().await.unwrap(); // the settlement happens at the body's end
//! }
//! // 3,000 tokens spent: the third call is refused before it reaches the upstream.
//! let res = stack.clone().oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), 402);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["error"]["type"], "budget_exceeded");
//! assert_eq!(json["error"]["limit"]["scope"], "api_key=team-a");
//!
//! let snapshot = budget.snapshot().await.unwrap();
//! assert_eq!(snapshot.scopes[0].used, 3_000);
//! assert_eq!(snapshot.scopes[0].reserved, 0);
//! # }
//! ```
//!
//! # Reserve, then settle
//!
//! 1. **Scopes.** Each policy names the [`Dimension`]s it is kept per (gateway key,
//!    virtual key, user, team, provider, model, a metadata key such as `metadata._user`) and
//!    may match only some requests. A request meets every policy that matches it, each in
//!    the scope of its own values.
//! 2. **Estimate.** The prompt is counted from the parsed request (see [`estimate`]: a
//!    bound of one token per three ASCII characters plus framing), the output is
//!    `max_completion_tokens` or `max_tokens` (else `default_max_tokens`, 4096) times `n`;
//!    a cost budget prices both with the model's input and output price (see [`price`]).
//!    A request-rate rule takes 1; a token-rate rule takes the estimate, at most its bucket.
//! 3. **Reserve.** One store step takes the estimate from every limit in every scope, or
//!    nothing if any of them lacks room. A budget has room while spent + reserved by
//!    requests in flight + this estimate stays within its limit, so concurrent requests
//!    can never together pass a limit that each alone would fit.
//! 4. **Call.** The inner service runs; a refusal never reaches it.
//! 5. **Settle.** When the answer's body ends, the observer's report
//!    ([`portcullis_core::observe`]) gives the usage: the reservation is given back and the
//!    real amount charged, in the window the request was admitted in. A cache hit
//!    (`ResponseFacts::cache` = `HIT` or `SEMANTIC HIT`) and an error status settle at
//!    zero; an error before any answer, or a client that leaves before the headers, gives
//!    the whole reservation back. A stream cut short or cancelled by the client is charged
//!    its usage if the report has one, else the prompt estimate and the text streamed so far
//!    (counted like the prompt; counted in metrics as an estimated settlement).
//!
//! Usage is normalised before pricing ([`price::TokenUsage`]): OpenAI's `prompt_tokens`
//! includes its cached tokens, Anthropic's `input_tokens` does not, Gemini's thinking
//! tokens are output. Streams carry only the core [`Usage`](portcullis_core::facts::Usage)
//! numbers, so cached-token discounts apply to JSON answers only.
//!
//! If the real usage is above the reservation (a prompt denser than the estimate), the
//! real usage is charged all the same: the ledger is always the truth, and a budget can be
//! passed by at most the estimation error of the requests in flight.
//!
//! # Windows
//!
//! Budgets reset daily, weekly (Monday 00:00 UTC by default, ISO 8601; Sunday on request)
//! or monthly (the 1st, 00:00 UTC), or never; the window is in the store's key, so a reset
//! needs no job and is never missed, and spend never carries into a new window. A rolling
//! window (the last 24 hours, 7 days or 30 days) forgets spend a twenty-fourth of the
//! window at a time. Rate rules are GCRA buckets: `value` per minute, hour or day, a burst
//! of `value`, refilled evenly. The time is the layer's [`Clock`]: unix time anchored once
//! and moved by tokio's clock.
//!
//! # Stores
//!
//! | store | shared | guarantees |
//! |---|---|---|
//! | [`MemoryStore`] (default) | no: each process enforces the limits alone | exact; each reservation locks its scopes' slots in one order, checks, takes, unlocks; no I/O |
//! | `RedisStore` (feature `redis`) | every replica using the same Redis | exact across replicas: one Lua script per reserve and per settle covering every scope; leases give back the reservations of a crashed process; keys expire with their window; every call has a deadline |
//!
//! # When the store fails
//!
//! [`OnStoreError`] per kind of limit: **closed** answers 503 `limit_store_unavailable`
//! (the default for budgets: no spending you cannot count); **open** decides with a local
//! [`MemoryStore`] holding the same limits for this process alone (the default for rate
//! limits: Redis down never takes the gateway down). With N replicas failing open, up to N
//! times a limit can pass until the store is back. Either way the failure is logged and
//! counted (`portcullis_budget_store_errors_total`).
//!
//! # Answers
//!
//! - Over a budget: **402**, `type: "budget_exceeded"`, `param` = the policy, and a `limit`
//!   object naming the scope, window, amounts and `resets_at`; `Retry-After` until the reset.
//! - Over a rate rule: **429**, `type: "rate_limit_error"`, `Retry-After`, and
//!   `x-ratelimit-limit-*`, `x-ratelimit-remaining-*`, `x-ratelimit-reset-*` (`requests` or
//!   `tokens`) for the rule that refused.
//! - Admitted: the same `x-ratelimit-*` headers for the tightest rule of each kind, and
//!   `x-portcullis-budget-alert: <policy names>` when a budget is over its
//!   `alert_threshold` (the crossing is also logged and counted; it never refuses).
//! - An unpriced model under a cost budget: **400** `model_not_priced`, or
//!   [`Unpriced::TokensOnly`] to let it through without touching cost budgets.
//!
//! Refusals are responses, with the [`Refusal`] in their extensions.
//!
//! # Metrics
//!
//! Counters labelled by policy name only (never a user id): `portcullis_budget_admitted_total`,
//! `…_refused_total{limit}`, `…_alerts_total`, `…_spend_micro_usd_total`, `…_tokens_total`,
//! `…_estimated_settlements_total`, `…_unpriced_total`, `…_store_errors_total{op,mode}`.
//! Handles are registered when the layer is built: install the recorder first.
//!
//! # Order with other layers
//!
//! After the edge and tag (which set `Caller` and `Metadata`), before the cache (so a hit
//! is still counted against rate limits and settles at zero) and before route and
//! fallback (one reservation per client request, whatever the retries inside).

#![forbid(unsafe_code)]

mod answer;
pub mod clock;
pub mod config;
pub mod estimate;
mod future;
mod layer;
mod limits;
pub mod policy;
pub mod price;
mod service;
pub mod store;
mod ticket;

pub use self::answer::{ALERT_HEADER, POLICY_HEADER, Refusal, SCOPE_HEADER, reset_text};
pub use self::clock::Clock;
pub use self::config::{LimitsConfig, OnStoreError, Unpriced};
pub use self::future::ResponseFuture;
pub use self::layer::{BudgetBuilder, BudgetLayer};
pub use self::limits::{Counts, Limits, ScopeUsage, Snapshot};
pub use self::policy::{
    Dimension, Measure, Policy, RateKind, RateRule, RateUnit, Reset, UsageLimits,
};
pub use self::price::{Price, PriceTable};
pub use self::service::Budget;
#[cfg(feature = "redis")]
pub use self::store::{AnyStore, RedisStore};
pub use self::store::{LimitStore, MemoryStore};
