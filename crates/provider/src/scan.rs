//! A reader of JSON that walks the bytes once and keeps only what a translation needs
//! (strings borrowed when they have no escapes), without building a JSON tree: most of a
//! stream's chunks are a few words of text wrapped in metadata. Gemini's answers and the
//! OpenAI chunks of the inbound Messages API are read with it.

use std::borrow::Cow;

/// JSON text without the whitespace between tokens (`{"city": "Paris"}` → `{"city":"Paris"}`),
/// keys kept in their order.
pub(crate) fn compact(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            out.push(b);
            match b {
                b'\\' if !escaped => escaped = true,
                b'"' if !escaped => in_string = false,
                _ => escaped = false,
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    // The raw value was read from valid UTF-8 and only ASCII whitespace was removed.
    String::from_utf8(out).unwrap_or_default()
}

/// A cursor over JSON bytes: enough of a parser to walk an answer and skip what is not
/// needed. Every method returns `None` on malformed input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
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
            self.at = start + self.string_end(start)?;
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

    /// The offset from `start` of the quote that ends the string literal begun before it.
    fn string_end(&self, start: usize) -> Option<usize> {
        let mut escaped = false;
        for (i, &b) in self.buf.get(start..)?.iter().enumerate() {
            match b {
                b'\\' if !escaped => escaped = true,
                b'"' if !escaped => return Some(i),
                _ => escaped = false,
            }
        }
        None
    }

    /// A string, unescaped (by serde_json, when it has escapes; else borrowed).
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        let end = start + 1 + self.string_end(start + 1)?;
        self.at = end + 1;
        let literal = &self.buf[start..=end];
        if literal.contains(&b'\\') {
            serde_json::from_slice::<String>(literal)
                .ok()
                .map(Cow::Owned)
        } else {
            std::str::from_utf8(&literal[1..literal.len() - 1])
                .ok()
                .map(Cow::Borrowed)
        }
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.ws();
        let start = self.at;
        while self.buf.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        std::str::from_utf8(&self.buf[start..self.at])
            .ok()?
            .parse()
            .ok()
    }

    /// Any value, skipped; its bytes returned.
    pub(crate) fn raw(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.at;
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip())?,
            b'[' => self.array(Reader::skip)?,
            b'"' => {
                self.at = start + 1 + self.string_end(start + 1)? + 1;
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
