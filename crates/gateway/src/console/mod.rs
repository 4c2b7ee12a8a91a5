//! The console: a small web app at `/console/` (and Portkey's `/public/`), behind
//! `server.admin_token`, with
//!
//! - a live request log over Server-Sent Events (`GET /log/stream`, Portkey's `connected`,
//!   `heartbeat` and `log` events): time, status, latency, model, provider and target, every
//!   upstream attempt, cache status, guard verdicts, tokens and cost, trace id; prompts and
//!   answers only with `server.console.log_bodies` (PII redacted);
//! - the routing trees of the running config with each leaf's circuit-breaker state (the page
//!   adds each target's recent error rate and latency from the log);
//! - spend and limits per scope (the `GET /v1/limits` document).
//!
//! Login is `POST /public/auth {"admin_token": ...}` (as Portkey's console does), which sets an
//! HttpOnly, SameSite=Strict session cookie; `Authorization: Bearer <admin_token>` works too.
//! The assets are compiled into the binary: no CDN, no build step.
//!
//! Cost on the hot path: with no console connected, one atomic load per request. With one
//! connected, each request's entry is built once (JSON, serialised once for every client) when
//! its body ends; each client has a bounded queue and is dropped when it falls behind, so a
//! slow browser never holds a request back. The last `server.console.buffer` entries are kept
//! for a console that opens.

mod assets;
mod auth;
mod entry;
mod tree;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use portcullis_core::Body;
use portcullis_core::clock::Clock;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

pub(crate) use self::entry::{Capture, Pending, View};
pub(crate) use self::tree::tree_document;

/// How often a connected console hears a heartbeat (Portkey's 10 s).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Events a client may have queued before it counts as too slow and is dropped.
const CLIENT_QUEUE: usize = 256;

/// Entries in flight to every client at once, past which a client that has not read them
/// is dropped: a flush's worth (50 ms) at 80,000 requests a second.
const FANOUT: usize = 4096;

/// How long a client's task gathers entries after the first before sending them as one
/// frame. Waking the client's task and its connection for every request cost 20 to 40 µs of
/// CPU per request (futex wake-ups and context switches); a console needs no finer grain.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// The largest login body read.
const MAX_LOGIN_BODY: usize = 4096;

/// A log entry, framed once as an SSE `log` event for every client.
#[derive(Debug)]
struct Event {
    id: u64,
    frame: Bytes,
}

