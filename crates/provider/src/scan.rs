//! A reader of JSON that walks the bytes once and keeps only what a translation needs
//! (strings borrowed when they have no escapes), without building a JSON tree: most of a
//! stream's chunks are a few words of text wrapped in metadata. Gemini's answers and the
//! OpenAI chunks of the inbound Messages API are read with it. What it hands over verbatim (a
//! function call's `args`, ids) is written out escaped by the writers here, without a
//! `String` in between.

use std::borrow::Cow;

use crate::json::Json;

/// Writes the JSON text `raw` as a JSON string of its compact form (no white space between
/// tokens: `{"city": "Paris"}` → `"{\"city\":\"Paris\"}"`, keys kept in their order),
/// byte for byte as `out.str` would write the compacted text, without building it first: a
/// function call's `args` become OpenAI's `arguments` on every call chunk.
pub(crate) fn write_compact_str(out: &mut Json, raw: &str) {
    // Room kept at the end of `buf` for what one step writes (a backslash and the byte it
    // escapes, up to six bytes) and the closing quote.
    const ROOM: usize = 2 + 6 + 1;
    let bytes = raw.as_bytes();
    // Gathered on the stack and written a buffer at a time: the text is mostly short pieces
    // between quotes, each of which would otherwise be a copy of its own.
    let mut buf = [0u8; 256];
    buf[0] = b'"';
    let mut len = 1;
    let mut in_string = false;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        at += 1;
        if len > buf.len() - ROOM {
            out.raw(&buf[..len]);
            len = 0;
        }
        // Most bytes are neither white space, a control, a quote nor a backslash.
        if b > b'"' && b != b'\\' {
            buf[len] = b;
            len += 1;
            continue;
        }
        match b {
            b'"' => in_string = !in_string,
            // Inside a string a backslash takes the byte after it along, whatever it is (an
            // escaped quote does not end the string).
            b'\\' if in_string => {
                len += escape_into(&mut buf[len..], b);
                if let Some(&next) = bytes.get(at) {
                    at += 1;
                    len += escape_into(&mut buf[len..], next);
                }
                continue;
            }
            _ if !in_string && b.is_ascii_whitespace() => continue,
            _ => {}
        }
        len += escape_into(&mut buf[len..], b);
    }
    buf[len] = b'"';
    out.raw(&buf[..=len]);
}

/// Writes `s` escaped as the inside of a JSON string, as `out.str` escapes it (serde_json's
/// escapes: the short ones, else `\u00xx`), so pieces of one string (a tool-call id made of a
/// response id and a signature) go out without being joined first.
pub(crate) fn write_str_inside(out: &mut Json, s: &str) {
    let bytes = s.as_bytes();
    // Runs of bytes that need no escape are copied whole: ids and signatures have none.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if ESCAPE[usize::from(b)] == 0 {
            continue;
        }
        out.raw(&bytes[start..i]);
        let mut escape = [0; 6];
        let len = escape_into(&mut escape, b);
        out.raw(&escape[..len]);
        start = i + 1;
    }
    out.raw(&bytes[start..]);
}

/// For each byte, the letter of its escape inside a JSON string (`u` for `\u00xx`), or 0 for
/// a byte written as it is: serde_json's choices, so both writers agree byte for byte.
const ESCAPE: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes `b` as it goes inside a JSON string at the start of `to` (room for six bytes);
/// returns how many bytes that took.
fn escape_into(to: &mut [u8], b: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(b)] {
        0 => {
            to[0] = b;
            1
        }
        b'u' => {
            to[..6].copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            6
        }
        letter => {
            to[0] = b'\\';
            to[1] = letter;
            2
        }
    }
}

/// The offset of the first byte of `bytes` that is `a` or `b`. Chunks are searched for a
/// line's end and strings for their closing quote before anything else is done with them:
/// eight bytes at a time, that costs a fraction of a byte-wise search.
pub(crate) fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    const fn splat(b: u8) -> u64 {
        u64::from_ne_bytes([b; 8])
    }
    // A byte of `x` that is zero gets its high bit set in `zeros(x)`; so may the bytes after
    // it (a borrow carries), never one before it: the lowest flag is the first zero, the
    // word being read little-endian.
    let zeros = |x: u64| x.wrapping_sub(splat(0x01)) & !x & splat(0x80);
    let (all_a, all_b) = (splat(a), splat(b));
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        let word = u64::from_le_bytes(eight);
        let flags = zeros(word ^ all_a) | zeros(word ^ all_b);
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = words.remainder().iter().position(|&x| x == a || x == b)?;
    Some(at + tail)
}

