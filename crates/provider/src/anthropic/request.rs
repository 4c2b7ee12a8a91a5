//! OpenAI chat-completions request → Anthropic Messages request.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_core::error::InvalidRequest;
use serde_json::Value;

use super::response::ResponseTranslator;
use crate::json::Json;
use crate::tools;

/// The default `max_tokens` sent when the client gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The name of the tool forced to carry a `response_format: json_schema` answer when the
/// schema has no name.
const JSON_TOOL: &str = "json_response";

/// Translates OpenAI chat-completions requests into Anthropic Messages requests (see the
/// [module docs](super) for the mapping and what is refused).
///
/// ```
/// use bytes::Bytes;
/// use portcullis_core::RequestView;
/// use portcullis_provider::anthropic::Translator;
///
/// let view = RequestView::parse(Bytes::from_static(
///     br#"{"model":"claude-sonnet-4-5","messages":[
///         {"role":"system","content":"Be brief."},
///         {"role":"user","content":"Hi"}]}"#,
/// ))
/// .unwrap();
/// let request = Translator::new().max_tokens(1024).request(&view).unwrap();
/// let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
/// assert_eq!(body["system"][0]["text"], "Be brief.");
/// assert_eq!(body["max_tokens"], 1024);
/// assert_eq!(body["messages"][0]["content"][0]["text"], "Hi");
///
/// let refused = RequestView::parse(Bytes::from_static(br#"{"model":"m","messages":[],"n":2}"#));
/// let err = Translator::new().request(&refused.unwrap()).unwrap_err();
/// assert_eq!(err.param.as_deref(), Some("n"));
/// ```
#[derive(Clone, Debug)]
pub struct Translator {
    max_tokens: u32,
    drop_unsupported: bool,
    /// Vertex AI's bodies: no `model`, and this `anthropic_version`.
    vertex_version: Option<Arc<str>>,
}

impl Default for Translator {
    fn default() -> Self {
        Self::new()
    }
}

impl Translator {
    /// A translator with `max_tokens` [`DEFAULT_MAX_TOKENS`] that refuses unsupported fields.
    pub fn new() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            drop_unsupported: false,
            vertex_version: None,
        }
    }

    /// Sets the `max_tokens` sent when the request has neither `max_completion_tokens` nor
    /// `max_tokens`.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The `max_tokens` sent when a request gives none.
    pub fn default_max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Drops the fields Anthropic cannot honour (`n` > 1, `logprobs`, penalties, `seed`,
    /// `logit_bias`, …, and `response_format: json_object`) instead of refusing the request
    /// with a 400 naming the field (LiteLLM's and Portkey's `drop_params`). Default: refuse.
    pub fn drop_unsupported(mut self, drop: bool) -> Self {
        self.drop_unsupported = drop;
        self
    }

    /// Writes bodies for Claude on Vertex AI (`rawPredict`): without `model`, which Vertex AI
    /// takes from the URL, and with `anthropic_version` = `version` (such as
    /// [`VERTEX_VERSION`](super::VERTEX_VERSION)) in the body, where Vertex AI wants it; a
    /// request's own `anthropic_version` wins.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use portcullis_core::RequestView;
    /// use portcullis_provider::anthropic::{Translator, VERTEX_VERSION};
    ///
    /// let view = RequestView::parse(Bytes::from_static(
    ///     br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hi"}]}"#,
    /// ))
    /// .unwrap();
    /// let request = Translator::new().vertex(VERTEX_VERSION).request(&view).unwrap();
    /// assert_eq!(request.model(), "claude-sonnet-4-5");
    /// let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
    /// assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    /// assert!(body.get("model").is_none());
    /// ```
    pub fn vertex(mut self, version: impl Into<Arc<str>>) -> Self {
        self.vertex_version = Some(version.into());
        self
    }

    /// Whether bodies are written for Vertex AI (see [`vertex`](Self::vertex)).
    pub fn is_vertex(&self) -> bool {
        self.vertex_version.is_some()
    }

    /// The Anthropic request for `view`, or why there is none.
    ///
    /// # Errors
    /// An [`InvalidRequest`] (400) naming the field at fault: a field Anthropic cannot
    /// honour, a value out of Anthropic's range, or a malformed message, part or tool.
    pub fn request(&self, view: &RequestView) -> Result<MessagesRequest, InvalidRequest> {
        translate(self, view)
    }
}

