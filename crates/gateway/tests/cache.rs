//! The cache through the gateway, over real loopback HTTP: Portkey's `cache` config and
//! headers, hits in the shape asked for, tenants kept apart, only whole successes stored,
//! identical misses coalesced, a failing store a miss, and a Redis store shared by two
//! gateways.

#[allow(unused_imports)]
mod support;

use std::time::Duration;

use portcullis_testkit::redis::RedisServer;
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, CHAT_STREAM, post, start};

fn config(upstream: &FakeUpstream, cache: &str, server: &str) -> String {
    format!(
        r#"{{"server": {{{server}}},
            "providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "k"}}}},
            "config": {{"virtual_key": "up"{cache}}}}}"#,
        upstream.base_url()
    )
}

const SIMPLE: &str = r#", "cache": {"mode": "simple", "max_age": 60}"#;
const CHAT_PATH: &str = "/v1/chat/completions";

fn status(e: &portcullis_testkit::client::Exchange) -> &str {
    e.header("x-portkey-cache-status").unwrap_or("<none>")
}

#[tokio::test]
async fn an_exact_hit_answers_without_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    let first = post(gw.addr, CHAT_PATH, &[], CHAT).await;
    assert_eq!((first.status, status(&first)), (200, "MISS"));
    // Key order and whitespace do not matter; `user` and `metadata` are not in the key.
    let same = r#"{ "messages": [{"content": "Say hello", "role": "user"}], "model": "gpt-4o-mini", "user": "u-9" }"#;
    let second = post(gw.addr, CHAT_PATH, &[], same).await;
    assert_eq!((second.status, status(&second)), (200, "HIT"));
    assert_eq!(second.body, first.body, "the same bytes");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(upstream.hits(), 1);
    // Another temperature is another question.
    let other = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"Say hello"}]}"#;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &[], other).await), "MISS");
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn a_stream_replays_byte_for_byte_and_json_and_streams_serve_each_other() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    let with_usage = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;
    let first = post(gw.addr, CHAT_PATH, &[], with_usage).await;
    assert_eq!((first.status, status(&first)), (200, "MISS"));
    assert!(first.text().contains("data: [DONE]"));
    let second = post(gw.addr, CHAT_PATH, &[], with_usage).await;
    assert_eq!(status(&second), "HIT");
    assert_eq!(
        second.text(),
        first.text(),
        "the same events, byte for byte"
    );
    assert_eq!(second.header("content-type"), Some("text/event-stream"));
    // Without include_usage: the usage chunk is left out, the rest is the same.
    let plain = post(gw.addr, CHAT_PATH, &[], CHAT_STREAM).await;
    assert_eq!(status(&plain), "HIT");
    assert!(!plain.text().contains("\"usage\""), "{}", plain.text());
    assert!(plain.text().ends_with("data: [DONE]\n\n"));
    // A JSON client gets the stream assembled.
    let json = post(gw.addr, CHAT_PATH, &[], CHAT).await;
    assert_eq!(status(&json), "HIT");
    let v = json.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the fake upstream."
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn a_json_answer_serves_a_stream_with_its_usage() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &[], CHAT).await), "MISS");
    let with_usage = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;
    let hit = post(gw.addr, CHAT_PATH, &[], with_usage).await;
    assert_eq!(status(&hit), "HIT");
    let text = hit.text();
    assert!(
        text.contains(r#""content":"Hello from the fake upstream.""#),
        "{text}"
    );
    assert!(
        text.contains(r#""choices":[],"#) && text.contains("\"total_tokens\""),
        "{text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_max_age() {
    let _tick = support::tick_every_millisecond();
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &[], CHAT).await), "MISS");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &[], CHAT).await), "HIT");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &[], CHAT).await), "MISS");
    assert_eq!(upstream.hits(), 2);
    // A client's `Cache-Control: max-age` asks for a younger answer.
    tokio::time::advance(Duration::from_secs(10)).await;
    let young = post(gw.addr, CHAT_PATH, &[("cache-control", "max-age=5")], CHAT).await;
    assert_eq!(status(&young), "MISS");
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test]
async fn force_refresh_fetches_and_overwrites() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    upstream.set(Plan::ok().content("old"));
    post(gw.addr, CHAT_PATH, &[], CHAT).await;
    upstream.set(Plan::ok().content("new"));
    let refreshed = post(
        gw.addr,
        CHAT_PATH,
        &[("x-portkey-cache-force-refresh", "true")],
        CHAT,
    )
    .await;
    assert_eq!(status(&refreshed), "REFRESH");
    assert_eq!(refreshed.json()["choices"][0]["message"]["content"], "new");
    let hit = post(gw.addr, CHAT_PATH, &[], CHAT).await;
    assert_eq!(status(&hit), "HIT");
    assert_eq!(hit.json()["choices"][0]["message"]["content"], "new");
    // `false` is not a refresh; `Cache-Control: no-cache` is.
    let not = post(
        gw.addr,
        CHAT_PATH,
        &[("x-portkey-cache-force-refresh", "false")],
        CHAT,
    )
    .await;
    assert_eq!(status(&not), "HIT");
    let no_cache = post(gw.addr, CHAT_PATH, &[("cache-control", "no-cache")], CHAT).await;
    assert_eq!(status(&no_cache), "REFRESH");
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test]
async fn gateway_keys_and_namespaces_keep_tenants_apart() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        SIMPLE,
        r#""api_keys": {"team-a": "key-aaaaaaaa", "team-b": "key-bbbbbbbb"}"#,
    ))
    .await;
    let a = [("authorization", "Bearer key-aaaaaaaa")];
    let b = [("authorization", "Bearer key-bbbbbbbb")];
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &a, CHAT).await), "MISS");
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &a, CHAT).await), "HIT");
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &b, CHAT).await),
        "MISS",
        "another key never reads team-a's entries"
    );
    // A namespace is a tenant within a key, and never reaches another key's entries.
    let a_ns = [
        ("authorization", "Bearer key-aaaaaaaa"),
        ("x-portkey-cache-namespace", "project-1"),
    ];
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &a_ns, CHAT).await), "MISS");
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &a_ns, CHAT).await), "HIT");
    let b_ns = [
        ("authorization", "Bearer key-bbbbbbbb"),
        ("x-portkey-cache-namespace", "project-1"),
    ];
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &b_ns, CHAT).await), "MISS");
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn errors_246_and_cut_streams_are_never_stored() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    for (plan, body) in [
        (Plan::ok().status(500), CHAT),
        (Plan::ok().status(429), CHAT),
        (Plan::ok().status(400), CHAT),
        (Plan::ok().status(246), CHAT),
        (Plan::ok().break_after(1), CHAT_STREAM),
        (Plan::ok().end_without_done(1), CHAT_STREAM),
    ] {
        upstream.set(plan.clone());
        let before = upstream.hits();
        let first = post(gw.addr, CHAT_PATH, &[], body).await;
        let second = post(gw.addr, CHAT_PATH, &[], body).await;
        assert_eq!(status(&first), "MISS", "{plan:?}");
        assert_eq!(status(&second), "MISS", "{plan:?}: {}", second.text());
        assert_eq!(upstream.hits(), before + 2, "{plan:?}");
    }
}

