//! The layer over real loopback HTTP: 446 without calling the upstream, 246, 200 with
//! `hook_results`, after-request denies, `failOnError`, `sequential`, PII redaction in and
//! out, rewrites applied once, readiness.

mod support;

use portcullis_core::facts::ResponseFacts;
use portcullis_guard::{GuardLayer, Loader};
use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};

use support::{chat, read, upstream};

async fn stack(
    node: Value,
) -> (
    FakeUpstream,
    impl Service<
        http::Request<portcullis_core::BufferedBody>,
        Response = http::Response<portcullis_core::Body>,
        Error = portcullis_core::BoxError,
    > + Clone,
) {
    let fake = FakeUpstream::start().await;
    let hooks = Loader::new().hooks(&node).unwrap();
    let svc = GuardLayer::new(hooks).layer(upstream(fake.url()));
    (fake, svc)
}

#[tokio::test]
async fn a_denying_input_guard_answers_446_without_calling_the_upstream() {
    let (fake, svc) = stack(
        json!({"input_guardrails": [{"id": "no-secrets", "deny": true,
        "on_fail": {"feedback": {"value": -5, "weight": 1}},
        "regexMatch": {"rule": "secret", "not": true}}]}),
    )
    .await;
    let res = svc.oneshot(chat("my secret plan")).await.unwrap();
    let facts = ResponseFacts::get(&res).unwrap().guards.clone();
    let (status, body) = read(res).await;
    assert_eq!(status, 446);
    assert_eq!(fake.hits(), 0, "the upstream was not called");
    assert_eq!(body["error"]["type"], "hooks_failed");
    assert_eq!(body["error"]["param"], Value::Null);
    assert_eq!(body["error"]["code"], Value::Null);
    let hook = &body["hook_results"]["before_request_hooks"][0];
    assert_eq!(body["hook_results"]["after_request_hooks"], json!([]));
    assert_eq!(hook["id"], "no-secrets");
    assert_eq!(hook["verdict"], false);
    assert_eq!(hook["deny"], true);
    assert_eq!(hook["type"], "guardrail");
    assert_eq!(hook["async"], false);
    assert_eq!(hook["transformed"], false);
    assert!(hook["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(hook["feedback"]["value"], -5);
    assert_eq!(
        hook["feedback"]["metadata"]["failedChecks"],
        "default.regexMatch"
    );
    let check = &hook["checks"][0];
    assert_eq!(check["id"], "default.regexMatch");
    assert_eq!(check["verdict"], false);
    assert_eq!(check["fail_on_error"], false);
    assert_eq!(check["data"]["matchDetails"]["matchedText"], "secret");
    assert_eq!(facts.len(), 1);
    assert!(!facts[0].passed && facts[0].deny);
    assert_eq!(
        facts[0].explanation.as_deref(),
        Some("failed checks: default.regexMatch")
    );
}

#[tokio::test]
async fn a_failing_guard_that_does_not_deny_answers_246_with_the_body() {
    let (fake, svc) =
        stack(json!({"input_guardrails": [{"regexMatch": {"rule": "secret", "not": true}}]})).await;
    let (status, body) = read(svc.oneshot(chat("my secret plan")).await.unwrap()).await;
    assert_eq!(status, 246);
    assert_eq!(fake.hits(), 1);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the fake upstream."
    );
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["verdict"],
        false
    );
}

#[tokio::test]
async fn passing_hooks_answer_200_with_their_results_and_no_hooks_touch_nothing() {
    let (_fake, svc) = stack(
        json!({"input_guardrails": [{"wordCount": {"minWords": 1, "maxWords": 50}}],
                                    "output_guardrails": [{"notNull": {}}]}),
    )
    .await;
    let res = svc.oneshot(chat("hello there")).await.unwrap();
    assert_eq!(ResponseFacts::get(&res).unwrap().guards.len(), 2);
    let (status, body) = read(res).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["verdict"],
        true
    );
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["verdict"],
        true
    );

    let (_fake, svc) = stack(json!({})).await;
    let (status, body) = read(svc.oneshot(chat("hello")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(body.get("hook_results").is_none());
}

#[tokio::test]
async fn a_denying_output_guard_answers_446_after_the_call() {
    let (fake, svc) = stack(json!({
        "input_guardrails": [{"notNull": {}}],
        "output_guardrails": [{"id": "short", "deny": true, "wordCount": {"maxWords": 3}}]
    }))
    .await;
    let (status, body) = read(svc.oneshot(chat("hi")).await.unwrap()).await;
    assert_eq!(status, 446);
    assert_eq!(fake.hits(), 1, "tokens were spent");
    assert_eq!(body["error"]["type"], "hooks_failed");
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["verdict"],
        true
    );
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["id"],
        "short"
    );
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["checks"][0]["data"]["wordCount"],
        5
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_without_after_hooks() {
    let (fake, svc) =
        stack(json!({"output_guardrails": [{"deny": true, "notNull": {"not": true}}]})).await;
    fake.set(Plan::ok().status(500));
    let (status, body) = read(svc.oneshot(chat("hi")).await.unwrap()).await;
    assert_eq!(status, 500);
    assert!(body.get("hook_results").is_none());
}

