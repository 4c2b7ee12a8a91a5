//! The circuit breaker's cost on the success path of a closed circuit, around an in-process
//! service that answers at once, against the bare service; with the lock-free memory store
//! and, for comparison, a store that takes a mutex per step; and the fail-fast path of an
//! open circuit. The `*_2_threads` cases run the same calls from two threads at once on one
//! shared circuit (time per call).

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use portcullis_breaker::store::{Admission, Permit};
use portcullis_breaker::{BreakerPolicy, BreakerStore, CircuitBreaker, Outcome, State, Transition};
use portcullis_core::{Body, BoxError, BufferedBody};
use std::hint::black_box;
use tokio::time::Instant;
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

/// A closed-only store behind one mutex, doing what the memory store does on the success
/// path (epoch check, reset the run, count in a bucket), to price the lock.
struct MutexStore {
    origin: Instant,
    inner: Mutex<Counts>,
}

impl MutexStore {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            inner: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Counts {
    epoch: u64,
    consecutive: u32,
    buckets: [(u32, u16, u16); 30],
}

impl BreakerStore for MutexStore {
    fn check(&self, _policy: &BreakerPolicy, _now: Instant) -> (Admission, Option<Transition>) {
        let epoch = self.inner.lock().unwrap().epoch;
        (
            Admission::Allowed(Permit {
                epoch,
                probe: false,
            }),
            None,
        )
    }

    fn record(
        &self,
        policy: &BreakerPolicy,
        now: Instant,
        permit: Permit,
        outcome: Outcome,
        _retry_after: Option<Duration>,
    ) -> Option<Transition> {
        let mut counts = self.inner.lock().unwrap();
        if counts.epoch != permit.epoch || outcome != Outcome::Success {
            return None;
        }
        counts.consecutive = 0;
        let width = (policy.get_window().as_nanos() / 30).max(1) as u64;
        let period = (now.saturating_duration_since(self.origin).as_nanos() as u64 / width) as u32;
        let bucket = &mut counts.buckets[period as usize % 30];
        if bucket.0 == period {
            bucket.2 = bucket.2.saturating_add(1);
        } else {
            *bucket = (period, 0, 1);
        }
        None
    }

    fn state(&self) -> State {
        State::Closed
    }
}

fn answer(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}

fn request() -> Request<BufferedBody> {
    Request::new(BufferedBody::empty())
}

/// Runs `iters` calls split over two threads, each with its own clone of `svc`.
fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let start = StdInstant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut svc = svc.clone();
            s.spawn(move || {
                for _ in 0..iters / 2 {
                    black_box(ready(svc.call(black_box(request()))).unwrap());
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(answer(StatusCode::OK))
    });

    let mut group = c.benchmark_group("breaker");
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("closed_success", |b| {
        let mut svc = CircuitBreaker::layer("bench").layer(inner);
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("closed_success_mutex_store", |b| {
        let layer = CircuitBreaker::builder()
            .store(MutexStore::new())
            .build()
            .unwrap();
        let mut svc = layer.layer(inner);
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("open_fail_fast", |b| {
        let failing = service_fn(|_req: Request<BufferedBody>| async {
            Ok::<_, BoxError>(answer(StatusCode::INTERNAL_SERVER_ERROR))
        });
        let layer = CircuitBreaker::builder()
            .policy(BreakerPolicy::new().cooldown(Duration::from_secs(3600)))
            .build()
            .unwrap();
        let mut svc = layer.layer(failing);
        while layer.circuit().state() != State::Open {
            ready(svc.call(request())).unwrap();
        }
        b.iter(|| ready(svc.call(black_box(request()))).unwrap_err())
    });
    group.bench_function("inner_service_only_2_threads", |b| {
        b.iter_custom(|iters| two_threads(&inner, iters))
    });
    group.bench_function("closed_success_2_threads", |b| {
        let svc = CircuitBreaker::layer("bench").layer(inner);
        b.iter_custom(|iters| two_threads(&svc, iters))
    });
    group.bench_function("closed_success_mutex_store_2_threads", |b| {
        let layer = CircuitBreaker::builder()
            .store(MutexStore::new())
            .build()
            .unwrap();
        let svc = layer.layer(inner);
        b.iter_custom(|iters| two_threads(&svc, iters))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
