//! Fallback over real loopback HTTP: fake upstreams behind the OpenAI provider.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::{Observation, Outcome};
use portcullis_core::{Body, EdgeLayer, FactHeadersLayer};
use portcullis_fallback::Fallback;
use portcullis_provider::OpenAi;
use portcullis_testkit::{FakeUpstream, Plan};
use tower::{Layer, Service, ServiceExt};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const TEXT_STREAM: &str =
    r#"{"model":"gpt-3.5-turbo-instruct","stream":true,"prompt":"Say hello"}"#;

fn provider(upstream: &FakeUpstream) -> OpenAi {
    OpenAi::builder(upstream.base_url()).build().unwrap()
}

fn client_request(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Sends a client request through the edge and the fact headers to `service`.
async fn send<S>(service: S, path: &str, body: &'static str) -> Response<Body>
where
    S: Service<
            Request<portcullis_core::BufferedBody>,
            Response = Response<Body>,
            Error = portcullis_core::BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    FactHeadersLayer::new()
        .layer(EdgeLayer::new().layer(service))
        .oneshot(client_request(path, body))
        .await
        .unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn upstream_pair() -> (FakeUpstream, FakeUpstream) {
    (FakeUpstream::start().await, FakeUpstream::start().await)
}

#[tokio::test]
async fn an_always_failing_primary_falls_back_to_a_healthy_secondary() {
    let (primary, secondary) = upstream_pair().await;
    primary.set(Plan::ok().status(500));
    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        portcullis_testkit::DEFAULT_CONTENT
    );
    assert_eq!(primary.hits(), 1);
    assert_eq!(secondary.hits(), 1);
    // Both upstreams got the client's request as it was.
    assert_eq!(primary.last_request().unwrap().body, CHAT.as_bytes());
    assert_eq!(secondary.last_request().unwrap().body, CHAT.as_bytes());
}

#[tokio::test]
async fn a_healthy_primary_answers_alone() {
    let (primary, secondary) = upstream_pair().await;
    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[0]"
    );
    let body = text(r).await;
    assert!(body.contains("Hello "), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!((primary.hits(), secondary.hits()), (1, 0));
}

#[tokio::test]
async fn a_refused_connection_falls_back() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dead = OpenAi::builder(format!("http://{addr}/v1"))
        .build()
        .unwrap();
    let secondary = FakeUpstream::start().await;
    let fallback = Fallback::new([dead, provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        ResponseFacts::get(&r).unwrap().target.unwrap().to_string(),
        "targets[1]"
    );
    assert_eq!(secondary.hits(), 1);
}

#[tokio::test]
async fn when_both_fail_the_client_gets_the_last_answer() {
    let (primary, secondary) = upstream_pair().await;
    primary.set(Plan::ok().status(503));
    secondary.set(Plan::ok().status(429).retry_after("7"));
    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    assert_eq!((primary.hits(), secondary.hits()), (1, 1));
}

#[tokio::test]
async fn a_text_stream_that_breaks_before_its_first_event_falls_back() {
    let (primary, secondary) = upstream_pair().await;
    // A text-completion stream has no role event: the upstream answers 200 and breaks
    // before sending any event.
    primary.set(Plan::ok().break_after(0));

    // What the primary does on its own: 200, then only the observer's error event.
    let alone = send(provider(&primary), "/v1/completions", TEXT_STREAM).await;
    assert_eq!(alone.status(), 200);
    let body = text(alone).await;
    assert!(body.starts_with("data: {\"error\""), "{body}");

    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/completions", TEXT_STREAM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    let observation = r.extensions().get::<Observation>().unwrap().clone();
    let body = text(r).await;
    assert!(!body.contains("error"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!(observation.report().unwrap().outcome, Outcome::Complete);
    assert_eq!(
        observation.report().unwrap().text,
        portcullis_testkit::DEFAULT_CONTENT
    );
    assert_eq!((primary.hits(), secondary.hits()), (2, 1));
}

#[tokio::test]
async fn a_stream_that_breaks_later_ends_with_an_error_event() {
    let (primary, secondary) = upstream_pair().await;
    primary.set(Plan::ok().break_after(2));
    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[0]"
    );
    // Frame by frame: the body ends cleanly after an error event, never hangs or breaks.
    let mut body = r.into_body();
    let mut got = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("an event, not a broken body");
        got.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    assert!(got.contains("\"content\":\"Hello \""), "{got}");
    let last = got.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "stream_interrupted");
    assert_eq!(primary.hits(), 1);
    assert_eq!(secondary.hits(), 0);
}

#[tokio::test]
async fn a_chat_stream_that_breaks_before_its_first_event_falls_back() {
    // `break_after(0)` on a chat stream sends only the opening role event (no content), then
    // breaks: nothing of use reached the client, so the secondary answers the whole stream.
    let (primary, secondary) = upstream_pair().await;
    primary.set(Plan::ok().break_after(0));
    let fallback = Fallback::new([provider(&primary), provider(&secondary)]);
    let r = send(fallback, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    let observation = r.extensions().get::<Observation>().unwrap().clone();
    let body = text(r).await;
    assert!(!body.contains("stream_interrupted"), "{body}");
    assert_eq!(
        body.matches("\"role\":\"assistant\"").count(),
        1,
        "one opening event, the secondary's: {body}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let report = observation.report().unwrap();
    assert_eq!(report.outcome, Outcome::Complete);
    assert_eq!(report.text, portcullis_testkit::DEFAULT_CONTENT);
    assert_eq!((primary.hits(), secondary.hits()), (1, 1));
}
