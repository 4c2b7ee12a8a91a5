//! OpenAI chat-completions and embeddings requests → Gemini `generateContent` and
//! `embedContent` / `batchEmbedContents` requests.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_core::error::InvalidRequest;
use serde_json::{Map, Value};

use super::embed::EmbeddingTranslator;
use super::response::{ResponseTranslator, SIGNATURE_MARK};
use super::schema::schema;
use crate::json::Json;
use crate::tools;

/// Translates OpenAI chat-completions and embeddings requests into Gemini requests (see the
/// [module docs](super) for the mapping and what is refused).
///
/// ```
/// use bytes::Bytes;
/// use portcullis_core::RequestView;
/// use portcullis_provider::gemini::Translator;
///
/// let view = RequestView::parse(Bytes::from_static(
///     br#"{"model":"gemini-2.5-flash","max_tokens":100,"messages":[
///         {"role":"system","content":"Be brief."},
///         {"role":"user","content":"Hi"}]}"#,
/// ))
/// .unwrap();
/// let request = Translator::new().request(&view).unwrap();
/// assert_eq!(request.model(), "gemini-2.5-flash");
/// let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
/// assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
/// assert_eq!(body["contents"][0]["parts"][0]["text"], "Hi");
/// assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
///
/// let refused = RequestView::parse(Bytes::from_static(
///     br#"{"model":"m","messages":[],"logit_bias":{"1":5}}"#,
/// ));
/// let err = Translator::new().request(&refused.unwrap()).unwrap_err();
/// assert_eq!(err.param.as_deref(), Some("logit_bias"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Translator {
    drop_unsupported: bool,
}

impl Translator {
    /// A translator that refuses the fields Gemini cannot honour.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the fields Gemini cannot honour (`logprobs`, `logit_bias`,
    /// `parallel_tool_calls: false`, …) instead of refusing the request with a 400 naming the
    /// field (LiteLLM's and Portkey's `drop_params`). Default: refuse.
    pub fn drop_unsupported(mut self, drop: bool) -> Self {
        self.drop_unsupported = drop;
        self
    }

    /// Whether the fields Gemini cannot honour are dropped (see
    /// [`drop_unsupported`](Self::drop_unsupported)).
    pub fn drops_unsupported(&self) -> bool {
        self.drop_unsupported
    }

    /// The Gemini `generateContent` request for a chat completion `view`, or why there is
    /// none.
    ///
    /// # Errors
    /// An [`InvalidRequest`] (400) naming the field at fault: a field Gemini cannot honour, a
    /// malformed message, part, tool or schema, or a tool message whose call is unknown.
    pub fn request(&self, view: &RequestView) -> Result<GenerateRequest, InvalidRequest> {
        translate(self, view)
    }

    /// The Gemini `embedContent` (one input) or `batchEmbedContents` (a list) request for an
    /// embeddings `view`.
    ///
    /// # Errors
    /// An [`InvalidRequest`] (400) naming the field at fault: no `model`, an `input` that is
    /// not a string or a list of strings (token arrays cannot be sent to Gemini), an
    /// `encoding_format` other than `float` and `base64`.
    pub fn embeddings(&self, view: &RequestView) -> Result<EmbedRequest, InvalidRequest> {
        let input = EmbedInput::of(view)?;
        let mut out = Json::with_capacity(view.bytes().len() + 64 * input.texts.len());
        let content = |out: &mut Json, text: &str| {
            out.raw(b"\"content\":{\"parts\":[{\"text\":");
            out.str(text);
            out.raw(b"}]}");
            if let Some(d) = input.dimensions {
                out.raw(b",\"outputDimensionality\":");
                out.u64(d);
            }
        };
        let method = if input.batch {
            out.raw(b"{\"requests\":[");
            let model = format!("models/{}", input.model);
            for (n, text) in input.texts.iter().enumerate() {
                out.raw(if n == 0 { b"{" } else { b",{" });
                out.raw(b"\"model\":");
                out.str(&model);
                out.raw(b",");
                content(&mut out, text);
                out.raw(b"}");
            }
            out.raw(b"]}");
            "batchEmbedContents"
        } else {
            out.raw(b"{");
            content(&mut out, input.texts[0]);
            out.raw(b"}");
            "embedContent"
        };
        Ok(input.request(out, method))
    }

