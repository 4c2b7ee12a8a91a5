//! Gemini answers → OpenAI chat completions and embeddings: bodies, usage, finish reasons,
//! tool-call ids and errors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::scan::{self, Counts, Part};
use super::stream::StreamTranslator;
use crate::json::Json;
use crate::scan::{write_compact_str, write_str_inside};

/// The name given to Gemini in translated error messages and bodies (Portkey's
/// `"provider": "google"` and `"google error: …"`).
pub(super) const PROVIDER: &str = "google";

/// What separates a tool-call id from the thought signature it carries (the encoding LiteLLM
/// uses, so ids made by either are read by both).
pub(super) const SIGNATURE_MARK: &str = "__thought__";

/// The OpenAI `finish_reason` for a Gemini `finishReason`; `has_calls` says whether the
/// candidate called a function (Gemini then still says `STOP`).
///
/// | `finishReason` | `finish_reason` |
/// |---|---|
/// | `STOP` with function calls | `tool_calls` |
/// | `STOP`, `FINISH_REASON_UNSPECIFIED`, `OTHER`, `MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`, unknown | `stop` |
/// | `MAX_TOKENS` | `length` |
/// | `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `LANGUAGE`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `IMAGE_RECITATION` | `content_filter` |
///
/// `RECITATION` (the answer was stopped for quoting training data) is a filter that cut the
/// answer, so it says `content_filter` rather than the reference table's `stop`.
///
/// ```
/// use portcullis_provider::gemini::finish_reason;
///
/// assert_eq!(finish_reason("STOP", true), "tool_calls");
/// assert_eq!(finish_reason("STOP", false), "stop");
/// assert_eq!(finish_reason("MAX_TOKENS", false), "length");
/// assert_eq!(finish_reason("SAFETY", false), "content_filter");
/// assert_eq!(finish_reason("SOMETHING_NEW", false), "stop");
/// ```
pub fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "LANGUAGE"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if has_calls => "tool_calls",
        // STOP, FINISH_REASON_UNSPECIFIED, OTHER, MALFORMED_FUNCTION_CALL, and reasons added
        // after this was written: the model stopped, which is what `stop` says.
        _ => "stop",
    }
}

/// A Gemini answer that could not be read: not JSON, or not a `GenerateContentResponse`
/// (502).
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
        write!(f, "unreadable Gemini answer: {}", self.message)
    }
}

impl std::error::Error for InvalidResponse {}

/// Token counts as Gemini reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tokens {
    prompt: u64,
    candidates: u64,
    thoughts: u64,
    cached: u64,
    tool_use_prompt: u64,
}

impl Tokens {
    /// Takes the counts present. A stream repeats running totals on its chunks: they are
    /// assigned, never added.
    pub(super) fn read(&mut self, counts: &Counts) {
        for (slot, count) in [
            (&mut self.prompt, counts.prompt),
            (&mut self.candidates, counts.candidates),
            (&mut self.thoughts, counts.thoughts),
            (&mut self.cached, counts.cached),
            (&mut self.tool_use_prompt, counts.tool_use_prompt),
        ] {
            if let Some(n) = count {
                *slot = n;
            }
        }
    }

