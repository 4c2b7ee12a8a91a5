//! Token estimates for reservations: the prompt counted from the request's bytes in one pass
//! (from its parsed tree for a body the pass refuses), once per parsed body; the output
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
use portcullis_core::observe::json::{RawStr, Reader, hex4};
use serde_json::Value;
use smallvec::SmallVec;

/// Tokens counted for one image, audio or file part.
pub const MEDIA_TOKENS: u64 = 1_600;
/// Tokens of framing per message.
pub const MESSAGE_TOKENS: u64 = 4;
/// Tokens that start the reply.
pub const REPLY_TOKENS: u64 = 3;
/// The most choices (`n`) a request is counted for.
pub const MAX_CHOICES: u64 = 128;

/// The top-level fields counted as prompt besides `messages`.
const PROMPT_FIELDS: [&str; 8] = [
    "prompt",
    "input",
    "system",
    "instructions",
    "tools",
    "functions",
    "tool_choice",
    "response_format",
];

/// The fields that bound the output, first found first taken.
const CAP_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// The `type`s of a part counted as media.
const MEDIA_TYPES: [&str; 8] = [
    "image_url",
    "image",
    "input_image",
    "input_audio",
    "audio",
    "file",
    "input_file",
    "document",
];

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
    object
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| MEDIA_TYPES.contains(&t))
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
///
/// Counted in one pass over the request's bytes when it can be (see [`Scan`]), without
/// building the request's tree; from the tree otherwise, to the same number.
pub fn prompt_tokens(view: &RequestView) -> u64 {
    match Scan::read(view.bytes()) {
        Some(scan) => scan.prompt,
        None => tree_prompt_tokens(view),
    }
}

/// The most output tokens the request can cost: `max_completion_tokens`, `max_tokens` or
/// `max_output_tokens` (else `default`), times `n` choices.
pub fn completion_cap(view: &RequestView, default: u64) -> u64 {
    match Scan::read(view.bytes()) {
        Some(scan) => scan.completion_cap(default),
        None => tree_completion_cap(view, default),
    }
}

/// The prompt estimate and the output cap together, from one pass over the request's bytes
/// (or from its tree): what a reservation needs.
///
/// The prompt is counted once per parsed body: a gateway's budget layers above and below
/// `override_params` (the server's limits, a provider's) share the count
/// ([`RequestView::memo`]), unless an override replaced one of the fields it reads; the output
/// cap's fields are read from the view that asks, whose overrides may have replaced them.
pub(crate) fn request_tokens(view: &RequestView, default: u64) -> (u64, u64) {
    let counted =
        |view: &RequestView| Scan::read(view.bytes()).unwrap_or_else(|| Scan::from_tree(view));
    // Which of the fields read an override replaced: one walk over the replaced fields (a
    // few), not a lookup per field read.
    let mut prompt_replaced = false;
    let mut caps_replaced = [false; CAP_FIELDS.len()];
    let mut n_replaced = false;
    for key in view.replaced_keys() {
        if key == "messages" || PROMPT_FIELDS.contains(&key) {
            prompt_replaced = true;
        } else if let Some(i) = CAP_FIELDS.iter().position(|k| *k == key) {
            caps_replaced[i] = true;
        } else if key == "n" {
            n_replaced = true;
        }
    }
    let scan = if prompt_replaced {
        counted(view)
    } else {
        let mut scan = view.memo(counted);
        // The parsed body's caps, but for those an override replaced.
        for ((cap, key), replaced) in scan.caps.iter_mut().zip(CAP_FIELDS).zip(caps_replaced) {
            if replaced {
                *cap = view.get(key).and_then(Value::as_u64);
            }
        }
        if n_replaced {
            scan.n = view.get("n").and_then(Value::as_u64);
        }
        scan
    };
    (scan.prompt, scan.completion_cap(default))
}

/// [`prompt_tokens`] from the request's tree: for the bodies the one pass leaves to it.
fn tree_prompt_tokens(view: &RequestView) -> u64 {
    let mut tokens = 0;
    if let Some(messages) = view.messages() {
        tokens += messages
            .iter()
            .map(|m| value_tokens(m) + MESSAGE_TOKENS)
            .sum::<u64>()
            + REPLY_TOKENS;
    }
    for field in PROMPT_FIELDS {
        if let Some(value) = view.get(field) {
            tokens += value_tokens(value);
        }
    }
    tokens
}

