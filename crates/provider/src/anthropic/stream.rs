//! Anthropic's event stream → OpenAI `chat.completion.chunk` events, event by event.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::BoxError;
use portcullis_core::error::{UpstreamError, UpstreamErrorKind};
use serde_json::Value;

use super::response::{Tokens, finish_reason, write_error};
use crate::json::Json;
use crate::sse::Translate;

/// Where a translated stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// More events are expected.
    Open,
    /// `message_stop` arrived: the finish, usage and `data: [DONE]` events are out.
    Done,
    /// Anthropic sent an `error` event (or one that could not be read): an OpenAI error event
    /// is out, and nothing follows it.
    Failed,
}

/// What a content block of the stream becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call, `k`-th of the message (OpenAI's `tool_calls[].index`), and whether any
    /// argument bytes were sent for it.
    Tool {
        k: u32,
        sent_arguments: bool,
    },
    /// The tool that carries a `json_schema` answer: its input is content.
    JsonAnswer,
    /// Anything an OpenAI chunk cannot hold (redacted thinking, server tools, new kinds).
    Other,
}

/// Translates Anthropic Messages stream events into OpenAI `chat.completion.chunk` events as
/// they arrive, holding back only an event that has not ended yet.
///
/// | Anthropic event | OpenAI event |
/// |---|---|
/// | `message_start` | `delta: {role: "assistant", content: ""}` |
/// | `content_block_start` `tool_use` | `delta.tool_calls[{index: k, id, type, function: {name, arguments: ""}}]`, `k` counting tool blocks only |
/// | `content_block_delta` `text_delta` | `delta.content` |
/// | `content_block_delta` `input_json_delta` | `delta.tool_calls[{index: k, function: {arguments}}]` |
/// | `content_block_delta` `thinking_delta` | `delta.reasoning_content` |
/// | `content_block_stop` of a tool that streamed no arguments | `arguments: "{}"` |
/// | `message_delta` with `stop_reason` | `delta: {}, finish_reason` |
/// | `message_stop` | a usage event (`choices: []`), then `data: [DONE]` |
/// | `error` | `data: {"error": {…}}`, then nothing |
/// | `ping`, `signature_delta`, unknown events | nothing |
///
/// ```
/// use portcullis_provider::anthropic::{ResponseTranslator, StreamState};
///
/// let mut stream = ResponseTranslator::default().stream(1_700_000_000);
/// let out = stream.push(
///     b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\
///       \"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
///       event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\
///       \"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\nevent: message_st",
/// );
/// let out = String::from_utf8(out.to_vec()).unwrap();
/// assert!(out.contains(r#""delta":{"role":"assistant","content":""}"#));
/// assert!(out.contains(r#""delta":{"content":"Hi"}"#));
/// let out = stream.push(b"op\ndata: {\"type\":\"message_stop\"}\n\n");
/// assert!(out.ends_with(b"data: [DONE]\n\n"));
/// assert_eq!(stream.state(), StreamState::Done);
/// ```
#[derive(Debug)]
pub struct StreamTranslator {
    json_tool: Option<Arc<str>>,
    created: u64,
    /// Bytes of an event that has not ended yet.
    carry: Vec<u8>,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`
    prefix: Vec<u8>,
    blocks: Vec<BlockKind>,
    tools: u32,
    tokens: Tokens,
    stop_reason: Option<&'static str>,
    finish_sent: bool,
    state: StreamState,
}

impl StreamTranslator {
    pub(super) fn new(json_tool: Option<Arc<str>>, created: u64) -> Self {
        let mut this = Self {
            json_tool,
            created,
            carry: Vec::new(),
            prefix: Vec::new(),
            blocks: Vec::new(),
            tools: 0,
            tokens: Tokens::default(),
            stop_reason: None,
            finish_sent: false,
            state: StreamState::Open,
        };
        this.set_prefix("", "");
        this
    }

    /// Where the stream stands.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Translates the events that end in `chunk` (with any held back from earlier chunks);
    /// an event not yet ended is held until it does. Empty when nothing is to be sent yet,
    /// and after the stream is [`Done`](StreamState::Done) or
    /// [`Failed`](StreamState::Failed).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(chunk.len() + 128);
        let mut carry = std::mem::take(&mut self.carry);
        crate::sse::push(&mut carry, chunk, |data| {
            self.event(data, &mut out);
            self.state == StreamState::Open
        });
        self.carry = carry;
        out.into_bytes()
    }

    fn set_prefix(&mut self, id: &str, model: &str) {
        let mut prefix = Json::with_capacity(96 + id.len() + model.len());
        prefix.raw(b"data: {\"id\":");
        prefix.str(id);
        prefix.raw(b",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.u64(self.created);
        prefix.raw(b",\"model\":");
        prefix.str(model);
        prefix.raw(b",\"choices\":");
        self.prefix = prefix.into_vec();
    }

    /// One chunk whose choice 0 has `delta` (already JSON).
    fn delta(&self, out: &mut Json, delta: &[&[u8]]) {
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":0,\"delta\":");
        for piece in delta {
            out.raw(piece);
        }
        out.raw(b",\"finish_reason\":null}]}\n\n");
    }

    /// One chunk whose delta is `{"<field>": <text>}`.
    fn text(&self, out: &mut Json, field: &[u8], text: &str) {
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":0,\"delta\":{\"");
        out.raw(field);
        out.raw(b"\":");
        out.str(text);
        out.raw(b"},\"finish_reason\":null}]}\n\n");
    }

    fn arguments(&self, out: &mut Json, k: u32, arguments: &str) {
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":");
        out.u64(u64::from(k));
        out.raw(b",\"function\":{\"arguments\":");
        out.str(arguments);
        out.raw(b"}}]},\"finish_reason\":null}]}\n\n");
    }

    fn finish(&mut self, out: &mut Json) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":0,\"delta\":{},\"finish_reason\":\"");
        out.raw(self.stop_reason.unwrap_or("stop").as_bytes());
        out.raw(b"\"}]}\n\n");
    }

    fn fail(&mut self, out: &mut Json, kind: &str, message: &str) {
        out.raw(b"data: ");
        write_error(out, kind, message);
        out.raw(b"\n\n");
        self.state = StreamState::Failed;
    }

    /// One `content_block_delta` of block `index`: `piece` is its text, thinking or partial
    /// JSON, as `kind` says.
    fn delta_piece(&mut self, index: usize, kind: &str, piece: &str, out: &mut Json) {
        if piece.is_empty() {
            return;
        }
        let block = self.blocks.get(index).copied().unwrap_or(BlockKind::Text);
        match (kind, block) {
            ("text_delta", _) => self.text(out, b"content", piece),
            ("thinking_delta", _) => self.text(out, b"reasoning_content", piece),
            ("input_json_delta", BlockKind::Tool { k, .. }) => {
                self.arguments(out, k, piece);
                self.blocks[index] = BlockKind::Tool {
                    k,
                    sent_arguments: true,
                };
            }
            ("input_json_delta", BlockKind::JsonAnswer) => self.text(out, b"content", piece),
            // signature_delta (thinking signatures), citations_delta, new kinds.
            _ => {}
        }
    }

    fn event(&mut self, data: &[u8], out: &mut Json) {
        // Keep-alives, as Anthropic writes them: nothing to parse, nothing to send.
        if data == br#"{"type": "ping"}"# || data == br#"{"type":"ping"}"# {
            return;
        }
        if let Some((index, kind, piece)) = fast_delta(data) {
            self.delta_piece(index, kind, &piece, out);
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            self.fail(
                out,
                "api_error",
                &format!("unreadable stream event: {shown}"),
            );
            return;
        };
        let index = || {
            event
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
        };
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                let message = event.get("message");
                let field = |key: &str| {
                    message
                        .and_then(|m| m.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                let (id, model) = (field("id"), field("model"));
                self.set_prefix(id, model);
                if let Some(usage) = message.and_then(|m| m.get("usage")) {
                    self.tokens.read(usage);
                }
                self.delta(out, &[b"{\"role\":\"assistant\",\"content\":\"\"}"]);
            }
            "content_block_start" => {
                let Some(index) = index() else { return };
                let block = event.get("content_block");
                let get = |key: &str| {
                    block
                        .and_then(|b| b.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                let kind = match get("type") {
                    "text" => {
                        let text = get("text");
                        if !text.is_empty() {
                            self.text(out, b"content", text);
                        }
                        BlockKind::Text
                    }
                    "thinking" => {
                        let text = get("thinking");
                        if !text.is_empty() {
                            self.text(out, b"reasoning_content", text);
                        }
                        BlockKind::Thinking
                    }
                    "tool_use" if self.json_tool.as_deref() == Some(get("name")) => {
                        BlockKind::JsonAnswer
                    }
                    "tool_use" => {
                        let k = self.tools;
                        self.tools += 1;
                        // `arguments` starts empty: the input arrives as deltas, and a client
                        // appends them (a first `"{}"` would make `{}{…}`).
                        let mut delta = Json::with_capacity(64);
                        delta.raw(b"{\"tool_calls\":[{\"index\":");
                        delta.u64(u64::from(k));
                        delta.raw(b",\"id\":");
                        delta.str(get("id"));
                        delta.raw(b",\"type\":\"function\",\"function\":{\"name\":");
                        delta.str(get("name"));
                        delta.raw(b",\"arguments\":\"\"}}]}");
                        self.delta(out, &[&delta.into_vec()]);
                        BlockKind::Tool {
                            k,
                            sent_arguments: false,
                        }
                    }
                    _ => BlockKind::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, BlockKind::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let Some(index) = index() else { return };
                let Some(delta) = event.get("delta") else {
                    return;
                };
                let get = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
                let kind = get("type");
                let piece = match kind {
                    "text_delta" => get("text"),
                    "thinking_delta" => get("thinking"),
                    "input_json_delta" => get("partial_json"),
                    _ => "",
                };
                self.delta_piece(index, kind, piece, out);
            }
            "content_block_stop" => {
                if let Some(index) = index()
                    && let Some(BlockKind::Tool {
                        k,
                        sent_arguments: false,
                    }) = self.blocks.get(index).copied()
                {
                    // A call without arguments: its arguments are an empty object, not "".
                    self.arguments(out, k, "{}");
                }
            }
            "message_delta" => {
                if let Some(usage) = event.get("usage") {
                    self.tokens.read(usage);
                }
                let stop = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(stop) = stop {
                    let json_answer = self.blocks.contains(&BlockKind::JsonAnswer);
                    self.stop_reason = Some(match stop {
                        "tool_use" if json_answer => "stop",
                        stop => finish_reason(stop),
                    });
                    self.finish(out);
                }
            }
            "message_stop" => {
                self.finish(out);
                out.raw(&self.prefix);
                out.raw(b"[],\"usage\":");
                self.tokens.write(out);
                out.raw(b"}\n\ndata: [DONE]\n\n");
                self.state = StreamState::Done;
            }
            "error" => {
                let error = event.get("error");
                let get = |key: &str| {
                    error
                        .and_then(|e| e.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                let kind = match get("type") {
                    "" => "api_error",
                    kind => kind,
                };
                let message = match get("message") {
                    "" => "the stream failed",
                    message => message,
                };
                self.fail(out, kind, message);
            }
            // `ping`, and event types added after this was written.
            _ => {}
        }
    }
}

/// The index, kind and piece of a `content_block_delta` event written the way Anthropic
/// writes them (`{"type":"content_block_delta","index":N,"delta":{"type":K,"<field>":"…"}}`,
/// keys in that order, no spaces), read without building a JSON tree: these are nearly all
/// of a stream's events. `None` for anything else, which then takes the general path.
fn fast_delta(data: &[u8]) -> Option<(usize, &'static str, std::borrow::Cow<'_, str>)> {
    let rest = data.strip_prefix(br#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let index = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(br#","delta":{"type":""#)?;
    let (kind, rest) = if let Some(rest) = rest.strip_prefix(br#"text_delta","text":"#) {
        ("text_delta", rest)
    } else if let Some(rest) = rest.strip_prefix(br#"input_json_delta","partial_json":"#) {
        ("input_json_delta", rest)
    } else {
        let rest = rest.strip_prefix(br#"thinking_delta","thinking":"#)?;
        ("thinking_delta", rest)
    };
    // The string literal: up to the first quote that no backslash escapes.
    if rest.first() != Some(&b'"') {
        return None;
    }
    let mut at = 1;
    let mut escaped = false;
    while at < rest.len() {
        match rest[at] {
            b'\\' if !escaped => escaped = true,
            b'"' if !escaped => break,
            _ => escaped = false,
        }
        at += 1;
    }
    let literal = rest.get(..=at)?;
    if rest[at + 1..].trim_ascii_end() != b"}}" {
        return None;
    }
    // serde_json checks and unescapes it; a literal without escapes is borrowed.
    let piece = if literal.contains(&b'\\') {
        std::borrow::Cow::Owned(serde_json::from_slice::<String>(literal).ok()?)
    } else {
        std::borrow::Cow::Borrowed(serde_json::from_slice::<&str>(literal).ok()?)
    };
    Some((index, kind, piece))
}

/// An Anthropic event-stream body translated into OpenAI chunks as it arrives.
///
/// It fails (so the observer ends the client's stream with an error event) when the upstream
/// body breaks, goes quiet past the idle timeout, or ends before `message_stop`; after
/// Anthropic's own `error` event it ends cleanly, the translated error event being the last
/// thing sent.
impl Translate for StreamTranslator {
    const DRAIN: bool = false;

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        StreamTranslator::push(self, chunk)
    }

    fn is_open(&self) -> bool {
        self.state == StreamState::Open
    }

    fn end(&mut self) -> Result<Bytes, BoxError> {
        Err(UpstreamError::new(
            UpstreamErrorKind::Protocol,
            "the Anthropic stream ended before `message_stop`",
        )
        .into())
    }

    fn broke(&mut self, err: BoxError) -> Result<Bytes, BoxError> {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").unwrap();
                if data == "[DONE]" {
                    Value::String("[DONE]".into())
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    fn sse(events: &[&str]) -> String {
        events
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                format!("event: {}\ndata: {e}\n\n", v["type"].as_str().unwrap())
            })
            .collect()
    }

    #[test]
    fn parallel_tools_get_their_own_index_and_streamed_arguments() {
        let input = sse(&[
            r#"{"type":"message_start","message":{"id":"msg","model":"c","usage":{"input_tokens":9,"cache_read_input_tokens":4,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Two calls."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"a","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t2","name":"b","input":{}}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":20}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        let mut t = StreamTranslator::new(None, 1);
        // Byte by byte: events split anywhere still come out whole and in order.
        let mut out = Vec::new();
        for b in input.as_bytes() {
            out.extend_from_slice(&t.push(std::slice::from_ref(b)));
        }
        assert_eq!(t.state(), StreamState::Done);
        let ev = events(&out);
        let delta = |i: usize| &ev[i]["choices"][0]["delta"];
        assert_eq!(delta(0)["role"], "assistant");
        assert_eq!(delta(1)["content"], "Two calls.");
        assert_eq!(delta(2)["tool_calls"][0]["index"], 0);
        assert_eq!(delta(2)["tool_calls"][0]["id"], "t1");
        assert_eq!(delta(2)["tool_calls"][0]["function"]["arguments"], "");
        assert_eq!(
            delta(3)["tool_calls"][0]["function"]["arguments"],
            "{\"x\":"
        );
        assert_eq!(delta(4)["tool_calls"][0]["function"]["arguments"], "1}");
        assert_eq!(delta(5)["tool_calls"][0]["index"], 1);
        assert_eq!(delta(5)["tool_calls"][0]["function"]["name"], "b");
        assert_eq!(delta(6)["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(ev[7]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(ev[8]["choices"], serde_json::json!([]));
        assert_eq!(ev[8]["usage"]["prompt_tokens"], 13);
        assert_eq!(ev[8]["usage"]["completion_tokens"], 20);
        assert_eq!(ev[8]["usage"]["total_tokens"], 33);
        assert_eq!(ev[8]["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(ev[9], "[DONE]");
        assert_eq!(ev.len(), 10);
        assert!(
            ev[..9]
                .iter()
                .all(|e| e["id"] == "msg" && e["model"] == "c")
        );
    }

    #[test]
    fn an_error_event_becomes_an_openai_error_and_ends_the_stream() {
        let input = sse(&[
            r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{}}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        let mut t = StreamTranslator::new(None, 1);
        let ev = events(&t.push(input.as_bytes()));
        assert_eq!(t.state(), StreamState::Failed);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1]["error"]["type"], "overloaded_error");
        assert_eq!(ev[1]["error"]["message"], "anthropic error: Overloaded");
        assert!(t.push(b"data: {}\n\n").is_empty());
    }

    #[test]
    fn the_fast_path_reads_what_the_general_path_reads() {
        let fast = |data: &str| fast_delta(data.as_bytes()).map(|(i, k, p)| (i, k, p.into_owned()));
        assert_eq!(
            fast(
                r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"a\"b\\\u00e9\n"}}"#
            ),
            Some((12, "text_delta", "a\"b\\\u{e9}\n".to_owned()))
        );
        assert_eq!(
            fast(
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\": 1"}}"#
            ),
            Some((1, "input_json_delta", "{\"x\": 1".to_owned()))
        );
        // Any other layout, or a broken literal, takes the general path.
        for other in [
            r#"{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","extra":1}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\q"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}"#,
        ] {
            assert_eq!(fast(other), None, "{other}");
        }
        // Both paths give the same chunks.
        let mut spaced = StreamTranslator::new(None, 1);
        let mut compact = StreamTranslator::new(None, 1);
        let a = spaced.push(b"data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"\\u00e9!\"}}\n\n");
        let b = compact.push(b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\u00e9!\"}}\n\n");
        assert_eq!(a, b);
        assert_eq!(events(&a)[0]["choices"][0]["delta"]["content"], "\u{e9}!");
    }

    #[test]
    fn multi_line_data_and_crlf() {
        let mut t = StreamTranslator::new(None, 1);
        let out = t.push(
            b"event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\r\ndata: \
              \"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\r\n\r\n",
        );
        assert_eq!(events(&out)[0]["choices"][0]["delta"]["content"], "x");
    }
}