    /// The OpenAI `usage` object: thoughts are completion tokens (they are billed as output),
    /// tool-use prompt tokens are prompt tokens, so `prompt + completion = total` holds.
    pub(super) fn write(&self, out: &mut Json) {
        let prompt = self.prompt + self.tool_use_prompt;
        let completion = self.candidates + self.thoughts;
        out.raw(b"{\"prompt_tokens\":");
        out.u64(prompt);
        out.raw(b",\"completion_tokens\":");
        out.u64(completion);
        out.raw(b",\"total_tokens\":");
        out.u64(prompt + completion);
        out.raw(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        out.u64(self.cached);
        out.raw(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
        out.u64(self.thoughts);
        out.raw(b"}}");
    }
}

/// Tool-call ids when Gemini gives no `responseId` to make them from.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Writes the id of the `k`-th call of candidate `choice`: `call_<responseId>_<choice>_<k>`
/// (unique per answer, and the same each time the answer is read), with
/// `__thought__<signature>` appended when the call carries a thought signature, which comes
/// back in the id of the next turn's tool call. Written piece by piece: a stream writes one
/// per call chunk.
pub(super) fn write_call_id(
    out: &mut Json,
    response_id: Option<&str>,
    choice: u64,
    k: u32,
    signature: Option<&str>,
) {
    out.raw(b"\"call_");
    match response_id {
        Some(response) => {
            write_str_inside(out, response);
            out.raw(b"_");
            out.u64(choice);
            out.raw(b"_");
            out.u64(u64::from(k));
        }
        None => write_hex(out, CALLS.fetch_add(1, Ordering::Relaxed)),
    }
    if let Some(signature) = signature {
        out.raw(SIGNATURE_MARK.as_bytes());
        write_str_inside(out, signature);
    }
    out.raw(b"\"");
}

/// `n` in lowercase hexadecimal, as `{:x}` writes it.
fn write_hex(out: &mut Json, n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.raw(&digits[at..]);
}

/// Writes one OpenAI tool call (`index` set for stream deltas): id, name, arguments (`args`,
/// Gemini's JSON text, compacted as it is written), and the thought signature also as
/// `extra_content.google.thought_signature` (Google's own OpenAI-compatible shape).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_call(
    out: &mut Json,
    index: Option<u32>,
    response_id: Option<&str>,
    choice: u64,
    k: u32,
    name: &str,
    args: &str,
    signature: Option<&str>,
) {
    out.raw(b"{");
    if let Some(index) = index {
        out.raw(b"\"index\":");
        out.u64(u64::from(index));
        out.raw(b",");
    }
    out.raw(b"\"id\":");
    write_call_id(out, response_id, choice, k, signature);
    out.raw(b",\"type\":\"function\",\"function\":{\"name\":");
    out.str(name);
    out.raw(b",\"arguments\":");
    write_compact_str(out, args);
    out.raw(b"}");
    if let Some(signature) = signature {
        out.raw(b",\"extra_content\":{\"google\":{\"thought_signature\":");
        out.str(signature);
        out.raw(b"}}");
    }
    out.raw(b"}");
}

/// Translates the answer of one [`GenerateRequest`](super::GenerateRequest) back into
/// OpenAI's shape: a JSON body with [`json`](Self::json), a stream with
/// [`stream`](Self::stream).
///
/// ```
/// use portcullis_provider::gemini::ResponseTranslator;
///
/// let answer = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},
///     "finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,
///     "candidatesTokenCount":2,"thoughtsTokenCount":10,"cachedContentTokenCount":4},
///     "modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
/// let body = ResponseTranslator::new("gemini-2.5-flash").json(answer, 1_700_000_000).unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["choices"][0]["message"]["content"], "Hi");
/// assert_eq!(v["choices"][0]["finish_reason"], "stop");
/// assert_eq!(v["usage"]["completion_tokens"], 12);
/// assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 10);
/// assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
/// assert_eq!(v["usage"]["total_tokens"], 17);
/// ```
#[derive(Clone, Debug)]
pub struct ResponseTranslator {
    /// The model asked for, reported when Gemini gives no `modelVersion`.
    model: Arc<str>,
}

impl ResponseTranslator {
    /// A translator of answers to a request for `model`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        Self {
            model: model.into(),
        }
    }

    /// The OpenAI `chat.completion` for a `GenerateContentResponse`, with `created` as its
    /// time (seconds since the Unix epoch). A prompt Gemini blocked (`promptFeedback.
    /// blockReason`, no candidates) is an answer too: one choice with `content: null`, a
    /// `refusal` naming the reason, and `finish_reason: "content_filter"`.
    ///
    /// # Errors
    /// [`InvalidResponse`] when `body` is not JSON or not a `GenerateContentResponse`.
    pub fn json(&self, body: &[u8], created: u64) -> Result<Bytes, InvalidResponse> {
        let answer = scan::answer(body).ok_or_else(|| {
            let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            InvalidResponse::new(format!("not a JSON object: {shown}"))
        })?;
        if !answer.has_candidates && answer.block_reason.is_none() {
            return Err(InvalidResponse::new(
                "no `candidates` and no `promptFeedback.blockReason`",
            ));
        }
        let response_id = answer.response_id.as_deref();
        let mut out = Json::with_capacity(body.len() + 256);
        out.raw(b"{\"id\":");
        write_response_id(&mut out, response_id, created);
        out.raw(b",\"object\":\"chat.completion\",\"created\":");
        out.u64(created);
        out.raw(b",\"model\":");
        out.str(answer.model_version.as_deref().unwrap_or(&self.model));
        out.raw(b",\"choices\":[");
        if answer.candidates.is_empty() {
            let reason = answer.block_reason.as_deref().unwrap_or("OTHER");
            out.raw(
                b"{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":",
            );
            out.str(&format!("the prompt was blocked by Gemini ({reason})"));
            out.raw(b"},\"logprobs\":null,\"finish_reason\":\"content_filter\"}");
        }
        for (position, candidate) in answer.candidates.iter().enumerate() {
            let choice = candidate.index.unwrap_or(position as u64);
            let mut text: Option<String> = None;
            let mut reasoning: Option<String> = None;
            let mut calls = Json::with_capacity(0);
            let mut k = 0;
            for part in &candidate.parts {
                match part {
                    Part::Text {
                        text: piece,
                        thought: false,
                    } => text.get_or_insert_with(String::new).push_str(piece),
                    Part::Text {
                        text: piece,
                        thought: true,
                    } => reasoning.get_or_insert_with(String::new).push_str(piece),
                    Part::Call {
                        name,
                        args,
                        signature,
                    } => {
                        calls.raw(if k == 0 { b"[" } else { b"," });
                        write_call(
                            &mut calls,
                            None,
                            response_id,
                            choice,
                            k,
                            name,
                            args,
                            signature.as_deref(),
                        );
                        k += 1;
                    }
                }
            }
            if position > 0 {
                out.raw(b",");
            }
            out.raw(b"{\"index\":");
            out.u64(choice);
            out.raw(b",\"message\":{\"role\":\"assistant\",\"content\":");
            match &text {
                Some(text) => out.str(text),
                None => out.raw(b"null"),
            }
            if let Some(reasoning) = &reasoning {
                out.raw(b",\"reasoning_content\":");
                out.str(reasoning);
            }
            if k > 0 {
                out.raw(b",\"tool_calls\":");
                out.raw(&calls.into_vec());
                out.raw(b"]");
            }
            out.raw(b"},\"logprobs\":null,\"finish_reason\":\"");
            let finish = candidate.finish.as_deref().unwrap_or("STOP");
            out.raw(finish_reason(finish, k > 0).as_bytes());
            out.raw(b"\"}");
        }
        out.raw(b"],\"usage\":");
        let mut tokens = Tokens::default();
        if let Some(counts) = &answer.usage {
            tokens.read(counts);
        }
        tokens.write(&mut out);
        out.raw(b"}");
        Ok(out.into_bytes())
    }

    /// A translator of this answer as a stream of Gemini chunks into OpenAI
    /// `chat.completion.chunk` events, with `created` as their time.
    pub fn stream(&self, created: u64) -> StreamTranslator {
        StreamTranslator::new(self.model.clone(), created)
    }
}

