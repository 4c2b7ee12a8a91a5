//! OpenAI chat completions → Anthropic Messages answers: bodies, usage, stop reasons and
//! errors.

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use portcullis_core::Body;
use serde_json::Value;

use super::stream::StreamTranslator;
use crate::json::Json;

/// The Anthropic `stop_reason` for an OpenAI `finish_reason`.
///
/// | `finish_reason` | `stop_reason` |
/// |---|---|
/// | `stop` | `end_turn`, or `stop_sequence` when the upstream names the sequence it hit |
/// | `length` | `max_tokens` |
/// | `tool_calls`, `function_call` | `tool_use` |
/// | `content_filter` | `refusal` |
/// | anything else | `end_turn` |
///
/// ```
/// use portcullis_provider::inbound::anthropic::stop_reason;
///
/// assert_eq!(stop_reason("tool_calls"), "tool_use");
/// assert_eq!(stop_reason("content_filter"), "refusal");
/// assert_eq!(stop_reason("length"), "max_tokens");
/// ```
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        // `stop`, and reasons added after this was written: the model stopped of its own
        // accord, which is what `end_turn` says.
        _ => "end_turn",
    }
}

/// The Anthropic error `type` for an HTTP status.
///
/// ```
/// use portcullis_provider::inbound::anthropic::error_type;
///
/// assert_eq!(error_type(http::StatusCode::TOO_MANY_REQUESTS), "rate_limit_error");
/// assert_eq!(error_type(http::StatusCode::from_u16(529).unwrap()), "overloaded_error");
/// assert_eq!(error_type(http::StatusCode::BAD_GATEWAY), "api_error");
/// ```
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An OpenAI answer that could not be read as a chat completion: answered 502 `api_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAnswer {
    message: String,
}

impl InvalidAnswer {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable chat completion: {}", self.message)
    }
}

impl std::error::Error for InvalidAnswer {}

/// Writes Anthropic's error document, `{"type":"error","error":{"type":…,"message":…}}`.
pub(super) fn write_error(out: &mut Json, kind: &str, message: &str) {
    out.raw(b"{\"type\":\"error\",\"error\":{\"type\":");
    out.str(kind);
    out.raw(b",\"message\":");
    out.str(message);
    out.raw(b"}}");
}

/// Anthropic's error document for an error answer of the inner service: the OpenAI
/// `error.message` kept, the `type` chosen by the status (see [`error_type`]); a body that is
/// not OpenAI's shape is quoted as the message.
///
/// ```
/// use portcullis_provider::inbound::anthropic::error_body;
///
/// let body = error_body(
///     http::StatusCode::TOO_MANY_REQUESTS,
///     br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
/// );
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["type"], "error");
/// assert_eq!(v["error"]["type"], "rate_limit_error");
/// assert_eq!(v["error"]["message"], "slow down");
/// ```
pub fn error_body(status: StatusCode, body: &[u8]) -> Bytes {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
    });
    let quoted;
    let message = match message {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
            quoted = if text.trim().is_empty() {
                format!("the upstream answered {status}")
            } else {
                text.into_owned()
            };
            &quoted
        }
    };
    let mut out = Json::with_capacity(message.len() + 64);
    write_error(&mut out, error_type(status), message);
    out.into_bytes()
}

/// An answer in Anthropic's error shape: `status`, with the error `type` it implies (see
/// [`error_type`]).
///
/// ```
/// use portcullis_provider::inbound::anthropic::error_response;
///
/// let response = error_response(http::StatusCode::UNAUTHORIZED, "bad key");
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// ```
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut out = Json::with_capacity(message.len() + 64);
    write_error(&mut out, error_type(status), message);
    let body = out.into_bytes();
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Token counts, as Anthropic reports them: `input` excludes the tokens read from or written
/// to the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tokens {
    pub(super) input: u64,
    pub(super) output: u64,
    pub(super) cache_read: u64,
    pub(super) cache_creation: u64,
}

