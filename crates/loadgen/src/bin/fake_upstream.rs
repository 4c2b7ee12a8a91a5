//! `fake-upstream`: a fast OpenAI-compatible endpoint for the load run.
//!
//! ```text
//! fake-upstream --listen 127.0.0.1:9000 [--event-gap-us N] [--exit-on-stdin-eof]
//! ```
//!
//! Answers `POST …/chat/completions` at once: a ~500-byte `chat.completion`, or a 20-event
//! SSE stream with usage when the body has `"stream": true` (with `--event-gap-us`, N µs
//! between its events, as a model's tokens come). `TOKIO_WORKER_THREADS` sets its worker
//! threads.

use std::process::ExitCode;

use portcullis_loadgen::Flags;

const USAGE: &str = "usage: fake-upstream --listen ADDR [--event-gap-us N] [--exit-on-stdin-eof]";

#[tokio::main]
async fn main() -> ExitCode {
    let flags = match Flags::parse(
        std::env::args().skip(1),
        &["--listen", "--event-gap-us"],
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
    eprintln!("fake-upstream listening on http://{listen}");
    match portcullis_loadgen::upstream::serve_paced(listener, gap).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
