//! `fake-upstream`: a fast OpenAI-compatible endpoint for the load run.
//!
//! ```text
//! fake-upstream --listen 127.0.0.1:9000 [--event-gap-us N] [--tls h2|http1 --ca-out FILE]
//!               [--exit-on-stdin-eof]
//! ```
//!
//! Answers `POST …/chat/completions` at once: a ~500-byte `chat.completion`, or a 20-event
//! SSE stream with usage when the body has `"stream": true` (with `--event-gap-us`, N µs
//! between its events, as a model's tokens come). With `--tls` it serves over TLS, with a
//! certificate authority it makes at start (its PEM written to `--ca-out`, for the gateway's
//! `server.upstream_ca_file`) and offering `h2` and `http/1.1` by ALPN (`h2`) or `http/1.1`
//! only (`http1`). `TOKIO_WORKER_THREADS` sets its worker threads.

use std::process::ExitCode;

use portcullis_loadgen::Flags;

const USAGE: &str = "usage: fake-upstream --listen ADDR [--event-gap-us N] [--tls h2|http1 --ca-out FILE] [--exit-on-stdin-eof]";

#[tokio::main]
async fn main() -> ExitCode {
    let flags = match Flags::parse(
        std::env::args().skip(1),
        &["--listen", "--event-gap-us", "--tls", "--ca-out"],
        &["--exit-on-stdin-eof"],
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if flags.switch("--exit-on-stdin-eof") {
        portcullis_loadgen::exit_when_stdin_closes();
    }
    let listen = flags.value("--listen").unwrap_or("127.0.0.1:9000");
    let gap = match flags.value("--event-gap-us").map(str::parse::<u64>) {
        None => std::time::Duration::ZERO,
        Some(Ok(us)) => std::time::Duration::from_micros(us),
        Some(Err(_)) => {
            eprintln!("error: --event-gap-us needs microseconds\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fake-upstream listening on {listen}");
    let tls = match (flags.value("--tls"), flags.value("--ca-out")) {
        (None, None) => None,
        (Some(alpn), Some(ca_out)) => {
            use portcullis_testkit::tls::{Alpn, TestCa};
            let alpn = match alpn {
                "h2" => Alpn::H2AndHttp1,
                "http1" => Alpn::Http1,
                _ => {
                    eprintln!("error: --tls is h2 or http1\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            let ca = TestCa::new();
            if let Err(e) = std::fs::write(ca_out, ca.pem()) {
                eprintln!("error: cannot write {ca_out}: {e}");
                return ExitCode::FAILURE;
            }
            Some(ca.acceptor(alpn))
        }
        _ => {
            eprintln!("error: --tls and --ca-out go together\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match portcullis_loadgen::upstream::serve_with(listener, gap, tls).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
