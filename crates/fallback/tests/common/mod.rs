//! Scripted in-process targets that record what they saw.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use portcullis_core::context::TargetPath;
use portcullis_core::error::{ErrorBody, response};
use portcullis_core::{Body, BoxError, BufferedBody};
use portcullis_fallback::{BoxTarget, box_target};
use tower::service_fn;

/// One call: the target's name and the request's target path.
pub type Call = (&'static str, Vec<u16>);

/// The calls made, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Call>>>);

impl Log {
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.calls().into_iter().map(|(name, _)| name).collect()
    }
}

/// A target named `name` that answers with `answer` and records each call in `log`.
pub fn target<A>(name: &'static str, log: &Log, answer: A) -> BoxTarget
where
    A: Fn() -> Result<Response<Body>, BoxError> + Clone + Send + Sync + 'static,
{
    let log = log.clone();
    box_target(service_fn(move |req: Request<BufferedBody>| {
        let path = req
            .extensions()
            .get::<TargetPath>()
            .map(|p| p.indices().to_vec())
            .unwrap_or_default();
        log.0.lock().unwrap().push((name, path));
        let out = answer();
        async move { out }
    }))
}

/// A 200 JSON answer whose body is `text`.
pub fn ok(text: &'static str) -> Result<Response<Body>, BoxError> {
    Ok(Response::new(Body::from(text)))
}

/// An error answer with `status` and an OpenAI-style body whose message is `message`.
pub fn status(code: u16, message: &str) -> Result<Response<Body>, BoxError> {
    let status = StatusCode::from_u16(code).unwrap();
    Ok(response(status, ErrorBody::new("test_error", message)))
}

pub fn request() -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(r#"{"model":"m","messages":[]}"#))
        .unwrap()
}

pub async fn text(r: Response<Body>) -> String {
    let bytes: Bytes = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub fn path(r: &Response<Body>) -> String {
    portcullis_core::facts::ResponseFacts::get(r)
        .and_then(|f| f.target)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// A body of scripted frames with no declared length.
pub struct Frames(pub std::collections::VecDeque<Result<Bytes, BoxError>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|c| c.map(http_body::Frame::data)))
    }
}

/// An observed 200 event stream made of `frames`.
pub fn event_stream(frames: Vec<Result<&'static str, &'static str>>) -> Response<Body> {
    let frames = frames
        .into_iter()
        .map(|f| {
            f.map(|s| Bytes::from_static(s.as_bytes()))
                .map_err(BoxError::from)
        })
        .collect();
    let upstream = Response::builder()
        .header("content-type", "text/event-stream")
        .body(Frames(frames))
        .unwrap();
    portcullis_core::observe::observe_response(upstream)
}

/// A chat request with `stream: true`, parsed as the edge would.
pub fn stream_request() -> Request<BufferedBody> {
    let body = Bytes::from_static(br#"{"model":"m","stream":true,"messages":[]}"#);
    let view = portcullis_core::RequestView::parse(body.clone()).unwrap();
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new(body))
        .unwrap();
    req.extensions_mut().insert(Arc::new(view));
    req
}
