//! Anthropic's Messages API (`POST /v1/messages`) in front of a stack that speaks OpenAI's
//! chat completions, so that the Anthropic SDKs (and tools built on them) can use any
//! provider.
//!
//! [`MessagesApi`] reads the client's Messages request (up to a body limit, 413 past it),
//! translates it into a chat-completion request for `/v1/chat/completions` and calls the
//! inner service (a provider behind [`Edge`](portcullis_core::Edge), or a whole stack) with
//! it, its headers and extensions kept. The answer comes back in Anthropic's shape: a
//! `message` JSON body, a stream of Messages events translated chunk by chunk, or
//! Anthropic's error document with the inner service's status. It is the reverse of the
//! [`Anthropic`](crate::Anthropic) provider, which speaks OpenAI to its callers and
//! Anthropic upstream.
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::Mock;
//! use portcullis_provider::inbound::anthropic::MessagesApiLayer;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let openai_stack = EdgeLayer::new().layer(Mock::builder().content("Hi there").build());
//! let messages = MessagesApiLayer::new().layer(openai_stack);
//!
//! let body = r#"{"model":"m","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}"#;
//! let req = http::Request::post("/v1/messages")
//!     .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
//!     .unwrap();
//! let res = messages.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let json: serde_json::Value =
//!     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! assert_eq!(json["type"], "message");
//! assert_eq!(json["content"][0], serde_json::json!({"type": "text", "text": "Hi there"}));
//! assert_eq!(json["stop_reason"], "end_turn");
//! # }
//! ```
//!
//! # The request
//!
//! | Anthropic | OpenAI |
//! |---|---|
//! | `model` (required) | `model` |
//! | `max_tokens` (required: 400 without it, as Anthropic answers) | `max_tokens` |
//! | `system`, a string or text blocks | the first message, `role: "system"` |
//! | `user` / `assistant` turns, string content | the same message |
//! | `text` blocks | text content (a plain string when it is the turn's only part) |
//! | `image` blocks, `base64` / `url` source | `image_url` parts, a `data:{media_type};base64,…` URL / the URL |
//! | assistant `tool_use` blocks | `tool_calls`, `arguments` = the `input` as a JSON string |
//! | user `tool_result` blocks (string or text/image blocks) | one `role: "tool"` message each, in order, before the turn's other blocks; `is_error: true` prefixes the text with `Error: `; images of a result go to a user message after them |
//! | assistant `thinking` / `redacted_thinking` blocks | left out (reasoning of past turns) |
//! | `tools[]` (`name`, `description`, `input_schema`) | `tools[]` of type `function`, `parameters` = `input_schema` |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / `{function: {name}}` / `none` |
//! | `tool_choice.disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `stop_sequences` | `stop` |
//! | `temperature`, `top_p` | the same (Anthropic's 0–1 is within OpenAI's 0–2) |
//! | `top_k` | `top_k`, passed on: the Anthropic and Gemini providers and vLLM honour it; OpenAI refuses it with a 400 that comes back to the client |
//! | `metadata.user_id` | `user` |
//! | `stream: true` | `stream: true` and `stream_options.include_usage: true`, so usage is reported |
//! | `service_tier` | left out (a capacity preference) |
//! | `cache_control` | left out, or kept on text parts with [`MessagesApiLayer::keep_cache_control`] |
//!
//! Refused with a 400 naming the field, since the answer would not be what was asked:
//! `thinking` (unless `{"type":"disabled"}`), any other top-level field (`container`,
//! `mcp_servers`, …), server and client tools with a `type` (`web_search_…`, `bash_…`),
//! content blocks other than those above (`document`, `search_result`, …), image sources
//! other than `base64` and `url`.
//!
//! # The answer
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `id` | `id`, prefixed `msg_` unless it already is |
//! | `message.content` (or `refusal`) | a `text` block |
//! | `message.tool_calls[]` | `tool_use` blocks, `input` = the parsed `arguments` (arguments that are not a JSON object: 502) |
//! | `finish_reason` | `stop_reason`, see [`stop_reason`]; `stop_sequence` with the sequence when the upstream names it (vLLM's `stop_reason`) and the request had `stop_sequences` |
//! | `usage.prompt_tokens` | `input_tokens`, less the cached tokens (Anthropic counts them apart) |
//! | `usage.prompt_tokens_details.cached_tokens` | `cache_read_input_tokens` |
//! | `usage.cache_creation_input_tokens` (the Anthropic provider keeps it) | `cache_creation_input_tokens` |
//! | `usage.completion_tokens` | `output_tokens` |
//! | an error, `{"error":{"message",…}}` with its status | `{"type":"error","error":{"type","message"}}`, the same status, the type from it (see [`error_type`]); `retry-after` kept |
//!
//! Streams are translated as the table of [`StreamTranslator`] says. An error event of the
//! inner stream, a broken stream, or one that ends before its finish reason becomes an
//! Anthropic `error` event and the end: never `message_stop`. A JSON answer to a request for
//! a stream (from a layer that answers whole) is sent as the events of that message.

mod future;
mod layer;
mod request;
mod response;
mod service;
mod stream;

pub use self::future::ResponseFuture;
pub use self::layer::MessagesApiLayer;
pub use self::request::{ChatRequest, InvalidMessages, Translator};
pub use self::response::{
    Answer, InvalidAnswer, error_body, error_response, error_type, stop_reason,
};
pub use self::service::MessagesApi;
pub use self::stream::{MessagesStreamBody, StreamState, StreamTranslator};