    /// The Vertex AI `predict` request for an embeddings `view`: `{"instances": [{"content":
    /// text}, …], "parameters": {"outputDimensionality": dimensions}}`, one instance per
    /// input, whether one or a list.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use portcullis_core::RequestView;
    /// use portcullis_provider::gemini::Translator;
    ///
    /// let view = RequestView::parse(Bytes::from_static(
    ///     br#"{"model":"text-embedding-005","input":["a","b"],"dimensions":8}"#,
    /// ))
    /// .unwrap();
    /// let request = Translator::new().vertex_embeddings(&view).unwrap();
    /// assert_eq!(request.method(), "predict");
    /// let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
    /// assert_eq!(body["instances"][1]["content"], "b");
    /// assert_eq!(body["parameters"]["outputDimensionality"], 8);
    /// ```
    ///
    /// # Errors
    /// As [`embeddings`](Self::embeddings).
    pub fn vertex_embeddings(&self, view: &RequestView) -> Result<EmbedRequest, InvalidRequest> {
        let input = EmbedInput::of(view)?;
        let mut out = Json::with_capacity(view.bytes().len() + 32 * input.texts.len());
        out.raw(b"{\"instances\":[");
        for (n, text) in input.texts.iter().enumerate() {
            out.raw(if n == 0 { b"{" } else { b",{" });
            out.raw(b"\"content\":");
            out.str(text);
            out.raw(b"}");
        }
        out.raw(b"]");
        if let Some(d) = input.dimensions {
            out.raw(b",\"parameters\":{\"outputDimensionality\":");
            out.u64(d);
            out.raw(b"}");
        }
        out.raw(b"}");
        Ok(input.request(out, "predict"))
    }
}

/// A Gemini `generateContent` request translated from an OpenAI one, and what its answer
/// needs to be translated back.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    body: Bytes,
    model: Arc<str>,
    stream: bool,
    include_usage: bool,
    response: ResponseTranslator,
}

impl GenerateRequest {
    /// The JSON body for `…/models/{model}:generateContent` (or `:streamGenerateContent`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The model, as it goes in the URL (a leading `models/` removed).
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

    /// The translator of this request's answer.
    pub fn response(&self) -> &ResponseTranslator {
        &self.response
    }

    /// The body and the translator of the answer.
    pub fn into_parts(self) -> (Bytes, ResponseTranslator) {
        (self.body, self.response)
    }
}

/// A Gemini embeddings request translated from an OpenAI one.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    body: Bytes,
    model: Arc<str>,
    method: &'static str,
    response: EmbeddingTranslator,
}

impl EmbedRequest {
    /// The JSON body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The model, as it goes in the URL.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The Gemini method: `batchEmbedContents` for a list of inputs, `embedContent` for one;
    /// `predict` on Vertex AI.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The body and the translator of the answer.
    pub fn into_parts(self) -> (Bytes, EmbeddingTranslator) {
        (self.body, self.response)
    }
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> InvalidRequest {
    InvalidRequest::param(param, message)
}

/// The model as it goes in the URL path: a leading `models/` removed, and nothing that could
/// leave the path segment.
fn model_path(model: Option<&str>) -> Result<&str, InvalidRequest> {
    let model = model.ok_or_else(|| bad("model", "`model` is required"))?;
    let name = model.strip_prefix("models/").unwrap_or(model);
    let fine = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b));
    if !fine {
        return Err(bad(
            "model",
            format!("`{model}` is not a Gemini model name (letters, digits, `-`, `.`, `_`, `@`)"),
        ));
    }
    Ok(name)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Model,
}

struct Turn<'a> {
    role: Role,
    parts: Vec<GeminiPart<'a>>,
}

enum GeminiPart<'a> {
    Text(&'a str),
    Inline {
        mime: &'a str,
        data: &'a str,
    },
    File {
        mime: Cow<'a, str>,
        uri: &'a str,
    },
    Call {
        name: &'a str,
        args: Value,
        signature: Option<&'a str>,
    },
    Response {
        name: &'a str,
        response: ToolOutput<'a>,
    },
}

/// A tool message's content, as Gemini's `functionResponse.response` (an object).
enum ToolOutput<'a> {
    /// A JSON object, sent as it is.
    Object(Value),
    /// Anything else, sent as `{"content": text}`.
    Text(Cow<'a, str>),
}

/// What a field of the request asks that Gemini cannot do, if anything.
fn unsupported(key: &str, value: &Value) -> Option<&'static str> {
    let set = !value.is_null();
    let refused = match key {
        "logprobs" => value.as_bool() == Some(true),
        "top_logprobs" => set && value.as_u64() != Some(0),
        "logit_bias" => value.as_object().is_some_and(|m| !m.is_empty()),
        "functions" | "function_call" | "audio" | "prediction" => set,
        "parallel_tool_calls" => value.as_bool() == Some(false),
        "modalities" => value
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m != "text")),
        _ => return None,
    };
    if !refused {
        return None;
    }
    Some(match key {
        "logprobs" | "top_logprobs" => "log probabilities are not translated back from Gemini",
        "logit_bias" => "Gemini has no logit bias",
        "functions" | "function_call" => "legacy function calling: send `tools` instead",
        "parallel_tool_calls" => "Gemini cannot be told to call one function at a time",
        _ => "this provider answers with text only",
    })
}

/// Settings of `generationConfig`, as given.
#[derive(Default)]
struct Generation<'a> {
    temperature: Option<&'a Value>,
    top_p: Option<&'a Value>,
    top_k: Option<&'a Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stop: Option<&'a Value>,
    n: Option<u64>,
    seed: Option<&'a Value>,
    presence_penalty: Option<&'a Value>,
    frequency_penalty: Option<&'a Value>,
    response_format: Option<&'a Value>,
    reasoning_effort: Option<&'a str>,
    thinking: Option<&'a Value>,
}

