//! What the observer reads of one chunk of an answer (a stream event's data, or a whole JSON
//! body): the model, usage, an upstream error, and choice 0's text and finish reason.
//!
//! Read in one pass over the bytes by [`Reader`], which takes the usual chunk without a
//! serde parse; anything it does not take (an escaped key, a repeated field, a struct written
//! as an array, a value of another type) is read by serde_json into [`StreamChunk`], so the
//! observer sees the same either way.

use std::borrow::Cow;

use serde::Deserialize;

use super::json::{Fields, Reader};
use crate::facts::Usage;

/// The fields of one chunk the observer keeps.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Chunk<'a> {
    /// `model`.
    pub(super) model: Option<Cow<'a, str>>,
    /// `usage`.
    pub(super) usage: Option<Usage>,
    /// An `error` object, with its `message` when it has one.
    pub(super) error: Option<Option<Cow<'a, str>>>,
    /// The text of the choices with index 0, joined: each one's `delta.content`, else (when it
    /// has no `delta`) its `message.content`, else its `text`.
    pub(super) text: Option<Cow<'a, str>>,
    /// The last `finish_reason` of the choices with index 0.
    pub(super) finish_reason: Option<Cow<'a, str>>,
    /// `choices` is an empty array (with `usage`: the usage-only event).
    pub(super) no_choices: bool,
}

impl<'a> Chunk<'a> {
    /// Reads `data`; `None` when serde_json does not read it as a chunk either. Without
    /// `model` the model's text is checked but not taken (a stream repeats it in every event,
    /// and the observer keeps the first).
    pub(super) fn read(data: &'a [u8], model: bool) -> Option<Self> {
        Self::scan_with(data, model).or_else(|| Self::parse(data))
    }

    /// The one-pass read: `None` for anything it leaves to [`Chunk::parse`].
    #[cfg(test)]
    pub(super) fn scan(data: &'a [u8]) -> Option<Self> {
        Self::scan_with(data, true)
    }

    fn scan_with(data: &'a [u8], want_model: bool) -> Option<Self> {
        let mut r = Reader::new(data);
        let mut chunk = Chunk::default();
        // serde refuses a struct with a field given twice: so does this read.
        let mut seen = Fields::default();
        r.object(|r, key| match key {
            b"model" => {
                seen.once(0)?;
                if want_model {
                    chunk.model = r.opt(|r| r.string()?.text())?;
                } else {
                    // Checked as the text would be (a string or null, UTF-8), not copied.
                    r.opt(|r| r.string()?.check())?;
                }
                Some(())
            }
            b"choices" => {
                seen.once(1)?;
                let mut count = 0;
                let present = r.opt(|r| {
                    r.array(|r| {
                        count += 1;
                        chunk.choice(r)
                    })
                })?;
                chunk.no_choices = present.is_some() && count == 0;
                Some(())
            }
            b"usage" => {
                seen.once(2)?;
                chunk.usage = r.opt(usage)?;
                Some(())
            }
            b"error" => {
                seen.once(3)?;
                chunk.error = r.opt(error)?;
                Some(())
            }
            _ => r.skip(),
        })?;
        r.end()?;
        Some(chunk)
    }

    /// The full read, by serde_json.
    pub(super) fn parse(data: &'a [u8]) -> Option<Self> {
        let parsed = serde_json::from_slice::<StreamChunk<'a>>(data).ok()?;
        let mut chunk = Chunk {
            model: parsed.model.map(|m| m.0),
            usage: parsed.usage,
            error: parsed.error.map(|e| e.message.map(Cow::Owned)),
            no_choices: parsed.choices.as_ref().is_some_and(Vec::is_empty),
            ..Chunk::default()
        };
        for choice in parsed.choices.into_iter().flatten() {
            let content = match choice.delta.or(choice.message) {
                Some(content) => content.content.map(|c| c.0),
                None => None,
            };
            chunk.add_choice(
                choice.index,
                content.or(choice.text.map(|t| t.0)),
                choice.finish_reason.map(|r| r.0),
            );
        }
        Some(chunk)
    }