#[tokio::test]
async fn answers_past_the_entry_size_limit_pass_uncached() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(
        &upstream,
        SIMPLE,
        r#""cache": {"max_entry_bytes": 100}"#,
    ))
    .await;
    for body in [CHAT, CHAT_STREAM] {
        let first = post(gw.addr, CHAT_PATH, &[], body).await;
        let second = post(gw.addr, CHAT_PATH, &[], body).await;
        assert_eq!((status(&first), status(&second)), ("MISS", "MISS"));
        assert_eq!(first.status, 200);
        assert!(first.body.len() > 100);
    }
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn a_bad_server_cache_section_names_its_path() {
    for (section, path) in [
        (r#"{"store": "disk"}"#, "server.cache.store"),
        (r#"{"store": "redis"}"#, "server.cache.url"),
        (
            r#"{"store": "redis", "url": "http://x"}"#,
            "server.cache.url",
        ),
        (r#"{"max_bytes": 0}"#, "server.cache.max_bytes"),
        (
            r#"{"semantic_threshold": 1.5}"#,
            "server.cache.semantic_threshold",
        ),
        (r#"{"timeout": 5}"#, "server.cache.timeout"),
    ] {
        let text = format!(
            r#"{{"server": {{"cache": {section}}}, "providers": {{"m": {{"provider": "mock"}}}}}}"#
        );
        let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
        assert_eq!(err.path(), path, "{section}: {err}");
    }
}

#[tokio::test]
async fn identical_concurrent_misses_make_one_upstream_call() {
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().delay(Duration::from_millis(200)));
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            post(addr, CHAT_PATH, &[], CHAT).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let e = t.await.unwrap();
        assert_eq!(e.status, 200);
        assert_eq!(
            e.json()["choices"][0]["message"]["content"],
            "Hello from the fake upstream."
        );
        statuses.push(status(&e).to_owned());
    }
    assert_eq!(upstream.hits(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "MISS").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "HIT").count(), 19);
}

#[tokio::test]
async fn a_failed_leader_lets_its_followers_fetch_their_own() {
    let upstream = FakeUpstream::start().await;
    // The first call fails after a while; the waiting ones must not be stuck with it.
    upstream.set(
        Plan::ok()
            .delay(Duration::from_millis(100))
            .fail_first(1, 500),
    );
    let gw = start(&config(&upstream, SIMPLE, "")).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            post(addr, CHAT_PATH, &[], CHAT).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().status == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "one 500 (the leader), the followers answered");
    assert!(upstream.hits() >= 2);
}

