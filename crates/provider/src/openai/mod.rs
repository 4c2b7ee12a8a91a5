//! The OpenAI-compatible provider: any API that speaks OpenAI's wire format (OpenAI itself,
//! Azure-style gateways, vLLM, Ollama, and the OpenAI-compatible endpoints of Anthropic and
//! Gemini) behind a base URL and an API key.
//!
//! [`OpenAi`] is a `tower::Service<http::Request<BufferedBody>>` that:
//!
//! - sends each request to one [`Endpoint`](crate::Endpoint) below the base URL
//!   (`/chat/completions`, `/completions`, `/embeddings`, `/models`), chosen by an `Endpoint`
//!   in the request's extensions, else the endpoint the provider is pinned to with
//!   [`OpenAiBuilder::endpoint`], else the incoming path (with or without the `/v1` prefix);
//!   a path that names no endpoint is answered 404 (405 for the wrong method), so a client can
//!   reach no path of the upstream that was not meant to be reached;
//! - drops the client's query string: only the parameters named with
//!   [`OpenAiBuilder::allow_query_params`] go on to the upstream;
//! - sends only what the upstream needs: its own `authorization: Bearer KEY`, `content-type`,
//!   `accept`, `user-agent` and the headers configured for the provider. **No header of the
//!   client is forwarded**: not its `authorization`, not `x-portkey-*`, not cookies;
//! - sends the client's body bytes untouched, except that a stream request without
//!   `stream_options.include_usage` gets it added (when [`OpenAiBuilder::stream_usage`] is on,
//!   the default), so usage is always known; the usage-only event it brings is then left out
//!   of the client's stream;
//! - passes streams through chunk by chunk, observed (see
//!   [`portcullis_core::observe`]), and records the provider name in the response facts;
//! - times out opening a connection, waiting for response headers, and (optionally) waiting
//!   between body chunks: 504 before the response starts, an SSE error event after;
//! - maps transport failures to typed errors: [`UpstreamError`](portcullis_core::error::UpstreamError)
//!   (502) and [`UpstreamTimeout`](portcullis_core::error::UpstreamTimeout) (504).
//!
//! ```
//! use portcullis_provider::OpenAi;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # #[cfg(feature = "rustls")] // `https://` needs TLS, the `rustls` feature (default)
//! let openai = OpenAi::builder("https://api.openai.com/v1")
//!     .api_key("sk-test")
//!     .name("openai")
//!     .response_timeout(Duration::from_secs(120))
//!     .build()
//!     .unwrap();
//! # #[cfg(feature = "rustls")]
//! # let _ = openai;
//! assert!(OpenAi::builder("ftp://example.com").build().is_err());
//! # }
//! ```
//!
//! # A route of any name
//!
//! Unpinned, the provider reads the endpoint from the incoming path, so mounted on a route
//! such as axum's `.route_service("/chat", stack)` it would answer 404 to every call. Pinned,
//! it ignores the path:
//!
//! ```
//! use http_body_util::Full;
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::{Endpoint, OpenAi};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let upstream = portcullis_testkit::FakeUpstream::start().await;
//! # let base_url = upstream.base_url();
//! let chat = OpenAi::builder(base_url) // e.g. "https://api.openai.com/v1"
//!     .api_key("sk-test")
//!     .endpoint(Endpoint::Chat)
//!     .build()
//!     .unwrap();
//! let stack = EdgeLayer::new().layer(chat);
//!
//! let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
//! let req = http::Request::post("/chat")
//!     .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
//!     .unwrap();
//! let res = stack.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200); // sent to `{base_url}/chat/completions`
//! # assert_eq!(upstream.last_request().unwrap().path, "/v1/chat/completions");
//! # }
//! ```

mod future;
mod idle;
mod query;
mod service;

pub use self::future::ResponseFuture;
pub use self::service::{BuildError, DEFAULT_RESPONSE_TIMEOUT, OpenAi, OpenAiBuilder};
