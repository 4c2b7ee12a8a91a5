//! A deterministic in-process OpenAI-compatible responder.
//!
//! [`Mock`] answers like an OpenAI API without a network or a key: chat completions (JSON or
//! a stream of events, one frame per event), completions, embeddings (a vector derived from a
//! hash of the input, so equal inputs embed equally) and the model list. It can wait before
//! answering and between stream events, fail a fixed share of requests (deterministically:
//! exactly `rate × n` of the first `n`, spread evenly), or always answer one status.
//!
//! It picks the endpoint of a request the way [`OpenAi`](crate::OpenAi) does: an
//! [`Endpoint`] in the request's extensions, else the one it is pinned to with
//! [`MockBuilder::endpoint`], else the incoming path (404 for a path that names none).
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::EdgeLayer;
//! use portcullis_provider::Mock;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mock = Mock::builder().failure_rate(0.5).failure_status(503).build();
//! let stack = EdgeLayer::new().layer(mock);
//! let mut statuses = Vec::new();
//! for _ in 0..4 {
//!     let req = http::Request::post("/v1/chat/completions")
//!         .body(Full::new(bytes::Bytes::from_static(br#"{"model":"m"}"#)))
//!         .unwrap();
//!     statuses.push(stack.clone().oneshot(req).await.unwrap().status().as_u16());
//! }
//! assert_eq!(statuses, [200, 503, 200, 503]);
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use pin_project_lite::pin_project;
use portcullis_core::error::{self as core_error, ErrorBody};
use portcullis_core::facts::{ResponseFacts, Usage};
use portcullis_core::observe::observe_response;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use serde_json::{Value, json};
use tokio::time::Sleep;
use tower_service::Service;

use crate::endpoint::{self, Endpoint};

/// The text a mock answers with unless told otherwise.
pub const DEFAULT_CONTENT: &str = "This is a mock response from Portcullis.";

/// Builds a [`Mock`].
#[derive(Clone, Debug)]
pub struct MockBuilder {
    name: String,
    latency: Duration,
    chunk_delay: Duration,
    failure_rate: f64,
    failure_status: StatusCode,
    status: Option<StatusCode>,
    stream: Option<bool>,
    usage: Option<(u64, u64)>,
    content: String,
    models: Vec<String>,
    endpoint: Option<Endpoint>,
}

impl MockBuilder {
    /// The name recorded as the provider (default `mock`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Waits this long before answering.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Waits this long between stream events.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Fails this share of requests (0 to 1), evenly spread.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// The status of a failure (default 500).
    pub fn failure_status(mut self, status: u16) -> Self {
        self.failure_status =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Answers every request with this status and an error body.
    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).ok();
        self
    }

    /// Streams (or not) whatever the request asked.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Reports this usage (default: prompt tokens estimated from the request size,
    /// completion tokens from the words of the answer).
    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }

    /// The assistant's answer.
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = content.into();
        self
    }

    /// The models listed by `/models` (default `["mock-model"]`).
    pub fn models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Pins the mock to `endpoint`: it answers every request as that endpoint, whatever the
    /// path, unless the request carries an [`Endpoint`] in its extensions (see [`Endpoint`]
    /// for the order). Default: unpinned, the incoming path decides.
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use portcullis_core::EdgeLayer;
    /// use portcullis_provider::{Endpoint, Mock};
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let stack = EdgeLayer::new().layer(Mock::builder().endpoint(Endpoint::Completions).build());
    /// let req = http::Request::post("/complete")
    ///     .body(Full::new(bytes::Bytes::from_static(br#"{"model":"m","prompt":"p"}"#)))
    ///     .unwrap();
    /// let res = stack.oneshot(req).await.unwrap();
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    /// assert_eq!(json["object"], "text_completion");
    /// # }
    /// ```
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Builds the mock.
    pub fn build(self) -> Mock {
        let pieces = self
            .content
            .split_inclusive(' ')
            .map(str::to_owned)
            .collect::<Vec<_>>();
        Mock {
            shared: Arc::new(Shared {
                name: self.name.as_str().into(),
                failure_ppm: (self.failure_rate * 1_000_000.0).round() as u64,
                pieces,
                config: self,
                served: AtomicU64::new(0),
            }),
        }
    }
}

/// A deterministic OpenAI-compatible responder (see the [module docs](self)).
#[derive(Clone)]
pub struct Mock {
    shared: Arc<Shared>,
}

struct Shared {
    config: MockBuilder,
    name: Arc<str>,
    failure_ppm: u64,
    pieces: Vec<String>,
    served: AtomicU64,
}

