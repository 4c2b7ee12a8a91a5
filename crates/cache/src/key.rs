//! Cache keys: a SHA-256 of everything that can change an answer, canonicalised.
//!
//! The exact key covers, in a canonical encoding (object keys sorted, no whitespace, numbers
//! as their JSON text): the tenant namespace, the target's identity (provider and endpoint),
//! and every top-level field of the request body except the ones that only change the
//! *shape* of the answer or who asked: `stream`, `stream_options`, `user`, `metadata`. Unknown
//! fields are in the key: a field we do not know might change the answer, so it must.
//!
//! The semantic partition key is the same hash with the text of the last user turn left
//! out: two requests in one partition differ only in that text, which is what the semantic
//! matcher compares.
//!
//! ```
//! use portcullis_cache::key::{KeyInput, exact_key};
//! use portcullis_core::RequestView;
//!
//! let a = RequestView::parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#.into()).unwrap();
//! let b = RequestView::parse(r#"{ "messages": [{"content":"hi","role":"user"}], "model": "m" }"#.into()).unwrap();
//! let input = KeyInput { tenant: "team-a", namespace: "", target: "openai", endpoint: "/v1/chat/completions" };
//! assert_eq!(exact_key(&a, &input), exact_key(&b, &input));
//! let other = KeyInput { tenant: "team-b", ..input };
//! assert_ne!(exact_key(&a, &input), exact_key(&a, &other));
//! ```

use std::fmt;

use portcullis_core::RequestView;
use serde_json::Value;

/// Top-level body fields that never change the answer's content.
pub const NOT_IN_KEY: [&str; 4] = ["stream", "stream_options", "user", "metadata"];

/// A 32-byte cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key as 64 lowercase hex digits (how the Redis store names it).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).expect("hex"));
            s.push(char::from_digit(u32::from(b & 0xf), 16).expect("hex"));
        }
        s
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}…)", &self.to_hex()[..12])
    }
}

/// What besides the body goes into a key.
#[derive(Clone, Copy, Debug)]
pub struct KeyInput<'a> {
    /// The tenant: the name of the caller's gateway key.
    pub tenant: &'a str,
    /// The namespace within the tenant: `x-portkey-cache-namespace`.
    pub namespace: &'a str,
    /// The target's identity (a provider name).
    pub target: &'a str,
    /// The endpoint (the request path).
    pub endpoint: &'a str,
}

/// The exact key of a request.
pub fn exact_key(view: &RequestView, input: &KeyInput<'_>) -> Key {
    hash(view, input, Scope::Exact)
}

/// The semantic partition of a request, and the text of its last user turn; `None` when the
/// request has no last user turn to compare (its last message is not the user's, or it is
/// not a chat or completion request).
pub fn partition(view: &RequestView, input: &KeyInput<'_>) -> Option<(Key, String)> {
    let (index, text) = last_user_turn(view)?;
    Some((hash(view, input, Scope::Partition(index)), text))
}

#[derive(Clone, Copy)]
enum Scope {
    Exact,
    /// Leave out the text of this turn: `Some(i)` is `messages[i]`, `None` the `prompt`.
    Partition(Option<usize>),
}

fn hash(view: &RequestView, input: &KeyInput<'_>, scope: Scope) -> Key {
    let mut buf = Vec::with_capacity(view.bytes().len() + 128);
    let tag: &[u8] = match scope {
        Scope::Exact => b"portcullis-cache/exact/1\0",
        Scope::Partition(_) => b"portcullis-cache/partition/1\0",
    };
    buf.extend_from_slice(tag);
    for part in [input.tenant, input.namespace, input.target, input.endpoint] {
        // Length-prefixed, so no two different triples encode the same.
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    let mut fields: Vec<(&str, &Value)> = view
        .iter()
        .filter(|(k, _)| !NOT_IN_KEY.contains(k))
        .collect();
    if !fields.is_sorted_by(|a, b| a.0 <= b.0) {
        fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    buf.push(b'{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(&mut buf, k);
        buf.push(b':');
        match (scope, k) {
            (Scope::Partition(Some(turn)), "messages") => write_messages_without(&mut buf, v, turn),
            (Scope::Partition(None), "prompt") => buf.extend_from_slice(b"\"\""),
            _ => write_canonical(&mut buf, v),
        }
    }
    buf.push(b'}');
    let digest = ring::digest::digest(&ring::digest::SHA256, &buf);
    Key(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
}

/// `messages` with the content of message `turn` left out (its role and other fields kept).
fn write_messages_without(buf: &mut Vec<u8>, messages: &Value, turn: usize) {
    let Value::Array(items) = messages else {
        return write_canonical(buf, messages);
    };
    buf.push(b'[');
    for (i, m) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match (i == turn, m) {
            (true, Value::Object(map)) => {
                let mut keys: Vec<&String> = map.keys().filter(|k| *k != "content").collect();
                keys.sort_unstable();
                buf.push(b'{');
                for (j, k) in keys.into_iter().enumerate() {
                    if j > 0 {
                        buf.push(b',');
                    }
                    write_str(buf, k);
                    buf.push(b':');
                    write_canonical(buf, &map[k]);
                }
                buf.push(b'}');
            }
            _ => write_canonical(buf, m),
        }
    }
    buf.push(b']');
}

/// JSON with object keys sorted and no whitespace.
fn write_canonical(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            let write = |buf: &mut Vec<u8>, i: usize, k: &str, v: &Value| {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k);
                buf.push(b':');
                write_canonical(buf, v);
            };
            buf.push(b'{');
            // serde_json's map iterates in key order unless its `preserve_order` feature is
            // on somewhere in the build: sort only then.
            if map.keys().is_sorted() {
                for (i, (k, v)) in map.iter().enumerate() {
                    write(buf, i, k, v);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    write(buf, i, k, v);
                }
            }
            buf.push(b'}');
        }
        Value::Array(items) => {
            buf.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_canonical(buf, v);
            }
            buf.push(b']');
        }
        other => serde_json::to_writer(&mut *buf, other).expect("writing to a Vec cannot fail"),
    }
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing to a Vec cannot fail");
}