fn translate(options: &Translator, view: &RequestView) -> Result<GenerateRequest, InvalidRequest> {
    let mut model = None;
    let mut messages: &[Value] = &[];
    let mut tools = None;
    let mut tool_choice = None;
    let mut safety = None;
    let mut generation = Generation::default();
    for (key, value) in view.iter() {
        if let Some(why) = unsupported(key, value) {
            if options.drop_unsupported {
                continue;
            }
            return Err(bad(
                key,
                format!("`{key}` is not supported by Gemini: {why}"),
            ));
        }
        if value.is_null() {
            continue;
        }
        match key {
            "model" => model = value.as_str(),
            "messages" => messages = view.messages().unwrap_or_default(),
            "max_tokens" => generation.max_tokens = Some(positive(key, value)?),
            "max_completion_tokens" => {
                generation.max_completion_tokens = Some(positive(key, value)?);
            }
            "temperature" => generation.temperature = Some(number(key, value)?),
            "top_p" => generation.top_p = Some(number(key, value)?),
            "top_k" => {
                positive(key, value)?;
                generation.top_k = Some(value);
            }
            "stop" => generation.stop = Some(value),
            "n" => generation.n = Some(positive(key, value)?),
            "seed" => {
                if value.as_i64().is_none() {
                    return Err(bad(key, "`seed` must be an integer"));
                }
                generation.seed = Some(value);
            }
            "presence_penalty" => generation.presence_penalty = Some(number(key, value)?),
            "frequency_penalty" => generation.frequency_penalty = Some(number(key, value)?),
            "response_format" => generation.response_format = Some(value),
            "reasoning_effort" => {
                generation.reasoning_effort = Some(
                    value
                        .as_str()
                        .ok_or_else(|| bad(key, "`reasoning_effort` must be a string"))?,
                );
            }
            "thinking" => generation.thinking = Some(value),
            "tools" => tools = Some(value),
            "tool_choice" => tool_choice = Some(value),
            "safety_settings" => safety = Some(value),
            _ => {}
        }
    }
    let model = model_path(model)?;

    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(messages.len());
    // Tool calls of the conversation so far, (id, name): Gemini matches a function's
    // response to its call by name, OpenAI by id.
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}]{field}");
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            bad(
                at(".role"),
                format!("`messages[{i}].role` must be a string"),
            )
        })?;
        let content = message.get("content").filter(|c| !c.is_null());
        let (role, parts) = match role {
            "system" | "developer" => {
                if let Some(content) = content {
                    system_text(content, &at(".content"), &mut system)?;
                }
                continue;
            }
            "user" => {
                let mut parts = Vec::new();
                if let Some(content) = content {
                    user_parts(content, &at(".content"), &mut parts)?;
                }
                (Role::User, parts)
            }
            "assistant" => {
                let mut parts = Vec::new();
                if let Some(content) = content {
                    assistant_text(content, &at(".content"), &mut parts)?;
                }
                if let Some(list) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    function_calls(list, &at(".tool_calls"), &mut parts, &mut calls)?;
                }
                (Role::Model, parts)
            }
            "tool" => {
                let id = message.get("tool_call_id").and_then(Value::as_str);
                let name = id
                    .and_then(|id| calls.iter().rev().find(|(c, _)| *c == id))
                    .map(|(_, name)| *name)
                    .or_else(|| message.get("name").and_then(Value::as_str))
                    .ok_or_else(|| {
                        bad(
                            at(".tool_call_id"),
                            format!(
                                "`messages[{i}].tool_call_id` {} matches no tool call of an \
                                 earlier assistant message: Gemini needs the function's name",
                                id.map_or_else(|| "(none)".to_owned(), |id| format!("`{id}`"))
                            ),
                        )
                    })?;
                let response = tool_output(content, &at(".content"))?;
                (Role::User, vec![GeminiPart::Response { name, response }])
            }
            other => {
                return Err(bad(
                    at(".role"),
                    format!(
                        "`messages[{i}].role` `{other}` is not supported by Gemini \
                         (system, developer, user, assistant, tool)"
                    ),
                ));
            }
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini's turns alternate: consecutive tool responses, and any two turns of one
        // role, become one turn.
        match turns.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => turns.push(Turn { role, parts }),
        }
    }

    let mut out = Json::with_capacity(view.bytes().len() + 128);
    out.raw(b"{\"contents\":[");
    for (n, turn) in turns.iter().enumerate() {
        if n > 0 {
            out.raw(b",");
        }
        out.raw(match turn.role {
            Role::User => b"{\"role\":\"user\",\"parts\":[",
            Role::Model => b"{\"role\":\"model\",\"parts\":[",
        });
        for (p, part) in turn.parts.iter().enumerate() {
            if p > 0 {
                out.raw(b",");
            }
            write_part(&mut out, part);
        }
        out.raw(b"]}");
    }
    out.raw(b"]");
    if !system.is_empty() {
        out.raw(b",\"systemInstruction\":{\"parts\":[");
        for (n, text) in system.iter().enumerate() {
            if n > 0 {
                out.raw(b",");
            }
            out.raw(b"{\"text\":");
            out.str(text);
            out.raw(b"}");
        }
        out.raw(b"]}");
    }
    let has_tools = match tools {
        Some(tools) => write_tools(&mut out, tools)?,
        None => false,
    };
    if let Some(choice) = tool_choice {
        write_tool_choice(&mut out, choice, has_tools)?;
    }
    write_generation(&mut out, &generation, model, options)?;
    if let Some(safety) = safety {
        if !safety.is_array() {
            return Err(bad("safety_settings", "`safety_settings` must be a list"));
        }
        out.raw(b",\"safetySettings\":");
        out.value(safety);
    }
    out.raw(b"}");

    let model: Arc<str> = Arc::from(model);
    Ok(GenerateRequest {
        body: out.into_bytes(),
        response: ResponseTranslator::new(model.clone()),
        model,
        stream: view.stream(),
        include_usage: view.include_usage(),
    })
}

