//! What a client sends cannot walk around the server's policy: bodies are parsed whatever
//! their label, query strings stay at the gateway, and keys are checked without regard to
//! their length. Over real loopback HTTP against a fake upstream that records what it gets.

mod support;

use portcullis_testkit::FakeUpstream;
use support::{CHAT, post, request, send, start};

const KEY: &str = "key-aaaa-1111";

/// A gateway that sends everything to `upstream` with the server's model, behind `KEY`.
async fn overriding(upstream: &FakeUpstream) -> support::Running {
    start(&format!(
        r#"{{
            "server": {{"api_keys": {{"team-a": "{KEY}"}}}},
            "providers": {{
                "a": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-a"}}
            }},
            "config": {{"virtual_key": "a", "override_params": {{"model": "server-model"}}}}
        }}"#,
        upstream.base_url()
    ))
    .await
}

const CLIENT_CHAT: &str =
    r#"{"model":"client-chosen-model","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn no_content_type_or_byte_order_mark_skips_override_params() {
    let upstream = FakeUpstream::start().await;
    let gw = overriding(&upstream).await;
    let with_bom = format!("\u{feff}{CLIENT_CHAT}");
    let cases: [(&str, &str); 6] = [
        ("text/plain", CLIENT_CHAT),
        ("text/plain", &with_bom),
        ("application/json", &with_bom),
        ("application/x-www-form-urlencoded", &with_bom),
        ("application/octet-stream", &with_bom),
        ("text/plain; charset=utf-8", &with_bom),
    ];
    for (i, (content_type, body)) in cases.into_iter().enumerate() {
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-api-key", KEY), ("content-type", content_type)],
            body,
        )
        .await;
        assert_eq!(res.status, 200, "{content_type}: {}", res.text());
        assert_eq!(upstream.hits(), i + 1, "{content_type}");
        let seen = upstream.last_request().unwrap();
        assert!(
            !seen.body.starts_with(b"\xEF\xBB\xBF"),
            "{content_type}: the BOM is not forwarded"
        );
        let sent = seen.json();
        assert_eq!(sent["model"], "server-model", "{content_type}");
        assert_eq!(sent["messages"][0]["content"], "hi", "{content_type}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_whatever_its_label() {
    let upstream = FakeUpstream::start().await;
    let gw = overriding(&upstream).await;
    for (content_type, body) in [
        ("text/plain", "model=client-chosen-model"),
        (
            "application/x-www-form-urlencoded",
            "model=client-chosen-model",
        ),
        ("text/plain", "[\"client-chosen-model\"]"),
        ("text/plain", ""),
        ("text/plain", "\u{feff}"),
    ] {
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-portkey-api-key", KEY), ("content-type", content_type)],
            body,
        )
        .await;
        assert_eq!(res.status, 400, "{content_type} {body:?}: {}", res.text());
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
    // UTF-16 with its byte order mark is not JSON as RFC 8259 defines it.
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(CLIENT_CHAT.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let raw = request(
        "POST",
        "/v1/chat/completions",
        &[("x-portkey-api-key", KEY), ("content-type", "text/plain")],
        utf16,
    );
    assert_eq!(send(gw.addr, &raw).await.status, 400);
    assert_eq!(upstream.hits(), 0, "nothing unparsed reaches the upstream");
}

#[tokio::test]
async fn the_client_query_string_does_not_reach_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let gw = overriding(&upstream).await;
    for path in [
        "/v1/chat/completions?api-version=evil&key=x",
        "/v1/chat/completions?",
        "/v1/chat/completions?key",
    ] {
        let res = post(gw.addr, path, &[("x-portkey-api-key", KEY)], CHAT).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        assert_eq!(
            upstream.last_request().unwrap().path,
            "/v1/chat/completions",
            "{path}"
        );
    }
    let res = post(
        gw.addr,
        "/v1/embeddings?key=x",
        &[("x-portkey-api-key", KEY)],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.last_request().unwrap().path, "/v1/embeddings");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let upstream = FakeUpstream::start().await;
    let gw = overriding(&upstream).await;
    for value in [
        format!("bearer {KEY}"),
        format!("BEARER {KEY}"),
        format!("Bearer   {KEY}"),
        format!("bEaReR\t{KEY} "),
    ] {
        let res = post(
            gw.addr,
            "/v1/chat/completions",
            &[("authorization", value.as_str())],
            CHAT,
        )
        .await;
        assert_eq!(res.status, 200, "{value:?}: {}", res.text());
    }
    assert_eq!(upstream.hits(), 4);
    for seen in upstream.requests() {
        assert_eq!(seen.header("authorization"), Some("Bearer sk-a"));
    }
}

#[tokio::test]
async fn wrong_keys_of_any_length_are_refused() {
    let upstream = FakeUpstream::start().await;
    let gw = overriding(&upstream).await;
    let long = KEY.repeat(40);
    let wrong = [
        "k",
        "key-aaaa-111",
        "key-aaaa-1112",
        "key-aaaa-11111",
        "KEY-AAAA-1111",
        &long,
    ];
    for key in wrong {
        let bearer = format!("bearer {key}");
        for header in [
            ("authorization", bearer.as_str()),
            ("x-portkey-api-key", key),
        ] {
            let res = post(gw.addr, "/v1/chat/completions", &[header], CHAT).await;
            assert_eq!(res.status, 401, "{header:?}");
            assert_eq!(res.json()["error"]["type"], "authentication_error");
        }
    }
    for header in [
        ("authorization", "Basic a2V5LWFhYWEtMTExMQ=="),
        ("authorization", "bearer"),
        ("authorization", KEY),
    ] {
        let res = post(gw.addr, "/v1/chat/completions", &[header], CHAT).await;
        assert_eq!(res.status, 401, "{header:?}");
    }
    assert_eq!(upstream.hits(), 0);
}
