//! The edge step and the fact headers: limits, parse errors, readiness.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::context::{TargetPath, TraceId};
use portcullis_core::error::{RateLimited, UpstreamError, UpstreamErrorKind};
use portcullis_core::facts::{CacheStatus, ResponseFacts, Retries};
use portcullis_core::{
    Body, BoxError, BufferedBody, Edge, EdgeLayer, FactHeadersLayer, RequestView,
};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

async fn error_json(r: Response<Body>) -> serde_json::Value {
    assert_eq!(r.headers()["content-type"], "application/json");
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn echo_model() -> Edge<
    impl tower::Service<
        Request<BufferedBody>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Send,
    > + Clone,
> {
    EdgeLayer::new()
        .limit(64)
        .layer(service_fn(|req: Request<BufferedBody>| async move {
            let view = req.extensions().get::<Arc<RequestView>>().cloned();
            let body = match view {
                Some(v) => format!("model={}", v.model().unwrap_or("-")),
                None => format!("raw={}", String::from_utf8_lossy(req.body().bytes())),
            };
            Ok::<_, BoxError>(Response::new(Body::from(body)))
        }))
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn parses_once_and_passes_the_view() {
    let r = echo_model()
        .oneshot(post(r#"{"model":"gpt"}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.into_body().collect().await.unwrap().to_bytes(),
        "model=gpt"
    );
}

#[tokio::test]
async fn malformed_json_is_400_with_the_reason() {
    let r = echo_model().oneshot(post(r#"{"model":"#)).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = error_json(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[tokio::test]
async fn wrong_field_type_is_400_naming_the_field() {
    let r = echo_model()
        .oneshot(post(r#"{"stream":"yes"}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_json(r).await["error"]["param"], "stream");
}

#[tokio::test]
async fn empty_post_is_400() {
    let r = echo_model().oneshot(post("")).await.unwrap();
    assert_eq!(r.status(), 400);
    let v = error_json(r).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("empty"));
}

#[tokio::test]
async fn json_sent_as_a_form_is_still_parsed() {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(br#" {"model":"curl"}"#)))
        .unwrap();
    let r = echo_model().oneshot(req).await.unwrap();
    assert_eq!(
        r.into_body().collect().await.unwrap().to_bytes(),
        "model=curl"
    );
}

fn post_as(content_type: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

/// An edge whose inner service echoes the view's model and the bytes it was handed.
fn echo_bytes(
    layer: EdgeLayer,
) -> Edge<
    impl tower::Service<
        Request<BufferedBody>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Send,
    > + Clone,
> {
    layer.layer(service_fn(|req: Request<BufferedBody>| async move {
        let view = req.extensions().get::<Arc<RequestView>>().cloned();
        let model = view.as_ref().and_then(|v| v.model()).unwrap_or("-");
        let length = req
            .headers()
            .get("content-length")
            .map_or("-", |v| v.to_str().unwrap());
        let body = format!(
            "parsed={} model={model} length={length} body={}",
            view.is_some(),
            String::from_utf8_lossy(req.body().bytes())
        );
        Ok::<_, BoxError>(Response::new(Body::from(body)))
    }))
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn json_labelled_as_text_is_parsed() {
    let r = echo_model()
        .oneshot(post_as("text/plain", br#"{"model":"plain"}"#))
        .await
        .unwrap();
    assert_eq!(text(r).await, "model=plain");
}

#[tokio::test]
async fn json_labelled_as_anything_is_parsed_even_when_it_is_not_an_object() {
    // Not an object: refused, not forwarded unparsed.
    for content_type in [
        "text/plain",
        "application/octet-stream",
        "multipart/form-data",
    ] {
        let r = echo_model()
            .oneshot(post_as(content_type, b"[1,2]"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{content_type}");
        assert_eq!(
            error_json(r).await["error"]["message"],
            "request body must be a JSON object, got an array"
        );
    }
}

#[tokio::test]
async fn a_byte_order_mark_is_stripped_from_the_view_and_the_forwarded_body() {
    for content_type in ["application/json", "text/plain"] {
        let mut req = post_as(content_type, b"\xEF\xBB\xBF{\"model\":\"bom\"}");
        req.headers_mut().insert("content-length", 18.into());
        let r = echo_bytes(EdgeLayer::new()).oneshot(req).await.unwrap();
        assert_eq!(r.status(), 200, "{content_type}");
        assert_eq!(
            text(r).await,
            r#"parsed=true model=bom length=15 body={"model":"bom"}"#,
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn a_byte_order_mark_is_stripped_when_json_only_is_off() {
    let req = post_as("text/plain", b"\xEF\xBB\xBF {\"model\":\"bom\"}");
    let r = echo_bytes(EdgeLayer::new().json_only(false))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        r#"parsed=true model=bom length=- body= {"model":"bom"}"#
    );
}

#[tokio::test]
async fn non_json_labelled_as_text_is_400() {
    let r = echo_model()
        .oneshot(post_as("text/plain", b"not json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = error_json(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("request body is not valid JSON"),
        "{v}"
    );
}

#[tokio::test]
async fn empty_bodies_are_400_whatever_the_label() {
    for (method, content_type, body) in [
        ("POST", "text/plain", &b""[..]),
        ("POST", "text/plain", b"\xEF\xBB\xBF"),
        ("POST", "application/json", b"\xEF\xBB\xBF"),
        ("PUT", "application/json", b""),
        ("PATCH", "text/plain", b""),
    ] {
        let req = Request::builder()
            .method(method)
            .uri("/v1/chat/completions")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let r = echo_model().oneshot(req).await.unwrap();
        assert_eq!(r.status(), 400, "{method} {content_type} {body:?}");
        let v = error_json(r).await;
        assert!(
            v["error"]["message"].as_str().unwrap().contains("empty"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_get_without_a_body_passes_without_a_view() {
    let req = Request::get("/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = echo_bytes(EdgeLayer::new()).oneshot(req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(text(r).await, "parsed=false model=- length=- body=");
}

#[tokio::test]
async fn json_only_off_buffers_other_content_unparsed() {
    let req = Request::post("/v1/audio/transcriptions")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"not json")))
        .unwrap();
    let r = echo_bytes(EdgeLayer::new().json_only(false))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(text(r).await, "parsed=false model=- length=- body=not json");
    // A body labelled JSON is still parsed, and refused when it is not.
    let r = echo_bytes(EdgeLayer::new().json_only(false))
        .oneshot(post("not json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn declared_oversized_body_is_413_before_reading() {
    let req = Request::post("/v1/chat/completions")
        .header("content-length", "65")
        .body(Full::new(Bytes::from(vec![b' '; 65])))
        .unwrap();
    let r = echo_model().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v = error_json(r).await;
    assert_eq!(v["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn streamed_oversized_body_is_413() {
    // No content-length: the limit is enforced while reading, chunk by chunk.
    let body = Chunks((0..10).map(|_| Ok(Bytes::from(vec![b' '; 10]))).collect());
    let req = Request::post("/v1/chat/completions").body(body).unwrap();
    let r = echo_model().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn multi_chunk_body_within_limit_is_joined() {
    let parts = [r#"{"mo"#, r#"del":"#, r#""x"}"#];
    let body = Chunks(
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect(),
    );
    let req = Request::post("/v1/chat/completions").body(body).unwrap();
    let r = echo_model().oneshot(req).await.unwrap();
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "model=x");
}

#[tokio::test]
async fn body_read_error_is_400() {
    let body = Chunks(vec![Ok(Bytes::from_static(b"{")), Err("client went away".into())].into());
    let req = Request::post("/v1/chat/completions").body(body).unwrap();
    let r = echo_model().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 400);
    let v = error_json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client went away")
    );
}

#[tokio::test]
async fn inner_errors_become_responses() {
    let svc = EdgeLayer::new().layer(service_fn(|_req: Request<BufferedBody>| async {
        Err::<Response<Body>, BoxError>(
            UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into(),
        )
    }));
    let r = svc.oneshot(post("{}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v = error_json(r).await;
    assert_eq!(v["error"]["code"], "upstream_connect_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
}

#[tokio::test]
async fn edge_calls_only_the_service_it_readied() {
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            EdgeLayer::new().layer(m)
        });
    handle.allow(0);
    assert!(svc.poll_ready::<Request<Full<Bytes>>>().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready::<Request<Full<Bytes>>>().is_ready());
    // The mock panics if a clone that was not readied is called.
    let fut = tokio::spawn(svc.call(post(r#"{"model":"a"}"#)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<Arc<RequestView>>().unwrap().model(),
        Some("a")
    );
    send.send_response(Response::new(Body::from("ok")));
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);
    // The next call needs readiness again.
    assert!(svc.poll_ready::<Request<Full<Bytes>>>().is_pending());
}

#[tokio::test]
async fn an_edge_called_once_answers_as_one_called_again_would() {
    type Req = Request<Full<Bytes>>;
    let mut edge = echo_model();
    ServiceExt::<Req>::ready(&mut edge).await.unwrap();
    let r = edge.call_once(post(r#"{"model":"gpt"}"#)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.into_body().collect().await.unwrap().to_bytes(),
        "model=gpt"
    );

    let mut edge = echo_model();
    ServiceExt::<Req>::ready(&mut edge).await.unwrap();
    let oversized = Request::post("/v1/chat/completions")
        .header("content-length", "65")
        .body(Full::new(Bytes::from(vec![b' '; 65])))
        .unwrap();
    let r = edge.call_once(oversized).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The inner service's readiness error is the answer, as for `call`.
    let (inner, mut handle) = mock::pair::<Request<BufferedBody>, Response<Body>>();
    handle.send_error(RateLimited {
        message: "slow down".into(),
        retry_after: std::time::Duration::from_secs(3),
    });
    let mut edge = EdgeLayer::new().layer(inner);
    ServiceExt::<Req>::ready(&mut edge).await.unwrap();
    let r = edge.call_once(post("{}")).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
}

#[tokio::test]
async fn poll_ready_error_is_answered_as_a_response() {
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            EdgeLayer::new().layer(m)
        });
    handle.send_error(RateLimited {
        message: "slow down".into(),
        retry_after: std::time::Duration::from_secs(3),
    });
    assert!(svc.poll_ready::<Request<Full<Bytes>>>().is_ready());
    let r = svc.call(post("{}")).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
}

#[tokio::test]
async fn fact_headers_write_portkey_headers() {
    let svc = FactHeadersLayer::new().layer(service_fn(|req: Request<()>| async move {
        let trace = req.extensions().get::<TraceId>().unwrap().clone();
        let mut r = Response::new(Body::from(trace.to_string()));
        let facts = ResponseFacts::get_mut(&mut r);
        let mut path = TargetPath::root();
        path.push(1);
        path.push(0);
        facts.target = Some(path);
        facts.retries = Some(Retries::Exhausted);
        facts.cache = Some(CacheStatus::Miss);
        facts.provider = Some("openai".into());
        Ok::<_, BoxError>(r)
    }));
    let r = svc.clone().oneshot(Request::new(())).await.unwrap();
    let generated = r.headers()["x-portkey-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(r.headers()["x-portkey-retry-attempt-count"], "-1");
    assert_eq!(
        r.headers()["x-portkey-last-used-option-index"],
        "config.targets[1].targets[0]"
    );
    assert_eq!(r.headers()["x-portkey-cache-status"], "MISS");
    assert_eq!(r.headers()["x-portkey-provider"], "openai");
    assert!(
        ResponseFacts::get(&r).is_some(),
        "facts stay for outer layers"
    );
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), generated);

    let req = Request::get("/")
        .header("x-portkey-trace-id", "my-trace")
        .body(())
        .unwrap();
    let r = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(r.headers()["x-portkey-trace-id"], "my-trace");

    let req = Request::get("/")
        .header("x-portkey-trace-id", "bad id")
        .body(())
        .unwrap();
    let r = svc.oneshot(req).await.unwrap();
    assert_ne!(r.headers()["x-portkey-trace-id"], "bad id");
}

#[tokio::test]
async fn fact_headers_keep_readiness() {
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<()>, Response<Body>, _, _>(|m| FactHeadersLayer::new().layer(m));
    handle.allow(0);
    assert!(svc.poll_ready::<Request<()>>().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready::<Request<()>>().is_ready());
    let fut = tokio::spawn(svc.call(Request::new(())));
    let (req, send) = handle.next_request().await.unwrap();
    assert!(req.extensions().get::<TraceId>().is_some());
    send.send_response(Response::new(Body::empty()));
    let r = fut.await.unwrap().unwrap();
    assert!(r.headers().contains_key("x-portkey-trace-id"));
}

/// A body of scripted frames with no declared length.
struct Chunks(VecDeque<Result<Bytes, BoxError>>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|c| c.map(http_body::Frame::data)))
    }
}