fn number<'a>(key: &str, value: &'a Value) -> Result<&'a Value, InvalidRequest> {
    if value.is_number() {
        Ok(value)
    } else {
        Err(bad(key, format!("`{key}` must be a number")))
    }
}

fn positive(key: &str, value: &Value) -> Result<u64, InvalidRequest> {
    value
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(key, format!("`{key}` must be a positive integer")))
}

/// The text of a system or developer message (a string or text parts).
fn system_text<'a>(
    content: &'a Value,
    at: &str,
    system: &mut Vec<&'a str>,
) -> Result<(), InvalidRequest> {
    match content {
        Value::String(text) => system.push(text),
        Value::Array(list) => {
            for (j, part) in list.iter().enumerate() {
                system.push(text_part(part, &format!("{at}[{j}]"), "system message")?);
            }
        }
        _ => {
            return Err(bad(
                at,
                format!("`{at}` must be a string or a list of parts"),
            ));
        }
    }
    Ok(())
}

/// The text of a `{"type":"text","text":…}` part; any other part is refused.
fn text_part<'a>(part: &'a Value, at: &str, whose: &str) -> Result<&'a str, InvalidRequest> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "text" {
        return Err(bad(
            format!("{at}.type"),
            format!("a part of type `{kind}` in a {whose} is not supported by Gemini"),
        ));
    }
    part.get("text").and_then(Value::as_str).ok_or_else(|| {
        bad(
            format!("{at}.text"),
            format!("`{at}.text` must be a string"),
        )
    })
}

/// An assistant message's text: empty text is left out (a turn of tool calls often says
/// `"content": ""`).
fn assistant_text<'a>(
    content: &'a Value,
    at: &str,
    parts: &mut Vec<GeminiPart<'a>>,
) -> Result<(), InvalidRequest> {
    let mut push = |text: &'a str| {
        if !text.is_empty() {
            parts.push(GeminiPart::Text(text));
        }
    };
    match content {
        Value::String(text) => push(text),
        Value::Array(list) => {
            for (j, part) in list.iter().enumerate() {
                // A refusal the model gave earlier is part of its turn, as text.
                if part.get("type").and_then(Value::as_str) == Some("refusal") {
                    push(part.get("refusal").and_then(Value::as_str).unwrap_or(""));
                    continue;
                }
                push(text_part(part, &format!("{at}[{j}]"), "assistant message")?);
            }
        }
        _ => {
            return Err(bad(
                at,
                format!("`{at}` must be a string or a list of parts"),
            ));
        }
    }
    Ok(())
}

/// A user message's parts: text and images.
fn user_parts<'a>(
    content: &'a Value,
    at: &str,
    parts: &mut Vec<GeminiPart<'a>>,
) -> Result<(), InvalidRequest> {
    let list = match content {
        Value::String(text) => {
            parts.push(GeminiPart::Text(text));
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
        match kind {
            "text" => parts.push(GeminiPart::Text(text_part(
                part,
                &format!("{at}[{j}]"),
                "user message",
            )?)),
            "image_url" => {
                let image = part.get("image_url");
                let url = image
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            format!("{at}[{j}].image_url.url"),
                            format!("`{at}[{j}].image_url.url` must be a string"),
                        )
                    })?;
                let mime = image
                    .and_then(|i| i.get("mime_type").or_else(|| i.get("format")))
                    .and_then(Value::as_str);
                parts.push(image_part(url, mime, &format!("{at}[{j}].image_url.url"))?);
            }
            other => {
                return Err(bad(
                    format!("{at}[{j}].type"),
                    format!(
                        "a part of type `{other}` in a user message is not supported by Gemini"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An image: a base64 `data:` URI goes inline; an `http(s)://` or `gs://` URL goes as
/// `fileData`, whose MIME type Gemini requires: the part's `mime_type` (or `format`), else
/// the URL's extension. Gemini fetches the URL itself.
fn image_part<'a>(
    url: &'a str,
    mime: Option<&'a str>,
    at: &str,
) -> Result<GeminiPart<'a>, InvalidRequest> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) = rest.split_once(";base64,").ok_or_else(|| {
            bad(
                at,
                "an image `data:` URI must be base64 (`data:image/png;base64,…`)",
            )
        })?;
        return Ok(GeminiPart::Inline { mime, data });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("gs://"))
    {
        return Err(bad(
            at,
            "an image URL must be `https://`, `http://`, `gs://` or a base64 `data:` URI",
        ));
    }
    let mime = match mime {
        Some(mime) => Cow::Borrowed(mime),
        None => Cow::Borrowed(mime_of(url).ok_or_else(|| {
            bad(
                at,
                format!(
                    "Gemini needs the MIME type of an image given by URL, and `{url}` has no \
                     known image extension (png, jpg, jpeg, webp, gif, heic, heif): give it as \
                     `image_url.mime_type`, or send the image as a `data:` URI"
                ),
            )
        })?),
    };
    Ok(GeminiPart::File { mime, uri: url })
}

