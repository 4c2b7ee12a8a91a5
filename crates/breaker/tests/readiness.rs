//! The readiness contract, against `tower_test::mock`: `poll_ready` is the inner service's,
//! a refusal never calls the inner service and leaves it ready, and only a readied service
//! is ever called (the mock panics otherwise).

mod common;

use std::time::Duration;

use common::{request, unavailable};
use http::{Request, Response, StatusCode};
use portcullis_breaker::{BreakerPolicy, CircuitBreaker, State};
use portcullis_core::error::RateLimited;
use portcullis_core::{Body, BufferedBody};
use tower::Layer;
use tower_test::mock;

fn status(code: u16) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    res
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services_and_refusals_keep_it() {
    let layer = CircuitBreaker::builder()
        .policy(BreakerPolicy::new().consecutive_failures(1))
        .build()
        .unwrap();
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| layer.layer(m));

    // Pending while the inner service is, ready when it is.
    handle.allow(0);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());

    // A failure opens the circuit.
    let fut = tokio::spawn(svc.call(request()));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(status(500));
    assert_eq!(fut.await.unwrap().unwrap().status(), 500);
    assert_eq!(layer.circuit().state(), State::Open);

    // Open does not make it ready: it still waits on the inner service.
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());

    // The call fails fast and the inner service sees nothing...
    let open = unavailable(svc.call(request()).await);
    assert_eq!(open.retry_after, Some(Duration::from_secs(30)));
    assert!(handle.poll_request().is_pending(), "no request reached it");

    // ...and stays ready: no new permit is needed for the next call.
    handle.allow(0);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());

    // After the cooldown the readied service takes the probe, which closes the circuit.
    tokio::time::advance(Duration::from_secs(30)).await;
    let fut = tokio::spawn(svc.call(request()));
    let (_req, send) = handle.next_request().await.unwrap();
    assert_eq!(layer.circuit().state(), State::HalfOpen);
    send.send_response(status(200));
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);
    assert_eq!(layer.circuit().state(), State::Closed);

    // The next call needs readiness again.
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_pending());
}

#[tokio::test]
async fn inner_readiness_errors_pass_through() {
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            CircuitBreaker::layer("t").layer(m)
        });
    handle.send_error(RateLimited {
        message: "slow down".into(),
        retry_after: Duration::from_secs(1),
    });
    let err = match svc.poll_ready::<Request<BufferedBody>>() {
        std::task::Poll::Ready(Err(err)) => err,
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(err.is::<RateLimited>());
}