/// An Anthropic Messages request translated from an OpenAI one, and what its answer needs to
/// be translated back.
#[derive(Clone, Debug)]
pub struct MessagesRequest {
    body: Bytes,
    model: Arc<str>,
    stream: bool,
    include_usage: bool,
    beta: Option<String>,
    version: Option<String>,
    response: ResponseTranslator,
}

impl MessagesRequest {
    /// The JSON body for `POST /v1/messages` (or Vertex AI's `rawPredict`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The model asked for (in the body for Anthropic's API, in the URL for Vertex AI's).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// Whether the client asked for usage in its stream (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// The `anthropic-beta` features the request asked for in its body (`anthropic_beta`,
    /// a string or a list), comma-separated.
    pub fn beta(&self) -> Option<&str> {
        self.beta.as_deref()
    }

    /// The `anthropic-version` the request asked for in its body (`anthropic_version`).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The translator of this request's answer.
    pub fn response(&self) -> &ResponseTranslator {
        &self.response
    }

    /// The body and the translator of the answer.
    pub fn into_parts(self) -> (Bytes, ResponseTranslator) {
        (self.body, self.response)
    }
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> InvalidRequest {
    InvalidRequest::param(param, message)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

struct Turn<'a> {
    role: Role,
    blocks: Vec<Block<'a>>,
}

enum Block<'a> {
    Text {
        text: &'a str,
        cache_control: Option<&'a Value>,
    },
    Image {
        source: ImageSource<'a>,
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        id: &'a str,
        content: ToolContent<'a>,
    },
}

enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url(&'a str),
}

enum ToolContent<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

/// What a field of the request asks that Anthropic cannot do, if anything.
fn unsupported(key: &str, value: &Value) -> Option<&'static str> {
    let set = !value.is_null();
    let refused = match key {
        "n" => value.as_u64().is_some_and(|n| n > 1),
        "logprobs" => value.as_bool() == Some(true),
        "top_logprobs" => set && value.as_u64() != Some(0),
        "presence_penalty" | "frequency_penalty" => set && value.as_f64() != Some(0.0),
        "logit_bias" => value.as_object().is_some_and(|m| !m.is_empty()),
        "seed" | "functions" | "function_call" | "audio" | "prediction" | "reasoning_effort" => set,
        "modalities" => value
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m != "text")),
        _ => return None,
    };
    if !refused {
        return None;
    }
    Some(match key {
        "n" => "Anthropic returns one choice per request",
        "logprobs" | "top_logprobs" => "Anthropic does not return log probabilities",
        "presence_penalty" | "frequency_penalty" => "Anthropic has no repetition penalties",
        "logit_bias" => "Anthropic has no logit bias",
        "seed" => "Anthropic has no seeded sampling",
        "functions" | "function_call" => "legacy function calling: send `tools` instead",
        "reasoning_effort" => "send Anthropic's `thinking` object instead",
        _ => "Anthropic answers with text only",
    })
}