/// The MIME type of a URL's file extension, for the image types Gemini reads.
fn mime_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

/// A tool message's content as a `functionResponse.response` object.
fn tool_output<'a>(content: Option<&'a Value>, at: &str) -> Result<ToolOutput<'a>, InvalidRequest> {
    let text: Cow<'a, str> = match content {
        None => Cow::Borrowed(""),
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(Value::Array(list)) => {
            let mut joined = String::new();
            for (j, part) in list.iter().enumerate() {
                joined.push_str(text_part(part, &format!("{at}[{j}]"), "tool message")?);
            }
            Cow::Owned(joined)
        }
        Some(_) => {
            return Err(bad(
                at,
                format!("`{at}` must be a string or a list of text parts"),
            ));
        }
    };
    // A tool that answered a JSON object is given to Gemini as that object.
    if text.trim_start().starts_with('{')
        && let Ok(object @ Value::Object(_)) = serde_json::from_str::<Value>(&text)
    {
        return Ok(ToolOutput::Object(object));
    }
    Ok(ToolOutput::Text(text))
}

/// Appends an assistant message's `tool_calls` as `functionCall` parts, with the thought
/// signature each carries: in `extra_content.google.thought_signature` (Google's OpenAI
/// shape), `function.thought_signature` (Portkey's), or encoded in the id (ours).
fn function_calls<'a>(
    list: &'a Value,
    at: &str,
    parts: &mut Vec<GeminiPart<'a>>,
    calls: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), InvalidRequest> {
    let list = list
        .as_array()
        .ok_or_else(|| bad(at, format!("`{at}` must be a list")))?;
    for (k, call) in list.iter().enumerate() {
        let function = call.get("function");
        let field = |f: &str| function.and_then(|fun| fun.get(f)).and_then(Value::as_str);
        let name = field("name").ok_or_else(|| {
            bad(
                format!("{at}[{k}].function.name"),
                format!("`{at}[{k}].function.name` must be a string"),
            )
        })?;
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        let arguments = field("arguments").unwrap_or("");
        let path = format!("{at}[{k}].function.arguments");
        // An empty string is what a call without arguments streams as: no arguments.
        let args = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str::<Value>(arguments).map_err(|e| {
                bad(
                    path.clone(),
                    format!("the arguments of tool call `{id}` (`{name}`) are not valid JSON: {e}"),
                )
            })?
        };
        if !args.is_object() {
            return Err(bad(
                path,
                format!("the arguments of tool call `{id}` (`{name}`) must be a JSON object"),
            ));
        }
        let signature = call
            .get("extra_content")
            .and_then(|e| e.get("google"))
            .and_then(|g| g.get("thought_signature"))
            .and_then(Value::as_str)
            .or_else(|| field("thought_signature"))
            .or_else(|| id.split_once(SIGNATURE_MARK).map(|(_, s)| s))
            .filter(|s| !s.is_empty());
        if !id.is_empty() {
            calls.push((id, name));
        }
        parts.push(GeminiPart::Call {
            name,
            args,
            signature,
        });
    }
    Ok(())
}

fn write_part(out: &mut Json, part: &GeminiPart<'_>) {
    match part {
        GeminiPart::Text(text) => {
            out.raw(b"{\"text\":");
            out.str(text);
        }
        GeminiPart::Inline { mime, data } => {
            out.raw(b"{\"inlineData\":{\"mimeType\":");
            out.str(mime);
            out.raw(b",\"data\":");
            out.str(data);
            out.raw(b"}");
        }
        GeminiPart::File { mime, uri } => {
            out.raw(b"{\"fileData\":{\"mimeType\":");
            out.str(mime);
            out.raw(b",\"fileUri\":");
            out.str(uri);
            out.raw(b"}");
        }
        GeminiPart::Call {
            name,
            args,
            signature,
        } => {
            out.raw(b"{\"functionCall\":{\"name\":");
            out.str(name);
            out.raw(b",\"args\":");
            out.value(args);
            out.raw(b"}");
            if let Some(signature) = signature {
                out.raw(b",\"thoughtSignature\":");
                out.str(signature);
            }
        }
        GeminiPart::Response { name, response } => {
            out.raw(b"{\"functionResponse\":{\"name\":");
            out.str(name);
            out.raw(b",\"response\":");
            match response {
                ToolOutput::Object(object) => out.value(object),
                ToolOutput::Text(text) => {
                    out.raw(b"{\"content\":");
                    out.str(text);
                    out.raw(b"}");
                }
            }
            out.raw(b"}");
        }
    }
    out.raw(b"}");
}

