//! OpenTelemetry export over OTLP/HTTP (protobuf), behind the `otlp` feature.
//!
//! [`Otlp::builder`] makes a tracer provider that batches spans and posts them to a collector;
//! [`Otlp::layer`] is the `tracing-subscriber` layer that turns `tracing` spans (the tag
//! layer's request spans among them) into OpenTelemetry spans. The request span's trace id
//! is the request's [`TraceId`]:
//!
//! - with a valid `traceparent` whose trace id is the request's, the span is the child of the
//!   caller's span (remote parent, the caller's sampling flag honoured);
//! - otherwise the span starts a trace whose id is the request's trace id (32 hex digits or a
//!   UUID as they are; any other text hashed to a stable id, see
//!   [`otel_trace_id`]), through this module's [`IdGenerator`],
//!   which [`Otlp::builder`] installs; a `traceparent` of another trace becomes a link.
//!
//! Export runs on the tokio runtime that built the exporter: the SDK's batch thread hands
//! each request to it, so no second runtime or blocking client is needed.
//!
//! ```no_run
//! use portcullis_tag::otlp::Otlp;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let otlp = Otlp::builder("http://127.0.0.1:4318").service_name("portcullis").build()?;
//! tracing_subscriber::registry().with(otlp.layer()).init();
//! // … serve …
//! otlp.shutdown().await?; // exports what is still batched
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry_http::HttpClient;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{RandomIdGenerator, SdkTracer, SdkTracerProvider};
use portcullis_core::context::{Metadata, TraceId};
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use crate::trace::{Traceparent, otel_trace_id};

thread_local! {
    /// The trace id the next root span started on this thread takes.
    static NEXT_TRACE_ID: Cell<Option<u128>> = const { Cell::new(None) };
}

/// Ids for the OpenTelemetry SDK: random, except that the tag layer chooses the trace id of
/// a request span it starts (the request's trace id).
///
/// [`Otlp::builder`] installs it; install it in a tracer provider of your own
/// (`SdkTracerProvider::builder().with_id_generator(IdGenerator::default())`) for the same.
#[derive(Clone, Debug, Default)]
pub struct IdGenerator {
    random: RandomIdGenerator,
}

impl opentelemetry_sdk::trace::IdGenerator for IdGenerator {
    fn new_trace_id(&self) -> OtelTraceId {
        match NEXT_TRACE_ID.take() {
            Some(id) => OtelTraceId::from(id),
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

fn remote(parent: &Traceparent) -> SpanContext {
    SpanContext::new(
        OtelTraceId::from(parent.trace_id_u128()),
        SpanId::from(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    )
}

/// Binds a new request span to the request's trace (see the [module docs](self)).
pub(crate) fn bind(span: &Span, trace: &TraceId, parent: Option<&Traceparent>) {
    let id = otel_trace_id(trace);
    match parent {
        Some(parent) if parent.trace_id_u128() == id => {
            let cx = opentelemetry::Context::new().with_remote_span_context(remote(parent));
            // Fails only without an OpenTelemetry layer: nothing to bind then.
            let _ = span.set_parent(cx);
        }
        _ => {
            NEXT_TRACE_ID.set(Some(id));
            // Starts the OpenTelemetry span now, on this thread, so it takes the id above.
            let _ = span.context();
            NEXT_TRACE_ID.set(None);
            if let Some(parent) = parent {
                span.add_link(remote(parent));
            }
        }
    }
}

/// Sets one attribute per metadata key, `portcullis.metadata.KEY`, its value only for a key
/// in `allowed`.
pub(crate) fn record_metadata(span: &Span, metadata: &Metadata, allowed: &[String]) {
    for (key, value) in metadata.iter() {
        span.set_attribute(
            format!("portcullis.metadata.{key}"),
            crate::telemetry::loggable(key, value, allowed).to_owned(),
        );
    }
}

/// The OTLP exporter could not be built or flushed.
#[derive(Debug)]
pub struct OtlpError(String);

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OTLP export: {}", self.0)
    }
}

impl StdError for OtlpError {}

/// The default service name.
pub const DEFAULT_SERVICE_NAME: &str = "portcullis";
/// The default time allowed for one export request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an [`Otlp`] exporter.
#[derive(Clone, Debug)]
pub struct OtlpBuilder {
    endpoint: String,
    service_name: String,
    headers: HashMap<String, String>,
    timeout: Duration,
}

impl OtlpBuilder {
    /// Sets `service.name` (default `portcullis`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Adds a header to every export request (a collector's API key).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the time allowed for one export request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The traces URL: a base URL (`http://collector:4318`) gets `/v1/traces`; a URL with a
    /// path is used as it is.
    fn traces_url(&self) -> Result<String, OtlpError> {
        let uri: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| OtlpError(format!("invalid endpoint {:?}: {e}", self.endpoint)))?;
        if uri.scheme().is_none() || uri.host().is_none() {
            return Err(OtlpError(format!(
                "invalid endpoint {:?}: expected http://HOST:PORT or https://HOST:PORT",
                self.endpoint
            )));
        }
        Ok(match uri.path() {
            "" | "/" => format!("{}/v1/traces", self.endpoint.trim_end_matches('/')),
            _ => self.endpoint.clone(),
        })
    }

    /// Builds the exporter and its tracer provider (with [`IdGenerator`]).
    ///
    /// Call it inside the tokio runtime that will run the exports.
    pub fn build(self) -> Result<Otlp, OtlpError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| OtlpError("build the exporter inside a tokio runtime".into()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OnRuntime {
                client: hyper_client(self.timeout),
                runtime,
            })
            .with_endpoint(self.traces_url()?)
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(self.timeout)
            .with_headers(self.headers)
            .build()
            .map_err(|e| OtlpError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(IdGenerator::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service_name)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("portcullis-tag");
        Ok(Otlp {
            provider: Arc::new(provider),
            tracer,
        })
    }
}

fn hyper_client(timeout: Duration) -> HyperClient<hyper_rustls::HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    HyperClient::new(https, timeout, None)
}