impl Tokens {
    /// The counts of an OpenAI `usage` object. `prompt_tokens` counts every input token;
    /// Anthropic counts cached ones apart, so they are taken out of `input_tokens`. Cache
    /// writes are known when the provider behind reports them (the Anthropic provider keeps
    /// `cache_creation_input_tokens`).
    pub(super) fn from_openai(usage: &Value) -> Self {
        let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let prompt = count(usage.get("prompt_tokens"));
        let cache_read = count(
            usage
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens")),
        );
        let cache_creation = count(usage.get("cache_creation_input_tokens"));
        Self {
            input: prompt.saturating_sub(cache_read + cache_creation),
            output: count(usage.get("completion_tokens")),
            cache_read,
            cache_creation,
        }
    }

    pub(super) fn write(&self, out: &mut Json) {
        out.raw(b"{\"input_tokens\":");
        out.u64(self.input);
        out.raw(b",\"cache_creation_input_tokens\":");
        out.u64(self.cache_creation);
        out.raw(b",\"cache_read_input_tokens\":");
        out.u64(self.cache_read);
        out.raw(b",\"output_tokens\":");
        out.u64(self.output);
        out.raw(b"}");
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The Messages `id` for an OpenAI `id`: Anthropic's ids start with `msg_`.
pub(super) fn write_id(out: &mut Json, id: &str) {
    if id.starts_with("msg_") {
        out.str(id);
    } else {
        let mut prefixed = String::with_capacity(id.len() + 4);
        prefixed.push_str("msg_");
        prefixed.push_str(id);
        out.str(&prefixed);
    }
}

/// Translates the answer to one [`ChatRequest`](super::ChatRequest) into Anthropic's shape: a
/// JSON body with [`json`](Self::json), a stream with [`stream`](Self::stream).
#[derive(Clone, Copy, Debug, Default)]
pub struct Answer {
    pub(super) stream: bool,
    /// Whether the request had stop sequences: only then can a `stop` be `stop_sequence`.
    pub(super) stop_sequences: bool,
}

impl Answer {
    /// The translator of a streamed answer.
    pub fn stream(&self) -> StreamTranslator {
        StreamTranslator::new(self.stop_sequences)
    }

    /// The Messages body for a chat completion.
    ///
    /// | OpenAI | Anthropic |
    /// |---|---|
    /// | `id` | `id`, prefixed `msg_` |
    /// | `message.content` (or `refusal`) | a `text` block |
    /// | `message.tool_calls[]` | `tool_use` blocks, `input` = the parsed `arguments` |
    /// | `finish_reason` | `stop_reason` (see [`stop_reason`]); `stop_sequence` when the upstream names it (vLLM's `stop_reason`) |
    /// | `usage` | `input_tokens` (uncached), `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens` |
    ///
    /// # Errors
    /// [`InvalidAnswer`] for a body that is not a chat completion, or a tool call whose
    /// `arguments` are not a JSON object (an empty string is taken as no arguments).
    pub fn json(&self, body: &[u8]) -> Result<Bytes, InvalidAnswer> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidAnswer::new(format!("not JSON: {e}")))?;
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| InvalidAnswer::new("no choices"))?;
        let message = choice.get("message").unwrap_or(&Value::Null);
        let mut out = Json::with_capacity(body.len() + 128);
        out.raw(b"{\"id\":");
        write_id(&mut out, str_of(&v, "id"));
        out.raw(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        out.str(str_of(&v, "model"));
        out.raw(b",\"content\":[");
        let mut blocks = 0;
        let joined: String;
        let text = match message.get("content") {
            Some(Value::String(s)) => s.as_str(),
            // Content parts, as some servers answer: their text joined.
            Some(Value::Array(parts)) => {
                joined = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                &joined
            }
            _ => str_of(message, "refusal"),
        };
        if !text.is_empty() {
            out.raw(b"{\"type\":\"text\",\"text\":");
            out.str(text);
            out.raw(b"}");
            blocks += 1;
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (k, call) in calls.iter().enumerate() {
                let function = call.get("function").unwrap_or(&Value::Null);
                let arguments = str_of(function, "arguments");
                let input = if arguments.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str::<Value>(arguments)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| {
                            InvalidAnswer::new(format!(
                                "tool call {k} (`{}`) has arguments that are not a JSON object",
                                str_of(function, "name")
                            ))
                        })?
                };
                if blocks > 0 {
                    out.raw(b",");
                }
                blocks += 1;
                out.raw(b"{\"type\":\"tool_use\",\"id\":");
                out.str(str_of(call, "id"));
                out.raw(b",\"name\":");
                out.str(str_of(function, "name"));
                out.raw(b",\"input\":");
                out.value(&input);
                out.raw(b"}");
            }
        }
        out.raw(b"],");
        let finish = str_of(choice, "finish_reason");
        self.write_stop(&mut out, finish, choice.get("stop_reason"));
        out.raw(b",\"usage\":");
        Tokens::from_openai(v.get("usage").unwrap_or(&Value::Null)).write(&mut out);
        out.raw(b"}");
        Ok(out.into_bytes())
    }

    /// The Messages events for a whole chat completion, for a client that asked for a stream
    /// and got a JSON answer (a layer inside that answers whole, like a cache of JSON
    /// answers): the completion is read as one chunk whose delta is its message.
    ///
    /// # Errors
    /// [`InvalidAnswer`] for a body that is not a chat completion.
    pub fn json_as_stream(&self, body: &[u8]) -> Result<Bytes, InvalidAnswer> {
        let mut v: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidAnswer::new(format!("not JSON: {e}")))?;
        let choice = v
            .get_mut("choices")
            .and_then(|c| c.get_mut(0))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| InvalidAnswer::new("no choices"))?;
        let mut message = choice.remove("message").unwrap_or(Value::Null);
        if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for (k, call) in calls.iter_mut().enumerate() {
                if let Some(call) = call.as_object_mut() {
                    call.entry("index").or_insert(Value::from(k));
                }
            }
        }
        choice.insert("delta".to_owned(), message);
        let mut chunk = b"data: ".to_vec();
        chunk.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
        chunk.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        let mut stream = self.stream();
        Ok(stream.push(&chunk))
    }

    /// `"stop_reason":…,"stop_sequence":…`.
    pub(super) fn write_stop(&self, out: &mut Json, finish: &str, matched: Option<&Value>) {
        let sequence = matched
            .and_then(Value::as_str)
            .filter(|_| self.stop_sequences && finish == "stop");
        out.raw(b"\"stop_reason\":\"");
        match sequence {
            Some(s) => {
                out.raw(b"stop_sequence\",\"stop_sequence\":");
                out.str(s);
            }
            None => {
                out.raw(stop_reason(finish).as_bytes());
                out.raw(b"\",\"stop_sequence\":null");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(answer: Answer, v: Value) -> Value {
        let body = answer.json(&serde_json::to_vec(&v).unwrap()).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn stop_sequence_only_when_named_and_asked() {
        let v = json!({"id":"x","choices":[{"message":{"content":"a"},"finish_reason":"stop","stop_reason":"END"}]});
        let asked = Answer {
            stream: false,
            stop_sequences: true,
        };
        let m = message(asked, v.clone());
        assert_eq!(m["stop_reason"], "stop_sequence");
        assert_eq!(m["stop_sequence"], "END");
        let m = message(Answer::default(), v);
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["stop_sequence"], Value::Null);
    }

    #[test]
    fn usage_takes_cached_tokens_out_of_input() {
        let m = message(
            Answer::default(),
            json!({"id":"msg_1","choices":[{"message":{"content":null,"tool_calls":[
                {"id":"c","type":"function","function":{"name":"f","arguments":""}}]},
                "finish_reason":"tool_calls"}],
              "usage":{"prompt_tokens":100,"completion_tokens":9,"total_tokens":109,
                       "prompt_tokens_details":{"cached_tokens":60},"cache_creation_input_tokens":10}}),
        );
        assert_eq!(m["id"], "msg_1");
        assert_eq!(m["content"][0]["input"], json!({}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({"input_tokens":30,"cache_creation_input_tokens":10,"cache_read_input_tokens":60,"output_tokens":9})
        );
    }

    #[test]
    fn arguments_that_are_not_an_object_are_refused() {
        let v = json!({"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"[1"}}]},"finish_reason":"tool_calls"}]});
        let err = Answer::default()
            .json(&serde_json::to_vec(&v).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("`f`"), "{err}");
    }

    #[test]
    fn errors_take_their_type_from_the_status() {
        let v: Value =
            serde_json::from_slice(&error_body(StatusCode::BAD_GATEWAY, b"<html>oops</html>"))
                .unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["message"], "<html>oops</html>");
    }
}
