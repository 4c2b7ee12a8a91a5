//! A strict one-pass reader of JSON bytes: walks a document once, checks it as it goes, and
//! hands back only the values its caller asks for (strings borrowed when they have no
//! escapes), without building a tree or a `String` per key.
//!
//! Beside it, [`write_str`] and [`write_value`] write JSON byte for byte as serde_json does,
//! without its generic serialiser, for the layers that write JSON by hand (the providers'
//! translations, the guard's results, the cache key).
//!
//! It is a fast path in front of serde_json, not a replacement: whatever it is unsure of
//! (a key with escapes, nesting past [`MAX_DEPTH`], a value of an unexpected type) it refuses
//! with `None`, and the caller reads the document with serde_json instead. So it may refuse
//! more than serde_json does, never less: every document it reads whole, serde_json reads too,
//! to the same values.

use std::borrow::Cow;

/// Nesting deeper than this is refused (serde_json refuses past 128).
const MAX_DEPTH: u32 = 64;

/// A cursor over JSON bytes. Every method returns `None` on input it does not read: malformed
/// JSON, or JSON it leaves to serde_json.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// Refuse numbers a `serde_json::Value` might refuse (see [`Reader::for_value`]).
    value_numbers: bool,
}

/// The fields of one object read so far, to refuse a repeated one (serde refuses a struct
/// with a field given twice; a `Value` keeps the last).
#[derive(Debug, Default)]
pub struct Fields(u8);

impl Fields {
    /// Marks field number `field` (below 8) as read; `None` if it was already.
    pub fn once(&mut self, field: u8) -> Option<()> {
        let bit = 1 << field;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// A string literal as written (the bytes between its quotes), its escapes already checked.
#[derive(Clone, Copy, Debug)]
pub struct RawStr<'a> {
    raw: &'a [u8],
    escaped: bool,
    ascii: bool,
}

impl<'a> RawStr<'a> {
    /// The string's text, unescaped; borrowed when it has no escapes. `None` when it is not
    /// UTF-8.
    pub fn text(self) -> Option<Cow<'a, str>> {
        if self.escaped {
            unescape(self.raw).map(Cow::Owned)
        } else {
            std::str::from_utf8(self.raw).ok().map(Cow::Borrowed)
        }
    }

    /// Whether the string is empty (its text too: an escape is never empty).
    pub fn is_empty(self) -> bool {
        self.raw.is_empty()
    }

