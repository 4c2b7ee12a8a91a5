//! A reader of Gemini's `GenerateContentResponse`, JSON and stream chunks alike, that walks
//! the bytes once and keeps only what the translation needs (strings borrowed when they have
//! no escapes), without building a JSON tree: most of a stream's chunks are a few words of
//! text wrapped in metadata.

use std::borrow::Cow;

/// A part of a candidate's content.
#[derive(Debug, PartialEq)]
pub(super) enum Part<'a> {
    /// Text, or the model's thoughts when `thought` is set.
    Text { text: Cow<'a, str>, thought: bool },
    /// A function call: its name, its `args` as compact JSON text, and the thought
    /// signature that must come back with it on the next turn.
    Call {
        name: Cow<'a, str>,
        args: String,
        signature: Option<Cow<'a, str>>,
    },
}

/// One candidate: its index (when given), parts and finish reason.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Candidate<'a> {
    pub(super) index: Option<u64>,
    pub(super) parts: Vec<Part<'a>>,
    pub(super) finish: Option<Cow<'a, str>>,
}

/// `usageMetadata` counts, each when present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) prompt: Option<u64>,
    pub(super) candidates: Option<u64>,
    pub(super) thoughts: Option<u64>,
    pub(super) cached: Option<u64>,
    pub(super) tool_use_prompt: Option<u64>,
}

/// What one `GenerateContentResponse` says.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Answer<'a> {
    pub(super) candidates: Vec<Candidate<'a>>,
    pub(super) has_candidates: bool,
    pub(super) usage: Option<Counts>,
    pub(super) response_id: Option<Cow<'a, str>>,
    pub(super) model_version: Option<Cow<'a, str>>,
    pub(super) block_reason: Option<Cow<'a, str>>,
    /// The raw `error` object of an error sent in place of an answer.
    pub(super) error: Option<&'a [u8]>,
}

/// Reads `data` as a `GenerateContentResponse`; `None` when it is not a JSON object.
pub(super) fn answer(data: &[u8]) -> Option<Answer<'_>> {
    let mut r = Reader { buf: data, at: 0 };
    let mut out = Answer::default();
    r.object(|r, key| match key {
        b"candidates" => {
            out.has_candidates = true;
            r.array(|r| {
                let candidate = candidate(r)?;
                out.candidates.push(candidate);
                Some(())
            })
        }
        b"usageMetadata" => {
            let mut counts = Counts::default();
            r.object(|r, key| {
                let slot = match key {
                    b"promptTokenCount" => &mut counts.prompt,
                    b"candidatesTokenCount" => &mut counts.candidates,
                    b"thoughtsTokenCount" => &mut counts.thoughts,
                    b"cachedContentTokenCount" => &mut counts.cached,
                    b"toolUsePromptTokenCount" => &mut counts.tool_use_prompt,
                    _ => return r.skip(),
                };
                *slot = Some(r.u64()?);
                Some(())
            })?;
            out.usage = Some(counts);
            Some(())
        }
        b"responseId" => {
            out.response_id = Some(r.string()?);
            Some(())
        }
        b"modelVersion" => {
            out.model_version = Some(r.string()?);
            Some(())
        }
        b"promptFeedback" => r.object(|r, key| {
            if key == b"blockReason" {
                out.block_reason = Some(r.string()?);
                Some(())
            } else {
                r.skip()
            }
        }),
        b"error" => {
            out.error = Some(r.raw()?);
            Some(())
        }
        _ => r.skip(),
    })?;
    r.ws();
    (r.at == r.buf.len()).then_some(out)
}

fn candidate<'a>(r: &mut Reader<'a>) -> Option<Candidate<'a>> {
    let mut out = Candidate::default();
    r.object(|r, key| match key {
        b"index" => {
            out.index = Some(r.u64()?);
            Some(())
        }
        b"finishReason" => {
            out.finish = Some(r.string()?);
            Some(())
        }
        b"content" => r.object(|r, key| {
            if key != b"parts" {
                return r.skip();
            }
            r.array(|r| {
                if let Some(part) = part(r)? {
                    out.parts.push(part);
                }
                Some(())
            })
        }),
        _ => r.skip(),
    })?;
    Some(out)
}