#[tokio::test]
async fn an_erroring_check_passes_unless_fail_on_error() {
    // The last message is empty: wordCount cannot count and errs.
    let (fake, svc) =
        stack(json!({"input_guardrails": [{"deny": true, "wordCount": {"minWords": 1}}]})).await;
    let (status, body) = read(svc.oneshot(chat("")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(fake.hits(), 1);
    let check = &body["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert_eq!(check["verdict"], false);
    assert_eq!(check["error"]["name"], "Check error");

    let (fake, svc) = stack(json!({"input_guardrails": [{"deny": true, "wordCount": {"minWords": 1, "failOnError": true}}]})).await;
    let (status, body) = read(svc.oneshot(chat("")).await.unwrap()).await;
    assert_eq!(status, 446);
    assert_eq!(fake.hits(), 0);
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["checks"][0]["fail_on_error"],
        true
    );
}

#[tokio::test]
async fn sequential_checks_see_the_previous_rewrite() {
    let checks = json!([
        {"id": "default.regexReplace", "parameters": {"rule": "/secret/g"}},
        {"id": "default.regexMatch", "parameters": {"rule": "secret", "not": true}}
    ]);
    // In parallel the match sees the original text and denies.
    let (fake, svc) =
        stack(json!({"before_request_hooks": [{"id": "p", "deny": true, "checks": checks}]})).await;
    assert_eq!(svc.oneshot(chat("a secret")).await.unwrap().status(), 446);
    assert_eq!(fake.hits(), 0);
    // In order it sees the redacted text; the upstream gets the rewrite.
    let (fake, svc) = stack(json!({"before_request_hooks": [{"id": "s", "deny": true, "sequential": true, "checks": checks}]})).await;
    let (status, body) = read(svc.oneshot(chat("a secret")).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["transformed"],
        true
    );
    assert_eq!(
        fake.last_request().unwrap().json()["messages"][0]["content"],
        "a [REDACTED]"
    );
}

#[tokio::test]
async fn pii_is_redacted_in_and_out_and_the_request_is_rewritten_once() {
    let (fake, svc) = stack(json!({
        "input_mutators": [{"portcullis.pii": {"redact": true}}],
        "output_mutators": [{"portcullis.pii": {"redact": true, "kinds": "email, phone"}}]
    }))
    .await;
    fake.set(Plan::ok().content("Reach Ann at ann@corp.com or +1 415 555 2671."));
    let req = support::chat_with(json!({"model": "gpt-4o-mini", "temperature": 0.2,
        "messages": [{"role": "system", "content": "card 4111 1111 1111 1111 stays"},
                     {"role": "user", "content": "I am bob@corp.com, SSN 123-45-6789, key sk-abcdefghijklmnopqrstuvwxyz123456"}]}));
    let (status, body) = read(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(status, 200);
    let sent = fake.last_request().unwrap();
    let json = sent.json();
    assert_eq!(
        json["messages"][1]["content"],
        "I am [EMAIL_1], SSN [SSN_1], key [API_KEY_1]"
    );
    // Only the last message is judged and rewritten; other fields are kept.
    assert_eq!(
        json["messages"][0]["content"],
        "card 4111 1111 1111 1111 stays"
    );
    assert_eq!(json["temperature"], 0.2);
    assert_eq!(
        sent.header("content-length").unwrap(),
        sent.body.len().to_string()
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Reach Ann at [EMAIL_1] or [PHONE_1]."
    );
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["transformed"],
        true
    );
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["type"],
        "mutator"
    );
}

#[tokio::test]
async fn paths_without_hooks_and_embeddings_skip_what_they_should() {
    let (fake, svc) = stack(json!({
        "input_guardrails": [{"deny": true, "contains": {"words": ["blocked"], "operator": "none"}}],
        "input_mutators": [{"addPrefix": {"prefix": "X"}}],
        "output_guardrails": [{"deny": true, "notNull": {"not": true}}]
    }))
    .await;
    // Embeddings: before guardrails run, mutators and after hooks do not.
    let req = http::Request::post("/v1/embeddings")
        .body(portcullis_core::BufferedBody::new(
            json!({"model": "e", "input": "blocked words"}).to_string(),
        ))
        .unwrap();
    assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 446);
    let req = http::Request::post("/v1/embeddings")
        .body(portcullis_core::BufferedBody::new(
            json!({"model": "e", "input": "fine"}).to_string(),
        ))
        .unwrap();
    let (status, body) = read(svc.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["hook_results"]["before_request_hooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(fake.last_request().unwrap().json()["input"], "fine");
    // Other paths pass through untouched.
    let req = http::Request::get("/v1/models")
        .body(portcullis_core::BufferedBody::empty())
        .unwrap();
    let (status, body) = read(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(body.get("hook_results").is_none());
}

#[tokio::test]
async fn a_refusal_leaves_the_inner_service_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<
        http::Request<portcullis_core::BufferedBody>,
        http::Response<portcullis_core::Body>,
    >();
    let hooks = Loader::new()
        .hooks(&json!({"input_guardrails": [{"deny": true, "regexMatch": {"rule": "no", "not": true}}]}))
        .unwrap();
    let mut svc = GuardLayer::new(hooks).layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    let refused = svc.call(chat("no")).await.unwrap();
    assert_eq!(refused.status(), 446);
    // The readiness granted before is still there for the next call.
    let call = svc.call(chat("yes"));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().path(), "/v1/chat/completions");
    send.send_response(http::Response::new(portcullis_core::Body::from("{}")));
    assert_eq!(call.await.unwrap().status(), 200);
}

/// A guard over an upstream that answers `answer` (a JSON answer as the upstream wrote it).
async fn answered_with(node: Value, answer: &'static str) -> (http::StatusCode, bytes::Bytes) {
    use http_body_util::BodyExt;
    let upstream = tower::service_fn(move |_req: http::Request<portcullis_core::BufferedBody>| {
        std::future::ready(Ok::<_, portcullis_core::BoxError>(
            http::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", answer.len())
                .body(portcullis_core::Body::from(answer))
                .unwrap(),
        ))
    });
    let hooks = Loader::new().hooks(&node).unwrap();
    let res = GuardLayer::new(hooks)
        .layer(upstream)
        .oneshot(chat("hello there"))
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(
        parts.headers["content-length"],
        bytes.len().to_string(),
        "the length is the new body's"
    );
    (parts.status, bytes)
}

#[tokio::test]
async fn an_answer_no_check_rewrote_keeps_the_upstreams_bytes_with_the_results_added() {
    const ANSWER: &str = "{\n  \"id\": \"c\",\n  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"Mail ann@corp.com\"}}]\n}\n";
    let (status, bytes) = answered_with(
        json!({"input_guardrails": [{"wordCount": {"minWords": 1, "maxWords": 5}}],
               "output_guardrails": [{"deny": true, "wordCount": {"minWords": 1, "maxWords": 5}}]}),
        ANSWER,
    )
    .await;
    assert_eq!(status, 200);
    let close = ANSWER.rfind('}').unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(&ANSWER[..close]), "{text}");
    assert!(text.ends_with("}\n"), "{text}");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let mut upstream: Value = serde_json::from_str(ANSWER).unwrap();
    upstream["hook_results"] = body["hook_results"].clone();
    assert_eq!(body, upstream, "the same answer, results added");
    assert_eq!(
        body["hook_results"]["before_request_hooks"][0]["verdict"],
        true
    );
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["verdict"],
        true
    );

    // An output mutator that redacts: the rewritten answer is written anew.
    let (status, bytes) = answered_with(
        json!({"output_mutators": [{"portcullis.pii": {"redact": true}}]}),
        ANSWER,
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Mail [EMAIL_1]");
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["transformed"],
        true
    );
    assert_eq!(
        bytes,
        serde_json::to_vec(&body).unwrap(),
        "compact, keys sorted"
    );
}

