//! override_params: shallow merge, one re-serialisation, a fresh view, errors.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::params::override_params;
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, OverrideParamsLayer, RequestView};
use serde_json::{Map, Value, json};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn viewed(body: &'static str) -> Request<BufferedBody> {
    let view = RequestView::parse(Bytes::from_static(body.as_bytes())).unwrap();
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new(body))
        .unwrap();
    req.extensions_mut().insert(Arc::new(view));
    req
}

#[test]
fn target_keys_win_shallowly() {
    let req = viewed(r#"{"model":"a","temperature":1,"response_format":{"type":"text","x":1}}"#);
    let out = override_params(
        req,
        &map(json!({"model":"b","response_format":{"type":"json_object"}})),
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(out.body().bytes()).unwrap();
    assert_eq!(
        sent,
        json!({"model":"b","temperature":1,"response_format":{"type":"json_object"}})
    );
    let view = out.extensions().get::<Arc<RequestView>>().unwrap();
    assert_eq!(view.model(), Some("b"));
    assert_eq!(view.bytes(), out.body().bytes());
    assert_eq!(
        out.headers()["content-length"],
        out.body().bytes().len().to_string().as_str()
    );
}

#[test]
fn inheritance_merges_child_over_parent() {
    let parent = OverrideParamsLayer::new(map(json!({"model":"p","temperature":0})));
    let child = parent.merged_with(&map(json!({"model":"c"})));
    assert_eq!(
        Value::Object(child.params().clone()),
        json!({"model":"c","temperature":0})
    );
}

#[test]
fn empty_params_or_no_view_leave_the_request_alone() {
    let req = viewed(r#"{"model":"a"}"#);
    let out = override_params(req, &Map::new()).unwrap();
    assert_eq!(out.body().bytes(), r#"{"model":"a"}"#);
    let raw = Request::post("/x")
        .body(BufferedBody::new("not json"))
        .unwrap();
    let out = override_params(raw, &map(json!({"model":"b"}))).unwrap();
    assert_eq!(out.body().bytes(), "not json");
}

#[tokio::test]
async fn a_merge_that_breaks_a_type_is_400() {
    let svc = EdgeLayer::new().layer(
        OverrideParamsLayer::new(map(json!({"stream":"yes"}))).layer(service_fn(
            |_r: Request<BufferedBody>| async { Ok::<_, BoxError>(Response::new(Body::empty())) },
        )),
    );
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(br#"{"model":"a"}"#)))
        .unwrap();
    let r = svc.oneshot(req).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["error"]["param"], "stream");
}

#[tokio::test]
async fn override_params_keeps_readiness() {
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            OverrideParamsLayer::new(map(json!({"model":"b"}))).layer(m)
        });
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = tokio::spawn(svc.call(viewed(r#"{"model":"a"}"#)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<Arc<RequestView>>().unwrap().model(),
        Some("b")
    );
    send.send_response(Response::new(Body::empty()));
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);
}
