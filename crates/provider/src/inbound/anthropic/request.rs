//! Anthropic Messages requests → OpenAI chat-completion requests.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::scan::Node;

use super::response::Answer;
use crate::json::Json;

/// A Messages request that cannot be translated: answered 400 `invalid_request_error`, in
/// Anthropic's error shape, without calling the inner service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidMessages {
    message: String,
}

impl InvalidMessages {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What is wrong, naming the field.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for InvalidMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidMessages {}

/// Translates Anthropic Messages request bodies into OpenAI chat-completion bodies (the table
/// is in the [module docs](super)).
///
/// ```
/// use portcullis_provider::inbound::anthropic::Translator;
///
/// let chat = Translator::new()
///     .translate(br#"{"model":"claude-x","max_tokens":64,"system":"Be brief.",
///                    "messages":[{"role":"user","content":"Hi"}]}"#)
///     .unwrap();
/// let body: serde_json::Value = serde_json::from_slice(chat.body()).unwrap();
/// assert_eq!(body["messages"][0]["role"], "system");
/// assert_eq!(body["messages"][1]["content"], "Hi");
/// assert_eq!(body["max_tokens"], 64);
///
/// let err = Translator::new().translate(br#"{"model":"m","messages":[]}"#).unwrap_err();
/// assert!(err.message().contains("max_tokens"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Translator {
    keep_cache_control: bool,
}

/// A translated request: the OpenAI body, and what the answer's translation needs to know.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    body: Bytes,
    answer: Answer,
}

impl ChatRequest {
    /// The OpenAI chat-completion body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.answer.stream
    }

    /// The translator of the answer to this request.
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// The body and the answer's translator.
    pub fn into_parts(self) -> (Bytes, Answer) {
        (self.body, self.answer)
    }
}

fn invalid(message: impl Into<String>) -> InvalidMessages {
    InvalidMessages::new(message)
}

/// The fields of a Messages request that the translation reads.
#[derive(Default)]
struct Fields<'a> {
    model: Option<&'a str>,
    max_tokens: Option<u64>,
    messages: Option<&'a [Node<'a>]>,
    system: Option<&'a Node<'a>>,
    tools: Option<&'a [Node<'a>]>,
    tool_choice: Option<&'a Node<'a>>,
    stop_sequences: Option<&'a [Node<'a>]>,
    temperature: Option<&'a Node<'a>>,
    top_p: Option<&'a Node<'a>>,
    top_k: Option<&'a Node<'a>>,
    user: Option<&'a str>,
    stream: bool,
}

impl Translator {
    /// A translator that leaves `cache_control` out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `cache_control` on the text parts of the system prompt and of user turns
    /// (default: off). The Anthropic provider reads it back, so prompt caching survives the
    /// round trip; OpenAI and most compatible servers refuse a part with a field they do not
    /// know, so it is off unless every provider behind honours it.
    pub fn keep_cache_control(mut self, keep: bool) -> Self {
        self.keep_cache_control = keep;
        self
    }

