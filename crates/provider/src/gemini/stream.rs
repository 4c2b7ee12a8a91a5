//! Gemini's `alt=sse` stream → OpenAI `chat.completion.chunk` events, chunk by chunk.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use portcullis_core::BoxError;
use portcullis_core::error::{UpstreamError, UpstreamErrorKind};
use serde_json::Value;

use super::response::{Tokens, finish_reason, write_call, write_error, write_response_id};
use super::scan::{self, Answer, Part};
use crate::json::Json;
use crate::sse::Translate;

/// Where a translated stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// More chunks may come.
    Open,
    /// The upstream ended after a finish reason: the usage and `data: [DONE]` events are out.
    Done,
    /// Gemini sent an error (or a chunk that could not be read), or the stream ended before
    /// any finish reason: an OpenAI error event is out, and nothing follows it.
    Failed,
}

/// Where one choice (one Gemini candidate) of the stream stands.
#[derive(Clone, Copy, Debug, Default)]
struct Choice {
    index: u64,
    /// Tool calls sent so far: the next call's `index`.
    calls: u32,
    finished: bool,
}

/// Translates Gemini `streamGenerateContent?alt=sse` chunks into OpenAI
/// `chat.completion.chunk` events as they arrive, holding back only a chunk that has not
/// ended yet.
///
/// | Gemini | OpenAI event |
/// |---|---|
/// | a candidate's first chunk | `delta: {role: "assistant", content: ""}` |
/// | `text` parts | `delta.content` |
/// | `thought: true` parts | `delta.reasoning_content` |
/// | a `functionCall` part (Gemini sends each whole) | `delta.tool_calls[{index: k, id, type, function: {name, arguments}}]`, `k` counting the candidate's calls |
/// | `finishReason` | `delta: {}, finish_reason` (see [`finish_reason`](super::finish_reason)) |
/// | `promptFeedback.blockReason` | `delta: {}, finish_reason: "content_filter"` |
/// | `usageMetadata` (running totals) | the last one kept for the usage event |
/// | the end of the stream, after a finish reason | a usage event (`choices: []`), then `data: [DONE]` |
/// | `{"error": {…}}` | `data: {"error": {…}}`, then nothing |
///
/// ```
/// use portcullis_provider::gemini::{ResponseTranslator, StreamState};
///
/// let mut stream = ResponseTranslator::new("gemini-2.5-flash").stream(1_700_000_000);
/// let out = stream.push(
///     b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}],\
///       \"responseId\": \"r1\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": \
///       [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\"}],\"usageMe",
/// );
/// let out = String::from_utf8(out.to_vec()).unwrap();
/// assert!(out.contains(r#""delta":{"role":"assistant","content":""}"#));
/// assert!(out.contains(r#""delta":{"content":"Hi"}"#));
/// let out = stream.push(b"tadata\": {\"promptTokenCount\": 3}}\r\n\r\n");
/// assert!(String::from_utf8_lossy(&out).contains(r#""finish_reason":"stop""#));
/// let tail = stream.end();
/// assert!(tail.ends_with(b"data: [DONE]\n\n"));
/// assert_eq!(stream.state(), StreamState::Done);
/// ```
#[derive(Debug)]
pub struct StreamTranslator {
    model: Arc<str>,
    created: u64,
    /// Bytes of a chunk that has not ended yet.
    carry: Vec<u8>,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`,
    /// made from the first chunk.
    prefix: Vec<u8>,
    /// The first chunk's `responseId`, which tool-call ids are made of.
    response_id: Option<Box<str>>,
    choices: Vec<Choice>,
    tokens: Tokens,
    state: StreamState,
}

impl StreamTranslator {
    pub(super) fn new(model: Arc<str>, created: u64) -> Self {
        Self {
            model,
            created,
            carry: Vec::new(),
            prefix: Vec::new(),
            response_id: None,
            choices: Vec::new(),
            tokens: Tokens::default(),
            state: StreamState::Open,
        }
    }

    /// Where the stream stands.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Translates the chunks that end in `bytes` (with any held back from earlier calls); a
    /// chunk not yet ended is held until it does. Empty when nothing is to be sent yet, and
    /// once the stream is no longer [`Open`](StreamState::Open).
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(bytes.len() + 160);
        let mut carry = std::mem::take(&mut self.carry);
        crate::sse::push(&mut carry, bytes, |data| {
            self.event(data, &mut out);
            self.state == StreamState::Open
        });
        self.carry = carry;
        out.into_bytes()
    }

    /// The end of Gemini's stream, which has no closing event of its own: a chunk still held
    /// is read, then the usage event and `data: [DONE]` when a finish reason came, else an
    /// error event (the stream was cut short).
    pub fn end(&mut self) -> Bytes {
        if self.state != StreamState::Open {
            return Bytes::new();
        }
        let mut out = Json::with_capacity(256);
        let mut carry = std::mem::take(&mut self.carry);
        crate::sse::flush(&mut carry, |data| {
            self.event(data, &mut out);
            self.state == StreamState::Open
        });
        if self.state != StreamState::Open {
            return out.into_bytes();
        }
        if self.choices.is_empty() || !self.choices.iter().any(|c| c.finished) {
            let error = serde_json::json!({
                "message": "the Gemini stream ended before a finish reason",
                "status": "UNAVAILABLE",
            });
            self.fail(&mut out, &error);
            return out.into_bytes();
        }
        for k in 0..self.choices.len() {
            self.finish(&mut out, k, "stop");
        }
        out.raw(&self.prefix);
        out.raw(b"[],\"usage\":");
        self.tokens.write(&mut out);
        out.raw(b"}\n\ndata: [DONE]\n\n");
        self.state = StreamState::Done;
        out.into_bytes()
    }

    fn set_prefix(&mut self, answer: &Answer<'_>) {
        let model = answer.model_version.as_deref().unwrap_or(&self.model);
        let mut prefix = Json::with_capacity(128 + model.len());
        prefix.raw(b"data: {\"id\":");
        write_response_id(&mut prefix, answer.response_id.as_deref(), self.created);
        prefix.raw(b",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.u64(self.created);
        prefix.raw(b",\"model\":");
        prefix.str(model);
        prefix.raw(b",\"choices\":");
        self.prefix = prefix.into_vec();
        self.response_id = answer.response_id.as_deref().map(Box::from);
    }

    /// The position in `choices` of candidate `index`, opened (its role event sent) if new.
    fn choice(&mut self, out: &mut Json, index: u64) -> usize {
        if let Some(k) = self.choices.iter().position(|c| c.index == index) {
            return k;
        }
        self.choices.push(Choice {
            index,
            ..Choice::default()
        });
        self.open_delta(out, index);
        out.raw(b"{\"role\":\"assistant\",\"content\":\"\"}");
        close_delta(out);
        self.choices.len() - 1
    }

    /// The start of a chunk for choice `index`, up to its `delta`, which the caller writes
    /// in place (then [`close_delta`]).
    fn open_delta(&self, out: &mut Json, index: u64) {
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":");
        out.u64(index);
        out.raw(b",\"delta\":");
    }

    /// One chunk whose delta is `{"<field>": <text>}`.
    fn text(&self, out: &mut Json, index: u64, field: &[u8], text: &str) {
        self.open_delta(out, index);
        out.raw(b"{\"");
        out.raw(field);
        out.raw(b"\":");
        out.str(text);
        out.raw(b"}");
        close_delta(out);
    }

    /// One chunk whose delta is the `k`-th tool call of choice `index`.
    fn call(
        &self,
        out: &mut Json,
        index: u64,
        k: u32,
        name: &str,
        args: &str,
        signature: Option<&str>,
    ) {
        self.open_delta(out, index);
        out.raw(b"{\"tool_calls\":[");
        let response_id = self.response_id.as_deref();
        write_call(out, Some(k), response_id, index, k, name, args, signature);
        out.raw(b"]}");
        close_delta(out);
    }

    fn finish(&mut self, out: &mut Json, k: usize, reason: &str) {
        let choice = &mut self.choices[k];
        if choice.finished {
            return;
        }
        choice.finished = true;
        let index = choice.index;
        out.raw(&self.prefix);
        out.raw(b"[{\"index\":");
        out.u64(index);
        out.raw(b",\"delta\":{},\"finish_reason\":\"");
        out.raw(reason.as_bytes());
        out.raw(b"\"}]}\n\n");
    }

    fn fail(&mut self, out: &mut Json, error: &Value) {
        out.raw(b"data: ");
        write_error(out, error, StatusCode::INTERNAL_SERVER_ERROR);
        out.raw(b"\n\n");
        self.state = StreamState::Failed;
    }

    fn event(&mut self, data: &[u8], out: &mut Json) {
        let Some(answer) = scan::answer(data) else {
            let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            let error = serde_json::json!({
                "message": format!("unreadable stream chunk: {shown}"),
                "status": "INTERNAL",
            });
            self.fail(out, &error);
            return;
        };
        if let Some(error) = answer.error {
            let error = serde_json::from_slice::<Value>(error).unwrap_or(Value::Null);
            self.fail(out, &error);
            return;
        }
        if self.prefix.is_empty() {
            self.set_prefix(&answer);
        }
        if let Some(counts) = &answer.usage {
            self.tokens.read(counts);
        }
        for (position, candidate) in answer.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(position as u64);
            let k = self.choice(out, index);
            for part in &candidate.parts {
                match part {
                    Part::Text { text, thought } => {
                        if !text.is_empty() {
                            let field: &[u8] = if *thought {
                                b"reasoning_content"
                            } else {
                                b"content"
                            };
                            self.text(out, index, field, text);
                        }
                    }
                    Part::Call {
                        name,
                        args,
                        signature,
                    } => {
                        let call = self.choices[k].calls;
                        self.choices[k].calls += 1;
                        self.call(out, index, call, name, args, signature.as_deref());
                    }
                }
            }
            if let Some(reason) = &candidate.finish {
                let reason = finish_reason(reason, self.choices[k].calls > 0);
                self.finish(out, k, reason);
            }
        }
        if answer.candidates.is_empty() && answer.block_reason.is_some() {
            let k = self.choice(out, 0);
            self.finish(out, k, "content_filter");
        }
    }
}

/// The end of a chunk begun with [`StreamTranslator::open_delta`].
fn close_delta(out: &mut Json) {
    out.raw(b",\"finish_reason\":null}]}\n\n");
}

/// A Gemini event-stream body translated into OpenAI chunks as it arrives.
///
/// It fails (so the observer ends the client's stream with an error event) when the upstream
/// body breaks or goes quiet past the idle timeout; after Gemini's own error, or an end before
/// any finish reason, it ends cleanly, the translated error event being the last thing sent.
impl Translate for StreamTranslator {
    const DRAIN: bool = false;

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        StreamTranslator::push(self, chunk)
    }

    fn is_open(&self) -> bool {
        self.state == StreamState::Open
    }

    fn end(&mut self) -> Result<Bytes, BoxError> {
        Ok(StreamTranslator::end(self))
    }

    fn broke(&mut self, err: BoxError) -> Result<Bytes, BoxError> {
        Err(UpstreamError::new(UpstreamErrorKind::Protocol, err).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn sse(chunks: &[Value]) -> String {
        chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect()
    }

    #[test]
    fn parallel_calls_get_their_own_index_and_usage_is_the_last_seen() {
        let input = sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Two calls."}]}}],
                "usageMetadata": {"promptTokenCount": 9}, "responseId": "r", "modelVersion": "g"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "s1"},
                {"functionCall": {"name": "b", "args": {}}}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 20,
                    "thoughtsTokenCount": 5, "cachedContentTokenCount": 4},
                "responseId": "r", "modelVersion": "g"}),
        ]);
        let mut t = StreamTranslator::new("m".into(), 1);
        // Byte by byte: chunks split anywhere still come out whole and in order.
        let mut out = Vec::new();
        for b in input.as_bytes() {
            out.extend_from_slice(&t.push(std::slice::from_ref(b)));
        }
        out.extend_from_slice(&t.end());
        assert_eq!(t.state(), StreamState::Done);
        let ev = events(&out);
        let delta = |i: usize| &ev[i]["choices"][0]["delta"];
        assert_eq!(delta(0)["role"], "assistant");
        assert_eq!(delta(1)["content"], "Two calls.");
        assert_eq!(
            delta(2)["tool_calls"],
            json!([{"index": 0, "id": "call_r_0_0__thought__s1", "type": "function",
                "function": {"name": "a", "arguments": "{\"x\":1}"},
                "extra_content": {"google": {"thought_signature": "s1"}}}])
        );
        assert_eq!(delta(3)["tool_calls"][0]["index"], 1);
        assert_eq!(delta(3)["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(ev[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(ev[5]["choices"], json!([]));
        assert_eq!(
            ev[5]["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 25, "total_tokens": 34,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 5}})
        );
        assert_eq!(ev[6], "[DONE]");
        assert_eq!(ev.len(), 7);
        assert!(ev[..6].iter().all(|e| e["id"] == "r" && e["model"] == "g"));
    }

    #[test]
    fn call_arguments_are_the_args_as_gemini_wrote_them_compacted() {
        let mut t = StreamTranslator::new("m".into(), 1);
        let chunk = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": \
            {\"name\": \"f\", \"args\": {\t\"q\" : \"a  \\\"b\\\"\\n\" , \"n\": [1, 2]}}}]}}], \
            \"responseId\": \"r\"}\r\n\r\n";
        let ev = events(&t.push(chunk));
        let call = &ev[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["id"], "call_r_0_0");
        let arguments = call["function"]["arguments"].as_str().unwrap();
        assert_eq!(arguments, r#"{"q":"a  \"b\"\n","n":[1,2]}"#);
        assert_eq!(
            serde_json::from_str::<Value>(arguments).unwrap(),
            json!({"q": "a  \"b\"\n", "n": [1, 2]})
        );
        assert!(call.get("extra_content").is_none());
    }

    #[test]
    fn an_error_chunk_ends_the_stream_with_an_openai_error() {
        let input = sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}]}),
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
            json!({"candidates": [{"content": {"parts": [{"text": "b"}]}}]}),
        ]);
        let mut t = StreamTranslator::new("m".into(), 1);
        let ev = events(&t.push(input.as_bytes()));
        assert_eq!(t.state(), StreamState::Failed);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[2]["error"]["type"], "UNAVAILABLE");
        assert_eq!(ev[2]["error"]["message"], "google error: overloaded");
        assert!(t.end().is_empty());
    }

    #[test]
    fn an_end_without_a_finish_reason_is_an_error() {
        let mut t = StreamTranslator::new("m".into(), 1);
        t.push(sse(&[json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})]).as_bytes());
        let ev = events(&t.end());
        assert_eq!(t.state(), StreamState::Failed);
        assert!(
            ev[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("before a finish reason")
        );
    }

    #[test]
    fn a_blocked_prompt_finishes_with_content_filter() {
        let mut t = StreamTranslator::new("m".into(), 1);
        let mut out = t
            .push(sse(&[json!({"promptFeedback": {"blockReason": "SAFETY"}})]).as_bytes())
            .to_vec();
        out.extend_from_slice(&t.end());
        let ev = events(&out);
        assert_eq!(ev[1]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(ev.last().unwrap(), "[DONE]");
    }
}
