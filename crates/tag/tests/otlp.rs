//! OTLP/HTTP export (feature `otlp`): request spans reach a small OTLP receiver on loopback,
//! with the request's trace id as their trace id and the GenAI attributes.

#![cfg(feature = "otlp")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use portcullis_core::context::TraceId;
use portcullis_core::{EdgeLayer, FactHeadersLayer};
use portcullis_provider::OpenAi;
use portcullis_tag::TagLayer;
use portcullis_tag::otlp::Otlp;
use portcullis_tag::trace::otel_trace_id;
use portcullis_testkit::FakeUpstream;
use prost::Message;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

/// A POST the receiver got: path, content type, body.
type Posts = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// An OTLP/HTTP receiver on `127.0.0.1:0` that records every POST and answers 200.
async fn receiver() -> (SocketAddr, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = Posts::default();
    let record = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let kind = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        record.lock().unwrap().push((path, kind, body));
                        let answer = Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, posts)
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Sends one request through Edge → Tag → FactHeaders → OpenAI and returns the echoed trace id
/// once the body has been read.
async fn send(upstream: &FakeUpstream, body: &'static str, headers: &[(&str, &str)]) -> String {
    let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(TagLayer::new().log_metadata_key("team"))
        .layer(FactHeadersLayer::new())
        .service(provider);
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("host", "gateway.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = stack.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let trace = response.headers()["x-portkey-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.into_body().collect().await.unwrap();
    trace
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        any_value::Value::IntValue(n) => Some(*n),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// One test: `tracing` caches per callsite whether it is enabled, and per-thread subscribers of
// tests running side by side can race on that cache.
#[tokio::test]
async fn request_spans_are_exported_with_the_request_trace_id() {
    let (addr, posts) = receiver().await;
    let otlp = Otlp::builder(format!("http://{addr}"))
        .service_name("portcullis-test")
        .build()
        .unwrap();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(otlp.layer()));
    let upstream = FakeUpstream::start().await;

    let from_parent = send(&upstream, CHAT, &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(from_parent, "4bf92f3577b34da6a3ce929d0e0e4736");
    let generated = send(&upstream, CHAT_STREAM, &[]).await;
    let named = send(
        &upstream,
        CHAT,
        &[
            ("x-portkey-trace-id", "checkout-42"),
            ("x-portkey-metadata", r#"{"team":"search","_user":"u-1"}"#),
        ],
    )
    .await;
    assert_eq!(named, "checkout-42");

    otlp.flush().await.unwrap();
    let posts = posts.lock().unwrap().clone();
    assert!(!posts.is_empty(), "nothing exported");
    let mut spans = Vec::new();
    for (path, kind, body) in &posts {
        assert_eq!(path, "/v1/traces");
        assert_eq!(kind, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(body.clone()).unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.clone());
            assert_eq!(
                service,
                Some(any_value::Value::StringValue("portcullis-test".into()))
            );
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    assert_eq!(spans.len(), 3, "one span per request: {spans:#?}");
    let by_trace = |trace: &str| {
        spans
            .iter()
            .find(|s| string(s, "portcullis.trace_id").as_deref() == Some(trace))
            .unwrap_or_else(|| panic!("no span of trace {trace}"))
    };

    // traceparent: the caller's trace, the caller's span as the parent.
    let span = by_trace(&from_parent);
    assert_eq!(hex(&span.trace_id), from_parent);
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.name, "chat gpt-4o-mini");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        string(span, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        string(span, "gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    // The provider names itself after its host unless told otherwise.
    assert_eq!(
        string(span, "gen_ai.provider.name").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        string(span, "server.address").as_deref(),
        Some("gateway.test")
    );
    assert_eq!(int(span, "http.response.status_code"), Some(200));
    assert_eq!(int(span, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(int(span, "gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(
        string(span, "gen_ai.response.finish_reasons").as_deref(),
        Some(r#"["stop"]"#)
    );

    // Generated: a root span whose trace id is the echoed id.
    let span = by_trace(&generated);
    assert_eq!(hex(&span.trace_id), generated);
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        int(span, "gen_ai.usage.output_tokens"),
        Some(7),
        "from the stream"
    );

    // Any other text: a stable id derived from it. Metadata: one attribute per key, values
    // only for keys allowed in logs.
    let span = by_trace("checkout-42");
    let derived = otel_trace_id(&TraceId::parse("checkout-42").unwrap());
    assert_eq!(hex(&span.trace_id), format!("{derived:032x}"));
    assert_eq!(
        string(span, "portcullis.metadata.team").as_deref(),
        Some("search")
    );
    assert_eq!(
        string(span, "portcullis.metadata._user").as_deref(),
        Some("<redacted>")
    );

    drop(_guard);
    otlp.shutdown().await.unwrap();
}
