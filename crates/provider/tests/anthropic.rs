//! The Anthropic provider against the fake Anthropic upstream over loopback HTTP.

mod support;

use std::time::Duration;
use support::{
    assert_error_answer, assert_golden_answer, assert_unreadable, assert_usage_adds_up, events,
    golden_cases, json_body, observation, parse, read, recorded_answer, report, send_to,
    stream_text,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::Outcome;
use portcullis_core::{Body, BufferedBody};
use portcullis_provider::anthropic::{Anthropic, AnthropicBuilder};
use portcullis_provider::{Endpoint, HttpClient};
use portcullis_testkit::anthropic::{Block, FakeAnthropic, Plan};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

const MODEL: &str = "claude-sonnet-4-5";

fn builder(upstream: &FakeAnthropic) -> AnthropicBuilder {
    Anthropic::builder()
        .base_url(upstream.url())
        .api_key("sk-ant-upstream-secret")
}

fn provider(upstream: &FakeAnthropic) -> Anthropic {
    builder(upstream).build().unwrap()
}

fn client_request(path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-gateway-key")
        .header("x-api-key", "client-key")
        .header("x-portkey-api-key", "pk-secret")
        .header("anthropic-beta", "client-chosen-beta")
        .header("cookie", "session=1")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn send(provider: Anthropic, body: &Value) -> Response<Body> {
    send_to(provider, client_request("/v1/chat/completions", body)).await
}

#[tokio::test]
async fn non_stream_chat_is_translated_both_ways() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().text("Hello there.").usage(20, 4));
    let r = send(
        provider(&upstream),
        &chat(json!({"temperature": 0.3, "max_tokens": 64})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-portkey-provider"], "anthropic");
    assert_eq!(
        ResponseFacts::get(&r).unwrap().provider.as_deref(),
        Some("anthropic")
    );
    let o = observation(&r);
    let v = json_body(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "msg_fake01");
    assert_eq!(v["model"], MODEL);
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 20);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_usage_adds_up(&v["usage"]);

    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.text, "Hello there.");
    assert_eq!(rep.finish_reason.as_deref(), Some("stop"));
    assert_eq!(rep.usage.unwrap().total_tokens, 24);

    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.json(),
        json!({"model": MODEL, "max_tokens": 64, "temperature": 0.3,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]})
    );
}

#[tokio::test]
async fn only_the_providers_headers_are_sent() {
    let upstream = FakeAnthropic::start().await;
    send(provider(&upstream), &chat(json!({}))).await;
    let sent = upstream.last_request().unwrap();
    let host = upstream.addr().to_string();
    assert_eq!(sent.header("host"), Some(host.as_str()));
    assert_eq!(sent.headers.get_all("host").iter().count(), 1);
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-upstream-secret"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("accept"), Some("application/json"));
    for never in [
        "authorization",
        "anthropic-beta",
        "x-portkey-api-key",
        "cookie",
    ] {
        assert!(sent.header(never).is_none(), "{never} was forwarded");
    }

    // Configured version, beta and headers; the body's beta features are added.
    let p = builder(&upstream)
        .version("2024-01-01")
        .beta("prompt-caching-2024-07-31")
        .header("x-team", "search")
        .build()
        .unwrap();
    let body = chat(json!({"anthropic_beta": ["output-128k-2025-02-19"],
        "anthropic_version": "2023-06-01", "stream": true}));
    send(p, &body).await;
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31,output-128k-2025-02-19")
    );
    assert_eq!(sent.header("x-team"), Some("search"));
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-upstream-secret"));
    let sent = sent.json();
    assert!(sent.get("anthropic_beta").is_none() && sent.get("anthropic_version").is_none());
}

#[tokio::test]
async fn stream_is_translated_event_by_event_and_usage_hidden_unless_asked() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(
        Plan::ok()
            .text("Hello from the stream.")
            .usage(9, 5)
            .cache(100, 10),
    );
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().get("content-length").is_none());
    let o = observation(&r);
    let ev = events(&stream_text(r).await);
    assert_eq!(
        ev[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(
        ev.iter()
            .take(ev.len() - 1)
            .all(|e| e["object"] == "chat.completion.chunk" && e["id"] == "msg_fake01")
    );
    let text: String = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from the stream.");
    assert_eq!(ev[ev.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[ev.len() - 1], "[DONE]");
    assert!(
        ev.iter().all(|e| e.get("usage").is_none()),
        "usage was not asked for"
    );
    // Sent upstream with `stream: true`, and no OpenAI `stream_options`.
    let sent = upstream.last_request().unwrap().json();
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none());

    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.text, "Hello from the stream.");
    assert_eq!(rep.finish_reason.as_deref(), Some("stop"));
    let usage = rep
        .usage
        .expect("usage reported although the client did not ask");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (119, 5, 124)
    );
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().usage(9, 5).cache(100, 10));
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let r = send(provider(&upstream), &body).await;
    let ev = events(&stream_text(r).await);
    let usage_chunk = &ev[ev.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 119, "completion_tokens": 5, "total_tokens": 124,
            "prompt_tokens_details": {"cached_tokens": 100},
            "cache_read_input_tokens": 100, "cache_creation_input_tokens": 10})
    );
    assert_eq!(ev[ev.len() - 3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[ev.len() - 1], "[DONE]");
}

