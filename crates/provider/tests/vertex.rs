//! Vertex AI with both publishers: Claude (`publishers/anthropic`, `rawPredict`) and Gemini
//! (`publishers/google`) from one provider and one token, and Vertex AI's text embeddings
//! (`predict`), against the fake Gemini upstream (which serves Vertex AI's Claude routes and
//! the token endpoint) over loopback HTTP.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{assert_usage_adds_up, events, json_body, send_to, stream_text, text};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use portcullis_core::Body;
use portcullis_provider::anthropic::{Anthropic, VERTEX_VERSION};
use portcullis_provider::gemini::Gemini;
use portcullis_provider::vertex::ServiceAccount;
use portcullis_testkit::anthropic::Plan as ClaudePlan;
use portcullis_testkit::gemini::{FakeGemini, Plan};
use serde_json::{Value, json};
use tower::Service;

const CLAUDE: &str = "claude-sonnet-4-5@20250929";
const ROUTE: &str = "/v1/projects/fake-project/locations/us-central1/publishers";

fn account(upstream: &FakeGemini) -> ServiceAccount {
    let key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/gemini/test_only_service_account_key.pem"),
    )
    .unwrap();
    ServiceAccount::from_json(upstream.service_account_json(&key).as_bytes()).unwrap()
}

/// The `vertex-ai` provider: Gemini and Claude from one project.
fn vertex(upstream: &FakeGemini) -> Gemini {
    Gemini::builder()
        .vertex_service_account("", "us-central1", account(upstream))
        .base_url(upstream.url())
        .build()
        .unwrap()
}

fn request(path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-gateway-key")
        .header("x-api-key", "client-key")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn send<S>(provider: S, body: &Value) -> Response<Body>
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
    send_to(provider, request("/v1/chat/completions", body)).await
}

async fn embed(provider: Gemini, body: &Value) -> Response<Body> {
    send_to(provider, request("/v1/embeddings", body)).await
}

fn token_requests(upstream: &FakeGemini) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path == "/token")
        .count()
}

#[tokio::test]
async fn claude_goes_to_raw_predict_with_a_token_and_a_vertex_body() {
    let upstream = FakeGemini::start().await;
    upstream.set_claude(ClaudePlan::ok().text("Hello from Claude.").usage(9, 4));
    let r = send(vertex(&upstream), &chat(CLAUDE, json!({"max_tokens": 50}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portkey-provider"], "vertex-ai");
    let v = json_body(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], CLAUDE);
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Claude.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    assert_usage_adds_up(&v["usage"]);

    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        format!("{ROUTE}/anthropic/models/{CLAUDE}:rawPredict")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.fake-1"));
    for header in ["x-api-key", "anthropic-version", "anthropic-beta"] {
        assert_eq!(sent.header(header), None, "{header}");
    }
    let body = sent.json();
    assert!(body.get("model").is_none(), "{body}");
    assert_eq!(body["anthropic_version"], VERTEX_VERSION);
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["messages"][0]["content"][0]["text"], "Say hello");
}

#[tokio::test]
async fn claude_streams_through_stream_raw_predict() {
    let upstream = FakeGemini::start().await;
    upstream.set_claude(ClaudePlan::ok().text("one two three"));
    let body = chat(
        "anthropic.claude-haiku-4-5",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let r = send(vertex(&upstream), &body).await;
    assert_eq!(r.status(), 200);
    let got = stream_text(r).await;
    assert!(got.ends_with("data: [DONE]\n\n"), "{got}");
    let events = events(&got);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "one two three");
    let usage = &events[events.len() - 2]["usage"];
    assert_usage_adds_up(usage);

    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        format!("{ROUTE}/anthropic/models/claude-haiku-4-5:streamRawPredict"),
        "the `anthropic.` prefix is left out of the URL"
    );
    assert_eq!(sent.json()["stream"], true);
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
}

