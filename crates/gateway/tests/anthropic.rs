//! The native Anthropic provider through the gateway, over real loopback HTTP: answers in
//! OpenAI's shape, JSON and streamed, behind fallback from an OpenAI-compatible target, the
//! cache and the provider header.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use portcullis_testkit::anthropic::{FakeAnthropic, Plan};
use support::{CHAT, CHAT_STREAM, post, start};

const PATH: &str = "/v1/chat/completions";

async fn setup(config: &str) -> (FakeUpstream, FakeAnthropic, support::Running) {
    let openai = FakeUpstream::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{
              "gpt": {{"provider": "openai", "base_url": "{}", "api_key": "k-openai"}},
              "claude": {{"provider": "anthropic", "base_url": "{}", "api_key": "k-claude", "max_tokens": 512}}
            }},
            "config": {config}}}"#,
        openai.base_url(),
        claude.url()
    ))
    .await;
    (openai, claude, gw)
}

#[tokio::test]
async fn anthropic_answers_in_openai_shape() {
    let (_openai, claude, gw) =
        setup(r#"{"virtual_key": "claude", "override_params": {"model": "claude-sonnet-4-5"}}"#)
            .await;
    claude.set(
        Plan::ok()
            .text("Hello from Claude.")
            .usage(12, 5)
            .cache(4, 0),
    );
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Claude.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 16, "input + cache reads");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(e.header("x-portkey-provider"), Some("claude"));
    let sent = claude.last_request().unwrap();
    assert_eq!(sent.header("x-api-key"), Some("k-claude"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.json()["model"], "claude-sonnet-4-5");
    assert_eq!(sent.json()["max_tokens"], 512, "the configured default");
}

#[tokio::test]
async fn anthropic_streams_as_openai_chunks() {
    let (_openai, claude, gw) = setup(r#"{"virtual_key": "claude"}"#).await;
    claude.set(Plan::ok().text("Streamed from Claude."));
    let e = post(gw.addr, PATH, &[], CHAT_STREAM).await;
    assert_eq!(e.status, 200);
    assert_eq!(e.header("content-type"), Some("text/event-stream"));
    let text = e.text();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let content: String = text
        .split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "Streamed from Claude.");
}

#[tokio::test]
async fn an_openai_target_falls_back_to_anthropic() {
    let (openai, claude, gw) = setup(
        r#"{"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "gpt"}, {"virtual_key": "claude", "override_params": {"model": "claude-haiku-4-5"}}]}"#,
    )
    .await;
    openai.set(portcullis_testkit::Plan::ok().status(503));
    claude.set(Plan::ok().text("Claude took over."));
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        e.json()["choices"][0]["message"]["content"],
        "Claude took over."
    );
    assert_eq!(
        e.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    assert_eq!((openai.hits(), claude.hits()), (1, 1));
}

#[tokio::test]
async fn anthropic_errors_keep_their_status_in_openai_shape() {
    let (_openai, claude, gw) = setup(r#"{"virtual_key": "claude"}"#).await;
    claude.set(Plan::ok().error(529, "overloaded_error", "Overloaded"));
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.status, 529);
    assert_eq!(e.json()["error"]["type"], "overloaded_error");
    // A field Anthropic has no equivalent for is a 400 naming it, before any call.
    let before = claude.hits();
    let body = r#"{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let e = post(gw.addr, PATH, &[], body).await;
    assert_eq!(e.status, 400);
    assert!(
        e.text().contains("`n`") || e.text().contains("\"n\""),
        "{}",
        e.text()
    );
    assert_eq!(claude.hits(), before);
}

#[tokio::test]
async fn answers_from_anthropic_are_cached_like_any_other() {
    let (_openai, claude, gw) =
        setup(r#"{"virtual_key": "claude", "cache": {"mode": "simple"}}"#).await;
    claude.set(Plan::ok().text("Cached Claude."));
    let first = post(gw.addr, PATH, &[], CHAT).await;
    let second = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(first.header("x-portkey-cache-status"), Some("MISS"));
    assert_eq!(second.header("x-portkey-cache-status"), Some("HIT"));
    assert_eq!(
        second.json()["choices"][0]["message"]["content"],
        "Cached Claude."
    );
    assert_eq!(claude.hits(), 1);
}
