//! Bounded work for client-supplied configs (issue 15, findings 1 and 3): regex bombs, the
//! compiled-config cache, attempt amplification across retries and fallbacks, who may send a
//! config at all, and what its errors reveal. Over real loopback HTTP against fake upstreams.

// Not every helper the support module re-exports is used here.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use portcullis_gateway::Gateway;
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, post, start, start_gateway};

fn providers(a: &FakeUpstream) -> String {
    format!(
        r#""providers": {{
            "a": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-a"}},
            "alpha-internal": {{"provider": "mock"}},
            "beta-internal": {{"provider": "mock"}}
        }}"#,
        a.base_url()
    )
}

/// The issue's regex bomb: 268 conditions of `{"$regex": "\\w{60}"}`, about 15 KB.
fn regex_bomb(salt: usize) -> String {
    let condition = r#"{"query":{"params.user":{"$regex":"\\w{60}"}},"then":"x"}"#;
    let conditions = vec![condition; 268].join(",");
    let bomb = format!(
        r#"{{"strategy":{{"mode":"conditional","conditions":[{conditions}],"default":"x"}},"targets":[{{"name":"x","virtual_key":"a","override_params":{{"temperature":{salt}}}}}]}}"#
    );
    assert!(
        bomb.len() > 14_000 && bomb.len() < 16 * 1024,
        "{}",
        bomb.len()
    );
    bomb
}

fn fallback(targets: usize, attempts: u32) -> String {
    let targets = vec![r#"{"virtual_key":"a"}"#; targets].join(",");
    format!(
        r#"{{"strategy":{{"mode":"fallback"}},"retry":{{"attempts":{attempts},"use_retry_after_header":true}},"targets":[{targets}]}}"#
    )
}

fn message(res: &portcullis_testkit::client::Exchange) -> String {
    res.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn gateway(json: &str) -> (Gateway, support::Running) {
    let gateway = Gateway::new(support::config(json)).unwrap_or_else(|e| panic!("{e}"));
    let running = start_gateway(gateway.clone()).await;
    (gateway, running)
}

#[tokio::test]
async fn a_regex_bomb_header_answers_400_fast() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!("{{{}}}", providers(&a))).await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &regex_bomb(0))],
        CHAT,
    )
    .await;
    // Refused while the header is read: no regex is compiled. How long the refusal takes is
    // measured by the gateway bench `gateway/regex_bomb_refused` (BENCHMARKS.md).
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(
        message(&res).starts_with("x-portkey-config.strategy.conditions[21]"),
        "{}",
        message(&res)
    );
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn past_raised_counts_a_regex_bomb_is_still_refused_by_its_compiled_size() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"server": {{"header_config": {{"max_conditions": 10000}}}}, {}}}"#,
        providers(&a)
    ))
    .await;
    // Measured by the gateway bench `gateway/regex_bomb_refused_by_compiled_size`.
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &regex_bomb(0))],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    let msg = message(&res);
    assert!(
        msg.starts_with(r#"x-portkey-config.strategy.conditions[0].query."params.user".$regex: the compiled pattern is larger than the limit"#),
        "{msg}"
    );
}

#[tokio::test]
async fn varied_configs_never_grow_the_cache_past_its_bytes() {
    const BOUND: usize = 64 * 1024;
    let a = FakeUpstream::start().await;
    let (gateway, gw) = gateway(&format!(
        r#"{{"server": {{"header_config": {{"cache_bytes": {BOUND}}}}}, {}}}"#,
        providers(&a)
    ))
    .await;
    for i in 0..1_000 {
        let (config, status) = if i % 2 == 0 {
            (regex_bomb(i), 400)
        } else {
            (
                format!(r#"{{"virtual_key":"a","override_params":{{"temperature":{i}}}}}"#),
                200,
            )
        };
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-config", &config)],
            CHAT,
        )
        .await;
        assert_eq!(res.status, status, "{i}: {}", res.text());
        assert!(gateway.header_config_cache_bytes() <= BOUND, "{i}");
    }
    assert_eq!(a.hits(), 500);
    let kept = gateway.header_config_cache_len();
    assert!(
        kept > 1 && kept < 500,
        "{kept} entries: some kept, the rest evicted"
    );
}

