//! What a check looks at: the request (as the hooks have changed it so far), the text of the
//! phase, the response, the metadata.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use portcullis_core::RequestView;
//! use portcullis_guard::{HookContext, RequestType};
//!
//! let view = RequestView::parse(Bytes::from_static(
//!     br#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief"},
//!          {"role":"user","content":[{"type":"text","text":"Hello"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}]}"#,
//! )).unwrap();
//! let cx = HookContext::before(Arc::new(view), RequestType::ChatComplete);
//! // Before the call a check reads the last message only, its parts joined by newlines
//! // (a part that is not text reads as empty).
//! assert_eq!(cx.text(), "Hello\n\nthere");
//! assert_eq!(cx.request_field("model").unwrap(), "gpt-4o");
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_core::context::Metadata;
use portcullis_core::error::InvalidRequest;
use portcullis_core::observe::json::Reader;
use serde_json::{Map, Value};

use crate::response::ResponseDoc;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the request goes upstream (`before_request_hooks`, `input_*`).
    Before,
    /// After the upstream answered 200 (`after_request_hooks`, `output_*`).
    After,
}

impl Phase {
    /// Portkey's event type: `beforeRequestHook` or `afterRequestHook`.
    pub fn event_type(self) -> &'static str {
        match self {
            Phase::Before => "beforeRequestHook",
            Phase::After => "afterRequestHook",
        }
    }

    /// `before` or `after`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

/// The kind of call, with Portkey's names; hooks run for these only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// `POST …/chat/completions`.
    ChatComplete,
    /// `POST …/completions`.
    Complete,
    /// `POST …/embeddings`: before-request hooks only, no mutators.
    Embed,
    /// `POST …/messages` (Anthropic's shape).
    Messages,
}

impl RequestType {
    /// The type of a request path, by its last segments; `None` for paths hooks skip.
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") || path == "chat/completions" {
            Some(Self::ChatComplete)
        } else if path.ends_with("/completions") || path == "completions" {
            Some(Self::Complete)
        } else if path.ends_with("/embeddings") || path == "embeddings" {
            Some(Self::Embed)
        } else if path.ends_with("/messages") || path == "messages" {
            Some(Self::Messages)
        } else {
            None
        }
    }

    /// Portkey's name: `chatComplete`, `complete`, `embed`, `messages`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatComplete => "chatComplete",
            Self::Complete => "complete",
            Self::Embed => "embed",
            Self::Messages => "messages",
        }
    }
}

/// The request body as the hooks have left it: the parsed view, the top-level keys hooks
/// replaced, or a whole new body (a webhook's `transformedData`). Serialised once, at the end.
#[derive(Clone, Debug)]
pub(crate) struct RequestDoc {
    base: Arc<RequestView>,
    patch: Map<String, Value>,
    whole: Option<Map<String, Value>>,
}

