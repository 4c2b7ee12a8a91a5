//! [`ResponseFuture`]: the future of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::{BoxError, BufferedBody};
use tower::retry::Policy;
use tower_service::Service;

use crate::RetryPolicy;
use crate::attempt::AttemptService;

type Inner<S, P, B> = tower::retry::future::ResponseFuture<P, AttemptService<S>, Request<B>>;

pin_project! {
    /// The response future of [`Retry`](crate::Retry): the attempts, the waits between them,
    /// and the final answer with its [`Retries`] fact.
    pub struct ResponseFuture<S, P = RetryPolicy, B = BufferedBody>
    where
        AttemptService<S>: Service<Request<B>>,
        P: Policy<Request<B>, <AttemptService<S> as Service<Request<B>>>::Response, BoxError>,
        AttemptService<S>: Service<Request<B>, Error = BoxError>,
    {
        #[pin]
        inner: Inner<S, P, B>,
        off: bool,
    }
}

impl<S, P, B, R> ResponseFuture<S, P, B>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    R: 'static,
    P: Policy<Request<B>, Response<R>, BoxError>,
{
    pub(crate) fn new(inner: Inner<S, P, B>, off: bool) -> Self {
        Self { inner, off }
    }
}

impl<S, P, B, R> fmt::Debug for ResponseFuture<S, P, B>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    R: 'static,
    P: Policy<Request<B>, Response<R>, BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("off", &self.off)
            .finish_non_exhaustive()
    }
}

impl<S, P, B, R> Future for ResponseFuture<S, P, B>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    R: 'static,
    P: Policy<Request<B>, Response<R>, BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

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
