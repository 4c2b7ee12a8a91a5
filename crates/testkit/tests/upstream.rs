//! Real HTTP/1.1 over loopback against the fake upstream, with a tiny
//! hand-written client.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    /// The body (de-chunked).
    body: Vec<u8>,
    /// The chunks of a chunked body, in order.
    chunks: Vec<Vec<u8>>,
    /// Whether the body ended properly (terminating chunk / full length).
    complete: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    /// Server-sent events, one per chunk: `Some(json)` or `None` for `[DONE]`.
    fn events(&self) -> Vec<Option<Value>> {
        self.chunks
            .iter()
            .map(|c| {
                let text = std::str::from_utf8(c).expect("utf-8 chunk");
                let data = text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix("\n\n"))
                    .unwrap_or_else(|| panic!("chunk is not one SSE event: {text:?}"));
                (data != "[DONE]").then(|| serde_json::from_str(data).expect("event is JSON"))
            })
            .collect()
    }
}

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Conn {
            tcp,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        match self.tcp.read(&mut tmp).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    async fn until(&mut self, pat: &[u8]) -> Option<usize> {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                return Some(i);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: fake\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.tcp.write_all(&bytes).await.expect("write request");
    }

    /// Reads one response; `None` if the connection closed before its head.
    async fn response(&mut self) -> Option<Resp> {
        let end = self.until(b"\r\n\r\n").await?;
        let head = String::from_utf8(self.buf.drain(..end + 4).collect()).unwrap();
        let mut lines = head.trim_end().split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            chunks: Vec::new(),
            complete: false,
        };
        if let Some(len) = resp.header("content-length") {
            let len = len.parse().unwrap();
            if let Some(body) = self.take(len).await {
                resp.body = body;
                resp.complete = true;
            }
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let Some(i) = self.until(b"\r\n").await else {
                    break;
                };
                let line = String::from_utf8(self.buf.drain(..i + 2).collect()).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let Some(mut chunk) = self.take(size + 2).await else {
                    break;
                };
                if size == 0 {
                    resp.complete = true;
                    break;
                }
                chunk.truncate(size);
                resp.body.extend_from_slice(&chunk);
                resp.chunks.push(chunk);
            }
        }
        Some(resp)
    }

    /// Whether the server closed the connection (EOF with no more bytes).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Option<Resp> {
    let mut conn = Conn::connect(addr).await;
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let headers = [("content-type", "application/json")];
    conn.send(method, path, &headers, &body).await;
    conn.response().await
}

async fn chat(up: &FakeUpstream, body: Value) -> Resp {
    call(up.addr(), "POST", "/v1/chat/completions", &body)
        .await
        .expect("a response")
}

fn error_body(kind: &str) -> Value {
    json!({"error": {"message": "fake upstream error", "type": kind, "param": null, "code": null}})
}

fn chunk(choices: Value) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-4o", "choices": choices,
    })
}

fn role_event() -> Value {
    chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
    )
}

fn content_of(events: &[Option<Value>]) -> String {
    events
        .iter()
        .flatten()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn non_stream_chat() {
    let up = FakeUpstream::start().await;
    assert!(up.base_url().starts_with("http://127.0.0.1:"));
    assert!(up.base_url().ends_with("/v1"));
    let resp = chat(&up, json!({"model": "gpt-4o", "messages": []})).await;
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream."},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        })
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn stream_chat_without_usage() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().content("one two  three"));
    let resp = chat(&up, json!({"model": "gpt-4o", "stream": true})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert!(resp.complete, "terminating chunk expected");
    let events = resp.events();
    let piece = |p: &str| {
        Some(chunk(
            json!([{"index": 0, "delta": {"content": p}, "finish_reason": null}]),
        ))
    };
    assert_eq!(
        events,
        vec![
            Some(role_event()),
            piece("one "),
            piece("two "),
            piece(" "),
            piece("three"),
            Some(chunk(
                json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            )),
            None,
        ]
    );
    assert_eq!(content_of(&events), "one two  three");
}

#[tokio::test]
async fn stream_chat_with_usage() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().usage(30, 4));
    let resp = chat(
        &up,
        json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let events = resp.events();
    assert_eq!(events.len(), 1 + 5 + 1 + 1 + 1);
    assert_eq!(events[0], Some(role_event()));
    assert_eq!(content_of(&events), "Hello from the fake upstream.");
    assert_eq!(
        events[6].as_ref().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34});
    assert_eq!(events[7], Some(usage));
    assert_eq!(events[8], None);

    // always_stream_usage sends it without being asked.
    up.set(Plan::ok().always_stream_usage());
    let events = chat(&up, json!({"model": "gpt-4o", "stream": true}))
        .await
        .events();
    assert_eq!(events.len(), 9);
    assert_eq!(events[7].as_ref().unwrap()["usage"]["total_tokens"], 19);
}

