//! Metrics after real requests: the OpenAI provider over loopback HTTP to the fake upstream,
//! streamed and not, rendered as Prometheus text and read back.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Body, EdgeLayer, FactHeadersLayer};
use portcullis_provider::OpenAi;
use portcullis_tag::{Prometheus, TagLayer, meter};
use portcullis_testkit::{DEFAULT_USAGE, FakeUpstream, Plan};
use tower::{ServiceBuilder, ServiceExt};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM_USAGE: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

async fn send(upstream: &FakeUpstream, body: &'static str) -> (Response<Body>, String) {
    let provider = OpenAi::builder(upstream.base_url())
        .name("fake-openai")
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(TagLayer::new().metadata_label("team").unwrap())
        .layer(FactHeadersLayer::new())
        .service(provider);
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-portkey-metadata", r#"{"team":"search"}"#)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = stack.oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (Response::from_parts(parts, Body::empty()), text)
}

/// The value of the sample `name{labels…}` in a Prometheus text exposition, labels in any
/// order and all of them given.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let mut got: Vec<String> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        got.sort();
        (got == want).then(|| value.parse().unwrap())
    })
}

const BASE: [(&str, &str); 4] = [
    ("provider", "fake-openai"),
    ("model", "gpt-4o-mini"),
    ("target", "none"),
    ("metadata_team", "search"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut labels = BASE.to_vec();
    labels.extend_from_slice(extra);
    labels
}

#[tokio::test]
async fn stream_and_non_stream_token_counts_match_the_upstream_usage() {
    let (recorder, prometheus) = Prometheus::recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = FakeUpstream::start().await;

    let (r, body) = send(&upstream, CHAT).await;
    assert_eq!(r.status(), 200);
    assert!(body.contains("Hello from the fake upstream."), "{body}");
    let (r, body) = send(&upstream, CHAT_STREAM_USAGE).await;
    assert_eq!(r.status(), 200);
    assert!(
        body.contains("\"usage\""),
        "the client asked for usage: {body}"
    );
    let (r, body) = send(&upstream, CHAT_STREAM).await;
    assert_eq!(r.status(), 200);
    assert!(
        !body.contains("\"usage\""),
        "the provider hides the usage the client did not ask for: {body}"
    );
    assert!(r.headers().contains_key("x-portkey-trace-id"));

    let text = prometheus.render();
    let (prompt, completion) = DEFAULT_USAGE;
    let get = |name, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(get(meter::REQUESTS_TOTAL, &with(&[("status", "200")])), 3.0);
    assert_eq!(get(meter::INPUT_TOKENS, &BASE), (3 * prompt) as f64);
    assert_eq!(get(meter::OUTPUT_TOKENS, &BASE), (3 * completion) as f64);
    let duration_count = format!("{}_count", meter::REQUEST_DURATION);
    assert_eq!(get(&duration_count, &with(&[("status", "200")])), 3.0);
    let ttft_count = format!("{}_count", meter::TIME_TO_FIRST_TOKEN);
    assert_eq!(get(&ttft_count, &BASE), 2.0, "streams only");
    let bucket = format!("{}_bucket", meter::REQUEST_DURATION);
    assert_eq!(
        get(&bucket, &with(&[("status", "200"), ("le", "+Inf")])),
        3.0,
        "rendered with buckets"
    );
    assert!(
        text.contains("# TYPE portcullis_requests_total counter"),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_errors_and_retries_show_in_the_statuses() {
    let (recorder, prometheus) = Prometheus::recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().status(429));
    let (r, _) = send(&upstream, CHAT).await;
    assert_eq!(r.status(), 429);
    upstream.set(Plan::ok().disconnect());
    let (r, _) = send(&upstream, CHAT_STREAM).await;
    assert_eq!(r.status(), 502);

    let text = prometheus.render();
    assert_eq!(
        sample(&text, meter::REQUESTS_TOTAL, &with(&[("status", "429")])),
        Some(1.0),
        "{text}"
    );
    // A transport error never reached a provider that could name itself.
    let refused = [
        ("provider", "unknown"),
        ("model", "gpt-4o-mini"),
        ("target", "none"),
        ("metadata_team", "search"),
        ("status", "502"),
    ];
    assert_eq!(
        sample(&text, meter::REQUESTS_TOTAL, &refused),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, meter::INPUT_TOKENS, &BASE), None, "no usage");
}

#[tokio::test]
async fn the_metrics_response_is_prometheus_text() {
    let (recorder, prometheus) = Prometheus::recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = FakeUpstream::start().await;
    send(&upstream, CHAT).await;
    let response = prometheus.response();
    assert_eq!(
        response.headers()["content-type"],
        portcullis_tag::prometheus::CONTENT_TYPE
    );
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&text).unwrap();
    assert!(text.contains("# HELP portcullis_requests_total"), "{text}");
    assert!(
        text.contains("portcullis_request_duration_seconds_bucket{"),
        "{text}"
    );
}