fn translate(options: &Translator, view: &RequestView) -> Result<MessagesRequest, InvalidRequest> {
    let mut model = None;
    let mut messages: &[Value] = &[];
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    let mut temperature = None;
    let mut top_p = None;
    let mut top_k = None;
    let mut stop = None;
    let mut user = None;
    let mut tools = None;
    let mut tool_choice = None;
    let mut parallel = true;
    let mut response_format = None;
    let mut thinking = None;
    let mut beta = None;
    let mut version = None;
    for (key, value) in view.iter() {
        if let Some(why) = unsupported(key, value) {
            if options.drop_unsupported {
                continue;
            }
            return Err(bad(
                key,
                format!("`{key}` is not supported by Anthropic: {why}"),
            ));
        }
        if value.is_null() {
            continue;
        }
        match key {
            "model" => model = value.as_str(),
            "messages" => messages = view.messages().unwrap_or_default(),
            "max_tokens" => max_tokens = Some(positive(key, value)?),
            "max_completion_tokens" => max_completion_tokens = Some(positive(key, value)?),
            "temperature" => {
                let t = number(key, value)?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(bad(
                        key,
                        format!(
                            "`temperature` must be between 0 and 1 for Anthropic, got {t} \
                             (OpenAI's range is 0 to 2; it is not clamped, which would \
                             change the sampling silently)"
                        ),
                    ));
                }
                temperature = Some(value);
            }
            "top_p" => {
                number(key, value)?;
                top_p = Some(value);
            }
            "top_k" => {
                positive(key, value)?;
                top_k = Some(value);
            }
            "stop" => stop = Some(value),
            "user" => user = value.as_str(),
            "tools" => tools = Some(value),
            "tool_choice" => tool_choice = Some(value),
            "parallel_tool_calls" => parallel = value.as_bool() != Some(false),
            "response_format" => response_format = Some(value),
            "thinking" => thinking = Some(value),
            "anthropic_beta" => beta = Some(header_list(key, value)?),
            "anthropic_version" => {
                version = Some(
                    value
                        .as_str()
                        .ok_or_else(|| bad(key, "`anthropic_version` must be a string"))?
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    let model = model.ok_or_else(|| bad("model", "`model` is required"))?;

    // `response_format: json_schema` is answered through a tool the model must call.
    let mut json_tool: Option<(&str, &Value, Option<&str>)> = None;
    if let Some(format) = response_format {
        match format.get("type").and_then(Value::as_str) {
            None | Some("text") => {}
            Some("json_schema") => {
                let spec = format.get("json_schema");
                let schema = spec.and_then(|s| s.get("schema")).ok_or_else(|| {
                    bad(
                        "response_format.json_schema.schema",
                        "`response_format.json_schema.schema` is required",
                    )
                })?;
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(bad(
                        "response_format.json_schema.schema",
                        "Anthropic answers `json_schema` through a tool, whose input must be an \
                         object: the schema's `type` must be \"object\"",
                    ));
                }
                if tools.is_some_and(|t| t.as_array().is_none_or(|t| !t.is_empty())) {
                    return Err(bad(
                        "response_format",
                        "`response_format: json_schema` cannot be combined with `tools` on \
                         Anthropic: the answer is forced through a tool of its own",
                    ));
                }
                let name = spec
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or(JSON_TOOL);
                let description = spec
                    .and_then(|s| s.get("description"))
                    .and_then(Value::as_str);
                json_tool = Some((name, schema, description));
            }
            Some("json_object") if options.drop_unsupported => {}
            Some(other) => {
                return Err(bad(
                    "response_format",
                    format!(
                        "`response_format` type `{other}` is not supported by Anthropic, which \
                         has no JSON mode: send a `json_schema`"
                    ),
                ));
            }
        }
    }

    let mut system: Vec<Block<'_>> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}]{field}");
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            bad(
                at(".role"),
                format!("`messages[{i}].role` must be a string"),
            )
        })?;
        let content = message.get("content").filter(|c| !c.is_null());
        let (role, blocks) = match role {
            "system" | "developer" => {
                if let Some(content) = content {
                    parts(content, &at(".content"), &mut system, PartsOf::System)?;
                }
                continue;
            }
            "user" => {
                let mut blocks = Vec::new();
                if let Some(content) = content {
                    parts(content, &at(".content"), &mut blocks, PartsOf::User)?;
                }
                (Role::User, blocks)
            }
            "assistant" => {
                let mut blocks = Vec::new();
                if let Some(content) = content {
                    parts(content, &at(".content"), &mut blocks, PartsOf::Assistant)?;
                }
                if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    tool_uses(calls, &at(".tool_calls"), &mut blocks)?;
                }
                (Role::Assistant, blocks)
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            at(".tool_call_id"),
                            format!("`messages[{i}].tool_call_id` must be a string"),
                        )
                    })?;
                let content = match content {
                    None => ToolContent::Text(""),
                    Some(Value::String(text)) => ToolContent::Text(text),
                    Some(content) => {
                        let mut blocks = Vec::new();
                        parts(content, &at(".content"), &mut blocks, PartsOf::User)?;
                        ToolContent::Blocks(blocks)
                    }
                };
                (Role::User, vec![Block::ToolResult { id, content }])
            }
            other => {
                return Err(bad(
                    at(".role"),
                    format!(
                        "`messages[{i}].role` `{other}` is not supported by Anthropic \
                         (system, developer, user, assistant, tool)"
                    ),
                ));
            }
        };
        // Anthropic's turns alternate: consecutive tool results, and any two turns of one
        // role, become one turn.
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }

    let mut out = Json::with_capacity(view.bytes().len() + 128);
    match &options.vertex_version {
        // Vertex AI takes the model from the URL, and the version from the body only.
        Some(configured) => {
            out.raw(b"{\"anthropic_version\":");
            out.str(version.as_deref().unwrap_or(&**configured));
        }
        None => {
            out.raw(b"{\"model\":");
            out.str(model);
        }
    }
    out.raw(b",\"max_tokens\":");
    out.u64(
        max_completion_tokens
            .or(max_tokens)
            .unwrap_or(u64::from(options.max_tokens)),
    );
    if !system.is_empty() {
        out.raw(b",\"system\":");
        write_blocks(&mut out, &system);
    }
    out.raw(b",\"messages\":[");
    for (n, turn) in turns.iter().enumerate() {
        if n > 0 {
            out.raw(b",");
        }
        out.raw(match turn.role {
            Role::User => b"{\"role\":\"user\",\"content\":",
            Role::Assistant => b"{\"role\":\"assistant\",\"content\":",
        });
        write_blocks(&mut out, &turn.blocks);
        out.raw(b"}");
    }
    out.raw(b"]");
    for (key, value) in [
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("thinking", thinking),
    ] {
        if let Some(value) = value {
            out.raw(b",\"");
            out.raw(key.as_bytes());
            out.raw(b"\":");
            out.value(value);
        }
    }
    if let Some(stop) = stop {
        out.raw(b",\"stop_sequences\":");
        match stop {
            Value::String(s) => {
                out.raw(b"[");
                out.str(s);
                out.raw(b"]");
            }
            Value::Array(list) if list.iter().all(Value::is_string) => out.value(stop),
            _ => {
                return Err(bad("stop", "`stop` must be a string or a list of strings"));
            }
        }
    }
    if view.stream() {
        out.raw(b",\"stream\":true");
    }
    if let Some(user) = user {
        out.raw(b",\"metadata\":{\"user_id\":");
        out.str(user);
        out.raw(b"}");
    }
    if let Some((name, schema, description)) = json_tool {
        out.raw(b",\"tools\":[{\"name\":");
        out.str(name);
        out.raw(b",\"description\":");
        out.str(description.unwrap_or("Answer with the response, as this tool's input."));
        out.raw(b",\"input_schema\":");
        out.value(schema);
        out.raw(b"}],\"tool_choice\":{\"type\":\"tool\",\"name\":");
        out.str(name);
        out.raw(b"}");
    } else {
        let has_tools = match tools {
            Some(tools) => write_tools(&mut out, tools)?,
            None => false,
        };
        write_tool_choice(&mut out, tool_choice, parallel, has_tools)?;
    }
    out.raw(b"}");

    Ok(MessagesRequest {
        body: out.into_bytes(),
        model: Arc::from(model),
        stream: view.stream(),
        include_usage: view.include_usage(),
        beta,
        version,
        response: ResponseTranslator::new(json_tool.map(|(name, _, _)| Arc::from(name))),
    })
}

