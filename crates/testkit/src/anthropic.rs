//! A fake Anthropic Messages API upstream on loopback.
//!
//! [`FakeAnthropic::start`] binds `127.0.0.1:0` and serves real HTTP/1.1 (hyper, keep-alive
//! on) on the current tokio runtime. `POST /v1/messages` answers a message, as JSON, or as
//! Anthropic's event stream (`message_start`, `ping`, `content_block_start` /
//! `content_block_delta` / `content_block_stop` per block, `message_delta`, `message_stop`;
//! one HTTP body frame per event) when the request says `"stream": true`. What it answers is
//! set with a [`Plan`]: blocks (text, tool calls, thinking), the stop reason, usage with cache
//! tokens, an error status with Anthropic's error body, a stream that breaks midway or sends
//! an `error` event, delays, or a recorded answer replayed as it is. Every request is
//! recorded (headers and body) as a [`Recorded`]. Any other path is a 404 with Anthropic's
//! error body.
//!
//! Claude on Vertex AI is served too, as Vertex AI serves it:
//! `POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for streams). Those routes need an `Authorization: Bearer` token (401
//! without) and a Vertex body: no `model` (it is in the URL), an `anthropic_version` of
//! Vertex AI's (`vertex-2023-10-16`, or any `vertex-…`), and `stream: true` exactly on `streamRawPredict` (400 otherwise, in
//! Anthropic's shape). The answer's `model` is the URL's. [`FakeGemini`](crate::gemini)
//! serves the same routes behind its token endpoint, for a provider that speaks to both
//! publishers of one project.
//!
//! ```
//! use portcullis_testkit::anthropic::{FakeAnthropic, Plan};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let upstream = FakeAnthropic::start().await;
//!     upstream.set(Plan::ok().text("Bonjour").usage(10, 2).cache(30, 5));
//!
//!     let body = r#"{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
//!     let request = format!(
//!         "POST /v1/messages HTTP/1.1\r\nhost: fake\r\nconnection: close\r\nx-api-key: k\r\n\
//!          content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
//!         body.len()
//!     );
//!     let mut tcp = tokio::net::TcpStream::connect(upstream.addr()).await.unwrap();
//!     tcp.write_all(request.as_bytes()).await.unwrap();
//!     let mut answer = String::new();
//!     tcp.read_to_string(&mut answer).await.unwrap();
//!     assert!(answer.starts_with("HTTP/1.1 200"));
//!     assert!(answer.contains(r#""text":"Bonjour""#));
//!     assert!(answer.contains(r#""cache_read_input_tokens":30"#));
//!     assert_eq!(upstream.last_request().unwrap().header("x-api-key"), Some("k"));
//! }
//! ```

use crate::respond::FakeBody;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Recorded;

/// Default text of generated answers.
pub const DEFAULT_TEXT: &str = "Hello from the fake Anthropic.";
/// Default `(input_tokens, output_tokens)` of generated answers.
pub const DEFAULT_USAGE: (u64, u64) = (12, 7);

/// A content block of a generated answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A `text` block.
    Text(String),
    /// A `tool_use` block.
    ToolUse {
        /// Its id, e.g. `toolu_01`.
        id: String,
        /// The tool's name.
        name: String,
        /// The tool's input (an object).
        input: Value,
    },
    /// A `thinking` block.
    Thinking(String),
}

/// How a stream answer ends early.
#[derive(Clone, Debug, PartialEq)]
enum Cut {
    /// Abort the connection after this many content deltas.
    Break(usize),
    /// Send an `error` event after this many content deltas, then end the body cleanly.
    Error(usize, String, String),
    /// End the body cleanly after this many content deltas, without `message_stop`.
    End(usize),
}

/// A recorded answer, replayed as it is (by the fake Gemini too).
#[derive(Clone, Debug)]
pub(crate) struct Replay {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
}

impl Replay {
    /// The answer: an event stream sent one event per frame, `chunk_delay` apart, or the
    /// JSON body in one frame.
    pub(crate) fn response(&self, chunk_delay: Duration) -> Response<FakeBody> {
        let frames = if self.content_type == "text/event-stream" {
            let text = String::from_utf8_lossy(&self.body).into_owned();
            text.split_inclusive("\n\n")
                .map(|e| Bytes::from(e.to_owned()))
                .collect()
        } else {
            VecDeque::from([self.body.clone()])
        };
        let mut resp = Response::new(FakeBody::events(frames, chunk_delay, false));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        resp
    }
}

