//! The fake upstream: a fast OpenAI-compatible endpoint that answers
//! `POST …/chat/completions` at once with [`Answers`], a ~500-byte `chat.completion` or a
//! 20-event SSE stream with usage (when the body says `"stream": true`).
//!
//! No delay (unless [`serve_with`] spaces a stream's events), no recording, no parsing
//! beyond the `stream` flag: it is the loopback floor every row of the load run shares.
//!
//! For the soak ([`crate::soak`]) a provider can ask for faults through its base URL: a path
//! that starts with `/faults/SPEC/` (e.g. `http://127.0.0.1:9000/faults/error=0.3,break=0.05/v1`)
//! is answered as usual below that prefix, except that each request draws one fault with the
//! shares [`Faults`] reads from `SPEC`. Paths without the prefix never fail.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! portcullis_loadgen::upstream::serve(listener).await
//! # }
//! ```

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::net::TcpListener;

use crate::payload::Answers;

/// Serves the fake upstream on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    serve_with(listener, Duration::ZERO, None).await
}

/// Like [`serve`], with `gap` between a stream's events, as a model's tokens come (none
/// before the first; JSON answers are not delayed), and over TLS when `tls` is given (HTTP/2
/// where ALPN chose it): the load run's upstream as real providers are reached.
pub async fn serve_with(
    listener: TcpListener,
    gap: Duration,
    tls: Option<portcullis_testkit::tls::TlsAcceptor>,
) -> std::io::Result<()> {
    let answers = Arc::new(Shared {
        gap,
        ..Shared::new()
    });
    crate::serve_http(listener, tls, move |req| {
        let answers = answers.clone();
        async move { Ok::<_, Infallible>(answer(&answers, req).await) }
    })
    .await
}

struct Shared {
    /// Between a stream's events.
    gap: Duration,
    json: Arc<[Bytes]>,
    events: Arc<[Bytes]>,
    not_found: Arc<[Bytes]>,
    unavailable: Arc<[Bytes]>,
}

impl Shared {
    fn new() -> Self {
        let answers = Answers::new();
        Self {
            gap: Duration::ZERO,
            json: Arc::from([answers.json().clone()]),
            events: Arc::from(answers.events()),
            not_found: Arc::from([Bytes::from_static(
                br#"{"error":{"message":"the fake upstream serves POST /v1/chat/completions","type":"invalid_request_error","code":"unknown_endpoint","param":null}}"#,
            )]),
            unavailable: Arc::from([Bytes::from_static(
                br#"{"error":{"message":"injected fault: the fake upstream is unavailable","type":"server_error","code":"injected_fault","param":null}}"#,
            )]),
        }
    }
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Chunks> {
    let path = req.uri().path();
    let known = req.method() == Method::POST && path.ends_with("/chat/completions");
    let fault = match Faults::of_path(path) {
        Some(Ok(faults)) => faults.draw(fastrand::f64()),
        Some(Err(e)) => {
            let body = serde_json::json!({"error": {"message": e, "type": "invalid_request_error",
                "code": "bad_fault_spec", "param": null}});
            let chunks: Arc<[Bytes]> = Arc::from([Bytes::from(body.to_string())]);
            return respond(StatusCode::BAD_REQUEST, "application/json", &chunks, true);
        }
        None => None,
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !known {
        return respond(
            StatusCode::NOT_FOUND,
            "application/json",
            &shared.not_found,
            true,
        );
    }
    let stream = wants_stream(&body);
    let (content_type, chunks, sized) = if stream {
        ("text/event-stream", &shared.events, false)
    } else {
        ("application/json", &shared.json, true)
    };
    match fault {
        None if stream && !shared.gap.is_zero() => {
            let mut res = respond(StatusCode::OK, content_type, chunks, sized);
            res.body_mut().gap = shared.gap;
            res
        }
        None => respond(StatusCode::OK, content_type, chunks, sized),
        Some(Fault::Error) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            &shared.unavailable,
            true,
        ),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            respond(StatusCode::OK, content_type, chunks, sized)
        }
        Some(Fault::Break) => {
            // Half the answer, then a transport error: hyper aborts the connection.
            let mut res = respond(StatusCode::OK, content_type, chunks, sized);
            if stream {
                res.body_mut().break_at = Some(chunks.len() / 2);
            } else {
                // One chunk only: split it so that half of it goes out before the break.
                let whole = &chunks[0];
                let halves: Arc<[Bytes]> = Arc::from([
                    whole.slice(..whole.len() / 2),
                    whole.slice(whole.len() / 2..),
                ]);
                res.body_mut().chunks = halves;
                res.body_mut().break_at = Some(1);
            }
            res
        }
        Some(Fault::Cut) if stream => {
            // A clean end, but without the finish, usage and `[DONE]` events.
            let cut: Arc<[Bytes]> = Arc::from(&chunks[..chunks.len().saturating_sub(3)]);
            respond(StatusCode::OK, content_type, &cut, sized)
        }
        Some(Fault::Cut) => respond(StatusCode::OK, content_type, chunks, sized),
    }
}