/// Writes `tools` as one `functionDeclarations` list; says whether there was any.
fn write_tools(out: &mut Json, tools: &Value) -> Result<bool, InvalidRequest> {
    let functions = tools::functions(tools, "Gemini")?;
    if functions.is_empty() {
        return Ok(false);
    }
    out.raw(b",\"tools\":[{\"functionDeclarations\":[");
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
        if let Some(parameters) = function.parameters {
            let path = format!("tools[{}].function.parameters", function.index);
            let converted = schema(parameters, parameters, &path, 0)?;
            // Gemini refuses an object schema without properties: a function without
            // parameters has none.
            let empty = converted.get("type").and_then(Value::as_str) == Some("object")
                && converted
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty);
            if !empty {
                out.raw(b",\"parameters\":");
                out.value(&converted);
            }
        }
        out.raw(b"}");
    }
    out.raw(b"]}]");
    Ok(true)
}

fn write_tool_choice(
    out: &mut Json,
    choice: &Value,
    has_tools: bool,
) -> Result<(), InvalidRequest> {
    let named = choice
        .get("function")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let (mode, name) = match (choice.as_str(), named) {
        (Some("auto"), _) => ("AUTO", None),
        (Some("required"), _) => ("ANY", None),
        (Some("none"), _) => ("NONE", None),
        (None, Some(name)) => ("ANY", Some(name)),
        _ => {
            return Err(bad(
                "tool_choice",
                "`tool_choice` must be auto, required, none or {\"type\":\"function\",\
                 \"function\":{\"name\":…}}",
            ));
        }
    };
    if !has_tools {
        // Nothing to choose from: Gemini refuses a function-calling config without functions.
        return Ok(());
    }
    out.raw(b",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
    out.raw(mode.as_bytes());
    out.raw(b"\"");
    if let Some(name) = name {
        out.raw(b",\"allowedFunctionNames\":[");
        out.str(name);
        out.raw(b"]");
    }
    out.raw(b"}}");
    Ok(())
}

fn write_generation(
    out: &mut Json,
    g: &Generation<'_>,
    model: &str,
    options: &Translator,
) -> Result<(), InvalidRequest> {
    let mut config = Json::with_capacity(128);
    let field = |config: &mut Json, key: &str| {
        config.raw(if config.len() == 0 { b"{\"" } else { b",\"" });
        config.raw(key.as_bytes());
        config.raw(b"\":");
    };
    for (key, value) in [
        ("temperature", g.temperature),
        ("topP", g.top_p),
        ("topK", g.top_k),
        ("seed", g.seed),
        ("presencePenalty", g.presence_penalty),
        ("frequencyPenalty", g.frequency_penalty),
    ] {
        if let Some(value) = value {
            field(&mut config, key);
            config.value(value);
        }
    }
    if let Some(max) = g.max_completion_tokens.or(g.max_tokens) {
        field(&mut config, "maxOutputTokens");
        config.u64(max);
    }
    if let Some(n) = g.n {
        field(&mut config, "candidateCount");
        config.u64(n);
    }
    if let Some(stop) = g.stop {
        field(&mut config, "stopSequences");
        match stop {
            Value::String(s) => {
                config.raw(b"[");
                config.str(s);
                config.raw(b"]");
            }
            Value::Array(list) if list.iter().all(Value::is_string) => config.value(stop),
            _ => return Err(bad("stop", "`stop` must be a string or a list of strings")),
        }
    }
    if let Some(format) = g.response_format {
        match format.get("type").and_then(Value::as_str) {
            None | Some("text") => {}
            Some("json_object") => {
                field(&mut config, "responseMimeType");
                config.raw(b"\"application/json\"");
            }
            Some("json_schema") => {
                let at = "response_format.json_schema.schema";
                let spec = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .ok_or_else(|| bad(at, format!("`{at}` is required")))?;
                let converted = schema(spec, spec, at, 0)?;
                field(&mut config, "responseMimeType");
                config.raw(b"\"application/json\"");
                field(&mut config, "responseSchema");
                config.value(&converted);
            }
            Some(other) => {
                return Err(bad(
                    "response_format",
                    format!("`response_format` type `{other}` is not supported by Gemini"),
                ));
            }
        }
    }
    if let Some(thinking) = thinking_config(g, model, options)? {
        field(&mut config, "thinkingConfig");
        config.raw(thinking.as_bytes());
    }
    if config.len() > 0 {
        out.raw(b",\"generationConfig\":");
        out.raw(&config.into_vec());
        out.raw(b"}");
    }
    Ok(())
}

/// `thinkingConfig` from `reasoning_effort` (a level for Gemini 3 and later, a token budget
/// for the 2.x models) or Anthropic's `thinking` object (a budget).
fn thinking_config(
    g: &Generation<'_>,
    model: &str,
    options: &Translator,
) -> Result<Option<String>, InvalidRequest> {
    if let Some(effort) = g.reasoning_effort {
        let budget = match effort {
            "none" => 0,
            "minimal" => 512,
            "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            _ if options.drop_unsupported => return Ok(None),
            other => {
                return Err(bad(
                    "reasoning_effort",
                    format!(
                        "`reasoning_effort` `{other}` is not one of none, minimal, low, medium, high"
                    ),
                ));
            }
        };
        let budgeted = model.starts_with("gemini-2") || model.starts_with("gemini-1");
        return Ok(Some(match (budgeted, effort) {
            (true, "none") => "{\"thinkingBudget\":0}".to_owned(),
            (true, _) => format!("{{\"thinkingBudget\":{budget},\"includeThoughts\":true}}"),
            (false, "none") => "{\"thinkingLevel\":\"minimal\"}".to_owned(),
            (false, level) => format!("{{\"thinkingLevel\":\"{level}\",\"includeThoughts\":true}}"),
        }));
    }
    let Some(thinking) = g.thinking else {
        return Ok(None);
    };
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    bad(
                        "thinking.budget_tokens",
                        "`thinking.budget_tokens` must be a positive integer",
                    )
                })?;
            Ok(Some(format!(
                "{{\"thinkingBudget\":{budget},\"includeThoughts\":true}}"
            )))
        }
        Some("disabled") => Ok(Some("{\"thinkingBudget\":0}".to_owned())),
        _ => Err(bad(
            "thinking",
            "`thinking.type` must be \"enabled\" (with `budget_tokens`) or \"disabled\"",
        )),
    }
}

