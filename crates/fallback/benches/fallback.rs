//! The fallback's success-path overhead: the first target answers at once (an in-process
//! `service_fn`), compared with calling that service bare. The requests carry what the edge
//! leaves on them (a 1 KB body, its content type, the parsed view). Requests are built, and
//! responses dropped, outside the timed part.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_fallback::{BoxTarget, Fallback};
use tower::{Service, service_fn};

/// Polls a future that completes without waiting to its end, with a no-op waker.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn chat_body(stream: bool) -> Bytes {
    let words = "Please move my Lisbon to Berlin flight from the 14th to the 16th. ".repeat(14);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": words}],
    });
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

fn bench(c: &mut Criterion) {
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(Response::new(Body::empty()))
    });
    let streaming = service_fn(|_req: Request<BufferedBody>| async {
        let mut r = Response::new(Body::from("data: {\"choices\":[]}\n\n"));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        Ok::<_, BoxError>(r)
    });
    let request_of = |body: Bytes| {
        let view = Arc::new(RequestView::parse(body.clone()).unwrap());
        move || {
            let mut req = Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(BufferedBody::new(body.clone()))
                .unwrap();
            req.extensions_mut().insert(view.clone());
            req
        }
    };
    let request = request_of(chat_body(false));
    let stream_request = request_of(chat_body(true));

    let mut group = c.benchmark_group("fallback");
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter_batched(
            &request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("one_target", |b| {
        let mut svc = Fallback::new([inner]);
        b.iter_batched(
            &request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("first_of_two_targets", |b| {
        let mut svc = Fallback::new([inner, inner]);
        b.iter_batched(
            &request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("boxed_inner_service_only", |b| {
        let mut svc = BoxTarget::new(inner);
        b.iter_batched(
            &request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("first_of_two_boxed_targets", |b| {
        let mut svc = Fallback::new([BoxTarget::new(inner), BoxTarget::new(inner)]);
        b.iter_batched(
            &request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("stream_inner_service_only", |b| {
        let mut svc = streaming;
        b.iter_batched(
            &stream_request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("stream_first_of_two_targets", |b| {
        // Waits for the first event before answering (it is kept and sent first).
        let mut svc = Fallback::new([streaming, streaming]);
        b.iter_batched(
            &stream_request,
            |req| ready(svc.call(black_box(req))).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
