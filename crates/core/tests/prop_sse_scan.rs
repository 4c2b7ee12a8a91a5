//! Property tests of what the stream observer reads from each event (its one-pass read of the
//! event's JSON): streams with escaped and non-ASCII text, `null`s, missing fields, tool-call
//! deltas, other choices, legacy `text` completions, usage-only and error events; the report
//! must say what the events say, as a reader of the JSON (`serde_json::Value`) sees them.
//!
//! CI runs a fixed number of cases per property (`CASES`); set `PROPTEST_CASES` for a
//! longer local run.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Frame;
use http_body_util::BodyExt;
use portcullis_core::BoxError;
use portcullis_core::observe::{Observation, Options, Outcome, Report, observe_response_with};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};

/// Cases per property in CI.
const CASES: u32 = 1000;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config.failure_persistence = None;
    config
}

/// A body that yields scripted chunks, then ends.
struct Script(VecDeque<Bytes>);

impl http_body::Body for Script {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// The bytes the client got and the report, for `chunks` observed with `options`.
fn observe(chunks: Vec<Bytes>, options: Options) -> (Vec<u8>, std::sync::Arc<Report>) {
    let upstream = Response::builder()
        .header("content-type", "text/event-stream")
        .body(Script(chunks.into()))
        .unwrap();
    let response = observe_response_with(upstream, options);
    let observation = response.extensions().get::<Observation>().unwrap().clone();
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
    }
    let bytes = RUNTIME
        .with(|rt| rt.block_on(response.into_body().collect()))
        .unwrap()
        .to_bytes();
    (bytes.to_vec(), observation.report().unwrap())
}

/// JSON text of `value` with every non-ASCII character (or none) written as a `\u` escape,
/// and `/` as `\/`: the same value, as some upstreams write it.
fn escaped(value: &Value, ascii: bool) -> String {
    let text = value.to_string();
    if !ascii {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut backslash = false;
    for c in text.chars() {
        if in_string && !backslash && c == '/' {
            out.push_str("\\/");
            continue;
        }
        if c.is_ascii() {
            out.push(c);
            if in_string && !backslash && c == '"' {
                in_string = false;
            } else if !in_string && c == '"' {
                in_string = true;
            }
            backslash = in_string && !backslash && c == '\\';
            continue;
        }
        let mut units = [0; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out
}

/// One event of a generated stream.
#[derive(Clone, Debug)]
enum Event {
    Role,
    Delta(String),
    NullContent,
    Legacy(String),
    OtherChoice(String),
    ToolCall(String),
    Finish(String),
    Usage(u64, u64),
    Error(Option<String>),
    Done,
}

impl Event {
    fn data(&self) -> Value {
        let choice = |c: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "choices": [c]});
        match self {
            Event::Role => {
                json!({"id": "chatcmpl-1", "model": "gpt-4o-mini", "system_fingerprint": null, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]})
            }
            Event::Delta(t) => choice(
                json!({"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}),
            ),
            Event::NullContent => {
                choice(json!({"delta": {"content": null, "refusal": null}, "finish_reason": null}))
            }
            Event::Legacy(t) => choice(json!({"index": 0, "text": t, "finish_reason": null})),
            Event::OtherChoice(t) => {
                choice(json!({"index": 1, "delta": {"content": t}, "finish_reason": "stop"}))
            }
            Event::ToolCall(args) => choice(
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]}, "finish_reason": null}),
            ),
            Event::Finish(r) => choice(json!({"index": 0, "delta": {}, "finish_reason": r})),
            Event::Usage(p, c) => {
                json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "completion_tokens_details": {"reasoning_tokens": 0}}})
            }
            Event::Error(m) => {
                json!({"error": {"message": m, "type": "server_error", "code": null}})
            }
            Event::Done => Value::Null,
        }
    }
}

#[derive(Clone, Debug)]
struct Stream {
    events: Vec<(Event, bool)>,
}

impl Stream {
    /// The stream's bytes, and the bytes with its usage-only events left out.
    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut all = Vec::new();
        let mut stripped = Vec::new();
        for (event, ascii) in &self.events {
            let text = match event {
                Event::Done => "data: [DONE]\n\n".to_owned(),
                e => format!("data: {}\n\n", escaped(&e.data(), *ascii)),
            };
            all.extend_from_slice(text.as_bytes());
            if !matches!(event, Event::Usage(..)) {
                stripped.extend_from_slice(text.as_bytes());
            }
        }
        (all, stripped)
    }
}

