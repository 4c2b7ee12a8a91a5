//! The native Anthropic provider: OpenAI chat completions in, Anthropic's Messages API
//! upstream, OpenAI chat completions out.
//!
//! [`Anthropic`] is a `tower::Service<http::Request<BufferedBody>>` that translates each
//! OpenAI chat-completions request (from the [`RequestView`](portcullis_core::RequestView)
//! in its extensions, else parsed from the body) into `POST {base_url}/v1/messages`, and the
//! answer back into OpenAI's shape: a `chat.completion` JSON body, or `chat.completion.chunk`
//! events translated one by one as Anthropic's events arrive (nothing is held back but an
//! event not yet ended). The answer is observed like any provider's (usage, text, finish
//! reason; see [`portcullis_core::observe`]) and the provider name is recorded in the
//! response facts. Only the chat endpoint exists: `/completions`, `/embeddings` and
//! `/models` are answered 400, unknown paths 404, without calling the upstream.
//!
//! With [`AnthropicBuilder::vertex`] it speaks to Claude on Vertex AI instead: `POST
//! {base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for streams), the same translation both ways, but the body without
//! `model` and with `anthropic_version` ([`VERTEX_VERSION`]), `Authorization: Bearer` access
//! tokens from a Google service account ([`crate::vertex`]) and no `x-api-key` nor
//! `anthropic-version` header. A Vertex AI [`Gemini`](crate::Gemini) provider holds one of
//! these for the project's Claude models, sharing its token.
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::anthropic::Anthropic;
//! use portcullis_testkit::anthropic::FakeAnthropic;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = FakeAnthropic::start().await;
//! let claude = Anthropic::builder()
//!     .base_url(upstream.url()) // default: https://api.anthropic.com
//!     .api_key("sk-ant-test")
//!     .max_tokens(1024)
//!     .build()
//!     .unwrap();
//! let stack = EdgeLayer::new().layer(claude);
//!
//! let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
//!     .unwrap();
//! let res = stack.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let json: serde_json::Value =
//!     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! assert_eq!(json["object"], "chat.completion");
//! assert_eq!(json["choices"][0]["finish_reason"], "stop");
//!
//! let sent = upstream.last_request().unwrap();
//! assert_eq!(sent.header("x-api-key"), Some("sk-ant-test"));
//! assert_eq!(sent.json()["max_tokens"], 1024);
//! # }
//! ```
//!
//! # The request
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `system` and `developer` messages, wherever they are | `system` text blocks, in order (`cache_control` kept) |
//! | `user` content, string or parts | a `user` turn of `text` and `image` blocks |
//! | `image_url` `data:…;base64,…` / `http(s)://` | `image` with a `base64` / `url` source |
//! | `assistant` content and `tool_calls` | `text` and `tool_use` blocks, `input` = the parsed `arguments` |
//! | `tool` messages | `tool_result` blocks in a `user` turn; consecutive ones, and any two turns of one role, merge into one turn |
//! | `max_completion_tokens`, else `max_tokens`, else the configured default (4096) | `max_tokens` (required by Anthropic) |
//! | `temperature` (0–1), `top_p`, `top_k` | the same |
//! | `stop` | `stop_sequences` |
//! | `user` | `metadata.user_id` |
//! | `tools[].function` | `tools[]` with `input_schema` = `parameters` |
//! | `tool_choice` `auto` / `required` / `none` / named | `auto` / `any` / `none` / `tool` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `response_format: json_schema` | a tool named after the schema, forced with `tool_choice`; its input comes back as the message content (finish `stop`) |
//! | `thinking` (Anthropic's own) | passed as it is |
//! | `anthropic_version`, `anthropic_beta` (body) | the `anthropic-version` / `anthropic-beta` headers (beta added to the configured ones) |
//!
//! Headers sent: `x-api-key`, `anthropic-version` (default `2023-06-01`), `anthropic-beta`
//! only when configured or asked, `content-type`, `accept`, `user-agent`, and the headers
//! configured with [`AnthropicBuilder::header`]. **No header of the client is forwarded**,
//! its `authorization` least of all. Message `name`s and OpenAI-only settings with no
//! effect on the answer (`store`, `metadata`, `service_tier`) are left out.
//!
//! # What is refused, and why
//!
//! A 400 naming the field, without calling the upstream, rather than an answer that is not
//! what was asked:
//!
//! - `n` > 1, `logprobs`, `top_logprobs`, non-zero `presence_penalty` / `frequency_penalty`,
//!   `seed`, a non-empty `logit_bias`, `functions` / `function_call`, `audio`, non-text
//!   `modalities`, `prediction`, `reasoning_effort`, `response_format: json_object`:
//!   Anthropic has nothing that does these. With
//!   [`drop_unsupported`](AnthropicBuilder::drop_unsupported) they are dropped instead.
//! - `temperature` above 1: Anthropic's range is 0–1, and clamping would change the
//!   sampling silently.
//! - Tool-call `arguments` that are not a JSON object (an empty string is taken as no
//!   arguments): the message names the call. Sending `{}` instead would replay a call that
//!   never happened.
//! - Image URLs that are neither `http(s)://` nor a base64 `data:` URI; parts other than
//!   text and images; tools other than functions; `json_schema` whose schema is not an
//!   object, or together with `tools`.
//!
//! # The answer
//!
//! | Anthropic | OpenAI |
//! |---|---|
//! | `text` blocks | `message.content`, joined (`null` when there are only tool calls) |
//! | `tool_use` blocks | `message.tool_calls[]`, `arguments` = the `input` as a JSON string |
//! | `thinking` blocks | `message.reasoning_content` |
//! | `stop_reason` | `finish_reason`, see [`finish_reason`] |
//! | `usage` | `prompt_tokens` = `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`; `completion_tokens` = `output_tokens`; `total_tokens` their sum; `prompt_tokens_details.cached_tokens` = cache reads; both cache counts also kept as they are |
//! | an error `{"type":"error","error":{type, message}}` | `{"error":{"message":"anthropic error: …","type":<its type>,"param":null,"code":null},"provider":"anthropic"}`, **with Anthropic's status** (529 stays 529) |
//!
//! Streams are translated as the table of [`StreamTranslator`] says. The usage event
//! (`choices: []`) is always made, so the observer reports usage; when the client did not
//! ask for it with `stream_options.include_usage` the observer leaves it out of the client's
//! stream. An Anthropic `error` event becomes an OpenAI error event and the stream's end; a
//! stream that breaks, stalls past the idle timeout or ends before `message_stop` ends with
//! the observer's error event: never as a clean end.

mod future;

mod request;
mod response;
mod service;
mod stream;

pub use self::future::ResponseFuture;
pub use self::request::{DEFAULT_MAX_TOKENS, MessagesRequest, Translator};
pub use self::response::{InvalidResponse, ResponseTranslator, error_body, finish_reason};
pub use self::service::{
    Anthropic, AnthropicBuilder, DEFAULT_BASE_URL, DEFAULT_VERSION, VERTEX_VERSION,
};
pub use self::stream::{StreamState, StreamTranslator};
