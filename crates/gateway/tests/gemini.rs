//! The native Gemini provider through the gateway, over real loopback HTTP: Google AI Studio
//! (`google`, alias `gemini`), Vertex AI with a service account (`vertex-ai`), and a Gemini
//! target falling back to an Anthropic one, both answering in OpenAI's shape.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::anthropic::{FakeAnthropic, Plan as ClaudePlan};
use portcullis_testkit::gemini::{FakeGemini, Plan};
use support::{CHAT, CHAT_STREAM, post, start};

const PATH: &str = "/v1/chat/completions";

#[tokio::test]
async fn google_answers_in_openai_shape_and_streams() {
    let gemini = FakeGemini::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{"g": {{"provider": "google", "base_url": "{}", "api_key": "g-key"}}}},
            "config": {{"virtual_key": "g", "override_params": {{"model": "gemini-2.0-flash"}}}}}}"#,
        gemini.url()
    ))
    .await;
    gemini.set(
        Plan::ok()
            .text("Hello from Gemini.")
            .usage(7, 4)
            .thoughts(3),
    );
    let e = post(gw.addr, PATH, &[("authorization", "Bearer client")], CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let v = e.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Gemini.");
    assert_eq!(v["usage"]["completion_tokens"], 7, "candidates + thoughts");
    let sent = gemini.last_request().unwrap();
    assert!(
        sent.path
            .contains("/models/gemini-2.0-flash:generateContent"),
        "{}",
        sent.path
    );
    assert!(!sent.path.contains("key="), "the key is never in the URL");
    assert_eq!(sent.header("x-goog-api-key"), Some("g-key"));
    assert_eq!(sent.header("authorization"), None);
    let e = post(gw.addr, PATH, &[], CHAT_STREAM).await;
    assert_eq!(e.status, 200);
    assert!(e.text().contains("chat.completion.chunk"));
    assert!(e.text().ends_with("data: [DONE]\n\n"), "{}", e.text());
}

#[tokio::test]
async fn a_gemini_target_falls_back_to_anthropic() {
    let gemini = FakeGemini::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{
              "g": {{"provider": "gemini", "base_url": "{}", "api_key": "g-key"}},
              "c": {{"provider": "anthropic", "base_url": "{}", "api_key": "c-key"}}
            }},
            "config": {{"strategy": {{"mode": "fallback"}}, "targets": [
              {{"virtual_key": "g", "override_params": {{"model": "gemini-2.0-flash"}}}},
              {{"virtual_key": "c", "override_params": {{"model": "claude-haiku-4-5"}}}}]}}}}"#,
        gemini.url(),
        claude.url()
    ))
    .await;
    gemini.set(Plan::ok().error(503, "The model is overloaded."));
    claude.set(ClaudePlan::ok().text("Claude answered."));
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        e.json()["choices"][0]["message"]["content"],
        "Claude answered."
    );
    assert_eq!(
        e.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    // And the other way round: Gemini answers in the same shape.
    gemini.set(Plan::ok().text("Gemini answered."));
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(
        e.json()["choices"][0]["message"]["content"],
        "Gemini answered."
    );
    assert_eq!(e.json()["object"], "chat.completion");
}

#[tokio::test]
async fn vertex_ai_signs_in_with_a_service_account() {
    let gemini = FakeGemini::start().await;
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../provider/tests/golden/gemini/test_only_service_account_key.pem"
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-vertex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sa.json");
    std::fs::write(&file, gemini.service_account_json(&pem)).unwrap();
    let gw = start(&format!(
        r#"{{"providers": {{"v": {{"provider": "vertex-ai", "base_url": "{}", "vertex_project": "p1", "vertex_region": "us-central1", "vertex_service_account_file": "{}"}}}},
            "config": {{"virtual_key": "v", "override_params": {{"model": "gemini-2.0-flash"}}}}}}"#,
        gemini.url(),
        file.display()
    ))
    .await;
    gemini.set(Plan::ok().text("From Vertex."));
    for _ in 0..3 {
        let e = post(gw.addr, PATH, &[], CHAT).await;
        assert_eq!(e.status, 200, "{}", e.text());
        assert_eq!(e.json()["choices"][0]["message"]["content"], "From Vertex.");
    }
    assert_eq!(gemini.tokens_issued().len(), 1, "one token, reused");
    let sent = gemini.last_request().unwrap();
    assert!(
        sent.path.contains("/projects/p1/locations/us-central1/"),
        "{}",
        sent.path
    );
    assert!(sent.header("authorization").unwrap().starts_with("Bearer "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vertex_needs_its_project_region_and_key_file() {
    for (provider, path) in [
        (
            r#"{"provider": "vertex-ai", "vertex_region": "r", "vertex_service_account_file": "f"}"#,
            "providers.v.vertex_project",
        ),
        (
            r#"{"provider": "vertex-ai", "vertex_project": "p", "vertex_service_account_file": "f"}"#,
            "providers.v.vertex_region",
        ),
        (
            r#"{"provider": "vertex-ai", "vertex_project": "p", "vertex_region": "r"}"#,
            "providers.v.vertex_service_account_file",
        ),
        (
            r#"{"provider": "vertex-ai", "vertex_project": "p", "vertex_region": "r", "vertex_service_account_file": "/nonexistent.json"}"#,
            "providers.v.vertex_service_account_file",
        ),
        (
            r#"{"provider": "google", "vertex_project": "p"}"#,
            "providers.v.vertex_project",
        ),
    ] {
        let text = format!(r#"{{"providers": {{"v": {provider}}}}}"#);
        let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
        assert_eq!(err.path(), path, "{provider}: {err}");
    }
}