/// One fault drawn for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `503` with an OpenAI-style error body.
    Error,
    /// The usual answer, after a delay.
    Slow(Duration),
    /// Half the answer, then the connection is aborted.
    Break,
    /// A stream that ends cleanly without its last three events (finish, usage, `[DONE]`);
    /// a JSON answer is sent whole.
    Cut,
}

/// The shares of each fault, read from a `/faults/SPEC/` path prefix: `SPEC` is a comma list
/// of `error=SHARE`, `slow=SHARE`, `break=SHARE`, `cut=SHARE` (shares in `[0, 1]`, summing to
/// at most 1) and `slow_ms=MS` (the delay of `slow`, default 250).
///
/// ```
/// use portcullis_loadgen::upstream::{Fault, Faults};
/// use std::time::Duration;
///
/// let f = Faults::of_path("/faults/error=0.25,slow=0.5,slow_ms=10/v1/chat/completions")
///     .unwrap()
///     .unwrap();
/// assert_eq!(f.draw(0.1), Some(Fault::Error));
/// assert_eq!(f.draw(0.5), Some(Fault::Slow(Duration::from_millis(10))));
/// assert_eq!(f.draw(0.9), None);
/// assert!(Faults::of_path("/v1/chat/completions").is_none());
/// assert!(Faults::of_path("/faults/error=2/v1/chat/completions").unwrap().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    error: f64,
    slow: f64,
    broken: f64,
    cut: f64,
    slow_for: Duration,
}

impl Faults {
    /// The faults a request path asks for: `None` without a `/faults/` prefix, `Err` with a
    /// message when the spec cannot be read.
    pub fn of_path(path: &str) -> Option<Result<Faults, String>> {
        let spec = path.strip_prefix("/faults/")?;
        let spec = spec.split('/').next().unwrap_or("");
        Some(Self::parse(spec))
    }

    fn parse(spec: &str) -> Result<Faults, String> {
        let mut f = Faults {
            slow_for: Duration::from_millis(250),
            ..Faults::default()
        };
        for item in spec.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("fault `{item}`: expected KIND=SHARE"))?;
            if key == "slow_ms" {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("slow_ms: `{value}` is not milliseconds"))?;
                f.slow_for = Duration::from_millis(ms);
                continue;
            }
            let share: f64 = value
                .parse()
                .ok()
                .filter(|s: &f64| (0.0..=1.0).contains(s))
                .ok_or_else(|| format!("{key}: `{value}` is not a share in [0, 1]"))?;
            match key {
                "error" => f.error = share,
                "slow" => f.slow = share,
                "break" => f.broken = share,
                "cut" => f.cut = share,
                _ => return Err(format!("unknown fault `{key}` (error, slow, break, cut)")),
            }
        }
        if f.error + f.slow + f.broken + f.cut > 1.0 + 1e-9 {
            return Err("fault shares add up to more than 1".to_owned());
        }
        Ok(f)
    }

    /// The fault for a request whose random draw is `r` in `[0, 1)`, if any.
    pub fn draw(&self, r: f64) -> Option<Fault> {
        let mut edge = self.error;
        if r < edge {
            return Some(Fault::Error);
        }
        edge += self.slow;
        if r < edge {
            return Some(Fault::Slow(self.slow_for));
        }
        edge += self.broken;
        if r < edge {
            return Some(Fault::Break);
        }
        edge += self.cut;
        (r < edge).then_some(Fault::Cut)
    }
}

fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    chunks: &Arc<[Bytes]>,
    sized: bool,
) -> Response<Chunks> {
    let mut res = Response::new(Chunks {
        chunks: chunks.clone(),
        next: 0,
        sized,
        break_at: None,
        paused: false,
        gap: Duration::ZERO,
        wait: None,
    });
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !sized {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    res
}

/// A response body sent as one frame per chunk. `sized` bodies announce their length
/// (`content-length`); unsized ones go out chunked, as SSE streams do. With `break_at`, the
/// body fails when it reaches that chunk (a fault: the connection is aborted). With a `gap`,
/// each chunk after the first waits that long.
struct Chunks {
    chunks: Arc<[Bytes]>,
    next: usize,
    sized: bool,
    break_at: Option<usize>,
    paused: bool,
    gap: Duration,
    /// The gap before the next chunk: one timer per stream, set again as each chunk goes.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.break_at == Some(self.next) {
            if !self.paused {
                // Once Pending first, so that hyper flushes what came before the break.
                self.paused = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.break_at = None;
            self.next = self.chunks.len();
            return Poll::Ready(Some(Err(std::io::Error::other(
                "injected fault: broken body",
            ))));
        }
        if self.next < self.chunks.len()
            && let Some(wait) = self.wait.as_mut()
        {
            std::task::ready!(wait.as_mut().poll(cx));
        }
        let chunk = self.chunks.get(self.next).cloned();
        self.next += 1;
        if !self.gap.is_zero() && self.next < self.chunks.len() {
            let next = tokio::time::Instant::now() + self.gap;
            match self.wait.as_mut() {
                Some(wait) => wait.as_mut().reset(next),
                None => self.wait = Some(Box::pin(tokio::time::sleep_until(next))),
            }
        }
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.break_at.is_none() && self.next >= self.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        let rest: u64 = self.chunks[self.next.min(self.chunks.len())..]
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        if self.sized {
            SizeHint::with_exact(rest)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(rest);
            hint
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::payload::{self, STREAM_EVENTS};

    /// Sends one request for `path` to the fake upstream; the status, the body received and
    /// whether the body broke.
    async fn ask(addr: std::net::SocketAddr, path: &str, stream: bool) -> (u16, Vec<u8>, bool) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post(path)
            .header(header::HOST, "fake")
            .body(Full::new(payload::request(stream)))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let mut body = res.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => bytes.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(_) => return (status, bytes, true),
            }
        }
        (status, bytes, false)
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_waits_between_its_events_and_arrives_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, Duration::from_millis(20), None));

        let started = tokio::time::Instant::now();
        let (status, body, broke) = ask(addr, "/v1/chat/completions", true).await;
        assert_eq!((status, broke), (200, false));
        assert!(payload::check_stream(&body).is_ok());
        // A gap before each event but the first (the paused clock only moves for the gaps).
        let gaps = Duration::from_millis(20) * (STREAM_EVENTS as u32 - 1);
        let took = started.elapsed();
        assert!(
            took >= gaps && took < gaps + Duration::from_millis(20),
            "{took:?}"
        );

        // JSON answers are not delayed.
        let started = tokio::time::Instant::now();
        let (status, body, _) = ask(addr, "/v1/chat/completions", false).await;
        assert_eq!(status, 200);
        assert!(payload::check_json(&body).is_ok());
        assert!(started.elapsed() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn faults_are_what_the_path_asks_for() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));

        let (status, body, broke) = ask(addr, "/v1/chat/completions", true).await;
        assert_eq!((status, broke), (200, false));
        assert!(payload::check_stream(&body).is_ok());

        let (status, body, _) = ask(addr, "/faults/error=1/v1/chat/completions", false).await;
        assert_eq!(status, 503);
        assert!(String::from_utf8_lossy(&body).contains("injected_fault"));

        // Half the events, then the connection is aborted.
        let (status, body, broke) = ask(addr, "/faults/break=1/v1/chat/completions", true).await;
        assert_eq!((status, broke), (200, true));
        let events = body
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"data:"));
        assert_eq!(events.count(), STREAM_EVENTS / 2);
        let (status, body, broke) = ask(addr, "/faults/break=1/v1/chat/completions", false).await;
        assert_eq!((status, broke), (200, true));
        assert!(payload::check_json(&body).is_err());

        // A clean end without `[DONE]`.
        let (status, body, broke) = ask(addr, "/faults/cut=1/v1/chat/completions", true).await;
        assert_eq!((status, broke), (200, false));
        assert!(payload::check_stream(&body).unwrap_err().contains("[DONE]"));

        let started = std::time::Instant::now();
        let (status, _, _) =
            ask(addr, "/faults/slow=1,slow_ms=80/v1/chat/completions", false).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(80));

        let (status, _, _) = ask(addr, "/faults/boom=1/v1/chat/completions", false).await;
        assert_eq!(status, 400);
    }
}
