//! The Gemini provider (Google AI Studio and Vertex AI) against the fake Gemini upstream over
//! loopback HTTP.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{
    assert_error_answer, assert_golden_answer, assert_unreadable, assert_usage_adds_up, events,
    golden_cases, json_body, observation, parse, read, recorded_answer, report, send_to,
    stream_text, text, without_created,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use portcullis_core::context::ClientKey;
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::Outcome;
use portcullis_core::{Body, BufferedBody};
use portcullis_provider::gemini::{Gemini, GeminiBuilder, ServiceAccount};
use portcullis_provider::{Endpoint, HttpClient};
use portcullis_testkit::gemini::{FakeGemini, Plan};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

const MODEL: &str = "gemini-2.5-flash";
const KEY: &str = "AIza-upstream-secret";

fn builder(upstream: &FakeGemini) -> GeminiBuilder {
    Gemini::builder().base_url(upstream.url()).api_key(KEY)
}

fn provider(upstream: &FakeGemini) -> Gemini {
    builder(upstream).build().unwrap()
}

fn client_request(path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-gateway-key")
        .header("x-goog-api-key", "client-key")
        .header("x-portkey-api-key", "pk-secret")
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

async fn send(provider: Gemini, body: &Value) -> Response<Body> {
    send_to(provider, client_request("/v1/chat/completions", body)).await
}

#[tokio::test]
async fn non_stream_chat_is_translated_both_ways() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().text("Hello there.").usage(20, 4));
    let r = send(
        provider(&upstream),
        &chat(json!({"temperature": 0.3, "max_tokens": 64,
            "messages": [{"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Say hello"}]})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-portkey-provider"], "google");
    assert_eq!(
        ResponseFacts::get(&r).unwrap().provider.as_deref(),
        Some("google")
    );
    let o = observation(&r);
    let v = json_body(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "fake-response-1");
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
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        sent.json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be kind."}]},
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 64}})
    );
}

#[tokio::test]
async fn the_key_goes_in_a_header_never_in_the_url_and_client_headers_stay_behind() {
    let upstream = FakeGemini::start().await;
    for stream in [false, true] {
        send(provider(&upstream), &chat(json!({"stream": stream}))).await;
        let sent = upstream.last_request().unwrap();
        assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
        let host = upstream.addr().to_string();
        assert_eq!(sent.header("host"), Some(host.as_str()));
        assert_eq!(sent.headers.get_all("host").iter().count(), 1);
        assert!(
            !sent.path.contains(KEY) && !sent.path.contains("key="),
            "{}",
            sent.path
        );
        assert_eq!(sent.header("content-type"), Some("application/json"));
        for never in ["authorization", "x-portkey-api-key", "cookie"] {
            assert!(sent.header(never).is_none(), "{never} was forwarded");
        }
    }
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(sent.header("accept"), Some("text/event-stream"));

    let p = builder(&upstream)
        .header("x-team", "search")
        .build()
        .unwrap();
    send(p, &chat(json!({}))).await;
    assert_eq!(
        upstream.last_request().unwrap().header("x-team"),
        Some("search")
    );
}

#[tokio::test]
async fn byok_sends_the_clients_key_and_refuses_without_one() {
    let upstream = FakeGemini::start().await;
    let p = Gemini::builder()
        .base_url(upstream.url())
        .client_keys(true)
        .build()
        .unwrap();
    let mut req = client_request("/v1/chat/completions", &chat(json!({})));
    req.extensions_mut()
        .insert(ClientKey::new("AIza-client-own"));
    let r = send_to(p.clone(), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().header("x-goog-api-key"),
        Some("AIza-client-own")
    );
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(r).await["error"]["code"], "missing_provider_key");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn stream_is_translated_chunk_by_chunk_and_usage_hidden_unless_asked() {
    let upstream = FakeGemini::start().await;
    upstream.set(
        Plan::ok()
            .text("Hello from the stream.")
            .usage(9, 5)
            .thoughts(7)
            .cached(3),
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
            .all(|e| e["object"] == "chat.completion.chunk" && e["id"] == "fake-response-1")
    );
    let pieces: Vec<&str> = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(pieces.len(), 4, "a chunk per word, as it came");
    assert_eq!(pieces.concat(), "Hello from the stream.");
    assert_eq!(ev[ev.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[ev.len() - 1], "[DONE]");
    assert!(
        ev.iter().all(|e| e.get("usage").is_none()),
        "usage was not asked for"
    );

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
        (9, 12, 21)
    );

    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let r = send(provider(&upstream), &body).await;
    let ev = events(&stream_text(r).await);
    let usage_chunk = &ev[ev.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 7}})
    );
    assert_eq!(ev[ev.len() - 3]["choices"][0]["finish_reason"], "stop");
    // Sent upstream without OpenAI's stream fields.
    let sent = upstream.last_request().unwrap().json();
    assert!(sent.get("stream").is_none() && sent.get("stream_options").is_none());
}

