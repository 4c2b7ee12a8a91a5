//! A reader of Gemini's `GenerateContentResponse`, JSON and stream chunks alike, that walks
//! the bytes once and keeps only what the translation needs (strings borrowed when they have
//! no escapes), without building a JSON tree: most of a stream's chunks are a few words of
//! text wrapped in metadata.

use std::borrow::Cow;

use crate::scan::Reader;

/// A part of a candidate's content.
#[derive(Debug, PartialEq)]
pub(super) enum Part<'a> {
    /// Text, or the model's thoughts when `thought` is set.
    Text { text: Cow<'a, str>, thought: bool },
    /// A function call: its name, its `args` as the JSON text Gemini wrote (white space
    /// and all: it is compacted as it is written out, not copied first), and the thought
    /// signature that must come back with it on the next turn.
    Call {
        name: Cow<'a, str>,
        args: &'a str,
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
    let mut r = Reader::new(data);
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
    r.end()?;
    Some(out)
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
    let mut call: Option<(Cow<'a, str>, &'a str)> = None;
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
                    // Arguments that are not UTF-8 (a broken upstream) go out as `""`.
                    args = Some(r.raw_str()?.unwrap_or(""));
                    Some(())
                }
                _ => r.skip(),
            })?;
            call = Some((name?, args.unwrap_or("{}")));
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
                    args: r#"{"b": [1, 2], "a": "x y"}"#,
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
