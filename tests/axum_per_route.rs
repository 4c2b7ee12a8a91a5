//! The app of `examples/axum_per_route.rs`, served by axum on loopback in front of fake
//! OpenAI-compatible upstreams: every route, what it answers, and which upstream got what.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum_per_route.rs"]
mod example;

use std::net::SocketAddr;

use example::{Provider, Upstreams};
use portcullis_testkit::client::{Exchange, post, request, send};
use portcullis_testkit::{FakeUpstream, Plan};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#;

/// The app on a fresh port, with three fake upstreams behind it.
struct Fixture {
    addr: SocketAddr,
    primary: FakeUpstream,
    secondary: FakeUpstream,
    in_house: FakeUpstream,
}

impl Fixture {
    async fn start() -> Self {
        let primary = FakeUpstream::start().await;
        let secondary = FakeUpstream::start().await;
        let in_house = FakeUpstream::start().await;
        let upstreams = Upstreams {
            primary: Provider {
                base_url: primary.base_url(),
                api_key: Some("sk-primary".into()),
            },
            secondary: Provider {
                base_url: secondary.base_url(),
                api_key: Some("sk-secondary".into()),
            },
            in_house: format!("{}/v1/chat/completions", in_house.url()),
        };
        let app = example::app(&upstreams).expect("the app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            primary,
            secondary,
            in_house,
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
        post(self.addr, path, headers, body).await
    }
}

/// The models the upstream was asked for, in order.
fn models(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| r.json()["model"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn chat_retries_each_provider_then_falls_back_and_routes_on_metadata() {
    let app = Fixture::start().await;
    app.primary.set(Plan::ok().status(503));

    // A paying plan: routed to `premium` (gpt-4o); the primary is tried three times (two
    // retries), then the fallback moves on to the secondary.
    let res = app
        .post(
            "/chat",
            &[
                ("x-portkey-metadata", r#"{"plan":"pro"}"#),
                ("x-portkey-trace-id", "trace-7"),
                ("authorization", "Bearer client-secret"),
            ],
            CHAT,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json()["choices"][0]["message"]["content"],
        "Hello from the fake upstream."
    );
    assert_eq!(res.header("x-portkey-trace-id"), Some("trace-7"));
    assert_eq!(res.header("x-portkey-provider"), Some("secondary"));
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[0].targets[1]")
    );
    assert_eq!(res.header("x-portkey-retry-attempt-count"), Some("0"));
    assert_eq!(models(&app.primary), ["gpt-4o"; 3]);
    assert_eq!(models(&app.secondary), ["gpt-4o"]);
    // A route named `/chat` reaches the chat endpoint; the providers send their own keys and
    // none of the client's headers.
    let sent = app.secondary.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-secondary"));
    assert_eq!(sent.header("x-portkey-metadata"), None);
    assert!(
        app.primary
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer sk-primary"))
    );

    // No plan: `standard`, the model the client asked for.
    let res = app.post("/chat", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1].targets[1]")
    );
    assert_eq!(models(&app.secondary), ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(app.primary.hits(), 6);
}

#[tokio::test]
async fn chat_answers_from_the_primary_and_streams() {
    let app = Fixture::start().await;

    let res = app.post("/chat", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-portkey-provider"), Some("primary"));
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1].targets[0]")
    );

    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let res = app.post("/chat", &[], stream).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    assert!(
        res.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        res.text()
    );
    assert_eq!((app.primary.hits(), app.secondary.hits()), (2, 0));

    // The tag layer checks the metadata before anything is called.
    let res = app
        .post("/chat", &[("x-portkey-metadata", r#"{"plan":7}"#)], CHAT)
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["code"], "invalid_metadata");
    assert_eq!(app.primary.hits(), 2);
}

#[tokio::test]
async fn cheap_spreads_the_small_model_over_both_providers() {
    let app = Fixture::start().await;
    let big = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
    for _ in 0..40 {
        let res = app.post("/cheap", &[], big).await;
        assert_eq!(res.status, 200);
        let index = res.header("x-portkey-last-used-option-index");
        match res.header("x-portkey-provider") {
            Some("primary") => assert_eq!(index, Some("config.targets[0]")),
            Some("secondary") => assert_eq!(index, Some("config.targets[1]")),
            other => panic!("answered by {other:?}"),
        }
    }
    let (primary, secondary) = (models(&app.primary), models(&app.secondary));
    assert_eq!(primary.len() + secondary.len(), 40);
    // 3 : 1 over 40 calls: both get some (a miss is a chance of about 1 in 100 000).
    assert!(
        !primary.is_empty() && !secondary.is_empty(),
        "{primary:?} {secondary:?}"
    );
    assert!(primary.iter().chain(&secondary).all(|m| m == "gpt-4o-mini"));
}

#[tokio::test]
async fn raw_is_the_provider_alone() {
    let app = Fixture::start().await;

    let res = app.post("/raw", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-portkey-provider"), Some("primary"));
    assert_eq!(models(&app.primary), ["gpt-4o-mini"]);

    // No retry and no fallback: the upstream's 503 is the answer.
    app.primary.set(Plan::ok().status(503));
    let res = app.post("/raw", &[], CHAT).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.json()["error"]["type"], "server_error");
    assert_eq!((app.primary.hits(), app.secondary.hits()), (2, 0));

    // The edge answers a body that is not JSON; nothing is called.
    let res = app.post("/raw", &[], "Hi").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    assert_eq!(app.primary.hits(), 2);
}

#[tokio::test]
async fn own_service_is_retried_and_guarded_by_a_circuit_breaker() {
    let app = Fixture::start().await;

    // One failure, retried: the client's body reaches your service as it was sent.
    app.in_house.set(Plan::ok().fail_first(1, 503));
    let res = app
        .post("/own", &[("x-portkey-trace-id", "own-1")], CHAT)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-portkey-retry-attempt-count"), Some("1"));
    assert_eq!(res.header("x-portkey-trace-id"), Some("own-1"));
    let sent = app.in_house.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.body == CHAT.as_bytes()));
    assert_eq!(sent[1].path, "/v1/chat/completions");
    assert_eq!(sent[1].header("x-client"), Some("in-house"));

    // Failing for good: three attempts, three failures in a row, and the circuit opens.
    app.in_house.set(Plan::ok().status(500));
    let res = app.post("/own", &[], CHAT).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.header("x-portkey-retry-attempt-count"), Some("-1"));
    assert_eq!(app.in_house.hits(), 5);

    // Open: answered 503 with Retry-After at once, and your service is not called.
    let res = app.post("/own", &[], CHAT).await;
    assert_eq!(res.status, 503);
    assert!(res.header("retry-after").is_some(), "{}", res.head);
    let message = res.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("circuit open for in-house"), "{message}");
    assert_eq!(app.in_house.hits(), 5);
    assert_eq!((app.primary.hits(), app.secondary.hits()), (0, 0));
}

#[tokio::test]
async fn ordinary_handlers_sit_beside_the_llm_routes() {
    let app = Fixture::start().await;
    let res = send(app.addr, &request("GET", "/health", &[], "")).await;
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    // axum answers paths it does not know; no stack is involved.
    let res = app.post("/nowhere", &[], CHAT).await;
    assert_eq!(res.status, 404);
    let hits = app.primary.hits() + app.secondary.hits() + app.in_house.hits();
    assert_eq!(hits, 0);
}
