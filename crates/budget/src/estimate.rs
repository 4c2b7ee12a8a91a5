//! Token estimates for reservations: the prompt counted from the parsed request, the output
//! bounded by `max_tokens`.
//!
//! No tokenizer is bundled (each provider has its own, and the good ones carry megabytes of
//! vocabulary). The estimate is chosen to sit **above** the real count for ordinary text in
//! the tokenizers of OpenAI, Anthropic and Gemini:
//!
//! - text: one token per 3 ASCII characters (rounded up), plus one per non-ASCII character
//!   (prose runs at about 4 characters a token, code about 3; a CJK character is about one);
//! - each message: 4 tokens of framing, and 3 for the reply's start;
//! - each image, audio or file part (or a `data:` URL): 1,600 tokens, above what a
//!   high-detail image costs at OpenAI and Anthropic;
//! - numbers, booleans and nulls: 1 token; object keys count as text.
//!
//! Text of random characters (hashes, base64 outside a `data:` URL) can tokenize denser
//! than 3 characters a token: the estimate is then low, and the settlement charges the real
//! usage all the same. Only the output bound is exact: a provider never writes more than
//! `max_completion_tokens` (reasoning included) or `max_tokens`.
//!
//! ```
//! use bytes::Bytes;
//! use portcullis_budget::estimate::{completion_cap, prompt_tokens, text_tokens};
//! use portcullis_core::RequestView;
//!
//! let view = RequestView::parse(Bytes::from_static(
//!     br#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"Say hello to the world"}]}"#,
//! )).unwrap();
//! assert_eq!(text_tokens("Say hello to the world"), 8); // 22 characters
//! // "role" + "user" + "content" (keys and values) + the text + framing.
//! assert_eq!(prompt_tokens(&view), 2 + 2 + 3 + 8 + 4 + 3);
//! assert_eq!(completion_cap(&view, 4096), 50);
//! ```

use portcullis_core::RequestView;
use serde_json::Value;

/// Tokens counted for one image, audio or file part.
pub const MEDIA_TOKENS: u64 = 1_600;
/// Tokens of framing per message.
pub const MESSAGE_TOKENS: u64 = 4;
/// Tokens that start the reply.
pub const REPLY_TOKENS: u64 = 3;
/// The most choices (`n`) a request is counted for.
pub const MAX_CHOICES: u64 = 128;

/// The estimate for a piece of text.
pub fn text_tokens(text: &str) -> u64 {
    let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
    let other = if ascii as usize == text.len() {
        0
    } else {
        text.chars().filter(|c| !c.is_ascii()).count() as u64
    };
    ascii.div_ceil(3) + other
}

fn is_media(object: &serde_json::Map<String, Value>) -> bool {
    object.get("type").and_then(Value::as_str).is_some_and(|t| {
        matches!(
            t,
            "image_url"
                | "image"
                | "input_image"
                | "input_audio"
                | "audio"
                | "file"
                | "input_file"
                | "document"
        )
    })
}

/// The estimate for any JSON value (a message, a tool definition).
pub fn value_tokens(value: &Value) -> u64 {
    match value {
        Value::String(s) if s.starts_with("data:") => MEDIA_TOKENS,
        Value::String(s) => text_tokens(s),
        Value::Array(items) => items.iter().map(value_tokens).sum(),
        Value::Object(object) if is_media(object) => MEDIA_TOKENS,
        Value::Object(object) => object
            .iter()
            .map(|(k, v)| text_tokens(k) + value_tokens(v))
            .sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 1,
    }
}

/// The prompt estimate of a request: `messages` (OpenAI chat), `prompt` (completions),
/// `input` (embeddings, Responses API), `system`, `instructions`, and the tool and format
/// definitions that providers put in the prompt.
pub fn prompt_tokens(view: &RequestView) -> u64 {
    let mut tokens = 0;
    if let Some(messages) = view.messages() {
        tokens += messages
            .iter()
            .map(|m| value_tokens(m) + MESSAGE_TOKENS)
            .sum::<u64>()
            + REPLY_TOKENS;
    }
    for field in [
        "prompt",
        "input",
        "system",
        "instructions",
        "tools",
        "functions",
        "tool_choice",
        "response_format",
    ] {
        if let Some(value) = view.get(field) {
            tokens += value_tokens(value);
        }
    }
    tokens
}

/// The most output tokens the request can cost: `max_completion_tokens`, `max_tokens` or
/// `max_output_tokens` (else `default`), times `n` choices.
pub fn completion_cap(view: &RequestView, default: u64) -> u64 {
    let cap = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| view.get(k).and_then(Value::as_u64))
        .unwrap_or(default);
    let n = view
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES);
    cap.saturating_mul(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn view(json: &str) -> RequestView {
        RequestView::parse(Bytes::from(json.to_owned())).unwrap()
    }

    #[test]
    fn non_ascii_counts_a_token_a_character() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abc"), 1);
        assert_eq!(text_tokens("abcd"), 2);
        assert_eq!(text_tokens("日本語"), 3);
        assert_eq!(text_tokens("héllo"), 2 + 1);
    }

    #[test]
    fn images_count_a_fixed_amount_not_their_bytes() {
        let big = "A".repeat(300_000);
        let v = view(&format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{big}"}}}}]}}]}}"#
        ));
        assert_eq!(
            prompt_tokens(&v),
            2 + 2 + 3 + MEDIA_TOKENS + MESSAGE_TOKENS + REPLY_TOKENS
        );
    }

    #[test]
    fn completion_cap_reads_each_name_and_n() {
        assert_eq!(
            completion_cap(&view(r#"{"max_completion_tokens":100,"max_tokens":5}"#), 7),
            100
        );
        assert_eq!(completion_cap(&view(r#"{"max_tokens":5,"n":3}"#), 7), 15);
        assert_eq!(completion_cap(&view(r#"{"max_output_tokens":9}"#), 7), 9);
        assert_eq!(completion_cap(&view(r#"{}"#), 7), 7);
        assert_eq!(
            completion_cap(&view(r#"{"max_tokens":1,"n":100000}"#), 7),
            MAX_CHOICES
        );
    }

    #[test]
    fn tools_and_legacy_prompts_count() {
        let v =
            view(r#"{"prompt":"abcdef","tools":[{"type":"function","function":{"name":"f"}}]}"#);
        assert!(prompt_tokens(&v) > text_tokens("abcdef"));
    }
}