/// What the fake Anthropic answers.
///
/// Builder style from [`Plan::ok`]: a text answer ([`DEFAULT_TEXT`]) that stops with
/// `end_turn` (`tool_use` when there are tool blocks), with [`DEFAULT_USAGE`] and no cache
/// tokens. Order for each request: record it, wait [`delay`](Plan::delay), then an
/// [`error`](Plan::error) or a [`replay`](Plan::replay) if set, then the generated answer.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    blocks: Option<Vec<Block>>,
    stop_reason: Option<String>,
    usage: Option<(u64, u64)>,
    cache: (u64, u64),
    error: Option<(StatusCode, String, String)>,
    cut: Option<Cut>,
    delay: Duration,
    chunk_delay: Duration,
    replay: Option<Replay>,
}

impl Plan {
    /// A normal text answer (the default plan).
    pub fn ok() -> Plan {
        Plan::default()
    }

    /// The answer's blocks, in order.
    pub fn blocks(mut self, blocks: Vec<Block>) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// One text block of `text` (replacing the blocks set so far).
    pub fn text(self, text: &str) -> Self {
        self.blocks(vec![Block::Text(text.to_owned())])
    }

    /// Appends a `tool_use` block (after the default text, if no blocks were set).
    pub fn tool_use(mut self, id: &str, name: &str, input: Value) -> Self {
        let mut blocks = self
            .blocks
            .take()
            .unwrap_or_else(|| vec![Block::Text(DEFAULT_TEXT.to_owned())]);
        blocks.push(Block::ToolUse {
            id: id.to_owned(),
            name: name.to_owned(),
            input,
        });
        self.blocks = Some(blocks);
        self
    }

    /// The `stop_reason` (default `end_turn`, or `tool_use` when there are tool blocks).
    pub fn stop_reason(mut self, reason: &str) -> Self {
        self.stop_reason = Some(reason.to_owned());
        self
    }

    /// `input_tokens` and `output_tokens` (default [`DEFAULT_USAGE`]).
    pub fn usage(mut self, input: u64, output: u64) -> Self {
        self.usage = Some((input, output));
        self
    }

    /// `cache_read_input_tokens` and `cache_creation_input_tokens` (default 0 and 0).
    pub fn cache(mut self, read: u64, creation: u64) -> Self {
        self.cache = (read, creation);
        self
    }

    /// Answer `status` with Anthropic's error body, `type` chosen by the status as
    /// Anthropic does (`overloaded_error` for 529, `rate_limit_error` for 429, …).
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn status(self, status: u16) -> Self {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        self.error(status, kind, "fake Anthropic error")
    }

    /// Answer `status` with `{"type":"error","error":{"type":kind,"message":message}}`.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn error(mut self, status: u16, kind: &str, message: &str) -> Self {
        let status = StatusCode::from_u16(status)
            .unwrap_or_else(|e| panic!("Plan: invalid HTTP status {status}: {e}"));
        self.error = Some((status, kind.to_owned(), message.to_owned()));
        self
    }

    /// Streams: after `n` content deltas, abort the connection mid-body (no
    /// `message_delta`, no `message_stop`).
    pub fn break_after(mut self, n: usize) -> Self {
        self.cut = Some(Cut::Break(n));
        self
    }

    /// Streams: after `n` content deltas, send an `error` event of `kind` with `message`,
    /// then end the body cleanly.
    pub fn error_event_after(mut self, n: usize, kind: &str, message: &str) -> Self {
        self.cut = Some(Cut::Error(n, kind.to_owned(), message.to_owned()));
        self
    }

    /// Streams: after `n` content deltas, end the body cleanly without `message_stop`.
    pub fn end_after(mut self, n: usize) -> Self {
        self.cut = Some(Cut::End(n));
        self
    }

    /// Wait `d` (with `tokio::time::sleep`, so virtual under `tokio::time::pause`) before
    /// the response headers.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Wait `d` between the events of stream answers.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Answer exactly `body` with `status`: JSON, or (when it starts with `event:` or
    /// `data:`) an event stream sent one event per frame. For recorded answers.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn replay(mut self, status: u16, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let sse = body.starts_with(b"event:") || body.starts_with(b"data:");
        self.replay = Some(Replay {
            status: StatusCode::from_u16(status)
                .unwrap_or_else(|e| panic!("Plan: invalid HTTP status {status}: {e}")),
            content_type: if sse {
                "text/event-stream"
            } else {
                "application/json"
            },
            body,
        });
        self
    }

    /// The wait before the response headers, for the fake Gemini's Claude routes.
    pub(crate) fn wait(&self) -> Duration {
        self.delay
    }

    fn content(&self) -> Vec<Block> {
        self.blocks
            .clone()
            .unwrap_or_else(|| vec![Block::Text(DEFAULT_TEXT.to_owned())])
    }

    fn stop(&self, blocks: &[Block]) -> String {
        self.stop_reason.clone().unwrap_or_else(|| {
            let tools = blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
            (if tools { "tool_use" } else { "end_turn" }).to_owned()
        })
    }
}

