//! The OpenAI-compatible provider against the fake upstream over loopback HTTP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::{Observation, Outcome, Report};
use portcullis_core::{Body, EdgeLayer, FactHeadersLayer};
use portcullis_provider::{Endpoint, HttpClient, OpenAi};
use portcullis_testkit::{FakeUpstream, Plan};
use tower::{Layer, Service, ServiceExt};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM_USAGE: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

fn provider(upstream: &FakeUpstream) -> OpenAi {
    OpenAi::builder(upstream.base_url())
        .api_key("sk-upstream-secret")
        .name("fake-openai")
        .header("openai-organization", "org-1")
        .build()
        .unwrap()
}

fn client_request(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-gateway-key")
        .header("x-portkey-api-key", "pk-secret")
        .header("x-portkey-config", r#"{"retry":{"attempts":2}}"#)
        .header("x-portkey-metadata", r#"{"_user":"u1"}"#)
        .header("cookie", "session=1")
        .header("x-custom-client", "yes")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn send(provider: OpenAi, req: Request<Full<Bytes>>) -> Response<Body> {
    FactHeadersLayer::new()
        .layer(EdgeLayer::new().layer(provider))
        .oneshot(req)
        .await
        .unwrap()
}

fn observation(r: &Response<Body>) -> Observation {
    r.extensions()
        .get::<Observation>()
        .expect("observed")
        .clone()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn report(o: &Observation) -> Arc<Report> {
    o.report().expect("reported")
}

#[tokio::test]
async fn non_stream_chat_passes_through_with_usage() {
    let upstream = FakeUpstream::start().await;
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portkey-provider"], "fake-openai");
    assert!(r.headers().contains_key("x-portkey-trace-id"));
    assert_eq!(
        ResponseFacts::get(&r).unwrap().provider.as_deref(),
        Some("fake-openai")
    );
    // The client's description of the connection (its socket addresses) is not copied into
    // every answer.
    assert!(
        r.extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
            .is_none()
    );
    let o = observation(&r);
    let body = text(r).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        portcullis_testkit::DEFAULT_CONTENT
    );
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.usage.unwrap().prompt_tokens, 12);
    assert_eq!(rep.usage.unwrap().completion_tokens, 7);
    assert_eq!(rep.text, portcullis_testkit::DEFAULT_CONTENT);

    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.body,
        CHAT.as_bytes(),
        "the body goes upstream untouched"
    );
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
    assert_eq!(seen.header("openai-organization"), Some("org-1"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    // The upstream's own authority, once (made when the provider was built).
    let host = upstream.addr().to_string();
    assert_eq!(seen.header("host"), Some(host.as_str()));
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    assert_eq!(
        seen.header("user-agent")
            .map(|u| u.starts_with("portcullis/")),
        Some(true)
    );
    for name in seen.headers.keys() {
        assert!(!name.as_str().starts_with("x-portkey-"), "{name} forwarded");
    }
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("x-custom-client"), None);
}

#[tokio::test]
async fn stream_with_client_usage_keeps_the_usage_chunk() {
    let upstream = FakeUpstream::start().await;
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT_STREAM_USAGE),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let o = observation(&r);
    let body = text(r).await;
    assert!(body.contains("\"usage\""), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
    let rep = report(&o);
    assert!(rep.stream);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.text, portcullis_testkit::DEFAULT_CONTENT);
    assert_eq!(rep.usage.unwrap().total_tokens, 19);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.body, CHAT_STREAM_USAGE.as_bytes());
    assert_eq!(seen.header("accept"), Some("text/event-stream"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
}

#[tokio::test]
async fn stream_without_client_usage_asks_upstream_and_hides_the_chunk() {
    let upstream = FakeUpstream::start().await;
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    let o = observation(&r);
    let body = text(r).await;
    assert!(
        !body.contains("\"usage\""),
        "the client did not ask for usage: {body}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));
    let rep = report(&o);
    assert_eq!(rep.usage.unwrap().total_tokens, 19);
    let sent = upstream.last_request().unwrap().json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"][0]["content"], "Say hello");
}

#[tokio::test]
async fn the_upstream_gets_the_bodys_length_whatever_the_client_said() {
    let upstream = FakeUpstream::start().await;
    let exact = CHAT.len().to_string();
    let zero_padded = format!("0{exact}");
    for said in [
        Some(exact.as_str()),
        Some("5"),
        Some(zero_padded.as_str()),
        None,
    ] {
        let mut req = client_request("/v1/chat/completions", CHAT);
        if let Some(said) = said {
            req.headers_mut()
                .insert("content-length", said.parse().unwrap());
        }
        let r = send(provider(&upstream), req).await;
        assert_eq!(r.status(), StatusCode::OK, "{said:?}");
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.body, CHAT.as_bytes(), "{said:?}");
        assert_eq!(
            seen.header("content-length"),
            Some(exact.as_str()),
            "{said:?}"
        );
        assert_eq!(seen.headers.get_all("content-length").iter().count(), 1);
    }
    // A body the provider rewrites (usage asked for on a stream) goes with its own length.
    let mut req = client_request("/v1/chat/completions", CHAT_STREAM);
    let said = CHAT_STREAM.len().to_string();
    req.headers_mut()
        .insert("content-length", said.parse().unwrap());
    send(provider(&upstream), req).await;
    let seen = upstream.last_request().unwrap();
    assert!(seen.body.len() > CHAT_STREAM.len());
    let length = seen.body.len().to_string();
    assert_eq!(seen.header("content-length"), Some(length.as_str()));
}

#[tokio::test]
async fn a_body_already_read_is_sent_as_it_reports_itself_empty() {
    // A library user may hand the provider a body they have read: hyper's client would send
    // what the body still has, and the length sent must say the same, or the upstream waits
    // for bytes that never come.
    let upstream = FakeUpstream::start().await;
    let mut body = portcullis_core::BufferedBody::new(CHAT);
    while body.frame().await.is_some() {}
    let req = Request::post("/v1/chat/completions")
        .header("content-length", CHAT.len())
        .body(body)
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), provider(&upstream).oneshot(req))
        .await
        .expect("the upstream is not left waiting for the body")
        .unwrap();
    drop(answer);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header("content-length"), Some("0"));
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn stream_without_any_usage_chunk_reports_none() {
    let upstream = FakeUpstream::start().await;
    let provider = OpenAi::builder(upstream.base_url())
        .stream_usage(false)
        .build()
        .unwrap();
    let r = send(
        provider,
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    let o = observation(&r);
    let body = text(r).await;
    assert!(body.ends_with("data: [DONE]\n\n"));
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.usage, None);
    assert_eq!(rep.text, portcullis_testkit::DEFAULT_CONTENT);
    assert_eq!(
        upstream.last_request().unwrap().body,
        CHAT_STREAM.as_bytes()
    );
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_body() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(429).retry_after("7"));
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn refused_connection_is_502() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = OpenAi::builder(format!("http://{addr}/v1"))
        .build()
        .unwrap();
    let r = send(provider, client_request("/v1/chat/completions", CHAT)).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    assert_eq!(v["error"]["code"], "upstream_connect_failed");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("refused"),
        "{v}"
    );
}

