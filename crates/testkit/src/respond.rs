//! Building the fake OpenAI answers and their bodies.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body::{Frame, SizeHint};
use serde_json::{Value, json};
use tokio::time::Sleep;

use crate::Recorded;
use crate::plan::{Cut, Plan};

const CREATED: u64 = 1_700_000_000;
const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// How a [`FakeBody`] ends once its chunks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// End of body (hyper writes the terminating chunk).
    Clean,
    /// Yield once so hyper flushes what it buffered, then fail.
    Break,
    /// Fail now: hyper drops the connection.
    Fail,
}

/// Response body: a queue of chunks, one HTTP body frame each.
#[derive(Debug)]
pub(crate) struct FakeBody {
    chunks: VecDeque<Bytes>,
    gap: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    started: bool,
    sized: bool,
    tail: Tail,
}

impl FakeBody {
    fn full(bytes: Vec<u8>) -> FakeBody {
        FakeBody {
            chunks: VecDeque::from([Bytes::from(bytes)]),
            gap: Duration::ZERO,
            sleep: None,
            started: false,
            sized: true,
            tail: Tail::Clean,
        }
    }

    pub(crate) fn events(chunks: VecDeque<Bytes>, gap: Duration, broken: bool) -> FakeBody {
        FakeBody {
            chunks,
            gap,
            sleep: None,
            started: false,
            sized: false,
            tail: if broken { Tail::Break } else { Tail::Clean },
        }
    }
}

impl http_body::Body for FakeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.chunks.is_empty() {
            return match this.tail {
                Tail::Clean => Poll::Ready(None),
                Tail::Break => {
                    this.tail = Tail::Fail;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Tail::Fail => {
                    this.tail = Tail::Clean;
                    Poll::Ready(Some(Err(io::Error::other(
                        "fake upstream: stream broken on purpose",
                    ))))
                }
            };
        }
        if this.started && !this.gap.is_zero() {
            let gap = this.gap;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        this.started = true;
        Poll::Ready(this.chunks.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.tail == Tail::Clean
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializing a serde_json::Value cannot fail")
}

/// A `application/json` answer.
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<FakeBody> {
    let mut resp = Response::new(FakeBody::full(to_vec(v)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An OpenAI-shaped error answer.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<FakeBody> {
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        400 | 404 => "invalid_request_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    json_response(status, &body)
}

/// The answer to `req` under `plan`, once delays and disconnects are done.
pub(crate) fn answer(plan: &Plan, index: usize, req: &Recorded) -> Response<FakeBody> {
    let forced = plan
        .status
        .or(plan.fail_first.and_then(|(n, s)| (index < n).then_some(s)));
    if let Some(status) = forced {
        let mut resp = error_response(status, "fake upstream error");
        if let Some(v) = &plan.retry_after {
            resp.headers_mut().insert(RETRY_AFTER, v.clone());
        }
        return resp;
    }
    if let Some(body) = &plan.body {
        return json_response(StatusCode::OK, body);
    }
    let path = req.path.split('?').next().unwrap_or_default();
    let not_found = || {
        let msg = format!("fake upstream: no route for {} {}", req.method, path);
        error_response(StatusCode::NOT_FOUND, &msg)
    };
    if req.method == Method::GET {
        return if path.ends_with("/models") {
            let model = json!({"id": DEFAULT_MODEL, "object": "model", "created": CREATED, "owned_by": "fake"});
            json_response(StatusCode::OK, &json!({"object": "list", "data": [model]}))
        } else {
            not_found()
        };
    }
    let kind = if req.method != Method::POST {
        return not_found();
    } else if path.ends_with("/chat/completions") {
        Kind::Chat
    } else if path.ends_with("/completions") {
        Kind::Text
    } else if path.ends_with("/embeddings") {
        Kind::Embeddings
    } else {
        return not_found();
    };
    let request: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("fake upstream: malformed JSON request body: {e}");
            return error_response(StatusCode::BAD_REQUEST, &msg);
        }
    };
    let model = request["model"].as_str().unwrap_or(DEFAULT_MODEL);
    let (prompt, completion) = plan.usage_numbers();
    if kind == Kind::Embeddings {
        let body = json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        });
        return json_response(StatusCode::OK, &body);
    }
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    let content = plan.content_text();
    let (id, object, chunk_object) = match kind {
        Kind::Chat => ("chatcmpl-fake", "chat.completion", "chat.completion.chunk"),
        _ => ("cmpl-fake", "text_completion", "text_completion"),
    };
    if request["stream"] != Value::Bool(true) {
        let choice = match kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }),
            _ => json!({"index": 0, "text": content, "finish_reason": "stop"}),
        };
        let body = json!({
            "id": id, "object": object, "created": CREATED, "model": model,
            "choices": [choice], "usage": usage,
        });
        return json_response(StatusCode::OK, &body);
    }

    // Streaming.
    let event = |choices: Value, usage: Option<&Value>| {
        let mut v = json!({
            "id": id, "object": chunk_object, "created": CREATED, "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u.clone();
        }
        let mut bytes = b"data: ".to_vec();
        bytes.extend(to_vec(&v));
        bytes.extend_from_slice(b"\n\n");
        Bytes::from(bytes)
    };
    let piece = |text: &str| match kind {
        Kind::Chat => json!({"index": 0, "delta": {"content": text}, "finish_reason": null}),
        _ => json!({"index": 0, "text": text, "finish_reason": null}),
    };
    let mut events = VecDeque::new();
    if kind == Kind::Chat {
        let delta = json!({"role": "assistant", "content": ""});
        events.push_back(event(
            json!([{"index": 0, "delta": delta, "finish_reason": null}]),
            None,
        ));
    }
    let pieces = content.split_inclusive(' ');
    let limit = match plan.cut {
        Some(Cut::Break(n) | Cut::End(n)) => n,
        None => usize::MAX,
    };
    for p in pieces.take(limit) {
        events.push_back(event(json!([piece(p)]), None));
    }
    if plan.cut.is_none() {
        let finish = match kind {
            Kind::Chat => json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
            _ => json!({"index": 0, "text": "", "finish_reason": "stop"}),
        };
        events.push_back(event(json!([finish]), None));
        let include_usage = request["stream_options"]["include_usage"] == Value::Bool(true);
        if include_usage || plan.always_stream_usage {
            events.push_back(event(json!([]), Some(&usage)));
        }
        events.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let broken = matches!(plan.cut, Some(Cut::Break(_)));
    let mut resp = Response::new(FakeBody::events(events, plan.chunk_delay, broken));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
    Embeddings,
}
