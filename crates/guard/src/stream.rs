//! [`GuardBody`]: watches a streamed answer, judging a sliding window of its text as it
//! flows and the whole text at its end.
//!
//! Events pass to the client as they come, except, when a denying hook has window checks,
//! those whose text lies in the last [`hold`](crate::StreamOptions::hold) bytes: they wait
//! until the window checks have seen what follows (an event that carries nothing, such as
//! the opening one with the role, waits only behind held ones). A window check that fails in
//! a denying hook ends the stream at once with an SSE error event (`type: "hooks_failed"`,
//! with `hook_results`); what was held is never sent. At the end (`[DONE]`, or the end of
//! the body) every after hook runs over the whole text; a denying one that fails ends the
//! stream the same way, in place of the held tail (if any) and `[DONE]`.
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
use portcullis_core::observe::json::{Fields, Reader};
use portcullis_core::observe::{event_carries_content, find_newline, lines};
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
    let piece = match scan_text(data) {
        Some(piece) => piece,
        None => parse_text(data),
    };
    if let Some(piece) = piece {
        text.push_str(&piece);
    }
}

/// What an event adds, read by serde_json into [`Chunk`]: the first choice with index 0's
/// `delta.content`, else its `text`; without such a choice, the top level's `delta.text`.
/// Nothing for what serde_json refuses.
fn parse_text(data: &[u8]) -> Option<Cow<'_, str>> {
    let chunk = serde_json::from_slice::<Chunk<'_>>(data).ok()?;
    match chunk.choices.into_iter().find(|c| c.index == 0) {
        Some(choice) => choice.delta.and_then(|d| d.content).or(choice.text),
        None => chunk.delta.and_then(|d| d.text),
    }
}

/// [`parse_text`] in one pass over the bytes with core's strict reader, no serde: `None` for
/// anything it leaves to serde_json (an escaped key, a field given twice, a value of another
/// type, bytes that are not JSON), which then decides. Most of a streamed answer's cost in
/// this layer was serde reading every event.
fn scan_text(data: &[u8]) -> Option<Option<Cow<'_, str>>> {
    let mut r = Reader::new(data);
    let mut seen = Fields::default();
    // The first choice with index 0: its piece (which may be none).
    let mut first: Option<Option<Cow<'_, str>>> = None;
    let mut top = None;
    r.object(|r, key| match key {
        b"choices" => {
            seen.once(0)?;
            r.array(|r| {
                let (index, piece) = scan_choice(r)?;
                if index == 0 && first.is_none() {
                    first = Some(piece);
                }
                Some(())
            })
        }
        b"delta" => {
            seen.once(1)?;
            top = r.opt(|r| scan_delta(r, b"text"))?.flatten();
            Some(())
        }
        _ => r.skip(),
    })?;
    r.end()?;
    Some(match first {
        Some(piece) => piece,
        None => top,
    })
}