impl RequestDoc {
    pub(crate) fn new(base: Arc<RequestView>) -> Self {
        Self {
            base,
            patch: Map::new(),
            whole: None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match &self.whole {
            Some(whole) => self.patch.get(key).or_else(|| whole.get(key)),
            None => self.patch.get(key).or_else(|| self.base.get(key)),
        }
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.patch.insert(key.to_owned(), value);
    }

    pub(crate) fn replace(&mut self, body: Map<String, Value>) {
        self.patch.clear();
        self.whole = Some(body);
    }

    pub(crate) fn changed(&self) -> bool {
        self.whole.is_some() || !self.patch.is_empty()
    }

    /// The whole body as JSON (for webhooks).
    pub(crate) fn to_value(&self) -> Value {
        let mut out = match &self.whole {
            Some(whole) => whole.clone(),
            None => self
                .base
                .iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        };
        for (k, v) in &self.patch {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    /// The new view when a hook changed something (serialised once), else `None`.
    pub(crate) fn finish(self) -> Result<Option<RequestView>, InvalidRequest> {
        match self.whole {
            Some(mut whole) => {
                whole.extend(self.patch);
                RequestView::from_object(whole).map(Some)
            }
            None if self.patch.is_empty() => Ok(None),
            None => self.base.with_overrides(&self.patch).map(Some),
        }
    }
}

/// What one check looks at (Portkey's plugin context).
///
/// Before the call: the request, and as text its **last message** (text parts joined by
/// `\n`, other parts empty), or `prompt`, or an embedding's `input`. After: also the response,
/// and as text `choices[0].message.content`, `choices[0].text` or the text blocks of
/// `content`. In a stream, the text is the window the guard is judging.
#[derive(Clone, Debug)]
pub struct HookContext {
    pub(crate) phase: Phase,
    pub(crate) request_type: RequestType,
    pub(crate) request: RequestDoc,
    pub(crate) response: Option<ResponseDoc>,
    pub(crate) status: u16,
    pub(crate) text: String,
    /// Byte ranges of the text parts in `text`.
    pub(crate) parts: Vec<(usize, usize)>,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) transformed_request: bool,
    pub(crate) transformed_response: bool,
}

impl HookContext {
    /// A context without text: the constructors below fill it in for their phase (an
    /// after-phase context never reads the request's text, so never computes it).
    fn bare(view: Arc<RequestView>, request_type: RequestType, phase: Phase) -> Self {
        Self {
            phase,
            request_type,
            request: RequestDoc::new(view),
            response: None,
            status: if phase == Phase::After { 200 } else { 0 },
            text: String::new(),
            parts: Vec::new(),
            metadata: None,
            provider: None,
            transformed_request: false,
            transformed_response: false,
        }
    }

    /// The context of a before-request hook over `view`.
    pub fn before(view: Arc<RequestView>, request_type: RequestType) -> Self {
        let mut cx = Self::bare(view, request_type, Phase::Before);
        cx.refresh_text();
        cx
    }

    /// The context of an after-request hook: `view` answered by `response` (status 200).
    pub fn after(view: Arc<RequestView>, request_type: RequestType, response: Value) -> Self {
        let mut cx = Self::bare(view, request_type, Phase::After);
        cx.response = Some(ResponseDoc::from_value(response));
        cx.refresh_text();
        cx
    }

    /// [`after`](Self::after) for the upstream's answer as it came: its text read in one
    /// pass, its tree built only if a check or the answer's rewrite needs it. `None` when
    /// the answer is not a JSON object.
    pub(crate) fn answered(
        view: Arc<RequestView>,
        request_type: RequestType,
        response: &Bytes,
    ) -> Option<Self> {
        let mut cx = Self::bare(view, request_type, Phase::After);
        let (text, parts) = (&mut cx.text, &mut cx.parts);
        let response = ResponseDoc::read(response, |p| push_part(text, parts, p))?;
        cx.response = Some(response);
        Some(cx)
    }

    /// The context of an after-request hook judging streamed `text` (no response JSON).
    pub(crate) fn window(view: Arc<RequestView>, request_type: RequestType) -> Self {
        let mut cx = Self::bare(view, request_type, Phase::After);
        cx.set_window_text("");
        cx
    }

    /// Sets the request's metadata (what `x-portkey-metadata` carried).
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the provider's name.
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Before or after the call.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The kind of call.
    pub fn request_type(&self) -> RequestType {
        self.request_type
    }

    /// The text checks judge (see the type's docs).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text parts that make up [`text`](Self::text), in order.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|&(s, e)| &self.text[s..e])
    }

    /// A top-level field of the request body, as hooks have left it so far.
    pub fn request_field(&self, key: &str) -> Option<&Value> {
        self.request.get(key)
    }

    /// The whole request body as JSON (a copy).
    pub fn request_json(&self) -> Value {
        self.request.to_value()
    }

    /// The response body, after the call (none in a stream).
    pub fn response_json(&self) -> Option<&Value> {
        self.response.as_ref().map(ResponseDoc::tree)
    }

    /// The request's metadata.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// The provider's name, when known.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    pub(crate) fn set_window_text(&mut self, text: &str) {
        self.text.clear();
        self.text.push_str(text);
        self.parts.clear();
        self.parts.push((0, self.text.len()));
    }

    /// Recomputes the text from the request or the response.
    pub(crate) fn refresh_text(&mut self) {
        self.text.clear();
        self.parts.clear();
        // The parts are written straight into the text: they come from the request or the
        // response, never from the text itself.
        let (text, parts) = (&mut self.text, &mut self.parts);
        let push = |p: &str| push_part(text, parts, p);
        match self.phase {
            Phase::Before => request_parts(&self.request, push),
            Phase::After => {
                if let Some(response) = &self.response {
                    response_parts(response.tree(), push);
                }
            }
        }
    }

