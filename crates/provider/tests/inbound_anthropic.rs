//! The inbound Messages API (`MessagesApi`) in front of the OpenAI provider, against fake
//! OpenAI upstreams over loopback HTTP: the testkit's `FakeUpstream`, and a scripted one that
//! answers a fixed body (streamed tool calls, golden cases).

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use portcullis_core::{Body, BufferedBody, Edge, EdgeLayer};
use portcullis_provider::OpenAi;
use portcullis_provider::inbound::anthropic::{MessagesApi, MessagesApiLayer};
use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

use support::{golden_cases, json_body, text};

type Stack = MessagesApi<Edge<OpenAi>>;

fn stack(base_url: &str) -> Stack {
    let provider = OpenAi::builder(base_url)
        .api_key("sk-upstream")
        .build()
        .unwrap();
    MessagesApiLayer::new().layer(EdgeLayer::new().layer(provider))
}

async fn send(stack: Stack, body: &str) -> Response<Body> {
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-client")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    stack.oneshot(req).await.unwrap()
}

/// `(event name, data)` of each event of an Anthropic SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event name in {e:?}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data in {e:?}"));
            (
                name.to_owned(),
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}")),
            )
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// An upstream that answers every request with one fixed response, and records the bodies.
struct Scripted {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let mut answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        answer.extend(body.into());
        let recorded = bodies.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut all = Vec::new();
                let mut buf = [0u8; 8192];
                // The head, then as many body bytes as content-length says.
                let body = loop {
                    let n = tcp.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break Vec::new();
                    }
                    all.extend_from_slice(&buf[..n]);
                    let Some(split) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if all.len() >= split + 4 + length {
                        break all[split + 4..split + 4 + length].to_vec();
                    }
                };
                recorded.lock().unwrap().push(body);
                let _ = tcp.write_all(&answer).await;
                let _ = tcp.shutdown().await;
            }
        });
        Self { addr, bodies, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn last_json(&self) -> Value {
        serde_json::from_slice(self.bodies.lock().unwrap().last().unwrap()).unwrap()
    }
}

/// OpenAI SSE events of `chunks` (choices of each), then `[DONE]`.
fn sse(chunks: &[Value]) -> String {
    let mut out = String::new();
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"gpt-x",
           "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
}

const HELLO: &str =
    r#"{"model":"claude-x","max_tokens":100,"messages":[{"role":"user","content":"Say hello"}]}"#;

#[tokio::test]
async fn text_answer_with_system_in_messages_shape() {
    let upstream = FakeUpstream::start().await;
    let body = r#"{"model":"claude-x","max_tokens":100,"system":"Be terse.","temperature":0.2,
        "metadata":{"user_id":"user-7"},"stop_sequences":["END"],
        "messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = json_body(r).await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(
        v["content"],
        json!([{"type":"text","text":"Hello from the fake upstream."}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(v["usage"]["output_tokens"], 7);

    let sent = upstream.last_request().unwrap();
    assert!(sent.path.ends_with("/chat/completions"), "{}", sent.path);
    assert_eq!(sent.header("authorization"), Some("Bearer sk-upstream"));
    assert_eq!(sent.header("x-api-key"), None, "client headers stay home");
    let chat = sent.json();
    assert_eq!(
        chat["messages"],
        json!([{"role":"system","content":"Be terse."},{"role":"user","content":"Say hello"}])
    );
    assert_eq!(chat["max_tokens"], 100);
    assert_eq!(chat["temperature"], 0.2);
    assert_eq!(chat["user"], "user-7");
    assert_eq!(chat["stop"], json!(["END"]));
    assert!(chat.get("stream").is_none());
}

#[tokio::test]
async fn images_from_base64_and_urls_become_image_url_parts() {
    let upstream = FakeUpstream::start().await;
    let body = r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
        {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
        {"type":"text","text":"What are these?"}]}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 200);
    let chat = upstream.last_request().unwrap().json();
    assert_eq!(
        chat["messages"][0]["content"],
        json!([
            {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
            {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}},
            {"type":"text","text":"What are these?"}
        ])
    );
}

