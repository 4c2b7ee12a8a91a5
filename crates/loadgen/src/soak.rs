//! The soak (issue 15): a long run of mixed load with upstream faults and client drops through
//! every layer of the gateway, sampling the gateway's memory and descriptors, to show that
//! they stay flat.
//!
//! `loadgen soak` starts the fake upstream and the `portcullis` binary with
//! `configs/soak.json` (conditional → fallback → loadbalance, retry, circuit breaker,
//! `override_params`, metadata labels; its providers reach the fake upstream through
//! `/faults/…` base URLs, see [`Faults`](crate::upstream::Faults)), then for `--duration`
//! seconds keeps `--concurrency` connections busy with:
//!
//! - JSON and stream requests (`--stream-share`), `x-portkey-metadata` with a random plan
//!   (so each condition is taken) and a random `_user`;
//! - client drops (`--drop-share`): a stream read for a few frames, or a JSON request given a
//!   few milliseconds, then the connection is closed under the gateway's feet;
//! - per-request configs (`--header-config-share`): an `x-portkey-config` whose
//!   `override_params` varies, so the gateway's compiled-config cache keeps churning.
//!
//! `configs/soak.json` gives that cache a small budget (`server.header_config.cache_bytes`,
//! 2 MiB), so that it is full within the first minute and the verdict speaks of leaks, not of
//! a cache filling as designed: with the default 32 MiB budget this load takes about four
//! minutes to fill it, and RSS climbs by some 15 MiB before it levels off.
//!
//! Every `--sample` seconds it reads the gateway's `VmRSS`, open descriptors and threads
//! from `/proc`. The report is a Markdown table of the samples, the values at the start, at
//! two minutes and at the end, and a verdict: **flat** when the average of the last minute is
//! within 10% (or 4 MiB / 4 descriptors) of the average of the second minute. For runs
//! shorter than three minutes, "minute" means a third of the run.
//!
//! Answers are checked too: a stream that reaches the client with status 200 must end with
//! `[DONE]` or with an SSE error event, never just stop or break; such a stream is counted as
//! `truncated` or `stream_body_broken` and fails the run. A JSON answer whose body breaks
//! after its 200 (`json_body_broken`) is expected under the `break` fault: the gateway passes
//! JSON bodies through, so it can only abort the connection.
//!
//! ```text
//! cargo build --release -p portcullis-gateway -p portcullis-loadgen
//! target/release/loadgen soak --duration 600      # or: scripts/soak.sh
//! ```
//!
//! ```
//! use portcullis_loadgen::soak::{Sample, SoakOptions, verdict};
//! use std::time::Duration;
//!
//! let o = SoakOptions::parse(["--duration", "30", "--concurrency", "4"].map(String::from)).unwrap();
//! assert_eq!(o.duration, Duration::from_secs(30));
//! let flat: Vec<Sample> = (0..30)
//!     .map(|t| Sample { at: Duration::from_secs(t), rss_kib: 20_000, fds: 40, threads: 3, requests: t * 100 })
//!     .collect();
//! assert!(verdict(&flat, o.duration).flat);
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::harness::{Spawn, WorkDir, free_addr, render_config};
use crate::{payload, procfs};

/// Options of `loadgen soak`.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long the load runs (`--duration SECS`, default 600).
    pub duration: Duration,
    /// Time between samples (`--sample SECS`, default 5).
    pub sample: Duration,
    /// Connections, each with one request in flight (`--concurrency N`, default 16).
    pub concurrency: usize,
    /// Share of stream requests (`--stream-share`, default 0.5).
    pub stream_share: f64,
    /// Share of requests the client abandons (`--drop-share`, default 0.2).
    pub drop_share: f64,
    /// Share of requests with an `x-portkey-config` (`--header-config-share`, default 0.1).
    pub header_config_share: f64,
    /// The gateway config template (`--config FILE`, default `configs/soak.json`).
    pub config: PathBuf,
    /// The fake upstream binary (`--upstream-bin`; default: next to `loadgen`).
    pub upstream_bin: PathBuf,
    /// The gateway binary (`--gateway-bin`; default: `portcullis` next to `loadgen`).
    pub gateway_bin: PathBuf,
    /// `RUST_LOG` of the gateway (`--gateway-log`, default `error`).
    pub gateway_log: String,
    /// Logs and the rendered config (`--work-dir`; default a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Also write the Markdown report here (`--out FILE`).
    pub out: Option<PathBuf>,
}