/// The console's state: its clients and the entries kept for one that opens. It outlives
/// reloads (clients stay connected); what it shows of the config is read per request.
#[derive(Debug)]
pub(crate) struct Console {
    watchers: AtomicUsize,
    ids: AtomicU64,
    clients: AtomicU64,
    tx: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    clock: Clock,
    /// Turns `true` when the server shuts down: every client's stream ends then, so an open
    /// console never holds a shutdown for its whole grace.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
            clients: AtomicU64::new(0),
            tx: broadcast::channel(FANOUT).0,
            recent: Mutex::new(VecDeque::new()),
            clock: Clock::system(),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Console {
    /// Ends every client's stream (cleanly: the last frames, then the end of the body), now
    /// and for clients that connect later.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether a console is connected: the only per-request cost when none is.
    pub(crate) fn watching(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Publishes `entry` (a JSON object) as the next `log` event, its `id` put first.
    fn publish(&self, entry: &impl serde::Serialize, buffer: usize) {
        let json = serde_json::to_vec(entry).expect("JSON serialises");
        // Ids are taken and events sent under the lock, so every client sees them in order
        // (a client skips what its replay held by id).
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(json.len() + 48);
        let _ = write!(frame, "id: {id}\nevent: log\ndata: {{\"id\":{id}");
        if json.len() > 2 {
            frame.push(b',');
        }
        frame.extend_from_slice(json.get(1..).unwrap_or_default());
        frame.extend_from_slice(b"\n\n");
        let event = Arc::new(Event {
            id,
            frame: frame.into(),
        });
        recent.push_back(event.clone());
        while recent.len() > buffer {
            recent.pop_front();
        }
        // No receiver: the last client left meanwhile.
        let _ = self.tx.send(event);
    }

    /// The body of `GET /log/stream`: `connected`, the kept entries, then each new one and a
    /// heartbeat every 10 s, until the client goes or falls too far behind.
    fn stream(self: &Arc<Self>) -> Body {
        let mut rx = self.tx.subscribe();
        let replay: Vec<Arc<Event>> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let client = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        let (out, body) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
        let watcher = Watcher::new(self.clone());
        let mut closing = self.closing.subscribe();
        tokio::spawn(async move {
            let _watcher = watcher;
            if *closing.borrow_and_update() {
                return;
            }
            let connected = Bytes::from(format!("event: connected\ndata: {client}\n\n"));
            let mut last = 0;
            let first = std::iter::once(connected).chain(replay.iter().map(|e| {
                last = e.id;
                e.frame.clone()
            }));
            for frame in first {
                if out.try_send(frame).is_err() {
                    return;
                }
            }
            let start = tokio::time::Instant::now() + HEARTBEAT;
            let mut beat = tokio::time::interval_at(start, HEARTBEAT);
            loop {
                let frame = tokio::select! {
                    got = rx.recv() => match got {
                        // Subscribed before the replay was taken: skip what it held.
                        Ok(e) if e.id <= last => continue,
                        // What comes in the next 50 ms goes out with it, in one write. While the
                        // task sleeps no sender wakes it.
                        Ok(e) => {
                            tokio::select! {
                                () = tokio::time::sleep(FLUSH_EVERY) => {}
                                () = out.closed() => return,
                                _ = closing.changed() => {}
                            }
                            match batch(&e, &mut rx, last) {
                                Some(frame) => frame,
                                None => return,
                            }
                        }
                        // Too far behind (or the console is gone): drop this client.
                        Err(_) => return,
                    },
                    _ = beat.tick() => Bytes::from_static(b"event: heartbeat\ndata: pulse\n\n"),
                    () = out.closed() => return,
                    _ = closing.changed() => return,
                };
                if out.try_send(frame).is_err() {
                    return;
                }
            }
        });
        Body::new(Frames(body))
    }
}

/// `first` and the events waiting after it, as one frame; `None` when the client fell too
/// far behind.
fn batch(first: &Event, rx: &mut broadcast::Receiver<Arc<Event>>, last: u64) -> Option<Bytes> {
    let mut more = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) if e.id <= last => {}
            Ok(e) => more.push(e),
            Err(broadcast::error::TryRecvError::Empty) => break,
            Err(_) => return None,
        }
    }
    if more.is_empty() {
        return Some(first.frame.clone());
    }
    let size = first.frame.len() + more.iter().map(|e| e.frame.len()).sum::<usize>();
    let mut frame = Vec::with_capacity(size);
    frame.extend_from_slice(&first.frame);
    for e in &more {
        frame.extend_from_slice(&e.frame);
    }
    Some(frame.into())
}

/// Counts a connected client for as long as its task runs.
struct Watcher(Arc<Console>);

impl Watcher {
    fn new(console: Arc<Console>) -> Self {
        console.watchers.fetch_add(1, Ordering::Relaxed);
        Self(console)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body of the frames a client's task queues.
struct Frames(mpsc::Receiver<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(|f| Ok(Frame::data(f))))
    }
}

/// What the console answers: a response now, or one after reading the login body.
pub(crate) enum Answer<B> {
    /// Answered.
    Now(Response<Body>),
    /// `POST .../auth`: the body holds the token.
    Login(Request<B>),
    /// `GET /console/api/limits`: the limits document.
    Limits,
}

/// Whether `path` is one of the console's.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == "/log/stream"
        || path == "/console"
        || path.starts_with("/console/")
        || path == "/public"
        || path.starts_with("/public/")
}

/// The console's answer to a request on one of its paths (see [`is_console_path`]).
/// `admin_token` is the running config's; `tree` draws its routing trees.
pub(crate) fn serve<B>(
    console: &Arc<Console>,
    admin_token: Option<&str>,
    tree: impl FnOnce() -> Value,
    req: Request<B>,
) -> Answer<B> {
    let path = req.uri().path();
    let base = if path.starts_with("/public") {
        "/public"
    } else {
        "/console"
    };
    let page = &path[base.len().min(path.len())..];
    let method = req.method().clone();
    if path != "/log/stream" && (page.is_empty()) {
        return Answer::Now(redirect(&format!("{base}/")));
    }
    let Some(token) = admin_token else {
        let page_route = method == Method::GET && matches!(page, "/" | "/logs");
        return Answer::Now(match page_route {
            true => html(StatusCode::NOT_FOUND, assets::OFF.into()),
            false => unauthorized(),
        });
    };
    let now = console.clock.now().as_secs();
    let signed_in = auth::authorized(req.headers(), token, now);
    let answer = match (&method, page) {
        (&Method::GET, "/" | "/logs") => html(StatusCode::OK, assets::INDEX.into()),
        (&Method::GET, "/app.js") => asset(assets::APP_JS, "text/javascript; charset=utf-8"),
        (&Method::GET, "/app.css") => asset(assets::APP_CSS, "text/css; charset=utf-8"),
        (&Method::POST, "/auth") => return Answer::Login(req),
        (&Method::POST, "/auth/logout") => {
            let mut r = json(StatusCode::OK, &serde_json::json!({"authenticated": false}));
            set_cookie(&mut r, &auth::clear_cookie());
            r
        }
        (&Method::GET, "/auth/session") => json(
            StatusCode::OK,
            &serde_json::json!({"authenticated": signed_in}),
        ),
        _ if !signed_in && (path == "/log/stream" || page.starts_with("/api/")) => unauthorized(),
        (&Method::GET, _) if path == "/log/stream" => {
            let mut r = Response::new(console.stream());
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        (&Method::GET, "/api/tree") => json(StatusCode::OK, &tree()),
        (&Method::GET, "/api/limits") => return Answer::Limits,
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": {"message": format!("unknown console endpoint {method} {path}")}}),
        ),
    };
    Answer::Now(answer)
}

