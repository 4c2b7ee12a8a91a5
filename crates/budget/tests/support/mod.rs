//! Helpers shared by the budget tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_core::context::{Caller, Metadata};
use portcullis_core::{Body, BoxError, BufferedBody};
use tower::Service;

/// A chat request of one short message, `max_tokens` 7.
pub const CHAT: &str = r#"{"model":"gpt-4o","max_tokens":7,"messages":[{"role":"user","content":"Say hello to the world"}]}"#;
/// The same, streamed.
pub const CHAT_STREAM: &str = r#"{"model":"gpt-4o","stream":true,"max_tokens":7,"messages":[{"role":"user","content":"Say hello to the world"}]}"#;
/// The prompt estimate of [`CHAT`] (see `estimate::prompt_tokens`).
pub const PROMPT: u64 = 22;
/// Its output cap.
pub const COMPLETION: u64 = 7;
/// gpt-4o: 22 × $2.50 + 7 × $10 per million, in micro-USD.
pub const COST: u64 = 55 + 70;
/// The prompt alone.
pub const PROMPT_COST: u64 = 55;

/// A request with `body`, from gateway key `key` and end user `user` (as `metadata._user`).
pub fn request(body: &str, key: Option<&str>, user: Option<&str>) -> Request<BufferedBody> {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(Bytes::from(body.to_owned())))
        .unwrap();
    let mut caller = Caller::default();
    caller.api_key = key.map(Into::into);
    req.extensions_mut().insert(caller);
    if let Some(user) = user {
        let map = BTreeMap::from([("_user".to_owned(), user.to_owned())]);
        req.extensions_mut().insert(Metadata::new(map));
    }
    req
}

/// An in-process upstream answering JSON with this usage.
pub fn json_upstream(
    prompt: u64,
    completion: u64,
) -> impl Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_req: Request<BufferedBody>| async move {
        let body = serde_json::json!({
            "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        });
        Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
    })
}

/// The status, headers and JSON body of a response (its body read to the end).
pub async fn read(res: Response<Body>) -> (u16, http::HeaderMap, serde_json::Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}