/// The help text of `loadgen soak`.
pub const SOAK_USAGE: &str = "usage: loadgen soak [options]
  --duration SECS              how long the load runs (default 600)
  --sample SECS                time between samples of RSS and fds (default 5)
  --concurrency N              connections (default 16)
  --stream-share F             share of stream requests (default 0.5)
  --drop-share F               share of requests the client abandons (default 0.2)
  --header-config-share F      share of requests with an x-portkey-config (default 0.1)
  --config FILE                gateway config template (default: crates/loadgen/configs/soak.json)
  --upstream-bin PATH          fake-upstream binary (default: next to loadgen)
  --gateway-bin PATH           portcullis binary (default: next to loadgen)
  --gateway-log FILTER         RUST_LOG of the gateway (default error)
  --work-dir DIR               logs and the rendered config (default: a temporary directory)
  --out FILE                   also write the Markdown report to FILE";

impl SoakOptions {
    /// Reads options from the arguments after `soak`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<SoakOptions, String> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let mut o = SoakOptions {
            duration: Duration::from_secs(600),
            sample: Duration::from_secs(5),
            concurrency: 16,
            stream_share: 0.5,
            drop_share: 0.2,
            header_config_share: 0.1,
            config: Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/soak.json"),
            upstream_bin: here.join("fake-upstream"),
            gateway_bin: here.join("portcullis"),
            gateway_log: "error".to_owned(),
            work_dir: None,
            out: None,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag}: `{value}` is not {what}");
            let secs = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad("a duration in seconds > 0"))
            };
            let share = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| bad("a share in [0, 1]"))
            };
            match flag.as_str() {
                "--duration" => o.duration = secs()?,
                "--sample" => o.sample = secs()?,
                "--concurrency" => {
                    o.concurrency = value
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or_else(|| bad("a count > 0"))?;
                }
                "--stream-share" => o.stream_share = share()?,
                "--drop-share" => o.drop_share = share()?,
                "--header-config-share" => o.header_config_share = share()?,
                "--config" => o.config = value.into(),
                "--upstream-bin" => o.upstream_bin = value.into(),
                "--gateway-bin" => o.gateway_bin = value.into(),
                "--gateway-log" => o.gateway_log = value,
                "--work-dir" => o.work_dir = Some(value.into()),
                "--out" => o.out = Some(value.into()),
                _ => return Err(format!("unknown option `{flag}`")),
            }
        }
        Ok(o)
    }
}

/// One reading of the gateway process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Time since the load started.
    pub at: Duration,
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Requests finished so far (any outcome).
    pub requests: u64,
}

/// Whether RSS and descriptors stayed flat, and the averages that say so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// Both stayed flat.
    pub flat: bool,
    /// The baseline window (the second minute) and the final one (the last minute).
    pub windows: [(Duration, Duration); 2],
    /// Average RSS over the baseline and final windows, KiB.
    pub rss_kib: [f64; 2],
    /// Average open descriptors over the baseline and final windows.
    pub fds: [f64; 2],
}

/// Compares the last minute's averages with the second minute's (a third of the run for runs
/// shorter than three minutes). Growth within 10%, or within 4 MiB of RSS and 4
/// descriptors, is flat. With no sample in a window the verdict is not flat.
pub fn verdict(samples: &[Sample], duration: Duration) -> Verdict {
    let minute = Duration::from_secs(60).min(duration / 3);
    let windows = [
        (minute, minute * 2),
        (duration.saturating_sub(minute), duration + minute),
    ];
    let avg = |(from, to): (Duration, Duration), f: fn(&Sample) -> u64| {
        let picked: Vec<u64> = samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .map(f)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<u64>() as f64 / picked.len() as f64)
    };
    let rss = windows.map(|w| avg(w, |s| s.rss_kib));
    let fds = windows.map(|w| avg(w, |s| s.fds));
    let within = |[base, last]: [Option<f64>; 2], slack: f64| match (base, last) {
        (Some(base), Some(last)) => last <= base * 1.10 || last <= base + slack,
        _ => false,
    };
    Verdict {
        flat: within(rss, 4096.0) && within(fds, 4.0),
        windows,
        rss_kib: rss.map(|v| v.unwrap_or(f64::NAN)),
        fds: fds.map(|v| v.unwrap_or(f64::NAN)),
    }
}