#[tokio::test]
async fn cached_tokens_count_in_the_prompt_and_the_total_adds_up() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().usage(7, 3).cache(1000, 200));
    let r = send(provider(&upstream), &chat(json!({}))).await;
    let o = observation(&r);
    let v = json_body(r).await;
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1207, "completion_tokens": 3, "total_tokens": 1210,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200})
    );
    assert_eq!(report(&o).usage.unwrap().prompt_tokens, 1207);
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[tokio::test]
async fn tool_calls_single_and_parallel() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().blocks(vec![Block::ToolUse {
        id: "toolu_1".into(),
        name: "get_weather".into(),
        input: json!({"city": "Paris"}),
    }]));
    let body = chat(json!({"tools": weather_tool()}));
    let v = json_body(send(provider(&upstream), &body).await).await;
    let message = &v["choices"][0]["message"];
    assert!(message["content"].is_null());
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "toolu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        upstream.last_request().unwrap().json()["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    upstream.set(
        Plan::ok()
            .text("Both:")
            .tool_use("toolu_a", "get_weather", json!({"city": "Paris"}))
            .tool_use("toolu_b", "get_weather", json!({"city": "Oslo"})),
    );
    let v = json_body(send(provider(&upstream), &body).await).await;
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], "Both:");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["id"], "toolu_b");
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Oslo\"}");
}

#[tokio::test]
async fn streamed_tool_calls_keep_an_index_per_call_and_arguments_reassemble() {
    let upstream = FakeAnthropic::start().await;
    let inputs = [
        json!({"city": "Paris", "unit": "celsius", "days": 3}),
        json!({"city": "Oslo"}),
        json!({}),
    ];
    upstream.set(
        Plan::ok()
            .text("Checking.")
            .tool_use("toolu_a", "get_weather", inputs[0].clone())
            .tool_use("toolu_b", "get_weather", inputs[1].clone())
            .tool_use("toolu_c", "now", inputs[2].clone()),
    );
    let body = chat(json!({"stream": true, "tools": weather_tool()}));
    let r = send(provider(&upstream), &body).await;
    let o = observation(&r);
    let ev = events(&stream_text(r).await);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for e in &ev {
        for call in e["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let k = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                assert_eq!(k, calls.len(), "a new call takes the next index");
                assert_eq!(call["function"]["arguments"], "", "never a first `{{}}`");
                let name = call["function"]["name"].as_str().unwrap().to_owned();
                calls.push((id.to_owned(), name, String::new()));
            } else {
                calls[k]
                    .2
                    .push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
    }
    assert_eq!(calls.len(), 3);
    for ((id, _, arguments), (want_id, input)) in calls.iter().zip([
        ("toolu_a", &inputs[0]),
        ("toolu_b", &inputs[1]),
        ("toolu_c", &inputs[2]),
    ]) {
        assert_eq!(id, want_id);
        assert_eq!(&serde_json::from_str::<Value>(arguments).unwrap(), input);
    }
    assert!(
        ev.iter()
            .filter(|e| e["choices"][0]["delta"]["tool_calls"].is_array())
            .count()
            > 6,
        "arguments arrive in pieces"
    );
    assert_eq!(
        ev[ev.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(report(&o).finish_reason.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn images_go_as_base64_and_url_sources() {
    let upstream = FakeAnthropic::start().await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]}]});
    let r = send(provider(&upstream), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().json()["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}},
        ])
    );
}