#[tokio::test]
async fn a_store_that_fails_is_a_miss_never_an_error() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = FakeUpstream::start().await;
    let server = format!(
        r#""cache": {{"store": "redis", "url": "redis://127.0.0.1:{port}", "timeout_ms": 500}}"#
    );
    let gw = start(&config(&upstream, SIMPLE, &server)).await;
    for _ in 0..3 {
        let e = post(gw.addr, CHAT_PATH, &[], CHAT).await;
        assert_eq!((e.status, status(&e)), (200, "MISS"));
    }
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test]
async fn cache_off_no_store_and_the_older_header() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, "", "")).await;
    // No cache configured: DISABLED, as Portkey says it.
    let e = post(gw.addr, CHAT_PATH, &[], CHAT).await;
    assert_eq!(status(&e), "DISABLED");
    // The older `x-portkey-cache` header turns it on (langroid sends the config object).
    let legacy = [("x-portkey-cache", r#"{"mode": "simple", "max_age": 3600}"#)];
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &legacy, CHAT).await),
        "MISS"
    );
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &legacy, CHAT).await),
        "HIT"
    );
    let simple = [("x-portkey-cache", "simple")];
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &simple, CHAT).await),
        "HIT"
    );
    // A value it cannot read is a 400 naming the header, never ignored.
    let bad = post(gw.addr, CHAT_PATH, &[("x-portkey-cache", "fuzzy")], CHAT).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("x-portkey-cache"), "{}", bad.text());
    // no-store: neither read nor written.
    let gw2 = start(&config(&upstream, SIMPLE, "")).await;
    let before = upstream.hits();
    for _ in 0..2 {
        let e = post(gw2.addr, CHAT_PATH, &[("cache-control", "no-store")], CHAT).await;
        assert_eq!(status(&e), "DISABLED");
    }
    assert_eq!(upstream.hits(), before + 2);
    // The header works for virtual-key requests too.
    let vk = [
        ("x-portkey-virtual-key", "up"),
        ("x-portkey-cache", "simple"),
    ];
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"via vk"}]}"#;
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &vk, body).await), "MISS");
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &vk, body).await), "HIT");
}

