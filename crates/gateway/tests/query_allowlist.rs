//! The client's query string and the per-provider `allow_query_params` (issue 15, finding 5):
//! dropped by default, only the named parameters reach the upstream. Over real loopback HTTP
//! against fake upstreams.

// Not every helper the support module re-exports is used here.
#[allow(unused_imports)]
mod support;

use portcullis_gateway::Config;
use portcullis_testkit::FakeUpstream;
use support::{CHAT, post, start};

const QUERY: &str = "api-version=2024-10-21&key=evil&trace=1&api%2Dversion=evil&trace=2;key=x";

/// The query the upstream received, if any.
fn upstream_query(upstream: &FakeUpstream) -> Option<String> {
    let path = upstream
        .last_request()
        .expect("the upstream was called")
        .path;
    path.split_once('?').map(|(_, query)| query.to_owned())
}

#[tokio::test]
async fn only_allowed_query_parameters_reach_the_upstream() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{"providers": {{
            "azure-like": {{"provider": "openai-compatible", "base_url": "{}",
                            "allow_query_params": ["api-version", "trace"]}},
            "plain": {{"provider": "openai-compatible", "base_url": "{}"}}
        }}}}"#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    let path = format!("/v1/chat/completions?{QUERY}");

    let res = post(
        gw.addr,
        &path,
        &[("x-portkey-virtual-key", "azure-like")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    // Allowed names pass as the client wrote them; `key`, an encoded name and a pair with a
    // `;` do not.
    assert_eq!(
        upstream_query(&a).as_deref(),
        Some("api-version=2024-10-21&trace=1")
    );
    assert!(
        a.last_request()
            .unwrap()
            .path
            .starts_with("/v1/chat/completions?")
    );

    let res = post(gw.addr, &path, &[("x-portkey-virtual-key", "plain")], CHAT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        upstream_query(&b),
        None,
        "no allowlist: the query is dropped"
    );

    // Nothing allowed in the client's query: none is sent, not an empty `?`.
    let res = post(
        gw.addr,
        "/v1/chat/completions?key=evil",
        &[("x-portkey-virtual-key", "azure-like")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream_query(&a), None);
}

fn config_error(providers: &str) -> String {
    Config::parse(&format!(r#"{{"providers": {providers}}}"#), &|_| None)
        .unwrap_err()
        .to_string()
}

#[test]
fn allow_query_params_errors_name_their_path() {
    assert_eq!(
        config_error(
            r#"{"x": {"provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
                      "allow_query_params": ["api-version", "a=b"]}}"#
        ),
        "providers.x.allow_query_params[1]: `a=b` is not a plain query parameter name \
         (letters, digits and -._~)"
    );
    assert_eq!(
        config_error(r#"{"x": {"provider": "openai", "allowQueryParams": ["ok", 7]}}"#),
        "providers.x.allow_query_params[1]: must be a string, got a number"
    );
    assert_eq!(
        config_error(r#"{"x": {"provider": "openai", "allow_query_params": "api-version"}}"#),
        "providers.x.allow_query_params: must be an array, got a string"
    );
    assert_eq!(
        config_error(r#"{"x": {"provider": "openai", "allow_query_param": ["a"]}}"#),
        "providers.x.allow_query_param: unknown key (expected provider, base_url, api_key, \
         headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms, \
         stream_usage, allow_query_params)"
    );
    // A mock has no upstream to pass a query to.
    assert!(
        config_error(r#"{"m": {"provider": "mock", "allow_query_params": ["a"]}}"#)
            .starts_with("providers.m.allow_query_params: unknown key")
    );
}

#[test]
fn allow_query_params_are_read_in_either_spelling() {
    let config = Config::parse(
        r#"{"providers": {
            "x": {"provider": "openai", "allowQueryParams": ["api-version"]},
            "y": {"provider": "openai"}
        }}"#,
        &|_| None,
    )
    .unwrap();
    let names = |p: &str| match &config.providers[p].kind {
        portcullis_gateway::config::ProviderKind::OpenAi(spec) => spec.allow_query_params.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names("x"), ["api-version"]);
    assert!(names("y").is_empty());
}
