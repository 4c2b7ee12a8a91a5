//! [`GuardBody`]: watches a streamed answer, judging a sliding window of its text as it
//! flows and the whole text at its end.
//!
//! Events pass to the client as they come, except those whose text lies in the last
//! [`hold`](crate::StreamOptions::hold) bytes: they wait until the window checks have seen
//! what follows. A window check that fails in a denying hook ends the stream at once with an
//! SSE error event (`type: "hooks_failed"`, with `hook_results`); what was held is never
//! sent. At the end (`[DONE]`, or the end of the body) every after hook runs over the whole
//! text; a denying one that fails ends the stream the same way, in place of the held tail
//! and `[DONE]`.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use portcullis_core::{Body, BoxError, BufferedBody};
//! use portcullis_guard::{GuardLayer, Loader};
//! use serde_json::json;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = service_fn(|_req: Request<BufferedBody>| async {
//!     let events: String = ["The ", "answer ", "is ", "fine, ", "mail ", "me@corp.com ", "later."]
//!         .iter()
//!         .map(|w| format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": w}}]})))
//!         .chain(["data: [DONE]\n\n".to_owned()])
//!         .collect();
//!     Ok::<_, BoxError>(Response::builder().header("content-type", "text/event-stream").body(Body::from(events)).unwrap())
//! });
//! let hooks = Loader::new()
//!     .hooks(&json!({"output_guardrails": [{"deny": true, "portcullis.pii": {"kinds": ["email"]}}]}))
//!     .unwrap();
//! let guard = GuardLayer::builder().hooks(hooks).hold(8).build().layer(upstream);
//! let request = Request::post("/v1/chat/completions")
//!     .body(BufferedBody::new(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#))
//!     .unwrap();
//! let res = guard.oneshot(request).await.unwrap();
//! let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
//! assert!(text.contains("The ") && text.contains("answer "));
//! assert!(!text.contains("me@corp.com") && !text.contains("[DONE]"));
//! assert!(text.trim_end().ends_with('}') && text.contains("\"type\":\"hooks_failed\""));
//! # }
//! ```

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use serde::Deserialize;

use crate::answer;
use crate::context::{HookContext, Phase};
use crate::hook::HookResult;
use crate::layer::{run_all, spawn_async};
use crate::service::AfterCtx;

type Verdicts = Pin<Box<dyn Future<Output = Vec<HookResult>> + Send>>;

enum Stage {
    /// Reading the inner body.
    Flowing,
    /// The text is whole: the after hooks are judging it.
    Judging(Verdicts),
    /// Nothing more to send.
    Done,
}

pin_project! {
    /// A streamed answer under watch (see the [module docs](self)).
    pub struct GuardBody<B> {
        #[pin]
        inner: B,
        watch: Box<Watch>,
    }
}

struct Watch {
    ctx: AfterCtx,
    run_after: bool,
    /// The window context, reused for every event.
    cx: HookContext,
    text: String,
    carry: BytesMut,
    /// Events not yet sent, with the text length once each had arrived.
    held: VecDeque<(Bytes, usize)>,
    done_event: Option<Bytes>,
    out: VecDeque<Bytes>,
    stage: Stage,
    error: Option<BoxError>,
}

