//! The answer after hooks see it: the upstream's bytes, read once for what the after phase
//! needs of every answer (its text, and whether it is empty or carries `hook_results`), and
//! its tree built only when something asks for more.
//!
//! Most answers are judged on their text and sent on as they came, so a tree of the whole
//! answer (its parse, then its drop) was most of the after phase's cost. The one pass
//! refuses what it is unsure of (a key with escapes or non-ASCII bytes, deep nesting, a
//! number a tree might not hold, a key it reads given twice); such an answer is parsed whole
//! at once, as before, and judged on its tree.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use portcullis_core::observe::json::{Fields, Reader};
use serde_json::Value;

use crate::context::response_parts;

/// The response body of an after-phase context.
#[derive(Clone, Debug)]
pub(crate) struct ResponseDoc {
    /// The upstream's bytes and what the one pass saw of them; `None` when the tree is the
    /// answer (one given as a tree, one the pass refused, one a check rewrote).
    read: Option<Read>,
    /// The answer as a tree: built on first use when `read` holds the bytes.
    tree: OnceLock<Value>,
}

#[derive(Clone, Debug)]
struct Read {
    bytes: Bytes,
    top: Top,
}

/// What `answer_bytes` needs of the answer's top level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Top {
    /// The answer is an object without members (or not an object at all).
    pub(crate) empty: bool,
    /// The answer has a top-level `hook_results` member.
    pub(crate) results: bool,
}

impl ResponseDoc {
    /// An answer given as a tree.
    pub(crate) fn from_value(value: Value) -> Self {
        Self {
            read: None,
            tree: OnceLock::from(value),
        }
    }

    /// Reads the upstream's answer, calling `part` with each of its text parts (what
    /// [`response_parts`] gives on its tree). `None` when the answer is not a JSON object:
    /// hooks do not run on it.
    pub(crate) fn read(bytes: &Bytes, mut part: impl FnMut(&str)) -> Option<Self> {
        if let Some((top, parts)) = one_pass(bytes) {
            parts.iter().for_each(|p| part(p));
            return Some(Self {
                read: Some(Read {
                    bytes: bytes.clone(),
                    top,
                }),
                tree: OnceLock::new(),
            });
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(tree @ Value::Object(_)) => {
                response_parts(&tree, part);
                Some(Self::from_value(tree))
            }
            _ => None,
        }
    }

    /// The answer as a tree (built now if the one pass read it).
    pub(crate) fn tree(&self) -> &Value {
        self.tree.get_or_init(|| {
            let bytes = self.read.as_ref().map_or(&[][..], |r| &r.bytes[..]);
            // The one pass refuses whatever serde_json might: this parse does not fail.
            serde_json::from_slice(bytes).unwrap_or_else(|err| {
                debug_assert!(false, "an answer read in one pass failed to parse: {err}");
                Value::Object(Default::default())
            })
        })
    }

    /// The tree, to rewrite: from now on the tree is the answer, not the upstream's bytes.
    pub(crate) fn tree_mut(&mut self) -> &mut Value {
        self.tree();
        self.read = None;
        self.tree.get_mut().expect("built just above")
    }

    /// Whether the answer is empty and whether it has `hook_results`: from the one pass, or
    /// from the tree (a value that is not an object counts as an empty one).
    pub(crate) fn top(&self) -> Top {
        if let Some(read) = &self.read {
            return read.top;
        }
        match self.tree() {
            Value::Object(object) => Top {
                empty: object.is_empty(),
                results: object.contains_key("hook_results"),
            },
            _ => Top {
                empty: true,
                results: false,
            },
        }
    }

    /// Whether the tree has been built (for tests that pin when it is not).
    #[cfg(test)]
    pub(crate) fn has_tree(&self) -> bool {
        self.tree.get().is_some()
    }
}

/// Text parts, as read: borrowed from the answer's bytes unless they had escapes.
type Parts<'a> = Vec<Cow<'a, str>>;

/// A part that stands for a value that has no text.
const NO_TEXT: Cow<'static, str> = Cow::Borrowed("");