/// Outcomes of the soak's requests, counted as they finish.
#[derive(Debug, Default)]
struct Counters {
    ok_json: AtomicU64,
    ok_stream: AtomicU64,
    /// 200 streams that ended with an SSE error event (an upstream broke mid-stream).
    stream_error_event: AtomicU64,
    /// 200 streams that just stopped: neither `[DONE]` nor an error event. A gateway bug.
    truncated: AtomicU64,
    /// 200 JSON answers that are not JSON.
    bad_json: AtomicU64,
    /// Requests the client abandoned on purpose.
    dropped: AtomicU64,
    /// Connections that could not be opened or requests that could not be sent.
    transport: AtomicU64,
    /// JSON answers whose body broke after a 200: the gateway passes a JSON body through, so
    /// an upstream that breaks mid-body can only be answered by aborting (a fault, expected).
    json_body_broken: AtomicU64,
    /// Streams whose body broke after a 200, instead of ending with an error event. A gateway
    /// bug.
    stream_body_broken: AtomicU64,
    /// No answer within the client's deadline.
    timeouts: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Counters {
    fn finished(&self) -> u64 {
        [
            &self.ok_json,
            &self.ok_stream,
            &self.stream_error_event,
            &self.truncated,
            &self.bad_json,
            &self.dropped,
            &self.transport,
            &self.json_body_broken,
            &self.stream_body_broken,
            &self.timeouts,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>()
            + self
                .statuses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .sum::<u64>()
    }
}

/// What the soak found.
#[derive(Debug)]
pub struct SoakReport {
    /// The options it ran with.
    pub options: SoakOptions,
    /// The gateway's readings, in time order.
    pub samples: Vec<Sample>,
    /// Flat or not.
    pub verdict: Verdict,
    /// Outcome counts by name (`ok_json`, `status_503`, `truncated`, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Whether the gateway was still running at the end.
    pub gateway_alive: bool,
}

impl SoakReport {
    /// Flat, the gateway alive, and every stream ended with `[DONE]` or an error event.
    pub fn passed(&self) -> bool {
        let none = |k: &str| self.outcomes.get(k).copied().unwrap_or(0) == 0;
        self.verdict.flat
            && self.gateway_alive
            && none("truncated")
            && none("stream_body_broken")
            && none("bad_json")
    }
}

/// Starts the fake upstream and the gateway, runs the soak and stops them.
pub async fn run(options: SoakOptions) -> Result<SoakReport, String> {
    let work = match &options.work_dir {
        Some(d) => WorkDir::keep(d.clone()),
        None => WorkDir::temporary(
            std::env::temp_dir().join(format!("portcullis-soak-{}", std::process::id())),
        ),
    };
    std::fs::create_dir_all(&work.path).map_err(|e| format!("{}: {e}", work.path.display()))?;
    let upstream_addr = free_addr()?;
    let mut upstream = Spawn::new("fake-upstream", &options.upstream_bin, upstream_addr);
    upstream.args([
        "--listen",
        &upstream_addr.to_string(),
        "--exit-on-stdin-eof",
    ]);
    let upstream = upstream.start(&work.path)?;
    let config = render_config(
        &options.config,
        &work.path.join("soak.json"),
        upstream_addr.port(),
    )?;
    let gateway_addr = free_addr()?;
    let mut gateway = Spawn::new("portcullis-soak", &options.gateway_bin, gateway_addr);
    gateway
        .args([
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &gateway_addr.to_string(),
        ])
        .env("RUST_LOG", &options.gateway_log)
        .stdin_watch(false);
    let mut gateway = gateway.start(&work.path)?;
    let pid = gateway.pid;
    eprintln!(
        "soak: gateway pid {pid} on {gateway_addr}, upstream on {upstream_addr}; {} s, {} connections (logs in {})",
        options.duration.as_secs_f64(),
        options.concurrency,
        work.path.display()
    );

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let shared = Arc::new(Shared {
        addr: gateway_addr,
        host: HeaderValue::from_str(&gateway_addr.to_string()).expect("an address is a host"),
        json: payload::request(false),
        stream: payload::request(true),
        options: options.clone(),
        end: start + options.duration,
        counters: counters.clone(),
    });
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();

    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(options.sample);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    eprintln!(
        "soak: {:>7} {:>9} {:>5} {:>7} {:>9}",
        "t (s)", "RSS MiB", "fds", "threads", "requests"
    );
    loop {
        ticks.tick().await;
        let at = start.elapsed();
        let (Some(rss_kib), Some(fds)) = (procfs::rss_kib(pid), procfs::open_fds(pid)) else {
            eprintln!("soak: the gateway (pid {pid}) is gone");
            break;
        };
        let sample = Sample {
            at,
            rss_kib,
            fds,
            threads: procfs::threads(pid).unwrap_or(0),
            requests: counters.finished(),
        };
        eprintln!(
            "soak: {:>7.0} {:>9.1} {:>5} {:>7} {:>9}",
            at.as_secs_f64(),
            rss_kib as f64 / 1024.0,
            fds,
            sample.threads,
            sample.requests
        );
        samples.push(sample);
        if at >= options.duration {
            break;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let gateway_alive = gateway.alive();
    drop(gateway);
    drop(upstream);
    drop(work);

    let mut outcomes = BTreeMap::new();
    for (name, c) in [
        ("ok_json", &counters.ok_json),
        ("ok_stream", &counters.ok_stream),
        ("stream_error_event", &counters.stream_error_event),
        ("truncated", &counters.truncated),
        ("bad_json", &counters.bad_json),
        ("client_dropped", &counters.dropped),
        ("transport_error", &counters.transport),
        ("json_body_broken", &counters.json_body_broken),
        ("stream_body_broken", &counters.stream_body_broken),
        ("client_timeout", &counters.timeouts),
    ] {
        outcomes.insert(name.to_owned(), c.load(Ordering::Relaxed));
    }
    for (status, n) in counters
        .statuses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        outcomes.insert(format!("status_{status}"), *n);
    }
    let verdict = verdict(&samples, options.duration);
    Ok(SoakReport {
        options,
        samples,
        verdict,
        outcomes,
        gateway_alive,
    })
}

struct Shared {
    addr: SocketAddr,
    host: HeaderValue,
    json: Bytes,
    stream: Bytes,
    options: SoakOptions,
    end: Instant,
    counters: Arc<Counters>,
}

/// The longest a request may take before the client gives up and counts a timeout.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// A connection: the sender, and the task that drives it (aborted to close it at once).
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, task })
}

