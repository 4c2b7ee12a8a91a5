//! The gateway end to end: a config file's tree, Portkey's headers, keys, endpoints and
//! shutdown, over real loopback HTTP against fake upstreams.

mod support;

use std::time::Duration;

use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, CHAT_STREAM, post, request, send, start};

fn providers(a: &FakeUpstream, b: &FakeUpstream) -> String {
    format!(
        r#""providers": {{
            "a": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-a"}},
            "b": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-b"}},
            "m": {{"provider": "mock", "models": ["mock-1"]}}
        }}"#,
        a.base_url(),
        b.base_url()
    )
}

#[tokio::test]
async fn a_single_provider_answers_with_portkey_headers() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-trace-id", "t-1")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("x-portkey-trace-id"), Some("t-1"));
    assert_eq!(res.header("x-portkey-provider"), Some("a"));
    assert_eq!(a.hits(), 1);
    assert_eq!(b.hits(), 0);
    assert_eq!(a.requests()[0].header("authorization"), Some("Bearer sk-a"));
}

#[tokio::test]
async fn single_mode_and_inheritance_of_override_params() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{
            "strategy": {{"mode": "single"}},
            "override_params": {{"temperature": 0, "model": "parent-model"}},
            "targets": [{{"virtual_key": "b", "override_params": {{"model": "child-model"}}}}]
        }}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[0]")
    );
    let sent = b.requests()[0].json();
    assert_eq!(sent["model"], "child-model");
    assert_eq!(sent["temperature"], 0);
    assert_eq!(sent["messages"][0]["content"], "Say hello");
}

#[tokio::test]
async fn gateway_keys_are_required_when_configured() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{"server": {{"api_keys": {{"team-a": "key-aaaa-1111"}}}}, {}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let none = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["type"], "authentication_error");
    let wrong = post(
        gw.addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer key-aaaa-1112")],
        CHAT,
    )
    .await;
    assert_eq!(wrong.status, 401);
    // The Portkey SDK: its key in x-portkey-api-key, a placeholder in authorization.
    let sdk = post(
        gw.addr,
        "/v1/chat/completions",
        &[
            ("x-portkey-api-key", "key-aaaa-1111"),
            ("authorization", "Bearer OPENAI_API_KEY"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(sdk.status, 200);
    let bearer = post(
        gw.addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer key-aaaa-1111")],
        CHAT,
    )
    .await;
    assert_eq!(bearer.status, 200);
    assert_eq!(a.hits(), 2, "refused requests never reach the upstream");
    for seen in a.requests() {
        assert_eq!(seen.header("authorization"), Some("Bearer sk-a"));
        assert_eq!(seen.header("x-portkey-api-key"), None);
    }
    let models = send(gw.addr, &request("GET", "/v1/models", &[], "")).await;
    assert_eq!(models.status, 401);
}

#[tokio::test]
async fn header_config_may_only_name_server_providers() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;

    let to_b = post(
        gw.addr,
        "/v1/chat/completions",
        &[(
            "x-portkey-config",
            r#"{"virtual_key": "b", "override_params": {"model": "from-header"}}"#,
        )],
        CHAT,
    )
    .await;
    assert_eq!(to_b.status, 200);
    assert_eq!(b.requests()[0].json()["model"], "from-header");

    for (config, needle) in [
        (
            r#"{"virtual_key": "evil"}"#,
            "x-portkey-config.virtual_key: unknown provider `evil`",
        ),
        (
            r#"{"provider": "openai", "api_key": "sk-x"}"#,
            "x-portkey-config.api_key: credentials",
        ),
        (
            r#"{"virtual_key": "a", "custom_host": "http://169.254.169.254"}"#,
            "x-portkey-config.custom_host: custom hosts are not allowed",
        ),
        (
            r#"{"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "x"}]}"#,
            "x-portkey-config.targets[1].virtual_key",
        ),
        // Checked by the router's builder when the header's tree is compiled: still a 400.
        (
            r#"{"strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "gold"}], "default": "x"}, "targets": [{"name": "x", "virtual_key": "a"}]}"#,
            "x-portkey-config.strategy.conditions[0].then: no target is named `gold`",
        ),
        (
            r#"{"strategy": {"mode": "conditional", "conditions": [], "default": "x"}, "targets": [{"name": "x", "virtual_key": "a"}, {"name": "x", "virtual_key": "b"}]}"#,
            "x-portkey-config.targets[1].name: `x` names two targets",
        ),
        ("pc-saved-123", "unknown saved config `pc-saved-123`"),
        ("{nope", "not valid JSON"),
    ] {
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-config", config)],
            CHAT,
        )
        .await;
        assert_eq!(res.status, 400, "{config}");
        let msg = res.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{config}: {msg}");
    }
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-custom-host", "http://evil.example")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(a.hits(), 0);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn virtual_key_header_names_a_provider() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(r#"{{{}}}"#, providers(&a, &b))).await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-virtual-key", "b")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(b.hits(), 1);
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-virtual-key", "zz")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 400, "no routing tree and no header");
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no routing")
    );
}