#[tokio::test]
async fn thinking_and_cached_tokens_count_and_the_total_adds_up() {
    let upstream = FakeGemini::start().await;
    upstream.set(
        Plan::ok()
            .thoughts(120)
            .cached(1000)
            .usage(1200, 30)
            .parts(vec![
                portcullis_testkit::gemini::Part::Thought("Let me think.".into()),
                portcullis_testkit::gemini::Part::Text("Done.".into()),
            ]),
    );
    let r = send(
        provider(&upstream),
        &chat(json!({"reasoning_effort": "medium"})),
    )
    .await;
    let o = observation(&r);
    let v = json_body(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Done.");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Let me think."
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1200, "completion_tokens": 150, "total_tokens": 1350,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 120}})
    );
    assert_eq!(report(&o).usage.unwrap().completion_tokens, 150);
    assert_eq!(
        upstream.last_request().unwrap().json()["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );

    // Streamed, thoughts arrive as reasoning deltas.
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let ev = events(&stream_text(r).await);
    let reasoning: String = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "Let me think.");
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "additionalProperties": false,
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn tool_calls_single_and_parallel_and_the_signature_comes_back() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().call_signed("get_weather", json!({"city": "Paris"}), "c2lnLTE="));
    let body = chat(json!({"tools": weather_tool(), "tool_choice": "auto"}));
    let v = json_body(send(provider(&upstream), &body).await).await;
    let message = &v["choices"][0]["message"];
    assert!(message["content"].is_null());
    let call = &message["tool_calls"][0];
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.ends_with("__thought__c2lnLTE="), "{id}");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = upstream.last_request().unwrap().json();
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    // The next turn: the call goes back with its signature, the result with its name.
    let next = chat(json!({"tools": weather_tool(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
        {"role": "tool", "tool_call_id": id, "content": "18C and sunny"}]}));
    let r = send(provider(&upstream), &next).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().json()["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                "response": {"content": "18C and sunny"}}}]},
        ])
    );

    upstream.set(
        Plan::ok()
            .text("Both:")
            .call("get_weather", json!({"city": "Paris"}))
            .call("get_weather", json!({"city": "Oslo"})),
    );
    let v = json_body(send(provider(&upstream), &body).await).await;
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], "Both:");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn streamed_tool_calls_keep_an_index_per_call() {
    let upstream = FakeGemini::start().await;
    let inputs = [
        json!({"city": "Paris", "unit": "celsius", "days": 3}),
        json!({"city": "Oslo"}),
        json!({}),
    ];
    upstream.set(
        Plan::ok()
            .text("Checking.")
            .call("get_weather", inputs[0].clone())
            .call_signed("get_weather", inputs[1].clone(), "sig2")
            .call("now", inputs[2].clone()),
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
                let name = call["function"]["name"].as_str().unwrap().to_owned();
                calls.push((id.to_owned(), name, String::new()));
            }
            calls[k]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(calls.len(), 3);
    for ((_, _, arguments), input) in calls.iter().zip(&inputs) {
        assert_eq!(&serde_json::from_str::<Value>(arguments).unwrap(), input);
    }
    assert!(calls[1].0.ends_with("__thought__sig2"));
    assert_eq!(calls[2].1, "now");
    assert_eq!(
        ev[ev.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(report(&o).finish_reason.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn images_go_inline_or_by_uri() {
    let upstream = FakeGemini::start().await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]}]});
    let r = send(provider(&upstream), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().json()["contents"][0]["parts"],
        json!([
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.org/a.png"}},
        ])
    );
    // A URL whose type cannot be told is refused before Gemini sees it.
    let hits = upstream.hits();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.org/picture"}}]}]});
    let r = send(provider(&upstream), &body).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_body(r).await["error"]["param"],
        "messages[0].content[0].image_url.url"
    );
    assert_eq!(upstream.hits(), hits);
}

