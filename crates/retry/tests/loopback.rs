//! The retry layer in a real stack over loopback HTTP: fact headers → edge → retry → the
//! OpenAI provider → the fake upstream.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::context::Attempt;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::observe::{Observation, Outcome};
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
use portcullis_provider::OpenAi;
use portcullis_retry::{RetryLayer, RetryPolicy};
use portcullis_testkit::{FakeUpstream, Plan};
use tower::{Layer, Service, ServiceExt, service_fn};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const COMPLETION_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"prompt":"Say hello"}"#;

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder(attempts).build().unwrap()
}

fn provider(upstream: &FakeUpstream) -> OpenAi {
    OpenAi::builder(upstream.base_url()).build().unwrap()
}

/// The client's view: fact headers and the edge outside, retry around `inner`.
async fn send<S>(inner: S, policy: RetryPolicy, path: &str, body: &'static str) -> Response<Body>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let stack =
        FactHeadersLayer::new().layer(EdgeLayer::new().layer(RetryLayer::new(policy).layer(inner)));
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    stack.oneshot(req).await.unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn retries(r: &Response<Body>) -> Option<Retries> {
    ResponseFacts::get(r).and_then(|f| f.retries)
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_fails_twice_answers_on_the_third_attempt() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().fail_first(2, 503));
    let r = send(provider(&upstream), policy(3), "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.hits(), 3);
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "2");
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        portcullis_testkit::DEFAULT_CONTENT
    );
    for seen in upstream.requests() {
        assert_eq!(
            seen.body,
            CHAT.as_bytes(),
            "every attempt sends the same body"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_keeps_failing_is_exhausted() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(502));
    let r = send(provider(&upstream), policy(2), "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 502, "the upstream's last answer");
    assert_eq!(upstream.hits(), 3);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "-1");
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["message"], "fake upstream error");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_retried() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().disconnect_first(1));
    let r = send(provider(&upstream), policy(2), "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.hits(), 2);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "1");
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_upstream_is_honoured() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().fail_first(1, 429).retry_after("7"));
    let policy = RetryPolicy::builder(2)
        .use_retry_after_header(true)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let r = send(provider(&upstream), policy, "/v1/chat/completions", CHAT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "1");
    assert!(start.elapsed() >= std::time::Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_before_its_first_event_is_retried() {
    let upstream = Arc::new(FakeUpstream::start().await);
    // The first attempt's stream dies before any event; the upstream then recovers.
    upstream.set(Plan::ok().break_after(0));
    let openai = provider(&upstream);
    let recovering = service_fn({
        let upstream = upstream.clone();
        move |req: Request<BufferedBody>| {
            if req.extensions().get::<Attempt>() != Some(&Attempt(0)) {
                upstream.set(Plan::ok());
            }
            openai.clone().oneshot(req)
        }
    });
    let r = send(recovering, policy(2), "/v1/completions", COMPLETION_STREAM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.hits(), 2);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "1");
    let observation = r.extensions().get::<Observation>().unwrap().clone();
    let body = text(r).await;
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(!body.contains("stream_interrupted"), "{body}");
    assert_eq!(observation.report().unwrap().outcome, Outcome::Complete);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_broke_after_its_first_event_is_not_retried() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().break_after(2));
    let r = send(
        provider(&upstream),
        policy(3),
        "/v1/chat/completions",
        CHAT_STREAM,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "0");
    let observation = r.extensions().get::<Observation>().unwrap().clone();
    let body = text(r).await;
    assert_eq!(
        upstream.hits(),
        1,
        "bytes reached the client: never sent twice"
    );
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "stream_interrupted", "{body}");
    assert!(!body.contains("[DONE]"));
    let report = observation.report().unwrap();
    assert!(matches!(report.outcome, Outcome::Failed(_)));
    assert_eq!(
        report.text, "Hello from ",
        "the two pieces that arrived, once"
    );
}