#[tokio::test]
async fn endpoints_models_health_and_unknown_paths() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a", "override_params": {{"model": "gpt-4o"}}}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let health = send(gw.addr, &request("GET", "/health", &[], "")).await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    let models = send(gw.addr, &request("GET", "/v1/models", &[], "")).await;
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["gpt-4o", "mock-1"]);
    assert_eq!(
        send(gw.addr, &request("GET", "/v1/chat/completions", &[], ""))
            .await
            .status,
        405
    );
    let unknown = send(gw.addr, &request("POST", "/v1/files", &[], "{}")).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.header("x-portkey-trace-id").is_some());
    let emb = post(
        gw.addr,
        "/v1/embeddings",
        &[],
        r#"{"model":"e","input":"x"}"#,
    )
    .await;
    assert_eq!(emb.status, 200);
    let cmp = post(
        gw.addr,
        "/v1/completions",
        &[],
        r#"{"model":"c","prompt":"x"}"#,
    )
    .await;
    assert_eq!(cmp.status, 200);
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn bad_metadata_and_bodies_are_400() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-metadata", r#"{"n": 1}"#)],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`n` must be a string")
    );
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-metadata", "[1]")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    let res = post(gw.addr, "/v1/chat/completions", &[], "{\"model\":").await;
    assert_eq!(res.status, 400);
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-request-timeout", "soon")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{"server": {{"body_limit": 1000}}, {}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2000)
    );
    let res = post(gw.addr, "/v1/chat/completions", &[], &big).await;
    assert_eq!(res.status, 413);
    assert_eq!(a.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn request_timeouts_are_408() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().delay(Duration::from_secs(60)));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "single"}}, "targets": [{{"virtual_key": "a", "request_timeout": 2000}}]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 408);
    assert_eq!(res.json()["error"]["type"], "timeout_error");
    // The client's own deadline, tighter than the config's.
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-request-timeout", "500")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 408);
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500 ms")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(
        Plan::ok()
            .content(&"word ".repeat(20))
            .chunk_delay(Duration::from_millis(100)),
    );
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let addr = gw.addr;
    let stream =
        tokio::spawn(async move { post(addr, "/v1/chat/completions", &[], CHAT_STREAM).await });
    // Let the stream start, then ask the server to stop.
    while a.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    gw.shutdown().await;
    let res = stream.await.unwrap();
    assert_eq!(res.status, 200);
    assert!(
        res.text().ends_with("data: [DONE]\n\n"),
        "the stream finished: {}",
        res.text()
    );
    assert_eq!(res.text().matches("word").count(), 20);
    // No new connections after shutdown.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn retry_inherits_down_the_tree_and_reports_attempts() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().fail_first(2, 503));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "single"}}, "retry": {{"attempts": 3}}, "targets": [{{"virtual_key": "a"}}]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-portkey-retry-attempt-count"), Some("2"));
    assert_eq!(a.hits(), 3);

    // A child's retry replaces the parent's: attempts 0 here means one call.
    let (c, d) = (FakeUpstream::start().await, FakeUpstream::start().await);
    c.set(Plan::ok().status(503));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "single"}}, "retry": {{"attempts": 3}}, "targets": [{{"virtual_key": "a", "retry": {{"attempts": 0}}}}]}}}}"#,
        providers(&c, &d)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 503);
    assert_eq!(c.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_and_fails_fast() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().status(500));
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a", "circuit_breaker": {{"consecutive_failures": 2, "cooldown_ms": 20000}}}}}}"#,
        providers(&a, &b)
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(
            post(gw.addr, "/v1/chat/completions", &[], CHAT)
                .await
                .status,
            500
        );
    }
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("20"));
    assert_eq!(res.json()["error"]["code"], "target_unavailable");
    assert_eq!(a.hits(), 2, "an open circuit does not call the upstream");
    // Clients may not configure breakers.
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[(
            "x-portkey-config",
            r#"{"virtual_key": "b", "circuit_breaker": {"consecutive_failures": 1}}"#,
        )],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 400);
}

