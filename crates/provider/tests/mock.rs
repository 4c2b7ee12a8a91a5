//! The mock provider: deterministic answers, failures, latency and streams.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::observe::{Observation, Outcome};
use portcullis_core::{Body, BufferedBody, EdgeLayer};
use portcullis_provider::{Endpoint, Mock};
use tower::{Layer, Service, ServiceExt};

async fn call(mock: &Mock, path: &str, body: &'static str) -> Response<Body> {
    let req = Request::post(path)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    EdgeLayer::new()
        .layer(mock.clone())
        .oneshot(req)
        .await
        .unwrap()
}

async fn json(r: Response<Body>) -> serde_json::Value {
    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn chat_answers_with_content_and_usage() {
    let mock = Mock::builder()
        .content("one two three")
        .usage(10, 3)
        .build();
    let r = call(&mock, "/v1/chat/completions", r#"{"model":"x"}"#).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let o = r.extensions().get::<Observation>().unwrap().clone();
    let v = json(r).await;
    assert_eq!(v["model"], "x");
    assert_eq!(v["choices"][0]["message"]["content"], "one two three");
    assert_eq!(v["usage"]["total_tokens"], 13);
    assert_eq!(o.report().unwrap().usage.unwrap().total_tokens, 13);
}

#[tokio::test(start_paused = true)]
async fn stream_is_event_by_event_with_delays() {
    let mock = Mock::builder()
        .content("a b c")
        .chunk_delay(Duration::from_millis(100))
        .latency(Duration::from_millis(250))
        .build();
    let start = tokio::time::Instant::now();
    let r = call(
        &mock,
        "/v1/chat/completions",
        r#"{"model":"x","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let o = r.extensions().get::<Observation>().unwrap().clone();
    let mut body = r.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    // role, 3 pieces, finish, usage, [DONE]
    assert_eq!(frames.len(), 7);
    assert_eq!(&frames[6][..], b"data: [DONE]\n\n");
    assert_eq!(start.elapsed(), Duration::from_millis(250 + 6 * 100));
    let rep = o.report().unwrap();
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.text, "a b c");
    assert!(rep.usage.is_some());
}

#[tokio::test]
async fn failure_rate_is_exact_and_spread() {
    let mock = Mock::builder()
        .failure_rate(0.25)
        .failure_status(503)
        .build();
    let mut failures = Vec::new();
    for i in 0..100 {
        let r = call(&mock, "/v1/chat/completions", r#"{"model":"x"}"#).await;
        if r.status() == 503 {
            failures.push(i);
            assert_eq!(json(r).await["error"]["code"], "mock_failure");
        }
    }
    assert_eq!(failures.len(), 25);
    assert_eq!(&failures[..3], &[3, 7, 11]);
    assert_eq!(mock.served(), 100);
}

#[tokio::test]
async fn fixed_status_and_other_endpoints() {
    let down = Mock::builder().status(429).build();
    let r = call(&down, "/v1/chat/completions", "{}").await;
    assert_eq!(r.status(), 429);
    assert_eq!(json(r).await["error"]["type"], "rate_limit_error");

    let mock = Mock::builder().models(["a", "b"]).build();
    let e1 = json(call(&mock, "/v1/embeddings", r#"{"model":"e","input":"same"}"#).await).await;
    let e2 = json(call(&mock, "/v1/embeddings", r#"{"model":"e","input":"same"}"#).await).await;
    let e3 = json(call(&mock, "/v1/embeddings", r#"{"model":"e","input":"other"}"#).await).await;
    assert_eq!(e1["data"][0]["embedding"], e2["data"][0]["embedding"]);
    assert_ne!(e1["data"][0]["embedding"], e3["data"][0]["embedding"]);
    assert_eq!(e1["data"][0]["embedding"].as_array().unwrap().len(), 8);

    let c = json(call(&mock, "/v1/completions", r#"{"model":"c","prompt":"p"}"#).await).await;
    assert_eq!(c["object"], "text_completion");

    let req = Request::get("/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = EdgeLayer::new()
        .layer(mock.clone())
        .oneshot(req)
        .await
        .unwrap();
    let m = json(r).await;
    assert_eq!(m["data"][1]["id"], "b");

    assert_eq!(call(&mock, "/v1/nope", "{}").await.status(), 404);
}

#[tokio::test]
async fn mock_is_always_ready() {
    let mut mock = Mock::default();
    let req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new("{}"))
        .unwrap();
    let r = mock.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut clone = mock.clone();
    let req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new("{}"))
        .unwrap();
    assert_eq!(
        clone
            .ready()
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(mock.served(), 2);
}

#[tokio::test]
async fn pinned_mock_serves_any_path_and_an_extension_overrides_the_pin() {
    let mock = Mock::builder().endpoint(Endpoint::Chat).build();
    let v = json(call(&mock, "/chat", r#"{"model":"x"}"#).await).await;
    assert_eq!(v["object"], "chat.completion");
    let v = json(call(&mock, "/v1/embeddings", r#"{"model":"x"}"#).await).await;
    assert_eq!(v["object"], "chat.completion", "the pin beats the path");

    let mut req = Request::post("/chat")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"e","input":"a"}"#,
        )))
        .unwrap();
    req.extensions_mut().insert(Endpoint::Embeddings);
    let r = EdgeLayer::new()
        .layer(mock.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(json(r).await["data"][0]["object"], "embedding");

    // Unpinned, `/chat` names no endpoint.
    let unpinned = Mock::default();
    let r = call(&unpinned, "/chat", r#"{"model":"x"}"#).await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"]["code"], "unknown_endpoint");
}
