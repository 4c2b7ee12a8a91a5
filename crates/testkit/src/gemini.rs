//! A fake Gemini API upstream (Google AI Studio and Vertex AI) on loopback, with a fake
//! Google token endpoint.
//!
//! [`FakeGemini::start`] binds `127.0.0.1:0` and serves real HTTP/1.1 (hyper, keep-alive on)
//! on the current tokio runtime:
//!
//! - `POST …/models/{model}:generateContent`, under Google AI Studio's `/v1beta` or Vertex
//!   AI's `/v1/projects/{project}/locations/{region}/publishers/google`: a
//!   `GenerateContentResponse` (one candidate per `generationConfig.candidateCount`);
//! - `POST …:streamGenerateContent?alt=sse`: the same as server-sent events, one HTTP body
//!   frame per chunk (text a word per chunk, function calls together in one chunk, a last
//!   chunk with the finish reason and usage); without `alt=sse`, Google's JSON array;
//! - `POST …:embedContent` and `…:batchEmbedContents`: embeddings of
//!   `outputDimensionality` values (default 3);
//! - Vertex AI only, `POST …/publishers/google/models/{model}:predict` with
//!   `{"instances": [{"content": text}, …], "parameters": {"outputDimensionality": n}}`:
//!   `{"predictions": [{"embeddings": {"values", "statistics": {"token_count", "truncated"}}},
//!   …]}`, a token per word of each text;
//! - Vertex AI's Claude routes,
//!   `POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
//!   and `:streamRawPredict`, answered as the [fake Anthropic](crate::anthropic) answers them
//!   (Vertex bodies checked: no `model`, `anthropic_version`), by the plan set with
//!   [`FakeGemini::set_claude`];
//! - `POST /token`: an OAuth token endpoint for service-account JWTs. The form must have
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an `assertion` that is
//!   structurally an RS256 JWT for the cloud-platform scope, `aud` this endpoint and `exp` =
//!   `iat` + 3600 (the signature is not checked: the fake has no RSA); it answers tokens
//!   `ya29.fake-1`, `ya29.fake-2`, … Vertex AI routes (both publishers) take only the latest
//!   token issued.
//!
//! Google AI Studio routes need an `x-goog-api-key` header (403 without). What they answer
//! is set with a [`Plan`]: parts (text, thoughts, function calls with thought signatures),
//! the finish reason, usage with thoughts and cached tokens, a blocked prompt, an error in
//! Google's shape, a stream that breaks midway, sends an error chunk or ends early, delays,
//! or a recorded answer replayed as it is. Every request is recorded as a [`Recorded`].
//!
//! ```
//! use portcullis_testkit::gemini::{FakeGemini, Plan};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let upstream = FakeGemini::start().await;
//!     upstream.set(Plan::ok().text("Bonjour").usage(10, 2).cached(4));
//!
//!     let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
//!     let request = format!(
//!         "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: fake\r\n\
//!          connection: close\r\nx-goog-api-key: k\r\ncontent-type: application/json\r\n\
//!          content-length: {}\r\n\r\n{body}",
//!         body.len()
//!     );
//!     let mut tcp = tokio::net::TcpStream::connect(upstream.addr()).await.unwrap();
//!     tcp.write_all(request.as_bytes()).await.unwrap();
//!     let mut answer = String::new();
//!     tcp.read_to_string(&mut answer).await.unwrap();
//!     assert!(answer.starts_with("HTTP/1.1 200"));
//!     assert!(answer.contains(r#""text":"Bonjour""#));
//!     assert!(answer.contains(r#""cachedContentTokenCount":4"#));
//!     assert_eq!(upstream.last_request().unwrap().header("x-goog-api-key"), Some("k"));
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
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Recorded;
use crate::anthropic::{Replay, record};

/// Default text of generated answers.
pub const DEFAULT_TEXT: &str = "Hello from the fake Gemini.";
/// Default `(promptTokenCount, candidatesTokenCount)` of generated answers.
pub const DEFAULT_USAGE: (u64, u64) = (11, 6);
/// The `responseId` of generated answers.
pub const RESPONSE_ID: &str = "fake-response-1";