#[tokio::test]
async fn upstream_closing_without_answer_is_502() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().disconnect());
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["code"], "upstream_protocol_error");
}

#[tokio::test(start_paused = true)]
async fn slow_upstream_is_504() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().delay(Duration::from_secs(60)));
    let provider = OpenAi::builder(upstream.base_url())
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = send(provider, client_request("/v1/chat/completions", CHAT)).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(v["error"]["message"].as_str().unwrap().contains("5000 ms"));
}

#[tokio::test(start_paused = true)]
async fn without_a_response_timeout_a_slow_upstream_is_waited_for() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().delay(Duration::from_secs(700)));
    let provider = OpenAi::builder(upstream.base_url())
        .response_timeout(Duration::from_secs(5))
        .no_response_timeout()
        .build()
        .unwrap();
    // Past the default's 600 s and the 5 s set before: no 504 of the provider's own.
    let started = tokio::time::Instant::now();
    let r = send(provider, client_request("/v1/chat/completions", CHAT)).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(700));
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_ends_with_an_error_event() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().chunk_delay(Duration::from_secs(30)));
    let provider = OpenAi::builder(upstream.base_url())
        .idle_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let r = send(
        provider,
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let body = text(r).await;
    assert!(body.contains("\"code\":\"stream_interrupted\""), "{body}");
    assert!(body.contains("10000 ms"), "{body}");
    assert!(!body.contains("[DONE]"));
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test]
async fn stream_broken_midway_reaches_the_client_as_an_error_event() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().break_after(2));
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    // Read frame by frame: the body must end cleanly, after an error event.
    let mut body = r.into_body();
    let mut got = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the client sees an event, not a broken body");
        got.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    let last = got.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "stream_interrupted");
    assert!(!got.contains("[DONE]"));
    let rep = report(&o);
    assert!(matches!(rep.outcome, Outcome::Failed(_)));
    assert_eq!(rep.text, "Hello from ", "the two pieces that arrived");
}