    /// Translates one Messages request body.
    ///
    /// # Errors
    /// [`InvalidMessages`] naming the field: a body that is not a JSON object, a missing
    /// `model`, `max_tokens` or `messages`, a field or content block this translation does
    /// not carry and that would change the answer (`thinking`, server tools, documents, …).
    pub fn translate(&self, body: &[u8]) -> Result<ChatRequest, InvalidMessages> {
        // Read in one walk, without a map per object; serde_json says what is wrong with a
        // body that is not a JSON object.
        let whole: Value;
        let request = match Node::parse(body) {
            Some(node) if node.is_object() => node,
            _ => {
                let map: Map<String, Value> = serde_json::from_slice(body)
                    .map_err(|e| invalid(format!("the body is not a JSON object: {e}")))?;
                whole = Value::Object(map);
                Node::of(&whole)
            }
        };
        let fields = read_fields(&request)?;
        let model = fields
            .model
            .ok_or_else(|| invalid("model: Field required"))?;
        let max_tokens = fields
            .max_tokens
            .ok_or_else(|| invalid("max_tokens: Field required"))?;
        let messages = fields
            .messages
            .ok_or_else(|| invalid("messages: Field required"))?;

        let mut out = Json::with_capacity(body.len() + 256);
        out.raw(b"{\"model\":");
        out.str(model);
        out.raw(b",\"messages\":[");
        let mut first = true;
        if let Some(system) = fields.system {
            self.system(system, &mut out)?;
            first = false;
        }
        for (i, message) in messages.iter().enumerate() {
            self.message(i, message, &mut first, &mut out)?;
        }
        out.raw(b"],\"max_tokens\":");
        out.u64(max_tokens);
        if fields.stream {
            // Usage comes in the last chunk only when asked for: Anthropic's clients always
            // get it, in `message_delta`.
            out.raw(b",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
        }
        for (key, value) in [
            ("temperature", fields.temperature),
            ("top_p", fields.top_p),
            ("top_k", fields.top_k),
        ] {
            if let Some(value) = value {
                out.raw(b",\"");
                out.raw(key.as_bytes());
                out.raw(b"\":");
                value.write(&mut out);
            }
        }
        let stop = fields.stop_sequences.filter(|s| !s.is_empty());
        if let Some(stop) = stop {
            out.raw(b",\"stop\":[");
            for (i, s) in stop.iter().enumerate() {
                let s = s.as_str().ok_or_else(|| {
                    invalid(format!(
                        "stop_sequences.{i}: Input should be a valid string"
                    ))
                })?;
                if i > 0 {
                    out.raw(b",");
                }
                out.str(s);
            }
            out.raw(b"]");
        }
        if let Some(user) = fields.user {
            out.raw(b",\"user\":");
            out.str(user);
        }
        if let Some(tools) = fields.tools.filter(|t| !t.is_empty()) {
            write_tools(tools, &mut out)?;
        }
        if let Some(choice) = fields.tool_choice {
            write_tool_choice(choice, &mut out)?;
        }
        out.raw(b"}");
        Ok(ChatRequest {
            body: out.into_bytes(),
            answer: Answer {
                stream: fields.stream,
                stop_sequences: stop.is_some(),
            },
        })
    }

    /// `system`, a string or text blocks, as the first message.
    fn system(&self, system: &Node<'_>, out: &mut Json) -> Result<(), InvalidMessages> {
        out.raw(b"{\"role\":\"system\",\"content\":");
        match system {
            Node::String(s) => out.str(s),
            Node::Array(blocks) => {
                let mut parts = Parts::default();
                for (j, block) in blocks.iter().enumerate() {
                    let block = block
                        .as_object()
                        .filter(|b| b.get("type").and_then(Node::as_str) == Some("text"))
                        .ok_or_else(|| {
                            invalid(format!("system.{j}: only text blocks are allowed"))
                        })?;
                    let text = text_of(block, || format!("system.{j}.text"))?;
                    parts.text(text, self.cache_control(block));
                }
                parts.write(out);
            }
            _ => return Err(invalid("system: must be a string or a list of text blocks")),
        }
        out.raw(b"}");
        Ok(())
    }

    fn cache_control<'a>(&self, block: &'a Node<'a>) -> Option<&'a Node<'a>> {
        if self.keep_cache_control {
            block.get("cache_control").filter(|v| !v.is_null())
        } else {
            None
        }
    }

    fn message(
        &self,
        i: usize,
        message: &Node<'_>,
        first: &mut bool,
        out: &mut Json,
    ) -> Result<(), InvalidMessages> {
        let message = message
            .as_object()
            .ok_or_else(|| invalid(format!("messages.{i}: must be an object")))?;
        let role = message.get("role").and_then(Node::as_str);
        let content = message
            .get("content")
            .ok_or_else(|| invalid(format!("messages.{i}.content: Field required")))?;
        let mut sep = |out: &mut Json| {
            if !std::mem::take(first) {
                out.raw(b",");
            }
        };
        match (role, content) {
            (Some(role @ ("user" | "assistant")), Node::String(text)) => {
                sep(out);
                out.raw(b"{\"role\":\"");
                out.raw(role.as_bytes());
                out.raw(b"\",\"content\":");
                out.str(text);
                out.raw(b"}");
                Ok(())
            }
            (Some("user"), Node::Array(blocks)) => self.user(i, blocks, &mut sep, out),
            (Some("assistant"), Node::Array(blocks)) => assistant(i, blocks, &mut sep, out),
            (Some("user" | "assistant"), _) => Err(invalid(format!(
                "messages.{i}.content: must be a string or a list of content blocks"
            ))),
            _ => Err(invalid(format!(
                "messages.{i}.role: must be `user` or `assistant`"
            ))),
        }
    }

