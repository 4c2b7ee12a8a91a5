//! The native Gemini provider: OpenAI chat completions and embeddings in, Google's Gemini API
//! upstream (Google AI Studio or Vertex AI), OpenAI's shapes out.
//!
//! [`Gemini`] is a `tower::Service<http::Request<BufferedBody>>` that translates each OpenAI
//! request (from the [`RequestView`](portcullis_core::RequestView) in its extensions, else
//! parsed from the body) into a Gemini request, and the answer back into OpenAI's shape: a
//! `chat.completion` JSON body, `chat.completion.chunk` events translated one by one as
//! Gemini's chunks arrive, or an embeddings list. The answer is observed like any provider's
//! (usage, text, finish reason; see [`portcullis_core::observe`]) and the provider name is
//! recorded in the response facts. `/completions` and `/models` are answered 400, unknown
//! paths 404, without calling the upstream. On Vertex AI, Claude models are served too (see
//! below).
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::gemini::Gemini;
//! use portcullis_testkit::gemini::{FakeGemini, Plan};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = FakeGemini::start().await;
//! upstream.set(Plan::ok().text("Bonjour").thoughts(5));
//! let gemini = Gemini::builder()
//!     .base_url(upstream.url()) // default: https://generativelanguage.googleapis.com
//!     .api_key("AIza-test")
//!     .build()
//!     .unwrap();
//! let stack = EdgeLayer::new().layer(gemini);
//!
//! let body = r#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
//!     .unwrap();
//! let res = stack.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let json: serde_json::Value =
//!     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! assert_eq!(json["choices"][0]["message"]["content"], "Bonjour");
//! assert_eq!(json["usage"]["completion_tokens_details"]["reasoning_tokens"], 5);
//!
//! let sent = upstream.last_request().unwrap();
//! assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
//! assert_eq!(sent.header("x-goog-api-key"), Some("AIza-test"));
//! # }
//! ```
//!
//! # Google AI Studio and Vertex AI
//!
//! | | Google AI Studio (default) | Vertex AI ([`GeminiBuilder::vertex`]) |
//! |---|---|---|
//! | chat | `POST {base}/v1beta/models/{model}:generateContent` | `POST {base}/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:generateContent` |
//! | stream | `…:streamGenerateContent?alt=sse` | the same |
//! | embeddings | `…:embedContent` (one input), `…:batchEmbedContents` (a list) | `…/publishers/google/models/{model}:predict`, `{"instances": [{"content": …}, …], "parameters": {"outputDimensionality": dimensions}}` |
//! | Claude models | — | `…/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict`), by the [`Anthropic`](crate::Anthropic) provider inside (below) |
//! | base | `https://generativelanguage.googleapis.com` | `https://{region}-aiplatform.googleapis.com` (`global`: `https://aiplatform.googleapis.com`) |
//! | auth | `x-goog-api-key` (configured, or the client's own with [`client_keys`](GeminiBuilder::client_keys)); **never** `?key=` in the URL | `Authorization: Bearer` access token from a service account |
//! | provider name | `google` | `vertex-ai` |
//!
//! One Vertex AI provider serves the project's models of both publishers: each request's model
//! picks its publisher ([`Publisher::of`](crate::vertex::Publisher::of): a `google.` or
//! `anthropic.` prefix, removed; a `claude…` model is Anthropic's; any other Google's;
//! `meta.`, `mistralai.` and `endpoints.` models are refused with a 400 naming the model).
//! Claude requests are handed to an [`Anthropic`](crate::Anthropic) provider in its Vertex AI
//! mode (see [`AnthropicBuilder::vertex`](crate::AnthropicBuilder::vertex)): the same
//! translation as Anthropic's API, the body without `model` and with `anthropic_version:
//! "vertex-2023-10-16"`, `anthropic-beta` as a header
//! ([`anthropic_beta`](GeminiBuilder::anthropic_beta)), the default `max_tokens` from
//! [`anthropic_max_tokens`](GeminiBuilder::anthropic_max_tokens); it shares this provider's
//! name, client, timeouts and token cache. Vertex AI embeddings report the inputs' token
//! counts, summed into `usage`.
//!
//! Vertex AI access tokens ([`crate::vertex`]): the service account's JSON key file is read
//! when the provider is built ([`ServiceAccount`]). A JWT (`RS256`, `kid` = `private_key_id`; claims `iss` =
//! `client_email`, `scope` = cloud-platform, `aud` = the file's `token_uri`, `iat`, `exp` =
//! `iat` + 3600) signed with its key is traded at `token_uri` for an access token, which is
//! cached and refreshed 5 minutes before it expires. Requests that find the token due wait for
//! one refresh between them; when the refresh fails they all get the same answer — 502 (the
//! token endpoint refused or answered nonsense) or 503 (it could not be reached), naming the
//! account and the cause, never the key — unless the old token has not expired yet, which is
//! then used.
//!
//! # The request
//!
//! | OpenAI | Gemini |
//! |---|---|
//! | `model` (a leading `models/` removed) | the URL; a name with anything but letters, digits, `-._@` is refused |
//! | `system` and `developer` messages, wherever they are | `systemInstruction.parts`, in order |
//! | `user` content, string or parts | a `user` turn of `text`, `inlineData` and `fileData` parts |
//! | `image_url` `data:…;base64,…` | `inlineData {mimeType, data}` |
//! | `image_url` `https://`, `http://`, `gs://` | `fileData {mimeType, fileUri}`; the MIME type from `image_url.mime_type` (or `format`), else the URL's extension (png, jpg, jpeg, webp, gif, heic, heif), else 400 |
//! | `assistant` content and `tool_calls` | a `model` turn of `text` and `functionCall {name, args}` parts, with `thoughtSignature` |
//! | `tool` messages | `functionResponse {name, response}` in a `user` turn; `name` from the call with that id in an earlier assistant message; `response` the content when it is a JSON object, else `{"content": …}` |
//! | consecutive turns of one role | one turn |
//! | `tools[].function` | `tools[{functionDeclarations}]`, `parameters` converted to Gemini's schema subset (below); an object without properties left out |
//! | `tool_choice` `auto` / `required` / `none` / named | `toolConfig.functionCallingConfig.mode` `AUTO` / `ANY` / `NONE` / `ANY` + `allowedFunctionNames` |
//! | `temperature`, `top_p`, `top_k`, `seed`, `presence_penalty`, `frequency_penalty` | `generationConfig.temperature`, `topP`, `topK`, `seed`, `presencePenalty`, `frequencyPenalty` |
//! | `max_completion_tokens`, else `max_tokens` | `generationConfig.maxOutputTokens` |
//! | `stop` | `generationConfig.stopSequences` |
//! | `n` | `generationConfig.candidateCount` (a choice per candidate) |
//! | `response_format: json_object` | `responseMimeType: application/json` |
//! | `response_format: json_schema` | `responseMimeType: application/json` + `responseSchema` (converted) |
//! | `reasoning_effort` | `thinkingConfig`: for `gemini-1*`/`gemini-2*` a `thinkingBudget` (`none` 0, `minimal` 512, `low` 1024, `medium` 8192, `high` 24576), for later models `thinkingLevel` (`none` → `minimal`); `includeThoughts` unless `none` |
//! | `thinking` (Anthropic's `{type, budget_tokens}`) | `thinkingConfig.thinkingBudget` |
//! | `safety_settings` | `safetySettings`, as they are |
//!
//! Thought signatures (Gemini 3 refuses a next turn without them) round-trip through the
//! tool-call id: a call carrying one is answered with the id `…__thought__<signature>`, and
//! the signature is read back from `extra_content.google.thought_signature`,
//! `function.thought_signature`, or that id.
//!
//! Schemas (tool parameters, `json_schema`) become Gemini's OpenAPI subset: `$ref`s into
//! `$defs`/`definitions` are inlined (a recursive schema is refused), `const` becomes a
//! one-value `enum`, `oneOf` becomes `anyOf`, a `null` type or member becomes `nullable`,
//! string formats other than `enum` and `date-time` and keywords outside the subset
//! (`additionalProperties`, `strict`, `$schema`, …) are left out.
//!
//! Headers sent: `x-goog-api-key` or `authorization`, `content-type`, `accept`, `user-agent`,
//! and the headers configured with [`GeminiBuilder::header`]. **No header of the client is
//! forwarded.** `user`, `store`, `metadata` and `service_tier` are left out.
//!
//! # What is refused, and why
//!
//! A 400 naming the field, without calling the upstream: `logprobs`, `top_logprobs` (not
//! translated back), a non-empty `logit_bias`, `functions` / `function_call`, `audio`,
//! non-text `modalities`, `prediction`, and `parallel_tool_calls: false` (Gemini cannot be
//! told to call one function at a time) — dropped instead with
//! [`drop_unsupported`](GeminiBuilder::drop_unsupported); tool-call `arguments` that are not
//! a JSON object; a tool message whose call is unknown; parts other than text and images;
//! tools other than functions; embeddings `input` of token arrays.
//!
//! # The answer
//!
//! | Gemini | OpenAI |
//! |---|---|
//! | `candidates[]` | `choices[]`, `index` the candidate's |
//! | `text` parts | `message.content`, joined (`null` when there are none) |
//! | `thought: true` parts | `message.reasoning_content` |
//! | `functionCall` parts | `message.tool_calls[]`: id `call_<responseId>_<choice>_<k>` (plus the signature), `arguments` the `args` as JSON text |
//! | `finishReason` | `finish_reason`, see [`finish_reason`] (`tool_calls` when the candidate called a function) |
//! | `promptFeedback.blockReason`, no candidates | one choice: `content: null`, a `refusal` naming the reason, `finish_reason: "content_filter"` (an answer, not an error) |
//! | `usageMetadata` | `prompt_tokens` = `promptTokenCount` + `toolUsePromptTokenCount`; `completion_tokens` = `candidatesTokenCount` + `thoughtsTokenCount`; `total_tokens` their sum; `prompt_tokens_details.cached_tokens` = `cachedContentTokenCount`; `completion_tokens_details.reasoning_tokens` = `thoughtsTokenCount` |
//! | `responseId`, `modelVersion` | `id`, `model` (the model asked for when absent) |
//! | an error `{"error":{code, message, status}}` (also inside a list) | `{"error":{"message":"google error: …","type":<status>,"param":null,"code":<status>},"provider":"google"}`, **with Google's HTTP status** |
//!
//! Streams are translated as the table of [`StreamTranslator`] says. The usage event
//! (`choices: []`) is always made, so the observer reports usage; when the client did not
//! ask for it with `stream_options.include_usage` the observer leaves it out of the client's
//! stream. A Gemini error chunk becomes an OpenAI error event and the stream's end; a stream
//! that ends before a finish reason ends with an error event too; one that breaks or stalls
//! past the idle timeout ends with the observer's error event: never as a clean end.

pub(crate) mod b64;
mod embed;
mod future;

mod request;
mod response;
mod scan;
mod schema;
mod service;
mod stream;

pub use self::embed::EmbeddingTranslator;
pub use self::future::ResponseFuture;
pub use self::request::{EmbedRequest, GenerateRequest, Translator};
pub use self::response::{InvalidResponse, ResponseTranslator, error_body, finish_reason};
pub use self::service::{DEFAULT_API_VERSION, DEFAULT_BASE_URL, Gemini, GeminiBuilder};
pub use self::stream::{StreamState, StreamTranslator};
// Where they were first, before Claude on Vertex AI shared them.
pub use crate::vertex::{CredentialsError, DEFAULT_TOKEN_URI, ServiceAccount};