/// What a JSON reader sees in the events.
#[derive(Debug, Default)]
struct Expected {
    /// The text of choice 0.
    text: String,
    /// Its last finish reason.
    finish: Option<String>,
    /// The first model.
    model: Option<String>,
    /// The last usage.
    usage: Option<(u64, u64, u64)>,
    /// The last error's message.
    error: Option<String>,
}

fn oracle(events: &[Value]) -> Expected {
    let mut seen = Expected::default();
    for v in events {
        if seen.model.is_none() {
            seen.model = v["model"].as_str().map(str::to_owned);
        }
        if v["usage"].is_object() {
            let n = |k: &str| v["usage"][k].as_u64().unwrap_or(0);
            seen.usage = Some((
                n("prompt_tokens"),
                n("completion_tokens"),
                n("total_tokens"),
            ));
        }
        if v["error"].is_object() {
            seen.error = Some(
                v["error"]["message"]
                    .as_str()
                    .unwrap_or("the upstream sent an error")
                    .to_owned(),
            );
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            if c["index"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            let piece = if c["delta"].is_object() {
                c["delta"]["content"].as_str()
            } else {
                c["message"]["content"].as_str()
            }
            .or(c["text"].as_str());
            seen.text.push_str(piece.unwrap_or(""));
            if let Some(r) = c["finish_reason"].as_str() {
                seen.finish = Some(r.to_owned());
            }
        }
    }
    seen
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        ".{0,8}",
        "[a-z \"\\\\/\n\t\r]{0,8}",
        prop::sample::select(vec![
            "",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é ü ß",
            "中文 😀",
            "\u{10ffff}",
            "{\"city\":\"Paris\"}",
            "a\\\"b",
        ])
        .prop_map(str::to_owned),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    let event = prop_oneof![
        6 => text().prop_map(Event::Delta),
        1 => Just(Event::NullContent),
        1 => text().prop_map(Event::Legacy),
        1 => text().prop_map(Event::OtherChoice),
        1 => text().prop_map(Event::ToolCall),
    ];
    (
        prop::collection::vec((event, any::<bool>()), 0..12),
        prop::option::of(prop::sample::select(vec!["stop", "length", "tool_calls"])),
        prop::option::of((0u64..1_000_000, 0u64..1_000_000)),
        prop::option::of(prop::option::of(text())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(deltas, finish, usage, error, done, ascii)| {
            let mut events = vec![(Event::Role, ascii)];
            events.extend(deltas);
            events.extend(finish.map(|r| (Event::Finish(r.to_owned()), ascii)));
            events.extend(usage.map(|(p, c)| (Event::Usage(p, c), ascii)));
            events.extend(error.map(|m| (Event::Error(m), ascii)));
            if done {
                events.push((Event::Done, ascii));
            }
            Stream { events }
        })
}

proptest! {
    #![proptest_config(config())]

    /// The report says what the events say; with the usage event stripped, exactly the usage
    /// events are left out of what the client gets, and the usage is still reported.
    #[test]
    fn the_report_says_what_the_events_say(s in stream(), strip in any::<bool>()) {
        let (bytes, stripped) = s.bytes();
        let values: Vec<Value> = s
            .events
            .iter()
            .filter(|(e, _)| !matches!(e, Event::Done))
            .map(|(e, _)| e.data())
            .collect();
        // The test's own escaping writes the same values.
        for (event, ascii) in &s.events {
            if !matches!(event, Event::Done) {
                let text = escaped(&event.data(), *ascii);
                prop_assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), event.data());
            }
        }
        let expected = oracle(&values);
        let (forwarded, report) = observe(
            vec![Bytes::from(bytes.clone())],
            Options::default().strip_usage_event(strip),
        );

        prop_assert_eq!(&report.text, &expected.text);
        prop_assert_eq!(&report.finish_reason, &expected.finish);
        prop_assert_eq!(&report.model, &expected.model);
        prop_assert_eq!(
            report.usage.map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens)),
            expected.usage
        );
        let sent = if strip { &stripped } else { &bytes };
        let done = s.events.iter().any(|(e, _)| matches!(e, Event::Done));
        match (&expected.error, done || expected.finish.is_some()) {
            (Some(message), _) => {
                prop_assert_eq!(&report.outcome, &Outcome::Failed(message.clone()));
                prop_assert_eq!(&forwarded, sent);
            }
            (None, true) => {
                prop_assert_eq!(&report.outcome, &Outcome::Complete);
                prop_assert_eq!(&forwarded, sent);
            }
            (None, false) => {
                prop_assert!(matches!(report.outcome, Outcome::Failed(_)));
                prop_assert!(forwarded.starts_with(sent));
            }
        }
    }
}
