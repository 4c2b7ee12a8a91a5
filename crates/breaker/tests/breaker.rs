//! The breaker's state machine through its service, on paused time.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Answer, Target, request, unavailable};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_breaker::{BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, State, Transition};
use portcullis_core::error::Unavailable;
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, clone_request};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

const SERVER_ERROR: Answer = Answer::Status(500, None);
const OK: Answer = Answer::Status(200, None);

/// Sends one request through a clone of `svc`.
async fn send<S>(svc: &S) -> Result<Response<Body>, BoxError>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError> + Clone,
{
    svc.clone().oneshot(request()).await
}

/// Sends `n` requests and checks each got a response with `status`.
async fn send_n<S>(svc: &S, n: usize, status: u16)
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError> + Clone,
{
    for i in 0..n {
        let res = send(svc).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(res.status(), status, "call {i}");
    }
}

fn consecutive(n: u32) -> BreakerPolicy {
    BreakerPolicy::new()
        .consecutive_failures(n)
        .failure_rate(0.0)
}

fn rate() -> BreakerPolicy {
    BreakerPolicy::new()
        .consecutive_failures(0)
        .failure_rate(0.5)
        .minimum_requests(20)
        .window(Duration::from_secs(30))
}

#[tokio::test(start_paused = true)]
async fn opens_after_n_consecutive_failures() {
    let seen: Arc<Mutex<Vec<(String, Transition)>>> = Arc::default();
    let log = seen.clone();
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .name("openai")
        .policy(consecutive(3))
        .on_transition(move |name, t| log.lock().unwrap().push((name.to_owned(), *t)))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());

    send_n(&svc, 2, 500).await;
    target.set(OK);
    send_n(&svc, 1, 200).await; // a success ends the run
    target.set(SERVER_ERROR);
    send_n(&svc, 2, 500).await;
    assert_eq!(layer.circuit().state(), State::Closed, "2 in a row, not 3");
    send_n(&svc, 1, 500).await;
    assert_eq!(layer.circuit().state(), State::Open);
    assert_eq!(target.hits(), 6);

    assert_eq!(layer.circuit().transitions().opened, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [(
            "openai".to_owned(),
            Transition {
                from: State::Closed,
                to: State::Open,
                cooldown: Some(Duration::from_secs(30)),
            }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_once_the_window_holds_the_minimum() {
    let target = Target::new(OK);
    let layer = CircuitBreaker::builder().policy(rate()).build().unwrap();
    let svc = layer.layer(target.service());

    send_n(&svc, 10, 200).await;
    target.set(SERVER_ERROR);
    send_n(&svc, 9, 500).await;
    assert_eq!(
        layer.circuit().state(),
        State::Closed,
        "9 of 19 failed: below the minimum volume"
    );
    send_n(&svc, 1, 500).await;
    assert_eq!(layer.circuit().state(), State::Open, "10 of 20 failed");
}

#[tokio::test(start_paused = true)]
async fn failure_rate_needs_the_minimum_volume_and_the_rate() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder().policy(rate()).build().unwrap();
    let svc = layer.layer(target.service());

    // All failures, but fewer than the minimum.
    send_n(&svc, 19, 500).await;
    assert_eq!(layer.circuit().state(), State::Closed);

    // Past the window those age out; then 45 % failures over 20 calls is under the rate.
    advance(Duration::from_secs(30)).await;
    target.set(OK);
    send_n(&svc, 11, 200).await;
    target.set(SERVER_ERROR);
    send_n(&svc, 9, 500).await;
    assert_eq!(layer.circuit().state(), State::Closed, "9 of 20 failed");
}

#[tokio::test(start_paused = true)]
async fn old_failures_age_out_of_the_window() {
    // 15 failures, then 5 more 29 s later: one window of 20 calls, which opens.
    let kept = CircuitBreaker::builder().policy(rate()).build().unwrap();
    let svc = kept.layer(Target::new(SERVER_ERROR).service());
    send_n(&svc, 15, 500).await;
    advance(Duration::from_secs(29)).await;
    send_n(&svc, 5, 500).await;
    assert_eq!(kept.circuit().state(), State::Open);

    // 15 failures, then 5 more 30 s later: the first 15 have aged out.
    let aged = CircuitBreaker::builder().policy(rate()).build().unwrap();
    let svc = aged.layer(Target::new(SERVER_ERROR).service());
    send_n(&svc, 15, 500).await;
    advance(Duration::from_secs(30)).await;
    send_n(&svc, 5, 500).await;
    assert_eq!(aged.circuit().state(), State::Closed);
    send_n(&svc, 15, 500).await;
    assert_eq!(aged.circuit().state(), State::Open, "20 fresh failures");
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_calling_the_target() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .name("openai")
        .policy(consecutive(2))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    send_n(&svc, 2, 500).await;

    for _ in 0..10 {
        let open = unavailable(send(&svc).await);
        assert_eq!(open.message, "circuit open for openai");
        assert_eq!(open.retry_after, Some(Duration::from_secs(30)));
    }
    assert_eq!(target.hits(), 2, "no call reached the target while open");

    advance(Duration::from_secs(12)).await;
    let open = unavailable(send(&svc).await);
    assert_eq!(open.retry_after, Some(Duration::from_secs(18)), "the rest");
    assert_eq!(target.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn cooldown_comes_from_retry_after() {
    let target = Target::new(Answer::Status(503, Some("5")));
    let layer = CircuitBreaker::builder()
        .policy(consecutive(1))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    send_n(&svc, 1, 503).await;
    assert_eq!(
        unavailable(send(&svc).await).retry_after,
        Some(Duration::from_secs(5))
    );

    advance(Duration::from_secs(5)).await;
    target.set(Answer::Status(429, Some("3600")));
    send_n(&svc, 1, 429).await; // the probe fails, asking for an hour
    assert_eq!(
        unavailable(send(&svc).await).retry_after,
        Some(Duration::from_secs(600)),
        "capped at max_cooldown"
    );
    assert_eq!(target.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_the_configured_probes_through() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .policy(consecutive(1).probes(2))
        .build()
        .unwrap();
    let mut svc = layer.layer(target.service());
    send_n(&svc, 1, 500).await;
    advance(Duration::from_secs(30)).await;

    // Slow probes, so all are out at once; the admission happens in `call`.
    target.set(OK);
    target.delay(Duration::from_secs(1));
    let first = svc.ready().await.unwrap().call(request());
    assert_eq!(layer.circuit().state(), State::HalfOpen);
    let second = svc.ready().await.unwrap().call(request());
    let third = svc.ready().await.unwrap().call(request());
    assert_eq!(target.hits(), 3, "1 opening failure + 2 probes");
    let refused = unavailable(third.await);
    assert_eq!(refused.retry_after, None, "the probes decide when");
    assert_eq!(target.hits(), 3);

    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().status(), 200);
    assert_eq!(second.unwrap().status(), 200);
    assert_eq!(layer.circuit().state(), State::Closed);
    let t = layer.circuit().transitions();
    assert_eq!((t.opened, t.half_opened, t.closed), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn probe_success_closes_with_fresh_counters() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .policy(consecutive(3))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    send_n(&svc, 3, 500).await;
    advance(Duration::from_secs(30)).await;
    assert_eq!(layer.circuit().state(), State::Open, "until a call comes");

    target.set(OK);
    send_n(&svc, 1, 200).await;
    assert_eq!(layer.circuit().state(), State::Closed);

    // The failures from before count no more: it takes 3 new ones.
    target.set(SERVER_ERROR);
    send_n(&svc, 2, 500).await;
    assert_eq!(layer.circuit().state(), State::Closed);
    send_n(&svc, 1, 500).await;
    assert_eq!(layer.circuit().state(), State::Open);
    assert_eq!(target.hits(), 7);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_with_a_fresh_cooldown() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .policy(consecutive(3))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    send_n(&svc, 3, 500).await;
    advance(Duration::from_secs(30)).await;

    send_n(&svc, 1, 500).await; // the probe, failing
    assert_eq!(layer.circuit().state(), State::Open);
    assert_eq!(
        unavailable(send(&svc).await).retry_after,
        Some(Duration::from_secs(30)),
        "a whole new cooldown"
    );
    assert_eq!(target.hits(), 4);
    let t = layer.circuit().transitions();
    assert_eq!((t.opened, t.half_opened, t.closed), (2, 1, 0));

    advance(Duration::from_secs(29)).await;
    unavailable(send(&svc).await);
    advance(Duration::from_secs(1)).await;
    send_n(&svc, 1, 500).await;
    assert_eq!(target.hits(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_place() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreaker::builder()
        .policy(consecutive(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(target.service());
    send_n(&svc, 1, 500).await;
    advance(Duration::from_secs(30)).await;

    target.set(OK);
    target.delay(Duration::from_secs(60));
    let probe = svc.ready().await.unwrap().call(request());
    unavailable(send(&svc).await);
    drop(probe); // the client went away

    target.delay(Duration::ZERO);
    send_n(&svc, 1, 200).await;
    assert_eq!(layer.circuit().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_inner_unavailable_do_not_count() {
    let target = Target::new(Answer::Status(400, None));
    let layer = CircuitBreaker::builder()
        .policy(consecutive(2))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    for status in [400, 401, 403, 404, 413, 422] {
        target.set(Answer::Status(status, None));
        send_n(&svc, 5, status).await;
    }
    target.set(Answer::Unavailable);
    for _ in 0..5 {
        let inner = unavailable(send(&svc).await);
        assert_eq!(inner.message, "nothing inside", "passed through as it is");
    }
    assert_eq!(layer.circuit().state(), State::Closed);

    // A client error between two failures ends the run.
    target.set(SERVER_ERROR);
    send_n(&svc, 1, 500).await;
    target.set(Answer::Status(404, None));
    send_n(&svc, 1, 404).await;
    target.set(SERVER_ERROR);
    send_n(&svc, 1, 500).await;
    assert_eq!(layer.circuit().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn transport_errors_and_429_count() {
    let target = Target::new(Answer::Refused);
    let layer = CircuitBreaker::builder()
        .policy(consecutive(3))
        .build()
        .unwrap();
    let svc = layer.layer(target.service());
    let err = send(&svc).await.unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    send(&svc).await.unwrap_err();
    target.set(Answer::Status(429, None));
    send_n(&svc, 1, 429).await;
    assert_eq!(layer.circuit().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_circuit() {
    let target = Target::new(SERVER_ERROR);
    let layer = CircuitBreakerLayer::new("shared");
    let a = layer.layer(target.service());
    let b = layer.layer(target.service());
    send_n(&a, 3, 500).await;
    send_n(&b.clone(), 2, 500).await;
    assert_eq!(layer.circuit().state(), State::Open);
    assert_eq!(
        unavailable(send(&a).await).message,
        "circuit open for shared"
    );

    // Another layer is another circuit.
    let other = CircuitBreakerLayer::new("other").layer(target.service());
    send_n(&other, 1, 500).await;
}

/// Tries each target in turn, moving on after `Unavailable`; when all are unavailable,
/// answers the one that frees first. (A stand-in for the fallback layer.)
fn first_available<S>(
    targets: Vec<S>,
) -> impl Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
> + Clone
+ Send
+ 'static
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    service_fn(move |req: Request<BufferedBody>| {
        let targets = targets.clone();
        async move {
            let mut soonest: Option<Unavailable> = None;
            for target in targets {
                match target.oneshot(clone_request(&req)).await {
                    Err(err) if err.is::<Unavailable>() => {
                        let u = *err.downcast::<Unavailable>().unwrap();
                        let sooner = match (&soonest, u.retry_after) {
                            (None, _) => true,
                            (Some(s), Some(wait)) => s.retry_after.is_none_or(|w| wait < w),
                            (Some(_), None) => false,
                        };
                        if sooner {
                            soonest = Some(u);
                        }
                    }
                    other => return other,
                }
            }
            Err(soonest.expect("at least one target").into())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn all_open_answers_503_with_retry_after_through_the_edge() {
    let a = Target::new(Answer::Status(503, Some("20")));
    let b = Target::new(OK);
    let breaker_a = CircuitBreaker::builder()
        .name("a")
        .policy(consecutive(1))
        .build()
        .unwrap();
    let breaker_b = CircuitBreaker::builder()
        .name("b")
        .policy(consecutive(1))
        .build()
        .unwrap();
    let targets = vec![breaker_a.layer(a.service()), breaker_b.layer(b.service())];
    let edge = EdgeLayer::new().layer(first_available(targets));
    let client = || {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"model":"m"}"#)))
            .unwrap()
    };

    // A fails and opens for its Retry-After; its 503 reaches the client as it is.
    let res = edge.clone().oneshot(client()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(breaker_a.circuit().state(), State::Open);

    // A fails fast, so the loop moves on to B.
    let res = edge.clone().oneshot(client()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!((a.hits(), b.hits()), (1, 1));

    // B fails and opens for the default 30 s.
    b.set(SERVER_ERROR);
    let res = edge.clone().oneshot(client()).await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(breaker_b.circuit().state(), State::Open);

    // Both open: 503 with the sooner Retry-After, and no upstream called.
    advance(Duration::from_secs(5)).await;
    let res = edge.clone().oneshot(client()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "15");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "target_unavailable");
    assert_eq!(v["error"]["type"], "service_unavailable");
    assert_eq!(v["error"]["message"], "circuit open for a");
    assert_eq!((a.hits(), b.hits()), (1, 2));
}