fn number(key: &str, value: &Value) -> Result<f64, InvalidRequest> {
    value
        .as_f64()
        .ok_or_else(|| bad(key, format!("`{key}` must be a number")))
}

fn positive(key: &str, value: &Value) -> Result<u64, InvalidRequest> {
    value
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(key, format!("`{key}` must be a positive integer")))
}

/// A header value from a string or a list of strings, comma-separated.
fn header_list(key: &str, value: &Value) -> Result<String, InvalidRequest> {
    let list = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut joined = String::new();
            for item in items {
                let item = item
                    .as_str()
                    .ok_or_else(|| bad(key, format!("`{key}` must be a string or strings")))?;
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(item);
            }
            joined
        }
        _ => return Err(bad(key, format!("`{key}` must be a string or strings"))),
    };
    if http::HeaderValue::from_str(&list).is_err() {
        return Err(bad(key, format!("`{key}` is not a valid header value")));
    }
    Ok(list)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PartsOf {
    System,
    User,
    Assistant,
}

/// Appends the blocks of one message's `content` (a string or a list of parts).
fn parts<'a>(
    content: &'a Value,
    at: &str,
    blocks: &mut Vec<Block<'a>>,
    of: PartsOf,
) -> Result<(), InvalidRequest> {
    let list = match content {
        Value::String(text) => {
            // An assistant turn with tool calls often says `"content": ""`, and Anthropic
            // refuses empty text blocks.
            if !(text.is_empty() && of == PartsOf::Assistant) {
                blocks.push(Block::Text {
                    text,
                    cache_control: None,
                });
            }
            return Ok(());
        }
        Value::Array(list) => list,
        _ => {
            return Err(bad(
                at,
                format!("`{at}` must be a string or a list of parts"),
            ));
        }
    };
    for (j, part) in list.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let cache_control = part.get("cache_control").filter(|c| !c.is_null());
        match kind {
            "text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("{at}[{j}].text"),
                        format!("`{at}[{j}].text` must be a string"),
                    )
                })?;
                if !(text.is_empty() && of == PartsOf::Assistant) {
                    blocks.push(Block::Text {
                        text,
                        cache_control,
                    });
                }
            }
            "image_url" if of == PartsOf::User => {
                let url = part
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            format!("{at}[{j}].image_url.url"),
                            format!("`{at}[{j}].image_url.url` must be a string"),
                        )
                    })?;
                blocks.push(Block::Image {
                    source: image_source(url, &format!("{at}[{j}].image_url.url"))?,
                    cache_control,
                });
            }
            // A refusal the model gave earlier is part of its turn, as text.
            "refusal" if of == PartsOf::Assistant => {
                if let Some(text) = part.get("refusal").and_then(Value::as_str) {
                    blocks.push(Block::Text {
                        text,
                        cache_control,
                    });
                }
            }
            other => {
                let whose = match of {
                    PartsOf::System => "system message",
                    PartsOf::User => "user or tool message",
                    PartsOf::Assistant => "assistant message",
                };
                return Err(bad(
                    format!("{at}[{j}].type"),
                    format!("a part of type `{other}` in a {whose} is not supported by Anthropic"),
                ));
            }
        }
    }
    Ok(())
}