impl fmt::Debug for Mock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mock")
            .field("config", &self.shared.config)
            .field("served", &self.shared.served.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Mock {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Mock {
    /// Starts building a mock.
    pub fn builder() -> MockBuilder {
        MockBuilder {
            name: "mock".into(),
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            failure_rate: 0.0,
            failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            status: None,
            stream: None,
            usage: None,
            content: DEFAULT_CONTENT.into(),
            models: vec!["mock-model".into()],
            endpoint: None,
        }
    }

    /// How many requests this mock (and its clones) answered.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    fn answer(&self, req: &Request<BufferedBody>) -> Response<Body> {
        let shared = &*self.shared;
        let config = &shared.config;
        let n = shared.served.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = config.status {
            return failure(status);
        }
        // Exactly floor(n × rate) failures among the first n requests.
        if (n + 1) * shared.failure_ppm / 1_000_000 > n * shared.failure_ppm / 1_000_000 {
            return failure(config.failure_status);
        }
        let Some(endpoint) = Endpoint::of(req, config.endpoint) else {
            return endpoint::unknown(req);
        };
        let parsed;
        let view = match req.extensions().get::<Arc<RequestView>>() {
            Some(view) => Some(&**view),
            None => {
                parsed = RequestView::parse(req.body().bytes().clone()).ok();
                parsed.as_ref()
            }
        };
        let model = view
            .and_then(RequestView::model)
            .unwrap_or(config.models.first().map_or("mock-model", String::as_str))
            .to_owned();
        let prompt_tokens = config
            .usage
            .map_or((req.body().bytes().len() as u64 / 4).max(1), |u| u.0);
        let completion_tokens = config.usage.map_or(shared.pieces.len() as u64, |u| u.1);
        let usage = Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        };
        let stream = config
            .stream
            .unwrap_or_else(|| view.is_some_and(RequestView::stream));
        match endpoint {
            Endpoint::Models => json_response(&json!({
                "object": "list",
                "data": config.models.iter().map(|m| json!({
                    "id": m, "object": "model", "created": 1_700_000_000, "owned_by": "portcullis-mock"
                })).collect::<Vec<_>>(),
            })),
            Endpoint::Embeddings => {
                let input = view
                    .and_then(|v| v.get("input"))
                    .map(Value::to_string)
                    .unwrap_or_default();
                json_response(&json!({
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": embedding(&input)}],
                    "model": model,
                    "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
                }))
            }
            Endpoint::Chat | Endpoint::Completions if stream => {
                let include_usage = view.is_some_and(RequestView::include_usage);
                self.stream_response(endpoint, &model, usage, include_usage)
            }
            Endpoint::Chat => json_response(&json!({
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": config.content},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            })),
            Endpoint::Completions => json_response(&json!({
                "id": "cmpl-mock",
                "object": "text_completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": config.content, "finish_reason": "stop"}],
                "usage": usage,
            })),
        }
    }

    fn stream_response(
        &self,
        endpoint: Endpoint,
        model: &str,
        usage: Usage,
        include_usage: bool,
    ) -> Response<Body> {
        let chat = endpoint == Endpoint::Chat;
        let (id, object) = if chat {
            ("chatcmpl-mock", "chat.completion.chunk")
        } else {
            ("cmpl-mock", "text_completion")
        };
        let event = |choices: Value| {
            let chunk = json!({"id": id, "object": object, "created": 1_700_000_000, "model": model, "choices": choices});
            Bytes::from(format!("data: {chunk}\n\n"))
        };
        let mut events = VecDeque::with_capacity(self.shared.pieces.len() + 4);
        if chat {
            events.push_back(event(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
        }
        for piece in &self.shared.pieces {
            events.push_back(event(if chat {
                json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}])
            } else {
                json!([{"index": 0, "text": piece, "finish_reason": null}])
            }));
        }
        events.push_back(event(if chat {
            json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        } else {
            json!([{"index": 0, "text": "", "finish_reason": "stop"}])
        }));
        if include_usage {
            let chunk = json!({"id": id, "object": object, "created": 1_700_000_000, "model": model, "choices": [], "usage": usage});
            events.push_back(Bytes::from(format!("data: {chunk}\n\n")));
        }
        events.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        let mut response = Response::new(Body::boxed(EventStream {
            events,
            delay: self.shared.config.chunk_delay,
            sleep: None,
        }));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
    }
}

fn failure(status: StatusCode) -> Response<Body> {
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    core_error::response(
        status,
        ErrorBody::new(kind, format!("mock failure ({})", status.as_u16())).code("mock_failure"),
    )
}

fn json_response(value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(
        serde_json::to_vec(value).expect("JSON serialises"),
    ));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Eight numbers in [-1, 1) from a hash of the input.
fn embedding(input: &str) -> Vec<f64> {
    (0..8u64)
        .map(|i| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (input, i).hash(&mut hasher);
            (hasher.finish() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

pin_project! {
    /// A stream of prepared events, one frame each, with a pause between them.
    struct EventStream {
        events: VecDeque<Bytes>,
        delay: Duration,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl http_body::Body for EventStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
        }
        let Some(event) = this.events.pop_front() else {
            return Poll::Ready(None);
        };
        if !this.delay.is_zero() && !this.events.is_empty() {
            this.sleep.set(Some(tokio::time::sleep(*this.delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(event))))
    }

    fn is_end_stream(&self) -> bool {
        self.events.is_empty() && self.sleep.is_none()
    }
}

impl Service<Request<BufferedBody>> for Mock {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = MockFuture;

    /// Always ready.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> MockFuture {
        let mut response = observe_response(self.answer(&req));
        ResponseFacts::get_mut(&mut response).provider = Some(self.shared.name.clone());
        let latency = self.shared.config.latency;
        MockFuture {
            sleep: (!latency.is_zero()).then(|| tokio::time::sleep(latency)),
            response: Some(response),
        }
    }
}

pin_project! {
    /// The response future of [`Mock`].
    pub struct MockFuture {
        #[pin]
        sleep: Option<Sleep>,
        response: Option<Response<Body>>,
    }
}

impl fmt::Debug for MockFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockFuture").finish_non_exhaustive()
    }
}

impl Future for MockFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Ok(this.response.take().expect("polled after completion")))
    }
}