#[tokio::test]
async fn claude_tool_calls_round_trip_on_vertex() {
    let upstream = FakeGemini::start().await;
    upstream.set_claude(ClaudePlan::ok().tool_use(
        "toolu_01",
        "get_weather",
        json!({"city": "Paris"}),
    ));
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r = send(
        vertex(&upstream),
        &chat(CLAUDE, json!({"tools": tools, "tool_choice": "required"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = json_body(r).await;
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = upstream.last_request().unwrap().json();
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));

    // Streamed, the call keeps its index.
    let r = send(
        vertex(&upstream),
        &chat(CLAUDE, json!({"tools": tools, "stream": true})),
    )
    .await;
    let got = stream_text(r).await;
    let started = events(&got)
        .into_iter()
        .find(|e| e["choices"][0]["delta"]["tool_calls"][0]["id"] == "toolu_01")
        .unwrap_or_else(|| panic!("no tool call in {got}"));
    assert_eq!(started["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
}

#[tokio::test]
async fn claude_errors_keep_their_status_in_openais_shape() {
    let upstream = FakeGemini::start().await;
    upstream.set_claude(ClaudePlan::ok().status(529));
    let r = send(vertex(&upstream), &chat(CLAUDE, json!({}))).await;
    assert_eq!(r.status().as_u16(), 529);
    let v = json_body(r).await;
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(v["provider"], "anthropic");

    // Vertex AI's own errors come in Google's shape: their status is the type.
    upstream.set_claude(ClaudePlan::ok().replay(
        404,
        r#"{"error":{"code":404,"message":"Publisher Model `claude-x` was not found.","status":"NOT_FOUND"}}"#,
    ));
    let r = send(vertex(&upstream), &chat("claude-x", json!({}))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v = json_body(r).await;
    assert_eq!(v["error"]["type"], "NOT_FOUND");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("Publisher Model `claude-x`"), "{message}");

    // What Anthropic cannot do is refused before any call, as on Anthropic's API.
    let hits = upstream.hits();
    let r = send(
        vertex(&upstream),
        &chat(CLAUDE, json!({"temperature": 1.5})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["error"]["param"], "temperature");
    assert_eq!(upstream.hits(), hits);
}

#[tokio::test]
async fn the_model_picks_the_publisher() {
    let upstream = FakeGemini::start().await;
    let p = vertex(&upstream);
    for (model, path) in [
        (
            "anthropic.claude-opus-4-1",
            "anthropic/models/claude-opus-4-1:rawPredict",
        ),
        (
            "claude-3-5-haiku@20241022",
            "anthropic/models/claude-3-5-haiku@20241022:rawPredict",
        ),
        (
            "google.gemini-2.5-pro",
            "google/models/gemini-2.5-pro:generateContent",
        ),
        (
            "gemini-2.5-flash",
            "google/models/gemini-2.5-flash:generateContent",
        ),
    ] {
        let r = send(p.clone(), &chat(model, json!({}))).await;
        assert_eq!(r.status(), 200, "{model}: {}", text(r).await);
        assert_eq!(
            upstream.last_request().unwrap().path,
            format!("{ROUTE}/{path}"),
            "{model}"
        );
    }
    let hits = upstream.hits();
    for model in [
        "meta.llama-4-maverick",
        "mistralai.mistral-large",
        "endpoints.42",
    ] {
        let r = send(p.clone(), &chat(model, json!({}))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{model}");
        let v = json_body(r).await;
        assert_eq!(v["error"]["param"], "model");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(model), "{message}");
    }
    assert_eq!(upstream.hits(), hits, "refused without a call");
}

#[tokio::test(start_paused = true)]
async fn both_publishers_share_one_token_and_its_refresh() {
    let upstream = FakeGemini::start().await;
    upstream.token_expires_in(3600);
    let p = vertex(&upstream);
    assert!(p.claude().is_some_and(Anthropic::is_vertex));
    let r = send(p.clone(), &chat("gemini-2.5-flash", json!({}))).await;
    assert_eq!(r.status(), 200);
    let r = send(p.clone(), &chat(CLAUDE, json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(token_requests(&upstream), 1, "Claude reuses Gemini's token");

    // Due for a refresh: Claude refreshes it, Gemini uses the new one without another.
    tokio::time::advance(Duration::from_secs(3301)).await;
    let r = send(p.clone(), &chat(CLAUDE, json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(token_requests(&upstream), 2);
    let r = send(p.clone(), &chat("gemini-2.5-flash", json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(token_requests(&upstream), 2);
    assert_eq!(
        upstream.last_request().unwrap().header("authorization"),
        Some("Bearer ya29.fake-2")
    );

    // Requests of both publishers waiting at once share one refresh.
    tokio::time::advance(Duration::from_secs(3301)).await;
    upstream.token_delay(Duration::from_secs(1));
    let calls: Vec<_> = (0..6)
        .map(|n| {
            let p = p.clone();
            let model = if n % 2 == 0 {
                CLAUDE
            } else {
                "gemini-2.5-flash"
            };
            tokio::spawn(async move { send(p, &chat(model, json!({}))).await.status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(token_requests(&upstream), 3);

    // A failed refresh fails Claude requests as it fails Gemini's: 502, naming the account.
    tokio::time::advance(Duration::from_secs(3700)).await;
    upstream.token_failure(Some((400, "Invalid JWT Signature.")));
    let hits = upstream.hits();
    let r = send(p, &chat(CLAUDE, json!({}))).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v = json_body(r).await;
    assert_eq!(v["error"]["code"], "provider_credentials_failed");
    assert_eq!(upstream.hits(), hits);
}

#[tokio::test]
async fn beta_is_a_header_and_the_version_stays_in_the_body() {
    let upstream = FakeGemini::start().await;
    let p = Gemini::builder()
        .vertex_service_account("", "us-central1", account(&upstream))
        .base_url(upstream.url())
        .anthropic_beta("context-1m-2025-08-07")
        .anthropic_max_tokens(321)
        .build()
        .unwrap();
    let body = chat(
        CLAUDE,
        json!({"anthropic_beta": ["interleaved-thinking-2025-05-14"],
            "anthropic_version": "vertex-2099-01-01"}),
    );
    let r = send(p, &body).await;
    assert_eq!(r.status(), 200, "{}", text(r).await);
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("context-1m-2025-08-07,interleaved-thinking-2025-05-14")
    );
    assert_eq!(sent.header("anthropic-version"), None);
    let body = sent.json();
    assert_eq!(body["anthropic_version"], "vertex-2099-01-01");
    assert_eq!(body["max_tokens"], 321);
}

#[tokio::test]
async fn the_anthropic_provider_alone_speaks_to_vertex() {
    let upstream = FakeGemini::start().await;
    let claude = Anthropic::builder()
        .vertex_service_account("p2", "europe-west1", account(&upstream))
        .base_url(upstream.url())
        .build()
        .unwrap();
    assert!(claude.is_vertex());
    assert_eq!(claude.name(), "vertex-ai");
    let r = send(claude, &chat("anthropic.claude-haiku-4-5", json!({}))).await;
    assert_eq!(r.status(), 200);
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/v1/projects/p2/locations/europe-west1/publishers/anthropic/models/claude-haiku-4-5:rawPredict"
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.fake-1"));

    // Its own URLs, from the region.
    let global = Anthropic::builder()
        .vertex_service_account("p", "global", account(&upstream))
        .build();
    #[cfg(feature = "rustls")]
    assert_eq!(
        global.unwrap().url(CLAUDE, true),
        format!(
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/\
             anthropic/models/{CLAUDE}:streamRawPredict"
        )
    );
    #[cfg(not(feature = "rustls"))]
    assert!(global.is_err());
    let err = |b: portcullis_provider::AnthropicBuilder| b.build().unwrap_err().to_string();
    let on_vertex = || {
        Anthropic::builder()
            .vertex_service_account("p", "r", account(&upstream))
            .base_url(upstream.url())
    };
    assert!(err(on_vertex().api_key("sk-ant")).starts_with("api_key"));
    assert!(err(on_vertex().client_keys(true)).starts_with("client_keys"));
    assert!(
        err(Anthropic::builder().vertex("p", "r", PathBuf::from("/nonexistent/sa.json")))
            .starts_with("vertex_service_account_file")
    );
}

#[tokio::test]
async fn vertex_embeddings_one_input_or_a_batch_with_dimensions() {
    let upstream = FakeGemini::start().await;
    let p = vertex(&upstream);
    let r = embed(
        p.clone(),
        &json!({"model": "text-embedding-005", "input": "three little words"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portkey-provider"], "vertex-ai");
    let v = json_body(r).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-005");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        format!("{ROUTE}/google/models/text-embedding-005:predict")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.fake-1"));
    assert_eq!(
        sent.json(),
        json!({"instances": [{"content": "three little words"}]})
    );

    let r = embed(
        p.clone(),
        &json!({"model": "google.gemini-embedding-001", "input": ["a b", "c"], "dimensions": 5}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = json_body(r).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[1]["embedding"].as_array().unwrap().len(), 5);
    assert_eq!(v["usage"]["prompt_tokens"], 3, "2 + 1 tokens");
    let sent = upstream.last_request().unwrap();
    assert!(
        sent.path
            .ends_with("/google/models/gemini-embedding-001:predict"),
        "{}",
        sent.path
    );
    assert_eq!(
        sent.json(),
        json!({"instances": [{"content": "a b"}, {"content": "c"}],
            "parameters": {"outputDimensionality": 5}})
    );
    assert_eq!(token_requests(&upstream), 1);
}

#[tokio::test]
async fn vertex_embedding_errors() {
    let upstream = FakeGemini::start().await;
    let p = vertex(&upstream);
    upstream.set(Plan::ok().error(429, "Quota exceeded for aiplatform.googleapis.com."));
    let r = embed(
        p.clone(),
        &json!({"model": "text-embedding-005", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let v = json_body(r).await;
    assert_eq!(v["error"]["type"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["message"].as_str().unwrap().contains("Quota"));

    // Refused without a call: token arrays, and Claude, which has no embeddings.
    let hits = upstream.hits();
    let r = embed(
        p.clone(),
        &json!({"model": "text-embedding-005", "input": [[1, 2]]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["error"]["param"], "input");
    let r = embed(p, &json!({"model": CLAUDE, "input": "x"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = json_body(r).await;
    assert_eq!(v["error"]["code"], "unsupported_endpoint");
    assert_eq!(upstream.hits(), hits);
}
