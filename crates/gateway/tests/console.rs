//! The console over real loopback HTTP: its pages and assets, login and the session cookie,
//! the `/log/stream` SSE events (what they show and what they never show), the routing tree
//! with a breaker that opened, and the limits view. The browser drives the same endpoints in
//! `console_browser.rs`.

#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;

use portcullis_testkit::client::Exchange;
use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::Value;
use support::{CHAT, post, request, send, start, start_with_grace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "console-admin-token-0123";
const PATH: &str = "/v1/chat/completions";

fn config(upstream: &FakeUpstream, server: &str) -> String {
    format!(
        r#"{{"server": {{"admin_token": "{ADMIN}", "api_keys": {{"team": "sk-gateway-key-123"}}{server}}},
            "providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "sk-upstream-secret"}}}},
            "config": {{"virtual_key": "up"}}}}"#,
        upstream.base_url()
    )
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Exchange {
    send(addr, &request("GET", path, headers, "")).await
}

/// An open `GET /log/stream`: reads events as they come.
struct Stream {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Stream {
    async fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut raw = String::from("GET /log/stream HTTP/1.1\r\nhost: test\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        tcp.write_all(raw.as_bytes()).await.unwrap();
        let mut stream = Self {
            tcp,
            buf: Vec::new(),
        };
        let head = stream.until(b"\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("text/event-stream"),
            "{head}"
        );
        stream
    }

    async fn until(&mut self, end: &[u8]) -> String {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                let got: Vec<u8> = self.buf.drain(..at + end.len()).collect();
                return String::from_utf8(got).unwrap();
            }
            let mut chunk = [0u8; 8192];
            let n = self.tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event's name and data (chunked framing around it skipped).
    async fn event(&mut self) -> (String, String) {
        loop {
            let text = self.until(b"\n\n").await;
            let mut name = None;
            let mut data = String::new();
            for line in text.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if let Some(name) = name {
                return (name, data);
            }
        }
    }