#[tokio::test]
async fn every_stop_reason_has_its_finish_reason_in_json_and_in_streams() {
    let upstream = FakeAnthropic::start().await;
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("some_future_reason", "stop"),
    ] {
        upstream.set(Plan::ok().stop_reason(stop));
        let v = json_body(send(provider(&upstream), &chat(json!({}))).await).await;
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{stop}");

        let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
        let o = observation(&r);
        let ev = events(&stream_text(r).await);
        let finishes: Vec<&Value> = ev
            .iter()
            .filter_map(|e| e["choices"][0].get("finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [finish], "{stop}: one finish chunk");
        assert_eq!(report(&o).finish_reason.as_deref(), Some(finish));
    }
}

#[tokio::test]
async fn anthropic_errors_keep_their_status_and_take_openais_shape() {
    let upstream = FakeAnthropic::start().await;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        upstream.set(Plan::ok().error(status, kind, "it went wrong"));
        for stream in [false, true] {
            let r = send(provider(&upstream), &chat(json!({"stream": stream}))).await;
            let want = json!({"error": {"message": "anthropic error: it went wrong", "type": kind,
                "param": null, "code": null}, "provider": "anthropic"});
            assert_error_answer(r, status, &want).await;
        }
    }
}

#[tokio::test]
async fn an_unreadable_answer_is_a_502() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().replay(200, "<html>oops</html>"));
    let r = send(provider(&upstream), &chat(json!({}))).await;
    assert_unreadable(r, "unreadable Anthropic answer").await;
}

#[tokio::test]
async fn stream_broken_midway_reaches_the_client_as_an_error_event() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().text("one two three four").break_after(2));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let got = stream_text(r).await;
    let ev = events(&got);
    let last = ev.last().unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{got}");
    assert!(!got.contains("[DONE]"));
    let rep = report(&o);
    assert!(matches!(rep.outcome, Outcome::Failed(_)));
    assert_eq!(rep.text, "one two ", "the two pieces that arrived");
}

#[tokio::test]
async fn stream_ending_before_message_stop_is_an_error() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().end_after(1));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    assert!(got.contains("stream_interrupted"), "{got}");
    assert!(got.contains("message_stop"), "{got}");
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test]
async fn an_error_event_mid_stream_becomes_an_openai_error_event() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().error_event_after(2, "overloaded_error", "Overloaded"));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    let ev = events(&got);
    assert_eq!(
        ev.last().unwrap(),
        &json!({"error": {"message": "anthropic error: Overloaded", "type": "overloaded_error",
            "param": null, "code": null}, "provider": "anthropic"})
    );
    assert!(!got.contains("[DONE]"));
    assert_eq!(
        got.matches("\"error\"").count(),
        1,
        "one error event: {got}"
    );
    let rep = report(&o);
    assert_eq!(
        rep.outcome,
        Outcome::Failed("anthropic error: Overloaded".into())
    );
}

#[tokio::test]
async fn untranslatable_requests_are_refused_without_calling_anthropic() {
    let upstream = FakeAnthropic::start().await;
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"temperature": 1.7}), "temperature"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"seed": 1}), "seed"),
        (json!({"presence_penalty": 0.4}), "presence_penalty"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "call_7",
                "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (extra, param) in cases {
        let r = send(provider(&upstream), &chat(extra)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{param}");
        let v = json_body(r).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], param);
    }
    assert_eq!(upstream.hits(), 0);

    // With `drop_unsupported`, what cannot be honoured is left out instead.
    let p = builder(&upstream).drop_unsupported(true).build().unwrap();
    let r = send(p, &chat(json!({"n": 2, "seed": 1, "logprobs": true}))).await;
    assert_eq!(r.status(), 200);
    let sent = upstream.last_request().unwrap().json();
    assert!(sent.get("n").is_none() && sent.get("seed").is_none());
}