#[tokio::test]
async fn semantically_equal_configs_share_one_entry() {
    let a = FakeUpstream::start().await;
    let (gateway, gw) = gateway(&format!("{{{}}}", providers(&a))).await;
    for config in [
        r#"{"virtual_key":"a","override_params":{"temperature":0,"model":"m"},"retry":{"attempts":2}}"#,
        r#"{ "retry": {"attempts": 2}, "override_params": {"model": "m", "temperature": 0}, "virtual_key": "a" }"#,
        r#"{"virtualKey":"a","overrideParams":{"model":"m","temperature":0},"retry":{"attempts":2}}"#,
        r#"{"provider":"a","override_params":{"temperature":0,"model":"m"},"retry":{"attempts":2}}"#,
    ] {
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-config", config)],
            CHAT,
        )
        .await;
        assert_eq!(res.status, 200, "{config}: {}", res.text());
    }
    assert_eq!(gateway.header_config_cache_len(), 1);
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[(
            "x-portkey-config",
            r#"{"virtual_key":"a","override_params":{"temperature":1,"model":"m"},"retry":{"attempts":2}}"#,
        )],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(gateway.header_config_cache_len(), 2);
    assert!(a.requests().iter().all(|r| r.json()["model"] == "m"));
}

#[tokio::test]
async fn fallback_330_by_retry_10_is_refused_by_default() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!("{{{}}}", providers(&a))).await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &fallback(330, 10))],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    // Each of its two counts is past its limit on its own.
    assert_eq!(
        message(&res),
        "x-portkey-config.retry.attempts: must be 0 to 5, got 10"
    );
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &fallback(330, 5))],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        message(&res),
        "x-portkey-config.targets: lists 330 targets; a strategy in a header config lists at most 32"
    );
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &fallback(3, 10))],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        message(&res),
        "x-portkey-config.retry.attempts: must be 0 to 5, got 10"
    );
    assert_eq!(a.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_raised_limits_the_upstream_sees_at_most_max_attempts_calls() {
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().status(503).retry_after("0"));
    let gw = start(&format!(
        r#"{{"server": {{"max_attempts": 20, "header_config": {{"max_targets": 400, "max_nodes": 400, "max_retry_attempts": 10}}}}, {}}}"#,
        providers(&a)
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &fallback(330, 10))],
        CHAT,
    )
    .await;
    // The cap stops the retries and the fallback: the client gets the upstream's last answer.
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(message(&res), "fake upstream error");
    assert_eq!(a.hits(), 20, "3,630 calls without the cap");
}