/// One element of `choices`, as serde reads a [`Choice`]: its index (0 when missing) and
/// its `delta.content`, else its `text`.
fn scan_choice<'a>(r: &mut Reader<'a>) -> Option<(u32, Option<Cow<'a, str>>)> {
    let mut seen = Fields::default();
    let (mut index, mut delta, mut text) = (0, None, None);
    r.object(|r, key| {
        match key {
            b"index" => {
                seen.once(0)?;
                index = u32::try_from(r.u64()?).ok()?;
            }
            b"delta" => {
                seen.once(1)?;
                delta = r.opt(|r| scan_delta(r, b"content"))?.flatten();
            }
            b"text" => {
                seen.once(2)?;
                text = r.opt(|r| r.string()?.text())?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some((index, delta.or(text)))
}

/// A [`Delta`] object: the string field `wanted` (`content` or `text`), the other one
/// checked as serde checks it.
fn scan_delta<'a>(r: &mut Reader<'a>, wanted: &[u8]) -> Option<Option<Cow<'a, str>>> {
    let mut seen = Fields::default();
    let mut piece = None;
    r.object(|r, key| {
        let field = match key {
            b"content" => 0,
            b"text" => 1,
            _ => return r.skip(),
        };
        seen.once(field)?;
        let value = r.opt(|r| r.string()?.text())?;
        if key == wanted {
            piece = value;
        }
        Some(())
    })?;
    Some(piece)
}

/// The `data:` payload of one whole event (lines joined by `\n`).
fn event_data(event: &[u8]) -> Cow<'_, [u8]> {
    // The common case: one `data:` line first, then the blank line.
    if let Some(rest) = event.strip_prefix(b"data:") {
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        if let Some(nl) = find_newline(rest) {
            let after = &rest[nl + 1..];
            if after.is_empty() || after == b"\n" || after == b"\r\n" {
                let line = &rest[..nl];
                return Cow::Borrowed(line.strip_suffix(b"\r").unwrap_or(line));
            }
        }
    }
    let mut data = Vec::new();
    for line in lines(event) {
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
    /// Takes each whole event of `chunk` in, keeping the start of an unfinished one for the
    /// next. A chunk that starts and ends on event boundaries (the observer below forwards
    /// only whole events) is cut into its events without copying a byte; an event kept
    /// waiting is copied then (see [`keep`]).
    fn push(&mut self, chunk: Bytes) {
        let mut chunk = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(&chunk);
            self.carry.split().freeze()
        };
        while let Some(end) = event_end(&chunk) {
            self.take(chunk.split_to(end));
            if !matches!(self.stage, Stage::Flowing) {
                return;
            }
        }
        self.carry.extend_from_slice(&chunk);
    }

    fn take(&mut self, event: Bytes) {
        let data = event_data(&event);
        if &*data == b"[DONE]" {
            // Kept while the checks of the whole answer run (a webhook may take seconds).
            self.done_event = Some(keep(event));
            self.judge_whole();
            return;
        }
        let before = self.text.len();
        event_text(&data, &mut self.text);
        let guards = &self.ctx.guards;
        // Only a denying hook's window check can cut the stream before its end; without one,
        // holding text back would delay every token for a tail that checks of the whole
        // answer judge only once the rest has gone.
        let hold = if guards.window_checks.is_empty() {
            0
        } else {
            guards.stream.hold
        };
        if self.text.len() == before && self.held.is_empty() && !event_carries_content(&data) {
            // Nothing held before it, and nothing in it a client would act on (the opening
            // `{"role":"assistant","content":""}`): it goes now, in its place. Anything else
            // (a tool call, reasoning, a refusal, which the window checks do not read) keeps
            // its place in the queue behind the hold.
            self.out.push_back(event);
            return;
        }
        // Behind a hold, an event may wait for the next ones; without one it goes below.
        let event = if hold > 0 { keep(event) } else { event };
        self.held.push_back((event, self.text.len()));
        if self.text.len() > before && self.window_denies(before) {
            return;
        }
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

/// An event that waits (held back, or the `[DONE]` kept while the answer is judged), in bytes
/// of its own: cut from an upstream frame, it would keep the whole of that frame's buffer
/// (the HTTP client's read buffer, often kilobytes) for as long as it waits.
fn keep(event: Bytes) -> Bytes {
    Bytes::copy_from_slice(&event)
}

/// The end of the first whole event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = find_newline(&buf[i..]) {
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
                        Ok(data) => watch.push(data),
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
    use crate::testjson::{J, any_value, document, object, string};
    use proptest::prelude::*;

    fn delta() -> BoxedStrategy<J> {
        let piece = || prop_oneof![4 => string(), 1 => any_value()].boxed();
        prop_oneof![
            4 => object(vec![("content", piece()), ("text", piece()), ("role", string().boxed())]),
            1 => any_value(),
        ]
        .boxed()
    }

    fn choice() -> BoxedStrategy<J> {
        let index = prop_oneof![
            6 => Just(J::Lit("0")),
            2 => Just(J::Lit("1")),
            1 => prop::sample::select(vec!["-1", "4294967296", "0.0", "null"]).prop_map(J::Lit),
        ];
        prop_oneof![
            4 => object(vec![
                ("index", index.boxed()),
                ("delta", delta()),
                ("text", prop_oneof![3 => string(), 1 => any_value()].boxed()),
                ("finish_reason", string().boxed()),
            ]),
            1 => any_value(),
        ]
        .boxed()
    }

    /// Stream events' data in OpenAI's (chat, completions) and Anthropic's shapes, or near
    /// them, or not JSON at all.
    fn event() -> impl Strategy<Value = Vec<u8>> {
        let choices = prop_oneof![
            4 => prop::collection::vec(choice(), 0..3).prop_map(J::Arr),
            1 => any_value(),
        ];
        let top = prop_oneof![
            8 => object(vec![
                ("id", string().boxed()),
                ("choices", choices.boxed()),
                ("delta", delta()),
                ("type", string().boxed()),
                ("usage", any_value().boxed()),
            ]),
            1 => any_value(),
        ];
        document(top)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The one pass adds the text serde_json's read adds, or leaves the event to it.
        #[test]
        fn the_one_pass_reads_events_as_serde_does(data in event()) {
            let shown = String::from_utf8_lossy(&data);
            if let Some(piece) = scan_text(&data) {
                prop_assert_eq!(piece, parse_text(&data), "{}", shown);
            }
            // Whichever read took it, the text grows by what serde reads.
            let mut text = String::from("before ");
            event_text(&data, &mut text);
            let want = format!("before {}", parse_text(&data).as_deref().unwrap_or(""));
            prop_assert_eq!(text, want, "{}", shown);
        }
    }

    #[test]
    fn the_usual_events_are_read_in_one_pass() {
        let events: [(&[u8], Option<&str>); 7] = [
            (
                br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
                Some(""),
            ),
            (
                br#"{"id":"c","choices":[{"index":0,"delta":{"content":"caf\u00e9 \"q\""},"finish_reason":null}]}"#,
                Some("café \"q\""),
            ),
            (br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#, None),
            (
                br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
                None,
            ),
            (br#"{"choices":[{"text":"done","index":0}]}"#, Some("done")),
            (
                br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
                Some("hi"),
            ),
            (
                br#"{"choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}}]}"#,
                Some("a"),
            ),
        ];
        for (data, want) in events {
            let shown = String::from_utf8_lossy(data);
            assert_eq!(scan_text(data).expect(&shown).as_deref(), want, "{shown}");
            assert_eq!(parse_text(data).as_deref(), want, "{shown}");
        }
        // Left to serde_json: a repeated field, an escaped key, a choice that is an array.
        for data in [
            &br#"{"choices":[],"choices":[]}"#[..],
            br#"{"ch\u006fices":[]}"#,
            br#"{"choices":[[0]]}"#,
        ] {
            assert_eq!(scan_text(data), None, "{}", String::from_utf8_lossy(data));
        }
    }

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
