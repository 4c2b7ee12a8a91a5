//! Portkey's request headers over real HTTP: each is acted on, accepted as informational,
//! or refused with a 400 naming it, never silently ignored; `x-portkey-provider` (`NAME`,
//! `@NAME`), model slugs (`@NAME/MODEL`), Portkey's hybrid mode (a config without a target
//! plus the provider header) and langroid's `x-portkey-retry`.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, post, start};

const PATH: &str = "/v1/chat/completions";

struct Two {
    a: FakeUpstream,
    b: FakeUpstream,
    gw: support::Running,
}

/// Providers `a` (the file's tree) and `b`, and one named like a provider kind.
async fn two() -> Two {
    let a = FakeUpstream::start().await;
    let b = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{
              "a": {{"provider": "openai", "base_url": "{}", "api_key": "ka"}},
              "b": {{"provider": "openai", "base_url": "{}", "api_key": "kb"}},
              "openai": {{"provider": "openai", "base_url": "{}", "api_key": "kb"}}
            }},
            "config": {{"virtual_key": "a"}}}}"#,
        a.base_url(),
        b.base_url(),
        b.base_url()
    ))
    .await;
    Two { a, b, gw }
}

#[tokio::test]
async fn informational_and_unknown_headers_are_accepted() {
    let t = two().await;
    let headers = [
        ("x-portkey-package-version", "portkey-ai/2.3.4"),
        ("x-portkey-runtime", "python"),
        ("x-portkey-runtime-version", "3.11"),
        ("x-portkey-strict-open-ai-compliance", "false"),
        ("x-portkey-debug", "false"),
        ("x-portkey-api-key", ""),
        ("x-portkey-span-name", "s"),
        ("x-portkey-something-new", "1"),
    ];
    let e = post(t.gw.addr, PATH, &headers, CHAT).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(t.a.hits(), 1);
}

#[tokio::test]
async fn headers_not_acted_on_are_refused_by_name() {
    let t = two().await;
    for (name, value) in [
        ("x-portkey-forward-headers", "x-user-id"),
        ("x-portkey-aws-secret-access-key", "secret"),
        ("x-portkey-azure-resource-name", "r"),
        ("x-portkey-vertex-service-account-json", "{}"),
        ("x-portkey-openai-project", "p"),
        ("x-portkey-default-input-guardrails", "[]"),
        ("x-portkey-prompt-id", "pp-1"),
        ("x-portkey-huggingface-base-url", "http://evil"),
    ] {
        let e = post(t.gw.addr, PATH, &[(name, value)], CHAT).await;
        assert_eq!(e.status, 400, "{name}");
        assert!(
            e.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(name),
            "{name}: {}",
            e.text()
        );
    }
    assert_eq!(t.a.hits() + t.b.hits(), 0);
}

#[tokio::test]
async fn the_provider_header_names_a_provider_of_the_file() {
    let t = two().await;
    for value in ["b", "@b", "@b/ignored"] {
        let e = post(t.gw.addr, PATH, &[("x-portkey-provider", value)], CHAT).await;
        assert_eq!(e.status, 200, "{value}: {}", e.text());
    }
    assert_eq!((t.a.hits(), t.b.hits()), (0, 3));
    assert_eq!(
        t.b.last_request().unwrap().header("authorization"),
        Some("Bearer kb"),
        "the server's key, never the client's"
    );
    // A provider of the file named like a kind wins over the kind.
    let e = post(
        t.gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-client"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200);
    assert_eq!(
        t.b.last_request().unwrap().header("authorization"),
        Some("Bearer kb")
    );
}

#[tokio::test]
async fn a_provider_kind_without_byok_and_an_unknown_name_are_400s() {
    let t = two().await;
    let e = post(
        t.gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "anthropic"),
            ("authorization", "Bearer sk-ant"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 400);
    let msg = e.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("bring-your-own-key"), "{msg}");
    assert!(
        !msg.contains("openai"),
        "never the server's providers: {msg}"
    );
    let e = post(t.gw.addr, PATH, &[("x-portkey-provider", "@nope")], CHAT).await;
    assert_eq!(e.status, 400);
    assert!(e.text().contains("unknown provider `nope`"), "{}", e.text());
    assert_eq!(t.a.hits() + t.b.hits(), 0);
}

#[tokio::test]
async fn a_model_slug_picks_the_provider_and_is_stripped() {
    let t = two().await;
    let body = r#"{"model":"@b/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let e = post(t.gw.addr, PATH, &[], body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!((t.a.hits(), t.b.hits()), (0, 1));
    assert_eq!(t.b.last_request().unwrap().json()["model"], "gpt-4o");
    // A header's choice wins; the slug is still stripped.
    let e = post(t.gw.addr, PATH, &[("x-portkey-virtual-key", "a")], body).await;
    assert_eq!(e.status, 200);
    assert_eq!(t.a.last_request().unwrap().json()["model"], "gpt-4o");
    // Cloudflare's and Hugging Face's model names are not slugs.
    let cf = r#"{"model":"@cf/meta/llama","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(post(t.gw.addr, PATH, &[], cf).await.status, 200);
    assert_eq!(
        t.a.last_request().unwrap().json()["model"],
        "@cf/meta/llama"
    );
    for bad in [
        r#"{"model":"@nope/gpt-4o","messages":[]}"#,
        r#"{"model":"@b","messages":[]}"#,
        r#"{"model":"@b/","messages":[]}"#,
    ] {
        let e = post(t.gw.addr, PATH, &[], bad).await;
        assert_eq!(e.status, 400, "{bad}");
        assert_eq!(e.json()["error"]["param"], "model", "{bad}");
    }
}

#[tokio::test]
async fn hybrid_mode_puts_the_header_provider_under_a_config_without_targets() {
    let t = two().await;
    t.b.set(Plan::ok().fail_first(1, 503));
    let e = post(
        t.gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "b"),
            ("x-portkey-config", r#"{"retry": {"attempts": 2}}"#),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.header("x-portkey-retry-attempt-count"), Some("1"));
    assert_eq!(t.b.hits(), 2);
    // Without the provider header, a config with no target is a 400.
    let e = post(
        t.gw.addr,
        PATH,
        &[("x-portkey-config", r#"{"retry": {"attempts": 2}}"#)],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 400);
}

#[tokio::test]
async fn the_retry_header_works_with_the_same_meaning() {
    let t = two().await;
    t.b.set(Plan::ok().fail_first(1, 503));
    let e = post(
        t.gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "b"),
            ("x-portkey-retry", r#"{"attempts": 3}"#),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(t.b.hits(), 2);
    // Around the file's tree.
    t.a.set(Plan::ok().fail_first(2, 429));
    let e = post(
        t.gw.addr,
        PATH,
        &[("x-portkey-retry", r#"{"attempts": 2}"#)],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.header("x-portkey-retry-attempt-count"), Some("2"));
    // Read under the header limits, errors named by the header.
    let e = post(
        t.gw.addr,
        PATH,
        &[("x-portkey-retry", r#"{"attempts": 50}"#)],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 400);
    assert!(
        e.text().contains("x-portkey-retry.attempts"),
        "{}",
        e.text()
    );
    let e = post(
        t.gw.addr,
        PATH,
        &[
            ("x-portkey-retry", r#"{"attempts": 1}"#),
            ("x-portkey-config", r#"{"virtual_key": "a"}"#),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 400);
}
