//! The readiness contract, with `tower_test::mock` targets: the mock panics when a clone
//! that was not driven ready is called.

mod common;

use http::{Request, Response};
use portcullis_core::context::TargetPath;
use portcullis_core::error::{Unavailable, to_http_error};
use portcullis_core::{Body, BufferedBody};
use portcullis_fallback::Fallback;
use tower_test::mock;

use common::{path, request};

/// Fails instead of hanging when the fallback waits on a target it should have skipped, or
/// when a call panicked in its task (time is paused: the runtime jumps to the deadline once
/// everything is idle).
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), fut)
        .await
        .expect("stuck: the fallback waited on a target, or the call panicked")
}

type Mock = mock::Mock<Request<BufferedBody>, Response<Body>>;
type Handle = mock::Handle<Request<BufferedBody>, Response<Body>>;

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(Body::from("{}"));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
    r
}

fn targets(n: usize) -> (Fallback<Mock>, Vec<Handle>) {
    let (mocks, handles): (Vec<_>, Vec<_>) = (0..n).map(|_| mock::pair()).unzip();
    (Fallback::new(mocks), handles)
}

fn request_path(req: &Request<BufferedBody>) -> Vec<u16> {
    req.extensions()
        .get::<TargetPath>()
        .unwrap()
        .indices()
        .to_vec()
}

#[tokio::test(start_paused = true)]
async fn each_target_is_readied_before_it_is_called() {
    let (fallback, mut handles) = targets(2);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].allow(1);
    handles[1].allow(1);
    // Always ready: the targets are readied inside the future.
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());
    let fut = tokio::spawn(svc.call(request()));

    let (req, send) = within(handles[0].next_request()).await.unwrap();
    assert_eq!(request_path(&req), [0]);
    send.send_response(status(500));
    let (req, send) = within(handles[1].next_request()).await.unwrap();
    assert_eq!(request_path(&req), [1]);
    send.send_response(status(200));

    let r = within(fut).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test(start_paused = true)]
async fn the_fallback_is_ready_even_when_no_target_is() {
    let (fallback, mut handles) = targets(2);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].allow(0);
    handles[1].allow(0);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());
    // Neither target is ready when its turn comes: the answer is 503 at once, not a wait.
    let err = within(svc.call(request())).await.unwrap_err();
    let unavailable = err.downcast_ref::<Unavailable>().expect("Unavailable");
    assert!(unavailable.message.contains("target 1"), "{unavailable:?}");
    assert_eq!(to_http_error(&err).status(), 503);
}

#[tokio::test(start_paused = true)]
async fn an_unready_target_is_skipped() {
    let (fallback, mut handles) = targets(3);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].allow(0);
    handles[1].allow(1);
    handles[2].allow(1);
    let fut = tokio::spawn(svc.call(request()));

    let (req, send) = within(handles[1].next_request()).await.unwrap();
    assert_eq!(request_path(&req), [1]);
    send.send_response(status(200));
    let r = within(fut).await.unwrap().unwrap();
    assert_eq!(path(&r), "targets[1]");
    // Target 0 was never called (calling it unreadied would have panicked), nor target 2.
    assert!(handles[0].poll_request().is_pending());
    assert!(handles[2].poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn an_unready_last_target_is_unavailable() {
    let (fallback, mut handles) = targets(2);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].allow(1);
    handles[1].allow(0);
    let fut = tokio::spawn(svc.call(request()));
    let (_, send) = within(handles[0].next_request()).await.unwrap();
    send.send_response(status(502));
    let err = within(fut).await.unwrap().unwrap_err();
    assert!(err.is::<Unavailable>(), "{err}");
    assert!(handles[1].poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_failed_poll_ready_counts_as_a_failure() {
    let (fallback, mut handles) = targets(2);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].send_error("target 0 is broken");
    handles[1].allow(1);
    let fut = tokio::spawn(svc.call(request()));
    let (_, send) = within(handles[1].next_request()).await.unwrap();
    send.send_response(status(200));
    let r = within(fut).await.unwrap().unwrap();
    assert_eq!(path(&r), "targets[1]");

    // The same error on the last target is the answer.
    let (fallback, mut handles) = targets(1);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].send_error("the only target is broken");
    let err = within(svc.call(request())).await.unwrap_err();
    assert_eq!(err.to_string(), "the only target is broken");
}

#[tokio::test(start_paused = true)]
async fn every_call_readies_its_own_clone() {
    let (fallback, mut handles) = targets(2);
    let mut svc = mock::Spawn::new(fallback);
    handles[0].allow(2);
    let first = tokio::spawn(svc.call(request()));
    let second = tokio::spawn(svc.call(request()));
    for _ in 0..2 {
        let (_, send) = within(handles[0].next_request()).await.unwrap();
        send.send_response(status(200));
    }
    assert_eq!(within(first).await.unwrap().unwrap().status(), 200);
    assert_eq!(within(second).await.unwrap().unwrap().status(), 200);
    assert!(handles[1].poll_request().is_pending());
}
