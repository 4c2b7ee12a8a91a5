//! Client → hyper server (fact headers → edge → OpenAI-compatible provider) → fake upstream,
//! all over real loopback HTTP.

mod support;

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use portcullis::observe::{Observation, Outcome, Report};
use portcullis::provider::OpenAi;
use portcullis::{Body, EdgeLayer, FactHeadersLayer};
use portcullis_testkit::{FakeUpstream, Plan};
use support::{exchange, request_bytes, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tower::ServiceBuilder;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM_USAGE: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

/// Starts the stack in front of `upstream`; every body's report arrives on the channel.
async fn gateway(
    upstream: &FakeUpstream,
    limit: usize,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Report>) {
    let provider = OpenAi::builder(upstream.base_url())
        .api_key("sk-upstream")
        .name("openai")
        .build()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let stack = ServiceBuilder::new()
        .layer(FactHeadersLayer::new())
        .layer(EdgeLayer::new().limit(limit))
        .map_response(move |r: Response<Body>| {
            if let Some(o) = r.extensions().get::<Observation>() {
                let tx = tx.clone();
                o.on_report(move |report| {
                    let _ = tx.send(report.clone());
                });
            }
            r
        })
        .service(provider);
    let stack = tower::ServiceExt::map_request(stack, |r: Request<Incoming>| r);
    (serve(stack).await, rx)
}

const CLIENT_HEADERS: [(&str, &str); 4] = [
    ("content-type", "application/json"),
    ("authorization", "Bearer OPENAI_API_KEY"),
    ("x-portkey-api-key", "pk-live-secret"),
    ("x-portkey-trace-id", "trace-42"),
];

#[tokio::test]
async fn non_stream_is_byte_identical_to_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let (addr, mut reports) = gateway(&upstream, 1 << 20).await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        CHAT.as_bytes(),
    );
    let via = exchange(addr, &raw).await;
    let direct = exchange(upstream.addr(), &raw).await;
    assert_eq!(via.status, 200);
    assert_eq!(
        via.body, direct.body,
        "the gateway never rewrites a body it need not change"
    );
    assert_eq!(via.header("x-portkey-trace-id"), Some("trace-42"));
    assert_eq!(via.header("x-portkey-provider"), Some("openai"));
    assert_eq!(via.header("content-type"), Some("application/json"));

    let report = reports.recv().await.unwrap();
    assert_eq!(report.outcome, Outcome::Complete);
    assert_eq!(report.usage.unwrap().total_tokens, 19);

    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream"));
    assert!(
        seen.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-portkey"))
    );
}

#[tokio::test]
async fn stream_is_byte_identical_and_reports_usage() {
    let upstream = FakeUpstream::start().await;
    let (addr, mut reports) = gateway(&upstream, 1 << 20).await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        CHAT_STREAM_USAGE.as_bytes(),
    );
    let via = exchange(addr, &raw).await;
    let direct = exchange(upstream.addr(), &raw).await;
    assert_eq!(via.status, 200);
    assert_eq!(via.text(), direct.text());
    assert!(via.text().ends_with("data: [DONE]\n\n"));
    let report = reports.recv().await.unwrap();
    assert!(report.stream);
    assert_eq!(report.outcome, Outcome::Complete);
    assert_eq!(report.usage.unwrap().completion_tokens, 7);
    assert_eq!(report.text, portcullis_testkit::DEFAULT_CONTENT);
}

#[tokio::test]
async fn malformed_json_is_400_with_an_openai_error() {
    let upstream = FakeUpstream::start().await;
    let (addr, _) = gateway(&upstream, 1 << 20).await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        b"{\"model\": [",
    );
    let res = exchange(addr, &raw).await;
    assert_eq!(res.status, 400);
    let v = res.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(res.header("x-portkey-trace-id"), Some("trace-42"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn oversized_body_is_413_with_an_openai_error() {
    let upstream = FakeUpstream::start().await;
    let (addr, _) = gateway(&upstream, 1024).await;
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        big.as_bytes(),
    );
    let res = exchange(addr, &raw).await;
    assert_eq!(res.status, 413);
    assert_eq!(res.json()["error"]["code"], "request_too_large");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn refused_upstream_is_502_with_an_openai_error() {
    let upstream = FakeUpstream::start().await;
    let (addr, _) = gateway(&upstream, 1 << 20).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let provider = OpenAi::builder(format!("http://{dead}/v1"))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(FactHeadersLayer::new())
        .layer(EdgeLayer::new())
        .service(provider);
    let dead_addr = serve(tower::ServiceExt::map_request(
        stack,
        |r: Request<Incoming>| r,
    ))
    .await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        CHAT.as_bytes(),
    );
    let res = exchange(dead_addr, &raw).await;
    assert_eq!(res.status, 502);
    assert_eq!(res.json()["error"]["code"], "upstream_connect_failed");
    // The healthy gateway is unaffected.
    assert_eq!(exchange(addr, &raw).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn broken_upstream_stream_reaches_the_client_as_an_error_event() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().break_after(2));
    let (addr, mut reports) = gateway(&upstream, 1 << 20).await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        CHAT_STREAM_USAGE.as_bytes(),
    );
    let res = exchange(addr, &raw).await; // parses chunked framing: panics on a cut body
    let text = res.text();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "stream_interrupted");
    let report = reports.recv().await.unwrap();
    assert!(matches!(report.outcome, Outcome::Failed(_)));
}

#[tokio::test(start_paused = true)]
async fn client_leaving_mid_stream_is_reported_with_partial_text() {
    let upstream = FakeUpstream::start().await;
    let content = "word ".repeat(200);
    upstream.set(
        Plan::ok()
            .content(&content)
            .chunk_delay(Duration::from_millis(5)),
    );
    let (addr, mut reports) = gateway(&upstream, 1 << 20).await;
    let raw = request_bytes(
        "POST",
        "/v1/chat/completions",
        &CLIENT_HEADERS,
        CHAT_STREAM_USAGE.as_bytes(),
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&raw).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(4).filter(|w| w == b"word").count() < 3 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let report = reports.recv().await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(
        report.text.starts_with("word word word"),
        "{:?}",
        report.text
    );
    assert!(report.text.len() < content.len());
}
