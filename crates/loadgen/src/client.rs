//! The load generator: a fixed number of HTTP/1.1 keep-alive connections, each sending one
//! request after another for a warm-up and then a measured window.
//!
//! Every response is checked (status 200, a whole body: the JSON answer or a stream that
//! ends with `[DONE]` after every event). Failures are counted by kind and never enter the
//! latency figures; nothing from the warm-up does either. A request belongs to the measured
//! window when it was *sent* inside it; requests still in flight when the window closes are
//! awaited and counted, so the window loses no work at its end.
//!
//! ```no_run
//! use std::time::Duration;
//! use portcullis_loadgen::client::{Load, Mode, run};
//!
//! # async fn go() {
//! let load = Load {
//!     mode: Mode::Stream,
//!     concurrency: 32,
//!     warmup: Duration::from_secs(1),
//!     duration: Duration::from_secs(5),
//!     vary_namespace: false,
//! };
//! let measured = run("127.0.0.1:8787".parse().unwrap(), &load, None).await;
//! println!("{} ok, {} errors", measured.ok, measured.errors());
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::payload;
use crate::procfs;
use crate::stats::{Summary, micros};

/// Non-stream or stream requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// `"stream": false`: one JSON answer.
    Json,
    /// `"stream": true`: server-sent events.
    Stream,
}

impl Mode {
    /// The name used on the command line (`json`, `stream`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Json => "json",
            Mode::Stream => "stream",
        }
    }
}

/// One load: what to send, how many at once, for how long.
#[derive(Clone, Debug)]
pub struct Load {
    /// Request kind.
    pub mode: Mode,
    /// Connections, each with one request in flight at a time.
    pub concurrency: usize,
    /// Time before the measured window (not counted).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Each request in an `x-portkey-cache-namespace` of its own, so a cache in front of the
    /// upstream misses (looks up and stores) every time.
    pub vary_namespace: bool,
}

/// Error kinds kept by name; beyond this many distinct kinds, the rest count as "other".
const KINDS_KEPT: usize = 8;

/// What one load measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Requests sent in the window and answered correctly.
    pub ok: u64,
    /// The measured window (for requests per second).
    pub window: Duration,
    /// Latency from sending the request to the last byte of the body.
    pub latency: Option<Summary>,
    /// Streams: latency to the first byte of the body.
    pub ttfb: Option<Summary>,
    /// Failed requests in the window, by kind.
    pub failures: BTreeMap<String, u64>,
    /// Failed requests during the warm-up (not in the figures, reported for honesty).
    pub warmup_failures: u64,
    /// Times a connection had to be opened again after it closed or broke.
    pub reconnects: u64,
    /// CPU time of the observed process over the window, per correct request, in µs.
    pub cpu_us_per_request: Option<f64>,
    /// Peak RSS of the observed process, KiB, and whether it covers only this load (`true`)
    /// or the process's whole life (the kernel would not reset it).
    pub peak_rss_kib: Option<(u64, bool)>,
}

impl Measured {
    /// Failed requests in the window.
    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Correct requests per second over the window.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Runs `load` against `addr`. When `observe` names a process (the proxy or gateway under
/// test), its CPU time over the window and its peak RSS over the load are measured too;
/// only that process's own time counts, never the load generator's.
pub async fn run(addr: SocketAddr, load: &Load, observe: Option<u32>) -> Measured {
    let rss_reset = observe.is_some_and(procfs::reset_peak_rss);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        host: host(addr),
        request: payload::request(load.mode == Mode::Stream),
        mode: load.mode,
        vary_namespace: load.vary_namespace.then(|| AtomicU64::new(0)),
        t0: start + load.warmup,
        t1: start + load.warmup + load.duration,
    });
    let cpu_at_t0 = observe.map(|pid| {
        let t0 = shared.t0;
        tokio::spawn(async move {
            tokio::time::sleep_until(t0.into()).await;
            procfs::cpu_ticks(pid)
        })
    });
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally.fail(true, format!("load worker panicked: {e}")),
        }
    }
    let mut measured = Measured {
        ok: tally.latency.len() as u64,
        window: load.duration,
        latency: Summary::of(tally.latency),
        ttfb: Summary::of(tally.ttfb),
        failures: tally.failures,
        warmup_failures: tally.warmup_failures,
        reconnects: tally.reconnects,
        ..Measured::default()
    };
    if let (Some(pid), Some(before)) = (observe, cpu_at_t0) {
        let before = before.await.ok().flatten();
        if let (Some(before), Some(after)) = (before, procfs::cpu_ticks(pid))
            && measured.ok > 0
        {
            let ticks = after.saturating_sub(before) as f64;
            let secs = ticks / procfs::clock_ticks_per_second() as f64;
            measured.cpu_us_per_request = Some(secs * 1e6 / measured.ok as f64);
        }
        measured.peak_rss_kib = procfs::peak_rss_kib(pid).map(|k| (k, rss_reset));
    }
    measured
}