/// An output guard that fails (246) answers of more than three words, over `answer`.
async fn judged(answer: &'static str) -> (http::StatusCode, bytes::Bytes) {
    answered_with(
        json!({"output_guardrails": [{"wordCount": {"minWords": 1, "maxWords": 3}}]}),
        answer,
    )
    .await
}

#[tokio::test]
async fn answers_are_judged_on_their_text_however_they_are_written() {
    // Four words, escapes in the text: read in one pass; then the same answers with what
    // the one pass leaves to serde_json (an escaped key, a key given twice, an exponent).
    let four = [
        r#"{"choices":[{"message":{"content":"one\ttwo \u0074hree\nfour"}}]}"#,
        r#"{"\u0069d":"x","choices":[{"message":{"content":"one\ttwo \u0074hree\nfour"}}]}"#,
        r#"{"choices":[{"message":{"content":"1 2"}}],"choices":[{"message":{"content":"one two three four"}}]}"#,
        r#"{"n":1e2,"choices":[{"text":"one two three four"}]}"#,
        r#"{"content":[{"type":"text","text":"one two"},{"type":"image"},{"type":"t\u0065xt","text":"three four"}]}"#,
    ];
    for answer in four {
        let (status, bytes) = judged(answer).await;
        assert_eq!(status, 246, "{answer}");
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body["hook_results"]["after_request_hooks"][0]["checks"][0]["data"]["wordCount"], 4,
            "{answer}"
        );
    }
    let three = [
        r#"{"choices":[{"message":{"content":"one two three"}}]}"#,
        r#"{"choices":[{"message":{"content":"one two four","content":"one two three"}}]}"#,
        r#"{"\u0069d":"x","content":[{"type":"text","text":"one two three"}]}"#,
    ];
    for answer in three {
        let (status, bytes) = judged(answer).await;
        assert_eq!(status, 200, "{answer}");
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let check = &body["hook_results"]["after_request_hooks"][0]["checks"][0];
        assert_eq!(check["data"]["wordCount"], 3, "{answer}");
        // The answer kept its bytes, the results added at its end.
        let close = answer.rfind('}').unwrap();
        assert!(bytes.starts_with(&answer.as_bytes()[..close]), "{answer}");
    }
}

