//! Saved configs (`x-portkey-config: ID`) and prompt templates
//! (`POST /v1/prompts/ID/completions` and `/render`) kept in the server's file, over real
//! loopback HTTP.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use support::{CHAT, CHAT_STREAM, post, start};

const PATH: &str = "/v1/chat/completions";

async fn setup(extra: &str) -> (FakeUpstream, FakeUpstream, support::Running) {
    let a = FakeUpstream::start().await;
    let b = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{
              "a": {{"provider": "openai", "base_url": "{}", "api_key": "ka"}},
              "b": {{"provider": "openai", "base_url": "{}", "api_key": "kb"}}
            }},
            "config": {{"virtual_key": "a"}},
            "configs": {{"to-b": {{"virtual_key": "b", "override_params": {{"model": "saved-model"}}}}}},
            "partials": {{"tone": "You are terse, {{{{name}}}}."}},
            "prompts": {{
              "summarise": {{
                "messages": [{{"role": "system", "content": "{{{{> tone}}}}"}},
                             {{"role": "user", "content": "Summarise: {{{{text}}}}"}}],
                "parameters": {{"model": "gpt-4o-mini", "temperature": 0.2}},
                "config": "to-b"
              }},
              "plain": {{"messages": [{{"role": "user", "content": "{{{{q}}}}"}}], "virtual_key": "a"}}
            }}{extra}}}"#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    (a, b, gw)
}

#[tokio::test]
async fn a_saved_config_is_used_by_id() {
    let (a, b, gw) = setup("").await;
    let e = post(gw.addr, PATH, &[("x-portkey-config", "to-b")], CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!((a.hits(), b.hits()), (0, 1));
    assert_eq!(b.last_request().unwrap().json()["model"], "saved-model");
    let e = post(gw.addr, PATH, &[("x-portkey-config", "pc-nope")], CHAT).await;
    assert_eq!(e.status, 400);
    assert!(
        e.text().contains("unknown saved config `pc-nope`"),
        "{}",
        e.text()
    );
}

#[tokio::test]
async fn configs_may_come_from_a_directory() {
    let dir = std::env::temp_dir().join(format!("portcullis-configs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dir-b.json"), r#"{"virtual_key": "b"}"#).unwrap();
    let text = format!(
        r#"{{"providers": {{"b": {{"provider": "mock"}}}}, "configs": "{}"}}"#,
        dir.display()
    );
    let config = portcullis_gateway::Config::parse(&text, &|_| None).unwrap();
    assert!(config.configs.contains_key("dir-b"));
    std::fs::write(dir.join("bad.json"), r#"{"virtual_key": "nope"}"#).unwrap();
    let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
    assert_eq!(err.path(), "configs.bad.virtual_key");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn render_returns_the_request_without_calling_a_model() {
    let (a, b, gw) = setup("").await;
    let body = r#"{"variables": {"text": "a \"quoted\" line", "name": "Ann"}, "max_tokens": 50}"#;
    let e = post(gw.addr, "/v1/prompts/summarise/render", &[], body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["messages"][0]["content"], "You are terse, Ann.");
    assert_eq!(
        v["data"]["messages"][1]["content"],
        "Summarise: a \"quoted\" line"
    );
    assert_eq!(v["data"]["max_tokens"], 50);
    assert_eq!(v["data"]["temperature"], 0.2);
    assert!(v["data"].get("variables").is_none());
    assert_eq!(a.hits() + b.hits(), 0);
}

#[tokio::test]
async fn missing_variables_unknown_prompts_and_bad_bodies() {
    let (_a, _b, gw) = setup("").await;
    let e = post(
        gw.addr,
        "/v1/prompts/summarise/render",
        &[],
        r#"{"variables": {"text": "x"}}"#,
    )
    .await;
    assert_eq!(e.status, 400);
    assert!(e.text().contains("missing variable `name`"), "{}", e.text());
    let e = post(gw.addr, "/v1/prompts/nope/completions", &[], "{}").await;
    assert_eq!(e.status, 404);
    assert!(e.text().contains("unknown prompt `nope`"));
    let e = post(gw.addr, "/v1/prompts/plain/completions", &[], "{nope").await;
    assert_eq!(e.status, 400);
    let e = post(gw.addr, "/v1/prompts/plain/other", &[], "{}").await;
    assert_eq!(e.status, 404);
}

#[tokio::test]
async fn completions_run_through_the_prompts_route_streamed_or_not() {
    let (a, b, gw) = setup("").await;
    let body = r#"{"variables": {"text": "the report", "name": "Ann"}}"#;
    let e = post(gw.addr, "/v1/prompts/summarise/completions", &[], body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["object"], "chat.completion");
    // The saved config `to-b` routed it, and its override_params applied.
    assert_eq!((a.hits(), b.hits()), (0, 1));
    let sent = b.last_request().unwrap().json();
    assert_eq!(sent["model"], "saved-model");
    assert_eq!(sent["messages"][1]["content"], "Summarise: the report");
    assert_eq!(sent["temperature"], 0.2);
    // Streamed.
    let body = r#"{"variables": {"q": "hi"}, "stream": true}"#;
    let e = post(gw.addr, "/v1/prompts/plain/completions", &[], body).await;
    assert_eq!(e.status, 200);
    assert_eq!(e.header("content-type"), Some("text/event-stream"));
    assert!(e.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(a.hits(), 1);
    let _ = CHAT_STREAM;
}

#[tokio::test]
async fn prompts_need_the_gateway_key() {
    let (_a, _b, gw) = setup(r#", "server": {"api_keys": {"k": "key-12345678"}}"#).await;
    let body = r#"{"variables": {"q": "hi"}}"#;
    let e = post(gw.addr, "/v1/prompts/plain/completions", &[], body).await;
    assert_eq!(e.status, 401);
    let e = post(
        gw.addr,
        "/v1/prompts/plain/completions",
        &[("authorization", "Bearer key-12345678")],
        body,
    )
    .await;
    assert_eq!(e.status, 200);
}
