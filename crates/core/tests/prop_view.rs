//! Property tests of the request view and the edge (issue 15): whatever a client sends, the
//! edge answers with a view for the layers below or with a 400 in OpenAI's error shape, and
//! never panics; well-formed chat requests read back exactly.
//!
//! CI runs a fixed number of cases per property (`CASES`); set `PROPTEST_CASES` for a
//! longer local run, e.g. `PROPTEST_CASES=20000 cargo test -p portcullis-core --test prop_view`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, RequestView};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};
use tower::{Layer, ServiceExt, service_fn};

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

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// What the edge did with one request: the status, the view the inner service saw (when it
/// was called) and the body of the answer.
struct Answer {
    status: StatusCode,
    reached: bool,
    view: Option<Arc<RequestView>>,
    body: Bytes,
}

/// Sends `body` with `content_type` through an edge whose inner service hands back the view
/// it saw in the response's extensions.
fn through_edge(body: Bytes, content_type: Option<&str>) -> Answer {
    let edge = EdgeLayer::new().limit(1 << 20).layer(service_fn(
        |req: Request<BufferedBody>| async move {
            let view = req.extensions().get::<Arc<RequestView>>().cloned();
            let mut res = Response::new(Body::from("inner"));
            res.extensions_mut().insert(Reached(view));
            Ok::<_, BoxError>(res)
        },
    ));
    let mut req = Request::post("/v1/chat/completions");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(body)).unwrap();
    block_on(async move {
        let res = edge.oneshot(req).await.unwrap();
        let status = res.status();
        let reached = res.extensions().get::<Reached>().cloned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            reached: reached.is_some(),
            view: reached.and_then(|r| r.0),
            body,
        }
    })
}

#[derive(Clone)]
struct Reached(Option<Arc<RequestView>>);

/// Asserts `body` is an OpenAI-style error: `{"error":{"message": non-empty, "type": …}}`.
fn assert_openai_error(body: &[u8]) -> Result<(), TestCaseError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("error body is not JSON: {e}")))?;
    let error = &v["error"];
    prop_assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    prop_assert!(error["type"].is_string(), "{v}");
    prop_assert!(
        error.get("code").is_some() && error.get("param").is_some(),
        "{v}"
    );
    Ok(())
}

/// Whether `v` has the types `RequestView::parse` demands of the fields layers read.
fn well_typed(object: &Map<String, Value>) -> bool {
    let ok = |key: &str, check: fn(&Value) -> bool| {
        object.get(key).is_none_or(|v| v.is_null() || check(v))
    };
    ok("model", Value::is_string)
        && ok("user", Value::is_string)
        && ok("stream", Value::is_boolean)
        && ok("messages", Value::is_array)
        && ok("stream_options", Value::is_object)
}

/// JSON values of every type, nested a few levels, with unicode strings and numbers at the
/// edges of what JSON can say.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN_POSITIVE)),
        ".{0,12}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Object keys: mostly the ones the view reads, so that wrong types are met often.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "model", "messages", "stream", "user", "stream_options", "include_usage", "role",
            "content",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

/// A request body as an object whose known fields hold anything.
fn any_request_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(field_name(), any_json(), 0..7)
        .prop_map(|m| m.into_iter().collect())
}