impl<B> GuardBody<B> {
    pub(crate) fn new(inner: B, ctx: AfterCtx, run_after: bool) -> Self {
        let cx = ctx.window();
        Self {
            inner,
            watch: Box::new(Watch {
                ctx,
                run_after,
                cx,
                text: String::new(),
                carry: BytesMut::new(),
                held: VecDeque::new(),
                done_event: None,
                out: VecDeque::new(),
                stage: Stage::Flowing,
                error: None,
            }),
        }
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

/// The text an event adds to choice 0 (OpenAI chat and completions, Anthropic deltas).
fn event_text(data: &[u8], text: &mut String) {
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(data) else {
        return;
    };
    if let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) {
        if let Some(t) = choice.delta.as_ref().and_then(|d| d.content.as_deref()) {
            text.push_str(t);
        } else if let Some(t) = choice.text.as_deref() {
            text.push_str(t);
        }
    } else if let Some(t) = chunk.delta.as_ref().and_then(|d| d.text.as_deref()) {
        text.push_str(t);
    }
}

/// The `data:` payload of one whole event (lines joined by `\n`).
fn event_data(event: &[u8]) -> Cow<'_, [u8]> {
    // The common case: one `data:` line first, then the blank line.
    if let Some(rest) = event.strip_prefix(b"data:") {
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let after = &rest[nl + 1..];
            if after.is_empty() || after == b"\n" || after == b"\r\n" {
                let line = &rest[..nl];
                return Cow::Borrowed(line.strip_suffix(b"\r").unwrap_or(line));
            }
        }
    }
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    Cow::Owned(data)
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl Watch {
    /// Cuts `chunk` into whole events and takes each in.
    fn push(&mut self, chunk: &[u8]) {
        self.carry.extend_from_slice(chunk);
        while let Some(end) = event_end(&self.carry) {
            let event = self.carry.split_to(end).freeze();
            self.take(event);
            if !matches!(self.stage, Stage::Flowing) {
                return;
            }
        }
    }

    fn take(&mut self, event: Bytes) {
        let data = event_data(&event);
        if &*data == b"[DONE]" {
            self.done_event = Some(event);
            self.judge_whole();
            return;
        }
        let before = self.text.len();
        event_text(&data, &mut self.text);
        self.held.push_back((event, self.text.len()));
        if self.text.len() > before && self.window_denies(before) {
            return;
        }
        let hold = self.ctx.guards.stream.hold;
        while let Some((_, end)) = self.held.front() {
            if end + hold > self.text.len() {
                break;
            }
            let (event, _) = self.held.pop_front().expect("front exists");
            self.out.push_back(event);
        }
    }

    /// Runs the window checks over the new text and what came just before it; on a failure
    /// of a denying hook, cuts the stream.
    fn window_denies(&mut self, new_from: usize) -> bool {
        let guards = &self.ctx.guards;
        if guards.window_checks.is_empty() {
            return false;
        }
        let start = floor_char(&self.text, new_from.saturating_sub(guards.stream.window));
        let window = &self.text[start..];
        let Some(&(hook, _)) = guards
            .window_checks
            .iter()
            .find(|(_, check)| check.fails_window(window))
        else {
            return false;
        };
        // The hook's full result, over the window that failed.
        self.cx.set_window_text(window);
        let result = guards.after[hook].run_now(&mut self.cx);
        let result = if result.verdict {
            // A check's own verdict can differ from its window test only through `not`
            // flags or errors; the window test found a failure, so report it.
            HookResult {
                verdict: false,
                ..result
            }
        } else {
            result
        };
        self.cut(vec![result]);
        true
    }

    fn cut(&mut self, after: Vec<HookResult>) {
        answer::report(Phase::After, &after, &self.ctx.guards.after);
        self.held.clear();
        self.done_event = None;
        self.out
            .push_back(answer::denied_event(&self.ctx.before, &after));
        self.stage = Stage::Done;
    }

    /// The text is whole: start the after hooks over it.
    fn judge_whole(&mut self) {
        let mut cx = self.ctx.window();
        cx.set_window_text(&self.text);
        if !self.run_after {
            self.stage = Stage::Judging(Box::pin(async { Vec::new() }));
            return;
        }
        spawn_async(&self.ctx.guards.after_async, &cx, Phase::After);
        let guards = self.ctx.guards.clone();
        self.stage = Stage::Judging(Box::pin(async move {
            let mut cx = cx;
            run_all(&guards.after, &mut cx, false).await
        }));
    }

    /// The after hooks have judged the whole text.
    fn judged(&mut self, after: Vec<HookResult>) {
        if after.iter().any(HookResult::denied) {
            self.cut(after);
            return;
        }
        answer::report(Phase::After, &after, &self.ctx.guards.after);
        self.out.extend(self.held.drain(..).map(|(e, _)| e));
        if self.ctx.guards.stream.results_event {
            self.out
                .push_back(answer::results_event(&self.ctx.before, &after));
        }
        if let Some(done) = self.done_event.take() {
            self.out.push_back(done);
        }
        self.stage = Stage::Done;
    }

    fn next_out(&mut self) -> Option<Bytes> {
        match self.out.len() {
            0 => None,
            1 => self.out.pop_front(),
            _ => {
                let mut all = BytesMut::with_capacity(self.out.iter().map(Bytes::len).sum());
                for b in self.out.drain(..) {
                    all.extend_from_slice(&b);
                }
                Some(all.freeze())
            }
        }
    }
}

/// The end of the first whole event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = &buf[nl + 1..];
        if next.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

impl<B> http_body::Body for GuardBody<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let watch = &mut **this.watch;
        loop {
            if let Some(bytes) = watch.next_out() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            match &mut watch.stage {
                Stage::Done => {
                    return Poll::Ready(watch.error.take().map(Err));
                }
                Stage::Judging(verdicts) => {
                    let after = ready!(verdicts.as_mut().poll(cx));
                    watch.judged(after);
                }
                Stage::Flowing => match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => watch.push(&data),
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                    Some(Err(e)) => {
                        // A broken upstream: what was held goes out, then the error.
                        watch.out.extend(watch.held.drain(..).map(|(e, _)| e));
                        watch.error = Some(e);
                        watch.stage = Stage::Done;
                    }
                    None => {
                        if !watch.carry.is_empty() {
                            let rest = watch.carry.split().freeze();
                            let mut whole = rest.to_vec();
                            whole.extend_from_slice(b"\n\n");
                            watch.take(Bytes::from(whole));
                        }
                        if matches!(watch.stage, Stage::Flowing) {
                            watch.judge_whole();
                        }
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.watch.stage, Stage::Done)
            && self.watch.out.is_empty()
            && self.watch.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
        assert_eq!(&*event_data(b"event: x\ndata: a\ndata:b\n\n"), b"a\nb");
        assert_eq!(&*event_data(b"data: {}\r\n\r\n"), b"{}");
    }

    #[test]
    fn text_comes_from_each_shape() {
        let mut t = String::new();
        event_text(
            br#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            &mut t,
        );
        event_text(br#"{"choices":[{"index":0,"text":"lo"}]}"#, &mut t);
        event_text(
            br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":" you"}}"#,
            &mut t,
        );
        event_text(
            br#"{"choices":[{"index":1,"delta":{"content":"other"}}]}"#,
            &mut t,
        );
        event_text(b"not json", &mut t);
        assert_eq!(t, "Hello you");
    }
}