/// An image part's source: a `data:` URI becomes base64, an http(s) URL is passed as a URL.
fn image_source<'a>(url: &'a str, at: &str) -> Result<ImageSource<'a>, InvalidRequest> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
            bad(
                at,
                "an image `data:` URI must be base64 (`data:image/png;base64,…`)",
            )
        })?;
        return Ok(ImageSource::Base64 { media_type, data });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(ImageSource::Url(url));
    }
    Err(bad(
        at,
        "an image URL must be `https://`, `http://` or a base64 `data:` URI",
    ))
}

/// Appends an assistant message's `tool_calls` as `tool_use` blocks.
fn tool_uses<'a>(
    calls: &'a Value,
    at: &str,
    blocks: &mut Vec<Block<'a>>,
) -> Result<(), InvalidRequest> {
    let calls = calls
        .as_array()
        .ok_or_else(|| bad(at, format!("`{at}` must be a list")))?;
    for (k, call) in calls.iter().enumerate() {
        let field = |f: &str| -> Result<&'a str, InvalidRequest> {
            let value = match f {
                "id" => call.get("id"),
                _ => call.get("function").and_then(|fun| fun.get(f)),
            };
            value.and_then(Value::as_str).ok_or_else(|| {
                let path = if f == "id" {
                    format!("{at}[{k}].id")
                } else {
                    format!("{at}[{k}].function.{f}")
                };
                bad(path.clone(), format!("`{path}` must be a string"))
            })
        };
        let id = field("id")?;
        let name = field("name")?;
        let arguments = field("arguments")?;
        let path = format!("{at}[{k}].function.arguments");
        // An empty string is what a call without arguments streams as: no arguments.
        let input = if arguments.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str::<Value>(arguments).map_err(|e| {
                bad(
                    path.clone(),
                    format!("the arguments of tool call `{id}` (`{name}`) are not valid JSON: {e}"),
                )
            })?
        };
        if !input.is_object() {
            return Err(bad(
                path,
                format!("the arguments of tool call `{id}` (`{name}`) must be a JSON object"),
            ));
        }
        blocks.push(Block::ToolUse { id, name, input });
    }
    Ok(())
}