    /// A user turn: each `tool_result` becomes a `tool` message, in order; the other blocks
    /// (and the images of tool results, which a `tool` message cannot hold) one `user`
    /// message after them.
    fn user(
        &self,
        i: usize,
        blocks: &[Node<'_>],
        sep: &mut impl FnMut(&mut Json),
        out: &mut Json,
    ) -> Result<(), InvalidMessages> {
        let mut parts = Parts::default();
        for (j, block) in blocks.iter().enumerate() {
            let at = || format!("messages.{i}.content.{j}");
            let block = block
                .as_object()
                .ok_or_else(|| invalid(format!("{}: must be an object", at())))?;
            match block.get("type").and_then(Node::as_str).unwrap_or("") {
                "text" => {
                    let text = text_of(block, || format!("{}.text", at()))?;
                    parts.text(text, self.cache_control(block));
                }
                "image" => parts.image(image_url(block, &at)?),
                "tool_result" => {
                    sep(out);
                    tool_result(block, &at, &mut parts, out)?;
                }
                other => return Err(unsupported_block(&at(), other)),
            }
        }
        if !parts.is_empty() {
            sep(out);
            out.raw(b"{\"role\":\"user\",\"content\":");
            parts.write(out);
            out.raw(b"}");
        }
        Ok(())
    }
}

/// An assistant turn: text blocks as the content, `tool_use` blocks as `tool_calls`.
fn assistant(
    i: usize,
    blocks: &[Node<'_>],
    sep: &mut impl FnMut(&mut Json),
    out: &mut Json,
) -> Result<(), InvalidMessages> {
    let mut parts = Parts::default();
    let mut calls = Json::with_capacity(0);
    let mut n_calls = 0;
    for (j, block) in blocks.iter().enumerate() {
        let at = || format!("messages.{i}.content.{j}");
        let block = block
            .as_object()
            .ok_or_else(|| invalid(format!("{}: must be an object", at())))?;
        match block.get("type").and_then(Node::as_str).unwrap_or("") {
            "text" => parts.text(text_of(block, || format!("{}.text", at()))?, None),
            "tool_use" => {
                let field = |key: &str| {
                    block
                        .get(key)
                        .and_then(Node::as_str)
                        .ok_or_else(|| invalid(format!("{}.{key}: Field required", at())))
                };
                let (id, name) = (field("id")?, field("name")?);
                let input = block
                    .get("input")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| invalid(format!("{}.input: must be an object", at())))?;
                calls.raw(if n_calls == 0 { b"[" } else { b"," });
                n_calls += 1;
                calls.raw(b"{\"id\":");
                calls.str(id);
                calls.raw(b",\"type\":\"function\",\"function\":{\"name\":");
                calls.str(name);
                calls.raw(b",\"arguments\":");
                let mut arguments = Json::with_capacity(64);
                input.write(&mut arguments);
                // Written from `str`s and ASCII: UTF-8.
                calls.str(std::str::from_utf8(&arguments.into_vec()).unwrap_or_default());
                calls.raw(b"}}");
            }
            // Reasoning of an earlier turn: an OpenAI request has no place for it, and the
            // thinking of past turns is not part of what the model answers (Anthropic drops
            // it from the context of turns before the last too).
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(&at(), other)),
        }
    }
    sep(out);
    out.raw(b"{\"role\":\"assistant\",\"content\":");
    if parts.is_empty() {
        out.raw(if n_calls > 0 { b"null" } else { b"\"\"" });
    } else {
        parts.write(out);
    }
    if n_calls > 0 {
        out.raw(b",\"tool_calls\":");
        out.raw(&calls.into_vec());
        out.raw(b"]");
    }
    out.raw(b"}");
    Ok(())
}