#[tokio::test]
async fn only_chat_completions_are_served() {
    let upstream = FakeAnthropic::start().await;
    let body = chat(json!({}));
    for path in ["/v1/embeddings", "/v1/completions"] {
        let r = send_to(provider(&upstream), client_request(path, &body)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let v = json_body(r).await;
        assert_eq!(v["error"]["code"], "unsupported_endpoint");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("chat completions only")
        );
    }
    let models = Request::get("/v1/models").body(Full::default()).unwrap();
    assert_eq!(
        send_to(provider(&upstream), models).await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = send_to(provider(&upstream), client_request("/v1/messages", &body)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let get = Request::get("/v1/chat/completions")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send_to(provider(&upstream), get).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(upstream.hits(), 0);

    // Pinned to chat, any path is a chat completion.
    let pinned = builder(&upstream).endpoint(Endpoint::Chat).build().unwrap();
    let r = send_to(pinned, client_request("/chat", &body)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/messages");
}

#[tokio::test(start_paused = true)]
async fn slow_anthropic_is_504() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().delay(Duration::from_secs(60)));
    let p = builder(&upstream)
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let v = json_body(r).await;
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(v["error"]["message"].as_str().unwrap().contains("5000 ms"));
}

#[tokio::test(start_paused = true)]
async fn without_a_response_timeout_a_slow_anthropic_is_waited_for() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().delay(Duration::from_secs(700)));
    let p = builder(&upstream).no_response_timeout().build().unwrap();
    let started = tokio::time::Instant::now();
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(700));
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_ends_with_an_error_event() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().chunk_delay(Duration::from_secs(30)));
    let p = builder(&upstream)
        .idle_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let r = send(p, &chat(json!({"stream": true}))).await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let got = stream_text(r).await;
    assert!(got.contains("\"code\":\"stream_interrupted\""), "{got}");
    assert!(got.contains("10000 ms"), "{got}");
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test(start_paused = true)]
async fn slow_but_steady_stream_is_not_cut() {
    let upstream = FakeAnthropic::start().await;
    upstream.set(Plan::ok().chunk_delay(Duration::from_secs(5)));
    let p = builder(&upstream)
        .idle_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let r = send(p, &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    assert!(stream_text(r).await.ends_with("data: [DONE]\n\n"));
    assert_eq!(report(&o).outcome, Outcome::Complete);
}

#[tokio::test]
async fn provider_is_always_ready_and_each_clone_works() {
    let upstream = FakeAnthropic::start().await;
    let mut p = provider(&upstream);
    let bytes = serde_json::to_vec(&chat(json!({}))).unwrap();
    // Without the edge: no view in the extensions, the provider parses the body itself.
    let req = || {
        Request::post("/v1/chat/completions")
            .body(BufferedBody::new(bytes.clone()))
            .unwrap()
    };
    let ready = p.ready().await.unwrap();
    assert_eq!(ready.call(req()).await.unwrap().status(), 200);
    let mut clone = p.clone();
    let r = clone.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(r.status(), 200);
    let bad = Request::post("/v1/chat/completions")
        .body(BufferedBody::new("not json"))
        .unwrap();
    let r = p.ready().await.unwrap().call(bad).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn providers_share_a_pooled_client() {
    let upstream = FakeAnthropic::start().await;
    let client = HttpClient::new();
    for name in ["claude-a", "claude-b"] {
        let p = builder(&upstream)
            .client(client.clone())
            .name(name)
            .build()
            .unwrap();
        let r = send(p, &chat(json!({}))).await;
        assert_eq!(r.headers()["x-portkey-provider"], name);
    }
}

#[test]
fn bad_configs_are_build_errors() {
    let err = |b: AnthropicBuilder| b.build().unwrap_err().to_string();
    assert!(err(Anthropic::builder().base_url("not a url at all")).contains("not a URL"));
    assert!(err(Anthropic::builder().base_url("ftp://x")).starts_with("base_url:"));
    assert!(err(Anthropic::builder().base_url("http://x?a=b")).contains("query"));
    for reserved in ["authorization", "x-api-key", "anthropic-version"] {
        assert!(
            err(Anthropic::builder().header(reserved, "x")).contains("cannot be configured"),
            "{reserved}"
        );
    }
    assert!(err(Anthropic::builder().api_key("a\nb")).starts_with("api_key"));
    assert!(err(Anthropic::builder().max_tokens(0)).starts_with("max_tokens"));
    let debug = format!("{:?}", Anthropic::builder().api_key("sk-ant-very-secret"));
    assert!(!debug.contains("sk-ant-very-secret"), "{debug}");
    let p = Anthropic::builder()
        .base_url("http://127.0.0.1:9/proxy/")
        .build()
        .unwrap();
    assert_eq!(
        p.url("claude-x", false),
        "http://127.0.0.1:9/proxy/v1/messages"
    );
    assert_eq!(p.name(), "anthropic");
}

// Golden tests: recorded request/response pairs in tests/golden/anthropic/<case>/:
// `request.json` (what the client sends), `upstream_request.json` (what must reach
// Anthropic), `upstream_response.{json,sse}` (Anthropic's recorded answer, in its documented
// format; `upstream_status` when not 200) and `response.{json,sse}` (what the client must
// get, `created` written as 0).

#[tokio::test]
async fn golden_pairs() {
    for dir in golden_cases("anthropic", 9) {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let upstream = FakeAnthropic::start().await;
        let (status, answer, sse) = recorded_answer(&dir);
        upstream.set(Plan::ok().replay(status, answer));
        let request = parse(&read(&dir, "request.json").unwrap(), &case);
        let r = send(provider(&upstream), &request).await;
        assert_eq!(r.status().as_u16(), status, "{case}");

        let sent = upstream.last_request().unwrap().json();
        let want = parse(&read(&dir, "upstream_request.json").unwrap(), &case);
        assert_eq!(sent, want, "{case}: the request sent to Anthropic");

        assert_golden_answer(&dir, &case, r, sse).await;
    }
}