    async fn log(&mut self) -> Value {
        loop {
            let (name, data) = self.event().await;
            if name == "log" {
                return serde_json::from_str(&data).unwrap();
            }
        }
    }
}

async fn login(addr: SocketAddr) -> String {
    let body = format!(r#"{{"admin_token": "{ADMIN}"}}"#);
    let e = post(
        addr,
        "/public/auth",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    let cookie = e.header("set-cookie").unwrap().to_owned();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn without_an_admin_token_the_console_is_off() {
    let upstream = FakeUpstream::start().await;
    let json = format!(
        r#"{{"providers": {{"up": {{"provider": "openai", "base_url": "{}"}}}}, "config": {{"virtual_key": "up"}}}}"#,
        upstream.base_url()
    );
    let gw = start(&json).await;
    let e = get(gw.addr, "/console/", &[]).await;
    assert_eq!(e.status, 404);
    assert!(e.text().contains("server.admin_token"), "{}", e.text());
    let e = get(
        gw.addr,
        "/log/stream",
        &[("authorization", "Bearer anything-at-all")],
    )
    .await;
    assert_eq!(e.status, 401);
    let e = post(gw.addr, "/public/auth", &[], r#"{"admin_token": "x"}"#).await;
    assert_eq!(e.status, 401);
}

#[tokio::test]
async fn pages_assets_and_redirects() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, "")).await;
    for (path, to) in [("/console", "/console/"), ("/public", "/public/")] {
        let e = get(gw.addr, path, &[]).await;
        assert_eq!(e.status, 308, "{path}");
        assert_eq!(e.header("location"), Some(to));
    }
    for path in ["/console/", "/public/", "/public/logs"] {
        let e = get(gw.addr, path, &[]).await;
        assert_eq!(e.status, 200, "{path}");
        assert!(e.header("content-type").unwrap().starts_with("text/html"));
        let csp = e.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(e.text().contains("<script src=\"app.js\">"));
    }
    let js = get(gw.addr, "/public/app.js", &[]).await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.text().contains("EventSource(\"/log/stream\")"));
    assert!(
        !js.text().contains("innerHTML"),
        "text is never parsed as HTML"
    );
    assert_eq!(get(gw.addr, "/console/app.css", &[]).await.status, 200);
    assert_eq!(get(gw.addr, "/console/nope", &[]).await.status, 404);
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_and_guards_every_view() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, "")).await;
    // No token, a wrong token, a wrong login.
    for headers in [
        &[][..],
        &[("authorization", "Bearer console-admin-token-WRONG")][..],
        &[("cookie", "portkey_admin_session=1.abcd")][..],
    ] {
        for path in ["/log/stream", "/console/api/tree", "/console/api/limits"] {
            let e = get(gw.addr, path, headers).await;
            assert_eq!(e.status, 401, "{path} {headers:?}");
            assert_eq!(e.json()["error"]["type"], "authentication_error");
        }
    }
    let e = post(
        gw.addr,
        "/public/auth",
        &[],
        r#"{"admin_token": "console-admin-token-WRONG"}"#,
    )
    .await;
    assert_eq!(e.status, 401);
    assert!(e.header("set-cookie").is_none());
    let e = post(gw.addr, "/public/auth", &[], "not json").await;
    assert_eq!(e.status, 400);
    let e = post(gw.addr, "/public/auth", &[], &"x".repeat(10_000)).await;
    assert_eq!(e.status, 400);
    let session = get(gw.addr, "/public/auth/session", &[]).await;
    assert_eq!(session.json()["authenticated"], false);

    let body = format!(r#"{{"admin_token": "{ADMIN}"}}"#);
    let e = post(gw.addr, "/public/auth", &[], &body).await;
    assert_eq!(e.status, 200);
    let set = e.header("set-cookie").unwrap();
    assert!(set.starts_with("portkey_admin_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    let cookie = set.split(';').next().unwrap();
    let session = get(gw.addr, "/public/auth/session", &[("cookie", cookie)]).await;
    assert_eq!(session.json()["authenticated"], true);
    assert_eq!(
        get(gw.addr, "/console/api/tree", &[("cookie", cookie)])
            .await
            .status,
        200
    );
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(
        get(gw.addr, "/console/api/tree", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    // Logging out clears the cookie in the browser.
    let e = post(gw.addr, "/public/auth/logout", &[("cookie", cookie)], "").await;
    assert!(e.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn the_log_stream_shows_each_request_and_never_its_secrets() {
    let upstream = FakeUpstream::start().await;
    upstream.set(
        Plan::ok()
            .content("Mail me at jane.doe@example.com")
            .usage(12, 7),
    );
    let gw = start(&config(&upstream, r#", "log_metadata_keys": ["plan"]"#)).await;
    let cookie = login(gw.addr).await;
    let mut stream = Stream::open(gw.addr, &[("cookie", &cookie)]).await;
    let (name, data) = stream.event().await;
    assert_eq!(name, "connected");
    assert!(data.parse::<u64>().is_ok(), "{data}");

    let headers = [
        ("authorization", "Bearer sk-gateway-key-123"),
        ("x-portkey-metadata", r#"{"plan": "paid", "_user": "u-42"}"#),
        ("x-portkey-trace-id", "trace-console-1"),
    ];
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"My card is 4111 1111 1111 1111"}]}"#;
    let e = post(gw.addr, PATH, &headers, body).await;
    assert_eq!(e.status, 200, "{}", e.text());

    let entry = stream.log().await;
    assert!(entry["id"].as_u64().unwrap() >= 1);
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["endpoint"], PATH);
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["provider"], "up");
    assert_eq!(entry["requestOptions"][0]["provider"], "up");
    assert_eq!(entry["trace_id"], "trace-console-1");
    assert_eq!(entry["usage"]["total_tokens"], 19);
    assert_eq!(entry["outcome"], "complete");
    assert_eq!(entry["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(entry["attempts"][0]["outcome"], "200");
    assert!(entry["duration"].as_f64().unwrap() >= entry["ttfb"].as_f64().unwrap());
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    // Metadata values only for the keys the file lets through.
    assert_eq!(entry["metadata"]["plan"], "paid");
    assert_eq!(entry["metadata"]["_user"], "<redacted>");
    // No prompt, no answer, no key, no header.
    let text = entry.to_string();
    for secret in [
        "4111",
        "jane.doe",
        "sk-gateway-key-123",
        "sk-upstream-secret",
        "authorization",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(entry.get("request").is_none() && entry.get("response").is_none());
}

#[tokio::test]
async fn with_log_bodies_prompts_and_answers_are_shown_redacted() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().content("Mail me at jane.doe@example.com"));
    let gw = start(&config(
        &upstream,
        r#", "console": {"log_bodies": true, "buffer": 5}"#,
    ))
    .await;
    // A request before any console connects is not recorded.
    let auth = [("authorization", "Bearer sk-gateway-key-123")];
    assert_eq!(post(gw.addr, PATH, &auth, CHAT).await.status, 200);
    let bearer = format!("Bearer {ADMIN}");
    let mut stream = Stream::open(gw.addr, &[("authorization", &bearer)]).await;
    assert_eq!(stream.event().await.0, "connected");
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"My card is 4111 1111 1111 1111"}]}"#;
    let e = post(gw.addr, PATH, &auth, body).await;
    assert_eq!(e.status, 200);
    let entry = stream.log().await;
    assert_eq!(entry["stream"], true);
    let request = entry["request"].as_str().unwrap();
    assert!(
        request.contains("My card is") && !request.contains("4111 1111"),
        "{request}"
    );
    let response = entry["response"].as_str().unwrap();
    assert!(
        response.starts_with("Mail me at") && !response.contains("jane.doe"),
        "{response}"
    );

    // A console that opens now is shown what was kept.
    let mut second = Stream::open(gw.addr, &[("authorization", &bearer)]).await;
    assert_eq!(second.event().await.0, "connected");
    assert_eq!(second.log().await["id"], entry["id"]);
}

#[tokio::test]
async fn refused_requests_and_failed_attempts_are_logged_too() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(503));
    let gw = start(&config(&upstream, "")).await;
    let bearer = format!("Bearer {ADMIN}");
    let mut stream = Stream::open(gw.addr, &[("authorization", &bearer)]).await;
    stream.event().await;
    // No gateway key: refused before any upstream call.
    assert_eq!(post(gw.addr, PATH, &[], CHAT).await.status, 401);
    let entry = stream.log().await;
    assert_eq!(entry["status"], 401);
    assert_eq!(entry["attempts"], Value::Null);
    let auth = [("authorization", "Bearer sk-gateway-key-123")];
    assert_eq!(post(gw.addr, PATH, &auth, CHAT).await.status, 503);
    let entry = stream.log().await;
    assert_eq!(entry["status"], 503);
    assert_eq!(entry["attempts"][0]["outcome"], "503");
}

