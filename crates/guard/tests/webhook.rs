//! Webhook and log checks against a real webhook on loopback: pass, fail, timeout,
//! transformed request, hosts off the allowlist, no client credentials; async hooks.

mod support;

use std::sync::Arc;
use std::time::Duration;

use portcullis_guard::{GuardLayer, Loader};
use portcullis_testkit::FakeUpstream;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};

use support::{WebhookServer, chat, read, upstream};

fn webhook_hook(url: &str, deny: bool) -> Value {
    json!({"before_request_hooks": [{"id": "wh", "deny": deny, "checks": [
        {"id": "default.webhook", "parameters": {"webhookURL": format!("{url}/check"), "headers": {"x-hook-token": "t0k"}}}
    ]}]})
}

fn loader(server: &WebhookServer) -> Loader {
    Loader::new().allow_origin(&server.url()).unwrap()
}

#[tokio::test]
async fn a_passing_webhook_sees_the_context_and_never_the_client_credentials() {
    let server = WebhookServer::start(|_| async { (200, json!({"verdict": true})) }).await;
    let fake = FakeUpstream::start().await;
    let hooks = loader(&server)
        .hooks(&webhook_hook(&server.url(), true))
        .unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.oneshot(chat("hello hook")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(fake.hits(), 1);
    let check = &body["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert_eq!(check["verdict"], true);
    assert_eq!(
        check["data"]["webhookUrl"],
        format!("{}/check", server.url())
    );
    assert_eq!(check["data"]["requestContext"]["timeout"], 3000);

    let received = server.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.headers["x-hook-token"], "t0k");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert!(sent.headers.get("authorization").is_none());
    assert!(
        sent.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-portkey"))
    );
    assert!(!sent.body.to_string().contains("client-secret"));
    assert_eq!(sent.body["eventType"], "beforeRequestHook");
    assert_eq!(sent.body["requestType"], "chatComplete");
    assert_eq!(sent.body["request"]["text"], "hello hook");
    assert_eq!(sent.body["request"]["json"]["model"], "gpt-4o-mini");
    assert_eq!(sent.body["request"]["isStreamingRequest"], false);
    assert!(sent.body["request"].get("headers").is_none());
}

#[tokio::test]
async fn a_failing_webhook_denies_and_a_missing_verdict_fails() {
    let server = WebhookServer::start(|body: Value| async move {
        let text = body["request"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if text == "bad" {
            (200, json!({"verdict": false}))
        } else {
            (200, json!({"note": "no verdict"}))
        }
    })
    .await;
    let fake = FakeUpstream::start().await;
    let hooks = loader(&server)
        .hooks(&webhook_hook(&server.url(), true))
        .unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.clone().oneshot(chat("bad")).await.unwrap()).await;
    assert_eq!(status, 446);
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["checks"][0]["verdict"],
        false
    );
    let (status, body) = read(svc.oneshot(chat("other")).await.unwrap()).await;
    assert_eq!(status, 446);
    let check = &body["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert!(
        check.get("error").is_none(),
        "no verdict is a failure, not an error"
    );
    assert_eq!(check["data"]["responseData"]["note"], "no verdict");
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn a_webhook_error_passes_unless_fail_on_error() {
    let server = WebhookServer::start(|_| async { (500, json!({"error": "down"})) }).await;
    let fake = FakeUpstream::start().await;
    let hooks = loader(&server)
        .hooks(&webhook_hook(&server.url(), true))
        .unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.oneshot(chat("x")).await.unwrap()).await;
    assert_eq!(status, 200);
    let check = &body["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert_eq!(check["error"]["message"], "the webhook answered 500");
    assert_eq!(check["data"]["responseData"]["error"], "down");

    let node = json!({"input_guardrails": [{"deny": true, "webhook": {"webhookURL": format!("{}/c", server.url()), "failOnError": true}}]});
    let svc = GuardLayer::new(loader(&server).hooks(&node).unwrap()).layer(upstream(fake.url()));
    assert_eq!(svc.oneshot(chat("x")).await.unwrap().status(), 446);
}

#[tokio::test(start_paused = true)]
async fn a_slow_webhook_times_out_as_an_error() {
    // The webhook never answers; the check gives up at its 1 s timeout.
    let server = WebhookServer::start(|_| async {
        std::future::pending::<()>().await;
        (200, json!({"verdict": false}))
    })
    .await;
    let node = json!({"input_guardrails": [{"deny": true, "webhook": {"webhookURL": format!("{}/c", server.url()), "timeout": 1000}}]});
    let hooks = loader(&server).hooks(&node).unwrap();
    let inner = tower::service_fn(|_req: http::Request<portcullis_core::BufferedBody>| async {
        Ok::<_, portcullis_core::BoxError>(http::Response::new(portcullis_core::Body::from("{}")))
    });
    let svc = GuardLayer::new(hooks).layer(inner);
    let started = tokio::time::Instant::now();
    let (status, body) = read(svc.oneshot(chat("x")).await.unwrap()).await;
    assert_eq!(status, 200, "an error passes");
    assert!(started.elapsed() < Duration::from_secs(10));
    let check = &body["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert_eq!(check["error"]["message"], "timed out after 1000 ms");
}

#[tokio::test]
async fn a_webhook_rewrites_the_request() {
    let server = WebhookServer::start(|body: Value| async move {
        let mut json = body["request"]["json"].clone();
        json["messages"][0]["content"] = json!("rewritten by the hook");
        json["max_tokens"] = json!(5);
        (
            200,
            json!({"verdict": true, "transformedData": {"request": {"json": json}}}),
        )
    })
    .await;
    let fake = FakeUpstream::start().await;
    let hooks = loader(&server)
        .hooks(&webhook_hook(&server.url(), false))
        .unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.oneshot(chat("original")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["transformed"],
        true
    );
    let sent = fake.last_request().unwrap().json();
    assert_eq!(sent["messages"][0]["content"], "rewritten by the hook");
    assert_eq!(sent["max_tokens"], 5);
}

#[tokio::test]
async fn hosts_off_the_allowlist_are_refused_at_load() {
    let server = WebhookServer::start(|_| async { (200, json!({"verdict": true})) }).await;
    let e = Loader::new()
        .hooks(&webhook_hook(&server.url(), true))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "before_request_hooks[0].checks[0].parameters.webhookURL: `{}/check` is not on an allowed origin (the server's webhook allowlist)",
            server.url()
        )
    );
    let other = "http://169.254.169.254/latest";
    let e = loader(&server)
        .hooks(&json!({"output_guardrails": [{"log": {"logURL": other}}]}))
        .unwrap_err();
    assert!(e.to_string().starts_with("output_guardrails[0].log.logURL: `http://169.254.169.254/latest` is not on an allowed origin"));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn async_hooks_never_delay_the_answer() {
    // The webhook says it was called, then holds its answer until the test has the
    // guarded answer in hand.
    let release = Arc::new(Notify::new());
    let (called, mut calls) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let gate = release.clone();
    let server = WebhookServer::start(move |body: Value| {
        let gate = gate.clone();
        let called = called.clone();
        async move {
            let _ = called.send(body);
            gate.notified().await;
            (200, json!({"verdict": false}))
        }
    })
    .await;
    let fake = FakeUpstream::start().await;
    let node = json!({
        "input_guardrails": [{"async": true, "deny": true, "webhook": {"webhookURL": format!("{}/in", server.url())}}],
        "output_guardrails": [{"async": true, "deny": true, "log": {"logURL": format!("{}/out", server.url())}}]
    });
    let hooks = loader(&server).hooks(&node).unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.oneshot(chat("hi")).await.unwrap()).await;
    // A failing, denying async hook changes nothing: its verdict goes to logs and metrics.
    assert_eq!(status, 200);
    assert!(body.get("hook_results").is_none());
    assert_eq!(fake.hits(), 1);
    // Both async hooks did run: each reached the webhook, which is still holding them.
    let mut events = [calls.recv().await.unwrap(), calls.recv().await.unwrap()];
    events.sort_by_key(|b| b["eventType"].to_string());
    assert_eq!(events[0]["eventType"], "afterRequestHook");
    assert_eq!(
        events[0]["response"]["text"],
        "Hello from the fake upstream."
    );
    assert_eq!(events[1]["eventType"], "beforeRequestHook");
    release.notify_waiters();
}

