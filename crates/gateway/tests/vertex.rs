//! One `vertex-ai` provider through the gateway, over real loopback HTTP: Claude models
//! (Anthropic's publisher, `rawPredict`) and Gemini models (Google's) from one entry and one
//! service-account token, and Vertex AI's text embeddings.

#[allow(unused_imports)]
mod support;

use std::path::PathBuf;

use portcullis_testkit::anthropic::Plan as ClaudePlan;
use portcullis_testkit::gemini::{FakeGemini, Plan};
use serde_json::json;
use support::{post, start};

const CHAT: &str = "/v1/chat/completions";
const ROUTE: &str = "/v1/projects/p1/locations/us-central1/publishers";

/// A service-account key file for `gemini`'s token endpoint, in a directory of the test's.
fn key_file(gemini: &FakeGemini, test: &str) -> PathBuf {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../provider/tests/golden/gemini/test_only_service_account_key.pem"
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-vertex-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sa.json");
    std::fs::write(&file, gemini.service_account_json(&pem)).unwrap();
    file
}

/// The `vertex-ai` provider entry `v`, with `extra` settings (JSON members, each followed by
/// a comma).
fn provider(gemini: &FakeGemini, file: &std::path::Path, extra: &str) -> String {
    format!(
        r#""v": {{"provider": "vertex-ai", {extra} "base_url": "{}", "vertex_project": "p1",
            "vertex_region": "us-central1", "vertex_service_account_file": "{}"}}"#,
        gemini.url(),
        file.display()
    )
}

fn chat(model: &str, stream: bool) -> String {
    json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]})
    .to_string()
}

#[tokio::test]
async fn one_vertex_provider_serves_claude_gemini_and_embeddings() {
    let gemini = FakeGemini::start().await;
    let file = key_file(&gemini, "both");
    let gw = start(&format!(
        r#"{{"providers": {{{}}}, "config": {{"virtual_key": "v"}}}}"#,
        provider(
            &gemini,
            &file,
            r#""max_tokens": 777, "anthropic_beta": ["context-1m-2025-08-07"],"#
        )
    ))
    .await;
    gemini.set(Plan::ok().text("From Gemini."));
    gemini.set_claude(ClaudePlan::ok().text("From Claude."));

    let e = post(
        gw.addr,
        CHAT,
        &[],
        &chat("claude-sonnet-4-5@20250929", false),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["choices"][0]["message"]["content"], "From Claude.");
    assert_eq!(e.header("x-portkey-provider"), Some("v"));
    let sent = gemini.last_request().unwrap();
    assert_eq!(
        sent.path,
        format!("{ROUTE}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.fake-1"));
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(sent.header("anthropic-beta"), Some("context-1m-2025-08-07"));
    let body = sent.json();
    assert!(body.get("model").is_none(), "{body}");
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(body["max_tokens"], 777);

    let e = post(
        gw.addr,
        CHAT,
        &[],
        &chat("anthropic.claude-haiku-4-5", true),
    )
    .await;
    assert_eq!(e.status, 200);
    assert!(e.text().contains("From "), "{}", e.text());
    assert!(e.text().ends_with("data: [DONE]\n\n"), "{}", e.text());
    assert!(
        gemini
            .last_request()
            .unwrap()
            .path
            .ends_with("/anthropic/models/claude-haiku-4-5:streamRawPredict")
    );

    let e = post(gw.addr, CHAT, &[], &chat("gemini-2.5-flash", false)).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["choices"][0]["message"]["content"], "From Gemini.");
    assert_eq!(
        gemini.last_request().unwrap().path,
        format!("{ROUTE}/google/models/gemini-2.5-flash:generateContent")
    );

    let input = json!({"model": "text-embedding-005", "input": ["one two", "three"],
        "dimensions": 4});
    let e = post(gw.addr, "/v1/embeddings", &[], &input.to_string()).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(
        gemini.last_request().unwrap().path,
        format!("{ROUTE}/google/models/text-embedding-005:predict")
    );

    assert_eq!(
        gemini.tokens_issued().len(),
        1,
        "one token for both publishers"
    );

    let e = post(gw.addr, CHAT, &[], &chat("meta.llama-4-maverick", false)).await;
    assert_eq!(e.status, 400);
    assert!(e.text().contains("meta.llama-4-maverick"), "{}", e.text());
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn claude_on_vertex_falls_back_to_gemini_on_the_same_provider() {
    let gemini = FakeGemini::start().await;
    let file = key_file(&gemini, "fallback");
    let gw = start(&format!(
        r#"{{"providers": {{{}}},
            "config": {{"strategy": {{"mode": "fallback"}}, "targets": [
              {{"virtual_key": "v", "override_params": {{"model": "claude-opus-4-1"}}}},
              {{"virtual_key": "v", "override_params": {{"model": "gemini-2.5-pro"}}}}]}}}}"#,
        provider(&gemini, &file, "")
    ))
    .await;
    gemini.set_claude(ClaudePlan::ok().status(529));
    gemini.set(Plan::ok().text("Gemini took over."));
    let e = post(gw.addr, CHAT, &[], &chat("any", false)).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        e.json()["choices"][0]["message"]["content"],
        "Gemini took over."
    );
    assert_eq!(
        e.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    let paths: Vec<String> = gemini
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p != "/token")
        .collect();
    assert_eq!(
        paths,
        [
            format!("{ROUTE}/anthropic/models/claude-opus-4-1:rawPredict"),
            format!("{ROUTE}/google/models/gemini-2.5-pro:generateContent"),
        ]
    );
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn claude_settings_belong_to_vertex_and_are_checked() {
    for (provider, path) in [
        (
            r#"{"provider": "vertex-ai", "vertex_project": "p", "vertex_region": "r", "vertex_service_account_file": "f", "max_tokens": 0}"#,
            "providers.v.max_tokens",
        ),
        (
            r#"{"provider": "vertex-ai", "vertex_project": "p", "vertex_region": "r", "vertex_service_account_file": "f", "anthropic_beta": [1]}"#,
            "providers.v.anthropic_beta[0]",
        ),
        (
            r#"{"provider": "google", "api_key": "k", "max_tokens": 10}"#,
            "providers.v.max_tokens",
        ),
    ] {
        let text = format!(r#"{{"providers": {{"v": {provider}}}}}"#);
        let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
        assert_eq!(err.path(), path, "{provider}: {err}");
    }
}
