//! The retry layer's success-path overhead: a request that succeeds at once, through
//! [`Retry`](portcullis_retry::Retry) around an in-process service that answers at once,
//! compared with the bare service.
//!
//! The request looks like one from the edge of a server: headers as hyper parses them (values
//! sharing the read buffer, a custom name copied) and the parsed view in its extensions.
//! Requests are built outside the timed part; the layer's copy of the request (kept to retry
//! with) is made and dropped inside it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Request, Response};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_retry::{RetryLayer, RetryPolicy};
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

fn bench(c: &mut Criterion) {
    let body = Bytes::from_static(
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#,
    );
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    // The bytes hyper read the head into; header values are slices of it.
    let head = Bytes::from(
        "application/jsonBearer sk-testOpenAI/Python 1.50.04bf92f3577b34da6a3ce929d0e0e4736"
            .to_owned(),
    );
    let value =
        |from: usize, to: usize| HeaderValue::from_maybe_shared(head.slice(from..to)).unwrap();
    let request = || {
        let mut req = Request::post("/v1/chat/completions")
            .body(BufferedBody::new(body.clone()))
            .unwrap();
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, value(0, 16));
        headers.insert(AUTHORIZATION, value(16, 30));
        headers.insert(USER_AGENT, value(30, 50));
        headers.insert(
            HeaderName::from_bytes(b"x-portkey-trace-id").unwrap(),
            value(50, 82),
        );
        req.extensions_mut().insert(view.clone());
        req
    };
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(Response::new(Body::empty()))
    });
    // Only the attempt timeout needs a runtime (for its timer); the others run without one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("retry");
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter_batched(
            request,
            |req| {
                ready(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
                ready(svc.call(req)).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let cases = [
        ("retry_3_default", RetryPolicy::builder(3).build().unwrap()),
        (
            "retry_3_no_budget",
            RetryPolicy::builder(3).no_budget().build().unwrap(),
        ),
        (
            "retry_3_attempt_timeout",
            RetryPolicy::builder(3)
                .attempt_timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        ),
        ("retry_off", RetryPolicy::builder(0).build().unwrap()),
    ];
    for (name, policy) in cases {
        let _guard = runtime.enter();
        group.bench_function(name, |b| {
            let mut svc = RetryLayer::new(policy.clone()).layer(inner);
            b.iter_batched(
                request,
                |req| {
                    ready(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
                    ready(svc.call(req)).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
