//! Anthropic Messages answers → OpenAI chat completions: bodies, usage, finish reasons and
//! errors.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::stream::StreamTranslator;
use crate::json::Json;

/// The name given to Anthropic in translated error messages and bodies (Portkey's
/// `"provider": "anthropic"` and `"anthropic error: …"`).
const PROVIDER: &str = "anthropic";

/// The OpenAI `finish_reason` for an Anthropic `stop_reason`.
///
/// | `stop_reason` | `finish_reason` |
/// |---|---|
/// | `end_turn`, `stop_sequence`, `pause_turn` | `stop` |
/// | `max_tokens`, `model_context_window_exceeded` | `length` |
/// | `tool_use` | `tool_calls` |
/// | `refusal` | `content_filter` |
/// | anything else | `stop` |
///
/// ```
/// use portcullis_provider::anthropic::finish_reason;
///
/// assert_eq!(finish_reason("tool_use"), "tool_calls");
/// assert_eq!(finish_reason("refusal"), "content_filter");
/// assert_eq!(finish_reason("something_new"), "stop");
/// ```
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn, and reasons added after this was written: the
        // model stopped of its own accord, which is what `stop` says.
        _ => "stop",
    }
}

/// An Anthropic answer that could not be read: not JSON, or not a message (502).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidResponse {
    message: String,
}

impl InvalidResponse {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable Anthropic answer: {}", self.message)
    }
}

impl std::error::Error for InvalidResponse {}

/// Token counts as Anthropic reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tokens {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl Tokens {
    /// Takes the counts present in an Anthropic `usage` object. Anthropic's counts are
    /// cumulative (a stream's `message_delta` repeats the totals so far), so they are
    /// assigned, never added.
    pub(super) fn read(&mut self, usage: &Value) {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(n) = count("input_tokens") {
            self.input = n;
        }
        if let Some(n) = count("output_tokens") {
            self.output = n;
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }

    /// The OpenAI `usage` object: every input token (uncached, read from and written to the
    /// cache) in `prompt_tokens`, so `prompt + completion = total` always holds.
    pub(super) fn write(&self, out: &mut Json) {
        let prompt = self.input + self.cache_read + self.cache_creation;
        out.raw(b"{\"prompt_tokens\":");
        out.u64(prompt);
        out.raw(b",\"completion_tokens\":");
        out.u64(self.output);
        out.raw(b",\"total_tokens\":");
        out.u64(prompt + self.output);
        out.raw(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.u64(self.cache_read);
        out.raw(b"},\"cache_read_input_tokens\":");
        out.u64(self.cache_read);
        out.raw(b",\"cache_creation_input_tokens\":");
        out.u64(self.cache_creation);
        out.raw(b"}");
    }
}

/// Translates the answer of one [`MessagesRequest`](super::MessagesRequest) back into
/// OpenAI's shape: a JSON body with [`json`](Self::json), a stream with
/// [`stream`](Self::stream).
///
/// ```
/// use portcullis_provider::anthropic::ResponseTranslator;
///
/// let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
///     "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn",
///     "usage":{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":10}}"#;
/// let body = ResponseTranslator::default().json(answer, 1_700_000_000).unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["choices"][0]["message"]["content"], "Hi");
/// assert_eq!(v["choices"][0]["finish_reason"], "stop");
/// assert_eq!(v["usage"]["prompt_tokens"], 15);
/// assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
/// assert_eq!(v["usage"]["total_tokens"], 17);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ResponseTranslator {
    /// The tool forced to carry a `response_format: json_schema` answer: its input is the
    /// answer's content, and it is no tool call.
    json_tool: Option<Arc<str>>,
}

impl ResponseTranslator {
    pub(super) fn new(json_tool: Option<Arc<str>>) -> Self {
        Self { json_tool }
    }

    /// Whether `name` is the tool that carries a `json_schema` answer.
    pub(super) fn is_json_tool(&self, name: &str) -> bool {
        self.json_tool.as_deref() == Some(name)
    }

