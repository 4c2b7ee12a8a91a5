//! The fake upstream: a fast OpenAI-compatible endpoint that answers
//! `POST …/chat/completions` at once with [`Answers`], a ~500-byte `chat.completion` or a
//! 20-event SSE stream with usage (when the body says `"stream": true`).
//!
//! No delay, no recording, no parsing beyond the `stream` flag: it is the loopback floor
//! every row of the load run shares.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! portcullis_loadgen::upstream::serve(listener).await
//! # }
//! ```

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::net::TcpListener;

use crate::payload::Answers;

/// Serves the fake upstream on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let answers = Arc::new(Shared::new());
    crate::serve_http1(listener, move |req| {
        let answers = answers.clone();
        async move { Ok::<_, Infallible>(answer(&answers, req).await) }
    })
    .await
}

struct Shared {
    json: Arc<[Bytes]>,
    events: Arc<[Bytes]>,
    not_found: Arc<[Bytes]>,
}

impl Shared {
    fn new() -> Self {
        let answers = Answers::new();
        Self {
            json: Arc::from([answers.json().clone()]),
            events: Arc::from(answers.events()),
            not_found: Arc::from([Bytes::from_static(
                br#"{"error":{"message":"the fake upstream serves POST /v1/chat/completions","type":"invalid_request_error","code":"unknown_endpoint","param":null}}"#,
            )]),
        }
    }
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Chunks> {
    let known = req.method() == Method::POST && req.uri().path().ends_with("/chat/completions");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !known {
        return respond(
            StatusCode::NOT_FOUND,
            "application/json",
            &shared.not_found,
            true,
        );
    }
    if wants_stream(&body) {
        respond(StatusCode::OK, "text/event-stream", &shared.events, false)
    } else {
        respond(StatusCode::OK, "application/json", &shared.json, true)
    }
}

fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    chunks: &Arc<[Bytes]>,
    sized: bool,
) -> Response<Chunks> {
    let mut res = Response::new(Chunks {
        chunks: chunks.clone(),
        next: 0,
        sized,
    });
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !sized {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    res
}

/// A response body sent as one frame per chunk. `sized` bodies announce their length
/// (`content-length`); unsized ones go out chunked, as SSE streams do.
struct Chunks {
    chunks: Arc<[Bytes]>,
    next: usize,
    sized: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.chunks.get(self.next).cloned();
        self.next += 1;
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        let rest: u64 = self.chunks[self.next.min(self.chunks.len())..]
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        if self.sized {
            SizeHint::with_exact(rest)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(rest);
            hint
        }
    }
}
