//! [`ResponseFuture`]: the future of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::{Body, BoxError, BufferedBody};
use tower_service::Service;

use crate::RetryPolicy;
use crate::attempt::AttemptService;

type Inner<S> =
    tower::retry::future::ResponseFuture<RetryPolicy, AttemptService<S>, Request<BufferedBody>>;

pin_project! {
    /// The response future of [`Retry`](crate::Retry): the attempts, the waits between them,
    /// and the final answer with its [`Retries`] fact.
    pub struct ResponseFuture<S>
    where
        S: Service<Request<BufferedBody>, Response = Response<Body>>,
        S::Error: Into<BoxError>,
    {
        #[pin]
        inner: Inner<S>,
        off: bool,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    pub(crate) fn new(inner: Inner<S>, off: bool) -> Self {
        Self { inner, off }
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("off", &self.off)
            .finish_non_exhaustive()
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        // With retries on, the policy records the fact on the final answer; off, no policy
        // saw it.
        if *this.off
            && let Ok(response) = &mut result
        {
            ResponseFacts::get_mut(response).retries = Some(Retries::Made(0));
        }
        Poll::Ready(result)
    }
}
