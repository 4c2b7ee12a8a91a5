//! `POST /v1/messages` (Anthropic's Messages API) through the gateway over real loopback HTTP:
//! translated into chat completions for the same stacks, to an OpenAI-compatible upstream
//! and to the native Anthropic provider, with `x-api-key` as the gateway key.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use portcullis_testkit::anthropic::{FakeAnthropic, Plan};
use serde_json::{Value, json};
use support::post;

const KEY: &str = "sk-gateway-key-123";
const HELLO: &str =
    r#"{"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
const HELLO_STREAM: &str = r#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

async fn setup(config: &str) -> (FakeUpstream, FakeAnthropic, support::Running) {
    let openai = FakeUpstream::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = support::start(&format!(
        r#"{{"server": {{"api_keys": {{"team": "{KEY}"}}}},
            "providers": {{
              "gpt": {{"provider": "openai", "base_url": "{}", "api_key": "k-openai"}},
              "claude": {{"provider": "anthropic", "base_url": "{}", "api_key": "k-claude"}}
            }},
            "config": {config}}}"#,
        openai.base_url(),
        claude.url()
    ))
    .await;
    (openai, claude, gw)
}

/// The headers the Anthropic SDK sends.
fn sdk(key: &str) -> [(&str, &str); 3] {
    [
        ("x-api-key", key),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ]
}

/// `(event name, data)` of each event of an Anthropic SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn messages_answered_by_an_openai_upstream() {
    let (openai, _claude, gw) = setup(r#"{"virtual_key": "gpt"}"#).await;
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), HELLO).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello from the fake upstream.");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(e.header("x-portkey-provider"), Some("gpt"));
    let sent = openai.last_request().unwrap();
    assert!(sent.path.ends_with("/chat/completions"));
    assert_eq!(sent.header("authorization"), Some("Bearer k-openai"));
    assert_eq!(sent.header("x-api-key"), None, "the gateway key stays home");
    assert_eq!(sent.header("anthropic-version"), None);
    assert_eq!(sent.json()["messages"][0]["content"], "Say hello");
    assert_eq!(sent.json()["max_tokens"], 64);

    // Without the /v1 prefix, as the root paths are served.
    let e = post(gw.addr, "/messages", &sdk(KEY), HELLO).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["type"], "message");
}

#[tokio::test]
async fn messages_stream_from_an_openai_upstream() {
    let (openai, _claude, gw) = setup(r#"{"virtual_key": "gpt"}"#).await;
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), HELLO_STREAM).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.header("content-type"), Some("text/event-stream"));
    let ev = events(&e.text());
    assert_eq!(ev[0].0, "message_start");
    assert_eq!(ev.last().unwrap().0, "message_stop");
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello from the fake upstream.");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["usage"]["output_tokens"], 7);
    assert_eq!(
        openai.last_request().unwrap().json()["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn messages_answered_by_the_anthropic_provider_with_tools() {
    let (_openai, claude, gw) = setup(r#"{"virtual_key": "claude"}"#).await;
    claude.set(
        Plan::ok()
            .text("Checking.")
            .tool_use("toolu_1", "get_weather", json!({"city": "Paris"}))
            .stop_reason("tool_use")
            .usage(20, 9)
            .cache(30, 5),
    );
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":64,
        "tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
        "messages":[{"role":"user","content":"Paris?"}]}"#;
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(
        v["content"],
        json!([
            {"type":"text","text":"Checking."},
            {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}
        ])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["usage"],
        json!({"input_tokens":20,"cache_creation_input_tokens":5,"cache_read_input_tokens":30,"output_tokens":9}),
        "Anthropic's own counts survive the round trip"
    );
    let sent = claude.last_request().unwrap();
    assert_eq!(
        sent.header("x-api-key"),
        Some("k-claude"),
        "the provider's key, not the client's"
    );
    assert_eq!(sent.json()["tools"][0]["name"], "get_weather");
    assert_eq!(sent.json()["max_tokens"], 64);

    // The tool result goes back the same way.
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[
        {"role":"user","content":"Paris?"},
        {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"}]}]}"#;
    claude.set(Plan::ok().text("It is 18C."));
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["content"][0]["text"], "It is 18C.");
    let sent = claude.last_request().unwrap().json();
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_1");
}

#[tokio::test]
async fn messages_stream_from_the_anthropic_provider() {
    let (_openai, claude, gw) = setup(r#"{"virtual_key": "claude"}"#).await;
    claude.set(
        Plan::ok()
            .tool_use("toolu_A", "a", json!({"x": 1}))
            .tool_use("toolu_B", "b", json!({"y": 2}))
            .stop_reason("tool_use"),
    );
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), HELLO_STREAM).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let ev = events(&e.text());
    let starts: Vec<&Value> = ev
        .iter()
        .filter(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starts.len(), 2, "{ev:?}");
    assert_eq!(starts[0]["content_block"]["id"], "toolu_A");
    assert_eq!(starts[1]["content_block"]["id"], "toolu_B");
    assert_ne!(starts[0]["index"], starts[1]["index"]);
    for (i, start) in starts.iter().enumerate() {
        let index = &start["index"];
        let json: String = ev
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && &d["index"] == index)
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        let input: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(input, [json!({"x": 1}), json!({"y": 2})][i]);
    }
    let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn gateway_key_in_x_api_key_and_errors_in_anthropic_shape() {
    let (openai, _claude, gw) = setup(r#"{"virtual_key": "gpt"}"#).await;
    let e = post(gw.addr, "/v1/messages", &sdk("wrong-key"), HELLO).await;
    assert_eq!(e.status, 401);
    let v = e.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(openai.hits(), 0);

    // The other ways of sending the gateway key work here too.
    let e = post(
        gw.addr,
        "/v1/messages",
        &[("authorization", &format!("Bearer {KEY}"))],
        HELLO,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());

    // Refusals of the request and of the upstream keep Anthropic's shape and the status.
    let e = post(
        gw.addr,
        "/v1/messages",
        &sdk(KEY),
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    assert_eq!(e.status, 400);
    assert_eq!(e.json()["error"]["type"], "invalid_request_error");
    openai.set(portcullis_testkit::Plan::ok().status(429));
    let e = post(gw.addr, "/v1/messages", &sdk(KEY), HELLO).await;
    assert_eq!(e.status, 429);
    assert_eq!(e.json()["error"]["type"], "rate_limit_error");
    let e = support::send(
        gw.addr,
        &support::request("GET", "/v1/messages", &sdk(KEY), ""),
    )
    .await;
    assert_eq!(e.status, 405);
    assert_eq!(e.json()["type"], "error");
}