#[derive(Debug, Default)]
struct State {
    plan: Plan,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fake Anthropic Messages API serving HTTP/1.1 on `127.0.0.1` (see the
/// [module docs](self)).
///
/// Dropping it stops the server and closes its open connections.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl fmt::Debug for FakeAnthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAnthropic")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAnthropic {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime, answering
    /// with [`Plan::ok`] until told otherwise.
    ///
    /// # Panics
    /// If binding fails or there is no current tokio runtime.
    pub async fn start() -> FakeAnthropic {
        let (listener, addr) = crate::bind_loopback("fake anthropic").await;
        let shared = Shared::default();
        let handler = shared.clone();
        let task = tokio::spawn(crate::serve(listener, move |req| {
            handle(handler.clone(), req)
        }));
        FakeAnthropic { addr, shared, task }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL (requests go to `/v1/messages` below it).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the plan.
    pub fn set(&self, plan: Plan) {
        lock(&self.shared).plan = plan;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared).requests.last().cloned()
    }

    /// The number of requests received so far.
    pub fn hits(&self) -> usize {
        lock(&self.shared).requests.len()
    }
}

/// `req` read whole, as the fakes record it (the fake Gemini too).
pub(crate) async fn record(req: Request<Incoming>) -> io::Result<Recorded> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    Ok(Recorded {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

async fn handle(shared: Shared, req: Request<Incoming>) -> io::Result<Response<FakeBody>> {
    let recorded = record(req).await?;
    let plan = {
        let mut state = lock(&shared);
        state.requests.push(recorded.clone());
        state.plan.clone()
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    Ok(answer(&plan, &recorded))
}

/// Anthropic's error answer.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<FakeBody> {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    json_response(status, &body)
}

fn json_response(status: StatusCode, v: &Value) -> Response<FakeBody> {
    let bytes = Bytes::from(v.to_string());
    let mut resp = Response::new(FakeBody::events(
        VecDeque::from([bytes]),
        Duration::ZERO,
        false,
    ));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn answer(plan: &Plan, req: &Recorded) -> Response<FakeBody> {
    let path = req.path.split('?').next().unwrap_or("");
    if req.method == Method::POST {
        if path == "/v1/messages" {
            return messages(plan, req);
        }
        if let Some((model, method)) = vertex_route(path) {
            let bearer = req
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .filter(|t| !t.is_empty());
            if bearer.is_none() {
                return unauthenticated();
            }
            return vertex_answer(plan, req, model, method);
        }
    }
    let message = format!("fake anthropic: no route for {} {}", req.method, req.path);
    error(StatusCode::NOT_FOUND, "not_found_error", &message)
}

/// Vertex AI's answer to a request without a valid token.
pub(crate) fn unauthenticated() -> Response<FakeBody> {
    error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "Request had invalid authentication credentials.",
    )
}

/// The model and method of a Vertex AI Claude path,
/// `/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:{method}`.
pub(crate) fn vertex_route(path: &str) -> Option<(&str, &str)> {
    let (route, rest) = path
        .strip_prefix("/v1/projects/")?
        .split_once("/publishers/anthropic/models/")?;
    let (_project, region) = route.split_once("/locations/")?;
    if region.is_empty() || region.contains('/') {
        return None;
    }
    rest.split_once(':')
}

/// The answer to a Vertex AI Claude request for `model` (from the URL) by `method`, whose
/// token was checked already.
pub(crate) fn vertex_answer(
    plan: &Plan,
    req: &Recorded,
    model: &str,
    method: &str,
) -> Response<FakeBody> {
    let stream = match method {
        "rawPredict" => false,
        "streamRawPredict" => true,
        other => {
            let message = format!("fake anthropic: no Vertex AI method {other}");
            return error(StatusCode::NOT_FOUND, "not_found_error", &message);
        }
    };
    if let Some(planned) = planned(plan) {
        return planned;
    }
    let request = match request_json(req) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    let refuse = |message: &str| error(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    if request.get("model").is_some() {
        return refuse("model: Extra inputs are not permitted");
    }
    // Vertex AI's versions are `vertex-…` (only `vertex-2023-10-16` so far).
    if !request["anthropic_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("vertex-"))
    {
        return refuse("anthropic_version: must be a Vertex AI version, such as vertex-2023-10-16");
    }
    if (request["stream"] == Value::Bool(true)) != stream {
        return refuse("stream: must be true on streamRawPredict, and only there");
    }
    generate(plan, &request, model)
}

/// The request's JSON body, or Anthropic's refusal of a malformed one.
fn request_json(req: &Recorded) -> Result<Value, Box<Response<FakeBody>>> {
    serde_json::from_slice(&req.body).map_err(|e| {
        let message = format!("fake anthropic: malformed JSON request body: {e}");
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &message,
        ))
    })
}

/// The plan's error or replay, if it has one.
fn planned(plan: &Plan) -> Option<Response<FakeBody>> {
    if let Some((status, kind, message)) = &plan.error {
        return Some(error(*status, kind, message));
    }
    Some(plan.replay.as_ref()?.response(plan.chunk_delay))
}

/// The answer to `POST /v1/messages`.
fn messages(plan: &Plan, req: &Recorded) -> Response<FakeBody> {
    if let Some(planned) = planned(plan) {
        return planned;
    }
    let request = match request_json(req) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    let model = request["model"].as_str().unwrap_or("claude-fake");
    generate(plan, &request, model)
}

/// The generated answer to a valid `request` for `model`: JSON, or a stream when it asks.
fn generate(plan: &Plan, request: &Value, model: &str) -> Response<FakeBody> {
    if request["max_tokens"].as_u64().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let blocks = plan.content();
    let stop = plan.stop(&blocks);
    let (input, output) = plan.usage.unwrap_or(DEFAULT_USAGE);
    let (cache_read, cache_creation) = plan.cache;
    let id = "msg_fake01";
    if request["stream"] != Value::Bool(true) {
        let content: Vec<Value> = blocks
            .iter()
            .map(|b| match b {
                Block::Text(text) => json!({"type": "text", "text": text}),
                Block::ToolUse { id, name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
                Block::Thinking(text) => {
                    json!({"type": "thinking", "thinking": text, "signature": "sig-fake"})
                }
            })
            .collect();
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output,
                "cache_read_input_tokens": cache_read,
                "cache_creation_input_tokens": cache_creation},
        });
        return json_response(StatusCode::OK, &body);
    }

    let event = |v: Value| {
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
    };
    let mut events = VecDeque::new();
    events.push_back(event(json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": 1,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_creation}}})));
    events.push_back(event(json!({"type": "ping"})));
    let limit = match &plan.cut {
        Some(Cut::Break(n) | Cut::Error(n, _, _) | Cut::End(n)) => *n,
        None => usize::MAX,
    };
    let mut deltas = 0;
    'blocks: for (index, block) in blocks.iter().enumerate() {
        let (start, pieces) = match block {
            Block::Text(text) => (
                json!({"type": "text", "text": ""}),
                text.split_inclusive(' ')
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect::<Vec<_>>(),
            ),
            Block::Thinking(text) => {
                let mut pieces: Vec<Value> = text
                    .split_inclusive(' ')
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .collect();
                pieces.push(json!({"type": "signature_delta", "signature": "sig-fake"}));
                (json!({"type": "thinking", "thinking": ""}), pieces)
            }
            Block::ToolUse { id, name, input } => {
                let json = input.to_string();
                let chars: Vec<char> = json.chars().collect();
                // As Anthropic does: an empty piece first, then the input in fragments.
                let mut pieces = vec![json!({"type": "input_json_delta", "partial_json": ""})];
                pieces.extend(chars.chunks(8).map(|c| {
                    json!({"type": "input_json_delta", "partial_json": c.iter().collect::<String>()})
                }));
                (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    pieces,
                )
            }
        };
        events.push_back(event(
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in pieces {
            if deltas == limit {
                break 'blocks;
            }
            deltas += 1;
            events.push_back(event(
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push_back(event(json!({"type": "content_block_stop", "index": index})));
    }
    match &plan.cut {
        None => {
            events.push_back(event(json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": output}})));
            events.push_back(event(json!({"type": "message_stop"})));
        }
        Some(Cut::Error(_, kind, message)) => {
            events.push_back(event(
                json!({"type": "error", "error": {"type": kind, "message": message}}),
            ));
        }
        Some(Cut::Break(_) | Cut::End(_)) => {}
    }
    let broken = matches!(plan.cut, Some(Cut::Break(_)));
    let mut resp = Response::new(FakeBody::events(events, plan.chunk_delay, broken));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}