#[tokio::test]
async fn loadbalance_splits_by_weight_and_reports_the_target() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "loadbalance"}}, "targets": [
            {{"virtual_key": "a", "weight": 0.7}}, {{"virtual_key": "b", "weight": 0.3}}, {{"virtual_key": "m", "weight": 0}}
        ]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let mut to_a = 0;
    for _ in 0..300 {
        let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
        assert_eq!(res.status, 200);
        match res.header("x-portkey-last-used-option-index") {
            Some("config.targets[0]") => to_a += 1,
            Some("config.targets[1]") => {}
            other => panic!("weight 0 chosen or no index: {other:?}"),
        }
    }
    assert_eq!(a.hits(), to_a);
    assert_eq!(a.hits() + b.hits(), 300);
    // 0.7 of 300 is 210; sd ~7.9: five sd either side.
    assert!((170..=250).contains(&to_a), "{to_a}");
}

#[tokio::test]
async fn sticky_balancing_keeps_a_user_on_one_target() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "loadbalance", "sticky": "metadata._user"}}, "targets": [
            {{"virtual_key": "a"}}, {{"virtual_key": "b"}}
        ]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    for user in ["ana", "bo", "cy", "di"] {
        let meta = format!(r#"{{"_user": "{user}"}}"#);
        let first = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-metadata", &meta)],
            CHAT,
        )
        .await;
        let index = first
            .header("x-portkey-last-used-option-index")
            .unwrap()
            .to_owned();
        for _ in 0..5 {
            let again = post(
                gw.addr,
                "/v1/chat/completions",
                &[("x-portkey-metadata", &meta)],
                CHAT,
            )
            .await;
            assert_eq!(
                again.header("x-portkey-last-used-option-index"),
                Some(index.as_str()),
                "{user}"
            );
        }
    }
}

#[tokio::test]
async fn conditional_routing_on_metadata_with_override_params() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{
            "strategy": {{"mode": "conditional",
                "conditions": [{{"query": {{"metadata.user_plan": {{"$eq": "paid"}}}}, "then": "paid"}}],
                "default": "free"}},
            "targets": [
                {{"name": "paid", "virtual_key": "a", "override_params": {{"model": "gpt-4o"}}}},
                {{"name": "free", "virtual_key": "b", "override_params": {{"model": "gpt-4o-mini"}}}}
            ]
        }}}}"#,
        providers(&a, &b)
    ))
    .await;
    let paid = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-metadata", r#"{"user_plan": "paid"}"#)],
        CHAT,
    )
    .await;
    assert_eq!(
        paid.header("x-portkey-last-used-option-index"),
        Some("config.targets[0]")
    );
    let free = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-metadata", r#"{"user_plan": "free"}"#)],
        CHAT,
    )
    .await;
    assert_eq!(
        free.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    let none = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(none.status, 200);
    assert_eq!(a.requests()[0].json()["model"], "gpt-4o");
    assert_eq!(b.requests()[0].json()["model"], "gpt-4o-mini");
    assert_eq!((a.hits(), b.hits()), (1, 2));
}