/// [`completion_cap`] from the request's tree.
fn tree_completion_cap(view: &RequestView, default: u64) -> u64 {
    let cap = CAP_FIELDS
        .iter()
        .find_map(|k| view.get(k).and_then(Value::as_u64))
        .unwrap_or(default);
    let n = view.get("n").and_then(Value::as_u64);
    cap_times_n(cap, n)
}

fn cap_times_n(cap: u64, n: Option<u64>) -> u64 {
    cap.saturating_mul(n.unwrap_or(1).clamp(1, MAX_CHOICES))
}

/// Nesting deeper than this is left to the tree.
const MAX_DEPTH: u32 = 64;

/// Keys of one object beyond this are left to the tree (the check for a repeated key
/// compares each key with the object's others).
const MAX_KEYS: usize = 64;

/// The estimate read in one pass over a request's bytes with the strict
/// [`Reader`](portcullis_core::observe::json::Reader): the same count as the tree's for every
/// body it reads, without building the tree (a `String` per key and text, a map per object).
///
/// What the pass is unsure of it refuses with `None`, and the caller counts from the tree:
/// what the reader refuses (malformed JSON, keys with escapes or non-ASCII bytes), nesting
/// past [`MAX_DEPTH`], an object with more than [`MAX_KEYS`] keys, and a key given twice in
/// one object (the tree keeps the last value, the pass would count both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The prompt estimate.
    pub(crate) prompt: u64,
    /// `max_completion_tokens`, `max_tokens`, `max_output_tokens` and `n`, where each is an
    /// integer a `u64` holds (what `Value::as_u64` answers).
    caps: [Option<u64>; 3],
    n: Option<u64>,
}

impl Scan {
    /// The estimate from the request's tree: for the bodies the one pass leaves to it.
    fn from_tree(view: &RequestView) -> Self {
        Self {
            prompt: tree_prompt_tokens(view),
            caps: CAP_FIELDS.map(|k| view.get(k).and_then(Value::as_u64)),
            n: view.get("n").and_then(Value::as_u64),
        }
    }

    /// Reads a request body; `None` for what is left to the tree.
    pub(crate) fn read(bytes: &[u8]) -> Option<Self> {
        let mut walk = Walk {
            keys: SmallVec::new(),
        };
        let mut r = Reader::new(bytes);
        let mut scan = Scan::default();
        let top = walk.keys.len();
        r.object(|r, key| {
            walk.key(top, key)?;
            match key {
                b"messages" if r.peek()? == b'[' => {
                    let mut tokens = REPLY_TOKENS;
                    r.array(|r| {
                        tokens += walk.value(r, 1)? + MESSAGE_TOKENS;
                        Some(())
                    })?;
                    scan.prompt += tokens;
                }
                b"n" => scan.n = whole_number(r)?,
                _ => {
                    if let Some(i) = CAP_FIELDS.iter().position(|f| f.as_bytes() == key) {
                        scan.caps[i] = whole_number(r)?;
                    } else if PROMPT_FIELDS.iter().any(|f| f.as_bytes() == key) {
                        scan.prompt += walk.value(r, 1)?;
                    } else {
                        r.skip()?;
                    }
                }
            }
            Some(())
        })?;
        r.end()?;
        Some(scan)
    }

    fn completion_cap(&self, default: u64) -> u64 {
        let cap = self.caps.iter().find_map(|c| *c).unwrap_or(default);
        cap_times_n(cap, self.n)
    }
}

/// The state of one pass: the keys of the objects open (each object's after the ones of the
/// objects around it), to find a repeated one.
struct Walk<'a> {
    /// On the stack for the usual request (a few keys at each of a few levels).
    keys: SmallVec<[&'a [u8]; 16]>,
}

impl<'a> Walk<'a> {
    /// Records `key` of the object whose keys start at `first`; `None` if it has it already.
    fn key(&mut self, first: usize, key: &'a [u8]) -> Option<()> {
        let seen = &self.keys[first..];
        if seen.len() >= MAX_KEYS || seen.contains(&key) {
            return None;
        }
        self.keys.push(key);
        Some(())
    }