/// A part of a generated candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// A `text` part.
    Text(String),
    /// A `text` part with `thought: true`.
    Thought(String),
    /// A `functionCall` part.
    Call {
        /// The function's name.
        name: String,
        /// Its `args` (an object).
        args: Value,
        /// The part's `thoughtSignature`, if any.
        signature: Option<String>,
    },
}

/// How a stream answer ends early.
#[derive(Clone, Debug, PartialEq)]
enum Cut {
    /// Abort the connection after this many content chunks.
    Break(usize),
    /// Send an error chunk (status, message) after this many content chunks, then end.
    Error(usize, u16, String),
    /// End the body cleanly after this many content chunks, without a finish reason.
    End(usize),
}

/// What the fake Gemini answers to `generateContent`, `streamGenerateContent` and the
/// embeddings methods.
///
/// Builder style from [`Plan::ok`]: a text answer ([`DEFAULT_TEXT`]) that finishes with
/// `STOP`, with [`DEFAULT_USAGE`] and no thoughts nor cached tokens. Order for each request:
/// record it, wait [`delay`](Plan::delay), then an [`error`](Plan::error) or a
/// [`replay`](Plan::replay) if set, then the generated answer.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    parts: Option<Vec<Part>>,
    finish: Option<String>,
    usage: Option<(u64, u64)>,
    thoughts: u64,
    cached: u64,
    blocked: Option<String>,
    error: Option<(StatusCode, String)>,
    cut: Option<Cut>,
    delay: Duration,
    chunk_delay: Duration,
    replay: Option<Replay>,
}

/// Google's status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or_else(|e| panic!("Plan: invalid HTTP status {code}: {e}"))
}

impl Plan {
    /// A normal text answer (the default plan).
    pub fn ok() -> Plan {
        Plan::default()
    }

    /// The candidate's parts, in order.
    pub fn parts(mut self, parts: Vec<Part>) -> Self {
        self.parts = Some(parts);
        self
    }

    /// One text part of `text` (replacing the parts set so far).
    pub fn text(self, text: &str) -> Self {
        self.parts(vec![Part::Text(text.to_owned())])
    }

    fn push(mut self, part: Part) -> Self {
        self.parts.get_or_insert_with(Vec::new).push(part);
        self
    }

    /// Appends a thought part (`thought: true`).
    pub fn thought(self, text: &str) -> Self {
        self.push(Part::Thought(text.to_owned()))
    }

    /// Appends a `functionCall` part (to no text, if no parts were set).
    pub fn call(self, name: &str, args: Value) -> Self {
        self.push(Part::Call {
            name: name.to_owned(),
            args,
            signature: None,
        })
    }

    /// Appends a `functionCall` part with a `thoughtSignature`.
    pub fn call_signed(self, name: &str, args: Value, signature: &str) -> Self {
        self.push(Part::Call {
            name: name.to_owned(),
            args,
            signature: Some(signature.to_owned()),
        })
    }

    /// The `finishReason` (default `STOP`).
    pub fn finish_reason(mut self, reason: &str) -> Self {
        self.finish = Some(reason.to_owned());
        self
    }

    /// `promptTokenCount` and `candidatesTokenCount` (default [`DEFAULT_USAGE`]).
    pub fn usage(mut self, prompt: u64, candidates: u64) -> Self {
        self.usage = Some((prompt, candidates));
        self
    }

    /// `thoughtsTokenCount` (default 0: left out).
    pub fn thoughts(mut self, n: u64) -> Self {
        self.thoughts = n;
        self
    }

    /// `cachedContentTokenCount` (default 0: left out).
    pub fn cached(mut self, n: u64) -> Self {
        self.cached = n;
        self
    }

    /// The prompt is blocked: no candidates, `promptFeedback.blockReason` = `reason`.
    pub fn blocked(mut self, reason: &str) -> Self {
        self.blocked = Some(reason.to_owned());
        self
    }

    /// Answer `status` with Google's error body, the status name Google gives it
    /// (`RESOURCE_EXHAUSTED` for 429, …).
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn error(mut self, code: u16, message: &str) -> Self {
        self.error = Some((status(code), message.to_owned()));
        self
    }

