use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;

use super::{Observation, Outcome};
use crate::{Body, BoxError};

/// Waits until `response`'s body carries content, to tell a response that started from one
/// that failed before sending anything of use.
///
/// Retry and fallback use it on streams: an upstream that answered 200 but broke before its
/// first content can still be retried or replaced, because nothing has reached the client.
/// Events without content (a chat stream's opening `{"delta":{"role":"assistant","content":""}}`)
/// are held until content follows; held frames are sent first, so nothing is lost either way.
pub fn started(response: Response<Body>) -> Started {
    let (parts, body) = response.into_parts();
    let sse = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    Started {
        parts: Some(parts),
        body,
        held: VecDeque::new(),
        sse,
    }
}

/// The future of [`started`].
#[derive(Debug)]
pub struct Started {
    parts: Option<http::response::Parts>,
    body: Body,
    held: VecDeque<Frame<Bytes>>,
    sse: bool,
}

/// A response whose body failed before any content.
#[derive(Debug)]
pub struct NotStarted {
    /// Why it failed.
    pub reason: String,
    /// The response as it would reach the client (for an event stream: an error event).
    pub response: Response<Body>,
}

/// Whether a frame carries something a client would act on: any bytes of a non-stream body,
/// or an event other than an empty opening delta.
fn carries_content(frame: &Frame<Bytes>, sse: bool) -> bool {
    let Some(data) = frame.data_ref() else {
        return false;
    };
    if !sse {
        return !data.is_empty();
    }
    data.split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .any(|event| {
            let Ok(v) = serde_json::from_slice::<Value>(event.trim_ascii()) else {
                // `[DONE]`, or anything unreadable: let it through as it is.
                return true;
            };
            let Some(choices) = v.get("choices").and_then(Value::as_array) else {
                return true;
            };
            let set = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
            let text = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|t| !t.is_empty());
            choices.is_empty()
                || choices.iter().any(|c| {
                    set(c.get("finish_reason"))
                        || text(c.get("text"))
                        || c.get("delta").is_some_and(|d| {
                            text(d.get("content"))
                                || set(d.get("tool_calls"))
                                || set(d.get("function_call"))
                                || set(d.get("refusal"))
                        })
                })
        })
}

impl Started {
    fn finish(&mut self) -> Response<Body> {
        let parts = self.parts.take().expect("polled after completion");
        let body = Body::new(Prefixed {
            held: std::mem::take(&mut self.held),
            rest: std::mem::take(&mut self.body),
        });
        Response::from_parts(parts, body)
    }
}

impl Future for Started {
    type Output = Result<Response<Body>, NotStarted>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
            let failed = this
                .parts
                .as_ref()
                .expect("polled after completion")
                .extensions
                .get::<Observation>()
                .and_then(Observation::report)
                .and_then(|report| match &report.outcome {
                    Outcome::Failed(reason) => Some(reason.clone()),
                    _ => None,
                });
            match frame {
                Some(Err(err)) => {
                    let parts = this.parts.take().expect("polled after completion");
                    return Poll::Ready(Err(NotStarted {
                        reason: err.to_string(),
                        response: Response::from_parts(parts, Body::empty()),
                    }));
                }
                Some(Ok(frame)) => {
                    let content = carries_content(&frame, this.sse);
                    this.held.push_back(frame);
                    // Everything so far was held back: a failure now has reached no client.
                    if let Some(reason) = failed {
                        return Poll::Ready(Err(NotStarted {
                            reason,
                            response: this.finish(),
                        }));
                    }
                    if content {
                        return Poll::Ready(Ok(this.finish()));
                    }
                }
                None => {
                    let response = this.finish();
                    return Poll::Ready(match failed {
                        Some(reason) => Err(NotStarted { reason, response }),
                        None => Ok(response),
                    });
                }
            }
        }
    }
}

pin_project! {
    pub(crate) struct Prefixed {
        held: VecDeque<Frame<Bytes>>,
        #[pin]
        rest: Body,
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(first) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(first)));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let held: u64 = self
            .held
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        hint.set_lower(hint.lower() + held);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}
