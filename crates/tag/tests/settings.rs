//! The tag layer's setters never panic: typed header names, a refused metadata label as a
//! core's `BuildError`; and the metrics reach any recorder of the `metrics` facade, with or
//! without the `prometheus` feature.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body_util::Full;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata as MetricMetadata, Recorder,
    SharedString, Unit,
};
use portcullis_core::BuildError;
use portcullis_core::context::{Caller, Metadata, TraceId};
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer};
use portcullis_tag::{TagLayer, meter};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// What the inner service saw: the trace id, the caller and the metadata.
type Seen = Arc<Mutex<Option<(TraceId, Caller, Metadata)>>>;

async fn send(layer: TagLayer, headers: &[(&str, &str)]) -> (Response<Body>, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let inner = service_fn(move |req: Request<BufferedBody>| {
        let ext = req.extensions();
        *log.lock().unwrap() = Some((
            ext.get::<TraceId>().cloned().unwrap(),
            ext.get::<Caller>().cloned().unwrap(),
            ext.get::<Metadata>().cloned().unwrap(),
        ));
        async { Ok::<_, BoxError>(Response::new(Body::empty())) }
    });
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(layer)
        .service(inner);
    let mut req = Request::post("/v1/chat/completions");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap();
    (stack.oneshot(req).await.unwrap(), seen)
}

fn eight_labels() -> TagLayer {
    ["a", "b", "c", "d", "e", "f", "g", "h"]
        .into_iter()
        .try_fold(TagLayer::new(), TagLayer::metadata_label)
        .unwrap()
}

#[test]
fn a_ninth_metadata_label_is_an_error_not_a_panic() {
    let err: BuildError = eight_labels().metadata_label("i").unwrap_err();
    assert_eq!(err.path(), "metadata_labels[8]");
    assert_eq!(err.message(), "at most 8 metadata keys can be labels");
    let boxed: BoxError = err.into();
    assert!(boxed.downcast_ref::<BuildError>().is_some());
}

#[test]
fn a_key_allowed_twice_is_one_label() {
    let layer = eight_labels().metadata_label("a").unwrap();
    assert!(layer.metadata_label("i").is_err(), "still eight labels");
}

#[test]
fn two_keys_with_one_label_name_are_refused() {
    let err = TagLayer::new()
        .metadata_label("cost_center")
        .unwrap()
        .metadata_label("cost-center")
        .unwrap_err();
    assert_eq!(err.path(), "metadata_labels[1]");
    assert_eq!(
        err.message(),
        "`cost-center` and `cost_center` would both be the label `metadata_cost_center`"
    );
}

#[tokio::test]
async fn header_names_are_typed() {
    let layer = TagLayer::new()
        .metadata_header(HeaderName::from_static("x-meta"))
        .trace_header(HeaderName::from_static("x-request-trace"))
        .virtual_key_header(HeaderName::try_from("X-Vkey").unwrap());
    let (response, seen) = send(
        layer,
        &[
            ("x-meta", r#"{"team":"search"}"#),
            ("x-request-trace", "trace-1234"),
            ("x-vkey", "openai-prod"),
            ("x-portkey-trace-id", "not-this-one"),
            ("x-portkey-virtual-key", "not-this-either"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let (trace, caller, metadata) = seen.lock().unwrap().take().unwrap();
    assert_eq!(trace.as_str(), "trace-1234");
    assert_eq!(caller.virtual_key.as_deref(), Some("openai-prod"));
    assert_eq!(metadata.get("team"), Some("search"));
}

/// A recorder of the facade that only counts: what an application brings instead of
/// `Prometheus` (StatsD, a custom exporter).
#[derive(Clone, Default)]
struct Counting {
    counters: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
}

struct Count(Arc<AtomicU64>);

impl CounterFn for Count {
    fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn absolute(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &MetricMetadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let count = self
            .counters
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(Count(count)))
    }

    fn register_gauge(&self, _: &Key, _: &MetricMetadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &MetricMetadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn metrics_reach_the_recorder_the_application_installed() {
    let recorder = Counting::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let layer = TagLayer::new().metadata_label("team").unwrap();
    for _ in 0..2 {
        let (response, _) = send(layer.clone(), &[("x-portkey-metadata", r#"{"team":"a"}"#)]).await;
        assert_eq!(response.status(), 200);
    }
    let counters = recorder.counters.lock().unwrap();
    let key = format!(
        "{}{{metadata_team=a,model=gpt-4o-mini,provider=unknown,status=200,target=none}}",
        meter::REQUESTS_TOTAL
    );
    assert_eq!(
        counters.get(&key).map(|c| c.load(Ordering::Relaxed)),
        Some(2),
        "{:?}",
        counters.keys().collect::<Vec<_>>()
    );
}