    /// Replaces the text parts (same count, same order) in the request or the response.
    pub(crate) fn set_parts(&mut self, new: &[String]) {
        match self.phase {
            Phase::Before => {
                set_request_parts(&mut self.request, new);
                self.transformed_request = true;
            }
            Phase::After => {
                if let Some(response) = &mut self.response {
                    set_response_parts(response.tree_mut(), new);
                    self.transformed_response = true;
                }
            }
        }
        self.refresh_text();
    }
}

/// Adds a text part to `text` (after a newline, unless it is the first) and its range to
/// `parts`.
fn push_part(text: &mut String, parts: &mut Vec<(usize, usize)>, part: &str) {
    if !parts.is_empty() {
        text.push('\n');
    }
    let start = text.len();
    text.push_str(part);
    parts.push((start, text.len()));
}

fn part_text(part: &Value) -> &str {
    part.get("text").and_then(Value::as_str).unwrap_or("")
}

/// Calls `f` with each text part of the request's text.
fn request_parts(doc: &RequestDoc, mut f: impl FnMut(&str)) {
    // A request no hook has changed yet is read from its bytes: its tree is built only for
    // a layer that needs more than the text (the usual before phase needs the text only).
    if !doc.changed()
        && let Some(parts) = request_parts_in_bytes(doc.base.bytes())
    {
        return parts.iter().for_each(|p| f(p));
    }
    request_parts_in_tree(doc, f);
}

/// The text parts [`request_parts_in_tree`] finds, read from the body in one pass with the
/// strict reader; `None` for a body it refuses (the tree is read instead). Where an object
/// gives a key twice, the last one counts, as in the tree.
fn request_parts_in_bytes(body: &[u8]) -> Option<Vec<Cow<'_, str>>> {
    let mut r = Reader::for_value(body);
    // The last message when `messages` is an array (`Some(None)`: an empty one), and where
    // `prompt` and `input` lie; the last of each key.
    let (mut messages, mut prompt, mut input) = (None, None, None);
    r.object(|r, key| {
        let slot = match key {
            b"messages" => {
                if r.peek()? != b'[' {
                    messages = None;
                    return r.skip();
                }
                let mut last = None;
                r.array(|r| {
                    last = Some(r.value_bytes()?);
                    Some(())
                })?;
                messages = Some(last);
                return Some(());
            }
            b"prompt" => &mut prompt,
            b"input" => &mut input,
            _ => return r.skip(),
        };
        *slot = Some(r.value_bytes()?);
        Some(())
    })?;
    r.end()?;
    let mut parts = Vec::new();
    if let Some(last) = messages {
        // The last message's `content`.
        match last.and_then(|m| member(m, b"content")).flatten() {
            Some(content) if content[0] == b'"' => {
                parts.push(Reader::new(content).string()?.text()?)
            }
            Some(content) if content[0] == b'[' => {
                Reader::new(content).array(|r| {
                    let item = r.value_bytes()?;
                    // A part's `text` when it is a string; anything else reads as empty.
                    parts.push(match member(item, b"text").flatten() {
                        Some(text) if text[0] == b'"' => Reader::new(text).string()?.text()?,
                        _ => Cow::Borrowed(""),
                    });
                    Some(())
                })?;
            }
            _ => parts.push(Cow::Borrowed("")),
        }
        return Some(parts);
    }
    for value in [prompt, input].into_iter().flatten() {
        match value[0] {
            b'"' => parts.push(Reader::new(value).string()?.text()?),
            b'[' => Reader::new(value).array(|r| {
                parts.push(match r.peek()? {
                    b'"' => r.string()?.text()?,
                    _ => r.skip().map(|()| Cow::Borrowed(""))?,
                });
                Some(())
            })?,
            _ => continue,
        }
        return Some(parts);
    }
    Some(parts)
}

/// The value of member `key` of `value` when `value` is an object (`Some(None)` when it lacks
/// the key; the last one when it gives it twice); `None` when `value` is not an object.
fn member<'a>(value: &'a [u8], key: &[u8]) -> Option<Option<&'a [u8]>> {
    if value[0] != b'{' {
        return Some(None);
    }
    let mut found = None;
    Reader::new(value).object(|r, k| {
        if k != key {
            return r.skip();
        }
        found = Some(r.value_bytes()?);
        Some(())
    })?;
    Some(found)
}