struct Shared {
    addr: SocketAddr,
    host: HeaderValue,
    request: Bytes,
    mode: Mode,
    /// Requests sent so far, when each one has a cache namespace of its own.
    vary_namespace: Option<AtomicU64>,
    /// Start of the measured window.
    t0: Instant,
    /// Its end: no request is sent after it.
    t1: Instant,
}

#[derive(Default)]
struct Tally {
    latency: Vec<u32>,
    ttfb: Vec<u32>,
    failures: BTreeMap<String, u64>,
    warmup_failures: u64,
    reconnects: u64,
}

impl Tally {
    fn fail(&mut self, measured: bool, kind: String) {
        if measured {
            self.add_failures(kind, 1);
        } else {
            self.warmup_failures += 1;
        }
    }

    fn add_failures(&mut self, kind: String, n: u64) {
        let kind = if self.failures.len() < KINDS_KEPT || self.failures.contains_key(&kind) {
            kind
        } else {
            "other".to_owned()
        };
        *self.failures.entry(kind).or_default() += n;
    }

    fn merge(&mut self, other: Tally) {
        self.latency.extend(other.latency);
        self.ttfb.extend(other.ttfb);
        for (kind, n) in other.failures {
            self.add_failures(kind, n);
        }
        self.warmup_failures += other.warmup_failures;
        self.reconnects += other.reconnects;
    }
}

async fn worker(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut opened = false;
    let mut body = Vec::with_capacity(8 * 1024);
    loop {
        let now = Instant::now();
        if now >= shared.t1 {
            break;
        }
        let ready = match conn.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            if opened {
                tally.reconnects += 1;
            }
            match connect(shared.addr).await {
                Ok(s) => {
                    opened = true;
                    conn = Some(s);
                }
                Err(e) => {
                    tally.fail(now >= shared.t0, format!("connect: {e}"));
                    conn = None;
                    // Do not spin on a refused port; the window still ends on time.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(sender) = conn.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let measured = sent >= shared.t0;
        match exchange(sender, &shared, &mut body, sent).await {
            Ok((total, first_byte)) => {
                if measured {
                    tally.latency.push(micros(total));
                    if shared.mode == Mode::Stream {
                        tally.ttfb.push(micros(first_byte));
                    }
                }
            }
            Err(failure) => {
                if failure.broken {
                    conn = None;
                }
                tally.fail(measured, failure.kind);
            }
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

struct Failure {
    kind: String,
    /// The connection cannot be reused.
    broken: bool,
}

impl Failure {
    fn broken(kind: String) -> Self {
        Self { kind, broken: true }
    }
}

/// Sends one request and reads the whole answer; `(total, time to first body byte)`.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    body: &mut Vec<u8>,
    sent: Instant,
) -> Result<(Duration, Duration), Failure> {
    exchange_request(sender, request(shared), shared, body, sent).await
}

/// [`exchange`] with a request already built.
async fn exchange_request(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    shared: &Shared,
    body: &mut Vec<u8>,
    sent: Instant,
) -> Result<(Duration, Duration), Failure> {
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::broken(format!("request failed: {e}")))?;
    let status = res.status();
    let mut incoming = res.into_body();
    body.clear();
    let mut first_byte = None;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| Failure::broken(format!("body broke: {e}")))?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            first_byte.get_or_insert_with(|| sent.elapsed());
            body.extend_from_slice(&data);
        }
    }
    let total = sent.elapsed();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(160)]);
        return Err(Failure {
            kind: format!("status {}: {text}", status.as_u16()),
            broken: false,
        });
    }
    let checked = match shared.mode {
        Mode::Json => payload::check_json(body),
        Mode::Stream => payload::check_stream(body),
    };
    checked.map_err(|kind| Failure {
        kind,
        broken: false,
    })?;
    Ok((total, first_byte.unwrap_or(total)))
}

