//! The breaker in front of the OpenAI provider, against the fake upstream over loopback.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_breaker::{BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, State};
use portcullis_core::{Body, EdgeLayer};
use portcullis_provider::OpenAi;
use portcullis_testkit::{FakeUpstream, Plan};
use tower::{Layer, ServiceExt};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

fn client(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn breaker(failures: u32) -> CircuitBreakerLayer {
    CircuitBreaker::builder()
        .name("fake-openai")
        .policy(BreakerPolicy::new().consecutive_failures(failures))
        .build()
        .unwrap()
}

/// Edge -> breaker -> OpenAI provider; the client always gets a response.
async fn send(layer: &CircuitBreakerLayer, provider: OpenAi, body: &'static str) -> Response<Body> {
    EdgeLayer::new()
        .layer(layer.layer(provider))
        .oneshot(client(body))
        .await
        .unwrap()
}

async fn error_json(res: Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn always_500_opens_after_n_calls_and_stops_hitting_the_upstream() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(500));
    let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
    let layer = breaker(3);

    for _ in 0..3 {
        let res = send(&layer, provider.clone(), CHAT).await;
        assert_eq!(res.status(), 500, "the upstream's own answer");
    }
    assert_eq!(upstream.hits(), 3);
    assert_eq!(layer.circuit().state(), State::Open);

    for _ in 0..5 {
        let res = send(&layer, provider.clone(), CHAT).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "30");
        let v = error_json(res).await;
        assert_eq!(v["error"]["code"], "target_unavailable");
        assert_eq!(v["error"]["message"], "circuit open for fake-openai");
    }
    assert_eq!(
        upstream.hits(),
        3,
        "nothing reached the upstream while open"
    );
}

#[tokio::test]
async fn the_upstreams_retry_after_sets_the_cooldown() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(503).retry_after("7"));
    let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
    let layer = breaker(2);

    for _ in 0..2 {
        assert_eq!(send(&layer, provider.clone(), CHAT).await.status(), 503);
    }
    let res = send(&layer, provider, CHAT).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(error_json(res).await["error"]["code"], "target_unavailable");
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn a_refused_connection_counts_as_a_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = OpenAi::builder(format!("http://{addr}/v1"))
        .build()
        .unwrap();
    let layer = breaker(2);

    for _ in 0..2 {
        let res = send(&layer, provider.clone(), CHAT).await;
        assert_eq!(res.status(), 502);
    }
    let res = send(&layer, provider, CHAT).await;
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn a_probe_that_succeeds_closes_the_circuit() {
    let upstream = FakeUpstream::start().await;
    // Three failures asking for no wait at all, then healthy answers.
    upstream.set(Plan::ok().fail_first(3, 503).retry_after("0"));
    let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
    let layer = breaker(3);

    for _ in 0..3 {
        assert_eq!(send(&layer, provider.clone(), CHAT).await.status(), 503);
    }
    assert_eq!(layer.circuit().state(), State::Open);

    let res = send(&layer, provider.clone(), CHAT).await;
    assert_eq!(
        res.status(),
        200,
        "the probe reached the recovered upstream"
    );
    assert_eq!(layer.circuit().state(), State::Closed);
    let t = layer.circuit().transitions();
    assert_eq!((t.opened, t.half_opened, t.closed), (1, 1, 1));
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn a_stream_is_judged_by_its_status_without_waiting_for_the_body() {
    let upstream = FakeUpstream::start().await;
    // 200 with events a minute apart: the breaker must not wait for them.
    upstream.set(Plan::ok().chunk_delay(Duration::from_secs(60)));
    let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
    let layer = breaker(1);

    let start = std::time::Instant::now();
    let res = send(&layer, provider.clone(), CHAT_STREAM).await;
    assert_eq!(res.status(), 200);
    assert!(start.elapsed() < Duration::from_secs(10), "headers only");
    drop(res);

    // A 200 stream that breaks later still counted as a success: the status decides.
    upstream.set(Plan::ok().break_after(1));
    let res = send(&layer, provider, CHAT_STREAM).await;
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("stream_interrupted"),
        "the stream did break"
    );
    assert_eq!(layer.circuit().state(), State::Closed);
    assert_eq!(upstream.hits(), 2);
}
