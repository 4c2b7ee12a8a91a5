//! Guardrails through the gateway, over real loopback HTTP: Portkey's hook forms on config
//! nodes and named guardrails from the file's `guardrails` section, 446 with no upstream call,
//! 246, PII redaction before the request leaves, inheritance, the cache never storing an answer
//! a guard failed, a deny mid-stream, and webhooks only to allowlisted origins.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, CHAT_STREAM, post, start};

const PATH: &str = "/v1/chat/completions";

fn config(upstream: &FakeUpstream, node: &str, extra: &str) -> String {
    format!(
        r#"{{"providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "k"}}}},
            "guardrails": {{
              "no-pii": {{"deny": true, "portcullis.pii": {{}}}},
              "redact-pii": {{"portcullis.pii": {{"redact": true}}}},
              "short": {{"deny": false, "wordCount": {{"maxWords": 3}}}}
            }},
            "config": {{"virtual_key": "up"{node}}}{extra}}}"#,
        upstream.base_url()
    )
}

fn ask(text: &str) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{text}"}}]}}"#)
}

#[tokio::test]
async fn a_denying_input_guardrail_answers_446_without_calling_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        r#", "input_guardrails": ["no-pii"]"#,
        "",
    ))
    .await;
    let e = post(gw.addr, PATH, &[], &ask("mail me at ann@corp.com")).await;
    assert_eq!(e.status, 446, "{}", e.text());
    let v = e.json();
    assert_eq!(v["error"]["type"], "hooks_failed");
    assert!(v["hook_results"]["before_request_hooks"].is_array(), "{v}");
    assert_eq!(upstream.hits(), 0);
    assert_eq!(
        post(gw.addr, PATH, &[], &ask("no personal data here"))
            .await
            .status,
        200
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn a_failing_output_guardrail_that_does_not_deny_is_246_and_never_cached() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().content("This answer has far more than three words in it."));
    let node = r#", "output_guardrails": ["short"], "cache": {"mode": "simple"}"#;
    let gw = start(&config(&upstream, node, "")).await;
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.status, 246, "{}", e.text());
    let v = e.json();
    assert!(
        v["choices"][0]["message"]["content"].is_string(),
        "the normal body: {v}"
    );
    assert!(v["hook_results"]["after_request_hooks"].is_array(), "{v}");
    let again = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(again.status, 246);
    assert_ne!(again.header("x-portkey-cache-status"), Some("HIT"));
    assert_eq!(upstream.hits(), 2, "an answer a guard failed is not stored");
}

#[tokio::test]
async fn pii_is_redacted_before_the_request_leaves() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        r#", "input_mutators": ["redact-pii"]"#,
        "",
    ))
    .await;
    let e = post(
        gw.addr,
        PATH,
        &[],
        &ask("call 555-867-5309 or write ann@corp.com"),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    let sent = upstream.last_request().unwrap().json();
    let content = sent["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(!content.contains("ann@corp.com"), "{content}");
    assert!(content.contains("[EMAIL_1]"), "{content}");
}

#[tokio::test]
async fn a_child_that_names_hooks_replaces_its_parents() {
    let upstream = FakeUpstream::start().await;
    let node = r#", "strategy": {"mode": "fallback"}, "input_guardrails": ["no-pii"], "targets": [{"virtual_key": "up", "input_guardrails": []}]"#;
    let text = config(&upstream, "", "").replace(
        r#""config": {"virtual_key": "up"}"#,
        &format!(r#""config": {{{}}}"#, &node[2..]),
    );
    let gw = start(&text).await;
    // The target's empty list replaced the root's guardrail.
    let e = post(gw.addr, PATH, &[], &ask("mail me at ann@corp.com")).await;
    assert_eq!(e.status, 200, "{}", e.text());
}

#[tokio::test]
async fn portkeys_guide_alias_and_header_configs_work_too() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        r#", "guardrails": {"input_guardrails": ["no-pii"], "on_fail": "block"}"#,
        "",
    ))
    .await;
    assert_eq!(
        post(gw.addr, PATH, &[], &ask("ann@corp.com")).await.status,
        446
    );
    // A client's config may carry hooks, named or inline.
    let header = r#"{"virtual_key": "up", "input_guardrails": [{"deny": true, "contains": {"operator": "none", "words": ["forbidden"]}}]}"#;
    let e = post(
        gw.addr,
        PATH,
        &[("x-portkey-config", header)],
        &ask("a forbidden word"),
    )
    .await;
    assert_eq!(e.status, 446, "{}", e.text());
    // ... but a webhook only to an origin the server allows.
    let hook = r#"{"virtual_key": "up", "input_guardrails": [{"deny": true, "webhook": {"webhookURL": "http://169.254.169.254/latest"}}]}"#;
    let e = post(gw.addr, PATH, &[("x-portkey-config", hook)], CHAT).await;
    assert_eq!(e.status, 400, "{}", e.text());
    assert!(
        e.text().contains("x-portkey-config.input_guardrails[0]"),
        "{}",
        e.text()
    );
}

