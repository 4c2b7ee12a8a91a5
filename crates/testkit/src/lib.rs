//! Test kit for Portcullis: a fake OpenAI-compatible upstream on loopback.
//!
//! [`FakeUpstream::start`] binds `127.0.0.1:0` and serves real HTTP/1.1
//! (hyper, keep-alive on) on the current tokio runtime. What it answers is
//! set with a [`Plan`], for all paths ([`FakeUpstream::set`]) or one exact
//! path ([`FakeUpstream::set_path`]); every request is recorded as a
//! [`Recorded`].
//!
//! Routes (by suffix, so any base path works):
//! - `POST …/chat/completions`: chat completion, streamed as server-sent
//!   events (one HTTP body frame per event) when the request says
//!   `"stream": true`, with a usage chunk when it says
//!   `"stream_options": {"include_usage": true}`;
//! - `POST …/completions`: legacy text completion (streams too);
//! - `POST …/embeddings`: one three-dimensional embedding;
//! - `GET …/models`: one model, `gpt-4o-mini`;
//! - anything else: `404`; malformed JSON on a `POST` route: `400`.
//!
//! With the `tls` feature, `FakeUpstream::start_tls` serves the same over TLS, with a
//! certificate authority made for the test (`tls::TestCa`) and HTTP/2 where ALPN picks it.
//!
//! Errors use OpenAI's shape:
//! `{"error":{"message":…,"type":…,"param":null,"code":null}}`.
//!
//! ```
//! use portcullis_testkit::{FakeUpstream, Plan};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let upstream = FakeUpstream::start().await;
//!     upstream.set(Plan::ok().fail_first(1, 429).retry_after("2"));
//!
//!     let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
//!     let request = format!(
//!         "POST /v1/chat/completions HTTP/1.1\r\nhost: fake\r\nconnection: close\r\n\
//!          content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
//!         body.len()
//!     );
//!     let mut answers = Vec::new();
//!     for _ in 0..2 {
//!         let mut tcp = tokio::net::TcpStream::connect(upstream.addr()).await.unwrap();
//!         tcp.write_all(request.as_bytes()).await.unwrap();
//!         let mut answer = String::new();
//!         tcp.read_to_string(&mut answer).await.unwrap();
//!         answers.push(answer);
//!     }
//!     assert!(answers[0].starts_with("HTTP/1.1 429"));
//!     assert!(answers[0].contains("retry-after: 2"));
//!     assert!(answers[1].starts_with("HTTP/1.1 200"));
//!     assert!(answers[1].contains(r#""content":"Hello from the fake upstream.""#));
//!
//!     assert_eq!(upstream.hits(), 2);
//!     assert_eq!(upstream.requests()[1].json()["model"], "gpt-4o");
//! }
//! ```

#![forbid(unsafe_code)]

pub mod anthropic;
pub mod client;
pub mod gemini;
mod plan;
pub mod redis;
mod respond;
#[cfg(feature = "tls")]
pub mod tls;
pub mod webdriver;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use plan::{DEFAULT_CONTENT, DEFAULT_USAGE, Plan};
pub(crate) use respond::FakeBody;

/// One request received by a [`FakeUpstream`].
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The request method.
    pub method: Method,
    /// Path and query, e.g. `/v1/chat/completions?x=1`.
    pub path: String,
    /// The HTTP version the request came in (HTTP/2 only over TLS, where ALPN chose it).
    pub version: http::Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The full request body.
    pub body: Bytes,
}

impl Recorded {
    /// The body parsed as JSON.
    ///
    /// # Panics
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of recorded request {} {} is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The value of header `name` as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Default)]
struct State {
    default: Plan,
    paths: HashMap<String, Plan>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fake OpenAI-compatible upstream serving HTTP/1.1 on `127.0.0.1`.
///
/// Dropping it stops the server and closes its open connections.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
    /// `http` or, served by [`FakeUpstream::start_tls`], `https`.
    scheme: &'static str,
}

impl fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// Binds `127.0.0.1:0` and spawns the server on the current tokio
    /// runtime, answering with [`Plan::ok`] until told otherwise.
    ///
    /// # Panics
    /// If binding fails or there is no current tokio runtime.
    pub async fn start() -> FakeUpstream {
        let (listener, addr) = crate::bind_loopback("fake upstream").await;
        let shared = Shared::default();
        let handler = shared.clone();
        let task = tokio::spawn(serve(listener, move |req| handle(handler.clone(), req)));
        FakeUpstream {
            addr,
            shared,
            task,
            scheme: "http",
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` when served over TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` (`https://` over TLS), the OpenAI-style base URL.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Sets the plan for every path without a plan of its own.
    pub fn set(&self, plan: Plan) {
        lock(&self.shared).default = plan;
    }

    /// Sets the plan for one exact path such as `/v1/chat/completions`
    /// (queries are ignored, both here and in requests).
    pub fn set_path(&self, path: &str, plan: Plan) {
        let path = path.split('?').next().unwrap_or_default().to_owned();
        lock(&self.shared).paths.insert(path, plan);
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

/// Serves HTTP/1.1 (keep-alive on) on `listener`, each request answered by `handle`: the
/// server of every plain fake upstream of the kit.
pub(crate) async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = io::Result<Response<FakeBody>>> + Send + 'static,
{
    accept_each(listener, move |stream| {
        let service = service_fn(handle.clone());
        async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

/// A listener on `127.0.0.1:0` for the fake `who`, and its address.
///
/// # Panics
/// If binding fails.
pub(crate) async fn bind_loopback(who: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{who}: bind 127.0.0.1:0: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{who}: local_addr: {e}"));
    (listener, addr)
}

/// Accepts connections on `listener` (`TCP_NODELAY` on) and serves each with `connection` in
/// a task of its own, until the caller's task is aborted: the connections live in a set, so
/// aborting closes them too.
pub(crate) async fn accept_each<C, Fut>(listener: TcpListener, connection: C)
where
    C: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(stream));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(shared: Shared, req: Request<Incoming>) -> io::Result<Response<FakeBody>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(io::Error::other(e)),
    };
    let path = parts.uri.path();
    let recorded = Recorded {
        method: parts.method.clone(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned()),
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let plan = {
        let mut state = lock(&shared);
        state.requests.push(recorded.clone());
        state.paths.get(path).unwrap_or(&state.default).clone()
    };
    let index = plan.next_index();
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if plan.disconnect_first.is_some_and(|n| index < n) {
        return Err(io::Error::other("fake upstream: disconnect on purpose"));
    }
    let mut resp = respond::answer(&plan, index, &recorded);
    for (name, value) in &plan.headers {
        resp.headers_mut().append(name, value.clone());
    }
    Ok(resp)
}