/// The index of the last message and its text when it is the user's (`None` index: the
/// completion `prompt`), for semantic comparison.
fn last_user_turn(view: &RequestView) -> Option<(Option<usize>, String)> {
    if let Some(messages) = view.messages() {
        let (index, last) = messages.iter().enumerate().next_back()?;
        if last.get("role").and_then(Value::as_str) != Some("user") {
            return None;
        }
        let text = message_text(last.get("content")?)?;
        return Some((Some(index), text));
    }
    match view.get("prompt") {
        Some(Value::String(prompt)) => Some((None, prompt.clone())),
        _ => None,
    }
}

/// The text of a message's content: a string, or the text parts of a list (a list with any
/// other part, an image say, has no text to compare: `None`).
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                if part.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(part.get("text")?.as_str()?);
            }
            Some(text)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: &str) -> RequestView {
        RequestView::parse(bytes::Bytes::copy_from_slice(json.as_bytes())).unwrap()
    }

    const INPUT: KeyInput<'static> = KeyInput {
        tenant: "team",
        namespace: "ns",
        target: "openai",
        endpoint: "/v1/chat/completions",
    };

    fn key(json: &str) -> Key {
        exact_key(&view(json), &INPUT)
    }

    #[test]
    fn order_whitespace_and_shape_fields_do_not_change_the_key() {
        let base =
            key(r#"{"model":"m","temperature":0.5,"messages":[{"role":"user","content":"q"}]}"#);
        for same in [
            r#"{ "temperature": 0.5, "model": "m", "messages": [ { "content": "q", "role": "user" } ] }"#,
            r#"{"model":"m","temperature":0.5,"messages":[{"role":"user","content":"q"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","temperature":0.5,"messages":[{"role":"user","content":"q"}],"user":"u-1","metadata":{"a":"b"}}"#,
        ] {
            assert_eq!(key(same), base, "{same}");
        }
    }

    #[test]
    fn every_answer_changing_field_changes_the_key() {
        let base = key(r#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#);
        for other in [
            r#"{"model":"m2","messages":[{"role":"user","content":"q"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q2"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"n":2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"seed":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"tool_choice":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"some_future_field":1}"#,
        ] {
            assert_ne!(key(other), base, "{other}");
        }
    }

    #[test]
    fn tenant_target_and_endpoint_are_in_the_key() {
        let v = view(r#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#);
        let base = exact_key(&v, &INPUT);
        for input in [
            KeyInput {
                namespace: "other",
                ..INPUT
            },
            KeyInput {
                target: "anthropic",
                ..INPUT
            },
            KeyInput {
                endpoint: "/v1/completions",
                ..INPUT
            },
            // Length-prefixed: moving a character across the boundary is another key.
            KeyInput {
                namespace: "nso",
                target: "penai",
                ..INPUT
            },
        ] {
            assert_ne!(exact_key(&v, &input), base, "{input:?}");
        }
    }

    #[test]
    fn override_params_change_the_key_through_the_view() {
        let v = view(r#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#);
        let mut params = serde_json::Map::new();
        params.insert("model".into(), "gpt-4o".into());
        let overridden = v.with_overrides(&params).unwrap();
        assert_eq!(
            exact_key(&overridden, &INPUT),
            key(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"q"}]}"#)
        );
    }

    #[test]
    fn partitions_leave_out_only_the_last_user_turn() {
        let p = |json: &str| partition(&view(json), &INPUT);
        let (a, text) = p(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"What is 2+2?"}]}"#).unwrap();
        assert_eq!(text, "What is 2+2?");
        let (b, _) = p(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"what's two plus two"}]}"#).unwrap();
        assert_eq!(a, b);
        let (c, _) = p(r#"{"model":"m","messages":[{"role":"system","content":"other"},{"role":"user","content":"What is 2+2?"}]}"#).unwrap();
        assert_ne!(a, c, "the system prompt is in the partition");
        let (d, _) = p(r#"{"model":"m","temperature":1,"messages":[{"role":"system","content":"s"},{"role":"user","content":"What is 2+2?"}]}"#).unwrap();
        assert_ne!(a, d, "parameters are in the partition");
        // Not a user turn last, or not text: no semantic comparison.
        assert!(p(r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#).is_none());
        assert!(p(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#).is_none());
        let (_, parts) = p(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#).unwrap();
        assert_eq!(parts, "a\nb");
        let (_, prompt) = p(r#"{"model":"m","prompt":"Say hi"}"#).unwrap();
        assert_eq!(prompt, "Say hi");
        // The exact key and the partition never collide.
        let v = view(r#"{"model":"m","prompt":"Say hi"}"#);
        assert_ne!(partition(&v, &INPUT).unwrap().0, exact_key(&v, &INPUT));
    }
}
