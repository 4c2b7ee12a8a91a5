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
        if let Some(refused) = self.refuse(&req) {
            return refused;
        }
        // The readied service goes into the future; the clone stays to be readied next time.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::reading(parts, body, inner, self.limit, self.json_only, Into::into)
    }
}

impl<S> Edge<S> {
    /// [`call`](Service::call) for an edge used once (built for one request, say): the readied
    /// service moves into the future, where `call` leaves a clone of it behind to be readied
    /// for the next request. Drive it ready first, as for `call`.
    ///
    /// ```
    /// use portcullis_core::{Body, BoxError, BufferedBody, Edge};
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let echo = service_fn(|req: http::Request<BufferedBody>| async move {
    ///     Ok::<_, BoxError>(http::Response::new(Body::from(req.body().bytes().clone())))
    /// });
    /// type Req = http::Request<String>;
    /// let mut edge = Edge::new(echo, 1024);
    /// ServiceExt::<Req>::ready(&mut edge).await.unwrap();
    /// let req = http::Request::post("/v1/chat/completions").body(r#"{"model":"m"}"#.to_owned()).unwrap();
    /// let response = edge.call_once(req).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// # }
    /// ```
    pub fn call_once<B>(mut self, req: Request<B>) -> ResponseFuture<B, S, S::Future, S::Error>
    where
        S: Service<Request<BufferedBody>, Response = Response<Body>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        if let Some(refused) = self.refuse(&req) {
            return refused;
        }
        let (parts, body) = req.into_parts();
        ResponseFuture::reading(
            parts,
            body,
            self.inner,
            self.limit,
            self.json_only,
            Into::into,
        )
    }

    /// The answer to a request refused before its body is read: the inner service failed to
    /// get ready, or the declared length is over the limit.
    fn refuse<B>(&mut self, req: &Request<B>) -> Option<ResponseFuture<B, S, S::Future, S::Error>>
    where
        S: Service<Request<BufferedBody>, Response = Response<Body>>,
        S::Error: Into<BoxError>,
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        if let Some(err) = self.ready_error.take() {
            return Some(ResponseFuture::answered(
                to_http_error(&err).to_response(),
                Into::into,
            ));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            let err: BoxError = BodyTooLarge { limit: self.limit }.into();
            return Some(ResponseFuture::answered(
                to_http_error(&err).to_response(),
                Into::into,
            ));
        }
        None
    }
}