/// What one request came to.
enum Outcome {
    OkJson,
    OkStream,
    StreamErrorEvent,
    Truncated,
    BadJson,
    Status(u16),
    Dropped,
    /// The connection could not be used to send.
    Transport,
    /// The body broke after the status (the connection is gone).
    BodyBroken {
        stream: bool,
    },
    Timeout,
}

async fn worker(shared: Arc<Shared>) {
    let mut conn: Option<Conn> = None;
    while Instant::now() < shared.end {
        let ready = match conn.as_mut() {
            Some(c) => c.sender.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            match connect(shared.addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    shared.counters.transport.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let stream = fastrand::f64() < shared.options.stream_share;
        let abandon = (fastrand::f64() < shared.options.drop_share).then(|| {
            if stream {
                // Frames to read before going away.
                Abandon::Frames(fastrand::usize(1..=4))
            } else {
                Abandon::After(Duration::from_millis(fastrand::u64(1..=40)))
            }
        });
        let outcome = one(c, &shared, stream, abandon).await;
        let counters = &shared.counters;
        let counter = match outcome {
            Outcome::OkJson => &counters.ok_json,
            Outcome::OkStream => &counters.ok_stream,
            Outcome::StreamErrorEvent => &counters.stream_error_event,
            Outcome::Truncated => &counters.truncated,
            Outcome::BadJson => &counters.bad_json,
            Outcome::Dropped => &counters.dropped,
            Outcome::Transport => &counters.transport,
            Outcome::BodyBroken { stream: false } => &counters.json_body_broken,
            Outcome::BodyBroken { stream: true } => &counters.stream_body_broken,
            Outcome::Timeout => &counters.timeouts,
            Outcome::Status(s) => {
                *counters
                    .statuses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(s)
                    .or_default() += 1;
                continue;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(
            outcome,
            Outcome::Dropped | Outcome::Transport | Outcome::BodyBroken { .. } | Outcome::Timeout
        ) {
            // Closed under the gateway's feet (or already broken): a fresh one next time.
            conn = None;
        }
    }
}

#[derive(Clone, Copy)]
enum Abandon {
    /// Read this many body frames of a stream, then close the connection.
    Frames(usize),
    /// Close the connection this long after sending, answered or not.
    After(Duration),
}

async fn one(conn: &mut Conn, shared: &Shared, stream: bool, abandon: Option<Abandon>) -> Outcome {
    let exchange = exchange(conn, shared, stream, abandon);
    match abandon {
        Some(Abandon::After(after)) => match tokio::time::timeout(after, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Dropped,
        },
        _ => tokio::time::timeout(CLIENT_DEADLINE, exchange)
            .await
            .unwrap_or(Outcome::Timeout),
    }
}

async fn exchange(
    conn: &mut Conn,
    shared: &Shared,
    stream: bool,
    abandon: Option<Abandon>,
) -> Outcome {
    let Ok(res) = conn.sender.send_request(request(shared, stream)).await else {
        return Outcome::Transport;
    };
    let status = res.status();
    let mut body = res.into_body();
    let mut bytes = Vec::with_capacity(8 * 1024);
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Outcome::BodyBroken { stream };
        };
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            frames += 1;
            if let Some(Abandon::Frames(n)) = abandon
                && status == StatusCode::OK
                && frames >= n
            {
                return Outcome::Dropped;
            }
        }
    }
    if status != StatusCode::OK {
        return Outcome::Status(status.as_u16());
    }
    if !stream {
        return match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(_) => Outcome::OkJson,
            Err(_) => Outcome::BadJson,
        };
    }
    let last = bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(<[u8]>::trim_ascii)
        .next_back()
        .unwrap_or_default();
    if last == b"[DONE]" {
        Outcome::OkStream
    } else if serde_json::from_slice::<serde_json::Value>(last)
        .is_ok_and(|v| v.get("error").is_some_and(serde_json::Value::is_object))
    {
        Outcome::StreamErrorEvent
    } else {
        Outcome::Truncated
    }
}