fn write_blocks(out: &mut Json, blocks: &[Block<'_>]) {
    out.raw(b"[");
    for (n, block) in blocks.iter().enumerate() {
        if n > 0 {
            out.raw(b",");
        }
        write_block(out, block);
    }
    out.raw(b"]");
}

fn write_cache_control(out: &mut Json, cache_control: Option<&Value>) {
    if let Some(cache_control) = cache_control {
        out.raw(b",\"cache_control\":");
        out.value(cache_control);
    }
}

fn write_block(out: &mut Json, block: &Block<'_>) {
    match block {
        Block::Text {
            text,
            cache_control,
        } => {
            out.raw(b"{\"type\":\"text\",\"text\":");
            out.str(text);
            write_cache_control(out, *cache_control);
        }
        Block::Image {
            source,
            cache_control,
        } => {
            match source {
                ImageSource::Base64 { media_type, data } => {
                    out.raw(b"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
                    out.str(media_type);
                    out.raw(b",\"data\":");
                    out.str(data);
                }
                ImageSource::Url(url) => {
                    out.raw(b"{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
                    out.str(url);
                }
            }
            out.raw(b"}");
            write_cache_control(out, *cache_control);
        }
        Block::ToolUse { id, name, input } => {
            out.raw(b"{\"type\":\"tool_use\",\"id\":");
            out.str(id);
            out.raw(b",\"name\":");
            out.str(name);
            out.raw(b",\"input\":");
            out.value(input);
        }
        Block::ToolResult { id, content } => {
            out.raw(b"{\"type\":\"tool_result\",\"tool_use_id\":");
            out.str(id);
            out.raw(b",\"content\":");
            match content {
                ToolContent::Text(text) => out.str(text),
                ToolContent::Blocks(blocks) => write_blocks(out, blocks),
            }
        }
    }
    out.raw(b"}");
}

/// Writes `tools`; says whether there was any.
fn write_tools(out: &mut Json, tools: &Value) -> Result<bool, InvalidRequest> {
    let functions = tools::functions(tools, "Anthropic")?;
    if functions.is_empty() {
        return Ok(false);
    }
    out.raw(b",\"tools\":[");
    for function in &functions {
        if function.index > 0 {
            out.raw(b",");
        }
        out.raw(b"{\"name\":");
        out.str(function.name);
        if let Some(description) = function.description {
            out.raw(b",\"description\":");
            out.str(description);
        }
        out.raw(b",\"input_schema\":");
        match function.parameters {
            Some(parameters) => out.value(parameters),
            // Anthropic requires a schema; OpenAI lets a function without parameters omit it.
            None => out.raw(b"{\"type\":\"object\",\"properties\":{}}"),
        }
        write_cache_control(
            out,
            function.tool.get("cache_control").filter(|c| !c.is_null()),
        );
        out.raw(b"}");
    }
    out.raw(b"]");
    Ok(true)
}

fn write_tool_choice(
    out: &mut Json,
    choice: Option<&Value>,
    parallel: bool,
    has_tools: bool,
) -> Result<(), InvalidRequest> {
    fn named(v: &Value) -> Option<&str> {
        v.get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
    }
    let (kind, name) = match choice {
        None if has_tools && !parallel => ("auto", None),
        None => return Ok(()),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ("auto", None),
            "required" => ("any", None),
            "none" => ("none", None),
            other => {
                return Err(bad(
                    "tool_choice",
                    format!("`tool_choice` `{other}` is not one of auto, required, none"),
                ));
            }
        },
        Some(v) => match named(v) {
            Some(name) => ("tool", Some(name)),
            None => {
                return Err(bad(
                    "tool_choice",
                    "`tool_choice` must be auto, required, none or {\"type\":\"function\",\
                     \"function\":{\"name\":…}}",
                ));
            }
        },
    };
    out.raw(b",\"tool_choice\":{\"type\":\"");
    out.raw(kind.as_bytes());
    out.raw(b"\"");
    if let Some(name) = name {
        out.raw(b",\"name\":");
        out.str(name);
    }
    if !parallel && kind != "none" {
        out.raw(b",\"disable_parallel_tool_use\":true");
    }
    out.raw(b"}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(body: Value) -> Result<Value, InvalidRequest> {
        let view = RequestView::parse(Bytes::from(serde_json::to_vec(&body).unwrap())).unwrap();
        let request = Translator::new().request(&view)?;
        Ok(serde_json::from_slice(request.body()).unwrap())
    }

    fn refused(body: Value) -> InvalidRequest {
        translate(body).unwrap_err()
    }

    #[test]
    fn system_and_developer_messages_go_to_system_in_order() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "system", "content": "one"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "two",
                "cache_control": {"type": "ephemeral"}}]},
        ]}))
        .unwrap();
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "one"},
                   {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(out["messages"].as_array().unwrap().len(), 1);
        assert_eq!(out["max_tokens"], 4096);
    }

    #[test]
    fn tool_messages_merge_into_one_user_turn_and_roles_alternate() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "thanks"},
        ]}))
        .unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}},
                    {"type": "tool_use", "id": "c2", "name": "g", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "two"}]},
                    {"type": "text", "text": "thanks"}]},
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_name_the_call() {
        let err = refused(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
        ]}));
        assert_eq!(
            err.param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        assert!(err.message.contains("call_9"), "{}", err.message);
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let out = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.jpg", "detail": "high"}},
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
            ])
        );
        let err = refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}),
        );
        assert_eq!(
            err.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
    }

    #[test]
    fn sampling_stop_user_and_tools() {
        let out = translate(json!({"model": "m", "messages": [],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5, "top_p": 0.9,
            "stop": "END", "user": "u-1", "stream": true, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "g"}}],
            "tool_choice": "required"}))
        .unwrap();
        assert_eq!(out["max_tokens"], 20);
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(out["stream"], true);
        assert_eq!(
            out["tools"],
            json!([
                {"name": "f", "description": "d", "input_schema": {"type": "object"}},
                {"name": "g", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        for (choice, want) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let out = translate(json!({"model": "m", "messages": [], "tool_choice": choice,
                "tools": [{"type": "function", "function": {"name": "f"}}]}))
            .unwrap();
            assert_eq!(out["tool_choice"], want);
        }
    }

    #[test]
    fn refusals_name_the_field() {
        for (field, value) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(-1)),
            ("seed", json!(7)),
            ("logit_bias", json!({"50256": -100})),
            ("temperature", json!(1.5)),
        ] {
            let mut body = json!({"model": "m", "messages": []});
            body[field] = value;
            let err = refused(body);
            assert_eq!(err.param.as_deref(), Some(field), "{}", err.message);
            assert!(err.message.contains(field), "{}", err.message);
        }
        // Harmless values of the same fields pass.
        let out = translate(
            json!({"model": "m", "messages": [], "n": 1, "logprobs": false,
            "presence_penalty": 0, "logit_bias": {}, "seed": null}),
        );
        assert!(out.is_ok());
        let err = refused(json!({"model": "m", "messages": [],
            "response_format": {"type": "json_object"}}));
        assert_eq!(err.param.as_deref(), Some("response_format"));
        // Dropped on request.
        let view = RequestView::parse(Bytes::from_static(
            br#"{"model":"m","messages":[],"n":3,"seed":1,"response_format":{"type":"json_object"}}"#,
        ))
        .unwrap();
        let out = Translator::new()
            .drop_unsupported(true)
            .request(&view)
            .unwrap();
        let out: Value = serde_json::from_slice(out.body()).unwrap();
        assert!(out.get("n").is_none() && out.get("seed").is_none());
    }

    #[test]
    fn json_schema_is_forced_through_a_tool() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let out = translate(json!({"model": "m", "messages": [],
            "response_format": {"type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema}}}))
        .unwrap();
        assert_eq!(out["tools"][0]["name"], "answer");
        assert_eq!(out["tools"][0]["input_schema"], schema);
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "answer"})
        );
    }
}