/// Reads an answer whole in one pass: its top level, and the text parts [`response_parts`]
/// would find in its tree. `None` when the answer is not read here (not JSON, not an object,
/// or something left to serde_json).
fn one_pass(bytes: &[u8]) -> Option<(Top, Parts<'_>)> {
    let mut r = Reader::for_value(bytes);
    let mut top = Top {
        empty: true,
        results: false,
    };
    // A key given twice: a tree keeps the last; left to serde_json rather than matched.
    let mut seen = Fields::default();
    // The first choice's parts, when `choices` is an array with a first element.
    let mut choices = None;
    // The text blocks' parts, when `content` is an array (Anthropic's shape).
    let mut content = None;
    r.object(|r, key| {
        top.empty = false;
        match key {
            b"choices" => {
                seen.once(0)?;
                choices = first_choice(r)?;
                Some(())
            }
            b"content" => {
                seen.once(1)?;
                content = text_blocks(r)?;
                Some(())
            }
            b"hook_results" => {
                top.results = true;
                r.skip()
            }
            _ => r.skip(),
        }
    })?;
    r.end()?;
    // A first choice decides, whatever it holds; else the text blocks.
    Some((top, choices.or(content).unwrap_or_default()))
}

/// A string's text, or `None` for a value of another kind (skipped).
fn string_or_skip<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    if r.peek()? == b'"' {
        r.string()?.text().map(Some)
    } else {
        r.skip().map(|()| None)
    }
}

/// `choices`: the parts of its first element, `None` when it is not an array or is empty.
fn first_choice<'a>(r: &mut Reader<'a>) -> Option<Option<Parts<'a>>> {
    if r.peek()? != b'[' {
        return r.skip().map(|()| None);
    }
    let mut first = None;
    r.array(|r| {
        if first.is_some() {
            return r.skip();
        }
        first = Some(choice(r)?);
        Some(())
    })?;
    Some(first)
}

/// A choice: its `message`'s parts when it has one (of any kind), else its `text` when a
/// string, else none.
fn choice<'a>(r: &mut Reader<'a>) -> Option<Parts<'a>> {
    if r.peek()? != b'{' {
        return r.skip().map(|()| Vec::new());
    }
    let mut seen = Fields::default();
    let mut message = None;
    let mut text = None;
    r.object(|r, key| match key {
        b"message" => {
            seen.once(0)?;
            message = Some(message_parts(r)?);
            Some(())
        }
        b"text" => {
            seen.once(1)?;
            text = string_or_skip(r)?;
            Some(())
        }
        _ => r.skip(),
    })?;
    Some(match (message, text) {
        (Some(parts), _) => parts,
        (None, Some(text)) => vec![text],
        (None, None) => Vec::new(),
    })
}

/// A message: its `content` string, the text of each element of its `content` array, or
/// one empty part for anything else.
fn message_parts<'a>(r: &mut Reader<'a>) -> Option<Parts<'a>> {
    if r.peek()? != b'{' {
        return r.skip().map(|()| vec![NO_TEXT]);
    }
    let mut seen = Fields::default();
    let mut content = None;
    r.object(|r, key| {
        if key != b"content" {
            return r.skip();
        }
        seen.once(0)?;
        content = Some(match r.peek()? {
            b'"' => vec![r.string()?.text()?],
            b'[' => {
                let mut parts = Vec::new();
                r.array(|r| {
                    parts.push(part_text(r)?.unwrap_or(NO_TEXT));
                    Some(())
                })?;
                parts
            }
            _ => {
                r.skip()?;
                vec![NO_TEXT]
            }
        });
        Some(())
    })?;
    Some(content.unwrap_or_else(|| vec![NO_TEXT]))
}

/// An element's `text` when it is an object whose `text` is a string.
fn part_text<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    Some(block(r)?.and_then(|b| b.text))
}

/// The `type` and `text` of an object, each when a string.
struct Block<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
}

/// An object's [`Block`]; `None` (the value skipped) when it is not an object.
fn block<'a>(r: &mut Reader<'a>) -> Option<Option<Block<'a>>> {
    if r.peek()? != b'{' {
        return r.skip().map(|()| None);
    }
    let mut seen = Fields::default();
    let mut block = Block {
        kind: None,
        text: None,
    };
    r.object(|r, key| match key {
        b"type" => {
            seen.once(0)?;
            block.kind = string_or_skip(r)?;
            Some(())
        }
        b"text" => {
            seen.once(1)?;
            block.text = string_or_skip(r)?;
            Some(())
        }
        _ => r.skip(),
    })?;
    Some(Some(block))
}