#[tokio::test]
async fn an_output_guardrail_cuts_a_stream_with_an_error_event() {
    let upstream = FakeUpstream::start().await;
    // Long enough before the banned words that the text ahead of the guard's window (64 bytes
    // held back by default) reaches the client first.
    upstream.set(Plan::ok().content(
        "Hello there, this is a long and harmless opening that goes on for a while before it says anything it should not: the secret code is 1234 and more text follows.",
    ));
    let node = r#", "output_guardrails": [{"deny": true, "regexMatch": {"rule": "secret\\s+code", "not": true}}]"#;
    let gw = start(&config(&upstream, node, "")).await;
    let e = post(gw.addr, PATH, &[], CHAT_STREAM).await;
    let text = e.text();
    assert!(text.contains("hooks_failed"), "{text}");
    let before_error = &text[..text.find("\"hooks_failed\"").unwrap()];
    let streamed = before_error
        .rsplit_once("data: {\"error\"")
        .map_or(before_error, |(a, _)| a);
    assert!(
        streamed.contains("Hello"),
        "the text before the window reached the client: {text}"
    );
    assert!(!streamed.contains("secret code"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a cut stream never ends cleanly: {text}"
    );
}

#[test]
fn unknown_guardrails_and_bad_checks_name_their_path() {
    let upstream_free = r#"{"providers": {"m": {"provider": "mock"}}, "config": {"virtual_key": "m", "input_guardrails": ["missing"]}}"#;
    let err = portcullis_gateway::Config::parse(upstream_free, &|_| None).unwrap_err();
    assert!(
        err.path().starts_with("config.input_guardrails[0]"),
        "{err}"
    );
    let bad = r#"{"providers": {"m": {"provider": "mock"}}, "guardrails": {"g": {"wordCount": {"minWords": "x"}}}}"#;
    let err = portcullis_gateway::Config::parse(bad, &|_| None).unwrap_err();
    assert!(err.path().starts_with("guardrails.g"), "{err}");
    let origin = r#"{"server": {"webhook_allowlist": ["not a url"]}, "providers": {"m": {"provider": "mock"}}}"#;
    let err = portcullis_gateway::Config::parse(origin, &|_| None).unwrap_err();
    assert_eq!(err.path(), "server.webhook_allowlist[0]");
}

#[tokio::test]
async fn hook_results_carry_both_phases_though_the_hooks_sit_on_either_side_of_the_cache() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().content("This answer has far more than three words in it."));
    let node = r#", "input_guardrails": [{"deny": false, "wordCount": {"maxWords": 2}}], "output_guardrails": ["short"]"#;
    let gw = start(&config(&upstream, node, "")).await;
    // Both fail, neither denies: 246 with both lists.
    let e = post(gw.addr, PATH, &[], &ask("three words here")).await;
    assert_eq!(e.status, 246, "{}", e.text());
    let v = e.json();
    assert_eq!(
        v["hook_results"]["before_request_hooks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{v}"
    );
    assert_eq!(
        v["hook_results"]["after_request_hooks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{v}"
    );
    // The before hook passes, the after one fails: both lists still there.
    let e = post(gw.addr, PATH, &[], &ask("two words")).await;
    assert_eq!(e.status, 246);
    let v = e.json();
    assert_eq!(
        v["hook_results"]["before_request_hooks"][0]["verdict"], true,
        "{v}"
    );
    assert_eq!(
        v["hook_results"]["after_request_hooks"][0]["verdict"], false,
        "{v}"
    );
    // An after hook that denies: 446, with the before list too.
    let node = r#", "input_guardrails": [{"deny": false, "wordCount": {"maxWords": 2}}], "output_guardrails": [{"deny": true, "wordCount": {"maxWords": 3}}]"#;
    let gw = start(&config(&upstream, node, "")).await;
    let e = post(gw.addr, PATH, &[], &ask("three words here")).await;
    assert_eq!(e.status, 446, "{}", e.text());
    let v = e.json();
    assert_eq!(
        v["hook_results"]["before_request_hooks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{v}"
    );
    assert_eq!(
        v["hook_results"]["after_request_hooks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{v}"
    );
}