    fn add_choice(&mut self, index: u32, text: Option<Cow<'a, str>>, finish: Option<Cow<'a, str>>) {
        if index != 0 {
            return;
        }
        if let Some(piece) = text {
            match &mut self.text {
                None => self.text = Some(piece),
                Some(text) => text.to_mut().push_str(&piece),
            }
        }
        if finish.is_some() {
            self.finish_reason = finish;
        }
    }

    /// One element of `choices`, as serde reads a [`Choice`].
    fn choice(&mut self, r: &mut Reader<'a>) -> Option<()> {
        let mut seen = Fields::default();
        let mut index = 0;
        let mut delta = None;
        let mut message = None;
        let mut text = None;
        let mut finish = None;
        r.object(|r, key| {
            match key {
                b"index" => {
                    seen.once(0)?;
                    index = u32::try_from(r.u64()?).ok()?;
                }
                b"delta" => {
                    seen.once(1)?;
                    delta = r.opt(content)?;
                }
                b"message" => {
                    seen.once(2)?;
                    message = r.opt(content)?;
                }
                b"text" => {
                    seen.once(3)?;
                    text = r.opt(|r| r.string()?.text())?;
                }
                b"finish_reason" => {
                    seen.once(4)?;
                    finish = r.opt(|r| r.string()?.text())?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        let content = delta.or(message).flatten();
        self.add_choice(index, content.or(text), finish);
        Some(())
    }
}

/// A `delta` or `message` object: its `content`.
fn content<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    let mut seen = Fields::default();
    let mut content = None;
    r.object(|r, key| {
        if key == b"content" {
            seen.once(0)?;
            content = r.opt(|r| r.string()?.text())?;
            Some(())
        } else {
            r.skip()
        }
    })?;
    Some(content)
}

/// A `usage` object, as serde reads [`Usage`]: each count a `u64`, 0 when missing.
fn usage(r: &mut Reader<'_>) -> Option<Usage> {
    let mut seen = Fields::default();
    let mut usage = Usage::default();
    r.object(|r, key| {
        let (field, slot) = match key {
            b"prompt_tokens" => (0, &mut usage.prompt_tokens),
            b"completion_tokens" => (1, &mut usage.completion_tokens),
            b"total_tokens" => (2, &mut usage.total_tokens),
            _ => return r.skip(),
        };
        seen.once(field)?;
        *slot = r.u64()?;
        Some(())
    })?;
    Some(usage)
}

/// An `error` object: its `message`.
fn error<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    let mut seen = Fields::default();
    let mut message = None;
    r.object(|r, key| {
        if key == b"message" {
            seen.once(0)?;
            message = r.opt(|r| r.string()?.text())?;
            Some(())
        } else {
            r.skip()
        }
    })?;
    Some(message)
}

/// A string borrowed from the chunk when it has no escapes. (A bare `Option<Cow<str>>`
/// field never borrows: serde's `borrow` reaches through a newtype, not through `Option`.)
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// A chunk as serde reads it: the full read, for what [`Chunk::scan`] leaves.
#[derive(Deserialize)]
struct StreamChunk<'a> {
    #[serde(borrow, default)]
    model: Option<Str<'a>>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<UpstreamErrorEvent>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<Content<'a>>,
    #[serde(borrow, default)]
    message: Option<Content<'a>>,
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    content: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct UpstreamErrorEvent {
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The one-pass read against serde's, on generated chunks: whatever the scan reads, it
    //! reads as serde does; and it reads every well-formed chunk itself, escapes and all.

    use proptest::prelude::*;

    use super::*;
    use crate::observe::testjson::{Style, chunk, config, mutation, value};

    /// The scan reads what serde reads, or leaves it to serde.
    fn agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        let full = Chunk::parse(bytes);
        if let Some(scanned) = Chunk::scan(bytes) {
            prop_assert_eq!(
                Some(&scanned),
                full.as_ref(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        prop_assert_eq!(Chunk::read(bytes, true), full);
        // Without the model: the same chunk, less its model, or left to serde the same way.
        let without = Chunk::read(bytes, false).map(|c| Chunk { model: None, ..c });
        let full = Chunk::parse(bytes).map(|c| Chunk { model: None, ..c });
        prop_assert_eq!(without, full);
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Well-formed chunks, written with any white space and escapes, are read by the
        /// scan itself, to the values serde reads.
        #[test]
        fn the_scan_reads_well_formed_chunks(chunk in chunk(false), style in Style::plain()) {
            let bytes = style.write(&chunk);
            let scanned = Chunk::scan(&bytes);
            prop_assert!(scanned.is_some(), "left to serde: {}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(scanned, Chunk::parse(&bytes));
            // Without the model too (the model checked, not taken).
            prop_assert!(Chunk::scan_with(&bytes, false).is_some());
        }

        /// Chunks with values of other types, entries of any name, repeated fields, escaped
        /// keys, and broken bytes: the scan never reads anything other than serde does.
        #[test]
        fn the_scan_never_disagrees_with_serde(
            chunk in chunk(true),
            style in Style::any(),
            mutation in mutation(),
        ) {
            let mut bytes = style.write(&chunk);
            mutation.apply(&mut bytes);
            agrees(&bytes)?;
        }

        /// Any JSON value at the top, and bytes of any kind.
        #[test]
        fn the_scan_never_disagrees_on_anything(
            value in value(),
            style in Style::any(),
            garbage in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            agrees(&style.write(&value))?;
            agrees(&garbage)?;
        }
    }

    #[test]
    fn events_as_upstreams_send_them() {
        let role = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#;
        let chunk = Chunk::scan(role).unwrap();
        assert_eq!(chunk.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(chunk.text.as_deref(), Some(""));
        assert!(matches!(chunk.model, Some(Cow::Borrowed(_))));

        let delta = br#"{"choices":[{"index":0,"delta":{"content":"caf\u00e9 \"ok\"\n"},"finish_reason":null}]}"#;
        assert_eq!(
            Chunk::scan(delta).unwrap().text.as_deref(),
            Some("café \"ok\"\n")
        );

        let usage = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":250,"completion_tokens":47,"total_tokens":297,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        let chunk = Chunk::scan(usage).unwrap();
        assert!(chunk.no_choices);
        assert_eq!(chunk.usage.unwrap().total_tokens, 297);

        let error = br#"{"error":{"message":"overloaded","type":"server_error"}}"#;
        assert_eq!(
            Chunk::scan(error).unwrap().error,
            Some(Some(Cow::Borrowed("overloaded")))
        );

        let tools = br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]},"finish_reason":null}]}"#;
        assert_eq!(Chunk::scan(tools), Some(Chunk::default()));

        let legacy = br#"{"choices":[{"index":0,"text":"hi","finish_reason":"length"},{"index":1,"text":"no"}]}"#;
        let chunk = Chunk::scan(legacy).unwrap();
        assert_eq!(chunk.text.as_deref(), Some("hi"));
        assert_eq!(chunk.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn what_serde_refuses_or_reads_otherwise_is_left_to_it() {
        for (doc, serde_reads) in [
            (&br#"{"model":"a","model":"b"}"#[..], false),
            (br#"{"mod\u0065l":"a"}"#, true),
            (br#"["m",null,null,null]"#, true),
            (br#"{"choices":[{"index":-1}]}"#, false),
            (br#"{"usage":{"total_tokens":1.0}}"#, false),
            (br#"{"usage":{"total_tokens":null}}"#, false),
            (br#"{"choices":[null]}"#, false),
            (br#"{"model":"a"} x"#, false),
            (b"{\"model\":\"\xff\"}", false),
        ] {
            assert!(
                Chunk::scan(doc).is_none(),
                "{}",
                String::from_utf8_lossy(doc)
            );
            assert_eq!(
                Chunk::parse(doc).is_some(),
                serde_reads,
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }
}