#[tokio::test]
async fn a_header_config_can_ask_for_the_cache_and_a_child_replaces_its_parent() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, "", "")).await;
    let cfg = r#"{"cache": {"mode": "simple"}, "strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "up", "cache": {"mode": "semantic", "max_age": 30}}]}"#;
    let h = [("x-portkey-config", cfg)];
    // The leaf's own `cache` replaced the root's: semantic mode.
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &h, CHAT).await),
        "SEMANTIC MISS"
    );
    assert_eq!(status(&post(gw.addr, CHAT_PATH, &h, CHAT).await), "HIT");
    let bad = r#"{"virtual_key": "up", "cache": {"mode": "simple", "max_age": -1}}"#;
    let e = post(gw.addr, CHAT_PATH, &[("x-portkey-config", bad)], CHAT).await;
    assert_eq!(e.status, 400);
    assert!(
        e.text().contains("x-portkey-config.cache.max_age"),
        "{}",
        e.text()
    );
}

#[tokio::test]
async fn override_params_are_in_the_key() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&config(&upstream, "", "")).await;
    let cfg = |model: &str| {
        format!(
            r#"{{"virtual_key": "up", "cache": {{"mode": "simple"}}, "override_params": {{"model": "{model}"}}}}"#
        )
    };
    let a = cfg("gpt-4o");
    let b = cfg("gpt-4o-mini");
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &[("x-portkey-config", &a)], CHAT).await),
        "MISS"
    );
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &[("x-portkey-config", &a)], CHAT).await),
        "HIT"
    );
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &[("x-portkey-config", &b)], CHAT).await),
        "MISS"
    );
    assert_eq!(upstream.requests()[1].json()["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn two_gateways_share_one_redis() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let server = format!(r#""cache": {{"store": "redis", "url": "{}"}}"#, redis.url());
    let one = start(&config(&upstream, SIMPLE, &server)).await;
    let two = start(&config(&upstream, SIMPLE, &server)).await;
    let first = post(one.addr, CHAT_PATH, &[], CHAT_STREAM).await;
    assert_eq!(status(&first), "MISS");
    // The entry is written once the answer ended; on another replica it is a hit as soon as
    // Redis has it.
    let mut second = post(two.addr, CHAT_PATH, &[], CHAT_STREAM).await;
    for _ in 0..50 {
        if status(&second) == "HIT" {
            break;
        }
        second = post(two.addr, CHAT_PATH, &[], CHAT_STREAM).await;
    }
    assert_eq!(status(&second), "HIT");
    assert_eq!(second.text(), first.text());
    // Redis goes away: misses, and every request still answered.
    redis.kill();
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"while redis is down"}]}"#;
    for gw in [&one, &two] {
        let e = post(gw.addr, CHAT_PATH, &[], body).await;
        assert_eq!((e.status, status(&e)), (200, "MISS"));
    }
    // It comes back (empty): entries are written and read again.
    redis.restart();
    let mut stored = false;
    for _ in 0..50 {
        let e = post(one.addr, CHAT_PATH, &[], body).await;
        assert_eq!(e.status, 200);
        if status(&e) == "HIT" {
            stored = true;
            break;
        }
    }
    assert!(stored, "the store recovers after Redis restarts");
}

fn ask(question: &str) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a support bot."}},{{"role":"user","content":"{question}"}}]}}"#
    )
}

