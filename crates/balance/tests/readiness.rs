//! The readiness contract with `tower_test::mock`: the balancer is always ready itself, it
//! calls only a clone it has driven ready, it does not wait on an unready target while
//! another is ready, and it waits for the first to become ready when none is.

mod support;

use std::time::Duration;

use http::{Request, Response};
use portcullis_balance::{Balance, BoxTarget, Target};
use portcullis_core::error::Unavailable;
use portcullis_core::{Body, BufferedBody};
use tokio::time::timeout;
use tower::{Service, ServiceExt};
use tower_test::mock;

use support::{Mode, Switch, request, target_of};

type Handle = mock::Handle<Request<BufferedBody>, Response<Body>>;
type Mock = mock::Mock<Request<BufferedBody>, Response<Body>>;

fn two_mocks(seed: u64) -> (Balance<Mock>, Handle, Handle) {
    let (a, ha) = mock::pair();
    let (b, hb) = mock::pair();
    let lb = Balance::builder()
        .target(Target::new("a", a))
        .target(Target::new("b", b))
        .seed(seed)
        .build()
        .unwrap();
    (lb, ha, hb)
}

#[tokio::test(start_paused = true)]
async fn calls_only_a_clone_it_readied_and_skips_the_unready_one() {
    for seed in 0..8 {
        let (mut lb, mut ha, mut hb) = two_mocks(seed);
        ha.allow(0);
        hb.allow(1);
        // Ready although no target is: the future drives them.
        lb.ready().await.unwrap();
        // The mock panics if a clone that was not readied is called.
        let call = tokio::spawn(lb.call(request()));
        let (req, send) = hb.next_request().await.unwrap();
        assert_eq!(
            req.extensions()
                .get::<portcullis_core::context::TargetPath>()
                .unwrap()
                .indices(),
            [1]
        );
        send.send_response(Response::new(Body::from("b")));
        let response = call.await.unwrap().unwrap();
        assert_eq!(target_of(&response), 1);
        assert!(
            ha.poll_request().is_pending(),
            "a got nothing (seed {seed})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_no_target_ready_the_request_waits_for_the_first_to_become_ready() {
    let (mut lb, mut ha, mut hb) = two_mocks(1);
    ha.allow(0);
    hb.allow(0);
    lb.ready().await.unwrap();
    let mut call = tokio::spawn(lb.call(request()));
    assert!(timeout(Duration::from_millis(20), &mut call).await.is_err());
    ha.allow(1);
    let (_, send) = ha.next_request().await.unwrap();
    send.send_response(Response::new(Body::from("a")));
    assert_eq!(target_of(&call.await.unwrap().unwrap()), 0);
    assert!(hb.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_takes_the_target_out() {
    let (mut lb, mut ha, mut hb) = two_mocks(2);
    ha.send_error("a's connection pool is closed");
    hb.allow(1);
    let call = tokio::spawn(lb.ready().await.unwrap().call(request()));
    let (_, send) = hb.next_request().await.unwrap();
    send.send_response(Response::new(Body::from("b")));
    assert_eq!(target_of(&call.await.unwrap().unwrap()), 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_unavailable_answer_polls_the_pending_targets_afresh() {
    // `a` is not ready when first polled, so `b` is called; `a` becomes ready while `b` is
    // still answering (its wake is spent then), then `b` answers Unavailable. The balancer
    // must poll `a` again rather than wait for a wake that already came.
    let a = Switch::with_mode("a", Mode::NotReady);
    let (b, mut hb) = mock::pair::<Request<BufferedBody>, Response<Body>>();
    hb.allow(1);
    let lb: Balance<BoxTarget> = Balance::builder()
        .target(Target::boxed("a", a.clone()).weight(1_000.0))
        .target(Target::boxed("b", b))
        .seed(3)
        .build()
        .unwrap();
    let call = tokio::spawn(lb.oneshot(request()));
    let (_, send) = hb.next_request().await.unwrap();
    a.set(Mode::Up);
    tokio::task::yield_now().await;
    send.send_error(Unavailable {
        message: "b is open".into(),
        retry_after: None,
    });
    let response = timeout(Duration::from_secs(5), call)
        .await
        .expect("the request moved on to a")
        .unwrap()
        .unwrap();
    assert_eq!(target_of(&response), 0);
    assert_eq!(a.calls(), 1);
}
