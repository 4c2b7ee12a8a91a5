//! Every upstream attempt of a request, visible: in the request's log line and in the tag
//! layer's span, while `x-portkey-retry-attempt-count` keeps Portkey's meaning (the retries of
//! the target that answered).

// Not every helper of the shared support module is used here.
#[allow(unused_imports)]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, post, start};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Log output, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The first line that contains every needle, waiting a little for it (the span closes
    /// when the server has delivered the body, which may be just after the client read it).
    async fn line(&self, needles: &[&str]) -> String {
        for _ in 0..100 {
            let text = self.text();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no line with {needles:?} in:\n{}", self.text());
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Sends the log of this thread (the whole current-thread runtime: server, gateway and
/// upstreams) to a buffer, with a line for each span when it closes.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// The value of `key=` in a log line, up to the next space (or the end of a span's fields).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 1;
    line[start..].split([' ', '}']).next().unwrap()
}

/// Each attempt as `path/provider:outcome` (durations vary with the machine).
fn without_durations(attempts: &str) -> Vec<&str> {
    attempts
        .split(',')
        .map(|a| {
            let (rest, ms) = a.rsplit_once(':').unwrap();
            assert!(
                ms.ends_with("ms") && ms[..ms.len() - 2].parse::<u64>().is_ok(),
                "{a}"
            );
            rest
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retried_target_and_its_fallback_show_every_attempt() {
    let (captured, _guard) = capture();
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    a.set(Plan::ok().status(503));
    let gw = start(&format!(
        r#"{{"providers": {{
            "a": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-a"}},
            "b": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-b"}}
        }}, "config": {{"strategy": {{"mode": "fallback"}}, "retry": {{"attempts": 2}},
            "targets": [{{"virtual_key": "a"}}, {{"virtual_key": "b"}}]}}}}"#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-trace-id", "attempts-1")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!((a.hits(), b.hits()), (3, 1));
    // Portkey's meaning: the retries of the target that answered, not of the request.
    assert_eq!(res.header("x-portkey-retry-attempt-count"), Some("0"));
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[1]")
    );
    let expected = [
        "targets[0]/a:503",
        "targets[0]/a:503",
        "targets[0]/a:503",
        "targets[1]/b:200",
    ];

    // The request's log line.
    let log = captured
        .line(&["portcullis::request:", r#"trace_id="attempts-1""#])
        .await;
    assert_eq!(field(&log, "status"), "200");
    assert_eq!(
        without_durations(field(&log, "attempts")),
        expected,
        "{log}"
    );

    // The tag layer's span, as it closes.
    let span = captured
        .line(&["gen_ai.request{", r#"trace_id="attempts-1""#, " close "])
        .await;
    assert_eq!(field(&span, "portcullis.attempt_count"), "4");
    assert_eq!(
        without_durations(field(&span, "portcullis.attempts")),
        expected,
        "{span}"
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_that_end_in_an_error_are_logged_too() {
    let (captured, _guard) = capture();
    // Nothing listens on either port: every attempt fails to connect, and the request ends
    // in an error that the edge answers (no response facts come back from the tree).
    let closed = |_| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (x, y) = (closed(0), closed(1));
    let gw = start(&format!(
        r#"{{"providers": {{
            "x": {{"provider": "openai-compatible", "base_url": "http://{x}/v1"}},
            "y": {{"provider": "openai-compatible", "base_url": "http://{y}/v1"}}
        }}, "config": {{"strategy": {{"mode": "fallback"}},
            "targets": [{{"virtual_key": "x"}}, {{"virtual_key": "y"}}]}}}}"#
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-trace-id", "attempts-2")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 502, "{}", res.text());
    let log = captured
        .line(&["portcullis::request:", r#"trace_id="attempts-2""#])
        .await;
    assert_eq!(
        without_durations(field(&log, "attempts")),
        ["targets[0]/x:connect", "targets[1]/y:connect"],
        "{log}"
    );
    let span = captured
        .line(&["gen_ai.request{", r#"trace_id="attempts-2""#, " close "])
        .await;
    assert_eq!(
        without_durations(field(&span, "portcullis.attempts")),
        ["targets[0]/x:connect", "targets[1]/y:connect"],
        "{span}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_target_records_its_path_on_every_attempt() {
    let (captured, _guard) = capture();
    let a = FakeUpstream::start().await;
    a.set(Plan::ok().status(503));
    let gw = start(&format!(
        r#"{{"providers": {{
            "a": {{"provider": "openai-compatible", "base_url": "{}", "api_key": "sk-a"}}
        }}, "config": {{"strategy": {{"mode": "single"}}, "retry": {{"attempts": 1}},
            "targets": [{{"virtual_key": "a"}}]}}}}"#,
        a.base_url()
    ))
    .await;
    let res = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-portkey-trace-id", "attempts-3")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(
        res.header("x-portkey-last-used-option-index"),
        Some("config.targets[0]")
    );
    let log = captured
        .line(&["portcullis::request:", r#"trace_id="attempts-3""#])
        .await;
    assert_eq!(
        without_durations(field(&log, "attempts")),
        ["targets[0]/a:503", "targets[0]/a:503"],
        "{log}"
    );
}