/// One `tool_result` block as a `tool` message; its images go to `parts`, for the user
/// message that follows.
fn tool_result<'a>(
    block: &'a Node<'a>,
    at: &dyn Fn() -> String,
    parts: &mut Parts<'a>,
    out: &mut Json,
) -> Result<(), InvalidMessages> {
    let id = block
        .get("tool_use_id")
        .and_then(Node::as_str)
        .ok_or_else(|| invalid(format!("{}.tool_use_id: Field required", at())))?;
    let is_error = block.get("is_error").and_then(Node::as_bool) == Some(true);
    let mut text = String::new();
    if is_error {
        // OpenAI's tool messages have no error flag: the model is told in the text.
        text.push_str("Error: ");
    }
    match block.get("content") {
        None | Some(Node::Null) => {}
        Some(Node::String(s)) => text.push_str(s),
        Some(Node::Array(items)) => {
            let mut texts = 0;
            for (k, item) in items.iter().enumerate() {
                let item_at = || format!("{}.content.{k}", at());
                let item = item
                    .as_object()
                    .ok_or_else(|| invalid(format!("{}: must be an object", item_at())))?;
                match item.get("type").and_then(Node::as_str).unwrap_or("") {
                    "text" => {
                        if texts > 0 {
                            text.push('\n');
                        }
                        texts += 1;
                        text.push_str(text_of(item, || format!("{}.text", item_at()))?);
                    }
                    "image" => parts.image(image_url(item, &item_at)?),
                    other => return Err(unsupported_block(&item_at(), other)),
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "{}.content: must be a string or a list of content blocks",
                at()
            )));
        }
    }
    out.raw(b"{\"role\":\"tool\",\"tool_call_id\":");
    out.str(id);
    out.raw(b",\"content\":");
    out.str(&text);
    out.raw(b"}");
    Ok(())
}

fn unsupported_block(at: &str, kind: &str) -> InvalidMessages {
    if kind.is_empty() {
        invalid(format!("{at}.type: Field required"))
    } else {
        invalid(format!(
            "{at}: content blocks of type `{kind}` are not supported by this gateway"
        ))
    }
}

fn text_of<'a>(block: &'a Node<'_>, at: impl Fn() -> String) -> Result<&'a str, InvalidMessages> {
    block
        .get("text")
        .and_then(Node::as_str)
        .ok_or_else(|| invalid(format!("{}: Field required", at())))
}

/// An `image` block's source as the URL of an `image_url` part: a `data:` URL for base64.
fn image_url(block: &Node<'_>, at: &dyn Fn() -> String) -> Result<String, InvalidMessages> {
    let source = block
        .get("source")
        .and_then(Node::as_object)
        .ok_or_else(|| invalid(format!("{}.source: Field required", at())))?;
    let get = |key: &str| {
        source
            .get(key)
            .and_then(Node::as_str)
            .ok_or_else(|| invalid(format!("{}.source.{key}: Field required", at())))
    };
    match source.get("type").and_then(Node::as_str).unwrap_or("") {
        "base64" => {
            let (media_type, data) = (get("media_type")?, get("data")?);
            let mut url = String::with_capacity(data.len() + media_type.len() + 13);
            url.push_str("data:");
            url.push_str(media_type);
            url.push_str(";base64,");
            url.push_str(data);
            Ok(url)
        }
        "url" => Ok(get("url")?.to_owned()),
        other => Err(invalid(format!(
            "{}.source.type: image sources of type `{other}` are not supported by this gateway",
            at()
        ))),
    }
}

/// The content parts of one message, written as a plain string when there is a single text
/// part with nothing attached (what every OpenAI-compatible server reads).
#[derive(Default)]
struct Parts<'a> {
    items: Vec<Part<'a>>,
}

enum Part<'a> {
    Text(&'a str, Option<&'a Node<'a>>),
    Image(String),
}

impl<'a> Parts<'a> {
    fn text(&mut self, text: &'a str, cache_control: Option<&'a Node<'a>>) {
        self.items.push(Part::Text(text, cache_control));
    }

