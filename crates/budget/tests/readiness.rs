//! Readiness is a contract: the layer calls only a service it drove ready, also when the
//! store answers later and the readied service must move into the future.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_budget::store::{
    BoxFuture, Entry, LimitStore, MemoryStore, Reservation, Reserve, StoreError, Verdict,
};
use portcullis_budget::{BudgetLayer, Policy, RateRule};
use portcullis_core::{Body, BufferedBody};
use support::{CHAT, json_upstream, request};
use tower::{Layer, Service, ServiceExt};

/// A service that panics if called without a `poll_ready` of its own (clones start unready).
struct Strict<S> {
    inner: S,
    ready: bool,
    calls: Arc<AtomicUsize>,
}

impl<S: Clone> Clone for Strict<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            ready: false,
            calls: self.calls.clone(),
        }
    }
}

impl<S: Service<Request<BufferedBody>>> Service<Request<BufferedBody>> for Strict<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let poll = self.inner.poll_ready(cx);
        self.ready = poll.is_ready();
        poll
    }

    fn call(&mut self, req: Request<BufferedBody>) -> S::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(req)
    }
}

/// A store that answers after yielding once: the layer's I/O path, without Redis.
#[derive(Clone, Default)]
struct Later(MemoryStore);

struct Yield(Option<Result<Verdict, StoreError>>, bool);

impl Future for Yield {
    type Output = Result<Verdict, StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.1 {
            self.1 = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.0.take().expect("polled once more"))
    }
}

impl LimitStore for Later {
    type Future = Yield;

    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Yield> {
        let Reserve::Ready(answer) = self.0.reserve(reservation) else {
            unreachable!()
        };
        Reserve::Pending(Yield(Some(answer), false))
    }

    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]) {
        self.0.settle(reservation, actual);
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        self.0.entries()
    }
}

async fn drive<St: LimitStore>(layer: BudgetLayer<St>) -> (Vec<u16>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = layer.layer(Strict {
        inner: json_upstream(22, 7),
        ready: false,
        calls: calls.clone(),
    });
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let ready = service.ready().await.unwrap();
        let res: Response<Body> = ready.call(request(CHAT, Some("k"), None)).await.unwrap();
        statuses.push(res.status().as_u16());
    }
    (statuses, calls.load(Ordering::SeqCst))
}

fn policy() -> Policy {
    Policy::new("rpm").rate(RateRule::requests_per_minute(2))
}

#[tokio::test]
async fn the_readied_service_is_the_one_called() {
    let memory = BudgetLayer::builder().policy(policy()).build().unwrap();
    assert_eq!(drive(memory).await, (vec![200, 200, 429, 429], 2));
    let later = BudgetLayer::builder()
        .policy(policy())
        .store(Later::default())
        .build()
        .unwrap();
    assert_eq!(drive(later).await, (vec![200, 200, 429, 429], 2));
}