#[tokio::test]
async fn fail_first_then_success() {
    let up = FakeUpstream::start().await;
    let plan = Plan::ok().fail_first(2, 503);
    up.set(plan.clone());
    for _ in 0..2 {
        let resp = chat(&up, json!({})).await;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.json(), error_body("server_error"));
        assert_eq!(resp.header("retry-after"), None);
    }
    let resp = chat(&up, json!({})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["model"], "gpt-4o-mini");
    assert_eq!(up.hits(), 3);
    assert_eq!(plan.seen(), 3, "clones share the counter");
}

#[tokio::test]
async fn retry_after_and_extra_headers() {
    let up = FakeUpstream::start().await;
    up.set(
        Plan::ok()
            .status(429)
            .retry_after("7")
            .header("X-Request-Id", "abc"),
    );
    let resp = chat(&up, json!({})).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    assert_eq!(resp.header("x-request-id"), Some("abc"));
    assert_eq!(resp.json(), error_body("rate_limit_error"));

    // retry-after is for error answers only; extra headers for all.
    up.set(Plan::ok().retry_after("7").header("x-request-id", "def"));
    let resp = chat(&up, json!({})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("retry-after"), None);
    assert_eq!(resp.header("x-request-id"), Some("def"));
}

#[tokio::test(start_paused = true)]
async fn delays_are_virtual() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().delay(Duration::from_secs(30)));
    let t0 = Instant::now();
    let resp = chat(&up, json!({})).await;
    assert_eq!(resp.status, 200);
    assert!(t0.elapsed() >= Duration::from_secs(30));

    up.set(Plan::ok().chunk_delay(Duration::from_secs(5)));
    let t0 = Instant::now();
    let resp = chat(&up, json!({"stream": true})).await;
    assert_eq!(resp.events().len(), 8);
    // Seven gaps between eight events.
    assert!(t0.elapsed() >= Duration::from_secs(35));
}

#[tokio::test]
async fn disconnect_without_response() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().disconnect());
    assert!(chat_opt(&up).await.is_none());
    assert!(chat_opt(&up).await.is_none());
    assert_eq!(up.hits(), 2, "disconnected requests are recorded");

    up.set(Plan::ok().disconnect_first(1));
    assert!(chat_opt(&up).await.is_none());
    assert_eq!(chat_opt(&up).await.unwrap().status, 200);
}

async fn chat_opt(up: &FakeUpstream) -> Option<Resp> {
    call(
        up.addr(),
        "POST",
        "/v1/chat/completions",
        &json!({"stream": true}),
    )
    .await
}

#[tokio::test]
async fn break_after_aborts_mid_body() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().break_after(2));
    let mut conn = Conn::connect(up.addr()).await;
    conn.send(
        "POST",
        "/v1/chat/completions",
        &[],
        br#"{"model":"gpt-4o","stream":true}"#,
    )
    .await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "no terminating chunk expected");
    let events = resp.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0], Some(role_event()));
    assert_eq!(content_of(&events), "Hello from ");
    assert!(conn.closed().await);
}