/// A cursor over JSON bytes: enough of a parser to walk an answer and skip what is not
/// needed. Every method returns `None` on malformed input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    /// `buf` as text when it is UTF-8, as it nearly always is: checked once, the strings in
    /// it are then cut out of it rather than each checked again.
    text: Option<&'a str>,
    at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            text: std::str::from_utf8(buf).ok(),
            at: 0,
        }
    }

    /// The text of `buf[start..end]`, `None` when it is not UTF-8.
    fn text(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(start..end),
            None => std::str::from_utf8(self.buf.get(start..end)?).ok(),
        }
    }

    /// Whether only white space is left: a document ends after its value.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.ws();
        (self.at == self.buf.len()).then_some(())
    }

    /// A string, or `None` (the value skipped) for any other value: a field read as
    /// `Value::as_str` reads it.
    pub(crate) fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.peek()? == b'"' {
            self.string().map(Some)
        } else {
            self.skip().map(|()| None)
        }
    }

    /// An unsigned integer, or `None` (the value skipped) for any other value: a field read
    /// as `Value::as_u64` reads it.
    pub(crate) fn opt_u64(&mut self) -> Option<Option<u64>> {
        let raw = self.raw()?;
        Some(std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok()))
    }

    pub(crate) fn ws(&mut self) {
        while self.buf.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.at).copied()
    }

    pub(crate) fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// An object, calling `f` with each key (raw, escapes left as they are: the keys read are
    /// plain ASCII) positioned at its value, which `f` must consume.
    pub(crate) fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let start = self.at;
            self.at = start + self.string_end(start)?.0;
            let key = &self.buf[start..self.at];
            self.at += 1;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array, calling `f` positioned at each element, which `f` must consume.
    pub(crate) fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            f(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The offset from `start` of the quote that ends the string literal begun before it,
    /// and whether the literal has escapes.
    fn string_end(&self, start: usize) -> Option<(usize, bool)> {
        let rest = self.buf.get(start..)?;
        let mut at = 0;
        // From one quote or backslash to the next: a backslash escapes the byte after it,
        // whatever it is, so the search goes on past that byte.
        loop {
            let found = at + find_either(rest.get(at..)?, b'"', b'\\')?;
            if rest[found] == b'"' {
                return Some((found, at > 0));
            }
            at = found + 2;
        }
    }

    /// A string, unescaped (by serde_json, when it has escapes; else borrowed).
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        let (len, escapes) = self.string_end(start + 1)?;
        let end = start + 1 + len;
        self.at = end + 1;
        let literal = &self.buf[start..=end];
        if escapes {
            serde_json::from_slice::<String>(literal)
                .ok()
                .map(Cow::Owned)
        } else {
            self.text(start + 1, end).map(Cow::Borrowed)
        }
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.ws();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(digit) = self.buf.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        (self.at > start).then_some(n)
    }

    /// Any value, skipped; its bytes returned.
    pub(crate) fn raw(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.at;
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip())?,
            b'[' => self.array(Reader::skip)?,
            b'"' => {
                self.at = start + 1 + self.string_end(start + 1)?.0 + 1;
            }
            _ => {
                while self
                    .buf
                    .get(self.at)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
                {
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
            }
        }
        Some(&self.buf[start..self.at])
    }

    /// Any value, skipped; its text returned, or `Some(None)` when it is not UTF-8.
    pub(crate) fn raw_str(&mut self) -> Option<Option<&'a str>> {
        self.ws();
        let start = self.at;
        self.skip()?;
        Some(self.text(start, self.at))
    }

    pub(crate) fn skip(&mut self) -> Option<()> {
        self.raw().map(|_| ())
    }
}

/// Deeper documents are refused, as serde_json refuses them.
const MAX_DEPTH: usize = 128;

