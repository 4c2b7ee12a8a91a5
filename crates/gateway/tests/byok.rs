//! Bring-your-own-key: `x-portkey-provider: KIND` with the client's own key, only for the
//! kinds `server.byok` enables and only to the base URL the server gives; off by default.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use portcullis_testkit::anthropic::{FakeAnthropic, Plan};
use support::{CHAT, post, start};

const PATH: &str = "/v1/chat/completions";

async fn gateway(openai: &FakeUpstream, claude: &FakeAnthropic, server: &str) -> support::Running {
    start(&format!(
        r#"{{"server": {{"byok": {{"openai": {{"base_url": "{}"}}, "anthropic": {{"base_url": "{}"}}}}{server}}},
            "providers": {{"m": {{"provider": "mock"}}}},
            "config": {{"virtual_key": "m"}}}}"#,
        openai.base_url(),
        claude.url()
    ))
    .await
}

#[tokio::test]
async fn byok_is_off_unless_the_server_enables_the_kind() {
    let gw = start(r#"{"providers": {"m": {"provider": "mock"}}, "config": {"virtual_key": "m"}}"#)
        .await;
    let e = post(
        gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-client"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 400);
    assert!(e.text().contains("server.byok"), "{}", e.text());
}

#[tokio::test]
async fn the_clients_key_goes_to_the_configured_base_url_for_that_call_only() {
    let openai = FakeUpstream::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = gateway(&openai, &claude, "").await;
    let e = post(
        gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-client-1"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        openai.last_request().unwrap().header("authorization"),
        Some("Bearer sk-client-1")
    );
    // Anthropic's SDK sends its key in x-api-key.
    claude.set(Plan::ok().text("hi"));
    let e = post(
        gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "@anthropic"),
            ("x-api-key", "sk-ant-client"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        claude.last_request().unwrap().header("x-api-key"),
        Some("sk-ant-client")
    );
    // No key: 401, and nothing sent.
    let before = openai.hits();
    let e = post(gw.addr, PATH, &[("x-portkey-provider", "openai")], CHAT).await;
    assert_eq!(e.status, 401);
    assert_eq!(openai.hits(), before);
    // Other requests never carry a client key upstream.
    let e = post(
        gw.addr,
        PATH,
        &[("authorization", "Bearer sk-client-1")],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200);
    assert_eq!(openai.hits(), before);
}

#[tokio::test]
async fn with_gateway_keys_the_provider_key_rides_beside_the_gateway_key() {
    let openai = FakeUpstream::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = gateway(
        &openai,
        &claude,
        r#", "api_keys": {"team": "gw-key-123456"}"#,
    )
    .await;
    // The Portkey SDK's way: the gateway key in x-portkey-api-key, the provider's in
    // Authorization.
    let e = post(
        gw.addr,
        PATH,
        &[
            ("x-portkey-api-key", "gw-key-123456"),
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-client-2"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        openai.last_request().unwrap().header("authorization"),
        Some("Bearer sk-client-2")
    );
    // The gateway key in Authorization cannot also be the provider's key.
    let e = post(
        gw.addr,
        PATH,
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer gw-key-123456"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 401);
    assert!(e.text().contains("x-portkey-api-key"), "{}", e.text());
    assert_eq!(openai.hits(), 1, "the gateway key never went upstream");
}

#[tokio::test]
async fn each_clients_key_has_its_own_cache_entries() {
    let openai = FakeUpstream::start().await;
    let claude = FakeAnthropic::start().await;
    let gw = gateway(&openai, &claude, "").await;
    let with = |key: &'static str| {
        [
            ("x-portkey-provider", "openai"),
            ("authorization", key),
            ("x-portkey-cache", "simple"),
        ]
    };
    let status = |e: &portcullis_testkit::client::Exchange| {
        e.header("x-portkey-cache-status").unwrap_or("").to_owned()
    };
    assert_eq!(
        status(&post(gw.addr, PATH, &with("Bearer sk-a"), CHAT).await),
        "MISS"
    );
    assert_eq!(
        status(&post(gw.addr, PATH, &with("Bearer sk-a"), CHAT).await),
        "HIT"
    );
    assert_eq!(
        status(&post(gw.addr, PATH, &with("Bearer sk-b"), CHAT).await),
        "MISS",
        "another account's key never reads sk-a's answers"
    );
    assert_eq!(openai.hits(), 2);
}

#[test]
fn bad_byok_sections_name_their_path() {
    for (server, path) in [
        (r#"{"byok": {"nope": {}}}"#, "server.byok.nope"),
        (
            r#"{"byok": {"openai-compatible": {}}}"#,
            "server.byok.openai-compatible.base_url",
        ),
        (
            r#"{"byok": {"openai": {"url": "x"}}}"#,
            "server.byok.openai.url",
        ),
    ] {
        let text =
            format!(r#"{{"server": {server}, "providers": {{"m": {{"provider": "mock"}}}}}}"#);
        let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
        assert_eq!(err.path(), path, "{server}: {err}");
    }
}