#[tokio::test]
async fn stream_ending_without_done_is_reported_failed() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().end_without_done(3));
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    let o = observation(&r);
    let body = text(r).await;
    assert!(body.contains("stream_interrupted"), "{body}");
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test(start_paused = true)]
async fn client_dropping_a_stream_reports_cancelled_with_partial_text() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().chunk_delay(Duration::from_millis(1)));
    let r = send(
        provider(&upstream),
        client_request("/v1/chat/completions", CHAT_STREAM),
    )
    .await;
    let o = observation(&r);
    let mut body = r.into_body();
    let mut got = String::new();
    while !got.contains("Hello") {
        let frame = body.frame().await.unwrap().unwrap();
        got.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    drop(body);
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Cancelled);
    assert!(rep.text.starts_with("Hello"), "{:?}", rep.text);
    assert_ne!(rep.text, portcullis_testkit::DEFAULT_CONTENT);
}

#[tokio::test]
async fn other_endpoints_pass_through() {
    let upstream = FakeUpstream::start().await;
    let p = provider(&upstream);
    let r = send(
        p.clone(),
        client_request("/v1/embeddings", r#"{"model":"e","input":"x"}"#),
    )
    .await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(report(&o).usage.unwrap().prompt_tokens, 12);

    let r = send(
        p.clone(),
        client_request("/completions", r#"{"model":"c","prompt":"x"}"#),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/completions");

    let req = Request::get("/v1/models?limit=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(p, req).await;
    assert_eq!(r.status(), 200);
    let seen = upstream.last_request().unwrap();
    // The query is the client's and is dropped (see `query_strings_are_dropped_unless_allowed`).
    assert_eq!(seen.path, "/v1/models");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("content-type"), None);
    assert_eq!(seen.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn query_strings_are_dropped_unless_allowed() {
    let upstream = FakeUpstream::start().await;
    let path = "/v1/chat/completions?api-version=evil&key=x";
    let r = send(provider(&upstream), client_request(path, CHAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().path,
        "/v1/chat/completions"
    );

    let allowing = OpenAi::builder(upstream.base_url())
        .allow_query_params(["api-version"])
        .allow_query_params(vec![String::from("trace")])
        .build()
        .unwrap();
    let path =
        "/v1/chat/completions?key=x&api-version=2024-10-21&api%2Dversion=2&trace=%20t&a=1;trace=2";
    let r = send(allowing.clone(), client_request(path, CHAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().path,
        "/v1/chat/completions?api-version=2024-10-21&trace=%20t"
    );
    let r = send(allowing, client_request("/v1/embeddings?key=x", CHAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/embeddings");
}

#[tokio::test]
async fn unknown_paths_and_methods_never_reach_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let p = provider(&upstream);
    let r = send(p.clone(), client_request("/v1/files", "{}")).await;
    assert_eq!(r.status(), 404);
    let r = send(p.clone(), client_request("/v1/../admin", "{}")).await;
    assert_eq!(r.status(), 404);
    let req = Request::get("/v1/chat/completions")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(p, req).await;
    assert_eq!(r.status(), 405);
    assert_eq!(upstream.hits(), 0);
}

fn with_endpoint(mut req: Request<Full<Bytes>>, endpoint: Endpoint) -> Request<Full<Bytes>> {
    req.extensions_mut().insert(endpoint);
    req
}

#[tokio::test]
async fn provider_pinned_to_chat_serves_a_route_named_chat() {
    let upstream = FakeUpstream::start().await;
    let pinned = OpenAi::builder(format!("{}/openai/v1/", upstream.url()))
        .api_key("sk-upstream-secret")
        .endpoint(Endpoint::Chat)
        .build()
        .unwrap();
    assert_eq!(pinned.endpoint(), Some(Endpoint::Chat));

    let r = send(pinned.clone(), client_request("/chat", CHAT)).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        portcullis_testkit::DEFAULT_CONTENT
    );
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, CHAT.as_bytes());
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-upstream-secret")
    );

    // Streams too, with usage asked for as on the path-derived route.
    let r = send(pinned.clone(), client_request("/chat", CHAT_STREAM)).await;
    assert_eq!(r.status(), 200);
    let o = observation(&r);
    assert!(text(r).await.ends_with("data: [DONE]\n\n"));
    assert!(report(&o).usage.is_some());
    assert_eq!(
        upstream.last_request().unwrap().path,
        "/openai/v1/chat/completions"
    );

    // The pin beats a path that names another endpoint; any path at all is served.
    for path in ["/v1/embeddings", "/", "/api/v2/anything?x=1"] {
        let r = send(pinned.clone(), client_request(path, CHAT)).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            upstream.last_request().unwrap().path,
            "/openai/v1/chat/completions",
            "{path}"
        );
    }

    // The method is still the endpoint's: nothing reaches the upstream.
    let hits = upstream.hits();
    let req = Request::get("/chat").body(Full::new(Bytes::new())).unwrap();
    let r = send(pinned, req).await;
    assert_eq!(r.status(), 405);
    assert_eq!(upstream.hits(), hits);
}

#[tokio::test]
async fn an_endpoint_extension_overrides_the_pin_and_the_path() {
    let upstream = FakeUpstream::start().await;
    let pinned = OpenAi::builder(upstream.base_url())
        .endpoint(Endpoint::Chat)
        .build()
        .unwrap();
    let req = with_endpoint(client_request("/chat", CHAT), Endpoint::Embeddings);
    let r = send(pinned.clone(), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/embeddings");

    let req = Request::get("/chat").body(Full::new(Bytes::new())).unwrap();
    let r = send(pinned, with_endpoint(req, Endpoint::Models)).await;
    assert_eq!(r.status(), 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/models")
    );

    // Unpinned, the extension beats the path, a known one or one that names nothing.
    let unpinned = provider(&upstream);
    let req = with_endpoint(
        client_request("/v1/chat/completions", CHAT),
        Endpoint::Completions,
    );
    assert_eq!(send(unpinned.clone(), req).await.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/v1/completions");
    let req = with_endpoint(client_request("/chat", CHAT), Endpoint::Chat);
    assert_eq!(send(unpinned.clone(), req).await.status(), 200);
    assert_eq!(
        upstream.last_request().unwrap().path,
        "/v1/chat/completions"
    );

    // The extension's endpoint decides the method too.
    let hits = upstream.hits();
    let req = with_endpoint(
        client_request("/v1/chat/completions", CHAT),
        Endpoint::Models,
    );
    assert_eq!(send(unpinned, req).await.status(), 405);
    assert_eq!(upstream.hits(), hits);
}

#[tokio::test]
async fn unpinned_provider_reads_the_incoming_path() {
    let upstream = FakeUpstream::start().await;
    let p = provider(&upstream);
    assert_eq!(p.endpoint(), None);
    let r = send(p.clone(), client_request("/chat", CHAT)).await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["code"], "unknown_endpoint");
    assert_eq!(v["error"]["message"], "unknown endpoint POST /chat");
    assert_eq!(upstream.hits(), 0);

    for (path, upstream_path) in [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/chat/completions", "/v1/chat/completions"),
        ("/v1/completions", "/v1/completions"),
        ("/embeddings", "/v1/embeddings"),
    ] {
        assert_eq!(
            send(p.clone(), client_request(path, CHAT)).await.status(),
            200
        );
        assert_eq!(upstream.last_request().unwrap().path, upstream_path);
    }
}

#[tokio::test]
async fn providers_share_a_pooled_client() {
    let upstream = FakeUpstream::start().await;
    let client = HttpClient::new();
    let a = OpenAi::builder(upstream.base_url())
        .client(client.clone())
        .build()
        .unwrap();
    let b = OpenAi::builder(upstream.url())
        .client(client)
        .build()
        .unwrap();
    assert_eq!(
        send(a, client_request("/v1/chat/completions", CHAT))
            .await
            .status(),
        200
    );
    let r = send(b, client_request("/v1/chat/completions", CHAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last_request().unwrap().path, "/chat/completions");
}

#[tokio::test]
async fn provider_is_always_ready_and_each_clone_works() {
    let upstream = FakeUpstream::start().await;
    let mut p = provider(&upstream);
    // Readiness contract: poll_ready, then call that same handle; a clone readies itself.
    let ready = p.ready().await.unwrap();
    let req = Request::post("/v1/chat/completions")
        .body(portcullis_core::BufferedBody::new(CHAT))
        .unwrap();
    assert_eq!(ready.call(req).await.unwrap().status(), 200);
    let mut clone = p.clone();
    let req = Request::post("/v1/chat/completions")
        .body(portcullis_core::BufferedBody::new(CHAT))
        .unwrap();
    let r = clone.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_configs_are_build_errors() {
    let err = |b: portcullis_provider::openai::OpenAiBuilder| b.build().unwrap_err().to_string();
    assert!(err(OpenAi::builder("not a url at all")).contains("not a URL"));
    assert!(err(OpenAi::builder("ftp://x/v1")).contains("http:// or https://"));
    assert!(err(OpenAi::builder("/v1")).contains("http:// or https://"));
    assert!(err(OpenAi::builder("http://x/v1?a=b")).contains("query"));
    assert!(
        err(OpenAi::builder("http://x").header("authorization", "x"))
            .contains("cannot be configured")
    );
    assert!(err(OpenAi::builder("http://x").header("bad name", "x")).contains("not a header name"));
    for reserved in ["content-length", "Host", "content-type", "connection"] {
        assert!(
            err(OpenAi::builder("http://x").key_header(reserved)).contains("cannot carry the key"),
            "{reserved}"
        );
    }
    assert!(
        OpenAi::builder("http://x")
            .key_header("authorization")
            .build()
            .is_ok()
    );
    assert!(err(OpenAi::builder("http://x").api_key("a\nb")).contains("api_key"));
    assert!(
        err(OpenAi::builder("http://x").allow_query_params(["key&x"]))
            .contains("allow_query_params")
    );
    let debug = format!(
        "{:?}",
        OpenAi::builder("http://x").api_key("sk-very-secret")
    );
    assert!(!debug.contains("sk-very-secret"), "{debug}");
}