/// `POST /public/auth`: the token checked, the session cookie set.
pub(crate) async fn login<B>(
    console: Arc<Console>,
    admin_token: Option<String>,
    req: Request<B>,
) -> Response<Body>
where
    B: http_body::Body,
    B::Error: Into<portcullis_core::BoxError>,
{
    use http_body_util::BodyExt;
    let Some(token) = admin_token else {
        return unauthorized();
    };
    let secure = req.uri().scheme_str() == Some("https");
    let body = match http_body_util::Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_login("the body must be JSON of at most 4096 bytes"),
    };
    let presented = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("admin_token")?.as_str().map(str::to_owned));
    let Some(presented) = presented else {
        return bad_login("expected {\"admin_token\": \"...\"}");
    };
    if !auth::token_matches(&presented, &token) {
        return unauthorized();
    }
    let value = auth::issue(&token, console.clock.now().as_secs());
    let mut r = json(StatusCode::OK, &serde_json::json!({"authenticated": true}));
    set_cookie(&mut r, &auth::set_cookie(&value, secure));
    r
}

fn set_cookie(response: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
}

fn bad_login(message: &str) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}}),
    )
}

fn unauthorized() -> Response<Body> {
    json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": {
            "message": "the console needs the admin token: POST /public/auth {\"admin_token\": ...} or Authorization: Bearer",
            "type": "authentication_error",
            "code": "invalid_admin_token",
        }}),
    )
}

fn json(status: StatusCode, doc: &Value) -> Response<Body> {
    let mut r = Response::new(Body::full(
        serde_json::to_vec(doc).expect("JSON serialises"),
    ));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The page: its own scripts and styles only, never framed.
fn html(status: StatusCode, page: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::full(page));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_connected_the_kept_entries_new_ones_and_heartbeats() {
        let console = Arc::new(Console::default());
        assert!(!console.watching());
        console.publish(&serde_json::json!({"n": 1}), 10);
        let mut body = console.stream();
        assert!(console.watching());
        let mut next = async || {
            let frame = body.frame().await.unwrap().unwrap();
            String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
        };
        assert_eq!(next().await, "event: connected\ndata: 1\n\n");
        assert_eq!(
            next().await,
            "id: 1\nevent: log\ndata: {\"id\":1,\"n\":1}\n\n"
        );
        console.publish(&serde_json::json!({"n": 2}), 10);
        assert_eq!(
            next().await,
            "id: 2\nevent: log\ndata: {\"id\":2,\"n\":2}\n\n"
        );
        tokio::time::advance(HEARTBEAT).await;
        assert_eq!(next().await, "event: heartbeat\ndata: pulse\n\n");
        drop(body);
        // The client's task sees the body go and stops counting it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!console.watching());
    }

    #[tokio::test(start_paused = true)]
    async fn the_buffer_keeps_the_last_entries() {
        let console = Arc::new(Console::default());
        for n in 0..5 {
            console.publish(&serde_json::json!({ "n": n }), 2);
        }
        let ids: Vec<u64> = console
            .recent
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_dropped() {
        let console = Arc::new(Console::default());
        let body = console.stream();
        // More than the fan-out holds before the client's task reads any.
        for n in 0..(FANOUT + 10) {
            console.publish(&serde_json::json!({ "n": n }), 1);
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!console.watching(), "the slow client was dropped");
        drop(body);
    }
}
