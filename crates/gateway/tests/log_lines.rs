//! The real binary's request log line follows `RUST_LOG`: written (in the text layer's bytes)
//! at the default level or when `portcullis::request` is named, left out at `warn`, and the
//! lines after it are never lost (the server asks once whether lines show, not per request:
//! see `server::request_log::shown`).

#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use portcullis_testkit::FakeUpstream;
use support::{CHAT, post};

const PATH: &str = "/v1/chat/completions";

/// The binary on `config`, listening on `addr`, with `rust_log` (or none), and its stdout's
/// lines.
fn spawn(
    config: &std::path::Path,
    addr: &std::net::SocketAddr,
    rust_log: Option<&str>,
) -> (Child, Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["--config"])
        .arg(config)
        .args(["--listen", &addr.to_string()])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped());
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Lines up to and including the first that contains `marker` (bounded: 20 s).
fn lines_until(lines: &Receiver<String>, marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(marker);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {marker:?} in: {seen:#?}");
}

#[test]
fn request_lines_follow_rust_log_and_the_lines_after_them_arrive() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(FakeUpstream::start());
    let dir = std::env::temp_dir().join(format!("portcullis-loglines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (rust_log, shown) in [
        (None, true),
        (Some("warn"), false),
        (Some("warn,portcullis::request=info"), true),
    ] {
        let file = dir.join("config.json");
        std::fs::write(
            &file,
            format!(
                r#"{{"providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "k"}}}}, "config": {{"virtual_key": "up"}}}}"#,
                upstream.base_url()
            ),
        )
        .unwrap();
        // A free port chosen here: at `warn` the gateway does not log where it listens.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (mut child, lines) = spawn(&file, &addr, rust_log);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never listened on {addr}"
            );
            std::thread::yield_now();
        }
        let res = rt.block_on(post(addr, PATH, &[], CHAT));
        assert_eq!(res.status, 200);
        // A line logged after the request (an error: shown at every level here).
        std::fs::write(&file, "{ not json").unwrap();
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let seen = lines_until(&lines, "not reloaded");
        let request_lines: Vec<_> = seen
            .iter()
            .filter(|l| l.contains("path=\"/v1/chat/completions\""))
            .collect();
        assert_eq!(
            request_lines.len(),
            usize::from(shown),
            "{rust_log:?}: {seen:#?}"
        );
        if shown {
            let line = request_lines[0];
            assert!(line.contains("  INFO peer=127.0.0.1:"), "{line}");
            assert!(
                line.contains(" method=POST path=\"/v1/chat/completions\" status=200 ms="),
                "{line}"
            );
            assert!(
                line.contains(" provider=\"up\" target= attempts=up:200:"),
                "{line}"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
