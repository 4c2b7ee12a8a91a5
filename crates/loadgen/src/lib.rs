//! The end-to-end load run of Portcullis (issue 7): how much a gateway hop costs, measured
//! against the upstream direct and against a bare proxy hop, in one run, on one machine.
//!
//! Three binaries, each its own process so that CPU time and memory belong to one party:
//!
//! - `fake-upstream` ([`upstream`]): a fast OpenAI-compatible endpoint, no delay.
//! - `bare-proxy` ([`proxy`]): the floor for one hop, a pooled hyper pass-through that reads
//!   each request body whole (`bare`), or streams it on (`--stream-body`: `bare-stream`).
//! - `loadgen` ([`harness`], [`client`], [`report`]): starts the fake upstream, the bare
//!   proxy and the real `portcullis` binary four times (with `configs/single.json`,
//!   `configs/all-layers.json`, `configs/cached.json` and `configs/every-layer.json`, their
//!   `${UPSTREAM_PORT}` filled in; `cached` puts the cache in front of one provider, so every
//!   request after the first is a hit), checks each answers,
//!   then runs every load (non-stream and stream, concurrency 1 and 32 by default; 1 s
//!   warm-up, 5 s measured) on every target and prints a Markdown section for
//!   `BENCHMARKS.md`.
//!
//! ```text
//! cargo build --release -p portcullis-gateway -p portcullis-loadgen
//! target/release/loadgen --out target/bench/e2e.md          # or: scripts/bench.sh
//! target/release/loadgen --duration 2 --concurrency 8 --modes stream --targets bare,single
//! ```
//!
//! What a row measures, and what it does not:
//!
//! - Latency is from sending the request to the last byte of the answer; TTFB (streams) to
//!   its first body byte. Every sample is kept and sorted ([`stats`]), no bucketing.
//! - Every answer is checked ([`payload`]): status 200 and a whole body. Failures are
//!   counted by kind and reported, never mixed into the figures; warm-up is never counted.
//! - CPU per request is the server process's own `utime + stime` over the window
//!   ([`procfs`]); the load generator's time is not in it. Peak RSS is `VmHWM`, reset
//!   before each load where the kernel allows.
//! - On a small machine the load generator shares CPUs with what it measures: compare rows
//!   of one run, not figures of different machines. `--cpus-*` pins with `taskset`.
//!
//! `loadgen soak` ([`soak`]) is the other mode: one gateway with every layer and upstream
//! faults (`configs/soak.json`), mixed load with client drops for ten minutes, the gateway's
//! RSS and open descriptors sampled from `/proc`, and a verdict on whether they stay flat
//! (`scripts/soak.sh`; not part of CI).
//!
//! `configs/all-layers.json` routes on `metadata.plan` (sent as `x-portkey-metadata` on
//! every request) and `params.model` to a fallback whose first target load-balances two
//! providers, with retry, a circuit breaker and `override_params`: every provider points at
//! the same fake upstream, so no layer ever has to act on a failure and the row shows the
//! stack's cost on the success path. `configs/every-layer.json` is that tree with every other
//! layer on as well: the cache (each request in a cache namespace of its own, so every one is
//! a miss that looks up and stores), an input guardrail (PII, deny) and an output guardrail
//! (word count), token budgets per provider and per `metadata.plan`, and request rate limits,
//! all far above what a run uses. The gateway runs at its default log level (one line per
//! request) unless `--gateway-log` says otherwise.
//!
//! ```
//! use portcullis_loadgen::stats::Summary;
//!
//! let s = Summary::of(vec![30, 10, 20]).unwrap();
//! assert_eq!((s.p50, s.max), (20, 30));
//! ```

#![forbid(unsafe_code)]

pub mod client;
pub mod harness;
pub mod payload;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod soak;
pub mod stats;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves HTTP/1.1 with keep-alive on `listener`, one task per connection, until the process
/// ends; over TLS when `tls` is given, each connection speaking HTTP/2 when ALPN chose `h2`.
/// Accept errors (out of descriptors and the like) are skipped, not fatal.
async fn serve_http<F, Fut, B>(
    listener: TcpListener,
    tls: Option<portcullis_testkit::tls::TlsAcceptor>,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handler))
                    .await;
                return;
            };
            portcullis_testkit::tls::serve_connection(&tls, tcp, service_fn(handler)).await;
        });
    }
}

/// Ends the process when its stdin closes: `loadgen` holds the other end of the pipe, so a
/// server it started never outlives it, however it ends (even killed).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// Reads `--listen ADDR` and similar flag pairs of the small server binaries.
///
/// ```
/// let args = ["--listen", "127.0.0.1:1", "--exit-on-stdin-eof"].map(String::from);
/// let flags = portcullis_loadgen::Flags::parse(args, &["--listen"], &["--exit-on-stdin-eof"]).unwrap();
/// assert_eq!(flags.value("--listen"), Some("127.0.0.1:1"));
/// assert!(flags.switch("--exit-on-stdin-eof"));
/// ```
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Flags {
    /// Parses `args`: each of `valued` takes the next argument, each of `switches` none.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Flags, String> {
        let mut flags = Flags::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if valued.contains(&arg.as_str()) {
                let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                flags.values.push((arg, v));
            } else if switches.contains(&arg.as_str()) {
                flags.switches.push(arg);
            } else {
                return Err(format!("unexpected argument `{arg}`"));
            }
        }
        Ok(flags)
    }

    /// The last value given for `flag`.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == flag)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `flag` was given.
    pub fn switch(&self, flag: &str) -> bool {
        self.switches.iter().any(|s| s == flag)
    }
}