/// The OpenAI `id` of an answer: Gemini's `responseId`, else one made of the time.
pub(super) fn write_response_id(out: &mut Json, response_id: Option<&str>, created: u64) {
    match response_id {
        Some(id) => out.str(id),
        None => out.str(&format!(
            "gemini-{created:x}-{:x}",
            CALLS.fetch_add(1, Ordering::Relaxed)
        )),
    }
}

/// The OpenAI error body for a Gemini error answer of `status`:
/// `{"error":{"message":"google error: …","type":<status name>,"param":null,
/// "code":<status name>},"provider":"google"}`, as Portkey answers (Google's `status`, such as
/// `RESOURCE_EXHAUSTED`, as both type and code). Google's error body may come wrapped in a
/// list. A body that is not Google's error shape (a proxy's HTML page) is described by its
/// status and first bytes.
///
/// ```
/// use http::StatusCode;
/// use portcullis_provider::gemini::error_body;
///
/// let body = error_body(
///     StatusCode::TOO_MANY_REQUESTS,
///     br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
/// );
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["error"]["type"], "RESOURCE_EXHAUSTED");
/// assert_eq!(v["error"]["code"], "RESOURCE_EXHAUSTED");
/// assert_eq!(v["error"]["message"], "google error: Quota exceeded");
/// assert_eq!(v["provider"], "google");
/// ```
pub fn error_body(status: StatusCode, body: &[u8]) -> Bytes {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let parsed = match parsed {
        Some(Value::Array(mut list)) if !list.is_empty() => Some(list.swap_remove(0)),
        other => other,
    };
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let mut out = Json::with_capacity(body.len() + 96);
    match error {
        Some(error) => write_error(&mut out, error, status),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut = text
                .char_indices()
                .nth(200)
                .map_or(text, |(at, _)| &text[..at]);
            let message = format!("the upstream answered {status}: {cut}");
            write_error_parts(&mut out, default_status(status), &message);
        }
    }
    out.into_bytes()
}

