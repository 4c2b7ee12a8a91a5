//! `bare-proxy`: the floor for one HTTP hop in the load run.
//!
//! ```text
//! bare-proxy --listen 127.0.0.1:9001 --upstream 127.0.0.1:9000 [--stream-body] [--exit-on-stdin-eof]
//! ```
//!
//! Reads the request body whole (with `--stream-body`, hands it on as it comes), forwards
//! method, path, headers and body to the upstream with a pooled hyper-util client and streams
//! the answer back. `TOKIO_WORKER_THREADS` sets its worker threads.

use std::net::SocketAddr;
use std::process::ExitCode;

use portcullis_loadgen::Flags;
use portcullis_loadgen::proxy::BodyMode;

const USAGE: &str =
    "usage: bare-proxy --listen ADDR --upstream ADDR [--stream-body] [--exit-on-stdin-eof]";

// The same allocator as the gateway, so the comparison is of the code, not the allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = match Flags::parse(
        std::env::args().skip(1),
        &["--listen", "--upstream"],
        &["--exit-on-stdin-eof", "--stream-body"],
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
    let Some(upstream) = flags
        .value("--upstream")
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("error: --upstream needs an address like 127.0.0.1:9000\n{USAGE}");
        return ExitCode::from(2);
    };
    let listen = flags.value("--listen").unwrap_or("127.0.0.1:9001");
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = if flags.switch("--stream-body") {
        BodyMode::Stream
    } else {
        BodyMode::Whole
    };
    eprintln!("bare-proxy listening on http://{listen}, forwarding to http://{upstream}");
    match portcullis_loadgen::proxy::serve(listener, upstream, mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