#[tokio::test]
async fn every_finish_reason_has_its_finish_reason_in_json_and_in_streams() {
    let upstream = FakeGemini::start().await;
    for (reason, finish) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("SOME_FUTURE_REASON", "stop"),
    ] {
        upstream.set(Plan::ok().finish_reason(reason));
        let v = json_body(send(provider(&upstream), &chat(json!({}))).await).await;
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{reason}");

        let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
        let o = observation(&r);
        let ev = events(&stream_text(r).await);
        let finishes: Vec<&Value> = ev
            .iter()
            .filter_map(|e| e["choices"][0].get("finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [finish], "{reason}: one finish chunk");
        assert_eq!(report(&o).finish_reason.as_deref(), Some(finish));
    }
    // STOP with a function call is a tool call.
    upstream.set(Plan::ok().call("f", json!({})).finish_reason("STOP"));
    let v = json_body(send(provider(&upstream), &chat(json!({}))).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_answer_not_an_error() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().blocked("SAFETY").usage(14, 0));
    let r = send(provider(&upstream), &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let v = json_body(r).await;
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert!(
        v["choices"][0]["message"]["refusal"]
            .as_str()
            .unwrap()
            .contains("SAFETY")
    );
    assert_eq!(v["usage"]["prompt_tokens"], 14);
    assert_eq!(report(&o).outcome, Outcome::Complete);

    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    let ev = events(&got);
    assert_eq!(ev[1]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert_eq!(report(&o).outcome, Outcome::Complete);
}

#[tokio::test]
async fn google_errors_keep_their_status_and_take_openais_shape() {
    let upstream = FakeGemini::start().await;
    for (status, name) in [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ] {
        upstream.set(Plan::ok().error(status, "it went wrong"));
        for stream in [false, true] {
            let r = send(provider(&upstream), &chat(json!({"stream": stream}))).await;
            let want = json!({"error": {"message": "google error: it went wrong", "type": name,
                "param": null, "code": name}, "provider": "google"});
            assert_error_answer(r, status, &want).await;
        }
    }
}

#[tokio::test]
async fn an_unreadable_answer_is_a_502() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().replay(200, "<html>oops</html>"));
    let r = send(provider(&upstream), &chat(json!({}))).await;
    assert_unreadable(r, "unreadable Gemini answer").await;
}

#[tokio::test]
async fn stream_broken_midway_reaches_the_client_as_an_error_event() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().text("one two three four").break_after(2));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let got = stream_text(r).await;
    let ev = events(&got);
    assert_eq!(
        ev.last().unwrap()["error"]["code"],
        "stream_interrupted",
        "{got}"
    );
    assert!(!got.contains("[DONE]"));
    let rep = report(&o);
    assert!(matches!(rep.outcome, Outcome::Failed(_)));
    assert_eq!(rep.text, "one two ", "the two chunks that arrived");
}

#[tokio::test]
async fn an_error_chunk_mid_stream_becomes_an_openai_error_event() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().error_chunk_after(2, 503, "The model is overloaded."));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    let ev = events(&got);
    assert_eq!(
        ev.last().unwrap(),
        &json!({"error": {"message": "google error: The model is overloaded.",
            "type": "UNAVAILABLE", "param": null, "code": "UNAVAILABLE"}, "provider": "google"})
    );
    assert!(!got.contains("[DONE]"));
    assert_eq!(
        got.matches("\"error\"").count(),
        1,
        "one error event: {got}"
    );
    assert_eq!(
        report(&o).outcome,
        Outcome::Failed("google error: The model is overloaded.".into())
    );
}

