//! Cache keys: a SHA-256 of everything that can change an answer, canonicalised.
//!
//! The exact key covers, in a canonical encoding (object keys sorted, no whitespace, numbers
//! as their JSON text): the tenant namespace, the target's identity (provider and endpoint),
//! and every top-level field of the request body except the ones that only change the
//! *shape* of the answer or who asked: `stream`, `stream_options`, `user`, `metadata`. Unknown
//! fields are in the key: a field we do not know might change the answer, so it must.
//!
//! The exact key's encoding is written straight from the body's bytes by the strict one-pass
//! reader (no parsed tree is built for it), or, for a body that reader refuses, from the
//! parsed fields: both write the same bytes (a property test holds them to it).
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
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use portcullis_core::RequestView;
use portcullis_core::observe::json::write_str;
use serde_json::Value;

/// Top-level body fields that never change the answer's content.
pub const NOT_IN_KEY: [&str; 4] = ["stream", "stream_options", "user", "metadata"];

/// A 32-byte cache key.
///
/// Its [`Hash`] writes its first eight bytes, as one `u64`: a key is a SHA-256 digest, every
/// bit of it uniform, so eight bytes pick a bucket as well as 32 (keys are told apart by
/// `Eq`, on all 32). The cache's own maps hash it with a seeded hash of their own
/// (`KeyState`, private to the crate).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (head, _) = self.0.split_first_chunk::<8>().expect("32 bytes");
        state.write_u64(u64::from_le_bytes(*head));
    }
}

/// The hasher of the cache's maps of [`Key`]s (the memory store's entries and partitions,
/// the misses in flight): one folded multiply of the key's first eight bytes with two
/// secrets of the map's, where std's SipHash ran its rounds over all 32 bytes (under load,
/// with the earlier moka store, that was ~1.8 µs per request of the every-layer config). The
/// key is already a digest; the secrets keep a client who grinds request bodies for digests
/// from choosing which keys share a bucket.
#[derive(Clone, Debug)]
pub(crate) struct KeyState {
    seed: u64,
    multiplier: u64,
}

impl KeyState {
    /// A state with secrets of its own (drawn from std's `RandomState`).
    pub(crate) fn new() -> Self {
        let random = RandomState::new();
        Self {
            seed: random.hash_one(0u8),
            // Odd: a multiplier that loses no bit of the product's low half.
            multiplier: random.hash_one(1u8) | 1,
        }
    }
}

impl Default for KeyState {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// See [`KeyState`]. Other values than a key are hashed eight bytes at a time, each folded in
/// the same way.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    state: u64,
    multiplier: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        // The 128-bit product's halves folded together: every bit of the word reaches the
        // bits a map takes for its index and its tags.
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

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
    let prefix = buf.len();
    let from_bytes =
        matches!(scope, Scope::Exact) && canonical::body(view.bytes(), &mut buf).is_some();
    if !from_bytes {
        buf.truncate(prefix);
        write_fields(&mut buf, view, scope);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &buf);
    Key(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
}

/// The body's fields in the key (sorted, canonical), from the view's parsed fields.
fn write_fields(buf: &mut Vec<u8>, view: &RequestView, scope: Scope) {
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
        write_str(buf, k);
        buf.push(b':');
        match (scope, k) {
            (Scope::Partition(Some(turn)), "messages") => write_messages_without(buf, v, turn),
            (Scope::Partition(None), "prompt") => buf.extend_from_slice(b"\"\""),
            _ => write_canonical(buf, v),
        }
    }
    buf.push(b'}');
}

/// The exact key's canonical encoding written straight from the body's bytes, without the
/// parsed tree (a request whose only reader of other fields than `model` and `stream` is the
/// cache never builds one): the same bytes [`write_fields`] writes from the tree, or `None`
/// for a body the strict one-pass reader refuses (escaped or non-ASCII keys, a key given
/// twice, numbers it leaves to serde_json, nesting past [`MAX_DEPTH`]), which is then keyed
/// from the tree.
mod canonical {
    use portcullis_core::observe::json::Reader;
    use std::borrow::Cow;