    /// The estimate of the value at the reader, as [`value_tokens`] counts it.
    fn value(&mut self, r: &mut Reader<'a>, depth: u32) -> Option<u64> {
        match r.peek()? {
            b'{' if depth < MAX_DEPTH => self.object(r, depth),
            b'[' if depth < MAX_DEPTH => {
                let mut tokens = 0;
                r.array(|r| {
                    tokens += self.value(r, depth + 1)?;
                    Some(())
                })?;
                Some(tokens)
            }
            b'{' | b'[' => None,
            b'"' => {
                let text = self.string(r)?;
                Some(if starts_with_data(text.raw()) {
                    MEDIA_TOKENS
                } else {
                    raw_text_tokens(text)?
                })
            }
            // A number, `true`, `false` or `null` (checked as it is skipped).
            _ => r.skip().map(|()| 1),
        }
    }

    fn object(&mut self, r: &mut Reader<'a>, depth: u32) -> Option<u64> {
        let first = self.keys.len();
        let mut tokens = 0;
        let mut media = false;
        r.object(|r, key| {
            self.key(first, key)?;
            // Keys come without escapes and in ASCII (the reader refuses others).
            tokens += (key.len() as u64).div_ceil(3);
            if key == b"type" && r.peek()? == b'"' {
                let string = r.string()?;
                media = MEDIA_TYPES.contains(&&*string.text()?);
                tokens += if starts_with_data(string.raw()) {
                    MEDIA_TOKENS
                } else {
                    raw_text_tokens(string)?
                };
            } else {
                tokens += self.value(r, depth + 1)?;
            }
            Some(())
        })?;
        self.keys.truncate(first);
        Some(if media { MEDIA_TOKENS } else { tokens })
    }

    /// The string at the reader, checked.
    fn string(&self, r: &mut Reader<'a>) -> Option<RawStr<'a>> {
        let string = r.string()?;
        string.check()?;
        Some(string)
    }
}

/// A value read as `Value::as_u64` reads it: `Some` for an integer a `u64` holds, `None` for
/// any other value (a fraction, an exponent, a sign, too many digits, a string, `null`).
fn whole_number(r: &mut Reader<'_>) -> Option<Option<u64>> {
    let value = r.value_bytes()?;
    // A value the reader checked parses as a `u64` exactly when it is digits only, in range.
    Some(std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()))
}

/// [`text_tokens`] of a string literal's text, counted from its checked bytes as written:
/// each escape stands for the one character it writes.
fn raw_text_tokens(string: RawStr<'_>) -> Option<u64> {
    let raw = string.raw();
    let escaped = string.is_escaped();
    if !escaped && string.is_ascii() {
        // Most text: its bytes are its characters (the reader's scan said so).
        return Some((raw.len() as u64).div_ceil(3));
    }
    // In UTF-8 a character beyond ASCII is one lead byte (0xC0 and up) and its continuations.
    let mut ascii = raw.iter().filter(|b| b.is_ascii()).count() as u64;
    let mut other = raw.iter().filter(|&&b| b >= 0xC0).count() as u64;
    if !escaped {
        return Some(ascii.div_ceil(3) + other);
    }
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\\', &raw[at..]) {
        let i = at + i;
        let (len, ascii_char) = match raw.get(i + 1)? {
            b'u' => match hex4(raw.get(i + 2..i + 6)?)? {
                // A surrogate pair (the reader lets only whole pairs through): one character.
                0xD800..=0xDBFF => (12, false),
                code => (6, code < 0x80),
            },
            _ => (2, true),
        };
        ascii -= len;
        if ascii_char {
            ascii += 1;
        } else {
            other += 1;
        }
        at = i + len as usize;
    }
    Some(ascii.div_ceil(3) + other)
}