/// A JSON value borrowed from the bytes it was read from: the tree of a request that is
/// translated whole, built without a `String` for every key and without a map per object.
///
/// It reads as a `serde_json::Value` would and writes as one would (see [`Node::write`]):
/// an object's keys sorted with the last of a repeated key kept, numbers written as
/// serde_json writes them. Sorting waits until an object is written or walked whole: most
/// are only looked into.
#[derive(Debug, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// A number, as written in the document (checked against JSON's grammar).
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// In the document's order, a repeated key as many times as it comes (the last one
    /// counts, as in a map).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Reads a whole document; `None` when it is not valid JSON (or nests too deep).
    pub(crate) fn parse(buf: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let node = r.node(0)?;
        r.end()?;
        Some(node)
    }

    /// The node of a `serde_json::Value`, borrowing its strings.
    pub(crate) fn of(value: &'a serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Node::String(Cow::Borrowed(s)),
            Value::Array(items) => Node::Array(items.iter().map(Node::of).collect()),
            // A map's entries come sorted, each key once.
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::of(v)))
                    .collect(),
            ),
        }
    }

    /// The value of `key`, for an object that has it (the last, when repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        let Node::Object(entries) = self else {
            return None;
        };
        entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The node itself when it is an object (for `get`).
    pub(crate) fn as_object(&self) -> Option<&Self> {
        self.is_object().then_some(self)
    }

    /// The entries of an object as a map has them: sorted by key, the last of a repeated
    /// key kept; none for any other node.
    pub(crate) fn entries(&self) -> Vec<&(Cow<'a, str>, Node<'a>)> {
        let Node::Object(entries) = self else {
            return Vec::new();
        };
        // Reversed, then sorted stably: of a repeated key the last comes first, and is kept.
        let mut sorted: Vec<_> = entries.iter().rev().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|later, first| later.0 == first.0);
        sorted
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    pub(crate) fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub(crate) fn is_number(&self) -> bool {
        matches!(self, Node::Number(_))
    }

    /// A non-negative integer that fits in a `u64` (`1.0` is not one, as for a `Value`).
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Writes the node as serde_json writes the `Value` it stands for: compact, keys sorted,
    /// strings escaped alike, numbers in serde_json's form.
    pub(crate) fn write(&self, out: &mut crate::json::Json) {
        match self {
            Node::Null => out.raw(b"null"),
            Node::Bool(true) => out.raw(b"true"),
            Node::Bool(false) => out.raw(b"false"),
            Node::Number(n) => {
                // A plain integer is written as it is read; any other goes through serde_json
                // (`1.50` is `1.5`, `1e2` is `100.0`).
                if n.parse::<u64>().is_ok() {
                    out.raw(n.as_bytes());
                } else if let Ok(number) = n.parse::<serde_json::Number>() {
                    out.value(&serde_json::Value::Number(number));
                }
            }
            Node::String(s) => out.str(s),
            Node::Array(items) => {
                out.raw(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.raw(b",");
                    }
                    item.write(out);
                }
                out.raw(b"]");
            }
            Node::Object(_) => {
                out.raw(b"{");
                for (i, (key, value)) in self.entries().into_iter().enumerate() {
                    if i > 0 {
                        out.raw(b",");
                    }
                    out.str(key);
                    out.raw(b":");
                    value.write(out);
                }
                out.raw(b"}");
            }
        }
    }
}

impl<'a> Reader<'a> {
    /// Any value, strictly: what serde_json refuses is `None`.
    fn node(&mut self, depth: usize) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let mut entries: Vec<(Cow<'a, str>, Node<'a>)> = Vec::new();
                self.object(|r, key| {
                    entries.push((unescape(key)?, r.node(depth + 1)?));
                    Some(())
                })?;
                Some(Node::Object(entries))
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let mut items = Vec::new();
                self.array(|r| {
                    items.push(r.node(depth + 1)?);
                    Some(())
                })?;
                Some(Node::Array(items))
            }
            b'"' => {
                let start = self.at + 1;
                let s = self.string()?;
                // serde_json refuses control characters inside a string (and checks them
                // itself in a string with escapes).
                if matches!(s, Cow::Borrowed(_))
                    && self.buf[start..self.at - 1].iter().any(|&b| b < 0x20)
                {
                    return None;
                }
                Some(Node::String(s))
            }
            _ => {
                let raw = self.raw()?;
                match raw {
                    b"null" => Some(Node::Null),
                    b"true" => Some(Node::Bool(true)),
                    b"false" => Some(Node::Bool(false)),
                    _ if is_number(raw) => std::str::from_utf8(raw)
                        .ok()
                        .map(|n| Node::Number(Cow::Borrowed(n))),
                    _ => None,
                }
            }
        }
    }
}

/// The text of a raw key (the bytes between its quotes), unescaped and checked.
fn unescape(raw: &[u8]) -> Option<Cow<'_, str>> {
    if raw.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        return serde_json::from_slice::<String>(&quoted)
            .ok()
            .map(Cow::Owned);
    }
    if raw.iter().any(|&b| b < 0x20) {
        return None;
    }
    std::str::from_utf8(raw).ok().map(Cow::Borrowed)
}