/// Google's status name for an HTTP status, for answers that do not say.
fn default_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// `{"error":{…},"provider":"google"}` for Google's `error` object.
pub(super) fn write_error(out: &mut Json, error: &Value, status: StatusCode) {
    let kind = error
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_else(|| default_status(status));
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the request failed");
    write_error_parts(out, kind, message);
}

fn write_error_parts(out: &mut Json, kind: &str, message: &str) {
    out.raw(b"{\"error\":{\"message\":");
    out.str(&format!("{PROVIDER} error: {message}"));
    out.raw(b",\"type\":");
    out.str(kind);
    out.raw(b",\"param\":null,\"code\":");
    out.str(kind);
    out.raw(b"},\"provider\":\"");
    out.raw(PROVIDER.as_bytes());
    out.raw(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(v: Value) -> Value {
        let body = ResponseTranslator::new("gemini-m")
            .json(&serde_json::to_vec(&v).unwrap(), 7)
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn text_thoughts_and_calls_in_one_candidate() {
        let out = translate(
            json!({"responseId": "r9", "candidates": [{"content": {"role": "model",
            "parts": [{"text": "plan", "thought": true}, {"text": "Let me check."},
                {"functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                 "thoughtSignature": "U0lH"}]},
            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4,
                "toolUsePromptTokenCount": 2}}),
        );
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], "Let me check.");
        assert_eq!(message["reasoning_content"], "plan");
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "call_r9_0_0__thought__U0lH", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                "extra_content": {"google": {"thought_signature": "U0lH"}}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["id"], "r9");
        assert_eq!(out["model"], "gemini-m");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}})
        );
    }

    #[test]
    fn call_ids_are_one_string_escaped_as_a_whole() {
        let mut out = Json::with_capacity(0);
        write_call_id(&mut out, Some("r\"1/é"), 2, 10, Some("c2ln+/=\n"));
        assert_eq!(
            out.into_vec(),
            serde_json::to_vec("call_r\"1/é_2_10__thought__c2ln+/=\n").unwrap()
        );
        for n in [0, 9, 10, 255, 0xdead_beef, u64::MAX] {
            let mut out = Json::with_capacity(0);
            write_hex(&mut out, n);
            assert_eq!(out.into_vec(), format!("{n:x}").into_bytes());
        }
        let mut out = Json::with_capacity(0);
        write_call_id(&mut out, None, 0, 0, None);
        let id: String = serde_json::from_slice(&out.into_vec()).unwrap();
        let counter = id.strip_prefix("call_").unwrap();
        assert!(u64::from_str_radix(counter, 16).is_ok(), "{id}");
    }

    #[test]
    fn a_blocked_prompt_is_a_content_filter_answer() {
        let out = translate(
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 8}}),
        );
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert!(out["choices"][0]["message"]["content"].is_null());
        assert!(
            out["choices"][0]["message"]["refusal"]
                .as_str()
                .unwrap()
                .contains("PROHIBITED_CONTENT")
        );
        assert_eq!(out["usage"]["prompt_tokens"], 8);
    }

    #[test]
    fn unreadable_answers_are_errors() {
        let t = ResponseTranslator::new("m");
        assert!(t.json(b"<html>", 0).is_err());
        assert!(t.json(b"{\"id\":1}", 0).is_err());
    }

    #[test]
    fn error_bodies_keep_the_status_name_or_fall_back_on_the_status() {
        let body = error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"[{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}]"#,
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "UNAVAILABLE");
        let body = error_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "INTERNAL");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("502 Bad Gateway: <html>bad gateway</html>")
        );
    }
}