/// An HTTP client whose requests run on a tokio runtime, whatever thread sends them (the
/// SDK's batch processor sends from a thread of its own).
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>,
    runtime: tokio::runtime::Handle,
}

type SendFuture<'a> = Pin<
    Box<dyn Future<Output = Result<Response<Bytes>, opentelemetry_http::HttpError>> + Send + 'a>,
>;

impl HttpClient for OnRuntime {
    // The expansion of the trait's `async fn` (declared with `async_trait`).
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> SendFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let task = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move {
            task.await
                .map_err(|e| -> opentelemetry_http::HttpError { Box::new(e) })?
        })
    }
}

/// An OTLP/HTTP span exporter and its tracer provider.
#[derive(Clone)]
pub struct Otlp {
    provider: Arc<SdkTracerProvider>,
    tracer: SdkTracer,
}

impl fmt::Debug for Otlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

impl Otlp {
    /// An exporter posting to `endpoint`: a collector's base URL (`http://127.0.0.1:4318`,
    /// `/v1/traces` is added) or its full traces URL.
    pub fn builder(endpoint: impl Into<String>) -> OtlpBuilder {
        OtlpBuilder {
            endpoint: endpoint.into(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            headers: HashMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The `tracing-subscriber` layer that exports spans through this exporter.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// The tracer provider, e.g. to install it as OpenTelemetry's global provider.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports every span ended so far, and waits for the collector's answer.
    pub async fn flush(&self) -> Result<(), OtlpError> {
        let provider = self.provider.clone();
        blocking(move || provider.force_flush()).await
    }

    /// Exports what is left and stops exporting.
    pub async fn shutdown(self) -> Result<(), OtlpError> {
        let provider = self.provider;
        blocking(move || provider.shutdown()).await
    }
}

/// Runs a blocking SDK call off the runtime's threads, which the export itself needs.
async fn blocking(
    f: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> Result<(), OtlpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OtlpError(e.to_string()))?
        .map_err(|e| OtlpError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_the_traces_path() {
        let url = |e: &str| Otlp::builder(e).traces_url();
        assert_eq!(url("http://c:4318").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(
            url("https://c/otlp/v1/traces").unwrap(),
            "https://c/otlp/v1/traces"
        );
        assert!(url("c:4318").is_err());
        assert!(url("not a url").is_err());
    }

    #[test]
    fn the_generator_takes_the_chosen_id_once() {
        use opentelemetry_sdk::trace::IdGenerator as _;
        let ids = IdGenerator::default();
        NEXT_TRACE_ID.set(Some(42));
        assert_eq!(ids.new_trace_id(), OtelTraceId::from(42u128));
        assert_ne!(ids.new_trace_id(), OtelTraceId::from(42u128));
    }
}
