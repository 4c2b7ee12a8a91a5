//! `loadgen`: the end-to-end load run. Starts `fake-upstream`, `bare-proxy` and the
//! `portcullis` gateway (single target and all layers), runs every load on every target and
//! prints a Markdown section for `BENCHMARKS.md`; `--out FILE` writes it there too.
//!
//! `loadgen soak [options]` runs the soak instead (see `portcullis_loadgen::soak`).
//!
//! `loadgen count --addr ADDR --requests N [--mode json|stream] [--concurrency C]
//! [--header NAME:VALUE]... [--vary-cache-namespace]` sends exactly N checked requests to a
//! server that is already running and exits (the last flag gives each request a cache
//! namespace of its own: every request is a cache miss): the driver of instruction counts (`scripts/callgrind-gateway.sh`),
//! where a fixed amount of work, not a window of time, makes runs comparable.
//!
//! ```text
//! loadgen [--duration 5] [--warmup 1] [--concurrency 1,32] [--modes json,stream]
//!         [--targets direct,bare,bare-stream,single,all,cached,every] [--out FILE]
//!         [--help for the rest]
//! ```
//!
//! Exits 0 when every target started and no measured request failed, 1 otherwise (the
//! report is printed either way), 2 on bad arguments.

use std::process::ExitCode;

use portcullis_loadgen::client::{self, Mode};
use portcullis_loadgen::harness::{self, Options, USAGE};
use portcullis_loadgen::procfs::Machine;
use portcullis_loadgen::{report, soak};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("soak") {
        return soak(args.into_iter().skip(2));
    }
    if args.get(1).map(String::as_str) == Some("count") {
        return count(args.into_iter().skip(2));
    }
    let options = match Options::parse(args.iter().skip(1).cloned()) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let machine = Machine::detect();
    // Before the runtime exists, so every thread it starts inherits the mask.
    let unpinned = match &options.cpus_loadgen {
        Some(cpus) => match harness::pin_self(cpus) {
            Ok(before) => Some(before),
            Err(e) => {
                eprintln!("error: --cpus-loadgen: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // A script that wraps loadgen (scripts/bench.sh) names itself, so the report shows the
    // one command that regenerates it.
    let command = match std::env::var("PORTCULLIS_BENCH_COMMAND") {
        Ok(outer) => format!("`{outer}` (which ran `{}`)", args.join(" ")),
        Err(_) => format!("`{}`", args.join(" ")),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = options.threads {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = options.out.clone();
    let result = runtime.block_on(async move {
        // Dropping the run on a signal kills the servers it started.
        tokio::select! {
            r = harness::run(options, command, machine, unpinned) => Some(r),
            () = interrupted() => None,
        }
    });
    let report = match result {
        None => {
            eprintln!("loadgen: interrupted; servers stopped");
            return ExitCode::from(130);
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(r)) => r,
    };
    let text = report::markdown(&report);
    print!("{text}");
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("loadgen: report written to {}", path.display());
    }
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        eprintln!("loadgen: some targets failed or some requests failed: see the notes");
        ExitCode::FAILURE
    }
}

/// `loadgen soak`: exits 0 when RSS and descriptors stayed flat, the gateway lived and every
/// stream ended properly; 1 otherwise; 2 on bad arguments.
fn soak(args: impl Iterator<Item = String>) -> ExitCode {
    let options = match soak::SoakOptions::parse(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{}", soak::SOAK_USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = options.out.clone();
    let result = runtime.block_on(async move {
        tokio::select! {
            r = soak::run(options) => Some(r),
            () = interrupted() => None,
        }
    });
    let report = match result {
        None => {
            eprintln!("loadgen soak: interrupted; servers stopped");
            return ExitCode::from(130);
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(r)) => r,
    };
    let text = soak::markdown(&report);
    print!("{text}");
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("loadgen soak: report written to {}", path.display());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "loadgen soak: FAILED (not flat, gateway gone, or streams cut without an error event)"
        );
        ExitCode::FAILURE
    }
}

const COUNT_USAGE: &str = "usage: loadgen count --addr ADDR --requests N [--mode json|stream] \
[--concurrency C] [--header NAME:VALUE]... [--vary-cache-namespace]";

/// `loadgen count`: exits 0 when every request was answered correctly, 1 otherwise, 2 on bad
/// arguments.
fn count(args: impl Iterator<Item = String>) -> ExitCode {
    let usage = |e: String| {
        eprintln!("error: {e}\n{COUNT_USAGE}");
        ExitCode::from(2)
    };
    let (mut addr, mut requests, mut mode, mut concurrency) = (None, None, Mode::Json, 1usize);
    let mut headers = Vec::new();
    let mut vary_namespace = false;
    let mut args = args;
    while let Some(flag) = args.next() {
        if flag == "--vary-cache-namespace" {
            vary_namespace = true;
            continue;
        }
        let Some(value) = args.next() else {
            return usage(format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--addr" => match value.parse() {
                Ok(a) => addr = Some(a),
                Err(_) => return usage(format!("--addr: `{value}` is not an address")),
            },
            "--requests" => match value.parse::<u64>() {
                Ok(n) => requests = Some(n),
                Err(_) => return usage(format!("--requests: `{value}` is not a count")),
            },
            "--concurrency" => match value.parse::<usize>() {
                Ok(n) if n > 0 => concurrency = n,
                _ => return usage(format!("--concurrency: `{value}` is not a count > 0")),
            },
            "--mode" => {
                mode = match value.as_str() {
                    "json" => Mode::Json,
                    "stream" => Mode::Stream,
                    _ => return usage(format!("--mode: `{value}` is not json or stream")),
                }
            }
            "--header" => {
                let parsed = value.split_once(':').and_then(|(n, v)| {
                    Some((
                        http::HeaderName::try_from(n.trim()).ok()?,
                        http::HeaderValue::try_from(v.trim()).ok()?,
                    ))
                });
                match parsed {
                    Some(h) => headers.push(h),
                    None => return usage(format!("--header: `{value}` is not NAME:VALUE")),
                }
            }
            _ => return usage(format!("unknown option `{flag}`")),
        }
    }
    let (Some(addr), Some(requests)) = (addr, requests) else {
        return usage("--addr and --requests are required".to_owned());
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (ok, failures) = runtime.block_on(client::count(
        addr,
        mode,
        requests,
        concurrency,
        headers,
        vary_namespace,
    ));
    eprintln!("loadgen count: {ok} of {requests} answered correctly");
    for (kind, n) in &failures {
        eprintln!("  {n} × {kind}");
    }
    if ok == requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn interrupted() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