/// A part, or `Ok(None)` for one that carries nothing an OpenAI message holds
/// (executable code, inline data the model made, …).
fn part<'a>(r: &mut Reader<'a>) -> Option<Option<Part<'a>>> {
    let mut text = None;
    let mut thought = false;
    let mut call: Option<(Cow<'a, str>, String)> = None;
    let mut signature = None;
    r.object(|r, key| match key {
        b"text" => {
            text = Some(r.string()?);
            Some(())
        }
        b"thought" => {
            thought = r.raw()? == b"true";
            Some(())
        }
        b"thoughtSignature" => {
            signature = Some(r.string()?);
            Some(())
        }
        b"functionCall" => {
            let mut name = None;
            let mut args = None;
            r.object(|r, key| match key {
                b"name" => {
                    name = Some(r.string()?);
                    Some(())
                }
                b"args" => {
                    args = Some(compact(r.raw()?));
                    Some(())
                }
                _ => r.skip(),
            })?;
            call = Some((name?, args.unwrap_or_else(|| "{}".to_owned())));
            Some(())
        }
        _ => r.skip(),
    })?;
    Some(match (call, text) {
        (Some((name, args)), _) => Some(Part::Call {
            name,
            args,
            signature,
        }),
        (None, Some(text)) => Some(Part::Text { text, thought }),
        (None, None) => None,
    })
}

/// JSON text without the whitespace between tokens (`{"city": "Paris"}` → `{"city":"Paris"}`),
/// keys kept in their order.
fn compact(raw: &[u8]) -> String {
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
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.buf.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// An object, calling `f` with each key (raw, escapes left as they are: the keys read are
    /// plain ASCII) positioned at its value, which `f` must consume.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
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
    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
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
    fn string(&mut self) -> Option<Cow<'a, str>> {
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

    fn u64(&mut self) -> Option<u64> {
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
    fn raw(&mut self) -> Option<&'a [u8]> {
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

    fn skip(&mut self) -> Option<()> {
        self.raw().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_translation_needs() {
        let data = br#"{"candidates": [{"content": {"parts": [{"text": "Hi \"you\"", "thought": true},
            {"text": "there"}, {"functionCall": {"name": "f", "args": {"b": [1, 2], "a": "x y"}},
            "thoughtSignature": "c2ln"}, {"executableCode": {"code": "x"}}], "role": "model"},
            "finishReason": "STOP", "index": 1, "safetyRatings": [{"a": null}]}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
            "thoughtsTokenCount": 7, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}]},
            "modelVersion": "gemini-x", "responseId": "r1"}"#;
        let a = answer(data).unwrap();
        assert_eq!(a.response_id.as_deref(), Some("r1"));
        assert_eq!(a.model_version.as_deref(), Some("gemini-x"));
        let c = &a.candidates[0];
        assert_eq!(c.index, Some(1));
        assert_eq!(c.finish.as_deref(), Some("STOP"));
        assert_eq!(
            c.parts,
            vec![
                Part::Text {
                    text: Cow::Owned("Hi \"you\"".into()),
                    thought: true
                },
                Part::Text {
                    text: Cow::Borrowed("there"),
                    thought: false
                },
                Part::Call {
                    name: Cow::Borrowed("f"),
                    args: r#"{"b":[1,2],"a":"x y"}"#.into(),
                    signature: Some(Cow::Borrowed("c2ln"))
                },
            ]
        );
        let u = a.usage.unwrap();
        assert_eq!(
            (u.prompt, u.candidates, u.thoughts),
            (Some(5), Some(2), Some(7))
        );
    }

    #[test]
    fn malformed_input_is_none() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"candidates\": [}",
            b"{\"a\": 1} x",
            b"{\"a\": }",
            b"{\"a\": \"unterminated}",
        ] {
            assert!(answer(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        let blocked = answer(br#"{"promptFeedback": {"blockReason": "SAFETY"}}"#).unwrap();
        assert_eq!(blocked.block_reason.as_deref(), Some("SAFETY"));
        let error = answer(br#"{"error": {"code": 500, "status": "INTERNAL"}}"#).unwrap();
        assert_eq!(
            error.error.unwrap(),
            br#"{"code": 500, "status": "INTERNAL"}"#
        );
    }
}
