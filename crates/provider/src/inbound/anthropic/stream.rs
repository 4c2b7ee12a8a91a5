//! OpenAI `chat.completion.chunk` events → Anthropic's Messages stream events, chunk by chunk.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use serde_json::Value;

use super::response::{Tokens, stop_reason, write_error, write_id};
use crate::json::Json;

/// Where a translated stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// More chunks are expected.
    Open,
    /// The stream ended whole: `message_delta` and `message_stop` are out.
    Done,
    /// The upstream failed, or the stream ended before it was whole: an `error` event is out,
    /// and nothing follows it (never `message_stop`).
    Failed,
}

/// The content block open in the translated stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    None,
    Text(u32),
    Tool(u32),
}

/// Translates OpenAI chat-completion chunks into Anthropic Messages stream events as they
/// arrive, holding back only an event that has not ended yet.
///
/// | OpenAI | Anthropic |
/// |---|---|
/// | the first chunk | `message_start` (id prefixed `msg_`, model, usage so far) |
/// | `delta.content` | a `text` block: `content_block_start`, then `text_delta`s |
/// | `delta.tool_calls[]`, one per `index` | one `tool_use` block each (`content_block_start` with `id`, `name`, `input: {}`), its `arguments` as `input_json_delta`s |
/// | a new block, or `finish_reason` | `content_block_stop` of the open block |
/// | `usage` (the last chunk, asked for with `stream_options.include_usage`) | kept for `message_delta` |
/// | `data: [DONE]` (or the end after a `finish_reason`) | `message_delta` (`stop_reason`, `stop_sequence`, usage), then `message_stop` |
/// | `data: {"error": …}`, a broken stream, an end before any `finish_reason` | an `error` event, and nothing after it |
/// | `delta.reasoning_content`, `delta.role` | nothing |
///
/// ```
/// use portcullis_provider::inbound::anthropic::{Answer, StreamState};
///
/// let mut stream = Answer::default().stream();
/// let out = stream.push(
///     b"data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\
///       \"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\
///       \"finish_reason\":\"stop\"}]}\n\ndata: [DO",
/// );
/// let out = String::from_utf8(out.to_vec()).unwrap();
/// assert!(out.starts_with("event: message_start\n"));
/// assert!(out.contains(r#""delta":{"type":"text_delta","text":"Hi"}"#));
/// let out = stream.push(b"NE]\n\n");
/// assert!(out.ends_with(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
/// assert_eq!(stream.state(), StreamState::Done);
/// ```
#[derive(Debug)]
pub struct StreamTranslator {
    stop_sequences: bool,
    /// Bytes of an event that has not ended yet.
    carry: Vec<u8>,
    state: StreamState,
    started: bool,
    open: Open,
    next_index: u32,
    /// Each OpenAI tool-call `index` seen, with the block index it was given.
    tools: Vec<(u64, u32)>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<String>,
    tokens: Tokens,
}

impl StreamTranslator {
    pub(super) fn new(stop_sequences: bool) -> Self {
        Self {
            stop_sequences,
            carry: Vec::new(),
            state: StreamState::Open,
            started: false,
            open: Open::None,
            next_index: 0,
            tools: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            tokens: Tokens::default(),
        }
    }