fn host(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).expect("an address is a valid host")
}

fn request(shared: &Shared) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(shared.request.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    let headers = req.headers_mut();
    headers.insert(header::HOST, shared.host.clone());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(match shared.mode {
            Mode::Json => "application/json",
            Mode::Stream => "text/event-stream",
        }),
    );
    headers.insert(
        "x-portkey-metadata",
        HeaderValue::from_static(payload::METADATA),
    );
    // The cache keys a JSON and a streamed request alike (the shape is not in the key): each
    // mode gets its own namespace, so the cached target replays the upstream's own 20-event
    // stream rather than a stream made from a JSON answer. Targets without a cache ignore it.
    let namespace = match &shared.vary_namespace {
        Some(sent) => {
            // The process id too: a later run must not hit what this one stored.
            let nth = sent.fetch_add(1, Ordering::Relaxed);
            let namespace = format!(
                "loadgen-{}-{}-{nth}",
                std::process::id(),
                shared.mode.as_str()
            );
            HeaderValue::try_from(namespace).expect("ASCII")
        }
        None => HeaderValue::from_static(match shared.mode {
            Mode::Json => "loadgen-json",
            Mode::Stream => "loadgen-stream",
        }),
    };
    headers.insert("x-portkey-cache-namespace", namespace);
    req
}

/// Sends exactly `requests` requests of `mode` over `concurrency` keep-alive connections
/// (one request in flight on each), with `extra` headers on every one, and checks every
/// answer. Returns the correct answers and the failures by kind. With `vary_namespace`,
/// each request has an `x-portkey-cache-namespace` of its own, so a cache in front of the
/// upstream misses every time (and stores every answer).
///
/// This is the driver of instruction-count measurements (`loadgen count`,
/// `scripts/callgrind-gateway.sh`): under a profiler the server runs tens of times slower,
/// so a fixed amount of work, not a window of time, is what makes two runs comparable.
pub async fn count(
    addr: SocketAddr,
    mode: Mode,
    requests: u64,
    concurrency: usize,
    extra: Vec<(http::HeaderName, HeaderValue)>,
    vary_namespace: bool,
) -> (u64, BTreeMap<String, u64>) {
    let shared = Arc::new(Shared {
        addr,
        host: host(addr),
        request: payload::request(mode == Mode::Stream),
        mode,
        vary_namespace: vary_namespace.then(|| AtomicU64::new(0)),
        t0: Instant::now(),
        t1: Instant::now(),
    });
    let extra = Arc::new(extra);
    let left = Arc::new(std::sync::atomic::AtomicU64::new(requests));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (shared, extra, left) = (shared.clone(), extra.clone(), left.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut ok = 0u64;
                let mut conn: Option<SendRequest<Full<Bytes>>> = None;
                let mut body = Vec::with_capacity(8 * 1024);
                let take = || {
                    left.fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    )
                    .ok()
                };
                while take().is_some() {
                    let ready = match conn.as_mut() {
                        Some(s) => s.ready().await.is_ok(),
                        None => false,
                    };
                    if !ready {
                        match connect(shared.addr).await {
                            Ok(s) => conn = Some(s),
                            Err(e) => {
                                tally.fail(true, format!("connect: {e}"));
                                conn = None;
                                continue;
                            }
                        }
                    }
                    let Some(sender) = conn.as_mut() else {
                        continue;
                    };
                    let mut req = request(&shared);
                    for (name, value) in extra.iter() {
                        req.headers_mut().insert(name.clone(), value.clone());
                    }
                    match exchange_request(sender, req, &shared, &mut body, Instant::now()).await {
                        Ok(_) => ok += 1,
                        Err(failure) => {
                            if failure.broken {
                                conn = None;
                            }
                            tally.fail(true, failure.kind);
                        }
                    }
                }
                (ok, tally)
            })
        })
        .collect();
    let mut ok = 0;
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok((n, t)) => {
                ok += n;
                tally.merge(t);
            }
            Err(e) => tally.fail(true, format!("load worker panicked: {e}")),
        }
    }
    (ok, tally.failures)
}