#[test]
fn condition_errors_stop_start_up_with_their_path() {
    let config = support::config(
        r#"{"providers": {"m": {"provider": "mock"}}, "config": {
            "strategy": {"mode": "conditional", "default": "x",
                "conditions": [{"query": {"params.model": {"$regex": "(unclosed"}}, "then": "x"}]},
            "targets": [{"name": "x", "virtual_key": "m"}]}}"#,
    );
    let err = portcullis_gateway::Gateway::new(config)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"config.strategy.conditions[0].query."params.model".$regex: "#),
        "{err}"
    );
}

/// The balancer's builder checks the weights; the gateway places its paths in the config.
#[test]
fn weight_errors_stop_start_up_with_their_path() {
    let start = |tree: &str| {
        let config = support::config(&format!(
            r#"{{"providers": {{"m": {{"provider": "mock"}}}}, "config": {tree}}}"#
        ));
        portcullis_gateway::Gateway::new(config)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        start(
            r#"{"strategy": {"mode": "loadbalance"}, "targets": [{"virtual_key": "m"}, {"virtual_key": "m", "weight": -1}]}"#
        ),
        "config.targets[1].weight: must be >= 0"
    );
    assert_eq!(
        start(
            r#"{"strategy": {"mode": "loadbalance"}, "targets": [{"virtual_key": "m", "weight": 0}]}"#
        ),
        "config.targets: every weight is 0: at least one target must have weight > 0"
    );
    assert_eq!(
        start(
            r#"{"strategy": {"mode": "fallback"}, "targets": [{"strategy": {"mode": "loadbalance"}, "targets": [{"virtual_key": "m", "weight": 0.5}, {"virtual_key": "m", "weight": -0.5}]}]}"#
        ),
        "config.targets[0].targets[1].weight: must be >= 0"
    );
}

#[tokio::test]
async fn fallback_moves_on_and_nests_paths() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().status(500));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "fallback"}}, "targets": [
            {{"virtual_key": "a"}},
            {{"strategy": {{"mode": "fallback"}}, "targets": [{{"virtual_key": "a"}}, {{"virtual_key": "b"}}]}}
        ]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1].targets[1]")
    );
    assert_eq!((a.hits(), b.hits()), (2, 1));

    // on_status_codes replaces the triggers: a 500 not listed is returned at once.
    let (c, d) = (FakeUpstream::start().await, FakeUpstream::start().await);
    c.set(Plan::ok().status(500));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "fallback", "on_status_codes": [429]}}, "targets": [
            {{"virtual_key": "a"}}, {{"virtual_key": "b"}}
        ]}}}}"#,
        providers(&c, &d)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(res.status, 500);
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[0]")
    );
    assert_eq!(d.hits(), 0);
}

#[tokio::test]
async fn fallback_replaces_a_stream_that_broke_before_content() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().break_after(0));
    let gw = start(&format!(
        r#"{{{}, "config": {{"strategy": {{"mode": "fallback"}}, "targets": [{{"virtual_key": "a"}}, {{"virtual_key": "b"}}]}}}}"#,
        providers(&a, &b)
    ))
    .await;
    let res = post(gw.addr, "/v1/chat/completions", &[], CHAT_STREAM).await;
    assert_eq!(res.status, 200);
    assert!(res.text().ends_with("data: [DONE]\n\n"), "{}", res.text());
    assert!(!res.text().contains("stream_interrupted"));
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
}