    /// Where the stream stands.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Translates the events that end in `chunk` (with any held back from earlier chunks); an
    /// event not yet ended is held until it does. Empty when nothing is to be sent yet, and
    /// once the stream is no longer [`Open`](StreamState::Open).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(chunk.len() * 2 + 64);
        if self.carry.is_empty() {
            let used = self.scan(chunk, &mut out);
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let used = self.scan(&buf, &mut out);
            buf.drain(..used);
            self.carry = buf;
        }
        if self.state != StreamState::Open {
            self.carry = Vec::new();
        }
        out.into_bytes()
    }

    /// The end of the upstream stream: the close of a stream that had its `finish_reason`
    /// (some servers send no `[DONE]`), else an `error` event. Empty when the stream had
    /// already ended.
    pub fn finish(&mut self) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(256);
        // A last event without its blank line (`data: [DONE]` at the very end).
        if !self.carry.is_empty() {
            let mut last = std::mem::take(&mut self.carry);
            last.extend_from_slice(b"\n\n");
            self.scan(&last, &mut out);
        }
        if self.state == StreamState::Open {
            if self.stop_reason.is_some() {
                self.complete(&mut out);
            } else {
                self.fail_into(
                    &mut out,
                    "api_error",
                    "the upstream stream ended before the answer was complete",
                );
            }
        }
        out.into_bytes()
    }

    /// A broken upstream stream: an `error` event (empty when the stream had already ended).
    pub fn fail(&mut self, message: &str) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(message.len() + 96);
        self.fail_into(&mut out, "api_error", message);
        out.into_bytes()
    }

    /// Dispatches every whole event in `buf`; returns how many bytes they took.
    fn scan(&mut self, buf: &[u8], out: &mut Json) -> usize {
        let mut event_start = 0;
        let mut line_start = 0;
        // The event's `data:` lines: the first as a range, any more joined (rare).
        let mut data: Option<(usize, usize)> = None;
        let mut joined: Option<Vec<u8>> = None;
        while let Some(offset) = buf[line_start..].iter().position(|&b| b == b'\n') {
            let line_end = line_start + offset;
            let line = &buf[line_start..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                match (&joined, data) {
                    (Some(all), _) => self.event(all, out),
                    (None, Some((s, e))) => self.event(&buf[s..e], out),
                    (None, None) => {}
                }
                data = None;
                joined = None;
                event_start = line_end + 1;
                if self.state != StreamState::Open {
                    return buf.len();
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let start = line_start + (line.len() - value.len());
                match (&mut joined, data) {
                    (Some(all), _) => {
                        all.push(b'\n');
                        all.extend_from_slice(value);
                    }
                    (None, Some((s, e))) => {
                        let mut all = buf[s..e].to_vec();
                        all.push(b'\n');
                        all.extend_from_slice(value);
                        joined = Some(all);
                    }
                    (None, None) => data = Some((start, start + value.len())),
                }
            }
            line_start = line_end + 1;
        }
        event_start
    }

    fn event(&mut self, data: &[u8], out: &mut Json) {
        if data == b"[DONE]" {
            self.complete(out);
            return;
        }
        if self.started
            && matches!(self.open, Open::Text(_) | Open::None)
            && let Some(text) = fast_text(data)
        {
            if !text.is_empty() {
                self.text(&text, out);
            }
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            self.fail_into(
                out,
                "api_error",
                &format!("unreadable stream event: {shown}"),
            );
            return;
        };
        if let Some(error) = chunk.get("error") {
            let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
            let kind = if ERROR_TYPES.contains(&kind) {
                kind
            } else {
                "api_error"
            };
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            self.fail_into(out, kind, message);
            return;
        }
        if !self.started {
            self.start(&chunk, out);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.tokens = Tokens::from_openai(usage);
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                self.text(text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_call(position, call, out);
                }
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.close(out);
            self.stop_reason = Some(stop_reason(finish));
            self.stop_sequence = choice
                .get("stop_reason")
                .and_then(Value::as_str)
                .filter(|_| self.stop_sequences && finish == "stop")
                .map(str::to_owned);
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut Json) {
        self.started = true;
        let field = |key: &str| chunk.get(key).and_then(Value::as_str).unwrap_or("");
        head(out, b"message_start");
        out.raw(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        write_id(out, field("id"));
        out.raw(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        out.str(field("model"));
        out.raw(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        // OpenAI reports usage at the end: what is known so far (often nothing) now, the
        // whole in `message_delta`.
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.tokens = Tokens::from_openai(usage);
        }
        self.tokens.write(out);
        out.raw(b"}}\n\n");
    }

    fn text(&mut self, text: &str, out: &mut Json) {
        let index = match self.open {
            Open::Text(index) => index,
            _ => {
                self.close(out);
                let index = self.next_block();
                head(out, b"content_block_start");
                out.raw(b"{\"type\":\"content_block_start\",\"index\":");
                out.u64(u64::from(index));
                out.raw(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
                self.open = Open::Text(index);
                index
            }
        };
        head(out, b"content_block_delta");
        out.raw(b"{\"type\":\"content_block_delta\",\"index\":");
        out.u64(u64::from(index));
        out.raw(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
        out.str(text);
        out.raw(b"}}\n\n");
    }

    /// One entry of `delta.tool_calls`: the first for an `index` opens its block.
    fn tool_call(&mut self, position: usize, call: &Value, out: &mut Json) {
        let key = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function");
        let index = match self.tools.iter().find(|(k, _)| *k == key) {
            Some(&(_, index)) => index,
            None => {
                self.close(out);
                let index = self.next_block();
                self.tools.push((key, index));
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                head(out, b"content_block_start");
                out.raw(b"{\"type\":\"content_block_start\",\"index\":");
                out.u64(u64::from(index));
                out.raw(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                match call.get("id").and_then(Value::as_str) {
                    Some(id) => out.str(id),
                    // Servers that leave the id out: one the client can answer to.
                    None => out.str(&format!("toolu_{key}")),
                }
                out.raw(b",\"name\":");
                out.str(name);
                out.raw(b",\"input\":{}}}\n\n");
                self.open = Open::Tool(index);
                index
            }
        };
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !arguments.is_empty() {
            // A late piece of an earlier call (servers that interleave calls) goes to that
            // call's block by its index, as Anthropic's clients assemble blocks.
            head(out, b"content_block_delta");
            out.raw(b"{\"type\":\"content_block_delta\",\"index\":");
            out.u64(u64::from(index));
            out.raw(b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
            out.str(arguments);
            out.raw(b"}}\n\n");
        }
    }

    fn next_block(&mut self) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    /// `content_block_stop` for the open block, if any.
    fn close(&mut self, out: &mut Json) {
        let (Open::Text(index) | Open::Tool(index)) = self.open else {
            return;
        };
        self.open = Open::None;
        head(out, b"content_block_stop");
        out.raw(b"{\"type\":\"content_block_stop\",\"index\":");
        out.u64(u64::from(index));
        out.raw(b"}\n\n");
    }

    /// The whole answer is out: close the open block, then `message_delta` and
    /// `message_stop`.
    fn complete(&mut self, out: &mut Json) {
        if !self.started {
            self.start(&Value::Null, out);
        }
        self.close(out);
        head(out, b"message_delta");
        out.raw(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        match &self.stop_sequence {
            Some(s) => {
                out.raw(b"stop_sequence\",\"stop_sequence\":");
                out.str(s);
            }
            None => {
                out.raw(self.stop_reason.unwrap_or("end_turn").as_bytes());
                out.raw(b"\",\"stop_sequence\":null");
            }
        }
        out.raw(b"},\"usage\":");
        self.tokens.write(out);
        out.raw(b"}\n\n");
        head(out, b"message_stop");
        out.raw(b"{\"type\":\"message_stop\"}\n\n");
        self.state = StreamState::Done;
    }

    fn fail_into(&mut self, out: &mut Json, kind: &str, message: &str) {
        head(out, b"error");
        write_error(out, kind, message);
        out.raw(b"\n\n");
        self.state = StreamState::Failed;
    }
}

/// The error types of Anthropic's API: an upstream error of one of these keeps it.
const ERROR_TYPES: [&str; 10] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
];

/// The text of a chunk that carries nothing but one piece of text for choice 0, read without
/// parsing the whole chunk (most chunks of a stream are these). `None` for any other chunk:
/// one with tool calls, a finish reason, usage, an error, a role, or a second choice. Keys
/// cannot appear unescaped inside a JSON string, so finding them in the bytes is exact.
fn fast_text(data: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    const DELTA: &[u8] = br#""delta":{"content":""#;
    let at = find(data, DELTA)?;
    let rest = &data[at + DELTA.len() - 1..];
    // The string literal: up to the first quote that no backslash escapes.
    let mut end = 1;
    let mut escaped = false;
    while end < rest.len() {
        match rest[end] {
            b'\\' if !escaped => escaped = true,
            b'"' if !escaped => break,
            _ => escaped = false,
        }
        end += 1;
    }
    let literal = rest.get(..=end)?;
    if rest.get(end + 1) != Some(&b'}') {
        return None;
    }
    for key in [
        &br#""delta""#[..],
        br#""tool_calls""#,
        br#""usage":{"#,
        br#""error""#,
        br#""finish_reason":""#,
        br#""index":1"#,
    ] {
        let found = find(data, key);
        // `"delta"` is allowed once: the one matched above.
        if found.is_some_and(|i| key != br#""delta""# || i != at) {
            return None;
        }
    }
    if find(&data[at + 1..], br#""delta""#).is_some() {
        return None;
    }
    // serde_json checks and unescapes it; a literal without escapes is borrowed.
    if literal.contains(&b'\\') {
        serde_json::from_slice::<String>(literal)
            .ok()
            .map(std::borrow::Cow::Owned)
    } else {
        serde_json::from_slice::<&str>(literal)
            .ok()
            .map(std::borrow::Cow::Borrowed)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `event: NAME` and the start of its `data:` line.
fn head(out: &mut Json, name: &[u8]) {
    out.raw(b"event: ");
    out.raw(name);
    out.raw(b"\ndata: ");
}

pin_project! {
    /// A chat-completion event stream translated into Anthropic's events as it flows (see
    /// [`StreamTranslator`]). A broken inner body becomes an `error` event and the end; once
    /// the answer is out, the inner body is still read to its end, so the layers inside see
    /// the stream complete rather than dropped.
    pub struct MessagesStreamBody<B> {
        #[pin]
        inner: B,
        translator: StreamTranslator,
        inner_done: bool,
    }
}

impl<B> MessagesStreamBody<B> {
    /// Translates `inner` with `translator`.
    pub fn new(inner: B, translator: StreamTranslator) -> Self {
        Self {
            inner,
            translator,
            inner_done: false,
        }
    }
}

impl<B> std::fmt::Debug for MessagesStreamBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagesStreamBody")
            .field("state", &self.translator.state())
            .finish_non_exhaustive()
    }
}

impl<B> http_body::Body for MessagesStreamBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.inner_done {
                return Poll::Ready(None);
            }
            let out = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.translator.push(&data),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    *this.inner_done = true;
                    let e: BoxError = e.into();
                    this.translator
                        .fail(&format!("the upstream stream broke: {e}"))
                }
                Poll::Ready(None) => {
                    *this.inner_done = true;
                    this.translator.finish()
                }
            };
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner_done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let data = data.strip_prefix("data: ").unwrap();
                (
                    name.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data).unwrap(),
                )
            })
            .collect()
    }

    fn chunk(choice: &str) -> String {
        format!("data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{choice}]}}\n\n")
    }

    #[test]
    fn parallel_tool_calls_get_a_block_each_and_text_its_own() {
        let mut t = Answer::default().stream();
        let mut all = Vec::new();
        for c in [
            chunk(r#"{"index":0,"delta":{"role":"assistant","content":"Sure."}}"#),
            chunk(
                r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":""}}]}}"#,
            ),
            chunk(
                r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]}}"#,
            ),
            chunk(
                r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}"#,
            ),
            chunk(
                r#"{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}}"#,
            ),
            chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n"
                .into(),
            "data: [DONE]\n\n".into(),
        ] {
            all.extend_from_slice(&t.push(c.as_bytes()));
        }
        let ev = events(&all);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[4].1["index"], 1);
        assert_eq!(ev[4].1["content_block"]["id"], "a");
        assert_eq!(ev[6].1["delta"]["partial_json"], "1}");
        assert_eq!(ev[8].1["index"], 2);
        assert_eq!(ev[8].1["content_block"]["name"], "g");
        assert_eq!(ev[11].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[11].1["usage"]["output_tokens"], 3);
        assert_eq!(t.state(), StreamState::Done);
    }

    #[test]
    fn an_end_without_a_finish_is_an_error_never_a_stop() {
        let mut t = Answer::default().stream();
        let mut all = t
            .push(chunk(r#"{"index":0,"delta":{"content":"Hel"}}"#).as_bytes())
            .to_vec();
        all.extend_from_slice(&t.finish());
        let ev = events(&all);
        assert_eq!(ev.last().unwrap().0, "error");
        assert!(!ev.iter().any(|(n, _)| n == "message_stop"));
        assert_eq!(t.state(), StreamState::Failed);
    }

    #[test]
    fn an_error_event_keeps_a_known_type() {
        let mut t = Answer::default().stream();
        let out =
            t.push(b"data: {\"error\":{\"message\":\"busy\",\"type\":\"overloaded_error\"}}\n\n");
        let ev = events(&out);
        assert_eq!(ev[0].1["error"]["type"], "overloaded_error");
        assert_eq!(ev[0].1["error"]["message"], "busy");
        assert!(t.push(b"data: [DONE]\n\n").is_empty());
    }

    #[test]
    fn fast_text_only_takes_plain_text_chunks() {
        let plain = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"a \"b\" \u00e9"},"finish_reason":null}]}"#;
        assert_eq!(fast_text(plain).as_deref(), Some("a \"b\" \u{e9}"));
        for other in [
            &br#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#[..],
            br#"{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}"#,
            br#"{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}"#,
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"a"}}]}"#,
            br#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
        ] {
            assert_eq!(fast_text(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    use super::super::response::Answer;
}