    use super::{NOT_IN_KEY, write_str};

    /// Nesting past this is keyed from the tree.
    pub(super) const MAX_DEPTH: u32 = 64;

    /// Where one member of an object being written lies in the output: from its key's quote
    /// to its value's end.
    struct Member {
        start: usize,
        key_len: usize,
        end: usize,
    }

    /// What one encoding reuses: the members of the objects open around the value being
    /// written, and room to put an object's members in order.
    #[derive(Default)]
    struct Scratch {
        members: Vec<Member>,
        moved: Vec<u8>,
    }

    /// The body's fields but those not in the key, as an object with sorted keys.
    pub(super) fn body(body: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let mut r = Reader::for_value(body);
        if r.peek()? != b'{' {
            return None;
        }
        let mut scratch = Scratch::default();
        object(&mut r, body, out, &mut scratch, 0, true)?;
        r.end()
    }

    fn value(
        r: &mut Reader<'_>,
        body: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
        depth: u32,
    ) -> Option<()> {
        match r.peek()? {
            b'{' => object(r, body, out, scratch, depth + 1, false),
            b'[' => {
                if depth + 1 > MAX_DEPTH {
                    return None;
                }
                out.push(b'[');
                let mut first = true;
                r.array(|r| {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    value(r, body, out, scratch, depth + 1)
                })?;
                out.push(b']');
                Some(())
            }
            b'"' => {
                match r.string()?.text()? {
                    // Nothing serde_json would escape: no quote, backslash or control byte
                    // is left unescaped in a string the reader took.
                    Cow::Borrowed(text) => {
                        out.push(b'"');
                        out.extend_from_slice(text.as_bytes());
                        out.push(b'"');
                    }
                    Cow::Owned(text) => write_str(out, &text),
                }
                Some(())
            }
            _ => {
                let raw = r.value_bytes()?;
                if plain_integer(raw) || matches!(raw, b"true" | b"false" | b"null") {
                    out.extend_from_slice(raw);
                } else {
                    // As the tree holds it: `1.50` is `1.5`, `-0` is `-0.0`.
                    let number: serde_json::Number = serde_json::from_slice(raw).ok()?;
                    serde_json::to_writer(&mut *out, &number).ok()?;
                }
                Some(())
            }
        }
    }

    /// Digits a `u64` holds and serde_json writes back the same: no sign, no leading zero.
    fn plain_integer(raw: &[u8]) -> bool {
        !raw.is_empty()
            && raw.len() <= 19
            && raw.iter().all(u8::is_ascii_digit)
            && (raw.len() == 1 || raw[0] != b'0')
    }

