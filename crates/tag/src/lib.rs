//! Metadata tagging, trace ids, caller identity and telemetry for Portcullis.
//!
//! The tag layer ([`TagLayer`], [`Tag`]) gives every request, before any other Portcullis
//! layer sees it:
//!
//! - its **metadata**: the JSON object of strings in `x-portkey-metadata` (configurable),
//!   within limits, with `_user` defaulting to the body's `user`, in the
//!   [`Metadata`](portcullis_core::context::Metadata) extension (routing on `metadata.*`,
//!   budgets and cache namespaces read it there);
//! - its **trace id**: one an outer layer already chose, else `x-portkey-trace-id`, else the
//!   trace id of a W3C `traceparent` (parsed strictly, [`Traceparent`]), else a fresh one, in
//!   the [`TraceId`](portcullis_core::context::TraceId) extension, where core's
//!   [`FactHeaders`](portcullis_core::FactHeaders) finds it and echoes it;
//! - its **caller**: the [`Caller`](portcullis_core::context::Caller) extension, recorded once:
//!   what an outer layer set (the gateway's API key name) is kept; the virtual key
//!   (`x-portkey-virtual-key`), `metadata._user` and `metadata.team` fill the rest;
//!
//! and measures it: one `tracing` span with the OpenTelemetry GenAI attributes, closed when the
//! response body has been delivered, and the metrics of [`meter`], recorded through the
//! [`metrics`] facade into whatever recorder the application installed. With the `prometheus`
//! feature, `Prometheus` is such a recorder and renders them for `GET /metrics`; with the
//! `otlp` feature, `otlp::Otlp` exports the spans over OTLP/HTTP.
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use portcullis_core::context::{Caller, Metadata};
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
//! use portcullis_tag::{TagLayer, meter};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // A stand-in provider that answers with what the tag layer recorded.
//! let provider = service_fn(|req: http::Request<BufferedBody>| async move {
//!     let metadata = req.extensions().get::<Metadata>().unwrap();
//!     let caller = req.extensions().get::<Caller>().unwrap();
//!     let text = format!(
//!         "team={} user={}",
//!         metadata.get("team").unwrap(),
//!         caller.user.as_deref().unwrap()
//!     );
//!     Ok::<_, BoxError>(http::Response::new(Body::from(text)))
//! });
//!
//! // Any `metrics` recorder: a server installs one for the process (`Prometheus::install()`
//! // with the `prometheus` feature); a local one here.
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let _recorder = metrics::set_default_local_recorder(&recorder);
//!
//! let stack = ServiceBuilder::new()
//!     .layer(EdgeLayer::new())
//!     .layer(TagLayer::new().metadata_label("team")?)
//!     .layer(FactHeadersLayer::new())
//!     .service(provider);
//! let req = http::Request::post("/v1/chat/completions")
//!     .header("x-portkey-metadata", r#"{"team":"search"}"#)
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"gpt-4o-mini","user":"u-42","messages":[]}"#,
//!     )))?;
//!
//! let res = stack.clone().oneshot(req).await?;
//! assert_eq!(res.headers()["x-portkey-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "team=search user=u-42");
//!
//! let bad = http::Request::post("/v1/chat/completions")
//!     .header("x-portkey-metadata", r#"{"team":7}"#)
//!     .body(Full::new(bytes::Bytes::from_static(br#"{"model":"gpt-4o-mini"}"#)))?;
//! assert_eq!(stack.oneshot(bad).await?.status(), 400);
//!
//! // One request counted per status, labelled with the allowed metadata key (and with the
//! // provider, model and target).
//! let mut requests: Vec<(String, u64)> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == meter::REQUESTS_TOTAL)
//!     .map(|(key, _, _, value)| {
//!         let labels: Vec<String> = key
//!             .key()
//!             .labels()
//!             .filter(|l| matches!(l.key(), "metadata_team" | "status"))
//!             .map(|l| format!("{}={}", l.key(), l.value()))
//!             .collect();
//!         let DebugValue::Counter(n) = value else { unreachable!("a counter") };
//!         (labels.join(","), n)
//!     })
//!     .collect();
//! requests.sort();
//! assert_eq!(requests, [
//!     ("metadata_team=,status=400".to_owned(), 1),
//!     ("metadata_team=search,status=200".to_owned(), 1),
//! ]);
//! # Ok(()) }
//! ```
//!
//! # Behaviour and defaults
//!
//! | | default | setting |
//! |---|---|---|
//! | metadata header | `x-portkey-metadata` | [`TagLayer::metadata_header`] |
//! | most keys | 32 | [`TagLayer::max_keys`] |
//! | longest key, longest value | 128 characters each | [`TagLayer::max_key_len`], [`TagLayer::max_value_len`] |
//! | trace id header | `x-portkey-trace-id` | [`TagLayer::trace_header`] |
//! | virtual key header | `x-portkey-virtual-key` | [`TagLayer::virtual_key_header`] |
//! | metadata keys as metric labels | none | [`TagLayer::metadata_label`] (at most 8; a ninth is a [`BuildError`](portcullis_core::BuildError)) |
//! | distinct values per label | 64, then `other` | [`TagLayer::label_cap`] |
//! | metadata values shown in spans and logs | none (`<redacted>`) | [`TagLayer::log_metadata_key`] |
//!
//! - **Metadata** must be a JSON object whose values are all strings. Anything else, or a
//!   limit passed, is answered **400** (`invalid_request_error`, code `invalid_metadata`,
//!   `param` the header name) with a message that names the key, e.g.
//!   `x-portkey-metadata: the value of key `tier` must be a string, got a number`; the inner
//!   service is not called and its readiness is kept for the next request. The answer carries
//!   the trace id. Without the header, a `Metadata` extension an outer layer set is kept;
//!   every request leaves with one (empty when there is nothing).
//! - **`_user`** defaults to the body's `user` (from the parsed
//!   [`RequestView`](portcullis_core::RequestView)); a `_user` the client sent wins.
//! - **Trace ids**: see [Order](#order-with-other-layers) for how this composes with
//!   `FactHeaders`. With the `otlp` feature the same id is the OpenTelemetry trace id of the
//!   request span (see the `otlp` module).
//! - **Readiness**: `poll_ready` is the inner service's; `call` calls the inner service that
//!   was readied, itself (no clone). Inner errors pass through unchanged (as
//!   [`BoxError`](portcullis_core::BoxError)),
//!   after being measured with the status they will be answered with. A request whose future
//!   is dropped before its answer (the client went away, an outer timeout) is counted with
//!   status 499 and `error.type` `cancelled`.
//!
//! # Telemetry
//!
//! The span (target [`SPAN_TARGET`], name `gen_ai.request`, `otel.name` `"{operation}
//! {model}"`, kind server) carries `gen_ai.operation.name` (from the path: `chat`,
//! `text_completion`, `embeddings`, else `generate_content`), `gen_ai.request.model`,
//! `gen_ai.response.model`, `gen_ai.provider.name` (the provider's name from
//! [`ResponseFacts`](portcullis_core::facts::ResponseFacts)), `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons` (a JSON array as text),
//! `error.type` (the OpenAI error type of an error body or error, else the status code;
//! `stream_failed`, `cancelled`), `server.address` (the host the client addressed),
//! `http.response.status_code`, and `portcullis.trace_id`, `portcullis.target`,
//! `portcullis.cache_status` (`HIT`, `MISS`, ... when a cache layer answered),
//! `portcullis.guards` (each guardrail hook's verdict, `id:pass|fail|deny`),
//! `portcullis.attempt_count` and `portcullis.attempts` (every upstream attempt of the
//! request, in order, as `targets[0]/a:503:12ms,targets[1]/b:200:20ms`: path, provider, status
//! or error class, time to the response head; from the
//! [`AttemptBudget`](portcullis_core::context::AttemptBudget) an outer layer put in the
//! request, so a request that ends in an error shows them too, else from the response's
//! [`ResponseFacts`](portcullis_core::facts::ResponseFacts)), `portcullis.api_key` (the key's name), `portcullis.metadata` (the metadata as JSON; with
//! `otlp` also one attribute `portcullis.metadata.KEY` per key). Metadata values (the
//! request's `user` among them, as `_user`) show as `<redacted>` unless their key is named
//! by [`TagLayer::log_metadata_key`]: the keys are kept, the values never reach a log. Token counts, the response
//! model and the finish reason come from the response's
//! [`Observation`](portcullis_core::observe::Observation) report; the span is recorded and
//! closed when it arrives, so it covers the whole stream. A server error or a broken stream
//! sets `otel.status_code = ERROR` (a 4xx does not: OpenTelemetry leaves server spans unset
//! for client errors). With no subscriber the span is disabled and costs next to nothing.
//! Everything after the span's opening fields is recorded unless [`record_span_results`]
//! turned that off: a process whose text log wants the span as the context of the events
//! inside it, not its results, does (the gateway binary without an OTLP exporter does).
//!
//! The metrics are listed in [`meter`]. All times are taken with `tokio::time::Instant`, so
//! tests with paused time measure exactly.
//!
//! # For a server
//!
//! - At start-up, install a `metrics` recorder for the process before the first request
//!   (metrics recorded before it are lost, and a tag layer resolves its metric handles on
//!   first use). With the `prometheus` feature: `let prometheus = Prometheus::install()?;`
//!   and, unless `/metrics` is scraped often, `prometheus.spawn_upkeep(Duration::from_secs(5))`.
//! - `GET /metrics` (feature `prometheus`): answer `prometheus.response()` (or
//!   `prometheus.render()` with `prometheus::CONTENT_TYPE`).
//! - OTLP (feature `otlp`): `let otlp = Otlp::builder(endpoint).service_name(..).build()?;`
//!   inside the runtime, add `otlp.layer()` to the `tracing_subscriber::registry()`, and
//!   `otlp.shutdown().await` on the way out.
//!
//! # Differences from Portkey
//!
//! - Metadata is checked, not taken on trust: Portkey documents it as string keys and values;
//!   Portcullis refuses anything else, and bounds the key count and lengths, with a 400 that
//!   names the key, so metadata is safe to route, label and log on.
//! - Portkey's open-source gateway echoes `x-portkey-trace-id` but does not generate one;
//!   Portcullis also reads `traceparent`, generates an id when there is none, and uses the id
//!   as the OpenTelemetry trace id.
//! - `_user` defaults to the body's `user`, as in Portkey; the header's `_user` wins.
//!
//! # Order with other layers
//!
//! Canonical place: **edge → tag → fact headers** → budget → guard → cache → route →
//! fallback / balance → retry → provider.
//!
//! - **After the edge.** `_user` comes from the body the edge parsed. Outside the edge the
//!   layer still works (it is generic over the body) but no `_user` is taken from the body,
//!   and it then also measures the edge's own 400/413 answers.
//! - **Before `FactHeaders`.** The tag layer then decides the trace id (honouring
//!   `traceparent`) and `FactHeaders` echoes it; nothing is echoed twice. When
//!   `FactHeaders` sits outside the edge instead (as in the gateway today), it has chosen the
//!   id already (from `x-portkey-trace-id`, or a fresh one) and the tag layer keeps it, so
//!   the echo, every later layer and the span agree; a `traceparent` is then not honoured
//!   (with `otlp` it becomes a span link). Errors that inner layers return as `Err` are
//!   answered by the edge; only a `FactHeaders` outside the edge puts the trace id on those.
//! - **Before budgets, caches and routes**, which read `Metadata` and `Caller`.
//! - Inside a retry or fallback it would count each attempt as a request; keep it outside.
//! - The TTFT histogram wraps streamed bodies; a cache replaying a stream inside the tag
//!   layer is measured the same way.

#![forbid(unsafe_code)]

mod body;
mod future;
mod layer;
pub mod metadata;
pub mod meter;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod service;
mod telemetry;
pub mod trace;

pub use self::future::ResponseFuture;
pub use self::layer::{METADATA_HEADER, TRACE_ID_HEADER, TagLayer, VIRTUAL_KEY_HEADER};
pub use self::metadata::{InvalidMetadata, MetadataLimits};
#[cfg(feature = "prometheus")]
pub use self::prometheus::Prometheus;
pub use self::service::Tag;
pub use self::telemetry::{SPAN_TARGET, record_span_results};
pub use self::trace::Traceparent;