/// `content`: the text of each block of type `text` (a block without a string `text` reads
/// as empty), `None` when it is not an array.
fn text_blocks<'a>(r: &mut Reader<'a>) -> Option<Option<Parts<'a>>> {
    if r.peek()? != b'[' {
        return r.skip().map(|()| None);
    }
    let mut parts = Vec::new();
    r.array(|r| {
        if let Some(block) = block(r)?
            && block.kind.as_deref() == Some("text")
        {
            parts.push(block.text.unwrap_or(NO_TEXT));
        }
        Some(())
    })?;
    Some(Some(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjson::{J, any_value, document, object, string};
    use proptest::prelude::*;

    fn part() -> BoxedStrategy<J> {
        prop_oneof![
            4 => object(vec![
                ("type", prop_oneof![3 => string(), 1 => any_value()].boxed()),
                ("text", prop_oneof![3 => string(), 1 => any_value()].boxed()),
                ("image_url", any_value().boxed()),
            ]),
            1 => any_value(),
        ]
        .boxed()
    }

    fn message() -> BoxedStrategy<J> {
        let content = prop_oneof![
            3 => string(),
            2 => prop::collection::vec(part(), 0..4).prop_map(J::Arr),
            1 => any_value(),
        ];
        prop_oneof![
            4 => object(vec![
                ("role", string().boxed()),
                ("content", content.boxed()),
                ("refusal", any_value().boxed()),
            ]),
            1 => any_value(),
        ]
        .boxed()
    }

    fn choice() -> BoxedStrategy<J> {
        prop_oneof![
            4 => object(vec![
                ("index", Just(J::Lit("0")).boxed()),
                ("message", message()),
                ("text", prop_oneof![3 => string(), 1 => any_value()].boxed()),
                ("finish_reason", string().boxed()),
            ]),
            1 => any_value(),
        ]
        .boxed()
    }

    /// Answers in OpenAI's and Anthropic's shapes, or near them, or not JSON at all.
    fn answer() -> impl Strategy<Value = Vec<u8>> {
        let choices = prop_oneof![
            4 => prop::collection::vec(choice(), 0..3).prop_map(J::Arr),
            1 => any_value(),
        ];
        let content = prop_oneof![
            4 => prop::collection::vec(part(), 0..4).prop_map(J::Arr),
            1 => any_value(),
        ];
        let top = prop_oneof![
            8 => object(vec![
                ("id", string().boxed()),
                ("choices", choices.boxed()),
                ("content", content.boxed()),
                ("hook_results", any_value().boxed()),
                ("usage", any_value().boxed()),
                ("x", any_value().boxed()),
            ]),
            1 => any_value(),
        ];
        document(top)
    }

    /// What the after phase read of an answer before: serde_json's tree, if an object.
    fn old_read(bytes: &[u8]) -> Option<(Value, Vec<String>)> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(tree @ Value::Object(_)) => {
                let mut parts = Vec::new();
                response_parts(&tree, |p| parts.push(p.to_owned()));
                Some((tree, parts))
            }
            _ => None,
        }
    }

    /// Reads `bytes` both ways and asserts the same answer: the same text parts, the same
    /// top level, the same tree. Whether the one pass read it.
    fn same_read(bytes: &[u8]) -> Result<Option<bool>, TestCaseError> {
        let mut parts = Vec::new();
        let doc = ResponseDoc::read(&Bytes::copy_from_slice(bytes), |p| parts.push(p.to_owned()));
        let shown = String::from_utf8_lossy(bytes);
        match (old_read(bytes), doc) {
            (None, None) => Ok(None),
            (Some((tree, old_parts)), Some(doc)) => {
                let one_pass = !doc.has_tree();
                prop_assert_eq!(&parts, &old_parts, "{}", shown);
                let object = tree.as_object().expect("an object");
                let top = Top {
                    empty: object.is_empty(),
                    results: object.contains_key("hook_results"),
                };
                prop_assert_eq!(doc.top(), top, "{}", shown);
                prop_assert_eq!(doc.tree(), &tree, "{}", shown);
                Ok(Some(one_pass))
            }
            (old, new) => Err(TestCaseError::fail(format!(
                "serde_json read {:?}, the pass {:?}: {shown}",
                old.map(|(t, _)| t),
                new.map(|d| d.tree().clone())
            ))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The one pass reads every answer as serde_json's tree does: the same text parts,
        /// the same top level, and a tree equal to serde_json's when asked for; what it
        /// refuses is read by serde_json, what serde_json refuses is no object to judge.
        #[test]
        fn the_one_pass_reads_answers_as_their_tree_does(bytes in answer()) {
            same_read(&bytes)?;
        }
    }

    #[test]
    fn the_usual_answers_are_read_in_one_pass_without_a_tree() {
        let answers: [(&[u8], &[&str]); 6] = [
            (
                br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#,
                &["Hello! How can I assist you today?"],
            ),
            // Escapes in the text: unescaped, as the tree holds them.
            (
                br#"{"choices":[{"message":{"content":"caf\u00e9 \"quoted\"\n\ud83d\ude00"}}]}"#,
                &["café \"quoted\"\n😀"],
            ),
            (br#"{"choices":[{"text":"a completion","index":0}]}"#, &["a completion"]),
            (
                br#"{"content":[{"type":"text","text":"one"},{"type":"tool_use","id":"t"},{"type":"text","text":"two"}],"choices":[]}"#,
                &["one", "two"],
            ),
            (
                br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"},7]}}]}"#,
                &["a", "", ""],
            ),
            (br#" {"choices":[{"message":null}], "hook_results": {}} "#, &[""]),
        ];
        for (answer, want) in answers {
            assert_eq!(same_read(answer).unwrap(), Some(true), "{answer:?}");
            let mut parts = Vec::new();
            let doc = ResponseDoc::read(&Bytes::copy_from_slice(answer), |p| {
                parts.push(p.to_owned())
            })
            .unwrap();
            assert_eq!(parts, want);
            assert!(!doc.has_tree(), "reading the text built no tree");
        }
    }

    #[test]
    fn answers_the_one_pass_refuses_are_read_whole() {
        let refused: [&[u8]; 6] = [
            // An escaped key.
            br#"{"choices":[{"message":{"\u0063ontent":"hi"}}]}"#,
            // A key read twice: the tree keeps the last.
            br#"{"choices":[{"message":{"content":"first","content":"last"}}]}"#,
            // A number a tree reads as a float.
            br#"{"choices":[{"message":{"content":"hi"}}],"n":1e3}"#,
            // A key that is not ASCII.
            "{\"é\":1,\"choices\":[{\"text\":\"hi\"}]}".as_bytes(),
            // Nested deeper than the pass goes.
            &[
                &b"{\"x\":"[..],
                &[b'['; 70],
                &[b']'; 70],
                b",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}",
            ]
            .concat(),
            br#"{"choices":[{"message":{"content":"hi"}}],"choices":[{"text":"last"}]}"#,
        ];
        for answer in refused {
            assert_eq!(same_read(answer).unwrap(), Some(false), "{answer:?}");
        }
        // Not an object, not JSON, not UTF-8: no answer to judge, both ways.
        for answer in [
            &b"[1]"[..],
            b"\"text\"",
            b"",
            b"{",
            b"{} {}",
            b"{\"choices\":[{\"text\":\"\xff\"}]}",
            b"{\"x\":\"\xc3\"}",
        ] {
            assert_eq!(same_read(answer).unwrap(), None, "{answer:?}");
        }
    }

    #[test]
    fn a_rewrite_makes_the_tree_the_answer() {
        let mut doc = ResponseDoc::read(
            &Bytes::from_static(br#"{"choices":[{"message":{"content":"hi"}}]}"#),
            |_| {},
        )
        .unwrap();
        assert_eq!(
            doc.top(),
            Top {
                empty: false,
                results: false
            }
        );
        *doc.tree_mut() = serde_json::json!({"hook_results": 1});
        assert_eq!(
            doc.top(),
            Top {
                empty: false,
                results: true
            }
        );
        *doc.tree_mut() = serde_json::json!([1]);
        assert_eq!(
            doc.top(),
            Top {
                empty: true,
                results: false
            }
        );
    }
}
