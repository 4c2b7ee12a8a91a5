//! What the native providers' loopback tests share: sending a request through the edge, and
//! reading answers, events and reports.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::observe::{Observation, Report};
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
use serde_json::Value;
use tower::{Layer, Service, ServiceExt};

/// Sends `req` to `provider` behind the edge and the fact headers, as a server would.
pub async fn send_to<S>(provider: S, req: Request<Full<Bytes>>) -> Response<Body>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    FactHeadersLayer::new()
        .layer(EdgeLayer::new().layer(provider))
        .oneshot(req)
        .await
        .unwrap()
}

pub fn observation(r: &Response<Body>) -> Observation {
    r.extensions()
        .get::<Observation>()
        .expect("observed")
        .clone()
}

pub fn report(o: &Observation) -> Arc<Report> {
    o.report().expect("reported")
}

pub async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

pub async fn json_body(r: Response<Body>) -> Value {
    let t = text(r).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

/// The data of each event of an SSE body: JSON values, and `[DONE]` as a string.
pub fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data in {e:?}"));
            if data == "[DONE]" {
                Value::String(data.into())
            } else {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
            }
        })
        .collect()
}

/// The client's body read frame by frame: a stream must end cleanly, never as a broken body.
pub async fn stream_text(r: Response<Body>) -> String {
    let mut body = r.into_body();
    let mut got = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the client sees events, not a broken body");
        if let Ok(data) = frame.into_data() {
            got.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    got
}

pub fn assert_usage_adds_up(usage: &Value) {
    assert_eq!(
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
        "{usage}"
    );
}

// Golden cases: recorded request/response pairs in `tests/golden/<suite>/<case>/`.

/// The case folders of `tests/golden/<suite>`, sorted; at least `at_least` of them.
pub fn golden_cases(suite: &str, at_least: usize) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(suite);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= at_least, "fixtures found: {cases:?}");
    cases
}

/// The file `name` of a case, if it has one.
pub fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

pub fn parse(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `created` is the time of the answer: written as 0 in the fixtures.
pub fn without_created(mut v: Value) -> Value {
    if let Some(created) = v.get_mut("created") {
        assert!(created.as_u64().is_some_and(|c| c > 1_600_000_000));
        *created = Value::from(0);
    }
    v
}

/// The upstream's recorded answer of a case: its status (`upstream_status`, else 200), its
/// body (`upstream_response.sse` or `.json`), and whether it is a stream.
pub fn recorded_answer(dir: &Path) -> (u16, String, bool) {
    let status = read(dir, "upstream_status").map_or(200, |s| s.trim().parse().unwrap());
    match read(dir, "upstream_response.sse") {
        Some(sse) => (status, sse, true),
        None => (status, read(dir, "upstream_response.json").unwrap(), false),
    }
}

/// Checks the client's answer `r` against the case's `response.sse` (a stream) or
/// `response.json`, `created` aside, and that its usage adds up.
pub async fn assert_golden_answer(dir: &Path, case: &str, r: Response<Body>, sse: bool) {
    if sse {
        let got: Vec<Value> = events(&stream_text(r).await)
            .into_iter()
            .map(without_created)
            .collect();
        let want = events(&read(dir, "response.sse").unwrap());
        assert_eq!(got, want, "{case}: the client's stream");
        for e in &got {
            if let Some(usage) = e.get("usage") {
                assert_usage_adds_up(usage);
            }
        }
    } else {
        let got = without_created(json_body(r).await);
        let want = parse(&read(dir, "response.json").unwrap(), case);
        assert_eq!(got, want, "{case}: the client's answer");
        if let Some(usage) = got.get("usage") {
            assert_usage_adds_up(usage);
        }
    }
}

/// An upstream error answered in OpenAI's shape: `status`, a JSON body equal to `want`, and
/// a report of `status`.
pub async fn assert_error_answer(r: Response<Body>, status: u16, want: &Value) {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let o = observation(&r);
    assert_eq!(&json_body(r).await, want);
    assert_eq!(report(&o).status.as_u16(), status);
}

/// A 502 for an answer the provider could not read, its message containing `what`.
pub async fn assert_unreadable(r: Response<Body>, what: &str) {
    assert_eq!(r.status(), http::StatusCode::BAD_GATEWAY);
    let v = json_body(r).await;
    assert_eq!(v["error"]["code"], "upstream_protocol_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(what),
        "{v}"
    );
}