    /// A member's key as written (the bytes between its quotes).
    fn name<'o>(out: &'o [u8], m: &Member) -> &'o [u8] {
        &out[m.start + 1..m.start + 1 + m.key_len]
    }

    /// An object, written member by member as the body has them, then put in key order.
    /// `top`: the body itself, whose fields not in the key are left out.
    fn object(
        r: &mut Reader<'_>,
        body: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
        depth: u32,
        top: bool,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let first = scratch.members.len();
        out.push(b'{');
        let open = out.len();
        r.object(|r, key| {
            if top && NOT_IN_KEY.iter().any(|k| k.as_bytes() == key) {
                return r.skip();
            }
            if scratch.members.len() > first {
                out.push(b',');
            }
            let start = out.len();
            // Keys come plain (the reader refuses escaped and non-ASCII ones).
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            value(r, body, out, scratch, depth)?;
            scratch.members.push(Member {
                start,
                key_len: key.len(),
                end: out.len(),
            });
            Some(())
        })?;
        let members = &mut scratch.members[first..];
        let sorted = members
            .windows(2)
            .all(|w| name(out, &w[0]) < name(out, &w[1]));
        if !sorted {
            members.sort_unstable_by(|a, b| name(out, a).cmp(name(out, b)));
            // A key given twice: the tree keeps the last, which order alone cannot tell.
            if members
                .windows(2)
                .any(|w| name(out, &w[0]) == name(out, &w[1]))
            {
                return None;
            }
            scratch.moved.clear();
            scratch.moved.extend_from_slice(&out[open..]);
            out.truncate(open);
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&scratch.moved[m.start - open..m.end - open]);
            }
        }
        scratch.members.truncate(first);
        out.push(b'}');
        Some(())
    }
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
    #[test]
    fn keys_hash_apart_and_each_map_hashes_them_its_own_way() {
        use std::collections::{HashMap, HashSet};
        // Keys as a client could make them: digests of bodies that differ in one byte.
        let keys: Vec<Key> = (0..10_000u32)
            .map(|i| {
                let digest = ring::digest::digest(&ring::digest::SHA256, &i.to_le_bytes());
                Key(digest.as_ref().try_into().unwrap())
            })
            .collect();
        let (a, b) = (KeyState::new(), KeyState::new());
        let hashes: HashSet<u64> = keys.iter().map(|k| a.hash_one(k)).collect();
        assert_eq!(
            hashes.len(),
            keys.len(),
            "no two of 10,000 keys share a hash"
        );
        // The low bits (a map's index) spread as random ones would: 10,000 keys over 4,096
        // buckets use 3,740 of them on average (e^-2.44 left empty), give or take 18.
        let buckets: HashSet<u64> = keys.iter().map(|k| a.hash_one(k) & 4095).collect();
        assert!(
            buckets.len() > 3_650,
            "{} of 4,096 buckets used",
            buckets.len()
        );
        let tags: HashSet<u64> = keys.iter().map(|k| a.hash_one(k) >> 57).collect();
        assert_eq!(
            tags.len(),
            128,
            "the top seven bits (a map's tags) take every value"
        );
        // Another map's secrets: other hashes for the same keys.
        let same = keys
            .iter()
            .filter(|k| a.hash_one(k) == b.hash_one(k))
            .count();
        assert_eq!(same, 0);
        // Keys equal in the eight bytes hashed are still two entries.
        let mut x = [7u8; 32];
        let y = x;
        x[31] = 8;
        let mut map = HashMap::with_hasher(KeyState::new());
        map.insert(Key(x), 1);
        map.insert(Key(y), 2);
        assert_eq!((map[&Key(x)], map[&Key(y)], map.len()), (1, 2, 2));
    }

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

    /// The body's fields in the key, written from the tree (what every key was before the
    /// bytes were read directly).
    fn from_tree(body: &[u8]) -> Vec<u8> {
        let view = RequestView::parse(bytes::Bytes::copy_from_slice(body)).unwrap();
        let mut out = Vec::new();
        write_fields(&mut out, &view, Scope::Exact);
        out
    }

    fn from_bytes(body: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        canonical::body(body, &mut out).map(|()| out)
    }

    #[test]
    fn usual_bodies_are_keyed_from_their_bytes_as_from_their_tree() {
        let bodies = [
            r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"temperature":0.7,"max_tokens":256,"stream":true,"user":"u"}"#,
            r#" { "messages" : [ { "content" : [ {"type":"text","text":"a\nb \u00e9 \ud83d\ude00 \/ \"q\""} , {"type":"image_url","image_url":{"url":"data:x","detail":"low"}} ], "role" : "user" } ],
                "model":"m", "n":1, "seed":-12, "top_p":1.50, "z":null, "y":[true,false,[],{}], "metadata":{"b":"1"} } "#,
            r#"{"prompt":"Say hi","model":"m","logit_bias":{"50256":-100},"stop":["\n\n"],"big":18446744073709551616,"zero":-0,"frac":0.1}"#,
            r#"{}"#,
        ];
        for body in bodies {
            let direct = from_bytes(body.as_bytes()).expect("read from the bytes");
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(from_tree(body.as_bytes())).unwrap(),
                "{body}"
            );
        }
    }

    #[test]
    fn bodies_the_reader_refuses_are_keyed_from_their_tree() {
        let refused = [
            // A key given twice (the tree keeps the last), at the top and below.
            r#"{"model":"m","temperature":1,"temperature":2}"#,
            r#"{"model":"m","x":{"a":1,"b":2,"a":3}}"#,
            // Escaped and non-ASCII keys, exponents.
            r#"{"model":"m","a\u0062":1}"#,
            r#"{"model":"m","é":1}"#,
            r#"{"model":"m","t":1e2}"#,
        ];
        for body in refused {
            assert!(from_bytes(body.as_bytes()).is_none(), "{body}");
            let v = view(body);
            // The key is still the tree's.
            let mut buf = Vec::new();
            write_fields(&mut buf, &v, Scope::Exact);
            assert!(!buf.is_empty());
            assert_eq!(exact_key(&v, &INPUT), exact_key(&v, &INPUT));
        }
        // Duplicates resolved by the tree: the last value counts, as it always did.
        assert_eq!(
            key(r#"{"model":"m","temperature":1,"temperature":2}"#),
            key(r#"{"model":"m","temperature":2}"#)
        );
    }

    #[test]
    fn nesting_past_the_limit_is_keyed_from_the_tree() {
        let deep = |n: usize| {
            format!(
                "{{\"model\":\"m\",\"x\":{}1{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(from_bytes(deep(canonical::MAX_DEPTH as usize - 1).as_bytes()).is_some());
        assert!(from_bytes(deep(canonical::MAX_DEPTH as usize + 1).as_bytes()).is_none());
        let body = deep(100);
        assert_eq!(key(&body), key(&body));
    }

    mod read_as_the_tree {
        use super::{from_bytes, from_tree};
        use proptest::prelude::*;

        fn ws() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["", "", " ", "\n", "\t ", "\r\n  "])
        }

        fn leaf() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                r#""plain""#,
                r#""é ü 日本""#,
                r#""\u00e9""#,
                r#""a\nb\tc""#,
                r#""\"q\" \\ \/""#,
                r#""\ud83d\ude00""#,
                r#""\u0001\u001f\u007f""#,
                r#""""#,
                "0",
                "7",
                "-0",
                "-12",
                "1.50",
                "0.1",
                "2.0",
                "-3.25",
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "0.000001",
                "123456789012345678",
                "true",
                "false",
                "null",
            ])
            .prop_map(str::to_owned)
        }

        fn json() -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec![
                "a", "b", "role", "content", "model", "z", "stream", "user", "metadata", "A", "aa",
            ]);
            leaf().prop_recursive(4, 40, 5, move |inner| {
                prop_oneof![
                    (prop::collection::vec((inner.clone(), ws()), 0..5)).prop_map(|items| {
                        let items: Vec<String> = items
                            .into_iter()
                            .map(|(v, w)| format!("{w}{v}{w}"))
                            .collect();
                        format!("[{}]", items.join(","))
                    }),
                    (prop::collection::vec((key.clone(), inner, ws()), 0..5)).prop_map(|members| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }),
                ]
            })
        }

        fn body() -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec![
                "model",
                "messages",
                "stream",
                "user",
                "metadata",
                "stream_options",
                "temperature",
                "tools",
                "n",
                "x",
            ]);
            (prop::collection::vec((key, json(), ws()), 0..7), ws()).prop_map(|(members, w)| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}"))
                    .collect();
                format!("{w}{{{}}}{w}", members.join(","))
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

            /// Whatever the one pass reads, it writes as the tree would; a body the view
            /// refuses has no key at all.
            #[test]
            fn the_bytes_give_the_trees_encoding(body in body()) {
                let Ok(view) = portcullis_core::RequestView::parse(bytes::Bytes::copy_from_slice(body.as_bytes())) else {
                    return Ok(());
                };
                drop(view);
                if let Some(direct) = from_bytes(body.as_bytes()) {
                    prop_assert_eq!(
                        String::from_utf8(direct).unwrap(),
                        String::from_utf8(from_tree(body.as_bytes())).unwrap()
                    );
                }
            }
        }
    }
}
