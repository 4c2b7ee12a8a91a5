//! What the native providers' loopback tests share: sending a request through the edge, and
//! reading answers, events and reports.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::observe::{Observation, Report};
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
use serde_json::Value;
use tower::{Layer, Service, ServiceExt};

/// Sends `req` to `provider` behind the edge and the fact headers, as a server would.
pub async fn send_to<S>(provider: S, req: Request<Full<Bytes>>) -> Response<Body>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    FactHeadersLayer::new()
        .layer(EdgeLayer::new().layer(provider))
        .oneshot(req)
        .await
        .unwrap()
}

pub fn observation(r: &Response<Body>) -> Observation {
    r.extensions()
        .get::<Observation>()
        .expect("observed")
        .clone()
}

pub fn report(o: &Observation) -> Arc<Report> {
    o.report().expect("reported")
}

pub async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

pub async fn json_body(r: Response<Body>) -> Value {
    let t = text(r).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

/// The data of each event of an SSE body: JSON values, and `[DONE]` as a string.
pub fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data in {e:?}"));
            if data == "[DONE]" {
                Value::String(data.into())
            } else {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
            }
        })
        .collect()
}

/// The client's body read frame by frame: a stream must end cleanly, never as a broken body.
pub async fn stream_text(r: Response<Body>) -> String {
    let mut body = r.into_body();
    let mut got = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the client sees events, not a broken body");
        if let Ok(data) = frame.into_data() {
            got.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    got
}

pub fn assert_usage_adds_up(usage: &Value) {
    assert_eq!(
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
        "{usage}"
    );
}