#[tokio::test]
async fn the_tree_shows_a_breaker_that_opened() {
    let failing = FakeUpstream::start().await;
    failing.set(Plan::ok().status(500));
    let good = FakeUpstream::start().await;
    let json = format!(
        r#"{{"server": {{"admin_token": "{ADMIN}"}},
            "providers": {{"bad": {{"provider": "openai", "base_url": "{}"}},
                           "good": {{"provider": "openai", "base_url": "{}"}}}},
            "config": {{"strategy": {{"mode": "fallback"}},
                        "circuit_breaker": {{"consecutive_failures": 2, "cooldown_ms": 60000}},
                        "targets": [{{"virtual_key": "bad"}}, {{"virtual_key": "good", "weight": 2}}]}}}}"#,
        failing.base_url(),
        good.base_url()
    );
    let gw = start(&json).await;
    let bearer = format!("Bearer {ADMIN}");
    let tree = get(gw.addr, "/console/api/tree", &[("authorization", &bearer)])
        .await
        .json();
    assert_eq!(tree["routing"]["mode"], "fallback");
    assert_eq!(tree["routing"]["targets"][0]["provider"], "bad");
    for _ in 0..3 {
        assert_eq!(post(gw.addr, PATH, &[], CHAT).await.status, 200);
    }
    let tree = get(gw.addr, "/console/api/tree", &[("authorization", &bearer)])
        .await
        .json();
    let targets = &tree["routing"]["targets"];
    assert_eq!(targets[0]["breaker_state"], "open", "{tree}");
    assert_eq!(targets[1]["breaker_state"], "closed", "{tree}");
    assert_eq!(targets[1]["weight"], 2.0);
    let kinds: Vec<&str> = tree["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["openai-compatible", "openai-compatible"]);
}

#[tokio::test]
async fn the_limits_view_is_the_limits_document() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        r#", "limits": [{"name": "global", "usage_limits": {"type": "tokens", "credit_limit": 100000}}]"#,
    ))
    .await;
    let auth = [("authorization", "Bearer sk-gateway-key-123")];
    assert_eq!(post(gw.addr, PATH, &auth, CHAT).await.status, 200);
    let cookie = login(gw.addr).await;
    let doc = get(gw.addr, "/console/api/limits", &[("cookie", &cookie)])
        .await
        .json();
    let scopes = doc["data"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{doc}");
    assert_eq!(scopes[0]["level"], "request");
    assert!(scopes[0]["used"].as_u64().unwrap() > 0, "{doc}");
}

#[tokio::test]
async fn a_connected_console_does_not_hold_a_shutdown() {
    let upstream = FakeUpstream::start().await;
    // A grace far longer than the test may take: the console's stream must end at once.
    let gw = start_with_grace(&config(&upstream, ""), std::time::Duration::from_secs(600)).await;
    let bearer = format!("Bearer {ADMIN}");
    let mut stream = Stream::open(gw.addr, &[("authorization", &bearer)]).await;
    assert_eq!(stream.event().await.0, "connected");
    gw.shutdown().await;
    // The body ended cleanly (its last chunk), not with the server's shutdown error event.
    let rest = stream.until(b"0\r\n\r\n").await;
    assert!(!rest.contains("server_shutting_down"), "{rest}");
}