#[tokio::test]
async fn end_without_done_ends_cleanly() {
    let up = FakeUpstream::start().await;
    up.set(Plan::ok().end_without_done(1).header("x-a", "b"));
    let resp = chat(&up, json!({"model": "gpt-4o", "stream": true})).await;
    assert!(resp.complete, "terminating chunk expected");
    let events = resp.events();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(Option::is_some), "no [DONE]");
    assert_eq!(content_of(&events), "Hello ");
}

#[tokio::test]
async fn records_requests_and_uses_path_plans() {
    let up = FakeUpstream::start().await;
    up.set_path("/v1/chat/completions", Plan::ok().content("path plan"));
    let mut conn = Conn::connect(up.addr()).await;
    let body = br#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
    conn.send(
        "POST",
        "/v1/chat/completions?api-version=1",
        &[("authorization", "Bearer sk-test"), ("x-trace", "t1")],
        body,
    )
    .await;
    let first = conn.response().await.unwrap();
    assert_eq!(
        first.json()["choices"][0]["message"]["content"],
        "path plan"
    );
    // Keep-alive: a second request on the same connection.
    conn.send("GET", "/v1/models", &[], b"").await;
    let models = conn.response().await.unwrap();
    assert_eq!(
        models.json(),
        json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
        ]})
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, http::Method::POST);
    assert_eq!(reqs[0].path, "/v1/chat/completions?api-version=1");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(reqs[0].headers["x-trace"], "t1");
    assert_eq!(&reqs[0].body[..], &body[..]);
    assert_eq!(reqs[0].json()["messages"][0]["content"], "hi");
    assert_eq!(reqs[1].method, http::Method::GET);
    assert_eq!(up.last_request().unwrap().path, "/v1/models");
}

#[tokio::test]
#[should_panic(expected = "is not JSON")]
async fn recorded_json_panics_clearly() {
    let up = FakeUpstream::start().await;
    let resp = call(up.addr(), "GET", "/v1/models", &Value::Null)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    up.requests()[0].json();
}

#[tokio::test]
async fn other_routes() {
    let up = FakeUpstream::start().await;
    let addr = up.addr();

    let resp = call(
        addr,
        "POST",
        "/v1/completions",
        &json!({"model": "davinci"}),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.json(),
        json!({
            "id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000,
            "model": "davinci",
            "choices": [{"index": 0, "text": "Hello from the fake upstream.", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        })
    );

    let resp = call(addr, "POST", "/v1/completions", &json!({"stream": true}))
        .await
        .unwrap();
    let events = resp.events();
    assert_eq!(events.len(), 5 + 1 + 1);
    assert_eq!(events[0].as_ref().unwrap()["object"], "text_completion");
    let text: String = events
        .iter()
        .flatten()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from the fake upstream.");

    let resp = call(addr, "POST", "/openai/embeddings", &json!({"input": "x"}))
        .await
        .unwrap();
    assert_eq!(
        resp.json(),
        json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 12, "total_tokens": 12},
        })
    );

    let resp = call(addr, "GET", "/v1/nope", &Value::Null).await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");

    let mut conn = Conn::connect(addr).await;
    conn.send("POST", "/v1/chat/completions", &[], b"{not json")
        .await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    assert_eq!(resp.json()["error"]["param"], Value::Null);

    up.set(Plan::ok().body(json!({"custom": true})));
    let resp = call(
        addr,
        "POST",
        "/v1/chat/completions",
        &json!({"stream": true}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"custom": true}));
    assert_eq!(up.hits(), 6);
}

#[tokio::test]
async fn drop_stops_the_server() {
    let up = FakeUpstream::start().await;
    let addr = up.addr();
    assert_eq!(
        call(addr, "GET", "/v1/models", &Value::Null)
            .await
            .unwrap()
            .status,
        200
    );
    drop(up);
    tokio::task::yield_now().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
