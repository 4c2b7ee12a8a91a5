//! A scripted in-process target for the breaker tests.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use portcullis_core::error::{Unavailable, UpstreamError, UpstreamErrorKind};
use portcullis_core::{Body, BoxError, BufferedBody};
use tower::Service;

/// What the target answers.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    /// A response with this status and, if given, this `retry-after`.
    Status(u16, Option<&'static str>),
    /// A transport error.
    Refused,
    /// An `Unavailable` error, as an inner breaker would give.
    Unavailable,
}

/// A target that answers as told, after `delay`, and counts the calls that reach it.
#[derive(Clone)]
pub(crate) struct Target {
    answer: Arc<Mutex<(Answer, Duration)>>,
    hits: Arc<AtomicUsize>,
}

impl Target {
    pub(crate) fn new(answer: Answer) -> Self {
        Self {
            answer: Arc::new(Mutex::new((answer, Duration::ZERO))),
            hits: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn set(&self, answer: Answer) {
        self.answer.lock().unwrap().0 = answer;
    }

    pub(crate) fn delay(&self, delay: Duration) {
        self.answer.lock().unwrap().1 = delay;
    }

    /// Calls that reached the target (counted when called, before any delay).
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<
        Request<BufferedBody>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
    > + Clone
    + Send
    + 'static {
        let target = self.clone();
        tower::service_fn(move |_req: Request<BufferedBody>| {
            target.hits.fetch_add(1, Ordering::SeqCst);
            let (answer, delay) = target.answer.lock().unwrap().clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match answer {
                    Answer::Status(status, retry_after) => {
                        let mut res = Response::new(Body::from("{}"));
                        *res.status_mut() = StatusCode::from_u16(status).unwrap();
                        if let Some(wait) = retry_after {
                            res.headers_mut()
                                .insert("retry-after", wait.parse().unwrap());
                        }
                        Ok(res)
                    }
                    Answer::Refused => Err(UpstreamError::new(
                        UpstreamErrorKind::Connect,
                        "connection refused",
                    )
                    .into()),
                    Answer::Unavailable => Err(Unavailable {
                        message: "nothing inside".into(),
                        retry_after: None,
                    }
                    .into()),
                }
            }
        })
    }
}

pub(crate) fn request() -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        ))
        .unwrap()
}

/// The `Unavailable` a call failed with; panics on any other result.
pub(crate) fn unavailable(result: Result<Response<Body>, BoxError>) -> Unavailable {
    match result {
        Err(err) => match err.downcast::<Unavailable>() {
            Ok(u) => *u,
            Err(other) => panic!("expected Unavailable, got error {other}"),
        },
        Ok(res) => panic!("expected Unavailable, got a {} response", res.status()),
    }
}
