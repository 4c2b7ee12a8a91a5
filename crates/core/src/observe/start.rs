use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;

use super::json::{Fields, Reader};
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
    // Line by line, each end found eight bytes at a time (these frames are on the way to
    // the client's first byte).
    super::lines(data)
        .filter_map(|line| line.strip_prefix(b"data:"))
        .any(event_carries_content)
}

/// Whether one SSE event's data (what follows `data:`) carries something a client would act
/// on: anything but a chat chunk whose choices hold no finish reason, no text and a delta of
/// nothing but its `role` (the opening `{"delta":{"role":"assistant","content":""}}`). Any
/// other filled delta field (tool calls, a refusal, reasoning) is content; so is an event
/// that is not a chat chunk, or not JSON (`[DONE]`).
///
/// ```
/// use portcullis_core::observe::event_carries_content;
/// assert!(!event_carries_content(br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#));
/// assert!(event_carries_content(br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#));
/// assert!(event_carries_content(br#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me"}}]}"#));
/// assert!(event_carries_content(b"[DONE]"));
/// ```
pub fn event_carries_content(data: &[u8]) -> bool {
    let event = data.trim_ascii();
    scan_content(event).unwrap_or_else(|| value_content(event))
}

/// Whether one event's data carries content, read in one pass over its bytes (without the
/// map and the `String` per key of a `Value` tree).
/// `None` for what it leaves to [`value_content`]: anything but a well-formed object, or a
/// field given twice (a `Value` keeps the last one).
fn scan_content(event: &[u8]) -> Option<bool> {
    let mut r = Reader::for_value(event);
    let mut seen = Fields::default();
    // Not an array (or no `choices` at all): let it through.
    let mut content = true;
    r.object(|r, key| {
        if key != b"choices" {
            return r.skip();
        }
        seen.once(0)?;
        if r.peek()? != b'[' {
            return r.skip();
        }
        let mut count = 0;
        let mut any = false;
        r.array(|r| {
            count += 1;
            any |= choice_content(r)?;
            Some(())
        })?;
        content = count == 0 || any;
        Some(())
    })?;
    r.end()?;
    Some(content)
}

