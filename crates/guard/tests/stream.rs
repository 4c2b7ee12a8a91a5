//! Streamed answers under watch: text flows as it comes, a deny mid-answer cuts the stream
//! with an error event, whole-answer checks run at the end.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use portcullis_core::{Body, BoxError, BufferedBody};
use portcullis_guard::{GuardBuilder, GuardLayer, Loader};
use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

use support::{chat_stream, upstream};

/// Each data frame the client receives, as text.
async fn frames(body: Body) -> Vec<String> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    out
}

/// The JSON of every `data:` event of a stream.
fn events(frames: &[String]) -> Vec<Value> {
    frames
        .concat()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
        .collect()
}

fn content(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

async fn run(builder: GuardBuilder, node: Value, text: &str) -> (u16, Vec<String>) {
    let fake = FakeUpstream::start().await;
    fake.set(Plan::ok().content(text));
    let hooks = Loader::new().hooks(&node).unwrap();
    let svc = builder.hooks(hooks).build().layer(upstream(fake.url()));
    let res = svc.oneshot(chat_stream("go")).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let status = res.status().as_u16();
    (status, frames(res.into_body()).await)
}

const ANSWER: &str = "Hello there friend. The secret code is 42 and more words follow here.";

#[tokio::test]
async fn a_deny_mid_answer_cuts_the_stream_with_an_error_event() {
    let node = json!({"output_guardrails": [{"id": "no-secret", "deny": true,
        "regexMatch": {"rule": "secret\\s+code", "not": true}}]});
    let (status, frames) = run(GuardLayer::builder().hold(16).window(32), node, ANSWER).await;
    assert_eq!(status, 200);
    let all = frames.concat();
    let events = events(&frames);
    // The client saw the text before the window, as it came (before the error's frame).
    assert_eq!(content(&events), "Hello there ");
    let (last, earlier) = frames.split_last().unwrap();
    assert!(earlier.concat().contains("Hello"), "{frames:?}");
    assert!(last.starts_with("data: {\"error\"") && last.contains("hooks_failed"));
    // Never the banned text, nor anything after it, nor a clean end. (The error's
    // `hook_results` carry the check's data, as Portkey's do: the match is named there.)
    assert!(!earlier.concat().contains("secret"));
    assert!(!all.contains("[DONE]"));
    let error = events.last().unwrap();
    assert_eq!(error["error"]["type"], "hooks_failed");
    let hook = &error["hook_results"]["after_request_hooks"][0];
    assert_eq!(hook["id"], "no-secret");
    assert_eq!(hook["verdict"], false);
    assert_eq!(
        hook["checks"][0]["data"]["matchDetails"]["matchedText"],
        "secret code"
    );
}

#[tokio::test]
async fn pii_in_a_stream_is_cut_before_it_reaches_the_client() {
    let node = json!({"output_guardrails": [{"deny": true, "portcullis.pii": {}}]});
    let (_, frames) = run(
        GuardLayer::builder(),
        node,
        "Sure, you can write to ann.lee@example.com for help.",
    )
    .await;
    let all = frames.concat();
    assert!(!all.contains("ann.lee"), "{all}");
    assert_eq!(
        events(&frames).last().unwrap()["error"]["type"],
        "hooks_failed"
    );
}

#[tokio::test]
async fn a_clean_stream_passes_whole_with_results_before_done() {
    let node = json!({"input_guardrails": [{"notNull": {}}],
                      "output_guardrails": [{"deny": true, "regexMatch": {"rule": "secret", "not": true}},
                                            {"wordCount": {"maxWords": 100}}]});
    let (status, frames) = run(
        GuardLayer::builder().results_event(true),
        node,
        "Nothing to hide here at all.",
    )
    .await;
    assert_eq!(status, 200);
    let events = events(&frames);
    assert_eq!(content(&events), "Nothing to hide here at all.");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let results = &events[events.len() - 2]["hook_results"];
    assert_eq!(results["before_request_hooks"][0]["verdict"], true);
    assert_eq!(results["after_request_hooks"].as_array().unwrap().len(), 2);
    assert_eq!(
        results["after_request_hooks"][1]["checks"][0]["data"]["wordCount"],
        6
    );
}

#[tokio::test]
async fn whole_answer_checks_deny_at_the_end_in_place_of_done() {
    let node =
        json!({"output_guardrails": [{"id": "brief", "deny": true, "wordCount": {"maxWords": 5}}]});
    let (_, frames) = run(GuardLayer::builder().hold(8), node, ANSWER).await;
    let events = events(&frames);
    // No window check could cut the stream, so nothing was held: the text flowed whole, and
    // the error came in place of `[DONE]`.
    assert_eq!(content(&events), ANSWER);
    assert!(!frames.concat().contains("[DONE]"));
    let error = events.last().unwrap();
    assert_eq!(
        error["hook_results"]["after_request_hooks"][0]["id"],
        "brief"
    );
    assert_eq!(
        error["hook_results"]["after_request_hooks"][0]["checks"][0]["data"]["wordCount"],
        13
    );
}

#[tokio::test]
async fn a_failed_input_guard_turns_a_stream_246_and_leaves_its_body() {
    let node = json!({"input_guardrails": [{"wordCount": {"minWords": 5}}]});
    let (status, frames) = run(GuardLayer::builder(), node, "Fine.").await;
    assert_eq!(status, 246);
    let events = events(&frames);
    assert_eq!(content(&events), "Fine.");
    assert_eq!(events.last().unwrap(), "[DONE]");
}

fn delta(delta: Value) -> Bytes {
    let chunk = json!({"object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// Writes a stream's events, one frame each.
struct Events(Sender<Bytes, BoxError>);

impl Events {
    fn send(&mut self, event: Bytes) {
        self.0
            .try_send(Frame::data(event))
            .expect("room in the channel");
    }
}

/// A guard over an upstream whose stream the test writes: the writer, and the client's body.
async fn guarded_stream(node: Value) -> (Events, Body) {
    let (tx, events) = Channel::<Bytes, BoxError>::new(16);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Some(events)));
    let upstream = tower::service_fn(move |_req: Request<BufferedBody>| {
        let events = events.lock().unwrap().take().expect("one call");
        async move {
            Ok::<_, BoxError>(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::new(events))
                    .unwrap(),
            )
        }
    });
    let hooks = Loader::new().hooks(&node).unwrap();
    let guard = GuardLayer::builder().hooks(hooks).build().layer(upstream);
    let res = guard.oneshot(chat_stream("go")).await.unwrap();
    assert_eq!(res.status(), 200);
    (Events(tx), res.into_body())
}

/// The next data frame the client gets, or `None` when none comes while the test writes
/// nothing (the paused clock moves on once every task waits).
async fn next_frame(body: &mut Body) -> Option<String> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    let data = frame.ok()??.unwrap().into_data().ok()?;
    Some(String::from_utf8(data.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn without_window_checks_each_event_reaches_the_client_as_it_comes() {
    let node = json!({"output_guardrails": [{"id": "brief", "deny": true, "wordCount": {"maxWords": 50}}]});
    let (mut tx, mut body) = guarded_stream(node).await;
    tx.send(delta(json!({"role": "assistant", "content": ""})));
    assert!(next_frame(&mut body).await.unwrap().contains("\"role\""));
    tx.send(delta(json!({"content": "Hi"})));
    assert!(next_frame(&mut body).await.unwrap().contains("\"Hi\""));
    tx.send(delta(json!({"content": " there."})));
    assert!(next_frame(&mut body).await.unwrap().contains("\" there.\""));
    tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    drop(tx);
    let mut rest = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        rest.push_str(&frame);
    }
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
}

#[tokio::test(start_paused = true)]
async fn behind_window_checks_text_waits_for_the_hold_but_the_role_event_does_not() {
    let node = json!({"output_guardrails": [{"deny": true, "portcullis.pii": {}}]});
    let (mut tx, mut body) = guarded_stream(node).await;
    // The first event carries no text: nothing to judge, so it is not held.
    tx.send(delta(json!({"role": "assistant", "content": ""})));
    assert!(next_frame(&mut body).await.unwrap().contains("\"role\""));
    // Text waits until the window checks have seen the 64 bytes that follow it.
    tx.send(delta(json!({"content": "Hi there, "})));
    assert_eq!(next_frame(&mut body).await, None, "held");
    tx.send(delta(json!({"content": "x".repeat(64)})));
    assert!(
        next_frame(&mut body)
            .await
            .unwrap()
            .contains("\"Hi there, \"")
    );
    assert_eq!(
        next_frame(&mut body).await,
        None,
        "the last 64 bytes are held"
    );
    tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    drop(tx);
    let mut rest = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        rest.push_str(&frame);
    }
    assert!(rest.contains(&"x".repeat(64)), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
}

#[tokio::test(start_paused = true)]
async fn behind_window_checks_reasoning_keeps_its_place_behind_the_hold() {
    let node = json!({"output_guardrails": [{"deny": true, "portcullis.pii": {}}]});
    let (mut tx, mut body) = guarded_stream(node).await;
    // Text the window checks do not read is not let through ahead of the hold either.
    tx.send(delta(
        json!({"reasoning_content": "mail ann.lee@example.com"}),
    ));
    assert_eq!(next_frame(&mut body).await, None, "held");
    tx.send(delta(json!({"content": "Hi, "})));
    assert_eq!(next_frame(&mut body).await, None, "held");
    // PII in the answer's text cuts the stream: what was held never goes out.
    tx.send(delta(
        json!({"content": "write to ann.lee@example.com now"}),
    ));
    let mut rest = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        rest.push_str(&frame);
    }
    assert!(!rest.contains("ann.lee"), "{rest}");
    assert!(rest.contains("hooks_failed"), "{rest}");
}

/// How a test cuts a stream's bytes into frames.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// One whole event a frame (as the observer forwards them).
    Events,
    /// Every `n` bytes, wherever that falls.
    Every(usize),
}

