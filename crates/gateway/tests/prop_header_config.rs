//! Property tests of the header-config reader (issue 15): whatever a client puts in
//! `x-portkey-config`, the gateway answers 200 or a 4xx with an OpenAI-style message, never a
//! 5xx and never a panic; and a config read from a header only ever names providers the
//! server defines.
//!
//! The gateway runs in-process (no sockets): `Gateway` called with `oneshot`, mock providers
//! that answer at once.
//!
//! CI runs a fixed number of cases per property (`CASES`); set `PROPTEST_CASES` for a
//! longer local run, e.g.
//! `PROPTEST_CASES=20000 cargo test -p portcullis-gateway --test prop_header_config`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_gateway::config::{Node, Origin};
use portcullis_gateway::{Config, Gateway};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

/// Cases per property in CI (debug build, 2 cores: a few seconds per suite).
const CASES: u32 = 1000;

/// `CASES`, unless `PROPTEST_CASES` asks for more (or fewer). No regression files are
/// written: a failure found is kept as a plain test below.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config.failure_persistence = None;
    config
}

const PROVIDERS: [&str; 3] = ["a", "b", "c"];

const SERVER: &str = r#"{
  "providers": {"a": {"provider": "mock"}, "b": {"provider": "mock"}, "c": {"provider": "mock"}},
  "config": {"virtual_key": "a"}
}"#;

fn server_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::parse(SERVER, &|_| None).unwrap())
}

fn gateway() -> Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY
        .get_or_init(|| Gateway::new(server_config().clone()).unwrap())
        .clone()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// Sends a chat request with `header` as `x-portkey-config`; the status and the whole body.
fn send(header: HeaderValue, stream: bool) -> (StatusCode, Bytes) {
    let body = if stream {
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    } else {
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
    };
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-portkey-config", header)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    block_on(async {
        let res = gateway().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    })
}

/// Checks an answer: 200 with a whole body, or a 4xx with an OpenAI-style error message.
fn check_answer(status: StatusCode, body: &[u8], stream: bool) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    prop_assert!(
        !status.is_server_error(),
        "{} from a client's config: {}",
        status,
        text
    );
    if status == StatusCode::OK {
        if stream {
            prop_assert!(
                text.trim_end().ends_with("data: [DONE]"),
                "a stream that did not finish: {}",
                text
            );
        } else {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("200 but not JSON ({e}): {text}")))?;
            prop_assert!(v["choices"].is_array(), "{}", text);
        }
    } else {
        prop_assert!(status.is_client_error(), "{}", status);
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("{status} without a JSON body ({e})")))?;
        prop_assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{} without a message: {}",
            status,
            text
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators: configs shaped like Portkey's, right and wrong.

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![-1.0, 0.0, 0.5, 1.0, 1e9, 1e300]).prop_map(Value::from),
        "[ -~]{0,8}".prop_map(Value::from),
        "\\PC{0,4}".prop_map(Value::from),
        prop::sample::select(vec![
            "a",
            "b",
            "c",
            "nope",
            "single",
            "fallback",
            "loadbalance",
            "conditional",
            ""
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys of the schema, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "strategy", "mode", "targets", "virtual_key", "provider", "weight", "retry",
            "attempts", "on_status_codes", "override_params", "conditions", "query", "then",
            "default", "name", "request_timeout", "circuit_breaker", "cache", "custom_host",
            "api_key", "base_url", "balancer", "sticky", "use_retry_after_header", "model",
            "stream", "max_tokens", "metadata.plan", "params.model", "$eq", "$regex", "$or",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

/// `override_params`: mostly what configs set (model, max_tokens, temperature, user), now
/// and then a field of the wrong type or one a client may not override.
fn override_params() -> impl Strategy<Value = Value> {
    let sane = prop::collection::btree_map(
        prop::sample::select(vec!["model", "max_tokens", "temperature", "user", "n"]),
        prop_oneof![
            Just(json!("gpt-4o")),
            (0u32..100_000).prop_map(Value::from),
            (0.0f64..2.0).prop_map(Value::from),
        ],
        0..3,
    );
    let any = prop::collection::btree_map(
        prop::sample::select(vec![
            "model",
            "stream",
            "max_tokens",
            "user",
            "messages",
            "stream_options",
        ]),
        any_json(),
        0..3,
    );
    prop_oneof![4 => sane, 1 => any]
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn condition() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!({"metadata.plan": "paid"})),
            Just(json!({"params.model": {"$regex": "^gpt-"}})),
            Just(json!({"params.model": {"$regex": "\\w{60}"}})),
            Just(json!({"$or": [{"params.stream": true}, {"url.pathname": {"$eq": "/v1/chat/completions"}}]})),
            Just(json!({"params.max_tokens": {"$gt": 10}})),
            Just(json!({})),
            any_json(),
        ],
        prop_oneof![4 => prop::sample::select(vec!["t0", "t1"]), 1 => Just("nope")],
    )
        .prop_map(|(query, then)| json!({"query": query, "then": then}))
}