/// Whether `raw` is a number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_number(raw: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut s = raw.strip_prefix(b"-").unwrap_or(raw);
    match s.first() {
        Some(b'0') => s = &s[1..],
        Some(b'1'..=b'9') => s = &s[digits(s)..],
        _ => return false,
    }
    if let Some(rest) = s.strip_prefix(b".") {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    if let Some(rest) = s.strip_prefix(b"e").or_else(|| s.strip_prefix(b"E")) {
        let rest = rest
            .strip_prefix(b"+")
            .or_else(|| rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write_compact_str` must match: the text compacted first, then written by
    /// serde_json (the path it replaces).
    fn compacted_then_written(raw: &str) -> Vec<u8> {
        let mut compact = String::new();
        let mut in_string = false;
        let mut escaped = false;
        for c in raw.chars() {
            if in_string {
                compact.push(c);
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => in_string = false,
                    _ => escaped = false,
                }
            } else if !c.is_ascii_whitespace() {
                in_string = c == '"';
                compact.push(c);
            }
        }
        serde_json::to_vec(&compact).unwrap()
    }

    #[test]
    fn compact_str_is_the_compact_text_as_a_json_string() {
        for raw in [
            "{}",
            "{\"city\": \"Paris\",\"day\": \"tomorrow\"}",
            "{\n\t\"a b\" : [ 1 , 2.5e3, true, null ],\r\n \"c\": {\"d\": \"x  y\"} }",
            r#"{"q": "say \"hi\" \\ \/ \n \u00e9", "e": "\\\\", "k": "\\"}"#,
            "{\"raw control\": \"a\u{1}b\u{1f}c\u{8}\u{c}\"}",
            "{\"é\": \"日本 \u{7f} 🦀\"}",
            "\"just a string\"",
            "",
            // Longer than the writer's buffer, with escapes across its flushes.
            &format!(
                "{{\"long\": \"{}\", \"n\": [{}]}}",
                "a \\\"é\u{1}\t".repeat(80),
                "1, ".repeat(90) + "2"
            ),
        ] {
            let mut out = Json::with_capacity(0);
            write_compact_str(&mut out, raw);
            assert_eq!(
                String::from_utf8(out.into_vec()).unwrap(),
                String::from_utf8(compacted_then_written(raw)).unwrap(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn str_inside_escapes_as_serde_json_does() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for s in [every_ascii.as_str(), "", "plain", "é\"日本\"🦀\\"] {
            let mut out = Json::with_capacity(0);
            out.raw(b"\"");
            write_str_inside(&mut out, s);
            out.raw(b"\"");
            assert_eq!(out.into_vec(), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn find_either_finds_what_a_byte_wise_search_finds() {
        // One or two targets at every offset of every length up to a few words, among bytes
        // one bit from them (`\x0b` and `\x0e` next to `\n`, `#` next to `"`), with the high
        // bit set, and zero: what a word-wise search could mistake for a target.
        let filler = [0x0b, 0x0e, b'#', 0x8a, 0xff, 0x00];
        for (a, b) in [(b'\n', b'\n'), (b'"', b'\\')] {
            for len in 0..40 {
                for at in 0..=len {
                    let mut bytes: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
                    for (i, target) in [(at, b), (at + 3, a)] {
                        if let Some(byte) = bytes.get_mut(i) {
                            *byte = target;
                        }
                    }
                    let expected = bytes.iter().position(|&x| x == a || x == b);
                    assert_eq!(find_either(&bytes, a, b), expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn strings_end_at_the_first_quote_not_escaped() {
        for (doc, expected) in [
            (r#""plain""#, "plain"),
            (r#""a\"b""#, "a\"b"),
            (r#""a\\""#, "a\\"),
            (r#""a\\\"""#, "a\\\""),
            (r#""\\\\""#, "\\\\"),
        ] {
            let mut r = Reader::new(doc.as_bytes());
            assert_eq!(r.string().as_deref(), Some(expected), "{doc}");
            assert_eq!(r.end(), Some(()), "{doc}");
        }
        for unterminated in [r#""abc"#, r#""a\""#, r#""a\"#, "\""] {
            assert_eq!(Reader::new(unterminated.as_bytes()).string(), None);
        }
    }
}