/// The JSON of every `data:` event of a stream with `\n` or `\r\n` line ends, each event's
/// `hook_results` (timed, so it differs from run to run) left out.
fn untimed_events(bytes: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\r\n", "\n");
    events(&[text])
        .into_iter()
        .map(|mut e| {
            if let Some(object) = e.as_object_mut() {
                object.remove("hook_results");
            }
            e
        })
        .filter(|e| e != &json!({}))
        .collect()
}

#[tokio::test]
async fn the_output_is_the_same_however_the_upstream_cuts_the_stream_into_frames() {
    let mut events = vec![delta(json!({"role": "assistant", "content": ""}))];
    for word in ["Hello", " there", " friend,", " all", " is", " well."] {
        events.push(delta(json!({"content": word})));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let lf: Vec<u8> = events.concat();
    let crlf = String::from_utf8(lf.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    // The last event without its blank line: the guard takes it whole at the end.
    let unended = lf[..lf.len() - 2].to_vec();
    // A window check that passes (text held, judged as it comes), one that cuts the stream
    // at "well", and a check of the whole answer.
    let passing = json!({"output_guardrails": [{"id": "w", "deny": true,
        "regexMatch": {"rule": "secret", "not": true}}]});
    let cutting = json!({"output_guardrails": [{"id": "w", "deny": true,
        "regexMatch": {"rule": "well", "not": true}}]});
    let whole = json!({"output_guardrails": [{"id": "n", "deny": true,
        "wordCount": {"maxWords": 50}}]});
    for (node, stream, name) in [
        (&passing, &lf, "passing, \\n"),
        (&passing, &crlf, "passing, \\r\\n"),
        (&passing, &unended, "passing, unended"),
        (&cutting, &lf, "cutting, \\n"),
        (&cutting, &crlf, "cutting, \\r\\n"),
        (&whole, &lf, "whole, \\n"),
        (&whole, &unended, "whole, unended"),
    ] {
        let mut seen: Vec<(Cut, Vec<Value>)> = Vec::new();
        for cut in [
            Cut::Events,
            Cut::Every(stream.len()),
            Cut::Every(1),
            Cut::Every(7),
            Cut::Every(50),
        ] {
            let frames: Vec<Bytes> = match cut {
                // Whole events, as the observer forwards them (of the `\n` stream).
                Cut::Events if stream == &lf => events.clone(),
                Cut::Events => continue,
                Cut::Every(n) => stream.chunks(n).map(Bytes::copy_from_slice).collect(),
            };
            let (Events(mut tx), body) = guarded_stream(node.clone()).await;
            let writer = tokio::spawn(async move {
                for frame in frames {
                    // A cut stream is no longer read: the rest is not sent.
                    if tx.send(Frame::data(frame)).await.is_err() {
                        break;
                    }
                }
            });
            let out = body.collect().await.unwrap().to_bytes();
            writer.await.unwrap();
            let got = untimed_events(&out);
            if node == &cutting {
                // All of the text is still behind the 64-byte hold when "well" comes: none of
                // it reaches the client.
                assert_eq!(content(&got), "", "{name} {cut:?}");
                assert!(got.last().unwrap().get("error").is_some(), "{name} {cut:?}");
            } else {
                assert_eq!(
                    content(&got),
                    "Hello there friend, all is well.",
                    "{name} {cut:?}"
                );
                assert_eq!(got.last().unwrap(), "[DONE]", "{name} {cut:?}");
            }
            seen.push((cut, got));
        }
        assert!(seen.len() >= 4, "{name}");
        for (cut, got) in &seen[1..] {
            assert_eq!(got, &seen[0].1, "{name}: {cut:?} against {:?}", seen[0].0);
        }
    }
}