    /// The bytes between the quotes, as written (escapes not undone).
    pub fn raw(self) -> &'a [u8] {
        self.raw
    }

    /// Whether it has an escape (its text is then not its bytes).
    pub fn is_escaped(self) -> bool {
        self.escaped
    }

    /// Whether every byte is ASCII (found by the scan that read it: no second pass).
    pub fn is_ascii(self) -> bool {
        self.ascii
    }

    /// Checks a string that is not read as text: serde_json refuses a string that is not
    /// UTF-8 wherever it reads one as text, so non-ASCII bytes are checked here too.
    pub fn check(self) -> Option<()> {
        if self.ascii || std::str::from_utf8(self.raw).is_ok() {
            Some(())
        } else {
            None
        }
    }
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            at: 0,
            value_numbers: false,
        }
    }

    /// A cursor for a caller that stands in for a read into a `serde_json::Value`, which
    /// parses every number and refuses one out of `f64`'s range (`1e999`, 400 digits) where
    /// serde skipping a field only checks its grammar: numbers with an exponent or more than
    /// 20 digits before the point are refused.
    pub fn for_value(buf: &'a [u8]) -> Self {
        Self {
            value_numbers: true,
            ..Self::new(buf)
        }
    }

    /// The offset of the next byte to read (white space before a value not yet skipped:
    /// [`Reader::peek`] first to stand at the value).
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Only JSON's four white space bytes (not form feed, which `is_ascii_whitespace` takes).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not white space, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// Whether only white space is left: a document ends after its value.
    pub fn end(&mut self) -> Option<()> {
        self.ws();
        (self.at == self.buf.len()).then_some(())
    }

    /// `null` as `Some(None)`, any other value read with `f`: an `Option` field.
    pub fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null").map(|()| None)
        } else {
            f(self).map(Some)
        }
    }

    /// An object, calling `f` with each key positioned at its value, which `f` must consume.
    /// Keys are handed over as written: one with escapes or non-ASCII bytes is refused (the
    /// keys a caller matches are plain ASCII, and serde_json would match an escaped one).
    pub fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            if key.escaped || !key.ascii {
                return None;
            }
            self.eat(b':')?;
            f(self, key.raw)?;
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
    pub fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
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

    /// A string literal, checked: no control characters, only JSON's escapes, `\u` escapes
    /// of surrogates only in pairs.
    #[inline(always)]
    pub fn string(&mut self) -> Option<RawStr<'a>> {
        // The opening quote, most often right here (a key after `{` or `,`, a value after
        // `:`); white space before it is read the long way.
        if self.buf.get(self.at) == Some(&b'"') {
            self.at += 1;
        } else {
            self.eat(b'"')?;
        }
        let start = self.at;
        // Plain ASCII to the closing quote: most keys and values.
        let i = special(self.buf, start, true)?;
        if self.buf[i] == b'"' {
            self.at = i + 1;
            return Some(RawStr {
                raw: &self.buf[start..i],
                escaped: false,
                ascii: true,
            });
        }
        self.string_rest(start, i)
    }

    /// The rest of a string from its first escape, non-ASCII or control byte at `i`: kept out
    /// of [`Reader::string`], whose usual path it would make heavier.
    #[cold]
    #[inline(never)]
    fn string_rest(&mut self, start: usize, mut i: usize) -> Option<RawStr<'a>> {
        let mut escaped = false;
        let mut ascii = true;
        loop {
            match self.buf[i] {
                b'"' => {
                    self.at = i + 1;
                    return Some(RawStr {
                        raw: &self.buf[start..i],
                        escaped,
                        ascii,
                    });
                }
                b'\\' => {
                    escaped = true;
                    self.at = i + escape_len(&self.buf[i..])?;
                }
                // Past the first non-ASCII byte, they are no longer looked for.
                0x80..=0xff => {
                    ascii = false;
                    self.at = i + 1;
                }
                _ => return None,
            }
            i = special(self.buf, self.at, ascii)?;
        }
    }

    /// An unsigned integer as serde_json reads a `u64`: digits only (no sign, fraction or
    /// exponent, which serde_json would read as a float and refuse), no leading zero, in range.
    pub fn u64(&mut self) -> Option<u64> {
        self.ws();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(&b) = self.buf.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.buf[start] == b'0') {
            return None;
        }
        Some(n)
    }

    /// Any value, checked and skipped.
    #[inline(always)]
    pub fn skip(&mut self) -> Option<()> {
        self.skip_at(0)
    }

    /// The next value as written (the white space around it left out), checked and skipped:
    /// for a layer that keeps a value's bytes to read, copy or parse later.
    ///
    /// ```
    /// use portcullis_core::observe::json::Reader;
    /// let mut r = Reader::new(br#"{"a": [1, {"b": 2}] , "c": 3}"#);
    /// let mut a = None;
    /// r.object(|r, key| if key == b"a" { a = Some(r.value_bytes()?); Some(()) } else { r.skip() })
    ///     .unwrap();
    /// assert_eq!(a, Some(&br#"[1, {"b": 2}]"#[..]));
    /// ```
    pub fn value_bytes(&mut self) -> Option<&'a [u8]> {
        self.peek()?;
        let start = self.at;
        self.skip()?;
        Some(&self.buf[start..self.at])
    }

    /// A value skipped at nesting `depth`: a string, number or literal here, in the caller
    /// (most values skipped are these, and a call costs about what reading a short one does);
    /// an object or array in [`Reader::skip_container`].
    #[inline(always)]
    fn skip_at(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string()?.check(),
            b'{' | b'[' => self.skip_container(depth),
            b'-' | b'0'..=b'9' => self.number(),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => None,
        }
    }

    /// An object or array skipped at nesting `depth`, refused past [`MAX_DEPTH`].
    #[inline(never)]
    fn skip_container(&mut self, depth: u32) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip_at(depth + 1)),
            _ => self.array(|r| r.skip_at(depth + 1)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.buf.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.buf.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let start = self.at;
        match self.buf.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.value_numbers && self.at - start > 20 {
            return None;
        }
        if self.buf.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.buf.get(self.at) {
            if self.value_numbers {
                return None;
            }
            self.at += 1;
            if let Some(b'+' | b'-') = self.buf.get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.buf.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// The length of the escape at the start of `s` (a backslash), if it is one JSON has: a `\u`
/// escape of a leading surrogate only with its trailing one (serde_json refuses a lone one
/// in a string it reads as text).
fn escape_len(s: &[u8]) -> Option<usize> {
    match s.get(1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => match hex4(s.get(2..6)?)? {
            0xD800..=0xDBFF => {
                if s.get(6..8)? != b"\\u" {
                    return None;
                }
                (0xDC00..=0xDFFF)
                    .contains(&hex4(s.get(8..12)?)?)
                    .then_some(12)
            }
            0xDC00..=0xDFFF => None,
            _ => Some(6),
        },
        _ => None,
    }
}

/// The value of four hex digits (a `\\u` escape's), `None` for anything else.
pub fn hex4(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some(n * 16 + d)
    })
}