#[tokio::test]
async fn answers_that_are_not_json_objects_pass_untouched() {
    for answer in [
        "[1, 2]",
        "\"text\"",
        "not json",
        "{\"choices\":[{\"message\":{\"content\":\"broken",
        // A raw control character inside a string.
        "{\"choices\":[{\"message\":{\"content\":\"\u{0}\"}}]}",
        "{} {}",
    ] {
        let (status, bytes) = judged(answer).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(bytes, answer.as_bytes(), "{answer}");
    }
    // Bytes that are not UTF-8 at all.
    let upstream = tower::service_fn(|_req: http::Request<portcullis_core::BufferedBody>| {
        std::future::ready(Ok::<_, portcullis_core::BoxError>(
            http::Response::builder()
                .header("content-type", "application/json")
                .body(portcullis_core::Body::from(bytes::Bytes::from_static(
                    b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"}}]}",
                )))
                .unwrap(),
        ))
    });
    let hooks = Loader::new()
        .hooks(&json!({"output_guardrails": [{"wordCount": {"maxWords": 3}}]}))
        .unwrap();
    let res = GuardLayer::new(hooks)
        .layer(upstream)
        .oneshot(chat("hi"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"}}]}"
    );
}

#[tokio::test]
async fn an_answer_with_its_own_results_gets_the_hooks_results_instead() {
    let answer = r#"{"hook_results":{"from":"upstream"},"choices":[{"message":{"content":"one two"}}], "id" : "c"}"#;
    let (status, bytes) = judged(answer).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body["hook_results"]["after_request_hooks"][0]["checks"][0]["data"]["wordCount"],
        2
    );
    assert!(body["hook_results"].get("from").is_none());
    assert_eq!(bytes, serde_json::to_vec(&body).unwrap(), "written anew");
}

#[tokio::test]
async fn an_outer_input_guard_and_an_inner_output_guard_report_both_lists() {
    const ANSWER: &str =
        r#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"}}]}"#;
    let upstream = tower::service_fn(|_req: http::Request<portcullis_core::BufferedBody>| {
        std::future::ready(Ok::<_, portcullis_core::BoxError>(
            http::Response::builder()
                .header("content-type", "application/json")
                .body(portcullis_core::Body::from(ANSWER))
                .unwrap(),
        ))
    });
    let input = Loader::new()
        .hooks(&json!({"input_guardrails": [{"id": "in", "wordCount": {"maxWords": 1}}]}))
        .unwrap();
    let output = Loader::new()
        .hooks(&json!({"output_guardrails": [{"id": "out", "wordCount": {"maxWords": 5}}]}))
        .unwrap();
    let svc = GuardLayer::new(input).layer(GuardLayer::new(output).layer(upstream));
    let res = svc.oneshot(chat("two words")).await.unwrap();
    let facts = res.extensions().get::<ResponseFacts>().cloned().unwrap();
    let (status, body) = read(res).await;
    // The input guard failed without denying: 246, both lists written once, by the inner layer.
    assert_eq!(status, 246);
    let results = &body["hook_results"];
    assert_eq!(results["before_request_hooks"][0]["id"], "in");
    assert_eq!(results["before_request_hooks"][0]["verdict"], false);
    assert_eq!(results["after_request_hooks"][0]["id"], "out");
    assert_eq!(results["after_request_hooks"][0]["verdict"], true);
    assert_eq!(body["choices"][0]["message"]["content"], "Hi there");
    let ids: Vec<&str> = facts.guards.iter().map(|g| &*g.id).collect();
    assert!(ids.contains(&"in") && ids.contains(&"out"), "{ids:?}");
}