    /// Streams: after `n` content chunks, abort the connection mid-body.
    pub fn break_after(mut self, n: usize) -> Self {
        self.cut = Some(Cut::Break(n));
        self
    }

    /// Streams: after `n` content chunks, send `data: {"error": {…}}` with `code`, its status
    /// name and `message`, then end the body.
    pub fn error_chunk_after(mut self, n: usize, code: u16, message: &str) -> Self {
        self.cut = Some(Cut::Error(n, code, message.to_owned()));
        self
    }

    /// Streams: after `n` content chunks, end the body cleanly without a finish reason.
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

    /// Wait `d` between the chunks of stream answers.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Answer exactly `body` with `status`: JSON, or (when it starts with `data:`) an event
    /// stream sent one event per frame. For recorded answers.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn replay(mut self, code: u16, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        self.replay = Some(Replay {
            status: status(code),
            content_type: if body.starts_with(b"data:") {
                "text/event-stream"
            } else {
                "application/json"
            },
            body,
        });
        self
    }

    fn content(&self) -> Vec<Part> {
        self.parts
            .clone()
            .unwrap_or_else(|| vec![Part::Text(DEFAULT_TEXT.to_owned())])
    }

    fn usage_json(&self, done: bool) -> Value {
        let (prompt, candidates) = self.usage.unwrap_or(DEFAULT_USAGE);
        if !done {
            return json!({"promptTokenCount": prompt, "totalTokenCount": prompt});
        }
        let mut usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + self.thoughts});
        if self.thoughts > 0 {
            usage["thoughtsTokenCount"] = json!(self.thoughts);
        }
        if self.cached > 0 {
            usage["cachedContentTokenCount"] = json!(self.cached);
        }
        usage
    }
}

fn part_json(part: &Part) -> Value {
    match part {
        Part::Text(text) => json!({"text": text}),
        Part::Thought(text) => json!({"text": text, "thought": true}),
        Part::Call {
            name,
            args,
            signature,
        } => {
            let mut v = json!({"functionCall": {"name": name, "args": args}});
            if let Some(signature) = signature {
                v["thoughtSignature"] = json!(signature);
            }
            v
        }
    }
}

/// The fake token endpoint's behaviour.
#[derive(Clone, Debug)]
struct TokenPlan {
    expires_in: u64,
    failure: Option<(StatusCode, String)>,
    delay: Duration,
}

