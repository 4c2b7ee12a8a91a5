//! The tag layer's success path around an in-process service that answers at once, compared
//! with the bare service: without a recorder, with a Prometheus recorder installed, with
//! metadata and a `traceparent` to parse, and with an observed body whose usage is reported.
//! No tracing subscriber and no exporter: the span is disabled, as in a server without one.
//! Needs the `prometheus` feature (`cargo bench --workspace` has it through the gateway).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::observe_response;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_tag::{Prometheus, TagLayer};
use tower::{Layer, Service, service_fn};

/// Polls a future that completes without waiting to its end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

const BODY: &str =
    r#"{"model":"gpt-4o-mini","user":"user-1234","messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &str = r#"{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

fn bench(c: &mut Criterion) {
    let view = Arc::new(RequestView::parse(Bytes::from_static(BODY.as_bytes())).unwrap());
    let request = |headers: bool| {
        let mut req = Request::post("/v1/chat/completions")
            .header("host", "gateway.example")
            .body(BufferedBody::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        if headers {
            let h = req.headers_mut();
            h.insert(
                "x-portkey-metadata",
                r#"{"team":"search","env":"prod","_user":"u-1"}"#.parse().unwrap(),
            );
            h.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
        }
        req.extensions_mut().insert(view.clone());
        req
    };
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = Response::new(Body::empty());
        ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
        Ok::<_, BoxError>(r)
    });
    let observed = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = observe_response(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(ANSWER))
                .unwrap(),
        );
        ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
        Ok::<_, BoxError>(r)
    });
    let (recorder, _prometheus) = Prometheus::recorder();

    let mut group = c.benchmark_group("tag");
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter(|| ready(svc.call(black_box(request(false)))).unwrap())
    });
    group.bench_function("tag_no_recorder", |b| {
        let mut svc = TagLayer::new().layer(inner);
        b.iter(|| ready(svc.call(black_box(request(false)))).unwrap())
    });
    group.bench_function("tag_prometheus", |b| {
        let mut svc = TagLayer::new().layer(inner);
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| ready(svc.call(black_box(request(false)))).unwrap())
        })
    });
    group.bench_function("inner_service_only_with_headers", |b| {
        let mut svc = inner;
        b.iter(|| ready(svc.call(black_box(request(true)))).unwrap())
    });
    group.bench_function("tag_prometheus_metadata_traceparent", |b| {
        let mut svc = TagLayer::new().metadata_label("team").unwrap().layer(inner);
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| ready(svc.call(black_box(request(true)))).unwrap())
        })
    });
    group.bench_function("observed_inner_only", |b| {
        let mut svc = observed;
        b.iter(|| {
            let r = ready(svc.call(black_box(request(false)))).unwrap();
            ready(r.into_body().collect()).unwrap()
        })
    });
    group.bench_function("tag_prometheus_observed", |b| {
        let mut svc = TagLayer::new().layer(observed);
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| {
                let r = ready(svc.call(black_box(request(false)))).unwrap();
                ready(r.into_body().collect()).unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