/// Calls `f` with each text part of the request's text, read from the request's fields.
fn request_parts_in_tree(doc: &RequestDoc, mut f: impl FnMut(&str)) {
    if let Some(messages) = doc.get("messages").and_then(Value::as_array) {
        match messages.last().and_then(|m| m.get("content")) {
            Some(Value::String(s)) => f(s),
            Some(Value::Array(items)) => items.iter().for_each(|p| f(part_text(p))),
            _ => f(""),
        }
        return;
    }
    for key in ["prompt", "input"] {
        match doc.get(key) {
            Some(Value::String(s)) => return f(s),
            Some(Value::Array(items)) => {
                return items.iter().for_each(|p| f(p.as_str().unwrap_or_default()));
            }
            _ => {}
        }
    }
}

fn set_request_parts(doc: &mut RequestDoc, new: &[String]) {
    if let Some(messages) = doc.get("messages").and_then(Value::as_array) {
        let mut messages = messages.clone();
        if let Some(content) = messages.last_mut().and_then(|m| m.get_mut("content")) {
            match content {
                Value::String(s) => {
                    if let Some(n) = new.first() {
                        n.clone_into(s);
                    }
                }
                Value::Array(items) => {
                    for (item, n) in items.iter_mut().zip(new) {
                        if let Some(Value::String(t)) = item.get_mut("text") {
                            n.clone_into(t);
                        }
                    }
                }
                _ => {}
            }
        }
        doc.set("messages", Value::Array(messages));
        return;
    }
    for key in ["prompt", "input"] {
        match doc.get(key) {
            Some(Value::String(_)) => {
                if let Some(n) = new.first() {
                    doc.set(key, Value::String(n.clone()));
                }
                return;
            }
            Some(Value::Array(items)) => {
                let items = items
                    .iter()
                    .zip(new.iter().map(Some).chain(std::iter::repeat(None)))
                    .map(|(old, n)| match (old, n) {
                        (Value::String(_), Some(n)) => Value::String(n.clone()),
                        (old, _) => old.clone(),
                    })
                    .collect();
                doc.set(key, Value::Array(items));
                return;
            }
            _ => {}
        }
    }
}

/// Calls `f` with each text part of a response.
pub(crate) fn response_parts(response: &Value, mut f: impl FnMut(&str)) {
    if let Some(choice) = response.get("choices").and_then(|c| c.get(0)) {
        if let Some(message) = choice.get("message") {
            match message.get("content") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => items.iter().for_each(|p| f(part_text(p))),
                _ => f(""),
            }
        } else if let Some(text) = choice.get("text").and_then(Value::as_str) {
            f(text);
        }
        return;
    }
    if let Some(blocks) = response.get("content").and_then(Value::as_array) {
        blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .for_each(|b| f(part_text(b)));
    }
}