/// Whether a string literal's text, from its checked bytes as written, starts with `data:`
/// (each of whose characters may be written as a `\u` escape).
fn starts_with_data(raw: &[u8]) -> bool {
    let mut at = 0;
    for want in b"data:" {
        match raw.get(at) {
            Some(b'\\') => {
                if raw.get(at + 1) != Some(&b'u')
                    || raw.get(at + 2..at + 6).and_then(hex4) != Some(u32::from(*want))
                {
                    // Escapes other than `\u` stand for none of these characters.
                    return false;
                }
                at += 6;
            }
            Some(b) if b == want => at += 1,
            _ => return false,
        }
    }
    true
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

    /// The one pass's answer and the tree's, on a fresh view of `json` (`None` where the pass
    /// leaves the body to the tree).
    fn both(json: &str) -> (Option<(u64, u64)>, (u64, u64)) {
        let view = view(json);
        let scan = Scan::read(view.bytes()).map(|s| (s.prompt, s.completion_cap(77)));
        let tree = (tree_prompt_tokens(&view), tree_completion_cap(&view, 77));
        (scan, tree)
    }

    #[test]
    fn the_one_pass_reads_ordinary_requests_to_the_trees_count() {
        for json in [
            r#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"Say hello to the world"}]}"#,
            r#"{"messages":[{"role":"system","content":"Line one.\nLine \"two\" \\ three\/four\t."}]}"#,
            // Escapes of non-ASCII characters and a surrogate pair count one token each.
            r#"{"messages":[{"role":"user","content":"Z\u00fcrich, \u6771\u4eac, \ud83d\ude00, \u0041BC"}]}"#,
            r#"{"messages":[{"role":"user","content":"Zürich, 東京, 😀, ABC"}]}"#,
            // `data:` written with escapes is a data URL all the same.
            r#"{"messages":[{"role":"user","content":"\u0064ata:image/png;base64,AAAA"}]}"#,
            r#"{"messages":[{"role":"user","content":"d\u0061t\u0061\u003aAAAA"}]}"#,
            r#"{"messages":[{"role":"user","content":"dat\u00e1:AAAA"}]}"#,
            r#"{"messages":[{"role":"user","content":"dat"}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/a.png"}},{"image_url":{"url":"https://x"},"type":"image_url"}]}]}"#,
            // A media type written with an escape; a type that is not a string.
            r#"{"messages":[{"role":"user","content":[{"type":"input\u005faudio","data":"x"},{"type":7},{"type":null}]}]}"#,
            r#"{"prompt":"abcdef","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}],"tool_choice":"auto"}"#,
            r#"{"input":["one","two",3,true,null,{"a":[1.5,-2,1e3]}],"system":"s","instructions":null,"functions":[],"response_format":{"type":"json_object"}}"#,
            r#" { "messages" : [ ] , "max_completion_tokens" : 9 , "max_tokens" : 5 , "n" : 3 } "#,
            r#"{"messages":null,"max_tokens":5.0,"max_output_tokens":12,"n":-1}"#,
            r#"{"max_tokens":"5","n":0}"#,
            r#"{"max_tokens":18446744073709551615,"n":2}"#,
            r#"{"max_tokens":18446744073709551616,"max_output_tokens":0}"#,
            r#"{"max_tokens":1,"n":100000}"#,
            r#"{}"#,
        ] {
            let (scan, tree) = both(json);
            assert_eq!(scan, Some(tree), "{json}");
        }
    }

    #[test]
    fn what_the_one_pass_is_unsure_of_is_counted_from_the_tree() {
        for json in [
            // A repeated key: the tree keeps the last value.
            r#"{"messages":[{"role":"user","content":"a very long text here","content":"x"}]}"#,
            r#"{"messages":[{"type":"text","content":"abc","type":"image_url"}]}"#,
            r#"{"tools":[1],"tools":[1,2,3]}"#,
            r#"{"max_tokens":5,"max_tokens":7}"#,
            // A key with an escape or beyond ASCII.
            r#"{"messages":[{"role":"user","cont\u0065nt":"abc"}]}"#,
            r#"{"messages":[{"rôle":"user"}]}"#,
        ] {
            let (scan, tree) = both(json);
            assert_eq!(scan, None, "{json}");
            let view = view(json);
            assert_eq!(
                (prompt_tokens(&view), completion_cap(&view, 77)),
                tree,
                "{json}"
            );
            assert_eq!(request_tokens(&view, 77), tree, "{json}");
        }
        let deep = format!(
            r#"{{"input":{}1{}}}"#,
            "[".repeat(MAX_DEPTH as usize + 1),
            "]".repeat(MAX_DEPTH as usize + 1)
        );
        assert_eq!(both(&deep).0, None);
        assert_eq!(prompt_tokens(&view(&deep)), 1);
        let wide = format!(
            r#"{{"input":{{{}}}}}"#,
            (0..=MAX_KEYS)
                .map(|i| format!(r#""k{i}":1"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (scan, tree) = both(&wide);
        assert_eq!(scan, None);
        assert_eq!(prompt_tokens(&view(&wide)), tree.0);
    }

    #[test]
    fn an_overridden_view_is_counted_from_its_merged_body() {
        let base = view(
            r#"{"model":"m","max_tokens":5,"tools":[{"type":"function"}],"messages":[{"role":"user","content":"hello there"}]}"#,
        );
        let params: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"max_tokens":256,"model":"bench-large","system":"be brief","tools":null}"#,
        )
        .unwrap();
        let over = base.with_overrides(&params).unwrap();
        let tree = (tree_prompt_tokens(&over), tree_completion_cap(&over, 77));
        assert!(Scan::read(over.bytes()).is_some());
        assert_eq!(request_tokens(&over, 77), tree);
        assert_eq!(tree.1, 256);
    }

    #[test]
    fn views_of_one_body_share_the_count_unless_an_override_replaced_what_it_reads() {
        let base = view(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hello there"}]}"#,
        );
        let counted = request_tokens(&base, 77);
        let over = |json: &str| {
            let params: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
            base.with_overrides(&params).unwrap()
        };
        // Another model: the same count, from the memo.
        let model = over(r#"{"model":"bench-large"}"#);
        assert_eq!(request_tokens(&model, 77), counted);
        assert_eq!(
            model.memo(|_| Scan::default()).prompt,
            counted.0,
            "kept with the body"
        );
        // Another cap or `n`: the prompt from the memo, the cap from the view; other messages:
        // counted anew. Each as the tree counts it.
        for (json, cap, same_prompt) in [
            (r#"{"max_tokens":256}"#, 256, true),
            (r#"{"max_tokens":null,"max_completion_tokens":9}"#, 9, true),
            (r#"{"n":2}"#, 10, true),
            (r#"{"messages":[]}"#, 5, false),
            (
                r#"{"tools":[{"type":"function"}],"max_tokens":1}"#,
                1,
                false,
            ),
        ] {
            let v = over(json);
            let tree = (tree_prompt_tokens(&v), tree_completion_cap(&v, 77));
            assert_eq!(request_tokens(&v, 77), tree, "{json}");
            assert_eq!(tree.1, cap, "{json}");
            assert_eq!(tree.0 == counted.0, same_prompt, "{json}");
        }
        // The base's count is unchanged by its overridden views'.
        assert_eq!(request_tokens(&base, 77), counted);
    }

    mod one_pass {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of string text as written in JSON: plain, escaped, beyond ASCII.
        const PIECES: &[&str] = &[
            "a",
            "hello ",
            "data:",
            "dat",
            "a:",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\t",
            "\\b",
            "\\f",
            "\\r",
            "\\u0041",
            "\\u0064",
            "\\u003a",
            "\\u00e9",
            "\\u6771",
            "\\u0000",
            "\\ud83d\\ude00",
            "é",
            "東京",
            "😀",
            "image_url",
            " ",
        ];
        const KEYS: &[&str] = &[
            "type",
            "role",
            "content",
            "text",
            "image_url",
            "url",
            "a",
            "name",
            "typ",
        ];
        const TYPES: &[&str] = &[
            "\"text\"",
            "\"image_url\"",
            "\"input_audio\"",
            "\"document\"",
            "\"image\\u005furl\"",
            "\"file\"",
            "1",
            "null",
            "\"Image\"",
        ];
        const NUMBERS: &[&str] = &[
            "0",
            "5",
            "-1",
            "-0",
            "1.5",
            "1e3",
            "2E-2",
            "256",
            "18446744073709551615",
            "18446744073709551616",
            "100000",
        ];
        /// Every field the estimate reads, and two it does not.
        fn top() -> Vec<&'static str> {
            let others = ["messages", "n", "model", "temperature"];
            PROMPT_FIELDS
                .iter()
                .chain(&CAP_FIELDS)
                .chain(&others)
                .copied()
                .collect()
        }

        fn string() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(PIECES), 0..6)
                .prop_map(|p| format!("\"{}\"", p.concat()))
        }

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                string(),
                prop::sample::select(NUMBERS).prop_map(str::to_owned),
                prop::sample::select(&["true", "false", "null"][..]).prop_map(str::to_owned),
            ];
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5)
                        .prop_map(|items| format!("[{}]", items.join(","))),
                    prop::collection::vec(
                        (
                            prop::sample::select(KEYS),
                            prop_oneof![inner, prop::sample::select(TYPES).prop_map(str::to_owned)],
                        ),
                        0..5,
                    )
                    .prop_map(|fields| {
                        let fields: Vec<String> = fields
                            .into_iter()
                            .map(|(k, v)| format!(" \"{k}\" :{v}"))
                            .collect();
                        format!("{{{}}}", fields.join(","))
                    }),
                ]
            })
        }

        fn top_value(key: &str) -> BoxedStrategy<String> {
            match key {
                "messages" => prop_oneof![
                    3 => prop::collection::vec(value(), 0..4)
                        .prop_map(|items| format!("[{}]", items.join(","))),
                    1 => Just("null".to_owned()),
                ]
                .boxed(),
                "model" => string().boxed(),
                "max_tokens" | "max_completion_tokens" | "max_output_tokens" | "n" => prop_oneof![
                    3 => prop::sample::select(NUMBERS).prop_map(str::to_owned),
                    1 => value(),
                ]
                .boxed(),
                _ => value().boxed(),
            }
        }

        fn request() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(top()), 0..7)
                .prop_flat_map(|keys| {
                    keys.into_iter()
                        .map(|k| top_value(k).prop_map(move |v| format!("\"{k}\": {v}")))
                        .collect::<Vec<_>>()
                })
                .prop_map(|fields| format!("{{{}}}", fields.join(",")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn the_one_pass_counts_what_the_tree_counts(
                json in request(),
                overrides in prop::collection::vec((prop::sample::select(top()), value()), 0..3),
            ) {
                // Bodies a view refuses (a `model` that is not a string…) never reach a count.
                let Ok(view) = RequestView::parse(Bytes::from(json.clone())) else {
                    return Ok(());
                };
                let tree = (tree_prompt_tokens(&view), tree_completion_cap(&view, 77));
                if let Some(scan) = Scan::read(view.bytes()) {
                    prop_assert_eq!((scan.prompt, scan.completion_cap(77)), tree, "{}", json);
                }
                prop_assert_eq!(request_tokens(&view, 77), tree);
                // And the body of a view `override_params` made.
                let params: serde_json::Map<String, Value> = overrides
                    .iter()
                    .filter_map(|(k, v)| Some(((*k).to_owned(), serde_json::from_str(v).ok()?)))
                    .collect();
                if let Ok(over) = view.with_overrides(&params) {
                    let tree = (tree_prompt_tokens(&over), tree_completion_cap(&over, 77));
                    if let Some(scan) = Scan::read(over.bytes()) {
                        prop_assert_eq!(
                            (scan.prompt, scan.completion_cap(77)), tree,
                            "{} with {:?}", json, params
                        );
                    }
                    prop_assert_eq!(request_tokens(&over, 77), tree);
                }
            }

            #[test]
            fn escaped_text_counts_as_the_characters_it_stands_for(
                pieces in prop::collection::vec(prop::sample::select(PIECES), 0..12),
            ) {
                let literal = format!("\"{}\"", pieces.concat());
                let text: String = serde_json::from_str(&literal).unwrap();
                let string = Reader::new(literal.as_bytes()).string().unwrap();
                prop_assert_eq!(raw_text_tokens(string), Some(text_tokens(&text)));
                prop_assert_eq!(starts_with_data(string.raw()), text.starts_with("data:"));
            }
        }
    }
}