    fn image(&mut self, url: String) {
        self.items.push(Part::Image(url));
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn write(&self, out: &mut Json) {
        if let [Part::Text(text, None)] = self.items.as_slice() {
            out.str(text);
            return;
        }
        out.raw(b"[");
        for (k, item) in self.items.iter().enumerate() {
            if k > 0 {
                out.raw(b",");
            }
            match item {
                Part::Text(text, cache_control) => {
                    out.raw(b"{\"type\":\"text\",\"text\":");
                    out.str(text);
                    if let Some(cc) = cache_control {
                        out.raw(b",\"cache_control\":");
                        cc.write(out);
                    }
                    out.raw(b"}");
                }
                Part::Image(url) => {
                    out.raw(b"{\"type\":\"image_url\",\"image_url\":{\"url\":");
                    out.str(url);
                    out.raw(b"}}");
                }
            }
        }
        out.raw(b"]");
    }
}

fn read_fields<'a>(request: &'a Node<'a>) -> Result<Fields<'a>, InvalidMessages> {
    let mut f = Fields::default();
    for (key, value) in request.entries() {
        // An explicit `null` is the field left out, as Anthropic's API takes it.
        if value.is_null() {
            continue;
        }
        let wrong = |what: &str| invalid(format!("{key}: {what}"));
        match &**key {
            "model" => f.model = Some(value.as_str().ok_or_else(|| wrong("must be a string"))?),
            "max_tokens" => {
                f.max_tokens = Some(
                    value
                        .as_u64()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| wrong("must be an integer of at least 1"))?,
                );
            }
            "messages" => {
                f.messages = Some(value.as_array().ok_or_else(|| wrong("must be a list"))?);
            }
            "system" => f.system = Some(value),
            "tools" => f.tools = Some(value.as_array().ok_or_else(|| wrong("must be a list"))?),
            "tool_choice" => {
                f.tool_choice = Some(
                    value
                        .as_object()
                        .ok_or_else(|| wrong("must be an object"))?,
                );
            }
            "stop_sequences" => {
                f.stop_sequences = Some(value.as_array().ok_or_else(|| wrong("must be a list"))?);
            }
            "temperature" | "top_p" => {
                if !value.is_number() {
                    return Err(wrong("must be a number"));
                }
                if key == "temperature" {
                    f.temperature = Some(value);
                } else {
                    f.top_p = Some(value);
                }
            }
            "top_k" => {
                if value.as_u64().is_none() {
                    return Err(wrong("must be a whole number"));
                }
                f.top_k = Some(value);
            }
            "metadata" => {
                let metadata = value
                    .as_object()
                    .ok_or_else(|| wrong("must be an object"))?;
                match metadata.get("user_id") {
                    None | Some(Node::Null) => {}
                    Some(Node::String(user)) => f.user = Some(user),
                    Some(_) => return Err(invalid("metadata.user_id: must be a string")),
                }
            }
            "stream" => f.stream = value.as_bool().ok_or_else(|| wrong("must be a boolean"))?,
            "thinking" => {
                if value.get("type").and_then(Node::as_str) != Some("disabled") {
                    return Err(wrong(
                        "extended thinking is not supported by this gateway (send it disabled, or leave it out)",
                    ));
                }
            }
            // A preference about capacity, not about the answer.
            "service_tier" => {}
            _ => {
                return Err(invalid(format!(
                    "{key}: not supported by this gateway, which translates Messages to OpenAI chat completions"
                )));
            }
        }
    }
    Ok(f)
}

fn write_tools(tools: &[Node<'_>], out: &mut Json) -> Result<(), InvalidMessages> {
    out.raw(b",\"tools\":[");
    for (k, tool) in tools.iter().enumerate() {
        let tool = tool
            .as_object()
            .ok_or_else(|| invalid(format!("tools.{k}: must be an object")))?;
        match tool.get("type").and_then(Node::as_str) {
            None | Some("custom") => {}
            Some(kind) => {
                return Err(invalid(format!(
                    "tools.{k}.type: Anthropic's server and client tools (`{kind}`) are not supported by this gateway; declare the tool with an input_schema"
                )));
            }
        }
        let name = tool
            .get("name")
            .and_then(Node::as_str)
            .ok_or_else(|| invalid(format!("tools.{k}.name: Field required")))?;
        let schema = tool
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| invalid(format!("tools.{k}.input_schema: must be an object")))?;
        if k > 0 {
            out.raw(b",");
        }
        out.raw(b"{\"type\":\"function\",\"function\":{\"name\":");
        out.str(name);
        if let Some(description) = tool.get("description").and_then(Node::as_str) {
            out.raw(b",\"description\":");
            out.str(description);
        }
        out.raw(b",\"parameters\":");
        schema.write(out);
        out.raw(b"}}");
    }
    out.raw(b"]");
    Ok(())
}

