//! Provider services for Portcullis: the tower services at the bottom of a stack that answer
//! LLM requests.
//!
//! - [`OpenAi`]: an OpenAI-compatible API over a pooled hyper client ([`HttpClient`]), with
//!   TLS through rustls when the `rustls` feature is on.
//! - [`Anthropic`]: Anthropic's native Messages API, translated from and to OpenAI's chat
//!   completions (JSON and streams, tools, images, usage with cached tokens, errors).
//! - [`Gemini`]: Google's native Gemini API (AI Studio with an API key, or Vertex AI with a
//!   service account), translated from and to OpenAI's chat completions and embeddings.
//! - [`Mock`]: a deterministic in-process OpenAI-compatible responder (latency, failure rate,
//!   status, streams, usage) for trying configs and load tests without a key.
//! - [`Endpoint`]: the upstream endpoint a request goes to. Both providers read it from the
//!   incoming path unless pinned to one with their builder's `endpoint` method (so they serve
//!   a route of any name, such as `/chat`) or given one in the request's extensions.
//!
//! Both take `http::Request<BufferedBody>` (put [`portcullis_core::Edge`] in front of them)
//! and return `http::Response<portcullis_core::Body>` with an
//! [`Observation`](portcullis_core::observe::Observation) of the body and the provider name
//! in the [`ResponseFacts`](portcullis_core::facts::ResponseFacts).
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::Mock;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let stack = EdgeLayer::new().layer(Mock::builder().content("Hi there").build());
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(br#"{"model":"m","messages":[]}"#)))
//!     .unwrap();
//! let res = stack.oneshot(req).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["choices"][0]["message"]["content"], "Hi there");
//! # }
//! ```

//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `rustls` | on | TLS for `https://` base URLs: rustls with ring, trusting the webpki roots and any roots added with [`HttpClient::builder`] (an upstream behind a private CA); HTTP/2 where the upstream offers it by ALPN. Without it the client speaks plain HTTP (a local vLLM or Ollama, a TLS-terminating sidecar) and an `https://` base URL is a [`BuildError`](openai::BuildError). |

#![forbid(unsafe_code)]

pub mod anthropic;
mod builder;
mod call;
mod client;
mod endpoint;
pub mod gemini;
pub mod inbound;
mod json;
pub mod mock;
pub mod openai;
mod scan;
mod sse;
mod tools;
mod upstream;
pub mod vertex;

pub use self::anthropic::{Anthropic, AnthropicBuilder};
pub use self::client::{CertificateError, DEFAULT_CONNECT_TIMEOUT, HttpClient, HttpClientBuilder};
pub use self::endpoint::Endpoint;
pub use self::gemini::{Gemini, GeminiBuilder};
pub use self::mock::Mock;
pub use self::openai::OpenAi;