    /// The OpenAI `chat.completion` for an Anthropic message, with `created` as its time
    /// (seconds since the Unix epoch).
    ///
    /// # Errors
    /// [`InvalidResponse`] when `body` is not JSON or not a message.
    pub fn json(&self, body: &[u8], created: u64) -> Result<Bytes, InvalidResponse> {
        let message: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidResponse::new(format!("not JSON: {e}")))?;
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| InvalidResponse::new("no `content` list"))?;
        let mut text = String::new();
        let mut has_text = false;
        let mut reasoning: Option<String> = None;
        let mut calls = Json::with_capacity(0);
        let mut json_answer = false;
        for block in content {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    has_text = true;
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                Some("thinking") => {
                    let piece = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    reasoning.get_or_insert_with(String::new).push_str(piece);
                }
                Some("tool_use") => {
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                    let input = block.get("input").unwrap_or(&Value::Null);
                    if self.is_json_tool(name) {
                        has_text = true;
                        json_answer = true;
                        text.push_str(&input.to_string());
                        continue;
                    }
                    calls.raw(if calls.len() == 0 { b"[" } else { b"," });
                    calls.raw(b"{\"id\":");
                    calls.str(block.get("id").and_then(Value::as_str).unwrap_or(""));
                    calls.raw(b",\"type\":\"function\",\"function\":{\"name\":");
                    calls.str(name);
                    calls.raw(b",\"arguments\":");
                    calls.str(&input.to_string());
                    calls.raw(b"}}");
                }
                // Redacted thinking, server tools and blocks added later carry nothing an
                // OpenAI message can hold.
                _ => {}
            }
        }
        let stop = message.get("stop_reason").and_then(Value::as_str);
        let finish = match stop {
            Some("tool_use") if json_answer => "stop",
            Some(stop) => finish_reason(stop),
            None => "stop",
        };
        let mut tokens = Tokens::default();
        if let Some(usage) = message.get("usage") {
            tokens.read(usage);
        }

        let mut out = Json::with_capacity(body.len() + 256);
        out.raw(b"{\"id\":");
        out.str(message.get("id").and_then(Value::as_str).unwrap_or(""));
        out.raw(b",\"object\":\"chat.completion\",\"created\":");
        out.u64(created);
        out.raw(b",\"model\":");
        out.str(message.get("model").and_then(Value::as_str).unwrap_or(""));
        out.raw(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        if has_text {
            out.str(&text);
        } else {
            out.raw(b"null");
        }
        if let Some(reasoning) = &reasoning {
            out.raw(b",\"reasoning_content\":");
            out.str(reasoning);
        }
        if calls.len() > 0 {
            out.raw(b",\"tool_calls\":");
            out.raw(&calls.into_vec());
            out.raw(b"]");
        }
        out.raw(b"},\"logprobs\":null,\"finish_reason\":\"");
        out.raw(finish.as_bytes());
        out.raw(b"\"}],\"usage\":");
        tokens.write(&mut out);
        out.raw(b"}");
        Ok(out.into_bytes())
    }

    /// A translator of this answer as a stream of Anthropic events into OpenAI
    /// `chat.completion.chunk` events, with `created` as their time.
    pub fn stream(&self, created: u64) -> StreamTranslator {
        StreamTranslator::new(self.json_tool.clone(), created)
    }
}

/// The OpenAI error body for an Anthropic error answer of `status`:
/// `{"error":{"message":"anthropic error: …","type":<Anthropic's type>,"param":null,
/// "code":null},"provider":"anthropic"}`, as Portkey answers. A body that is not Anthropic's
/// error shape (a proxy's HTML page) is described by its status and first bytes.
///
/// ```
/// use http::StatusCode;
/// use portcullis_provider::anthropic::error_body;
///
/// let body = error_body(
///     StatusCode::from_u16(529).unwrap(),
///     br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
/// );
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["error"]["type"], "overloaded_error");
/// assert_eq!(v["error"]["message"], "anthropic error: Overloaded");
/// assert_eq!(v["provider"], "anthropic");
/// ```
pub fn error_body(status: StatusCode, body: &[u8]) -> Bytes {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    // Vertex AI answers its own errors (an unknown model, a missing permission) in Google's
    // shape, `{"error":{code, message, status}}`: its `status` is the type then.
    let kind = error
        .and_then(|e| e.get("type").or_else(|| e.get("status")))
        .and_then(Value::as_str);
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
    let mut out = Json::with_capacity(body.len() + 96);
    match (kind, message) {
        (Some(kind), Some(message)) => write_error(&mut out, kind, message),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut = text
                .char_indices()
                .nth(200)
                .map_or(text, |(at, _)| &text[..at]);
            let message = format!("the upstream answered {status}: {cut}");
            write_error(&mut out, default_error_type(status), &message);
        }
    }
    out.into_bytes()
}

/// Anthropic's error type for a status, for answers that do not say.
fn default_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// `{"error":{…},"provider":"anthropic"}` for an Anthropic error of `kind`.
pub(super) fn write_error(out: &mut Json, kind: &str, message: &str) {
    out.raw(b"{\"error\":{\"message\":");
    out.str(&format!("{PROVIDER} error: {message}"));
    out.raw(b",\"type\":");
    out.str(kind);
    out.raw(b",\"param\":null,\"code\":null},\"provider\":\"");
    out.raw(PROVIDER.as_bytes());
    out.raw(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(t: &ResponseTranslator, v: Value) -> Value {
        let body = t.json(&serde_json::to_vec(&v).unwrap(), 7).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn text_and_tool_calls() {
        let out = translate(
            &ResponseTranslator::default(),
            json!({"id": "msg_1", "model": "claude", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ], "stop_reason": "tool_use",
               "usage": {"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 5}}),
        );
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], "Let me check.");
        assert_eq!(message["reasoning_content"], "hmm");
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "toolu_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["created"], 7);
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12,
                "prompt_tokens_details": {"cached_tokens": 0},
                "cache_read_input_tokens": 0, "cache_creation_input_tokens": 5})
        );
    }

    #[test]
    fn only_tool_calls_means_null_content_and_json_tool_is_content() {
        let tool = json!({"id": "msg", "model": "m", "content": [
            {"type": "tool_use", "id": "t", "name": "answer", "input": {"a": 1}}],
            "stop_reason": "tool_use", "usage": {}});
        let out = translate(&ResponseTranslator::default(), tool.clone());
        assert!(out["choices"][0]["message"]["content"].is_null());
        let out = translate(&ResponseTranslator::new(Some("answer".into())), tool);
        assert_eq!(out["choices"][0]["message"]["content"], "{\"a\":1}");
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn unreadable_answers_are_errors() {
        let t = ResponseTranslator::default();
        assert!(t.json(b"<html>", 0).is_err());
        assert!(t.json(b"{\"id\":1}", 0).is_err());
    }

    #[test]
    fn error_bodies_keep_the_type_or_fall_back_on_the_status() {
        let body = error_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("502 Bad Gateway: <html>bad gateway</html>")
        );
        assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());
    }
}
