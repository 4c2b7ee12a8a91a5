//! OpenAI `chat.completion.chunk` events → Anthropic's Messages stream events, chunk by chunk.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use serde_json::Value;

use super::response::{Tokens, stop_reason, write_error, write_id};
use crate::json::Json;
use crate::scan::Reader;
use crate::sse::{Translate, TranslatedBody};

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
        let mut carry = std::mem::take(&mut self.carry);
        crate::sse::push(&mut carry, chunk, |data| {
            self.event(data, &mut out);
            self.state == StreamState::Open
        });
        self.carry = carry;
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
        let mut carry = std::mem::take(&mut self.carry);
        crate::sse::flush(&mut carry, |data| {
            self.event(data, &mut out);
            self.state == StreamState::Open
        });
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

    fn event(&mut self, data: &[u8], out: &mut Json) {
        if data == b"[DONE]" {
            self.complete(out);
            return;
        }
        // Most chunks are read in one walk of their bytes; the rare ones (usage, an error,
        // anything of an unexpected shape) as a `Value`.
        if let Some(chunk) = read_chunk(data) {
            self.chunk(&chunk, None, out);
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
        let usage = chunk
            .get("usage")
            .filter(|u| u.is_object())
            .map(Tokens::from_openai);
        self.chunk(&Chunk::of(&chunk), usage, out);
    }

    /// One chunk, with the usage it reports.
    fn chunk(&mut self, chunk: &Chunk<'_>, usage: Option<Tokens>, out: &mut Json) {
        if !self.started {
            self.start(chunk, usage, out);
        } else if let Some(usage) = usage {
            self.tokens = usage;
        }
        let Some(choice) = &chunk.choice else {
            return;
        };
        if let Some(text) = choice.content.as_deref()
            && !text.is_empty()
        {
            self.text(text, out);
        }
        for (position, call) in choice.calls.iter().enumerate() {
            self.tool_call(position, call, out);
        }
        if let Some(finish) = choice.finish_reason.as_deref() {
            self.close(out);
            self.stop_reason = Some(stop_reason(finish));
            self.stop_sequence = choice
                .stop_reason
                .as_deref()
                .filter(|_| self.stop_sequences && finish == "stop")
                .map(str::to_owned);
        }
    }

    fn start(&mut self, chunk: &Chunk<'_>, usage: Option<Tokens>, out: &mut Json) {
        self.started = true;
        head(out, b"message_start");
        out.raw(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        write_id(out, chunk.id.as_deref().unwrap_or(""));
        out.raw(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        out.str(chunk.model.as_deref().unwrap_or(""));
        out.raw(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        // OpenAI reports usage at the end: what is known so far (often nothing) now, the
        // whole in `message_delta`.
        if let Some(usage) = usage {
            self.tokens = usage;
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
    fn tool_call(&mut self, position: usize, call: &Call<'_>, out: &mut Json) {
        let key = call.index.unwrap_or(position as u64);
        let index = match self.tools.iter().find(|(k, _)| *k == key) {
            Some(&(_, index)) => index,
            None => {
                self.close(out);
                let index = self.next_block();
                self.tools.push((key, index));
                head(out, b"content_block_start");
                out.raw(b"{\"type\":\"content_block_start\",\"index\":");
                out.u64(u64::from(index));
                out.raw(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                match call.id.as_deref() {
                    Some(id) => out.str(id),
                    // Servers that leave the id out: one the client can answer to.
                    None => out.str(&format!("toolu_{key}")),
                }
                out.raw(b",\"name\":");
                out.str(call.name.as_deref().unwrap_or(""));
                out.raw(b",\"input\":{}}}\n\n");
                self.open = Open::Tool(index);
                index
            }
        };
        let arguments = call.arguments.as_deref().unwrap_or("");
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
            self.start(&Chunk::default(), None, out);
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

/// What the translation reads of an OpenAI chunk.
#[derive(Debug, Default, PartialEq)]
struct Chunk<'a> {
    id: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    /// The first of `choices`: a Messages stream has one answer.
    choice: Option<Choice<'a>>,
}

/// What the translation reads of a chunk's choice.
#[derive(Debug, Default, PartialEq)]
struct Choice<'a> {
    content: Option<Cow<'a, str>>,
    calls: Vec<Call<'a>>,
    finish_reason: Option<Cow<'a, str>>,
    /// The stop sequence that ended the answer (vLLM and others; a token id elsewhere).
    stop_reason: Option<Cow<'a, str>>,
}

/// One entry of a chunk's `delta.tool_calls`.
#[derive(Debug, Default, PartialEq)]
struct Call<'a> {
    index: Option<u64>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}

impl<'a> Chunk<'a> {
    /// The fields of a chunk parsed whole, each read as `read_chunk` reads it.
    fn of(chunk: &'a Value) -> Self {
        let string = |v: Option<&'a Value>| v.and_then(Value::as_str).map(Cow::Borrowed);
        let choice = chunk.get("choices").and_then(|c| c.get(0)).map(|choice| {
            let delta = choice.get("delta");
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            Choice {
                content: string(delta.and_then(|d| d.get("content"))),
                calls: calls
                    .iter()
                    .map(|call| {
                        let function = call.get("function");
                        Call {
                            index: call.get("index").and_then(Value::as_u64),
                            id: string(call.get("id")),
                            name: string(function.and_then(|f| f.get("name"))),
                            arguments: string(function.and_then(|f| f.get("arguments"))),
                        }
                    })
                    .collect(),
                finish_reason: string(choice.get("finish_reason")),
                stop_reason: string(choice.get("stop_reason")),
            }
        });
        Self {
            id: string(chunk.get("id")),
            model: string(chunk.get("model")),
            choice,
        }
    }
}

/// A chunk read in one walk of its bytes (most of a stream's chunks: a few words of text or
/// of a tool call's arguments). `None` for a chunk with usage or an error, and for anything
/// not of the usual shape: those are parsed whole. Fields of another type than the
/// translation reads count as absent, as they do when parsed whole.
fn read_chunk(data: &[u8]) -> Option<Chunk<'_>> {
    let mut r = Reader::new(data);
    let mut chunk = Chunk::default();
    r.object(|r, key| match key {
        b"id" => {
            chunk.id = r.opt_string()?;
            Some(())
        }
        b"model" => {
            chunk.model = r.opt_string()?;
            Some(())
        }
        b"choices" => {
            let mut first = true;
            r.array(|r| {
                if !std::mem::take(&mut first) {
                    return r.skip();
                }
                chunk.choice = Some(read_choice(r)?);
                Some(())
            })
        }
        // `"usage": null` in every chunk but the last is common; the last one's counts and
        // errors go the rare way.
        b"usage" => (r.raw()? == b"null").then_some(()),
        b"error" => None,
        _ => r.skip(),
    })?;
    r.end()?;
    Some(chunk)
}

fn read_choice<'a>(r: &mut Reader<'a>) -> Option<Choice<'a>> {
    let mut choice = Choice::default();
    r.object(|r, key| match key {
        b"delta" => r.object(|r, key| match key {
            b"content" => {
                choice.content = r.opt_string()?;
                Some(())
            }
            b"tool_calls" => {
                if r.peek()? != b'[' {
                    return r.skip();
                }
                choice.calls.clear();
                r.array(|r| {
                    choice.calls.push(read_call(r)?);
                    Some(())
                })
            }
            _ => r.skip(),
        }),
        b"finish_reason" => {
            choice.finish_reason = r.opt_string()?;
            Some(())
        }
        b"stop_reason" => {
            choice.stop_reason = r.opt_string()?;
            Some(())
        }
        _ => r.skip(),
    })?;
    Some(choice)
}

fn read_call<'a>(r: &mut Reader<'a>) -> Option<Call<'a>> {
    let mut call = Call::default();
    r.object(|r, key| match key {
        b"index" => {
            call.index = r.opt_u64()?;
            Some(())
        }
        b"id" => {
            call.id = r.opt_string()?;
            Some(())
        }
        b"function" => r.object(|r, key| match key {
            b"name" => {
                call.name = r.opt_string()?;
                Some(())
            }
            b"arguments" => {
                call.arguments = r.opt_string()?;
                Some(())
            }
            _ => r.skip(),
        }),
        _ => r.skip(),
    })?;
    Some(call)
}