impl Default for TokenPlan {
    fn default() -> Self {
        Self {
            expires_in: 3599,
            failure: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    plan: Plan,
    claude: crate::anthropic::Plan,
    token: TokenPlan,
    issued: Vec<String>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fake Gemini API and Google token endpoint serving HTTP/1.1 on `127.0.0.1` (see the
/// [module docs](self)).
///
/// Dropping it stops the server and closes its open connections.
pub struct FakeGemini {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl fmt::Debug for FakeGemini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGemini")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGemini {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime, answering
    /// with [`Plan::ok`] until told otherwise.
    ///
    /// # Panics
    /// If binding fails or there is no current tokio runtime.
    pub async fn start() -> FakeGemini {
        let (listener, addr) = crate::bind_loopback("fake gemini").await;
        let shared = Shared::default();
        let handler = shared.clone();
        let task = tokio::spawn(crate::serve(listener, move |req| {
            handle(handler.clone(), req)
        }));
        FakeGemini { addr, shared, task }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/token`, the token endpoint.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url())
    }

    /// A service-account JSON key file's content for `private_key_pem`, whose `token_uri` is
    /// this fake's, with project `fake-project`.
    pub fn service_account_json(&self, private_key_pem: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "fake-key-id",
            "private_key": private_key_pem,
            "client_email": "portcullis-test@fake-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    /// Sets the plan.
    pub fn set(&self, plan: Plan) {
        lock(&self.shared).plan = plan;
    }

    /// Sets the plan of the Vertex AI Claude routes (`publishers/anthropic`; default
    /// [`anthropic::Plan::ok`](crate::anthropic::Plan::ok)).
    pub fn set_claude(&self, plan: crate::anthropic::Plan) {
        lock(&self.shared).claude = plan;
    }

    /// Sets the `expires_in` of the tokens issued from now on (default 3599).
    pub fn token_expires_in(&self, seconds: u64) {
        lock(&self.shared).token.expires_in = seconds;
    }

    /// Makes the token endpoint refuse with `status` and OAuth's error body
    /// (`{"error": "invalid_grant", "error_description": description}`), or work again with
    /// `None`.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn token_failure(&self, failure: Option<(u16, &str)>) {
        lock(&self.shared).token.failure = failure.map(|(code, d)| (status(code), d.to_owned()));
    }

    /// Makes the token endpoint wait `d` before answering.
    pub fn token_delay(&self, d: Duration) {
        lock(&self.shared).token.delay = d;
    }

    /// The access tokens issued so far, in order.
    pub fn tokens_issued(&self) -> Vec<String> {
        lock(&self.shared).issued.clone()
    }

    /// Every request received so far, in order (token requests included).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// The last request received that was not for a token, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        let state = lock(&self.shared);
        state
            .requests
            .iter()
            .rev()
            .find(|r| r.path != "/token")
            .cloned()
    }

    /// The number of requests received so far, token requests left out.
    pub fn hits(&self) -> usize {
        let state = lock(&self.shared);
        state.requests.iter().filter(|r| r.path != "/token").count()
    }
}

async fn handle(shared: Shared, req: Request<Incoming>) -> io::Result<Response<FakeBody>> {
    let recorded = record(req).await?;
    let host = recorded.header("host").unwrap_or("").to_owned();
    let (plan, claude, token, latest) = {
        let mut state = lock(&shared);
        state.requests.push(recorded.clone());
        (
            state.plan.clone(),
            state.claude.clone(),
            state.token.clone(),
            state.issued.last().cloned(),
        )
    };
    if recorded.path == "/token" {
        if !token.delay.is_zero() {
            tokio::time::sleep(token.delay).await;
        }
        let answer = token_answer(&token, &recorded, &format!("http://{host}/token")).map(|()| {
            let mut state = lock(&shared);
            let issued = format!("ya29.fake-{}", state.issued.len() + 1);
            state.issued.push(issued.clone());
            issued
        });
        let expires_in = token.expires_in;
        return Ok(match answer {
            Ok(access_token) => json_response(
                StatusCode::OK,
                &json!({"access_token": access_token, "expires_in": expires_in,
                    "token_type": "Bearer"}),
            ),
            Err((status, description)) => json_response(
                status,
                &json!({"error": "invalid_grant", "error_description": description}),
            ),
        });
    }
    let path = recorded.path.split('?').next().unwrap_or("");
    if let Some((model, method)) = crate::anthropic::vertex_route(path) {
        if !bearer_is(&recorded, latest.as_deref()) {
            return Ok(crate::anthropic::unauthenticated());
        }
        if !claude.wait().is_zero() {
            tokio::time::sleep(claude.wait()).await;
        }
        return Ok(crate::anthropic::vertex_answer(
            &claude, &recorded, model, method,
        ));
    }
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    Ok(answer(&plan, &recorded, latest.as_deref()))
}

/// Whether a token request earns a token, or why not.
fn token_answer(
    plan: &TokenPlan,
    req: &Recorded,
    token_uri: &str,
) -> Result<(), (StatusCode, String)> {
    if let Some(failure) = &plan.failure {
        return Err(failure.clone());
    }
    let refuse = |why: &str| Err((StatusCode::BAD_REQUEST, why.to_owned()));
    if req.header("content-type") != Some("application/x-www-form-urlencoded") {
        return refuse("the body must be a form");
    }
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let field = |name: &str| {
        form.split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse("grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer");
    }
    let Some(assertion) = field("assertion") else {
        return refuse("no assertion");
    };
    let segments: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = segments[..] else {
        return refuse("the assertion is not a JWT of three segments");
    };
    let decode = |s: &str| decode_url(s).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims)) = (decode(header), decode(claims)) else {
        return refuse("the JWT header and claims must be base64url JSON");
    };
    // An RSA 2048 signature is 256 bytes: 342 base64url characters.
    if header["alg"] != "RS256" || header["typ"] != "JWT" || decode_url(signature).is_none() {
        return refuse("the JWT must be RS256");
    }
    if decode_url(signature).is_some_and(|s| s.len() != 256) {
        return refuse("the RS256 signature must be 256 bytes");
    }
    let iat = claims["iat"].as_u64();
    let checks = [
        claims["iss"].as_str().is_some_and(|s| s.contains('@')),
        claims["scope"]
            .as_str()
            .is_some_and(|s| s.contains("https://www.googleapis.com/auth/cloud-platform")),
        claims["aud"] == token_uri,
        iat.is_some() && claims["exp"].as_u64() == iat.map(|i| i + 3600),
    ];
    if checks.contains(&false) {
        return refuse("the JWT claims must have iss, scope, aud (this endpoint), iat, exp");
    }
    Ok(())
}

/// Base64url without padding, decoded.
fn decode_url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Google's error answer.
fn error(code: StatusCode, message: &str) -> Response<FakeBody> {
    let body = json!({"error": {"code": code.as_u16(), "message": message,
        "status": status_name(code.as_u16())}});
    json_response(code, &body)
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

fn answer(plan: &Plan, req: &Recorded, latest_token: Option<&str>) -> Response<FakeBody> {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let route = path
        .rsplit_once("/models/")
        .and_then(|(route, rest)| Some((route, rest.split_once(':')?)));
    let Some((route, (model, method))) = route.filter(|_| req.method == Method::POST) else {
        let message = format!("fake gemini: no route for {} {}", req.method, req.path);
        return error(StatusCode::NOT_FOUND, &message);
    };
    let vertex = route.starts_with("/v1/projects/") && route.ends_with("/publishers/google");
    if vertex {
        if !bearer_is(req, latest_token) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials.",
            );
        }
    } else if route != "/v1beta" && route != "/v1" {
        return error(StatusCode::NOT_FOUND, "fake gemini: unknown API version");
    } else if req.header("x-goog-api-key").is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity).",
        );
    }
    if let Some((code, message)) = &plan.error {
        return error(*code, message);
    }
    if let Some(replay) = &plan.replay {
        return replay.response(plan.chunk_delay);
    }
    let request: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("Invalid JSON payload received. {e}");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    match method {
        "generateContent" => json_response(StatusCode::OK, &whole(plan, &request, model)),
        "streamGenerateContent" => stream(plan, &request, model, query.contains("alt=sse")),
        "embedContent" | "batchEmbedContents" => embed(&request, method),
        "predict" if vertex => predict(&request),
        other => error(
            StatusCode::NOT_FOUND,
            &format!("fake gemini: no method {other}"),
        ),
    }
}

/// Whether the request's bearer token is `latest`, the last token issued.
fn bearer_is(req: &Recorded, latest: Option<&str>) -> bool {
    let bearer = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    bearer.is_some() && bearer == latest
}

fn candidate_count(request: &Value) -> u64 {
    request["generationConfig"]["candidateCount"]
        .as_u64()
        .unwrap_or(1)
}

fn whole(plan: &Plan, request: &Value, model: &str) -> Value {
    let mut body = json!({"usageMetadata": plan.usage_json(true), "modelVersion": model,
        "responseId": RESPONSE_ID});
    if let Some(reason) = &plan.blocked {
        body["promptFeedback"] = json!({"blockReason": reason});
        body["usageMetadata"] = json!({"promptTokenCount": plan.usage.unwrap_or(DEFAULT_USAGE).0});
        return body;
    }
    let parts: Vec<Value> = plan.content().iter().map(part_json).collect();
    let finish = plan.finish.as_deref().unwrap_or("STOP");
    body["candidates"] = (0..candidate_count(request))
        .map(|index| {
            json!({"content": {"parts": parts, "role": "model"}, "finishReason": finish,
                "index": index})
        })
        .collect();
    body
}

fn stream(plan: &Plan, request: &Value, model: &str, sse: bool) -> Response<FakeBody> {
    let chunk = |candidates: Value, usage: Value| {
        json!({"candidates": candidates, "usageMetadata": usage, "modelVersion": model,
            "responseId": RESPONSE_ID})
    };
    let mut chunks: Vec<Value> = Vec::new();
    if plan.blocked.is_some() {
        chunks.push(whole(plan, request, model));
    } else {
        let count = candidate_count(request);
        let each = |parts: Vec<Value>| -> Value {
            (0..count)
                .map(|index| json!({"content": {"parts": parts, "role": "model"}, "index": index}))
                .collect()
        };
        let content = plan.content();
        let mut calls = Vec::new();
        for part in &content {
            match part {
                Part::Text(text) | Part::Thought(text) => {
                    let thought = matches!(part, Part::Thought(_));
                    for word in text.split_inclusive(' ') {
                        let mut p = json!({"text": word});
                        if thought {
                            p["thought"] = json!(true);
                        }
                        chunks.push(chunk(each(vec![p]), plan.usage_json(false)));
                    }
                }
                Part::Call { .. } => calls.push(part_json(part)),
            }
        }
        if !calls.is_empty() {
            chunks.push(chunk(each(calls), plan.usage_json(false)));
        }
    }
    let limit = match &plan.cut {
        Some(Cut::Break(n) | Cut::Error(n, _, _) | Cut::End(n)) => *n,
        None => usize::MAX,
    };
    chunks.truncate(limit);
    match &plan.cut {
        None if plan.blocked.is_none() => {
            let finish = plan.finish.as_deref().unwrap_or("STOP");
            let last: Value = (0..candidate_count(request))
                .map(|index| {
                    json!({"content": {"parts": [{"text": ""}], "role": "model"},
                        "finishReason": finish, "index": index})
                })
                .collect();
            chunks.push(chunk(last, plan.usage_json(true)));
        }
        Some(Cut::Error(_, code, message)) => {
            chunks.push(json!({"error": {"code": code, "message": message,
                "status": status_name(*code)}}));
        }
        _ => {}
    }
    let broken = matches!(plan.cut, Some(Cut::Break(_)));
    let (frames, content_type) = if sse {
        let frames = chunks
            .iter()
            .map(|c| Bytes::from(format!("data: {c}\r\n\r\n")))
            .collect();
        (frames, "text/event-stream")
    } else {
        let list = Value::Array(chunks).to_string();
        (VecDeque::from([Bytes::from(list)]), "application/json")
    };
    let mut resp = Response::new(FakeBody::events(frames, plan.chunk_delay, broken));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn embedding(request: &Value, n: usize) -> Value {
    let dims = request["outputDimensionality"].as_u64().unwrap_or(3) as usize;
    let values: Vec<f64> = (0..dims)
        .map(|d| ((n + 1) as f64) * 0.25 + (d as f64) * 0.125)
        .collect();
    json!({"values": values})
}

fn embed(request: &Value, method: &str) -> Response<FakeBody> {
    if method == "embedContent" {
        if request["content"]["parts"].as_array().is_none() {
            return error(StatusCode::BAD_REQUEST, "content is required");
        }
        return json_response(StatusCode::OK, &json!({"embedding": embedding(request, 0)}));
    }
    let Some(requests) = request["requests"].as_array() else {
        return error(StatusCode::BAD_REQUEST, "requests is required");
    };
    let embeddings: Vec<Value> = requests
        .iter()
        .enumerate()
        .map(|(n, r)| embedding(r, n))
        .collect();
    json_response(StatusCode::OK, &json!({"embeddings": embeddings}))
}

/// Vertex AI's `predict` for text embeddings: a prediction per instance, a token per word.
fn predict(request: &Value) -> Response<FakeBody> {
    let Some(instances) = request["instances"].as_array().filter(|i| !i.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "instances is required");
    };
    let dims = &request["parameters"]["outputDimensionality"];
    let mut predictions = Vec::with_capacity(instances.len());
    for (n, instance) in instances.iter().enumerate() {
        let Some(content) = instance["content"].as_str() else {
            return error(
                StatusCode::BAD_REQUEST,
                "instances[].content must be a string",
            );
        };
        let mut embedding = embedding(&json!({"outputDimensionality": dims}), n);
        embedding["statistics"] = json!({"token_count": content.split_whitespace().count(),
            "truncated": false});
        predictions.push(json!({"embeddings": embedding}));
    }
    json_response(StatusCode::OK, &json!({"predictions": predictions}))
}
