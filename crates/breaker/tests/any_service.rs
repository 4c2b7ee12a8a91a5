//! Retry and the circuit breaker around a service of the user's own, over its own types: a
//! plain `service_fn` taking `Request<Full<Bytes>>` and answering `Response<Full<Bytes>>`,
//! with nothing in front (`Full<Bytes>` is `Clone`, so retry can replay it) and the user's
//! response body passed through as it is.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_breaker::{BreakerPolicy, CircuitBreaker, State};
use portcullis_core::BoxError;
use portcullis_core::error::Unavailable;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_retry::{Retry, RetryLayer, RetryPolicy};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// The user's service: answers 503 to its first `failures` calls, then 200 with the request
/// body echoed; checks that every call carries the whole body, and counts them in `calls`.
fn own_service(
    failures: u32,
    calls: &Arc<AtomicU32>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let calls = calls.clone();
    service_fn(move |req: Request<Full<Bytes>>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            assert_eq!(body, "hello", "every attempt sends the whole body");
            let status = if n < failures {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let mut res = Response::new(Full::new(body));
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    })
}

fn request() -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap()
}

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder(attempts)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_replays_a_full_body_and_passes_the_users_response_through() {
    let calls = Arc::default();
    let svc = own_service(2, &calls);
    let retry = RetryLayer::new(policy(3)).layer(svc);

    // The response is the user's own `Response<Full<Bytes>>`, not a Portcullis body.
    let res: Response<Full<Bytes>> = retry.oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        ResponseFacts::get(&res).unwrap().retries,
        Some(Retries::Made(2))
    );
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_with_the_users_last_answer() {
    let calls = Arc::default();
    let svc = own_service(u32::MAX, &calls);
    let res = Retry::new(svc, policy(2)).oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        ResponseFacts::get(&res).unwrap().retries,
        Some(Retries::Exhausted)
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_around_the_users_service() {
    let calls = Arc::default();
    let svc = own_service(u32::MAX, &calls);
    let layer = CircuitBreaker::builder()
        .name("in-house")
        .policy(
            BreakerPolicy::new()
                .consecutive_failures(3)
                .cooldown(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    let breaker = layer.layer(svc);
    for _ in 0..3 {
        let res: Response<Full<Bytes>> = breaker.clone().oneshot(request()).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    assert_eq!(layer.circuit().state(), State::Open);
    let err = breaker.clone().oneshot(request()).await.unwrap_err();
    assert!(err.downcast_ref::<Unavailable>().is_some(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "an open circuit calls nothing"
    );

    // After the cooldown, a probe reaches the service again.
    tokio::time::advance(Duration::from_secs(30)).await;
    let res = breaker.oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_outside_the_breaker_stops_once_it_opens() {
    let calls = Arc::default();
    let svc = own_service(u32::MAX, &calls);
    let breaker = CircuitBreaker::builder()
        .policy(BreakerPolicy::new().consecutive_failures(3))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(5)))
        .layer(breaker.clone())
        .service(svc);
    let err = stack.oneshot(request()).await.unwrap_err();
    assert!(err.downcast_ref::<Unavailable>().is_some(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the open circuit is not retried"
    );
    assert_eq!(breaker.circuit().state(), State::Open);
}

/// A policy of the user's own over the user's types: one more try after a 503, at once.
#[derive(Clone, Debug)]
struct OnceOn503(bool);

impl tower::retry::Policy<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError> for OnceOn503 {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Full<Bytes>>, BoxError>,
    ) -> Option<Self::Future> {
        let again = !self.0 && matches!(result, Ok(res) if res.status() == 503);
        self.0 |= again;
        again.then(|| std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn retry_takes_a_policy_of_the_users_own() {
    let calls = Arc::default();
    let svc = own_service(1, &calls);
    let retry: Retry<_, OnceOn503> = Retry::with_policy(svc, OnceOn503(false));
    let res = retry.oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let calls = Arc::default();
    let svc = own_service(u32::MAX, &calls);
    let res = RetryLayer::with_policy(OnceOn503(false))
        .layer(svc)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