/// `event: NAME` and the start of its `data:` line.
fn head(out: &mut Json, name: &[u8]) {
    out.raw(b"event: ");
    out.raw(name);
    out.raw(b"\ndata: ");
}

impl Translate for StreamTranslator {
    // The layers inside (an observer, a budget) see the stream complete rather than dropped.
    const DRAIN: bool = true;

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        StreamTranslator::push(self, chunk)
    }

    fn is_open(&self) -> bool {
        self.state == StreamState::Open
    }

    fn end(&mut self) -> Result<Bytes, BoxError> {
        Ok(self.finish())
    }

    fn broke(&mut self, err: BoxError) -> Result<Bytes, BoxError> {
        Ok(self.fail(&format!("the upstream stream broke: {err}")))
    }
}

pin_project! {
    /// A chat-completion event stream translated into Anthropic's events as it flows (see
    /// [`StreamTranslator`]). A broken inner body becomes an `error` event and the end; once
    /// the answer is out, the inner body is still read to its end, so the layers inside see
    /// the stream complete rather than dropped.
    pub struct MessagesStreamBody<B> {
        #[pin]
        inner: TranslatedBody<B, StreamTranslator>,
    }
}

impl<B> MessagesStreamBody<B> {
    /// Translates `inner` with `translator`.
    pub fn new(inner: B, translator: StreamTranslator) -> Self {
        Self {
            inner: TranslatedBody::new(inner, translator, None),
        }
    }
}

impl<B> std::fmt::Debug for MessagesStreamBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagesStreamBody")
            .field("state", &self.inner.translator().state())
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
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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
    fn a_chunk_read_in_one_walk_reads_as_one_parsed_whole() {
        let plain = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"a \"b\" \u00e9"},"finish_reason":null}]}"#;
        let chunk = read_chunk(plain).unwrap();
        let choice = chunk.choice.as_ref().unwrap();
        assert_eq!(choice.content.as_deref(), Some("a \"b\" \u{e9}"));
        assert_eq!(chunk.id.as_deref(), Some("c"));
        for other in [
            &br#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#[..],
            br#"{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}"#,
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"a"}}]}"#,
            br#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            br#"{"id":7,"choices":[{"delta":{"content":null,"tool_calls":[{"index":1,"id":"x",
               "function":{"name":"f","arguments":"{\"k\":"}}]},"stop_reason":42}],"usage":null}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":"1","function":{"arguments":"1}"}}]},
               "finish_reason":"tool_calls","stop_reason":"END"}]}"#,
        ] {
            let whole: Value = serde_json::from_slice(other).unwrap();
            let read = read_chunk(other);
            assert_eq!(read, Some(Chunk::of(&whole)), "{}", String::from_utf8_lossy(other));
        }
        // Usage, errors and the unreadable go the rare way, parsed whole.
        for rare in [
            &br#"{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}"#[..],
            br#"{"error":{"message":"busy"}}"#,
            br#"{"choices":[{"delta":null}]}"#,
            br#"{"choices":[]} x"#,
        ] {
            assert_eq!(read_chunk(rare), None, "{}", String::from_utf8_lossy(rare));
        }
    }

    use super::super::response::Answer;
}