/// The text of a string literal's bytes whose escapes [`Reader::string`] has checked.
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(offset) = raw[at..].iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&raw[at..at + offset]);
        at += offset;
        let len = escape_len(&raw[at..])?;
        let byte = match raw[at + 1] {
            b'b' => b'\x08',
            b'f' => b'\x0c',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let first = hex4(&raw[at + 2..at + 6])?;
                let code = if len == 12 {
                    let second = hex4(&raw[at + 8..at + 12])?;
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                let mut utf8 = [0; 4];
                out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
                at += len;
                continue;
            }
            // `"`, `\` and `/` stand for themselves.
            other => other,
        };
        out.push(byte);
        at += len;
    }
    out.extend_from_slice(&raw[at..]);
    String::from_utf8(out).ok()
}

/// The index in `buf`, from `at` on, of the first byte a string scan stops at: a quote, a
/// backslash, a control character, and (when `high`) a byte of a non-ASCII character. Looked
/// for eight bytes at a time in the first four words, where most strings (keys, names, ids)
/// end; a longer one (a prompt, an answer) goes on in blocks ([`special_long`]).
#[inline]
fn special(buf: &[u8], mut at: usize, high: bool) -> Option<usize> {
    match words(buf, &mut at, high, 4) {
        Some(found) => found,
        None => special_long(buf, at, high),
    }
}

const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Up to `n` words from `*at` (moved past the plain ones): `Some` when the search is over,
/// with the index of the byte found or the byte-by-byte search of a rest shorter than a
/// word; `None` after `n` plain words.
#[inline(always)]
fn words(buf: &[u8], at: &mut usize, high: bool, n: usize) -> Option<Option<usize>> {
    let high_mask = if high { HIGHS } else { 0 };
    for _ in 0..n {
        let Some(word) = buf.get(*at..).and_then(<[u8]>::first_chunk::<8>) else {
            return Some(special_bytes(buf, *at, high));
        };
        let flagged = flags(u64::from_le_bytes(*word), high_mask);
        if flagged != 0 {
            return Some(Some(*at + (flagged.trailing_zeros() / 8) as usize));
        }
        *at += 8;
    }
    None
}

/// The bytes of `word` (little-endian) a string scan stops at, flagged in their high bits:
/// each term flags bytes equal to a quote, to a backslash, below 0x20, exactly at the lowest
/// such byte, maybe wrongly above it (a borrow carries up), so the lowest flag of their
/// union is the first byte looked for; and no flag in a word without one. `high_mask` is
/// [`HIGHS`] to flag non-ASCII bytes too, else 0.
#[inline(always)]
fn flags(word: u64, high_mask: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    let quote = word ^ QUOTES;
    let backslash = word ^ BACKSLASHES;
    (((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(SPACES) & !word))
        & HIGHS)
        | (word & high_mask)
}

/// [`special`] past the first 32 bytes from `at`: 32 bytes at a time, each block checked with
/// a flag per byte computed without branches, which the compiler turns into vector compares
/// (SSE2, in every x86-64; `edge/parse_view_32kb_prompt` parses a 32 KB prompt in 2.7 µs
/// against 7.2 with the word scan alone); the block that holds the byte is then searched
/// word by word (at most four words, or fewer and the bytes of a rest shorter than a block).
#[inline(never)]
fn special_long(buf: &[u8], mut at: usize, high: bool) -> Option<usize> {
    at = if high {
        plain_blocks::<true>(buf, at)
    } else {
        plain_blocks::<false>(buf, at)
    };
    words(buf, &mut at, high, usize::MAX).flatten()
}