/// Whether one element of `choices` carries content (see [`value_content`]).
fn choice_content(r: &mut Reader<'_>) -> Option<bool> {
    if r.peek()? != b'{' {
        return r.skip().map(|()| false);
    }
    let mut seen = Fields::default();
    let mut content = false;
    r.object(|r, key| {
        match key {
            b"finish_reason" => {
                seen.once(0)?;
                content |= set(r)?;
            }
            b"text" => {
                seen.once(1)?;
                content |= text(r)?;
            }
            b"delta" => {
                seen.once(2)?;
                content |= delta_content(r)?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(content)
}

fn delta_content(r: &mut Reader<'_>) -> Option<bool> {
    if r.peek()? != b'{' {
        return r.skip().map(|()| false);
    }
    let mut seen = Fields::default();
    let mut content = false;
    let mut others = 0;
    r.object(|r, key| {
        let field = match key {
            b"role" => return r.skip(),
            b"content" => 0,
            b"tool_calls" => 1,
            b"function_call" => 2,
            b"refusal" => 3,
            // Anything else a delta carries (reasoning text, audio) counts when it is filled:
            // not `null`, `""`, `[]` or `{}` (an opening delta may carry those empty). Two such
            // fields are left to the `Value` read, which knows whether they are one field given
            // twice (it keeps the last).
            _ => {
                others += 1;
                if others > 1 {
                    return None;
                }
                content |= filled(r, false)?;
                return Some(());
            }
        };
        seen.once(field)?;
        content |= if field == 0 {
            text(r)?
        } else {
            filled(r, true)?
        };
        Some(())
    })?;
    Some(content)
}

/// A value other than `null` and `""`; nor, unless `empty_counts`, `[]` or `{}`.
fn filled(r: &mut Reader<'_>, empty_counts: bool) -> Option<bool> {
    match r.peek()? {
        b'"' => text(r),
        b'[' if !empty_counts => {
            let mut any = false;
            r.array(|r| {
                any = true;
                r.skip()
            })?;
            Some(any)
        }
        b'{' if !empty_counts => {
            let mut any = false;
            r.object(|r, _| {
                any = true;
                r.skip()
            })?;
            Some(any)
        }
        _ => set(r),
    }
}

/// A value other than `null`.
fn set(r: &mut Reader<'_>) -> Option<bool> {
    Some(r.opt(Reader::skip)?.is_some())
}

/// A string that is not empty.
fn text(r: &mut Reader<'_>) -> Option<bool> {
    if r.peek()? != b'"' {
        return r.skip().map(|()| false);
    }
    let s = r.string()?;
    s.check()?;
    Some(!s.is_empty())
}

/// [`scan_content`] through a `serde_json::Value`: for what the scan leaves.
fn value_content(event: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(event) else {
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
                || c.get("delta").and_then(Value::as_object).is_some_and(|d| {
                    d.iter().any(|(key, v)| match (key.as_str(), v) {
                        ("role", _) => false,
                        ("content", _) => text(Some(v)),
                        (_, Value::Null) => false,
                        (_, Value::String(s)) => !s.is_empty(),
                        ("tool_calls" | "function_call" | "refusal", _) => true,
                        (_, Value::Array(a)) => !a.is_empty(),
                        (_, Value::Object(o)) => !o.is_empty(),
                        _ => true,
                    })
                })
        })
}

impl Started {
    fn finish(&mut self) -> Response<Body> {
        let parts = self.parts.take().expect("polled after completion");
        let body = Body::boxed(Prefixed {
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

#[cfg(test)]
mod tests {
    //! The one-pass read of an event against the `Value` one, on generated events.

    use proptest::prelude::*;

    use super::*;
    use crate::observe::testjson::{Style, chunk, config, mutation, value};

    /// The scan says what the `Value` read says, or leaves it to it.
    fn agrees(event: &[u8]) -> Result<(), TestCaseError> {
        if let Some(scanned) = scan_content(event) {
            prop_assert_eq!(
                scanned,
                value_content(event),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Well-formed events are read by the scan itself.
        #[test]
        fn the_scan_reads_well_formed_events(event in chunk(false), style in Style::plain()) {
            let bytes = style.write(&event);
            let scanned = scan_content(&bytes);
            prop_assert!(scanned.is_some(), "left to the Value read: {}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(scanned, Some(value_content(&bytes)));
        }

        /// Odd values, repeated fields, broken bytes, any JSON, garbage: never another answer.
        #[test]
        fn the_scan_never_disagrees_with_the_value_read(
            event in chunk(true),
            other in value(),
            style in Style::any(),
            mutation in mutation(),
            garbage in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut bytes = style.write(&event);
            mutation.apply(&mut bytes);
            agrees(&bytes)?;
            agrees(&style.write(&other))?;
            agrees(&garbage)?;
        }
    }

    #[test]
    fn a_frame_carries_content_when_any_of_its_data_lines_does() {
        let empty = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let hi = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
        for (frame, content) in [
            (format!("{empty}\n\n"), false),
            (format!("{empty}\n\n{hi}\n\n"), true),
            (format!("{empty}\r\n\r\n{hi}\r\n\r\n"), true),
            (format!(": keep-alive\n\n{empty}\n\n"), false),
            (format!("event: message\n{hi}"), true),
            (hi.to_owned(), true),
            (format!("{empty}\n"), false),
            (String::new(), false),
            ("\n\n\n".to_owned(), false),
        ] {
            let frame = Frame::data(Bytes::from(frame));
            assert_eq!(carries_content(&frame, true), content, "{frame:?}");
        }
        assert!(!carries_content(&Frame::data(Bytes::new()), false));
        assert!(carries_content(
            &Frame::data(Bytes::from_static(b"x")),
            false
        ));
    }

    #[test]
    fn content_as_the_value_read_sees_it() {
        for (event, content) in [
            (&br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#[..], false),
            (br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#, true),
            (br#"{"choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#, true),
            (br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#, true),
            (br#"{"choices":[],"usage":{"total_tokens":1}}"#, true),
            (br#"{"choices":{}}"#, true),
            (br#"{"id":1e2,"choices":[{"delta":{"content":""}}]}"#, false),
            (br#"{"choices":[{"delta":{"role":"assistant","content":"","refusal":null}}]}"#, false),
            (br#"{"choices":[{"delta":{"reasoning_content":"Let me think"}}]}"#, true),
            (br#"{"choices":[{"delta":{"content":"","reasoning_content":""}}]}"#, false),
            (br#"{"choices":[{"delta":{"audio":{"id":"a1"}}}]}"#, true),
            (br#"{"choices":[{"delta":{"audio":null}}]}"#, false),
            (br#"{"choices":[{"delta":{"refusal":""}}]}"#, false),
            (br#"{"choices":[{"delta":{"refusal":"No."}}]}"#, true),
            (br#"{"choices":[{"delta":{"tool_calls":{}}}]}"#, true),
            (br#"{"choices":[{"delta":{"role":"assistant","reasoning":null,"reasoning_details":[]}}]}"#, false),
            (br#"{"choices":[{"delta":{"reasoning_details":[{"text":"Hm"}]}}]}"#, true),
            (br#"{"choices":[{"delta":{"extra":{}}}]}"#, false),
            (br#"{"choices":[{"delta":{"extra":0}}]}"#, true),
        ] {
            assert_eq!(scan_content(event).unwrap_or_else(|| value_content(event)), content);
            assert_eq!(value_content(event), content);
        }
        // An exponent is left to the Value read, which refuses one out of range.
        assert_eq!(
            scan_content(br#"{"x":1e999,"choices":[{"delta":{}}]}"#),
            None
        );
        assert!(value_content(br#"{"x":1e999,"choices":[{"delta":{}}]}"#));
    }
}
