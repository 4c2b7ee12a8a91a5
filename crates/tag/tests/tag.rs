//! The tag layer over in-process services: metadata and its limits, `_user`, the caller, trace
//! ids, the metrics and their labels, and the request span.

mod support;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use portcullis_core::context::{Caller, Metadata, TargetPath, TraceId};
use portcullis_core::error::{UpstreamError, UpstreamErrorKind};
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::observe::observe_response;
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
use portcullis_tag::{TagLayer, meter};
use support::{Metrics, Value, labels, named, one, spans};
use tower::util::MapRequestLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_USER: &str =
    r#"{"model":"gpt-4o-mini","user":"body-user","messages":[{"role":"user","content":"hi"}]}"#;
const JSON_ANSWER: &str = r#"{"id":"c1","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

/// What the inner service saw of a request.
#[derive(Clone, Debug, Default)]
struct Seen {
    metadata: Option<Metadata>,
    caller: Option<Caller>,
    trace: Option<TraceId>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An inner service that records what it saw and answers an observed JSON completion from
/// provider `openai`.
fn recording(
    log: Log,
) -> impl Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send,
> + Clone
+ Send {
    service_fn(move |req: Request<BufferedBody>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(Seen {
                metadata: req.extensions().get().cloned(),
                caller: req.extensions().get().cloned(),
                trace: req.extensions().get().cloned(),
            });
            Ok::<_, BoxError>(json_answer(JSON_ANSWER))
        }
    })
}

fn json_answer(body: &'static str) -> Response<Body> {
    let mut r = observe_response(
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
    );
    ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
    r
}

fn post(body: &'static str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("host", "gateway.test:8787");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Edge → Tag → FactHeaders → `inner`: the order the crate docs recommend.
async fn send<S>(layer: TagLayer, inner: S, req: Request<Full<Bytes>>) -> Response<Body>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(layer)
        .layer(FactHeadersLayer::new())
        .service(inner);
    stack.oneshot(req).await.unwrap()
}