#[tokio::test(start_paused = true)]
async fn the_file_tree_is_capped_too() {
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().status(503).retry_after("0"));
    let gw = start(&format!(
        r#"{{"server": {{"max_attempts": 4}}, {}, "config": {}}}"#,
        providers(&a),
        fallback(3, 2)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(message(&res), "fake upstream error");
    assert_eq!(a.hits(), 4, "9 calls without the cap");
}

#[tokio::test]
async fn header_configs_turned_off_are_refused() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"server": {{"header_config": {{"enabled": false}}}}, {}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a)
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", r#"{"virtual_key":"a"}"#)],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(
        message(&res).starts_with("x-portkey-config: "),
        "{}",
        message(&res)
    );
    assert_eq!(res.json()["error"]["code"], "config_not_allowed");
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn header_configs_restricted_to_named_keys_refuse_the_others() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"server": {{"api_keys": {{"team-a": "key-aaaa-1111", "ci": "key-cccc-3333"}},
            "header_config": {{"allowed_keys": ["team-a"]}}}},
            {}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a)
    ))
    .await;
    let header = ("x-portkey-config", r#"{"virtual_key":"a"}"#);
    let allowed = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-api-key", "key-aaaa-1111"), header],
        CHAT,
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let other = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-api-key", "key-cccc-3333"), header],
        CHAT,
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.text());
    assert!(message(&other).starts_with("x-portkey-config: "));
    let plain = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-api-key", "key-cccc-3333")],
        CHAT,
    )
    .await;
    assert_eq!(plain.status, 200);
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn override_params_cannot_turn_on_a_stream() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!("{{{}}}", providers(&a))).await;
    for key in ["stream", "stream_options"] {
        let config = format!(r#"{{"virtual_key":"a","override_params":{{"{key}":true}}}}"#);
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-config", &config)],
            CHAT,
        )
        .await;
        assert_eq!(res.status, 400, "{}", res.text());
        assert!(
            message(&res).starts_with(&format!(
                "x-portkey-config.override_params.{key}: cannot be overridden"
            )),
            "{}",
            message(&res)
        );
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn an_unknown_provider_error_names_only_the_unknown_one() {
    let a = FakeUpstream::start().await;
    let gw = start(&format!("{{{}}}", providers(&a))).await;
    for (name, value) in [
        ("x-portkey-config", r#"{"virtual_key":"zzz"}"#),
        ("x-portkey-virtual-key", "zzz"),
    ] {
        let res = post(gw.addr, "/v1/chat/completions", &[(name, value)], CHAT).await;
        assert_eq!(res.status, 400, "{}", res.text());
        let msg = message(&res);
        assert!(msg.starts_with(name) && msg.contains("`zzz`"), "{msg}");
        assert!(!msg.contains("internal"), "names another provider: {msg}");
    }
}

/// `fallback(targets, attempts)` over the named providers, in order.
fn fallback_over(names: &[&str], attempts: u32) -> String {
    let targets: Vec<String> = names
        .iter()
        .map(|name| format!(r#"{{"virtual_key":"{name}"}}"#))
        .collect();
    format!(
        r#"{{"strategy":{{"mode":"fallback"}},"retry":{{"attempts":{attempts}}},"targets":[{}]}}"#,
        targets.join(",")
    )
}

#[tokio::test(start_paused = true)]
async fn a_spent_attempt_budget_answers_the_upstreams_last_status_not_502() {
    for status in [500, 429] {
        let a = FakeUpstream::start().await;
        a.set(Plan::ok().status(status));
        let gw = start(&format!(
            r#"{{"server": {{"max_attempts": 4}}, {}}}"#,
            providers(&a)
        ))
        .await;
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-config", &fallback(3, 5))],
            CHAT,
        )
        .await;
        assert_eq!(res.status, status, "{}", res.text());
        assert_eq!(
            message(&res),
            "fake upstream error",
            "the upstream's own body"
        );
        assert_ne!(res.json()["error"]["code"], "attempts_exhausted");
        assert_eq!(a.hits(), 4, "18 calls without the cap");
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_attempt_budget_stops_the_fallback_at_the_target_that_spent_it() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().status(500));
    b.set(Plan::ok().status(429));
    let gw = start(&format!(
        r#"{{"server": {{"max_attempts": 4}}, "providers": {{
            "a": {{"provider": "openai-compatible", "base_url": "{}"}},
            "b": {{"provider": "openai-compatible", "base_url": "{}"}}
        }}}}"#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    // Two tries on `a`, two on `b`: the budget is spent, the third target is never asked.
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-config", &fallback_over(&["a", "b", "a"], 1))],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 429, "{}", res.text());
    assert_eq!(res.json()["error"]["type"], "rate_limit_error");
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    assert_eq!((a.hits(), b.hits()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_provider_response_timeout_shorter_than_the_request_timeout_still_answers_504() {
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().delay(Duration::from_secs(60)));
    // The provider's 500 ms comes before the server's 1000 ms: its timer is armed.
    let gw = start(&format!(
        r#"{{"server": {{"request_timeout": 1000}},
            "providers": {{"a": {{"provider": "openai-compatible", "base_url": "{}",
                "api_key": "sk-a", "response_timeout_ms": 500}}}}}}"#,
        a.base_url()
    ))
    .await;
    let headers = [("x-portkey-virtual-key", "a")];
    let res = post(gw.addr, "/v1/chat/completions", &headers, CHAT).await;
    assert_eq!(res.status, 504, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "upstream_timeout");
    assert!(message(&res).contains("500 ms"), "{}", res.text());
}

#[tokio::test(start_paused = true)]
async fn at_the_default_timeouts_a_hung_upstream_is_a_504_of_the_providers() {
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().delay(Duration::from_secs(700)));
    // Both 600 s: they fall due together, and the provider's answers (a 504 a circuit breaker
    // counts), not the request's 408.
    let gw = start(&format!("{{{}}}", providers(&a))).await;
    let headers = [("x-portkey-virtual-key", "a")];
    let res = post(gw.addr, "/v1/chat/completions", &headers, CHAT).await;
    assert_eq!(res.status, 504, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "upstream_timeout");
}

#[tokio::test(start_paused = true)]
async fn a_client_request_timeout_may_only_shorten_the_servers() {
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().delay(Duration::from_secs(60)));
    let gw = start(&format!(
        r#"{{"server": {{"request_timeout": 1000}}, {}}}"#,
        providers(&a)
    ))
    .await;
    for (header, after) in [
        (None, "1000 ms"),
        (Some("500"), "500 ms"),
        (Some("1000"), "1000 ms"),
        (Some("5000"), "1000 ms"),
        (Some("86400000"), "1000 ms"),
    ] {
        let mut headers = vec![("x-portkey-virtual-key", "a")];
        headers.extend(header.map(|h| ("x-portkey-request-timeout", h)));
        let res = post(gw.addr, "/v1/chat/completions", &headers, CHAT).await;
        assert_eq!(res.status, 408, "{header:?}: {}", res.text());
        assert_eq!(
            message(&res),
            format!("request timed out after {after}"),
            "{header:?}"
        );
    }
}