#[test]
fn the_binary_checks_the_example_configs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config", &format!("{root}gateway.json")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("config.targets[0] \"paid\": fallback"),
        "{text}"
    );
    assert!(
        text.contains("config.targets[1].targets[0]: provider cheap-a, weight 0.7"),
        "{text}"
    );

    // The provider example needs its keys; without them start-up names the variable.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "check",
            "--config",
            &format!("{root}gateway.providers.json"),
        ])
        .env_remove("PORTCULLIS_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "server.api_keys.local-dev: environment variable PORTCULLIS_API_KEY is not set"
        ),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "check",
            "--config",
            &format!("{root}gateway.providers.json"),
        ])
        .envs([
            ("PORTCULLIS_API_KEY", "local-dev-key-1"),
            ("OPENAI_API_KEY", "sk-x"),
            ("ANTHROPIC_API_KEY", "sk-y"),
            ("GEMINI_API_KEY", "g-z"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sk-x"),
        "secrets are never printed"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_tokens_from_real_traffic() {
    static PROMETHEUS: std::sync::OnceLock<portcullis_tag::Prometheus> = std::sync::OnceLock::new();
    let prometheus = PROMETHEUS
        .get_or_init(|| {
            portcullis_tag::Prometheus::install().expect("one recorder per test binary")
        })
        .clone();
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().usage(30, 5).always_stream_usage());
    let _ = &b;
    let config = support::config(&format!(
        r#"{{"providers": {{"metered": {{"provider": "openai-compatible", "base_url": "{}"}}}},
            "config": {{"virtual_key": "metered"}}}}"#,
        a.base_url()
    ));
    let gateway = portcullis_gateway::Gateway::with_metrics(config, Some(prometheus)).unwrap();
    let gw = support::start_gateway(gateway).await;
    assert_eq!(
        post(gw.addr, "/v1/chat/completions", &[], CHAT)
            .await
            .status,
        200
    );
    let stream = post(gw.addr, "/v1/chat/completions", &[], CHAT_STREAM).await;
    assert!(stream.text().ends_with("data: [DONE]\n\n"));
    // The stream's report arrives as its body ends; give the server task a moment.
    let mut text = String::new();
    for _ in 0..100 {
        let metrics = send(gw.addr, &request("GET", "/metrics", &[], "")).await;
        assert_eq!(metrics.status, 200);
        text = metrics.text();
        let requests: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("portcullis_requests_total{") && l.contains("provider=\"metered\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if requests >= 2.0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("provider=\"metered\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(sum("portcullis_requests_total{"), 2.0, "{text}");
    assert_eq!(sum("portcullis_input_tokens_total{"), 60.0, "{text}");
    assert_eq!(sum("portcullis_output_tokens_total{"), 10.0, "{text}");
}

#[tokio::test]
async fn openai_bodies_pass_through_byte_for_byte() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let gw = start(&format!(
        r#"{{{}, "config": {{"virtual_key": "a"}}}}"#,
        providers(&a, &b)
    ))
    .await;
    // What the official OpenAI SDKs send: their headers, a JSON body, usage asked for on streams.
    let headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer OPENAI_API_KEY"),
        ("user-agent", "OpenAI/Python 1.55.0"),
        ("x-stainless-lang", "python"),
    ];
    let stream_with_usage = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;
    for body in [CHAT, stream_with_usage] {
        let via = post(gw.addr, "/v1/chat/completions", &headers, body).await;
        let direct = post(a.addr(), "/v1/chat/completions", &headers, body).await;
        assert_eq!(via.status, 200);
        assert_eq!(via.body, direct.body, "{body}");
        assert_eq!(via.header("content-type"), direct.header("content-type"));
    }
    // The SDK's own headers never travel upstream either.
    for seen in a.requests().iter().step_by(2) {
        assert_eq!(seen.header("x-stainless-lang"), None);
        assert_eq!(seen.header("authorization"), Some("Bearer sk-a"));
    }
}