#[tokio::test]
async fn a_stream_ending_before_a_finish_reason_is_an_error() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().end_after(1));
    let r = send(provider(&upstream), &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    assert!(got.contains("before a finish reason"), "{got}");
    assert!(!got.contains("[DONE]"));
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test]
async fn embeddings_one_input_or_a_batch() {
    let upstream = FakeGemini::start().await;
    let p = provider(&upstream);
    let one = json!({"model": "text-embedding-004", "input": "hello", "dimensions": 2});
    let r = send_to(p.clone(), client_request("/v1/embeddings", &one)).await;
    assert_eq!(r.status(), 200);
    let v = json_body(r).await;
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0,
            "embedding": [0.25, 0.375]}], "model": "text-embedding-004",
            "usage": {"prompt_tokens": 0, "total_tokens": 0}})
    );
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/models/text-embedding-004:embedContent");
    assert_eq!(
        sent.json(),
        json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 2})
    );

    let many = json!({"model": "text-embedding-004", "input": ["a", "b", "c"]});
    let v = json_body(send_to(p.clone(), client_request("/v1/embeddings", &many)).await).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][2]["index"], 2);
    assert_eq!(v["data"][2]["embedding"][0], 0.75);
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        sent.json()["requests"][2],
        json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "c"}]}})
    );

    // OpenAI's SDKs ask for base64 by default.
    let b64 = json!({"model": "text-embedding-004", "input": "x", "encoding_format": "base64"});
    let v = json_body(send_to(p, client_request("/v1/embeddings", &b64)).await).await;
    assert!(v["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn untranslatable_requests_are_refused_without_calling_gemini() {
    let upstream = FakeGemini::start().await;
    let cases = [
        (json!({"logprobs": true}), "logprobs"),
        (json!({"logit_bias": {"1": 3}}), "logit_bias"),
        (json!({"parallel_tool_calls": false}), "parallel_tool_calls"),
        (json!({"model": "gemini/../../v1/files"}), "model"),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "call_7",
                "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "tool", "tool_call_id": "unknown", "content": "x"}]}),
            "messages[0].tool_call_id",
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

    let p = builder(&upstream).drop_unsupported(true).build().unwrap();
    let r = send(
        p,
        &chat(json!({"logprobs": true, "parallel_tool_calls": false})),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn only_chat_and_embeddings_are_served() {
    let upstream = FakeGemini::start().await;
    let body = chat(json!({}));
    let r = send_to(
        provider(&upstream),
        client_request("/v1/completions", &body),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["error"]["code"], "unsupported_endpoint");
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
    let pinned = builder(&upstream).endpoint(Endpoint::Chat).build().unwrap();
    let r = send_to(pinned, client_request("/chat", &body)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn slow_gemini_is_504_and_a_stalled_stream_an_error_event() {
    let upstream = FakeGemini::start().await;
    upstream.set(Plan::ok().delay(Duration::from_secs(60)));
    let p = builder(&upstream)
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);

    upstream.set(Plan::ok().chunk_delay(Duration::from_secs(30)));
    let p = builder(&upstream)
        .idle_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let r = send(p, &chat(json!({"stream": true}))).await;
    let o = observation(&r);
    let got = stream_text(r).await;
    assert!(got.contains("\"code\":\"stream_interrupted\""), "{got}");
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test]
async fn provider_is_always_ready_and_each_clone_works() {
    let upstream = FakeGemini::start().await;
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

#[test]
fn bad_configs_are_build_errors() {
    let err = |b: GeminiBuilder| b.build().unwrap_err().to_string();
    assert!(err(Gemini::builder().base_url("not a url at all")).contains("not a URL"));
    assert!(err(Gemini::builder().base_url("ftp://x")).starts_with("base_url:"));
    assert!(err(Gemini::builder().base_url("http://x?a=b")).contains("query"));
    for reserved in ["authorization", "x-goog-api-key"] {
        assert!(
            err(Gemini::builder().header(reserved, "x")).contains("cannot be configured"),
            "{reserved}"
        );
    }
    assert!(err(Gemini::builder().api_key("a\nb")).starts_with("api_key"));
    let e = err(Gemini::builder().vertex("p", "us-central1", "/nonexistent/sa.json"));
    assert!(e.starts_with("vertex_service_account_file"), "{e}");
    let debug = format!("{:?}", Gemini::builder().api_key("AIza-very-secret"));
    assert!(!debug.contains("AIza-very-secret"), "{debug}");
    let p = Gemini::builder()
        .base_url("http://127.0.0.1:9/proxy/")
        .build()
        .unwrap();
    assert_eq!(
        p.url("m", "generateContent"),
        "http://127.0.0.1:9/proxy/v1beta/models/m:generateContent"
    );
}

// Vertex AI.

fn test_key() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/gemini/test_only_service_account_key.pem"),
    )
    .unwrap()
}

/// A service-account file pointing at the fake's token endpoint, in a directory of its own.
fn service_account_file(upstream: &FakeGemini, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-gemini-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("service-account.json");
    std::fs::write(&path, upstream.service_account_json(&test_key())).unwrap();
    path
}

fn vertex(upstream: &FakeGemini, test: &str) -> Gemini {
    Gemini::builder()
        .vertex("", "us-central1", service_account_file(upstream, test))
        .base_url(upstream.url())
        .build()
        .unwrap()
}

fn token_requests(upstream: &FakeGemini) -> Vec<portcullis_testkit::Recorded> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.path == "/token")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn vertex_fetches_a_token_once_reuses_it_and_refreshes_it_before_expiry() {
    let upstream = FakeGemini::start().await;
    upstream.token_expires_in(3600);
    let p = vertex(&upstream, "refresh");
    let r = send(p.clone(), &chat(json!({}))).await;
    assert_eq!(r.status(), 200, "{}", text(r).await);
    assert_eq!(r.headers()["x-portkey-provider"], "vertex-ai");
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/v1/projects/fake-project/locations/us-central1/publishers/google/models/\
         gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.fake-1"));
    assert!(sent.header("x-goog-api-key").is_none());

    // The JWT: RS256 over the claims Google asks for, signed by the account's key.
    let tokens = token_requests(&upstream);
    assert_eq!(tokens.len(), 1);
    let form = String::from_utf8(tokens[0].body.to_vec()).unwrap();
    let assertion = form.split("assertion=").nth(1).unwrap();
    let (signed, signature) = assertion.rsplit_once('.').unwrap();
    let claims = decode_segment(signed.split('.').nth(1).unwrap());
    assert_eq!(
        claims["iss"],
        "portcullis-test@fake-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(claims["aud"], upstream.token_uri());
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 3600
    );
    verify_signature(signed, signature);

    // Reused while fresh, streams too.
    tokio::time::advance(Duration::from_secs(3000)).await;
    let r = send(p.clone(), &chat(json!({"stream": true}))).await;
    assert!(stream_text(r).await.ends_with("data: [DONE]\n\n"));
    assert_eq!(token_requests(&upstream).len(), 1);

    // Refreshed five minutes before it expires.
    tokio::time::advance(Duration::from_secs(301)).await;
    let r = send(p.clone(), &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(token_requests(&upstream).len(), 2);
    assert_eq!(
        upstream.last_request().unwrap().header("authorization"),
        Some("Bearer ya29.fake-2")
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_vertex_requests_share_one_refresh() {
    let upstream = FakeGemini::start().await;
    upstream.token_delay(Duration::from_secs(1));
    let p = vertex(&upstream, "single-flight");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { send(p, &chat(json!({}))).await.status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(token_requests(&upstream).len(), 1);
    assert_eq!(upstream.tokens_issued(), ["ya29.fake-1"]);
    assert_eq!(upstream.hits(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_a_502_naming_the_cause_never_the_key() {
    let upstream = FakeGemini::start().await;
    upstream.token_failure(Some((400, "Invalid JWT Signature.")));
    let p = vertex(&upstream, "failure");
    let r = send(p.clone(), &chat(json!({}))).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body = text(r).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "provider_credentials_failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("Invalid JWT Signature."), "{message}");
    assert!(
        message.contains("portcullis-test@fake-project"),
        "{message}"
    );
    assert!(
        !body.contains("PRIVATE KEY") && !body.contains("assertion"),
        "{body}"
    );
    assert_eq!(upstream.hits(), 0, "no call to Gemini without a token");

    // Google failing is a 503; once it works again, so does the provider.
    upstream.token_failure(Some((500, "backend error")));
    let r = send(p.clone(), &chat(json!({}))).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    upstream.token_failure(None);
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&decode_url(segment)).unwrap()
}

fn decode_url(segment: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in segment.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {segment}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Checks the JWT's signature with the public half of the test key.
fn verify_signature(signed: &str, signature: &str) {
    let pem = test_key();
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let url_safe: String = body
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .filter(|c| *c != '=')
        .collect();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&decode_url(&url_safe)).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ring::signature::KeyPair::public_key(&key).as_ref().to_vec(),
    );
    public
        .verify(signed.as_bytes(), &decode_url(signature))
        .expect("the JWT is signed by the service account's key");
}

#[tokio::test]
async fn vertex_serves_embeddings_and_an_account_can_be_given_read() {
    let upstream = FakeGemini::start().await;
    let account =
        ServiceAccount::from_json(upstream.service_account_json(&test_key()).as_bytes()).unwrap();
    let p = Gemini::builder()
        .vertex_service_account("other-project", "global", account)
        .base_url(upstream.url())
        .client(HttpClient::new())
        .build()
        .unwrap();
    let one = json!({"model": "text-embedding-004", "input": "x"});
    let r = send_to(p.clone(), client_request("/v1/embeddings", &one)).await;
    assert_eq!(r.status(), 200);
    assert!(
        upstream
            .last_request()
            .unwrap()
            .path
            .ends_with("/publishers/google/models/text-embedding-004:predict")
    );
    let r = send(p, &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    assert!(
        upstream
            .last_request()
            .unwrap()
            .path
            .starts_with("/v1/projects/other-project/locations/global/")
    );
}

// Golden tests: recorded request/response pairs in tests/golden/gemini/<case>/:
// `request.json` (what the client sends), `upstream_request.json` (what must reach Gemini),
// `upstream_path` (the path and query it must reach), `upstream_response.{json,sse}`
// (Gemini's answer, in its documented format; `upstream_status` when not 200) and
// `response.{json,sse}` (what the client must get, `created` written as 0). With
// `PORTCULLIS_BLESS_GOLDEN=1` the expected files are written from what the provider does,
// to be reviewed before they are kept.

#[tokio::test]
async fn golden_pairs() {
    for dir in golden_cases("gemini", 8) {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let upstream = FakeGemini::start().await;
        let (status, answer, sse) = recorded_answer(&dir);
        upstream.set(Plan::ok().replay(status, answer));
        let request = parse(&read(&dir, "request.json").unwrap(), &case);
        let r = send(provider(&upstream), &request).await;
        assert_eq!(r.status().as_u16(), status, "{case}");

        let sent = upstream.last_request().unwrap();
        if std::env::var_os("PORTCULLIS_BLESS_GOLDEN").is_some() {
            bless(&dir, &sent, r, sse).await;
            continue;
        }
        let want = parse(&read(&dir, "upstream_request.json").unwrap(), &case);
        assert_eq!(sent.json(), want, "{case}: the request sent to Gemini");
        let path = read(&dir, "upstream_path").unwrap();
        assert_eq!(sent.path, path.trim(), "{case}: the URL");

        assert_golden_answer(&dir, &case, r, sse).await;
    }
}

/// Writes the expected files of a golden case from what the provider did.
async fn bless(dir: &Path, sent: &portcullis_testkit::Recorded, r: Response<Body>, sse: bool) {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap() + "\n";
    std::fs::write(dir.join("upstream_request.json"), pretty(&sent.json())).unwrap();
    std::fs::write(dir.join("upstream_path"), format!("{}\n", sent.path)).unwrap();
    if sse {
        let got: String = events(&stream_text(r).await)
            .into_iter()
            .map(|e| match e {
                Value::String(done) => format!("data: {done}\n\n"),
                e => format!("data: {}\n\n", without_created(e)),
            })
            .collect();
        std::fs::write(dir.join("response.sse"), got).unwrap();
    } else {
        let got = without_created(json_body(r).await);
        std::fs::write(dir.join("response.json"), pretty(&got)).unwrap();
    }
}