#[tokio::test]
async fn a_before_hook_doing_io_moves_the_readied_service_into_the_future() {
    let server = WebhookServer::start(|_| async { (200, json!({"verdict": true})) }).await;
    let (mock, mut handle) = tower_test::mock::pair::<
        http::Request<portcullis_core::BufferedBody>,
        http::Response<portcullis_core::Body>,
    >();
    let hooks = loader(&server)
        .hooks(&webhook_hook(&server.url(), true))
        .unwrap();
    let mut svc = GuardLayer::new(hooks).layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    // The call awaits the webhook, then calls the service that was readied (a fresh clone
    // that was never polled would panic in the mock).
    let call = tokio::spawn(svc.call(chat("x")));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(http::Response::new(portcullis_core::Body::from("{}")));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn an_output_webhook_sees_the_answer_and_may_replace_it() {
    let server = WebhookServer::start(|body: Value| async move {
        let mut answer = body["response"]["json"].clone();
        answer["choices"][0]["message"]["content"] = json!("replaced by the hook");
        (
            200,
            json!({"verdict": true, "transformedData": {"response": {"json": answer}}}),
        )
    })
    .await;
    let fake = FakeUpstream::start().await;
    let node = json!({"output_guardrails": [{"webhook": {"webhookURL": format!("{}/out", server.url())}}]});
    let hooks = loader(&server).hooks(&node).unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    let (status, body) = read(svc.oneshot(chat("hi")).await.unwrap()).await;
    assert_eq!(status, 200);

    // The webhook saw the upstream's whole answer, its text and its status.
    let sent = &server.received()[0].body;
    assert_eq!(sent["eventType"], "afterRequestHook");
    assert_eq!(sent["response"]["text"], "Hello from the fake upstream.");
    assert_eq!(sent["response"]["statusCode"], 200);
    assert_eq!(
        sent["response"]["json"]["choices"][0]["message"]["content"],
        "Hello from the fake upstream."
    );
    assert!(sent["response"]["json"]["usage"].is_object());

    // The client gets the webhook's answer, with the results.
    let mut want = sent["response"]["json"].clone();
    want["choices"][0]["message"]["content"] = json!("replaced by the hook");
    want["hook_results"] = body["hook_results"].clone();
    assert_eq!(body, want);
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["transformed"],
        true
    );
}