/// A node of a routing tree: mostly well-formed, with optional extras that may be wrong.
fn node() -> impl Strategy<Value = Value> {
    let leaf = (
        prop_oneof![8 => prop::sample::select(PROVIDERS.to_vec()), 1 => prop::sample::select(vec!["nope", ""])],
        prop::bool::weighted(0.3),
        prop::option::weighted(0.4, override_params()),
        prop::option::weighted(0.4, prop_oneof![4 => prop::sample::select(vec![0.0, 0.5, 1.0, 3.0]), 1 => Just(-1.0)]),
    )
        .prop_map(|(vk, provider_key, overrides, weight)| {
            let mut m = Map::new();
            m.insert(
                if provider_key { "provider" } else { "virtual_key" }.into(),
                json!(vk),
            );
            if let Some(o) = overrides {
                m.insert("override_params".into(), o);
            }
            if let Some(w) = weight {
                m.insert("weight".into(), json!(w));
            }
            Value::Object(m)
        });
    leaf.prop_recursive(4, 24, 5, |inner| {
        (
            prop_oneof![
                8 => prop::sample::select(vec!["single", "fallback", "loadbalance", "conditional"]),
                1 => Just("nope"),
            ],
            prop::collection::vec(inner, 1..5),
            prop::collection::vec(condition(), 0..3),
            prop_oneof![4 => Just("t0"), 1 => Just("t1"), 1 => Just("nope")],
            // The shape a strategy's keys take: right for its mode, or wrong (conditions
            // on a fallback, no default on a conditional).
            prop::bool::weighted(0.85),
            prop::option::weighted(0.4, (prop_oneof![6 => 0u64..=5, 1 => 6u64..12], prop::option::of(prop::collection::vec(prop_oneof![4 => prop::sample::select(vec![429, 500, 502, 503, 504]).prop_map(Value::from), 1 => Just(json!(99)), 1 => Just(json!("x"))], 0..3)))),
            prop::option::weighted(0.3, override_params()),
            prop::option::weighted(0.3, prop_oneof![4 => prop::sample::select(vec![1, 50, 5000]).prop_map(Value::from), 1 => Just(json!(0)), 1 => Just(json!("x"))]),
        )
            .prop_map(|(mode, mut targets, conditions, default, fitting, retry, overrides, timeout)| {
                let mut strategy = Map::new();
                strategy.insert("mode".into(), json!(mode));
                let conditional = mode == "conditional";
                if mode == "single" && fitting {
                    targets.truncate(1);
                }
                if conditional {
                    for (i, t) in targets.iter_mut().enumerate() {
                        if let Value::Object(o) = t {
                            o.insert("name".into(), json!(format!("t{i}")));
                        }
                    }
                }
                if conditional == fitting {
                    strategy.insert("conditions".into(), Value::Array(conditions));
                    strategy.insert("default".into(), json!(default));
                }
                let mut m = Map::new();
                m.insert("strategy".into(), Value::Object(strategy));
                m.insert("targets".into(), Value::Array(targets));
                if let Some((attempts, codes)) = retry {
                    let mut r = json!({"attempts": attempts});
                    if let Some(c) = codes {
                        r["on_status_codes"] = Value::Array(c);
                    }
                    m.insert("retry".into(), r);
                }
                if let Some(o) = overrides {
                    m.insert("override_params".into(), o);
                }
                if let Some(t) = timeout {
                    m.insert("request_timeout".into(), t);
                }
                Value::Object(m)
            })
    })
}

