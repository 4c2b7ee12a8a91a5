//! Conditional routing for Portcullis: Portkey's `strategy.mode: "conditional"`, compiled once.
//!
//! A [`ConditionalRouter`] holds named targets (any tower services over
//! `http::Request<BufferedBody>`; heterogeneous ones boxed as [`BoxTarget`]), a list of
//! conditions, each naming the target it sends to, and an optional default. A request goes to
//! the target of the **first condition that matches**, else to the default; when nothing
//! matches and there is no default it is answered **400** (`invalid_request_error`, code
//! `no_route_matched`) without calling any target.
//!
//! Conditions are Portkey's query language (`$eq $ne $gt $gte $lt $lte $in $nin $regex $and
//! $or` over `metadata.KEY`, `params.PATH` and `url.pathname`; semantics in [`condition`]),
//! written in Rust with a typed builder or as Portkey's JSON, or Rust code over the request
//! (a [`Predicate`]). Either way they are compiled before the first request: fields resolved,
//! paths split, operands type-checked, regexes built, target names resolved to indices.
//! Evaluating a request allocates nothing. Any mistake is a [`BuildError`] naming its
//! position, e.g. `conditions[1].query.$or[0]."params.model".$regex: invalid regex: …`.
//!
//! # Routing built in Rust
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis_core::context::Metadata;
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer};
//! use portcullis_route::{Condition, ConditionalRouter};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // Stand-in providers that answer with their own name (one type: no boxing needed).
//! let provider = |name: &'static str| {
//!     service_fn(move |_req: http::Request<BufferedBody>| async move {
//!         Ok::<_, BoxError>(http::Response::new(Body::from(name)))
//!     })
//! };
//!
//! let router = ConditionalRouter::builder()
//!     .target("premium", provider("premium"))
//!     .target("structured", provider("structured"))
//!     .target("standard", provider("standard"))
//!     .condition(Condition::metadata("plan").is_in(["pro", "enterprise"]), "premium")
//!     .condition(
//!         Condition::and([
//!             Condition::param("response_format.type").eq("json_object"),
//!             Condition::param("model").regex("^gpt-4o")?,
//!             // Rust code over the request, beside the typed conditions.
//!             Condition::predicate(|input| {
//!                 input.get_headers().is_some_and(|h| h.contains_key("x-beta"))
//!             }),
//!         ]),
//!         "structured",
//!     )
//!     .default("standard")
//!     .build()?;
//! let stack = EdgeLayer::new().layer(router);
//!
//! let request = |body: &'static str, plan: Option<&str>| {
//!     let mut req = http::Request::post("/v1/chat/completions")
//!         .header("x-beta", "1")
//!         .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
//!         .unwrap();
//!     if let Some(plan) = plan {
//!         let metadata = Metadata::new([("plan".to_owned(), plan.to_owned())].into());
//!         req.extensions_mut().insert(metadata);
//!     }
//!     req
//! };
//! let json_mode = r#"{"model":"gpt-4o-mini","response_format":{"type":"json_object"}}"#;
//! for (body, plan, answered_by) in [
//!     (r#"{"model":"gpt-4o-mini"}"#, Some("pro"), "premium"),
//!     (json_mode, Some("free"), "structured"),
//!     (r#"{"model":"gpt-4o-mini"}"#, None, "standard"),
//! ] {
//!     let res = stack.clone().oneshot(request(body, plan)).await?;
//!     assert_eq!(res.into_body().collect().await?.to_bytes(), answered_by);
//! }
//! # Ok(()) }
//! ```
//!
//! # The same from Portkey's JSON
//!
//! The gateway builds routers from its config this way; targets of different types are boxed.
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis_core::context::Metadata;
//! use portcullis_core::facts::ResponseFacts;
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, OverrideParamsLayer, RequestView};
//! use portcullis_route::{BoxTarget, ConditionalRouter};
//! use serde_json::json;
//! use std::sync::Arc;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // A stand-in provider that answers with the model it was asked for.
//! let provider = service_fn(|req: http::Request<BufferedBody>| async move {
//!     let view = req.extensions().get::<Arc<RequestView>>().unwrap();
//!     Ok::<_, BoxError>(http::Response::new(Body::from(view.model().unwrap().to_owned())))
//! });
//! let params = |v: serde_json::Value| v.as_object().unwrap().clone();
//!
//! // Targets of different types, boxed.
//! let router = ConditionalRouter::builder()
//!     .target("paid", BoxTarget::new(
//!         OverrideParamsLayer::new(params(json!({"model": "gpt-4o"}))).layer(provider),
//!     ))
//!     .target("free", BoxTarget::new(provider))
//!     .conditions(&json!([
//!         {"query": {"metadata.user_plan": {"$eq": "paid"}}, "then": "paid"},
//!         {"query": {"metadata.user_plan": {"$eq": "free"}}, "then": "free"},
//!     ]))?
//!     .default("free")
//!     .build()?;
//!
//! // The metadata would come from the tag layer; here it is set by hand.
//! let plan = |plan: &str| Metadata::new([("user_plan".to_owned(), plan.to_owned())].into());
//! let stack = EdgeLayer::new().layer(router);
//! let mut req = http::Request::post("/v1/chat/completions")
//!     .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"model":"gpt-4o-mini"}"#)))?;
//! req.extensions_mut().insert(plan("paid"));
//!
//! let res = stack.oneshot(req).await?;
//! let target = ResponseFacts::get(&res).unwrap().target.unwrap();
//! assert_eq!(target.to_string(), "targets[0]");
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "gpt-4o");
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - **Readiness.** The router's own `poll_ready` is always ready; its response future clones
//!   the chosen target, drives that clone ready, then calls it. A target that is not ready
//!   holds only the requests routed to it.
//! - **Facts.** Before calling, the chosen index is pushed onto the request's
//!   [`TargetPath`](portcullis_core::context::TargetPath) extension (created when absent);
//!   on the way out it is prepended to the response's
//!   [`ResponseFacts::target`](portcullis_core::facts::ResponseFacts), so a fallback inside
//!   target 1 that answered from its target 0 reads `targets[1].targets[0]`.
//! - **Inputs.** `metadata.*` reads the [`Metadata`](portcullis_core::context::Metadata)
//!   extension, `params.*` the `Arc<RequestView>` extension (both simply missing when
//!   absent: `$eq` false, `$ne` true), `url.pathname` the URI path; a [`Predicate`] also
//!   sees the headers and extensions (all through [`RouteInput`]).
//! - **Defaults.** Conditions are optional (a router may hold only a default), and so is the
//!   default (Portkey's docs call it required, its code does not);
//!   [`ConditionalRouter::has_default`] lets a config loader require one.
//! - **Errors.** Target errors pass through as they are; the router adds none of its own
//!   besides the 400 response above.
//!
//! # Differences from Portkey
//!
//! Portkey (gateway 1.15) evaluates the same language; Portcullis matches its results where
//! they are well defined and is stricter or more predictable elsewhere:
//!
//! - Checked at build time, not per request: unknown operators (including Portkey's newer
//!   `$length`) and fields, `$in`/`$nin` without an array, `$gt` without a number,
//!   `$and`/`$or` without an array of objects, invalid regexes (Rust [`regex`] syntax: no
//!   look-around or back-references), targets that do not exist, duplicate target names.
//! - All keys of a query, and all operators under a field, must hold whatever their order.
//!   Portkey returns the result of an `$or`/`$and` key as soon as it meets it, ignoring the
//!   keys written after it, and lets a `$regex` decide alone, ignoring the operators written
//!   after it; so there the order of keys can change the answer.
//! - `params.PATH` reads to any depth (Portkey reads two segments); `metadata.a.b` reads the
//!   key `a.b` (Portkey reads `a`).
//! - Arrays and objects compare by value (Portkey's `===` never finds them equal); numbers
//!   by value (`1` equals `1.0`).
//! - Numeric strings must be numbers entirely: `"3abc"` is not 3 (Portkey's `parseFloat`
//!   reads 3). `$regex` on a missing field is false (Portkey tests the text `"undefined"`).
//! - Comparing metadata or `url.pathname` for equality with a non-string (`{"metadata.tier":
//!   3}`) is refused at build time: metadata values are strings, so it could never match.
//! - A plain array as a field's value (`{"params.model": ["a", "b"]}`) and an empty operator
//!   object are refused as ambiguous; write `$in` or `$eq`.
//!
//! # Order with other layers
//!
//! Canonical place: tag → budget → guard → cache → **route** → fallback / balance → retry →
//! provider.
//!
//! - Something must provide the inputs first: the edge (the parsed body for `params.*`) and
//!   the tag layer (metadata); without them those fields are missing.
//! - A target's `override_params` belong inside the target (an
//!   [`OverrideParamsLayer`](portcullis_core::OverrideParamsLayer) around its provider), so
//!   conditions see the client's parameters, as in Portkey.
//! - A retry outside the router re-evaluates the conditions on each attempt (same answer:
//!   evaluation is pure); a retry inside a target retries that target only.
//! - A cache outside the router does not know which target would answer: its key must not
//!   depend on it, or the cache belongs inside each target.
//! - A fallback outside the router sees the 400 of "no route" like any other non-2xx.

#![forbid(unsafe_code)]

mod builder;
pub mod condition;
mod error;
mod future;
mod input;
mod service;

pub use self::builder::ConditionalRouterBuilder;
pub use self::condition::{Condition, ParamField, Predicate, RegexLimits, TextField};
pub use self::error::BuildError;
pub use self::future::ResponseFuture;
pub use self::input::RouteInput;
pub use self::service::{BoxTarget, ConditionalRouter};