/// The start of the first 32-byte block from `at` that holds a byte [`special`] stops at, or
/// of a rest shorter than a block.
#[inline(always)]
fn plain_blocks<const HIGH: bool>(buf: &[u8], mut at: usize) -> usize {
    while let Some(block) = buf.get(at..).and_then(<[u8]>::first_chunk::<32>) {
        let mut any = 0u8;
        for &b in block {
            let high = if HIGH { b >> 7 } else { 0 };
            any |= u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b < 0x20) | high;
        }
        if any != 0 {
            break;
        }
        at += 32;
    }
    at
}

/// [`special`] over the last bytes, fewer than a word, one at a time.
fn special_bytes(buf: &[u8], at: usize, high: bool) -> Option<usize> {
    buf.get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20 || (high && b >= 0x80))
        .map(|i| at + i)
}

/// A [`Value`], written to the byte as `serde_json` writes it (compact, object keys in
/// their map's order), without serde's generic serialiser: the data of every check result
/// goes through here. Numbers are still serde_json's to write (its float format).
pub fn write_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("JSON into memory cannot fail")
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, value);
            }
            out.push(b'}');
        }
    }
}

/// A string literal as `serde_json` writes it: `"` and `\\` escaped, the control characters
/// below 0x20 as `\\b`, `\\t`, `\\n`, `\\f`, `\\r` or `\\u00xx` (lowercase hex), every other
/// character as it is (DEL and U+2028 included). Runs of plain bytes are copied whole.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain = 0;
    // The bytes a string escapes are the ones the reader stops at, less non-ASCII ones.
    while let Some(i) = special(bytes, plain, false) {
        out.extend_from_slice(&bytes[plain..i]);
        let b = bytes[i];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8], high: bool) -> Option<usize> {
        hay.iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20 || (high && b >= 0x80))
    }

    #[test]
    fn special_bytes_are_found_where_a_byte_by_byte_search_finds_them() {
        let mut rng = fastrand::Rng::with_seed(4);
        let pool = [
            b'a', b'"', b'\\', 0x1f, 0x20, 0x00, 0x7f, 0x80, 0xff, 0x5b, 0x21, 0xa2, 0xdc,
        ];
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.u8(..) < 200 {
                        b'a' + rng.u8(0..26)
                    } else {
                        pool[rng.usize(..pool.len())]
                    }
                })
                .collect();
            for high in [false, true] {
                for at in 0..=hay.len() {
                    assert_eq!(
                        special(&hay, at, high),
                        naive(&hay[at..], high).map(|i| at + i),
                        "{hay:?} {at} {high}"
                    );
                }
            }
        }
        // Long strings with few such bytes: the blocks past the first four words, the block
        // that holds the byte, the words and bytes after the last block.
        for _ in 0..5_000 {
            let len = rng.usize(0..300);
            let rare = rng.u8(1..=8);
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.u8(..) >= rare {
                        b'a' + rng.u8(0..26)
                    } else {
                        pool[rng.usize(1..pool.len())]
                    }
                })
                .collect();
            let starts = (0..=len.min(20)).chain((0..8).map(|_| rng.usize(0..=len)));
            for at in starts {
                for high in [false, true] {
                    assert_eq!(
                        special(&hay, at, high),
                        naive(&hay[at..], high).map(|i| at + i),
                        "{hay:?} {at} {high}"
                    );
                }
            }
        }
    }

    /// Each byte a scan stops at, at each place of a long plain run, found from several
    /// starts (in the inline words, in a block, in the words after it, in the last bytes).
    #[test]
    fn a_stop_byte_is_found_wherever_it_is_in_a_long_string() {
        for stop in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
            for len in [100, 128, 131] {
                for place in 0..len {
                    let mut hay = vec![b'a'; len];
                    hay[place] = stop;
                    for at in [0, 1, 7, 16, 33, 64, len] {
                        for high in [false, true] {
                            let want =
                                naive(hay.get(at..).unwrap_or_default(), high).map(|i| at + i);
                            assert_eq!(
                                special(&hay, at, high),
                                want,
                                "{stop} at {place} of {len}, from {at}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(special(b"abc", 4, true), None);
    }

    /// What serde_json reads from `literal` (a JSON string), against the reader.
    fn same_string(literal: &str) {
        let theirs = serde_json::from_str::<String>(literal).ok();
        let mut r = Reader::new(literal.as_bytes());
        let ours = r
            .string()
            .and_then(RawStr::text)
            .filter(|_| r.end().is_some())
            .map(Cow::into_owned);
        if let Some(ours) = &ours {
            assert_eq!(Some(ours), theirs.as_ref(), "{literal}");
        }
    }

    #[test]
    fn strings_read_as_serde_json_reads_them() {
        for literal in [
            r#""""#,
            r#""plain""#,
            r#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            r#""\u0041\u00e9\u4e2d\ud83d\ude00""#,
            r#""\u0000""#,
            r#""héllo wörld ✓ 😀""#,
        ] {
            let mut r = Reader::new(literal.as_bytes());
            let text = r.string().and_then(RawStr::text).expect(literal);
            assert_eq!(text, serde_json::from_str::<String>(literal).unwrap());
            same_string(literal);
        }
        // Refused, as serde_json refuses them (or left to it).
        for literal in [
            "\"a\u{1}b\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            r#""unterminated"#,
            r#""bad \"#,
        ] {
            let mut r = Reader::new(literal.as_bytes());
            assert!(r.string().and_then(RawStr::text).is_none(), "{literal}");
            assert!(
                serde_json::from_str::<String>(literal).is_err(),
                "{literal}"
            );
        }
    }

    #[test]
    fn nesting_is_skipped_to_the_limit_and_refused_past_it() {
        for open in [b'[', b'{'] {
            let nested = |levels: usize| {
                let mut doc = Vec::new();
                for _ in 0..levels {
                    doc.extend_from_slice(if open == b'[' { b"[" } else { b"{\"a\":" });
                }
                doc.push(b'1');
                for _ in 0..levels {
                    doc.push(if open == b'[' { b']' } else { b'}' });
                }
                doc
            };
            let limit = MAX_DEPTH as usize;
            assert_eq!(Reader::new(&nested(limit)).skip(), Some(()));
            assert_eq!(Reader::new(&nested(limit + 1)).skip(), None);
        }
    }

    #[test]
    fn skipped_values_are_valid_json() {
        let valid = [
            "0",
            "-0",
            "1.5",
            "-1.5e-3",
            "1E+9",
            "123456789012345678901234567890",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            "[1,[2,{\"a\":[null]}]]",
            " { \"a\" : 1 , \"b\" : \"x\" } ",
            "\"\\u00e9\"",
        ];
        for doc in valid {
            let mut r = Reader::new(doc.as_bytes());
            assert!(r.skip().and_then(|()| r.end()).is_some(), "{doc}");
            assert!(
                serde_json::from_str::<serde_json::Value>(doc).is_ok(),
                "{doc}"
            );
        }
        let invalid = [
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "[1 2]",
            "{\"a\" 1}",
            "\u{c}1",
            "\"\\ud800\"",
        ];
        for doc in invalid {
            let mut r = Reader::new(doc.as_bytes());
            assert!(r.skip().and_then(|()| r.end()).is_none(), "{doc}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Reader::new(deep.as_bytes()).skip().is_none());
    }

    #[test]
    fn integers_read_as_serde_json_reads_a_u64() {
        for (doc, n) in [
            ("0", Some(0)),
            ("250", Some(250)),
            ("18446744073709551615", Some(u64::MAX)),
        ] {
            assert_eq!(Reader::new(doc.as_bytes()).u64(), n);
            assert_eq!(serde_json::from_str::<u64>(doc).ok(), n);
        }
        for doc in ["18446744073709551616", "-1", "01", "", "x"] {
            let mut r = Reader::new(doc.as_bytes());
            assert!(r.u64().and_then(|_| r.end()).is_none(), "{doc}");
            assert!(serde_json::from_str::<u64>(doc).is_err(), "{doc}");
        }
    }

    use proptest::prelude::*;
    use serde_json::Value;

    /// Values of every shape, with strings of every escape, numbers of every kind.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let string = prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec![
                    '"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{0}', '\u{1f}',
                    '\u{7f}', '\u{80}', '\u{2028}', '\u{fffd}', 'é', '😀', 'a', ' ',
                ]),
                0..12,
            )
            .prop_map(|c| c.into_iter().collect()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![0.0, -0.0, 1.0, 2000.0, 0.1, 1e300, 5e-324, 1e21, 1e-7])
                .prop_map(Value::from),
            string.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(string.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Values are written to the byte as serde_json writes them.
        #[test]
        fn values_write_the_bytes_serde_json_writes(value in value()) {
            let mut written = Vec::new();
            write_value(&mut written, &value);
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['\u{80}', '\u{2028}', '😀'])
            .collect();
        let mut written = Vec::new();
        write_str(&mut written, &all);
        assert_eq!(written, serde_json::to_vec(&all).unwrap());
    }
}
