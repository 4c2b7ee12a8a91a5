//! The readiness contract with `tower_test::mock`: the tag layer is ready exactly when its
//! inner service is, calls the service it readied (the mock panics otherwise), and a refusal
//! leaves the inner service's readiness for the next request.

use http::{Request, Response};
use portcullis_core::context::{Caller, Metadata, TraceId};
use portcullis_core::{Body, BufferedBody};
use portcullis_tag::{Tag, TagLayer};
use tower::Layer;
use tower_test::mock;

type Mock = mock::Mock<Request<BufferedBody>, Response<Body>>;
type Handle = mock::Handle<Request<BufferedBody>, Response<Body>>;

fn request(metadata: &str) -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("x-portkey-metadata", metadata)
        .body(BufferedBody::new(r#"{"model":"m"}"#))
        .unwrap()
}

fn tagged() -> (mock::Spawn<Tag<Mock>>, Handle) {
    let (service, handle) = mock::pair();
    (mock::Spawn::new(TagLayer::new().layer(service)), handle)
}

#[tokio::test]
async fn ready_exactly_when_the_inner_service_is() {
    let (mut svc, mut handle) = tagged();
    handle.allow(0);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_pending());
    handle.allow(1);
    assert!(svc.is_woken());
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());

    let response = tokio::spawn(svc.call(request(r#"{"team":"a"}"#)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<Metadata>().unwrap().get("team"),
        Some("a")
    );
    assert_eq!(
        req.extensions().get::<Caller>().unwrap().team.as_deref(),
        Some("a")
    );
    assert!(req.extensions().get::<TraceId>().is_some());
    send.send_response(Response::new(Body::from("{}")));
    assert_eq!(response.await.unwrap().unwrap().status(), 200);

    // The one allowed call is spent: not ready again.
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_pending());
}

#[tokio::test]
async fn a_refusal_keeps_the_inner_readiness_for_the_next_request() {
    let (mut svc, mut handle) = tagged();
    handle.allow(1);
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());
    let refused = svc.call(request(r#"{"team":1}"#)).await.unwrap();
    assert_eq!(refused.status(), 400);

    // Still ready with the same single permit: the refusal did not spend it.
    assert!(svc.poll_ready::<Request<BufferedBody>>().is_ready());
    let response = tokio::spawn(svc.call(request(r#"{"team":"b"}"#)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<Metadata>().unwrap().get("team"),
        Some("b")
    );
    send.send_response(Response::new(Body::from("{}")));
    assert_eq!(response.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn inner_readiness_errors_pass_through() {
    let (mut svc, mut handle) = tagged();
    handle.send_error("inner broke");
    let err = match svc.poll_ready::<Request<BufferedBody>>() {
        std::task::Poll::Ready(Err(err)) => err,
        other => panic!("{other:?}"),
    };
    assert_eq!(err.to_string(), "inner broke");
}