/// A well-formed-ish tree, sometimes with one value replaced by anything at all.
fn header_config() -> impl Strategy<Value = Value> {
    (node(), prop::option::weighted(0.15, (key(), any_json()))).prop_map(|(mut tree, extra)| {
        if let (Some((k, v)), Value::Object(o)) = (extra, &mut tree) {
            o.insert(k, v);
        }
        tree
    })
}

/// Header text that is not a tree: garbage, truncations, ids, huge and deep values.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,64}",
        "\\{[ -~]{0,64}",
        "pc-[a-z0-9]{1,12}",
        (1usize..2000).prop_map(|n| format!("{}{}", "{\"targets\":[".repeat(n), "]}".repeat(n))),
        (1usize..200).prop_map(|n| format!("{{\"x\":{}{}}}", "[".repeat(n), "]".repeat(n))),
        // From two letters: `a` alone is a provider of the server, a config that works.
        (2usize..40_000).prop_map(|n| format!("{{\"virtual_key\":\"{}\"}}", "a".repeat(n))),
        header_config().prop_map(|v| {
            let text = v.to_string();
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_owned()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Trees of every shape, right and wrong: 200 or a 4xx with a message, never a 5xx.
    #[test]
    fn header_configs_never_cause_a_5xx(tree in header_config(), stream in any::<bool>()) {
        let text = tree.to_string();
        let Ok(header) = HeaderValue::from_str(&text) else {
            // Not visible ASCII (unicode in a string): sent as raw bytes, which the gateway
            // must refuse politely.
            let header = HeaderValue::from_bytes(text.as_bytes()).unwrap();
            let (status, body) = send(header, stream);
            prop_assert_eq!(status, StatusCode::BAD_REQUEST);
            return check_answer(status, &body, stream);
        };
        let (status, body) = send(header, stream);
        check_answer(status, &body, stream)?;
    }

    /// Anything that is not a tree at all: a 4xx with a message.
    #[test]
    fn header_text_never_causes_a_5xx(text in header_text(), stream in any::<bool>()) {
        let header = HeaderValue::from_str(&text).unwrap();
        let (status, body) = send(header, stream);
        check_answer(status, &body, stream)?;
        prop_assert_ne!(status, StatusCode::OK, "{} was taken for a config", text);
    }

    /// The reader itself on any JSON: a tree whose leaves are all server providers, or an
    /// error that names its place under `x-portkey-config`.
    #[test]
    fn reader_only_names_known_providers(v in prop_oneof![header_config(), any_json()]) {
        match Node::parse(&v, "x-portkey-config", &server_config().providers, Origin::Header) {
            Ok(node) => {
                for p in node.providers() {
                    prop_assert!(PROVIDERS.contains(&p), "a header config reached provider `{}`", p);
                }
            }
            Err(e) => {
                prop_assert!(e.path().starts_with("x-portkey-config"), "{}", e);
                prop_assert!(!e.message().is_empty());
            }
        }
    }
}

#[test]
fn the_file_tree_still_answers() {
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .unwrap();
    let status = block_on(async { gateway().oneshot(req).await.unwrap().status() });
    assert_eq!(status, StatusCode::OK);
}