#[tokio::test]
async fn tools_and_parallel_calls_come_back_as_tool_use_blocks() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().body(json!({
        "id":"chatcmpl-t","object":"chat.completion","created":1,"model":"gpt-x",
        "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
          "tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]}}],
        "usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}})));
    let body = r#"{"model":"m","max_tokens":10,
        "tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
        "tool_choice":{"type":"tool","name":"get_weather"},
        "messages":[{"role":"user","content":"Paris and Oslo?"}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 200);
    let v = json_body(r).await;
    assert_eq!(
        v["content"],
        json!([
            {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
            {"type":"tool_use","id":"call_2","name":"get_weather","input":{"city":"Oslo"}}
        ])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    let chat = upstream.last_request().unwrap().json();
    assert_eq!(
        chat["tools"],
        json!([{"type":"function","function":{"name":"get_weather","description":"Weather now",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])
    );
    assert_eq!(
        chat["tool_choice"],
        json!({"type":"function","function":{"name":"get_weather"}})
    );
}

#[tokio::test]
async fn tool_results_round_trip_as_tool_messages() {
    let upstream = FakeUpstream::start().await;
    let body = r#"{"model":"m","max_tokens":10,"messages":[
        {"role":"user","content":"Paris and Oslo?"},
        {"role":"assistant","content":[
          {"type":"text","text":"Checking."},
          {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
          {"type":"tool_use","id":"call_2","name":"get_weather","input":{"city":"Oslo"}}]},
        {"role":"user","content":[
          {"type":"tool_result","tool_use_id":"call_1","content":"18C"},
          {"type":"tool_result","tool_use_id":"call_2","is_error":true,"content":[{"type":"text","text":"station down"}]}]}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 200);
    let chat = upstream.last_request().unwrap().json();
    assert_eq!(
        chat["messages"],
        json!([
            {"role":"user","content":"Paris and Oslo?"},
            {"role":"assistant","content":"Checking.","tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"18C"},
            {"role":"tool","tool_call_id":"call_2","content":"Error: station down"}
        ])
    );
}

#[tokio::test]
async fn every_finish_reason_maps_to_its_stop_reason() {
    let upstream = FakeUpstream::start().await;
    let cases = [
        ("stop", None, "end_turn", Value::Null),
        ("stop", Some("END"), "stop_sequence", json!("END")),
        ("length", None, "max_tokens", Value::Null),
        ("tool_calls", None, "tool_use", Value::Null),
        ("content_filter", None, "refusal", Value::Null),
    ];
    let body = r#"{"model":"m","max_tokens":10,"stop_sequences":["END"],"messages":[{"role":"user","content":"hi"}]}"#;
    for (finish, matched, stop_reason, sequence) in cases {
        let mut choice =
            json!({"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":finish});
        if let Some(m) = matched {
            // vLLM names the stop sequence it hit.
            choice["stop_reason"] = json!(m);
        }
        upstream.set(Plan::ok().body(json!({"id":"c","model":"m","choices":[choice]})));
        let v = json_body(send(stack(&upstream.base_url()), body).await).await;
        assert_eq!(v["stop_reason"], stop_reason, "{finish}");
        assert_eq!(v["stop_sequence"], sequence, "{finish}");
    }
}

#[tokio::test]
async fn streamed_stop_reasons_come_in_message_delta() {
    for (finish, stop_reason) in [
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("stop", "end_turn"),
    ] {
        let upstream = Scripted::start(
            200,
            "text/event-stream",
            sse(&[
                chunk(json!({"role":"assistant","content":"Hi"}), Value::Null),
                chunk(json!({}), json!(finish)),
            ]),
        )
        .await;
        let body = r#"{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let ev = events(&text(send(stack(&upstream.base_url()), body).await).await);
        let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], stop_reason, "{finish}");
        assert_eq!(ev.last().unwrap().0, "message_stop");
    }
}

#[tokio::test]
async fn usage_counts_cached_tokens_apart_from_input() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().body(json!({
        "id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":100,"completion_tokens":9,"total_tokens":109,"prompt_tokens_details":{"cached_tokens":40}}})));
    let v = json_body(send(stack(&upstream.base_url()), HELLO).await).await;
    assert_eq!(
        v["usage"],
        json!({"input_tokens":60,"cache_creation_input_tokens":0,"cache_read_input_tokens":40,"output_tokens":9})
    );
}

#[tokio::test]
async fn text_stream_in_messages_events_with_usage() {
    let upstream = FakeUpstream::start().await;
    let body = r#"{"model":"claude-x","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let ev = events(&text(r).await);
    let n = names(&ev);
    assert_eq!(n[0], "message_start");
    assert_eq!(n[1], "content_block_start");
    assert_eq!(
        &n[n.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let streamed: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            assert_eq!(d["index"], 0);
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(streamed, "Hello from the fake upstream.");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], 12);
    assert_eq!(delta["usage"]["output_tokens"], 7);
    let chat = upstream.last_request().unwrap().json();
    assert_eq!(chat["stream"], true);
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn parallel_tool_calls_stream_as_one_block_each() {
    let upstream = Scripted::start(
        200,
        "text/event-stream",
        sse(&[
            chunk(json!({"role":"assistant","content":"Checking both."}), Value::Null),
            chunk(
                json!({"tool_calls":[{"index":0,"id":"call_P","type":"function","function":{"name":"get_weather","arguments":""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}), Value::Null),
            chunk(
                json!({"tool_calls":[{"index":1,"id":"call_O","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ]),
    )
    .await;
    let body = r#"{"model":"m","max_tokens":10,"stream":true,"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"hi"}]}"#;
    let ev = events(&text(send(stack(&upstream.base_url()), body).await).await);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[4].1["index"], 1);
    assert_eq!(
        ev[4].1["content_block"],
        json!({"type":"tool_use","id":"call_P","name":"get_weather","input":{}})
    );
    let paris: String = [&ev[5].1, &ev[6].1]
        .iter()
        .map(|d| {
            assert_eq!(d["index"], 1);
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&paris).unwrap(),
        json!({"city":"Paris"})
    );
    assert_eq!(ev[8].1["index"], 2);
    assert_eq!(ev[8].1["content_block"]["id"], "call_O");
    assert_eq!(ev[9].1["index"], 2);
    assert_eq!(ev[9].1["delta"]["partial_json"], "{\"city\":\"Oslo\"}");
    assert_eq!(ev[11].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn missing_max_tokens_is_refused_in_anthropic_shape() {
    let upstream = FakeUpstream::start().await;
    let r = send(
        stack(&upstream.base_url()),
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    let v = json_body(r).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    assert_eq!(upstream.hits(), 0);

    let r = send(
        stack(&upstream.base_url()),
        r#"{"model":"m","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":2000},"messages":[]}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        json_body(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("thinking:")
    );
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn upstream_errors_keep_their_status_in_anthropic_shape() {
    let upstream = FakeUpstream::start().await;
    for (status, kind) in [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (401, "authentication_error"),
    ] {
        upstream.set(Plan::ok().status(status).retry_after("7"));
        let r = send(stack(&upstream.base_url()), HELLO).await;
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["retry-after"], "7");
        let v = json_body(r).await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind);
        assert_eq!(v["error"]["message"], "fake upstream error");
    }
    // A streamed request is answered the same way: the error comes before any event.
    upstream.set(Plan::ok().status(429));
    let body = r#"{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(json_body(r).await["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event_never_message_stop() {
    let upstream = FakeUpstream::start().await;
    let body = r#"{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for plan in [Plan::ok().break_after(2), Plan::ok().end_without_done(2)] {
        upstream.set(plan);
        let r = send(stack(&upstream.base_url()), body).await;
        assert_eq!(r.status(), 200);
        // The client reads a whole body: the failure is told in an event, not a broken body.
        let ev = events(&text(r).await);
        let n = names(&ev);
        assert_eq!(n[0], "message_start");
        assert!(n.contains(&"content_block_delta"), "{n:?}");
        assert_eq!(*n.last().unwrap(), "error", "{n:?}");
        assert!(!n.contains(&"message_stop"), "{n:?}");
        assert!(!n.contains(&"message_delta"), "{n:?}");
        assert_eq!(ev.last().unwrap().1["type"], "error");
    }
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_sent_as_events() {
    let upstream = Scripted::start(
        200,
        "application/json",
        json!({"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],
               "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})
        .to_string(),
    )
    .await;
    let body = r#"{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = send(stack(&upstream.base_url()), body).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let ev = events(&text(r).await);
    assert_eq!(ev[2].1["delta"]["text"], "whole");
    assert_eq!(ev.last().unwrap().0, "message_stop");
    assert_eq!(upstream.last_json()["stream"], true);
}

#[tokio::test]
async fn the_readied_service_is_the_one_called() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<BufferedBody>, Response<Body>>();
    let mut api = tower_test::mock::Spawn::new(MessagesApi::new(mock));
    handle.allow(0);
    assert!(
        api.poll_ready::<Request<Full<Bytes>>>().is_pending(),
        "readiness comes from inside"
    );
    handle.allow(1);
    assert!(matches!(
        api.poll_ready::<Request<Full<Bytes>>>(),
        Poll::Ready(Ok(()))
    ));
    let req = Request::post("/v1/messages")
        .body(Full::new(Bytes::from_static(HELLO.as_bytes())))
        .unwrap();
    let answer = tokio::spawn(api.call(req));
    let (chat, respond) = handle.next_request().await.unwrap();
    assert_eq!(chat.uri(), "/v1/chat/completions");
    let sent: Value = serde_json::from_slice(chat.body().bytes()).unwrap();
    assert_eq!(sent["messages"][0]["content"], "Say hello");
    respond.send_response(Response::new(Body::from(
        r#"{"id":"c","model":"m","choices":[{"index":0,"message":{"content":"hey"},"finish_reason":"stop"}]}"#,
    )));
    let r = answer.await.unwrap().unwrap();
    assert_eq!(json_body(r).await["content"][0]["text"], "hey");
}

// Golden cases: tests/golden/inbound/<case>/ (see the README there).

/// Whether `ours` has the shape of `golden`: the same keys, the same values for the keys
/// that name a kind, values of the same JSON kind elsewhere.
fn same_shape(golden: &Value, ours: &Value, at: &str) {
    match (golden, ours) {
        (Value::Object(g), Value::Object(o)) => {
            let mut gk: Vec<&String> = g.keys().collect();
            let mut ok: Vec<&String> = o.keys().collect();
            gk.sort();
            ok.sort();
            assert_eq!(gk, ok, "keys at {at}");
            for (k, gv) in g {
                if ["type", "role", "stop_reason"].contains(&k.as_str()) {
                    assert_eq!(gv, &o[k], "{at}.{k}");
                }
                same_shape(gv, &o[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(o)) => {
            assert_eq!(g.len(), o.len(), "length at {at}: {ours}");
            for (i, (gv, ov)) in g.iter().zip(o).enumerate() {
                same_shape(gv, ov, &format!("{at}[{i}]"));
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("at {at}: golden {golden}, ours {ours}"),
    }
}

#[tokio::test]
async fn golden_cases_have_anthropic_shapes() {
    for case in golden_cases("inbound", 4) {
        let read = |name: &str| std::fs::read_to_string(case.join(name)).ok();
        let request = read("request.json").unwrap();
        let (upstream_body, content_type) = match read("upstream_response.sse") {
            Some(s) => (s, "text/event-stream"),
            None => (read("upstream_response.json").unwrap(), "application/json"),
        };
        let upstream = Scripted::start(200, content_type, upstream_body).await;
        let r = send(stack(&upstream.base_url()), &request).await;
        assert_eq!(r.status(), 200, "{case:?}");
        let ours = text(r).await;
        if let Some(golden) = read("response.json") {
            let golden: Value = serde_json::from_str(&golden).unwrap();
            let ours: Value = serde_json::from_str(&ours).unwrap();
            same_shape(&golden, &ours, &format!("{case:?}"));
        } else {
            let golden = events(&read("response.sse").unwrap());
            let ours = events(&ours);
            assert_eq!(names(&golden), names(&ours), "{case:?}");
            for (i, (g, o)) in golden.iter().zip(&ours).enumerate() {
                same_shape(&g.1, &o.1, &format!("{case:?} event {i}"));
            }
        }
    }
}