/// Text that is JSON-like without being JSON: numbers too large for any type, deep nesting,
/// stray BOMs, truncations.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Numbers past u64 and f64.
        ("[1-9][0-9]{18,400}", prop::option::of("e[+-]?[0-9]{1,5}")).prop_map(|(d, e)| format!(
            r#"{{"model":"m","max_tokens":{d}{}}}"#,
            e.unwrap_or_default()
        )),
        "[1-9][0-9]{0,3}e[0-9]{3,6}".prop_map(|n| format!(r#"{{"temperature":{n}}}"#)),
        // Deep nesting, inside a field and as the whole body.
        (1usize..3000).prop_map(|n| format!(
            r#"{{"messages":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )),
        (1usize..3000).prop_map(|n| format!("{}{}", "{\"a\":".repeat(n), "}".repeat(n))),
        (1usize..3000).prop_map(|n| "[".repeat(n)),
        // A BOM, whitespace, or garbage around a valid body.
        (
            prop::sample::select(vec!["\u{feff}", " \n\t", "\0", "//", ""]),
            prop::sample::select(vec!["", "\u{feff}", " x", "}", "\0"])
        )
            .prop_map(|(before, after)| format!(r#"{before}{{"model":"m"}}{after}"#)),
        // Truncated valid bodies.
        (0usize..64).prop_map(|n| {
            let full =
                r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"é😀"}]}"#;
            full.chars().take(n).collect::<String>()
        }),
        // Escapes, lone surrogates and duplicate keys.
        Just(r#"{"model":"\ud800"}"#.to_owned()),
        Just(r#"{"model":"\u0000\uffff"}"#.to_owned()),
        Just(r#"{"model":"a","model":1}"#.to_owned()),
        Just(r#"{"model":1,"model":"a"}"#.to_owned()),
        Just(r#"{"stream":true,"stream":"yes"}"#.to_owned()),
    ]
}

const CONTENT_TYPES: [Option<&str>; 6] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("application/vnd.api+json"),
];

/// The edge's answer for bytes that are a JSON body, and its agreement with
/// `RequestView::parse` on them.
fn check_json_body(bytes: Bytes) -> Result<(), TestCaseError> {
    let parsed = RequestView::parse(bytes.clone());
    let answer = through_edge(bytes.clone(), Some("application/json"));
    match &parsed {
        Ok(view) => {
            prop_assert_eq!(answer.status, StatusCode::OK);
            let seen = answer
                .view
                .expect("a parsed body reaches the inner service");
            prop_assert_eq!(seen.model(), view.model());
            prop_assert_eq!(seen.stream(), view.stream());
            prop_assert_eq!(seen.bytes(), &bytes);
        }
        Err(err) => {
            prop_assert!(!err.message.is_empty());
            // A body that opens with a BOM may be read as JSON once the BOM is dropped (the
            // edge may tolerate it); any other body that does not parse is refused.
            if !bytes.starts_with("\u{feff}".as_bytes()) {
                prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST);
                prop_assert!(!answer.reached);
                assert_openai_error(&answer.body)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes at all: never a panic; a JSON content type gets a view or a 400.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let bytes = Bytes::from(bytes);
        if let Ok(view) = RequestView::parse(bytes.clone()) {
            prop_assert_eq!(view.bytes(), &bytes);
        }
        if bytes.is_empty() {
            let answer = through_edge(bytes, Some("application/json"));
            prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_openai_error(&answer.body)?;
        } else {
            check_json_body(bytes)?;
        }
    }

    /// Objects whose known fields hold values of any type: the view exists exactly when the
    /// types are right, and then reads the same values as the JSON.
    #[test]
    fn wrong_types_are_refused_and_right_ones_read(object in any_request_object()) {
        let text = serde_json::to_vec(&object).unwrap();
        let parsed = RequestView::parse(Bytes::from(text.clone()));
        prop_assert_eq!(parsed.is_ok(), well_typed(&object), "{:?}", parsed.as_ref().err());
        match parsed {
            Ok(view) => {
                prop_assert_eq!(view.model(), object.get("model").and_then(Value::as_str));
                prop_assert_eq!(view.user(), object.get("user").and_then(Value::as_str));
                prop_assert_eq!(
                    view.stream(),
                    object.get("stream").and_then(Value::as_bool).unwrap_or(false)
                );
                prop_assert_eq!(
                    view.messages().map(<[Value]>::len),
                    object.get("messages").and_then(Value::as_array).map(Vec::len)
                );
                // Compared with serde_json's own reading of the text: without its
                // `float_roundtrip` feature a float may come back one ulp away.
                let read: Map<String, Value> = serde_json::from_slice(&text).unwrap();
                for (key, value) in &read {
                    prop_assert_eq!(view.get(key), Some(value));
                    prop_assert_eq!(view.param(&[key.as_str()]), Some(value));
                }
            }
            Err(err) => {
                // The field at fault is named, and it is one of the checked ones.
                let param = err.param.as_deref().unwrap_or("");
                prop_assert!(
                    ["model", "user", "stream", "messages", "stream_options"].contains(&param),
                    "{}", err.message
                );
                prop_assert!(!well_typed(&object));
                prop_assert!(err.message.contains(param));
            }
        }
        check_json_body(Bytes::from(text))?;
    }

    /// Any JSON value as the whole body: only objects make a view.
    #[test]
    fn only_objects_make_a_view(value in any_json()) {
        let text = serde_json::to_vec(&value).unwrap();
        let parsed = RequestView::parse(Bytes::from(text.clone()));
        if !value.is_object() {
            prop_assert!(parsed.is_err());
            prop_assert!(parsed.unwrap_err().message.starts_with("request body must be a JSON object"));
        }
        check_json_body(Bytes::from(text))?;
    }

    /// Huge numbers, deep nesting, BOMs, truncations, duplicate keys: never a panic, never a
    /// stack overflow; a view or a 400.
    #[test]
    fn nasty_text_is_answered(text in nasty_text()) {
        check_json_body(Bytes::from(text))?;
    }

    /// Whatever the content type says, a POST to a JSON endpoint reaches the layers only
    /// with a view: a body the edge did not parse could walk around every policy built on
    /// the view (issue 15, finding 4).
    #[test]
    fn no_content_type_skips_the_view(
        body in prop_oneof![
            nasty_text(),
            any_json().prop_map(|v| v.to_string()),
            ".{1,40}",
        ],
        content_type in prop::sample::select(CONTENT_TYPES.to_vec()),
    ) {
        let answer = through_edge(Bytes::from(body), content_type);
        if answer.reached {
            prop_assert!(answer.view.is_some(), "the inner service saw an unparsed body");
        } else {
            prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_openai_error(&answer.body)?;
        }
    }

    /// Well-formed chat requests read back exactly, through the edge and after overrides.
    #[test]
    fn chat_requests_round_trip(
        model in "\\PC{0,24}",
        stream in prop::option::of(any::<bool>()),
        include_usage in prop::option::of(any::<bool>()),
        user in prop::option::of("\\PC{0,12}"),
        messages in prop::collection::vec(
            (prop::sample::select(vec!["system", "user", "assistant", "tool"]), "\\PC{0,40}"),
            0..6,
        ),
        new_model in "\\PC{0,12}",
        new_stream in any::<bool>(),
    ) {
        let mut body = json!({
            "model": model,
            "messages": messages
                .iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect::<Vec<_>>(),
        });
        if let Some(s) = stream {
            body["stream"] = json!(s);
        }
        if let Some(u) = include_usage {
            body["stream_options"] = json!({"include_usage": u});
        }
        if let Some(u) = &user {
            body["user"] = json!(u);
        }
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        let view = RequestView::parse(bytes.clone()).unwrap();
        prop_assert_eq!(view.model(), Some(model.as_str()));
        prop_assert_eq!(view.stream(), stream.unwrap_or(false));
        prop_assert_eq!(view.include_usage(), include_usage.unwrap_or(false));
        prop_assert_eq!(view.user(), user.as_deref());
        let read = view.messages().unwrap();
        prop_assert_eq!(read.len(), messages.len());
        for (i, (role, content)) in messages.iter().enumerate() {
            let i = i.to_string();
            prop_assert_eq!(view.param(&["messages", &i, "role"]), Some(&json!(role)));
            prop_assert_eq!(view.param(&["messages", &i, "content"]), Some(&json!(content)));
        }

        let answer = through_edge(bytes, Some("application/json"));
        prop_assert_eq!(answer.status, StatusCode::OK);
        let seen = answer.view.unwrap();
        prop_assert_eq!(seen.model(), Some(model.as_str()));
        prop_assert_eq!(seen.stream(), stream.unwrap_or(false));

        // Overrides replace top-level keys, keep the rest, and serialise what they say.
        let params = json!({"model": new_model, "stream": new_stream});
        let overridden = view.with_overrides(params.as_object().unwrap()).unwrap();
        prop_assert_eq!(overridden.model(), Some(new_model.as_str()));
        prop_assert_eq!(overridden.stream(), new_stream);
        let sent: Value = serde_json::from_slice(overridden.bytes()).unwrap();
        let mut expected = body.clone();
        expected["model"] = json!(new_model);
        expected["stream"] = json!(new_stream);
        prop_assert_eq!(sent, expected);
        let reparsed = RequestView::parse(overridden.bytes().clone()).unwrap();
        prop_assert_eq!(reparsed.model(), Some(new_model.as_str()));
        prop_assert_eq!(reparsed.stream(), new_stream);
    }
}

#[test]
fn deep_nesting_is_a_400_not_a_stack_overflow() {
    for n in [127, 128, 129, 10_000, 100_000] {
        let body = format!(r#"{{"messages":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        let answer = through_edge(Bytes::from(body), Some("application/json"));
        assert!(
            answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST,
            "{n}: {}",
            answer.status
        );
        if n > 128 {
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{n}");
            assert_openai_error(&answer.body).unwrap();
        }
    }
}

#[test]
fn numbers_past_every_type_are_handled() {
    let past_f64 = through_edge(
        Bytes::from_static(br#"{"model":"m","temperature":1e400}"#),
        Some("application/json"),
    );
    assert_eq!(past_f64.status, StatusCode::BAD_REQUEST);
    let past_u64 = format!(r#"{{"model":"m","seed":{}}}"#, "9".repeat(300));
    let answer = through_edge(Bytes::from(past_u64), Some("application/json"));
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.view.unwrap().model(), Some("m"));
}
