//! Balance: the cost of one choice (weighted, sticky, least in flight, peak EWMA) and of the
//! whole success path around an in-process service that answers at once, compared with
//! calling that service bare.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use portcullis_balance::{Balance, BoxTarget, PeakEwma, Sticky, Strategy, Target};
use portcullis_core::context::Metadata;
use portcullis_core::{Body, BoxError, BufferedBody};
use tower::{Service, service_fn};

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

fn request(body: &Bytes) -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body.clone()))
        .unwrap()
}

fn with_user(mut req: Request<BufferedBody>) -> Request<BufferedBody> {
    req.extensions_mut().insert(Metadata::new(
        [("_user".to_owned(), "user-1234".to_owned())].into(),
    ));
    req
}

fn balance<S: Clone>(service: S, n: usize, strategy: Strategy) -> Balance<S> {
    Balance::builder()
        .targets(
            (0..n).map(|i| {
                Target::new(format!("target-{i}"), service.clone()).weight(1.0 + i as f64)
            }),
        )
        .strategy(strategy)
        .seed(1)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let body = Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[]}"#);
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(Response::new(Body::from(Bytes::from_static(b"{}"))))
    });
    let sticky = || Strategy::Sticky(Sticky::metadata("_user"));
    let peak = || Strategy::PeakEwma(PeakEwma::new());

    let mut group = c.benchmark_group("balance_pick");
    let req = with_user(request(&body));
    for (name, n, strategy) in [
        ("weighted_2", 2, Strategy::Weighted),
        ("weighted_8", 8, Strategy::Weighted),
        ("sticky_2", 2, sticky()),
        ("sticky_8", 8, sticky()),
        ("least_in_flight_2", 2, Strategy::LeastInFlight),
        ("least_in_flight_8", 8, Strategy::LeastInFlight),
        ("peak_ewma_2", 2, peak()),
    ] {
        let mut lb = balance(inner, n, strategy);
        group.bench_function(name, |b| b.iter(|| lb.pick(black_box(&req))));
    }
    group.finish();

    let mut group = c.benchmark_group("balance_call");
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter(|| ready(svc.call(black_box(with_user(request(&body))))).unwrap())
    });
    // What a balancer of two or more pays to keep the request for a second draw.
    group.bench_function("clone_request_only", |b| {
        let req = with_user(request(&body));
        b.iter(|| portcullis_core::clone_request(black_box(&req)))
    });
    for (name, n, strategy) in [
        ("weighted_1", 1, Strategy::Weighted),
        ("weighted_2", 2, Strategy::Weighted),
        ("sticky_2", 2, sticky()),
        ("least_in_flight_2", 2, Strategy::LeastInFlight),
        ("peak_ewma_2", 2, peak()),
    ] {
        let mut lb = balance(inner, n, strategy);
        group.bench_function(name, |b| {
            b.iter(|| ready(lb.call(black_box(with_user(request(&body))))).unwrap())
        });
    }
    // The gateway's case: boxed targets (one allocation per clone) behind a fresh clone of
    // the balancer per request, as `Edge` and `oneshot` make.
    group.bench_function("inner_boxed_only", |b| {
        let svc = BoxTarget::new(inner);
        b.iter(|| ready(svc.clone().call(black_box(request(&body)))).unwrap())
    });
    group.bench_function("weighted_2_boxed_cloned", |b| {
        let lb = balance(BoxTarget::new(inner), 2, Strategy::Weighted);
        b.iter(|| ready(lb.clone().call(black_box(request(&body)))).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
