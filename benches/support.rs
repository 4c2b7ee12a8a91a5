//! Shared helpers for the benches: typical payloads and a poll-once executor.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// A typical chat request of about 1 KB.
pub(crate) fn chat_request_1kb() -> String {
    let system = "You are a helpful assistant for a travel company. Answer briefly and politely, \
                  cite the booking policy where relevant, and never invent prices. ";
    let user = "I booked a flight from Lisbon to Berlin for the 14th and would like to move it \
                to the 16th, keeping the same seat class. What are my options and the fees? ";
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "user": "user-1234",
        "messages": [
            {"role": "system", "content": system.repeat(2)},
            {"role": "user", "content": user.repeat(3)},
        ],
    });
    serde_json::to_string(&body).unwrap()
}

/// The events of a 50-chunk chat stream (role, 47 pieces, finish, usage), then `[DONE]`.
pub(crate) fn stream_events_50() -> Vec<bytes::Bytes> {
    let mut events = Vec::new();
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let v = serde_json::json!({
            "id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        bytes::Bytes::from(format!("data: {v}\n\n"))
    };
    events.push(chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    ));
    for i in 0..47 {
        events.push(chunk(
            serde_json::json!({"content": format!("word{i} ")}),
            serde_json::Value::Null,
        ));
    }
    events.push(chunk(serde_json::json!({}), "stop".into()));
    events.push(bytes::Bytes::from(
        "data: {\"id\":\"chatcmpl-abc123\",\"object\":\"chat.completion.chunk\",\"choices\":[],\
         \"usage\":{\"prompt_tokens\":250,\"completion_tokens\":47,\"total_tokens\":297}}\n\n",
    ));
    events.push(bytes::Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// Polls a future that completes without waiting (in-process services) to its end.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