fn write_tool_choice(choice: &Node<'_>, out: &mut Json) -> Result<(), InvalidMessages> {
    out.raw(b",\"tool_choice\":");
    match choice.get("type").and_then(Node::as_str).unwrap_or("") {
        "auto" => out.raw(b"\"auto\""),
        "any" => out.raw(b"\"required\""),
        "none" => out.raw(b"\"none\""),
        "tool" => {
            let name = choice
                .get("name")
                .and_then(Node::as_str)
                .ok_or_else(|| invalid("tool_choice.name: Field required"))?;
            out.raw(b"{\"type\":\"function\",\"function\":{\"name\":");
            out.str(name);
            out.raw(b"}}");
        }
        other => {
            return Err(invalid(format!(
                "tool_choice.type: must be auto, any, tool or none, not `{other}`"
            )));
        }
    }
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Node::as_bool)
        == Some(true)
    {
        out.raw(b",\"parallel_tool_calls\":false");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Value {
        let chat = Translator::new().translate(body.as_bytes()).unwrap();
        serde_json::from_slice(chat.body()).unwrap()
    }

    fn refused(body: &str) -> String {
        Translator::new()
            .translate(body.as_bytes())
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn tool_results_become_tool_messages_in_order_then_the_rest() {
        let v = chat(
            r#"{"model":"m","max_tokens":5,"messages":[
                {"role":"assistant","content":[{"type":"text","text":"Let me look."},
                  {"type":"tool_use","id":"t1","name":"a","input":{"x":1}},
                  {"type":"tool_use","id":"t2","name":"b","input":{}}]},
                {"role":"user","content":[
                  {"type":"tool_result","tool_use_id":"t1","content":"one"},
                  {"type":"tool_result","tool_use_id":"t2","is_error":true,
                   "content":[{"type":"text","text":"bad"},{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]},
                  {"type":"text","text":"go on"}]}]}"#,
        );
        let m = &v["messages"];
        assert_eq!(m[0]["content"], "Let me look.");
        assert_eq!(m[0]["tool_calls"][0]["function"]["arguments"], r#"{"x":1}"#);
        assert_eq!(m[0]["tool_calls"][1]["id"], "t2");
        assert_eq!(
            m[1],
            serde_json::json!({"role":"tool","tool_call_id":"t1","content":"one"})
        );
        assert_eq!(m[2]["content"], "Error: bad");
        assert_eq!(m[3]["role"], "user");
        assert_eq!(m[3]["content"][0]["image_url"]["url"], "https://x/y.png");
        assert_eq!(m[3]["content"][1]["text"], "go on");
        assert_eq!(m.as_array().unwrap().len(), 4);
    }

    #[test]
    fn settings_map_and_unknown_fields_are_named() {
        let v = chat(
            r#"{"model":"m","max_tokens":5,"stream":true,"stop_sequences":["END"],"top_k":3,
                "temperature":0.5,"metadata":{"user_id":"u1"},"service_tier":"auto",
                "tool_choice":{"type":"any","disable_parallel_tool_use":true},
                "tools":[{"name":"f","description":"d","input_schema":{"type":"object"}}],
                "messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stop"][0], "END");
        assert_eq!(v["top_k"], 3);
        assert_eq!(v["user"], "u1");
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["tools"][0]["function"]["parameters"]["type"], "object");
        assert!(refused(r#"{"model":"m","max_tokens":5,"messages":[],"thinking":{"type":"enabled","budget_tokens":1024}}"#).starts_with("thinking:"));
        assert!(
            refused(r#"{"model":"m","max_tokens":5,"messages":[],"frobnicate":1}"#)
                .starts_with("frobnicate:")
        );
        assert!(refused(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#).contains("messages.0.content.0"));
        assert!(refused(r#"{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#).starts_with("tools.0.type"));
    }

    #[test]
    fn cache_control_is_kept_only_when_asked() {
        let body = r#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(chat(body)["messages"][0]["content"], "S");
        let kept = Translator::new()
            .keep_cache_control(true)
            .translate(body.as_bytes())
            .unwrap();
        let v: Value = serde_json::from_slice(kept.body()).unwrap();
        assert_eq!(
            v["messages"][0]["content"][0]["cache_control"]["type"],
            "ephemeral"
        );
    }
}