const PLANS: [&str; 5] = ["paid", "paid", "free", "trial", "other"];

fn request(shared: &Shared, stream: bool) -> Request<Full<Bytes>> {
    let body = if stream { &shared.stream } else { &shared.json };
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    let headers = req.headers_mut();
    headers.insert(header::HOST, shared.host.clone());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let metadata = format!(
        r#"{{"plan":"{}","_user":"soak-{}"}}"#,
        PLANS[fastrand::usize(..PLANS.len())],
        fastrand::u32(..1000)
    );
    headers.insert(
        "x-portkey-metadata",
        HeaderValue::from_str(&metadata).expect("ASCII metadata"),
    );
    if fastrand::f64() < shared.options.header_config_share {
        // A distinct config nearly every time: the compiled-config cache must stay bounded.
        let config = format!(
            r#"{{"strategy":{{"mode":"fallback"}},"retry":{{"attempts":1}},"targets":[{{"virtual_key":"flaky"}},{{"virtual_key":"steady","override_params":{{"max_tokens":{}}}}}]}}"#,
            fastrand::u32(1..100_000)
        );
        headers.insert(
            "x-portkey-config",
            HeaderValue::from_str(&config).expect("ASCII config"),
        );
    }
    req
}

/// Renders the report as Markdown: settings, the outcome counts, start / 2 min / end, the
/// verdict and every sample.
pub fn markdown(report: &SoakReport) -> String {
    let mut out = String::new();
    let o = &report.options;
    let _ = writeln!(out, "## Soak\n");
    let _ = writeln!(
        out,
        "- {} s of load, {} connections, {:.0}% streams, {:.0}% client drops, {:.0}% with a \
         varied `x-portkey-config`; config `{}`; a sample every {} s.",
        o.duration.as_secs_f64(),
        o.concurrency,
        o.stream_share * 100.0,
        o.drop_share * 100.0,
        o.header_config_share * 100.0,
        o.config.file_name().map_or_else(
            || o.config.display().to_string(),
            |f| f.to_string_lossy().into_owned()
        ),
        o.sample.as_secs_f64(),
    );
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(out, "- Outcomes: {}.", outcomes.join(", "));
    let _ = writeln!(
        out,
        "- Gateway {} at the end.",
        if report.gateway_alive {
            "still running"
        } else {
            "NOT running"
        }
    );
    let near = |t: Duration| {
        report
            .samples
            .iter()
            .min_by_key(|s| s.at.abs_diff(t))
            .copied()
    };
    let points = [
        ("start", report.samples.first().copied()),
        ("2 min", near(Duration::from_secs(120))),
        ("end", report.samples.last().copied()),
    ];
    for (name, s) in points {
        if let Some(s) = s {
            let _ = writeln!(
                out,
                "- {name} ({:.0} s): RSS {:.1} MiB, {} fds, {} threads, {} requests",
                s.at.as_secs_f64(),
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                s.requests
            );
        }
    }
    let v = &report.verdict;
    let _ = writeln!(
        out,
        "- Verdict: **{}**: RSS {:.1} → {:.1} MiB, fds {:.1} → {:.1} (averages over {:.0}–{:.0} s \
         and {:.0}–{:.0} s).\n",
        if v.flat { "flat" } else { "NOT flat" },
        v.rss_kib[0] / 1024.0,
        v.rss_kib[1] / 1024.0,
        v.fds[0],
        v.fds[1],
        v.windows[0].0.as_secs_f64(),
        v.windows[0].1.as_secs_f64(),
        v.windows[1].0.as_secs_f64(),
        o.duration.as_secs_f64(),
    );
    let _ = writeln!(out, "| t (s) | RSS MiB | fds | threads | requests |");
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: |");
    for s in &report.samples {
        let _ = writeln!(
            out,
            "| {:.0} | {:.1} | {} | {} | {} |",
            s.at.as_secs_f64(),
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.requests
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(u64) -> u64, fds: impl Fn(u64) -> u64, secs: u64) -> Vec<Sample> {
        (0..=secs)
            .step_by(5)
            .map(|t| Sample {
                at: Duration::from_secs(t),
                rss_kib: rss(t),
                fds: fds(t),
                threads: 3,
                requests: t * 10,
            })
            .collect()
    }

    #[test]
    fn flat_noisy_and_growing_runs() {
        let ten = Duration::from_secs(600);
        let flat = verdict(&samples(|t| 30_000 + (t % 7) * 100, |_| 40, 600), ten);
        assert!(flat.flat, "{flat:?}");
        assert_eq!(
            flat.windows[0],
            (Duration::from_secs(60), Duration::from_secs(120))
        );
        // Warm-up growth in the first minute is not held against the run.
        let warm = verdict(
            &samples(|t| if t < 60 { 10_000 } else { 30_000 }, |_| 40, 600),
            ten,
        );
        assert!(warm.flat, "{warm:?}");
        let leak = verdict(&samples(|t| 30_000 + t * 50, |_| 40, 600), ten);
        assert!(!leak.flat, "{leak:?}");
        let fd_leak = verdict(&samples(|_| 30_000, |t| 40 + t / 10, 600), ten);
        assert!(!fd_leak.flat, "{fd_leak:?}");
        assert!(!verdict(&[], ten).flat);
    }

    #[test]
    fn short_runs_use_thirds() {
        let v = verdict(&samples(|_| 1000, |_| 10, 30), Duration::from_secs(30));
        assert_eq!(
            v.windows[0],
            (Duration::from_secs(10), Duration::from_secs(20))
        );
        assert!(v.flat);
    }

    #[test]
    fn options() {
        let o = SoakOptions::parse(Vec::new()).unwrap();
        assert_eq!(o.duration, Duration::from_secs(600));
        assert!(o.config.is_file(), "{}", o.config.display());
        for args in [
            &["--duration", "0"][..],
            &["--drop-share", "1.5"],
            &["--concurrency", "0"],
            &["--nope", "1"],
            &["--sample"],
        ] {
            assert!(
                SoakOptions::parse(args.iter().map(|s| s.to_string())).is_err(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_soak_config_renders_and_names_faults() {
        let o = SoakOptions::parse(Vec::new()).unwrap();
        let dir = std::env::temp_dir().join(format!("soak-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = render_config(&o.config, &dir.join("soak.json"), 4321).unwrap();
        let text = std::fs::read_to_string(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (name, p) in v["providers"].as_object().unwrap() {
            let url = p["base_url"].as_str().unwrap();
            let path = url.strip_prefix("http://127.0.0.1:4321").unwrap();
            if let Some(faults) = crate::upstream::Faults::of_path(path) {
                assert!(faults.is_ok(), "{name}: {faults:?}");
            }
        }
        // The header configs the soak sends name these providers.
        assert!(v["providers"]["flaky"].is_object());
        assert!(v["providers"]["steady"].is_object());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
