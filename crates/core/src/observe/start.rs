use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Observation, Outcome};
use crate::{Body, BoxError};

/// Waits for the first frame of `response`'s body, to tell a response that started from one
/// that failed before sending anything.
///
/// Retry and fallback use it on streams: an upstream that answered 200 but broke before its
/// first event can still be retried or replaced, because nothing has reached the client. The
/// first frame is kept and sent first; nothing is lost either way.
pub fn started(response: Response<Body>) -> Started {
    Started {
        response: Some(response),
    }
}

/// The future of [`started`].
#[derive(Debug)]
pub struct Started {
    response: Option<Response<Body>>,
}

/// A response whose body failed before its first byte of content.
#[derive(Debug)]
pub struct NotStarted {
    /// Why it failed.
    pub reason: String,
    /// The response as it would reach the client (for an event stream: an error event).
    pub response: Response<Body>,
}

impl Future for Started {
    type Output = Result<Response<Body>, NotStarted>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = self.response.as_mut().expect("polled after completion");
        let frame = ready!(Pin::new(response.body_mut()).poll_frame(cx));
        let (parts, rest) = self.response.take().expect("present").into_parts();
        let failed = parts
            .extensions
            .get::<Observation>()
            .and_then(Observation::report)
            .and_then(|report| match &report.outcome {
                Outcome::Failed(reason) if report.events == 0 || report.bytes == 0 => {
                    Some(reason.clone())
                }
                _ => None,
            });
        Poll::Ready(match frame {
            Some(Err(err)) => Err(NotStarted {
                reason: err.to_string(),
                response: Response::from_parts(parts, Body::empty()),
            }),
            frame => {
                let body = Body::new(Prefixed {
                    first: frame.map(|f| f.expect("errors handled above")),
                    rest,
                });
                let response = Response::from_parts(parts, body);
                match failed {
                    Some(reason) => Err(NotStarted { reason, response }),
                    None => Ok(response),
                }
            }
        })
    }
}

pin_project! {
    struct Prefixed {
        first: Option<Frame<Bytes>>,
        #[pin]
        rest: Body,
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(len) = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map(|d| d.len() as u64)
        {
            hint.set_lower(hint.lower() + len);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + len);
            }
        }
        hint
    }
}