async fn json(r: Response<Body>) -> serde_json::Value {
    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Metadata

#[tokio::test]
async fn metadata_reaches_every_later_layer() {
    let log = Log::default();
    let r = send(
        TagLayer::new(),
        recording(log.clone()),
        post(
            CHAT,
            &[("x-portkey-metadata", r#"{"team":"search","env":"prod"}"#)],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(
        seen.metadata.unwrap(),
        meta(&[("env", "prod"), ("team", "search")])
    );
    assert_eq!(seen.caller.unwrap().team.as_deref(), Some("search"));
}

#[tokio::test]
async fn requests_without_metadata_get_an_empty_map() {
    let log = Log::default();
    send(TagLayer::new(), recording(log.clone()), post(CHAT, &[])).await;
    let seen = log.lock().unwrap()[0].clone();
    assert!(seen.metadata.unwrap().is_empty());
    assert_eq!(seen.caller.unwrap(), Caller::default());
}

/// A metadata header of `n` keys, each key and value of the given lengths.
fn metadata_of(n: usize, key_len: usize, value_len: usize) -> String {
    let map: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            let key = format!("{i:0>key_len$}");
            (key, "v".repeat(value_len).into())
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[tokio::test]
async fn metadata_at_the_default_limits_passes() {
    let log = Log::default();
    let header = metadata_of(32, 128, 128);
    let req = Request::post("/v1/chat/completions")
        .header("x-portkey-metadata", header)
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap();
    let r = send(TagLayer::new(), recording(log.clone()), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(log.lock().unwrap()[0].metadata.as_ref().unwrap().len(), 32);
}

#[tokio::test]
async fn every_limit_is_a_400_that_names_the_key() {
    let long_key = "k".repeat(129);
    let cases: Vec<(TagLayer, String, &str)> = vec![
        (
            TagLayer::new(),
            metadata_of(33, 2, 1),
            "has 33 keys; at most 32",
        ),
        (
            TagLayer::new(),
            format!(r#"{{"{long_key}":"v"}}"#),
            "metadata key `kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…` is longer than 128 characters",
        ),
        (
            TagLayer::new(),
            format!(r#"{{"plan":"{}"}}"#, "v".repeat(129)),
            "the value of key `plan` is longer than 128 characters",
        ),
        (
            TagLayer::new(),
            r#"{"plan":"paid","tier":3}"#.to_owned(),
            "the value of key `tier` must be a string, got a number",
        ),
        (
            TagLayer::new(),
            r#"["plan"]"#.to_owned(),
            "must be a JSON object of strings, got an array",
        ),
        (
            TagLayer::new(),
            "{plan".to_owned(),
            "metadata is not valid JSON",
        ),
        (
            TagLayer::new().max_keys(2),
            metadata_of(3, 1, 1),
            "has 3 keys; at most 2",
        ),
        (
            TagLayer::new().max_key_len(4),
            r#"{"abcde":"v"}"#.to_owned(),
            "key `abcde` is longer than 4 characters",
        ),
        (
            TagLayer::new().max_value_len(2),
            r#"{"a":"xyz"}"#.to_owned(),
            "the value of key `a` is longer than 2 characters",
        ),
    ];
    for (layer, header, expected) in cases {
        let log = Log::default();
        let req = Request::post("/v1/chat/completions")
            .header("x-portkey-metadata", header.as_str())
            .header("x-portkey-trace-id", "refused-1")
            .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
            .unwrap();
        let r = send(layer, recording(log.clone()), req).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{header}");
        assert_eq!(r.headers()["x-portkey-trace-id"], "refused-1");
        let v = json(r).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_metadata");
        assert_eq!(v["error"]["param"], "x-portkey-metadata");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("x-portkey-metadata: "), "{message}");
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(
            log.lock().unwrap().is_empty(),
            "refused before the inner service"
        );
    }
}

#[tokio::test]
async fn the_metadata_header_is_configurable() {
    let log = Log::default();
    let r = send(
        TagLayer::new().metadata_header(http::HeaderName::from_static("x-meta")),
        recording(log.clone()),
        post(
            CHAT,
            &[
                ("x-meta", r#"{"team":"a"}"#),
                ("x-portkey-metadata", "not even json"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        log.lock().unwrap()[0].metadata.as_ref().unwrap(),
        &meta(&[("team", "a")])
    );
}

// ---------------------------------------------------------------------------------------------
// `_user` and the caller

#[tokio::test]
async fn user_defaults_to_the_body_user() {
    let log = Log::default();
    send(
        TagLayer::new(),
        recording(log.clone()),
        post(CHAT_USER, &[]),
    )
    .await;
    send(
        TagLayer::new(),
        recording(log.clone()),
        post(
            CHAT_USER,
            &[("x-portkey-metadata", r#"{"_user":"header-user"}"#)],
        ),
    )
    .await;
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].metadata, Some(meta(&[("_user", "body-user")])));
    assert_eq!(
        seen[0].caller.as_ref().unwrap().user.as_deref(),
        Some("body-user")
    );
    assert_eq!(seen[1].metadata, Some(meta(&[("_user", "header-user")])));
    assert_eq!(
        seen[1].caller.as_ref().unwrap().user.as_deref(),
        Some("header-user")
    );
}

#[tokio::test]
async fn the_caller_keeps_what_an_outer_layer_knew_and_fills_the_rest() {
    let log = Log::default();
    let gateway = MapRequestLayer::new(|mut req: Request<BufferedBody>| {
        let mut caller = Caller::default();
        caller.api_key = Some("prod-key".into());
        req.extensions_mut().insert(caller);
        req
    });
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(gateway)
        .layer(TagLayer::new())
        .service(recording(log.clone()));
    let req = post(
        CHAT_USER,
        &[
            ("x-portkey-metadata", r#"{"team":"search"}"#),
            ("x-portkey-virtual-key", "openai-prod"),
        ],
    );
    stack.oneshot(req).await.unwrap();
    let caller = log.lock().unwrap()[0].caller.clone().unwrap();
    assert_eq!(caller.api_key.as_deref(), Some("prod-key"));
    assert_eq!(caller.virtual_key.as_deref(), Some("openai-prod"));
    assert_eq!(caller.user.as_deref(), Some("body-user"));
    assert_eq!(caller.team.as_deref(), Some("search"));
}

// ---------------------------------------------------------------------------------------------
// Trace ids

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn traceparent_is_honoured_and_echoed() {
    let log = Log::default();
    let r = send(
        TagLayer::new(),
        recording(log.clone()),
        post(CHAT, &[("traceparent", TRACEPARENT)]),
    )
    .await;
    assert_eq!(
        r.headers()["x-portkey-trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        log.lock().unwrap()[0].trace.as_ref().unwrap().as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[tokio::test]
async fn the_portkey_header_wins_over_traceparent() {
    let r = send(
        TagLayer::new(),
        recording(Log::default()),
        post(
            CHAT,
            &[
                ("traceparent", TRACEPARENT),
                ("x-portkey-trace-id", "req-42"),
            ],
        ),
    )
    .await;
    assert_eq!(r.headers()["x-portkey-trace-id"], "req-42");
}

#[tokio::test]
async fn a_malformed_traceparent_gets_a_generated_id_echoed() {
    let log = Log::default();
    let upper = TRACEPARENT.to_uppercase();
    let r = send(
        TagLayer::new(),
        recording(log.clone()),
        post(CHAT, &[("traceparent", upper.as_str())]),
    )
    .await;
    let echoed = r.headers()["x-portkey-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(echoed.len(), 32);
    assert!(echoed.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(echoed, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        log.lock().unwrap()[0].trace.as_ref().unwrap().as_str(),
        echoed
    );
}

#[tokio::test]
async fn generated_ids_differ_per_request_and_are_echoed() {
    let log = Log::default();
    let mut echoed = Vec::new();
    for _ in 0..2 {
        let r = send(TagLayer::new(), recording(log.clone()), post(CHAT, &[])).await;
        echoed.push(
            r.headers()["x-portkey-trace-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ne!(echoed[0], echoed[1]);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].trace.as_ref().unwrap().as_str(), echoed[0]);
    assert_eq!(seen[1].trace.as_ref().unwrap().as_str(), echoed[1]);
}

#[tokio::test]
async fn a_trace_id_an_outer_layer_chose_is_kept() {
    // FactHeaders outside the edge (the gateway's order) decides first; the tag layer keeps
    // its id, so the echo and every later layer agree.
    let log = Log::default();
    let stack = ServiceBuilder::new()
        .layer(FactHeadersLayer::new())
        .layer(EdgeLayer::new())
        .layer(TagLayer::new())
        .service(recording(log.clone()));
    let r = stack
        .oneshot(post(CHAT, &[("traceparent", TRACEPARENT)]))
        .await
        .unwrap();
    let echoed = r.headers()["x-portkey-trace-id"].to_str().unwrap();
    assert_eq!(
        log.lock().unwrap()[0].trace.as_ref().unwrap().as_str(),
        echoed
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// An inner service answering like a provider behind a fallback and a retry.
fn behind_fallback() -> impl Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send,
> + Clone
+ Send {
    service_fn(|_req: Request<BufferedBody>| async {
        let mut r = json_answer(JSON_ANSWER);
        let facts = ResponseFacts::get_mut(&mut r);
        let mut path = TargetPath::root();
        path.push(1);
        path.push(0);
        facts.target = Some(path);
        facts.retries = Some(Retries::Made(2));
        Ok::<_, BoxError>(r)
    })
}

#[tokio::test]
async fn metrics_carry_provider_model_target_status_and_allowed_metadata() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    let layer = TagLayer::new().metadata_label("team").unwrap();
    let r = send(
        layer,
        behind_fallback(),
        post(
            CHAT,
            &[("x-portkey-metadata", r#"{"team":"search","_user":"u-1"}"#)],
        ),
    )
    .await;
    r.into_body().collect().await.unwrap();

    let series = metrics.series();
    let base = [
        ("provider", "openai"),
        ("model", "gpt-4o-mini"),
        ("target", "config.targets[1].targets[0]"),
        ("metadata_team", "search"),
    ];
    let mut with_status = base.to_vec();
    with_status.push(("status", "200"));

    let requests = one(&series, meter::REQUESTS_TOTAL);
    assert_eq!(requests.labels, labels(&with_status));
    assert_eq!(requests.value, Value::Counter(1));
    let duration = one(&series, meter::REQUEST_DURATION);
    assert_eq!(duration.labels, labels(&with_status));
    for (name, value) in [
        (meter::RETRIES, 2),
        (meter::FALLBACKS, 1),
        (meter::INPUT_TOKENS, 12),
        (meter::OUTPUT_TOKENS, 7),
    ] {
        let s = one(&series, name);
        assert_eq!(s.labels, labels(&base), "{name}");
        assert_eq!(s.value, Value::Counter(value), "{name}");
    }
    assert!(named(&series, meter::RETRIES_EXHAUSTED).is_empty());
    assert!(
        named(&series, meter::TIME_TO_FIRST_TOKEN).is_empty(),
        "not a stream"
    );
}

#[tokio::test]
async fn cache_hits_and_misses_are_counted_and_disabled_is_not() {
    use portcullis_core::facts::CacheStatus;
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    for status in [
        CacheStatus::Hit,
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::SemanticHit,
        CacheStatus::Disabled,
    ] {
        let inner = service_fn(move |_req: Request<BufferedBody>| async move {
            let mut r = json_answer(JSON_ANSWER);
            ResponseFacts::get_mut(&mut r).cache = Some(status);
            Ok::<_, BoxError>(r)
        });
        let r = send(TagLayer::new(), inner, post(CHAT, &[])).await;
        r.into_body().collect().await.unwrap();
    }
    let series = metrics.series();
    let mut counts: Vec<(String, u64)> = named(&series, meter::CACHE_LOOKUPS)
        .into_iter()
        .map(|s| {
            let status = s.labels["cache_status"].clone();
            let Value::Counter(n) = s.value else {
                panic!("a counter")
            };
            (status, n)
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("HIT".to_owned(), 2),
            ("MISS".to_owned(), 1),
            ("SEMANTIC HIT".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn metadata_becomes_a_label_only_when_allowed() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    send(
        TagLayer::new(),
        recording(Log::default()),
        post(CHAT, &[("x-portkey-metadata", r#"{"team":"search"}"#)]),
    )
    .await;
    let series = metrics.series();
    let requests = one(&series, meter::REQUESTS_TOTAL);
    assert_eq!(
        requests.labels,
        labels(&[
            ("provider", "openai"),
            ("model", "gpt-4o-mini"),
            ("target", "none"),
            ("status", "200"),
        ])
    );
}

#[tokio::test]
async fn label_values_are_capped() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    let layer = TagLayer::new()
        .label_cap(2)
        .metadata_label("_user")
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(layer)
        .service(recording(Log::default()));
    for (model, user) in [("m1", "u1"), ("m2", "u2"), ("m3", "u3"), ("m1", "u1")] {
        let body = format!(r#"{{"model":"{model}","user":"{user}"}}"#);
        let req = Request::post("/v1/chat/completions")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        stack.clone().oneshot(req).await.unwrap();
    }
    let series = metrics.series();
    let mut counts: Vec<(String, String, u64)> = named(&series, meter::REQUESTS_TOTAL)
        .into_iter()
        .map(|s| {
            let Value::Counter(n) = s.value else { panic!() };
            (
                s.labels["model"].clone(),
                s.labels["metadata__user"].clone(),
                n,
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("m1".into(), "u1".into(), 2),
            ("m2".into(), "u2".into(), 1),
            ("other".into(), "other".into(), 1),
        ]
    );
}

#[tokio::test]
async fn exhausted_retries_and_errors_are_counted() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    let exhausted = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = Response::new(Body::from("{}"));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        ResponseFacts::get_mut(&mut r).retries = Some(Retries::Exhausted);
        Ok::<_, BoxError>(r)
    });
    send(TagLayer::new(), exhausted, post(CHAT, &[])).await;
    let failing = service_fn(|_req: Request<BufferedBody>| async {
        Err::<Response<Body>, BoxError>(
            UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into(),
        )
    });
    let r = send(TagLayer::new(), failing, post(CHAT, &[])).await;
    assert_eq!(r.status(), 502, "the edge answers the error");
    send(
        TagLayer::new(),
        recording(Log::default()),
        post(CHAT, &[("x-portkey-metadata", "[]")]),
    )
    .await;

    let series = metrics.series();
    assert_eq!(
        one(&series, meter::RETRIES_EXHAUSTED).value,
        Value::Counter(1)
    );
    let mut statuses: Vec<(String, String)> = named(&series, meter::REQUESTS_TOTAL)
        .into_iter()
        .map(|s| (s.labels["status"].clone(), s.labels["provider"].clone()))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("400".into(), "unknown".into()),
            ("502".into(), "unknown".into()),
            ("503".into(), "unknown".into()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_answer_is_counted_as_499() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    let stuck = service_fn(|_req: Request<BufferedBody>| async {
        std::future::pending::<Result<Response<Body>, BoxError>>().await
    });
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(TagLayer::new())
        .service(stuck);
    // What the gateway's request timeout does: drop the stack's future.
    let answer =
        tokio::time::timeout(Duration::from_secs(30), stack.oneshot(post(CHAT, &[]))).await;
    assert!(answer.is_err());

    let series = metrics.series();
    let requests = one(&series, meter::REQUESTS_TOTAL);
    assert_eq!(requests.labels["status"], "499");
    assert_eq!(requests.value, Value::Counter(1));
    assert_eq!(
        one(&series, meter::REQUEST_DURATION).value,
        Value::Histogram(vec![30.0])
    );
}

/// An SSE body whose frames arrive after the given waits.
struct Paced {
    frames: VecDeque<(Duration, &'static str)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
                let (_, data) = self.frames.pop_front().unwrap();
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data.as_bytes())))));
            }
            let wait = match self.frames.front() {
                Some((wait, _)) => *wait,
                None => return Poll::Ready(None),
            };
            self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }
}

fn paced_stream() -> Response<Body> {
    let frames = VecDeque::from([
        (
            Duration::from_millis(150),
            "data: {\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ),
        (
            Duration::from_millis(250),
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        ),
        (
            Duration::ZERO,
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        ),
        (Duration::ZERO, "data: [DONE]\n\n"),
    ]);
    let mut r = observe_response(
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Paced {
                frames,
                sleep: None,
            })
            .unwrap(),
    );
    ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
    r
}

#[tokio::test(start_paused = true)]
async fn latency_and_time_to_first_token_use_tokio_time() {
    let metrics = Metrics::new();
    let _guard = metrics::set_default_local_recorder(&metrics.recorder);
    let streaming = service_fn(|_req: Request<BufferedBody>| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(paced_stream())
    });
    let r = send(TagLayer::new(), streaming, post(CHAT, &[])).await;
    r.into_body().collect().await.unwrap();

    let series = metrics.series();
    let seconds = |name| match &one(&series, name).value {
        Value::Histogram(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    let near = |got: &[f64], want: f64| got.len() == 1 && (got[0] - want).abs() < 0.005;
    let ttft = seconds(meter::TIME_TO_FIRST_TOKEN);
    assert!(
        near(&ttft, 0.25),
        "{ttft:?}: 100 ms to the head + 150 ms to the first event"
    );
    let total = seconds(meter::REQUEST_DURATION);
    assert!(near(&total, 0.5), "{total:?}: to the end of the body");
    assert_eq!(one(&series, meter::OUTPUT_TOKENS).value, Value::Counter(1));
}

// ---------------------------------------------------------------------------------------------
// Spans

#[tokio::test]
async fn one_span_per_request_with_the_gen_ai_attributes() {
    let spans = spans();
    let r = send(
        TagLayer::new().log_metadata_key("team"),
        recording(Log::default()),
        post(
            CHAT,
            &[
                ("x-portkey-metadata", r#"{"team":"search"}"#),
                ("x-portkey-trace-id", "trace-abc"),
            ],
        ),
    )
    .await;
    assert!(
        spans.closed("trace-abc").is_empty(),
        "open until the body reports"
    );
    r.into_body().collect().await.unwrap();

    let closed = spans.closed("trace-abc");
    assert_eq!(closed.len(), 1);
    let (name, fields) = &closed[0];
    assert_eq!(name, "gen_ai.request");
    let expect = [
        ("otel.name", "chat gpt-4o-mini"),
        ("otel.kind", "server"),
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.usage.input_tokens", "12"),
        ("gen_ai.usage.output_tokens", "7"),
        ("gen_ai.response.finish_reasons", r#"["stop"]"#),
        ("server.address", "gateway.test"),
        ("http.response.status_code", "200"),
        ("portcullis.trace_id", "trace-abc"),
        ("portcullis.metadata", r#"{"team":"search"}"#),
    ];
    for (field, value) in expect {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some(value),
            "{field}"
        );
    }
    assert!(!fields.contains_key("error.type"));
}

#[tokio::test]
async fn the_span_carries_the_cache_status() {
    use portcullis_core::facts::CacheStatus;
    let spans = spans();
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = json_answer(JSON_ANSWER);
        ResponseFacts::get_mut(&mut r).cache = Some(CacheStatus::SemanticHit);
        Ok::<_, BoxError>(r)
    });
    let r = send(
        TagLayer::new(),
        inner,
        post(CHAT, &[("x-portkey-trace-id", "trace-cache")]),
    )
    .await;
    r.into_body().collect().await.unwrap();
    let closed = spans.closed("trace-cache");
    assert_eq!(
        closed[0]
            .1
            .get("portcullis.cache_status")
            .map(String::as_str),
        Some("SEMANTIC HIT")
    );
}

#[tokio::test]
async fn the_span_carries_the_guard_verdicts() {
    use portcullis_core::facts::GuardResult;
    let spans = spans();
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = json_answer(JSON_ANSWER);
        let facts = ResponseFacts::get_mut(&mut r);
        for (id, passed, deny) in [("no-pii", true, true), ("short", false, false)] {
            facts.guards.push(GuardResult {
                id: id.into(),
                passed,
                deny,
                explanation: None,
            });
        }
        Ok::<_, BoxError>(r)
    });
    let r = send(
        TagLayer::new(),
        inner,
        post(CHAT, &[("x-portkey-trace-id", "trace-guards")]),
    )
    .await;
    r.into_body().collect().await.unwrap();
    let closed = spans.closed("trace-guards");
    assert_eq!(
        closed[0].1.get("portcullis.guards").map(String::as_str),
        Some("no-pii:pass,short:fail")
    );
}

#[tokio::test]
async fn metadata_values_stay_out_of_spans_unless_allowed() {
    let spans = spans();
    for (layer, trace) in [
        (TagLayer::new(), "meta-default"),
        (TagLayer::new().log_metadata_key("team"), "meta-team"),
    ] {
        let r = send(
            layer,
            recording(Log::default()),
            post(
                CHAT_USER,
                &[
                    (
                        "x-portkey-metadata",
                        r#"{"team":"search","email":"ann@example.com"}"#,
                    ),
                    ("x-portkey-trace-id", trace),
                ],
            ),
        )
        .await;
        r.into_body().collect().await.unwrap();
    }
    let metadata = |trace: &str| {
        let closed = spans.closed(trace);
        let fields = &closed[0].1;
        let json: serde_json::Value = serde_json::from_str(&fields["portcullis.metadata"]).unwrap();
        let all = fields.values().cloned().collect::<Vec<_>>().join(" ");
        assert!(!all.contains("ann@example.com"), "{all}");
        assert!(
            !all.contains("body-user"),
            "the body's user is metadata `_user`: {all}"
        );
        json
    };
    assert_eq!(
        metadata("meta-default"),
        serde_json::json!({"team": "<redacted>", "email": "<redacted>", "_user": "<redacted>"})
    );
    assert_eq!(
        metadata("meta-team"),
        serde_json::json!({"team": "search", "email": "<redacted>", "_user": "<redacted>"})
    );
}

#[tokio::test]
async fn failures_set_the_error_type() {
    let spans = spans();
    let rate_limited = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = observe_response(
            Response::builder()
                .status(429)
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":null}}"#,
                ))
                .unwrap(),
        );
        ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
        Ok::<_, BoxError>(r)
    });
    let r = send(
        TagLayer::new(),
        rate_limited,
        post(CHAT, &[("x-portkey-trace-id", "err-429")]),
    )
    .await;
    r.into_body().collect().await.unwrap();
    let failing = service_fn(|_req: Request<BufferedBody>| async {
        Err::<Response<Body>, BoxError>(
            UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into(),
        )
    });
    send(
        TagLayer::new(),
        failing,
        post(CHAT, &[("x-portkey-trace-id", "err-502")]),
    )
    .await;
    send(
        TagLayer::new(),
        recording(Log::default()),
        post(
            CHAT,
            &[
                ("x-portkey-metadata", "{"),
                ("x-portkey-trace-id", "err-400"),
            ],
        ),
    )
    .await;

    let traces = ["err-429", "err-502", "err-400"];
    let field = |i: usize, f: &str| {
        let closed = spans.closed(traces[i]);
        assert_eq!(closed.len(), 1, "{}", traces[i]);
        closed[0].1.get(f).cloned()
    };
    assert_eq!(field(0, "error.type").as_deref(), Some("rate_limit_error"));
    assert_eq!(field(0, "otel.status_code"), None, "a 4xx is the client's");
    assert_eq!(field(1, "error.type").as_deref(), Some("upstream_error"));
    assert_eq!(field(1, "otel.status_code").as_deref(), Some("ERROR"));
    assert_eq!(
        field(1, "http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(
        field(2, "error.type").as_deref(),
        Some("invalid_request_error")
    );
    assert_eq!(
        field(2, "http.response.status_code").as_deref(),
        Some("400")
    );
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error_on_the_span() {
    let spans = spans();
    let cut = service_fn(|_req: Request<BufferedBody>| async {
        // Ends without a finish reason or [DONE].
        Ok::<_, BoxError>(observe_response(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
                ))
                .unwrap(),
        ))
    });
    let r = send(
        TagLayer::new(),
        cut,
        post(CHAT, &[("x-portkey-trace-id", "cut-short")]),
    )
    .await;
    r.into_body().collect().await.unwrap();
    let closed = spans.closed("cut-short");
    assert_eq!(closed[0].1["error.type"], "stream_failed");
    assert_eq!(closed[0].1["otel.status_code"], "ERROR");
}

#[tokio::test]
async fn works_without_the_edge_and_without_a_view() {
    // Generic over the body: the tag layer may sit outside the edge too (no `_user` from the
    // body there).
    let log = Log::default();
    let inner = recording(log.clone());
    let stack = TagLayer::new().layer(EdgeLayer::new().layer(inner));
    let r = stack
        .oneshot(post(
            CHAT_USER,
            &[("x-portkey-metadata", r#"{"team":"a"}"#)],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.metadata, Some(meta(&[("team", "a")])));
}
