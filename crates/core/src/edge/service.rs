use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_service::Service;

use super::{EdgeLayer, ResponseFuture};
use crate::error::{BodyTooLarge, to_http_error};
use crate::{Body, BoxError, BufferedBody};

/// Reads and parses the request once, and answers every error as a response (see the
/// [module docs](super)).
pub struct Edge<S> {
    inner: S,
    limit: usize,
    json_only: bool,
    /// An error from the inner service's `poll_ready`, answered on the next call.
    ready_error: Option<BoxError>,
}

impl<S> Edge<S> {
    /// Wraps `inner`, accepting bodies of up to `limit` bytes and reading every body as JSON
    /// (see [`EdgeLayer::json_only`] for the alternative).
    pub fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            limit,
            json_only: true,
            ready_error: None,
        }
    }

    /// Whether every non-empty body is read as JSON (the default); see
    /// [`EdgeLayer::json_only`].
    pub fn json_only(mut self, on: bool) -> Self {
        self.json_only = on;
        self
    }

    /// A layer with the default limit.
    pub fn layer() -> EdgeLayer {
        EdgeLayer::new()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Edge<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.limit).json_only(self.json_only)
    }
}

impl<S: fmt::Debug> fmt::Debug for Edge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("json_only", &self.json_only)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<B, S, S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                self.ready_error = Some(err.into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(err) = self.ready_error.take() {
            return ResponseFuture::answered(to_http_error(&err).to_response(), Into::into);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            let err: BoxError = BodyTooLarge { limit: self.limit }.into();
            return ResponseFuture::answered(to_http_error(&err).to_response(), Into::into);
        }
        // The readied service goes into the future; the clone stays to be readied next time.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::reading(parts, body, inner, self.limit, self.json_only, Into::into)
    }
}