fn set_response_parts(response: &mut Value, new: &[String]) {
    if let Some(choice) = response.get_mut("choices").and_then(|c| c.get_mut(0)) {
        if let Some(message) = choice.get_mut("message") {
            match message.get_mut("content") {
                Some(Value::String(s)) => {
                    if let Some(n) = new.first() {
                        n.clone_into(s);
                    }
                }
                Some(Value::Array(items)) => {
                    for (item, n) in items.iter_mut().zip(new) {
                        if let Some(Value::String(t)) = item.get_mut("text") {
                            n.clone_into(t);
                        }
                    }
                }
                _ => {}
            }
        } else if let (Some(Value::String(t)), Some(n)) = (choice.get_mut("text"), new.first()) {
            n.clone_into(t);
        }
        return;
    }
    if let Some(blocks) = response.get_mut("content").and_then(Value::as_array_mut) {
        let texts = blocks
            .iter_mut()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"));
        for (block, n) in texts.zip(new) {
            if let Some(Value::String(t)) = block.get_mut("text") {
                n.clone_into(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The parts as the tree gives them, and as the bytes do (`None`: refused, the tree read).
    fn both(body: &str) -> Option<(Vec<String>, Option<Vec<String>>)> {
        let view = RequestView::parse(Bytes::copy_from_slice(body.as_bytes())).ok()?;
        let doc = RequestDoc::new(Arc::new(view));
        let mut tree = Vec::new();
        request_parts_in_tree(&doc, |p| tree.push(p.to_owned()));
        let bytes = request_parts_in_bytes(body.as_bytes())
            .map(|parts| parts.into_iter().map(Cow::into_owned).collect());
        Some((tree, bytes))
    }

    #[test]
    fn the_usual_requests_are_read_from_their_bytes_as_from_their_tree() {
        for body in [
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"Hi \u00e9\n"}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"text":7},"x",{"type":"text","text":"b"}]}]}"#,
            r#"{"messages":[{"role":"user"}]}"#,
            r#"{"messages":[]}"#,
            r#"{"messages":[1]}"#,
            r#"{"messages":[{"content":null}]}"#,
            r#"{"messages":null,"prompt":"p"}"#,
            r#"{"prompt":["a",1,"b"]}"#,
            r#"{"prompt":3,"input":"i"}"#,
            r#"{"input":["x"]}"#,
            r#"{"model":"m"}"#,
            r#"{"messages":[{"content":"first","content":"last"}]}"#,
        ] {
            let (tree, bytes) = both(body).unwrap();
            assert_eq!(bytes.as_ref(), Some(&tree), "{body}");
        }
        // Escaped keys: left to the tree.
        let (_, bytes) = both(r#"{"messages":[{"con\u0074ent":"x"}]}"#).unwrap();
        assert_eq!(bytes, None);
    }

    #[test]
    fn a_changed_request_is_read_from_its_tree() {
        let view = RequestView::parse(Bytes::from_static(
            br#"{"messages":[{"role":"user","content":"old"}]}"#,
        ))
        .unwrap();
        let mut cx = HookContext::before(Arc::new(view), RequestType::ChatComplete);
        assert_eq!(cx.text(), "old");
        cx.set_parts(&["new".to_owned()]);
        assert_eq!(cx.text(), "new");
    }

    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            r#""hi""#,
            r#""é""#,
            r#""\u00e9\n""#,
            r#""\"q\"""#,
            r#""""#,
            "1",
            "null",
            "true",
            r#"{"a":1}"#,
            "[]",
        ])
        .prop_map(str::to_owned)
    }

    fn part() -> impl Strategy<Value = String> {
        prop_oneof![
            (text(), prop::sample::select(vec!["text", "type", "texT"]))
                .prop_map(|(t, k)| format!(r#"{{"type":"text","{k}":{t}}}"#)),
            (text(), text()).prop_map(|(a, b)| format!(r#"{{"text":{a},"text":{b}}}"#)),
            text(),
        ]
    }

    fn content() -> impl Strategy<Value = String> {
        prop_oneof![
            text(),
            prop::collection::vec(part(), 0..4).prop_map(|p| format!("[{}]", p.join(","))),
        ]
    }

    fn message() -> impl Strategy<Value = String> {
        prop_oneof![
            content().prop_map(|c| format!(r#"{{"role":"user","content":{c}}}"#)),
            (content(), content())
                .prop_map(|(a, b)| format!(r#"{{"content":{a}, "content" : {b}}}"#)),
            Just(r#"{"role":"user"}"#.to_owned()),
            text(),
        ]
    }

    fn body() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            prop::collection::vec(message(), 0..4)
                .prop_map(|m| format!(r#""messages":[{}]"#, m.join(","))),
            Just(r#""messages":null"#.to_owned()),
            content().prop_map(|c| format!(r#""prompt":{c}"#)),
            content().prop_map(|c| format!(r#""input":{c}"#)),
            Just(r#""model":"m""#.to_owned()),
            Just(r#""x":{"messages":[{"content":"no"}]}"#.to_owned()),
        ];
        prop::collection::vec(member, 0..4).prop_map(|m| format!("{{{}}}", m.join(" , ")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// What the one pass reads, it reads as the tree does.
        #[test]
        fn the_bytes_give_the_trees_parts(body in body()) {
            if let Some((tree, Some(bytes))) = both(&body) {
                prop_assert_eq!(bytes, tree);
            }
        }
    }
}