/// An embeddings request's input, checked, whichever API it goes to.
struct EmbedInput<'a> {
    model: &'a str,
    texts: Vec<&'a str>,
    /// A list was given (even of one), not a string.
    batch: bool,
    base64: bool,
    dimensions: Option<u64>,
}

impl<'a> EmbedInput<'a> {
    fn of(view: &'a RequestView) -> Result<Self, InvalidRequest> {
        let model = model_path(view.model())?;
        let input = view
            .get("input")
            .filter(|i| !i.is_null())
            .ok_or_else(|| bad("input", "`input` is required"))?;
        let not_text = || {
            bad(
                "input",
                "`input` must be a string or a list of strings for Gemini (token arrays cannot \
                 be sent: Gemini has its own tokenizer)",
            )
        };
        let (texts, batch): (Vec<&str>, bool) = match input {
            Value::String(text) => (vec![text], false),
            Value::Array(list) if !list.is_empty() => (
                list.iter()
                    .map(|t| t.as_str().ok_or_else(not_text))
                    .collect::<Result<_, _>>()?,
                true,
            ),
            _ => return Err(not_text()),
        };
        let base64 = match view.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(bad(
                    "encoding_format",
                    format!("`encoding_format` `{other}` is not float or base64"),
                ));
            }
        };
        let dimensions = match view.get("dimensions").filter(|d| !d.is_null()) {
            Some(d) => Some(positive("dimensions", d)?),
            None => None,
        };
        Ok(Self {
            model,
            texts,
            batch,
            base64,
            dimensions,
        })
    }

    /// The request of `body`, written for `method`.
    fn request(&self, body: Json, method: &'static str) -> EmbedRequest {
        let model: Arc<str> = Arc::from(self.model);
        EmbedRequest {
            body: body.into_bytes(),
            response: EmbeddingTranslator::new(model.clone(), self.base64),
            model,
            method,
        }
    }
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
    fn turns_alternate_and_tool_responses_find_their_function() {
        let out = translate(json!({"model": "gemini-2.5-flash", "messages": [
            {"role": "system", "content": "one"},
            {"role": "user", "content": "a"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_r_0_0__thought__U0lH", "type": "function",
                 "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""},
                 "extra_content": {"google": {"thought_signature": "T1"}}}]},
            {"role": "tool", "tool_call_id": "call_r_0_0__thought__U0lH", "content": "{\"t\": 18}"},
            {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ]}))
        .unwrap();
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "one"}, {"text": "two"}]})
        );
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "U0lH"},
                    {"functionCall": {"name": "g", "args": {}}, "thoughtSignature": "T1"}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "f", "response": {"t": 18}}},
                    {"functionResponse": {"name": "g", "response": {"content": "sunny"}}},
                    {"text": "thanks"}]},
            ])
        );
        let err = refused(json!({"model": "m", "messages": [
            {"role": "tool", "tool_call_id": "nope", "content": "x"}]}));
        assert_eq!(err.param.as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn images_go_inline_or_as_files_with_a_mime_type() {
        let out = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.JPG?s=1"}},
                {"type": "image_url", "image_url": {"url": "gs://b/o", "mime_type": "image/webp"}},
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            out["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/cat.JPG?s=1"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "gs://b/o"}},
            ])
        );
        for url in ["https://x/picture", "file:///etc/passwd"] {
            let err = refused(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]}),
            );
            assert_eq!(
                err.param.as_deref(),
                Some("messages[0].content[0].image_url.url")
            );
        }
    }

    #[test]
    fn generation_config_tools_and_choice() {
        let out = translate(json!({"model": "models/gemini-2.5-pro", "messages": [],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 1.5, "top_p": 0.9,
            "top_k": 40, "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.5,
            "frequency_penalty": -0.5, "user": "u-1", "reasoning_effort": "low",
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "strict": true, "parameters": {"type": "object", "additionalProperties": false,
                "$schema": "x", "properties": {"a": {"type": ["string", "null"], "format": "uri"}},
                "required": ["a"]}}},
                {"type": "function", "function": {"name": "g",
                 "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}}))
        .unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"temperature": 1.5, "topP": 0.9, "topK": 40, "seed": 7,
                "presencePenalty": 0.5, "frequencyPenalty": -0.5, "maxOutputTokens": 20,
                "candidateCount": 2, "stopSequences": ["END"],
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
        );
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "f", "description": "d", "parameters": {"type": "object",
                    "properties": {"a": {"type": "string", "nullable": true}}, "required": ["a"]}},
                {"name": "g"}]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        for (choice, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let out = translate(json!({"model": "m", "messages": [], "tool_choice": choice,
                "tools": [{"type": "function", "function": {"name": "f"}}]}))
            .unwrap();
            assert_eq!(
                out["toolConfig"]["functionCallingConfig"],
                json!({"mode": mode})
            );
        }
        let out = translate(json!({"model": "gemini-3-pro", "messages": [],
            "reasoning_effort": "high"}))
        .unwrap();
        assert_eq!(
            out["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
    }

    #[test]
    fn json_schema_is_converted_to_the_openapi_subset() {
        let out = translate(json!({"model": "m", "messages": [], "response_format": {
            "type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": {
                "type": "object", "additionalProperties": false,
                "$defs": {"City": {"type": "object", "properties": {"name": {"const": "Oslo"}}}},
                "properties": {
                    "city": {"$ref": "#/$defs/City", "description": "where"},
                    "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
                    "n": {"oneOf": [{"type": "integer"}, {"type": "number"}]}},
                "required": ["city"]}}}}))
        .unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"responseMimeType": "application/json", "responseSchema": {
                "type": "object", "required": ["city"], "properties": {
                    "city": {"type": "object", "description": "where",
                        "properties": {"name": {"type": "string", "enum": ["Oslo"]}}},
                    "when": {"type": "string", "format": "date-time", "nullable": true},
                    "n": {"anyOf": [{"type": "integer"}, {"type": "number"}]}}}})
        );
        let out = translate(json!({"model": "m", "messages": [],
            "response_format": {"type": "json_object"}}))
        .unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        let err = refused(json!({"model": "m", "messages": [], "response_format": {
            "type": "json_schema", "json_schema": {"schema": {"$ref": "#/$defs/A",
            "$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}}}}}}));
        assert!(err.message.contains("recursive"), "{}", err.message);
    }

    #[test]
    fn refusals_name_the_field_and_drop_unsupported_drops() {
        for (field, value) in [
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("logit_bias", json!({"50256": -100})),
            ("parallel_tool_calls", json!(false)),
            ("functions", json!([])),
            ("model", json!("../etc")),
        ] {
            let mut body = json!({"model": "m", "messages": []});
            body[field] = value;
            let err = refused(body);
            assert_eq!(err.param.as_deref(), Some(field), "{}", err.message);
        }
        assert!(
            translate(json!({"model": "m", "messages": [], "logprobs": false,
            "parallel_tool_calls": true, "logit_bias": {}}))
            .is_ok()
        );
        let view = RequestView::parse(Bytes::from_static(
            br#"{"model":"m","messages":[],"logprobs":true,"logit_bias":{"1":1}}"#,
        ))
        .unwrap();
        let out = Translator::new()
            .drop_unsupported(true)
            .request(&view)
            .unwrap();
        let out: Value = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(out, json!({"contents": []}));
    }

    #[test]
    fn embeddings_one_or_many() {
        let one = RequestView::parse(Bytes::from_static(
            br#"{"model":"text-embedding-004","input":"hi","dimensions":8}"#,
        ))
        .unwrap();
        let request = Translator::new().embeddings(&one).unwrap();
        assert_eq!(request.method(), "embedContent");
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8})
        );
        let many = RequestView::parse(Bytes::from_static(
            br#"{"model":"text-embedding-004","input":["a","b"]}"#,
        ))
        .unwrap();
        let request = Translator::new().embeddings(&many).unwrap();
        assert_eq!(request.method(), "batchEmbedContents");
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["requests"][1]["model"], "models/text-embedding-004");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "b");
        let tokens =
            RequestView::parse(Bytes::from_static(br#"{"model":"e","input":[[1,2]]}"#)).unwrap();
        let err = Translator::new().embeddings(&tokens).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }
}