#[tokio::test]
async fn semantic_mode_serves_a_paraphrase_and_refuses_every_near_miss() {
    let upstream = FakeUpstream::start().await;
    let semantic = r#", "cache": {"mode": "semantic", "max_age": 600}"#;
    let gw = start(&config(&upstream, semantic, "")).await;
    upstream.set(Plan::ok().content("Open Settings, then Security, then Reset password."));
    let first = post(gw.addr, CHAT_PATH, &[], &ask("How do I reset my password?")).await;
    assert_eq!(status(&first), "SEMANTIC MISS");
    // The same question exactly: an exact hit first.
    let exact = post(gw.addr, CHAT_PATH, &[], &ask("How do I reset my password?")).await;
    assert_eq!(status(&exact), "HIT");
    for paraphrase in [
        "How can I reset my password?",
        "how do i reset my password",
        "Please, how do I reset my password?",
    ] {
        let e = post(gw.addr, CHAT_PATH, &[], &ask(paraphrase)).await;
        assert_eq!(status(&e), "SEMANTIC HIT", "{paraphrase}");
        assert_eq!(e.body, first.body, "{paraphrase}: the cached answer");
    }
    assert_eq!(upstream.hits(), 1);
    for near_miss in [
        "How do I reset my username?",
        "How do I not reset my password?",
        "How do I reset my password in 2 steps?",
        "How do I reset my Gmail password?",
        "Comment réinitialiser mon mot de passe ?",
        "Why do I reset my password?",
    ] {
        let before = upstream.hits();
        let e = post(gw.addr, CHAT_PATH, &[], &ask(near_miss)).await;
        assert_eq!(status(&e), "SEMANTIC MISS", "{near_miss}");
        assert_eq!(upstream.hits(), before + 1, "{near_miss}");
    }
    // Another system prompt is another partition: never compared.
    let other = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a pirate."},{"role":"user","content":"How can I reset my password?"}]}"#;
    assert_eq!(
        status(&post(gw.addr, CHAT_PATH, &[], other).await),
        "SEMANTIC MISS"
    );
    // A different follow-up in the same conversation is a miss.
    let convo = |last: &str| {
        format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"I use the mobile app."}},{{"role":"assistant","content":"Got it."}},{{"role":"user","content":"{last}"}}]}}"#
        )
    };
    assert_eq!(
        status(
            &post(
                gw.addr,
                CHAT_PATH,
                &[],
                &convo("How do I reset my password?")
            )
            .await
        ),
        "SEMANTIC MISS"
    );
    assert_eq!(
        status(
            &post(
                gw.addr,
                CHAT_PATH,
                &[],
                &convo("How do I delete my account?")
            )
            .await
        ),
        "SEMANTIC MISS"
    );
    assert_eq!(
        status(
            &post(
                gw.addr,
                CHAT_PATH,
                &[],
                &convo("How can I reset my password?")
            )
            .await
        ),
        "SEMANTIC HIT"
    );
}

#[cfg(feature = "bert")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bert_embedder_serves_a_paraphrase_through_the_gateway() {
    let Ok(dir) = std::env::var("PORTCULLIS_MINILM_DIR") else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_MODEL").is_none(),
            "PORTCULLIS_REQUIRE_MODEL is set but PORTCULLIS_MINILM_DIR is not"
        );
        eprintln!("\n*** SKIPPED: PORTCULLIS_MINILM_DIR is not set (the BERT model's files) ***\n");
        return;
    };
    let upstream = FakeUpstream::start().await;
    let server =
        format!(r#""cache": {{"embedder": {{"bert": "{dir}"}}, "embed_timeout_ms": 10000}}"#);
    let semantic = r#", "cache": {"mode": "semantic"}"#;
    let gw = start(&config(&upstream, semantic, &server)).await;
    let first = post(gw.addr, CHAT_PATH, &[], &ask("How do I reset my password?")).await;
    assert_eq!(status(&first), "SEMANTIC MISS");
    let e = post(
        gw.addr,
        CHAT_PATH,
        &[],
        &ask("How can I reset my password?"),
    )
    .await;
    assert_eq!(status(&e), "SEMANTIC HIT");
    let e = post(gw.addr, CHAT_PATH, &[], &ask("How do I reset my username?")).await;
    assert_eq!(status(&e), "SEMANTIC MISS");
    assert_eq!(upstream.hits(), 2);
}

#[cfg(feature = "bert")]
#[test]
fn a_bert_directory_without_the_model_is_a_config_error() {
    let text = r#"{"server": {"cache": {"embedder": {"bert": "/nonexistent-model-dir"}}}, "providers": {"m": {"provider": "mock"}}}"#;
    let config = portcullis_gateway::Config::parse(text, &|_| None).unwrap();
    let err = portcullis_gateway::Gateway::new(config).unwrap_err();
    assert_eq!(err.path(), "server.cache.embedder.bert");
}