/// Sends one request of `mode` on a fresh connection and checks the answer, for a quick
/// "does this target work at all" before a load.
pub async fn probe(addr: SocketAddr, mode: Mode) -> Result<(), String> {
    let shared = Shared {
        addr,
        host: host(addr),
        request: payload::request(mode == Mode::Stream),
        mode,
        vary_namespace: None,
        t0: Instant::now(),
        t1: Instant::now(),
    };
    let mut sender = connect(addr).await?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let sent = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        exchange(&mut sender, &shared, &mut body, sent),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_owned())?
    .map(|_| ())
    .map_err(|f| f.kind)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Response;

    use super::*;
    use crate::payload::Answers;

    /// A server whose answers go round: whole, a 500, cut short (the last event missing).
    async fn flaky_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = Answers::new();
        let whole: Vec<u8> = answers.events().iter().flat_map(|e| e.to_vec()).collect();
        let cut = whole.len() - answers.events().last().unwrap().len();
        let whole = Bytes::from(whole);
        let n = Arc::new(AtomicUsize::new(0));
        tokio::spawn(crate::serve_http(listener, None, move |_req| {
            let (whole, n) = (whole.clone(), n.clone());
            async move {
                let (status, body) = match n.fetch_add(1, Ordering::SeqCst) % 3 {
                    0 => (StatusCode::OK, whole),
                    1 => (StatusCode::INTERNAL_SERVER_ERROR, Bytes::from_static(b"{}")),
                    _ => (StatusCode::OK, whole.slice(..cut)),
                };
                let mut res = Response::new(Full::new(body));
                *res.status_mut() = status;
                Ok::<_, Infallible>(res)
            }
        }));
        addr
    }

    #[tokio::test]
    async fn count_sends_exactly_what_it_is_asked_and_checks_each_answer() {
        let addr = flaky_server().await;
        // Whole, 500, cut short, whole, 500, cut short: two of six are correct.
        let (ok, failures) = count(addr, Mode::Stream, 6, 1, Vec::new(), true).await;
        assert_eq!(ok, 2);
        assert_eq!(failures.values().sum::<u64>(), 4, "{failures:?}");
        assert_eq!(failures.len(), 2, "{failures:?}");
    }

    #[tokio::test]
    async fn every_answer_is_checked_and_failures_are_counted_apart() {
        let addr = flaky_server().await;
        assert!(probe(addr, Mode::Stream).await.is_ok());
        assert!(
            probe(addr, Mode::Stream)
                .await
                .unwrap_err()
                .starts_with("status 500")
        );
        assert!(
            probe(addr, Mode::Stream)
                .await
                .unwrap_err()
                .contains("[DONE]")
        );

        let load = Load {
            mode: Mode::Stream,
            concurrency: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            vary_namespace: false,
        };
        let m = run(addr, &load, Some(std::process::id())).await;
        let sent = m.ok + m.errors();
        assert!(sent >= 3, "only {sent} requests in the window");
        // One connection, answers in turn: each kind is a third of the requests.
        assert!(m.ok.abs_diff(sent / 3) <= 1, "{m:?}");
        assert_eq!(m.failures.len(), 2, "{m:?}");
        assert_eq!(m.latency.unwrap().count as u64, m.ok);
        assert_eq!(m.ttfb.unwrap().count as u64, m.ok);
        assert_eq!(m.reconnects, 0);
        assert!(m.peak_rss_kib.is_some());
    }
}
